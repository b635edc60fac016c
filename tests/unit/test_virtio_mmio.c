/*
 * The virtio-mmio transport (virtio/mmio.c) as the guest sees it: 4-byte register accesses
 * through virtio_mmio_bus_ops, on a transport made by virtio_mmio_init (real eventfds) for a
 * tiny fake device that counts its callbacks. Guest memory is a calloc'd buffer split into
 * low RAM and high RAM (at 4 GiB), so that 64-bit queue addresses can be used for real.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <unistd.h>

#include "virtio/mmio.h"
#include "vmm/guest_memory.h"
#include "vmm/layout.h"

#define LOW_SIZE    (512u << 10)
#define HIGH_SIZE   (512u << 10)
#define HIGH_GPA    LAYOUT_HIGH_RAM_START
#define DEVICE_ID   42
#define CONFIG_SIZE 8
#define NQUEUES     2
#define QMAX        64
#define QSIZE       16
#define DESC_GPA    0x1000
#define AVAIL_GPA   0x2000
#define USED_GPA    0x3000
#define BUF_GPA     0x10000
#define MMIO_BASE   0xd0000000ULL
#define GSI         5
/* Offered by the fake device: bits 0, 5, 31 and 35 (the transport adds VERSION_1 = 32). */
#define DEV_FEATURES ((1ULL << 0) | (1ULL << 5) | (1ULL << 31) | (1ULL << 35))
#define VERSION_1    (1ULL << VIRTIO_F_VERSION_1)

#define S_ACK  VIRTIO_CONFIG_S_ACKNOWLEDGE
#define S_DRV  VIRTIO_CONFIG_S_DRIVER
#define S_FOK  VIRTIO_CONFIG_S_FEATURES_OK
#define S_DOK  VIRTIO_CONFIG_S_DRIVER_OK
#define S_FAIL VIRTIO_CONFIG_S_FAILED
#define S_NR   VIRTIO_CONFIG_S_NEEDS_RESET

struct fake {
	unsigned notified[VIRTIO_MAX_QUEUES];
	unsigned notify_calls, resets, activates, config_reads, config_writes;
	uint32_t last_off, last_size;
	uint8_t config[CONFIG_SIZE];
};

struct fixture {
	uint8_t *mem;
	struct guest_memory gm;
	struct virtio_mmio t;
	struct fake dev;
	struct virtq_chain c;
	uint16_t avail_idx;
	bool inited;
};

/* ---- the fake device ---- */

static void fake_queue_notify(struct virtio_mmio *t, unsigned q)
{
	struct fake *d = t->dev;

	assert_true(q < VIRTIO_MAX_QUEUES);
	d->notified[q]++;
	d->notify_calls++;
}

static void fake_config_read(struct virtio_mmio *t, uint32_t offset, uint8_t *data, uint32_t size)
{
	struct fake *d = t->dev;

	assert_true((uint64_t)offset + size <= CONFIG_SIZE); /* the transport's promise */
	d->config_reads++;
	d->last_off = offset;
	d->last_size = size;
	memcpy(data, d->config + offset, size);
}

static void fake_config_write(struct virtio_mmio *t, uint32_t offset, const uint8_t *data,
                              uint32_t size)
{
	struct fake *d = t->dev;

	assert_true((uint64_t)offset + size <= CONFIG_SIZE);
	d->config_writes++;
	d->last_off = offset;
	d->last_size = size;
	memcpy(d->config + offset, data, size);
}

static void fake_reset(struct virtio_mmio *t)
{
	struct fake *d = t->dev;

	d->resets++;
}

static void fake_activate(struct virtio_mmio *t)
{
	struct fake *d = t->dev;

	d->activates++;
}

static const struct virtio_dev_ops fake_ops = {
    .queue_notify = fake_queue_notify,
    .config_read = fake_config_read,
    .config_write = fake_config_write,
    .reset = fake_reset,
    .activate = fake_activate,
};

/* ---- fixture ---- */

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->mem = calloc(1, LOW_SIZE + HIGH_SIZE);
	assert_non_null(f->mem);
	f->gm.host = f->mem;
	f->gm.size = LOW_SIZE + HIGH_SIZE;
	f->gm.low_size = LOW_SIZE;
	f->gm.high_size = HIGH_SIZE;
	for (unsigned i = 0; i < CONFIG_SIZE; i++)
		f->dev.config[i] = (uint8_t)(i + 1);
	assert_int_equal(virtio_mmio_init(&f->t, "fake", DEVICE_ID, DEV_FEATURES, CONFIG_SIZE,
	                                  NQUEUES, QMAX, &fake_ops, &f->dev, &f->gm, MMIO_BASE,
	                                  GSI),
	                 0);
	f->inited = true;
	*state = f;
	return 0;
}

static void close_transport(struct virtio_mmio *t)
{
	if (t->irq_fd >= 0)
		close(t->irq_fd);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		if (t->notify_fd[q] >= 0)
			close(t->notify_fd[q]);
	pthread_mutex_destroy(&t->lock);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->inited)
		close_transport(&f->t);
	free(f->mem);
	free(f);
	return 0;
}

/* ---- the guest's side ---- */

static uint32_t rd(struct fixture *f, uint64_t off)
{
	uint32_t v = 0xdeadbeef;

	virtio_mmio_bus_ops.read(&f->t, off, (uint8_t *)&v, 4);
	return v;
}

static void wr(struct fixture *f, uint64_t off, uint32_t v)
{
	virtio_mmio_bus_ops.write(&f->t, off, (const uint8_t *)&v, 4);
}

/* The eventfd's counter (and clear it); 0 when nothing was signalled. */
static uint64_t drain(int fd)
{
	uint64_t n = 0;

	assert_true(fd >= 0);
	if (read(fd, &n, sizeof(n)) != sizeof(n)) {
		assert_int_equal(errno, EAGAIN);
		return 0;
	}
	return n;
}

static uint64_t device_features(struct fixture *f)
{
	uint64_t v;

	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	v = rd(f, VIRTIO_MMIO_DEVICE_FEATURES);
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	return v | (uint64_t)rd(f, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
}

static void write_driver_features(struct fixture *f, uint64_t v)
{
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)v);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(v >> 32));
}

/* From ACKNOWLEDGE | DRIVER: write the features, try FEATURES_OK, return the status. */
static uint32_t try_features(struct fixture *f, uint64_t features)
{
	write_driver_features(f, features);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK);
	return rd(f, VIRTIO_MMIO_STATUS);
}

/* From a reset device: ACKNOWLEDGE, DRIVER, then try_features. */
static uint32_t negotiate(struct fixture *f, uint64_t features)
{
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
	return try_features(f, features);
}

static void set_queue_regs(struct fixture *f, uint32_t q, uint32_t num, uint64_t desc,
                           uint64_t avail, uint64_t used)
{
	wr(f, VIRTIO_MMIO_QUEUE_SEL, q);
	wr(f, VIRTIO_MMIO_QUEUE_NUM, num);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	wr(f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
	wr(f, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
	wr(f, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
}

/* Queue 0 in low RAM, made ready; returns QueueReady read back. */
static uint32_t setup_queue0(struct fixture *f)
{
	set_queue_regs(f, 0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	return rd(f, VIRTIO_MMIO_QUEUE_READY);
}

/* The whole driver handshake with queue 0 live. */
static void go_live(struct fixture *f)
{
	assert_int_equal(negotiate(f, VERSION_1 | (1ULL << 5)), S_ACK | S_DRV | S_FOK);
	assert_int_equal(setup_queue0(f), 1);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
	assert_true(virtio_mmio_running(&f->t));
	assert_int_equal(f->dev.activates, 1);
}

static void put_desc(struct fixture *f, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
	struct vring_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};

	assert_int_equal(gm_write(&f->gm, DESC_GPA + 16ULL * i, &d, sizeof(d)), 0);
}

static void set_avail_idx(struct fixture *f, uint16_t idx)
{
	f->avail_idx = idx;
	assert_int_equal(gm_write(&f->gm, AVAIL_GPA + 2, &idx, 2), 0);
}

static void submit(struct fixture *f, uint16_t head)
{
	assert_int_equal(gm_write(&f->gm, AVAIL_GPA + 4 + 2ULL * (f->avail_idx % QSIZE), &head, 2),
	                 0);
	set_avail_idx(f, (uint16_t)(f->avail_idx + 1));
}

static void set_avail_flags(struct fixture *f, uint16_t flags)
{
	assert_int_equal(gm_write(&f->gm, AVAIL_GPA, &flags, 2), 0);
}

static uint16_t used_idx(struct fixture *f)
{
	uint16_t v;

	assert_int_equal(gm_read(&f->gm, USED_GPA + 2, &v, 2), 0);
	return v;
}

static void used_elem(struct fixture *f, uint16_t n, uint32_t *id, uint32_t *len)
{
	struct vring_used_elem e;

	assert_int_equal(gm_read(&f->gm, USED_GPA + 4 + 8ULL * (n % QSIZE), &e, sizeof(e)), 0);
	*id = e.id;
	*len = e.len;
}

/* ---- init and identity ---- */

static void test_init(void **state)
{
	struct fixture *f = *state;
	struct virtio_mmio t2;

	assert_true(f->t.irq_fd >= 0);
	for (unsigned q = 0; q < NQUEUES; q++)
		assert_true(f->t.notify_fd[q] >= 0);
	for (unsigned q = NQUEUES; q < VIRTIO_MAX_QUEUES; q++)
		assert_int_equal(f->t.notify_fd[q], -1);
	assert_int_equal(f->t.status, 0);
	assert_int_equal(f->t.base, MMIO_BASE);
	assert_int_equal(f->t.gsi, GSI);
	assert_false(virtio_mmio_running(&f->t));
	/* Nothing is signalled at start. */
	assert_int_equal(drain(f->t.irq_fd), 0);

	/* Too many queues or too large a queue: clamped. */
	assert_int_equal(
	    virtio_mmio_init(&t2, "big", 1, 0, 0, 9, 1024, &fake_ops, &f->dev, &f->gm, 0, 0), 0);
	assert_int_equal(t2.nqueues, VIRTIO_MAX_QUEUES);
	assert_int_equal(t2.queue_max, VIRTQ_MAX_SIZE);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		assert_true(t2.notify_fd[q] >= 0);
	assert_int_equal(t2.device_features, VERSION_1);
	close_transport(&t2);
}

static void test_identity(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	assert_int_equal(rd(f, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_ID), DEVICE_ID);
	assert_int_equal(rd(f, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	assert_int_equal(rd(f, VIRTIO_MMIO_VENDOR_ID), 0x48525448);
	/* Read-only registers ignore writes. */
	wr(f, VIRTIO_MMIO_MAGIC_VALUE, 0);
	wr(f, VIRTIO_MMIO_VERSION, 1);
	wr(f, VIRTIO_MMIO_DEVICE_ID, 7);
	wr(f, VIRTIO_MMIO_VENDOR_ID, 7);
	wr(f, VIRTIO_MMIO_CONFIG_GENERATION, 7);
	wr(f, VIRTIO_MMIO_INTERRUPT_STATUS, 3);
	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	assert_int_equal(rd(f, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_ID), DEVICE_ID);
	assert_int_equal(rd(f, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* Write-only, legacy (version 1) and unknown registers read as 0. */
	wr(f, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_SEL), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NOTIFY), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_ACK), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_DRIVER_FEATURES), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_GUEST_PAGE_SIZE), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_ALIGN), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_PFN), 0);
	assert_int_equal(rd(f, 0x0f8), 0);
}

/* ---- features ---- */

static void test_device_features(void **state)
{
	struct fixture *f = *state;

	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0x80000021u);
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0x9u); /* bits 32 (VERSION_1), 35 */
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffffu);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);
	assert_int_equal(device_features(f), DEV_FEATURES | VERSION_1);
	/* The selector is not readable back. */
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL), 0);
}

static void test_driver_features(void **state)
{
	struct fixture *f = *state;

	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0x11223344u);
	assert_int_equal(f->t.driver_features, 0x11223344u);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0x55667788u);
	assert_int_equal(f->t.driver_features, 0x5566778811223344ULL);
	/* Selectors other than 0 and 1 are ignored. */
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffffu);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0xffffffffu);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffffu);
	assert_int_equal(f->t.driver_features, 0x5566778811223344ULL);
	/* Each half alone. */
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0);
	assert_int_equal(f->t.driver_features, 0x5566778800000000ULL);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	assert_int_equal(f->t.driver_features, VERSION_1);
}

/* ---- the status machine ---- */

static void test_status_handshake(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(negotiate(f, VERSION_1 | DEV_FEATURES), S_ACK | S_DRV | S_FOK);
	assert_int_equal(f->t.driver_features, VERSION_1 | DEV_FEATURES);
	assert_false(virtio_mmio_running(&f->t));
	assert_int_equal(f->dev.activates, 0);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
	assert_true(virtio_mmio_running(&f->t));
	assert_int_equal(f->dev.activates, 1);
	/* Writing the same status again does not activate twice. */
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	assert_int_equal(f->dev.activates, 1);
	assert_int_equal(f->dev.resets, 0);
	/* VERSION_1 alone is a valid subset too. */
	wr(f, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(negotiate(f, VERSION_1), S_ACK | S_DRV | S_FOK);
}

static void test_status_refuse_legacy_driver(void **state)
{
	struct fixture *f = *state;

	/* A driver that does not accept VERSION_1. */
	assert_int_equal(negotiate(f, 1ULL << 5), S_ACK | S_DRV);
	assert_int_equal(try_features(f, 0), S_ACK | S_DRV);
	assert_int_equal(try_features(f, DEV_FEATURES), S_ACK | S_DRV);
	/* Features are not frozen by a refused FEATURES_OK: the driver may try again. */
	assert_int_equal(try_features(f, VERSION_1 | (1ULL << 5)), S_ACK | S_DRV | S_FOK);
	assert_int_equal(f->t.driver_features, VERSION_1 | (1ULL << 5));
}

static void test_status_refuse_unoffered(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, VERSION_1 | (1ULL << 1)), S_ACK | S_DRV);
	assert_int_equal(try_features(f, VERSION_1 | (1ULL << 63)), S_ACK | S_DRV);
	assert_int_equal(try_features(f, VERSION_1 | (1ULL << VIRTIO_RING_F_EVENT_IDX)),
	                 S_ACK | S_DRV);
	assert_int_equal(try_features(f, ~0ULL), S_ACK | S_DRV);
	/* DRIVER_OK after the refusal is refused too. */
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
	assert_false(virtio_mmio_running(&f->t));
	assert_int_equal(f->dev.activates, 0);
	assert_int_equal(try_features(f, VERSION_1 | DEV_FEATURES), S_ACK | S_DRV | S_FOK);
}

static void test_status_driver_ok_needs_features_ok(void **state)
{
	struct fixture *f = *state;

	wr(f, VIRTIO_MMIO_STATUS, S_ACK);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
	write_driver_features(f, VERSION_1);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_DOK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV);
	assert_false(virtio_mmio_running(&f->t));
	assert_int_equal(f->dev.activates, 0);
	/* FEATURES_OK and DRIVER_OK in one write: both checked, both accepted. */
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
	assert_int_equal(f->dev.activates, 1);
}

static void test_status_no_clearing(void **state)
{
	struct fixture *f = *state;
	const uint32_t st = S_ACK | S_DRV | S_FOK;

	assert_int_equal(negotiate(f, VERSION_1), st);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), st);
	wr(f, VIRTIO_MMIO_STATUS, S_DRV | S_FOK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), st);
	wr(f, VIRTIO_MMIO_STATUS, S_DOK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), st);
	/* NEEDS_RESET is the device's bit; bits above 7 do not exist. */
	wr(f, VIRTIO_MMIO_STATUS, st | S_NR);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), st);
	wr(f, VIRTIO_MMIO_STATUS, st | 0x100);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), st);
	wr(f, VIRTIO_MMIO_STATUS, 0x100); /* not 0: not a reset, and clears nothing */
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), st);
	assert_int_equal(f->dev.resets, 0);
	/* Once NEEDS_RESET is set, the driver's writes cannot clear it. */
	virtio_mmio_needs_reset(&f->t);
	wr(f, VIRTIO_MMIO_STATUS, st);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), st | S_NR);
	wr(f, VIRTIO_MMIO_STATUS, st | S_DOK);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & S_NR);
	assert_false(virtio_mmio_running(&f->t));
}

static void test_status_reset(void **state)
{
	struct fixture *f = *state;
	struct virtq zero;

	go_live(f);
	virtio_mmio_signal_used(&f->t, 0);
	virtio_mmio_needs_reset(&f->t);
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS),
	                 VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & S_NR);

	wr(f, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(f->dev.resets, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(f->t.driver_features, 0);
	assert_false(virtio_mmio_running(&f->t));
	memset(&zero, 0, sizeof(zero));
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		assert_memory_equal(&f->t.vq[q], &zero, sizeof(zero));
	/* Selectors are back to 0. */
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0x80000021u);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(f->t.queue_sel, 0);
	/* A second reset of a reset device is harmless. */
	wr(f, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(f->dev.resets, 2);
	/* And the device can be brought up again. */
	f->dev.activates = 0;
	go_live(f);
}

static void test_status_failed(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, VERSION_1), S_ACK | S_DRV | S_FOK);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_FAIL);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_FAIL);
	assert_false(virtio_mmio_running(&f->t));
	wr(f, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);

	/* FAILED after DRIVER_OK stops the device. */
	f->dev.activates = 0;
	go_live(f);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK | S_FAIL);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK | S_FAIL);
	assert_false(virtio_mmio_running(&f->t));
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	virtio_mmio_handle_notify(&f->t, 0);
	assert_int_equal(f->dev.notify_calls, 0);
}

static void test_features_frozen(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(negotiate(f, VERSION_1 | (1ULL << 5)), S_ACK | S_DRV | S_FOK);
	write_driver_features(f, VERSION_1 | DEV_FEATURES);
	assert_int_equal(f->t.driver_features, VERSION_1 | (1ULL << 5));
	write_driver_features(f, 0);
	assert_int_equal(f->t.driver_features, VERSION_1 | (1ULL << 5));
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	write_driver_features(f, 1ULL << 63);
	assert_int_equal(f->t.driver_features, VERSION_1 | (1ULL << 5));
	/* Reset thaws them. */
	wr(f, VIRTIO_MMIO_STATUS, 0);
	write_driver_features(f, VERSION_1 | 1);
	assert_int_equal(f->t.driver_features, VERSION_1 | 1);
}

/* ---- queues ---- */

static void test_queue_num_max(void **state)
{
	struct fixture *f = *state;

	for (uint32_t q = 0; q < NQUEUES; q++) {
		wr(f, VIRTIO_MMIO_QUEUE_SEL, q);
		assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
		assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	}
	wr(f, VIRTIO_MMIO_QUEUE_SEL, NQUEUES);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	wr(f, VIRTIO_MMIO_QUEUE_SEL, VIRTIO_MAX_QUEUES);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 0xffffffffu);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	/* A queue that does not exist cannot be set up, and does not break the device. */
	set_queue_regs(f, NQUEUES, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(f->t.vq[NQUEUES].size, 0);
	assert_false(f->t.vq[NQUEUES].ready);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS) & S_NR, 0);
}

static void test_queue_bad_num(void **state)
{
	struct fixture *f = *state;
	static const uint32_t bad[] = {0,        3,        12,       QMAX - 1,
	                               QMAX * 2, 1u << 16, 0x10010u, 0xffffffffu};

	assert_int_equal(negotiate(f, VERSION_1), S_ACK | S_DRV | S_FOK);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set_queue_regs(f, 0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
		assert_int_equal(f->t.vq[0].size, QSIZE);
		wr(f, VIRTIO_MMIO_QUEUE_NUM, bad[i]);
		assert_int_equal(f->t.vq[0].size, 0);
	}
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & S_NR);
	/* Before DRIVER_OK, no interrupt. */
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(drain(f->t.irq_fd), 0);
	/* DRIVER_OK does not make the device run. */
	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	assert_false(virtio_mmio_running(&f->t));

	/* The accepted sizes: powers of two up to the maximum. */
	wr(f, VIRTIO_MMIO_STATUS, 0);
	for (uint32_t n = 1; n <= QMAX; n <<= 1) {
		wr(f, VIRTIO_MMIO_QUEUE_NUM, n);
		assert_int_equal(f->t.vq[0].size, n);
	}
}

static void test_queue_bad_num_after_driver_ok(void **state)
{
	struct fixture *f = *state;

	go_live(f);
	set_queue_regs(f, 1, 3, DESC_GPA + 0x8000, AVAIL_GPA + 0x8000, USED_GPA + 0x8000);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK | S_NR);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(drain(f->t.irq_fd), 1);
	assert_false(virtio_mmio_running(&f->t));
	/* Once only. */
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(drain(f->t.irq_fd), 0);
}

/* Rings outside RAM or misaligned: refused like a bad size. */
static void test_queue_bad_layout(void **state)
{
	struct fixture *f = *state;

	go_live(f);
	set_queue_regs(f, 1, QSIZE, LOW_SIZE - 16, AVAIL_GPA + 0x8000, USED_GPA + 0x8000);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & S_NR);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(drain(f->t.irq_fd), 1);

	wr(f, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(negotiate(f, VERSION_1), S_ACK | S_DRV | S_FOK);
	set_queue_regs(f, 0, QSIZE, DESC_GPA + 8, AVAIL_GPA, USED_GPA);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & S_NR);

	/* In the hole between low and high RAM. */
	wr(f, VIRTIO_MMIO_STATUS, 0);
	set_queue_regs(f, 0, QSIZE, HIGH_GPA - 0x1000, AVAIL_GPA, USED_GPA);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & S_NR);
}

static void test_queue_setup(void **state)
{
	struct fixture *f = *state;
	const uint64_t desc = HIGH_GPA + 0x1000, avail = HIGH_GPA + 0x2002,
	               used = HIGH_GPA + 0x3004;

	assert_int_equal(negotiate(f, VERSION_1), S_ACK | S_DRV | S_FOK);
	assert_int_equal(setup_queue0(f), 1);
	assert_true(f->t.vq[0].ready);
	assert_int_equal(f->t.vq[0].size, QSIZE);
	assert_int_equal(f->t.vq[0].desc_gpa, DESC_GPA);
	assert_int_equal(f->t.vq[0].avail_gpa, AVAIL_GPA);
	assert_int_equal(f->t.vq[0].used_gpa, USED_GPA);

	/* 64-bit addresses (high RAM) on queue 1, written high half first. */
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	wr(f, VIRTIO_MMIO_QUEUE_NUM, QMAX);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
	wr(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	wr(f, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
	wr(f, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
	assert_int_equal(f->t.vq[1].desc_gpa, desc);
	assert_int_equal(f->t.vq[1].avail_gpa, avail);
	assert_int_equal(f->t.vq[1].used_gpa, used);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
	assert_int_equal(f->t.vq[1].size, QMAX);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS) & S_NR, 0);
	/* Queue 0 was not disturbed. */
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
	assert_int_equal(f->t.vq[0].desc_gpa, DESC_GPA);

	/* A high half replaces only the high half. */
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 0);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	assert_int_equal(f->t.vq[1].desc_gpa, 0x1000);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x4000);
	assert_int_equal(f->t.vq[1].desc_gpa, 0x4000);
}

static void test_queue_frozen_while_ready(void **state)
{
	struct fixture *f = *state;

	go_live(f);
	f->t.vq[0].last_avail = 5;
	f->t.vq[0].used_idx = 5;
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(f, VIRTIO_MMIO_QUEUE_NUM, 8);
	wr(f, VIRTIO_MMIO_QUEUE_NUM, 3);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, 1);
	wr(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x5001);
	wr(f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0xffffffffu);
	wr(f, VIRTIO_MMIO_QUEUE_USED_LOW, 0x5002);
	wr(f, VIRTIO_MMIO_QUEUE_USED_HIGH, 2);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1); /* already ready: nothing restarts */
	assert_int_equal(f->t.vq[0].size, QSIZE);
	assert_int_equal(f->t.vq[0].desc_gpa, DESC_GPA);
	assert_int_equal(f->t.vq[0].avail_gpa, AVAIL_GPA);
	assert_int_equal(f->t.vq[0].used_gpa, USED_GPA);
	assert_int_equal(f->t.vq[0].last_avail, 5);
	assert_int_equal(f->t.vq[0].used_idx, 5);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
	assert_true(virtio_mmio_running(&f->t));

	/* Not ready: writable again, and a new QueueReady starts from index 0. */
	wr(f, VIRTIO_MMIO_QUEUE_READY, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	wr(f, VIRTIO_MMIO_QUEUE_NUM, 8);
	assert_int_equal(f->t.vq[0].size, 8);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
	assert_int_equal(f->t.vq[0].last_avail, 0);
	assert_int_equal(f->t.vq[0].used_idx, 0);
}

/* ---- notifications ---- */

static void test_queue_notify_register(void **state)
{
	struct fixture *f = *state;

	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(drain(f->t.notify_fd[0]), 1);
	assert_int_equal(drain(f->t.notify_fd[0]), 0);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	assert_int_equal(drain(f->t.notify_fd[0]), 2);
	assert_int_equal(drain(f->t.notify_fd[1]), 1);
	/* Queues that do not exist. */
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, NQUEUES);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_MAX_QUEUES);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffffu);
	assert_int_equal(drain(f->t.notify_fd[0]), 0);
	assert_int_equal(drain(f->t.notify_fd[1]), 0);
	/* The write itself never calls the device (that is the VMM thread's job). */
	assert_int_equal(f->dev.notify_calls, 0);
}

static void test_handle_notify(void **state)
{
	struct fixture *f = *state;

	/* Before DRIVER_OK: the eventfd is drained, the device is not called. */
	assert_int_equal(negotiate(f, VERSION_1), S_ACK | S_DRV | S_FOK);
	assert_int_equal(setup_queue0(f), 1);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	virtio_mmio_handle_notify(&f->t, 0);
	assert_int_equal(f->dev.notify_calls, 0);
	assert_int_equal(f->t.notifications, 1);
	assert_int_equal(drain(f->t.notify_fd[0]), 0);

	wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	virtio_mmio_handle_notify(&f->t, 0);
	assert_int_equal(f->dev.notified[0], 1);
	assert_int_equal(f->dev.notify_calls, 1);
	assert_int_equal(drain(f->t.notify_fd[0]), 0);
	/* Queue 1 is not ready. */
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	virtio_mmio_handle_notify(&f->t, 1);
	assert_int_equal(f->dev.notify_calls, 1);
	/* Out of range: ignored. */
	virtio_mmio_handle_notify(&f->t, NQUEUES);
	virtio_mmio_handle_notify(&f->t, 1000);
	assert_int_equal(f->dev.notify_calls, 1);
	/* Queue 0 disabled by the driver. */
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 0);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	virtio_mmio_handle_notify(&f->t, 0);
	assert_int_equal(f->dev.notify_calls, 1);
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	virtio_mmio_handle_notify(&f->t, 0);
	assert_int_equal(f->dev.notify_calls, 2);
	/* After NEEDS_RESET: no more processing. */
	virtio_mmio_needs_reset(&f->t);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	virtio_mmio_handle_notify(&f->t, 0);
	assert_int_equal(f->dev.notify_calls, 2);
	assert_int_equal(f->t.notifications, 6);
}

/* ---- interrupts ---- */

static void test_signal_used(void **state)
{
	struct fixture *f = *state;

	go_live(f);
	virtio_mmio_signal_used(&f->t, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	assert_int_equal(drain(f->t.irq_fd), 1);
	assert_int_equal(f->t.interrupts, 1);
	virtio_mmio_signal_used(&f->t, 0);
	virtio_mmio_signal_used(&f->t, 0);
	assert_int_equal(drain(f->t.irq_fd), 2);
	assert_int_equal(f->t.interrupts, 3);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* Queues that do not exist. */
	virtio_mmio_signal_used(&f->t, NQUEUES);
	virtio_mmio_signal_used(&f->t, 1000);
	assert_int_equal(drain(f->t.irq_fd), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

static void test_signal_used_suppressed(void **state)
{
	struct fixture *f = *state;

	go_live(f);
	set_avail_flags(f, VRING_AVAIL_F_NO_INTERRUPT);
	virtio_mmio_signal_used(&f->t, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(drain(f->t.irq_fd), 0);
	assert_int_equal(f->t.interrupts, 0);
	set_avail_flags(f, 0);
	virtio_mmio_signal_used(&f->t, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	assert_int_equal(drain(f->t.irq_fd), 1);
}

static void test_interrupt_ack(void **state)
{
	struct fixture *f = *state;

	go_live(f);
	virtio_mmio_signal_used(&f->t, 0);
	virtio_mmio_config_changed(&f->t);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 3);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 3);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	virtio_mmio_signal_used(&f->t, 0);
	virtio_mmio_config_changed(&f->t);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffffu);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* A non-4-byte ACK is ignored. */
	virtio_mmio_signal_used(&f->t, 0);
	{
		uint8_t one = 1;

		virtio_mmio_bus_ops.write(&f->t, VIRTIO_MMIO_INTERRUPT_ACK, &one, 1);
	}
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
}

static void test_config_changed(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 0);
	/* Before DRIVER_OK the generation moves, but the driver is not interrupted. */
	virtio_mmio_config_changed(&f->t);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(drain(f->t.irq_fd), 0);

	go_live(f);
	virtio_mmio_config_changed(&f->t);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(drain(f->t.irq_fd), 1);
	virtio_mmio_config_changed(&f->t);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 3);
	assert_int_equal(drain(f->t.irq_fd), 1);
	/* The driver's ack does not touch the generation. */
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 3);
}

/* ---- config space and access sizes ---- */

static void test_config_read(void **state)
{
	struct fixture *f = *state;
	uint8_t b[8];
	uint16_t w;
	uint32_t l;

	memset(b, 0xff, sizeof(b));
	virtio_mmio_bus_ops.read(&f->t, VIRTIO_MMIO_CONFIG + 3, b, 1);
	assert_int_equal(b[0], 4);
	assert_int_equal(f->dev.config_reads, 1);
	assert_int_equal(f->dev.last_off, 3);
	assert_int_equal(f->dev.last_size, 1);
	virtio_mmio_bus_ops.read(&f->t, VIRTIO_MMIO_CONFIG + 2, (uint8_t *)&w, 2);
	assert_int_equal(w, 0x0403);
	assert_int_equal(f->dev.last_off, 2);
	assert_int_equal(f->dev.last_size, 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG), 0x04030201u);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 4), 0x08070605u);
	assert_int_equal(f->dev.last_off, 4);
	assert_int_equal(f->dev.last_size, 4);
	/* The last byte; unaligned accesses inside the space are the device's business. */
	virtio_mmio_bus_ops.read(&f->t, VIRTIO_MMIO_CONFIG + 7, b, 1);
	assert_int_equal(b[0], 8);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 1), 0x05040302u);
	assert_int_equal(f->dev.config_reads, 6);

	/* Past config_size: zeros, the device is not asked. */
	memset(b, 0xff, sizeof(b));
	virtio_mmio_bus_ops.read(&f->t, VIRTIO_MMIO_CONFIG + CONFIG_SIZE, b, 1);
	assert_int_equal(b[0], 0);
	memset(b, 0xff, sizeof(b));
	virtio_mmio_bus_ops.read(&f->t, VIRTIO_MMIO_CONFIG + 7, b, 2);
	assert_int_equal(b[0], 0);
	assert_int_equal(b[1], 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 5), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 8), 0);
	assert_int_equal(rd(f, 0xffc), 0);
	l = 0xffffffffu;
	virtio_mmio_bus_ops.read(&f->t, 0xfff, (uint8_t *)&l, 1);
	assert_int_equal(l & 0xff, 0);
	assert_int_equal(f->dev.config_reads, 6);
}

static void test_config_write(void **state)
{
	struct fixture *f = *state;
	uint16_t w = 0xbeef;
	uint8_t b = 0x77;

	virtio_mmio_bus_ops.write(&f->t, VIRTIO_MMIO_CONFIG + 2, (uint8_t *)&w, 2);
	assert_int_equal(f->dev.config_writes, 1);
	assert_int_equal(f->dev.last_off, 2);
	assert_int_equal(f->dev.last_size, 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG), 0xbeef0201u);
	wr(f, VIRTIO_MMIO_CONFIG + 4, 0xcafef00du);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 4), 0xcafef00du);
	assert_int_equal(f->dev.config_writes, 2);
	/* Past the end: dropped. */
	virtio_mmio_bus_ops.write(&f->t, VIRTIO_MMIO_CONFIG + 7, (uint8_t *)&w, 2);
	virtio_mmio_bus_ops.write(&f->t, VIRTIO_MMIO_CONFIG + CONFIG_SIZE, &b, 1);
	wr(f, VIRTIO_MMIO_CONFIG + 6, 0);
	wr(f, 0xffc, 0);
	assert_int_equal(f->dev.config_writes, 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 4), 0xcafef00du);
}

static void test_register_access_sizes(void **state)
{
	struct fixture *f = *state;
	uint8_t b[8];

	/* Registers below 0x100 answer 4-byte aligned accesses only. */
	memset(b, 0xff, sizeof(b));
	virtio_mmio_bus_ops.read(&f->t, VIRTIO_MMIO_MAGIC_VALUE, b, 1);
	assert_int_equal(b[0], 0);
	memset(b, 0xff, sizeof(b));
	virtio_mmio_bus_ops.read(&f->t, VIRTIO_MMIO_MAGIC_VALUE, b, 2);
	assert_int_equal(b[0], 0);
	assert_int_equal(b[1], 0);
	memset(b, 0xff, sizeof(b));
	virtio_mmio_bus_ops.read(&f->t, VIRTIO_MMIO_MAGIC_VALUE, b, 8);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(b[i], 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE + 1), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE + 2), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_VERSION + 3), 0);
	memset(b, 0xff, sizeof(b));
	virtio_mmio_bus_ops.read(&f->t, VIRTIO_MMIO_CONFIG - 1, b, 1);
	assert_int_equal(b[0], 0);
	assert_int_equal(f->dev.config_reads, 0);

	/* And ignore other writes. */
	b[0] = S_ACK;
	virtio_mmio_bus_ops.write(&f->t, VIRTIO_MMIO_STATUS, b, 1);
	virtio_mmio_bus_ops.write(&f->t, VIRTIO_MMIO_STATUS, b, 2);
	memset(b, 0, sizeof(b));
	b[0] = S_ACK;
	virtio_mmio_bus_ops.write(&f->t, VIRTIO_MMIO_STATUS, b, 8);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
	wr(f, VIRTIO_MMIO_STATUS + 1, S_ACK);
	wr(f, VIRTIO_MMIO_STATUS - 2, S_ACK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
	wr(f, VIRTIO_MMIO_STATUS, S_ACK);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK);
	/* A 1-byte write of 0 to Status is not a reset. */
	b[0] = 0;
	virtio_mmio_bus_ops.write(&f->t, VIRTIO_MMIO_STATUS, b, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK);
	assert_int_equal(f->dev.resets, 0);
	/* Sub-word QueueNotify writes do not notify. */
	b[0] = 0;
	virtio_mmio_bus_ops.write(&f->t, VIRTIO_MMIO_QUEUE_NOTIFY, b, 2);
	assert_int_equal(drain(f->t.notify_fd[0]), 0);
}

/* ---- virtio_mmio_pop ---- */

static void test_pop_bad_chain(void **state)
{
	struct fixture *f = *state;
	uint32_t id, len;

	go_live(f);
	/* head 2: a buffer crossing the end of low RAM; head 0: fine. */
	put_desc(f, 2, LOW_SIZE - 8, 16, VRING_DESC_F_WRITE, 0);
	put_desc(f, 0, BUF_GPA, 32, 0, 0);
	submit(f, 2);
	submit(f, 0);
	assert_true(virtio_mmio_pop(&f->t, 0, &f->c));
	assert_int_equal(f->c.head, 0);
	assert_int_equal(f->c.readable, 32);
	assert_int_equal(f->t.bad_chains, 1);
	assert_int_equal(used_idx(f), 1);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, 2);
	assert_int_equal(len, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	assert_int_equal(drain(f->t.irq_fd), 1);
	assert_true(virtio_mmio_running(&f->t));
	assert_false(virtio_mmio_pop(&f->t, 0, &f->c));

	/* Only bad chains: all returned, nothing for the device. */
	put_desc(f, 3, BUF_GPA, 16, VRING_DESC_F_NEXT, 3); /* a loop */
	submit(f, 2);
	submit(f, 3);
	assert_false(virtio_mmio_pop(&f->t, 0, &f->c));
	assert_int_equal(f->t.bad_chains, 3);
	assert_int_equal(used_idx(f), 3);
	used_elem(f, 1, &id, &len);
	assert_int_equal(id, 2);
	assert_int_equal(len, 0);
	used_elem(f, 2, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 0);
	assert_true(drain(f->t.irq_fd) >= 1);
	assert_true(virtio_mmio_running(&f->t));
}

static void test_pop_bad_ring(void **state)
{
	struct fixture *f = *state;

	go_live(f);
	set_avail_idx(f, QSIZE + 1);
	assert_false(virtio_mmio_pop(&f->t, 0, &f->c));
	assert_true(f->t.vq[0].broken);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), S_ACK | S_DRV | S_FOK | S_DOK | S_NR);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(drain(f->t.irq_fd), 1);
	assert_int_equal(used_idx(f), 0); /* nothing returned */
	assert_false(virtio_mmio_running(&f->t));
	assert_false(virtio_mmio_pop(&f->t, 0, &f->c));
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	virtio_mmio_handle_notify(&f->t, 0);
	assert_int_equal(f->dev.notify_calls, 0);

	/* The driver resets and starts again. */
	wr(f, VIRTIO_MMIO_STATUS, 0);
	assert_false(f->t.vq[0].broken);
	f->dev.activates = 0;
	set_avail_idx(f, 0);
	go_live(f);
	put_desc(f, 1, BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
	submit(f, 1);
	assert_true(virtio_mmio_pop(&f->t, 0, &f->c));
	assert_int_equal(f->c.head, 1);
	assert_int_equal(f->c.writable, 8);
}

/* A head index out of range is a ring error, not a chain error. */
static void test_pop_bad_head(void **state)
{
	struct fixture *f = *state;

	go_live(f);
	submit(f, QSIZE);
	assert_false(virtio_mmio_pop(&f->t, 0, &f->c));
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & S_NR);
	assert_int_equal(used_idx(f), 0);
	assert_int_equal(drain(f->t.irq_fd), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(test_init),
	    T(test_identity),
	    T(test_device_features),
	    T(test_driver_features),
	    T(test_status_handshake),
	    T(test_status_refuse_legacy_driver),
	    T(test_status_refuse_unoffered),
	    T(test_status_driver_ok_needs_features_ok),
	    T(test_status_no_clearing),
	    T(test_status_reset),
	    T(test_status_failed),
	    T(test_features_frozen),
	    T(test_queue_num_max),
	    T(test_queue_bad_num),
	    T(test_queue_bad_num_after_driver_ok),
	    T(test_queue_bad_layout),
	    T(test_queue_setup),
	    T(test_queue_frozen_while_ready),
	    T(test_queue_notify_register),
	    T(test_handle_notify),
	    T(test_signal_used),
	    T(test_signal_used_suppressed),
	    T(test_interrupt_ack),
	    T(test_config_changed),
	    T(test_config_read),
	    T(test_config_write),
	    T(test_register_access_sizes),
	    T(test_pop_bad_chain),
	    T(test_pop_bad_ring),
	    T(test_pop_bad_head),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
