/* The userspace chip set's state, shared by userspace.c, userspace_cpu.c and snapshot.c only. */
#ifndef HEARTH_IRQCHIP_USERSPACE_PRIV_H
#define HEARTH_IRQCHIP_USERSPACE_PRIV_H

#include <pthread.h>

#include "irqchip/ioapic.h"
#include "irqchip/lapic.h"
#include "irqchip/pic.h"
#include "irqchip/pit.h"
#include "irqchip/userspace.h"

struct uirq {
	struct irqchip chip;  /* device side; first, so the ops can cast back */
	pthread_mutex_t lock; /* one lock for every chip below (see userspace.h) */
	struct irqchip_clock clock;
	unsigned ncpus;
	void (*kick)(void *opaque, unsigned cpu);
	void *kick_opaque;

	struct lapic_env lapic_env;
	struct lapic lapic[UIRQ_MAX_CPUS];
	struct ioapic ioapic;
	struct pic pic;
	struct pit pit;

	/* Under the lock: */
	uint32_t wake;      /* vCPUs to kick once the lock is released */
	bool pic_out;       /* the PIC's INT as of the last release */
	unsigned lowest_rr; /* where lowest-priority arbitration ties start */
};

void uirq_lock(struct uirq *u);
/* Release the lock, then kick the vCPUs that got something, except `caller` (-1: none). */
void uirq_unlock(struct uirq *u, int caller);
/* Send a message to the LAPICs it addresses; `from` is the sender for shorthands (-1: IOAPIC).
 * True when some LAPIC logged it. */
bool uirq_route(struct uirq *u, int from, const struct irq_msg *m);
/* Does vCPU `cpu` take the PIC's INTR now? */
bool uirq_takes_extint(const struct uirq *u, unsigned cpu);

#endif
