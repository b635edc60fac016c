/*
 * virtio-net (virtio 1.2 section 5.1), polled: one queue pair, no control queue.
 *
 * Receive buffers are fixed: descriptor i always describes buffer i (one device-writable
 * descriptor of buf_size bytes), so giving a buffer back is one avail ring entry, and a
 * QueueNotify only when the device has not set VRING_USED_F_NO_NOTIFY. Both queues
 * have VRING_AVAIL_F_NO_INTERRUPT set: the guest polls used->idx and takes no interrupts.
 * Transmission is synchronous (one chain in flight): the frame is published, QueueNotify is
 * written, and the guest spins until the device returns the chain, so a frame may be sent
 * straight from the receive buffer it arrived in.
 */
#include "virtio.h"

#include <linux/virtio_net.h>

/* Frames spread over several buffers (MRG_RXBUF) are gathered here; not zeroed at boot. */
static uint8_t gather[RT_VNET_FRAME_MAX] __attribute__((section(".noinit"), aligned(64)));

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* Spin until queue q returns a chain, with the runtime's limits (see RT_VQ_SPIN_MIN). */
static void wait_used(const struct rt_virtio_dev *d, unsigned q, uint32_t *id, uint32_t *len)
{
	struct rt_vq *vq = (struct rt_vq *)&d->vq[q];
	uint64_t start = rdtsc();

	for (uint32_t spin = 1; !rt_vq_get_used(vq, id, len); spin++) {
		if (spin % RT_VQ_CHECK_EVERY == 0) {
			uint64_t cycles = rdtsc() - start;

			if (rt_virtio_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET) {
				con_printf("virtio-net: 0x%lx queue %u: device needs reset\n",
				           d->base, q);
				guest_exit(RT_EXIT_VIRTIO_PROTOCOL);
			}
			if ((spin >= RT_VQ_SPIN_MIN && cycles >= RT_VQ_TSC_LIMIT) ||
			    spin >= RT_VQ_SPIN_MAX) {
				con_printf(
				    "virtio-net: 0x%lx queue %u: no completion after %u spins "
				    "(%lu TSC cycles)\n",
				    d->base, q, spin, cycles);
				guest_exit(RT_EXIT_VIRTIO_TIMEOUT);
			}
		}
		__asm__ volatile("pause");
	}
}

static _Noreturn void protocol_error(const struct rt_vnet *v, const char *what, uint32_t a,
                                     uint32_t b)
{
	con_printf("virtio-net: 0x%lx: %s (%u, %u)\n", v->dev->base, what, a, b);
	guest_exit(RT_EXIT_VIRTIO_PROTOCOL);
}

bool rt_vnet_init(struct rt_vnet *v, struct rt_virtio_dev *d, bool mrg, bool csum,
                  uint32_t buf_size, uint8_t *mem)
{
	uint64_t wanted =
	    RT_VIRTIO_FEATURE(VIRTIO_F_VERSION_1) | RT_VIRTIO_FEATURE(VIRTIO_NET_F_MAC) |
	    RT_VIRTIO_FEATURE(VIRTIO_NET_F_MTU) | RT_VIRTIO_FEATURE(VIRTIO_NET_F_STATUS);
	struct rt_vq *rx, *tx;
	uint32_t w;

	if (mrg)
		wanted |= RT_VIRTIO_FEATURE(VIRTIO_NET_F_MRG_RXBUF);
	if (csum)
		wanted |= RT_VIRTIO_FEATURE(VIRTIO_NET_F_CSUM) |
		          RT_VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_CSUM);
	memset(v, 0, sizeof(*v));
	v->dev = d;
	if (d->device_id != VIRTIO_ID_NET) {
		con_printf("virtio-net: 0x%lx: device id %u, not a network device\n", d->base,
		           d->device_id);
		return false;
	}
	if (!rt_virtio_negotiate(d, wanted, false))
		return false;
	if (!(d->features & RT_VIRTIO_FEATURE(VIRTIO_NET_F_MAC))) {
		con_printf("virtio-net: 0x%lx: no MAC address offered\n", d->base);
		rt_virtio_fail(d);
		return false;
	}
	/* mac[6] | status | max_virtqueue_pairs | mtu, read as three 32-bit words. */
	w = rt_virtio_config32(d, 0);
	rt_copy(v->mac, &w, 4);
	w = rt_virtio_config32(d, 4);
	rt_copy(v->mac + 4, &w, 2);
	v->mtu = 1500;
	if (d->features & RT_VIRTIO_FEATURE(VIRTIO_NET_F_MTU))
		v->mtu = (uint16_t)(rt_virtio_config32(d, 8) >> 16);
	v->mrg = d->features & RT_VIRTIO_FEATURE(VIRTIO_NET_F_MRG_RXBUF);
	v->csum = (d->features & RT_VIRTIO_FEATURE(VIRTIO_NET_F_CSUM)) &&
	          (d->features & RT_VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_CSUM));
	if (buf_size == 0)
		buf_size = RT_VNET_HDR + 14 + v->mtu + 4;
	if (buf_size > RT_VNET_BUF_MAX)
		buf_size = RT_VNET_BUF_MAX;
	v->buf_size = buf_size;
	v->bufs = mem;
	if (!rt_virtio_setup_queue(d, RT_VNET_RX_QUEUE) ||
	    !rt_virtio_setup_queue(d, RT_VNET_TX_QUEUE)) {
		rt_virtio_fail(d);
		return false;
	}
	rx = &d->vq[RT_VNET_RX_QUEUE];
	tx = &d->vq[RT_VNET_TX_QUEUE];
	rx->avail.flags = VRING_AVAIL_F_NO_INTERRUPT;
	tx->avail.flags = VRING_AVAIL_F_NO_INTERRUPT;
	v->nbufs = rx->size;
	for (uint16_t i = 0; i < v->nbufs; i++) {
		rx->desc[i] = (struct vring_desc){(uintptr_t)(mem + (uint32_t)i * buf_size),
		                                  buf_size, VRING_DESC_F_WRITE, 0};
		rx->avail.ring[i] = i;
	}
	rt_virtio_driver_ok(d);
	rx->avail_idx = v->nbufs;
	__atomic_store_n(&rx->avail.idx, rx->avail_idx, __ATOMIC_RELEASE);
	rt_virtio_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, RT_VNET_RX_QUEUE);
	return true;
}

/* The next used buffer of receiveq, checked: one of ours, no longer than it. */
static uint8_t *take(struct rt_vnet *v, uint32_t id, uint32_t len)
{
	if (id >= v->nbufs || len > v->buf_size)
		protocol_error(v, "bad used element on receiveq (id, len)", id, len);
	v->held[v->nheld++] = (uint16_t)id;
	return v->bufs + id * v->buf_size;
}

uint8_t *rt_vnet_rx(struct rt_vnet *v, uint32_t *len)
{
	struct rt_vq *vq = &v->dev->vq[RT_VNET_RX_QUEUE];
	uint32_t id, n, total;
	uint16_t count;
	uint8_t *first;

	if (!rt_vq_get_used(vq, &id, &n))
		return NULL;
	v->nheld = 0;
	first = take(v, id, n);
	v->rx_frames++;
	count = n >= RT_VNET_HDR ? (uint16_t)(first[10] | first[11] << 8) : 1;
	if (!v->mrg || count <= 1) {
		*len = n;
		return first;
	}
	if (count > v->nbufs)
		protocol_error(v, "num_buffers larger than the ring (num_buffers, ring)", count,
		               v->nbufs);
	/* The device publishes a frame's buffers together; the rest follow at once. */
	rt_copy(gather, first, n);
	total = n;
	for (uint16_t k = 1; k < count; k++) {
		wait_used(v->dev, RT_VNET_RX_QUEUE, &id, &n);
		rt_copy(gather + total, take(v, id, n), n);
		total += n;
	}
	*len = total;
	return gather;
}

void rt_vnet_rx_done(struct rt_vnet *v)
{
	struct rt_vq *vq = &v->dev->vq[RT_VNET_RX_QUEUE];

	for (uint16_t k = 0; k < v->nheld; k++)
		vq->avail.ring[vq->avail_idx++ & (vq->size - 1)] = v->held[k];
	v->nheld = 0;
	__atomic_store_n(&vq->avail.idx, vq->avail_idx, __ATOMIC_RELEASE);
	/* The device asks for no notifies while it has buffers (VRING_USED_F_NO_NOTIFY). Read
	 * its flag only after the new index is visible: a device that ran dry turns the flag
	 * off and then looks at avail->idx again, so one of the two sees the other. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(__atomic_load_n(&vq->used.flags, __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY))
		rt_virtio_write(v->dev, VIRTIO_MMIO_QUEUE_NOTIFY, RT_VNET_RX_QUEUE);
}

void rt_vnet_tx(struct rt_vnet *v, const void *frame, uint32_t len)
{
	struct rt_vq_buf buf = {frame, len, false};
	uint16_t head = rt_vq_add(&v->dev->vq[RT_VNET_TX_QUEUE], &buf, 1, NULL);
	uint32_t id, n;

	rt_virtio_write(v->dev, VIRTIO_MMIO_QUEUE_NOTIFY, RT_VNET_TX_QUEUE);
	wait_used(v->dev, RT_VNET_TX_QUEUE, &id, &n);
	if (id != head)
		protocol_error(v, "transmitq returned another chain (id, expected)", id, head);
	v->tx_frames++;
}
