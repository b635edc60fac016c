/* Hostile guest input to the userspace chip set: random accesses to every port, MMIO offset,
 * MSR and run-loop call, with random time steps. Nothing may crash (run it under ASan/UBSan:
 * `make asan`); answers stay in range, and right after a tick no deadline is already due
 * (an engine sleeping until it would spin). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "irqchip/lapic.h"
#include "irqchip/userspace.h"

#define ROUNDS 300000

static struct irqchip_manual_clock mc;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
	/* xorshift64*: deterministic, so a failure replays. */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

static void kick(void *opaque, unsigned cpu)
{
	(void)opaque;
	assert_true(cpu < 4);
}

/* Mostly plausible values, sometimes anything. */
static uint64_t value(void)
{
	uint64_t r = next();

	switch (r & 3) {
	case 0:
		return next();
	case 1:
		return (next() & 0xff) | ((next() & 7) << 8) | ((next() & 1) << 16);
	default:
		return r >> 40;
	}
}

static void one_op(struct uirq *u)
{
	static const uint16_t ports[] = {0x20, 0x21, 0xa0,  0xa1,  0x40, 0x41,   0x42,
	                                 0x43, 0x61, 0x4d0, 0x4d1, 0x22, 0xffff, 0x3f};
	unsigned cpu = next() % 5; /* one past the last on purpose */
	uint64_t v = value(), q;
	uint32_t d = (uint32_t)v;
	uint8_t buf[8] = {0};

	switch (next() % 14) {
	case 0:
		uirq_pio_write(u, ports[next() % 14], &d, (unsigned)(next() % 6));
		break;
	case 1:
		uirq_pio_read(u, ports[next() % 14], buf, (unsigned)(next() % 6));
		break;
	case 2:
		uirq_ioapic_write(u, next() % 0x1100, &d, (unsigned)(next() % 6));
		break;
	case 3:
		uirq_ioapic_read(u, next() % 0x1100, buf, (unsigned)(next() % 6));
		break;
	case 4:
		uirq_lapic_write(u, cpu, (next() % 0x420) & ~3ULL, &d, 4);
		break;
	case 5:
		uirq_lapic_read(u, cpu, next() % 0x1100, buf, (unsigned)(next() % 6));
		break;
	case 6:
		uirq_wrmsr(u, cpu, (uint32_t)(next() % 2 ? 0x800 + next() % 0x100 : next() % 0x900),
		           v);
		break;
	case 7:
		uirq_rdmsr(u, cpu, (uint32_t)(0x800 + next() % 0x100), &q);
		break;
	case 8:
		irqchip_set_irq(uirq_irqchip(u), (uint32_t)(next() % 30), (int)(next() % 2));
		break;
	case 9:
		uirq_ack(u, cpu);
		break;
	case 10:
		uirq_tick(u, (int)cpu - 1);
		break;
	case 11:
		uirq_take_nmi(u, cpu);
		uirq_take_startup(u, cpu, buf);
		break;
	case 12:
		uirq_lint1(u, cpu);
		break;
	default:
		mc.ns += next() % 100000;
		mc.tsc += next() % 300000;
		break;
	}
}

static void test_random_ops(void **state)
{
	struct uirq_config cfg = {.ncpus = 4, .kick = kick};
	struct uirq *u;

	(void)state;
	mc.ns = 1;
	mc.tsc = 1;
	irqchip_manual_clock(&cfg.clock, &mc, 3000000000ULL);
	u = uirq_create(&cfg);
	assert_non_null(u);
	for (unsigned i = 0; i < ROUNDS; i++) {
		one_op(u);
		if (i % 1000 == 0) {
			/* Some rounds in the x2APIC mode the writes above rarely reach. */
			uirq_wrmsr(u, i / 1000 % 4, MSR_IA32_APIC_BASE, 0xfee00c00);
		}
		if (i % 97 == 0) {
			uirq_tick(u, -1);
			for (int k = -1; k < 4; k++)
				assert_true(uirq_next_deadline(u, k) > mc.ns);
		}
	}
	for (unsigned k = 0; k < 4; k++) {
		int v = uirq_pending(u, k);

		assert_true(v >= -1 && v <= 255);
	}
	irqchip_destroy(uirq_irqchip(u));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_random_ops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
