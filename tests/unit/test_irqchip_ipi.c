/* Userspace chip set: IPI routing (SDM 10.6), INIT/SIPI, the kick callback, and a
 * several-thread smoke test of the single lock. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "irqchip/ioapic.h"
#include "irqchip/lapic.h"
#include "irqchip/userspace.h"

#define T0 1000000000ULL

static struct irqchip_manual_clock mc;
static atomic_uint kicks[UIRQ_MAX_CPUS];

static void kick(void *opaque, unsigned cpu)
{
	(void)opaque;
	atomic_fetch_add(&kicks[cpu], 1);
}

static struct uirq *make(unsigned ncpus)
{
	struct uirq_config cfg = {.ncpus = ncpus, .kick = kick};
	struct uirq *u;

	mc.ns = T0;
	mc.tsc = 1;
	for (unsigned i = 0; i < UIRQ_MAX_CPUS; i++)
		kicks[i] = 0;
	irqchip_manual_clock(&cfg.clock, &mc, 1000000000);
	u = uirq_create(&cfg);
	assert_non_null(u);
	for (unsigned k = 0; k < ncpus; k++) {
		uint32_t svr = 0x1ff;

		assert_int_equal(uirq_lapic_write(u, k, APIC_SVR, &svr, 4), 0);
	}
	return u;
}

static void wr(struct uirq *u, unsigned cpu, uint32_t off, uint32_t v)
{
	assert_int_equal(uirq_lapic_write(u, cpu, off, &v, 4), 0);
}

static uint32_t rd(struct uirq *u, unsigned cpu, uint32_t off)
{
	uint32_t v = 0;

	assert_int_equal(uirq_lapic_read(u, cpu, off, &v, 4), 0);
	return v;
}

static void ipi(struct uirq *u, unsigned from, uint32_t dest, uint32_t lo)
{
	wr(u, from, APIC_ICR_HI, dest << 24);
	wr(u, from, APIC_ICR_LO, lo);
}

/* Bit k set: vCPU k has `vec` pending (and takes it, with EOI). */
static uint32_t got(struct uirq *u, unsigned ncpus, int vec)
{
	uint32_t mask = 0;

	for (unsigned k = 0; k < ncpus; k++) {
		int v = uirq_pending(u, k);

		if (v < 0)
			continue;
		assert_int_equal(v, vec);
		assert_int_equal(uirq_ack(u, k), vec);
		/* EOI through the MSR in x2APIC mode, else through the page. */
		if (uirq_wrmsr(u, k, 0x80b, 0) != 0)
			wr(u, k, APIC_EOI, 0);
		mask |= 1u << k;
	}
	return mask;
}

static void test_physical(void **state)
{
	struct uirq *u = make(4);

	(void)state;
	ipi(u, 0, 2, 0x51);
	assert_int_equal(rd(u, 0, APIC_ICR_LO) & (1u << 12), 0); /* delivery status: idle */
	assert_int_equal(got(u, 4, 0x51), 1u << 2);
	ipi(u, 3, 0, 0x52);
	assert_int_equal(got(u, 4, 0x52), 1u << 0);
	ipi(u, 1, 0xff, 0x53); /* broadcast, sender included */
	assert_int_equal(got(u, 4, 0x53), 0xf);
	ipi(u, 1, 9, 0x54); /* nobody has ID 9 */
	assert_int_equal(got(u, 4, 0x54), 0);
	irqchip_destroy(uirq_irqchip(u));
}

/* Shorthands ignore the destination field (SDM 10.6.1). */
static void test_shorthands(void **state)
{
	struct uirq *u = make(4);

	(void)state;
	ipi(u, 1, 2, (APIC_SH_SELF << 18) | 0x61);
	assert_int_equal(got(u, 4, 0x61), 1u << 1);
	ipi(u, 1, 2, (APIC_SH_ALL << 18) | 0x62);
	assert_int_equal(got(u, 4, 0x62), 0xf);
	ipi(u, 1, 2, (APIC_SH_OTHERS << 18) | 0x63);
	assert_int_equal(got(u, 4, 0x63), 0xd);
	ipi(u, 1, 2, (APIC_SH_OTHERS << 18) | ICR_LOGICAL | 0x64);
	assert_int_equal(got(u, 4, 0x64), 0xd);
	/* Self with a delivery mode other than fixed is invalid (SDM table 10-3). */
	ipi(u, 1, 0, (APIC_SH_SELF << 18) | (APIC_DM_NMI << 8));
	assert_false(uirq_take_nmi(u, 1));
	irqchip_destroy(uirq_irqchip(u));
}

/* Flat model: LDR[31:24] is a bitmap; the destination selects any LAPIC whose bit it has. */
static void test_logical_flat(void **state)
{
	struct uirq *u = make(4);

	(void)state;
	for (unsigned k = 0; k < 4; k++)
		wr(u, k, APIC_LDR, 1u << (24 + k));
	ipi(u, 0, 0x05, ICR_LOGICAL | 0x71);
	assert_int_equal(got(u, 4, 0x71), 0x5);
	ipi(u, 0, 0x08, ICR_LOGICAL | 0x72);
	assert_int_equal(got(u, 4, 0x72), 0x8);
	ipi(u, 0, 0xff, ICR_LOGICAL | 0x73);
	assert_int_equal(got(u, 4, 0x73), 0xf);
	ipi(u, 0, 0x30, ICR_LOGICAL | 0x74); /* bits nobody has */
	assert_int_equal(got(u, 4, 0x74), 0);
	irqchip_destroy(uirq_irqchip(u));
}

/* Cluster model: LDR[31:28] cluster, LDR[27:24] member bits; cluster 15 is all clusters. */
static void test_logical_cluster(void **state)
{
	static const uint32_t ldr[4] = {0x01, 0x02, 0x11, 0x12};
	struct uirq *u = make(4);

	(void)state;
	for (unsigned k = 0; k < 4; k++) {
		wr(u, k, APIC_DFR, 0x0fffffff);
		wr(u, k, APIC_LDR, ldr[k] << 24);
	}
	ipi(u, 0, 0x13, ICR_LOGICAL | 0x81);
	assert_int_equal(got(u, 4, 0x81), 0xc);
	ipi(u, 0, 0x01, ICR_LOGICAL | 0x82);
	assert_int_equal(got(u, 4, 0x82), 0x1);
	ipi(u, 0, 0xf2, ICR_LOGICAL | 0x83);
	assert_int_equal(got(u, 4, 0x83), 0xa);
	ipi(u, 0, 0x21, ICR_LOGICAL | 0x84); /* cluster 2 is empty */
	assert_int_equal(got(u, 4, 0x84), 0);
	irqchip_destroy(uirq_irqchip(u));
}

/* Lowest priority: exactly one of the destinations, the one with the lowest priority. */
static void test_lowest_priority(void **state)
{
	struct uirq *u = make(4);
	uint32_t m;

	(void)state;
	for (unsigned k = 0; k < 4; k++)
		wr(u, k, APIC_LDR, 1u << (24 + k));
	wr(u, 1, APIC_TPR, 0x20);
	wr(u, 2, APIC_TPR, 0x10);
	wr(u, 3, APIC_TPR, 0x30);
	ipi(u, 0, 0x0e, ICR_LOGICAL | (APIC_DM_LOWEST << 8) | 0x91);
	assert_int_equal(got(u, 4, 0x91), 1u << 2);
	wr(u, 2, APIC_TPR, 0x40);
	ipi(u, 0, 0x0e, ICR_LOGICAL | (APIC_DM_LOWEST << 8) | 0x92);
	assert_int_equal(got(u, 4, 0x92), 1u << 1);
	/* Equal priorities: still one target. */
	for (unsigned k = 0; k < 4; k++)
		wr(u, k, APIC_TPR, 0);
	for (unsigned i = 0; i < 8; i++) {
		ipi(u, 0, 0x0f, ICR_LOGICAL | (APIC_DM_LOWEST << 8) | 0x93);
		m = got(u, 4, 0x93);
		assert_int_equal(__builtin_popcount(m), 1);
	}
	/* A software-disabled APIC is not a candidate. */
	wr(u, 1, APIC_SVR, 0xff);
	wr(u, 2, APIC_SVR, 0xff);
	wr(u, 3, APIC_SVR, 0xff);
	ipi(u, 1, 0x0f, ICR_LOGICAL | (APIC_DM_LOWEST << 8) | 0x94);
	assert_int_equal(got(u, 4, 0x94), 1u << 0);
	irqchip_destroy(uirq_irqchip(u));
}

/* NMI latches; INIT resets the target's APIC and makes it wait for SIPI; one SIPI starts it;
 * INIT level de-assert does nothing (SDM 8.4.4, 10.6.1). */
static void test_nmi_init_sipi(void **state)
{
	struct uirq *u = make(4);
	uint8_t vec = 0;

	(void)state;
	ipi(u, 0, 1, APIC_DM_NMI << 8);
	assert_true(uirq_take_nmi(u, 1));
	assert_false(uirq_take_nmi(u, 1));
	assert_false(uirq_take_nmi(u, 2));

	wr(u, 2, APIC_TPR, 0x30);
	ipi(u, 0, 2, (APIC_DM_INIT << 8) | ICR_ASSERT | ICR_LEVEL);
	assert_true(uirq_wakeup_pending(u, 2));
	assert_int_equal(uirq_take_startup(u, 2, &vec), UIRQ_INIT);
	assert_int_equal(rd(u, 2, APIC_TPR), 0);
	assert_int_equal(rd(u, 2, APIC_SVR), 0xff);
	assert_int_equal(rd(u, 2, APIC_ID), 2u << 24);
	ipi(u, 0, 2, (APIC_DM_INIT << 8) | ICR_LEVEL); /* de-assert */
	assert_int_equal(uirq_take_startup(u, 2, &vec), 0);
	ipi(u, 0, 2, (APIC_DM_SIPI << 8) | 0x9a);
	assert_int_equal(uirq_take_startup(u, 2, &vec), UIRQ_SIPI);
	assert_int_equal(vec, 0x9a);
	ipi(u, 0, 2, (APIC_DM_SIPI << 8) | 0x9b); /* running: ignored */
	assert_int_equal(uirq_take_startup(u, 2, &vec), 0);
	/* INIT then SIPI before the engine looks: both reported. */
	ipi(u, 0, 2, (APIC_DM_INIT << 8) | ICR_ASSERT | ICR_LEVEL);
	ipi(u, 0, 2, (APIC_DM_SIPI << 8) | 0x10);
	assert_int_equal(uirq_take_startup(u, 2, &vec), UIRQ_INIT | UIRQ_SIPI);
	assert_int_equal(vec, 0x10);
	/* Broadcast INIT-SIPI-SIPI to the others, as Linux's fallback does. */
	wr(u, 0, APIC_ICR_LO, (APIC_SH_OTHERS << 18) | (APIC_DM_INIT << 8) | ICR_ASSERT);
	wr(u, 0, APIC_ICR_LO, (APIC_SH_OTHERS << 18) | (APIC_DM_SIPI << 8) | 0x20);
	wr(u, 0, APIC_ICR_LO, (APIC_SH_OTHERS << 18) | (APIC_DM_SIPI << 8) | 0x21);
	for (unsigned k = 1; k < 4; k++) {
		assert_int_equal(uirq_take_startup(u, k, &vec), UIRQ_INIT | UIRQ_SIPI);
		assert_int_equal(vec, 0x20);
	}
	assert_int_equal(uirq_take_startup(u, 0, &vec), 0);
	/* The BSP does not wait for SIPI after INIT. */
	ipi(u, 1, 0, (APIC_DM_INIT << 8) | ICR_ASSERT);
	ipi(u, 1, 0, (APIC_DM_SIPI << 8) | 0x30);
	assert_int_equal(uirq_take_startup(u, 0, &vec), UIRQ_INIT);
	irqchip_destroy(uirq_irqchip(u));
}

/* x2APIC: 32-bit destinations, broadcast 0xffffffff, clusters of 16 (SDM 10.12.9/10). */
static void test_x2apic_destinations(void **state)
{
	struct uirq *u = make(20);
	uint32_t all = (1u << 20) - 1;

	(void)state;
	for (unsigned k = 0; k < 20; k++)
		assert_int_equal(
		    uirq_wrmsr(u, k, MSR_IA32_APIC_BASE,
		               (k ? 0xfee00000 : 0xfee00100) | APIC_BASE_EN | APIC_BASE_EXTD),
		    0);
	for (unsigned k = 0; k < 20; k++)
		assert_int_equal(uirq_wrmsr(u, k, 0x80f, 0x1ff), 0);
	assert_int_equal(uirq_wrmsr(u, 0, 0x830, (17ULL << 32) | 0x41), 0);
	assert_int_equal(got(u, 20, 0x41), 1u << 17);
	assert_int_equal(uirq_wrmsr(u, 0, 0x830, (0xffffffffULL << 32) | 0x42), 0);
	assert_int_equal(got(u, 20, 0x42), all);
	assert_int_equal(uirq_wrmsr(u, 0, 0x830, (0xffULL << 32) | 0x43), 0);
	assert_int_equal(got(u, 20, 0x43), 0); /* 0xff is an ID here, not broadcast */
	/* Cluster 0, members 1 and 3; cluster 1, member 2 (x2APIC ID 18). */
	assert_int_equal(uirq_wrmsr(u, 0, 0x830, (0xaULL << 32) | ICR_LOGICAL | 0x44), 0);
	assert_int_equal(got(u, 20, 0x44), (1u << 1) | (1u << 3));
	assert_int_equal(uirq_wrmsr(u, 0, 0x830, (0x10004ULL << 32) | ICR_LOGICAL | 0x45), 0);
	assert_int_equal(got(u, 20, 0x45), 1u << 18);
	/* All excluding self through the MSR. */
	assert_int_equal(uirq_wrmsr(u, 5, 0x830, (APIC_SH_OTHERS << 18) | 0x46), 0);
	assert_int_equal(got(u, 20, 0x46), all & ~(1u << 5));
	irqchip_destroy(uirq_irqchip(u));
}

static unsigned total_kicks(void)
{
	unsigned n = 0;

	for (unsigned i = 0; i < UIRQ_MAX_CPUS; i++)
		n += kicks[i];
	return n;
}

/* The kick callback: called when something new becomes deliverable for a vCPU other than
 * the caller, and only then. */
static void test_kick_rules(void **state)
{
	struct uirq *u = make(3);
	uint32_t v;

	(void)state;
	ipi(u, 0, 1, 0x50);
	assert_int_equal(kicks[1], 1);
	assert_int_equal(total_kicks(), 1);
	ipi(u, 0, 1, 0x50); /* already pending */
	ipi(u, 0, 1, 0x40); /* below the pending one */
	assert_int_equal(total_kicks(), 1);
	ipi(u, 0, 1, 0x60); /* new highest */
	assert_int_equal(kicks[1], 2);
	ipi(u, 1, 1, (APIC_SH_SELF << 18) | 0x70); /* the caller itself */
	assert_int_equal(total_kicks(), 2);
	wr(u, 2, APIC_TPR, 0xf0);
	ipi(u, 0, 2, 0x80); /* masked by TPR: nothing to do yet */
	assert_int_equal(kicks[2], 0);
	ipi(u, 0, 2, APIC_DM_NMI << 8);
	assert_int_equal(kicks[2], 1);
	ipi(u, 0, 2, APIC_DM_NMI << 8); /* NMI already latched */
	assert_int_equal(kicks[2], 1);

	/* Timers: no kick when the owner ticks, a kick when another thread does. */
	wr(u, 1, APIC_LVT_TMR, 0x90);
	wr(u, 1, APIC_TDCR, 0xb);
	wr(u, 1, APIC_TMICT, 10);
	mc.ns += 10;
	uirq_tick(u, 1);
	assert_int_equal(kicks[1], 2);
	assert_int_equal(uirq_ack(u, 1), 0x90);
	wr(u, 1, APIC_EOI, 0);
	wr(u, 1, APIC_TMICT, 10);
	mc.ns += 10;
	uirq_tick(u, 0);
	assert_int_equal(kicks[1], 3);
	wr(u, 1, APIC_TMICT, 10);
	mc.ns += 10;
	uirq_tick(u, -1);
	assert_int_equal(kicks[1], 3); /* 0x90 was still pending */
	assert_int_equal(uirq_ack(u, 1), 0x90);
	wr(u, 1, APIC_EOI, 0);
	wr(u, 1, APIC_TMICT, 10);
	mc.ns += 10;
	uirq_tick(u, -1);
	assert_int_equal(kicks[1], 4);
	assert_int_equal(uirq_ack(u, 1), 0x90);
	wr(u, 1, APIC_EOI, 0);

	/* A device line through the IOAPIC: the device thread is no vCPU, the target is kicked. */
	v = IOAPIC_REG_RTE0 + 2 * 9;
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_REGSEL, &v, 4), 0);
	v = 0xa9;
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_WINDOW, &v, 4), 0);
	v = IOAPIC_REG_RTE0 + 2 * 9 + 1;
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_REGSEL, &v, 4), 0);
	v = 2u << 24;
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_WINDOW, &v, 4), 0);
	wr(u, 2, APIC_TPR, 0);
	assert_int_equal(uirq_ack(u, 2), 0x80);
	wr(u, 2, APIC_EOI, 0);
	v = kicks[2];
	assert_int_equal(irqchip_pulse(uirq_irqchip(u), 9), 0);
	assert_int_equal(kicks[2], v + 1);
	assert_int_equal(uirq_ack(u, 2), 0xa9);
	irqchip_destroy(uirq_irqchip(u));
}

/* Smoke test of the lock: every vCPU thread sends IPIs to every other one and takes its
 * own, while a device thread pulses an IOAPIC line routed lowest-priority to all. A sender
 * waits until its previous interrupt to that target was taken (IRR would merge them), so
 * every one sent must be received exactly once. */
#define SMP_CPUS   4
#define SMP_ROUNDS 3000
#define DEV_VEC    0xe0
#define DEV_ROUNDS 3000

struct smp {
	struct uirq *u;
	atomic_int outstanding[SMP_CPUS][SMP_CPUS];
	atomic_int received[SMP_CPUS][SMP_CPUS];
	atomic_int dev_outstanding, dev_received, total;
	atomic_int failed;
	unsigned id;
};

static struct smp smp;

static unsigned vec_of(unsigned sender)
{
	return 0x40 + 0x10 * sender;
}

static bool expired(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec - start->tv_sec > 20;
}

#define SMP_EXPECTED (SMP_CPUS * (SMP_CPUS - 1) * SMP_ROUNDS + DEV_ROUNDS)

static void take(unsigned me)
{
	int v = uirq_ack(smp.u, me);
	uint32_t zero = 0;

	if (v < 0)
		return;
	if (v == DEV_VEC) {
		atomic_fetch_add(&smp.dev_received, 1);
		atomic_store(&smp.dev_outstanding, 0);
	} else if (v >= 0x40 && (v - 0x40) % 0x10 == 0 && (v - 0x40) / 0x10 < SMP_CPUS) {
		unsigned from = (unsigned)(v - 0x40) / 0x10;

		atomic_fetch_add(&smp.received[from][me], 1);
		atomic_store(&smp.outstanding[from][me], 0);
	} else {
		atomic_store(&smp.failed, 1);
	}
	atomic_fetch_add(&smp.total, 1);
	uirq_lapic_write(smp.u, me, APIC_EOI, &zero, 4);
}

static void *vcpu_thread(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg, sent[SMP_CPUS] = {0};
	struct timespec start;

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (atomic_load(&smp.total) < SMP_EXPECTED && !expired(&start)) {
		for (unsigned j = 0; j < SMP_CPUS; j++) {
			uint32_t hi = j << 24, lo = vec_of(me);

			if (j == me || sent[j] == SMP_ROUNDS ||
			    atomic_load(&smp.outstanding[me][j]))
				continue;
			atomic_store(&smp.outstanding[me][j], 1);
			sent[j]++;
			uirq_lapic_write(smp.u, me, APIC_ICR_HI, &hi, 4);
			uirq_lapic_write(smp.u, me, APIC_ICR_LO, &lo, 4);
		}
		take(me);
		sched_yield(); /* more threads than host CPUs */
	}
	return NULL;
}

static void *device_thread(void *arg)
{
	unsigned sent = 0;
	struct timespec start;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (sent < DEV_ROUNDS && !expired(&start)) {
		if (atomic_load(&smp.dev_outstanding)) {
			sched_yield();
			continue;
		}
		atomic_store(&smp.dev_outstanding, 1);
		sent++;
		irqchip_pulse(uirq_irqchip(smp.u), 20);
	}
	return NULL;
}

static void test_threads(void **state)
{
	pthread_t t[SMP_CPUS + 1];
	uint32_t v;

	(void)state;
	memset(&smp, 0, sizeof(smp));
	smp.u = make(SMP_CPUS);
	for (unsigned k = 0; k < SMP_CPUS; k++)
		wr(smp.u, k, APIC_LDR, 1u << (24 + k));
	v = IOAPIC_REG_RTE0 + 2 * 20;
	assert_int_equal(uirq_ioapic_write(smp.u, IOAPIC_REGSEL, &v, 4), 0);
	v = RTE_LOGICAL | (APIC_DM_LOWEST << 8) | DEV_VEC;
	assert_int_equal(uirq_ioapic_write(smp.u, IOAPIC_WINDOW, &v, 4), 0);
	v = IOAPIC_REG_RTE0 + 2 * 20 + 1;
	assert_int_equal(uirq_ioapic_write(smp.u, IOAPIC_REGSEL, &v, 4), 0);
	v = 0x0fu << 24;
	assert_int_equal(uirq_ioapic_write(smp.u, IOAPIC_WINDOW, &v, 4), 0);

	for (unsigned k = 0; k < SMP_CPUS; k++)
		assert_int_equal(pthread_create(&t[k], NULL, vcpu_thread, (void *)(uintptr_t)k), 0);
	assert_int_equal(pthread_create(&t[SMP_CPUS], NULL, device_thread, NULL), 0);
	for (unsigned k = 0; k <= SMP_CPUS; k++)
		pthread_join(t[k], NULL);

	assert_int_equal(smp.failed, 0);
	for (unsigned i = 0; i < SMP_CPUS; i++)
		for (unsigned j = 0; j < SMP_CPUS; j++)
			assert_int_equal(smp.received[i][j], i == j ? 0 : SMP_ROUNDS);
	assert_int_equal(smp.dev_received, DEV_ROUNDS);
	assert_int_equal(smp.total, SMP_EXPECTED);
	for (unsigned k = 0; k < SMP_CPUS; k++)
		assert_int_equal(uirq_pending(smp.u, k), -1);
	irqchip_destroy(uirq_irqchip(smp.u));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_physical),
	    cmocka_unit_test(test_shorthands),
	    cmocka_unit_test(test_logical_flat),
	    cmocka_unit_test(test_logical_cluster),
	    cmocka_unit_test(test_lowest_priority),
	    cmocka_unit_test(test_nmi_init_sipi),
	    cmocka_unit_test(test_x2apic_destinations),
	    cmocka_unit_test(test_kick_rules),
	    cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
