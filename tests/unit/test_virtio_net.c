/*
 * virtio-net (virtio/net.c) on a fake TAP: one end of a non-blocking AF_UNIX SOCK_SEQPACKET
 * socketpair is the device's fd (one frame per read and write, like a TAP with
 * IFF_VNET_HDR; closing the other end is a hang-up), the test holds the other end as "the
 * host". The split virtqueues are built by
 * hand in a fake guest memory; the transport is filled by hand (no eventfds: irq_fd = -1 and
 * notify_fd = -1), and the event loop is a callback that records what the device watches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <linux/if_tun.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "virtio/mmio.h"
#include "virtio/net.h"
#include "vmm/guest_memory.h"

#define MEM_SIZE (4u << 20)
#define QSIZE    8
#define RXQ      VIRTIO_NET_RXQ
#define TXQ      VIRTIO_NET_TXQ
#define HDR      VIRTIO_NET_HDR_BYTES
#define BUF_GPA  0x100000 /* buffer k at BUF_GPA + 0x10000 * k */

static const uint64_t ring_gpa[2][3] = {
    {0x1000, 0x2000, 0x3000}, /* receiveq: desc, avail, used */
    {0x4000, 0x5000, 0x6000}, /* transmitq */
};

static const uint8_t test_mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};

struct fixture {
	uint8_t *mem;
	struct guest_memory gm;
	struct virtio_mmio t;
	struct virtio_net n;
	int peer; /* the host's end of the fake TAP */
	unsigned watch_calls;
	uint32_t watched; /* what the loop watches now */
	uint16_t next_desc[2], avail_idx[2], used_seen[2];
	unsigned next_buf;
};

/* The event loop: the device must always report the previous state correctly. */
static void watch(void *ctx, int fd, uint64_t tag, uint32_t old_events, uint32_t new_events)
{
	struct fixture *f = ctx;

	assert_int_equal(fd, f->n.tap_fd);
	assert_int_equal(tag, 42);
	assert_int_equal(old_events, f->watched);
	assert_int_not_equal(old_events, new_events);
	f->watched = new_events;
	f->watch_calls++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct virtio_mmio *t;
	int sv[2];

	assert_non_null(f);
	f->mem = calloc(1, MEM_SIZE);
	assert_non_null(f->mem);
	gm_wrap(&f->gm, f->mem, MEM_SIZE);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
	                 0);
	f->peer = sv[1];
	assert_int_equal(virtio_net_init(&f->n, sv[0], "faketap", test_mac, 1500), 0);
	virtio_net_set_watch(&f->n, watch, f, 42);

	t = &f->t;
	pthread_mutex_init(&t->lock, NULL);
	t->name = "net0";
	t->device_id = VIRTIO_ID_NET;
	t->device_features = virtio_net_features(&f->n) | (1ULL << VIRTIO_F_VERSION_1);
	t->config_size = VIRTIO_NET_CONFIG_SIZE;
	t->nqueues = VIRTIO_NET_QUEUES;
	t->queue_max = QSIZE;
	t->ops = &virtio_net_ops;
	t->dev = &f->n;
	t->gm = &f->gm;
	t->irq_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		t->notify_fd[q] = -1;
	for (unsigned q = 0; q < 2; q++) {
		t->vq[q].size = QSIZE;
		t->vq[q].desc_gpa = ring_gpa[q][0];
		t->vq[q].avail_gpa = ring_gpa[q][1];
		t->vq[q].used_gpa = ring_gpa[q][2];
		assert_true(virtq_layout_ok(&t->vq[q], &f->gm));
		t->vq[q].ready = true;
	}
	f->n.t = t;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtio_net_close(&f->n);
	if (f->peer >= 0)
		close(f->peer);
	free(f->mem);
	free(f);
	return 0;
}

/* The driver negotiates `features` (VERSION_1 added) and sets DRIVER_OK. */
static void activate(struct fixture *f, uint64_t features)
{
	f->t.driver_features = features | (1ULL << VIRTIO_F_VERSION_1);
	f->t.status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	              VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	virtio_net_ops.activate(&f->t);
}

/* ---- a tiny driver ---- */

static uint64_t new_buf(struct fixture *f)
{
	return BUF_GPA + 0x10000ULL * f->next_buf++;
}

/* Publish a chain of `n` buffers (gpa, len) on queue q; device_writes for receive buffers. */
static uint16_t post(struct fixture *f, unsigned q, const uint64_t *gpa, const uint32_t *len,
                     unsigned n, bool device_writes)
{
	uint16_t head = f->next_desc[q], idx;

	for (unsigned i = 0; i < n; i++) {
		uint16_t d = (uint16_t)((head + i) % QSIZE);
		struct vring_desc desc = {
		    .addr = gpa[i],
		    .len = len[i],
		    .flags = (uint16_t)((device_writes ? VRING_DESC_F_WRITE : 0) |
		                        (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
		    .next = (uint16_t)((d + 1) % QSIZE),
		};

		assert_int_equal(gm_write(&f->gm, ring_gpa[q][0] + 16ULL * d, &desc, 16), 0);
	}
	f->next_desc[q] = (uint16_t)((head + n) % QSIZE);
	assert_int_equal(
	    gm_write(&f->gm, ring_gpa[q][1] + 4 + 2ULL * (f->avail_idx[q] % QSIZE), &head, 2), 0);
	idx = ++f->avail_idx[q];
	assert_int_equal(gm_write(&f->gm, ring_gpa[q][1] + 2, &idx, 2), 0);
	return head;
}

/* One receive buffer of `len` bytes; returns its head. */
static uint16_t post_rx(struct fixture *f, uint32_t len, uint64_t *gpa_out)
{
	uint64_t gpa = new_buf(f);

	if (gpa_out)
		*gpa_out = gpa;
	return post(f, RXQ, &gpa, &len, 1, true);
}

static void notify(struct fixture *f, unsigned q)
{
	virtio_net_ops.queue_notify(&f->t, q);
}

static bool next_used(struct fixture *f, unsigned q, uint32_t *id, uint32_t *len)
{
	struct vring_used_elem e;
	uint16_t idx;

	assert_int_equal(gm_read(&f->gm, ring_gpa[q][2] + 2, &idx, 2), 0);
	if (idx == f->used_seen[q])
		return false;
	assert_int_equal(
	    gm_read(&f->gm, ring_gpa[q][2] + 4 + 8ULL * (f->used_seen[q] % QSIZE), &e, sizeof(e)),
	    0);
	f->used_seen[q]++;
	*id = e.id;
	*len = e.len;
	return true;
}

/* A frame as the TAP hands it over: a virtio-net header, then `n` bytes of pattern. */
static size_t make_frame(uint8_t *buf, size_t n, uint8_t seed)
{
	memset(buf, 0, HDR);
	buf[0] = VIRTIO_NET_HDR_F_DATA_VALID;
	buf[10] = 0xee; /* num_buffers: the device must overwrite it */
	buf[11] = 0xee;
	for (size_t i = 0; i < n; i++)
		buf[HDR + i] = (uint8_t)(seed + i * 7);
	return HDR + n;
}

static void host_send(struct fixture *f, const uint8_t *frame, size_t len)
{
	assert_int_equal(write(f->peer, frame, len), (ssize_t)len);
}

static void tap_ready(struct fixture *f, uint32_t events)
{
	virtio_net_tap_event(&f->n, events);
}

/* receiveq's used->flags: VRING_USED_F_NO_NOTIFY while the device has buffers. */
static uint16_t rx_used_flags(struct fixture *f)
{
	uint16_t v;

	assert_int_equal(gm_read(&f->gm, ring_gpa[RXQ][2], &v, 2), 0);
	return v;
}

static uint16_t num_buffers_at(struct fixture *f, uint64_t gpa)
{
	uint16_t v;

	assert_int_equal(gm_read(&f->gm, gpa + 10, &v, 2), 0);
	return v;
}

/* ---- configuration ---- */

static void test_features_and_config(void **state)
{
	struct fixture *f = *state;
	uint64_t feat = virtio_net_features(&f->n);
	uint8_t cfg[VIRTIO_NET_CONFIG_SIZE];

	assert_int_equal(VIRTIO_NET_CONFIG_SIZE, 12);
	for (unsigned bit = 0; bit < 64; bit++) {
		bool want = bit == VIRTIO_NET_F_CSUM || bit == VIRTIO_NET_F_GUEST_CSUM ||
		            bit == VIRTIO_NET_F_MTU || bit == VIRTIO_NET_F_MAC ||
		            bit == VIRTIO_NET_F_GUEST_TSO4 || bit == VIRTIO_NET_F_GUEST_TSO6 ||
		            bit == VIRTIO_NET_F_HOST_TSO4 || bit == VIRTIO_NET_F_HOST_TSO6 ||
		            bit == VIRTIO_NET_F_MRG_RXBUF || bit == VIRTIO_NET_F_STATUS ||
		            bit == VIRTIO_RING_F_INDIRECT_DESC;

		assert_int_equal(!!(feat & (1ULL << bit)), want);
	}
	for (uint32_t off = 0; off < sizeof(cfg); off++)
		virtio_net_ops.config_read(&f->t, off, &cfg[off], 1);
	assert_memory_equal(cfg, test_mac, 6);
	assert_int_equal(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
	assert_int_equal(cfg[8] | cfg[9] << 8, 1);      /* one queue pair */
	assert_int_equal(cfg[10] | cfg[11] << 8, 1500); /* mtu */
	/* Nothing is watched before DRIVER_OK. */
	assert_int_equal(f->watch_calls, 0);
}

static void test_random_mac(void **state)
{
	uint8_t a[6], b[6];

	(void)state;
	virtio_net_random_mac(a);
	virtio_net_random_mac(b);
	assert_int_equal(a[0], 0x02);
	assert_int_equal(b[0], 0x02);
	assert_memory_not_equal(a + 1, b + 1, 5);
}

static void test_offloads_follow_the_driver(void **state)
{
	struct fixture *f = *state;

	activate(f, (1ULL << VIRTIO_NET_F_GUEST_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_TSO4) |
	                (1ULL << VIRTIO_NET_F_GUEST_TSO6));
	assert_int_equal(f->n.offloads_wanted, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
	assert_int_equal(f->n.offloads, 0); /* applied by the VMM thread, before reading */
	notify(f, RXQ);
	assert_int_equal(f->n.offloads, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
	virtio_net_ops.reset(&f->t);
	/* Segmentation without checksums is never asked of the TAP. */
	activate(f, (1ULL << VIRTIO_NET_F_GUEST_TSO4));
	assert_int_equal(f->n.offloads_wanted, 0);
	notify(f, RXQ);
	assert_int_equal(f->n.offloads, 0);
}

/* ---- transmit ---- */

static void test_tx_frame_from_several_buffers(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[600], got[2000];
	uint64_t gpa[3] = {new_buf(f), new_buf(f), new_buf(f)};
	uint32_t len[3] = {HDR, 100, 500 - 12}, id, ulen;
	size_t n = make_frame(frame, 600 - HDR, 3);
	uint16_t head;

	activate(f, 0);
	/* header | 100 bytes | the rest, each in its own buffer */
	assert_int_equal(gm_write(&f->gm, gpa[0], frame, HDR), 0);
	assert_int_equal(gm_write(&f->gm, gpa[1], frame + HDR, 100), 0);
	len[2] = (uint32_t)(n - HDR - 100);
	assert_int_equal(gm_write(&f->gm, gpa[2], frame + HDR + 100, len[2]), 0);
	head = post(f, TXQ, gpa, len, 3, false);
	notify(f, TXQ);
	assert_true(next_used(f, TXQ, &id, &ulen));
	assert_int_equal(id, head);
	assert_int_equal(ulen, 0);
	assert_int_equal(read(f->peer, got, sizeof(got)), (ssize_t)n);
	assert_memory_equal(got, frame, n);
	assert_int_equal(f->n.counters.tx_packets, 1);
	assert_int_equal(f->n.counters.tx_bytes, n - HDR);
}

static void test_tx_malformed_chain_is_dropped(void **state)
{
	struct fixture *f = *state;
	uint64_t gpa = new_buf(f);
	uint32_t len = HDR - 1, id, ulen;
	uint8_t got[64];
	uint16_t head;

	activate(f, 0);
	head = post(f, TXQ, &gpa, &len, 1, false);
	notify(f, TXQ);
	assert_true(next_used(f, TXQ, &id, &ulen)); /* completed all the same */
	assert_int_equal(id, head);
	assert_int_equal(f->n.counters.tx_malformed, 1);
	assert_int_equal(f->n.counters.tx_packets, 0);
	assert_int_equal(read(f->peer, got, sizeof(got)), -1);
	assert_int_equal(errno, EAGAIN);
}

static void test_tx_would_block_keeps_the_chain(void **state)
{
	struct fixture *f = *state;
	int sndbuf = 1; /* the kernel's minimum */
	uint8_t frame[1500], got[2000];
	unsigned sent = 0, drained = 0, rounds = 0;
	uint32_t id, ulen;

	assert_int_equal(setsockopt(f->n.tap_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)),
	                 0);
	activate(f, 0);
	for (unsigned k = 0; k < QSIZE; k++) {
		uint64_t gpa = new_buf(f);
		uint32_t len = (uint32_t)make_frame(frame, sizeof(frame) - HDR, (uint8_t)k);

		assert_int_equal(gm_write(&f->gm, gpa, frame, len), 0);
		post(f, TXQ, &gpa, &len, 1, false);
	}
	notify(f, TXQ);
	while (next_used(f, TXQ, &id, &ulen))
		sent++;
	/* The socket filled up: the rest waits, nothing is lost, the loop watches EPOLLOUT. */
	assert_true(sent < QSIZE);
	assert_true(f->n.tx_pending);
	assert_int_equal(f->watched & EPOLLOUT, EPOLLOUT);
	assert_true(f->n.counters.tx_blocked >= 1);
	while (drained < QSIZE) {
		ssize_t r = read(f->peer, got, sizeof(got));

		if (r < 0) {
			assert_int_equal(errno, EAGAIN);
			assert_true(++rounds < 100);
			tap_ready(f, EPOLLOUT); /* writable again */
			while (next_used(f, TXQ, &id, &ulen))
				sent++;
			continue;
		}
		assert_int_equal(r, sizeof(frame));
		assert_int_equal(got[HDR], (uint8_t)drained); /* in order */
		drained++;
	}
	assert_int_equal(sent, QSIZE);
	assert_false(f->n.tx_pending);
	assert_int_equal(f->watched & EPOLLOUT, 0);
	assert_int_equal(f->n.counters.tx_packets, QSIZE);
}

static void test_tx_errors_are_counted_and_logged_once(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[100];
	uint32_t id, ulen;

	activate(f, 0);
	close(f->peer); /* writes now fail (EPIPE) */
	f->peer = -1;
	for (unsigned k = 0; k < 3; k++) {
		uint64_t gpa = new_buf(f);
		uint32_t len = (uint32_t)make_frame(frame, sizeof(frame) - HDR, 1);

		assert_int_equal(gm_write(&f->gm, gpa, frame, len), 0);
		post(f, TXQ, &gpa, &len, 1, false);
		notify(f, TXQ);
		assert_true(next_used(f, TXQ, &id, &ulen)); /* the guest never waits */
	}
	assert_int_equal(f->n.counters.tx_errors, 3);
	assert_int_equal(f->n.counters.tx_packets, 0);
	assert_int_equal(f->n.counters.warnings, 1);
}

/* ---- receive ---- */

static void test_rx_waits_for_buffers(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[200];
	uint64_t gpa;
	uint32_t id, len;
	size_t n = make_frame(frame, 150, 9);
	uint16_t head;

	activate(f, 0);
	assert_int_equal(f->watch_calls, 0); /* DRIVER_OK only signals the VMM thread */
	notify(f, RXQ);                      /* that signal: no buffers yet */
	assert_int_equal(f->watched, 0);
	assert_int_equal(f->n.counters.rx_no_buffers, 1);
	assert_int_equal(rx_used_flags(f), 0); /* the driver must notify */
	host_send(f, frame, n);
	head = post_rx(f, 1526, &gpa);
	notify(f, RXQ); /* buffers: read at once */
	assert_true(next_used(f, RXQ, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(len, n);
	assert_int_equal(num_buffers_at(f, gpa), 1);
	{
		uint8_t got[200];

		assert_int_equal(gm_read(&f->gm, gpa, got, n), 0);
		got[10] = got[11] = 0xee;
		assert_memory_equal(got, frame, n);
	}
	/* The ring is empty again: the TAP leaves the loop until the next notify. */
	assert_int_equal(f->watched, 0);
	assert_int_equal(f->n.counters.rx_no_buffers, 2);
	post_rx(f, 1526, NULL);
	post_rx(f, 1526, NULL);
	notify(f, RXQ);
	assert_int_equal(f->watched, EPOLLIN); /* nothing to read: wait for the TAP */
	assert_int_equal(rx_used_flags(f), VRING_USED_F_NO_NOTIFY); /* it has buffers */
	host_send(f, frame, n);
	tap_ready(f, EPOLLIN);
	assert_true(next_used(f, RXQ, &id, &len));
	assert_int_equal(rx_used_flags(f), VRING_USED_F_NO_NOTIFY); /* one buffer left */
	/* A buffer the driver adds without a notify (it saw NO_NOTIFY) is used all the same. */
	post_rx(f, 1526, NULL);
	host_send(f, frame, n);
	host_send(f, frame, n);
	tap_ready(f, EPOLLIN);
	assert_true(next_used(f, RXQ, &id, &len));
	assert_true(next_used(f, RXQ, &id, &len));
	assert_int_equal(f->n.counters.rx_packets, 4);
	assert_int_equal(f->n.counters.rx_bytes, 4 * (n - HDR));
	assert_int_equal(rx_used_flags(f), 0); /* dry again: the driver must notify */
	assert_int_equal(f->watched, 0);
}

static void test_rx_too_big_without_mrg_is_dropped(void **state)
{
	struct fixture *f = *state;
	uint8_t big[300], small[60], got[64];
	size_t nb = make_frame(big, 200, 1), ns = make_frame(small, 40, 2);
	uint64_t gpa;
	uint32_t id, len;
	uint16_t head;

	activate(f, 0);
	head = post_rx(f, 64, &gpa);
	notify(f, RXQ);
	host_send(f, big, nb);
	host_send(f, small, ns);
	tap_ready(f, EPOLLIN);
	/* The big one is dropped, never truncated; the small one lands in the same buffer. */
	assert_true(next_used(f, RXQ, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(len, ns);
	assert_int_equal(gm_read(&f->gm, gpa + HDR, got, ns - HDR), 0);
	assert_memory_equal(got, small + HDR, ns - HDR);
	assert_false(next_used(f, RXQ, &id, &len));
	assert_int_equal(f->n.counters.rx_dropped_too_big, 1);
	assert_int_equal(f->n.counters.rx_packets, 1);
	host_send(f, big, nb);
	post_rx(f, 64, NULL);
	notify(f, RXQ);
	assert_int_equal(f->n.counters.rx_dropped_too_big, 2);
	assert_int_equal(f->n.counters.warnings, 1); /* logged once */
}

static void test_rx_mrg_spreads_a_frame(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[200], got[200];
	size_t n = make_frame(frame, 100, 5); /* 112 bytes: four 32-byte buffers */
	uint64_t gpa[4];
	uint16_t head[4];
	uint32_t id, len, at = 0;

	activate(f, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
	for (int i = 0; i < 2; i++)
		head[i] = post_rx(f, 32, &gpa[i]);
	notify(f, RXQ);
	host_send(f, frame, n);
	tap_ready(f, EPOLLIN);
	/* Two buffers are not enough: nothing is published, the device waits for more. */
	assert_false(next_used(f, RXQ, &id, &len));
	assert_int_equal(f->watched, 0);
	for (int i = 2; i < 4; i++)
		head[i] = post_rx(f, 32, &gpa[i]);
	notify(f, RXQ);
	for (int i = 0; i < 4; i++) {
		assert_true(next_used(f, RXQ, &id, &len));
		assert_int_equal(id, head[i]);
		assert_int_equal(len, i < 3 ? 32 : n - 96);
		assert_int_equal(gm_read(&f->gm, gpa[i], got + at, len), 0);
		at += len;
	}
	assert_int_equal(at, n);
	assert_int_equal(got[10] | got[11] << 8, 4); /* num_buffers */
	got[10] = got[11] = 0xee;
	assert_memory_equal(got, frame, n);
	assert_int_equal(f->n.counters.rx_packets, 1);
	assert_int_equal(f->n.counters.rx_dropped_too_big, 0);
}

static void test_rx_mrg_frame_larger_than_the_ring_is_dropped(void **state)
{
	struct fixture *f = *state;
	uint8_t big[400], small[64];
	size_t nb = make_frame(big, 300, 1), ns = make_frame(small, 30, 2);
	uint32_t id, len, zero = 0;

	activate(f, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
	for (int i = 0; i < QSIZE; i++) /* 8 x 32 bytes: a 312-byte frame never fits */
		post_rx(f, 32, NULL);
	notify(f, RXQ);
	host_send(f, big, nb);
	host_send(f, small, ns);
	tap_ready(f, EPOLLIN);
	/* Every buffer comes back empty, then the small frame goes into the next ones... */
	for (int i = 0; i < QSIZE; i++) {
		assert_true(next_used(f, RXQ, &id, &len));
		assert_int_equal(len, zero);
	}
	assert_int_equal(f->n.counters.rx_dropped_too_big, 1);
	/* ...once the guest gives buffers again. */
	for (int i = 0; i < 2; i++)
		post_rx(f, 32, NULL);
	notify(f, RXQ);
	assert_true(next_used(f, RXQ, &id, &len));
	assert_int_equal(len, 32);
	assert_true(next_used(f, RXQ, &id, &len));
	assert_int_equal(len, ns - 32);
	assert_int_equal(f->n.counters.rx_packets, 1);
}

static void test_tap_failure_stops_polling(void **state)
{
	struct fixture *f = *state;
	uint8_t cfg[2];
	uint32_t gen;

	activate(f, 0);
	post_rx(f, 1526, NULL);
	notify(f, RXQ);
	assert_int_equal(f->watched, EPOLLIN);
	gen = f->t.config_generation;
	close(f->peer); /* the fake TAP hangs up: reads return 0 */
	f->peer = -1;
	tap_ready(f, EPOLLIN | EPOLLHUP);
	assert_true(f->n.tap_failed);
	assert_int_equal(f->watched, 0); /* out of the loop for good */
	assert_int_equal(f->n.counters.tap_failures, 1);
	assert_int_equal(f->n.counters.rx_errors, 1);
	virtio_net_ops.config_read(&f->t, 6, cfg, 2);
	assert_int_equal(cfg[0] | cfg[1] << 8, 0); /* link down */
	assert_int_equal(f->t.config_generation, gen + 1);
	/* Further events and notifies change nothing and log nothing more. */
	tap_ready(f, EPOLLERR);
	notify(f, RXQ);
	assert_int_equal(f->watched, 0);
	assert_int_equal(f->n.counters.tap_failures, 1);
	assert_int_equal(f->n.counters.warnings, 1);
}

static void test_error_event_without_data_fails_the_tap(void **state)
{
	struct fixture *f = *state;

	activate(f, 0);
	post_rx(f, 1526, NULL);
	notify(f, RXQ);
	tap_ready(f, EPOLLERR); /* a deleted TAP reports EPOLLERR only */
	assert_true(f->n.tap_failed);
	assert_int_equal(f->watched, 0);
}

static void test_reset_forgets_held_chains(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[300];
	size_t n = make_frame(frame, 200, 1);

	activate(f, 1ULL << VIRTIO_NET_F_MRG_RXBUF);
	post_rx(f, 64, NULL);
	notify(f, RXQ);
	host_send(f, frame, n);
	tap_ready(f, EPOLLIN); /* holds the first chain, waits for more */
	assert_int_equal(f->n.rx_nused, 1);
	virtio_net_ops.reset(&f->t);
	f->t.status = 0;
	assert_int_equal(f->n.rx_nused, 0);
	assert_false(f->n.active);
	tap_ready(f, EPOLLIN); /* a late event: the TAP leaves the loop */
	assert_int_equal(f->watched, 0);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* writes to a closed fake TAP fail with EPIPE */
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(test_features_and_config),
	    T(test_random_mac),
	    T(test_offloads_follow_the_driver),
	    T(test_tx_frame_from_several_buffers),
	    T(test_tx_malformed_chain_is_dropped),
	    T(test_tx_would_block_keeps_the_chain),
	    T(test_tx_errors_are_counted_and_logged_once),
	    T(test_rx_waits_for_buffers),
	    T(test_rx_too_big_without_mrg_is_dropped),
	    T(test_rx_mrg_spreads_a_frame),
	    T(test_rx_mrg_frame_larger_than_the_ring_is_dropped),
	    T(test_tap_failure_stops_polling),
	    T(test_error_event_without_data_fails_the_tap),
	    T(test_reset_forgets_held_chains),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
