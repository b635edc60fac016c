/* Host and manual clocks; tick <-> ns conversions in 128 bits (no overflow). */
#include "irqchip/clock.h"

#include <time.h>

#define NS_PER_SEC 1000000000ULL

static uint64_t host_ns(void *opaque)
{
	struct timespec ts;

	(void)opaque;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t host_tsc(void *opaque)
{
	(void)opaque;
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#else
	return host_ns(NULL);
#endif
}

void irqchip_host_clock(struct irqchip_clock *c, uint64_t tsc_hz)
{
	c->now_ns = host_ns;
	c->now_tsc = host_tsc;
	c->tsc_hz = tsc_hz;
	c->opaque = NULL;
}

static uint64_t manual_ns(void *opaque)
{
	return ((const struct irqchip_manual_clock *)opaque)->ns;
}

static uint64_t manual_tsc(void *opaque)
{
	return ((const struct irqchip_manual_clock *)opaque)->tsc;
}

void irqchip_manual_clock(struct irqchip_clock *c, struct irqchip_manual_clock *m, uint64_t tsc_hz)
{
	c->now_ns = manual_ns;
	c->now_tsc = manual_tsc;
	c->tsc_hz = tsc_hz;
	c->opaque = m;
}

uint64_t irqchip_ns_to_ticks(uint64_t ns, uint64_t hz)
{
	unsigned __int128 t = (unsigned __int128)ns * hz / NS_PER_SEC;

	return t > UINT64_MAX ? UINT64_MAX : (uint64_t)t;
}

uint64_t irqchip_ticks_to_ns(uint64_t ticks, uint64_t hz)
{
	unsigned __int128 ns;

	if (hz == 0)
		return UINT64_MAX;
	ns = ((unsigned __int128)ticks * NS_PER_SEC + hz - 1) / hz;
	return ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
}
