/*
 * virtio-blk (virtio/blk.c) on a temporary image file, driven through a hand-built split
 * virtqueue in a fake guest memory. The transport struct is filled by hand (no eventfds:
 * irq_fd = -1, so an interrupt only bumps t.interrupts); virtio_mmio_pop, _signal_used and
 * _needs_reset are the real ones from libhearth.a.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "virtio/blk.h"
#include "virtio/mmio.h"
#include "vmm/guest_memory.h"

#define MEM_SIZE     (4u << 20)
#define QSIZE        16
#define DESC_GPA     0x1000
#define AVAIL_GPA    0x2000
#define USED_GPA     0x3000
#define HDR_GPA      0x4000 /* request k's header at HDR_GPA + 32 * k */
#define STATUS_GPA   0x5000 /* request with head h: status at STATUS_GPA + h */
#define INDIRECT_GPA 0x6000
#define PAYLOAD_GPA  0x7000 /* discard / write-zeroes segments */
#define DATA_GPA     0x10000
#define STATUS_NONE  0xaa /* what a status byte holds before the device writes it */
#define IMG_SECTORS  128

struct fixture {
	uint8_t *mem;
	struct guest_memory gm;
	struct virtio_mmio t;
	struct virtio_blk b;
	char path[128];
	bool open;
	uint16_t next_desc, avail_idx, nreq;
};

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool dev_writes;
};

/*
 * fallocate() as the device sees it: interposed here so that a test can take away every
 * file-system primitive (EOPNOTSUPP), as on a file system without them.
 */
static bool fallocate_unsupported;

int fallocate(int fd, int mode, off_t offset, off_t len)
{
	if (fallocate_unsupported) {
		errno = EOPNOTSUPP;
		return -1;
	}
	return (int)syscall(SYS_fallocate, fd, mode, offset, len);
}

/* The image's initial contents. */
static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 31 + (i >> 9) * 7 + 1);
}

static const char *tmp_dir(void)
{
	const char *d = getenv("TMPDIR");

	return d && *d ? d : "/tmp";
}

static void make_image_in(const char *dir, char *path, size_t pathlen, uint64_t size)
{
	uint8_t buf[4096];
	uint64_t off = 0;
	int fd;

	snprintf(path, pathlen, "%s/hearth-blk-XXXXXX", dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	while (off < size) {
		size_t n = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);

		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i);
		assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
		off += n;
	}
	close(fd);
}

static void make_image(char *path, size_t pathlen, uint64_t size)
{
	make_image_in(tmp_dir(), path, pathlen, size);
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static void expect_file_pattern(const char *path, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	file_read(path, off, buf, len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(buf[i], pattern(off + i));
	free(buf);
}

static void expect_file_zero(const char *path, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	file_read(path, off, buf, len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(buf[i], 0);
	free(buf);
}

/* The transport by hand: one live queue, the driver done with setup. */
static void setup_transport(struct fixture *f)
{
	struct virtio_mmio *t = &f->t;

	memset(t, 0, sizeof(*t));
	t->name = "blk";
	t->device_id = VIRTIO_ID_BLOCK;
	t->device_features = virtio_blk_features(&f->b) | (1ULL << VIRTIO_F_VERSION_1);
	t->config_size = VIRTIO_BLK_CONFIG_SIZE;
	t->nqueues = VIRTIO_BLK_QUEUES;
	t->queue_max = VIRTIO_BLK_QUEUE_SIZE;
	t->ops = &virtio_blk_ops;
	t->dev = &f->b;
	t->gm = &f->gm;
	t->irq_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		t->notify_fd[q] = -1;
	t->driver_features = t->device_features;
	t->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	            VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	t->vq[0].size = QSIZE;
	t->vq[0].desc_gpa = DESC_GPA;
	t->vq[0].avail_gpa = AVAIL_GPA;
	t->vq[0].used_gpa = USED_GPA;
	assert_true(virtq_layout_ok(&t->vq[0], &f->gm));
	t->vq[0].ready = true;
}

static void open_dev(struct fixture *f, uint64_t size, bool ro, const char *id)
{
	struct error err = {{0}};

	make_image(f->path, sizeof(f->path), size);
	assert_int_equal(virtio_blk_open(&f->b, f->path, ro, id, &err), 0);
	f->open = true;
	setup_transport(f);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->mem = calloc(1, MEM_SIZE);
	assert_non_null(f->mem);
	gm_wrap(&f->gm, f->mem, MEM_SIZE);
	f->b.fd = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	fallocate_unsupported = false;
	if (f->open)
		virtio_blk_close(&f->b);
	if (f->path[0])
		unlink(f->path);
	free(f->mem);
	free(f);
	return 0;
}

/* ---- a tiny driver ---- */

static void put_desc(struct fixture *f, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
	struct vring_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};

	assert_int_equal(gm_write(&f->gm, table + 16ULL * i, &d, sizeof(d)), 0);
}

static uint16_t alloc_descs(struct fixture *f, uint16_t n)
{
	uint16_t head;

	if (f->next_desc + n > QSIZE)
		f->next_desc = 0; /* everything before was completed by an earlier notify */
	head = f->next_desc;
	f->next_desc += n;
	return head;
}

/* A chain of direct descriptors; returns its head. */
static uint16_t chain(struct fixture *f, const struct seg *s, uint16_t n)
{
	uint16_t head = alloc_descs(f, n);

	for (uint16_t i = 0; i < n; i++)
		put_desc(f, DESC_GPA, head + i, s[i].gpa, s[i].len,
		         (s[i].dev_writes ? VRING_DESC_F_WRITE : 0) |
		             (i + 1 < n ? VRING_DESC_F_NEXT : 0),
		         head + i + 1);
	return head;
}

/* The same buffers through one indirect descriptor. */
static uint16_t chain_indirect(struct fixture *f, const struct seg *s, uint16_t n)
{
	uint16_t head = alloc_descs(f, 1);

	for (uint16_t i = 0; i < n; i++)
		put_desc(f, INDIRECT_GPA, i, s[i].gpa, s[i].len,
		         (s[i].dev_writes ? VRING_DESC_F_WRITE : 0) |
		             (i + 1 < n ? VRING_DESC_F_NEXT : 0),
		         i + 1);
	put_desc(f, DESC_GPA, head, INDIRECT_GPA, 16u * n, VRING_DESC_F_INDIRECT, 0);
	return head;
}

static void submit(struct fixture *f, uint16_t head)
{
	uint16_t idx;

	assert_int_equal(gm_write(&f->gm, AVAIL_GPA + 4 + 2ULL * (f->avail_idx % QSIZE), &head, 2),
	                 0);
	idx = ++f->avail_idx;
	assert_int_equal(gm_write(&f->gm, AVAIL_GPA + 2, &idx, 2), 0);
}

static void notify(struct fixture *f)
{
	virtio_blk_ops.queue_notify(&f->t, 0);
}

static uint16_t used_idx(struct fixture *f)
{
	uint16_t v;

	assert_int_equal(gm_read(&f->gm, USED_GPA + 2, &v, 2), 0);
	return v;
}

/* The n-th used element ever written. */
static void used_elem(struct fixture *f, uint16_t n, uint32_t *id, uint32_t *len)
{
	struct vring_used_elem e;

	assert_int_equal(gm_read(&f->gm, USED_GPA + 4 + 8ULL * (n % QSIZE), &e, sizeof(e)), 0);
	*id = e.id;
	*len = e.len;
}

static void put_hdr(struct fixture *f, uint64_t gpa, uint32_t type, uint64_t sector)
{
	struct virtio_blk_outhdr h = {.type = type, .ioprio = 0, .sector = sector};

	assert_int_equal(gm_write(&f->gm, gpa, &h, sizeof(h)), 0);
}

static uint64_t status_gpa(uint16_t head)
{
	return STATUS_GPA + head;
}

static uint8_t status_of(struct fixture *f, uint16_t head)
{
	uint8_t s;

	assert_int_equal(gm_read(&f->gm, status_gpa(head), &s, 1), 0);
	return s;
}

/*
 * header | one data buffer (device-writable for reads) | status. data_len 0: no data buffer.
 * Returns the head; the status byte starts as STATUS_NONE.
 */
static uint16_t req(struct fixture *f, uint32_t type, uint64_t sector, uint64_t data_gpa,
                    uint32_t data_len, bool data_dev_writes)
{
	uint64_t hdr = HDR_GPA + 32ULL * (f->nreq++ % 64);
	struct seg s[3];
	uint16_t n = 0, head;
	uint8_t none = STATUS_NONE;

	put_hdr(f, hdr, type, sector);
	s[n++] = (struct seg){hdr, 16, false};
	if (data_len)
		s[n++] = (struct seg){data_gpa, data_len, data_dev_writes};
	head = alloc_descs(f, n + 1);
	f->next_desc = head; /* chain() allocates again from the same place */
	s[n++] = (struct seg){status_gpa(head), 1, true};
	assert_int_equal(chain(f, s, n), head);
	assert_int_equal(gm_write(&f->gm, status_gpa(head), &none, 1), 0);
	submit(f, head);
	return head;
}

/* Submit one request, notify, check that it came back with `status` and `len`. */
static void run_one(struct fixture *f, uint16_t head, uint8_t status, uint32_t len)
{
	uint16_t before = used_idx(f);
	uint32_t id, l;

	notify(f);
	assert_int_equal(used_idx(f), (uint16_t)(before + 1));
	used_elem(f, before, &id, &l);
	assert_int_equal(id, head);
	assert_int_equal(l, len);
	assert_int_equal(status_of(f, head), status);
}

static void expect_guest_pattern(struct fixture *f, uint64_t gpa, uint64_t file_off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		assert_int_equal(f->mem[gpa + i], pattern(file_off + i));
}

static uint32_t config32(struct fixture *f, size_t off)
{
	uint32_t v;

	virtio_blk_ops.config_read(&f->t, (uint32_t)off, (uint8_t *)&v, 4);
	return le32toh(v);
}

/* ---- tests ---- */

static void test_open_features_config(void **state)
{
	struct fixture *f = *state;
	uint64_t cap;
	uint8_t byte = 0x55;
	uint64_t feat;

	open_dev(f, IMG_SECTORS * 512, false, "disk0");
	assert_int_equal(f->b.capacity, IMG_SECTORS);
	assert_string_equal(f->b.warning, "");
	feat = virtio_blk_features(&f->b);
	assert_true(feat & (1ULL << VIRTIO_BLK_F_FLUSH));
	assert_true(feat & (1ULL << VIRTIO_BLK_F_BLK_SIZE));
	assert_true(feat & (1ULL << VIRTIO_BLK_F_SEG_MAX));
	assert_true(feat & (1ULL << VIRTIO_RING_F_INDIRECT_DESC));
	assert_false(feat & (1ULL << VIRTIO_BLK_F_RO));
	assert_false(feat & (1ULL << VIRTIO_RING_F_EVENT_IDX));
	/* The probe must not have changed the file. */
	assert_int_equal(file_size(f->path), IMG_SECTORS * 512);
	expect_file_pattern(f->path, 0, IMG_SECTORS * 512);

	virtio_blk_ops.config_read(&f->t, offsetof(struct virtio_blk_config, capacity),
	                           (uint8_t *)&cap, 8);
	assert_int_equal(le64toh(cap), IMG_SECTORS);
	assert_int_equal(config32(f, offsetof(struct virtio_blk_config, blk_size)), 512);
	assert_int_equal(config32(f, offsetof(struct virtio_blk_config, seg_max)),
	                 VIRTQ_MAX_SEGS - 2);
	if (feat & (1ULL << VIRTIO_BLK_F_DISCARD)) {
		assert_true(feat & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES));
		assert_int_equal(config32(f, offsetof(struct virtio_blk_config, max_discard_seg)),
		                 1);
		assert_int_equal(
		    config32(f, offsetof(struct virtio_blk_config, max_write_zeroes_seg)), 1);
		assert_true(config32(f, offsetof(struct virtio_blk_config, max_discard_sectors)) >
		            0);
		assert_true(
		    config32(f, offsetof(struct virtio_blk_config, max_write_zeroes_sectors)) > 0);
		virtio_blk_ops.config_read(
		    &f->t, offsetof(struct virtio_blk_config, write_zeroes_may_unmap), &byte, 1);
		assert_int_equal(byte, 1);
	}
	/* Out of bounds (the transport checks too): zeros, no overread. */
	byte = 0x55;
	virtio_blk_ops.config_read(&f->t, VIRTIO_BLK_CONFIG_SIZE, &byte, 1);
	assert_int_equal(byte, 0);
	assert_int_equal(config32(f, VIRTIO_BLK_CONFIG_SIZE - 2), 0);
	assert_int_equal(config32(f, UINT32_MAX - 1), 0);
}

static void test_capacity_rounding(void **state)
{
	struct fixture *f = *state;
	uint16_t h;

	open_dev(f, 3 * 512 + 100, false, NULL);
	assert_int_equal(f->b.capacity, 3);
	assert_non_null(strstr(f->b.warning, "not a multiple of 512"));
	assert_int_equal(file_size(f->path), 3 * 512 + 100);
	expect_file_pattern(f->path, 0, 3 * 512 + 100);
	/* The tail is not reachable. */
	h = req(f, VIRTIO_BLK_T_IN, 3, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	h = req(f, VIRTIO_BLK_T_IN, 2, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 513);
	expect_guest_pattern(f, DATA_GPA, 1024, 512);
}

static void test_open_rejects(void **state)
{
	struct fixture *f = *state;
	struct error err = {{0}};
	char fifo[128];

	assert_int_equal(virtio_blk_open(&f->b, "/nonexistent/hearth.img", false, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/hearth.img"));
	assert_int_equal(f->b.fd, -1);
	memset(&err, 0, sizeof(err));
	assert_int_equal(virtio_blk_open(&f->b, "/dev/null", true, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));
	memset(&err, 0, sizeof(err));
	assert_int_equal(virtio_blk_open(&f->b, tmp_dir(), true, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));
	/* A FIFO must be rejected, not block the open. */
	snprintf(fifo, sizeof(fifo), "%s/hearth-blk-fifo-%d", tmp_dir(), (int)getpid());
	unlink(fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	memset(&err, 0, sizeof(err));
	assert_int_equal(virtio_blk_open(&f->b, fifo, true, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));
	assert_int_equal(virtio_blk_open(&f->b, fifo, false, NULL, &err), -1);
	unlink(fifo);
}

static void test_read(void **state)
{
	struct fixture *f = *state;
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	h = req(f, VIRTIO_BLK_T_IN, 3, DATA_GPA, 1024, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 1025);
	expect_guest_pattern(f, DATA_GPA, 3 * 512, 1024);
	assert_int_equal(f->b.counters.read_reqs, 1);
	assert_int_equal(f->b.counters.read_bytes, 1024);
	assert_int_equal(f->b.counters.errors, 0);
	assert_int_equal(f->t.interrupts, 1);
	/* The last sector. */
	h = req(f, VIRTIO_BLK_T_IN, IMG_SECTORS - 1, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 513);
	expect_guest_pattern(f, DATA_GPA, (IMG_SECTORS - 1) * 512, 512);
}

/* Data spread over several buffers, the status byte sharing the last one. */
static void test_read_scattered(void **state)
{
	struct fixture *f = *state;
	struct seg s[4];
	uint16_t head;
	uint8_t none = STATUS_NONE;
	uint32_t id, len;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_IN, 10);
	s[0] = (struct seg){HDR_GPA, 16, false};
	s[1] = (struct seg){DATA_GPA, 100, true};
	s[2] = (struct seg){DATA_GPA + 0x1000, 700, true};
	s[3] = (struct seg){DATA_GPA + 0x2000, 1024 - 800 + 1, true}; /* data tail + status */
	gm_write(&f->gm, DATA_GPA + 0x2000 + 1024 - 800, &none, 1);
	head = chain(f, s, 4);
	submit(f, head);
	notify(f);
	assert_int_equal(used_idx(f), 1);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, 1025);
	assert_int_equal(f->mem[DATA_GPA + 0x2000 + 224], VIRTIO_BLK_S_OK);
	expect_guest_pattern(f, DATA_GPA, 10 * 512, 100);
	expect_guest_pattern(f, DATA_GPA + 0x1000, 10 * 512 + 100, 700);
	expect_guest_pattern(f, DATA_GPA + 0x2000, 10 * 512 + 800, 224);
}

static void test_write(void **state)
{
	struct fixture *f = *state;
	struct seg s[4];
	uint8_t buf[1536];
	uint16_t head;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(0xc3 ^ i);
	/* 1536 bytes in two buffers of 1000 and 536. */
	gm_write(&f->gm, DATA_GPA, buf, 1000);
	gm_write(&f->gm, DATA_GPA + 0x1000, buf + 1000, 536);
	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_OUT, 5);
	head = alloc_descs(f, 4);
	f->next_desc = head;
	s[0] = (struct seg){HDR_GPA, 16, false};
	s[1] = (struct seg){DATA_GPA, 1000, false};
	s[2] = (struct seg){DATA_GPA + 0x1000, 536, false};
	s[3] = (struct seg){status_gpa(head), 1, true};
	assert_int_equal(chain(f, s, 4), head);
	submit(f, head);
	run_one(f, head, VIRTIO_BLK_S_OK, 1);
	{
		uint8_t disk[1536];

		file_read(f->path, 5 * 512, disk, sizeof(disk));
		assert_memory_equal(disk, buf, sizeof(disk));
	}
	expect_file_pattern(f->path, 0, 5 * 512);
	expect_file_pattern(f->path, 8 * 512, (IMG_SECTORS - 8) * 512);
	assert_int_equal(f->b.counters.write_reqs, 1);
	assert_int_equal(f->b.counters.write_bytes, 1536);
}

static void test_flush(void **state)
{
	struct fixture *f = *state;
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	h = req(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	assert_int_equal(f->b.counters.flush_reqs, 1);
}

static void test_get_id(void **state)
{
	struct fixture *f = *state;
	uint8_t want[20] = "rootfs";
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, false, "rootfs");
	memset(f->mem + DATA_GPA, 0xee, 64);
	h = req(f, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 20, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 21);
	assert_memory_equal(f->mem + DATA_GPA, want, 20); /* NUL-padded */
	assert_int_equal(f->mem[DATA_GPA + 20], 0xee);
	/* A short buffer gets what fits. */
	memset(f->mem + DATA_GPA, 0xee, 64);
	h = req(f, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 4, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 5);
	assert_memory_equal(f->mem + DATA_GPA, "root", 4);
	assert_int_equal(f->mem[DATA_GPA + 4], 0xee);
	assert_int_equal(f->b.counters.get_id_reqs, 2);
}

static void test_get_id_truncated(void **state)
{
	struct fixture *f = *state;
	const char *id = "abcdefghijklmnopqrstuvwxyz";
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, false, id);
	memset(f->mem + DATA_GPA, 0xee, 64);
	h = req(f, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 64, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 21);
	assert_memory_equal(f->mem + DATA_GPA, id, 20);
	assert_int_equal(f->mem[DATA_GPA + 20], 0xee);
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	uint64_t feat;
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, true, NULL);
	feat = virtio_blk_features(&f->b);
	assert_true(feat & (1ULL << VIRTIO_BLK_F_RO));
	assert_false(feat & (1ULL << VIRTIO_BLK_F_DISCARD));
	assert_false(feat & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES));
	memset(f->mem + DATA_GPA, 0x11, 512);
	h = req(f, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 512, false);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	expect_file_pattern(f->path, 0, IMG_SECTORS * 512);
	h = req(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	h = req(f, VIRTIO_BLK_T_IN, 1, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 513);
	expect_guest_pattern(f, DATA_GPA, 512, 512);
	{
		struct virtio_blk_discard_write_zeroes d = {.sector = 0, .num_sectors = 1};

		gm_write(&f->gm, PAYLOAD_GPA, &d, sizeof(d));
		h = req(f, VIRTIO_BLK_T_DISCARD, 0, PAYLOAD_GPA, sizeof(d), false);
		run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
		h = req(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, PAYLOAD_GPA, sizeof(d), false);
		run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	}
	expect_file_pattern(f->path, 0, IMG_SECTORS * 512);
	assert_int_equal(f->b.counters.errors, 3);
}

static void test_out_of_range(void **state)
{
	struct fixture *f = *state;
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	/* Starts inside, ends past the end. */
	h = req(f, VIRTIO_BLK_T_IN, IMG_SECTORS - 1, DATA_GPA, 1024, true);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	h = req(f, VIRTIO_BLK_T_IN, IMG_SECTORS, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	/* sector * 512 would overflow. */
	h = req(f, VIRTIO_BLK_T_IN, UINT64_MAX / 256, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	h = req(f, VIRTIO_BLK_T_IN, UINT64_MAX, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	memset(f->mem + DATA_GPA, 0x22, 1024);
	h = req(f, VIRTIO_BLK_T_OUT, IMG_SECTORS - 1, DATA_GPA, 1024, false);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	h = req(f, VIRTIO_BLK_T_OUT, UINT64_MAX, DATA_GPA, 512, false);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	expect_file_pattern(f->path, 0, IMG_SECTORS * 512);
	assert_int_equal(file_size(f->path), IMG_SECTORS * 512);
	assert_int_equal(f->b.counters.errors, 6);
	/* A zero-length read at the end is in range. */
	h = req(f, VIRTIO_BLK_T_IN, IMG_SECTORS, 0, 0, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
}

/* The image shrinks under the device: a read past the new end fails, nothing hangs. */
static void test_image_shrank(void **state)
{
	struct fixture *f = *state;
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	assert_int_equal(truncate(f->path, 2 * 512 + 100), 0);
	h = req(f, VIRTIO_BLK_T_IN, 2, DATA_GPA, 1024, true);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 101); /* the 100 bytes that were there, and the status */
	expect_guest_pattern(f, DATA_GPA, 2 * 512, 100);
	h = req(f, VIRTIO_BLK_T_IN, 1, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 513);
	assert_int_equal(f->b.counters.errors, 1);
}

static void test_unaligned_length(void **state)
{
	struct fixture *f = *state;
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	memset(f->mem + DATA_GPA, 0x33, 1024);
	h = req(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 511, true);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	assert_int_equal(f->mem[DATA_GPA], 0x33); /* nothing read */
	h = req(f, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 513, false);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	expect_file_pattern(f->path, 0, IMG_SECTORS * 512);
}

static void test_no_status_byte(void **state)
{
	struct fixture *f = *state;
	struct seg s[2] = {{HDR_GPA, 16, false}, {DATA_GPA, 512, false}};
	uint16_t head, h;
	uint32_t id, len;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	memset(f->mem + DATA_GPA, 0x44, 512);
	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_OUT, 0);
	head = chain(f, s, 2);
	submit(f, head);
	notify(f);
	assert_int_equal(used_idx(f), 1);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, 0);
	assert_int_equal(f->b.counters.errors, 1);
	expect_file_pattern(f->path, 0, 512); /* not written */
	/* Only a header, nothing else. */
	head = chain(f, s, 1);
	submit(f, head);
	notify(f);
	assert_int_equal(used_idx(f), 2);
	used_elem(f, 1, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, 0);
	/* The queue still works. */
	h = req(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 513);
	expect_guest_pattern(f, DATA_GPA, 0, 512);
}

static void test_short_header(void **state)
{
	struct fixture *f = *state;
	struct seg s[3];
	uint16_t head;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_IN, 0);
	head = alloc_descs(f, 3);
	f->next_desc = head;
	s[0] = (struct seg){HDR_GPA, 8, false};
	s[1] = (struct seg){DATA_GPA, 512, true};
	s[2] = (struct seg){status_gpa(head), 1, true};
	f->mem[status_gpa(head)] = STATUS_NONE;
	memset(f->mem + DATA_GPA, 0x55, 512);
	assert_int_equal(chain(f, s, 3), head);
	submit(f, head);
	run_one(f, head, VIRTIO_BLK_S_IOERR, 1);
	assert_int_equal(f->mem[DATA_GPA], 0x55);
	/* No readable part at all. */
	head = alloc_descs(f, 2);
	f->next_desc = head;
	s[0] = (struct seg){DATA_GPA, 512, true};
	s[1] = (struct seg){status_gpa(head), 1, true};
	f->mem[status_gpa(head)] = STATUS_NONE;
	assert_int_equal(chain(f, s, 2), head);
	submit(f, head);
	run_one(f, head, VIRTIO_BLK_S_IOERR, 1);
	assert_int_equal(f->b.counters.errors, 2);
}

static void test_unknown_type(void **state)
{
	struct fixture *f = *state;
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	h = req(f, 2 /* SCSI_CMD */, 0, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_UNSUPP, 1);
	h = req(f, 0x99, 0, 0, 0, false);
	run_one(f, h, VIRTIO_BLK_S_UNSUPP, 1);
	h = req(f, VIRTIO_BLK_T_OUT | 0x80000000u /* legacy barrier */, 0, DATA_GPA, 512, false);
	run_one(f, h, VIRTIO_BLK_S_UNSUPP, 1);
	expect_file_pattern(f->path, 0, IMG_SECTORS * 512);
	assert_int_equal(f->b.counters.unsupported, 3);
	assert_int_equal(f->b.counters.errors, 0);
}

static uint16_t dwz_req(struct fixture *f, uint32_t type, uint64_t sector, uint32_t n,
                        uint32_t flags)
{
	struct virtio_blk_discard_write_zeroes d = {
	    .sector = htole64(sector), .num_sectors = htole32(n), .flags = htole32(flags)};

	gm_write(&f->gm, PAYLOAD_GPA, &d, sizeof(d));
	return req(f, type, 0, PAYLOAD_GPA, sizeof(d), false);
}

static void check_discard_write_zeroes(struct fixture *f)
{
	struct virtio_blk_discard_write_zeroes two[2] = {{.sector = 0, .num_sectors = 1},
	                                                 {.sector = 2, .num_sectors = 1}};
	uint16_t h;

	if (!(virtio_blk_features(&f->b) & (1ULL << VIRTIO_BLK_F_DISCARD))) {
		/* The file system cannot punch holes: the request types are unsupported. */
		h = dwz_req(f, VIRTIO_BLK_T_DISCARD, 0, 1, 0);
		run_one(f, h, VIRTIO_BLK_S_UNSUPP, 1);
		skip();
	}
	/* Write zeroes without unmap, with unmap; both read back as zeros. */
	h = dwz_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 2, 3, 0);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	expect_file_pattern(f->path, 0, 2 * 512);
	expect_file_zero(f->path, 2 * 512, 3 * 512);
	expect_file_pattern(f->path, 5 * 512, (IMG_SECTORS - 5) * 512);
	h = dwz_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 16, 9, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	expect_file_pattern(f->path, 5 * 512, 11 * 512);
	expect_file_zero(f->path, 16 * 512, 9 * 512);
	expect_file_pattern(f->path, 25 * 512, (IMG_SECTORS - 25) * 512);
	/* Discard: OK; the range may read as anything, the rest is untouched. */
	h = dwz_req(f, VIRTIO_BLK_T_DISCARD, 32, 8, 0);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	expect_file_pattern(f->path, 25 * 512, 7 * 512);
	expect_file_pattern(f->path, 40 * 512, (IMG_SECTORS - 40) * 512);
	/* Reaching the last sector. */
	h = dwz_req(f, VIRTIO_BLK_T_WRITE_ZEROES, IMG_SECTORS - 1, 1, 0);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	expect_file_zero(f->path, (IMG_SECTORS - 1) * 512, 512);
	/* Zero sectors: nothing to do. */
	h = dwz_req(f, VIRTIO_BLK_T_DISCARD, 0, 0, 0);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	assert_int_equal(file_size(f->path), IMG_SECTORS * 512);
	assert_int_equal(f->b.counters.errors, 0);

	/* Flags: unmap is for write zeroes only; reserved bits are unsupported. */
	h = dwz_req(f, VIRTIO_BLK_T_DISCARD, 40, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	run_one(f, h, VIRTIO_BLK_S_UNSUPP, 1);
	h = dwz_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 40, 1, 2);
	run_one(f, h, VIRTIO_BLK_S_UNSUPP, 1);
	h = dwz_req(f, VIRTIO_BLK_T_DISCARD, 40, 1, 0x80000000u);
	run_one(f, h, VIRTIO_BLK_S_UNSUPP, 1);
	/* Out of range, overflowing. */
	h = dwz_req(f, VIRTIO_BLK_T_WRITE_ZEROES, IMG_SECTORS - 1, 2, 0);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	h = dwz_req(f, VIRTIO_BLK_T_DISCARD, UINT64_MAX, 1, 0);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	h = dwz_req(f, VIRTIO_BLK_T_WRITE_ZEROES, UINT64_MAX / 512 + 1, 1, 0);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	/* More segments than max_*_seg (1), a partial segment, none. */
	gm_write(&f->gm, PAYLOAD_GPA, two, sizeof(two));
	h = req(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, PAYLOAD_GPA, sizeof(two), false);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	h = req(f, VIRTIO_BLK_T_DISCARD, 0, PAYLOAD_GPA, 8, false);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	h = req(f, VIRTIO_BLK_T_DISCARD, 0, 0, 0, false);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	expect_file_pattern(f->path, 40 * 512, (IMG_SECTORS - 41) * 512);
	assert_int_equal(f->b.counters.unsupported, 3);
	assert_int_equal(f->b.counters.errors, 6);
	assert_int_equal(file_size(f->path), IMG_SECTORS * 512);
}

static void test_discard_write_zeroes(void **state)
{
	struct fixture *f = *state;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	check_discard_write_zeroes(f);
}

/* tmpfs punches holes but has no FALLOC_FL_ZERO_RANGE: the other write-zeroes path. */
static void test_discard_write_zeroes_tmpfs(void **state)
{
	struct fixture *f = *state;
	struct error err = {{0}};

	if (access("/dev/shm", W_OK))
		skip();
	make_image_in("/dev/shm", f->path, sizeof(f->path), IMG_SECTORS * 512);
	assert_int_equal(virtio_blk_open(&f->b, f->path, false, NULL, &err), 0);
	f->open = true;
	setup_transport(f);
	check_discard_write_zeroes(f);
}

/* No fallocate at all after open (e.g. after a swap): write zeroes writes zeros, discard is
 * a no-op. The range spans more than one pwritev of zeros (16 MiB). */
static void test_write_zeroes_fallback(void **state)
{
	struct fixture *f = *state;
	const uint64_t sectors = 48 * 1024; /* 24 MiB */
	uint16_t h;

	open_dev(f, sectors * 512, false, NULL);
	if (!(virtio_blk_features(&f->b) & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES)))
		skip();
	fallocate_unsupported = true;
	h = dwz_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 3, 3, 0);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	expect_file_pattern(f->path, 0, 3 * 512);
	expect_file_zero(f->path, 3 * 512, 3 * 512);
	expect_file_pattern(f->path, 6 * 512, 512);
	h = dwz_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 7, 40000 + 5, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	expect_file_pattern(f->path, 6 * 512, 512);
	expect_file_zero(f->path, 7 * 512, (40000 + 5) * 512);
	expect_file_pattern(f->path, (40012) * 512, (sectors - 40012) * 512);
	h = dwz_req(f, VIRTIO_BLK_T_DISCARD, 40012, 8, 0);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	expect_file_pattern(f->path, (40012) * 512, (sectors - 40012) * 512);
	assert_int_equal(file_size(f->path), sectors * 512);
	assert_int_equal(f->b.counters.errors, 0);
}

static void test_indirect(void **state)
{
	struct fixture *f = *state;
	struct seg s[4];
	uint16_t head;
	uint8_t none = STATUS_NONE;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	put_hdr(f, HDR_GPA, VIRTIO_BLK_T_IN, 7);
	s[0] = (struct seg){HDR_GPA, 16, false};
	s[1] = (struct seg){DATA_GPA, 512, true};
	s[2] = (struct seg){DATA_GPA + 0x1000, 1024, true};
	head = alloc_descs(f, 1);
	f->next_desc = head;
	s[3] = (struct seg){status_gpa(head), 1, true};
	gm_write(&f->gm, status_gpa(head), &none, 1);
	assert_int_equal(chain_indirect(f, s, 4), head);
	submit(f, head);
	run_one(f, head, VIRTIO_BLK_S_OK, 1537);
	expect_guest_pattern(f, DATA_GPA, 7 * 512, 512);
	expect_guest_pattern(f, DATA_GPA + 0x1000, 8 * 512, 1024);
}

static void test_batch(void **state)
{
	struct fixture *f = *state;
	uint16_t h[4];
	uint32_t id, len;
	uint8_t disk[512];

	open_dev(f, IMG_SECTORS * 512, false, "batch");
	memset(f->mem + DATA_GPA + 0x1000, 0x77, 512);
	h[0] = req(f, VIRTIO_BLK_T_IN, 1, DATA_GPA, 512, true);
	h[1] = req(f, VIRTIO_BLK_T_OUT, 2, DATA_GPA + 0x1000, 512, false);
	h[2] = req(f, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA + 0x2000, 20, true);
	h[3] = req(f, VIRTIO_BLK_T_IN, IMG_SECTORS, DATA_GPA + 0x3000, 512, true);
	notify(f);
	assert_int_equal(used_idx(f), 4);
	for (uint16_t i = 0; i < 4; i++) {
		static const uint32_t want_len[4] = {513, 1, 21, 1};
		static const uint8_t want_status[4] = {VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK,
		                                       VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR};

		used_elem(f, i, &id, &len);
		assert_int_equal(id, h[i]);
		assert_int_equal(len, want_len[i]);
		assert_int_equal(status_of(f, h[i]), want_status[i]);
	}
	assert_int_equal(f->t.interrupts, 1); /* one interrupt for the batch */
	expect_guest_pattern(f, DATA_GPA, 512, 512);
	file_read(f->path, 1024, disk, sizeof(disk));
	for (size_t i = 0; i < sizeof(disk); i++)
		assert_int_equal(disk[i], 0x77);
	assert_memory_equal(f->mem + DATA_GPA + 0x2000, "batch", 6);
	/* Nothing new: no interrupt. */
	notify(f);
	assert_int_equal(used_idx(f), 4);
	assert_int_equal(f->t.interrupts, 1);
}

/* A malformed chain (buffer outside RAM) between good ones: the transport returns it. */
static void test_bad_chain_in_batch(void **state)
{
	struct fixture *f = *state;
	struct seg bad[2] = {{HDR_GPA, 16, false}, {MEM_SIZE - 8, 16, true}};
	uint16_t h0, hb, h1;
	uint32_t id, len;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	h0 = req(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true);
	hb = chain(f, bad, 2);
	submit(f, hb);
	h1 = req(f, VIRTIO_BLK_T_IN, 1, DATA_GPA + 0x1000, 512, true);
	notify(f);
	assert_int_equal(used_idx(f), 3);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, h0);
	assert_int_equal(len, 513);
	used_elem(f, 1, &id, &len);
	assert_int_equal(id, hb);
	assert_int_equal(len, 0);
	used_elem(f, 2, &id, &len);
	assert_int_equal(id, h1);
	assert_int_equal(len, 513);
	assert_int_equal(f->t.bad_chains, 1);
	expect_guest_pattern(f, DATA_GPA + 0x1000, 512, 512);
}

/* Notifications for a queue that does not exist are ignored. */
static void test_other_queue(void **state)
{
	struct fixture *f = *state;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	req(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true);
	virtio_blk_ops.queue_notify(&f->t, 1);
	virtio_blk_ops.queue_notify(&f->t, 7);
	assert_int_equal(used_idx(f), 0);
	notify(f);
	assert_int_equal(used_idx(f), 1);
}

static void test_swap(void **state)
{
	struct fixture *f = *state;
	struct error err = {{0}};
	char other[128];
	uint64_t cap;
	uint16_t h;

	open_dev(f, IMG_SECTORS * 512, false, NULL);
	make_image(other, sizeof(other), 16 * 512 + 7);
	assert_int_equal(virtio_blk_swap(&f->b, other, &err), 0);
	assert_int_equal(f->b.capacity, 16);
	assert_non_null(strstr(f->b.warning, "not a multiple of 512"));
	virtio_blk_ops.config_read(&f->t, 0, (uint8_t *)&cap, 8);
	assert_int_equal(le64toh(cap), 16);
	h = req(f, VIRTIO_BLK_T_IN, 16, DATA_GPA, 512, true);
	run_one(f, h, VIRTIO_BLK_S_IOERR, 1);
	memset(f->mem + DATA_GPA, 0x66, 512);
	h = req(f, VIRTIO_BLK_T_OUT, 15, DATA_GPA, 512, false);
	run_one(f, h, VIRTIO_BLK_S_OK, 1);
	{
		uint8_t disk[512];

		file_read(other, 15 * 512, disk, sizeof(disk));
		for (size_t i = 0; i < sizeof(disk); i++)
			assert_int_equal(disk[i], 0x66);
	}
	expect_file_pattern(f->path, 0, IMG_SECTORS * 512); /* the old file is untouched */
	/* A failed swap keeps the current file. */
	assert_int_equal(virtio_blk_swap(&f->b, "/nonexistent/x.img", &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/x.img"));
	assert_int_equal(f->b.capacity, 16);
	h = req(f, VIRTIO_BLK_T_IN, 15, DATA_GPA + 0x1000, 512, true);
	run_one(f, h, VIRTIO_BLK_S_OK, 513);
	assert_int_equal(f->mem[DATA_GPA + 0x1000], 0x66);
	unlink(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(test_open_features_config),
	    T(test_capacity_rounding),
	    T(test_open_rejects),
	    T(test_read),
	    T(test_read_scattered),
	    T(test_write),
	    T(test_flush),
	    T(test_get_id),
	    T(test_get_id_truncated),
	    T(test_read_only),
	    T(test_out_of_range),
	    T(test_image_shrank),
	    T(test_unaligned_length),
	    T(test_no_status_byte),
	    T(test_short_header),
	    T(test_unknown_type),
	    T(test_discard_write_zeroes),
	    T(test_discard_write_zeroes_tmpfs),
	    T(test_write_zeroes_fallback),
	    T(test_indirect),
	    T(test_batch),
	    T(test_bad_chain_in_batch),
	    T(test_other_queue),
	    T(test_swap),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
