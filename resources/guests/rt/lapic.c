/* Local APIC: enable, one-shot timer, EOI. Registers are 32-bit MMIO at LAPIC_BASE. */
#include "lapic.h"

#define REG_TPR       0x080
#define REG_EOI       0x0b0
#define REG_SVR       0x0f0
#define REG_LVT_TIMER 0x320
#define REG_TIMER_ICR 0x380
#define REG_TIMER_DCR 0x3e0

#define SVR_ENABLE   0x100
#define DCR_DIVIDE_1 0xb

static void lapic_write(uint32_t reg, uint32_t v)
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

void lapic_eoi(void)
{
	lapic_write(REG_EOI, 0);
}
