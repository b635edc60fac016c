/*
 * Local APIC timer (SDM 10.5.4): one-shot, periodic and TSC-deadline. The counter runs at the
 * bus clock (1 GHz: one count per ns, CPUID leaf 0x40000010) divided by TDCR. Nothing ticks in
 * the background: the count is computed from the clock, and expiries fire when the owner calls
 * lapic_timer_update (at the deadline lapic_timer_next reports, or on a register access).
 */
#include "irqchip/lapic_priv.h"

enum { MODE_ONESHOT, MODE_PERIODIC, MODE_TSC, MODE_RESERVED };

static unsigned timer_mode(const struct lapic *l)
{
	unsigned m = (l->lvt[LVT_TIMER] >> 17) & 3;

	return m == MODE_RESERVED ? MODE_ONESHOT : m;
}

/* TDCR bits 3,1,0: 000 = /2 ... 110 = /128, 111 = /1. */
unsigned lapic_tdcr_shift(uint32_t tdcr)
{
	unsigned v = ((tdcr >> 1) & 4) | (tdcr & 3);

	return (v + 1) & 7;
}

static uint64_t period_ns(const struct lapic_timer *t)
{
	return (uint64_t)t->initial << t->shift;
}

void lapic_timer_reset(struct lapic *l)
{
	struct lapic_timer *t = &l->timer;

	t->armed = false;
	t->initial = 0;
	t->shift = lapic_tdcr_shift(0);
	t->start_ns = t->fire_ns = 0;
	t->deadline = 0;
}

uint32_t lapic_timer_current(const struct lapic *l, uint64_t now_ns)
{
	const struct lapic_timer *t = &l->timer;
	uint64_t elapsed, period;

	if (!t->armed || timer_mode(l) == MODE_TSC)
		return 0;
	elapsed = now_ns - t->start_ns;
	period = period_ns(t);
	if (timer_mode(l) == MODE_PERIODIC)
		elapsed %= period;
	else if (elapsed >= period)
		return 0;
	return t->initial - (uint32_t)(elapsed >> t->shift);
}

unsigned lapic_timer_update(struct lapic *l, uint64_t now_ns, uint64_t now_tsc)
{
	struct lapic_timer *t = &l->timer;
	uint64_t period;

	if (timer_mode(l) == MODE_TSC) {
		if (!t->deadline || now_tsc < t->deadline)
			return 0;
		t->deadline = 0; /* fires once, then disarms (SDM 10.5.4.1) */
		return lapic_local_deliver(l, LVT_TIMER);
	}
	if (!t->armed || now_ns < t->fire_ns)
		return 0;
	if (timer_mode(l) == MODE_PERIODIC) {
		/* Next period boundary after now, counted from the start: no drift. Several
		 * missed periods coalesce into one interrupt, as IRR holds one per vector. */
		period = period_ns(t);
		t->fire_ns = t->start_ns + ((now_ns - t->start_ns) / period + 1) * period;
	} else {
		t->armed = false;
	}
	return lapic_local_deliver(l, LVT_TIMER);
}

uint64_t lapic_timer_next(const struct lapic *l, uint64_t now_ns, uint64_t now_tsc)
{
	const struct lapic_timer *t = &l->timer;
	uint64_t d;

	if (l->lvt[LVT_TIMER] & LVT_MASKED)
		return UINT64_MAX; /* an expiry would deliver nothing */
	if (timer_mode(l) == MODE_TSC) {
		if (!t->deadline)
			return UINT64_MAX;
		if (t->deadline <= now_tsc)
			return now_ns;
		d = irqchip_ticks_to_ns(t->deadline - now_tsc, l->env->clock->tsc_hz);
		return d > UINT64_MAX - now_ns ? UINT64_MAX : now_ns + d;
	}
	return t->armed ? t->fire_ns : UINT64_MAX;
}

/* Fire what expired under the old settings before a register changes them. */
static void catch_up(struct lapic *l, uint64_t now_ns)
{
	lapic_timer_update(l, now_ns, lapic_now_tsc(l));
}

void lapic_timer_write_initial(struct lapic *l, uint32_t val)
{
	struct lapic_timer *t = &l->timer;
	uint64_t now = lapic_now_ns(l);

	if (timer_mode(l) == MODE_TSC)
		return; /* ignored in TSC-deadline mode */
	catch_up(l, now);
	t->initial = val;
	t->armed = val != 0; /* 0 stops the timer */
	if (!t->armed)
		return;
	t->shift = lapic_tdcr_shift(l->tdcr);
	t->start_ns = now;
	t->fire_ns = now + period_ns(t);
}

void lapic_timer_write_lvt(struct lapic *l, uint32_t val)
{
	struct lapic_timer *t = &l->timer;
	unsigned old = timer_mode(l);

	catch_up(l, lapic_now_ns(l));
	l->lvt[LVT_TIMER] = val;
	/* A write that changes the mode disarms the timer (SDM 10.5.4.1). */
	if (timer_mode(l) != old) {
		t->armed = false;
		t->deadline = 0;
	}
}

/* A new divisor applies from now on: the count keeps its value and runs at the new rate. */
void lapic_timer_write_tdcr(struct lapic *l, uint32_t val)
{
	struct lapic_timer *t = &l->timer;
	uint64_t now = lapic_now_ns(l), period;
	uint32_t done;

	catch_up(l, now);
	l->tdcr = val;
	if (!t->armed || timer_mode(l) == MODE_TSC) {
		t->shift = lapic_tdcr_shift(val);
		return;
	}
	done = t->initial - lapic_timer_current(l, now);
	t->shift = lapic_tdcr_shift(val);
	t->start_ns = now - ((uint64_t)done << t->shift);
	period = period_ns(t);
	if (timer_mode(l) == MODE_PERIODIC)
		t->fire_ns = t->start_ns + ((now - t->start_ns) / period + 1) * period;
	else
		t->fire_ns = t->start_ns + period;
}

/* Reads 0 and ignores writes outside TSC-deadline mode (SDM 10.5.4.1). */
uint64_t lapic_timer_get_deadline(const struct lapic *l)
{
	return timer_mode(l) == MODE_TSC ? l->timer.deadline : 0;
}

void lapic_timer_set_deadline(struct lapic *l, uint64_t tsc)
{
	if (timer_mode(l) != MODE_TSC)
		return;
	l->timer.deadline = tsc;
	/* A deadline already past fires now. */
	lapic_timer_update(l, lapic_now_ns(l), lapic_now_tsc(l));
}
