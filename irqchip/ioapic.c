/* I/O APIC: redirection, edge/level semantics, Remote IRR and EOI (82093AA datasheet). */
#include "irqchip/ioapic.h"

#include <string.h>

void ioapic_init(struct ioapic *io, uint32_t id, bool (*deliver)(void *, const struct irq_msg *),
                 void *opaque)
{
	memset(io, 0, sizeof(*io));
	io->id = id & 0xff;
	io->deliver = deliver;
	io->opaque = opaque;
	for (unsigned i = 0; i < IOAPIC_PINS; i++)
		io->rte[i] = RTE_MASKED;
}

static bool asserted(const struct ioapic *io, unsigned pin)
{
	bool high = (io->lines >> pin) & 1;

	return (io->rte[pin] & RTE_ACTIVE_LOW) ? !high : high;
}

static unsigned mode_of(uint64_t rte)
{
	return (rte >> 8) & 7;
}

/* Level semantics (Remote IRR) apply to fixed and lowest-priority entries; NMI, INIT and
 * ExtINT are edge-only messages. */
static bool is_level(uint64_t rte)
{
	unsigned m = mode_of(rte);

	return (rte & RTE_LEVEL) && (m == APIC_DM_FIXED || m == APIC_DM_LOWEST);
}

static bool send(struct ioapic *io, unsigned pin)
{
	uint64_t r = io->rte[pin];
	struct irq_msg m = {
	    .dest = (uint32_t)(r >> RTE_DEST_SHIFT) & 0xff,
	    .vector = r & 0xff,
	    .mode = mode_of(r),
	    .shorthand = APIC_SH_NONE,
	    .logical = r & RTE_LOGICAL,
	    .level = is_level(r),
	    .x2apic = false,
	};

	return io->deliver(io->opaque, &m);
}

/* A level entry delivers while asserted, unmasked and not awaiting an EOI. */
static void level_check(struct ioapic *io, unsigned pin)
{
	uint64_t r = io->rte[pin];

	if (!is_level(r) || (r & (RTE_MASKED | RTE_REMOTE_IRR)) || !asserted(io, pin))
		return;
	if (send(io, pin))
		io->rte[pin] |= RTE_REMOTE_IRR;
}

void ioapic_set_pin(struct ioapic *io, unsigned pin, bool level)
{
	bool was;

	if (pin >= IOAPIC_PINS)
		return;
	was = asserted(io, pin);
	if (level)
		io->lines |= 1u << pin;
	else
		io->lines &= ~(1u << pin);
	if (is_level(io->rte[pin]))
		level_check(io, pin);
	else if (!was && asserted(io, pin) && !(io->rte[pin] & RTE_MASKED))
		send(io, pin); /* a rising edge; a masked one is lost */
}

void ioapic_eoi(struct ioapic *io, uint8_t vector)
{
	for (unsigned pin = 0; pin < IOAPIC_PINS; pin++) {
		uint64_t r = io->rte[pin];

		if (!(r & RTE_REMOTE_IRR) || (r & 0xff) != vector)
			continue;
		io->rte[pin] &= ~RTE_REMOTE_IRR;
		level_check(io, pin); /* still asserted: deliver again */
	}
}

static void write_rte(struct ioapic *io, unsigned pin, bool high, uint32_t val)
{
	uint64_t r = io->rte[pin];
	uint64_t v = high ? (uint64_t)val << 32 : val;
	uint64_t part = high ? 0xffffffff00000000ULL : 0xffffffffULL;
	uint64_t keep = ~(RTE_WRITABLE & part);

	r = (r & keep) | (v & RTE_WRITABLE & part);
	if (!(r & RTE_LEVEL))
		r &= ~RTE_REMOTE_IRR; /* Remote IRR means nothing for an edge entry */
	io->rte[pin] = r;
	/* A level line held while masked is delivered once unmasked. Masked edges are gone. */
	level_check(io, pin);
}

static uint32_t read_reg(const struct ioapic *io, uint8_t reg)
{
	unsigned pin;

	switch (reg) {
	case IOAPIC_REG_ID:
	case IOAPIC_REG_ARB:
		return io->id << 24;
	case IOAPIC_REG_VER:
		return IOAPIC_VERSION;
	}
	if (reg < IOAPIC_REG_RTE0)
		return 0;
	pin = (unsigned)(reg - IOAPIC_REG_RTE0) / 2;
	if (pin >= IOAPIC_PINS)
		return 0;
	/* Delivery is instantaneous: delivery status always reads idle. */
	if (reg & 1)
		return (uint32_t)(io->rte[pin] >> 32);
	return (uint32_t)io->rte[pin] & ~(uint32_t)RTE_DELIVS;
}

static void write_reg(struct ioapic *io, uint8_t reg, uint32_t val)
{
	unsigned pin;

	if (reg == IOAPIC_REG_ID) {
		io->id = val >> 24;
		return;
	}
	if (reg < IOAPIC_REG_RTE0)
		return; /* version and arbitration are read-only */
	pin = (unsigned)(reg - IOAPIC_REG_RTE0) / 2;
	if (pin < IOAPIC_PINS)
		write_rte(io, pin, reg & 1, val);
}

uint32_t ioapic_mmio_read(struct ioapic *io, uint32_t offset)
{
	switch (offset) {
	case IOAPIC_REGSEL:
		return io->regsel;
	case IOAPIC_WINDOW:
		return read_reg(io, io->regsel);
	}
	return 0; /* the EOI register is write-only */
}

void ioapic_mmio_write(struct ioapic *io, uint32_t offset, uint32_t val)
{
	switch (offset) {
	case IOAPIC_REGSEL:
		io->regsel = val & 0xff;
		break;
	case IOAPIC_WINDOW:
		write_reg(io, io->regsel, val);
		break;
	case IOAPIC_EOI:
		ioapic_eoi(io, val & 0xff);
		break;
	}
}
