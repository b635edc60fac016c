/* kvmclock records (cpu/pvclock.c): the scale against exact arithmetic, the record layout,
 * and bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/process/process.h"
#include "cpu/pvclock.h"
#include "vmm/guest_memory.h"

/* What a guest computes from the record (Linux's pvclock_scale_delta). */
static uint64_t scaled(uint64_t ticks, uint32_t mul, int8_t shift)
{
	if (shift < 0)
		ticks >>= -shift;
	else
		ticks <<= shift;
	return (uint64_t)(((unsigned __int128)ticks * mul) >> 32);
}

static void test_scale_matches_the_rate(void **state)
{
	static const uint64_t rates[] = {1000000ULL,    100000000ULL,  999999999ULL,
	                                 1000000000ULL, 2096029000ULL, 3000000000ULL,
	                                 4294967296ULL, 5900000000ULL};

	(void)state;
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		uint32_t mul;
		int8_t shift;
		uint64_t ticks = rates[i] * 10; /* ten seconds */
		uint64_t ns;

		pvclock_scale(rates[i], &mul, &shift);
		assert_true(mul >= 0x80000000u); /* as precise as 32 bits allow */
		ns = scaled(ticks, mul, shift);
		/* within 1 ppm of 10 s */
		assert_true(ns <= 10000000000ULL && ns >= 10000000000ULL - 10000);
	}
}

static void test_records(void **state)
{
	struct guest_memory gm;
	uint8_t *ram = calloc(1, 0x4000);
	uint32_t u32, mul;
	uint64_t u64;
	int8_t shift;

	(void)state;
	gm_wrap(&gm, ram, 0x4000);
	assert_true(pvclock_write_time(&gm, 0x1040, 2096029000ULL, 123456789ULL, 555ULL));
	memcpy(&u32, ram + 0x1040, 4);
	assert_int_equal(u32 & 1, 0); /* an even version: not being updated */
	memcpy(&u64, ram + 0x1048, 8);
	assert_int_equal(u64, 123456789ULL);
	memcpy(&u64, ram + 0x1050, 8);
	assert_int_equal(u64, 555ULL);
	pvclock_scale(2096029000ULL, &mul, &shift);
	memcpy(&u32, ram + 0x1058, 4);
	assert_int_equal(u32, mul);
	assert_int_equal((int8_t)ram[0x105c], shift);
	assert_int_equal(ram[0x105d], PVCLOCK_TSC_STABLE);
	assert_true(pvclock_write_wall(&gm, 0x2000, 1700000000123456789ULL));
	memcpy(&u32, ram + 0x2004, 4);
	assert_int_equal(u32, 1700000000u);
	memcpy(&u32, ram + 0x2008, 4);
	assert_int_equal(u32, 123456789u);
	/* Outside RAM, across a page, no rate: refused, nothing written. */
	memset(ram, 0, 0x4000);
	assert_false(pvclock_write_time(&gm, 0x3ff0, 1000000000ULL, 1, 1));
	assert_false(pvclock_write_time(&gm, 0x0fe8, 1000000000ULL, 1, 1));
	assert_false(pvclock_write_time(&gm, 0x1000, 0, 1, 1));
	assert_false(pvclock_write_time(&gm, UINT64_MAX - 8, 1000000000ULL, 1, 1));
	assert_false(pvclock_write_wall(&gm, 0x3ffc, 1));
	for (size_t i = 0; i < 0x4000; i++)
		assert_int_equal(ram[i], 0);
	free(ram);
}

/* The process engine's measured TSC rate (process.c), whose two samples may be seconds
 * apart: no overflow in ticks * 1e9. */
static void test_tsc_rate_over_a_long_load(void **state)
{
	(void)state;
	assert_int_equal(proc_tsc_hz(600000, 200000), 3000000000ULL);
	assert_int_equal(proc_tsc_hz(3000000000ULL * 10, 10000000000ULL), 3000000000ULL);
	assert_int_equal(proc_tsc_hz(2096029000ULL * 120, 120000000000ULL), 2096029000ULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scale_matches_the_rate),
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_tsc_rate_over_a_long_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
