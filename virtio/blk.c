#include "blk.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/stream.h"

/* A request is: header (readable) | data | status byte (the last writable byte). */
#define HDR_BYTES ((uint64_t)sizeof(struct virtio_blk_outhdr))

/* Header and status take two descriptors of a chain; the rest may be data. */
#define SEG_MAX (VIRTQ_MAX_SEGS - 2)

/* Discard / write-zeroes limits: one segment per request, at most 4 GiB - 512 in it. */
#define DWZ_MAX_SEGS    1
#define DWZ_MAX_SECTORS (UINT32_MAX / VIRTIO_BLK_SECTOR)
/* A hint for the driver only (4 KiB, the block size of common host file systems). */
#define DISCARD_ALIGN_SECTORS 8

/* Write zeroes without a file-system primitive: written from here, 64 KiB per iovec. */
static uint8_t zero_buf[64 * 1024];

/* What open_backing() found; becomes the device's only on success. */
struct backing {
	int fd;
	bool block_device;
	bool punch_ok;
	uint64_t capacity;
	char warning[sizeof(((struct virtio_blk *)0)->warning)];
};

/*
 * Whether the file system punches holes in this file. fallocate() with len 0 is EINVAL on
 * every file system before support is checked, so it tells nothing; instead punch a real hole
 * in the sector just past the end of the file with KEEP_SIZE: there is no data there, the size
 * does not change, and a file system without the operation answers EOPNOTSUPP. Any failure
 * means "no": discard and write-zeroes are then not offered.
 */
static bool probe_punch_hole(int fd, uint64_t size)
{
	return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)size,
	                 VIRTIO_BLK_SECTOR) == 0;
}

static int open_backing(const char *path, bool read_only, struct backing *k, struct error *err)
{
	struct stat st;
	uint64_t size;
	int fd, flags;

	memset(k, 0, sizeof(*k));
	k->fd = -1;
	/* O_NONBLOCK: opening a FIFO must not hang; it is rejected below and cleared after. */
	fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return err_set(err, "block device %s: %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		err_set(err, "block device %s: fstat: %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size)) {
			err_set(err, "block device %s: BLKGETSIZE64: %s", path, strerror(errno));
			goto fail;
		}
		k->block_device = true;
	} else {
		err_set(err, "block device %s: not a regular file or a block device", path);
		goto fail;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)) {
		err_set(err, "block device %s: fcntl: %s", path, strerror(errno));
		goto fail;
	}
	if (size > (uint64_t)INT64_MAX) {
		err_set(err, "block device %s: size %llu is too large", path,
		        (unsigned long long)size);
		goto fail;
	}
	k->capacity = size / VIRTIO_BLK_SECTOR;
	if (size % VIRTIO_BLK_SECTOR)
		snprintf(k->warning, sizeof(k->warning),
		         "block device %s: size %llu is not a multiple of %d; the last %llu bytes "
		         "are not visible to the guest",
		         path, (unsigned long long)size, VIRTIO_BLK_SECTOR,
		         (unsigned long long)(size % VIRTIO_BLK_SECTOR));
	/* Block devices: no harmless probe exists (a punch zeroes real sectors); never. */
	k->punch_ok = !read_only && !k->block_device && probe_punch_hole(fd, size);
	k->fd = fd;
	return 0;
fail:
	close(fd);
	return -1;
}

static void build_config(struct virtio_blk *b)
{
	struct virtio_blk_config *c = &b->config;

	memset(c, 0, sizeof(*c));
	c->capacity = htole64(b->capacity);
	c->seg_max = htole32(SEG_MAX);
	c->blk_size = htole32(VIRTIO_BLK_SECTOR);
	if (b->discard) {
		c->max_discard_sectors = htole32(DWZ_MAX_SECTORS);
		c->max_discard_seg = htole32(DWZ_MAX_SEGS);
		c->discard_sector_alignment = htole32(DISCARD_ALIGN_SECTORS);
		c->max_write_zeroes_sectors = htole32(DWZ_MAX_SECTORS);
		c->max_write_zeroes_seg = htole32(DWZ_MAX_SEGS);
		c->write_zeroes_may_unmap = 1;
	}
}

int virtio_blk_open(struct virtio_blk *b, const char *path, bool read_only, const char *id,
                    struct error *err)
{
	struct backing k;

	memset(b, 0, sizeof(*b));
	b->fd = -1;
	if (open_backing(path, read_only, &k, err))
		return -1;
	b->fd = k.fd;
	b->read_only = read_only;
	b->block_device = k.block_device;
	b->punch_ok = k.punch_ok;
	b->discard = k.punch_ok;
	b->capacity = k.capacity;
	memcpy(b->warning, k.warning, sizeof(b->warning));
	if (id)
		memcpy(b->id, id, strnlen(id, sizeof(b->id)));
	build_config(b);
	return 0;
}

int virtio_blk_swap(struct virtio_blk *b, const char *path, struct error *err)
{
	struct backing k;

	if (open_backing(path, b->read_only, &k, err))
		return -1;
	if (b->fd >= 0)
		close(b->fd);
	b->fd = k.fd;
	b->block_device = k.block_device;
	b->punch_ok = k.punch_ok; /* b->discard stays: features were negotiated */
	b->capacity = k.capacity;
	memcpy(b->warning, k.warning, sizeof(b->warning));
	build_config(b);
	return 0;
}

void virtio_blk_close(struct virtio_blk *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
}

uint64_t virtio_blk_features(const struct virtio_blk *b)
{
	uint64_t f = (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
	             (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC);

	if (b->read_only)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	if (b->discard)
		f |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

/* preadv / pwritev until every iovec is done; `done` counts the bytes moved. */
static int io_all(int fd, bool write, struct iovec *iov, int n, uint64_t off, uint64_t *done)
{
	while (n > 0) {
		ssize_t r =
		    write ? pwritev(fd, iov, n, (off_t)off) : preadv(fd, iov, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			return -1; /* end of file: the image shrank under us */
		off += (uint64_t)r;
		*done += (uint64_t)r;
		while (n > 0 && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/* Sectors [sector, sector + count) lie inside the disk (no overflow possible). */
static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t count)
{
	return sector <= b->capacity && count <= b->capacity - sector;
}

/* T_IN: data is the writable part but its last byte. T_OUT: the readable part after the
 * header. `data` returns the bytes placed in guest memory. */
static uint8_t do_rw(struct virtio_blk *b, const struct guest_memory *gm,
                     const struct virtq_chain *c, uint64_t sector, bool write, uint64_t *data)
{
	uint64_t len = write ? c->readable - HDR_BYTES : c->writable - 1;
	uint64_t done = 0;
	int n;

	if (write && b->read_only)
		return VIRTIO_BLK_S_IOERR;
	if (len % VIRTIO_BLK_SECTOR || !in_range(b, sector, len / VIRTIO_BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	if (len == 0)
		return VIRTIO_BLK_S_OK;
	n = virtq_chain_iov(c, gm, !write, write ? HDR_BYTES : 0, len, b->iov);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR;
	if (io_all(b->fd, write, b->iov, n, sector * VIRTIO_BLK_SECTOR, &done)) {
		if (!write)
			*data = done;
		return VIRTIO_BLK_S_IOERR;
	}
	if (write) {
		b->counters.write_bytes += len;
	} else {
		b->counters.read_bytes += len;
		*data = len;
	}
	return VIRTIO_BLK_S_OK;
}

static int write_zeros(struct virtio_blk *b, uint64_t off, uint64_t len)
{
	while (len > 0) {
		uint64_t chunk = 0, done = 0;
		int n = 0;

		while (n < VIRTQ_MAX_SEGS && chunk < len) {
			uint64_t take = len - chunk;

			if (take > sizeof(zero_buf))
				take = sizeof(zero_buf);
			b->iov[n].iov_base = zero_buf;
			b->iov[n].iov_len = take;
			n++;
			chunk += take;
		}
		if (io_all(b->fd, true, b->iov, n, off, &done))
			return -1;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

/* Discard is a hint (the device MAY deallocate): without hole punching it does nothing. */
static int discard_range(struct virtio_blk *b, uint64_t off, uint64_t len)
{
	if (!b->punch_ok)
		return 0;
	if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
	    0)
		return 0;
	return errno == EOPNOTSUPP ? 0 : -1;
}

/*
 * Write zeroes: afterwards the range MUST read as zeros. With the unmap flag, punch a hole;
 * without it, keep the range allocated: ZERO_RANGE, else punch and reserve the space again
 * (unwritten space reads as zeros; failing to reserve is harmless); else write zeros.
 */
static int zero_range(struct virtio_blk *b, uint64_t off, uint64_t len, bool unmap)
{
	const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

	if (unmap && b->punch_ok && fallocate(b->fd, punch, (off_t)off, (off_t)len) == 0)
		return 0;
	if (fallocate(b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
	    0)
		return 0;
	if (b->punch_ok && fallocate(b->fd, punch, (off_t)off, (off_t)len) == 0) {
		if (!unmap && fallocate(b->fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len)) {
			/* Space reservation only; the range already reads as zeros. */
		}
		return 0;
	}
	return write_zeros(b, off, len);
}

/* T_DISCARD / T_WRITE_ZEROES: the payload after the header is an array of segments. */
static uint8_t do_dwz(struct virtio_blk *b, const struct guest_memory *gm,
                      const struct virtq_chain *c, bool write_zeroes)
{
	struct virtio_blk_discard_write_zeroes seg[DWZ_MAX_SEGS];
	uint64_t payload = c->readable - HDR_BYTES;
	uint64_t nseg = payload / sizeof(seg[0]);
	uint32_t allowed = write_zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;

	if (b->read_only)
		return VIRTIO_BLK_S_IOERR;
	if (!b->discard)
		return VIRTIO_BLK_S_UNSUPP;
	if (payload % sizeof(seg[0]) || nseg == 0 || nseg > DWZ_MAX_SEGS)
		return VIRTIO_BLK_S_IOERR;
	/* Check every segment before touching the file. */
	for (uint64_t i = 0; i < nseg; i++) {
		uint64_t sector;
		uint32_t count, flags;

		if (virtq_chain_read(c, gm, HDR_BYTES + i * sizeof(seg[0]), &seg[i],
		                     sizeof(seg[0])) != sizeof(seg[0]))
			return VIRTIO_BLK_S_IOERR;
		sector = le64toh(seg[i].sector);
		count = le32toh(seg[i].num_sectors);
		flags = le32toh(seg[i].flags);
		if (flags & ~allowed)
			return VIRTIO_BLK_S_UNSUPP;
		if (count > DWZ_MAX_SECTORS || !in_range(b, sector, count))
			return VIRTIO_BLK_S_IOERR;
	}
	for (uint64_t i = 0; i < nseg; i++) {
		uint64_t off = le64toh(seg[i].sector) * VIRTIO_BLK_SECTOR;
		uint64_t len = (uint64_t)le32toh(seg[i].num_sectors) * VIRTIO_BLK_SECTOR;
		bool unmap = le32toh(seg[i].flags) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
		int r;

		if (len == 0)
			continue;
		r = write_zeroes ? zero_range(b, off, len, unmap) : discard_range(b, off, len);
		if (r)
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* One request whose chain has a status byte; `data` returns the bytes written before it. */
static uint8_t handle_request(struct virtio_blk *b, const struct guest_memory *gm,
                              const struct virtq_chain *c, uint64_t *data)
{
	struct virtio_blk_outhdr hdr;
	uint64_t sector, n;

	if (c->readable < HDR_BYTES || virtq_chain_read(c, gm, 0, &hdr, sizeof(hdr)) != sizeof(hdr))
		return VIRTIO_BLK_S_IOERR;
	sector = le64toh(hdr.sector);
	switch (le32toh(hdr.type)) {
	case VIRTIO_BLK_T_IN:
		b->counters.read_reqs++;
		return do_rw(b, gm, c, sector, false, data);
	case VIRTIO_BLK_T_OUT:
		b->counters.write_reqs++;
		return do_rw(b, gm, c, sector, true, data);
	case VIRTIO_BLK_T_FLUSH:
		b->counters.flush_reqs++;
		if (!b->read_only && fdatasync(b->fd))
			return VIRTIO_BLK_S_IOERR;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID:
		b->counters.get_id_reqs++;
		n = c->writable - 1;
		if (n > sizeof(b->id))
			n = sizeof(b->id);
		*data = virtq_chain_write(c, gm, 0, b->id, n);
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_DISCARD:
		b->counters.discard_reqs++;
		return do_dwz(b, gm, c, false);
	case VIRTIO_BLK_T_WRITE_ZEROES:
		b->counters.write_zeroes_reqs++;
		return do_dwz(b, gm, c, true);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* Process b->chain; returns the length for its used element. */
static uint32_t process_chain(struct virtio_blk *b, const struct guest_memory *gm)
{
	const struct virtq_chain *c = &b->chain;
	uint64_t data = 0;
	uint8_t status;

	if (c->writable == 0) {
		/* Nowhere to put a status: give the buffers back untouched. */
		b->counters.errors++;
		return 0;
	}
	status = handle_request(b, gm, c, &data);
	if (status == VIRTIO_BLK_S_IOERR)
		b->counters.errors++;
	else if (status == VIRTIO_BLK_S_UNSUPP)
		b->counters.unsupported++;
	if (virtq_chain_write(c, gm, c->writable - 1, &status, 1) != 1) {
		b->counters.errors++;
		return 0;
	}
	data += 1;
	return data > UINT32_MAX ? UINT32_MAX : (uint32_t)data;
}

static void blk_queue_notify(struct virtio_mmio *t, unsigned q)
{
	struct virtio_blk *b = t->dev;
	unsigned done = 0;

	if (q != 0 || q >= t->nqueues)
		return;
	while (virtio_mmio_pop(t, q, &b->chain)) {
		uint32_t len = process_chain(b, t->gm);

		if (virtq_push(&t->vq[q], t->gm, b->chain.head, len)) {
			virtio_mmio_needs_reset(t); /* the used ring left guest RAM */
			break;
		}
		done++;
	}
	if (done)
		virtio_mmio_signal_used(t, q);
}

static void blk_config_read(struct virtio_mmio *t, uint32_t offset, uint8_t *data, uint32_t size)
{
	const struct virtio_blk *b = t->dev;

	if ((uint64_t)offset + size > sizeof(b->config)) {
		memset(data, 0, size);
		return;
	}
	memcpy(data, (const uint8_t *)&b->config + offset, size);
}

static void blk_reset(struct virtio_mmio *t)
{
	/* Requests complete before queue_notify returns: nothing is in flight. */
	(void)t;
}

/* ---- snapshots -------------------------------------------------------------------------- */

#define TAG_VBLK SNAP_TAG('V', 'B', 'L', 'K')

int virtio_blk_save(const struct virtio_blk *b, struct snap_w *w)
{
	size_t at = snap_begin(w, TAG_VBLK);

	/* Set at open or swap, on the VMM thread: no lock needed there. */
	snap_u64(w, b->capacity);
	snap_bool(w, b->read_only);
	snap_end(w, at);
	return w->failed ? -1 : 0;
}

int virtio_blk_restore(struct virtio_blk *b, struct snap_r *r, struct error *err)
{
	const char *name = b->t && b->t->name ? b->t->name : "drive";
	struct snap_r sec;
	uint64_t capacity;
	bool read_only;
	uint16_t busy;

	if (snap_section(r, TAG_VBLK, &sec, err))
		return -1;
	if (!snap_get_u64(&sec, &capacity))
		return snap_bad(&sec, err, "capacity");
	if (capacity != b->capacity)
		return err_set(err,
		               "snapshot: drive %s has %llu sectors, but %llu when it was saved: "
		               "not the same disk",
		               name, (unsigned long long)b->capacity, (unsigned long long)capacity);
	if (!snap_get_bool(&sec, &read_only))
		return snap_bad(&sec, err, "read-only flag");
	if (read_only != b->read_only)
		return err_set(err, "snapshot: drive %s is %s, but was %s when it was saved", name,
		               b->read_only ? "read-only" : "read-write",
		               read_only ? "read-only" : "read-write");
	if (snap_section_done(&sec, err))
		return -1;
	if (b->t) {
		pthread_mutex_lock(&b->t->lock);
		busy = virtq_in_flight(&b->t->vq[0]);
		pthread_mutex_unlock(&b->t->lock);
		if (busy)
			return snap_bad(&sec, err, "queue 0 indices (requests in flight)");
	}
	return 0;
}

const struct virtio_dev_ops virtio_blk_ops = {
    .queue_notify = blk_queue_notify,
    .config_read = blk_config_read,
    .config_write = NULL, /* nothing is writable (no CONFIG_WCE) */
    .reset = blk_reset,
    .activate = NULL,
};
