/*
 * Polling virtio drivers for the test guests: the virtio-mmio transport (virtio 1.x, register
 * layout version 2), split virtqueues, virtio-blk and virtio-console. See the virtio 1.2
 * specification, sections 2 (basic facilities), 4.2 (MMIO transport), 5.2 (block) and 5.3
 * (console).
 *
 * Everything is synchronous: a request is put on a queue, the device is notified and the
 * guest spins on the used ring until the device returns the chain. Interrupts stay masked
 * (the guest runs with IF=0), but InterruptStatus is read and acknowledged after every
 * completion. The rings and buffers are static, and the guest's identity map makes their
 * addresses guest-physical. All multi-byte fields are little-endian, as the CPU is.
 *
 * Only guests that use these drivers link rt/virtio*.o; hello does not.
 */
#ifndef HEARTH_GUEST_VIRTIO_H
#define HEARTH_GUEST_VIRTIO_H

#include "rt.h"

/* Plain constant headers (no kernel types are used). */
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#define RT_VIRTIO_MAGIC   0x74726976u /* "virt" */
#define RT_VIRTIO_VERSION 2

#define RT_VIRTIO_MAX_DEVS   16 /* devices rt_virtio_discover() remembers */
#define RT_VIRTIO_MAX_QUEUES 2  /* queues a driver here uses per device */
#define RT_VQ_SIZE           16 /* descriptors per queue (a power of two) */

/*
 * The completion spin (read used->idx, `pause`) gives up when it has run RT_VQ_SPIN_MIN
 * iterations and RT_VQ_TSC_LIMIT TSC cycles (about 3 s at 2.6 GHz), or RT_VQ_SPIN_MAX
 * iterations whatever the TSC says. Both are checked, together with DEVICE_NEEDS_RESET in
 * Status, every RT_VQ_CHECK_EVERY iterations. (Spin counts alone cannot give a sane time:
 * one iteration takes about 3 us where KVM emulates the guest and a few ns elsewhere.)
 */
#define RT_VQ_SPIN_MIN    100000u
#define RT_VQ_SPIN_MAX    (1u << 26)
#define RT_VQ_TSC_LIMIT   (1ULL << 33)
#define RT_VQ_CHECK_EVERY 1024u

/* Exit statuses of the runtime's virtio code (the guests use others for their own checks). */
#define RT_EXIT_VIRTIO_TIMEOUT  20 /* the device did not return a chain in time */
#define RT_EXIT_VIRTIO_PROTOCOL 21 /* wrong used id, or the device needs a reset */

#define RT_VIRTIO_FEATURE(bit) (1ULL << (bit))

/* ---- command line: virtio_mmio.device=<size>@<addr>:<irq>[:<id>] ---- */

struct rt_virtio_param {
	uint64_t size; /* bytes; the number may end in K, M or G (binary units) */
	uint64_t base; /* 0x... hex or decimal */
	uint32_t irq;  /* decimal (any base rt_parse_u64 accepts) */
};

/*
 * Parse the value of a virtio_mmio.device= token (what follows the '='), the format Linux
 * reads. An optional trailing ":<id>" (Linux's platform device id) is accepted and ignored.
 * Malformed: a missing part, trailing garbage, a size below 0x100 (the register block) or
 * one that overflows, base + size above 4 GiB (the guest maps no more), irq > 0xffffffff.
 */
bool rt_virtio_parse_param(const struct token *value, struct rt_virtio_param *p);

/* ---- transport ---- */

/* A split virtqueue; one chain is in flight at a time. */
struct rt_vq {
	struct vring_desc desc[RT_VQ_SIZE] __attribute__((aligned(16)));
	struct {
		uint16_t flags, idx, ring[RT_VQ_SIZE], used_event;
	} avail __attribute__((aligned(2)));
	struct {
		uint16_t flags, idx;
		struct vring_used_elem ring[RT_VQ_SIZE];
		uint16_t avail_event;
	} used __attribute__((aligned(4)));
	uint16_t index;     /* queue number on the device */
	uint16_t size;      /* descriptors in use (QueueNum) */
	uint16_t avail_idx; /* our copy of avail.idx */
	uint16_t last_used; /* used.idx up to which completions were consumed */
	uint16_t free_head; /* first descriptor of the next chain (chains rotate) */
};

struct rt_virtio_dev {
	uint64_t base, size;
	uint32_t irq;
	uint32_t device_id; /* VIRTIO_ID_*; 0 never appears in the table */
	uint64_t offered;   /* device features */
	uint64_t features;  /* what the driver wrote (negotiated when FEATURES_OK stuck) */
	struct rt_vq vq[RT_VIRTIO_MAX_QUEUES];
};

/*
 * Walk the virtio_mmio.device= tokens of the command line in order. Each slot with the right
 * magic and version and a non-zero DeviceID is stored in devs[] (at most `max`); the others
 * are reported on the console ("virtio: ...") or, for empty slots, skipped silently.
 * Returns the number of devices stored.
 */
unsigned rt_virtio_discover(const struct hvm_start_info *si, struct rt_virtio_dev *devs,
                            unsigned max);

uint32_t rt_virtio_read(const struct rt_virtio_dev *d, uint32_t reg);
void rt_virtio_write(const struct rt_virtio_dev *d, uint32_t reg, uint32_t v);

/* Write 0 to Status and wait (bounded) until it reads back 0. */
void rt_virtio_reset(struct rt_virtio_dev *d);

/*
 * Reset, ACKNOWLEDGE, DRIVER, read the device features into d->offered, write
 * `d->offered & wanted`, set FEATURES_OK and read Status back. Returns whether FEATURES_OK
 * stuck. When it did not, FAILED is set unless `expect_refusal` (a test of the device's
 * feature check). VERSION_1 is not added here: callers that want it put it in `wanted`.
 */
bool rt_virtio_negotiate(struct rt_virtio_dev *d, uint64_t wanted, bool expect_refusal);

/* Set up queue `q` (slot q of d->vq) with min(RT_VQ_SIZE, QueueNumMax) descriptors, rounded
 * down to a power of two. Returns false (after printing why) when the queue is unusable. */
bool rt_virtio_setup_queue(struct rt_virtio_dev *d, unsigned q);

/* Set DRIVER_OK (or FAILED) on top of the current status. */
void rt_virtio_driver_ok(struct rt_virtio_dev *d);
void rt_virtio_fail(struct rt_virtio_dev *d);

/* Device-specific configuration: 32-bit accesses; the 64-bit read uses ConfigGeneration. */
uint32_t rt_virtio_config32(const struct rt_virtio_dev *d, uint32_t offset);
uint64_t rt_virtio_config64(const struct rt_virtio_dev *d, uint32_t offset);

/* ---- virtqueues ---- */

/* One buffer of a chain. */
struct rt_vq_buf {
	const void *addr;
	uint32_t len;
	bool device_writes; /* VRING_DESC_F_WRITE */
};

/* Zero the rings, set the size and indices (no device access). */
void rt_vq_init(struct rt_vq *vq, uint16_t index, uint16_t size);

/*
 * Put a chain of n buffers on the avail ring and publish it (avail.idx is bumped after a
 * compiler barrier). With `indirect` (a 16-byte aligned table of n descriptors) the chain is
 * one VRING_DESC_F_INDIRECT descriptor that points at it. Returns the head descriptor index.
 * No device access: rt_virtio_submit() notifies.
 */
uint16_t rt_vq_add(struct rt_vq *vq, const struct rt_vq_buf *bufs, unsigned n,
                   struct vring_desc *indirect);

/* Take the next used element if the device returned one. */
bool rt_vq_get_used(struct rt_vq *vq, uint32_t *id, uint32_t *len);

/*
 * rt_vq_add() on queue q, QueueNotify, spin until the chain comes back (exit
 * RT_EXIT_VIRTIO_TIMEOUT when it does not; RT_EXIT_VIRTIO_PROTOCOL when the device sets
 * DEVICE_NEEDS_RESET or returns another chain), then read InterruptStatus and write it to
 * InterruptACK. Returns the used length (bytes the device wrote).
 */
uint32_t rt_virtio_submit(struct rt_virtio_dev *d, unsigned q, const struct rt_vq_buf *bufs,
                          unsigned n, struct vring_desc *indirect);

/* ---- virtio-blk (device id 2) ---- */

#define RT_VBLK_SECTOR 512u

struct rt_vblk {
	struct rt_virtio_dev *dev;
	uint64_t capacity;  /* 512-byte sectors */
	uint32_t max_bytes; /* largest data buffer per request (SIZE_MAX, else 64 KiB) */
	bool ro;            /* VIRTIO_BLK_F_RO offered */
	bool flush;         /* VIRTIO_BLK_F_FLUSH negotiated */
	bool indirect;      /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
};

/* Negotiate (VERSION_1 plus RO, FLUSH, SIZE_MAX, INDIRECT_DESC when offered), set up queue 0,
 * DRIVER_OK, read the configuration. Prints why and returns false on failure. */
bool rt_vblk_init(struct rt_vblk *b, struct rt_virtio_dev *d);

/*
 * One request: a header (device-readable), `len` bytes of data unless len is 0 (device-
 * readable for VIRTIO_BLK_T_OUT, device-writable otherwise) and the status byte
 * (device-writable). `indirect` uses an indirect table, when negotiated. Returns the status
 * byte; 0xff means the device did not write it.
 */
uint8_t rt_vblk_request(struct rt_vblk *b, uint32_t type, uint64_t sector, void *data, uint32_t len,
                        bool indirect);

/* Read or write `count` sectors, split into requests of at most max_bytes. Returns the first
 * status that is not VIRTIO_BLK_S_OK, or VIRTIO_BLK_S_OK. */
uint8_t rt_vblk_read(struct rt_vblk *b, uint64_t sector, void *buf, uint32_t count, bool indirect);
uint8_t rt_vblk_write(struct rt_vblk *b, uint64_t sector, const void *buf, uint32_t count,
                      bool indirect);
uint8_t rt_vblk_flush(struct rt_vblk *b);
/* The device ID string: VIRTIO_BLK_ID_BYTES bytes, NUL-terminated only when shorter. */
uint8_t rt_vblk_get_id(struct rt_vblk *b, char id[VIRTIO_BLK_ID_BYTES]);

/* ---- virtio-console (device id 3), port 0 only (no MULTIPORT) ---- */

#define RT_VCON_RX_QUEUE 0
#define RT_VCON_TX_QUEUE 1

struct rt_vcon {
	struct rt_virtio_dev *dev;
};

/* Negotiate VERSION_1 only, set up receiveq (left empty) and transmitq, DRIVER_OK. */
bool rt_vcon_init(struct rt_vcon *c, struct rt_virtio_dev *d);
/* Send `n` bytes on transmitq, one buffer per 256 bytes. */
void rt_vcon_write(struct rt_vcon *c, const char *s, size_t n);

/* ---- virtio-net (device id 1), one queue pair ---- */

#define RT_VNET_RX_QUEUE 0
#define RT_VNET_TX_QUEUE 1
#define RT_VNET_HDR      12   /* struct virtio_net_hdr_v1: the VERSION_1 header, always */
#define RT_VNET_BUF_MAX  9728 /* largest receive buffer (a 9000-byte MTU frame fits) */
/* A frame spread over several buffers (MRG_RXBUF) is gathered here: at most a ring of them. */
#define RT_VNET_FRAME_MAX (RT_VQ_SIZE * RT_VNET_BUF_MAX)

struct rt_vnet {
	struct rt_virtio_dev *dev;
	uint8_t mac[6];
	uint16_t mtu;              /* from the config space (VIRTIO_NET_F_MTU), else 1500 */
	bool mrg;                  /* VIRTIO_NET_F_MRG_RXBUF negotiated */
	bool csum;                 /* CSUM and GUEST_CSUM negotiated: partial checksums both ways */
	uint32_t buf_size;         /* bytes per receive buffer */
	uint8_t *bufs;             /* receive buffer i at bufs + i * buf_size (descriptor i) */
	uint16_t nbufs;            /* = the receive queue's size */
	uint16_t held[RT_VQ_SIZE]; /* the buffers of the frame last returned by rt_vnet_rx */
	uint16_t nheld;
	uint64_t rx_frames, tx_frames;
};

/*
 * Negotiate VERSION_1, MAC, MTU and STATUS, plus MRG_RXBUF when `mrg` and CSUM with
 * GUEST_CSUM when `csum` (if offered); set up both queues (interrupts suppressed: the guest
 * polls), DRIVER_OK, then post every receive buffer (of `buf_size` bytes, 0 = header +
 * Ethernet header + MTU + 4, capped at RT_VNET_BUF_MAX) from `mem`, which holds
 * RT_VQ_SIZE * RT_VNET_BUF_MAX bytes. Prints why and returns false on failure.
 */
bool rt_vnet_init(struct rt_vnet *v, struct rt_virtio_dev *d, bool mrg, bool csum,
                  uint32_t buf_size, uint8_t *mem);

/*
 * Poll receiveq once. When a frame is there, return it (virtio-net header first) and its
 * length; it stays valid until rt_vnet_rx_done(). A frame in several buffers is copied into
 * one static area first. Returns NULL when nothing arrived.
 */
uint8_t *rt_vnet_rx(struct rt_vnet *v, uint32_t *len);
/* Give the last frame's buffers back to the device and notify it. */
void rt_vnet_rx_done(struct rt_vnet *v);

/* Send one frame (virtio-net header first) and wait until the device has taken it. */
void rt_vnet_tx(struct rt_vnet *v, const void *frame, uint32_t len);

#endif
