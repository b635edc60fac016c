/* The userspace chip set, run-loop side: what vCPU k's engine thread asks and tells. */
#include "irqchip/userspace_priv.h"

#include <errno.h>
#include <string.h>

static bool bad_cpu(const struct uirq *u, unsigned cpu)
{
	return cpu >= u->ncpus;
}

static uint64_t now_ns(const struct uirq *u)
{
	return u->clock.now_ns(u->clock.opaque);
}

static uint64_t now_tsc(const struct uirq *u)
{
	return u->clock.now_tsc(u->clock.opaque);
}

/* ExtINT (the PIC, outside the APIC's priority scheme) goes first, then the LAPIC's IRR. */
static int pending_locked(struct uirq *u, unsigned cpu)
{
	if (uirq_takes_extint(u, cpu))
		return pic_peek(&u->pic);
	return lapic_pending(&u->lapic[cpu]);
}

int uirq_pending(struct uirq *u, unsigned cpu)
{
	int v;

	if (bad_cpu(u, cpu))
		return -1;
	uirq_lock(u);
	v = pending_locked(u, cpu);
	uirq_unlock(u, (int)cpu);
	return v;
}

int uirq_ack(struct uirq *u, unsigned cpu)
{
	int v;

	if (bad_cpu(u, cpu))
		return -1;
	uirq_lock(u);
	if (uirq_takes_extint(u, cpu)) {
		u->lapic[cpu].extint_pending = false;
		v = pic_inta(&u->pic);
	} else {
		v = lapic_ack(&u->lapic[cpu]);
	}
	uirq_unlock(u, (int)cpu);
	return v;
}

bool uirq_take_nmi(struct uirq *u, unsigned cpu)
{
	bool n;

	if (bad_cpu(u, cpu))
		return false;
	uirq_lock(u);
	n = lapic_take_nmi(&u->lapic[cpu]);
	uirq_unlock(u, (int)cpu);
	return n;
}

bool uirq_nmi_pending(struct uirq *u, unsigned cpu)
{
	bool n;

	if (bad_cpu(u, cpu))
		return false;
	uirq_lock(u);
	n = u->lapic[cpu].nmi_pending;
	uirq_unlock(u, (int)cpu);
	return n;
}

unsigned uirq_take_startup(struct uirq *u, unsigned cpu, uint8_t *sipi_vector)
{
	unsigned r;

	if (bad_cpu(u, cpu))
		return 0;
	uirq_lock(u);
	r = lapic_take_startup(&u->lapic[cpu], sipi_vector);
	uirq_unlock(u, (int)cpu);
	return (r & LAPIC_STARTUP_INIT ? UIRQ_INIT : 0) | (r & LAPIC_STARTUP_SIPI ? UIRQ_SIPI : 0);
}

bool uirq_wakeup_pending(struct uirq *u, unsigned cpu)
{
	return uirq_wakeup_pending_blocked(u, cpu, false);
}

bool uirq_wakeup_pending_blocked(struct uirq *u, unsigned cpu, bool nmi_blocked)
{
	const struct lapic *l;
	bool w;

	if (bad_cpu(u, cpu))
		return false;
	uirq_lock(u);
	l = &u->lapic[cpu];
	w = pending_locked(u, cpu) >= 0 || (l->nmi_pending && !nmi_blocked) || l->init_pending ||
	    l->sipi_pending;
	uirq_unlock(u, (int)cpu);
	return w;
}

void uirq_tick(struct uirq *u, int cpu)
{
	uint64_t ns = now_ns(u), tsc = now_tsc(u);

	uirq_lock(u);
	for (unsigned k = 0; k < u->ncpus; k++)
		if (lapic_timer_update(&u->lapic[k], ns, tsc) & LAPIC_WAKE)
			u->wake |= 1u << k;
	pit_update(&u->pit);
	uirq_unlock(u, cpu >= 0 && (unsigned)cpu < u->ncpus ? cpu : -1);
}

uint64_t uirq_next_deadline(struct uirq *u, int cpu)
{
	uint64_t ns = now_ns(u), tsc = now_tsc(u), d = UINT64_MAX, t;

	if (cpu >= 0 && (unsigned)cpu >= u->ncpus)
		return UINT64_MAX;
	uirq_lock(u);
	for (unsigned k = 0; k < u->ncpus; k++) {
		if (cpu >= 0 && k != (unsigned)cpu)
			continue;
		t = lapic_timer_next(&u->lapic[k], ns, tsc);
		if (t < d)
			d = t;
	}
	/* vCPU 0 keeps the PIT's time: one waker, not every vCPU, per PIT period. */
	if (cpu <= 0) {
		t = pit_next_deadline(&u->pit);
		if (t < d)
			d = t;
	}
	uirq_unlock(u, cpu);
	return d;
}

int uirq_lapic_read(struct uirq *u, unsigned cpu, uint64_t offset, void *data, unsigned size)
{
	uint32_t v;

	if (size >= 1 && size <= 4)
		memset(data, 0, size);
	if (bad_cpu(u, cpu) || size == 0 || size > 4 || offset >= LAPIC_MMIO_SIZE ||
	    (offset & 3) + size > 4)
		return -EINVAL;
	uirq_lock(u);
	v = lapic_mmio_read(&u->lapic[cpu], (uint32_t)offset & ~3u);
	uirq_unlock(u, (int)cpu);
	v >>= 8 * (offset & 3);
	memcpy(data, &v, size);
	return 0;
}

int uirq_lapic_write(struct uirq *u, unsigned cpu, uint64_t offset, const void *data, unsigned size)
{
	uint32_t v;

	/* The SDM defines only aligned 32-bit stores; others are dropped. */
	if (bad_cpu(u, cpu) || size != 4 || offset >= LAPIC_MMIO_SIZE || (offset & 3))
		return -EINVAL;
	memcpy(&v, data, 4);
	uirq_lock(u);
	lapic_mmio_write(&u->lapic[cpu], (uint32_t)offset, v);
	uirq_unlock(u, (int)cpu);
	return 0;
}

bool uirq_lapic_mmio_base(struct uirq *u, unsigned cpu, uint64_t *base)
{
	bool on;

	if (bad_cpu(u, cpu))
		return false;
	uirq_lock(u);
	on = lapic_hw_enabled(&u->lapic[cpu]) && !lapic_x2apic(&u->lapic[cpu]);
	*base = u->lapic[cpu].base & APIC_BASE_ADDR;
	uirq_unlock(u, (int)cpu);
	return on;
}

static int msr_result(int r)
{
	if (r == LAPIC_MSR_GP)
		return UIRQ_MSR_GP;
	return r == LAPIC_MSR_NOT_APIC ? UIRQ_MSR_NOT_MINE : 0;
}

int uirq_rdmsr(struct uirq *u, unsigned cpu, uint32_t msr, uint64_t *val)
{
	int r;

	*val = 0;
	if (bad_cpu(u, cpu))
		return UIRQ_MSR_NOT_MINE;
	uirq_lock(u);
	r = lapic_rdmsr(&u->lapic[cpu], msr, val);
	uirq_unlock(u, (int)cpu);
	return msr_result(r);
}

int uirq_wrmsr(struct uirq *u, unsigned cpu, uint32_t msr, uint64_t val)
{
	int r;

	if (bad_cpu(u, cpu))
		return UIRQ_MSR_NOT_MINE;
	uirq_lock(u);
	r = lapic_wrmsr(&u->lapic[cpu], msr, val);
	uirq_unlock(u, (int)cpu);
	return msr_result(r);
}

void uirq_lint1(struct uirq *u, unsigned cpu)
{
	if (bad_cpu(u, cpu))
		return;
	uirq_lock(u);
	if (lapic_lint(&u->lapic[cpu], 1) & LAPIC_WAKE)
		u->wake |= 1u << cpu;
	uirq_unlock(u, -1);
}
