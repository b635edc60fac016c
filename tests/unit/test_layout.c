/* Guest memory map (vmm/layout.c) and bounds-checked guest memory (vmm/guest_memory.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/guest_memory.h"
#include "vmm/layout.h"

static void expect_region(const struct mem_region *r, uint64_t addr, uint64_t size, uint32_t type)
{
	assert_int_equal(r->addr, addr);
	assert_int_equal(r->size, size);
	assert_int_equal(r->type, type);
}

/* Every map starts with low RAM up to the EBDA and the reserved [EBDA, 1 MiB). */
static void expect_low_part(const struct mem_region *map)
{
	expect_region(&map[0], 0, LAYOUT_EBDA_START, MEM_RAM);
	expect_region(&map[1], LAYOUT_EBDA_START, LAYOUT_KERNEL_START - LAYOUT_EBDA_START,
	              MEM_RESERVED);
}

/* No entry may touch the device gap [3 GiB, 4 GiB); entries are sorted and disjoint. */
static void expect_no_gap_overlap(const struct mem_region *map, int n)
{
	for (int i = 0; i < n; i++) {
		uint64_t end = map[i].addr + map[i].size;

		assert_true(end <= LAYOUT_GAP_START || map[i].addr >= LAYOUT_GAP_END);
		if (i > 0)
			assert_true(map[i - 1].addr + map[i - 1].size <= map[i].addr);
	}
}

static void test_map_4m(void **state)
{
	struct mem_region map[LAYOUT_MAX_REGIONS];
	int n = layout_memory_map(4 * MIB, map, LAYOUT_MAX_REGIONS);

	(void)state;
	assert_int_equal(n, 3);
	expect_low_part(map);
	expect_region(&map[2], LAYOUT_KERNEL_START, 3 * MIB, MEM_RAM);
	expect_no_gap_overlap(map, n);
	assert_int_equal(layout_low_ram(4 * MIB), 4 * MIB);
	assert_int_equal(layout_high_ram(4 * MIB), 0);
}

static void test_map_128m(void **state)
{
	struct mem_region map[LAYOUT_MAX_REGIONS];
	int n = layout_memory_map(128 * MIB, map, LAYOUT_MAX_REGIONS);

	(void)state;
	assert_int_equal(n, 3);
	expect_low_part(map);
	expect_region(&map[2], LAYOUT_KERNEL_START, 127 * MIB, MEM_RAM);
	expect_no_gap_overlap(map, n);
}

static void test_map_3g(void **state)
{
	struct mem_region map[LAYOUT_MAX_REGIONS];
	int n = layout_memory_map(3 * GIB, map, LAYOUT_MAX_REGIONS);

	(void)state;
	assert_int_equal(n, 3);
	expect_low_part(map);
	expect_region(&map[2], LAYOUT_KERNEL_START, 3 * GIB - MIB, MEM_RAM);
	expect_no_gap_overlap(map, n);
	assert_int_equal(layout_low_ram(3 * GIB), 3 * GIB);
	assert_int_equal(layout_high_ram(3 * GIB), 0);
}

static void test_map_3g_plus_page(void **state)
{
	struct mem_region map[LAYOUT_MAX_REGIONS];
	int n = layout_memory_map(3 * GIB + 4096, map, LAYOUT_MAX_REGIONS);

	(void)state;
	assert_int_equal(n, 4);
	expect_low_part(map);
	expect_region(&map[2], LAYOUT_KERNEL_START, 3 * GIB - MIB, MEM_RAM);
	expect_region(&map[3], LAYOUT_HIGH_RAM_START, 4096, MEM_RAM);
	expect_no_gap_overlap(map, n);
	assert_int_equal(layout_low_ram(3 * GIB + 4096), 3 * GIB);
	assert_int_equal(layout_high_ram(3 * GIB + 4096), 4096);
}

static void test_map_8g(void **state)
{
	struct mem_region map[LAYOUT_MAX_REGIONS];
	int n = layout_memory_map(8 * GIB, map, LAYOUT_MAX_REGIONS);
	uint64_t ram = 0;

	(void)state;
	assert_int_equal(n, 4);
	expect_low_part(map);
	expect_region(&map[2], LAYOUT_KERNEL_START, 3 * GIB - MIB, MEM_RAM);
	expect_region(&map[3], 4 * GIB, 5 * GIB, MEM_RAM);
	expect_no_gap_overlap(map, n);
	for (int i = 0; i < n; i++)
		if (map[i].type == MEM_RAM)
			ram += map[i].size;
	/* All RAM but the reserved EBDA..1 MiB window appears as RAM. */
	assert_int_equal(ram, 8 * GIB - (LAYOUT_KERNEL_START - LAYOUT_EBDA_START));
}

static void test_map_too_small_array(void **state)
{
	struct mem_region map[LAYOUT_MAX_REGIONS];

	(void)state;
	memset(map, 0xa5, sizeof(map));
	assert_int_equal(layout_memory_map(8 * GIB, map, 3), -1);
	assert_int_equal(layout_memory_map(128 * MIB, map, 3), 3);
}

/* A guest memory built by hand: small low RAM and small high RAM over one buffer. */
#define T_LOW  (64 * KIB)
#define T_HIGH (16 * KIB)

struct hand_gm {
	struct guest_memory gm;
	uint8_t *buf;
};

static int hand_gm_setup(void **state)
{
	struct hand_gm *h = calloc(1, sizeof(*h));

	if (!h)
		return -1;
	h->buf = calloc(1, T_LOW + T_HIGH);
	if (!h->buf) {
		free(h);
		return -1;
	}
	h->gm.host = h->buf;
	h->gm.size = T_LOW + T_HIGH;
	h->gm.low_size = T_LOW;
	h->gm.high_size = T_HIGH;
	*state = h;
	return 0;
}

static int hand_gm_teardown(void **state)
{
	struct hand_gm *h = *state;

	free(h->buf);
	free(h);
	return 0;
}

static void test_gm_low_edges(void **state)
{
	struct hand_gm *h = *state;
	const struct guest_memory *gm = &h->gm;

	assert_true(gm_range_ok(gm, 0, T_LOW));
	assert_true(gm_range_ok(gm, T_LOW - 16, 16));  /* ends exactly at low_size */
	assert_false(gm_range_ok(gm, T_LOW - 16, 17)); /* one byte past */
	assert_false(gm_range_ok(gm, T_LOW, 1));
	assert_false(gm_range_ok(gm, 0, T_LOW + 1));
	assert_ptr_equal(gm_ptr(gm, 0, 1), h->buf);
	assert_ptr_equal(gm_ptr(gm, T_LOW - 1, 1), h->buf + T_LOW - 1);
	assert_null(gm_ptr(gm, T_LOW - 1, 2));
}

static void test_gm_gap(void **state)
{
	struct hand_gm *h = *state;
	const struct guest_memory *gm = &h->gm;

	/* Between low RAM and 4 GiB nothing is RAM: neither above low_size nor in the gap. */
	assert_false(gm_range_ok(gm, T_LOW + 4096, 1));
	assert_false(gm_range_ok(gm, LAYOUT_GAP_START, 1));
	assert_false(gm_range_ok(gm, LAYOUT_GAP_END - 1, 1));
	assert_false(gm_range_ok(gm, LAYOUT_IOAPIC_ADDR, 4));
	/* A range starting in the gap and running into high RAM is not one region. */
	assert_false(gm_range_ok(gm, LAYOUT_HIGH_RAM_START - 1, 2));
	/* Nor is one spanning low RAM, the gap and high RAM. */
	assert_false(gm_range_ok(gm, 0, LAYOUT_HIGH_RAM_START + 1));
	assert_null(gm_ptr(gm, LAYOUT_GAP_START, 1));
}

static void test_gm_high(void **state)
{
	struct hand_gm *h = *state;
	const struct guest_memory *gm = &h->gm;
	uint8_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, outb[8];

	assert_true(gm_range_ok(gm, LAYOUT_HIGH_RAM_START, T_HIGH));
	assert_true(gm_range_ok(gm, LAYOUT_HIGH_RAM_START + T_HIGH - 1, 1));
	assert_false(gm_range_ok(gm, LAYOUT_HIGH_RAM_START + T_HIGH - 1, 2));
	assert_false(gm_range_ok(gm, LAYOUT_HIGH_RAM_START + T_HIGH, 1));
	assert_ptr_equal(gm_ptr(gm, LAYOUT_HIGH_RAM_START, 1), h->buf + T_LOW);
	assert_ptr_equal(gm_ptr(gm, LAYOUT_HIGH_RAM_START + 100, 8), h->buf + T_LOW + 100);

	assert_int_equal(gm_write(gm, LAYOUT_HIGH_RAM_START + 100, in, sizeof(in)), 0);
	assert_memory_equal(h->buf + T_LOW + 100, in, sizeof(in));
	assert_int_equal(gm_read(gm, LAYOUT_HIGH_RAM_START + 100, outb, sizeof(outb)), 0);
	assert_memory_equal(outb, in, sizeof(in));
	assert_int_equal(gm_fill(gm, LAYOUT_HIGH_RAM_START + 100, 0, 4), 0);
	assert_int_equal(h->buf[T_LOW + 100], 0);
	assert_int_equal(h->buf[T_LOW + 104], 5);

	/* Failed accesses report -1 and touch nothing. */
	assert_int_equal(gm_write(gm, LAYOUT_HIGH_RAM_START + T_HIGH - 4, in, sizeof(in)), -1);
	assert_int_equal(h->buf[T_LOW + T_HIGH - 4], 0);
	assert_int_equal(gm_fill(gm, T_LOW - 4, 0xff, 8), -1);
	assert_int_equal(h->buf[T_LOW - 4], 0);
	assert_int_equal(gm_read(gm, LAYOUT_GAP_START, outb, 1), -1);
}

static void test_gm_overflow(void **state)
{
	struct hand_gm *h = *state;
	const struct guest_memory *gm = &h->gm;

	assert_false(gm_range_ok(gm, UINT64_MAX, 1));
	assert_false(gm_range_ok(gm, UINT64_MAX, 2)); /* wraps to 0 */
	assert_false(gm_range_ok(gm, 1, UINT64_MAX)); /* wraps to 0 */
	assert_false(gm_range_ok(gm, LAYOUT_HIGH_RAM_START + 1, UINT64_MAX));
	assert_false(gm_range_ok(gm, UINT64_MAX - 15, 32));
	assert_null(gm_ptr(gm, UINT64_MAX, 2));
}

static void test_gm_len0(void **state)
{
	struct hand_gm *h = *state;
	const struct guest_memory *gm = &h->gm;

	assert_true(gm_range_ok(gm, 0, 0));
	assert_true(gm_range_ok(gm, T_LOW - 1, 0));
	assert_true(gm_range_ok(gm, T_LOW, 0)); /* empty range ending at low_size */
	assert_true(gm_range_ok(gm, LAYOUT_HIGH_RAM_START, 0));
	assert_false(gm_range_ok(gm, LAYOUT_GAP_START, 0)); /* an empty range in the gap */
	assert_false(gm_range_ok(gm, UINT64_MAX, 0));
	assert_false(gm_range_ok(gm, LAYOUT_HIGH_RAM_START + T_HIGH + 1, 0));
}

static void test_gm_wrap(void **state)
{
	struct guest_memory gm;
	uint8_t buf[4096];

	(void)state;
	gm_wrap(&gm, buf, sizeof(buf));
	assert_ptr_equal(gm.host, buf);
	assert_int_equal(gm.size, sizeof(buf));
	assert_int_equal(gm.low_size, sizeof(buf));
	assert_int_equal(gm.high_size, 0);
	assert_true(gm_range_ok(&gm, 0, sizeof(buf)));
	assert_false(gm_range_ok(&gm, 0, sizeof(buf) + 1));
	assert_false(gm_range_ok(&gm, LAYOUT_HIGH_RAM_START, 1));
}

/* gm_load and gm_zero (the loaders' copies: through the memfd's pwrite and a punched hole
 * where there is a memfd, memcpy and memset otherwise) leave exactly what gm_write and
 * gm_fill would: every byte inside the range written, none outside it, the file and the
 * mapping alike, at page-unaligned edges. */
static void check_load_and_zero(struct guest_memory *gm)
{
	enum { LEN = 300 * 1024, AT = 0x10123, ZAT = 0x12345, ZLEN = 200 * 1024 };
	uint8_t *src = malloc(LEN), *back = malloc(LEN + 2);

	assert_non_null(src);
	assert_non_null(back);
	for (unsigned i = 0; i < LEN; i++)
		src[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(gm_fill(gm, 0, 0xee, 0x80000), 0); /* not zero: gm_zero must clear */
	assert_int_equal(gm_load(gm, AT, src, LEN), 0);
	assert_int_equal(gm_read(gm, AT - 1, back, LEN + 2), 0);
	assert_int_equal(back[0], 0xee);
	assert_memory_equal(back + 1, src, LEN);
	assert_int_equal(back[LEN + 1], 0xee);
	assert_int_equal(gm_zero(gm, ZAT, ZLEN), 0);
	assert_int_equal(gm_read(gm, ZAT - 1, back, ZLEN + 2), 0);
	assert_int_equal(back[0], src[ZAT - 1 - AT]);
	for (unsigned i = 1; i <= ZLEN; i++)
		if (back[i] != 0)
			fail_msg("byte 0x%x of the zeroed range is 0x%x", ZAT + i - 1, back[i]);
	assert_int_equal(back[ZLEN + 1], src[ZAT + ZLEN - AT]);
	if (gm->fd >= 0) { /* the file says the same as the mapping */
		uint8_t b[2];

		assert_int_equal(pread(gm->fd, b, 2, ZAT + ZLEN - 1), 2);
		assert_int_equal(b[0], 0);
		assert_int_equal(b[1], src[ZAT + ZLEN - AT]);
	}
	/* A range not all RAM is refused, and nothing is written. */
	assert_int_equal(gm_load(gm, gm->low_size - 4, src, 8), -1);
	assert_int_equal(gm_zero(gm, gm->low_size - 4, 8), -1);
	assert_int_equal(gm_zero(gm, LAYOUT_GAP_START, 4096), -1);
	free(src);
	free(back);
}

static void test_gm_load_and_zero_shared(void **state)
{
	struct guest_memory gm;

	(void)state;
	assert_int_equal(gm_init_shared(&gm, 4 << 20), 0);
	assert_true(gm.fd >= 0);
	check_load_and_zero(&gm);
	gm_destroy(&gm);
}

static void test_gm_load_and_zero_anonymous(void **state)
{
	struct guest_memory gm;

	(void)state;
	assert_int_equal(gm_init(&gm, 4 << 20), 0);
	check_load_and_zero(&gm);
	gm_destroy(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_map_4m),
	    cmocka_unit_test(test_map_128m),
	    cmocka_unit_test(test_map_3g),
	    cmocka_unit_test(test_map_3g_plus_page),
	    cmocka_unit_test(test_map_8g),
	    cmocka_unit_test(test_map_too_small_array),
	    cmocka_unit_test_setup_teardown(test_gm_low_edges, hand_gm_setup, hand_gm_teardown),
	    cmocka_unit_test_setup_teardown(test_gm_gap, hand_gm_setup, hand_gm_teardown),
	    cmocka_unit_test_setup_teardown(test_gm_high, hand_gm_setup, hand_gm_teardown),
	    cmocka_unit_test_setup_teardown(test_gm_overflow, hand_gm_setup, hand_gm_teardown),
	    cmocka_unit_test_setup_teardown(test_gm_len0, hand_gm_setup, hand_gm_teardown),
	    cmocka_unit_test(test_gm_wrap),
	    cmocka_unit_test(test_gm_load_and_zero_shared),
	    cmocka_unit_test(test_gm_load_and_zero_anonymous),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
