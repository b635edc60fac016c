/*
 * libFuzzer target: a state file's bytes into uirq_restore of a fresh userspace chip set,
 * then the run loop. The first byte picks the input's form:
 *   - bit 7 clear: the rest is the state itself, for a set of 1 + (bits 0..1) vCPUs;
 *   - bit 7 set: the saved state of a busy 2-vCPU set (every chip in use), changed by the
 *     rest: a count k (0..15) of 3-byte patches (16-bit offset, byte; the offset just past
 *     the end cuts the state at the byte's position instead), so the search starts past the
 *     section headers.
 * What the restore leaves unread drives the run loop: clock steps with uirq_tick, acks, port
 * and MMIO accesses, MSRs, GSI levels. Checked on every input:
 *   - a refused state fails with a "snapshot: " message and leaves the set as it was;
 *   - an accepted one saves a state that restores again to the same bytes;
 *   - right after uirq_tick no timer is due any more (the next deadline is in the future):
 *     a restored timer neither spins the run loop nor is lost.
 * The sanitizers catch the rest.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irqchip/ioapic.h"
#include "irqchip/lapic.h"
#include "irqchip/userspace.h"
#include "snapshot/stream.h"
#include "vmm/error.h"

#define NS0    1000000000000ULL /* the restoring clock: 1000 s */
#define TSC0   3000000000000ULL
#define TSC_HZ 3000000000ULL

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_uirq_restore: %s\n", what);
		abort();
	}
}

struct set {
	struct irqchip_manual_clock mc;
	struct uirq *u;
	unsigned ncpus;
};

static void set_init(struct set *s, unsigned ncpus)
{
	struct uirq_config cfg = {.ncpus = ncpus};

	s->mc.ns = NS0;
	s->mc.tsc = TSC0;
	s->ncpus = ncpus;
	irqchip_manual_clock(&cfg.clock, &s->mc, TSC_HZ);
	s->u = uirq_create(&cfg);
	check(s->u != NULL, "uirq_create");
}

static void set_free(struct set *s)
{
	irqchip_destroy(uirq_irqchip(s->u));
}

static void save(struct set *s, struct snap_w *w)
{
	snap_w_init(w);
	check(uirq_save(s->u, w) == 0, "uirq_save");
}

static void outb(struct uirq *u, uint16_t port, uint8_t v)
{
	uirq_pio_write(u, port, &v, 1);
}

static void lapic_wr(struct uirq *u, unsigned cpu, uint32_t off, uint32_t v)
{
	uirq_lapic_write(u, cpu, off, &v, 4);
}

static void io_wr(struct uirq *u, uint8_t reg, uint32_t val)
{
	uint32_t v = reg;

	uirq_ioapic_write(u, IOAPIC_REGSEL, &v, 4);
	uirq_ioapic_write(u, IOAPIC_WINDOW, &val, 4);
}

/* The saved state of a set with something in every chip (as test_irqchip_snapshot's busy). */
static void busy_state(uint8_t **p, size_t *n)
{
	struct irqchip *chip;
	struct snap_w w;
	struct set s;

	set_init(&s, 2);
	chip = uirq_irqchip(s.u);
	lapic_wr(s.u, 0, APIC_SVR, 0x1ff);
	lapic_wr(s.u, 0, APIC_ICR_HI, 1u << 24);
	lapic_wr(s.u, 0, APIC_ICR_LO, (APIC_DM_INIT << 8) | ICR_ASSERT);
	lapic_wr(s.u, 0, APIC_ICR_LO, (APIC_DM_SIPI << 8) | 0x9a);
	uirq_wrmsr(s.u, 1, MSR_IA32_APIC_BASE, LAPIC_DEFAULT_BASE | APIC_BASE_EN | APIC_BASE_EXTD);
	uirq_wrmsr(s.u, 1, 0x80f, 0x1ff);
	uirq_wrmsr(s.u, 1, 0x832, LVT_TIMER_TSC | 0xe1);
	uirq_wrmsr(s.u, 1, MSR_IA32_TSC_DEADLINE, TSC0 + 30000000);
	lapic_wr(s.u, 0, APIC_TPR, 0x20);
	lapic_wr(s.u, 0, APIC_ICR_LO, (APIC_SH_SELF << 18) | 0x40);
	uirq_ack(s.u, 0);
	lapic_wr(s.u, 0, APIC_ICR_LO, (APIC_SH_SELF << 18) | 0x50);
	uirq_lint1(s.u, 0);
	lapic_wr(s.u, 0, APIC_TDCR, 0xb);
	lapic_wr(s.u, 0, APIC_LVT_TMR, LVT_TIMER_PERIODIC | 0xe0);
	lapic_wr(s.u, 0, APIC_TMICT, 2000000);
	io_wr(s.u, IOAPIC_REG_RTE0 + 10, (uint32_t)RTE_LEVEL | 0x60);
	io_wr(s.u, IOAPIC_REG_RTE0, 0x30);
	irqchip_set_irq(chip, 5, 1);
	outb(s.u, 0x20, 0x11);
	outb(s.u, 0x21, 0x20);
	outb(s.u, 0x21, 0x04);
	outb(s.u, 0x21, 0x01);
	outb(s.u, 0x21, 0xf8);
	irqchip_pulse(chip, 1);
	outb(s.u, 0x4d1, 0x04);
	outb(s.u, 0xa0, 0x11);
	outb(s.u, 0xa1, 0x28);
	irqchip_set_irq(chip, 10, 1);
	outb(s.u, 0x43, 0x34);
	outb(s.u, 0x40, 0xa9);
	outb(s.u, 0x40, 0x04);
	outb(s.u, 0x43, 0x76);
	outb(s.u, 0x41, 0x34);
	outb(s.u, 0x41, 0x12);
	outb(s.u, 0x61, 0x01);
	outb(s.u, 0x43, 0xb0);
	outb(s.u, 0x42, 0x10);
	s.mc.ns += 3000000;
	s.mc.tsc += 9000000;
	uirq_tick(s.u, -1);
	outb(s.u, 0x43, 0x40);
	outb(s.u, 0x43, 0xe2);
	s.mc.ns += 2500000;
	save(&s, &w);
	*p = w.buf;
	*n = w.len;
	set_free(&s);
}

static const uint16_t ports[] = {0x20, 0x21, 0xa0, 0xa1,  0x40, 0x41,
                                 0x42, 0x43, 0x61, 0x4d0, 0x4d1};

/* A tick, then nothing may be due: no timer left behind to spin on. */
static void tick(struct set *s, uint64_t ns)
{
	s->mc.ns += ns;
	s->mc.tsc += ns * (TSC_HZ / 1000000000ULL);
	uirq_tick(s->u, -1);
	check(uirq_next_deadline(s->u, -1) > s->mc.ns, "a timer is still due after uirq_tick");
}

/* Two bytes an operation, at most 64 of them. */
static void run(struct set *s, const uint8_t *d, size_t n)
{
	struct uirq *u = s->u;
	unsigned steps = 0;

	for (unsigned k = 0; k < s->ncpus; k++) { /* what an engine does first */
		uirq_take_startup(u, k, NULL);
		uirq_take_nmi(u, k);
		uirq_ack(u, k);
	}
	tick(s, 0);
	for (size_t i = 0; i + 1 < n && steps < 64; i += 2, steps++) {
		uint8_t op = d[i], a = d[i + 1];
		unsigned cpu = a % s->ncpus;
		uint32_t v = (uint32_t)a * 0x01010101u;
		uint64_t q;
		uint8_t b;

		switch (op % 12) {
		case 0:
			tick(s, (uint64_t)a * 50000);
			break;
		case 1:
			uirq_ack(u, cpu);
			lapic_wr(u, cpu, APIC_EOI, 0);
			break;
		case 2:
			uirq_pending(u, cpu);
			uirq_wakeup_pending(u, cpu);
			uirq_take_nmi(u, cpu);
			uirq_take_startup(u, cpu, &b);
			uirq_next_deadline(u, (int)cpu);
			break;
		case 3:
			outb(u, ports[(op >> 4) % (sizeof(ports) / sizeof(ports[0]))], a);
			break;
		case 4:
			uirq_pio_read(u, ports[a % (sizeof(ports) / sizeof(ports[0]))], &b, 1);
			break;
		case 5:
			uirq_ioapic_write(u,
			                  (op >> 4) % 3 == 0   ? 0
			                  : (op >> 4) % 3 == 1 ? 0x10
			                                       : 0x40,
			                  &v, 4);
			break;
		case 6:
			uirq_ioapic_read(u, (op & 0x10) ? 0x10 : 0, &v, 4);
			break;
		case 7:
			lapic_wr(u, op & 1, (uint32_t)(a & 0x3f) << 4, v ^ ((uint32_t)op << 8));
			break;
		case 8:
			uirq_lapic_read(u, op & 1, (uint32_t)(a & 0x3f) << 4, &v, 4);
			break;
		case 9:
			uirq_wrmsr(u, op & 1,
			           (op & 0x10) ? 0x800 + (a & 0x3f) : MSR_IA32_TSC_DEADLINE,
			           (op & 0x20) ? v : s->mc.tsc + (uint64_t)a * 100000);
			break;
		case 10:
			uirq_rdmsr(u, op & 1, 0x800 + (a & 0x3f), &q);
			break;
		default:
			irqchip_set_irq(uirq_irqchip(u), a % UIRQ_GSIS, op & 0x10);
			break;
		}
	}
	tick(s, 10000000);
}

/* Patch mode: the busy state changed by `d` (see the top), in an exactly sized buffer so
 * that a read past its end is caught; *ops: what follows the patches. */
static uint8_t *patched(const uint8_t *d, size_t n, size_t *len, const uint8_t **ops, size_t *nops)
{
	static uint8_t *busy;
	static size_t busy_n;
	unsigned k = n ? d[0] & 15 : 0;
	size_t cut, i = 1;
	uint8_t *p;

	if (!busy)
		busy_state(&busy, &busy_n);
	cut = busy_n;
	p = malloc(busy_n);
	check(p != NULL, "malloc");
	memcpy(p, busy, busy_n);
	for (; k && i + 3 <= n; i += 3, k--) {
		size_t off = (size_t)(d[i] | d[i + 1] << 8) % (busy_n + 1);

		if (off == busy_n)
			cut = (size_t)d[i + 2] * busy_n / 256;
		else
			p[off] = d[i + 2];
	}
	*ops = d + (i < n ? i : n);
	*nops = i < n ? n - i : 0;
	*len = cut;
	p = realloc(p, cut ? cut : 1);
	check(p != NULL, "realloc");
	return p;
}

static bool same(const struct snap_w *a, const struct snap_w *b)
{
	return a->len == b->len && !memcmp(a->buf, b->buf, a->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_w before, after, again;
	struct error err = {{0}};
	const uint8_t *ops = NULL;
	uint8_t *owned = NULL;
	const uint8_t *state;
	struct snap_r r;
	struct set s, t;
	size_t n, nops = 0;
	bool patch;

	if (size < 1)
		return 0;
	patch = data[0] & 0x80;
	state = data + 1;
	n = size - 1;
	if (patch)
		state = owned = patched(data + 1, size - 1, &n, &ops, &nops);
	set_init(&s, patch ? 2 : 1 + (data[0] & 3));
	save(&s, &before);
	snap_r_init(&r, state, n);
	if (uirq_restore(s.u, &r, &err) != 0) {
		check(!strncmp(err.msg, "snapshot: ", 10), "a refusal without a snapshot message");
		save(&s, &after);
		check(same(&before, &after), "a refused restore changed the set");
	} else {
		if (!patch) {
			ops = state + r.off;
			nops = snap_left(&r);
		}
		/* What it accepted restores again, to itself. */
		save(&s, &after);
		set_init(&t, s.ncpus);
		snap_r_init(&r, after.buf, after.len);
		if (uirq_restore(t.u, &r, &err) != 0) {
			fprintf(stderr, "%s\n", err.msg);
			check(false, "a restored state does not restore again");
		}
		check(snap_left(&r) == 0, "restore left bytes of its own save");
		save(&t, &again);
		check(same(&after, &again), "a restored state saves different bytes");
		snap_w_free(&again);
		set_free(&t);
		run(&s, ops, nops);
	}
	snap_w_free(&after);
	snap_w_free(&before);
	set_free(&s);
	free(owned);
	return 0;
}
