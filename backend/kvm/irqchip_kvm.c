/* KVM's in-kernel interrupt controllers (PIC, IOAPIC, a LAPIC per vCPU) and PIT, behind the
 * irqchip interface (irqchip/irqchip.h): lines through KVM_IRQ_LINE, eventfds through
 * KVM_IRQFD, so an interrupting device never needs hearth's threads. */
#include "kvm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

struct kvm_chip {
	struct irqchip chip;
	int vm_fd;
};

static int kvm_set_irq(struct irqchip *chip, uint32_t gsi, int level)
{
	struct kvm_chip *k = (struct kvm_chip *)chip;
	struct kvm_irq_level l = {.irq = gsi, .level = level ? 1 : 0};

	return ioctl(k->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

static int kvm_attach_irqfd(struct irqchip *chip, int fd, uint32_t gsi)
{
	struct kvm_chip *k = (struct kvm_chip *)chip;
	struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi};

	return ioctl(k->vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
}

static void kvm_irqchip_destroy(struct irqchip *chip)
{
	free(chip);
}

static const struct irqchip_ops kvm_irqchip_ops = {
    .set_irq = kvm_set_irq,
    .attach_irqfd = kvm_attach_irqfd,
    .destroy = kvm_irqchip_destroy,
};

struct irqchip *kvm_irqchip_create(int vm_fd, struct error *err)
{
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	struct kvm_chip *k;

	if (ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		err_set(err, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return NULL;
	}
	if (ioctl(vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		err_set(err, "KVM_CREATE_PIT2: %s", strerror(errno));
		return NULL;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		err_set(err, "out of memory");
		return NULL;
	}
	k->chip = (struct irqchip){.ops = &kvm_irqchip_ops, .name = "kvm"};
	k->vm_fd = vm_fd;
	return &k->chip;
}
