/*
 * Local APIC MSRs: IA32_APIC_BASE with the xAPIC/x2APIC/disabled state machine (SDM 10.12.5),
 * IA32_TSC_DEADLINE, and the x2APIC registers at 0x800..0x8ff (SDM 10.12.1.2).
 */
#include "irqchip/lapic_priv.h"

#define BASE_WRITABLE (APIC_BASE_ADDR | APIC_BASE_EN | APIC_BASE_EXTD | APIC_BASE_BSP)

/* Figure 10-27: disabled <-> xAPIC -> x2APIC -> disabled; anything else is #GP. */
static int write_base(struct lapic *l, uint64_t val)
{
	bool en = val & APIC_BASE_EN, x2 = val & APIC_BASE_EXTD;
	bool was_en = lapic_hw_enabled(l), was_x2 = lapic_x2apic(l);

	if (val & ~BASE_WRITABLE)
		return LAPIC_MSR_GP;
	if (x2 && !en)
		return LAPIC_MSR_GP; /* invalid state */
	if (was_x2 && en && !x2)
		return LAPIC_MSR_GP; /* x2APIC -> xAPIC */
	if (!was_en && x2)
		return LAPIC_MSR_GP; /* disabled -> x2APIC */
	/* The BSP flag is read-only. */
	l->base = (val & ~APIC_BASE_BSP) | (l->base & APIC_BASE_BSP);
	if (was_en && !en) {
		/* Disabling loses the APIC's state (SDM 10.4.3). */
		lapic_reset_regs(l);
		l->nmi_pending = false;
	} else if (x2 && !was_x2) {
		/* xAPIC -> x2APIC keeps the state; LDR becomes the derived logical ID. */
		l->ldr = ((l->id >> 4) << 16) | (1u << (l->id & 0xf));
	}
	return 0;
}

int lapic_rdmsr(struct lapic *l, uint32_t msr, uint64_t *val)
{
	*val = 0;
	if (msr == MSR_IA32_APIC_BASE) {
		*val = l->base;
		return 0;
	}
	if (msr == MSR_IA32_TSC_DEADLINE) {
		*val = lapic_timer_get_deadline(l);
		return 0;
	}
	if (msr < MSR_X2APIC_FIRST || msr > MSR_X2APIC_LAST)
		return LAPIC_MSR_NOT_APIC;
	if (!lapic_x2apic(l) || msr - MSR_X2APIC_FIRST >= 0x40)
		return LAPIC_MSR_GP;
	return lapic_reg_read(l, msr - MSR_X2APIC_FIRST, val, true);
}

int lapic_wrmsr(struct lapic *l, uint32_t msr, uint64_t val)
{
	if (msr == MSR_IA32_APIC_BASE)
		return write_base(l, val);
	if (msr == MSR_IA32_TSC_DEADLINE) {
		if (lapic_hw_enabled(l))
			lapic_timer_set_deadline(l, val);
		return 0;
	}
	if (msr < MSR_X2APIC_FIRST || msr > MSR_X2APIC_LAST)
		return LAPIC_MSR_NOT_APIC;
	if (!lapic_x2apic(l) || msr - MSR_X2APIC_FIRST >= 0x40)
		return LAPIC_MSR_GP;
	return lapic_reg_write(l, msr - MSR_X2APIC_FIRST, val, true);
}
