/* The userspace chip set's snapshot (irqchip/snapshot.c): save -> restore into a fresh set ->
 * save gives the same bytes; the restored set behaves as the original would, with its timers
 * re-anchored to a clock that moved; corrupted and truncated state is refused by name and
 * leaves the set as it was. */
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
#include "snapshot/stream.h"

#define TSC_HZ 2000000000ULL /* 2 TSC ticks per ns */
#define T0     1000000000ULL
#define MS     1000000ULL
#define HOUR   (3600ULL * 1000 * MS)

/* A chip set with its own clock (the clock's opaque points into it: rigs never move). */
struct rig {
	struct irqchip_manual_clock mc;
	struct uirq *u;
	unsigned ncpus;
};

static void rig_init(struct rig *r, unsigned ncpus, uint64_t ns, uint64_t tsc)
{
	struct uirq_config cfg = {.ncpus = ncpus};

	r->mc.ns = ns;
	r->mc.tsc = tsc;
	r->ncpus = ncpus;
	irqchip_manual_clock(&cfg.clock, &r->mc, TSC_HZ);
	r->u = uirq_create(&cfg);
	assert_non_null(r->u);
}

static void rig_free(struct rig *r)
{
	irqchip_destroy(uirq_irqchip(r->u));
}

static void advance(struct rig *r, uint64_t ns)
{
	r->mc.ns += ns;
	r->mc.tsc += ns * (TSC_HZ / 1000000000ULL);
}

struct blob {
	uint8_t *p;
	size_t n;
};

static struct blob save(struct uirq *u)
{
	struct snap_w w;

	snap_w_init(&w);
	assert_int_equal(uirq_save(u, &w), 0);
	if (!w.len)
		fail_msg("uirq_save wrote nothing: a stub linked instead of irqchip/snapshot.c?");
	return (struct blob){w.buf, w.len};
}

static int restore(struct uirq *u, const void *p, size_t n, struct error *err)
{
	struct snap_r r;
	int ret;

	snap_r_init(&r, p, n);
	ret = uirq_restore(u, &r, err);
	if (!ret)
		assert_int_equal(snap_left(&r), 0);
	return ret;
}

static void assert_same(struct blob a, struct blob b)
{
	assert_int_equal(a.n, b.n);
	assert_memory_equal(a.p, b.p, a.n);
}

/* Save `a`, restore into `b`, built fresh at its own clock; `b` saves the same bytes unless
 * `same` is false (the restoring clock is behind a count's start: see test_pit_counting). */
static void clone_into(struct rig *a, struct rig *b, uint64_t ns, uint64_t tsc, bool same)
{
	struct blob x = save(a->u), y;
	struct error err = {{0}};

	rig_init(b, a->ncpus, ns, tsc);
	if (restore(b->u, x.p, x.n, &err))
		fail_msg("restore: %s", err.msg);
	y = save(b->u);
	if (same)
		assert_same(x, y);
	free(x.p);
	free(y.p);
}

/* ---- driving the chips ----------------------------------------------------------------- */

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

static void wrmsr(struct uirq *u, unsigned cpu, uint32_t msr, uint64_t v)
{
	assert_int_equal(uirq_wrmsr(u, cpu, msr, v), 0);
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

/* A 16-bit count latched with RW 3: LSB, then MSB. */
static uint16_t read16(struct uirq *u, uint16_t port)
{
	uint16_t lo = inb(u, port);

	return lo | (uint16_t)(inb(u, port) << 8);
}

static void io_wr(struct uirq *u, uint8_t reg, uint32_t val)
{
	uint32_t v = reg;

	assert_int_equal(uirq_ioapic_write(u, IOAPIC_REGSEL, &v, 4), 0);
	assert_int_equal(uirq_ioapic_write(u, IOAPIC_WINDOW, &val, 4), 0);
}

static void gsi(struct uirq *u, uint32_t n, int level)
{
	assert_int_equal(irqchip_set_irq(uirq_irqchip(u), n, level), 0);
}

/* Something in every chip, for a 2-vCPU set at T0: pending and in-service vectors, a level
 * IOAPIC line awaiting EOI, NMI, INIT and SIPI latched, an x2APIC, both timer kinds running,
 * a PIC mid-initialization, PIT channels counting, latched and half-written. */
static void busy(struct rig *r)
{
	struct uirq *u = r->u;

	/* vCPU 1: INIT, SIPI (not taken yet), then x2APIC with a TSC-deadline timer. */
	wr(u, 0, APIC_SVR, 0x1ff);
	wr(u, 0, APIC_ICR_HI, 1u << 24);
	wr(u, 0, APIC_ICR_LO, (APIC_DM_INIT << 8) | ICR_ASSERT);
	wr(u, 0, APIC_ICR_LO, (APIC_DM_SIPI << 8) | 0x9a);
	wrmsr(u, 1, MSR_IA32_APIC_BASE, LAPIC_DEFAULT_BASE | APIC_BASE_EN | APIC_BASE_EXTD);
	wrmsr(u, 1, 0x80f, 0x1ff);
	wrmsr(u, 1, 0x808, 0x10);
	wrmsr(u, 1, 0x832, LVT_TIMER_TSC | 0xe1);
	wrmsr(u, 1, MSR_IA32_TSC_DEADLINE, r->mc.tsc + 20 * MS * 2);

	/* vCPU 0: 0x40 in service, 0x50 pending, TPR, an NMI, a one-shot timer of 10 ms. */
	wr(u, 0, APIC_TPR, 0x20);
	wr(u, 0, APIC_ICR_LO, (APIC_SH_SELF << 18) | 0x40);
	assert_int_equal(uirq_ack(u, 0), 0x40);
	wr(u, 0, APIC_ICR_LO, (APIC_SH_SELF << 18) | 0x50);
	uirq_lint1(u, 0);
	wr(u, 0, APIC_TDCR, 0xb); /* divide by 1: one count per ns */
	wr(u, 0, APIC_LVT_TMR, 0xe0);
	wr(u, 0, APIC_TMICT, 10 * MS);

	/* IOAPIC: pin 5 level to vCPU 0 vector 0x60, asserted (Remote IRR); pin 0 (PIT) edge
	 * vector 0x30; pin 20 high but masked. */
	io_wr(u, IOAPIC_REG_RTE0 + 10, (uint32_t)RTE_LEVEL | 0x60);
	io_wr(u, IOAPIC_REG_RTE0, 0x30);
	gsi(u, 5, 1);
	gsi(u, 20, 1);

	/* PICs: the master initialized (Linux's words), IRQ 1 latched, ISR read selected; the
	 * slave after ICW1 and ICW2, waiting for ICW3; IRQ 10 level-triggered and high. */
	outb(u, 0x20, 0x11);
	outb(u, 0x21, 0x20);
	outb(u, 0x21, 0x04);
	outb(u, 0x21, 0x01);
	outb(u, 0x21, 0xf8);
	outb(u, 0x20, 0x0b);
	gsi(u, 1, 1);
	gsi(u, 1, 0);
	outb(u, 0x4d1, 0x04);
	outb(u, 0xa0, 0x11);
	outb(u, 0xa1, 0x28);
	gsi(u, 10, 1);

	/* PIT: channel 0 mode 2 at ~1 kHz (1193 CLKs); channel 1 mode 3 with a count latched and
	 * half read; channel 2 gated on, mode 0 LSB written, MSB pending; channel 0's status
	 * latched by read-back. */
	outb(u, 0x43, 0x34);
	outb(u, 0x40, 1193 & 0xff);
	outb(u, 0x40, 1193 >> 8);
	outb(u, 0x43, 0x76);
	outb(u, 0x41, 0x34);
	outb(u, 0x41, 0x12);
	outb(u, 0x61, 0x01);
	outb(u, 0x43, 0xb0);
	outb(u, 0x42, 0x10);
	advance(r, 3 * MS);
	uirq_tick(u, -1);
	outb(u, 0x43, 0x40);
	(void)inb(u, 0x41);
	outb(u, 0x43, 0xe2);
	/* 7 ms into vCPU 0's timer; the PIT's edges since 3 ms not yet signalled. */
	advance(r, 4 * MS);
}

/* The next deadline relative to the rig's clock. */
static uint64_t next_in(struct rig *r, int cpu)
{
	uint64_t d = uirq_next_deadline(r->u, cpu);

	return d == UINT64_MAX ? d : d - r->mc.ns;
}

/* What a guest could see over 30 ms of the run loop, all relative to the rig's clock. */
#define OBS 2048
struct obs {
	uint64_t v[OBS];
	unsigned n;
};

static void note(struct obs *o, uint64_t v)
{
	assert_true(o->n < OBS);
	o->v[o->n++] = v;
}

static bool seen(const struct obs *o, uint64_t v)
{
	for (unsigned i = 0; i < o->n; i++)
		if (o->v[i] == v)
			return true;
	return false;
}

static void drive(struct rig *r, struct obs *o)
{
	struct uirq *u = r->u;
	uint8_t sipi = 0;

	for (unsigned step = 0; step < 120; step++) {
		note(o, next_in(r, -1));
		note(o, next_in(r, 0));
		note(o, next_in(r, 1));
		uirq_tick(u, -1);
		note(o, (uint64_t)uirq_ack(u, 0));
		note(o, (uint64_t)uirq_ack(u, 1));
		note(o, uirq_take_nmi(u, 0));
		note(o, uirq_take_startup(u, 1, &sipi) | (unsigned)sipi << 8);
		note(o, rd(u, 0, APIC_TMCCT));
		note(o, rd(u, 0, APIC_ISR + 0x30)); /* vectors 0x60..0x7f */
		if (step % 3 == 0)
			wr(u, 0, APIC_EOI, 0);
		if (step % 2 == 1) { /* non-specific EOIs, slave first */
			outb(u, 0xa0, 0x20);
			outb(u, 0x20, 0x20);
		}
		if (step == 10)
			gsi(u, 5, 0);
		if (step == 20) { /* the slave's init completes: IRQ 10 reaches the master */
			outb(u, 0xa1, 0x02);
			outb(u, 0xa1, 0x01);
			outb(u, 0xa1, 0xfb);
			outb(u, 0x42, 0x00);
		}
		note(o, inb(u, 0x20));
		note(o, inb(u, 0x40));
		note(o, inb(u, 0x41));
		note(o, inb(u, 0x42));
		note(o, inb(u, 0x61) & ~0x10); /* bit 4, the refresh toggle, is absolute time */
		advance(r, 250000);
	}
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_fresh_round_trip(void **state)
{
	struct rig a, b;
	struct blob x;

	(void)state;
	rig_init(&a, 2, T0, T0 * 2);
	clone_into(&a, &b, 5 * T0, 77, true);
	x = save(a.u);
	assert_true(x.n > 12);
	assert_memory_equal(x.p, "UIRQ", 4);
	free(x.p);
	rig_free(&a);
	rig_free(&b);
}

/* Everything busy() set comes back, and the restored set (its clock an hour ahead, the TSC
 * running on as the host's does) behaves as the original over the next 30 ms. */
static void test_busy_round_trip_behaves_the_same(void **state)
{
	static struct obs oa, ob;
	struct rig a, b;
	struct blob x, y;

	(void)state;
	rig_init(&a, 2, T0, 5000);
	busy(&a);
	clone_into(&a, &b, a.mc.ns + HOUR, a.mc.tsc, true);

	/* A few facts directly. */
	assert_int_equal(rd(b.u, 0, APIC_TMCCT), 3 * MS); /* 3 ms left of 10 */
	assert_int_equal(rd(b.u, 0, APIC_TPR), 0x20);
	assert_int_equal(rd(b.u, 0, APIC_ISR + 0x20) & 1, 1); /* 0x40 in service */
	assert_true(uirq_take_nmi(b.u, 0));
	uirq_lint1(b.u, 0);                  /* give it back: the twins stay twins */
	assert_int_equal(inb(b.u, 0x20), 0); /* ISR selected: nothing in service */

	oa.n = ob.n = 0;
	drive(&a, &oa);
	drive(&b, &ob);
	assert_int_equal(oa.n, ob.n);
	for (unsigned i = 0; i < oa.n; i++)
		if (oa.v[i] != ob.v[i])
			fail_msg("observation %u: original %llu, restored %llu", i,
			         (unsigned long long)oa.v[i], (unsigned long long)ob.v[i]);
	/* They did see something: the PIC's IRQ 0 (PIT), 1 and 10 (slave) as ExtINT, the PIT on
	 * the IOAPIC, the pending self-IPI, the level line, both timers, the SIPI. */
	for (unsigned i = 0; i < 9; i++) {
		static const uint64_t v[] = {
		    0x20, 0x21, 0x2a, 0x30, 0x50, 0x60, 0xe0, 0xe1, UIRQ_INIT | UIRQ_SIPI | 0x9a00};

		if (!seen(&ob, v[i]))
			fail_msg("never saw %#llx", (unsigned long long)v[i]);
	}
	x = save(a.u);
	y = save(b.u);
	assert_same(x, y);
	free(x.p);
	free(y.p);
	rig_free(&a);
	rig_free(&b);
}

/* A one-shot LAPIC timer with 3 ms left fires 3 ms after the restore, whether the restoring
 * clock is far ahead or behind the time the count has run (a host rebooted since). */
static void test_lapic_timer_reanchored(void **state)
{
	const uint64_t clocks[] = {T0 + HOUR, 1000};

	(void)state;
	for (unsigned i = 0; i < 2; i++) {
		struct rig a, b;

		rig_init(&a, 2, T0, 5000);
		wr(a.u, 0, APIC_SVR, 0x1ff);
		wr(a.u, 0, APIC_TDCR, 0xb);
		wr(a.u, 0, APIC_LVT_TMR, 0xe0);
		wr(a.u, 0, APIC_TMICT, 10 * MS);
		advance(&a, 7 * MS);
		clone_into(&a, &b, clocks[i], 99, true);
		assert_int_equal(next_in(&b, 0), 3 * MS);
		assert_int_equal(rd(b.u, 0, APIC_TMCCT), 3 * MS);
		advance(&b, 3 * MS - 1);
		uirq_tick(b.u, 0);
		assert_int_equal(uirq_pending(b.u, 0), -1);
		assert_int_equal(rd(b.u, 0, APIC_TMCCT), 1);
		advance(&b, 1);
		uirq_tick(b.u, 0);
		assert_int_equal(uirq_pending(b.u, 0), 0xe0);
		assert_int_equal(next_in(&b, 0), UINT64_MAX); /* one-shot: done */
		rig_free(&a);
		rig_free(&b);
	}
}

/* Periodic: the phase survives; an expiry due at the save (not yet ticked) fires at once. */
static void test_lapic_periodic_and_due(void **state)
{
	struct rig a, b;

	(void)state;
	rig_init(&a, 1, T0, 0);
	wr(a.u, 0, APIC_SVR, 0x1ff);
	wr(a.u, 0, APIC_TDCR, 0xb);
	wr(a.u, 0, APIC_LVT_TMR, LVT_TIMER_PERIODIC | 0xe0);
	wr(a.u, 0, APIC_TMICT, MS);
	advance(&a, 2 * MS + MS / 2); /* 2.5 periods, nothing ticked: one expiry due */
	clone_into(&a, &b, 42, 0, true);
	assert_int_equal(next_in(&b, 0), 0);
	assert_int_equal(rd(b.u, 0, APIC_TMCCT), MS / 2);
	uirq_tick(b.u, 0);
	assert_int_equal(uirq_ack(b.u, 0), 0xe0);
	wr(b.u, 0, APIC_EOI, 0);
	assert_int_equal(next_in(&b, 0), MS / 2);
	advance(&b, MS / 2);
	uirq_tick(b.u, 0);
	assert_int_equal(uirq_ack(b.u, 0), 0xe0);
	assert_int_equal(next_in(&b, 0), MS);
	rig_free(&a);
	rig_free(&b);
}

/* IA32_TSC_DEADLINE is absolute: the guest TSC is the host's and runs on while saved. */
static void test_tsc_deadline_absolute(void **state)
{
	struct rig a, b;
	uint64_t v;

	(void)state;
	rig_init(&a, 1, T0, 1000000);
	wr(a.u, 0, APIC_SVR, 0x1ff);
	wr(a.u, 0, APIC_LVT_TMR, LVT_TIMER_TSC | 0xe2);
	wrmsr(a.u, 0, MSR_IA32_TSC_DEADLINE, 1000000 + 10000);
	clone_into(&a, &b, 7, 1000000 + 4000, true); /* 4000 TSC ticks passed meanwhile */
	assert_int_equal(uirq_rdmsr(b.u, 0, MSR_IA32_TSC_DEADLINE, &v), 0);
	assert_int_equal(v, 1010000);
	assert_int_equal(next_in(&b, 0), 3000); /* 6000 ticks at 2 per ns */
	rig_free(&b);
	clone_into(&a, &b, 7, 1000000 + 20000,
	           true); /* passed while saved: fires at the first tick */
	assert_int_equal(next_in(&b, 0), 0);
	uirq_tick(b.u, 0);
	assert_int_equal(uirq_pending(b.u, 0), 0xe2);
	rig_free(&a);
	rig_free(&b);
}

/* The PIT's count and OUT edges continue from where they were, on the new clock; a count
 * older than the new clock (a rebooted host) still runs, neither stuck nor spinning. */
static void test_pit_counting(void **state)
{
	const uint64_t clocks[] = {T0 + HOUR, 1000};

	(void)state;
	for (unsigned i = 0; i < 2; i++) {
		struct rig a, b;
		uint64_t now;

		rig_init(&a, 1, T0, 0);
		wr(a.u, 0, APIC_SVR, 0x1ff);
		io_wr(a.u, IOAPIC_REG_RTE0, 0x30);
		outb(a.u, 0x43, 0x34);
		outb(a.u, 0x40, 1193 & 0xff);
		outb(a.u, 0x40, 1193 >> 8);
		advance(&a, 10 * MS + 400000);
		uirq_tick(a.u, 0);
		assert_int_equal(uirq_ack(a.u, 0), 0x30);
		wr(a.u, 0, APIC_EOI, 0);
		outb(a.u, 0x43, 0x00); /* latch channel 0 */
		/* The count began 10.4 ms before the save; under a clock at 1 us it is folded into
		 * the ticks counted before the clock's zero, within a tick: no longer bytewise
		 * the same. */
		clone_into(&a, &b, clocks[i], 0, i == 0);
		assert_int_equal(read16(b.u, 0x40), read16(a.u, 0x40));
		now = b.mc.ns;
		assert_true(next_in(&b, 0) > 0 && next_in(&b, 0) <= MS);
		b.mc.ns += next_in(&b, 0);
		uirq_tick(b.u, 0);
		assert_int_equal(uirq_ack(b.u, 0), 0x30);
		/* 10 periods and 0.4 ms had run: the next edge is ~0.6 ms on (1 tick either way
		 * when the old count had to be folded under the new clock's zero). */
		assert_true(b.mc.ns - now >= 598000 && b.mc.ns - now <= 603000);
		assert_true(next_in(&b, 0) > 999000 && next_in(&b, 0) <= 1000000);
		rig_free(&a);
		rig_free(&b);
	}
}

/* A PIC in the middle of its initialization finishes it after the restore. */
static void test_pic_mid_init(void **state)
{
	struct rig a, b;

	(void)state;
	rig_init(&a, 1, T0, 0);
	wr(a.u, 0, APIC_SVR, 0x1ff);
	outb(a.u, 0x20, 0x11);
	outb(a.u, 0x21, 0x30); /* ICW2; ICW3 and ICW4 still to come */
	gsi(a.u, 3, 1);
	clone_into(&a, &b, 5, 0, true);
	outb(b.u, 0x21, 0x04);
	outb(b.u, 0x21, 0x01);
	outb(b.u, 0x21, 0xf7); /* OCW1: only IRQ 3 */
	assert_int_equal(inb(b.u, 0x21), 0xf7);
	gsi(b.u, 3, 0);
	gsi(b.u, 3, 1);
	assert_int_equal(uirq_ack(b.u, 0), 0x33); /* ExtINT through the BSP's LINT0 */
	rig_free(&a);
	rig_free(&b);
}

/* ---- hostile input ---------------------------------------------------------------------- */

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Where the contents of chip section `idx` begin (0, 1: LAPICs; 2 IOAPIC; 3 PIC; 4 PIT). */
static size_t chip_at(const uint8_t *b, unsigned idx)
{
	size_t at = 12 + 12;

	for (unsigned i = 0; i < idx; i++)
		at += 12 + (size_t)le(b + at + 4, 8);
	return at + 12;
}

/* Offsets in a section's contents (snapshot.c's layout). */
#define LAPIC_LVT0      44
#define LAPIC_ARMED     (LAPIC_LVT0 + 4 * 6 + 4 + 3 * 32)
#define LAPIC_INITIAL   (LAPIC_ARMED + 1)
#define IOAPIC_RTE(i)   (5 + 8 * (i))
#define PIC_ICW(chip)   (16 * (chip) + 6)
#define PIT_CH_SIZE     49
#define PIT_CH(i)       (2 + PIT_CH_SIZE * (i))
#define PIT_N           4
#define PIT_MODE        8
#define PIT_SECTION_LEN (2 + 3 * PIT_CH_SIZE)

struct bad_case {
	unsigned chip;
	size_t off;
	unsigned size;
	uint64_t val;
	const char *msg;
};

static const struct bad_case bad_cases[] = {
    {1, LAPIC_LVT0, 4, 1u << 20, "section LAPC: bad or missing vCPU 1 lvt timer"},
    {0, LAPIC_INITIAL, 4, 0, "section LAPC: bad or missing vCPU 0 timer armed"},
    {0, 0, 4, 7, "vCPU 0 apic id"},
    {2, IOAPIC_RTE(3), 8, RTE_DELIVS, "section IOAP: bad or missing pin 3 redirection entry"},
    {2, IOAPIC_RTE(4), 8, RTE_REMOTE_IRR, "pin 4 redirection entry"},
    {3, PIC_ICW(1), 1, 5, "section 8259: bad or missing slave init step"},
    {3, PIC_ICW(0), 1, 1, "master init step"},
    {4, PIT_CH(0) + PIT_MODE, 1, 6, "section 8254: bad or missing channel 0 mode"},
    {4, PIT_CH(0) + PIT_N, 4, 0, "channel 0 count"}, /* loaded, would divide by 0 */
    {4, PIT_CH(1) + PIT_N, 4, 65537, "channel 1 counting element"},
    {4, PIT_CH(2) + PIT_MODE + 3, 1, 2, "channel 2 loaded"}, /* a bool that is 2 */
};

static void expect_refused(struct uirq *u, const uint8_t *p, size_t n, const char *msg,
                           struct blob fresh)
{
	struct error err = {{0}};
	struct blob after;

	assert_int_equal(restore(u, p, n, &err), -1);
	if (!strstr(err.msg, msg))
		fail_msg("expected \"%s\" in \"%s\"", msg, err.msg);
	after = save(u);
	assert_same(after, fresh); /* untouched */
	free(after.p);
}

static void test_bad_fields_named(void **state)
{
	struct rig a, b;
	struct blob x, fresh;

	(void)state;
	rig_init(&a, 2, T0, 5000);
	busy(&a);
	x = save(a.u);
	rig_init(&b, 2, T0, 5000);
	fresh = save(b.u);
	for (unsigned i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		uint8_t *y = malloc(x.n);

		memcpy(y, x.p, x.n);
		put_le(y + chip_at(y, c->chip) + c->off, c->val, c->size);
		expect_refused(b.u, y, x.n, c->msg, fresh);
		free(y);
	}
	free(fresh.p);
	rig_free(&b);

	/* Another vCPU count than the VM's. */
	rig_init(&b, 1, T0, 5000);
	fresh = save(b.u);
	expect_refused(b.u, x.p, x.n, "2 vCPUs saved, but the VM has 1", fresh);
	free(fresh.p);
	free(x.p);
	rig_free(&a);
	rig_free(&b);
}

/* Every prefix is refused; so is a section one field short (lengths made consistent) or
 * one byte long. */
static void test_truncated_and_padded(void **state)
{
	struct rig a, b;
	struct blob x, fresh;
	size_t pit;
	uint8_t *y;

	(void)state;
	rig_init(&a, 2, T0, 5000);
	busy(&a);
	x = save(a.u);
	rig_init(&b, 2, T0, 5000);
	fresh = save(b.u);
	for (size_t n = 0; n < x.n; n++) {
		y = malloc(n ? n : 1); /* exactly n bytes, for the sanitizers */
		memcpy(y, x.p, n);
		expect_refused(b.u, y, n, "snapshot: section", fresh);
		free(y);
	}

	pit = chip_at(x.p, 4);
	assert_int_equal(pit + PIT_SECTION_LEN, x.n);
	y = malloc(x.n + 1);
	memcpy(y, x.p, x.n);
	put_le(y + 4, le(y + 4, 8) - 1, 8);
	put_le(y + pit - 8, PIT_SECTION_LEN - 1, 8);
	expect_refused(b.u, y, x.n - 1, "section 8254: bad or missing channel 2 null count", fresh);
	put_le(y + 4, le(x.p + 4, 8) + 1, 8);
	put_le(y + pit - 8, PIT_SECTION_LEN + 1, 8);
	y[x.n] = 0;
	expect_refused(b.u, y, x.n + 1, "section 8254 has 1 bytes more", fresh);
	memcpy(y, x.p, x.n);
	y[chip_at(y, 3) - 12] = 'X'; /* a chip section out of place */
	expect_refused(b.u, y, x.n, "section 8259 expected, found X259", fresh);
	free(y);
	free(fresh.p);
	free(x.p);
	rig_free(&a);
	rig_free(&b);
}

/* Every single-byte corruption either is refused cleanly or restores a set that saves
 * something that restores again to itself, and runs. */
static void test_every_byte_corrupted(void **state)
{
	static const uint8_t vals[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff};
	struct rig a, b, c;
	struct blob x, y, z;

	(void)state;
	rig_init(&a, 2, T0, 5000);
	busy(&a);
	x = save(a.u);
	for (size_t i = 0; i < x.n; i++) {
		for (unsigned v = 0; v < sizeof(vals); v++) {
			struct error err = {{0}};
			uint8_t old = x.p[i];

			if (vals[v] == old)
				continue;
			x.p[i] = vals[v];
			rig_init(&b, 2, T0, 5000);
			if (restore(b.u, x.p, x.n, &err) == 0) {
				y = save(b.u);
				rig_init(&c, 2, T0, 5000);
				assert_int_equal(restore(c.u, y.p, y.n, &err), 0);
				z = save(c.u);
				assert_same(y, z);
				free(y.p);
				free(z.p);
				rig_free(&c);
				for (unsigned k = 0; k < 8; k++) {
					advance(&b, 300000);
					uirq_tick(b.u, -1);
					(void)uirq_ack(b.u, k & 1);
					assert_true(uirq_next_deadline(b.u, -1) > b.mc.ns);
				}
			} else {
				assert_memory_equal(err.msg, "snapshot: ", 10);
			}
			rig_free(&b);
			x.p[i] = old;
		}
	}
	free(x.p);
	rig_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fresh_round_trip),
	    cmocka_unit_test(test_busy_round_trip_behaves_the_same),
	    cmocka_unit_test(test_lapic_timer_reanchored),
	    cmocka_unit_test(test_lapic_periodic_and_due),
	    cmocka_unit_test(test_tsc_deadline_absolute),
	    cmocka_unit_test(test_pit_counting),
	    cmocka_unit_test(test_pic_mid_init),
	    cmocka_unit_test(test_bad_fields_named),
	    cmocka_unit_test(test_truncated_and_padded),
	    cmocka_unit_test(test_every_byte_corrupted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
