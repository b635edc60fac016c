/* The userspace chip set: creation, wiring between the chips, locking, the device side. */
#include "irqchip/userspace_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void uirq_lock(struct uirq *u)
{
	pthread_mutex_lock(&u->lock);
}

void uirq_unlock(struct uirq *u, int caller)
{
	bool out = pic_output(&u->pic);
	uint32_t wake;

	/* The PIC's INT rising is news to whoever takes ExtINT. */
	if (out && !u->pic_out)
		for (unsigned k = 0; k < u->ncpus; k++)
			if (uirq_takes_extint(u, k))
				u->wake |= 1u << k;
	u->pic_out = out;
	wake = u->wake;
	u->wake = 0;
	if (caller >= 0)
		wake &= ~(1u << caller);
	pthread_mutex_unlock(&u->lock);
	for (unsigned k = 0; wake && u->kick && k < u->ncpus; k++)
		if (wake & (1u << k))
			u->kick(u->kick_opaque, k);
}

bool uirq_takes_extint(const struct uirq *u, unsigned cpu)
{
	return pic_output(&u->pic) && lapic_takes_extint(&u->lapic[cpu], cpu == 0);
}

static void accept(struct uirq *u, unsigned k, const struct irq_msg *m, bool *taken)
{
	unsigned r = lapic_accept(&u->lapic[k], m);

	if (r & LAPIC_ACCEPTED)
		*taken = true;
	if (r & LAPIC_WAKE)
		u->wake |= 1u << k;
}

/* Lowest priority: one software-enabled target with the lowest PPR; ties rotate. */
static int lowest_priority(struct uirq *u, uint32_t targets)
{
	int best = -1;
	uint32_t best_ppr = 0;

	for (unsigned i = 0; i < u->ncpus; i++) {
		unsigned k = (u->lowest_rr + i) % u->ncpus;
		uint32_t ppr;

		if (!(targets & (1u << k)) || !lapic_sw_enabled(&u->lapic[k]))
			continue;
		ppr = lapic_ppr(&u->lapic[k]) & 0xf0;
		if (best < 0 || ppr < best_ppr) {
			best = (int)k;
			best_ppr = ppr;
		}
	}
	if (best >= 0)
		u->lowest_rr = ((unsigned)best + 1) % u->ncpus;
	return best;
}

bool uirq_route(struct uirq *u, int from, const struct irq_msg *m)
{
	uint32_t all = u->ncpus == 32 ? 0xffffffffu : (1u << u->ncpus) - 1, targets = 0;
	bool taken = false;
	int k;

	switch (m->shorthand) {
	case APIC_SH_SELF:
		/* Only fixed self-IPIs are valid (SDM table 10-3). */
		if (from < 0 || m->mode != APIC_DM_FIXED)
			return false;
		targets = 1u << from;
		break;
	case APIC_SH_ALL:
		targets = all;
		break;
	case APIC_SH_OTHERS:
		targets = from < 0 ? all : all & ~(1u << from);
		break;
	default:
		for (unsigned i = 0; i < u->ncpus; i++)
			if (lapic_match(&u->lapic[i], m))
				targets |= 1u << i;
		break;
	}
	if (m->mode == APIC_DM_LOWEST) {
		k = lowest_priority(u, targets);
		targets = k < 0 ? 0 : 1u << k;
	}
	for (unsigned i = 0; i < u->ncpus; i++)
		if (targets & (1u << i))
			accept(u, i, m, &taken);
	return taken;
}

static void lapic_send(void *opaque, struct lapic *from, const struct irq_msg *m)
{
	uirq_route(opaque, (int)from->index, m);
}

static void lapic_eoi_broadcast(void *opaque, uint8_t vector)
{
	struct uirq *u = opaque;

	ioapic_eoi(&u->ioapic, vector);
}

static bool ioapic_deliver(void *opaque, const struct irq_msg *m)
{
	return uirq_route(opaque, -1, m);
}

/* Under the lock: one GSI to the PIC and the IOAPIC. */
static void set_gsi(struct uirq *u, uint32_t gsi, bool level)
{
	if (gsi < 16)
		pic_set_irq(&u->pic, gsi, level);
	ioapic_set_pin(&u->ioapic, gsi, level);
}

static void pit_irq0(void *opaque, bool level)
{
	set_gsi(opaque, 0, level);
}

static struct uirq *of(struct irqchip *chip)
{
	return (struct uirq *)chip;
}

static int op_set_irq(struct irqchip *chip, uint32_t gsi, int level)
{
	struct uirq *u = of(chip);

	if (gsi >= UIRQ_GSIS)
		return -EINVAL;
	uirq_lock(u);
	set_gsi(u, gsi, level != 0);
	uirq_unlock(u, -1);
	return 0;
}

/* No thread of ours watches eventfds: the caller polls them and pulses. */
static int op_attach_irqfd(struct irqchip *chip, int fd, uint32_t gsi)
{
	(void)chip;
	(void)fd;
	(void)gsi;
	return -ENOTSUP;
}

static void op_destroy(struct irqchip *chip)
{
	struct uirq *u = of(chip);

	pthread_mutex_destroy(&u->lock);
	free(u);
}

static const struct irqchip_ops uirq_ops = {
    .set_irq = op_set_irq,
    .attach_irqfd = op_attach_irqfd,
    .destroy = op_destroy,
};

struct uirq *uirq_create(const struct uirq_config *cfg)
{
	struct uirq *u;

	if (!cfg || cfg->ncpus == 0 || cfg->ncpus > UIRQ_MAX_CPUS || !cfg->clock.now_ns ||
	    !cfg->clock.now_tsc || cfg->clock.tsc_hz == 0) {
		errno = EINVAL;
		return NULL;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->chip.ops = &uirq_ops;
	u->chip.name = "userspace";
	pthread_mutex_init(&u->lock, NULL);
	u->clock = cfg->clock;
	u->ncpus = cfg->ncpus;
	u->kick = cfg->kick;
	u->kick_opaque = cfg->kick_opaque;
	u->lapic_env = (struct lapic_env){
	    .clock = &u->clock,
	    .send = lapic_send,
	    .eoi_broadcast = lapic_eoi_broadcast,
	    .opaque = u,
	};
	for (unsigned k = 0; k < u->ncpus; k++)
		lapic_init(&u->lapic[k], &u->lapic_env, k, k, k == 0);
	ioapic_init(&u->ioapic, u->ncpus, ioapic_deliver, u);
	pic_init(&u->pic);
	pit_init(&u->pit, &u->clock, pit_irq0, u);
	return u;
}

struct irqchip *uirq_irqchip(struct uirq *u)
{
	return &u->chip;
}

static bool our_port(uint16_t port)
{
	switch (port) {
	case 0x20:
	case 0x21:
	case 0xa0:
	case 0xa1:
	case 0x40:
	case 0x41:
	case 0x42:
	case 0x43:
	case PIT_PORT_61:
	case 0x4d0:
	case 0x4d1:
		return true;
	}
	return false;
}

/* One byte of port I/O at one of our ports. */
static void pio_byte(struct uirq *u, uint16_t port, uint8_t *b, bool write)
{
	if (port == 0x4d0 || port == 0x4d1) {
		if (write)
			pic_elcr_write(&u->pic, port & 1, *b);
		else
			*b = pic_elcr_read(&u->pic, port & 1);
	} else if (port == PIT_PORT_61) {
		if (write)
			pit_port61_write(&u->pit, *b);
		else
			*b = pit_port61_read(&u->pit);
	} else if ((port & 0xfc) == PIT_PORT) {
		if (write)
			pit_write(&u->pit, port & 3, *b);
		else
			*b = pit_read(&u->pit, port & 3);
	} else { /* 0x20, 0x21, 0xa0, 0xa1 */
		if (write)
			pic_write(&u->pic, port >> 7, port & 1, *b);
		else
			*b = pic_read(&u->pic, port >> 7, port & 1);
	}
}

static int pio(struct uirq *u, uint16_t port, uint8_t *data, unsigned size, bool write)
{
	if (size == 0 || size > 4)
		return -EINVAL;
	/* All or nothing: a wide access must fall on our ports only. */
	for (unsigned i = 0; i < size; i++)
		if (!our_port((uint16_t)(port + i)))
			return -ENOENT;
	uirq_lock(u);
	for (unsigned i = 0; i < size; i++)
		pio_byte(u, (uint16_t)(port + i), &data[i], write);
	uirq_unlock(u, -1);
	return 0;
}

int uirq_pio_read(struct uirq *u, uint16_t port, void *data, unsigned size)
{
	if (size >= 1 && size <= 4)
		memset(data, 0xff, size);
	return pio(u, port, data, size, false);
}

int uirq_pio_write(struct uirq *u, uint16_t port, const void *data, unsigned size)
{
	uint8_t buf[4];

	if (size == 0 || size > 4)
		return -EINVAL;
	memcpy(buf, data, size);
	return pio(u, port, buf, size, true);
}

/* A sub-dword access must stay inside one 32-bit register. */
static bool dword_access(uint64_t offset, unsigned size, uint64_t limit)
{
	return size >= 1 && size <= 4 && offset < limit && (offset & 3) + size <= 4;
}

int uirq_ioapic_read(struct uirq *u, uint64_t offset, void *data, unsigned size)
{
	uint32_t v;

	if (size >= 1 && size <= 4)
		memset(data, 0, size);
	if (!dword_access(offset, size, IOAPIC_MMIO_SIZE))
		return -EINVAL;
	uirq_lock(u);
	v = ioapic_mmio_read(&u->ioapic, (uint32_t)offset & ~3u);
	uirq_unlock(u, -1);
	v >>= 8 * (offset & 3);
	memcpy(data, &v, size);
	return 0;
}

int uirq_ioapic_write(struct uirq *u, uint64_t offset, const void *data, unsigned size)
{
	uint32_t v = 0;

	if (!dword_access(offset, size, IOAPIC_MMIO_SIZE))
		return -EINVAL;
	memcpy(&v, data, size);
	/* IOREGSEL may be written byte-wide; the window and EOI take whole dwords. */
	if (size != 4 && offset != IOAPIC_REGSEL)
		return -EINVAL;
	uirq_lock(u);
	ioapic_mmio_write(&u->ioapic, (uint32_t)offset, v);
	uirq_unlock(u, -1);
	return 0;
}
