#include "mmio.h"

#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "snapshot/stream.h"

#define MMIO_MAGIC   0x74726976 /* "virt" */
#define MMIO_VERSION 2

int virtio_mmio_init(struct virtio_mmio *t, const char *name, uint32_t device_id, uint64_t features,
                     uint32_t config_size, unsigned nqueues, uint16_t queue_max,
                     const struct virtio_dev_ops *ops, void *dev, const struct guest_memory *gm,
                     uint64_t base, uint32_t gsi)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->name = name;
	t->device_id = device_id;
	t->device_features = features | (1ULL << VIRTIO_F_VERSION_1);
	t->config_size = config_size;
	t->nqueues = nqueues > VIRTIO_MAX_QUEUES ? VIRTIO_MAX_QUEUES : nqueues;
	t->queue_max = queue_max > VIRTQ_MAX_SIZE ? VIRTQ_MAX_SIZE : queue_max;
	t->ops = ops;
	t->dev = dev;
	t->gm = gm;
	t->base = base;
	t->gsi = gsi;
	t->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		t->notify_fd[q] = -1;
	for (unsigned q = 0; q < t->nqueues; q++)
		t->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->irq_fd < 0)
		return -errno;
	for (unsigned q = 0; q < t->nqueues; q++)
		if (t->notify_fd[q] < 0)
			return -errno;
	return 0;
}

static void raise_irq(struct virtio_mmio *t, uint32_t why)
{
	uint64_t one = 1;

	t->interrupt_status |= why;
	t->interrupts++;
	if (t->irq_fd >= 0 && write(t->irq_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow in practice; nothing else can fail here. */
	}
}

bool virtio_mmio_running(const struct virtio_mmio *t)
{
	return (t->status & VIRTIO_CONFIG_S_DRIVER_OK) &&
	       !(t->status & (VIRTIO_CONFIG_S_FAILED | VIRTIO_CONFIG_S_NEEDS_RESET));
}

void virtio_mmio_signal_used(struct virtio_mmio *t, unsigned q)
{
	if (q < t->nqueues && !virtq_interrupt_suppressed(&t->vq[q], t->gm))
		raise_irq(t, VIRTIO_MMIO_INT_VRING);
}

void virtio_mmio_config_changed(struct virtio_mmio *t)
{
	t->config_generation++;
	if (t->status & VIRTIO_CONFIG_S_DRIVER_OK)
		raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_mmio_needs_reset(struct virtio_mmio *t)
{
	if (t->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	t->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	if (t->status & VIRTIO_CONFIG_S_DRIVER_OK)
		raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
}

bool virtio_mmio_pop(struct virtio_mmio *t, unsigned q, struct virtq_chain *c)
{
	for (;;) {
		switch (virtq_pop(&t->vq[q], t->gm, c)) {
		case VIRTQ_CHAIN:
			return true;
		case VIRTQ_EMPTY:
			return false;
		case VIRTQ_BAD_CHAIN:
			/* Give the buffer back untouched; the driver sees a zero-length completion.
			 */
			t->bad_chains++;
			virtq_push(&t->vq[q], t->gm, c->head, 0);
			virtio_mmio_signal_used(t, q);
			continue;
		case VIRTQ_BAD_RING:
			t->bad_chains++;
			virtio_mmio_needs_reset(t);
			return false;
		}
	}
}

static void device_reset(struct virtio_mmio *t)
{
	if (t->ops->reset)
		t->ops->reset(t);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		virtq_reset(&t->vq[q]);
	t->status = 0;
	t->driver_features = 0;
	t->device_features_sel = t->driver_features_sel = t->queue_sel = 0;
	t->interrupt_status = 0;
}

static void write_status(struct virtio_mmio *t, uint32_t v)
{
	uint32_t old = t->status;

	if (v == 0) {
		device_reset(t);
		return;
	}
	/* The driver only adds bits; NEEDS_RESET is the device's to set. */
	v = (v & 0xff & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
	if ((v & old) != old)
		return;
	if ((v & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		/* Accept only a subset of what we offer, and only virtio 1.x drivers. */
		if ((t->driver_features & ~t->device_features) ||
		    !(t->driver_features & (1ULL << VIRTIO_F_VERSION_1)))
			v &= ~VIRTIO_CONFIG_S_FEATURES_OK;
	}
	if ((v & VIRTIO_CONFIG_S_DRIVER_OK) && !(v & VIRTIO_CONFIG_S_FEATURES_OK))
		v &= ~VIRTIO_CONFIG_S_DRIVER_OK;
	t->status = v;
	if ((v & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK) &&
	    t->ops->activate)
		t->ops->activate(t);
}

static struct virtq *selected(struct virtio_mmio *t)
{
	return t->queue_sel < t->nqueues ? &t->vq[t->queue_sel] : NULL;
}

static uint32_t read_reg(struct virtio_mmio *t, uint32_t off)
{
	struct virtq *q = selected(t);

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return MMIO_VERSION;
	case VIRTIO_MMIO_DEVICE_ID:
		return t->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (t->device_features_sel > 1)
			return 0;
		return (uint32_t)(t->device_features >> (32 * t->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return q ? t->queue_max : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return t->interrupt_status;
	case VIRTIO_MMIO_STATUS:
		return t->status;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return t->config_generation;
	default:
		return 0; /* write-only and unknown registers read as 0 */
	}
}

static void set_low(uint64_t *r, uint32_t v)
{
	*r = (*r & ~0xffffffffULL) | v;
}

static void set_high(uint64_t *r, uint32_t v)
{
	*r = (*r & 0xffffffffULL) | ((uint64_t)v << 32);
}

static void write_reg(struct virtio_mmio *t, uint32_t off, uint32_t v)
{
	struct virtq *q = selected(t);
	/* Queue layout may change only while the queue is not live. */
	bool q_writable = q && !q->ready;
	uint64_t one = 1;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		t->device_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (t->status & VIRTIO_CONFIG_S_FEATURES_OK)
			break; /* features are frozen once accepted */
		if (t->driver_features_sel == 0)
			set_low(&t->driver_features, v);
		else if (t->driver_features_sel == 1)
			set_high(&t->driver_features, v);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		t->driver_features_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		t->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (q_writable)
			q->size = (v && v <= t->queue_max && !(v & (v - 1))) ? (uint16_t)v : 0;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (!q)
			break;
		if (v == 0) {
			q->ready = false;
		} else if (!q->ready) {
			if (virtq_layout_ok(q, t->gm)) {
				q->ready = true;
				q->last_avail = q->used_idx = 0;
			} else {
				virtio_mmio_needs_reset(t); /* rings outside RAM or misaligned */
			}
		}
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* Without an ioeventfd (or when KVM hands us the write): same path. */
		if (v < t->nqueues && write(t->notify_fd[v], &one, sizeof(one)) < 0) {
		}
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		t->interrupt_status &= ~v;
		break;
	case VIRTIO_MMIO_STATUS:
		write_status(t, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		if (q_writable)
			set_low(&q->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (q_writable)
			set_high(&q->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		if (q_writable)
			set_low(&q->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (q_writable)
			set_high(&q->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
		if (q_writable)
			set_low(&q->used_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (q_writable)
			set_high(&q->used_gpa, v);
		break;
	default:
		break; /* read-only and unknown registers ignore writes */
	}
}

static void mmio_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	struct virtio_mmio *t = opaque;
	uint32_t v;

	memset(data, 0, size);
	pthread_mutex_lock(&t->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;

		if (c + size <= t->config_size && t->ops->config_read)
			t->ops->config_read(t, (uint32_t)c, data, size);
	} else if (size == 4 && !(off & 3)) {
		v = read_reg(t, (uint32_t)off);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&t->lock);
}

static void mmio_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	struct virtio_mmio *t = opaque;
	uint32_t v;

	pthread_mutex_lock(&t->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;

		if (c + size <= t->config_size && t->ops->config_write)
			t->ops->config_write(t, (uint32_t)c, data, size);
	} else if (size == 4 && !(off & 3)) {
		memcpy(&v, data, 4);
		write_reg(t, (uint32_t)off, v);
	}
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_handle_notify(struct virtio_mmio *t, unsigned q)
{
	uint64_t n;

	if (q >= t->nqueues)
		return;
	if (read(t->notify_fd[q], &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&t->lock);
	t->notifications++;
	if (virtio_mmio_running(t) && t->vq[q].ready && t->ops->queue_notify)
		t->ops->queue_notify(t, q);
	pthread_mutex_unlock(&t->lock);
}

/* ---- snapshots -------------------------------------------------------------------------- */

#define TAG_VMIO SNAP_TAG('V', 'M', 'I', 'O')
#define INT_BITS (VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)

int virtio_mmio_save(const struct virtio_mmio *t, struct snap_w *w)
{
	struct virtio_mmio *m = (struct virtio_mmio *)t; /* the lock only */
	size_t at;

	pthread_mutex_lock(&m->lock);
	at = snap_begin(w, TAG_VMIO);
	snap_u32(w, t->device_id);
	snap_u32(w, t->nqueues);
	snap_u64(w, t->device_features);
	snap_u32(w, t->status);
	snap_u32(w, t->device_features_sel);
	snap_u32(w, t->driver_features_sel);
	snap_u32(w, t->queue_sel);
	snap_u64(w, t->driver_features);
	snap_u32(w, t->interrupt_status);
	snap_u32(w, t->config_generation);
	for (unsigned q = 0; q < t->nqueues; q++)
		virtq_save(&t->vq[q], w);
	snap_end(w, at);
	pthread_mutex_unlock(&m->lock);
	return w->failed ? -1 : 0;
}

/* A status write_status can leave: bits 0-7, DRIVER_OK only after FEATURES_OK, and
 * FEATURES_OK only for virtio 1.x features the device offers. */
static bool status_ok(uint32_t status, uint64_t driver, uint64_t offered)
{
	if (status & ~0xffu)
		return false;
	if ((status & VIRTIO_CONFIG_S_DRIVER_OK) && !(status & VIRTIO_CONFIG_S_FEATURES_OK))
		return false;
	return !(status & VIRTIO_CONFIG_S_FEATURES_OK) ||
	       (!(driver & ~offered) && (driver & (1ULL << VIRTIO_F_VERSION_1)));
}

int virtio_mmio_restore(struct virtio_mmio *t, struct snap_r *r, struct error *err)
{
	struct virtq vq[VIRTIO_MAX_QUEUES] = {0};
	uint32_t id, nq, status, dsel, drsel, qsel, isr, gen;
	uint64_t offered, driver, one = 1;
	struct snap_r sec;

	if (snap_section(r, TAG_VMIO, &sec, err))
		return -1;
	if (!snap_get_u32(&sec, &id) || id != t->device_id)
		return snap_bad(&sec, err, "device type");
	if (!snap_get_u32(&sec, &nq) || nq != t->nqueues)
		return snap_bad(&sec, err, "queue count");
	if (!snap_get_u64(&sec, &offered))
		return snap_bad(&sec, err, "offered features");
	if (offered != t->device_features)
		return err_set(err,
		               "snapshot: %s offered other features when it was saved (0x%llx) "
		               "than now (0x%llx): not the same device (for a drive: its read-only "
		               "flag, or discard, which its file system's hole punching decides)",
		               t->name ? t->name : "a virtio device", (unsigned long long)offered,
		               (unsigned long long)t->device_features);
	/* Any selector value is one the driver can write; reads check them. */
	if (!snap_get_u32(&sec, &status) || !snap_get_u32(&sec, &dsel) ||
	    !snap_get_u32(&sec, &drsel) || !snap_get_u32(&sec, &qsel))
		return snap_bad(&sec, err, "registers");
	if (!snap_get_u64(&sec, &driver) || !status_ok(status, driver, offered))
		return snap_bad(&sec, err, "status or driver features");
	if (!snap_get_u32(&sec, &isr) || isr & ~INT_BITS)
		return snap_bad(&sec, err, "interrupt status");
	if (!snap_get_u32(&sec, &gen))
		return snap_bad(&sec, err, "config generation");
	for (unsigned q = 0; q < nq; q++)
		if (virtq_restore(&vq[q], q, t->queue_max, t->gm, &sec, err))
			return -1;
	if (snap_section_done(&sec, err))
		return -1;

	pthread_mutex_lock(&t->lock);
	t->status = status;
	t->device_features_sel = dsel;
	t->driver_features_sel = drsel;
	t->queue_sel = qsel;
	t->driver_features = driver;
	t->interrupt_status = isr;
	t->config_generation = gen;
	memcpy(t->vq, vq, sizeof(vq));
	for (unsigned q = 0; q < t->nqueues && virtio_mmio_running(t); q++)
		if (t->vq[q].ready && t->notify_fd[q] >= 0 &&
		    write(t->notify_fd[q], &one, sizeof(one)) < 0) {
			/* already signalled */
		}
	if (isr && t->irq_fd >= 0 && write(t->irq_fd, &one, sizeof(one)) < 0) {
		/* already signalled */
	}
	pthread_mutex_unlock(&t->lock);
	return 0;
}

const struct bus_ops virtio_mmio_bus_ops = {.read = mmio_read, .write = mmio_write};
