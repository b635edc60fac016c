/*
 * The time source of the userspace chips: monotonic nanoseconds for the LAPIC timer and the
 * PIT, the guest TSC for TSC-deadline mode. Injectable so that tests drive time explicitly.
 */
#ifndef HEARTH_IRQCHIP_CLOCK_H
#define HEARTH_IRQCHIP_CLOCK_H

#include <stdint.h>

struct irqchip_clock {
	uint64_t (*now_ns)(void *opaque);
	uint64_t (*now_tsc)(void *opaque);
	uint64_t tsc_hz; /* nonzero */
	void *opaque;
};

/* CLOCK_MONOTONIC and rdtsc: the clock of an engine whose guest reads the host TSC. */
void irqchip_host_clock(struct irqchip_clock *c, uint64_t tsc_hz);

/* A clock that moves only when told (unit tests, deterministic replays): set `ns` and `tsc`. */
struct irqchip_manual_clock {
	uint64_t ns, tsc;
};
void irqchip_manual_clock(struct irqchip_clock *c, struct irqchip_manual_clock *m, uint64_t tsc_hz);

/* Whole ticks of a `hz` clock in `ns` nanoseconds (rounded down). */
uint64_t irqchip_ns_to_ticks(uint64_t ns, uint64_t hz);
/* The fewest nanoseconds in which `ticks` ticks of a `hz` clock elapse (rounded up),
 * UINT64_MAX when that does not fit. */
uint64_t irqchip_ticks_to_ns(uint64_t ticks, uint64_t hz);

#endif
