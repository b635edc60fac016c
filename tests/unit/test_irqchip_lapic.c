/* Userspace local APIC (irqchip/lapic*.c) through the chip set's run-loop API: registers,
 * priority, EOI, errors, the timer, x2APIC MSRs. Expectations from Intel SDM vol. 3 ch. 10. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "irqchip/lapic.h"
#include "irqchip/userspace.h"

#define T0     1000000000ULL
#define TSC0   5000000ULL
#define TSC_HZ 2000000000ULL /* 2 TSC ticks per ns */

static struct irqchip_manual_clock mc;

static struct uirq *make(unsigned ncpus)
{
	struct uirq_config cfg = {.ncpus = ncpus};
	struct uirq *u;

	mc.ns = T0;
	mc.tsc = TSC0;
	irqchip_manual_clock(&cfg.clock, &mc, TSC_HZ);
	u = uirq_create(&cfg);
	assert_non_null(u);
	return u;
}

static void wr(struct uirq *u, unsigned cpu, uint32_t off, uint32_t v)
{
	assert_int_equal(uirq_lapic_write(u, cpu, off, &v, 4), 0);
}

static uint32_t rd(struct uirq *u, unsigned cpu, uint32_t off)
{
	uint32_t v = 0xdeadbeef;

	assert_int_equal(uirq_lapic_read(u, cpu, off, &v, 4), 0);
	return v;
}

static bool in_set(struct uirq *u, unsigned cpu, uint32_t base, unsigned vec)
{
	return rd(u, cpu, base + (vec / 32) * 16) & (1u << (vec % 32));
}

static void enable(struct uirq *u, unsigned cpu)
{
	wr(u, cpu, APIC_SVR, 0x1ff);
}

static void self_ipi(struct uirq *u, unsigned cpu, unsigned vec)
{
	wr(u, cpu, APIC_ICR_LO, (APIC_SH_SELF << 18) | vec);
}

static void eoi(struct uirq *u, unsigned cpu)
{
	wr(u, cpu, APIC_EOI, 0);
}

static uint64_t msr(struct uirq *u, unsigned cpu, uint32_t m)
{
	uint64_t v;

	assert_int_equal(uirq_rdmsr(u, cpu, m, &v), 0);
	return v;
}

static void to_x2apic(struct uirq *u, unsigned cpu)
{
	uint64_t base = msr(u, cpu, MSR_IA32_APIC_BASE);

	assert_int_equal(uirq_wrmsr(u, cpu, MSR_IA32_APIC_BASE, base | APIC_BASE_EXTD), 0);
}

static void test_reset_state(void **state)
{
	struct uirq *u = make(2);
	uint64_t base;

	(void)state;
	assert_int_equal(rd(u, 0, APIC_VER), 0x50014);
	assert_int_equal(rd(u, 0, APIC_ID), 0);
	assert_int_equal(rd(u, 1, APIC_ID), 1u << 24);
	assert_int_equal(rd(u, 0, APIC_SVR), 0xff);
	assert_int_equal(rd(u, 0, APIC_DFR), 0xffffffff);
	assert_int_equal(rd(u, 0, APIC_TPR), 0);
	assert_int_equal(rd(u, 0, APIC_LVT_TMR), LVT_MASKED);
	assert_int_equal(rd(u, 0, APIC_LVT_ERR), LVT_MASKED);
	/* The BSP in virtual-wire mode: LINT0 ExtINT, LINT1 NMI; APs all masked. */
	assert_int_equal(rd(u, 0, APIC_LVT0), 0x700);
	assert_int_equal(rd(u, 0, APIC_LVT1), 0x400);
	assert_int_equal(rd(u, 1, APIC_LVT0), LVT_MASKED);
	assert_int_equal(rd(u, 1, APIC_LVT1), LVT_MASKED);
	assert_int_equal(msr(u, 0, MSR_IA32_APIC_BASE), 0xfee00900);
	assert_int_equal(msr(u, 1, MSR_IA32_APIC_BASE), 0xfee00800);
	assert_true(uirq_lapic_mmio_base(u, 1, &base));
	assert_int_equal(base, 0xfee00000);
	assert_int_equal(uirq_pending(u, 1), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* SDM 10.8.3.1: PPR = TPR if TPR[7:4] >= ISRV[7:4], else ISRV[7:4]:0. An IRR vector is
 * delivered only if its class is above PPR's class. */
static void test_ppr_and_tpr_classes(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	wr(u, 0, APIC_TPR, 0x30);
	assert_int_equal(rd(u, 0, APIC_PPR), 0x30);
	self_ipi(u, 0, 0x45);
	assert_true(in_set(u, 0, APIC_IRR, 0x45));
	assert_int_equal(uirq_pending(u, 0), 0x45);
	wr(u, 0, APIC_TPR, 0x40); /* same class: blocked */
	assert_int_equal(uirq_pending(u, 0), -1);
	wr(u, 0, APIC_TPR, 0x4f);
	assert_int_equal(uirq_pending(u, 0), -1);
	assert_int_equal(uirq_ack(u, 0), -1);
	wr(u, 0, APIC_TPR, 0x3f); /* the subclass does not matter */
	assert_int_equal(uirq_pending(u, 0), 0x45);
	wr(u, 0, APIC_TPR, 0x20);
	assert_int_equal(uirq_ack(u, 0), 0x45);
	assert_false(in_set(u, 0, APIC_IRR, 0x45));
	assert_true(in_set(u, 0, APIC_ISR, 0x45));
	assert_int_equal(rd(u, 0, APIC_PPR), 0x40); /* ISR class 4 beats TPR 0x20 */
	wr(u, 0, APIC_TPR, 0x5a);
	assert_int_equal(rd(u, 0, APIC_PPR), 0x5a);
	wr(u, 0, APIC_TPR, 0x4a); /* equal class: TPR itself */
	assert_int_equal(rd(u, 0, APIC_PPR), 0x4a);
	wr(u, 0, APIC_TPR, 0x1ff); /* only bits 7:0 */
	assert_int_equal(rd(u, 0, APIC_TPR), 0xff);
	wr(u, 0, APIC_TPR, 0);
	eoi(u, 0);
	assert_int_equal(rd(u, 0, APIC_PPR), 0);
	assert_false(in_set(u, 0, APIC_ISR, 0x45));
	irqchip_destroy(uirq_irqchip(u));
}

/* Arbitration priority (SDM 10.8.3.1): TPR if TPR's class >= IRRV's and > ISRV's, else the
 * highest of the three classes. */
static void test_apr(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	wr(u, 0, APIC_TPR, 0x35);
	assert_int_equal(rd(u, 0, APIC_APR), 0x35);
	wr(u, 0, APIC_TPR, 0x5f); /* IRR class 3 below TPR: APR = TPR */
	self_ipi(u, 0, 0x38);
	assert_int_equal(rd(u, 0, APIC_APR), 0x5f);
	wr(u, 0, APIC_TPR, 0x25);
	assert_int_equal(rd(u, 0, APIC_APR), 0x30);
	assert_int_equal(uirq_ack(u, 0), 0x38);
	self_ipi(u, 0, 0x72); /* IRR class 7 wins */
	assert_int_equal(rd(u, 0, APIC_APR), 0x70);
	irqchip_destroy(uirq_irqchip(u));
}

/* Nested interrupts: a higher class preempts an in-service one; EOI retires the highest ISR
 * bit; a lower or equal class waits for it. */
static void test_nested_eoi_order(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	self_ipi(u, 0, 0x50);
	self_ipi(u, 0, 0x60);
	assert_int_equal(uirq_ack(u, 0), 0x60);
	assert_int_equal(uirq_pending(u, 0), -1); /* 0x50 below in-service 0x60 */
	self_ipi(u, 0, 0x65);                     /* same class as 0x60: waits */
	assert_int_equal(uirq_pending(u, 0), -1);
	self_ipi(u, 0, 0x70);
	assert_int_equal(uirq_ack(u, 0), 0x70); /* nests */
	assert_true(in_set(u, 0, APIC_ISR, 0x60));
	assert_true(in_set(u, 0, APIC_ISR, 0x70));
	eoi(u, 0);
	assert_false(in_set(u, 0, APIC_ISR, 0x70));
	assert_true(in_set(u, 0, APIC_ISR, 0x60));
	assert_int_equal(uirq_pending(u, 0), -1);
	eoi(u, 0);
	assert_int_equal(uirq_ack(u, 0), 0x65);
	eoi(u, 0);
	assert_int_equal(uirq_ack(u, 0), 0x50);
	eoi(u, 0);
	eoi(u, 0); /* nothing in service: harmless */
	assert_int_equal(uirq_pending(u, 0), -1);
	/* An IRR bit is one interrupt: two sends before the ack are one delivery. */
	self_ipi(u, 0, 0x80);
	self_ipi(u, 0, 0x80);
	assert_int_equal(uirq_ack(u, 0), 0x80);
	assert_int_equal(uirq_pending(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* Vectors 0..15 are illegal (SDM 10.5.2, 10.5.3): the sender flags "send illegal vector", the
 * receiver "receive illegal vector", and nothing is delivered. The ESR shows errors after a
 * write; a new error raises the error LVT. */
static void test_illegal_vectors(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	self_ipi(u, 0, 0x05);
	assert_int_equal(uirq_pending(u, 0), -1);
	assert_false(in_set(u, 0, APIC_IRR, 0x05));
	assert_int_equal(rd(u, 0, APIC_ESR), 0); /* not yet latched */
	wr(u, 0, APIC_ESR, 0);
	assert_int_equal(rd(u, 0, APIC_ESR), ESR_SEND_ILLEGAL | ESR_RECV_ILLEGAL);
	wr(u, 0, APIC_ESR, 0);
	assert_int_equal(rd(u, 0, APIC_ESR), 0);

	/* A timer LVT with an illegal vector: receive error when it fires. */
	wr(u, 0, APIC_TDCR, 0xb);
	wr(u, 0, APIC_LVT_TMR, 0x0f);
	wr(u, 0, APIC_TMICT, 10);
	mc.ns += 10;
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	wr(u, 0, APIC_ESR, 0);
	assert_int_equal(rd(u, 0, APIC_ESR), ESR_RECV_ILLEGAL);

	/* With the error LVT unmasked, an error interrupts. */
	wr(u, 0, APIC_LVT_ERR, 0xfe);
	self_ipi(u, 0, 0x01);
	assert_int_equal(uirq_ack(u, 0), 0xfe);
	eoi(u, 0);
	/* An error already pending since the last ESR write does not interrupt again. */
	self_ipi(u, 0, 0x02);
	assert_int_equal(uirq_pending(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* SDM 10.4.7.2: a software-disabled APIC masks every LVT, refuses unmasking, discards fixed
 * interrupts but still takes NMI and INIT; pending IRR/ISR state is kept. */
static void test_software_disabled(void **state)
{
	struct uirq *u = make(2);
	uint8_t sipi;

	(void)state;
	enable(u, 0);
	enable(u, 1);
	wr(u, 1, APIC_LVT_TMR, 0x40);
	self_ipi(u, 1, 0x41);
	wr(u, 1, APIC_SVR, 0xff);
	assert_int_equal(rd(u, 1, APIC_LVT_TMR), LVT_MASKED | 0x40);
	wr(u, 1, APIC_LVT_TMR, 0x42);
	assert_int_equal(rd(u, 1, APIC_LVT_TMR), LVT_MASKED | 0x42);
	assert_int_equal(uirq_pending(u, 1), 0x41); /* held IRR is still handled */
	wr(u, 0, APIC_ICR_HI, 1u << 24);
	wr(u, 0, APIC_ICR_LO, 0x43); /* fixed: discarded */
	assert_false(in_set(u, 1, APIC_IRR, 0x43));
	wr(u, 0, APIC_ICR_LO, APIC_DM_NMI << 8);
	assert_true(uirq_take_nmi(u, 1));
	wr(u, 0, APIC_ICR_LO, (APIC_DM_INIT << 8) | ICR_ASSERT | ICR_LEVEL);
	assert_int_equal(uirq_take_startup(u, 1, &sipi), UIRQ_INIT);
	irqchip_destroy(uirq_irqchip(u));
}

/* IA32_APIC_BASE[11] = 0: the APIC is off; MMIO is not the APIC's; re-enabling gives the
 * reset state (SDM 10.4.3). */
static void test_hardware_disabled(void **state)
{
	struct uirq *u = make(2);
	uint64_t base;

	(void)state;
	enable(u, 1);
	wr(u, 1, APIC_TPR, 0x20);
	assert_int_equal(uirq_wrmsr(u, 1, MSR_IA32_APIC_BASE, 0xfee00000), 0);
	assert_false(uirq_lapic_mmio_base(u, 1, &base));
	assert_int_equal(rd(u, 1, APIC_VER), 0);
	wr(u, 0, APIC_ICR_HI, 1u << 24);
	enable(u, 0);
	wr(u, 0, APIC_ICR_LO, 0x44);
	assert_int_equal(uirq_pending(u, 1), -1);
	assert_int_equal(uirq_wrmsr(u, 1, MSR_IA32_APIC_BASE, 0xfee00800), 0);
	assert_int_equal(rd(u, 1, APIC_TPR), 0);
	assert_int_equal(rd(u, 1, APIC_SVR), 0xff);
	/* Relocation is reported. */
	assert_int_equal(uirq_wrmsr(u, 1, MSR_IA32_APIC_BASE, 0xfed00800), 0);
	assert_true(uirq_lapic_mmio_base(u, 1, &base));
	assert_int_equal(base, 0xfed00000);
	irqchip_destroy(uirq_irqchip(u));
}

static void arm_oneshot(struct uirq *u, uint32_t tdcr, uint32_t count)
{
	wr(u, 0, APIC_TDCR, tdcr);
	wr(u, 0, APIC_TMICT, count);
}

/* One-shot at divide-by-1: 1 count per ns at the 1 GHz bus clock. */
static void test_timer_oneshot(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	wr(u, 0, APIC_LVT_TMR, 0x40);
	arm_oneshot(u, 0xb, 1000);
	assert_int_equal(rd(u, 0, APIC_TMICT), 1000);
	assert_int_equal(rd(u, 0, APIC_TMCCT), 1000);
	assert_int_equal(uirq_next_deadline(u, 0), T0 + 1000);
	mc.ns = T0 + 400;
	assert_int_equal(rd(u, 0, APIC_TMCCT), 600);
	mc.ns = T0 + 999;
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	assert_int_equal(rd(u, 0, APIC_TMCCT), 1);
	mc.ns = T0 + 1000;
	uirq_tick(u, 0);
	assert_int_equal(uirq_ack(u, 0), 0x40);
	assert_false(in_set(u, 0, APIC_TMR, 0x40)); /* edge */
	eoi(u, 0);
	assert_int_equal(rd(u, 0, APIC_TMCCT), 0);
	assert_int_equal(uirq_next_deadline(u, 0), UINT64_MAX);
	mc.ns = T0 + 100000;
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1); /* once only */
	/* Rewriting the initial count restarts the count. */
	wr(u, 0, APIC_TMICT, 50);
	assert_int_equal(uirq_next_deadline(u, 0), T0 + 100050);
	irqchip_destroy(uirq_irqchip(u));
}

/* TDCR bits 3,1,0 (SDM figure 10-10): 000 /2, 001 /4, 010 /8, 011 /16, 100 /32, 101 /64,
 * 110 /128, 111 /1. */
static void test_timer_dividers(void **state)
{
	static const struct {
		uint32_t tdcr, div;
	} t[] = {{0x0, 2},  {0x1, 4},  {0x2, 8},   {0x3, 16},
	         {0x8, 32}, {0x9, 64}, {0xa, 128}, {0xb, 1}};
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	wr(u, 0, APIC_LVT_TMR, 0x40);
	for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint64_t start = mc.ns;

		arm_oneshot(u, t[i].tdcr, 100);
		assert_int_equal(rd(u, 0, APIC_TDCR), t[i].tdcr);
		assert_int_equal(uirq_next_deadline(u, 0), start + 100 * t[i].div);
		mc.ns = start + 30 * t[i].div + t[i].div - 1;
		assert_int_equal(rd(u, 0, APIC_TMCCT), 70);
		mc.ns = start + 100 * t[i].div - 1;
		uirq_tick(u, 0);
		assert_int_equal(uirq_pending(u, 0), -1);
		mc.ns = start + 100 * t[i].div;
		uirq_tick(u, 0);
		assert_int_equal(uirq_ack(u, 0), 0x40);
		eoi(u, 0);
		mc.ns += 7;
	}
	/* A new divisor mid-count: the count keeps its value and runs at the new rate (the SDM
	 * leaves this open; hearth's rule, stated in lapic_timer.c). */
	arm_oneshot(u, 0xb, 1000);
	mc.ns += 400;
	wr(u, 0, APIC_TDCR, 0x0); /* /2 */
	assert_int_equal(rd(u, 0, APIC_TMCCT), 600);
	mc.ns += 200;
	assert_int_equal(rd(u, 0, APIC_TMCCT), 500);
	assert_int_equal(uirq_next_deadline(u, 0), mc.ns + 1000);
	/* Reserved TDCR bits are dropped. */
	wr(u, 0, APIC_TDCR, 0xfffffff4);
	assert_int_equal(rd(u, 0, APIC_TDCR), 0);
	irqchip_destroy(uirq_irqchip(u));
}

/* Periodic: reloads at each period boundary counted from the start (no drift); missed periods
 * are one interrupt (one IRR bit). */
static void test_timer_periodic(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	wr(u, 0, APIC_LVT_TMR, LVT_TIMER_PERIODIC | 0x41);
	arm_oneshot(u, 0x0, 500); /* /2: 1000 ns period */
	mc.ns = T0 + 1000;
	uirq_tick(u, 0);
	assert_int_equal(uirq_ack(u, 0), 0x41);
	eoi(u, 0);
	assert_int_equal(uirq_next_deadline(u, 0), T0 + 2000);
	mc.ns = T0 + 2500; /* late by half a period */
	assert_int_equal(rd(u, 0, APIC_TMCCT), 250);
	uirq_tick(u, 0);
	assert_int_equal(uirq_ack(u, 0), 0x41);
	eoi(u, 0);
	assert_int_equal(uirq_next_deadline(u, 0), T0 + 3000);
	mc.ns = T0 + 5999; /* three periods missed */
	uirq_tick(u, 0);
	assert_int_equal(uirq_ack(u, 0), 0x41);
	assert_int_equal(uirq_pending(u, 0), -1);
	eoi(u, 0);
	assert_int_equal(uirq_next_deadline(u, 0), T0 + 6000);
	assert_int_equal(rd(u, 0, APIC_TMCCT), 1);
	mc.ns = T0 + 6000;
	assert_int_equal(rd(u, 0, APIC_TMCCT), 500); /* reloaded */
	uirq_tick(u, 0);
	assert_int_equal(uirq_ack(u, 0), 0x41);
	eoi(u, 0);
	/* Initial count 0 stops it. */
	wr(u, 0, APIC_TMICT, 0);
	assert_int_equal(rd(u, 0, APIC_TMCCT), 0);
	assert_int_equal(uirq_next_deadline(u, 0), UINT64_MAX);
	mc.ns = T0 + 100000;
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* A masked timer counts but delivers nothing, even if unmasked after it expired. */
static void test_timer_masked(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	wr(u, 0, APIC_LVT_TMR, LVT_MASKED | 0x40);
	arm_oneshot(u, 0xb, 100);
	assert_int_equal(uirq_next_deadline(u, 0), UINT64_MAX);
	mc.ns = T0 + 50;
	assert_int_equal(rd(u, 0, APIC_TMCCT), 50);
	mc.ns = T0 + 200;
	wr(u, 0, APIC_LVT_TMR, 0x40);
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	/* Periodic and masked: unmasking delivers from the next period on. */
	wr(u, 0, APIC_LVT_TMR, LVT_MASKED | LVT_TIMER_PERIODIC | 0x40);
	wr(u, 0, APIC_TMICT, 100);
	mc.ns = T0 + 350;
	wr(u, 0, APIC_LVT_TMR, LVT_TIMER_PERIODIC | 0x40);
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	assert_int_equal(uirq_next_deadline(u, 0), T0 + 400);
	irqchip_destroy(uirq_irqchip(u));
}

/* SDM 10.5.4.1: a write to LVT timer that changes the mode disarms the timer. */
static void test_timer_mode_switch_disarms(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	wr(u, 0, APIC_LVT_TMR, LVT_TIMER_PERIODIC | 0x40);
	arm_oneshot(u, 0xb, 1000);
	wr(u, 0, APIC_LVT_TMR, LVT_TIMER_PERIODIC | 0x48); /* same mode: keeps counting */
	mc.ns = T0 + 100;
	assert_int_equal(rd(u, 0, APIC_TMCCT), 900);
	wr(u, 0, APIC_LVT_TMR, 0x40); /* periodic -> one-shot */
	assert_int_equal(rd(u, 0, APIC_TMCCT), 0);
	assert_int_equal(uirq_next_deadline(u, 0), UINT64_MAX);
	mc.ns = T0 + 5000;
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);

	/* TSC-deadline: armed deadline dropped by a switch back to one-shot. */
	wr(u, 0, APIC_LVT_TMR, LVT_TIMER_TSC | 0x40);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_TSC_DEADLINE, TSC0 + 100000), 0);
	wr(u, 0, APIC_LVT_TMR, 0x40);
	assert_int_equal(msr(u, 0, MSR_IA32_TSC_DEADLINE), 0);
	wr(u, 0, APIC_LVT_TMR, LVT_TIMER_TSC | 0x40);
	assert_int_equal(msr(u, 0, MSR_IA32_TSC_DEADLINE), 0);
	mc.tsc = TSC0 + 200000;
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* SDM 10.5.4.1: TSC-deadline mode fires when TSC >= IA32_TSC_DEADLINE, then clears it;
 * writing 0 disarms; the initial count is ignored and the current count reads 0. Outside
 * that mode the MSR reads 0 and ignores writes. */
static void test_tsc_deadline(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	enable(u, 0);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_TSC_DEADLINE, TSC0 + 10), 0);
	assert_int_equal(msr(u, 0, MSR_IA32_TSC_DEADLINE), 0); /* one-shot mode */
	wr(u, 0, APIC_LVT_TMR, LVT_TIMER_TSC | 0x40);
	wr(u, 0, APIC_TMICT, 1234);
	assert_int_equal(rd(u, 0, APIC_TMICT), 0);
	assert_int_equal(rd(u, 0, APIC_TMCCT), 0);
	assert_int_equal(uirq_next_deadline(u, 0), UINT64_MAX);

	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_TSC_DEADLINE, TSC0 + 2000), 0);
	assert_int_equal(msr(u, 0, MSR_IA32_TSC_DEADLINE), TSC0 + 2000);
	assert_int_equal(uirq_next_deadline(u, 0), T0 + 1000); /* 2000 ticks at 2 GHz */
	mc.tsc = TSC0 + 1999;
	mc.ns = T0 + 999;
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	mc.tsc = TSC0 + 2000;
	mc.ns = T0 + 1000;
	uirq_tick(u, 0);
	assert_int_equal(uirq_ack(u, 0), 0x40);
	eoi(u, 0);
	assert_int_equal(msr(u, 0, MSR_IA32_TSC_DEADLINE), 0);
	assert_int_equal(uirq_next_deadline(u, 0), UINT64_MAX);

	/* A deadline in the past fires at once. */
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_TSC_DEADLINE, 1), 0);
	assert_int_equal(uirq_ack(u, 0), 0x40);
	eoi(u, 0);
	/* 0 disarms; a deadline moved later does not fire early. */
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_TSC_DEADLINE, TSC0 + 3000), 0);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_TSC_DEADLINE, 0), 0);
	mc.tsc = TSC0 + 5000;
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_TSC_DEADLINE, TSC0 + 7000), 0);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_TSC_DEADLINE, TSC0 + 9001), 0);
	/* 4001 TSC ticks = 2000.5 ns: the deadline rounds up so waking there fires it. */
	assert_int_equal(uirq_next_deadline(u, 0), mc.ns + 2001);
	mc.tsc = TSC0 + 8000;
	uirq_tick(u, 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	irqchip_destroy(uirq_irqchip(u));
}

/* SDM 10.12.5: disabled <-> xAPIC -> x2APIC -> disabled; the rest is #GP, as are reserved
 * bits. The BSP flag is read-only. */
static void test_x2apic_transitions(void **state)
{
	struct uirq *u = make(2);
	uint64_t v;

	(void)state;
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00500), UIRQ_MSR_GP);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00b00), UIRQ_MSR_GP);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00901ULL), UIRQ_MSR_GP);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, (1ULL << 63) | 0xfee00900),
	                 UIRQ_MSR_GP);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00d00), 0);
	assert_int_equal(msr(u, 0, MSR_IA32_APIC_BASE), 0xfee00d00);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00900), UIRQ_MSR_GP);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00100), 0);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00d00), UIRQ_MSR_GP);
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00900), 0);
	/* An AP cannot make itself the BSP. */
	assert_int_equal(uirq_wrmsr(u, 1, MSR_IA32_APIC_BASE, 0xfee00900), 0);
	assert_int_equal(msr(u, 1, MSR_IA32_APIC_BASE), 0xfee00800);
	/* x2APIC MSRs are #GP outside x2APIC mode; other MSRs are not ours. */
	assert_int_equal(uirq_rdmsr(u, 1, 0x802, &v), UIRQ_MSR_GP);
	assert_int_equal(uirq_wrmsr(u, 1, 0x808, 0), UIRQ_MSR_GP);
	assert_int_equal(uirq_rdmsr(u, 1, 0x10, &v), UIRQ_MSR_NOT_MINE);
	assert_int_equal(uirq_wrmsr(u, 1, 0xc0000080, 0), UIRQ_MSR_NOT_MINE);
	irqchip_destroy(uirq_irqchip(u));
}

/* x2APIC registers as MSRs (SDM 10.12.1.2, table 10-6): ID is the full APIC ID, LDR is derived
 * (cluster = ID[19:4], bit ID[3:0]), ICR is one 64-bit MSR, SELF IPI sends to itself, the xAPIC
 * page is gone. */
static void test_x2apic_registers(void **state)
{
	struct uirq *u = make(20);
	uint64_t base;

	(void)state;
	to_x2apic(u, 19);
	assert_false(uirq_lapic_mmio_base(u, 19, &base));
	assert_int_equal(rd(u, 19, APIC_ID), 0);
	assert_int_equal(msr(u, 19, 0x802), 19);
	assert_int_equal(msr(u, 19, 0x803), 0x50014);
	assert_int_equal(msr(u, 19, 0x80d), (1u << 16) | (1u << 3));
	assert_int_equal(msr(u, 19, 0x80f), 0xff);
	assert_int_equal(uirq_wrmsr(u, 19, 0x80f, 0x1ff), 0);
	assert_int_equal(uirq_wrmsr(u, 19, 0x808, 0x20), 0);
	assert_int_equal(msr(u, 19, 0x808), 0x20);
	assert_int_equal(msr(u, 19, 0x80a), 0x20);
	assert_int_equal(uirq_wrmsr(u, 19, 0x83f, 0x55), 0);
	assert_int_equal(msr(u, 19, 0x820 + 0x55 / 32), 1u << (0x55 % 32));
	assert_int_equal(uirq_ack(u, 19), 0x55);
	assert_int_equal(msr(u, 19, 0x810 + 0x55 / 32), 1u << (0x55 % 32));
	assert_int_equal(uirq_wrmsr(u, 19, 0x80b, 0), 0);
	assert_int_equal(msr(u, 19, 0x810 + 0x55 / 32), 0);
	/* INIT keeps x2APIC mode and the derived logical ID (SDM 10.12.5.1). */
	assert_int_equal(uirq_wrmsr(u, 0, MSR_IA32_APIC_BASE, 0xfee00d00), 0);
	assert_int_equal(uirq_wrmsr(u, 0, 0x80f, 0x1ff), 0);
	assert_int_equal(uirq_wrmsr(u, 0, 0x830, (19ULL << 32) | (APIC_DM_INIT << 8) | ICR_ASSERT),
	                 0);
	assert_int_equal(uirq_take_startup(u, 19, NULL), UIRQ_INIT);
	assert_int_equal(msr(u, 19, MSR_IA32_APIC_BASE), 0xfee00c00);
	assert_int_equal(msr(u, 19, 0x80d), (1u << 16) | (1u << 3));
	assert_int_equal(msr(u, 19, 0x80f), 0xff);
	assert_int_equal(uirq_wrmsr(u, 19, 0x80f, 0x1ff), 0);
	/* Timer through MSRs. */
	assert_int_equal(uirq_wrmsr(u, 19, 0x832, 0x40), 0);
	assert_int_equal(uirq_wrmsr(u, 19, 0x83e, 0xb), 0);
	assert_int_equal(uirq_wrmsr(u, 19, 0x838, 300), 0);
	mc.ns += 100;
	assert_int_equal(msr(u, 19, 0x839), 200);
	/* ICR: 32-bit destination in the high half; delivery status reads idle. */
	enable(u, 3);
	assert_int_equal(uirq_wrmsr(u, 19, 0x830, (3ULL << 32) | 0x66), 0);
	assert_int_equal(msr(u, 19, 0x830), (3ULL << 32) | 0x66);
	assert_int_equal(uirq_pending(u, 3), 0x66);
	irqchip_destroy(uirq_irqchip(u));
}

static void expect_gp_read(struct uirq *u, unsigned cpu, uint32_t m)
{
	uint64_t v;

	assert_int_equal(uirq_rdmsr(u, cpu, m, &v), UIRQ_MSR_GP);
}

static void expect_gp_write(struct uirq *u, unsigned cpu, uint32_t m, uint64_t v)
{
	assert_int_equal(uirq_wrmsr(u, cpu, m, v), UIRQ_MSR_GP);
}

/* SDM 10.12.1.3: #GP for reserved MSRs, writes to read-only ones, reads of write-only ones,
 * non-zero EOI/ESR writes, reserved bits. */
static void test_x2apic_gp(void **state)
{
	static const uint32_t reserved[] = {0x800, 0x801, 0x804, 0x807, 0x809, 0x80c, 0x80e,
	                                    0x829, 0x82f, 0x831, 0x83a, 0x83d, 0x840, 0x8ff};
	static const uint32_t read_only[] = {0x802, 0x803, 0x80a, 0x80d, 0x810,
	                                     0x817, 0x818, 0x820, 0x827, 0x839};
	struct uirq *u = make(1);

	(void)state;
	to_x2apic(u, 0);
	for (unsigned i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		expect_gp_read(u, 0, reserved[i]);
		expect_gp_write(u, 0, reserved[i], 0);
	}
	for (unsigned i = 0; i < sizeof(read_only) / sizeof(read_only[0]); i++)
		expect_gp_write(u, 0, read_only[i], 0);
	expect_gp_read(u, 0, 0x80b);
	expect_gp_read(u, 0, 0x83f);
	expect_gp_write(u, 0, 0x80b, 1);
	expect_gp_write(u, 0, 0x828, 1);
	assert_int_equal(uirq_wrmsr(u, 0, 0x828, 0), 0);
	expect_gp_write(u, 0, 0x808, 0x100);
	expect_gp_write(u, 0, 0x808, 1ULL << 32);
	expect_gp_write(u, 0, 0x80f, 0x1ff | (1u << 12)); /* no EOI-broadcast suppression */
	expect_gp_write(u, 0, 0x832, 1u << 19);
	expect_gp_write(u, 0, 0x835, 1u << 17);
	expect_gp_write(u, 0, 0x83e, 0x4);
	expect_gp_write(u, 0, 0x83f, 0x100);
	expect_gp_write(u, 0, 0x830, 1u << 12);
	expect_gp_write(u, 0, 0x830, 1u << 13);
	expect_gp_write(u, 0, 0x830, 1u << 20);
	/* Nothing changed by the refused writes. */
	assert_int_equal(msr(u, 0, 0x808), 0);
	assert_int_equal(msr(u, 0, 0x80f), 0xff);
	irqchip_destroy(uirq_irqchip(u));
}

/* Hostile MMIO: outside the register file, unaligned or odd-sized accesses do nothing; a
 * reserved register sets "illegal register address" (SDM 10.5.3). */
static void test_mmio_bounds(void **state)
{
	struct uirq *u = make(1);
	uint8_t b = 0xaa;
	uint16_t h;
	uint32_t v = 0x1ff;
	uint64_t q = 0;

	(void)state;
	assert_int_equal(uirq_lapic_write(u, 0, 0xf2, &v, 4), -EINVAL);
	assert_int_equal(uirq_lapic_write(u, 0, 0xf0, &v, 2), -EINVAL);
	assert_int_equal(uirq_lapic_write(u, 0, 0x1000, &v, 4), -EINVAL);
	assert_int_equal(uirq_lapic_write(u, 0, UINT64_MAX - 1, &v, 4), -EINVAL);
	assert_int_equal(uirq_lapic_write(u, 5, 0xf0, &v, 4), -EINVAL);
	assert_int_equal(uirq_lapic_read(u, 0, 0x1000, &v, 4), -EINVAL);
	assert_int_equal(uirq_lapic_read(u, 0, 0x30, &q, 8), -EINVAL);
	assert_int_equal(uirq_lapic_read(u, 0, 0x33, &v, 4), -EINVAL);
	assert_int_equal(rd(u, 0, APIC_SVR), 0xff);
	/* Byte and word reads inside a register. */
	assert_int_equal(uirq_lapic_read(u, 0, APIC_VER + 2, &b, 1), 0);
	assert_int_equal(b, 0x05);
	assert_int_equal(uirq_lapic_read(u, 0, APIC_VER, &h, 2), 0);
	assert_int_equal(h, 0x0014);
	/* The tail of a 16-byte slot and the page past 0x3f0 are not registers. */
	assert_int_equal(rd(u, 0, APIC_VER + 4), 0);
	assert_int_equal(rd(u, 0, 0x800), 0);
	enable(u, 0);
	wr(u, 0, 0x2a0, 1); /* reserved */
	wr(u, 0, APIC_ESR, 0);
	assert_int_equal(rd(u, 0, APIC_ESR), ESR_ILLEGAL_REG);
	/* Read-only registers ignore writes without an error. */
	wr(u, 0, APIC_VER, 0);
	wr(u, 0, APIC_PPR, 0xff);
	wr(u, 0, APIC_IRR, 0xffffffff);
	wr(u, 0, APIC_ID, 7u << 24);
	wr(u, 0, APIC_ESR, 0);
	assert_int_equal(rd(u, 0, APIC_ESR), 0);
	assert_int_equal(rd(u, 0, APIC_VER), 0x50014);
	assert_int_equal(rd(u, 0, APIC_IRR), 0);
	assert_int_equal(uirq_pending(u, 0), -1);
	/* Out-of-range vCPU indices everywhere. */
	assert_int_equal(uirq_pending(u, 1), -1);
	assert_int_equal(uirq_ack(u, 99), -1);
	assert_false(uirq_take_nmi(u, 1));
	assert_int_equal(uirq_take_startup(u, 1, NULL), 0);
	assert_false(uirq_wakeup_pending(u, 1));
	assert_int_equal(uirq_next_deadline(u, 1), UINT64_MAX);
	assert_int_equal(uirq_wrmsr(u, 1, MSR_IA32_APIC_BASE, 0), UIRQ_MSR_NOT_MINE);
	uirq_lint1(u, 1);
	uirq_tick(u, 7);
	irqchip_destroy(uirq_irqchip(u));
}

/* Writable bits of LVT entries, SVR, DFR, LDR, ICR high (SDM figures 10-8, 10-13, 10-23). */
static void test_register_bits(void **state)
{
	struct uirq *u = make(1);

	(void)state;
	wr(u, 0, APIC_SVR, 0xffffffff);
	assert_int_equal(rd(u, 0, APIC_SVR), 0x3ff);
	wr(u, 0, APIC_LVT_TMR, 0xffffffff);
	assert_int_equal(rd(u, 0, APIC_LVT_TMR), 0x700ff);
	wr(u, 0, APIC_LVT0, 0xffffffff);
	assert_int_equal(rd(u, 0, APIC_LVT0), 0x1a7ff);
	wr(u, 0, APIC_LVT_ERR, 0xffffffff);
	assert_int_equal(rd(u, 0, APIC_LVT_ERR), 0x100ff);
	wr(u, 0, APIC_LVT_THM, 0xffffffff);
	assert_int_equal(rd(u, 0, APIC_LVT_THM), 0x107ff);
	wr(u, 0, APIC_LVT_PMC, 0x12345);
	assert_int_equal(rd(u, 0, APIC_LVT_PMC), 0x10345);
	wr(u, 0, APIC_LDR, 0xffffffff);
	assert_int_equal(rd(u, 0, APIC_LDR), 0xff000000);
	wr(u, 0, APIC_DFR, 0);
	assert_int_equal(rd(u, 0, APIC_DFR), 0x0fffffff);
	wr(u, 0, APIC_ICR_HI, 0xffffffff);
	assert_int_equal(rd(u, 0, APIC_ICR_HI), 0xff000000);
	irqchip_destroy(uirq_irqchip(u));
}

/* LINT1 is the NMI pin: NMI mode latches an NMI; a masked entry drops it. */
static void test_lint1_nmi(void **state)
{
	struct uirq *u = make(2);

	(void)state;
	enable(u, 0);
	enable(u, 1);
	uirq_lint1(u, 0);
	assert_true(uirq_wakeup_pending(u, 0));
	assert_true(uirq_take_nmi(u, 0));
	assert_false(uirq_take_nmi(u, 0));
	uirq_lint1(u, 1); /* masked on the AP */
	assert_false(uirq_take_nmi(u, 1));
	wr(u, 1, APIC_LVT1, 0x59); /* fixed mode: a normal interrupt */
	uirq_lint1(u, 1);
	assert_int_equal(uirq_ack(u, 1), 0x59);
	irqchip_destroy(uirq_irqchip(u));
}

static void test_bad_config(void **state)
{
	struct uirq_config cfg = {.ncpus = 0};

	(void)state;
	irqchip_manual_clock(&cfg.clock, &mc, TSC_HZ);
	assert_null(uirq_create(&cfg));
	cfg.ncpus = UIRQ_MAX_CPUS + 1;
	assert_null(uirq_create(&cfg));
	cfg.ncpus = 1;
	cfg.clock.tsc_hz = 0;
	assert_null(uirq_create(&cfg));
	assert_null(uirq_create(NULL));
	irqchip_destroy(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reset_state),
	    cmocka_unit_test(test_ppr_and_tpr_classes),
	    cmocka_unit_test(test_apr),
	    cmocka_unit_test(test_nested_eoi_order),
	    cmocka_unit_test(test_illegal_vectors),
	    cmocka_unit_test(test_software_disabled),
	    cmocka_unit_test(test_hardware_disabled),
	    cmocka_unit_test(test_timer_oneshot),
	    cmocka_unit_test(test_timer_dividers),
	    cmocka_unit_test(test_timer_periodic),
	    cmocka_unit_test(test_timer_masked),
	    cmocka_unit_test(test_timer_mode_switch_disarms),
	    cmocka_unit_test(test_tsc_deadline),
	    cmocka_unit_test(test_x2apic_transitions),
	    cmocka_unit_test(test_x2apic_registers),
	    cmocka_unit_test(test_x2apic_gp),
	    cmocka_unit_test(test_mmio_bounds),
	    cmocka_unit_test(test_register_bits),
	    cmocka_unit_test(test_lint1_nmi),
	    cmocka_unit_test(test_bad_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
