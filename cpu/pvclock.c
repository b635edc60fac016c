/* kvmclock records for engines that are not KVM (cpu/pvclock.h). */
#include "pvclock.h"

#include <string.h>

void pvclock_scale(uint64_t tsc_hz, uint32_t *mul, int8_t *shift)
{
	uint64_t num = 1000000000ULL, den = tsc_hz;
	int s = 0;

	/* ns per tick = num / den, brought into [0.5, 1) by powers of two (the shift): the
	 * fraction then has 32 significant bits. */
	while (den > 2 * num) {
		num <<= 1;
		s--;
	}
	while (num >= den) {
		den <<= 1;
		s++;
	}
	*mul = (uint32_t)(((unsigned __int128)num << 32) / den);
	*shift = (int8_t)s;
}

bool pvclock_write_time(const struct guest_memory *gm, uint64_t gpa, uint64_t tsc_hz, uint64_t tsc,
                        uint64_t ns)
{
	uint8_t rec[PVCLOCK_SIZE] = {0};
	uint32_t version = 2, mul;
	int8_t shift;

	if ((gpa & 0xfff) > 0x1000 - PVCLOCK_SIZE || !gm_range_ok(gm, gpa, PVCLOCK_SIZE) || !tsc_hz)
		return false;
	pvclock_scale(tsc_hz, &mul, &shift);
	memcpy(rec, &version, 4);
	memcpy(rec + 8, &tsc, 8);
	memcpy(rec + 16, &ns, 8);
	memcpy(rec + 24, &mul, 4);
	memcpy(rec + 28, &shift, 1);
	rec[29] = PVCLOCK_TSC_STABLE;
	return gm_write(gm, gpa, rec, sizeof(rec)) == 0;
}

bool pvclock_write_wall(const struct guest_memory *gm, uint64_t gpa, uint64_t boot_ns)
{
	uint32_t rec[3] = {2, (uint32_t)(boot_ns / 1000000000ULL),
	                   (uint32_t)(boot_ns % 1000000000ULL)};

	if (!gm_range_ok(gm, gpa, PVCLOCK_WALL_SIZE))
		return false;
	return gm_write(gm, gpa, rec, sizeof(rec)) == 0;
}
