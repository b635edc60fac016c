#include "net.h"

#include <endian.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#include "snapshot/stream.h"
#include "vmm/log.h"

enum { RXQ = VIRTIO_NET_RXQ, TXQ = VIRTIO_NET_TXQ };

/* Frames handled per event before the loop serves its other sources (RX is level-triggered
 * and comes back; TX re-signals its own notify). */
#define RX_BUDGET 64
#define TX_BUDGET 256

#define NUM_BUFFERS_OFF ((uint64_t)offsetof(struct virtio_net_hdr_v1, num_buffers))

#define F(bit) (1ULL << (bit))

/* Log kinds that are not an errno (errnos are positive for reads, negative for writes). */
enum {
	KIND_TAP_FAILED = 100000,
	KIND_TOO_BIG,
	KIND_TX_MALFORMED,
	KIND_RX_MALFORMED,
	KIND_OFFLOAD,
};

enum rx_step { RX_NEXT, RX_STOP };

void virtio_net_random_mac(uint8_t mac[6])
{
	size_t got = 0;

	while (got < 6) {
		ssize_t r = getrandom(mac + got, 6 - got, 0);

		if (r > 0)
			got += (size_t)r;
		else if (r < 0 && errno != EINTR)
			break;
	}
	if (got < 6) {
		/* No entropy source at all: still unique enough per process for a test host. */
		uint32_t x = (uint32_t)getpid() * 2654435761u;

		for (size_t i = got; i < 6; i++, x = x * 1103515245u + 12345u)
			mac[i] = (uint8_t)(x >> 24);
	}
	mac[0] = 0x02; /* unicast, locally administered: 02:xx:xx:xx:xx:xx */
}

int virtio_net_init(struct virtio_net *n, int fd, const char *ifname, const uint8_t mac[6],
                    uint16_t mtu)
{
	memset(n, 0, sizeof(*n));
	n->tap_fd = fd;
	snprintf(n->ifname, sizeof(n->ifname), "%s", ifname ? ifname : "");
	memcpy(n->mac, mac, 6);
	n->mtu = mtu;
	n->bounce = malloc(VIRTIO_NET_BOUNCE);
	if (!n->bounce)
		return -1;
	memcpy(n->config.mac, mac, 6);
	n->config.status = htole16(VIRTIO_NET_S_LINK_UP);
	n->config.max_virtqueue_pairs = htole16(1);
	n->config.mtu = htole16(mtu);
	return 0;
}

int virtio_net_open(struct virtio_net *n, const char *ifname, const uint8_t mac[6],
                    struct error *err)
{
	uint16_t mtu = TAP_DEFAULT_MTU;
	int fd = tap_open(ifname, &mtu, err);

	memset(n, 0, sizeof(*n));
	n->tap_fd = -1;
	if (fd < 0)
		return -1;
	if (virtio_net_init(n, fd, ifname, mac, mtu)) {
		close(fd);
		n->tap_fd = -1;
		return err_set(err, "TAP '%s': out of memory", ifname);
	}
	n->tap_ioctls = true;
	return 0;
}

void virtio_net_close(struct virtio_net *n)
{
	if (n->tap_fd >= 0)
		close(n->tap_fd);
	n->tap_fd = -1;
	free(n->bounce);
	n->bounce = NULL;
}

uint64_t virtio_net_features(const struct virtio_net *n)
{
	(void)n;
	return F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_MTU) |
	       F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6) |
	       F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_MRG_RXBUF) |
	       F(VIRTIO_NET_F_STATUS) | F(VIRTIO_RING_F_INDIRECT_DESC);
}

void virtio_net_set_watch(struct virtio_net *n, virtio_net_watch_fn fn, void *ctx, uint64_t tag)
{
	n->watch = fn;
	n->watch_ctx = ctx;
	n->watch_tag = tag;
}

/* ---- helpers ------------------------------------------------------------------------ */

/* One log line per kind of problem for the device's life: a broken TAP must not flood the
 * log once per frame. The counters say how often it happened. */
static void __attribute__((format(printf, 3, 4)))
warn_once(struct virtio_net *n, int kind, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	size_t i;

	for (i = 0; i < sizeof(n->logged) / sizeof(n->logged[0]); i++) {
		if (n->logged[i] == kind)
			return;
		if (n->logged[i] == 0)
			break;
	}
	if (i == sizeof(n->logged) / sizeof(n->logged[0]))
		return; /* enough different problems reported already */
	n->logged[i] = kind;
	n->counters.warnings++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("%s (TAP %s): %s", n->t && n->t->name ? n->t->name : "net", n->ifname, msg);
}

static uint32_t wanted_events(const struct virtio_net *n)
{
	uint32_t ev = 0;

	if (!n->active || n->tap_failed || !virtio_mmio_running(n->t))
		return 0;
	if (n->t->vq[RXQ].ready && !n->rx_starved)
		ev |= EPOLLIN;
	if (n->tx_pending)
		ev |= EPOLLOUT;
	return ev;
}

/* Tell the event loop what the device waits for now. */
static void update_watch(struct virtio_net *n)
{
	uint32_t ev = wanted_events(n);

	if (ev == n->events)
		return;
	if (n->watch)
		n->watch(n->watch_ctx, n->tap_fd, n->watch_tag, n->events, ev);
	n->events = ev;
}

static void tap_fail(struct virtio_net *n, const char *what, int err)
{
	if (n->tap_failed)
		return;
	n->tap_failed = true;
	n->counters.tap_failures++;
	warn_once(n, KIND_TAP_FAILED,
	          "%s%s%s: the TAP is no longer polled and the guest's link is down; frames the "
	          "guest sends are dropped and counted (was the interface deleted?)",
	          what, err ? ": " : "", err ? strerror(err) : "");
	n->config.status = 0; /* link down */
	virtio_mmio_config_changed(n->t);
}

/* Mirror the driver's offloads onto the TAP before it is read again (VMM thread). */
static void sync_offloads(struct virtio_net *n)
{
	unsigned flags = n->offloads_wanted;

	if (flags == n->offloads)
		return;
	if (n->tap_ioctls && !n->tap_failed && tap_set_offload(n->tap_fd, flags) < 0)
		warn_once(n, KIND_OFFLOAD, "TUNSETOFFLOAD 0x%x: %s", flags, strerror(errno));
	n->offloads = flags; /* tried once per change */
}

static void push(struct virtio_net *n, unsigned q, uint16_t head, uint32_t len)
{
	if (virtq_push(&n->t->vq[q], n->t->gm, head, len))
		virtio_mmio_needs_reset(n->t); /* the used ring left guest RAM */
}

/* ---- receive ------------------------------------------------------------------------ */

static void put_num_buffers(struct virtio_net *n, const struct virtq_chain *c, uint16_t count)
{
	uint16_t le = htole16(count);

	virtq_chain_write(c, n->t->gm, NUM_BUFFERS_OFF, &le, sizeof(le));
}

/*
 * The next receive chain. While the device has buffers the driver need not notify
 * (VRING_USED_F_NO_NOTIFY); when the ring is empty notifications go back on, and the ring
 * is looked at once more, for a buffer added before the driver saw the flag.
 */
static bool rx_pop(struct virtio_net *n, struct virtq_chain *c)
{
	struct virtio_mmio *t = n->t;

	if (virtio_mmio_pop(t, RXQ, c))
		return true;
	virtq_set_notify(&t->vq[RXQ], t->gm, true);
	if (!virtio_mmio_pop(t, RXQ, c))
		return false;
	virtq_set_notify(&t->vq[RXQ], t->gm, false);
	return true;
}

static enum rx_step starve(struct virtio_net *n)
{
	if (!n->rx_starved)
		n->counters.rx_no_buffers++;
	n->rx_starved = true;
	return RX_STOP;
}

static void drop_too_big(struct virtio_net *n, uint64_t len)
{
	n->counters.rx_dropped_too_big++;
	warn_once(n, KIND_TOO_BIG,
	          "a %llu-byte frame does not fit the guest's receive buffers%s: dropped "
	          "(counted in rx_dropped_too_big)",
	          (unsigned long long)(len - VIRTIO_NET_HDR_BYTES),
	          n->mrg ? " (all of them)" : " (no MRG_RXBUF)");
}

static void rx_reset_frame(struct virtio_net *n)
{
	n->rx_nused = 0;
	n->rx_tail_off = n->rx_tail_len = 0;
	n->rx_held_descs = 0;
}

/* MRG_RXBUF: place the rest of a frame in more chains; publish all of them at once. */
static enum rx_step rx_continue(struct virtio_net *n, bool *used)
{
	struct virtio_mmio *t = n->t;
	struct virtq_chain *c = &n->rx_more;
	uint64_t total = 0;

	while (n->rx_tail_off < n->rx_tail_len) {
		uint64_t w;

		if (n->rx_nused == VIRTQ_MAX_SIZE || !rx_pop(n, c)) {
			/* Holding every descriptor of the ring: the guest cannot post more, so
			 * the frame can never fit. Give the buffers back empty. */
			if (n->rx_nused == VIRTQ_MAX_SIZE || n->rx_held_descs >= t->vq[RXQ].size) {
				drop_too_big(n, (uint64_t)n->rx_used[0].len + n->rx_tail_len);
				for (uint16_t i = 0; i < n->rx_nused; i++)
					push(n, RXQ, n->rx_used[i].head, 0);
				rx_reset_frame(n);
				*used = true;
				return RX_NEXT;
			}
			return starve(n);
		}
		n->rx_held_descs += c->nsegs;
		w = virtq_chain_write(c, t->gm, 0, n->bounce + n->rx_tail_off,
		                      n->rx_tail_len - n->rx_tail_off);
		if (w == 0) {
			/* Nothing writable: unusable, returned at once (before the frame). */
			t->bad_chains++;
			push(n, RXQ, c->head, 0);
			*used = true;
			continue;
		}
		n->rx_used[n->rx_nused].head = c->head;
		n->rx_used[n->rx_nused].len = (uint32_t)w;
		n->rx_nused++;
		n->rx_tail_off += (uint32_t)w;
	}
	put_num_buffers(n, &n->rx_chain, n->rx_nused);
	for (uint16_t i = 0; i < n->rx_nused; i++) {
		push(n, RXQ, n->rx_used[i].head, n->rx_used[i].len);
		total += n->rx_used[i].len;
	}
	n->counters.rx_packets++;
	n->counters.rx_bytes += total - VIRTIO_NET_HDR_BYTES;
	rx_reset_frame(n);
	*used = true;
	return RX_NEXT;
}

/* Read one frame from the TAP straight into the next chain, with the bounce buffer behind
 * it for whatever does not fit. */
static enum rx_step rx_one(struct virtio_net *n, bool *used)
{
	struct virtio_mmio *t = n->t;
	struct virtq_chain *c = &n->rx_chain;
	ssize_t r;
	int k;

	if (!n->rx_held) {
		if (!rx_pop(n, c))
			return starve(n);
		if (n->mrg && c->writable < VIRTIO_NET_HDR_BYTES) {
			/* No room for the header that carries num_buffers. */
			t->bad_chains++;
			push(n, RXQ, c->head, 0);
			*used = true;
			return RX_NEXT;
		}
		n->rx_held = true;
	}
	k = virtq_chain_iov(c, n->t->gm, true, 0, VIRTQ_ALL, n->iov);
	if (k < 0) {
		t->bad_chains++;
		push(n, RXQ, c->head, 0);
		n->rx_held = false;
		*used = true;
		return RX_NEXT;
	}
	n->iov[k].iov_base = n->bounce;
	n->iov[k].iov_len = VIRTIO_NET_BOUNCE;
	do
		r = readv(n->tap_fd, n->iov, k + 1);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return RX_STOP; /* the chain stays with the device for the next frame */
	if (r <= 0) {
		n->counters.rx_errors++;
		tap_fail(n, r < 0 ? "read" : "read: end of file", r < 0 ? errno : 0);
		return RX_STOP;
	}
	if ((uint64_t)r < VIRTIO_NET_HDR_BYTES) {
		n->counters.rx_errors++;
		warn_once(n, KIND_RX_MALFORMED, "a %zd-byte read has no virtio-net header: dropped",
		          r);
		return RX_NEXT;
	}
	if ((uint64_t)r <= c->writable) {
		put_num_buffers(n, c, 1);
		push(n, RXQ, c->head, (uint32_t)r);
		n->rx_held = false;
		n->counters.rx_packets++;
		n->counters.rx_bytes += (uint64_t)r - VIRTIO_NET_HDR_BYTES;
		*used = true;
		return RX_NEXT;
	}
	/* Bigger than the chain. A read that filled the bounce buffer too may be cut short. */
	if (!n->mrg || (uint64_t)r - c->writable >= VIRTIO_NET_BOUNCE) {
		drop_too_big(n, (uint64_t)r);
		return RX_NEXT; /* the chain is reused for the next frame */
	}
	n->rx_used[0].head = c->head;
	n->rx_used[0].len = (uint32_t)c->writable;
	n->rx_nused = 1;
	n->rx_held_descs = c->nsegs;
	n->rx_tail_off = 0;
	n->rx_tail_len = (uint32_t)((uint64_t)r - c->writable);
	n->rx_held = false; /* rx_chain is now the frame's first chain */
	return rx_continue(n, used);
}

static void rx_process(struct virtio_net *n)
{
	struct virtio_mmio *t = n->t;
	bool used = false;

	if (n->active)
		sync_offloads(n);

	for (unsigned budget = RX_BUDGET; budget; budget--) {
		if (!n->active || n->tap_failed || !virtio_mmio_running(t) || !t->vq[RXQ].ready)
			break;
		if ((n->rx_nused ? rx_continue(n, &used) : rx_one(n, &used)) == RX_STOP)
			break;
	}
	if (used)
		virtio_mmio_signal_used(t, RXQ);
	update_watch(n);
}

/* ---- transmit ----------------------------------------------------------------------- */

enum tx_result { TX_DONE, TX_AGAIN };

static enum tx_result tx_one(struct virtio_net *n)
{
	const struct virtq_chain *c = &n->tx_chain;
	int k = virtq_chain_iov(c, n->t->gm, false, 0, VIRTQ_ALL, n->iov);
	ssize_t r;

	if (k < 0 || c->readable < VIRTIO_NET_HDR_BYTES ||
	    c->readable > VIRTIO_NET_HDR_BYTES + VIRTIO_NET_FRAME_MAX) {
		n->counters.tx_malformed++;
		warn_once(n, KIND_TX_MALFORMED,
		          "the guest sent a %llu-byte chain (a frame needs a %d-byte header and "
		          "at most %d bytes): dropped",
		          (unsigned long long)c->readable, VIRTIO_NET_HDR_BYTES,
		          VIRTIO_NET_FRAME_MAX);
		return TX_DONE;
	}
	do
		r = writev(n->tap_fd, n->iov, k);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		n->counters.tx_blocked++;
		return TX_AGAIN;
	}
	if (r < 0) {
		n->counters.tx_errors++;
		warn_once(n, -errno, "write: %s: frames are dropped (counted in tx_errors)",
		          strerror(errno));
		return TX_DONE;
	}
	n->counters.tx_packets++;
	n->counters.tx_bytes += c->readable - VIRTIO_NET_HDR_BYTES;
	return TX_DONE;
}

static void tx_process(struct virtio_net *n)
{
	struct virtio_mmio *t = n->t;
	unsigned budget = TX_BUDGET;
	bool used = false;

	while (n->active && virtio_mmio_running(t) && t->vq[TXQ].ready) {
		if (!n->tx_pending && (!budget || !virtio_mmio_pop(t, TXQ, &n->tx_chain)))
			break;
		n->tx_pending = false;
		if (tx_one(n) == TX_AGAIN) {
			n->tx_pending = true; /* retried on EPOLLOUT */
			break;
		}
		push(n, TXQ, n->tx_chain.head, 0);
		used = true;
		budget--;
	}
	if (!budget && t->notify_fd[TXQ] >= 0) {
		/* More may be waiting: come back after the loop served the others. */
		uint64_t one = 1;

		if (write(t->notify_fd[TXQ], &one, sizeof(one)) < 0) {
			/* the eventfd is already signalled */
		}
	}
	if (used)
		virtio_mmio_signal_used(t, TXQ);
	update_watch(n);
}

/* ---- events ------------------------------------------------------------------------- */

void virtio_net_tap_event(struct virtio_net *n, uint32_t events)
{
	pthread_mutex_lock(&n->t->lock);
	if (n->active && !n->tap_failed && virtio_mmio_running(n->t)) {
		if (events & EPOLLOUT)
			tx_process(n);
		if (events & EPOLLIN)
			rx_process(n);
		/* After the reads: an error or hang-up with nothing left to read. */
		if ((events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN) && !n->tap_failed) {
			n->counters.rx_errors++;
			tap_fail(n, events & EPOLLHUP ? "hang-up" : "error reported by poll", 0);
		}
	}
	update_watch(n);
	pthread_mutex_unlock(&n->t->lock);
}

static void net_queue_notify(struct virtio_mmio *t, unsigned q)
{
	struct virtio_net *n = t->dev;

	if (!n->active)
		return;
	if (q == TXQ) {
		tx_process(n);
	} else if (q == RXQ) {
		/* New buffers: read the TAP again; no more notifies while they last. */
		n->rx_starved = false;
		virtq_set_notify(&t->vq[RXQ], t->gm, false);
		rx_process(n);
	}
}

static void net_config_read(struct virtio_mmio *t, uint32_t offset, uint8_t *data, uint32_t size)
{
	const struct virtio_net *n = t->dev;

	if ((uint64_t)offset + size > sizeof(n->config)) {
		memset(data, 0, size);
		return;
	}
	memcpy(data, (const uint8_t *)&n->config + offset, size);
}

/*
 * DRIVER_OK and reset arrive on a vCPU thread: they only change state. The VMM thread applies
 * it: activation signals queue 0's notify (so reception starts from the loop, where the
 * offloads are set and the TAP is watched); after a reset the TAP leaves the loop at its
 * next event, and the next activation sets the offloads again before any read.
 */
static void arm(struct virtio_net *n)
{
	struct virtio_mmio *t = n->t;
	uint64_t f = t->driver_features;
	unsigned off = 0;
	uint64_t one = 1;

	n->mrg = f & F(VIRTIO_NET_F_MRG_RXBUF);
	/* What the guest accepts from the TAP; segmentation only on top of checksums. */
	if (f & F(VIRTIO_NET_F_GUEST_CSUM)) {
		off |= TUN_F_CSUM;
		if (f & F(VIRTIO_NET_F_GUEST_TSO4))
			off |= TUN_F_TSO4;
		if (f & F(VIRTIO_NET_F_GUEST_TSO6))
			off |= TUN_F_TSO6;
	}
	n->offloads_wanted = off;
	n->rx_starved = false;
	n->active = true;
	if (t->notify_fd[RXQ] >= 0 && write(t->notify_fd[RXQ], &one, sizeof(one)) < 0) {
		/* already signalled */
	}
}

static void net_activate(struct virtio_mmio *t)
{
	struct virtio_net *n = t->dev;

	rx_reset_frame(n);
	n->rx_held = n->tx_pending = false;
	arm(n);
}

static void net_reset(struct virtio_mmio *t)
{
	struct virtio_net *n = t->dev;

	/* Chains the device held belong to the old rings: forget them. */
	n->active = false;
	n->mrg = false;
	rx_reset_frame(n);
	n->rx_held = n->tx_pending = false;
	n->rx_starved = false;
}

/* ---- snapshots -------------------------------------------------------------------------- */

#define TAG_VNET SNAP_TAG('V', 'N', 'E', 'T')
#define MIN_MTU  68 /* Linux's ETH_MIN_MTU */

/* What the device holds on receiveq: nothing, a chain for the next frame, or a frame spread
 * over several chains (MRG_RXBUF) waiting for more buffers. */
enum { RX_IDLE, RX_HELD, RX_FRAME };

int virtio_net_save(const struct virtio_net *n, struct snap_w *w)
{
	struct virtio_mmio *t = n->t;
	uint8_t rx = n->rx_nused ? RX_FRAME : n->rx_held ? RX_HELD : RX_IDLE;
	size_t at;

	pthread_mutex_lock(&t->lock);
	at = snap_begin(w, TAG_VNET);
	snap_bytes(w, n->mac, sizeof(n->mac));
	snap_u16(w, le16toh(n->config.mtu));
	snap_bool(w, le16toh(n->config.status) & VIRTIO_NET_S_LINK_UP);
	snap_u8(w, rx);
	if (rx != RX_IDLE)
		virtq_chain_save(&n->rx_chain, w);
	if (rx == RX_FRAME) {
		snap_u16(w, n->rx_nused);
		for (uint16_t i = 0; i < n->rx_nused; i++) {
			snap_u16(w, n->rx_used[i].head);
			snap_u32(w, n->rx_used[i].len);
		}
		snap_u32(w, n->rx_held_descs);
		snap_u32(w, n->rx_tail_off);
		snap_u32(w, n->rx_tail_len);
		snap_bytes(w, n->bounce + n->rx_tail_off, n->rx_tail_len - n->rx_tail_off);
	}
	snap_bool(w, n->tx_pending);
	if (n->tx_pending)
		virtq_chain_save(&n->tx_chain, w);
	snap_end(w, at);
	pthread_mutex_unlock(&t->lock);
	return w->failed ? -1 : 0;
}

/* The frame in progress (RX_FRAME), after rx_chain: the chains filled so far (rx_chain
 * first, with all its room), and the bytes still to place. */
static int restore_frame(struct virtio_net *n, struct snap_r *sec, struct error *err)
{
	const struct virtq *rxq = &n->t->vq[RXQ];
	uint64_t placed = 0;

	if (!n->mrg || n->rx_chain.writable < VIRTIO_NET_HDR_BYTES)
		return snap_bad(sec, err, "receive state (a spread frame without MRG_RXBUF)");
	if (!snap_get_u16(sec, &n->rx_nused) || n->rx_nused == 0 || n->rx_nused > VIRTQ_MAX_SIZE)
		return snap_bad(sec, err, "receive chain count");
	for (uint16_t i = 0; i < n->rx_nused; i++) {
		uint16_t head;
		uint32_t len;

		if (!snap_get_u16(sec, &head) || !snap_get_u32(sec, &len) ||
		    (i == 0 &&
		     (head != n->rx_chain.head || len != (uint32_t)n->rx_chain.writable)) ||
		    (i > 0 && (head >= rxq->size || len == 0)))
			return snap_bad(sec, err, "filled receive chain");
		n->rx_used[i].head = head;
		n->rx_used[i].len = len;
		if (i > 0)
			placed += len;
	}
	if (!snap_get_u32(sec, &n->rx_held_descs) || n->rx_held_descs < n->rx_nused)
		return snap_bad(sec, err, "held descriptor count");
	if (!snap_get_u32(sec, &n->rx_tail_off) || !snap_get_u32(sec, &n->rx_tail_len) ||
	    n->rx_tail_off != placed || n->rx_tail_off >= n->rx_tail_len ||
	    n->rx_tail_len >= VIRTIO_NET_BOUNCE ||
	    !snap_get_bytes(sec, n->bounce + n->rx_tail_off, n->rx_tail_len - n->rx_tail_off))
		return snap_bad(sec, err, "frame rest");
	return 0;
}

static int restore_locked(struct virtio_net *n, struct snap_r *sec, struct error *err)
{
	struct virtio_mmio *t = n->t;
	bool active = t->status & VIRTIO_CONFIG_S_DRIVER_OK, link;
	uint8_t mac[6], rx;
	uint16_t mtu;

	if (!snap_get_bytes(sec, mac, sizeof(mac)))
		return snap_bad(sec, err, "MAC");
	if (memcmp(mac, n->mac, sizeof(mac)))
		return err_set(err,
		               "snapshot: %s: MAC %02x:%02x:%02x:%02x:%02x:%02x in the state, but "
		               "%02x:%02x:%02x:%02x:%02x:%02x in the configuration",
		               t->name ? t->name : "net", mac[0], mac[1], mac[2], mac[3], mac[4],
		               mac[5], n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4],
		               n->mac[5]);
	if (!snap_get_u16(sec, &mtu) || mtu < MIN_MTU)
		return snap_bad(sec, err, "MTU");
	if (!snap_get_bool(sec, &link))
		return snap_bad(sec, err, "link status");
	/* As DRIVER_OK left them (arm); held chains need them. */
	n->mrg = active && (t->driver_features & F(VIRTIO_NET_F_MRG_RXBUF));
	/* Chains are held only while active (activation and reset forget them). */
	if (!snap_get_u8(sec, &rx) || rx > RX_FRAME || (rx != RX_IDLE && !active))
		return snap_bad(sec, err, "receive state");
	if (rx != RX_IDLE &&
	    virtq_chain_restore(&n->rx_chain, &t->vq[RXQ], t->gm, "receive chain", sec, err))
		return -1;
	if (rx == RX_FRAME && restore_frame(n, sec, err))
		return -1;
	if (!snap_get_bool(sec, &n->tx_pending) || (n->tx_pending && !active))
		return snap_bad(sec, err, "transmit state");
	if (n->tx_pending &&
	    virtq_chain_restore(&n->tx_chain, &t->vq[TXQ], t->gm, "transmit chain", sec, err))
		return -1;
	/* Every chain taken and not yet used is one of these. */
	if (virtq_in_flight(&t->vq[RXQ]) != (rx == RX_HELD) + n->rx_nused ||
	    virtq_in_flight(&t->vq[TXQ]) != n->tx_pending)
		return snap_bad(sec, err, "queue indices (chains in flight)");
	if (snap_section_done(sec, err))
		return -1;

	n->rx_held = rx == RX_HELD;
	if (mtu != n->mtu)
		log_warn("%s: the guest keeps the MTU %u it was saved with; TAP %s has %u",
		         t->name ? t->name : "net", mtu, n->ifname, n->mtu);
	n->config.mtu = htole16(mtu);
	/* A new TAP: its link is up. The guest saw it down (the old TAP failed): tell it. */
	n->config.status = htole16(VIRTIO_NET_S_LINK_UP);
	if (!link)
		virtio_mmio_config_changed(t);
	/* The new TAP has no offloads and is in no event loop yet: as after DRIVER_OK. */
	if (active)
		arm(n);
	return 0;
}

int virtio_net_restore(struct virtio_net *n, struct snap_r *r, struct error *err)
{
	struct snap_r sec;
	int ret;

	if (snap_section(r, TAG_VNET, &sec, err))
		return -1;
	pthread_mutex_lock(&n->t->lock);
	/* From a reset-like state: a failure below leaves nothing held. */
	rx_reset_frame(n);
	n->rx_held = n->tx_pending = false;
	ret = restore_locked(n, &sec, err);
	if (ret) {
		rx_reset_frame(n);
		n->rx_held = n->tx_pending = false;
	}
	pthread_mutex_unlock(&n->t->lock);
	return ret;
}

const struct virtio_dev_ops virtio_net_ops = {
    .queue_notify = net_queue_notify,
    .config_read = net_config_read,
    .config_write = NULL, /* nothing is writable (no CTRL_MAC_ADDR) */
    .reset = net_reset,
    .activate = net_activate,
};
