/* Userspace 8259A pair (irqchip/pic.c) through its ports and the BSP's ExtINT path:
 * initialization, priorities, EOI and rotation, AEOI, cascade, ELCR, poll, special mask.
 * Expectations from the 8259A datasheet. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "irqchip/lapic.h"
#include "irqchip/pic.h"
#include "irqchip/userspace.h"

static struct irqchip_manual_clock mc;
static unsigned kicks[UIRQ_MAX_CPUS];

static void kick(void *opaque, unsigned cpu)
{
	(void)opaque;
	kicks[cpu]++;
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

/* Linux's init_8259A: master at 0x20, slave at 0x28 on IR2, 8086 mode, normal EOI. */
static void init_pics(struct uirq *u, uint8_t master_icw4)
{
	outb(u, 0x20, 0x11);
	outb(u, 0x21, 0x20);
	outb(u, 0x21, 0x04);
	outb(u, 0x21, master_icw4);
	outb(u, 0xa0, 0x11);
	outb(u, 0xa1, 0x28);
	outb(u, 0xa1, 0x02);
	outb(u, 0xa1, 0x01);
}

static struct uirq *make(uint8_t master_icw4)
{
	struct uirq_config cfg = {.ncpus = 2, .kick = kick};
	struct uirq *u;

	mc.ns = 1000;
	memset(kicks, 0, sizeof(kicks));
	irqchip_manual_clock(&cfg.clock, &mc, 1000000000);
	u = uirq_create(&cfg);
	assert_non_null(u);
	init_pics(u, master_icw4);
	return u;
}

static void pulse(struct uirq *u, uint32_t irq)
{
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), irq), 0);
}

static uint8_t read_isr(struct uirq *u, uint16_t cmd)
{
	outb(u, cmd, 0x0b);
	return inb(u, cmd);
}

static uint8_t read_irr(struct uirq *u, uint16_t cmd)
{
	outb(u, cmd, 0x0a);
	return inb(u, cmd);
}

static void test_init_sequence(void **state)
{
	struct uirq_config cfg = {.ncpus = 1};
	struct uirq *u;

	(void)state;
	irqchip_manual_clock(&cfg.clock, &mc, 1000000000);
	u = uirq_create(&cfg);
	assert_non_null(u);
	/* No firmware: everything masked until the guest programs the PIC. */
	assert_int_equal(inb(u, 0x21), 0xff);
	assert_int_equal(inb(u, 0xa1), 0xff);
	pulse(u, 1);
	assert_int_equal(uirq_pending(u, 0), -1);
	outb(u, 0x20, 0x11); /* ICW1 clears IMR and the edge latches */
	assert_int_equal(inb(u, 0x21), 0);
	assert_int_equal(read_irr(u, 0x20), 0);
	outb(u, 0x21, 0x20);
	outb(u, 0x21, 0x04);
	outb(u, 0x21, 0x01);
	outb(u, 0x21, 0xf5); /* OCW1 now */
	assert_int_equal(inb(u, 0x21), 0xf5);
	outb(u, 0x21, 0x00);
	pulse(u, 1);
	assert_int_equal(uirq_pending(u, 0), 0x21);
	assert_int_equal(uirq_ack(u, 0), 0x21);
	assert_int_equal(read_isr(u, 0x20), 0x02);
	assert_int_equal(read_irr(u, 0x20), 0x00);
	outb(u, 0x20, 0x20); /* non-specific EOI */
	assert_int_equal(read_isr(u, 0x20), 0x00);
	/* Single mode with ICW4: ICW3 is skipped. */
	outb(u, 0x20, 0x13);
	outb(u, 0x21, 0x40);
	outb(u, 0x21, 0x01);
	outb(u, 0x21, 0xfe);
	assert_int_equal(inb(u, 0x21), 0xfe);
	/* No ICW4 in cascade mode: ICW2, ICW3, then OCW1. */
	outb(u, 0x20, 0x10);
	outb(u, 0x21, 0x50);
	outb(u, 0x21, 0x04);
	outb(u, 0x21, 0xfd);
	assert_int_equal(inb(u, 0x21), 0xfd);
	pulse(u, 1);
	assert_int_equal(uirq_ack(u, 0), 0x51);
	irqchip_destroy(uirq_irqchip(u));
}

/* Fully nested priority: IR0 highest; an in-service level blocks itself and lower ones. */
static void test_priority(void **state)
{
	struct uirq *u = make(0x01);

	(void)state;
	pulse(u, 5);
	pulse(u, 3);
	assert_int_equal(uirq_ack(u, 0), 0x23);
	assert_int_equal(uirq_pending(u, 0), -1); /* IR5 below in-service IR3 */
	pulse(u, 3);                              /* same level: waits too */
	assert_int_equal(uirq_pending(u, 0), -1);
	pulse(u, 1);
	assert_int_equal(uirq_ack(u, 0), 0x21); /* higher: nests */
	assert_int_equal(read_isr(u, 0x20), 0x0a);
	outb(u, 0x20, 0x20); /* non-specific EOI retires the highest, IR1 */
	assert_int_equal(read_isr(u, 0x20), 0x08);
	assert_int_equal(uirq_pending(u, 0), -1);
	outb(u, 0x20, 0x63); /* specific EOI for IR3 */
	assert_int_equal(read_isr(u, 0x20), 0x00);
	assert_int_equal(uirq_ack(u, 0), 0x23);
	outb(u, 0x20, 0x20);
	assert_int_equal(uirq_ack(u, 0), 0x25);
	outb(u, 0x20, 0x65);
	assert_int_equal(uirq_ack(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* OCW2 priority rotation: set priority (IR L lowest), rotate on (non-)specific EOI. */
static void test_rotation(void **state)
{
	struct uirq *u = make(0x01);

	(void)state;
	outb(u, 0x20, 0xc4); /* IR4 lowest: IR5 highest, then 6, 7, 0 ... */
	pulse(u, 3);
	pulse(u, 6);
	pulse(u, 1);
	assert_int_equal(uirq_ack(u, 0), 0x26);
	outb(u, 0x20, 0xa0); /* rotate on non-specific EOI: IR6 becomes lowest */
	assert_int_equal(uirq_ack(u, 0), 0x21);
	pulse(u, 6);
	assert_int_equal(uirq_pending(u, 0), -1); /* IR6 is lowest now, below IR1 in service */
	outb(u, 0x20, 0xe1);                      /* rotate on specific EOI 1: IR1 lowest */
	assert_int_equal(uirq_ack(u, 0), 0x23);   /* IR2 highest: 3 before 6 */
	outb(u, 0x20, 0x20);
	assert_int_equal(uirq_ack(u, 0), 0x26);
	outb(u, 0x20, 0x20);
	outb(u, 0x20, 0x40); /* no-op */
	assert_int_equal(read_isr(u, 0x20), 0);
	irqchip_destroy(uirq_irqchip(u));
}

/* Automatic EOI (ICW4 bit 1): INTA does not set ISR; rotation in AEOI via OCW2 0x80. */
static void test_auto_eoi(void **state)
{
	struct uirq *u = make(0x03);

	(void)state;
	pulse(u, 3);
	assert_int_equal(uirq_ack(u, 0), 0x23);
	assert_int_equal(read_isr(u, 0x20), 0);
	pulse(u, 7);
	assert_int_equal(uirq_ack(u, 0), 0x27); /* not blocked by IR3 */
	outb(u, 0x20, 0x80);                    /* rotate in AEOI mode */
	pulse(u, 4);
	assert_int_equal(uirq_ack(u, 0), 0x24); /* IR4 becomes lowest */
	pulse(u, 4);
	pulse(u, 5);
	assert_int_equal(uirq_ack(u, 0), 0x25);
	assert_int_equal(uirq_ack(u, 0), 0x24);
	outb(u, 0x20, 0x00); /* clear rotate in AEOI */
	irqchip_destroy(uirq_irqchip(u));
}

/* Cascade: slave requests arrive through master IR2 with IR2's priority; INTA takes the
 * slave's vector and puts IR2 in service on the master. */
static void test_cascade(void **state)
{
	struct uirq *u = make(0x01);

	(void)state;
	pulse(u, 3);
	pulse(u, 10);
	assert_int_equal(uirq_ack(u, 0), 0x2a); /* IR2 beats IR3 */
	assert_int_equal(read_isr(u, 0x20), 0x04);
	assert_int_equal(read_isr(u, 0xa0), 0x04);
	pulse(u, 9);
	assert_int_equal(uirq_pending(u, 0), -1); /* master IR2 in service */
	pulse(u, 1);
	assert_int_equal(uirq_ack(u, 0), 0x21);
	outb(u, 0x20, 0x20);
	outb(u, 0xa0, 0x20);
	outb(u, 0x20, 0x20);
	assert_int_equal(uirq_ack(u, 0), 0x29);
	outb(u, 0xa0, 0x20);
	outb(u, 0x20, 0x20);
	assert_int_equal(uirq_ack(u, 0), 0x23);
	outb(u, 0x20, 0x20);
	/* Masked on the slave, or the cascade masked on the master: nothing. */
	outb(u, 0xa1, 0x10);
	pulse(u, 12);
	assert_int_equal(uirq_pending(u, 0), -1);
	outb(u, 0xa1, 0x00);
	assert_int_equal(uirq_pending(u, 0), 0x2c);
	outb(u, 0x21, 0x04);
	assert_int_equal(uirq_pending(u, 0), -1);
	outb(u, 0x21, 0x00);
	assert_int_equal(uirq_ack(u, 0), 0x2c);
	outb(u, 0xa0, 0x20);
	outb(u, 0x20, 0x20);
	/* IRQ 2 itself is the cascade input, not a device line. */
	pulse(u, 2);
	assert_int_equal(uirq_pending(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* Special fully nested mode (ICW4 bit 4 on the master): a higher slave request may interrupt
 * a slave interrupt in service. */
static void test_special_fully_nested(void **state)
{
	struct uirq *u = make(0x11);

	(void)state;
	pulse(u, 12);
	assert_int_equal(uirq_ack(u, 0), 0x2c);
	pulse(u, 9);
	assert_int_equal(uirq_ack(u, 0), 0x29);
	pulse(u, 14); /* lower than IR4 on the slave: still blocked there */
	assert_int_equal(uirq_pending(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* INTA with no request returns IR7's vector and sets nothing in service. */
static void test_spurious_irq7(void **state)
{
	struct pic p;

	(void)state;
	pic_init(&p);
	pic_write(&p, 0, 0, 0x11);
	pic_write(&p, 0, 1, 0x08);
	pic_write(&p, 0, 1, 0x04);
	pic_write(&p, 0, 1, 0x01);
	assert_false(pic_output(&p));
	assert_int_equal(pic_peek(&p), -1);
	assert_int_equal(pic_inta(&p), 0x0f);
	pic_write(&p, 0, 0, 0x0b);
	assert_int_equal(pic_read(&p, 0, 0), 0);
	/* A level request that went away before INTA: spurious too. */
	pic_elcr_write(&p, 0, 0x08);
	pic_set_irq(&p, 3, true);
	assert_true(pic_output(&p));
	pic_set_irq(&p, 3, false);
	assert_int_equal(pic_inta(&p), 0x0f);
	/* Out-of-range chips and IRQs are ignored. */
	pic_set_irq(&p, 16, true);
	pic_set_irq(&p, UINT32_MAX, true);
	pic_write(&p, 2, 0, 0x11);
	assert_int_equal(pic_read(&p, 5, 1), 0xff);
	assert_int_equal(pic_elcr_read(&p, 9), 0xff);
	assert_false(pic_output(&p));
}

/* ELCR: level inputs follow the line (IRR is not cleared by INTA); edge inputs latch. */
static void test_elcr_level(void **state)
{
	struct uirq *u = make(0x01);
	uint16_t w;

	(void)state;
	outb(u, 0x4d0, 0xff);
	outb(u, 0x4d1, 0xff);
	assert_int_equal(inb(u, 0x4d0), 0xf8); /* IRQ 0, 1, 2 always edge */
	assert_int_equal(inb(u, 0x4d1), 0xde); /* IRQ 8, 13 always edge */
	assert_int_equal(uirq_pio_read(u, 0x4d0, &w, 2), 0);
	assert_int_equal(w, 0xdef8);
	outb(u, 0x4d0, 0x00);
	outb(u, 0x4d1, 0x08); /* IRQ 11 level */
	irqchip_set_irq(uirq_irqchip(u), 11, 1);
	assert_int_equal(uirq_ack(u, 0), 0x2b);
	assert_int_equal(read_irr(u, 0xa0), 0x08);
	outb(u, 0xa0, 0x20);
	outb(u, 0x20, 0x20);
	assert_int_equal(uirq_ack(u, 0), 0x2b); /* still asserted */
	irqchip_set_irq(uirq_irqchip(u), 11, 0);
	assert_int_equal(read_irr(u, 0xa0), 0x00);
	outb(u, 0xa0, 0x20);
	outb(u, 0x20, 0x20);
	assert_int_equal(uirq_pending(u, 0), -1);
	/* An edge input keeps its request after the line falls. */
	pulse(u, 4);
	assert_int_equal(read_irr(u, 0x20), 0x10);
	assert_int_equal(uirq_ack(u, 0), 0x24);
	outb(u, 0x20, 0x20);
	/* Switching an input to level with its line high requests at once. */
	irqchip_set_irq(uirq_irqchip(u), 5, 1);
	assert_int_equal(uirq_ack(u, 0), 0x25);
	outb(u, 0x20, 0x20);
	assert_int_equal(uirq_pending(u, 0), -1);
	outb(u, 0x4d0, 0x20);
	assert_int_equal(uirq_ack(u, 0), 0x25);
	irqchip_destroy(uirq_irqchip(u));
}

/* IMR masks requests without dropping them. */
static void test_masking(void **state)
{
	struct uirq *u = make(0x01);

	(void)state;
	outb(u, 0x21, 0x20);
	pulse(u, 5);
	assert_int_equal(read_irr(u, 0x20), 0x20);
	assert_int_equal(uirq_pending(u, 0), -1);
	outb(u, 0x21, 0x00);
	assert_int_equal(uirq_ack(u, 0), 0x25);
	irqchip_destroy(uirq_irqchip(u));
}

/* Poll (OCW3 P=1): the next command-port read is an INTA returning 0x80 | level. */
static void test_poll(void **state)
{
	struct uirq *u = make(0x01);

	(void)state;
	pulse(u, 6);
	outb(u, 0x20, 0x0c);
	assert_int_equal(inb(u, 0x20), 0x86);
	assert_int_equal(read_isr(u, 0x20), 0x40);
	outb(u, 0x20, 0x20);
	outb(u, 0x20, 0x0c);
	assert_int_equal(inb(u, 0x20), 0x00);
	/* Polling the slave. */
	pulse(u, 13);
	outb(u, 0xa0, 0x0c);
	assert_int_equal(inb(u, 0xa0), 0x85);
	assert_int_equal(uirq_pending(u, 0), -1); /* the slave's request was taken */
	irqchip_destroy(uirq_irqchip(u));
}

/* Special mask mode: a masked in-service level stops blocking lower levels. */
static void test_special_mask(void **state)
{
	struct uirq *u = make(0x01);

	(void)state;
	pulse(u, 3);
	assert_int_equal(uirq_ack(u, 0), 0x23);
	pulse(u, 5);
	assert_int_equal(uirq_pending(u, 0), -1);
	outb(u, 0x21, 0x08);
	outb(u, 0x20, 0x68); /* set special mask */
	assert_int_equal(uirq_pending(u, 0), 0x25);
	outb(u, 0x20, 0x48); /* reset special mask */
	assert_int_equal(uirq_pending(u, 0), -1);
	outb(u, 0x20, 0x68);
	assert_int_equal(uirq_ack(u, 0), 0x25);
	irqchip_destroy(uirq_irqchip(u));
}

/* The PIC reaches the BSP only through LINT0 in ExtINT mode (or with the APIC globally off);
 * ExtINT goes before the APIC's own requests; INT rising kicks the BSP. */
static void test_extint_path(void **state)
{
	struct uirq *u = make(0x01);
	uint32_t v;

	(void)state;
	v = 0x1ff;
	assert_int_equal(uirq_lapic_write(u, 1, APIC_SVR, &v, 4), 0);
	v = APIC_DM_EXTINT << 8;
	assert_int_equal(uirq_lapic_write(u, 1, APIC_LVT0, &v, 4), 0);
	pulse(u, 1);
	assert_int_equal(kicks[0], 1);
	assert_int_equal(kicks[1], 0); /* LINT0 of the APs is not wired */
	assert_int_equal(uirq_pending(u, 1), -1);
	pulse(u, 3);
	assert_int_equal(kicks[0], 1); /* INT was already up */
	v = 0x1ff;
	assert_int_equal(uirq_lapic_write(u, 0, APIC_SVR, &v, 4), 0);
	v = (APIC_SH_SELF << 18) | 0xf0;
	assert_int_equal(uirq_lapic_write(u, 0, APIC_ICR_LO, &v, 4), 0);
	assert_int_equal(uirq_ack(u, 0), 0x21);
	outb(u, 0x20, 0x20);
	assert_true(uirq_wakeup_pending(u, 0));
	v = LVT_MASKED | (APIC_DM_EXTINT << 8);
	assert_int_equal(uirq_lapic_write(u, 0, APIC_LVT0, &v, 4), 0);
	assert_int_equal(uirq_ack(u, 0), 0xf0); /* the PIC's IR3 waits */
	v = 0;
	assert_int_equal(uirq_lapic_write(u, 0, APIC_EOI, &v, 4), 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	/* APIC globally disabled: INTR goes straight to the core. */
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00100), 0);
	assert_int_equal(uirq_ack(u, 0), 0x23);
	irqchip_destroy(uirq_irqchip(u));
}

/* An IOAPIC entry in ExtINT mode sends the PIC's interrupt to its destination, here an AP:
 * that vCPU's INTA reads the vector from the PIC. */
static void test_ioapic_extint(void **state)
{
	struct uirq *u = make(0x01);
	uint32_t v;

	(void)state;
	v = 0x1ff;
	assert_int_equal(uirq_lapic_write(u, 1, APIC_SVR, &v, 4), 0);
	v = LVT_MASKED;
	assert_int_equal(uirq_lapic_write(u, 0, APIC_LVT0, &v, 4), 0);
	v = 0x10 + 2 * 4 + 1;
	assert_int_equal(uirq_ioapic_write(u, 0, &v, 4), 0);
	v = 1u << 24;
	assert_int_equal(uirq_ioapic_write(u, 0x10, &v, 4), 0);
	v = 0x10 + 2 * 4;
	assert_int_equal(uirq_ioapic_write(u, 0, &v, 4), 0);
	v = APIC_DM_EXTINT << 8;
	assert_int_equal(uirq_ioapic_write(u, 0x10, &v, 4), 0);
	pulse(u, 4);
	assert_int_equal(uirq_pending(u, 0), -1);
	assert_int_equal(kicks[1], 1);
	assert_int_equal(uirq_ack(u, 1), 0x24);
	assert_int_equal(read_isr(u, 0x20), 0x10);
	assert_int_equal(uirq_pending(u, 1), -1);
	irqchip_destroy(uirq_irqchip(u));
}

static void test_ports(void **state)
{
	struct uirq *u = make(0x01);
	uint8_t b[4] = {0};
	uint16_t w;

	(void)state;
	assert_int_equal(uirq_pio_read(u, 0x22, b, 1), -ENOENT);
	assert_int_equal(uirq_pio_write(u, 0x3f8, b, 1), -ENOENT);
	assert_int_equal(uirq_pio_read(u, 0x21, b, 2), -ENOENT); /* 0x22 is not ours */
	assert_int_equal(uirq_pio_read(u, 0x20, b, 0), -EINVAL);
	assert_int_equal(uirq_pio_read(u, 0x20, b, 5), -EINVAL);
	assert_int_equal(uirq_pio_write(u, 0x20, b, 8), -EINVAL);
	outb(u, 0x21, 0x5a);
	assert_int_equal(uirq_pio_read(u, 0x20, &w, 2), 0);
	assert_int_equal(w >> 8, 0x5a);
	assert_int_equal(uirq_pio_read(u, 0xffff, b, 1), -ENOENT);
	irqchip_destroy(uirq_irqchip(u));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_sequence), cmocka_unit_test(test_priority),
	    cmocka_unit_test(test_rotation),      cmocka_unit_test(test_auto_eoi),
	    cmocka_unit_test(test_cascade),       cmocka_unit_test(test_special_fully_nested),
	    cmocka_unit_test(test_spurious_irq7), cmocka_unit_test(test_elcr_level),
	    cmocka_unit_test(test_masking),       cmocka_unit_test(test_poll),
	    cmocka_unit_test(test_special_mask),  cmocka_unit_test(test_extint_path),
	    cmocka_unit_test(test_ioapic_extint), cmocka_unit_test(test_ports),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
