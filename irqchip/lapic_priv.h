/* Shared between lapic.c, lapic_regs.c, lapic_timer.c, lapic_msr.c and snapshot.c only. */
#ifndef HEARTH_IRQCHIP_LAPIC_PRIV_H
#define HEARTH_IRQCHIP_LAPIC_PRIV_H

#include "irqchip/lapic.h"

/* Bits a register write can set (lapic_regs.c); a restored register keeps to them too. */
extern const uint32_t lapic_lvt_bits[LVT_COUNT];
#define SVR_BITS    0x3ffu /* vector, enable, focus checking; no EOI-broadcast suppression */
#define TDCR_BITS   0xbu
#define ICR_LO_BITS 0x000ccfffu /* xAPIC: delivery status (12) reads 0 */

/* 256-bit vector sets (IRR, ISR, TMR). */
static inline bool vec_test(const uint32_t *set, unsigned v)
{
	return set[(v >> 5) & 7] & (1u << (v & 31));
}

static inline void vec_set(uint32_t *set, unsigned v)
{
	set[(v >> 5) & 7] |= 1u << (v & 31);
}

static inline void vec_clear(uint32_t *set, unsigned v)
{
	set[(v >> 5) & 7] &= ~(1u << (v & 31));
}

/* Highest vector in the set, or -1. */
static inline int vec_highest(const uint32_t *set)
{
	for (int i = 7; i >= 0; i--)
		if (set[i])
			return i * 32 + 31 - __builtin_clz(set[i]);
	return -1;
}

static inline uint64_t lapic_now_ns(const struct lapic *l)
{
	return l->env->clock->now_ns(l->env->clock->opaque);
}

static inline uint64_t lapic_now_tsc(const struct lapic *l)
{
	return l->env->clock->now_tsc(l->env->clock->opaque);
}

/* Registers to their reset state (SDM 10.4.7.1); ID and IA32_APIC_BASE are kept. */
void lapic_reset_regs(struct lapic *l);
/* Record errors in the ESR; a new error raises the error LVT. */
void lapic_error(struct lapic *l, uint32_t bits);
/* Deliver the interrupt of LVT entry `idx` (timer, LINT0/1, error). */
unsigned lapic_local_deliver(struct lapic *l, unsigned idx);

/* Register `reg` (offset / 16). x2: x2APIC rules. 0, or LAPIC_MSR_GP for an access the
 * register does not allow (xAPIC callers then read 0 / drop the write). */
int lapic_reg_read(struct lapic *l, unsigned reg, uint64_t *val, bool x2);
int lapic_reg_write(struct lapic *l, unsigned reg, uint64_t val, bool x2);

/* Timer registers. */
unsigned lapic_tdcr_shift(uint32_t tdcr); /* log2 of the divisor TDCR selects */
void lapic_timer_reset(struct lapic *l);
uint32_t lapic_timer_current(const struct lapic *l, uint64_t now_ns);
void lapic_timer_write_initial(struct lapic *l, uint32_t val);
void lapic_timer_write_lvt(struct lapic *l, uint32_t val);
void lapic_timer_write_tdcr(struct lapic *l, uint32_t val);
uint64_t lapic_timer_get_deadline(const struct lapic *l);
void lapic_timer_set_deadline(struct lapic *l, uint64_t tsc);

#endif
