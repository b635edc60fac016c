/*
 * The userspace interrupt chip set, for an engine that runs guests without KVM: one local
 * APIC per vCPU, an IOAPIC, the 8259A pair with its ELCR, and the 8254 PIT, wired as hearth's
 * board: GSI n < 16 drives PIC IRn (except the cascade IR2) and IOAPIC pin n, GSIs 16..23 only
 * IOAPIC pins; the PIC's INT is vCPU 0's LINT0; PIT OUT0 is GSI 0. vCPU k has APIC ID k;
 * vCPU 0 is the BSP.
 *
 * Two sides, as in OpenBSD vmd's i8259.h:
 *  - device side: the struct irqchip (uirq_irqchip) devices raise GSIs through, plus the port
 *    and IOAPIC MMIO handlers the buses dispatch to;
 *  - run-loop side: what vCPU k's engine thread asks and tells (the uirq_* calls taking a
 *    `cpu`): the interrupt to inject, its acknowledge, NMI/INIT/SIPI, its LAPIC's registers
 *    and MSRs, timers.
 *
 * Locking: one mutex for the whole set. Interrupt rates in microVMs are low, and the chips call
 * one another (an EOI re-delivers an IOAPIC line, an IPI lands in another LAPIC), which one lock
 * keeps simple and free of lock-order problems. The kick callback runs after it is released.
 *
 * Time: nothing runs in the background. Timers fire when uirq_tick is called; the engine calls
 * it when woken at uirq_next_deadline (or when its own host timer at that deadline expires).
 * Every vCPU's deadline covers its LAPIC timer; vCPU 0's also covers the PIT.
 */
#ifndef HEARTH_IRQCHIP_USERSPACE_H
#define HEARTH_IRQCHIP_USERSPACE_H

#include <stdbool.h>
#include <stdint.h>

#include "irqchip/clock.h"
#include "irqchip/irqchip.h"

#define UIRQ_MAX_CPUS 32
#define UIRQ_GSIS     24

struct uirq_config {
	unsigned ncpus; /* 1..UIRQ_MAX_CPUS; also the IOAPIC's ID */
	struct irqchip_clock clock;
	/* Something became pending for `cpu` (a deliverable interrupt, an NMI, INIT or SIPI):
	 * wake it from HLT or kick it out of guest code. Not called for the vCPU whose own
	 * run-loop call caused it; device-side calls (no vCPU known) kick every target. NULL:
	 * no kicks. Called with no lock held. */
	void (*kick)(void *opaque, unsigned cpu);
	void *kick_opaque;
};

struct uirq;

/* NULL on a bad config (errno EINVAL) or no memory. Free with irqchip_destroy. */
struct uirq *uirq_create(const struct uirq_config *cfg);
struct irqchip *uirq_irqchip(struct uirq *u);

/* ---- device side (any thread) ---- */

/* Port I/O at 0x20-0x21, 0xa0-0xa1 (PIC), 0x40-0x43 (PIT), 0x61, 0x4d0-0x4d1 (ELCR), `size`
 * 1..4 bytes, each byte its own port. 0, or -ENOENT for a port not listed (nothing done). */
int uirq_pio_read(struct uirq *u, uint16_t port, void *data, unsigned size);
int uirq_pio_write(struct uirq *u, uint16_t port, const void *data, unsigned size);
/* IOAPIC MMIO at `offset` from 0xfec00000 (size 1..4; registers are 32-bit, IOREGSEL also
 * byte-wide). 0, or -EINVAL for an offset outside the page or a bad size (reads give 0). */
int uirq_ioapic_read(struct uirq *u, uint64_t offset, void *data, unsigned size);
int uirq_ioapic_write(struct uirq *u, uint64_t offset, const void *data, unsigned size);

/* ---- run-loop side: vCPU `cpu`'s thread ---- */

/* The vector to inject when the guest can take one (IF=1, no shadow), or -1. */
int uirq_pending(struct uirq *u, unsigned cpu);
/* Acknowledge: the vector now injected (LAPIC IRR->ISR, or the PIC's INTA for ExtINT), or -1
 * when nothing is pending. Inject what it returns: it may beat what uirq_pending said. */
int uirq_ack(struct uirq *u, unsigned cpu);
/* An NMI to inject (LINT1 NMI, NMI IPI or IOAPIC NMI): read and clear. */
bool uirq_take_nmi(struct uirq *u, unsigned cpu);
/* Is an NMI pending (left pending)? */
bool uirq_nmi_pending(struct uirq *u, unsigned cpu);
/* INIT and SIPI received since the last call: UIRQ_INIT | UIRQ_SIPI, SIPI's vector in
 * `*sipi_vector`. The LAPIC has already reset itself; the engine resets the vCPU and, after
 * a SIPI, starts it at vector * 4096. A SIPI counts only while the vCPU waits for one. */
#define UIRQ_INIT 1u
#define UIRQ_SIPI 2u
unsigned uirq_take_startup(struct uirq *u, unsigned cpu, uint8_t *sipi_vector);
/* Should HLT end: an interrupt deliverable (ignoring IF), an NMI, INIT or SIPI pending? */
bool uirq_wakeup_pending(struct uirq *u, unsigned cpu);
/* The same for a CPU that is in its NMI handler (`nmi_blocked`): a pending NMI does not count. */
bool uirq_wakeup_pending_blocked(struct uirq *u, unsigned cpu, bool nmi_blocked);

/* Fire the timers (all LAPICs, the PIT) that expired by now. `cpu` is the caller's vCPU, or
 * -1 from a thread that is no vCPU. */
void uirq_tick(struct uirq *u, int cpu);
/* When vCPU `cpu` must next call uirq_tick (clock ns; UINT64_MAX: no timer armed). `cpu`
 * -1: the earliest over every timer. */
uint64_t uirq_next_deadline(struct uirq *u, int cpu);

/* xAPIC MMIO at `offset` in the LAPIC page (size 1..4 within one 32-bit register; writes
 * must be 32-bit). 0, or -EINVAL for bad arguments (reads give 0). */
int uirq_lapic_read(struct uirq *u, unsigned cpu, uint64_t offset, void *data, unsigned size);
int uirq_lapic_write(struct uirq *u, unsigned cpu, uint64_t offset, const void *data,
                     unsigned size);
/* Where vCPU `cpu` sees its xAPIC page (IA32_APIC_BASE can move it); false when the APIC is
 * disabled or in x2APIC mode, where that page is not the APIC's. */
bool uirq_lapic_mmio_base(struct uirq *u, unsigned cpu, uint64_t *base);
/* IA32_APIC_BASE, IA32_TSC_DEADLINE, x2APIC MSRs 0x800..0x8ff. 0; UIRQ_MSR_GP: inject #GP(0);
 * UIRQ_MSR_NOT_MINE: another MSR, the caller handles it. */
#define UIRQ_MSR_GP       (-1)
#define UIRQ_MSR_NOT_MINE (-2)
int uirq_rdmsr(struct uirq *u, unsigned cpu, uint32_t msr, uint64_t *val);
int uirq_wrmsr(struct uirq *u, unsigned cpu, uint32_t msr, uint64_t val);
/* A pulse on vCPU `cpu`'s LINT1 (the board's NMI line), delivered as its LVT says. */
void uirq_lint1(struct uirq *u, unsigned cpu);

/* ---- snapshots (irqchip/snapshot.c) ---- */

struct snap_w;
struct snap_r;
struct error;

/* Append the whole set's state as one section, the LAPIC and PIT timers as time elapsed on
 * the clock now (snapshot.c has the layout and the rule). Call it with every vCPU parked.
 * 0, or -1 when the writer ran out of memory. */
int uirq_save(struct uirq *u, struct snap_w *w);
/* Read that section into `u`, a set built from the same configuration and not running yet;
 * timers are re-anchored to u's clock now. Every field is checked as hostile input: -1 (err
 * names the field) leaves `u` as it was. Kicks no vCPU: they ask when they start. */
int uirq_restore(struct uirq *u, struct snap_r *r, struct error *err);

#endif
