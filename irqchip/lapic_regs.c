/* Local APIC registers: one decoder for xAPIC MMIO and x2APIC MSRs (SDM 10.4.1, 10.12.1.2). */
#include "irqchip/lapic_priv.h"

/* Writable bits of each LVT entry (timer, thermal, perfmon, LINT0, LINT1, error). */
const uint32_t lapic_lvt_bits[LVT_COUNT] = {
    0x000700ff, 0x000107ff, 0x000107ff, 0x0001a7ff, 0x0001a7ff, 0x000100ff,
};
/* Bits an x2APIC write may set without #GP: the writable ones plus the read-only delivery
 * status (12) and remote IRR (14) a read-modify-write hands back. */
#define LVT_RO_BITS ((1u << 12) | (1u << 14))

#define ICR_X2_BITS 0xffffffff000ccfffULL /* x2APIC ICR: no delivery status, bits 12..13 */

/* The register index of an x2APIC MSR is its low 6 bits (0x800 + offset / 16). */
enum {
	R_ID = 0x02,
	R_VER = 0x03,
	R_TPR = 0x08,
	R_APR = 0x09,
	R_PPR = 0x0a,
	R_EOI = 0x0b,
	R_RRD = 0x0c,
	R_LDR = 0x0d,
	R_DFR = 0x0e,
	R_SVR = 0x0f,
	R_ISR = 0x10,
	R_TMR = 0x18,
	R_IRR = 0x20,
	R_ESR = 0x28,
	R_ICR = 0x30,
	R_ICR2 = 0x31,
	R_LVT = 0x32,
	R_TMICT = 0x38,
	R_TMCCT = 0x39,
	R_TDCR = 0x3e,
	R_SELF = 0x3f,
};

static void send_ipi(struct lapic *l, uint32_t lo, uint32_t dest, bool x2)
{
	struct irq_msg m = {
	    .dest = dest,
	    .vector = lo & 0xff,
	    .mode = (lo >> 8) & 7,
	    .shorthand = (lo >> 18) & 3,
	    .logical = lo & ICR_LOGICAL,
	    .level = false, /* IPIs are edge-triggered (the trigger bit only qualifies INIT) */
	    .x2apic = x2,
	};

	/* INIT level de-assert only re-synchronizes arbitration IDs: nothing to deliver. */
	if (m.mode == APIC_DM_INIT && !(lo & ICR_ASSERT))
		return;
	if ((m.mode == APIC_DM_FIXED || m.mode == APIC_DM_LOWEST) && m.vector < 16)
		lapic_error(l, ESR_SEND_ILLEGAL);
	l->env->send(l->env->opaque, l, &m);
}

static int read_common(struct lapic *l, unsigned reg, uint64_t *val)
{
	switch (reg) {
	case R_TPR:
		*val = l->tpr;
		return 0;
	case R_PPR:
		*val = lapic_ppr(l);
		return 0;
	case R_LDR:
		*val = l->ldr;
		return 0;
	case R_SVR:
		*val = l->svr;
		return 0;
	case R_ESR:
		*val = l->esr;
		return 0;
	case R_TMICT:
		*val = l->timer.initial;
		return 0;
	case R_TMCCT:
		*val = lapic_timer_current(l, lapic_now_ns(l));
		return 0;
	case R_TDCR:
		*val = l->tdcr;
		return 0;
	case R_VER:
		*val = LAPIC_VERSION;
		return 0;
	}
	if (reg >= R_ISR && reg < R_ISR + 8) {
		*val = l->isr[reg - R_ISR];
		return 0;
	}
	if (reg >= R_TMR && reg < R_TMR + 8) {
		*val = l->tmr[reg - R_TMR];
		return 0;
	}
	if (reg >= R_IRR && reg < R_IRR + 8) {
		*val = l->irr[reg - R_IRR];
		return 0;
	}
	if (reg >= R_LVT && reg < R_LVT + LVT_COUNT) {
		*val = l->lvt[reg - R_LVT];
		return 0;
	}
	return LAPIC_MSR_GP;
}

int lapic_reg_read(struct lapic *l, unsigned reg, uint64_t *val, bool x2)
{
	*val = 0;
	if (x2) {
		switch (reg) {
		case R_ID:
			*val = l->id;
			return 0;
		case R_ICR:
			*val = ((uint64_t)l->icr_hi << 32) | l->icr_lo;
			return 0;
		case R_APR: /* no APR, DFR, RRD, ICR2 in x2APIC; EOI, SELF IPI write-only */
		case R_DFR:
		case R_RRD:
		case R_ICR2:
		case R_EOI:
		case R_SELF:
			return LAPIC_MSR_GP;
		}
		return read_common(l, reg, val);
	}
	switch (reg) {
	case R_ID:
		*val = (l->id & 0xff) << 24;
		return 0;
	case R_APR:
		*val = lapic_apr(l);
		return 0;
	case R_DFR:
		*val = l->dfr;
		return 0;
	case R_RRD:
	case R_EOI:
		return 0;
	case R_ICR:
		*val = l->icr_lo & ICR_LO_BITS;
		return 0;
	case R_ICR2:
		*val = l->icr_hi;
		return 0;
	case R_SELF:
		return LAPIC_MSR_GP;
	}
	return read_common(l, reg, val);
}

static void write_svr(struct lapic *l, uint32_t v)
{
	l->svr = v & SVR_BITS;
	/* Software-disabling masks every LVT entry (SDM 10.4.7.2). */
	if (!(v & APIC_SVR_ENABLE))
		for (unsigned i = 0; i < LVT_COUNT; i++)
			l->lvt[i] |= LVT_MASKED;
}

static void write_lvt(struct lapic *l, unsigned idx, uint32_t v)
{
	v &= lapic_lvt_bits[idx];
	if (!(l->svr & APIC_SVR_ENABLE))
		v |= LVT_MASKED; /* attempts to unmask are ignored while disabled */
	if (idx == LVT_TIMER)
		lapic_timer_write_lvt(l, v);
	else
		l->lvt[idx] = v;
}

/* Registers with one meaning in both modes; x2 selects x2APIC's reserved-bit #GP. */
static int write_common(struct lapic *l, unsigned reg, uint64_t val, bool x2)
{
	uint32_t v = (uint32_t)val;

	if (reg >= R_LVT && reg < R_LVT + LVT_COUNT) {
		if (x2 && (v & ~(lapic_lvt_bits[reg - R_LVT] | LVT_RO_BITS)))
			return LAPIC_MSR_GP;
		write_lvt(l, reg - R_LVT, v);
		return 0;
	}
	switch (reg) {
	case R_TPR:
		if (x2 && (v & ~0xffu))
			return LAPIC_MSR_GP;
		l->tpr = v & 0xff;
		return 0;
	case R_EOI:
		if (x2 && v)
			return LAPIC_MSR_GP;
		lapic_eoi(l);
		return 0;
	case R_SVR:
		if (x2 && (v & ~SVR_BITS))
			return LAPIC_MSR_GP;
		write_svr(l, v);
		return 0;
	case R_ESR:
		if (x2 && v)
			return LAPIC_MSR_GP;
		/* A write latches the errors seen since the last one (SDM 10.5.3). */
		l->esr = l->esr_pending;
		l->esr_pending = 0;
		return 0;
	case R_TMICT:
		lapic_timer_write_initial(l, v);
		return 0;
	case R_TDCR:
		if (x2 && (v & ~TDCR_BITS))
			return LAPIC_MSR_GP;
		lapic_timer_write_tdcr(l, v & TDCR_BITS);
		return 0;
	}
	return LAPIC_MSR_GP;
}

int lapic_reg_write(struct lapic *l, unsigned reg, uint64_t val, bool x2)
{
	if (x2) {
		if (reg == R_ICR) {
			if (val & ~ICR_X2_BITS)
				return LAPIC_MSR_GP;
			l->icr_lo = (uint32_t)val;
			l->icr_hi = (uint32_t)(val >> 32);
			send_ipi(l, l->icr_lo, l->icr_hi, true);
			return 0;
		}
		if (val >> 32)
			return LAPIC_MSR_GP;
		if (reg == R_SELF) {
			if (val & ~0xffULL)
				return LAPIC_MSR_GP;
			send_ipi(l, (uint32_t)val | (APIC_SH_SELF << 18), 0, true);
			return 0;
		}
		return write_common(l, reg, val, true);
	}
	switch (reg) {
	case R_ID: /* fixed by the MP table and MADT: read-only here */
		return 0;
	case R_LDR:
		l->ldr = (uint32_t)val & 0xff000000u;
		return 0;
	case R_DFR:
		l->dfr = (uint32_t)val | 0x0fffffffu;
		return 0;
	case R_ICR:
		l->icr_lo = (uint32_t)val & ICR_LO_BITS;
		send_ipi(l, l->icr_lo, l->icr_hi >> 24, false);
		return 0;
	case R_ICR2:
		l->icr_hi = (uint32_t)val & 0xff000000u;
		return 0;
	case R_SELF:
		return LAPIC_MSR_GP;
	}
	return write_common(l, reg, val, false);
}

static bool xapic_mode(const struct lapic *l)
{
	return lapic_hw_enabled(l) && !lapic_x2apic(l);
}

/* Offsets 0x000..0x3f0 in 16-byte steps are registers; the rest of the page is not. */
static bool reg_offset(uint32_t offset, unsigned *reg)
{
	if (offset >= 0x400 || (offset & 0xf))
		return false;
	*reg = offset >> 4;
	return true;
}

/* Read-only or write-only registers are not errors; only reserved offsets are (SDM 10.5.3). */
static bool reserved_reg(unsigned reg)
{
	return reg < R_ID || (reg > R_VER && reg < R_TPR) || (reg > R_ESR && reg < R_ICR) ||
	       (reg > R_LVT + LVT_COUNT - 1 && reg < R_TDCR && reg != R_TMICT && reg != R_TMCCT) ||
	       reg == R_SELF;
}

uint32_t lapic_mmio_read(struct lapic *l, uint32_t offset)
{
	uint64_t v = 0;
	unsigned reg;

	if (!xapic_mode(l) || !reg_offset(offset, &reg))
		return 0;
	if (reserved_reg(reg)) {
		lapic_error(l, ESR_ILLEGAL_REG);
		return 0;
	}
	lapic_reg_read(l, reg, &v, false);
	return (uint32_t)v;
}

void lapic_mmio_write(struct lapic *l, uint32_t offset, uint32_t val)
{
	unsigned reg;

	if (!xapic_mode(l) || !reg_offset(offset, &reg))
		return;
	if (reserved_reg(reg)) {
		lapic_error(l, ESR_ILLEGAL_REG);
		return;
	}
	lapic_reg_write(l, reg, val, false);
}
