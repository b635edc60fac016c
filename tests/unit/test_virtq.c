/*
 * The shared split-virtqueue layer (virtio/queue.c) against hostile rings. Rings and
 * descriptor tables are built by hand in a fake guest memory (a calloc'd buffer wrapped as
 * low RAM); every malformed input must be refused without touching memory outside RAM and
 * without hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <linux/virtio_ring.h>

#include "virtio/queue.h"
#include "vmm/guest_memory.h"

#define MEM_SIZE  (1u << 20)
#define QSIZE     8
#define DESC_GPA  0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA  0x3000
#define IND_GPA   0x8000 /* indirect tables */
#define BUF_GPA   0x10000

struct fixture {
	uint8_t *mem;
	struct guest_memory gm;
	struct virtq q;
	struct virtq_chain c;
	uint16_t avail_idx; /* the driver's avail->idx */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->mem = calloc(1, MEM_SIZE);
	assert_non_null(f->mem);
	gm_wrap(&f->gm, f->mem, MEM_SIZE);
	virtq_reset(&f->q);
	f->q.size = QSIZE;
	f->q.desc_gpa = DESC_GPA;
	f->q.avail_gpa = AVAIL_GPA;
	f->q.used_gpa = USED_GPA;
	assert_true(virtq_layout_ok(&f->q, &f->gm));
	f->q.ready = true;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->mem);
	free(f);
	return 0;
}

/* ---- a hand-made driver ---- */

static void put_desc(struct fixture *f, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
	struct vring_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};

	assert_int_equal(gm_write(&f->gm, table + 16ULL * i, &d, sizeof(d)), 0);
}

static void set_avail_idx(struct fixture *f, uint16_t idx)
{
	f->avail_idx = idx;
	assert_int_equal(gm_write(&f->gm, f->q.avail_gpa + 2, &idx, 2), 0);
}

static void set_avail_flags(struct fixture *f, uint16_t flags)
{
	assert_int_equal(gm_write(&f->gm, f->q.avail_gpa, &flags, 2), 0);
}

/* Put `head` in the next avail slot without publishing it. */
static void put_avail(struct fixture *f, uint16_t slot_idx, uint16_t head)
{
	uint64_t gpa = f->q.avail_gpa + 4 + 2ULL * (slot_idx % f->q.size);

	assert_int_equal(gm_write(&f->gm, gpa, &head, 2), 0);
}

static void submit(struct fixture *f, uint16_t head)
{
	put_avail(f, f->avail_idx, head);
	set_avail_idx(f, (uint16_t)(f->avail_idx + 1));
}

static uint16_t used_idx(struct fixture *f)
{
	uint16_t v;

	assert_int_equal(gm_read(&f->gm, f->q.used_gpa + 2, &v, 2), 0);
	return v;
}

static void used_elem(struct fixture *f, uint16_t slot, uint32_t *id, uint32_t *len)
{
	struct vring_used_elem e;

	assert_int_equal(gm_read(&f->gm, f->q.used_gpa + 4 + 8ULL * slot, &e, sizeof(e)), 0);
	*id = e.id;
	*len = e.len;
}

/* One readable descriptor at `head`, alone. */
static void simple_desc(struct fixture *f, uint16_t head)
{
	put_desc(f, DESC_GPA, head, BUF_GPA + 0x100ULL * head, 64, 0, 0);
}

/* Submit a chain that must come back as BAD_CHAIN with `head`, then check that the queue is
 * still usable (a good chain afterwards). */
static void expect_bad_chain(struct fixture *f, uint16_t head)
{
	uint16_t before = f->q.last_avail;
	uint16_t good = (uint16_t)((head + 1) % QSIZE);

	submit(f, head);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_BAD_CHAIN);
	assert_int_equal(f->c.head, head);
	assert_int_equal(f->q.last_avail, (uint16_t)(before + 1)); /* consumed all the same */
	assert_false(f->q.broken);
	simple_desc(f, good);
	submit(f, good);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.head, good);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
}

/* ---- virtq_layout_ok ---- */

static void test_layout_sizes(void **state)
{
	struct fixture *f = *state;
	struct virtq q = f->q;

	q.ready = false;
	q.size = 0;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.size = 3;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.size = 255;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.size = 1;
	assert_true(virtq_layout_ok(&q, &f->gm));
	q.size = 256;
	assert_true(virtq_layout_ok(&q, &f->gm));
	q.size = 512;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.size = 0x8000;
	assert_false(virtq_layout_ok(&q, &f->gm));
}

static void test_layout_alignment(void **state)
{
	struct fixture *f = *state;
	struct virtq q = f->q;

	for (uint64_t a = 1; a < 16; a++) {
		q.desc_gpa = DESC_GPA + a;
		assert_false(virtq_layout_ok(&q, &f->gm));
	}
	q.desc_gpa = DESC_GPA + 16;
	assert_true(virtq_layout_ok(&q, &f->gm));

	q.avail_gpa = AVAIL_GPA + 1;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.avail_gpa = AVAIL_GPA + 3;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.avail_gpa = AVAIL_GPA + 2;
	assert_true(virtq_layout_ok(&q, &f->gm));

	q.used_gpa = USED_GPA + 2;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.used_gpa = USED_GPA + 1;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.used_gpa = USED_GPA + 4;
	assert_true(virtq_layout_ok(&q, &f->gm));
}

static void test_layout_bounds(void **state)
{
	struct fixture *f = *state;
	const uint16_t n = 256;
	const uint64_t desc = 16ULL * n, avail = 6 + 2ULL * n, used = 6 + 8ULL * n;
	struct virtq q = f->q;

	q.size = n;
	/* Exactly at the end of RAM. */
	q.desc_gpa = MEM_SIZE - desc;
	assert_true(virtq_layout_ok(&q, &f->gm));
	q.avail_gpa = MEM_SIZE - desc - avail;
	assert_true(virtq_layout_ok(&q, &f->gm));
	q.desc_gpa = DESC_GPA;
	q.avail_gpa = MEM_SIZE - avail;
	assert_true(virtq_layout_ok(&q, &f->gm));
	/* The used ring's size is 2 mod 4: the last aligned place ends 2 bytes short. */
	q.used_gpa = MEM_SIZE - used - 2;
	assert_true(virtq_layout_ok(&q, &f->gm));

	/* Partly outside RAM, one ring at a time. */
	q = f->q;
	q.size = n;
	q.desc_gpa = MEM_SIZE - desc + 16;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.desc_gpa = MEM_SIZE;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.desc_gpa = DESC_GPA;
	q.avail_gpa = MEM_SIZE - avail + 2;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.avail_gpa = AVAIL_GPA;
	q.used_gpa = MEM_SIZE - used + 2;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.used_gpa = MEM_SIZE - 4;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.used_gpa = USED_GPA;
	assert_true(virtq_layout_ok(&q, &f->gm));

	/* Far away and wrapping around 2^64. */
	q.desc_gpa = 0xfffffffffffffff0ULL;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.desc_gpa = 1ULL << 40;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.desc_gpa = DESC_GPA;
	q.avail_gpa = 0xfffffffffffffffeULL;
	assert_false(virtq_layout_ok(&q, &f->gm));
	q.avail_gpa = AVAIL_GPA;
	q.used_gpa = 0xfffffffffffffffcULL;
	assert_false(virtq_layout_ok(&q, &f->gm));
}

/* ---- virtq_pop ---- */

static void test_pop_empty(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
	assert_int_equal(f->q.last_avail, 0);
	/* A queue that is not ready gives nothing, whatever the ring says. */
	simple_desc(f, 0);
	submit(f, 0);
	f->q.ready = false;
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
	f->q.ready = true;
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
}

static void test_pop_simple_chain(void **state)
{
	struct fixture *f = *state;

	/* Head 5 -> 2, out of table order. */
	put_desc(f, DESC_GPA, 5, BUF_GPA, 100, VRING_DESC_F_NEXT, 2);
	put_desc(f, DESC_GPA, 2, BUF_GPA + 0x1000, 200, VRING_DESC_F_WRITE, 0);
	submit(f, 5);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.head, 5);
	assert_int_equal(f->c.nsegs, 2);
	assert_int_equal(f->c.readable, 100);
	assert_int_equal(f->c.writable, 200);
	assert_int_equal(f->c.seg[0].gpa, BUF_GPA);
	assert_int_equal(f->c.seg[0].len, 100);
	assert_false(f->c.seg[0].device_writes);
	assert_int_equal(f->c.seg[1].gpa, BUF_GPA + 0x1000);
	assert_int_equal(f->c.seg[1].len, 200);
	assert_true(f->c.seg[1].device_writes);
	assert_int_equal(f->q.last_avail, 1);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);

	/* A second chain reuses the chain struct: totals start again from zero. */
	put_desc(f, DESC_GPA, 0, BUF_GPA + 0x2000, 7, VRING_DESC_F_WRITE, 0);
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.head, 0);
	assert_int_equal(f->c.nsegs, 1);
	assert_int_equal(f->c.readable, 0);
	assert_int_equal(f->c.writable, 7);
	assert_int_equal(f->q.last_avail, 2);

	/* Zero-length buffers and a buffer ending exactly at the end of RAM are fine. */
	put_desc(f, DESC_GPA, 1, BUF_GPA, 0, VRING_DESC_F_NEXT, 3);
	put_desc(f, DESC_GPA, 3, MEM_SIZE - 16, 16, VRING_DESC_F_WRITE, 0);
	submit(f, 1);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.nsegs, 2);
	assert_int_equal(f->c.readable, 0);
	assert_int_equal(f->c.writable, 16);
}

/* Several chains in flight, consumed in avail order. */
static void test_pop_order(void **state)
{
	struct fixture *f = *state;
	static const uint16_t heads[] = {6, 1, 4};

	for (unsigned i = 0; i < 3; i++) {
		simple_desc(f, heads[i]);
		submit(f, heads[i]);
	}
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
		assert_int_equal(f->c.head, heads[i]);
		assert_int_equal(f->c.seg[0].gpa, BUF_GPA + 0x100ULL * heads[i]);
	}
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
}

/* The driver may make exactly `size` entries available at once, not more. */
static void test_pop_full_ring_and_idx_jump(void **state)
{
	struct fixture *f = *state;

	for (uint16_t i = 0; i < QSIZE; i++) {
		simple_desc(f, i);
		submit(f, i);
	}
	for (uint16_t i = 0; i < QSIZE; i++) {
		assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
		assert_int_equal(f->c.head, i);
	}
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);

	/* idx jumps by size + 1: the ring is malformed, the queue is broken for good. */
	set_avail_idx(f, (uint16_t)(f->q.last_avail + QSIZE + 1));
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_BAD_RING);
	assert_true(f->q.broken);
	assert_int_equal(f->q.last_avail, QSIZE);
	set_avail_idx(f, QSIZE + 1); /* a sane value again */
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
	/* Reset makes it usable again. */
	virtq_reset(&f->q);
	assert_false(f->q.broken);
	assert_false(f->q.ready);
}

static void test_pop_idx_backwards(void **state)
{
	struct fixture *f = *state;

	simple_desc(f, 0);
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	/* idx going backwards looks like a jump of 65535 entries. */
	set_avail_idx(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_BAD_RING);
	assert_true(f->q.broken);
}

static void test_pop_bad_head(void **state)
{
	struct fixture *f = *state;

	submit(f, QSIZE);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_BAD_RING);
	assert_true(f->q.broken);
	simple_desc(f, 0);
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);

	virtq_reset(&f->q);
	f->q.size = QSIZE;
	f->q.desc_gpa = DESC_GPA;
	f->q.avail_gpa = AVAIL_GPA;
	f->q.used_gpa = USED_GPA;
	f->q.ready = true;
	set_avail_idx(f, 0);
	submit(f, 0xffff);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_BAD_RING);
}

static void test_pop_bad_next(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, QSIZE);
	expect_bad_chain(f, 0);
	put_desc(f, DESC_GPA, 2, BUF_GPA, 16, VRING_DESC_F_NEXT, 0xffff);
	expect_bad_chain(f, 2);
	/* NEXT clear: `next` is not looked at. */
	put_desc(f, DESC_GPA, 4, BUF_GPA, 16, 0, 0xffff);
	submit(f, 4);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
}

static void test_pop_loops(void **state)
{
	struct fixture *f = *state;

	/* 0 -> 1 -> 0 */
	put_desc(f, DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	put_desc(f, DESC_GPA, 1, BUF_GPA, 16, VRING_DESC_F_NEXT, 0);
	expect_bad_chain(f, 0);
	/* A descriptor pointing at itself. */
	put_desc(f, DESC_GPA, 3, BUF_GPA, 16, VRING_DESC_F_NEXT, 3);
	expect_bad_chain(f, 3);
	/* A loop that does not include the head: 5 -> 6 -> 7 -> 6. */
	put_desc(f, DESC_GPA, 5, BUF_GPA, 16, VRING_DESC_F_NEXT, 6);
	put_desc(f, DESC_GPA, 6, BUF_GPA, 16, VRING_DESC_F_NEXT, 7);
	put_desc(f, DESC_GPA, 7, BUF_GPA, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 6);
	expect_bad_chain(f, 5);
}

/* A chain may use every descriptor of the queue; size + 1 cannot exist without a loop. */
static void test_pop_chain_of_size(void **state)
{
	struct fixture *f = *state;

	for (uint16_t i = 0; i < QSIZE; i++)
		put_desc(f, DESC_GPA, i, BUF_GPA + 0x10ULL * i, 16,
		         (i + 1 < QSIZE ? VRING_DESC_F_NEXT : 0) |
		             (i >= 4 ? VRING_DESC_F_WRITE : 0),
		         (uint16_t)(i + 1));
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.nsegs, QSIZE);
	assert_int_equal(f->c.readable, 64);
	assert_int_equal(f->c.writable, 64);
	for (uint16_t i = 0; i < QSIZE; i++)
		assert_int_equal(f->c.seg[i].gpa, BUF_GPA + 0x10ULL * i);

	/* size + 1 links: the last descriptor points back to the first. */
	put_desc(f, DESC_GPA, QSIZE - 1, BUF_GPA, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_BAD_CHAIN);
	assert_int_equal(f->q.last_avail, 2);
	assert_false(f->q.broken);
}

/* The largest queue with a chain through all of it fills VIRTQ_MAX_SEGS exactly. */
static void test_pop_max_queue_chain(void **state)
{
	struct fixture *f = *state;
	const uint16_t n = VIRTQ_MAX_SIZE;

	f->q.size = n;
	f->q.avail_gpa = 0x4000;
	f->q.used_gpa = 0x5000;
	assert_true(virtq_layout_ok(&f->q, &f->gm));
	/* Reverse order: n-1 -> n-2 -> ... -> 0. */
	for (uint16_t i = 0; i < n; i++)
		put_desc(f, DESC_GPA, i, BUF_GPA + i, 1, i ? VRING_DESC_F_NEXT : 0,
		         (uint16_t)(i - 1));
	set_avail_idx(f, 0);
	submit(f, n - 1);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.nsegs, VIRTQ_MAX_SEGS);
	assert_int_equal(f->c.readable, n);
	assert_int_equal(f->c.seg[0].gpa, BUF_GPA + n - 1);
	assert_int_equal(f->c.seg[n - 1].gpa, BUF_GPA);
	/* Close the loop. */
	put_desc(f, DESC_GPA, 0, BUF_GPA, 1, VRING_DESC_F_NEXT, n - 1);
	submit(f, n - 1);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_BAD_CHAIN);
}

static void test_pop_bad_buffers(void **state)
{
	struct fixture *f = *state;

	/* Entirely outside RAM. */
	put_desc(f, DESC_GPA, 0, MEM_SIZE, 1, 0, 0);
	expect_bad_chain(f, 0);
	put_desc(f, DESC_GPA, 0, 1ULL << 40, 16, VRING_DESC_F_WRITE, 0);
	expect_bad_chain(f, 0);
	/* address + len overflows 2^64. */
	put_desc(f, DESC_GPA, 2, 0xfffffffffffffff0ULL, 0x20, 0, 0);
	expect_bad_chain(f, 2);
	put_desc(f, DESC_GPA, 2, UINT64_MAX, 2, VRING_DESC_F_WRITE, 0);
	expect_bad_chain(f, 2);
	/* Crossing the end of RAM by one byte. */
	put_desc(f, DESC_GPA, 4, MEM_SIZE - 16, 17, VRING_DESC_F_WRITE, 0);
	expect_bad_chain(f, 4);
	/* A good first buffer, a bad second one. */
	put_desc(f, DESC_GPA, 6, BUF_GPA, 16, VRING_DESC_F_NEXT, 7);
	put_desc(f, DESC_GPA, 7, MEM_SIZE - 1, 0xffffffffu, VRING_DESC_F_WRITE, 0);
	expect_bad_chain(f, 6);
}

/* ---- indirect descriptors ---- */

static void test_indirect_valid(void **state)
{
	struct fixture *f = *state;

	/* Entries in table order 0 -> 2 -> 1. */
	put_desc(f, IND_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
	put_desc(f, IND_GPA, 2, BUF_GPA + 0x1000, 100, VRING_DESC_F_NEXT, 1);
	put_desc(f, IND_GPA, 1, BUF_GPA + 0x2000, 513, VRING_DESC_F_WRITE, 0);
	put_desc(f, DESC_GPA, 3, IND_GPA, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	submit(f, 3);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.head, 3);
	assert_int_equal(f->c.nsegs, 3);
	assert_int_equal(f->c.readable, 116);
	assert_int_equal(f->c.writable, 513);
	assert_int_equal(f->c.seg[0].gpa, BUF_GPA);
	assert_int_equal(f->c.seg[1].gpa, BUF_GPA + 0x1000);
	assert_false(f->c.seg[1].device_writes);
	assert_int_equal(f->c.seg[2].gpa, BUF_GPA + 0x2000);
	assert_true(f->c.seg[2].device_writes);

	/* A table at an odd address (no alignment is required of indirect tables). */
	put_desc(f, IND_GPA + 0x201, 0, BUF_GPA + 3, 5, VRING_DESC_F_NEXT, 1);
	put_desc(f, IND_GPA + 0x201, 1, BUF_GPA + 0x101, 7, VRING_DESC_F_WRITE, 0);
	put_desc(f, DESC_GPA, 3, IND_GPA + 0x201, 32, VRING_DESC_F_INDIRECT, 0);
	submit(f, 3);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.nsegs, 2);
	assert_int_equal(f->c.seg[0].gpa, BUF_GPA + 3);
	assert_int_equal(f->c.readable, 5);
	assert_int_equal(f->c.writable, 7);

	/* A one-entry table ending exactly at the end of RAM. */
	put_desc(f, MEM_SIZE - 16, 0, BUF_GPA, 8, 0, 0);
	put_desc(f, DESC_GPA, 3, MEM_SIZE - 16, 16, VRING_DESC_F_INDIRECT, 0);
	submit(f, 3);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.nsegs, 1);
	assert_int_equal(f->c.readable, 8);
}

/* The largest table (VIRTQ_MAX_SEGS entries) fits; one more is refused. */
static void test_indirect_max(void **state)
{
	struct fixture *f = *state;
	const uint16_t n = VIRTQ_MAX_SEGS;

	for (uint16_t i = 0; i < n + 1; i++)
		put_desc(f, IND_GPA, i, BUF_GPA + i, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
		         (uint16_t)(i + 1));
	put_desc(f, IND_GPA, n - 1, BUF_GPA, 1, VRING_DESC_F_WRITE, 0);
	put_desc(f, DESC_GPA, 0, IND_GPA, 16u * n, VRING_DESC_F_INDIRECT, 0);
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.nsegs, n);
	assert_int_equal(f->c.writable, n);

	put_desc(f, IND_GPA, n - 1, BUF_GPA, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, n);
	put_desc(f, IND_GPA, n, BUF_GPA, 1, VRING_DESC_F_WRITE, 0);
	put_desc(f, DESC_GPA, 0, IND_GPA, 16u * (n + 1), VRING_DESC_F_INDIRECT, 0);
	expect_bad_chain(f, 0);
}

static void test_indirect_bad(void **state)
{
	struct fixture *f = *state;

	put_desc(f, IND_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	put_desc(f, IND_GPA, 1, BUF_GPA + 0x1000, 16, VRING_DESC_F_WRITE, 0);

	/* len not a multiple of 16. */
	put_desc(f, DESC_GPA, 0, IND_GPA, 24, VRING_DESC_F_INDIRECT, 0);
	expect_bad_chain(f, 0);
	put_desc(f, DESC_GPA, 0, IND_GPA, 33, VRING_DESC_F_INDIRECT, 0);
	expect_bad_chain(f, 0);
	/* len 0. */
	put_desc(f, DESC_GPA, 0, IND_GPA, 0, VRING_DESC_F_INDIRECT, 0);
	expect_bad_chain(f, 0);
	/* Table outside RAM, crossing its end, wrapping around 2^64. */
	put_desc(f, DESC_GPA, 0, MEM_SIZE, 32, VRING_DESC_F_INDIRECT, 0);
	expect_bad_chain(f, 0);
	put_desc(f, DESC_GPA, 0, MEM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	expect_bad_chain(f, 0);
	put_desc(f, DESC_GPA, 0, 0xfffffffffffffff0ULL, 32, VRING_DESC_F_INDIRECT, 0);
	expect_bad_chain(f, 0);
	/* INDIRECT | NEXT, INDIRECT | WRITE on the ring's descriptor. */
	put_desc(f, DESC_GPA, 2, BUF_GPA, 16, 0, 0);
	put_desc(f, DESC_GPA, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 2);
	expect_bad_chain(f, 0);
	put_desc(f, DESC_GPA, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
	expect_bad_chain(f, 0);
	/* The table itself is fine: the valid form pops. */
	put_desc(f, DESC_GPA, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.nsegs, 2);
}

static void test_indirect_bad_table(void **state)
{
	struct fixture *f = *state;

	put_desc(f, DESC_GPA, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	/* Nested indirect, first or second entry. */
	put_desc(f, IND_GPA, 0, IND_GPA + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	put_desc(f, IND_GPA + 0x100, 0, BUF_GPA, 16, 0, 0);
	expect_bad_chain(f, 0);
	put_desc(f, IND_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	put_desc(f, IND_GPA, 1, IND_GPA + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	expect_bad_chain(f, 0);
	/* A loop inside the table: 0 -> 1 -> 0, and 1 -> 1. */
	put_desc(f, IND_GPA, 1, BUF_GPA, 16, VRING_DESC_F_NEXT, 0);
	expect_bad_chain(f, 0);
	put_desc(f, IND_GPA, 1, BUF_GPA, 16, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	expect_bad_chain(f, 0);
	/* next beyond the table (2 entries), though inside the queue size. */
	put_desc(f, IND_GPA, 1, BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
	put_desc(f, IND_GPA, 2, BUF_GPA, 16, 0, 0);
	expect_bad_chain(f, 0);
	put_desc(f, IND_GPA, 1, BUF_GPA, 16, VRING_DESC_F_NEXT, 0xffff);
	expect_bad_chain(f, 0);
	/* The first entry pointing just past the table, at a well-formed descriptor. */
	put_desc(f, IND_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
	expect_bad_chain(f, 0);
	put_desc(f, IND_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	/* A buffer outside RAM inside the table. */
	put_desc(f, IND_GPA, 1, MEM_SIZE - 4, 8, VRING_DESC_F_WRITE, 0);
	expect_bad_chain(f, 0);
	put_desc(f, IND_GPA, 1, UINT64_MAX - 7, 16, 0, 0);
	expect_bad_chain(f, 0);
	/* And repaired. */
	put_desc(f, IND_GPA, 1, BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.readable, 16);
	assert_int_equal(f->c.writable, 8);
}

/* avail->idx and last_avail are free-running 16-bit counters. */
static void test_pop_wraparound(void **state)
{
	struct fixture *f = *state;

	f->q.last_avail = 65534;
	set_avail_idx(f, 65534);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
	for (uint16_t h = 0; h < 3; h++) {
		simple_desc(f, (uint16_t)(h + 2));
		submit(f, (uint16_t)(h + 2)); /* slots 6, 7, 0 */
	}
	assert_int_equal(f->avail_idx, 1);
	for (uint16_t h = 0; h < 3; h++) {
		assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
		assert_int_equal(f->c.head, h + 2);
	}
	assert_int_equal(f->q.last_avail, 1);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
	assert_false(f->q.broken);

	/* A full ring across the wrap is still legal; one more is not. */
	f->q.last_avail = 65532;
	for (uint16_t i = 0; i < QSIZE; i++) {
		simple_desc(f, i);
		put_avail(f, (uint16_t)(65532 + i), i);
	}
	set_avail_idx(f, (uint16_t)(65532 + QSIZE));
	for (uint16_t i = 0; i < QSIZE; i++) {
		assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
		assert_int_equal(f->c.head, i);
	}
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_EMPTY);
	f->q.last_avail = 65532;
	set_avail_idx(f, (uint16_t)(65532 + QSIZE + 1));
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_BAD_RING);
}

/* ---- virtq_push / interrupts ---- */

static void test_push(void **state)
{
	struct fixture *f = *state;
	uint32_t id, len;

	assert_int_equal(used_idx(f), 0);
	assert_int_equal(virtq_push(&f->q, &f->gm, 3, 77), 0);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(f->q.used_idx, 1);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 77);
	assert_int_equal(virtq_push(&f->q, &f->gm, 5, 0xffffffffu), 0);
	assert_int_equal(used_idx(f), 2);
	used_elem(f, 1, &id, &len);
	assert_int_equal(id, 5);
	assert_int_equal(len, 0xffffffffu);
	/* The rest of the ring is untouched. */
	used_elem(f, 2, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 0);
}

static void test_push_wraparound(void **state)
{
	struct fixture *f = *state;
	uint32_t id, len;

	/* Slot = used_idx mod size, also past QSIZE. */
	for (uint16_t i = 0; i < QSIZE + 2; i++)
		assert_int_equal(virtq_push(&f->q, &f->gm, i % QSIZE, 100u + i), 0);
	assert_int_equal(used_idx(f), QSIZE + 2);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 100 + QSIZE);
	used_elem(f, 1, &id, &len);
	assert_int_equal(len, 101 + QSIZE);
	used_elem(f, 2, &id, &len);
	assert_int_equal(id, 2);
	assert_int_equal(len, 102);

	/* The 16-bit index wraps to 0. */
	f->q.used_idx = 65535;
	assert_int_equal(virtq_push(&f->q, &f->gm, 6, 1), 0);
	assert_int_equal(used_idx(f), 0);
	used_elem(f, 65535 % QSIZE, &id, &len);
	assert_int_equal(id, 6);
	assert_int_equal(len, 1);
	assert_int_equal(virtq_push(&f->q, &f->gm, 7, 2), 0);
	assert_int_equal(used_idx(f), 1);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, 7);
	assert_int_equal(len, 2);
}

static void test_push_ring_gone(void **state)
{
	struct fixture *f = *state;

	f->q.used_gpa = MEM_SIZE + 0x1000;
	assert_int_equal(virtq_push(&f->q, &f->gm, 0, 0), -1);
	assert_int_equal(f->q.used_idx, 0);
}

/*
 * A used ring whose address wraps around 2^64 (never accepted by virtq_layout_ok, but
 * virtq_push promises -1 when the ring is not in RAM): the element must not land at the
 * wrapped address (gpa 0) while the index store is silently dropped.
 */
static void test_push_ring_wraps(void **state)
{
	struct fixture *f = *state;
	uint8_t zero[8] = {0};

	f->q.used_gpa = UINT64_MAX - 3; /* 4-aligned; the first element would be at 0 */
	assert_false(virtq_layout_ok(&f->q, &f->gm));
	assert_int_equal(virtq_push(&f->q, &f->gm, 5, 0x1234), -1);
	assert_memory_equal(f->mem, zero, sizeof(zero));
}

static void test_interrupt_suppressed(void **state)
{
	struct fixture *f = *state;

	assert_false(virtq_interrupt_suppressed(&f->q, &f->gm));
	set_avail_flags(f, VRING_AVAIL_F_NO_INTERRUPT);
	assert_true(virtq_interrupt_suppressed(&f->q, &f->gm));
	set_avail_flags(f, 0xfffe); /* other bits mean nothing */
	assert_false(virtq_interrupt_suppressed(&f->q, &f->gm));
	set_avail_flags(f, 0xffff);
	assert_true(virtq_interrupt_suppressed(&f->q, &f->gm));
}

/* ---- virtq_chain_read / virtq_chain_write ---- */

#define SEG_A BUF_GPA            /* readable, 10 bytes */
#define SEG_B (BUF_GPA + 0x1000) /* writable, 8 bytes */
#define SEG_C (BUF_GPA + 0x2000) /* readable, 20 bytes */
#define SEG_D (BUF_GPA + 0x3000) /* writable, 16 bytes */
#define SEG_E (BUF_GPA + 0x4000) /* readable, 0 bytes */

/* Readable and writable buffers interleaved: A(r10) B(w8) E(r0) C(r20) D(w16). */
static void copy_chain(struct fixture *f)
{
	put_desc(f, DESC_GPA, 0, SEG_A, 10, VRING_DESC_F_NEXT, 1);
	put_desc(f, DESC_GPA, 1, SEG_B, 8, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	put_desc(f, DESC_GPA, 2, SEG_E, 0, VRING_DESC_F_NEXT, 3);
	put_desc(f, DESC_GPA, 3, SEG_C, 20, VRING_DESC_F_NEXT, 4);
	put_desc(f, DESC_GPA, 4, SEG_D, 16, VRING_DESC_F_WRITE, 0);
	/* Readable bytes are 0x10.., writable 0x80.., everything around 0xee. */
	memset(f->mem + BUF_GPA - 16, 0xee, 0x5000);
	for (unsigned i = 0; i < 10; i++)
		f->mem[SEG_A + i] = (uint8_t)(0x10 + i);
	for (unsigned i = 0; i < 20; i++)
		f->mem[SEG_C + i] = (uint8_t)(0x10 + 10 + i);
	for (unsigned i = 0; i < 8; i++)
		f->mem[SEG_B + i] = (uint8_t)(0x80 + i);
	for (unsigned i = 0; i < 16; i++)
		f->mem[SEG_D + i] = (uint8_t)(0x80 + 8 + i);
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(f->c.nsegs, 5);
	assert_int_equal(f->c.readable, 30);
	assert_int_equal(f->c.writable, 24);
}

/* iovecs over one direction's buffers, as virtio-blk (a byte range) and virtio-net (all of
 * it) take them; empty segments left out. */
static void test_chain_iov(void **state)
{
	struct fixture *f = *state;
	struct iovec iov[VIRTQ_MAX_SEGS];

	copy_chain(f);
	/* All readable bytes: A and C (E is empty). */
	assert_int_equal(virtq_chain_iov(&f->c, &f->gm, false, 0, VIRTQ_ALL, iov), 2);
	assert_ptr_equal(iov[0].iov_base, f->mem + SEG_A);
	assert_int_equal(iov[0].iov_len, 10);
	assert_ptr_equal(iov[1].iov_base, f->mem + SEG_C);
	assert_int_equal(iov[1].iov_len, 20);
	/* Bytes [5, 15) of the readable part: the end of A, the start of C. */
	assert_int_equal(virtq_chain_iov(&f->c, &f->gm, false, 5, 10, iov), 2);
	assert_ptr_equal(iov[0].iov_base, f->mem + SEG_A + 5);
	assert_int_equal(iov[0].iov_len, 5);
	assert_ptr_equal(iov[1].iov_base, f->mem + SEG_C);
	assert_int_equal(iov[1].iov_len, 5);
	/* The writable part: B and D, from inside B. */
	assert_int_equal(virtq_chain_iov(&f->c, &f->gm, true, 2, VIRTQ_ALL, iov), 2);
	assert_ptr_equal(iov[0].iov_base, f->mem + SEG_B + 2);
	assert_int_equal(iov[0].iov_len, 6);
	assert_int_equal(iov[1].iov_len, 16);
	/* More than there is: refused; nothing asked for: no iovecs. */
	assert_int_equal(virtq_chain_iov(&f->c, &f->gm, false, 0, 31, iov), -1);
	assert_int_equal(virtq_chain_iov(&f->c, &f->gm, true, 20, 5, iov), -1);
	assert_int_equal(virtq_chain_iov(&f->c, &f->gm, false, 3, 0, iov), 0);
	assert_int_equal(virtq_chain_iov(&f->c, &f->gm, true, 24, VIRTQ_ALL, iov), 0);
}

static void test_chain_read(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf;

	copy_chain(f);
	/* Exactly sized heap buffers: ASan catches any overrun of dst. */
	buf = malloc(30);
	assert_non_null(buf);
	assert_int_equal(virtq_chain_read(&f->c, &f->gm, 0, buf, 30), 30);
	for (unsigned i = 0; i < 30; i++)
		assert_int_equal(buf[i], 0x10 + i);
	free(buf);

	/* Spanning A -> C (skipping B, E), from inside A. */
	buf = malloc(10);
	assert_non_null(buf);
	assert_int_equal(virtq_chain_read(&f->c, &f->gm, 5, buf, 10), 10);
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(buf[i], 0x10 + 5 + i);
	/* Starting exactly at C. */
	assert_int_equal(virtq_chain_read(&f->c, &f->gm, 10, buf, 3), 3);
	assert_int_equal(buf[0], 0x10 + 10);
	assert_int_equal(buf[2], 0x10 + 12);
	/* Longer than what exists: only the rest. */
	memset(buf, 0, 10);
	assert_int_equal(virtq_chain_read(&f->c, &f->gm, 27, buf, 10), 3);
	assert_int_equal(buf[0], 0x10 + 27);
	assert_int_equal(buf[2], 0x10 + 29);
	assert_int_equal(buf[3], 0);
	/* At or beyond the end; zero length. */
	assert_int_equal(virtq_chain_read(&f->c, &f->gm, 30, buf, 10), 0);
	assert_int_equal(virtq_chain_read(&f->c, &f->gm, UINT64_MAX, buf, 10), 0);
	assert_int_equal(virtq_chain_read(&f->c, &f->gm, 0, buf, 0), 0);
	free(buf);

	buf = malloc(100);
	assert_non_null(buf);
	memset(buf, 0, 100);
	assert_int_equal(virtq_chain_read(&f->c, &f->gm, 0, buf, 100), 30);
	for (unsigned i = 0; i < 30; i++)
		assert_true(buf[i] < 0x80); /* nothing from a writable buffer */
	assert_int_equal(buf[30], 0);
	free(buf);
	/* Reading does not change guest memory. */
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(f->mem[SEG_B + i], 0x80 + i);
}

static void expect_untouched_around(struct fixture *f)
{
	/* The 0xee guard bytes right before and after each segment. */
	static const uint64_t seg[] = {SEG_A, SEG_B, SEG_C, SEG_D, SEG_E};
	static const uint32_t len[] = {10, 8, 20, 16, 0};

	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(f->mem[seg[i] - 1], 0xee);
		assert_int_equal(f->mem[seg[i] + len[i]], 0xee);
	}
}

static void test_chain_write(void **state)
{
	struct fixture *f = *state;
	uint8_t src[64];

	copy_chain(f);
	for (unsigned i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(0xc0 + i);
	/* Spanning B -> D, from inside B. */
	assert_int_equal(virtq_chain_write(&f->c, &f->gm, 6, src, 4), 4);
	assert_int_equal(f->mem[SEG_B + 5], 0x85);
	assert_int_equal(f->mem[SEG_B + 6], 0xc0);
	assert_int_equal(f->mem[SEG_B + 7], 0xc1);
	assert_int_equal(f->mem[SEG_D + 0], 0xc2);
	assert_int_equal(f->mem[SEG_D + 1], 0xc3);
	assert_int_equal(f->mem[SEG_D + 2], 0x80 + 8 + 2);
	/* Readable buffers are never written. */
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(f->mem[SEG_A + i], 0x10 + i);
	for (unsigned i = 0; i < 20; i++)
		assert_int_equal(f->mem[SEG_C + i], 0x10 + 10 + i);
	expect_untouched_around(f);

	/* Longer than the chain: only the 24 writable bytes. */
	assert_int_equal(virtq_chain_write(&f->c, &f->gm, 0, src, sizeof(src)), 24);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(f->mem[SEG_B + i], 0xc0 + i);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(f->mem[SEG_D + i], 0xc0 + 8 + i);
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(f->mem[SEG_A + i], 0x10 + i);
	expect_untouched_around(f);

	/* The tail, past the end, empty. */
	assert_int_equal(virtq_chain_write(&f->c, &f->gm, 20, src + 32, 10), 4);
	assert_int_equal(f->mem[SEG_D + 12], 0xc0 + 32);
	assert_int_equal(f->mem[SEG_D + 15], 0xc0 + 35);
	assert_int_equal(virtq_chain_write(&f->c, &f->gm, 24, src, 10), 0);
	assert_int_equal(virtq_chain_write(&f->c, &f->gm, UINT64_MAX, src, 10), 0);
	assert_int_equal(virtq_chain_write(&f->c, &f->gm, 0, src, 0), 0);
	expect_untouched_around(f);
}

/* A chain with only readable (or only writable) buffers. */
static void test_chain_one_direction(void **state)
{
	struct fixture *f = *state;
	uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};

	put_desc(f, DESC_GPA, 0, BUF_GPA, 8, 0, 0);
	submit(f, 0);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	assert_int_equal(virtq_chain_write(&f->c, &f->gm, 0, b, 8), 0);
	assert_int_equal(f->mem[BUF_GPA], 0);
	put_desc(f, DESC_GPA, 1, BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
	submit(f, 1);
	assert_int_equal(virtq_pop(&f->q, &f->gm, &f->c), VIRTQ_CHAIN);
	memset(f->mem + BUF_GPA, 0x42, 8);
	assert_int_equal(virtq_chain_read(&f->c, &f->gm, 0, b, 8), 0);
	assert_int_equal(b[0], 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(test_layout_sizes),
	    T(test_layout_alignment),
	    T(test_layout_bounds),
	    T(test_pop_empty),
	    T(test_pop_simple_chain),
	    T(test_pop_order),
	    T(test_pop_full_ring_and_idx_jump),
	    T(test_pop_idx_backwards),
	    T(test_pop_bad_head),
	    T(test_pop_bad_next),
	    T(test_pop_loops),
	    T(test_pop_chain_of_size),
	    T(test_pop_max_queue_chain),
	    T(test_pop_bad_buffers),
	    T(test_indirect_valid),
	    T(test_indirect_max),
	    T(test_indirect_bad),
	    T(test_indirect_bad_table),
	    T(test_pop_wraparound),
	    T(test_push),
	    T(test_push_wraparound),
	    T(test_push_ring_gone),
	    T(test_push_ring_wraps),
	    T(test_interrupt_suppressed),
	    T(test_chain_iov),
	    T(test_chain_read),
	    T(test_chain_write),
	    T(test_chain_one_direction),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
