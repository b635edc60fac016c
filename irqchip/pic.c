/* 8259A pair: initialization words, operation control words, priority resolution, INTA. */
#include "irqchip/pic.h"

#include <string.h>

#define MASTER 0
#define SLAVE  1

static bool level_input(const struct pic_chip *c, uint8_t bit)
{
	return c->ltim || (c->elcr & bit);
}

/* Priority rank of input `irq`: 0 is the highest, the one after `lowest`. */
static unsigned rank(const struct pic_chip *c, unsigned irq)
{
	return (irq - c->lowest - 1) & 7;
}

/* The highest-priority input among `bits`, or -1. */
static int best(const struct pic_chip *c, uint8_t bits)
{
	for (unsigned i = 0; i < 8; i++) {
		unsigned irq = (c->lowest + 1 + i) & 7;

		if (bits & (1u << irq))
			return (int)irq;
	}
	return -1;
}

/* The request the chip would raise INT for, or -1: the best unmasked request, unless an
 * input of equal or higher priority is in service. Special mask mode ignores in-service
 * inputs that are masked; special fully nested mode lets the slave interrupt its own
 * in-service cascade input. */
static int chip_request(const struct pic_chip *c, bool master)
{
	int irq = best(c, c->irr & ~c->imr), in;
	uint8_t isr = c->special_mask ? c->isr & ~c->imr : c->isr;

	if (irq < 0)
		return -1;
	in = best(c, isr);
	if (in < 0 || rank(c, (unsigned)irq) < rank(c, (unsigned)in))
		return irq;
	if (master && c->sfnm && !c->single && irq == PIC_CASCADE_IR && in == PIC_CASCADE_IR)
		return irq;
	return -1;
}

bool pic_slave_int(const struct pic *p)
{
	return chip_request(&p->chip[SLAVE], false) >= 0;
}

/* The slave's INT is a level on the master's IR2. */
static void cascade(struct pic *p)
{
	struct pic_chip *m = &p->chip[MASTER];
	uint8_t bit = 1u << PIC_CASCADE_IR;

	if (pic_slave_int(p)) {
		m->lines |= bit;
		m->irr |= bit;
	} else {
		m->lines &= ~bit;
		m->irr &= ~bit;
	}
}

static void chip_reset(struct pic_chip *c, uint8_t elcr_mask)
{
	memset(c, 0, sizeof(*c));
	c->lowest = 7;
	c->elcr_mask = elcr_mask;
}

void pic_init(struct pic *p)
{
	/* IRQ 0, 1, 2, 8 and 13 are always edge-triggered (PIIX ELCR). */
	chip_reset(&p->chip[MASTER], 0xf8);
	chip_reset(&p->chip[SLAVE], 0xde);
	/* The power-on state is undefined until ICW1; with no firmware to program the PIC,
	 * every input starts masked so that no ISA line reaches the CPU as vector 0..15. */
	p->chip[MASTER].imr = 0xff;
	p->chip[SLAVE].imr = 0xff;
}

void pic_set_irq(struct pic *p, unsigned irq, bool level)
{
	struct pic_chip *c;
	uint8_t bit;
	bool was;

	if (irq >= 16 || irq == PIC_CASCADE_IR)
		return;
	c = &p->chip[irq >> 3];
	bit = 1u << (irq & 7);
	was = c->lines & bit;
	if (level)
		c->lines |= bit;
	else
		c->lines &= ~bit;
	if (level_input(c, bit)) {
		if (level)
			c->irr |= bit;
		else
			c->irr &= ~bit;
	} else if (level && !was) {
		c->irr |= bit; /* latched on the rising edge until INTA */
	}
	if (irq >= 8)
		cascade(p);
}

bool pic_output(const struct pic *p)
{
	return chip_request(&p->chip[MASTER], true) >= 0;
}

/* INTA on one chip: the request goes into service (or, with AEOI, straight through). */
static void chip_ack(struct pic_chip *c, unsigned irq)
{
	uint8_t bit = 1u << irq;

	if (!level_input(c, bit))
		c->irr &= ~bit;
	if (c->aeoi) {
		if (c->rotate_aeoi)
			c->lowest = irq;
	} else {
		c->isr |= bit;
	}
}

static bool cascaded(const struct pic *p, int irq)
{
	return irq == PIC_CASCADE_IR && !p->chip[MASTER].single;
}

int pic_peek(const struct pic *p)
{
	int irq = chip_request(&p->chip[MASTER], true), sirq;

	if (irq < 0)
		return -1;
	if (!cascaded(p, irq))
		return p->chip[MASTER].base | irq;
	sirq = chip_request(&p->chip[SLAVE], false);
	return p->chip[SLAVE].base | (sirq < 0 ? 7 : sirq);
}

uint8_t pic_inta(struct pic *p)
{
	struct pic_chip *m = &p->chip[MASTER], *s = &p->chip[SLAVE];
	int irq = chip_request(m, true), sirq;
	uint8_t vec;

	if (irq < 0)
		return m->base | 7; /* spurious IRQ 7: nothing set in service */
	chip_ack(m, (unsigned)irq);
	if (!cascaded(p, irq))
		return m->base | (uint8_t)irq;
	sirq = chip_request(s, false);
	if (sirq < 0) {
		vec = s->base | 7; /* spurious IRQ 15; the master's IR2 stays in service */
	} else {
		chip_ack(s, (unsigned)sirq);
		vec = s->base | (uint8_t)sirq;
	}
	cascade(p);
	return vec;
}

/* Poll command (OCW3 P=1): the next read of the command port is an INTA for this chip
 * alone, returning 0x80 | level, or 0 with nothing to serve. */
static uint8_t poll(struct pic *p, unsigned chip)
{
	struct pic_chip *c = &p->chip[chip];
	int irq = chip_request(c, chip == MASTER);

	c->poll = false;
	if (irq < 0)
		return 0;
	chip_ack(c, (unsigned)irq);
	return 0x80 | (uint8_t)irq;
}

static void icw1(struct pic_chip *c, uint8_t val)
{
	c->icw = 2;
	c->need_icw4 = val & 0x01;
	c->single = val & 0x02;
	c->ltim = val & 0x08;
	/* Datasheet: IMR cleared, IR7 lowest priority, special mask off, read IRR. The edge
	 * sense latches reset, so edge requests are dropped; the in-service state of a chip
	 * being re-initialized is dropped too. */
	c->imr = 0;
	c->isr = 0;
	c->lowest = 7;
	c->special_mask = false;
	c->read_isr = false;
	c->poll = false;
	c->rotate_aeoi = false;
	if (!c->need_icw4)
		c->aeoi = c->sfnm = false;
	c->irr = c->lines & (c->ltim ? 0xff : c->elcr);
}

static void ocw2(struct pic_chip *c, uint8_t val)
{
	unsigned l = val & 7;
	int irq;

	switch (val >> 5) {
	case 0: /* rotate in AEOI mode: clear */
		c->rotate_aeoi = false;
		break;
	case 4: /* rotate in AEOI mode: set */
		c->rotate_aeoi = true;
		break;
	case 1: /* non-specific EOI */
	case 5: /* rotate on non-specific EOI */
		irq = best(c, c->isr);
		if (irq < 0)
			break;
		c->isr &= ~(1u << irq);
		if (val >> 5 == 5)
			c->lowest = (uint8_t)irq;
		break;
	case 3: /* specific EOI */
		c->isr &= ~(1u << l);
		break;
	case 7: /* rotate on specific EOI */
		c->isr &= ~(1u << l);
		c->lowest = (uint8_t)l;
		break;
	case 6: /* set priority: IR l becomes the lowest */
		c->lowest = (uint8_t)l;
		break;
	default: /* 2: no operation */
		break;
	}
}

static void ocw3(struct pic_chip *c, uint8_t val)
{
	if (val & 0x04)
		c->poll = true;
	if (val & 0x02)
		c->read_isr = val & 0x01;
	if (val & 0x40)
		c->special_mask = val & 0x20;
}

static void write_data(struct pic_chip *c, uint8_t val)
{
	switch (c->icw) {
	case 2:
		c->base = val & 0xf8;
		c->icw = !c->single ? 3 : c->need_icw4 ? 4 : 0;
		break;
	case 3: /* the cascade wiring is fixed (slave on IR2): ICW3 changes nothing */
		c->icw = c->need_icw4 ? 4 : 0;
		break;
	case 4: /* uPM (8080 mode) is not modelled: vectors are always 8086-style */
		c->aeoi = val & 0x02;
		c->sfnm = val & 0x10;
		c->icw = 0;
		break;
	default: /* OCW1 */
		c->imr = val;
		break;
	}
}

uint8_t pic_read(struct pic *p, unsigned chip, unsigned port)
{
	struct pic_chip *c;
	uint8_t v;

	if (chip > SLAVE)
		return 0xff;
	c = &p->chip[chip];
	if (port & 1)
		return c->imr;
	if (c->poll) {
		v = poll(p, chip);
		if (chip == SLAVE)
			cascade(p);
		return v;
	}
	return c->read_isr ? c->isr : c->irr;
}

void pic_write(struct pic *p, unsigned chip, unsigned port, uint8_t val)
{
	struct pic_chip *c;

	if (chip > SLAVE)
		return;
	c = &p->chip[chip];
	if (port & 1)
		write_data(c, val);
	else if (val & 0x10)
		icw1(c, val);
	else if (val & 0x08)
		ocw3(c, val);
	else
		ocw2(c, val);
	cascade(p);
}

uint8_t pic_elcr_read(const struct pic *p, unsigned chip)
{
	return chip > SLAVE ? 0xff : p->chip[chip].elcr;
}

void pic_elcr_write(struct pic *p, unsigned chip, uint8_t val)
{
	struct pic_chip *c;

	if (chip > SLAVE)
		return;
	c = &p->chip[chip];
	c->elcr = val & c->elcr_mask;
	/* A level-sensitive input's request is its line. */
	c->irr = (c->irr & ~c->elcr) | (c->lines & c->elcr);
	cascade(p);
}
