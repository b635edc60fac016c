/* An interrupt message on the APIC bus: what the IOAPIC and a LAPIC's ICR send to LAPICs. */
#ifndef HEARTH_IRQCHIP_MSG_H
#define HEARTH_IRQCHIP_MSG_H

#include <stdbool.h>
#include <stdint.h>

/* Delivery modes, as encoded in bits 8..10 of the ICR, LVT entries and redirection entries. */
#define APIC_DM_FIXED  0
#define APIC_DM_LOWEST 1
#define APIC_DM_SMI    2
#define APIC_DM_NMI    4
#define APIC_DM_INIT   5
#define APIC_DM_SIPI   6
#define APIC_DM_EXTINT 7

/* ICR destination shorthands (bits 18..19). */
#define APIC_SH_NONE   0
#define APIC_SH_SELF   1
#define APIC_SH_ALL    2
#define APIC_SH_OTHERS 3

struct irq_msg {
	uint32_t dest; /* physical APIC ID or logical destination */
	uint8_t vector;
	uint8_t mode;      /* APIC_DM_* */
	uint8_t shorthand; /* APIC_SH_*; always NONE from the IOAPIC */
	bool logical;      /* logical destination mode */
	bool level;        /* level-triggered: sets TMR, so the EOI is broadcast */
	bool x2apic;       /* 32-bit destination (x2APIC ICR); else 8-bit (xAPIC ICR, IOAPIC) */
};

#endif
