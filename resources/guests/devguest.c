/*
 * devguest: a guest for hearth's virtio tests. It prints "devguest: ready", finds the devices
 * announced by virtio_mmio.device=<size>@<addr>:<irq> tokens, then performs the actions named
 * on its command line, in order, and exits with status 0 when they run out. N counts block
 * devices from 0, in command-line order.
 *
 *   blk-pattern=N  write the pattern below to the first 64 KiB of block device N (direct
 *                  descriptors), flush (when offered), read it back (through an indirect
 *                  table when the device offers VIRTIO_RING_F_INDIRECT_DESC) and compare;
 *                  print "devguest: blk N pattern ok"
 *   blk-ro=N       device N must offer VIRTIO_BLK_F_RO and fail a write of sector 0 (with the
 *                  data just read from it) with VIRTIO_BLK_S_IOERR; print
 *                  "devguest: blk N ro ok", then "devguest: blk N sector0 <32 hex digits>"
 *                  (the first 16 bytes of sector 0)
 *   blk-seq=N      write sectors 0..63 of block device N one at a time, ~20 ms of TSC time
 *                  apart (2 GHz assumed), sector s filled with (s * 29 + i * 3 + 0x11) & 0xff,
 *                  flushing each (when offered); print "devguest: blk N seq S" after each
 *                  and "devguest: blk N seq done" at the end (for snapshots taken meanwhile)
 *   blk-id=N       print "devguest: blk N id <id>" (VIRTIO_BLK_T_GET_ID, up to 20 bytes)
 *   blk-size=N     print "devguest: blk N capacity <sectors>"
 *   blk-badreq=N   a read at the end, a read across the end, a 100-byte read (each must end
 *                  with IOERR) and type 0x1234 (UNSUPP), then a good read (OK); print
 *                  "devguest: blk N badreq ok"
 *   vcon=WORD      write "WORD\n" to port 0 of the first virtio-console (one buffer on
 *                  transmitq), then print "devguest: vcon sent" on the UART
 *   refuse-v1      negotiate the first device's features without VERSION_1: FEATURES_OK must
 *                  not stick; print "devguest: refuse-v1 ok", then reset the device
 *   list           print "devguest: virtio I id D at 0xBASE size 0xSIZE irq Q" per device
 *   exit=N         exit with status N (0..255)
 *   print=WORD     print "devguest: WORD"
 *
 * The pattern: byte i (0..511) of sector s (0..127) is (s * 31 + i * 7 + 0x5a) & 0xff.
 *
 * Exit statuses: 10 blk-pattern, 11 blk-ro, 12 blk-badreq, 13 refuse-v1 failed; 14 no such
 * device or its driver failed to start; 15 a request of blk-id failed; 20 and 21 come from the
 * runtime (a device did not complete a request / broke the protocol); 98 unknown action.
 * Tokens whose key contains a '.' (kernel-style parameters, virtio_mmio.device= among them)
 * are not actions.
 */
#include "virtio.h"

#define EXIT_PATTERN        10
#define EXIT_RO             11
#define EXIT_BADREQ         12
#define EXIT_REFUSE_V1      13
#define EXIT_NO_DEVICE      14
#define EXIT_REQUEST        15
#define EXIT_UNKNOWN_ACTION 98

#define PATTERN_SECTORS 128 /* 64 KiB */
#define PATTERN_BYTES   (PATTERN_SECTORS * RT_VBLK_SECTOR)

static struct rt_virtio_dev devs[RT_VIRTIO_MAX_DEVS];
static unsigned ndevs;

/* The driver state of devs[i]; `ready` is cleared when the device is reset. */
static struct {
	bool ready;
	struct rt_vblk blk;
	struct rt_vcon con;
} drv[RT_VIRTIO_MAX_DEVS];

/* Data buffers, not zeroed at boot (that would cost 16 K iterations of rep stosq). */
static uint8_t wbuf[PATTERN_BYTES] __attribute__((section(".noinit"), aligned(4096)));
static uint8_t rbuf[PATTERN_BYTES] __attribute__((section(".noinit"), aligned(4096)));

static _Noreturn void fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static _Noreturn void fail(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
	guest_exit(status);
}

/* The device table index of the n-th device with id `id`, started with its driver. */
static unsigned start_nth(uint32_t id, uint64_t n)
{
	uint64_t seen = 0;

	for (unsigned i = 0; i < ndevs; i++) {
		bool ok;

		if (devs[i].device_id != id || seen++ != n)
			continue;
		if (drv[i].ready)
			return i;
		ok = id == VIRTIO_ID_BLOCK ? rt_vblk_init(&drv[i].blk, &devs[i])
		                           : rt_vcon_init(&drv[i].con, &devs[i]);
		if (!ok)
			fail(EXIT_NO_DEVICE, "devguest: virtio %u (id %u) failed to start\n", i,
			     id);
		drv[i].ready = true;
		return i;
	}
	fail(EXIT_NO_DEVICE, "devguest: no %s device %lu\n",
	     id == VIRTIO_ID_BLOCK ? "blk" : "console", n);
}

static struct rt_vblk *blk(uint64_t n)
{
	return &drv[start_nth(VIRTIO_ID_BLOCK, n)].blk;
}

/*
 * Byte i of sector s is (s * 31 + i * 7 + 0x5a) & 0xff. With T[j] = (j * 7 + 0x5a) & 0xff,
 * sector s is T[o, o + 512) for o = (s * 41) & 0xff, because 41 * 7 = 287 = 31 (mod 256):
 * one table loop, then one rep movsb per sector.
 */
static void make_pattern(uint8_t *buf)
{
	static uint8_t table[256 + RT_VBLK_SECTOR];

	for (unsigned j = 0; j < sizeof(table); j++)
		table[j] = (uint8_t)(j * 7 + 0x5a);
	for (unsigned s = 0; s < PATTERN_SECTORS; s++)
		rt_copy(buf + s * RT_VBLK_SECTOR, table + ((s * 41) & 0xff), RT_VBLK_SECTOR);
}

#define SEQ_SECTORS 64
#define SEQ_GAP_TSC (20ULL * 2000000) /* ~20 ms at 2 GHz */

static uint64_t tsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static void blk_seq(uint64_t n)
{
	struct rt_vblk *b = blk(n);
	uint8_t st;

	if (b->ro || b->capacity < SEQ_SECTORS)
		fail(EXIT_PATTERN, "devguest: blk %lu seq: device is read-only or too small\n", n);
	for (unsigned s = 0; s < SEQ_SECTORS; s++) {
		uint64_t until = tsc() + SEQ_GAP_TSC;

		for (unsigned i = 0; i < RT_VBLK_SECTOR; i++)
			wbuf[i] = (uint8_t)(s * 29 + i * 3 + 0x11);
		st = rt_vblk_write(b, s, wbuf, 1, false);
		if (st == VIRTIO_BLK_S_OK && b->flush)
			st = rt_vblk_flush(b);
		if (st != VIRTIO_BLK_S_OK)
			fail(EXIT_PATTERN, "devguest: blk %lu seq %u: status %u\n", n, s, st);
		con_printf("devguest: blk %lu seq %u\n", n, s);
		while (tsc() < until)
			__asm__ volatile("pause");
	}
	con_printf("devguest: blk %lu seq done\n", n);
}

static void blk_pattern(uint64_t n)
{
	struct rt_vblk *b = blk(n);
	uint8_t st;

	if (b->ro || b->capacity < PATTERN_SECTORS)
		fail(EXIT_PATTERN,
		     "devguest: blk %lu pattern: device is read-only or below 64 KiB "
		     "(capacity %lu)\n",
		     n, b->capacity);
	make_pattern(wbuf);
	st = rt_vblk_write(b, 0, wbuf, PATTERN_SECTORS, false);
	if (st != VIRTIO_BLK_S_OK)
		fail(EXIT_PATTERN, "devguest: blk %lu pattern: write status %u\n", n, st);
	if (b->flush && (st = rt_vblk_flush(b)) != VIRTIO_BLK_S_OK)
		fail(EXIT_PATTERN, "devguest: blk %lu pattern: flush status %u\n", n, st);
	memset(rbuf, 0, PATTERN_BYTES);
	st = rt_vblk_read(b, 0, rbuf, PATTERN_SECTORS, true);
	if (st != VIRTIO_BLK_S_OK)
		fail(EXIT_PATTERN, "devguest: blk %lu pattern: read status %u\n", n, st);
	if (memcmp(wbuf, rbuf, PATTERN_BYTES) != 0) {
		unsigned i = 0;

		while (wbuf[i] == rbuf[i])
			i++;
		fail(EXIT_PATTERN,
		     "devguest: blk %lu pattern mismatch at byte %u: 0x%02x, expected "
		     "0x%02x\n",
		     n, i, rbuf[i], wbuf[i]);
	}
	con_printf("devguest: blk %lu pattern ok\n", n);
}

static void blk_ro(uint64_t n)
{
	struct rt_vblk *b = blk(n);
	char hex[33];
	uint8_t st;

	if (!b->ro)
		fail(EXIT_RO, "devguest: blk %lu does not offer RO\n", n);
	st = rt_vblk_read(b, 0, rbuf, 1, false);
	if (st != VIRTIO_BLK_S_OK)
		fail(EXIT_RO, "devguest: blk %lu ro: read status %u\n", n, st);
	st = rt_vblk_write(b, 0, rbuf, 1, false);
	if (st != VIRTIO_BLK_S_IOERR)
		fail(EXIT_RO, "devguest: blk %lu ro: write status %u, expected %u\n", n, st,
		     VIRTIO_BLK_S_IOERR);
	con_printf("devguest: blk %lu ro ok\n", n);
	for (unsigned i = 0; i < 16; i++) {
		hex[2 * i] = "0123456789abcdef"[rbuf[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[rbuf[i] & 15];
	}
	hex[32] = '\0';
	con_printf("devguest: blk %lu sector0 %s\n", n, hex);
}

static void blk_id(uint64_t n)
{
	char id[VIRTIO_BLK_ID_BYTES];
	uint8_t st = rt_vblk_get_id(blk(n), id);

	if (st != VIRTIO_BLK_S_OK)
		fail(EXIT_REQUEST, "devguest: blk %lu get-id status %u\n", n, st);
	con_printf("devguest: blk %lu id %.*s\n", n, (int)rt_strnlen(id, sizeof(id)), id);
}

static void blk_size(uint64_t n)
{
	con_printf("devguest: blk %lu capacity %lu\n", n, blk(n)->capacity);
}

static void blk_badreq(uint64_t n)
{
	struct rt_vblk *b = blk(n);
	const struct {
		const char *what;
		uint32_t type;
		uint64_t sector;
		uint32_t len;
		uint8_t expect;
	} reqs[] = {
	    {"read at the end", VIRTIO_BLK_T_IN, b->capacity, 512, VIRTIO_BLK_S_IOERR},
	    {"read across the end", VIRTIO_BLK_T_IN, b->capacity - 1, 1024, VIRTIO_BLK_S_IOERR},
	    {"100-byte read", VIRTIO_BLK_T_IN, 0, 100, VIRTIO_BLK_S_IOERR},
	    {"type 0x1234", 0x1234, 0, 512, VIRTIO_BLK_S_UNSUPP},
	    {"good read after them", VIRTIO_BLK_T_IN, 0, 512, VIRTIO_BLK_S_OK},
	};

	for (unsigned i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		uint8_t st =
		    rt_vblk_request(b, reqs[i].type, reqs[i].sector, rbuf, reqs[i].len, false);

		if (st != reqs[i].expect)
			fail(EXIT_BADREQ, "devguest: blk %lu badreq %s: status %u, expected %u\n",
			     n, reqs[i].what, st, reqs[i].expect);
	}
	con_printf("devguest: blk %lu badreq ok\n", n);
}

static void vcon(const struct token *word)
{
	static char line[256];
	struct rt_vcon *c = &drv[start_nth(VIRTIO_ID_CONSOLE, 0)].con;

	if (word->len >= sizeof(line))
		fail(EXIT_UNKNOWN_ACTION, "devguest: vcon word too long\n");
	rt_copy(line, word->s, word->len);
	line[word->len] = '\n';
	rt_vcon_write(c, line, word->len + 1);
	con_puts("devguest: vcon sent");
}

static void refuse_v1(void)
{
	struct rt_virtio_dev *d = &devs[0];

	if (ndevs == 0)
		fail(EXIT_NO_DEVICE, "devguest: refuse-v1: no device\n");
	drv[0].ready = false;
	if (rt_virtio_negotiate(d, ~RT_VIRTIO_FEATURE(VIRTIO_F_VERSION_1), true))
		fail(EXIT_REFUSE_V1, "devguest: refuse-v1: FEATURES_OK stuck with features 0x%lx\n",
		     d->features);
	rt_virtio_reset(d);
	con_puts("devguest: refuse-v1 ok");
}

static void list(void)
{
	for (unsigned i = 0; i < ndevs; i++)
		con_printf("devguest: virtio %u id %u at 0x%lx size 0x%lx irq %u\n", i,
		           devs[i].device_id, devs[i].base, devs[i].size, devs[i].irq);
}

static _Noreturn void unknown(const struct token *tok)
{
	fail(EXIT_UNKNOWN_ACTION, "devguest: unknown action %.*s\n", (int)tok->len, tok->s);
}

/* A kernel-style "module.param=value" (or "module.flag") token. */
static bool is_foreign_param(const struct token *tok)
{
	const char *eq = rt_memchr(tok->s, '=', tok->len);
	size_t key_len = eq ? (size_t)(eq - tok->s) : tok->len;

	return rt_memchr(tok->s, '.', key_len) != NULL;
}

static const struct {
	const char *key;
	void (*fn)(uint64_t n);
} blk_actions[] = {
    {"blk-pattern", blk_pattern}, {"blk-ro", blk_ro},         {"blk-id", blk_id},
    {"blk-size", blk_size},       {"blk-badreq", blk_badreq}, {"blk-seq", blk_seq},
};

static void run(const struct token *tok)
{
	struct token val;
	uint64_t n;

	for (unsigned i = 0; i < sizeof(blk_actions) / sizeof(blk_actions[0]); i++) {
		if (!rt_token_value(tok, blk_actions[i].key, &val))
			continue;
		if (!rt_parse_u64(&val, &n))
			unknown(tok);
		blk_actions[i].fn(n);
		return;
	}
	if (rt_token_value(tok, "vcon", &val)) {
		vcon(&val);
	} else if (rt_token_is(tok, "refuse-v1")) {
		refuse_v1();
	} else if (rt_token_is(tok, "list")) {
		list();
	} else if (rt_token_value(tok, "exit", &val)) {
		if (!rt_parse_u64(&val, &n) || n > 255)
			unknown(tok);
		guest_exit((int)n);
	} else if (rt_token_value(tok, "print", &val)) {
		con_printf("devguest: %.*s\n", (int)val.len, val.s);
	} else if (!is_foreign_param(tok)) {
		unknown(tok);
	}
}

void guest_main(struct hvm_start_info *si)
{
	const char *cmdline = rt_cmdline(si);
	const char *pos = cmdline, *end = cmdline + rt_strnlen(cmdline, RT_CMDLINE_MAX);
	struct token tok;

	con_puts("devguest: ready");
	ndevs = rt_virtio_discover(si, devs, RT_VIRTIO_MAX_DEVS);
	while (rt_next_token(&pos, end, &tok))
		run(&tok);
}
