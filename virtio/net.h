/*
 * virtio-net on a TAP device: receiveq 0, transmitq 1 (no control queue, one queue pair).
 *
 * Frames cross the TAP with the 12-byte virtio_net_hdr_v1 in front (IFF_VNET_HDR), which is
 * the header the guest reads and writes: it passes through unchanged, except num_buffers,
 * which the device fills. Offloads the guest accepts (GUEST_CSUM, GUEST_TSO4/6) are mirrored
 * onto the TAP with TUNSETOFFLOAD when the driver sets DRIVER_OK, and cleared on reset.
 *
 * Everything runs on the VMM thread, driven by its event loop, never by polling:
 *  - TX drains transmitq on its notify. A chain is written with one writev (iovecs straight
 *    into guest memory). If the TAP would block, the chain stays with the device and is
 *    retried when the TAP is writable; a write error drops the frame (counted, logged once
 *    per kind) and completes the chain, so the guest never waits on a broken TAP.
 *  - RX reads the TAP only while the guest has buffers: when receiveq runs dry the device
 *    stops watching the fd (the kernel queues, then drops, on its side) and resumes on the
 *    next notify of queue 0. A frame is read straight into the guest's chain, with a bounce
 *    buffer behind it; a frame that does not fit one chain is dropped and counted without
 *    MRG_RXBUF, and spread over several chains with it (num_buffers). The device never
 *    truncates a frame.
 *  - When the TAP reports an error or a hang-up (e.g. the interface was deleted), it is
 *    taken out of the loop for good, the link goes down in the config space, and later
 *    transmits fail and are counted.
 *
 * The device asks its event loop for TAP readiness through `watch` (so virtio/ does not
 * know the loop): `new_events` is what it wants now (EPOLLIN and/or EPOLLOUT), 0 meaning
 * "take the fd out of the loop" (an fd in an epoll set reports errors even with no events).
 * The callback runs on the VMM thread with the transport lock held; it must only
 * (un)register the fd. DRIVER_OK and reset arrive on vCPU threads and make no system call
 * but an eventfd write: activation signals queue 0's notify, and the VMM thread then sets
 * the offloads and watches the TAP.
 *
 * Setup (vmm/): virtio_net_open() (or virtio_net_init() on any fd, for tests), then
 * virtio_mmio_init(t, ..., VIRTIO_ID_NET, virtio_net_features(n), VIRTIO_NET_CONFIG_SIZE,
 * VIRTIO_NET_QUEUES, ..., &virtio_net_ops, n, gm, base, gsi); n->t = t; virtio_net_set_watch().
 */
#ifndef HEARTH_VIRTIO_NET_H
#define HEARTH_VIRTIO_NET_H

#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "mmio.h"
#include "queue.h"
#include "tap.h"
#include "vmm/error.h"

#define VIRTIO_NET_QUEUES    2
#define VIRTIO_NET_RXQ       0
#define VIRTIO_NET_TXQ       1
#define VIRTIO_NET_HDR_BYTES TAP_VNET_HDR_BYTES
/* mac, status, max_virtqueue_pairs, mtu: the fields the offered features make valid. */
#define VIRTIO_NET_CONFIG_SIZE ((uint32_t)offsetof(struct virtio_net_config, speed))
/* Largest frame the TAP can hand over: a 64 KiB GSO packet with Ethernet and VLAN headers. */
#define VIRTIO_NET_FRAME_MAX (65535 + 14 + 4)
/* Receive space behind the guest's chain: any frame fits in chain + bounce. */
#define VIRTIO_NET_BOUNCE (VIRTIO_NET_HDR_BYTES + VIRTIO_NET_FRAME_MAX + 1)

/* Counted under the transport lock on the VMM thread. */
struct virtio_net_counters {
	uint64_t rx_packets, rx_bytes; /* frames delivered to the guest; bytes without header */
	uint64_t tx_packets, tx_bytes; /* frames written to the TAP */
	uint64_t rx_dropped_too_big;   /* larger than the guest's buffers: dropped */
	uint64_t rx_no_buffers;        /* times reception paused: the guest had no buffers */
	uint64_t rx_errors;            /* TAP read errors (the TAP is then out of the loop) */
	uint64_t tx_errors;            /* TAP write errors: the frame was dropped */
	uint64_t tx_malformed;         /* chains without a full header, or too large: dropped */
	uint64_t tx_blocked;           /* writes that would block (retried when writable) */
	uint64_t tap_failures;         /* the TAP reported an error or hang-up */
	uint64_t warnings;             /* log lines written (each kind once) */
};

typedef void (*virtio_net_watch_fn)(void *ctx, int fd, uint64_t tag, uint32_t old_events,
                                    uint32_t new_events);

struct virtio_net {
	/* The transport, set by the caller after virtio_mmio_init (the ops use t->dev). */
	struct virtio_mmio *t;
	int tap_fd;
	bool tap_ioctls; /* a real TAP: TUNSETOFFLOAD applies (not for injected test fds) */
	char ifname[16];
	uint8_t mac[6];
	uint16_t mtu;
	struct virtio_net_config config; /* little-endian snapshot the driver reads */

	/* The event loop's hooks (virtio_net_set_watch) and what is registered now. */
	virtio_net_watch_fn watch;
	void *watch_ctx;
	uint64_t watch_tag;
	uint32_t events;

	bool active;              /* DRIVER_OK seen, no reset since */
	bool mrg;                 /* VIRTIO_NET_F_MRG_RXBUF negotiated */
	unsigned offloads;        /* TUN_F_* set on the TAP */
	unsigned offloads_wanted; /* TUN_F_* the driver accepts (set at DRIVER_OK) */
	bool tap_failed;          /* error or hang-up: out of the loop for good */
	bool rx_starved;          /* receiveq ran dry: wait for a notify of queue 0 */

	/* RX: a chain taken for the next frame (or the first chain of a frame in progress). */
	bool rx_held;
	struct virtq_chain rx_chain;
	/* A frame spread over several chains (MRG_RXBUF) that waits for more buffers: bytes
	 * [rx_tail_off, rx_tail_len) of `bounce` are still to place; rx_used[] lists the chains
	 * filled so far (rx_chain first), published together once the frame is complete. */
	uint32_t rx_tail_off, rx_tail_len;
	uint16_t rx_nused;
	uint32_t rx_held_descs;
	struct {
		uint16_t head;
		uint32_t len;
	} rx_used[VIRTQ_MAX_SIZE];
	struct virtq_chain rx_more;
	uint8_t *bounce; /* VIRTIO_NET_BOUNCE bytes */

	/* TX: a chain whose write would block, retried when the TAP is writable. */
	bool tx_pending;
	struct virtq_chain tx_chain;

	struct iovec iov[VIRTQ_MAX_SEGS + 1];
	int logged[8]; /* error kinds already logged (errno, negated for writes) */
	struct virtio_net_counters counters;
};

/* A random locally administered unicast MAC, 02:xx:xx:xx:xx:xx, from getrandom(). */
void virtio_net_random_mac(uint8_t mac[6]);

/*
 * Attach to the existing TAP `ifname` (tap_open) and set the device up with `mac`.
 * Returns 0, or -1 with `err` filled (nothing stays open).
 */
int virtio_net_open(struct virtio_net *n, const char *ifname, const uint8_t mac[6],
                    struct error *err);

/* Set the device up on an fd that behaves like a TAP with IFF_VNET_HDR (one frame per read
 * and write; a socketpair in tests). The device owns the fd from here on. Returns 0, or -1
 * when out of memory. */
int virtio_net_init(struct virtio_net *n, int fd, const char *ifname, const uint8_t mac[6],
                    uint16_t mtu);

/* Features to offer the driver (the transport adds VIRTIO_F_VERSION_1). */
uint64_t virtio_net_features(const struct virtio_net *n);

/* Hook the device to its event loop (before the guest runs). */
void virtio_net_set_watch(struct virtio_net *n, virtio_net_watch_fn fn, void *ctx, uint64_t tag);

/* The event loop saw `events` (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP) on the TAP fd. Takes
 * the transport lock. */
void virtio_net_tap_event(struct virtio_net *n, uint32_t events);

void virtio_net_close(struct virtio_net *n);

/*
 * Snapshots (snapshot/stream.h), section VNET after the transport's: the MAC (checked against
 * the configuration's), the MTU and link status the guest saw, and the chains the device
 * holds (a receive chain, a frame spread over several chains with the bytes still to place,
 * a transmit chain that would have blocked). The TAP is the one the configuration opened
 * now, maybe another one (a network override): its link is up (the guest gets a config
 * change if it saw it down), and a device the driver had set DRIVER_OK is armed again as
 * DRIVER_OK arms it: its offloads go onto the TAP, and the TAP into the event loop, from the
 * VMM thread. Restore validates every field; on a bad one (-1, err set) the device holds
 * nothing.
 */
int virtio_net_save(const struct virtio_net *n, struct snap_w *w);
int virtio_net_restore(struct virtio_net *n, struct snap_r *r, struct error *err);

extern const struct virtio_dev_ops virtio_net_ops;

#endif
