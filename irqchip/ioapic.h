/*
 * An 82093AA-style I/O APIC, version 0x20 (with the EOI register at 0x40): 24 redirection
 * entries turning pin levels into APIC-bus messages. No locking: the owning chip set
 * serializes every call.
 */
#ifndef HEARTH_IRQCHIP_IOAPIC_H
#define HEARTH_IRQCHIP_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>

#include "irqchip/msg.h"

#define IOAPIC_DEFAULT_BASE 0xfec00000ULL
#define IOAPIC_MMIO_SIZE    0x1000
#define IOAPIC_PINS         24
#define IOAPIC_VERSION      0x00170020u /* max redirection entry 23, version 0x20 */

/* MMIO offsets. */
#define IOAPIC_REGSEL 0x00
#define IOAPIC_WINDOW 0x10
#define IOAPIC_EOI    0x40

/* Registers behind IOREGSEL. */
#define IOAPIC_REG_ID   0x00
#define IOAPIC_REG_VER  0x01
#define IOAPIC_REG_ARB  0x02
#define IOAPIC_REG_RTE0 0x10 /* entry n: 0x10 + 2n (low), 0x11 + 2n (high) */

/* Redirection entry bits. */
#define RTE_LOGICAL    (1ULL << 11)
#define RTE_DELIVS     (1ULL << 12)
#define RTE_ACTIVE_LOW (1ULL << 13)
#define RTE_REMOTE_IRR (1ULL << 14)
#define RTE_LEVEL      (1ULL << 15)
#define RTE_MASKED     (1ULL << 16)
#define RTE_DEST_SHIFT 56
/* Writable bits of an entry: vector, delivery mode, destination mode, polarity, trigger,
 * mask, destination. Delivery status and Remote IRR are read-only. */
#define RTE_WRITABLE                                                                               \
	(0xffULL | 0x700ULL | RTE_LOGICAL | RTE_ACTIVE_LOW | RTE_LEVEL | RTE_MASKED |              \
	 (0xffULL << RTE_DEST_SHIFT))

struct ioapic {
	uint32_t id; /* ID register bits 24..31 */
	uint8_t regsel;
	uint64_t rte[IOAPIC_PINS];
	uint32_t lines; /* electrical level of each pin */
	/* Send a message; true when some LAPIC logged it (only then is Remote IRR set). */
	bool (*deliver)(void *opaque, const struct irq_msg *m);
	void *opaque;
};

/* Reset state: every entry masked. */
void ioapic_init(struct ioapic *io, uint32_t id, bool (*deliver)(void *, const struct irq_msg *),
                 void *opaque);
/* Drive pin `pin` to electrical `level` (an active-low entry sees it inverted). */
void ioapic_set_pin(struct ioapic *io, unsigned pin, bool level);
/* An EOI for `vector` (LAPIC broadcast or the EOI register): clear Remote IRR, re-deliver. */
void ioapic_eoi(struct ioapic *io, uint8_t vector);
/* 32-bit register access at `offset` in the MMIO page; unknown offsets read 0. */
uint32_t ioapic_mmio_read(struct ioapic *io, uint32_t offset);
void ioapic_mmio_write(struct ioapic *io, uint32_t offset, uint32_t val);

#endif
