#include "console.h"

#include <linux/virtio_console.h>
#include <string.h>

#include "snapshot/stream.h"

enum { RXQ = 0, TXQ = 1 };

void virtio_console_init(struct virtio_console *c, struct virtio_mmio *t, struct console *con)
{
	memset(c, 0, sizeof(*c));
	c->t = t;
	c->console = con;
}

/* Move pending input into the driver's receive buffers (lock held). */
static void deliver(struct virtio_console *c)
{
	struct virtio_mmio *t = c->t;
	struct virtq_chain chain;
	bool used = false;

	while (c->npending && virtio_mmio_running(t) && t->vq[RXQ].ready &&
	       virtio_mmio_pop(t, RXQ, &chain)) {
		uint64_t n = virtq_chain_write(&chain, t->gm, 0, c->pending, c->npending);

		memmove(c->pending, c->pending + n, c->npending - n);
		c->npending -= n;
		c->rx_bytes += n;
		virtq_push(&t->vq[RXQ], t->gm, chain.head, (uint32_t)n);
		used = true;
	}
	if (used)
		virtio_mmio_signal_used(t, RXQ);
}

static void transmit(struct virtio_console *c)
{
	struct virtio_mmio *t = c->t;
	struct virtq_chain chain;
	uint8_t buf[4096];
	bool used = false;

	while (virtio_mmio_pop(t, TXQ, &chain)) {
		for (uint64_t off = 0; off < chain.readable;) {
			uint64_t n = virtq_chain_read(&chain, t->gm, off, buf, sizeof(buf));

			if (!n)
				break;
			console_write(c->console, buf, n);
			c->tx_bytes += n;
			off += n;
		}
		virtq_push(&t->vq[TXQ], t->gm, chain.head, 0);
		used = true;
	}
	if (used)
		virtio_mmio_signal_used(t, TXQ);
}

static void vcon_notify(struct virtio_mmio *t, unsigned q)
{
	struct virtio_console *c = t->dev;

	if (q == TXQ)
		transmit(c);
	else
		deliver(c); /* new receive buffers */
}

static void vcon_config_read(struct virtio_mmio *t, uint32_t off, uint8_t *data, uint32_t size)
{
	struct virtio_console_config cfg;

	(void)t;
	memset(&cfg, 0, sizeof(cfg)); /* no size, one port, no emergency write */
	memcpy(data, (uint8_t *)&cfg + off, size);
}

static void vcon_activate(struct virtio_mmio *t)
{
	deliver(t->dev);
}

static void vcon_reset(struct virtio_mmio *t)
{
	(void)t; /* pending input stays for the next driver */
}

size_t virtio_console_rx_space(struct virtio_console *c)
{
	size_t n;

	pthread_mutex_lock(&c->t->lock);
	n = sizeof(c->pending) - c->npending;
	pthread_mutex_unlock(&c->t->lock);
	return n;
}

size_t virtio_console_receive(struct virtio_console *c, const uint8_t *buf, size_t len)
{
	size_t n;

	pthread_mutex_lock(&c->t->lock);
	n = sizeof(c->pending) - c->npending;
	if (n > len)
		n = len;
	memcpy(c->pending + c->npending, buf, n);
	c->npending += n;
	deliver(c);
	pthread_mutex_unlock(&c->t->lock);
	return n;
}

/* ---- snapshots -------------------------------------------------------------------------- */

#define TAG_VCON SNAP_TAG('V', 'C', 'O', 'N')

int virtio_console_save(const struct virtio_console *c, struct snap_w *w)
{
	size_t at;

	pthread_mutex_lock(&c->t->lock);
	at = snap_begin(w, TAG_VCON);
	snap_u32(w, (uint32_t)c->npending);
	snap_bytes(w, c->pending, c->npending);
	snap_end(w, at);
	pthread_mutex_unlock(&c->t->lock);
	return w->failed ? -1 : 0;
}

int virtio_console_restore(struct virtio_console *c, struct snap_r *r, struct error *err)
{
	struct virtio_mmio *t = c->t;
	uint8_t buf[sizeof(c->pending)];
	struct snap_r sec;
	uint32_t n;
	int ret = 0;

	if (snap_section(r, TAG_VCON, &sec, err))
		return -1;
	if (!snap_get_u32(&sec, &n) || n > sizeof(buf) || !snap_get_bytes(&sec, buf, n))
		return snap_bad(&sec, err, "pending input");
	if (snap_section_done(&sec, err))
		return -1;
	pthread_mutex_lock(&t->lock);
	/* Both queues complete every chain they take before the lock is released. */
	if (virtq_in_flight(&t->vq[RXQ]) || virtq_in_flight(&t->vq[TXQ])) {
		ret = snap_bad(&sec, err, "queue indices (chains in flight)");
	} else {
		memcpy(c->pending, buf, n);
		c->npending = n;
	}
	pthread_mutex_unlock(&t->lock);
	return ret;
}

const struct virtio_dev_ops virtio_console_ops = {
    .queue_notify = vcon_notify,
    .config_read = vcon_config_read,
    .reset = vcon_reset,
    .activate = vcon_activate,
};
