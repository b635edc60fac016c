/*
 * KVM's paravirtual clock (kvmclock), for engines that are not KVM: the records a guest asks
 * for with MSR_KVM_SYSTEM_TIME(_NEW) and MSR_KVM_WALL_CLOCK(_NEW) (the KVM API's msr.rst).
 * A guest that finds KVM's CPUID leaves may use them; where the TSC is the host's, runs at
 * a constant rate and is not virtualized (the process engine), one record written when the
 * guest enables it stays true, and says so with the TSC-stable flag.
 */
#ifndef HEARTH_PVCLOCK_H
#define HEARTH_PVCLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/guest_memory.h"

#define MSR_KVM_WALL_CLOCK      0x11
#define MSR_KVM_SYSTEM_TIME     0x12
#define MSR_KVM_WALL_CLOCK_NEW  0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01

#define PVCLOCK_TSC_STABLE 0x01
#define PVCLOCK_SIZE       32 /* struct pvclock_vcpu_time_info */
#define PVCLOCK_WALL_SIZE  12 /* struct pvclock_wall_clock */

/* The scale that turns TSC ticks at `tsc_hz` into nanoseconds: ns = ((ticks << shift, or
 * >> -shift) * mul) >> 32, with mul as large as fits (precision). tsc_hz > 0. */
void pvclock_scale(uint64_t tsc_hz, uint32_t *mul, int8_t *shift);

/* Write the vCPU time record at `gpa`: at TSC `tsc`, the guest's system time is `ns`.
 * False when the 32 bytes are not guest RAM within one page (nothing is written). */
bool pvclock_write_time(const struct guest_memory *gm, uint64_t gpa, uint64_t tsc_hz, uint64_t tsc,
                        uint64_t ns);

/* Write the wall clock record at `gpa`: the real time at system time 0, in ns since the
 * epoch. False when it is not guest RAM (nothing is written). */
bool pvclock_write_wall(const struct guest_memory *gm, uint64_t gpa, uint64_t boot_ns);

#endif
