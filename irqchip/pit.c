/* 8254 counters as functions of elapsed CLK ticks (8254 datasheet, "Mode definitions"). */
#include "irqchip/pit.h"

#include <string.h>

#define NO_EDGE UINT64_MAX
/* Port 0x61 bit 4 toggles with each DRAM refresh request, every 15.085 us. */
#define REFRESH_NS 15085u

static uint64_t now_ns(const struct pit *p)
{
	return p->clock->now_ns(p->clock->opaque);
}

static uint64_t elapsed(const struct pit_channel *c, uint64_t now)
{
	if (!c->counting || now < c->since)
		return c->base_ticks;
	return c->base_ticks + irqchip_ns_to_ticks(now - c->since, PIT_HZ);
}

/* OUT at `t` ticks after the count was loaded (or triggered). */
static bool out_at(const struct pit_channel *c, uint64_t t)
{
	uint64_t n = c->n;

	if (!c->loaded)
		return c->mode != 0; /* after a control word: low in mode 0, high otherwise */
	switch (c->mode) {
	case 0:
		return t >= n;
	case 1:
		return !c->triggered || t >= n;
	case 2: /* low for the one tick at count 1 */
		return !c->gate || n < 2 || t % n != n - 1;
	case 3: /* high for the first ceil(n/2) ticks of each period */
		return !c->gate || t % n < (n + 1) / 2;
	case 4: /* low for the one tick at count 0 */
		return t != n;
	default: /* 5 */
		return !c->triggered || t != n;
	}
}

/* Rising edges of OUT between the load and tick `t`. */
static uint64_t edges_at(const struct pit_channel *c, uint64_t t)
{
	uint64_t n = c->n;

	if (!c->loaded)
		return 0;
	switch (c->mode) {
	case 0:
		return t >= n;
	case 1:
		return c->triggered && t >= n;
	case 2:
	case 3:
		return t / n;
	case 4:
		return t >= n + 1;
	default:
		return c->triggered && t >= n + 1;
	}
}

/* The tick at which edge number `c->edges + 1` happens, or NO_EDGE. */
static uint64_t next_edge_tick(const struct pit_channel *c)
{
	uint64_t n = c->n;

	if (!c->loaded || !c->counting)
		return NO_EDGE;
	switch (c->mode) {
	case 0:
		return c->edges ? NO_EDGE : n;
	case 1:
		return c->edges || !c->triggered ? NO_EDGE : n;
	case 2:
	case 3:
		return (c->edges + 1) * n;
	case 4:
		return c->edges ? NO_EDGE : n + 1;
	default:
		return c->edges || !c->triggered ? NO_EDGE : n + 1;
	}
}

/* The counting element at tick `t`. */
static uint16_t count_at(const struct pit_channel *c, uint64_t t)
{
	uint64_t n = c->n, phase, half;

	if (!c->loaded)
		return 0;
	switch (c->mode) {
	case 2:
		return (uint16_t)(n - t % n);
	case 3: /* decrements by two; reloads at each half period */
		phase = t % n;
		half = (n + 1) / 2;
		if (phase >= half)
			phase -= half;
		return (uint16_t)((n & ~1ULL) - 2 * phase);
	case 1:
	case 5:
		if (!c->triggered)
			return (uint16_t)n;
		/* fall through */
	default: /* 0, 4: counts down through 0 and wraps */
		return (uint16_t)(n - t);
	}
}

static void restart(struct pit_channel *c, uint64_t now)
{
	c->base_ticks = 0;
	c->since = now;
	c->edges = 0;
	c->counting = true;
}

static void pause_count(struct pit_channel *c, uint64_t now)
{
	c->base_ticks = elapsed(c, now);
	c->counting = false;
}

static void resume_count(struct pit_channel *c, uint64_t now)
{
	if (c->counting)
		return;
	c->since = now;
	c->counting = true;
}

static void drive_irq0(struct pit *p, bool level)
{
	if (p->out0 == level)
		return;
	p->out0 = level;
	p->irq0(p->opaque, level);
}

static void update_at(struct pit *p, uint64_t now)
{
	struct pit_channel *c = &p->ch[0];
	uint64_t t = elapsed(c, now), e = edges_at(c, t);

	if (e > c->edges) {
		/* Edges since the last update coalesce into one: IRR latches one per line. */
		c->edges = e;
		drive_irq0(p, false);
		drive_irq0(p, true);
	}
	drive_irq0(p, out_at(c, t));
}

void pit_update(struct pit *p)
{
	update_at(p, now_ns(p));
}

uint64_t pit_next_deadline(const struct pit *p)
{
	const struct pit_channel *c = &p->ch[0];
	uint64_t tick = next_edge_tick(c), d;

	if (tick == NO_EDGE)
		return UINT64_MAX;
	if (tick <= c->base_ticks)
		return c->since;
	d = irqchip_ticks_to_ns(tick - c->base_ticks, PIT_HZ);
	return d > UINT64_MAX - c->since ? UINT64_MAX : c->since + d;
}

/* OUT of an unprogrammed counter is undefined: it starts high, as in every mode but 0, so
 * that the first control word of a periodic mode is not a rising edge on IRQ 0. */
static void channel_init(struct pit_channel *c, bool gate)
{
	memset(c, 0, sizeof(*c));
	c->mode = 2;
	c->gate = gate;
}

void pit_init(struct pit *p, const struct irqchip_clock *clock,
              void (*irq0)(void *opaque, bool level), void *opaque)
{
	memset(p, 0, sizeof(*p));
	p->clock = clock;
	p->irq0 = irq0;
	p->opaque = opaque;
	/* Channels 0 and 1 have their gates tied high; channel 2's is port 0x61 bit 0. */
	channel_init(&p->ch[0], true);
	channel_init(&p->ch[1], true);
	channel_init(&p->ch[2], false);
	drive_irq0(p, out_at(&p->ch[0], 0));
}

static void latch_count(struct pit_channel *c, uint64_t now)
{
	if (c->count_latched)
		return; /* a second latch before the first is read is ignored */
	c->latch = count_at(c, elapsed(c, now));
	c->count_latched = true;
	c->latch_msb = false;
}

static void latch_status(struct pit_channel *c, uint64_t now)
{
	if (c->status_latched)
		return;
	c->status = (uint8_t)((out_at(c, elapsed(c, now)) ? 0x80 : 0) | (c->null_count ? 0x40 : 0) |
	                      c->ctrl);
	c->status_latched = true;
}

/* Read-back: 11 /COUNT /STATUS CNT2 CNT1 CNT0 0. */
static void read_back(struct pit *p, uint8_t val, uint64_t now)
{
	for (unsigned i = 0; i < 3; i++) {
		if (!(val & (2u << i)))
			continue;
		if (!(val & 0x20))
			latch_count(&p->ch[i], now);
		if (!(val & 0x10))
			latch_status(&p->ch[i], now);
	}
}

static void control_word(struct pit *p, uint8_t val, uint64_t now)
{
	unsigned sel = val >> 6, rw = (val >> 4) & 3, mode = (val >> 1) & 7;
	struct pit_channel *c;

	if (sel == 3) {
		read_back(p, val, now);
		return;
	}
	c = &p->ch[sel];
	if (rw == 0) {
		latch_count(c, now);
		return;
	}
	c->mode = mode > 5 ? mode & 3 : mode; /* 6 and 7 are modes 2 and 3 */
	c->ctrl = val & 0x3f;
	c->rw = rw;
	c->loaded = c->triggered = c->counting = false;
	c->null_count = true;
	c->write_msb = c->read_msb = false;
	c->count_latched = c->status_latched = false;
	c->base_ticks = 0;
	c->edges = 0;
}

static void load_count(struct pit_channel *c, uint32_t v, uint64_t now)
{
	c->count = v ? v : 65536;
	c->null_count = false;
	c->loaded = true;
	if (c->mode == 1 || c->mode == 5) {
		/* Loaded into the counting element by the next gate trigger. */
		if (!c->triggered)
			c->n = c->count;
		return;
	}
	/* Modes 2 and 3 would finish the current period first; restarting is close enough
	 * for guests, which write a control word before a new rate anyway. */
	c->n = c->count;
	restart(c, now);
	if (!c->gate)
		pause_count(c, now);
}

static void write_count(struct pit_channel *c, uint8_t val, uint64_t now)
{
	switch (c->rw) {
	case 2:
		load_count(c, (uint32_t)val << 8, now);
		break;
	case 3:
		if (!c->write_msb) {
			c->write_lsb = val;
			c->write_msb = true;
			/* Mode 0: the first byte stops the count and drops OUT. */
			if (c->mode == 0)
				c->loaded = c->counting = false;
			break;
		}
		c->write_msb = false;
		load_count(c, c->write_lsb | (uint32_t)val << 8, now);
		break;
	default: /* 1, or no control word yet */
		load_count(c, val, now);
		break;
	}
}

static uint8_t read_count(struct pit_channel *c, uint64_t now)
{
	uint16_t v;

	if (c->status_latched) {
		c->status_latched = false;
		return c->status;
	}
	if (c->count_latched) {
		v = c->latch;
		if (c->rw == 3 && !c->latch_msb) {
			c->latch_msb = true;
			return v & 0xff;
		}
		c->count_latched = false;
		return c->rw == 2 || c->rw == 3 ? v >> 8 : v & 0xff;
	}
	v = count_at(c, elapsed(c, now));
	if (c->rw == 2)
		return v >> 8;
	if (c->rw == 3) {
		c->read_msb = !c->read_msb;
		return c->read_msb ? v & 0xff : v >> 8;
	}
	return v & 0xff;
}

uint8_t pit_read(struct pit *p, unsigned port)
{
	uint64_t now = now_ns(p);
	uint8_t v;

	if (port > 2)
		return 0xff; /* the control word register cannot be read */
	update_at(p, now);
	v = read_count(&p->ch[port], now);
	return v;
}

void pit_write(struct pit *p, unsigned port, uint8_t val)
{
	uint64_t now = now_ns(p);

	if (port > 3)
		return;
	update_at(p, now); /* edges under the old programming first */
	if (port == 3)
		control_word(p, val, now);
	else
		write_count(&p->ch[port], val, now);
	update_at(p, now);
}

static void set_gate(struct pit_channel *c, bool gate, uint64_t now)
{
	bool rising = gate && !c->gate;

	if (gate == c->gate)
		return;
	c->gate = gate;
	if (!c->loaded)
		return;
	switch (c->mode) {
	case 0:
	case 4: /* the gate enables counting */
		if (gate)
			resume_count(c, now);
		else
			pause_count(c, now);
		break;
	case 1:
	case 5: /* a rising edge (re)triggers */
		if (rising) {
			c->n = c->count;
			c->triggered = true;
			restart(c, now);
		}
		break;
	default: /* 2, 3: low stops the count (OUT high), a rising edge reloads */
		if (rising)
			restart(c, now);
		else
			pause_count(c, now);
		break;
	}
}

uint8_t pit_port61_read(struct pit *p)
{
	uint64_t now = now_ns(p);
	const struct pit_channel *c2 = &p->ch[2];
	uint8_t v = p->port61 & 0x0f;

	if ((now / REFRESH_NS) & 1)
		v |= 0x10;
	if (out_at(c2, elapsed(c2, now)))
		v |= 0x20;
	return v;
}

void pit_port61_write(struct pit *p, uint8_t val)
{
	p->port61 = val & 0x0f;
	set_gate(&p->ch[2], val & 1, now_ns(p));
}
