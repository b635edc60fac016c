/*
 * virtio-blk on a raw image (a regular file or a block device), one request queue.
 *
 * Requests are processed synchronously on the VMM thread (queue_notify, transport lock
 * held): preadv/pwritev go straight between the backing file and guest memory, with the
 * iovecs built from the chain's segments (no bounce buffers). Everything in a request comes
 * from the guest: lengths, sectors, flags and segment counts are checked before any I/O.
 *
 * Setup (vmm/): virtio_blk_open(), then virtio_mmio_init(t, ..., VIRTIO_ID_BLOCK,
 * virtio_blk_features(b), VIRTIO_BLK_CONFIG_SIZE, VIRTIO_BLK_QUEUES, VIRTIO_BLK_QUEUE_SIZE,
 * &virtio_blk_ops, b, gm, base, gsi); b->t = t. The ops reach the device through t->dev.
 */
#ifndef HEARTH_VIRTIO_BLK_H
#define HEARTH_VIRTIO_BLK_H

#include <linux/virtio_blk.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "mmio.h"
#include "queue.h"
#include "vmm/error.h"

#define VIRTIO_BLK_SECTOR      512
#define VIRTIO_BLK_QUEUES      1
#define VIRTIO_BLK_QUEUE_SIZE  256
#define VIRTIO_BLK_CONFIG_SIZE ((uint32_t)sizeof(struct virtio_blk_config))

/* Every field is counted under the transport lock. */
struct virtio_blk_counters {
	uint64_t read_reqs, write_reqs, flush_reqs, get_id_reqs, discard_reqs, write_zeroes_reqs;
	uint64_t read_bytes, write_bytes;
	uint64_t errors;      /* completed with VIRTIO_BLK_S_IOERR, or unusable (no status byte) */
	uint64_t unsupported; /* completed with VIRTIO_BLK_S_UNSUPP */
};

struct virtio_blk {
	/* The transport, set by the caller after virtio_mmio_init (the ops use t->dev). */
	struct virtio_mmio *t;
	int fd;
	bool read_only;
	bool block_device;
	bool discard;      /* VIRTIO_BLK_F_DISCARD and _WRITE_ZEROES are offered (fixed at open) */
	bool punch_ok;     /* the current backing file punched a hole in the probe */
	uint64_t capacity; /* 512-byte sectors */
	char id[VIRTIO_BLK_ID_BYTES]; /* NUL-padded; GET_ID returns these 20 bytes */
	/* Non-empty when open/swap has something for the caller to log (size rounded down). */
	char warning[256];
	struct virtio_blk_config config; /* little-endian snapshot the driver reads */
	struct virtio_blk_counters counters;

	/* Scratch space for one request (too large for the stack). */
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_MAX_SEGS];
};

/*
 * Open `path` (O_RDWR, or O_RDONLY when read_only; O_CLOEXEC) as the backing image.
 * `id` (may be NULL) is the drive id answered to GET_ID; longer than VIRTIO_BLK_ID_BYTES it
 * is truncated. A size that is not a multiple of 512 is rounded down and b->warning says so.
 * Returns 0, or -1 with `err` filled (nothing stays open).
 */
int virtio_blk_open(struct virtio_blk *b, const char *path, bool read_only, const char *id,
                    struct error *err);

/* Features to offer the driver (the transport adds VIRTIO_F_VERSION_1). */
uint64_t virtio_blk_features(const struct virtio_blk *b);

/*
 * Replace the backing file with `path`, opened in the same mode; capacity and the config
 * snapshot follow the new file, features do not change. The caller holds the transport lock
 * and then calls virtio_mmio_config_changed(). On failure (-1, `err` filled) the old file
 * stays in use. b->warning is rewritten.
 */
int virtio_blk_swap(struct virtio_blk *b, const char *path, struct error *err);

void virtio_blk_close(struct virtio_blk *b);

/* Snapshots (snapshot/stream.h), section VBLK after the transport's: the disk's size and
 * mode. The drive itself is re-opened from the configuration; restore only checks that it is
 * the same size and mode, and that no request is in flight (requests complete before
 * queue_notify returns). -1 (err set) otherwise. */
int virtio_blk_save(const struct virtio_blk *b, struct snap_w *w);
int virtio_blk_restore(struct virtio_blk *b, struct snap_r *r, struct error *err);

extern const struct virtio_dev_ops virtio_blk_ops;

#endif
