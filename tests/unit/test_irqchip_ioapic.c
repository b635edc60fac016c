/* Userspace I/O APIC (irqchip/ioapic.c) with the LAPICs it delivers to: registers, edge and
 * level semantics, Remote IRR and EOI, masking, polarity, delivery modes. Expectations from
 * the 82093AA datasheet and the Intel SDM vol. 3 ch. 10. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "irqchip/ioapic.h"
#include "irqchip/lapic.h"
#include "irqchip/userspace.h"

static struct irqchip_manual_clock mc;
static unsigned kicks[UIRQ_MAX_CPUS];

static void kick(void *opaque, unsigned cpu)
{
	(void)opaque;
	kicks[cpu]++;
}

static struct uirq *make(unsigned ncpus)
{
	struct uirq_config cfg = {.ncpus = ncpus, .kick = kick};
	struct uirq *u;

	mc.ns = 1000;
	memset(kicks, 0, sizeof(kicks));
	irqchip_manual_clock(&cfg.clock, &mc, 1000000000);
	u = uirq_create(&cfg);
	assert_non_null(u);
	for (unsigned k = 0; k < ncpus; k++) {
		uint32_t svr = 0x1ff;

		assert_int_equal(uirq_lapic_write(u, k, APIC_SVR, &svr, 4), 0);
	}
	return u;
}

static uint32_t io_rd(struct uirq *u, uint8_t reg)
{
	uint32_t v = reg;

	assert_int_equal(uirq_ioapic_write(u, IOAPIC_REGSEL, &v, 4), 0);
	assert_int_equal(uirq_ioapic_read(u, IOAPIC_WINDOW, &v, 4), 0);
	return v;
}

static void io_wr(struct uirq *u, uint8_t reg, uint32_t val)
{
	uint32_t v = reg;

	assert_int_equal(uirq_ioapic_write(u, IOAPIC_REGSEL, &v, 4), 0);
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_WINDOW, &val, 4), 0);
}

static void route(struct uirq *u, unsigned pin, uint32_t low, uint8_t dest)
{
	io_wr(u, IOAPIC_REG_RTE0 + 2 * pin + 1, (uint32_t)dest << 24);
	io_wr(u, IOAPIC_REG_RTE0 + 2 * pin, low);
}

static uint32_t rte_low(struct uirq *u, unsigned pin)
{
	return io_rd(u, IOAPIC_REG_RTE0 + 2 * pin);
}

static void line(struct uirq *u, uint32_t gsi, int level)
{
	assert_int_equal(irqchip_set_irq(uirq_irqchip(u), gsi, level), 0);
}

static void apic_eoi(struct uirq *u, unsigned cpu)
{
	uint32_t z = 0;

	assert_int_equal(uirq_lapic_write(u, cpu, APIC_EOI, &z, 4), 0);
}

static bool tmr_has(struct uirq *u, unsigned cpu, unsigned vec)
{
	uint32_t v;

	assert_int_equal(uirq_lapic_read(u, cpu, APIC_TMR + (vec / 32) * 16, &v, 4), 0);
	return v & (1u << (vec % 32));
}

static void test_registers(void **state)
{
	struct uirq *u = make(3);
	uint32_t v;
	uint8_t b;

	(void)state;
	assert_int_equal(io_rd(u, IOAPIC_REG_ID), 3u << 24); /* ID = number of vCPUs */
	assert_int_equal(io_rd(u, IOAPIC_REG_VER), 0x170020);
	assert_int_equal(io_rd(u, IOAPIC_REG_ARB), 3u << 24);
	for (unsigned pin = 0; pin < IOAPIC_PINS; pin++) {
		assert_int_equal(rte_low(u, pin), 0x10000); /* masked at reset */
		assert_int_equal(io_rd(u, IOAPIC_REG_RTE0 + 2 * pin + 1), 0);
	}
	/* Read-only: delivery status (12), Remote IRR (14), reserved bits; version. */
	io_wr(u, IOAPIC_REG_RTE0 + 6, 0xffffffff);
	assert_int_equal(rte_low(u, 3), 0x1afff);
	io_wr(u, IOAPIC_REG_RTE0 + 7, 0xffffffff);
	assert_int_equal(io_rd(u, IOAPIC_REG_RTE0 + 7), 0xff000000);
	io_wr(u, IOAPIC_REG_VER, 0);
	assert_int_equal(io_rd(u, IOAPIC_REG_VER), 0x170020);
	io_wr(u, IOAPIC_REG_ID, 0x05000000);
	assert_int_equal(io_rd(u, IOAPIC_REG_ID), 0x05000000);
	/* IOREGSEL reads back; beyond the last entry (0x3f) reads 0, writes are dropped. */
	v = 0x40;
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_REGSEL, &v, 4), 0);
	assert_int_equal(uirq_ioapic_read(u, IOAPIC_REGSEL, &v, 4), 0);
	assert_int_equal(v, 0x40);
	io_wr(u, 0x40, 0xffffffff);
	io_wr(u, 0xff, 0xffffffff);
	assert_int_equal(io_rd(u, 0x40), 0);
	assert_int_equal(io_rd(u, 0xff), 0);
	assert_int_equal(io_rd(u, 0x03), 0);
	/* A byte-wide IOREGSEL write. */
	b = IOAPIC_REG_VER;
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_REGSEL, &b, 1), 0);
	assert_int_equal(uirq_ioapic_read(u, IOAPIC_WINDOW, &v, 4), 0);
	assert_int_equal(v, 0x170020);
	/* Hostile offsets and sizes. */
	assert_int_equal(uirq_ioapic_read(u, 0x1000, &v, 4), -EINVAL);
	assert_int_equal(uirq_ioapic_read(u, 0x12, &v, 4), -EINVAL);
	assert_int_equal(uirq_ioapic_read(u, 0x10, &v, 8), -EINVAL);
	assert_int_equal(uirq_ioapic_write(u, 0x10, &v, 0), -EINVAL);
	assert_int_equal(uirq_ioapic_write(u, 0x10, &v, 2), -EINVAL);
	assert_int_equal(uirq_ioapic_write(u, UINT64_MAX, &v, 4), -EINVAL);
	assert_int_equal(uirq_ioapic_read(u, 0x20, &v, 4), 0);
	assert_int_equal(v, 0);
	assert_int_equal(uirq_ioapic_read(u, IOAPIC_EOI, &v, 4), 0);
	assert_int_equal(v, 0);
	assert_int_equal(irqchip_set_irq(uirq_irqchip(u), 24, 1), -EINVAL);
	assert_int_equal(irqchip_set_irq(uirq_irqchip(u), UINT32_MAX, 1), -EINVAL);
	assert_int_equal(irqchip_attach_irqfd(uirq_irqchip(u), 3, 5), -ENOTSUP);
	irqchip_destroy(uirq_irqchip(u));
}

/* Edge: a rising edge on an unmasked pin sends one message; a held level sends nothing more. */
static void test_edge(void **state)
{
	struct uirq *u = make(2);

	(void)state;
	route(u, 4, 0x34, 1);
	line(u, 4, 1);
	assert_int_equal(uirq_pending(u, 0), -1);
	assert_int_equal(uirq_ack(u, 1), 0x34);
	assert_false(tmr_has(u, 1, 0x34));
	assert_int_equal(rte_low(u, 4) & RTE_REMOTE_IRR, 0);
	apic_eoi(u, 1);
	line(u, 4, 1); /* no new edge */
	assert_int_equal(uirq_pending(u, 1), -1);
	line(u, 4, 0);
	line(u, 4, 1);
	assert_int_equal(uirq_ack(u, 1), 0x34);
	apic_eoi(u, 1);
	line(u, 4, 0);
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), 4), 0);
	assert_int_equal(uirq_ack(u, 1), 0x34);
	apic_eoi(u, 1);
	/* GSIs above 15 reach the IOAPIC only. */
	route(u, 23, 0x77, 0);
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), 23), 0);
	assert_int_equal(uirq_ack(u, 0), 0x77);
	irqchip_destroy(uirq_irqchip(u));
}

/* A masked edge is lost: unmasking later sends nothing. */
static void test_masked_edge_lost(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	route(u, 6, RTE_MASKED | 0x36, 0);
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), 6), 0);
	route(u, 6, 0x36, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	/* Rising while masked, still high at unmask: no edge after the unmask either. */
	route(u, 6, RTE_MASKED | 0x36, 0);
	line(u, 6, 1);
	route(u, 6, 0x36, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* Level: delivered while asserted and Remote IRR clear; Remote IRR set on delivery; a LAPIC
 * EOI of the vector (TMR set) clears it and a still-asserted line is delivered again. */
static void test_level_remote_irr(void **state)
{
	struct uirq *u = make(2);

	(void)state;
	route(u, 10, RTE_LEVEL | 0x3a, 1);
	line(u, 10, 1);
	assert_true(rte_low(u, 10) & RTE_REMOTE_IRR);
	assert_true(tmr_has(u, 1, 0x3a));
	assert_int_equal(uirq_ack(u, 1), 0x3a);
	line(u, 10, 1); /* still asserted, Remote IRR set: nothing new */
	assert_int_equal(uirq_pending(u, 1), -1);
	apic_eoi(u, 1);
	/* EOI broadcast: Remote IRR cleared, line still high: delivered again. */
	assert_true(rte_low(u, 10) & RTE_REMOTE_IRR);
	assert_int_equal(uirq_ack(u, 1), 0x3a);
	line(u, 10, 0); /* the device is serviced */
	apic_eoi(u, 1);
	assert_int_equal(rte_low(u, 10) & RTE_REMOTE_IRR, 0);
	assert_int_equal(uirq_pending(u, 1), -1);
	/* An edge vector's EOI is not broadcast: Remote IRR of a level entry sharing the
	 * vector elsewhere stays set. */
	route(u, 11, RTE_LEVEL | 0x4b, 0);
	line(u, 11, 1);
	assert_true(rte_low(u, 11) & RTE_REMOTE_IRR);
	route(u, 12, 0x5c, 0);
	line(u, 12, 1);
	assert_int_equal(uirq_ack(u, 0), 0x5c);
	apic_eoi(u, 0);
	assert_true(rte_low(u, 11) & RTE_REMOTE_IRR);
	irqchip_destroy(uirq_irqchip(u));
}

/* The IOAPIC EOI register (version 0x20): clears Remote IRR of entries with that vector. */
static void test_eoi_register(void **state)
{
	struct uirq *u = make(1);
	uint32_t v;

	(void)state;
	route(u, 9, RTE_LEVEL | 0x49, 0);
	line(u, 9, 1);
	assert_int_equal(uirq_ack(u, 0), 0x49);
	v = 0x48;
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_EOI, &v, 4), 0);
	assert_true(rte_low(u, 9) & RTE_REMOTE_IRR);
	v = 0x49;
	line(u, 9, 0);
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_EOI, &v, 4), 0);
	assert_int_equal(rte_low(u, 9) & RTE_REMOTE_IRR, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* A masked level line is delivered once unmasked if still asserted, not if it went away. */
static void test_masked_level(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	route(u, 16, RTE_MASKED | RTE_LEVEL | 0x50, 0);
	line(u, 16, 1);
	assert_int_equal(uirq_pending(u, 0), -1);
	assert_int_equal(rte_low(u, 16) & RTE_REMOTE_IRR, 0);
	route(u, 16, RTE_LEVEL | 0x50, 0);
	assert_int_equal(uirq_ack(u, 0), 0x50);
	assert_true(rte_low(u, 16) & RTE_REMOTE_IRR);
	line(u, 16, 0);
	apic_eoi(u, 0);
	route(u, 17, RTE_MASKED | RTE_LEVEL | 0x51, 0);
	line(u, 17, 1);
	line(u, 17, 0);
	route(u, 17, RTE_LEVEL | 0x51, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	/* Masking while Remote IRR is set, then EOI and unmask: delivered if still high. */
	line(u, 17, 1);
	assert_int_equal(uirq_ack(u, 0), 0x51);
	route(u, 17, RTE_MASKED | RTE_LEVEL | 0x51, 0);
	apic_eoi(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	route(u, 17, RTE_LEVEL | 0x51, 0);
	assert_int_equal(uirq_ack(u, 0), 0x51);
	irqchip_destroy(uirq_irqchip(u));
}

/* Polarity: an active-low input is asserted while the pin is low. */
static void test_polarity(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	line(u, 18, 1); /* idle level of an active-low line */
	route(u, 18, RTE_ACTIVE_LOW | RTE_LEVEL | 0x60, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	line(u, 18, 0);
	assert_int_equal(uirq_ack(u, 0), 0x60);
	line(u, 18, 1);
	apic_eoi(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	/* Edge, active low: the falling pin is the asserting edge. */
	route(u, 19, RTE_ACTIVE_LOW | 0x61, 0);
	line(u, 19, 1);
	assert_int_equal(uirq_pending(u, 0), -1);
	line(u, 19, 0);
	assert_int_equal(uirq_ack(u, 0), 0x61);
	irqchip_destroy(uirq_irqchip(u));
}

/* Switching an entry to edge drops Remote IRR. */
static void test_trigger_switch(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	route(u, 20, RTE_LEVEL | 0x70, 0);
	line(u, 20, 1);
	assert_true(rte_low(u, 20) & RTE_REMOTE_IRR);
	route(u, 20, 0x70, 0);
	assert_int_equal(rte_low(u, 20) & RTE_REMOTE_IRR, 0);
	irqchip_destroy(uirq_irqchip(u));
}

/* Destinations and delivery modes: physical, broadcast, logical, lowest priority, NMI, INIT. */
static void test_delivery_modes(void **state)
{
	struct uirq *u = make(4);
	uint32_t ldr;
	uint8_t sipi;

	(void)state;
	for (unsigned k = 0; k < 4; k++) {
		ldr = 1u << (24 + k);
		assert_int_equal(uirq_lapic_write(u, k, APIC_LDR, &ldr, 4), 0);
	}
	route(u, 5, 0x45, 0xff);
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), 5), 0);
	for (unsigned k = 0; k < 4; k++)
		assert_int_equal(uirq_ack(u, k), 0x45);
	for (unsigned k = 0; k < 4; k++)
		apic_eoi(u, k);
	route(u, 5, RTE_LOGICAL | 0x46, 0x06);
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), 5), 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	assert_int_equal(uirq_ack(u, 1), 0x46);
	assert_int_equal(uirq_ack(u, 2), 0x46);
	assert_int_equal(uirq_pending(u, 3), -1);
	apic_eoi(u, 1);
	apic_eoi(u, 2);
	route(u, 5, RTE_LOGICAL | (APIC_DM_LOWEST << 8) | 0x47, 0x0f);
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), 5), 0);
	unsigned n = 0;
	for (unsigned k = 0; k < 4; k++)
		if (uirq_ack(u, k) == 0x47) {
			n++;
			apic_eoi(u, k);
		}
	assert_int_equal(n, 1);
	route(u, 7, (APIC_DM_NMI << 8), 3);
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), 7), 0);
	assert_true(uirq_take_nmi(u, 3));
	assert_false(uirq_take_nmi(u, 2));
	route(u, 7, (APIC_DM_INIT << 8), 2);
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), 7), 0);
	assert_int_equal(uirq_take_startup(u, 2, &sipi), UIRQ_INIT);
	/* A level NMI entry has no Remote IRR handshake. */
	route(u, 8, RTE_LEVEL | (APIC_DM_NMI << 8), 1);
	line(u, 8, 1);
	assert_true(uirq_take_nmi(u, 1));
	assert_int_equal(rte_low(u, 8) & RTE_REMOTE_IRR, 0);
	/* A level message nobody accepts (no such APIC) leaves Remote IRR clear. */
	route(u, 13, RTE_LEVEL | 0x4d, 9);
	line(u, 13, 1);
	assert_int_equal(rte_low(u, 13) & RTE_REMOTE_IRR, 0);
	/* Delivery status always reads idle. */
	assert_int_equal(rte_low(u, 5) & RTE_DELIVS, 0);
	/* A device-side delivery kicks its target. */
	assert_true(kicks[1] > 0);
	irqchip_destroy(uirq_irqchip(u));
}

/* An interrupt routed to a software-disabled LAPIC is not accepted (SDM 10.4.7.2). */
static void test_disabled_target(void **state)
{
	struct uirq *u = make(2);
	uint32_t svr = 0xff;

	(void)state;
	assert_int_equal(uirq_lapic_write(u, 1, APIC_SVR, &svr, 4), 0);
	route(u, 14, RTE_LEVEL | 0x5e, 1);
	line(u, 14, 1);
	assert_int_equal(uirq_pending(u, 1), -1);
	assert_int_equal(rte_low(u, 14) & RTE_REMOTE_IRR, 0);
	svr = 0x1ff;
	assert_int_equal(uirq_lapic_write(u, 1, APIC_SVR, &svr, 4), 0);
	route(u, 14, RTE_LEVEL | 0x5e, 1); /* the driver rewrites the entry */
	assert_int_equal(uirq_ack(u, 1), 0x5e);
	irqchip_destroy(uirq_irqchip(u));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_registers),        cmocka_unit_test(test_edge),
	    cmocka_unit_test(test_masked_edge_lost), cmocka_unit_test(test_level_remote_irr),
	    cmocka_unit_test(test_eoi_register),     cmocka_unit_test(test_masked_level),
	    cmocka_unit_test(test_polarity),         cmocka_unit_test(test_trigger_switch),
	    cmocka_unit_test(test_delivery_modes),   cmocka_unit_test(test_disabled_target),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
