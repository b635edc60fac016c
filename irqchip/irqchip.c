/* Device-facing wrappers of struct irqchip_ops. */
#include "irqchip/irqchip.h"

#include <errno.h>
#include <stddef.h>

int irqchip_set_irq(struct irqchip *chip, uint32_t gsi, int level)
{
	return chip->ops->set_irq(chip, gsi, level);
}

int irqchip_pulse(struct irqchip *chip, uint32_t gsi)
{
	int r = chip->ops->set_irq(chip, gsi, 1);

	if (r < 0)
		return r;
	return chip->ops->set_irq(chip, gsi, 0);
}

int irqchip_attach_irqfd(struct irqchip *chip, int fd, uint32_t gsi)
{
	if (!chip->ops->attach_irqfd)
		return -ENOTSUP;
	return chip->ops->attach_irqfd(chip, fd, gsi);
}

void irqchip_destroy(struct irqchip *chip)
{
	if (chip)
		chip->ops->destroy(chip);
}
