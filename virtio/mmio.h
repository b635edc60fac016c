/*
 * virtio-mmio transport, virtio 1.x (MMIO version 2 register layout).
 *
 * Threads: register accesses arrive on vCPU threads (MMIO exits); queue notifications are
 * processed on the VMM thread (an ioeventfd per queue, or the QueueNotify register which
 * signals the same eventfd). `lock` serializes both. Interrupts leave through `irq_fd`, an
 * eventfd that the backend binds to the device's GSI (an irqfd), or that the VMM polls. The
 * transport never calls the backend.
 */
#ifndef HEARTH_VIRTIO_MMIO_H
#define HEARTH_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "queue.h"
#include "vmm/bus.h"
#include "vmm/guest_memory.h"

#define VIRTIO_MAX_QUEUES  4
#define VIRTIO_MMIO_VENDOR 0x48525448 /* "HRTH" */

struct virtio_mmio;

struct virtio_dev_ops {
	/* Process queue `q` (VMM thread, lock held). */
	void (*queue_notify)(struct virtio_mmio *t, unsigned q);
	/* Device config space (lock held); offset + size <= config_size is checked. */
	void (*config_read)(struct virtio_mmio *t, uint32_t offset, uint8_t *data, uint32_t size);
	void (*config_write)(struct virtio_mmio *t, uint32_t offset, const uint8_t *data,
	                     uint32_t size);
	/* The driver reset the device (lock held). */
	void (*reset)(struct virtio_mmio *t);
	/* The driver set DRIVER_OK (lock held). */
	void (*activate)(struct virtio_mmio *t);
};

struct virtio_mmio {
	pthread_mutex_t lock;
	const char *name;
	uint32_t device_id;
	uint64_t device_features; /* VIRTIO_F_VERSION_1 is added by the transport */
	uint32_t config_size;
	unsigned nqueues;
	uint16_t queue_max;
	const struct virtio_dev_ops *ops;
	void *dev;
	const struct guest_memory *gm;

	uint64_t base; /* guest-physical address of the 4 KiB slot */
	uint32_t gsi;
	int irq_fd;                       /* eventfd -> the device's GSI */
	int notify_fd[VIRTIO_MAX_QUEUES]; /* eventfd <- QueueNotify (an ioeventfd, or the trap) */

	/* Registers. */
	uint32_t status;
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint64_t driver_features;
	uint32_t interrupt_status;
	uint32_t config_generation;
	struct virtq vq[VIRTIO_MAX_QUEUES];

	/* Counters. */
	uint64_t notifications, interrupts, bad_chains;
};

/* Set up a transport; fds are created here (eventfds), bound to KVM by vmm/. */
int virtio_mmio_init(struct virtio_mmio *t, const char *name, uint32_t device_id, uint64_t features,
                     uint32_t config_size, unsigned nqueues, uint16_t queue_max,
                     const struct virtio_dev_ops *ops, void *dev, const struct guest_memory *gm,
                     uint64_t base, uint32_t gsi);

/* The VMM thread saw notify_fd[q] become readable. */
void virtio_mmio_handle_notify(struct virtio_mmio *t, unsigned q);

/* For devices (lock held): chains were put on queue q's used ring; interrupt unless the
 * driver suppressed it. */
void virtio_mmio_signal_used(struct virtio_mmio *t, unsigned q);
/* For devices (lock held): the config space changed (bumps the generation, interrupts). */
void virtio_mmio_config_changed(struct virtio_mmio *t);
/* For devices (lock held): something is malformed; set DEVICE_NEEDS_RESET and tell the driver. */
void virtio_mmio_needs_reset(struct virtio_mmio *t);
/* Whether the driver finished setup and the device may process queues. */
bool virtio_mmio_running(const struct virtio_mmio *t);

/* Pop with the transport's policy: a bad chain is returned to the driver with length 0 and
 * counted; a bad ring sets DEVICE_NEEDS_RESET. Returns true with a valid chain. */
bool virtio_mmio_pop(struct virtio_mmio *t, unsigned q, struct virtq_chain *c);

/*
 * Snapshots (snapshot/stream.h): the registers and every queue (virtq_save), as section VMIO;
 * the device's own state follows in its own section. Restore takes the section as hostile
 * input: the same device type, queue count and offered features as this transport (built
 * from the same configuration); a status the transport could reach (DRIVER_OK only with
 * FEATURES_OK, which needs VERSION_1 and features the device offers); interrupt bits the
 * transport sets; queues as virtq_restore checks them. Nothing changes on a bad field (-1,
 * err set). Afterwards, with the device running, each ready queue's notify eventfd and, with
 * interrupt bits pending, the interrupt eventfd are signalled once: a notification or
 * interrupt still in its eventfd at save time is not lost (a spurious one is harmless).
 */
int virtio_mmio_save(const struct virtio_mmio *t, struct snap_w *w);
int virtio_mmio_restore(struct virtio_mmio *t, struct snap_r *r, struct error *err);

extern const struct bus_ops virtio_mmio_bus_ops;

#endif
