/* Local APIC: enable, timer, EOI, IPIs. Registers are 32-bit MMIO at LAPIC_BASE. */
#include "lapic.h"

#define REG_TPR       0x080
#define REG_EOI       0x0b0
#define REG_SVR       0x0f0
#define REG_LVT_TIMER 0x320
#define REG_TIMER_ICR 0x380
#define REG_TIMER_DCR 0x3e0

#define SVR_ENABLE   0x100
#define DCR_DIVIDE_1 0xb
#define LVT_MASKED   (1u << 16)
#define LVT_PERIODIC (1u << 17)

uint32_t lapic_read(uint32_t reg)
{
	return *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg);
}

void lapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg) = v;
}

void lapic_enable(void)
{
	lapic_write(REG_TPR, 0);
	lapic_write(REG_SVR, SVR_ENABLE | 0xff);
}

void lapic_timer_oneshot(uint8_t vector, uint32_t count)
{
	lapic_write(REG_TIMER_DCR, DCR_DIVIDE_1);
	lapic_write(REG_LVT_TIMER, vector); /* one-shot, not masked */
	lapic_write(REG_TIMER_ICR, count);
}

void lapic_timer_periodic(uint8_t vector, uint32_t count)
{
	lapic_write(REG_TIMER_DCR, DCR_DIVIDE_1);
	lapic_write(REG_LVT_TIMER, LVT_PERIODIC | vector);
	lapic_write(REG_TIMER_ICR, count);
}

void lapic_timer_stop(void)
{
	lapic_write(REG_LVT_TIMER, LVT_MASKED);
	lapic_write(REG_TIMER_ICR, 0);
}

void lapic_eoi(void)
{
	lapic_write(REG_EOI, 0);
}

uint8_t lapic_id(void)
{
	return (uint8_t)(lapic_read(LAPIC_ID) >> 24);
}

void lapic_send_ipi(uint8_t dest, uint32_t icr_low)
{
	lapic_write(LAPIC_ICR_HIGH, (uint32_t)dest << 24);
	lapic_write(LAPIC_ICR_LOW, icr_low); /* this write sends it */
}

bool lapic_ipi_busy(void)
{
	return lapic_read(LAPIC_ICR_LOW) & LAPIC_ICR_BUSY;
}
