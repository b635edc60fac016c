/* Local APIC: reset state, priority, acceptance, INTA, EOI, destination matching. */
#include "irqchip/lapic_priv.h"

#include <string.h>

void lapic_reset_regs(struct lapic *l)
{
	l->tpr = 0;
	l->ldr = 0;
	l->dfr = 0xffffffffu;
	l->svr = 0xff;
	l->esr = l->esr_pending = 0;
	l->icr_lo = l->icr_hi = 0;
	for (unsigned i = 0; i < LVT_COUNT; i++)
		l->lvt[i] = LVT_MASKED;
	l->tdcr = 0;
	memset(l->irr, 0, sizeof(l->irr));
	memset(l->isr, 0, sizeof(l->isr));
	memset(l->tmr, 0, sizeof(l->tmr));
	l->extint_pending = false;
	lapic_timer_reset(l);
	/* In x2APIC mode the logical ID is derived from the x2APIC ID (SDM 10.12.10.2). */
	if (lapic_x2apic(l))
		l->ldr = ((l->id >> 4) << 16) | (1u << (l->id & 0xf));
}

void lapic_init(struct lapic *l, const struct lapic_env *env, unsigned index, uint32_t id, bool bsp)
{
	memset(l, 0, sizeof(*l));
	l->env = env;
	l->index = index;
	l->id = id;
	l->base = LAPIC_DEFAULT_BASE | APIC_BASE_EN | (bsp ? APIC_BASE_BSP : 0);
	lapic_reset_regs(l);
	if (bsp) {
		l->lvt[LVT_LINT0] = APIC_DM_EXTINT << 8;
		l->lvt[LVT_LINT1] = APIC_DM_NMI << 8;
	}
	/* Application processors wait for INIT-SIPI (SDM 8.4.1). */
	l->wait_sipi = !bsp;
}

bool lapic_hw_enabled(const struct lapic *l)
{
	return l->base & APIC_BASE_EN;
}

bool lapic_sw_enabled(const struct lapic *l)
{
	return lapic_hw_enabled(l) && (l->svr & APIC_SVR_ENABLE);
}

bool lapic_x2apic(const struct lapic *l)
{
	return (l->base & (APIC_BASE_EN | APIC_BASE_EXTD)) == (APIC_BASE_EN | APIC_BASE_EXTD);
}

/* SDM 10.8.3.1: PPR is TPR unless the highest in-service class is higher. */
uint32_t lapic_ppr(const struct lapic *l)
{
	int isrv = vec_highest(l->isr);
	uint32_t tpr = l->tpr & 0xff;

	if (isrv < 0 || (tpr >> 4) >= ((unsigned)isrv >> 4))
		return tpr;
	return (unsigned)isrv & 0xf0;
}

/* SDM 10.8.3.1 (figure 10-15's companion): arbitration priority. */
uint32_t lapic_apr(const struct lapic *l)
{
	int isrv = vec_highest(l->isr), irrv = vec_highest(l->irr);
	unsigned tc = (l->tpr & 0xff) >> 4;
	unsigned sc = isrv < 0 ? 0 : (unsigned)isrv >> 4;
	unsigned rc = irrv < 0 ? 0 : (unsigned)irrv >> 4;
	unsigned m = tc;

	if (tc >= rc && tc > sc)
		return l->tpr & 0xff;
	if (sc > m)
		m = sc;
	if (rc > m)
		m = rc;
	return m << 4;
}

int lapic_pending(const struct lapic *l)
{
	int v;

	if (!lapic_hw_enabled(l))
		return -1;
	v = vec_highest(l->irr);
	if (v < 0 || ((unsigned)v >> 4) <= (lapic_ppr(l) >> 4))
		return -1;
	return v;
}

int lapic_ack(struct lapic *l)
{
	int v = lapic_pending(l);

	if (v < 0)
		return -1;
	vec_clear(l->irr, (unsigned)v);
	vec_set(l->isr, (unsigned)v);
	return v;
}

/* SDM 10.8.5: clear the highest ISR bit; a level-triggered one is broadcast to the IOAPIC. */
void lapic_eoi(struct lapic *l)
{
	int v = vec_highest(l->isr);

	if (v < 0)
		return;
	vec_clear(l->isr, (unsigned)v);
	if (vec_test(l->tmr, (unsigned)v))
		l->env->eoi_broadcast(l->env->opaque, (uint8_t)v);
}

void lapic_error(struct lapic *l, uint32_t bits)
{
	uint32_t fresh = bits & ~l->esr_pending;

	l->esr_pending |= bits;
	/* Only a new error interrupts, which also ends the recursion of an illegal error vector. */
	if (fresh)
		lapic_local_deliver(l, LVT_ERROR);
}

/* A fixed interrupt into IRR (SDM 10.8.4). A software-disabled APIC takes none (10.4.7.2). */
static unsigned accept_fixed(struct lapic *l, uint8_t vector, bool level)
{
	bool had;

	if (!lapic_sw_enabled(l))
		return 0;
	if (vector < 16) {
		lapic_error(l, ESR_RECV_ILLEGAL);
		return 0;
	}
	had = vec_test(l->irr, vector);
	vec_set(l->irr, vector);
	if (level)
		vec_set(l->tmr, vector);
	else
		vec_clear(l->tmr, vector);
	if (!had && lapic_pending(l) == vector)
		return LAPIC_ACCEPTED | LAPIC_WAKE;
	return LAPIC_ACCEPTED;
}

static unsigned latch(bool *flag)
{
	bool had = *flag;

	*flag = true;
	return LAPIC_ACCEPTED | (had ? 0 : LAPIC_WAKE);
}

/* INIT: the APIC returns to its reset state but keeps ID and mode (SDM 10.4.7.3); the vCPU
 * waits for a SIPI unless it is the BSP. */
static unsigned accept_init(struct lapic *l)
{
	lapic_reset_regs(l);
	l->wait_sipi = !(l->base & APIC_BASE_BSP);
	l->sipi_pending = false;
	return latch(&l->init_pending);
}

/* A SIPI counts only in the wait-for-SIPI state (SDM 8.4.2). */
static unsigned accept_sipi(struct lapic *l, uint8_t vector)
{
	if (!l->wait_sipi)
		return 0;
	l->wait_sipi = false;
	l->sipi_vector = vector;
	return latch(&l->sipi_pending);
}

unsigned lapic_accept(struct lapic *l, const struct irq_msg *m)
{
	if (!lapic_hw_enabled(l))
		return 0;
	switch (m->mode) {
	case APIC_DM_FIXED:
	case APIC_DM_LOWEST:
		return accept_fixed(l, m->vector, m->level);
	case APIC_DM_NMI:
		return latch(&l->nmi_pending);
	case APIC_DM_INIT:
		return accept_init(l);
	case APIC_DM_SIPI:
		return accept_sipi(l, m->vector);
	case APIC_DM_EXTINT:
		return latch(&l->extint_pending);
	default: /* SMI and reserved modes: nothing to do */
		return 0;
	}
}

unsigned lapic_local_deliver(struct lapic *l, unsigned idx)
{
	uint32_t lvt;
	unsigned mode;

	if (idx >= LVT_COUNT || !lapic_hw_enabled(l))
		return 0;
	lvt = l->lvt[idx];
	if (lvt & LVT_MASKED)
		return 0;
	/* The timer and error entries have no delivery-mode field: always fixed. */
	mode = (idx == LVT_TIMER || idx == LVT_ERROR) ? APIC_DM_FIXED : (lvt >> 8) & 7;
	switch (mode) {
	case APIC_DM_FIXED:
		return accept_fixed(l, lvt & 0xff, false);
	case APIC_DM_NMI:
		return latch(&l->nmi_pending);
	case APIC_DM_INIT:
		return accept_init(l);
	case APIC_DM_EXTINT:
		return latch(&l->extint_pending);
	default:
		return 0;
	}
}

unsigned lapic_lint(struct lapic *l, unsigned pin)
{
	if (pin > 1)
		return 0;
	return lapic_local_deliver(l, pin ? LVT_LINT1 : LVT_LINT0);
}

bool lapic_takes_extint(const struct lapic *l, bool wired)
{
	uint32_t lvt0 = l->lvt[LVT_LINT0];

	if (!lapic_hw_enabled(l))
		return wired; /* SDM 10.4.3: INTR goes to the core as on a CPU without an APIC */
	if (l->extint_pending)
		return true;
	return wired && !(lvt0 & LVT_MASKED) && ((lvt0 >> 8) & 7) == APIC_DM_EXTINT;
}

/* SDM 10.6.2: physical, logical flat and logical cluster destinations; x2APIC clusters. */
bool lapic_match(const struct lapic *l, const struct irq_msg *m)
{
	uint32_t bcast = m->x2apic ? 0xffffffffu : 0xffu;
	uint32_t d = m->dest;

	if (!lapic_hw_enabled(l))
		return false;
	if (d == bcast)
		return true;
	if (!m->logical)
		return d == l->id;
	if (lapic_x2apic(l))
		return (d >> 16) == (l->ldr >> 16) && (d & l->ldr & 0xffff);
	d &= 0xff;
	if ((l->dfr >> 28) == 0xf) /* flat */
		return (d & (l->ldr >> 24)) != 0;
	/* cluster: high nibble the cluster (15 = all), low nibble a member bitmap */
	if ((d >> 4) != 0xf && (d >> 4) != (l->ldr >> 28))
		return false;
	return (d & (l->ldr >> 24) & 0xf) != 0;
}

bool lapic_take_nmi(struct lapic *l)
{
	bool n = l->nmi_pending;

	l->nmi_pending = false;
	return n;
}

unsigned lapic_take_startup(struct lapic *l, uint8_t *sipi_vector)
{
	unsigned r = 0;

	if (l->init_pending)
		r |= LAPIC_STARTUP_INIT;
	if (l->sipi_pending) {
		r |= LAPIC_STARTUP_SIPI;
		if (sipi_vector)
			*sipi_vector = l->sipi_vector;
	}
	l->init_pending = l->sipi_pending = false;
	return r;
}
