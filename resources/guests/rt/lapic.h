/* The local APIC (xAPIC MMIO at its default base): enable, timer, EOI, IPIs (rt/lapic.c). */
#ifndef HEARTH_GUEST_LAPIC_H
#define HEARTH_GUEST_LAPIC_H

#include <stdbool.h>
#include <stdint.h>

#define LAPIC_BASE 0xfee00000ULL

/* Registers (offsets from LAPIC_BASE). */
#define LAPIC_ID       0x020 /* bits 31:24: the APIC ID */
#define LAPIC_ICR_LOW  0x300
#define LAPIC_ICR_HIGH 0x310 /* bits 31:24: the destination */

/* ICR low word: delivery mode, delivery status, level, trigger mode (SDM 10.6.1). */
#define LAPIC_ICR_FIXED   0x000
#define LAPIC_ICR_INIT    0x500
#define LAPIC_ICR_STARTUP 0x600  /* the vector is the start page: CS:IP = vector << 8 : 0 */
#define LAPIC_ICR_BUSY    0x1000 /* delivery status: send pending */
#define LAPIC_ICR_ASSERT  0x4000
#define LAPIC_ICR_LEVEL   0x8000

uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);

/* Software-enable the APIC (spurious vector 0xff), TPR 0. */
void lapic_enable(void);
/* One-shot timer: divide by 1, `count` bus cycles, then interrupt `vector`. */
void lapic_timer_oneshot(uint8_t vector, uint32_t count);
/* Periodic timer: divide by 1, interrupt `vector` every `count` bus cycles. */
void lapic_timer_periodic(uint8_t vector, uint32_t count);
/* Mask the timer and stop it. */
void lapic_timer_stop(void);
void lapic_eoi(void);

/* This CPU's APIC ID (xAPIC: 8 bits). */
uint8_t lapic_id(void);
/* Send an IPI to APIC ID `dest` (physical destination mode, no shorthand): ICR high, then
 * ICR low = `icr_low` (vector | delivery mode | level | trigger). */
void lapic_send_ipi(uint8_t dest, uint32_t icr_low);
/* Whether the last IPI is still being sent (ICR delivery status). */
bool lapic_ipi_busy(void);

#endif
