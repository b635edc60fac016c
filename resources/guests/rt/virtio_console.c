/*
 * virtio-console (virtio 1.2 section 5.3) without VIRTIO_CONSOLE_F_MULTIPORT: only port 0,
 * with receiveq 0 and transmitq 1. Output goes out one buffer per write (per 256 bytes).
 * receiveq is set up but left without buffers, so the device keeps any input.
 */
#include "virtio.h"

#define VCON_TX_MAX 256

bool rt_vcon_init(struct rt_vcon *c, struct rt_virtio_dev *d)
{
	c->dev = d;
	if (d->device_id != VIRTIO_ID_CONSOLE) {
		con_printf("virtio-console: 0x%lx: device id %u, not a console\n", d->base,
		           d->device_id);
		return false;
	}
	if (!rt_virtio_negotiate(d, RT_VIRTIO_FEATURE(VIRTIO_F_VERSION_1), false))
		return false;
	if (!rt_virtio_setup_queue(d, RT_VCON_RX_QUEUE) ||
	    !rt_virtio_setup_queue(d, RT_VCON_TX_QUEUE)) {
		rt_virtio_fail(d);
		return false;
	}
	rt_virtio_driver_ok(d);
	return true;
}

void rt_vcon_write(struct rt_vcon *c, const char *s, size_t n)
{
	/* A copy in the image, so the buffer is in guest RAM whatever `s` points at. */
	static char tx[VCON_TX_MAX];

	while (n) {
		uint32_t len = n < VCON_TX_MAX ? (uint32_t)n : VCON_TX_MAX;
		struct rt_vq_buf buf = {tx, len, false};

		rt_copy(tx, s, len);
		rt_virtio_submit(c->dev, RT_VCON_TX_QUEUE, &buf, 1, NULL);
		s += len;
		n -= len;
	}
}
