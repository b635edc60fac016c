/*
 * blkbench: block-device throughput as the guest sees it (bench/blk.sh). On the first
 * virtio-blk device announced by a virtio_mmio.device= token, with the runtime's polling
 * driver (one request in flight):
 *
 *   seqwrite  the region [0, size) in requests of `bs` bytes, then a FLUSH (when offered)
 *   seqread   the same region in the same requests
 *   randread  `rand` reads of 4 KiB at 4 KiB-aligned offsets inside the region, chosen by a
 *             64-bit LCG (bench/blk_host.c draws the same offsets)
 *
 * Every 4 KiB block written starts with a stamp (its block number and the seed, see stamp());
 * the reads check it, so a phase that moved no data fails instead of looking fast.
 *
 * Command line (other tokens whose key contains a '.' are ignored):
 *   mib=N    size of the region in MiB (default: the whole disk, rounded down to 4 KiB)
 *   bs=K     request size in KiB, a multiple of 4, at most 1024 (default 64); capped by the
 *            device's size_max when it offers VIRTIO_BLK_F_SIZE_MAX
 *   rand=R   random reads (default 10000; 0 skips the phase)
 *   seed=S   LCG seed and stamp tag (default 1)
 *   noirq    set VRING_AVAIL_F_NO_INTERRUPT and skip the InterruptStatus read and ACK write
 *            after each request (the runtime driver does both; this measures what they cost)
 *
 * Output, one line each:
 *   blkbench: ready
 *   blkbench: tsc khz=K source=cpuid|pit pit_khz=P pit_err_ppm=E
 *   blkbench: disk bytes=B region=R bs=S rand=N flush=0|1 noirq=0|1
 *   blkbench: phase=seqwrite bytes=B reqs=N cycles=C ns=T wait_ns=W ack_ns=A kibps=V
 *   blkbench: phase=seqread bytes=B reqs=N cycles=C ns=T wait_ns=W ack_ns=A kibps=V
 *   blkbench: phase=randread bytes=B reqs=N cycles=C ns=T wait_ns=W ack_ns=A iops=V
 *   blkbench: done
 * (wait and ack: see request()).
 *
 * Time: rdtsc, converted with the TSC frequency. That comes from the hypervisor leaf
 * 0x40000010 (EAX, kHz) when CPUID has it (hearth's hardware mode), and otherwise from a
 * calibration against PIT channel 2 (in shadow mode the guest's cpuid is the host CPU's own,
 * which may stop at 0x40000001). The calibration always runs (see pit_khz(): the median of
 * three good 50 ms runs) so that the two can be compared where both exist. cycles= is
 * printed too, for a reader who has a better frequency.
 *
 * Exit statuses: 30 no block device or it failed to start; 31 a request failed; 32 a stamp
 * did not match (wrong data read back); 33 the region is empty or larger than the disk, or
 * the disk is read-only; 34 no TSC frequency (no CPUID leaf and the PIT did not count);
 * 98 a bad token; 20/21 from the runtime's virtio code.
 */
#include "cpu.h"
#include "virtio.h"

#define EXIT_NO_DEVICE 30
#define EXIT_REQUEST   31
#define EXIT_STAMP     32
#define EXIT_REGION    33
#define EXIT_NO_TSC    34
#define EXIT_BAD_TOKEN 98

#define BLOCK        4096u
#define BUF_BYTES    (1024u * 1024)
#define DEFAULT_BS   (64u * 1024)
#define DEFAULT_RAND 10000u

/* PIT: 1.193182 MHz input clock, channel 2 gated through port 0x61 (bit 0 gate, bit 1
 * speaker, bit 5 the channel's OUT). */
#define PIT_HZ         1193182u
#define PIT_CH2        0x42
#define PIT_CMD        0x43
#define PIT_PORT_B     0x61
#define PIT_LATCH      59659u /* 50 ms of PIT ticks */
#define PIT_CAL_GOOD   3
#define PIT_CAL_TRIES  12
#define PIT_MAX_CYCLES (1ULL << 36) /* ~25 s at 2.6 GHz: the PIT is not counting */
/* One request (~25 s); hearth's --timeout usually ends the run first. */
#define REQ_TIMEOUT_CYCLES (1UL << 36)

static uint8_t buf[BUF_BYTES] __attribute__((section(".noinit"), aligned(4096)));
static struct rt_virtio_dev devs[RT_VIRTIO_MAX_DEVS];
static struct rt_vblk blk;
static uint64_t seed = 1;
static bool noirq;

static _Noreturn void fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static _Noreturn void fail(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
	guest_exit(status);
}

/* The first 8 bytes of 4 KiB block `n`: unique per block and per seed (blk_host.c too). */
static uint64_t stamp(uint64_t n)
{
	return n * 0x9e3779b97f4a7c15ULL ^ seed;
}

/* Knuth's MMIX LCG; the high bits pick the block (blk_host.c: the same). */
static uint64_t lcg_next(uint64_t *x)
{
	*x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
	return *x >> 33;
}

/*
 * Count PIT channel 2 down from PIT_LATCH ticks (50 ms) in mode 0 (OUT goes high at
 * terminal count) and return the TSC cycles it took, or 0 when OUT never rose. The start is
 * the midpoint of the rdtscs around the write that loads the count; the end is the midpoint
 * between the last poll that saw OUT low and the first that saw it high. *bracket is the
 * width of those two windows: the result is off by at most half of it. A port access takes
 * a few microseconds (the in-kernel PIT, one exit), but the vCPU thread can be preempted in
 * the middle of one for milliseconds on a loaded host: such runs are thrown away below.
 */
static uint64_t pit_cycles(uint64_t *bracket)
{
	uint64_t t0, t1, prev, now, start;

	outb(PIT_PORT_B, (uint8_t)((inb(PIT_PORT_B) & ~0x02) | 0x01)); /* gate on, speaker off */
	outb(PIT_CMD, 0xb0); /* channel 2, lobyte then hibyte, mode 0, binary */
	outb(PIT_CH2, (uint8_t)PIT_LATCH);
	t0 = rdtsc();
	outb(PIT_CH2, (uint8_t)(PIT_LATCH >> 8));
	t1 = rdtsc();
	start = t0 + (t1 - t0) / 2;
	prev = t1;
	for (;;) {
		uint64_t before = rdtsc();
		uint8_t v = inb(PIT_PORT_B);

		now = rdtsc();
		if (v & 0x20) {
			*bracket = (t1 - t0) + (now - prev);
			return prev + (now - prev) / 2 - start;
		}
		prev = before;
		if (now - start > PIT_MAX_CYCLES)
			return 0;
	}
}

static void swap(uint64_t *a, uint64_t *b)
{
	uint64_t t = *a;

	*a = *b;
	*b = t;
}

/*
 * TSC kHz from the PIT: the median of PIT_CAL_GOOD runs whose brackets are below 1/1000 of
 * the run (an error of at most 0.05%), out of at most PIT_CAL_TRIES. When fewer are that
 * good, the tightest runs are used. *err_ppm: the largest error bound among the runs used.
 */
static uint32_t pit_khz(uint32_t *err_ppm)
{
	uint64_t c[PIT_CAL_TRIES], b[PIT_CAL_TRIES];
	unsigned n = 0, good = 0;

	while (n < PIT_CAL_TRIES && good < PIT_CAL_GOOD) {
		c[n] = pit_cycles(&b[n]);
		if (!c[n])
			return 0;
		good += b[n] * 1000 < c[n];
		n++;
	}
	/* Sort by bracket / cycles (tightest first); keep the first PIT_CAL_GOOD (or all). */
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && b[j] * c[j - 1] < b[j - 1] * c[j]; j--) {
			swap(&c[j], &c[j - 1]);
			swap(&b[j], &b[j - 1]);
		}
	if (n > PIT_CAL_GOOD)
		n = PIT_CAL_GOOD;
	*err_ppm = 0;
	for (unsigned i = 0; i < n; i++) {
		uint32_t e = (uint32_t)(b[i] * 500000 / c[i]);

		if (e > *err_ppm)
			*err_ppm = e;
	}
	/* median of the kept runs */
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && c[j] < c[j - 1]; j--)
			swap(&c[j], &c[j - 1]);
	/* cycles per PIT_LATCH ticks -> cycles per ms */
	return (uint32_t)(c[n / 2] * PIT_HZ / PIT_LATCH / 1000);
}

static uint64_t to_ns(uint64_t cycles, uint32_t khz)
{
	return cycles / khz * 1000000 + cycles % khz * 1000000 / khz;
}

/*
 * One request, the way rt_virtio_submit() does it (rt/virtio.c): three descriptors, a
 * QueueNotify write, a spin on the used ring, then InterruptStatus read and acknowledged.
 * Done here so that the two halves can be timed: `wait` (notify until the used entry shows;
 * hearth's VMM thread wakes up on the ioeventfd, does the preadv/pwritev, fills the used
 * ring and raises the irqfd) and `ack` (the two register accesses after it, each an exit to
 * hearth's vCPU thread).
 */
static struct {
	uint64_t wait, ack;
} part;

static void request(uint32_t type, uint64_t off, uint32_t len)
{
	static struct virtio_blk_outhdr hdr;
	static volatile uint8_t status;
	struct rt_virtio_dev *d = blk.dev;
	struct rt_vq *vq = &d->vq[0];
	struct rt_vq_buf bufs[3] = {
	    {&hdr, sizeof(hdr), false},
	    {buf, len, type != VIRTIO_BLK_T_OUT},
	    {(const void *)&status, 1, true},
	};
	uint32_t id, used_len, isr;
	uint64_t t0, t1, t2;
	uint16_t head;

	hdr = (struct virtio_blk_outhdr){type, 0, off / RT_VBLK_SECTOR};
	status = 0xff;
	head = rt_vq_add(vq, bufs, 3, NULL);
	t0 = rdtsc();
	rt_virtio_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, vq->index);
	while (!rt_vq_get_used(vq, &id, &used_len)) {
		__asm__ volatile("pause");
		if (rdtsc() - t0 > REQ_TIMEOUT_CYCLES)
			fail(RT_EXIT_VIRTIO_TIMEOUT,
			     "blkbench: request at %lu not done after %lu cycles\n", off,
			     REQ_TIMEOUT_CYCLES);
	}
	t1 = rdtsc();
	if (id != head)
		fail(RT_EXIT_VIRTIO_PROTOCOL, "blkbench: used id %u, expected %u\n", id, head);
	if (!noirq) {
		isr = rt_virtio_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
		if (isr)
			rt_virtio_write(d, VIRTIO_MMIO_INTERRUPT_ACK, isr);
	}
	t2 = rdtsc();
	part.wait += t1 - t0;
	part.ack += t2 - t1;
	if (status != VIRTIO_BLK_S_OK)
		fail(EXIT_REQUEST, "blkbench: %s of %u bytes at %lu: status %u\n",
		     type == VIRTIO_BLK_T_OUT ? "write" : "read", len, off, status);
}

static void check(uint64_t off, uint32_t len)
{
	for (uint32_t i = 0; i < len; i += BLOCK) {
		uint64_t n = (off + i) / BLOCK, got = *(const uint64_t *)(buf + i);

		if (got != stamp(n))
			fail(EXIT_STAMP, "blkbench: block %lu reads 0x%lx, expected 0x%lx\n", n,
			     got, stamp(n));
	}
}

/* One phase line; the rate is IOPS for random reads and KiB/s for the sequential phases. */
static void report(const char *phase, uint64_t bytes, uint64_t reqs, uint64_t cycles, uint32_t khz,
                   bool iops)
{
	uint64_t ns = to_ns(cycles, khz), wait = to_ns(part.wait, khz), ack = to_ns(part.ack, khz);

	part.wait = part.ack = 0;
	if (!ns)
		ns = 1;
	if (iops)
		con_printf("blkbench: phase=%s bytes=%lu reqs=%lu cycles=%lu ns=%lu wait_ns=%lu "
		           "ack_ns=%lu iops=%lu\n",
		           phase, bytes, reqs, cycles, ns, wait, ack, reqs * 1000000000 / ns);
	else
		con_printf("blkbench: phase=%s bytes=%lu reqs=%lu cycles=%lu ns=%lu wait_ns=%lu "
		           "ack_ns=%lu kibps=%lu\n",
		           phase, bytes, reqs, cycles, ns, wait, ack,
		           bytes / 1024 * 1000000000 / ns);
}

static bool is_foreign_param(const struct token *tok)
{
	const char *eq = rt_memchr(tok->s, '=', tok->len);
	size_t key_len = eq ? (size_t)(eq - tok->s) : tok->len;

	return rt_memchr(tok->s, '.', key_len) != NULL;
}

void guest_main(struct hvm_start_info *si)
{
	const char *pos = rt_cmdline(si), *end = pos + rt_strnlen(pos, RT_CMDLINE_MAX);
	uint64_t mib = 0, bs = DEFAULT_BS / 1024, nrand = DEFAULT_RAND, region, disk, t0, reqs;
	uint32_t khz, cpuid_khz, pit, pit_err = 0;
	struct rt_virtio_dev *dev = NULL;
	unsigned ndevs;
	struct token tok, val;

	con_puts("blkbench: ready");
	while (rt_next_token(&pos, end, &tok)) {
		uint64_t *dst = NULL;

		if (rt_token_is(&tok, "noirq")) {
			noirq = true;
			continue;
		}
		if (rt_token_value(&tok, "mib", &val))
			dst = &mib;
		else if (rt_token_value(&tok, "bs", &val))
			dst = &bs;
		else if (rt_token_value(&tok, "rand", &val))
			dst = &nrand;
		else if (rt_token_value(&tok, "seed", &val))
			dst = &seed;
		if (dst ? !rt_parse_u64(&val, dst) : !is_foreign_param(&tok))
			fail(EXIT_BAD_TOKEN, "blkbench: bad token %.*s\n", (int)tok.len, tok.s);
	}
	bs *= 1024;
	if (bs == 0 || bs % BLOCK || bs > BUF_BYTES || mib > (1ULL << 40))
		fail(EXIT_BAD_TOKEN, "blkbench: bs must be a multiple of 4 KiB up to %u KiB\n",
		     BUF_BYTES / 1024);

	cpuid_khz = tsc_khz();
	pit = pit_khz(&pit_err);
	khz = cpuid_khz ? cpuid_khz : pit;
	if (!khz)
		fail(EXIT_NO_TSC, "blkbench: no TSC frequency (no CPUID 0x40000010, no PIT)\n");
	con_printf("blkbench: tsc khz=%u source=%s pit_khz=%u pit_err_ppm=%u\n", khz,
	           cpuid_khz ? "cpuid" : "pit", pit, pit_err);

	ndevs = rt_virtio_discover(si, devs, RT_VIRTIO_MAX_DEVS);
	for (unsigned i = 0; i < ndevs && !dev; i++)
		if (devs[i].device_id == VIRTIO_ID_BLOCK)
			dev = &devs[i];
	if (!dev || !rt_vblk_init(&blk, dev))
		fail(EXIT_NO_DEVICE, "blkbench: no virtio-blk device\n");
	if (dev->features & RT_VIRTIO_FEATURE(VIRTIO_BLK_F_SIZE_MAX)) {
		uint32_t max =
		    rt_virtio_config32(dev, offsetof(struct virtio_blk_config, size_max));

		if (max / BLOCK * BLOCK < bs)
			bs = max < BLOCK ? BLOCK : max / BLOCK * BLOCK;
	}
	disk = blk.capacity * RT_VBLK_SECTOR;
	region = mib ? mib << 20 : disk / BLOCK * BLOCK;
	if (blk.ro || region == 0 || region > disk)
		fail(EXIT_REGION, "blkbench: region of %lu bytes on a %s disk of %lu bytes\n",
		     region, blk.ro ? "read-only" : "writable", disk);
	/* noirq: ask the device not to interrupt, and skip InterruptStatus/ACK (the runtime
	 * driver reads and acknowledges it after every request). */
	if (noirq)
		dev->vq[0].avail.flags = VRING_AVAIL_F_NO_INTERRUPT;
	con_printf("blkbench: disk bytes=%lu region=%lu bs=%lu rand=%lu flush=%d noirq=%d\n", disk,
	           region, bs, nrand, blk.flush, noirq);

	/* Sequential write: stamp each 4 KiB block of the request, write, and flush at the end. */
	reqs = 0;
	t0 = rdtsc();
	for (uint64_t off = 0; off < region; off += bs, reqs++) {
		uint32_t len = (uint32_t)(region - off < bs ? region - off : bs);

		for (uint32_t i = 0; i < len; i += BLOCK)
			*(uint64_t *)(buf + i) = stamp((off + i) / BLOCK);
		request(VIRTIO_BLK_T_OUT, off, len);
	}
	if (blk.flush && rt_vblk_flush(&blk) != VIRTIO_BLK_S_OK)
		fail(EXIT_REQUEST, "blkbench: flush failed\n");
	report("seqwrite", region, reqs, rdtsc() - t0, khz, false);

	/* Sequential read of the same region, stamps checked. */
	reqs = 0;
	t0 = rdtsc();
	for (uint64_t off = 0; off < region; off += bs, reqs++) {
		uint32_t len = (uint32_t)(region - off < bs ? region - off : bs);

		request(VIRTIO_BLK_T_IN, off, len);
		check(off, len);
	}
	report("seqread", region, reqs, rdtsc() - t0, khz, false);

	/* Random 4 KiB reads inside the region. */
	if (nrand) {
		uint64_t x = seed, blocks = region / BLOCK;

		t0 = rdtsc();
		for (uint64_t i = 0; i < nrand; i++) {
			uint64_t off = lcg_next(&x) % blocks * BLOCK;

			request(VIRTIO_BLK_T_IN, off, BLOCK);
			check(off, BLOCK);
		}
		report("randread", nrand * BLOCK, nrand, rdtsc() - t0, khz, true);
	}
	con_puts("blkbench: done");
}
