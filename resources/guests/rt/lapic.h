/* The local APIC (xAPIC MMIO at its default base) and its one-shot timer (rt/lapic.c). */
#ifndef HEARTH_GUEST_LAPIC_H
#define HEARTH_GUEST_LAPIC_H

#include <stdint.h>

#define LAPIC_BASE 0xfee00000ULL

/* Software-enable the APIC (spurious vector 0xff), TPR 0. */
void lapic_enable(void);
/* One-shot timer: divide by 1, `count` bus cycles, then interrupt `vector`. */
void lapic_timer_oneshot(uint8_t vector, uint32_t count);
void lapic_eoi(void);

#endif
