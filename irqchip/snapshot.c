/*
 * The userspace chip set in a snapshot: uirq_save and uirq_restore (userspace.h).
 *
 * Layout (snapshot/stream.h: little-endian fields): one section for the set, holding one
 * section per chip so that an error names the chip. What the board fixes (wiring, ELCR masks,
 * versions) and what follows from other fields (the PIC input levels, the slave's INT on the
 * master's IR2, the LAPIC timer's divisor shift) is not saved.
 *
 *   UIRQ  u32 ncpus, u32 lowest_rr (where lowest-priority ties start), u32 GSI levels (bit n:
 *         GSI n; they are the IOAPIC's pins and the PICs' inputs), then:
 *   LAPC  one per vCPU, vCPU 0 first: u32 id, u64 IA32_APIC_BASE, u32 tpr, ldr, dfr, svr, esr,
 *         esr_pending, icr_lo, icr_hi, lvt[6], tdcr, irr[8], isr[8], tmr[8]; the timer: bool
 *         armed, u32 initial count, u64 elapsed ns, u64 IA32_TSC_DEADLINE; bool nmi, init,
 *         sipi pending, bool waiting for SIPI, u8 SIPI vector, bool ExtINT pending
 *   IOAP  u32 id, u8 IOREGSEL, u64 redirection entries[24] (Remote IRR included)
 *   8259  master, then slave: u8 irr, isr, imr, elcr, ICW2 base, lowest-priority input, next
 *         ICW (0: none, 2..4), bool need ICW4, single, LTIM, AEOI, rotate in AEOI, SFNM,
 *         special mask, read ISR, poll
 *   8254  u8 port 0x61 bits 0..3, bool OUT0 as driven; channels 0..2: u32 count, counting
 *         element, u8 mode, control word bits, RW, bool loaded, triggered, gate, counting, u64
 *         ticks before the count start, u64 ns since the count start, u64 OUT0 edges signalled,
 *         bool MSB written next, u8 LSB written, bool MSB read next, bool count latched, MSB of
 *         the latch next, u16 latch, bool status latched, u8 status, bool null count
 *
 * Time. The LAPIC timer (one-shot, periodic) and the PIT count on the set's nanosecond clock,
 * whose value means nothing in another process or after a host reboot. They are saved as the
 * time elapsed since their count began, as of the save, and restored as having begun that long
 * before the restoring clock's now: a timer with 3 ms left has 3 ms left, and the time between
 * save and restore does not exist for them (the VM did not run). A LAPIC expiry already due
 * fires at the first uirq_tick after restore; a periodic timer keeps its current period and at
 * most one due expiry (missed periods coalesce in IRR anyway). IA32_TSC_DEADLINE stays
 * absolute: the process engine's guest TSC is the host TSC, which runs on across save and
 * restore, and the guest computed the deadline from it; one passed meanwhile fires at the
 * first tick.
 */
#include "irqchip/lapic_priv.h"
#include "irqchip/userspace_priv.h"
#include "snapshot/stream.h"

#include <stdio.h>
#include <string.h>

#define TAG_SET    SNAP_TAG('U', 'I', 'R', 'Q')
#define TAG_LAPIC  SNAP_TAG('L', 'A', 'P', 'C')
#define TAG_IOAPIC SNAP_TAG('I', 'O', 'A', 'P')
#define TAG_PIC    SNAP_TAG('8', '2', '5', '9')
#define TAG_PIT    SNAP_TAG('8', '2', '5', '4')

#define GSI_MASK  ((1u << UIRQ_GSIS) - 1)
#define BASE_BITS (APIC_BASE_ADDR | APIC_BASE_EN | APIC_BASE_EXTD | APIC_BASE_BSP)
/* 122,000 years of PIT CLK: no count gets there, and below it tick sums cannot wrap. */
#define PIT_MAX_TICKS (1ULL << 62)

static uint64_t now_ns(const struct uirq *u)
{
	return u->clock.now_ns(u->clock.opaque);
}

/* LVT_TIMER_PERIODIC, LVT_TIMER_TSC, or a one-shot mode (0, or reserved 3 acting as 0). */
static uint32_t timer_mode(const struct lapic *l)
{
	return l->lvt[LVT_TIMER] & (3u << 17);
}

static uint64_t timer_period(const struct lapic *l)
{
	return (uint64_t)l->timer.initial << l->timer.shift;
}

/* The x2APIC logical ID, derived from the x2APIC ID (SDM 10.12.10.2). */
static uint32_t x2apic_ldr(uint32_t id)
{
	return ((id >> 4) << 16) | (1u << (id & 0xf));
}

/* ---- saving ----------------------------------------------------------------------------- */

/* How long ago the running count began (see the top). */
static uint64_t timer_elapsed(const struct lapic *l, uint64_t now)
{
	const struct lapic_timer *t = &l->timer;
	uint64_t p, e, k;

	if (!t->armed)
		return 0;
	p = timer_period(l);
	e = now - t->start_ns;
	if (timer_mode(l) != LVT_TIMER_PERIODIC)
		return e < p ? e : p; /* due: how long ago makes no difference */
	/* The next expiry ends period k since start_ns: count from the beginning of that one. */
	k = (t->fire_ns - t->start_ns) / p;
	if (k > 1)
		e -= (k - 1) * p < e ? (k - 1) * p : e;
	return e < 2 * p ? e : p + e % p;
}

static void put_u32s(struct snap_w *w, const uint32_t *v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		snap_u32(w, v[i]);
}

static void save_lapic(struct snap_w *w, const struct lapic *l, uint64_t now)
{
	size_t at = snap_begin(w, TAG_LAPIC);

	snap_u32(w, l->id);
	snap_u64(w, l->base);
	snap_u32(w, l->tpr);
	snap_u32(w, l->ldr);
	snap_u32(w, l->dfr);
	snap_u32(w, l->svr);
	snap_u32(w, l->esr);
	snap_u32(w, l->esr_pending);
	snap_u32(w, l->icr_lo);
	snap_u32(w, l->icr_hi);
	put_u32s(w, l->lvt, LVT_COUNT);
	snap_u32(w, l->tdcr);
	put_u32s(w, l->irr, 8);
	put_u32s(w, l->isr, 8);
	put_u32s(w, l->tmr, 8);
	snap_bool(w, l->timer.armed);
	snap_u32(w, l->timer.initial);
	snap_u64(w, timer_elapsed(l, now));
	snap_u64(w, l->timer.deadline);
	snap_bool(w, l->nmi_pending);
	snap_bool(w, l->init_pending);
	snap_bool(w, l->sipi_pending);
	snap_bool(w, l->wait_sipi);
	snap_u8(w, l->sipi_vector);
	snap_bool(w, l->extint_pending);
	snap_end(w, at);
}

static void save_ioapic(struct snap_w *w, const struct ioapic *io)
{
	size_t at = snap_begin(w, TAG_IOAPIC);

	snap_u32(w, io->id);
	snap_u8(w, io->regsel);
	for (unsigned i = 0; i < IOAPIC_PINS; i++)
		snap_u64(w, io->rte[i]);
	snap_end(w, at);
}

static void save_pic(struct snap_w *w, const struct pic *p)
{
	size_t at = snap_begin(w, TAG_PIC);

	for (unsigned i = 0; i < 2; i++) {
		const struct pic_chip *c = &p->chip[i];

		snap_u8(w, c->irr);
		snap_u8(w, c->isr);
		snap_u8(w, c->imr);
		snap_u8(w, c->elcr);
		snap_u8(w, c->base);
		snap_u8(w, c->lowest);
		snap_u8(w, c->icw);
		snap_bool(w, c->need_icw4);
		snap_bool(w, c->single);
		snap_bool(w, c->ltim);
		snap_bool(w, c->aeoi);
		snap_bool(w, c->rotate_aeoi);
		snap_bool(w, c->sfnm);
		snap_bool(w, c->special_mask);
		snap_bool(w, c->read_isr);
		snap_bool(w, c->poll);
	}
	snap_end(w, at);
}

static void save_pit(struct snap_w *w, const struct pit *p, uint64_t now)
{
	size_t at = snap_begin(w, TAG_PIT);

	snap_u8(w, p->port61);
	snap_bool(w, p->out0);
	for (unsigned i = 0; i < 3; i++) {
		const struct pit_channel *c = &p->ch[i];

		snap_u32(w, c->count);
		snap_u32(w, c->n);
		snap_u8(w, c->mode);
		snap_u8(w, c->ctrl);
		snap_u8(w, c->rw);
		snap_bool(w, c->loaded);
		snap_bool(w, c->triggered);
		snap_bool(w, c->gate);
		snap_bool(w, c->counting);
		snap_u64(w, c->base_ticks);
		/* `since` matters only while counting; a clock behind it counts nothing yet. */
		snap_u64(w, c->counting && now > c->since ? now - c->since : 0);
		snap_u64(w, c->edges);
		snap_bool(w, c->write_msb);
		snap_u8(w, c->write_lsb);
		snap_bool(w, c->read_msb);
		snap_bool(w, c->count_latched);
		snap_bool(w, c->latch_msb);
		snap_u16(w, c->latch);
		snap_bool(w, c->status_latched);
		snap_u8(w, c->status);
		snap_bool(w, c->null_count);
	}
	snap_end(w, at);
}

int uirq_save(struct uirq *u, struct snap_w *w)
{
	uint64_t now;
	size_t at;

	uirq_lock(u);
	now = now_ns(u);
	at = snap_begin(w, TAG_SET);
	snap_u32(w, u->ncpus);
	snap_u32(w, u->lowest_rr);
	snap_u32(w, u->ioapic.lines);
	for (unsigned k = 0; k < u->ncpus; k++)
		save_lapic(w, &u->lapic[k], now);
	save_ioapic(w, &u->ioapic);
	save_pic(w, &u->pic);
	save_pit(w, &u->pit, now);
	snap_end(w, at);
	uirq_unlock(u, -1);
	return w->failed ? -1 : 0;
}

/* ---- restoring -------------------------------------------------------------------------- */

/* A section being read. The first bad field is kept, named with `who` (the part being read:
 * "vCPU 3 ", "pin 5 "); reads and checks after it change nothing but are still safe. */
struct in {
	struct snap_r s;
	bool failed;
	char who[24];
	char field[64];
};

static void fail(struct in *in, const char *field)
{
	if (!in->failed) {
		in->failed = true;
		snprintf(in->field, sizeof(in->field), "%s%s", in->who, field);
	}
}

static void check(struct in *in, bool ok, const char *field)
{
	if (!ok)
		fail(in, field);
}

static uint8_t get8(struct in *in, const char *field)
{
	uint8_t v = 0;

	if (!snap_get_u8(&in->s, &v))
		fail(in, field);
	return v;
}

static uint16_t get16(struct in *in, const char *field)
{
	uint16_t v = 0;

	if (!snap_get_u16(&in->s, &v))
		fail(in, field);
	return v;
}

/* A field with no bits outside `bits`. */
static uint32_t get32(struct in *in, uint32_t bits, const char *field)
{
	uint32_t v = 0;

	if (!snap_get_u32(&in->s, &v) || (v & ~bits))
		fail(in, field);
	return v;
}

static uint64_t get64(struct in *in, uint64_t bits, const char *field)
{
	uint64_t v = 0;

	if (!snap_get_u64(&in->s, &v) || (v & ~bits))
		fail(in, field);
	return v;
}

static bool getb(struct in *in, const char *field)
{
	bool v = false;

	if (!snap_get_bool(&in->s, &v))
		fail(in, field);
	return v;
}

static int sub_open(struct in *parent, uint32_t tag, struct in *in, struct error *err)
{
	*in = (struct in){0};
	return snap_section(&parent->s, tag, &in->s, err);
}

static int sub_close(struct in *in, struct error *err)
{
	if (in->failed)
		return snap_bad(&in->s, err, in->field);
	return snap_section_done(&in->s, err);
}

static void get_vectors(struct in *in, uint32_t set[8], const char *field)
{
	for (unsigned i = 0; i < 8; i++)
		set[i] = get32(in, UINT32_MAX, field);
	check(in, !(set[0] & 0xffff), field); /* vectors 0..15 are never accepted */
}

static const char *const lvt_name[LVT_COUNT] = {
    "lvt timer", "lvt thermal", "lvt perfmon", "lvt lint0", "lvt lint1", "lvt error",
};

/* Into `l`, vCPU k's LAPIC as the set built it (env, index, ID kept). */
static void load_lapic(struct in *in, struct lapic *l, unsigned k, uint64_t now)
{
	struct lapic_timer *t = &l->timer;
	uint64_t e, p;
	bool x2;

	snprintf(in->who, sizeof(in->who), "vCPU %u ", k);
	check(in, get32(in, UINT32_MAX, "apic id") == l->id, "apic id");
	l->base = get64(in, BASE_BITS, "apic base");
	/* The BSP flag is vCPU 0's alone and read-only; x2APIC mode needs the APIC enabled. */
	check(in, !(l->base & APIC_BASE_BSP) == (k != 0), "apic base");
	check(in, !(l->base & APIC_BASE_EXTD) || (l->base & APIC_BASE_EN), "apic base");
	x2 = lapic_x2apic(l);
	l->tpr = get32(in, 0xff, "tpr");
	/* xAPIC writes keep LDR bits 24..31; in x2APIC mode it is derived from the ID. */
	l->ldr = get32(in, UINT32_MAX, "ldr");
	check(in, x2 ? l->ldr == x2apic_ldr(l->id) : !(l->ldr & 0x00ffffff), "ldr");
	l->dfr = get32(in, UINT32_MAX, "dfr");
	check(in, (l->dfr & 0x0fffffff) == 0x0fffffff, "dfr"); /* bits 0..27 read as ones */
	l->svr = get32(in, SVR_BITS, "svr");
	l->esr = get32(in, 0xff, "esr");
	l->esr_pending = get32(in, 0xff, "esr pending");
	l->icr_lo = get32(in, ICR_LO_BITS, "icr");
	l->icr_hi = get32(in, x2 ? UINT32_MAX : 0xff000000u, "icr"); /* xAPIC: destination only */
	for (unsigned i = 0; i < LVT_COUNT; i++)
		l->lvt[i] = get32(in, lapic_lvt_bits[i], lvt_name[i]);
	l->tdcr = get32(in, TDCR_BITS, "tdcr");
	get_vectors(in, l->irr, "irr");
	get_vectors(in, l->isr, "isr");
	get_vectors(in, l->tmr, "tmr");

	t->armed = getb(in, "timer armed");
	t->initial = get32(in, UINT32_MAX, "timer initial count");
	e = get64(in, UINT64_MAX, "timer elapsed time");
	t->deadline = get64(in, UINT64_MAX, "tsc deadline");
	t->shift = lapic_tdcr_shift(l->tdcr);
	p = timer_period(l);
	/* A count runs only in one-shot and periodic modes, and never from 0; a deadline only in
	 * TSC-deadline mode (a mode change disarms both). */
	check(in, !t->armed || (t->initial && timer_mode(l) != LVT_TIMER_TSC), "timer armed");
	check(in, !t->deadline || timer_mode(l) == LVT_TIMER_TSC, "tsc deadline");
	/* As saved: a due one-shot at its period, a periodic timer within one due expiry. */
	if (!t->armed)
		check(in, e == 0, "timer elapsed time");
	else
		check(in, e <= (timer_mode(l) == LVT_TIMER_PERIODIC ? 2 * p - 1 : p),
		      "timer elapsed time");
	t->start_ns = t->fire_ns = 0;
	if (t->armed) {
		/* Modular: a start before this clock's zero still counts right. */
		t->start_ns = now - e;
		t->fire_ns = e < p ? t->start_ns + p : now;
	}

	l->nmi_pending = getb(in, "nmi pending");
	l->init_pending = getb(in, "init pending");
	l->sipi_pending = getb(in, "sipi pending");
	l->wait_sipi = getb(in, "wait for sipi");
	l->sipi_vector = get8(in, "sipi vector");
	l->extint_pending = getb(in, "extint pending");
	/* The BSP never waits for a SIPI; an accepted SIPI ends the wait. */
	check(in, !l->wait_sipi || (k != 0 && !l->sipi_pending), "wait for sipi");
}

static void load_ioapic(struct in *in, struct ioapic *io)
{
	io->id = get32(in, 0xff, "id");
	io->regsel = get8(in, "ioregsel");
	for (unsigned i = 0; i < IOAPIC_PINS; i++) {
		uint64_t r;

		snprintf(in->who, sizeof(in->who), "pin %u ", i);
		r = get64(in, RTE_WRITABLE | RTE_REMOTE_IRR, "redirection entry");
		/* Remote IRR belongs to level-triggered entries (an edge write clears it). */
		check(in, !(r & RTE_REMOTE_IRR) || (r & RTE_LEVEL), "redirection entry");
		io->rte[i] = r;
	}
}

static void load_pic_chip(struct in *in, struct pic_chip *c)
{
	c->irr = get8(in, "irr");
	c->isr = get8(in, "isr");
	c->imr = get8(in, "imr");
	c->elcr = get8(in, "elcr");
	check(in, !(c->elcr & ~c->elcr_mask), "elcr");
	c->base = get8(in, "icw2");
	check(in, !(c->base & 7), "icw2");
	c->lowest = get8(in, "lowest priority");
	check(in, c->lowest <= 7, "lowest priority");
	c->icw = get8(in, "init step");
	c->need_icw4 = getb(in, "icw4 needed");
	c->single = getb(in, "single");
	c->ltim = getb(in, "ltim");
	c->aeoi = getb(in, "aeoi");
	c->rotate_aeoi = getb(in, "rotate in aeoi");
	c->sfnm = getb(in, "sfnm");
	c->special_mask = getb(in, "special mask");
	c->read_isr = getb(in, "read isr");
	c->poll = getb(in, "poll");
	/* After ICW1 comes ICW2; ICW3 only when cascaded; ICW4 only when ICW1 asked for one, and
	 * without one AEOI and SFNM are off. */
	check(in,
	      c->icw == 0 || c->icw == 2 || (c->icw == 3 && !c->single) ||
	          (c->icw == 4 && c->need_icw4),
	      "init step");
	check(in, c->need_icw4 || !(c->aeoi || c->sfnm), "icw4 needed");
}

static void load_pic(struct in *in, struct pic *p, uint32_t gsi)
{
	const uint8_t cascade = 1u << PIC_CASCADE_IR;

	for (unsigned i = 0; i < 2; i++) {
		snprintf(in->who, sizeof(in->who), "%s ", i ? "slave" : "master");
		load_pic_chip(in, &p->chip[i]);
	}
	p->chip[1].lines = (uint8_t)(gsi >> 8);
	p->chip[0].lines = (uint8_t)(gsi & ~cascade) | (pic_slave_int(p) ? cascade : 0);
	for (unsigned i = 0; i < 2; i++) {
		const struct pic_chip *c = &p->chip[i];

		snprintf(in->who, sizeof(in->who), "%s ", i ? "slave" : "master");
		/* A level-sensitive input requests exactly while high. */
		check(in, !((c->irr ^ c->lines) & (c->ltim ? 0xff : c->elcr)), "irr");
	}
	/* The cascade input is latched only while the slave's INT is up (an INTA may clear it
	 * earlier). */
	check(in, !(p->chip[0].irr & ~p->chip[0].lines & cascade), "irr");
}

static void load_pit(struct in *in, struct pit *p, uint64_t now)
{
	p->port61 = get8(in, "port 0x61");
	check(in, p->port61 <= 0xf, "port 0x61");
	p->out0 = getb(in, "out0");
	for (unsigned i = 0; i < 3; i++) {
		struct pit_channel *c = &p->ch[i];
		unsigned m;
		uint64_t ago, t;

		snprintf(in->who, sizeof(in->who), "channel %u ", i);
		c->count = get32(in, UINT32_MAX, "count");
		c->n = get32(in, UINT32_MAX, "counting element");
		c->mode = get8(in, "mode");
		c->ctrl = get8(in, "control word");
		c->rw = get8(in, "access mode");
		c->loaded = getb(in, "loaded");
		c->triggered = getb(in, "triggered");
		c->gate = getb(in, "gate");
		c->counting = getb(in, "counting");
		c->base_ticks = get64(in, UINT64_MAX, "ticks");
		ago = get64(in, UINT64_MAX, "count start");
		c->edges = get64(in, UINT64_MAX, "out edges");
		c->write_msb = getb(in, "write msb");
		c->write_lsb = get8(in, "write lsb");
		c->read_msb = getb(in, "read msb");
		c->count_latched = getb(in, "count latched");
		c->latch_msb = getb(in, "latch msb");
		c->latch = get16(in, "latch");
		c->status_latched = getb(in, "status latched");
		c->status = get8(in, "status");
		c->null_count = getb(in, "null count");

		check(in, c->count <= 65536, "count");
		check(in, c->n <= 65536, "counting element");
		/* The control word: RW bits 5..4, mode bits 3..1 (6 and 7 are 2 and 3), BCD. Before
		 * the first one, RW 0 and the power-on mode 2. */
		m = (c->ctrl >> 1) & 7;
		check(in, c->ctrl <= 0x3f, "control word");
		check(in, c->rw == ((c->ctrl >> 4) & 3), "access mode");
		check(in, c->mode == (c->rw ? (m > 5 ? m & 3 : m) : 2), "mode");
		/* Loaded counts are 1..65536: modes 2 and 3 divide by them. */
		check(in, !c->loaded || (c->count && c->n), "count");
		check(in, !c->triggered || (c->loaded && (c->mode == 1 || c->mode == 5)),
		      "triggered");
		check(in, !c->counting || c->loaded, "counting");
		/* Gates 0 and 1 are tied high; gate 2 is port 0x61 bit 0. */
		check(in, c->gate == (i < 2 || (p->port61 & 1)), "gate");
		check(in, !c->write_msb || c->rw == 3, "write msb");
		check(in, !c->read_msb || c->rw == 3, "read msb");
		check(in, c->counting || !ago, "count start");
		check(in, c->base_ticks <= PIT_MAX_TICKS, "ticks");
		/* OUT rising edges, signalled on IRQ 0 for channel 0 only: at most one in modes 0,
		 * 1, 4 and 5, one per period in 2 and 3, never more than the count has reached. */
		t = c->base_ticks + irqchip_ns_to_ticks(ago, PIT_HZ);
		if (i)
			check(in, !c->edges, "out edges");
		else if (c->loaded && c->n && (c->mode == 2 || c->mode == 3))
			check(in, c->edges <= t / c->n, "out edges");
		else
			check(in, c->edges <= 1, "out edges");
		/* Re-anchor (see the top). A count older than this clock starts at its zero, with
		 * the ticks before it folded in. */
		c->since = 0;
		if (c->counting && ago <= now)
			c->since = now - ago;
		else if (c->counting)
			c->base_ticks += irqchip_ns_to_ticks(ago - now, PIT_HZ);
	}
}

int uirq_restore(struct uirq *u, struct snap_r *r, struct error *err)
{
	/* Read into a copy, committed only once everything checked out. */
	struct lapic lapic[UIRQ_MAX_CPUS];
	struct ioapic ioapic;
	struct pic pic;
	struct pit pit;
	struct in set = {0}, in;
	uint32_t ncpus, rr, gsi;
	uint64_t now;
	int ret = -1;

	if (snap_section(r, TAG_SET, &set.s, err))
		return -1;
	ncpus = get32(&set, UINT32_MAX, "ncpus");
	rr = get32(&set, UINT32_MAX, "lowest-priority rotation");
	gsi = get32(&set, GSI_MASK, "gsi levels");
	if (set.failed)
		return snap_bad(&set.s, err, set.field);
	/* The caller built the set from the VM's configuration, with this many vCPUs. */
	if (ncpus != u->ncpus)
		return err_set(err, "snapshot: section UIRQ: %u vCPUs saved, but the VM has %u",
		               ncpus, u->ncpus);
	if (rr >= ncpus)
		return snap_bad(&set.s, err, "lowest-priority rotation");

	uirq_lock(u);
	now = now_ns(u);
	memcpy(lapic, u->lapic, sizeof(lapic));
	ioapic = u->ioapic;
	pic = u->pic;
	pit = u->pit;
	for (unsigned k = 0; k < ncpus; k++) {
		if (sub_open(&set, TAG_LAPIC, &in, err))
			goto out;
		load_lapic(&in, &lapic[k], k, now);
		if (sub_close(&in, err))
			goto out;
	}
	if (sub_open(&set, TAG_IOAPIC, &in, err))
		goto out;
	load_ioapic(&in, &ioapic);
	ioapic.lines = gsi;
	if (sub_close(&in, err) || sub_open(&set, TAG_PIC, &in, err))
		goto out;
	load_pic(&in, &pic, gsi);
	if (sub_close(&in, err) || sub_open(&set, TAG_PIT, &in, err))
		goto out;
	load_pit(&in, &pit, now);
	if (sub_close(&in, err) || snap_section_done(&set.s, err))
		goto out;

	memcpy(u->lapic, lapic, sizeof(lapic));
	u->ioapic = ioapic;
	u->pic = pic;
	u->pit = pit;
	u->lowest_rr = rr;
	u->pic_out = pic_output(&u->pic); /* not news: no kick on unlock */
	ret = 0;
out:
	uirq_unlock(u, -1);
	return ret;
}
