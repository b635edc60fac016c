/*
 * The interface an interrupt-controller implementation offers to devices: drive a GSI, or bind
 * an eventfd to one. Implementations: the userspace chip set (irqchip/userspace.h) and KVM's
 * in-kernel chips. Devices hold a `struct irqchip *` and never see which one it is.
 */
#ifndef HEARTH_IRQCHIP_H
#define HEARTH_IRQCHIP_H

#include <stdint.h>

struct irqchip;

struct irqchip_ops {
	/* Drive line `gsi` to `level` (nonzero: high). 0, or -EINVAL for a GSI the chip lacks.
	 * Safe from any thread. */
	int (*set_irq)(struct irqchip *chip, uint32_t gsi, int level);
	/* Pulse `gsi` each time the eventfd `fd` is signalled, with no help from the caller.
	 * -ENOTSUP: the caller polls `fd` itself and calls irqchip_pulse. */
	int (*attach_irqfd)(struct irqchip *chip, int fd, uint32_t gsi);
	/* Free the chip and everything it owns. */
	void (*destroy)(struct irqchip *chip);
};

struct irqchip {
	const struct irqchip_ops *ops;
	const char *name;
};

int irqchip_set_irq(struct irqchip *chip, uint32_t gsi, int level);
/* An edge for an edge-triggered device (serial, i8042, virtio-mmio): high, then low. */
int irqchip_pulse(struct irqchip *chip, uint32_t gsi);
int irqchip_attach_irqfd(struct irqchip *chip, int fd, uint32_t gsi);
/* NULL is allowed. */
void irqchip_destroy(struct irqchip *chip);

#endif
