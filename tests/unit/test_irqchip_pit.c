/* Userspace 8254 PIT (irqchip/pit.c) through ports 0x40-0x43 and 0x61, with IRQ 0 seen at the
 * IOAPIC and the PIC: counts and OUT per mode at exact clock ticks, latches, read-back,
 * channel 2's gate and OUT2. Expectations from the 8254 datasheet; CLK is 1193182 Hz. */
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

#define HZ 1193182ULL
#define T0 5000000000ULL

static struct irqchip_manual_clock mc;

/* The first nanosecond (after T0) at which `k` CLK periods have elapsed. */
static uint64_t at_tick(uint64_t k)
{
	return T0 + (k * 1000000000ULL + HZ - 1) / HZ;
}

static void outb(struct uirq *u, uint16_t port, uint8_t v)
{
	assert_int_equal(uirq_pio_write(u, port, &v, 1), 0);
}

static uint8_t inb(struct uirq *u, uint16_t port)
{
	uint8_t v = 0;

	assert_int_equal(uirq_pio_read(u, port, &v, 1), 0);
	return v;
}

static void io_wr(struct uirq *u, uint8_t reg, uint32_t val)
{
	uint32_t v = reg;

	assert_int_equal(uirq_ioapic_write(u, IOAPIC_REGSEL, &v, 4), 0);
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_WINDOW, &val, 4), 0);
}

/* Two vCPUs; IOAPIC pin 0 (the PIT, no override) -> vCPU 0 vector 0x30, edge. */
static struct uirq *make(void)
{
	struct uirq_config cfg = {.ncpus = 2};
	struct uirq *u;
	uint32_t svr = 0x1ff;

	mc.ns = T0 - 1000;
	irqchip_manual_clock(&cfg.clock, &mc, 1000000000);
	u = uirq_create(&cfg);
	assert_non_null(u);
	assert_int_equal(uirq_lapic_write(u, 0, APIC_SVR, &svr, 4), 0);
	io_wr(u, IOAPIC_REG_RTE0 + 1, 0);
	io_wr(u, IOAPIC_REG_RTE0, 0x30);
	mc.ns = T0;
	return u;
}

/* Program channel `ch` with `ctrl` and a 16-bit count (LSB then MSB) at T0. */
static void program(struct uirq *u, unsigned ch, uint8_t ctrl, uint16_t count)
{
	mc.ns = T0;
	outb(u, 0x43, ctrl);
	outb(u, 0x40 + ch, count & 0xff);
	outb(u, 0x40 + ch, count >> 8);
}

static uint16_t latched_count(struct uirq *u, unsigned ch)
{
	uint16_t lo, hi;

	outb(u, 0x43, (uint8_t)(ch << 6)); /* counter latch */
	lo = inb(u, 0x40 + ch);
	hi = inb(u, 0x40 + ch);
	return (uint16_t)(lo | hi << 8);
}

static uint8_t status(struct uirq *u, unsigned ch)
{
	outb(u, 0x43, (uint8_t)(0xe0 | (2u << ch))); /* read-back, status only */
	return inb(u, 0x40 + ch);
}

/* Did IRQ 0 reach vCPU 0 since the last call (taken with EOI)? */
static bool irq0(struct uirq *u)
{
	uint32_t z = 0;
	int v;

	uirq_tick(u, 0);
	v = uirq_ack(u, 0);
	if (v < 0)
		return false;
	assert_int_equal(v, 0x30);
	assert_int_equal(uirq_lapic_write(u, 0, APIC_EOI, &z, 4), 0);
	return true;
}

/* Mode 2: a rising edge of OUT every N ticks; OUT low for the tick at count 1. */
static void test_mode2_rate_generator(void **state)
{
	struct uirq *u = make();

	(void)state;
	program(u, 0, 0x34, 1193);
	assert_false(irq0(u)); /* programming is no edge */
	assert_int_equal(uirq_next_deadline(u, 0), at_tick(1193));
	assert_int_equal(uirq_next_deadline(u, 1), UINT64_MAX); /* vCPU 0 keeps PIT time */
	assert_int_equal(uirq_next_deadline(u, -1), at_tick(1193));
	mc.ns = at_tick(100);
	assert_int_equal(latched_count(u, 0), 1093);
	mc.ns = at_tick(1192);
	assert_int_equal(latched_count(u, 0), 1);
	assert_int_equal(status(u, 0) & 0x80, 0); /* OUT low at count 1 */
	mc.ns = at_tick(1193) - 1;
	assert_false(irq0(u));
	mc.ns = at_tick(1193);
	assert_int_equal(status(u, 0) & 0x80, 0x80);
	assert_int_equal(latched_count(u, 0), 1193); /* reloaded */
	assert_true(irq0(u));
	assert_false(irq0(u));
	assert_int_equal(uirq_next_deadline(u, 0), at_tick(2 * 1193));
	/* Late by several periods: one interrupt, next edge on the original grid. */
	mc.ns = at_tick(5 * 1193 + 10);
	assert_true(irq0(u));
	assert_false(irq0(u));
	assert_int_equal(uirq_next_deadline(u, 0), at_tick(6 * 1193));
	irqchip_destroy(uirq_irqchip(u));
}

/* Mode 0: OUT low from the control word, high at terminal count (one edge); the counter
 * keeps counting down through 0. */
static void test_mode0_terminal_count(void **state)
{
	struct uirq *u = make();

	(void)state;
	program(u, 0, 0x30, 100);
	assert_int_equal(status(u, 0), 0x30); /* OUT low, count loaded, lohi, mode 0 */
	mc.ns = at_tick(99);
	assert_int_equal(latched_count(u, 0), 1);
	assert_false(irq0(u));
	mc.ns = at_tick(100);
	assert_int_equal(latched_count(u, 0), 0);
	assert_int_equal(status(u, 0) & 0x80, 0x80);
	assert_true(irq0(u));
	mc.ns = at_tick(101);
	assert_int_equal(latched_count(u, 0), 0xffff);
	assert_int_equal(uirq_next_deadline(u, 0), UINT64_MAX);
	mc.ns = at_tick(100000);
	assert_false(irq0(u));
	/* A new count restarts it: OUT low again, one more edge N ticks later. */
	outb(u, 0x40, 10);
	assert_int_equal(status(u, 0) & 0x80, 0);
	outb(u, 0x40, 0);
	mc.ns = at_tick(100000) + (10 * 1000000000ULL + HZ - 1) / HZ;
	assert_true(irq0(u));
	irqchip_destroy(uirq_irqchip(u));
}

/* Mode 3: OUT high for ceil(N/2) ticks, low for floor(N/2); the count drops by two. */
static void test_mode3_square_wave(void **state)
{
	static const uint16_t even[] = {10, 8, 6, 4, 2, 10, 8, 6, 4, 2, 10};
	struct uirq *u = make();

	(void)state;
	program(u, 0, 0x36, 10);
	for (unsigned t = 0; t <= 10; t++) {
		mc.ns = at_tick(t);
		assert_int_equal(latched_count(u, 0), even[t]);
		assert_int_equal(status(u, 0) >> 7, t % 10 < 5);
	}
	assert_true(irq0(u)); /* the rise at tick 10 */
	mc.ns = at_tick(14);
	assert_false(irq0(u));
	mc.ns = at_tick(20);
	assert_true(irq0(u));
	/* Odd N = 11: high 6 ticks, low 5. */
	program(u, 0, 0x36, 11);
	for (unsigned t = 0; t < 22; t++) {
		mc.ns = at_tick(t);
		assert_int_equal(status(u, 0) >> 7, t % 11 < 6);
	}
	irqchip_destroy(uirq_irqchip(u));
}

/* Mode 4: OUT high, low for the one tick at count 0, so the rising edge is at N + 1. */
static void test_mode4_strobe(void **state)
{
	struct uirq *u = make();

	(void)state;
	program(u, 0, 0x38, 50);
	assert_int_equal(uirq_next_deadline(u, 0), at_tick(51));
	mc.ns = at_tick(50);
	assert_int_equal(status(u, 0) & 0x80, 0);
	assert_false(irq0(u));
	mc.ns = at_tick(51);
	assert_int_equal(status(u, 0) & 0x80, 0x80);
	assert_true(irq0(u));
	mc.ns = at_tick(10000);
	assert_false(irq0(u));
	irqchip_destroy(uirq_irqchip(u));
}

/* Modes 6 and 7 are modes 2 and 3; the status byte shows the bits as written. */
static void test_mode_aliases(void **state)
{
	struct uirq *u = make();

	(void)state;
	program(u, 0, 0x3c, 100);
	assert_int_equal(status(u, 0) & 0x3f, 0x3c);
	mc.ns = at_tick(100);
	assert_true(irq0(u));
	mc.ns = at_tick(200);
	assert_true(irq0(u));
	program(u, 0, 0x3e, 100);
	mc.ns = at_tick(50);
	assert_int_equal(status(u, 0) & 0x80, 0); /* square wave's low half */
	irqchip_destroy(uirq_irqchip(u));
}

/* Counter latch holds the value until read (a second latch is ignored); read-back latches
 * status and count, status read first; null count until the count is written. */
static void test_latch_and_read_back(void **state)
{
	struct uirq *u = make();

	(void)state;
	mc.ns = T0;
	outb(u, 0x43, 0x34);
	assert_int_equal(status(u, 0), 0x80 | 0x40 | 0x34); /* null count */
	outb(u, 0x40, 0x00);
	outb(u, 0x40, 0x10); /* 4096 */
	assert_int_equal(status(u, 0), 0x80 | 0x34);
	mc.ns = at_tick(10);
	outb(u, 0x43, 0x00);
	mc.ns = at_tick(50);
	outb(u, 0x43, 0x00); /* ignored: still latched */
	assert_int_equal(inb(u, 0x40), (4096 - 10) & 0xff);
	mc.ns = at_tick(60);
	assert_int_equal(inb(u, 0x40), (4096 - 10) >> 8);
	/* Live reads now. */
	assert_int_equal(inb(u, 0x40), (4096 - 60) & 0xff);
	assert_int_equal(inb(u, 0x40), (4096 - 60) >> 8);
	/* Read-back of count and status (0xc2). */
	mc.ns = at_tick(70);
	outb(u, 0x43, 0xc2);
	mc.ns = at_tick(80);
	assert_int_equal(inb(u, 0x40), 0x80 | 0x34);
	assert_int_equal(inb(u, 0x40), (4096 - 70) & 0xff);
	assert_int_equal(inb(u, 0x40), (4096 - 70) >> 8);
	/* Read-back of the count alone, for channels 0 and 2 at once (0xda). */
	program(u, 2, 0xb4, 300);
	mc.ns = at_tick(5);
	outb(u, 0x61, 0x01);
	mc.ns = at_tick(25);
	outb(u, 0x43, 0xda);
	assert_int_equal(inb(u, 0x42), (300 - 20) & 0xff);
	assert_int_equal(inb(u, 0x42), (300 - 20) >> 8);
	irqchip_destroy(uirq_irqchip(u));
}

/* RW modes: LSB only, MSB only, LSB then MSB (reads alternate). */
static void test_access_modes(void **state)
{
	struct uirq *u = make();

	(void)state;
	mc.ns = T0;
	outb(u, 0x43, 0x50); /* ch1, LSB only, mode 0 */
	outb(u, 0x41, 0x80);
	mc.ns = at_tick(0x10);
	assert_int_equal(inb(u, 0x41), 0x70);
	assert_int_equal(inb(u, 0x41), 0x70);
	mc.ns = T0;
	outb(u, 0x43, 0x60); /* ch1, MSB only */
	outb(u, 0x41, 0x02);
	mc.ns = at_tick(0x100);
	assert_int_equal(inb(u, 0x41), 0x01);
	assert_int_equal(status(u, 1) & 0x30, 0x20);
	/* Count 0 is 65536. */
	program(u, 1, 0x74, 0);
	mc.ns = at_tick(1);
	assert_int_equal(latched_count(u, 1), 0xffff);
	assert_int_equal(inb(u, 0x43), 0xff); /* the control register is write-only */
	irqchip_destroy(uirq_irqchip(u));
}

/* Port 0x61: bit 0 gates channel 2, bit 1 (speaker) is stored, bit 5 is OUT2, bit 4 the
 * refresh toggle. Linux's PIT TSC calibration: mode 0 on channel 2, poll bit 5. */
static void test_port61_calibration(void **state)
{
	struct uirq *u = make();
	uint8_t v;

	(void)state;
	mc.ns = T0;
	outb(u, 0x61, (uint8_t)((inb(u, 0x61) & ~0x02) | 0x01));
	assert_int_equal(inb(u, 0x61) & 0x03, 0x01);
	program(u, 2, 0xb0, 59659); /* 50 ms */
	assert_int_equal(inb(u, 0x61) & 0x20, 0);
	mc.ns = at_tick(59658);
	assert_int_equal(inb(u, 0x61) & 0x20, 0);
	mc.ns = at_tick(59659);
	assert_int_equal(inb(u, 0x61) & 0x20, 0x20);
	/* Channel 2 never raises IRQ 0. */
	assert_false(irq0(u));
	/* Speaker enable is kept; the refresh bit toggles every 15.085 us. */
	outb(u, 0x61, 0x03);
	assert_int_equal(inb(u, 0x61) & 0x03, 0x03);
	mc.ns = 150850000;
	v = inb(u, 0x61) & 0x10;
	mc.ns += 15085;
	assert_int_not_equal(inb(u, 0x61) & 0x10, v);
	irqchip_destroy(uirq_irqchip(u));
}

/* quick_pit_calibrate: mode 0, count 0xffff, live LSB/MSB reads of channel 2. */
static void test_live_msb_reads(void **state)
{
	struct uirq *u = make();

	(void)state;
	mc.ns = T0;
	outb(u, 0x61, 0x01);
	program(u, 2, 0xb0, 0xffff);
	for (unsigned k = 0; k < 8; k++) {
		uint64_t ticks = 256ULL * k + 7;
		uint16_t expect = (uint16_t)(0xffff - ticks);

		mc.ns = at_tick(ticks);
		assert_int_equal(inb(u, 0x42), expect & 0xff);
		assert_int_equal(inb(u, 0x42), expect >> 8);
	}
	irqchip_destroy(uirq_irqchip(u));
}

/* The gate: low pauses modes 0/4; in modes 2/3 low stops the count with OUT high and a
 * rising gate reloads; in mode 1 a rising gate triggers the one-shot. */
static void test_gate(void **state)
{
	struct uirq *u = make();

	(void)state;
	mc.ns = T0;
	outb(u, 0x61, 0x00);
	program(u, 2, 0xb0, 1000); /* gate low: loaded, not counting */
	mc.ns = at_tick(500);
	assert_int_equal(latched_count(u, 2), 1000);
	outb(u, 0x61, 0x01);
	mc.ns = at_tick(600);
	assert_int_equal(latched_count(u, 2), 900);
	outb(u, 0x61, 0x00);
	mc.ns = at_tick(5000);
	assert_int_equal(latched_count(u, 2), 900);
	assert_int_equal(inb(u, 0x61) & 0x20, 0);

	program(u, 2, 0xb4, 100); /* mode 2, gate still low */
	mc.ns = at_tick(50);
	assert_int_equal(latched_count(u, 2), 100);
	assert_int_equal(inb(u, 0x61) & 0x20, 0x20);
	outb(u, 0x61, 0x01);
	mc.ns = at_tick(80);
	assert_int_equal(latched_count(u, 2), 70);
	outb(u, 0x61, 0x00); /* stop */
	mc.ns = at_tick(99);
	assert_int_equal(latched_count(u, 2), 70);
	assert_int_equal(inb(u, 0x61) & 0x20, 0x20);
	outb(u, 0x61, 0x01); /* reload */
	mc.ns = at_tick(109);
	assert_int_equal(latched_count(u, 2), 90);

	program(u, 2, 0xb2, 40); /* mode 1 */
	assert_int_equal(inb(u, 0x61) & 0x20, 0x20);
	outb(u, 0x61, 0x00);
	mc.ns = at_tick(10);
	outb(u, 0x61, 0x01); /* trigger */
	assert_int_equal(inb(u, 0x61) & 0x20, 0);
	mc.ns = at_tick(49);
	assert_int_equal(inb(u, 0x61) & 0x20, 0);
	assert_int_equal(latched_count(u, 2), 1);
	mc.ns = at_tick(50);
	assert_int_equal(inb(u, 0x61) & 0x20, 0x20);
	irqchip_destroy(uirq_irqchip(u));
}

/* IRQ 0 also reaches the PIC (IR0) and through it the BSP's ExtINT input. */
static void test_irq0_through_pic(void **state)
{
	struct uirq *u = make();
	uint8_t icw[] = {0x11, 0x20, 0x04, 0x01};

	(void)state;
	io_wr(u, IOAPIC_REG_RTE0, RTE_MASKED | 0x30);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(uirq_pio_write(u, i ? 0x21 : 0x20, &icw[i], 1), 0);
	program(u, 0, 0x34, 500);
	mc.ns = at_tick(500);
	uirq_tick(u, -1);
	assert_int_equal(uirq_ack(u, 0), 0x20);
	irqchip_destroy(uirq_irqchip(u));
}

/* BCD is accepted and counts in binary (documented simplification); the bit is reported. */
static void test_bcd_is_binary(void **state)
{
	struct uirq *u = make();

	(void)state;
	program(u, 0, 0x31, 0x0100);
	assert_int_equal(status(u, 0) & 0x01, 0x01);
	mc.ns = at_tick(256);
	assert_true(irq0(u));
	irqchip_destroy(uirq_irqchip(u));
}

/* A control word mid-count stops the old programming. */
static void test_reprogram(void **state)
{
	struct uirq *u = make();

	(void)state;
	program(u, 0, 0x34, 100);
	mc.ns = at_tick(50);
	outb(u, 0x43, 0x34);
	assert_int_equal(uirq_next_deadline(u, 0), UINT64_MAX);
	mc.ns = at_tick(1000);
	assert_false(irq0(u));
	assert_int_equal(inb(u, 0x40), 0); /* unloaded */
	irqchip_destroy(uirq_irqchip(u));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mode2_rate_generator),
	    cmocka_unit_test(test_mode0_terminal_count),
	    cmocka_unit_test(test_mode3_square_wave),
	    cmocka_unit_test(test_mode4_strobe),
	    cmocka_unit_test(test_mode_aliases),
	    cmocka_unit_test(test_latch_and_read_back),
	    cmocka_unit_test(test_access_modes),
	    cmocka_unit_test(test_port61_calibration),
	    cmocka_unit_test(test_live_msb_reads),
	    cmocka_unit_test(test_gate),
	    cmocka_unit_test(test_irq0_through_pic),
	    cmocka_unit_test(test_bcd_is_binary),
	    cmocka_unit_test(test_reprogram),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
