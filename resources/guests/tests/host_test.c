/*
 * Host-side tests of the guest runtime's port-free logic: the MP table parser (with tables
 * written at their real guest-physical addresses, mapped into this process), the memory map
 * summary, the banner text, command-line tokens, the string helpers, and the virtio code
 * against a fake register block in plain memory (discovery, negotiation, queue setup, the
 * chains of virtio-blk requests).
 *
 * Built and run by `make -C resources/guests check`. The console is replaced by a capture
 * buffer (rt/console.c does port I/O and is covered by booting the guests instead).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "rt.h"
#include "virtio.h"

/* The parser itself, for its static byte_sum. */
#include "../rt/mptable.c"

/* Low memory as the guest sees it: [0x9f000, 0x100000). */
#define LOW_BASE 0x9f000UL
#define LOW_END  0x100000UL

static int passed, failed;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (cond) {                                                                        \
			passed++;                                                                  \
		} else {                                                                           \
			failed++;                                                                  \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
		}                                                                                  \
	} while (0)

/* ---- console stand-ins ---- */

static char out[4096];
static size_t out_len;

void con_append_raw(const char *s, size_t n)
{
	if (n > sizeof(out) - 1 - out_len)
		n = sizeof(out) - 1 - out_len;
	memcpy(out + out_len, s, n);
	out_len += n;
	out[out_len] = '\0';
}

void con_put_u64(uint64_t v)
{
	char buf[24];

	con_append_raw(buf, (size_t)snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v));
}

void con_flush(void) {}

void con_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	con_append_raw(buf, strlen(buf));
}

_Noreturn void guest_exit(int status)
{
	fprintf(stderr, "unexpected guest_exit(%d), console: %s\n", status, out);
	exit(1);
}

static void out_reset(void)
{
	out_len = 0;
	out[0] = '\0';
}

/* ---- building MP tables ---- */

static uint8_t *pa(uint64_t addr)
{
	return (uint8_t *)(uintptr_t)addr;
}

static void fix_checksum(uint8_t *p, size_t len, size_t at)
{
	uint8_t sum = 0;

	p[at] = 0;
	for (size_t i = 0; i < len; i++)
		sum += p[i];
	p[at] = (uint8_t)-sum;
}

static void write_floating(uint64_t at, uint32_t config, uint8_t feature1)
{
	uint8_t *f = pa(at);

	memset(f, 0, 16);
	memcpy(f, "_MP_", 4);
	memcpy(f + 4, &config, 4);
	f[8] = 1;
	f[9] = 4;
	f[11] = feature1;
	fix_checksum(f, 16, 10);
}

struct cfg {
	uint8_t *base;
	size_t len;
	uint16_t count;
};

static void cfg_begin(struct cfg *c, uint64_t at)
{
	c->base = pa(at);
	memset(c->base, 0, 44);
	memcpy(c->base, "PCMP", 4);
	c->base[6] = 4;
	memcpy(c->base + 8, "HEARTH  ", 8);
	c->len = 44;
	c->count = 0;
}

static void cfg_cpu(struct cfg *c, uint8_t apic_id, uint8_t flags)
{
	uint8_t *e = c->base + c->len;

	memset(e, 0, 20);
	e[0] = 0;
	e[1] = apic_id;
	e[2] = 0x14;
	e[3] = flags;
	c->len += 20;
	c->count++;
}

static void cfg_other(struct cfg *c, uint8_t type)
{
	uint8_t *e = c->base + c->len;

	memset(e, 0, 8);
	e[0] = type;
	c->len += 8;
	c->count++;
}

static void cfg_end(struct cfg *c, bool with_count)
{
	uint16_t len = (uint16_t)c->len, count = with_count ? c->count : 0;

	memcpy(c->base + 4, &len, 2);
	memcpy(c->base + 34, &count, 2);
	fix_checksum(c->base, c->len, 7);
}

/* A hearth-like table: CPUs first, then bus, I/O APIC, 24 interrupts, 2 local interrupts. */
static void hearth_table(uint64_t float_at, uint64_t cfg_at, int enabled, int disabled)
{
	struct cfg c;

	cfg_begin(&c, cfg_at);
	for (int i = 0; i < enabled + disabled; i++)
		cfg_cpu(&c, (uint8_t)i, i < enabled ? (i == 0 ? 3 : 1) : 0);
	cfg_other(&c, 1);
	cfg_other(&c, 2);
	for (int i = 0; i < 24; i++)
		cfg_other(&c, 3);
	cfg_other(&c, 4);
	cfg_other(&c, 4);
	cfg_end(&c, true);
	write_floating(float_at, (uint32_t)cfg_at, 0);
}

static void clear_low(void)
{
	memset(pa(LOW_BASE), 0, LOW_END - LOW_BASE);
}

/* ---- start_info ---- */

static struct hvm_start_info *si;
static struct hvm_memmap_table_entry *map;

static void set_map(uint64_t ram_size)
{
	uint64_t low = ram_size < (3ULL << 30) ? ram_size : 3ULL << 30;
	uint32_t n = 0;

	map[n++] = (struct hvm_memmap_table_entry){0, 0x9fc00, 1, 0};
	map[n++] = (struct hvm_memmap_table_entry){0x9fc00, 0x100000 - 0x9fc00, 2, 0};
	map[n++] = (struct hvm_memmap_table_entry){0x100000, low - 0x100000, 1, 0};
	if (ram_size > low)
		map[n++] = (struct hvm_memmap_table_entry){4ULL << 30, ram_size - low, 1, 0};
	si->memmap_entries = n;
}

static void reset_start_info(void)
{
	/* Put the start_info and memory map where nothing else is written: 0x9f000. */
	si = (struct hvm_start_info *)pa(LOW_BASE);
	map = (struct hvm_memmap_table_entry *)pa(LOW_BASE + 0x100);
	memset(si, 0, sizeof(*si));
	si->magic = HVM_START_MAGIC;
	si->version = 1;
	si->memmap_paddr = (uint64_t)(uintptr_t)map;
	set_map(128ULL << 20);
}

/* ---- tests ---- */

static uint8_t naive_sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

static void test_byte_sum(void)
{
	static uint8_t buf[4200];
	bool ok = true;

	srand(1);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand();
	for (size_t off = 0; off < 8; off++)
		for (size_t n = 0; n + off <= sizeof(buf); n += (n < 300 ? 1 : 37))
			ok &= byte_sum(buf + off, n) == naive_sum(buf + off, n);
	CHECK(ok);
	memset(buf, 0xff, sizeof(buf)); /* the largest lane values */
	ok = true;
	for (size_t n = 0; n <= sizeof(buf); n += 8)
		ok &= byte_sum(buf, n) == naive_sum(buf, n);
	CHECK(ok);
}

static void test_mp(void)
{
	struct cfg c;
	uint8_t ids[8];

	clear_low();
	reset_start_info();
	CHECK(rt_mp_cpu_count(si) == -1);

	/* hearth's layout: floating pointer at 0x9fc00, table right after it. */
	hearth_table(0x9fc00, 0x9fc10, 1, 0);
	CHECK(rt_mp_cpu_count(si) == 1);
	hearth_table(0x9fc00, 0x9fc10, 3, 2);
	CHECK(rt_mp_cpu_count(si) == 3);
	memset(ids, 0xee, sizeof(ids));
	CHECK(rt_mp_cpus(si, ids, 8) == 3);
	CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 2 && ids[3] == 0xee);
	memset(ids, 0xee, sizeof(ids));
	CHECK(rt_mp_cpus(si, ids, 2) == 3); /* the count, but only `max` IDs */
	CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 0xee);

	/* A bad floating-pointer checksum: ignored, and nothing else to find. */
	pa(0x9fc00)[10] ^= 1;
	CHECK(rt_mp_cpu_count(si) == -1);

	/* The BIOS area is searched second, at any 16-byte boundary. */
	hearth_table(0xfa5c0, 0xfb000, 4, 0);
	CHECK(rt_mp_cpu_count(si) == 4);
	pa(0x9fc00)[10] ^= 1; /* the EBDA one is valid again and wins */
	CHECK(rt_mp_cpu_count(si) == 3);

	/* A bad configuration-table checksum. */
	clear_low();
	reset_start_info();
	hearth_table(0x9fc00, 0x9fc10, 2, 0);
	pa(0x9fc10)[7] ^= 1;
	CHECK(rt_mp_cpu_count(si) == -1);

	/* A bad configuration-table signature. */
	hearth_table(0x9fc00, 0x9fc10, 2, 0);
	pa(0x9fc10)[0] = 'X';
	CHECK(rt_mp_cpu_count(si) == -1);

	/* entry_count left at 0 (qboot does this): the length alone bounds the walk. */
	cfg_begin(&c, 0x9fc10);
	cfg_cpu(&c, 4, 3);
	cfg_cpu(&c, 9, 0); /* disabled: no ID stored */
	cfg_cpu(&c, 7, 1);
	cfg_other(&c, 1);
	cfg_end(&c, false);
	write_floating(0x9fc00, 0x9fc10, 0);
	CHECK(rt_mp_cpu_count(si) == 2);
	memset(ids, 0xee, sizeof(ids));
	CHECK(rt_mp_cpus(si, ids, 8) == 2);
	CHECK(ids[0] == 4 && ids[1] == 7 && ids[2] == 0xee);

	/* Processor entries after the others still count; an unknown type ends the walk. */
	cfg_begin(&c, 0x9fc10);
	cfg_other(&c, 1);
	cfg_cpu(&c, 0, 1);
	cfg_other(&c, 3);
	cfg_cpu(&c, 1, 1);
	cfg_other(&c, 9);
	cfg_cpu(&c, 2, 1);
	cfg_end(&c, true);
	write_floating(0x9fc00, 0x9fc10, 0);
	CHECK(rt_mp_cpu_count(si) == 2);

	/* A processor entry cut off by the table length is not counted. */
	cfg_begin(&c, 0x9fc10);
	cfg_cpu(&c, 0, 1);
	cfg_cpu(&c, 1, 1);
	c.len -= 4;
	cfg_end(&c, true);
	write_floating(0x9fc00, 0x9fc10, 0);
	CHECK(rt_mp_cpu_count(si) == 1);

	/* A default configuration (no table, feature byte 1 set) has two CPUs. */
	clear_low();
	reset_start_info();
	write_floating(0x9fc00, 0, 5);
	CHECK(rt_mp_cpu_count(si) == 2);
	memset(ids, 0xee, sizeof(ids));
	CHECK(rt_mp_cpus(si, ids, 8) == 2);
	CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 0xee);

	/* A configuration table outside the search ranges is read only if it is in RAM. */
	clear_low();
	reset_start_info();
	hearth_table(0x9fc00, 0x9f800, 2, 0);
	CHECK(rt_mp_cpu_count(si) == 2);
	map[0].size = 0x9f000; /* RAM now ends below the table */
	CHECK(rt_mp_cpu_count(si) == -1);
	map[0].size = 0x9f900; /* RAM ends inside it */
	CHECK(rt_mp_cpu_count(si) == -1);
	si->version = 0; /* no memory map at all */
	CHECK(rt_mp_cpu_count(si) == -1);
	reset_start_info();

	/* A floating pointer whose length runs past the end of the range is ignored. */
	clear_low();
	reset_start_info();
	hearth_table(0x9fff0, 0x9fc10, 1, 0);
	pa(0x9fff0)[8] = 2;
	fix_checksum(pa(0x9fff0), 16, 10);
	CHECK(rt_mp_cpu_count(si) == -1);
}

static void test_memmap_and_banner(void)
{
	struct mem_summary m;
	static char cmdline[] = "console=ttyS0 x=1";

	clear_low();
	reset_start_info();
	rt_mem_summary(si, &m);
	CHECK(m.entries == 3);
	CHECK(m.ram_bytes == 0x9fc00 + (128ULL << 20) - 0x100000);

	set_map(5ULL << 30);
	rt_mem_summary(si, &m);
	CHECK(m.entries == 4);
	CHECK(m.ram_bytes == (5ULL << 30) - (0x100000 - 0x9fc00));

	si->version = 0;
	rt_mem_summary(si, &m);
	CHECK(m.entries == 0 && m.ram_bytes == 0);

	reset_start_info();
	CHECK(rt_in_ram(si, 0x100000, 4096));
	CHECK(rt_in_ram(si, 0x9fc00 - 16, 16));
	CHECK(!rt_in_ram(si, 0x9fc00 - 16, 17));
	CHECK(!rt_in_ram(si, 0xa0000, 1));
	CHECK(!rt_in_ram(si, 128ULL << 20, 1));

	out_reset();
	rt_print_banner("hello from hearth: ", si);
	CHECK(strcmp(out, "hello from hearth: 127 MiB RAM (3 map entries), ? CPU(s), "
	                  "cmdline \"\"\n") == 0);

	hearth_table(0x9fc00, 0x9fc10, 2, 1);
	si->cmdline_paddr = (uint64_t)(uintptr_t)cmdline;
	out_reset();
	rt_print_banner("testguest: ", si);
	CHECK(strcmp(out, "testguest: 127 MiB RAM (3 map entries), 2 CPU(s), "
	                  "cmdline \"console=ttyS0 x=1\"\n") == 0);
	CHECK(strcmp(rt_cmdline(si), cmdline) == 0);
	si->cmdline_paddr = 0;
	CHECK(strcmp(rt_cmdline(si), "") == 0);
}

static bool tok_eq(const struct token *t, const char *s)
{
	return t->len == strlen(s) && memcmp(t->s, s, t->len) == 0;
}

static void test_tokens(void)
{
	const char *line = "  exit=3\tprint=a=b  banner\nreadport=0x3F8  ";
	const char *pos = line, *end = line + strlen(line);
	struct token t, v;
	uint64_t n;

	CHECK(rt_next_token(&pos, end, &t) && tok_eq(&t, "exit=3"));
	CHECK(rt_token_value(&t, "exit", &v) && tok_eq(&v, "3"));
	CHECK(!rt_token_value(&t, "exi", &v));
	CHECK(!rt_token_is(&t, "exit"));
	CHECK(rt_next_token(&pos, end, &t) && rt_token_value(&t, "print", &v) && tok_eq(&v, "a=b"));
	CHECK(rt_next_token(&pos, end, &t) && rt_token_is(&t, "banner"));
	CHECK(!rt_token_value(&t, "banner", &v));
	CHECK(rt_next_token(&pos, end, &t) && rt_token_value(&t, "readport", &v) &&
	      rt_parse_u64(&v, &n) && n == 0x3f8);
	CHECK(!rt_next_token(&pos, end, &t));
	CHECK(!rt_next_token(&pos, end, &t));

	/* The end bound holds even without a NUL. */
	pos = "abc def";
	CHECK(rt_next_token(&pos, pos + 2, &t) && tok_eq(&t, "ab"));

	/* Numbers. */
	t.s = "255", t.len = 3;
	CHECK(rt_parse_u64(&t, &n) && n == 255);
	t.s = "0x", t.len = 2;
	CHECK(!rt_parse_u64(&t, &n));
	t.s = "", t.len = 0;
	CHECK(!rt_parse_u64(&t, &n));
	t.s = "12a", t.len = 3;
	CHECK(!rt_parse_u64(&t, &n));
	t.s = "0xffffffffffffffff", t.len = 18;
	CHECK(rt_parse_u64(&t, &n) && n == UINT64_MAX);
	t.s = "0x10000000000000000", t.len = 19;
	CHECK(!rt_parse_u64(&t, &n));
	t.s = "18446744073709551616", t.len = 20;
	CHECK(!rt_parse_u64(&t, &n));
}

static void test_strings(void)
{
	char buf[64] = "hello, world";

	CHECK(rt_strnlen(buf, 100) == 12);
	CHECK(rt_strnlen(buf, 5) == 5);
	CHECK(rt_strnlen(buf, 0) == 0);
	CHECK(rt_strnlen("", (size_t)-1) == 0);
	CHECK(rt_memchr(buf, 'o', 12) == buf + 4);
	CHECK(rt_memchr(buf, 'o', 4) == NULL);
	CHECK(rt_memchr(buf, 'd', 12) == buf + 11);
	CHECK(rt_memchr(buf, 'h', 0) == NULL);
	CHECK(memcmp("abc", "abd", 3) < 0 && memcmp("abd", "abc", 3) > 0);
	CHECK(memcmp("abc", "abc", 3) == 0 && memcmp("a", "b", 0) == 0);
	memmove(buf + 2, buf, 12);
	CHECK(memcmp(buf, "hehello, world", 14) == 0);
	memmove(buf, buf + 2, 12);
	CHECK(memcmp(buf, "hello, world", 12) == 0);
	memset(buf, 'x', 3);
	CHECK(memcmp(buf, "xxxlo", 5) == 0);
	rt_copy(buf, "abc", 3);
	CHECK(memcmp(buf, "abclo", 5) == 0);
}

/* ---- virtio against a fake register block: plain memory, so reads return what was last
 * written (or what the test put there) ---- */

#define FAKE_BASE  0x50000000UL
#define FAKE_SLOTS 5

static uint32_t *reg(unsigned slot, uint32_t off)
{
	return (uint32_t *)(FAKE_BASE + slot * 0x1000UL + off);
}

static void fake_slot(unsigned slot, uint32_t magic, uint32_t version, uint32_t id)
{
	*reg(slot, VIRTIO_MMIO_MAGIC_VALUE) = magic;
	*reg(slot, VIRTIO_MMIO_VERSION) = version;
	*reg(slot, VIRTIO_MMIO_DEVICE_ID) = id;
}

static bool parse(const char *text, struct rt_virtio_param *p)
{
	struct token t = {text, strlen(text)};

	return rt_virtio_parse_param(&t, p);
}

static void test_virtio_param(void)
{
	struct rt_virtio_param p;

	CHECK(parse("4K@0xc0000000:5", &p) && p.size == 4096 && p.base == 0xc0000000 && p.irq == 5);
	CHECK(parse("512@0xfeb02e00:47", &p) && p.size == 512 && p.base == 0xfeb02e00 &&
	      p.irq == 47);
	CHECK(parse("0x1000@3221229568:6:2", &p) && p.size == 4096 && p.base == 0xc0001000 &&
	      p.irq == 6);
	CHECK(parse("1m@0x10000000:7", &p) && p.size == 1 << 20);
	CHECK(parse("1G@0x80000000:7", &p) && p.size == 1ULL << 30);
	CHECK(!parse("4K@0xc0000000", &p));
	CHECK(!parse("4K0xc0000000:5", &p));
	CHECK(!parse("@0xc0000000:5", &p));
	CHECK(!parse("4K@:5", &p));
	CHECK(!parse("4K@0xc0000000:", &p));
	CHECK(!parse("4K@0xc0000000:5:", &p));
	CHECK(!parse("4X@0xc0000000:5", &p));
	CHECK(!parse("K@0xc0000000:5", &p));
	CHECK(!parse("4K@0xc0000000:5x", &p));
	CHECK(!parse("255@0xc0000000:5", &p)); /* smaller than the registers */
	CHECK(!parse("8K@0xfffff000:5", &p));  /* past 4 GiB */
	CHECK(!parse("4K@0x100000000:5", &p));
	CHECK(!parse("4K@0xc0000000:4294967296", &p));
	CHECK(!parse("17179869184G@0x1000:5", &p)); /* the size overflows */
}

static void test_virtio_discover(void)
{
	static char cmdline[512];
	static struct rt_virtio_dev devs[3];
	uint64_t b = FAKE_BASE;

	memset((void *)FAKE_BASE, 0, FAKE_SLOTS * 0x1000);
	fake_slot(0, RT_VIRTIO_MAGIC, 2, VIRTIO_ID_BLOCK);
	fake_slot(1, RT_VIRTIO_MAGIC, 2, 0);               /* empty */
	fake_slot(2, 0x12345678, 2, VIRTIO_ID_BLOCK);      /* no device */
	fake_slot(3, RT_VIRTIO_MAGIC, 1, VIRTIO_ID_BLOCK); /* legacy */
	fake_slot(4, RT_VIRTIO_MAGIC, 2, VIRTIO_ID_CONSOLE);
	snprintf(cmdline, sizeof(cmdline),
	         "a=1 virtio_mmio.device=4K@0x%lx:5 virtio_mmio.device=4K@0x%lx:6 "
	         "virtio_mmio.device=4K@0x%lx:7 virtio_mmio.device=4K@0x%lx:8 "
	         "virtio_mmio.device=4K@%lu:9 virtio_mmio.device=4K@0x%lx "
	         "virtio_mmio.device=512@0x%lx:10",
	         b, b + 0x1000, b + 0x2000, b + 0x3000, b + 0x4000, b, b + 0x4000);
	reset_start_info();
	si->cmdline_paddr = (uint64_t)(uintptr_t)cmdline;
	out_reset();
	CHECK(rt_virtio_discover(si, devs, 3) == 3);
	CHECK(devs[0].base == b && devs[0].size == 4096 && devs[0].irq == 5 &&
	      devs[0].device_id == VIRTIO_ID_BLOCK);
	CHECK(devs[1].base == b + 0x4000 && devs[1].irq == 9 &&
	      devs[1].device_id == VIRTIO_ID_CONSOLE);
	CHECK(devs[2].base == b + 0x4000 && devs[2].size == 512 && devs[2].irq == 10);
	CHECK(strstr(out, "virtio: 0x50002000: magic 0x12345678 version 2, skipped\n") != NULL);
	CHECK(strstr(out, "virtio: 0x50003000: magic 0x74726976 version 1, skipped\n") != NULL);
	CHECK(strstr(out, "virtio: malformed virtio_mmio.device=4K@0x50000000\n") != NULL);
	out_reset();
	CHECK(rt_virtio_discover(si, devs, 2) == 2);
	CHECK(strstr(out, "virtio: more than 2 devices, virtio_mmio.device=512@") != NULL);
	si->cmdline_paddr = 0;
}

/* The descriptor a chain element ends up in, following `next` from the head. */
static const struct vring_desc *chain_at(const struct vring_desc *table, uint16_t head, unsigned k)
{
	const struct vring_desc *d = &table[head];

	while (k--)
		d = &table[d->next];
	return d;
}

/* Complete the next chain the driver will add, before it is added (the spin then ends at
 * once): the used element names the head the driver is about to use. */
static void precomplete(struct rt_vq *vq, uint32_t len)
{
	vq->used.ring[vq->last_used & (vq->size - 1)] =
	    (struct vring_used_elem){vq->free_head, len};
	vq->used.idx = (uint16_t)(vq->last_used + 1);
}

static void test_virtio_blk(void)
{
	static struct rt_virtio_dev dev;
	static struct rt_vblk blk;
	static uint8_t data[1024];
	struct rt_vq *vq = &dev.vq[0];
	const struct vring_desc *d;
	uint16_t head;
	uint32_t id, len;

	memset((void *)FAKE_BASE, 0, FAKE_SLOTS * 0x1000);
	fake_slot(0, RT_VIRTIO_MAGIC, 2, VIRTIO_ID_BLOCK);
	memset(&dev, 0, sizeof(dev));
	dev.base = FAKE_BASE;
	dev.size = 4096;
	dev.device_id = VIRTIO_ID_BLOCK;
	/* The same word answers for both feature halves: bits 0 and 32 (VERSION_1), 5 (RO),
	 * 9 (FLUSH) and 28 (INDIRECT_DESC), so the offer reads 0x10000221_10000221. */
	*reg(0, VIRTIO_MMIO_DEVICE_FEATURES) = 1u | 1u << 5 | 1u << 9 | 1u << 28;
	*reg(0, VIRTIO_MMIO_QUEUE_NUM_MAX) = 8;
	*reg(0, VIRTIO_MMIO_CONFIG) = 2048; /* capacity */
	*reg(0, VIRTIO_MMIO_INTERRUPT_STATUS) = 1;
	out_reset();
	CHECK(rt_vblk_init(&blk, &dev));
	CHECK(blk.capacity == 2048 && blk.ro && blk.flush && blk.indirect &&
	      blk.max_bytes == 64 * 1024);
	CHECK(dev.features == (1ULL << 32 | 1u << 5 | 1u << 9 | 1u << 28));
	CHECK(*reg(0, VIRTIO_MMIO_STATUS) ==
	      (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
	       VIRTIO_CONFIG_S_DRIVER_OK));
	CHECK(*reg(0, VIRTIO_MMIO_DRIVER_FEATURES) == 1); /* the high half, written last */
	CHECK(*reg(0, VIRTIO_MMIO_QUEUE_NUM) == 8 && vq->size == 8);
	CHECK(*reg(0, VIRTIO_MMIO_QUEUE_READY) == 1);
	CHECK(*reg(0, VIRTIO_MMIO_QUEUE_DESC_LOW) == (uint32_t)(uintptr_t)vq->desc &&
	      *reg(0, VIRTIO_MMIO_QUEUE_DESC_HIGH) == (uint32_t)((uintptr_t)vq->desc >> 32));
	CHECK(*reg(0, VIRTIO_MMIO_QUEUE_AVAIL_LOW) == (uint32_t)(uintptr_t)&vq->avail);
	CHECK(*reg(0, VIRTIO_MMIO_QUEUE_USED_LOW) == (uint32_t)(uintptr_t)&vq->used);
	CHECK((uintptr_t)vq->desc % 16 == 0 && (uintptr_t)&vq->used % 4 == 0);

	/* A read: header, data (device-writable), status (device-writable), from desc 0. */
	precomplete(vq, 513);
	*reg(0, VIRTIO_MMIO_INTERRUPT_ACK) = 0;
	CHECK(rt_vblk_request(&blk, VIRTIO_BLK_T_IN, 7, data, 512, false) == 0xff);
	CHECK(vq->avail.idx == 1 && vq->avail.ring[0] == 0 && vq->last_used == 1);
	CHECK(*reg(0, VIRTIO_MMIO_QUEUE_NOTIFY) == 0 && *reg(0, VIRTIO_MMIO_INTERRUPT_ACK) == 1);
	d = chain_at(vq->desc, 0, 0);
	CHECK(d->len == 16 && d->flags == VRING_DESC_F_NEXT);
	CHECK(((struct virtio_blk_outhdr *)(uintptr_t)d->addr)->type == VIRTIO_BLK_T_IN &&
	      ((struct virtio_blk_outhdr *)(uintptr_t)d->addr)->sector == 7);
	d = chain_at(vq->desc, 0, 1);
	CHECK(d->addr == (uintptr_t)data && d->len == 512 &&
	      d->flags == (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE));
	d = chain_at(vq->desc, 0, 2);
	CHECK(d->len == 1 && d->flags == VRING_DESC_F_WRITE && d->next == 0);

	/* Chains rotate through the table and wrap: 3 + 3 + 3 descriptors in a table of 8. */
	precomplete(vq, 1);
	rt_vblk_request(&blk, VIRTIO_BLK_T_OUT, 1, data, 1024, false);
	CHECK(vq->avail.ring[1] == 3 && chain_at(vq->desc, 3, 1)->flags == VRING_DESC_F_NEXT);
	precomplete(vq, 1);
	rt_vblk_request(&blk, VIRTIO_BLK_T_IN, 2, data, 1024, false);
	head = vq->avail.ring[2];
	CHECK(head == 6 && vq->desc[6].next == 7 && vq->desc[7].next == 0 &&
	      chain_at(vq->desc, 6, 2)->len == 1 && vq->free_head == 1);

	/* A flush is two descriptors. */
	precomplete(vq, 1);
	rt_vblk_flush(&blk);
	head = vq->avail.ring[3];
	CHECK(head == 1 && vq->desc[1].flags == VRING_DESC_F_NEXT && vq->desc[2].len == 1 &&
	      vq->desc[2].flags == VRING_DESC_F_WRITE);

	/* The indirect variant: one descriptor pointing at a table of three. */
	precomplete(vq, 1);
	rt_vblk_request(&blk, VIRTIO_BLK_T_IN, 0, data, 512, true);
	head = vq->avail.ring[4];
	CHECK(head == 3 && vq->desc[3].flags == VRING_DESC_F_INDIRECT && vq->desc[3].len == 48 &&
	      vq->desc[3].addr % 16 == 0 && vq->free_head == 4);
	d = (const struct vring_desc *)(uintptr_t)vq->desc[3].addr;
	CHECK(d[0].len == 16 && d[0].flags == VRING_DESC_F_NEXT && d[0].next == 1);
	CHECK(d[1].len == 512 && d[1].flags == (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE) &&
	      d[1].next == 2);
	CHECK(d[2].len == 1 && d[2].flags == VRING_DESC_F_WRITE);

	/* Without a new used element there is nothing to take. */
	CHECK(!rt_vq_get_used(vq, &id, &len));
	CHECK(strcmp(out, "") == 0);

	/* No VERSION_1 on offer: the driver refuses the device and sets FAILED. */
	*reg(0, VIRTIO_MMIO_DEVICE_FEATURES) = 1u << 5;
	CHECK(!rt_vblk_init(&blk, &dev));
	CHECK(*reg(0, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FAILED);
	CHECK(strstr(out, "does not offer VERSION_1") != NULL);

	/* SIZE_MAX caps the data per request, in whole sectors. (A reset clears QueueReady.) */
	*reg(0, VIRTIO_MMIO_DEVICE_FEATURES) = 1u | 1u << VIRTIO_BLK_F_SIZE_MAX;
	*reg(0, VIRTIO_MMIO_CONFIG + 8) = 4096 + 100;
	*reg(0, VIRTIO_MMIO_QUEUE_READY) = 0;
	CHECK(rt_vblk_init(&blk, &dev) && blk.max_bytes == 4096 && !blk.ro && !blk.indirect);
}

int main(void)
{
	void *low = mmap((void *)LOW_BASE, LOW_END - LOW_BASE, PROT_READ | PROT_WRITE,
	                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	void *fake = mmap((void *)FAKE_BASE, FAKE_SLOTS * 0x1000, PROT_READ | PROT_WRITE,
	                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (low != (void *)LOW_BASE) {
		perror("mmap [0x9f000, 0x100000)");
		return 1;
	}
	if (fake != (void *)FAKE_BASE) {
		perror("mmap fake virtio registers");
		return 1;
	}
	test_byte_sum();
	test_mp();
	test_memmap_and_banner();
	test_tokens();
	test_strings();
	test_virtio_param();
	test_virtio_discover();
	test_virtio_blk();
	printf("guests: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
