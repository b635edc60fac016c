/*
 * A local APIC (Intel SDM vol. 3 ch. 10): registers through xAPIC MMIO or x2APIC MSRs,
 * priority (TPR/PPR), IRR/ISR/TMR, EOI, the timer (one-shot, periodic, TSC-deadline), IPIs
 * through the ICR, and INIT/SIPI/NMI recorded for the engine.
 *
 * No locking here: the chip set that owns the LAPICs (irqchip/userspace.c) serializes every
 * call. Messages to other chips go through struct lapic_env, called with that lock held.
 */
#ifndef HEARTH_IRQCHIP_LAPIC_H
#define HEARTH_IRQCHIP_LAPIC_H

#include <stdbool.h>
#include <stdint.h>

#include "irqchip/clock.h"
#include "irqchip/msg.h"

#define LAPIC_DEFAULT_BASE 0xfee00000ULL
#define LAPIC_MMIO_SIZE    0x1000
/* Version 0x14 (integrated APIC), max LVT entry 5 (timer..error, no CMCI), no EOI-broadcast
 * suppression (bit 24 clear). */
#define LAPIC_VERSION 0x00050014u

#define MSR_IA32_APIC_BASE    0x1b
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_X2APIC_FIRST      0x800
#define MSR_X2APIC_LAST       0x8ff

#define APIC_BASE_BSP  (1ULL << 8)
#define APIC_BASE_EXTD (1ULL << 10) /* x2APIC mode */
#define APIC_BASE_EN   (1ULL << 11) /* global enable */
#define APIC_BASE_ADDR 0x000ffffffffff000ULL

/* Register offsets in the xAPIC page; the x2APIC MSR of each is 0x800 + offset / 16. */
#define APIC_ID      0x020
#define APIC_VER     0x030
#define APIC_TPR     0x080
#define APIC_APR     0x090
#define APIC_PPR     0x0a0
#define APIC_EOI     0x0b0
#define APIC_RRD     0x0c0
#define APIC_LDR     0x0d0
#define APIC_DFR     0x0e0
#define APIC_SVR     0x0f0
#define APIC_ISR     0x100
#define APIC_TMR     0x180
#define APIC_IRR     0x200
#define APIC_ESR     0x280
#define APIC_ICR_LO  0x300
#define APIC_ICR_HI  0x310
#define APIC_LVT_TMR 0x320
#define APIC_LVT_THM 0x330
#define APIC_LVT_PMC 0x340
#define APIC_LVT0    0x350
#define APIC_LVT1    0x360
#define APIC_LVT_ERR 0x370
#define APIC_TMICT   0x380
#define APIC_TMCCT   0x390
#define APIC_TDCR    0x3e0
#define APIC_SELF    0x3f0 /* x2APIC only */

#define APIC_SVR_ENABLE (1u << 8)

#define LVT_MASKED         (1u << 16)
#define LVT_LEVEL          (1u << 15)
#define LVT_TIMER_PERIODIC (1u << 17)
#define LVT_TIMER_TSC      (2u << 17)

/* ESR bits (SDM 10.5.3). */
#define ESR_SEND_ILLEGAL (1u << 5)
#define ESR_RECV_ILLEGAL (1u << 6)
#define ESR_ILLEGAL_REG  (1u << 7)

/* ICR low bits besides vector, delivery mode and shorthand. */
#define ICR_LOGICAL (1u << 11)
#define ICR_ASSERT  (1u << 14)
#define ICR_LEVEL   (1u << 15)

enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR, LVT_COUNT };

/* lapic_accept / local delivery results. */
#define LAPIC_ACCEPTED 1u /* logged (IRR, or the NMI/INIT/SIPI latch) */
#define LAPIC_WAKE     2u /* something new for the vCPU to act on: kick it */

/* lapic_rdmsr/lapic_wrmsr results besides 0. */
#define LAPIC_MSR_GP       (-1) /* the instruction raises #GP(0) */
#define LAPIC_MSR_NOT_APIC (-2) /* not an APIC MSR: the caller handles it */

struct lapic;

struct lapic_env {
	const struct irqchip_clock *clock;
	/* An IPI from `from`'s ICR (or SELF IPI register). */
	void (*send)(void *opaque, struct lapic *from, const struct irq_msg *m);
	/* EOI of a level-triggered vector: the IOAPIC clears its Remote IRR. */
	void (*eoi_broadcast)(void *opaque, uint8_t vector);
	void *opaque;
};

struct lapic_timer {
	bool armed;        /* one-shot/periodic: counting */
	uint32_t initial;  /* initial-count register */
	unsigned shift;    /* log2 of the divisor the running count uses */
	uint64_t start_ns; /* when the count was `initial` (start of the period) */
	uint64_t fire_ns;  /* next expiry while armed */
	uint64_t deadline; /* IA32_TSC_DEADLINE; 0 = disarmed */
};

struct lapic {
	const struct lapic_env *env;
	unsigned index; /* vCPU index in the owning set */
	uint32_t id;    /* APIC ID (= x2APIC ID) */
	uint64_t base;  /* IA32_APIC_BASE */

	uint32_t tpr, ldr, dfr, svr;
	uint32_t esr, esr_pending; /* readable ESR; errors since the last ESR write */
	uint32_t icr_lo, icr_hi;
	uint32_t lvt[LVT_COUNT];
	uint32_t tdcr;
	uint32_t irr[8], isr[8], tmr[8];
	struct lapic_timer timer;

	/* Latched for the engine (SDM 10.4.7.3, 8.4.4): it takes them with lapic_take_*. */
	bool nmi_pending, init_pending, sipi_pending;
	bool wait_sipi; /* after INIT: the next SIPI starts the vCPU */
	uint8_t sipi_vector;
	bool extint_pending; /* an IOAPIC ExtINT message: the vector comes from the PIC */
};

/* Power-on state. The BSP's LINT0 is ExtINT and LINT1 NMI, as firmware leaves them in
 * virtual-wire mode (MP spec 3.6.2.2); hearth boots kernels without firmware. */
void lapic_init(struct lapic *l, const struct lapic_env *env, unsigned index, uint32_t id,
                bool bsp);

bool lapic_hw_enabled(const struct lapic *l);
bool lapic_sw_enabled(const struct lapic *l);
bool lapic_x2apic(const struct lapic *l);

/* Register access by xAPIC offset, 32 bits. No effect (reads 0) unless in xAPIC mode. */
uint32_t lapic_mmio_read(struct lapic *l, uint32_t offset);
void lapic_mmio_write(struct lapic *l, uint32_t offset, uint32_t val);
/* IA32_APIC_BASE, IA32_TSC_DEADLINE and the x2APIC range: 0, LAPIC_MSR_GP or
 * LAPIC_MSR_NOT_APIC. */
int lapic_rdmsr(struct lapic *l, uint32_t msr, uint64_t *val);
int lapic_wrmsr(struct lapic *l, uint32_t msr, uint64_t val);

/* Priority. */
uint32_t lapic_ppr(const struct lapic *l);
uint32_t lapic_apr(const struct lapic *l);
/* The highest IRR vector whose class beats PPR's, or -1. */
int lapic_pending(const struct lapic *l);
/* INTA: move that vector from IRR to ISR and return it, or -1. */
int lapic_ack(struct lapic *l);
void lapic_eoi(struct lapic *l);

/* Does a message with this destination address this LAPIC (shorthand not considered)? */
bool lapic_match(const struct lapic *l, const struct irq_msg *m);
/* Receive a message addressed to this LAPIC: LAPIC_ACCEPTED | LAPIC_WAKE. */
unsigned lapic_accept(struct lapic *l, const struct irq_msg *m);
/* A pulse on LINT0/LINT1, delivered as its LVT entry says. */
unsigned lapic_lint(struct lapic *l, unsigned pin);
/* Does this vCPU take the PIC's INTR now (LINT0 ExtINT on `wired`, an ExtINT message, or the
 * APIC globally disabled so INTR reaches the core directly)? */
bool lapic_takes_extint(const struct lapic *l, bool wired);

/* Timer: fire what expired by now (LAPIC_* flags), and the next expiry in ns (UINT64_MAX: none). */
unsigned lapic_timer_update(struct lapic *l, uint64_t now_ns, uint64_t now_tsc);
uint64_t lapic_timer_next(const struct lapic *l, uint64_t now_ns, uint64_t now_tsc);

/* Engine latches: read and clear. */
bool lapic_take_nmi(struct lapic *l);
#define LAPIC_STARTUP_INIT 1u
#define LAPIC_STARTUP_SIPI 2u
unsigned lapic_take_startup(struct lapic *l, uint8_t *sipi_vector);

#endif
