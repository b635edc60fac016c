#include "queue.h"

#include <linux/virtio_ring.h>
#include <stdio.h>
#include <string.h>

#include "snapshot/stream.h"

/* Ring sizes for a queue of `n` entries (virtio 1.x split ring, no event index). */
static uint64_t desc_bytes(uint16_t n)
{
	return 16ULL * n;
}

static uint64_t avail_bytes(uint16_t n)
{
	return 4 + 2ULL * n + 2; /* flags, idx, ring[n], used_event */
}

static uint64_t used_bytes(uint16_t n)
{
	return 4 + 8ULL * n + 2; /* flags, idx, ring[n], avail_event */
}

bool virtq_layout_ok(const struct virtq *q, const struct guest_memory *gm)
{
	uint16_t n = q->size;

	if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return false;
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return false;
	return gm_range_ok(gm, q->desc_gpa, desc_bytes(n)) &&
	       gm_range_ok(gm, q->avail_gpa, avail_bytes(n)) &&
	       gm_range_ok(gm, q->used_gpa, used_bytes(n));
}

void virtq_reset(struct virtq *q)
{
	memset(q, 0, sizeof(*q));
}

/* Ring fields live in guest memory that the guest changes concurrently: read each once. */
static uint16_t load16(const struct guest_memory *gm, uint64_t gpa)
{
	uint16_t *p = gm_ptr(gm, gpa, 2);

	return p ? __atomic_load_n(p, __ATOMIC_RELAXED) : 0;
}

static void store16(const struct guest_memory *gm, uint64_t gpa, uint16_t v)
{
	uint16_t *p = gm_ptr(gm, gpa, 2);

	if (p) {
		__atomic_store_n(p, v, __ATOMIC_RELAXED);
		gm_mark_dirty(gm, gpa, 2);
	}
}

static int add_seg(struct virtq_chain *c, const struct vring_desc *d)
{
	if (c->nsegs >= VIRTQ_MAX_SEGS)
		return -1;
	c->seg[c->nsegs++] =
	    (struct virtq_seg){d->addr, d->len, (d->flags & VRING_DESC_F_WRITE) != 0};
	if (d->flags & VRING_DESC_F_WRITE)
		c->writable += d->len;
	else
		c->readable += d->len;
	return 0;
}

/* Walk an indirect table: no nesting, next links inside the table, at most n entries. */
static int walk_indirect(const struct guest_memory *gm, const struct vring_desc *ind,
                         struct virtq_chain *c)
{
	uint32_t n = ind->len / 16;
	const struct vring_desc *table;
	uint16_t i = 0;

	if (ind->len == 0 || ind->len % 16 || n > VIRTQ_MAX_SEGS)
		return -1;
	table = gm_ptr(gm, ind->addr, ind->len);
	if (!table)
		return -1;
	for (uint32_t steps = 0;; steps++) {
		struct vring_desc d;

		if (steps >= n)
			return -1; /* more links than entries: a loop */
		memcpy(&d, &table[i], sizeof(d));
		if ((d.flags & VRING_DESC_F_INDIRECT) || !gm_range_ok(gm, d.addr, d.len) ||
		    add_seg(c, &d))
			return -1;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		if (d.next >= n)
			return -1;
		i = d.next;
	}
}

static int walk_chain(const struct virtq *q, const struct guest_memory *gm, uint16_t head,
                      struct virtq_chain *c)
{
	const struct vring_desc *table = gm_ptr(gm, q->desc_gpa, desc_bytes(q->size));
	uint16_t i = head;

	if (!table)
		return -1;
	for (uint32_t steps = 0;; steps++) {
		struct vring_desc d;

		if (steps >= q->size)
			return -1; /* a chain longer than the queue: a loop */
		memcpy(&d, &table[i], sizeof(d));
		if (d.flags & VRING_DESC_F_INDIRECT) {
			/* An indirect descriptor is the chain's last and holds the rest. */
			if ((d.flags & VRING_DESC_F_NEXT) || (d.flags & VRING_DESC_F_WRITE))
				return -1;
			return walk_indirect(gm, &d, c);
		}
		if (!gm_range_ok(gm, d.addr, d.len) || add_seg(c, &d))
			return -1;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		if (d.next >= q->size)
			return -1;
		i = d.next;
	}
}

enum virtq_pop_result virtq_pop(struct virtq *q, const struct guest_memory *gm,
                                struct virtq_chain *c)
{
	uint16_t avail_idx, head;

	if (!q->ready || q->broken)
		return VIRTQ_EMPTY;
	if (!virtq_layout_ok(q, gm)) {
		q->broken = true;
		return VIRTQ_BAD_RING;
	}
	avail_idx = load16(gm, q->avail_gpa + 2);
	if (avail_idx == q->last_avail)
		return VIRTQ_EMPTY;
	if ((uint16_t)(avail_idx - q->last_avail) > q->size) {
		q->broken = true; /* the driver claims more entries than the ring holds */
		return VIRTQ_BAD_RING;
	}
	/* Read the ring entry and descriptors only after seeing the index. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	head = load16(gm, q->avail_gpa + 4 + 2ULL * (q->last_avail % q->size));
	if (head >= q->size) {
		q->broken = true;
		return VIRTQ_BAD_RING;
	}
	q->last_avail++;
	c->head = head;
	c->nsegs = 0;
	c->readable = c->writable = 0;
	return walk_chain(q, gm, head, c) ? VIRTQ_BAD_CHAIN : VIRTQ_CHAIN;
}

int virtq_push(struct virtq *q, const struct guest_memory *gm, uint16_t head, uint32_t written)
{
	struct vring_used_elem *e;
	uint64_t slot;

	/* The ring was checked when the queue became ready; check again, it costs little. */
	if (!q->size || !gm_range_ok(gm, q->used_gpa, used_bytes(q->size)))
		return -1;
	slot = q->used_gpa + 4 + 8ULL * (q->used_idx % q->size);
	e = gm_ptr(gm, slot, sizeof(*e));
	if (!e)
		return -1;
	e->id = head;
	e->len = written;
	gm_mark_dirty(gm, slot, sizeof(*e));
	q->used_idx++;
	/* The entry must be visible before the index that publishes it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	store16(gm, q->used_gpa + 2, q->used_idx);
	return 0;
}

bool virtq_interrupt_suppressed(const struct virtq *q, const struct guest_memory *gm)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load16(gm, q->avail_gpa) & VRING_AVAIL_F_NO_INTERRUPT;
}

void virtq_set_notify(struct virtq *q, const struct guest_memory *gm, bool notify)
{
	if (!q->ready || q->broken || !q->size)
		return;
	store16(gm, q->used_gpa, notify ? 0 : VRING_USED_F_NO_NOTIFY);
	/* The flag must be visible before the device looks at avail->idx again. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static uint64_t chain_copy(const struct virtq_chain *c, const struct guest_memory *gm,
                           bool writable, uint64_t offset, uint8_t *host, uint64_t len,
                           bool to_guest)
{
	uint64_t done = 0;

	for (uint16_t i = 0; i < c->nsegs && done < len; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint64_t n;
		uint8_t *p;

		if (s->device_writes != writable)
			continue;
		if (offset >= s->len) {
			offset -= s->len;
			continue;
		}
		n = s->len - offset;
		if (n > len - done)
			n = len - done;
		p = gm_ptr(gm, s->gpa + offset, n);
		if (!p)
			break;
		if (to_guest) {
			memcpy(p, host + done, n);
			gm_mark_dirty(gm, s->gpa + offset, n);
		} else {
			memcpy(host + done, p, n);
		}
		done += n;
		offset = 0;
	}
	return done;
}

uint64_t virtq_chain_read(const struct virtq_chain *c, const struct guest_memory *gm,
                          uint64_t offset, void *dst, uint64_t len)
{
	return chain_copy(c, gm, false, offset, dst, len, false);
}

uint64_t virtq_chain_write(const struct virtq_chain *c, const struct guest_memory *gm,
                           uint64_t offset, const void *src, uint64_t len)
{
	return chain_copy(c, gm, true, offset, (uint8_t *)src, len, true);
}

int virtq_chain_iov(const struct virtq_chain *c, const struct guest_memory *gm, bool device_writes,
                    uint64_t offset, uint64_t len, struct iovec *iov)
{
	int n = 0;

	for (uint16_t i = 0; i < c->nsegs && len > 0; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint64_t take;
		void *p;

		if (s->device_writes != device_writes || s->len == 0)
			continue;
		if (offset >= s->len) {
			offset -= s->len;
			continue;
		}
		take = s->len - offset;
		if (take > len)
			take = len;
		p = gm_ptr(gm, s->gpa + offset, take);
		if (!p)
			return -1;
		if (device_writes)
			gm_mark_dirty(gm, s->gpa + offset, take);
		iov[n].iov_base = p;
		iov[n].iov_len = take;
		n++;
		if (len != VIRTQ_ALL)
			len -= take;
		offset = 0;
	}
	return len && len != VIRTQ_ALL ? -1 : n;
}

/* ---- snapshots -------------------------------------------------------------------------- */

void virtq_save(const struct virtq *q, struct snap_w *w)
{
	snap_u16(w, q->size);
	snap_bool(w, q->ready);
	snap_u64(w, q->desc_gpa);
	snap_u64(w, q->avail_gpa);
	snap_u64(w, q->used_gpa);
	snap_u16(w, q->last_avail);
	snap_u16(w, q->used_idx);
	snap_bool(w, q->broken);
}

static int bad_field(struct snap_r *sec, struct error *err, const char *what, unsigned n,
                     const char *field)
{
	char name[96];

	snprintf(name, sizeof(name), "%s %u %s", what, n, field);
	return snap_bad(sec, err, name);
}

int virtq_restore(struct virtq *q, unsigned n, uint16_t max, const struct guest_memory *gm,
                  struct snap_r *sec, struct error *err)
{
	struct virtq v = {0};

	/* QueueNum keeps only 0 or a power of two <= max; any address is a value the driver can
	 * write while the queue is not ready. */
	if (!snap_get_u16(sec, &v.size) || (v.size & (v.size - 1)) || v.size > max)
		return bad_field(sec, err, "queue", n, "size");
	if (!snap_get_bool(sec, &v.ready))
		return bad_field(sec, err, "queue", n, "ready");
	if (!snap_get_u64(sec, &v.desc_gpa) || !snap_get_u64(sec, &v.avail_gpa) ||
	    !snap_get_u64(sec, &v.used_gpa) || (v.ready && !virtq_layout_ok(&v, gm)))
		return bad_field(sec, err, "queue", n, "ring addresses");
	/* The device puts on the used ring only chains it took: never more than the ring has. */
	if (!snap_get_u16(sec, &v.last_avail) || !snap_get_u16(sec, &v.used_idx) ||
	    virtq_in_flight(&v) > v.size)
		return bad_field(sec, err, "queue", n, "indices");
	if (!snap_get_bool(sec, &v.broken))
		return bad_field(sec, err, "queue", n, "broken flag");
	*q = v;
	return 0;
}

void virtq_chain_save(const struct virtq_chain *c, struct snap_w *w)
{
	snap_u16(w, c->head);
	snap_u16(w, c->nsegs);
	for (uint16_t i = 0; i < c->nsegs; i++) {
		snap_u64(w, c->seg[i].gpa);
		snap_u32(w, c->seg[i].len);
		snap_bool(w, c->seg[i].device_writes);
	}
}

int virtq_chain_restore(struct virtq_chain *c, const struct virtq *q, const struct guest_memory *gm,
                        const char *what, struct snap_r *sec, struct error *err)
{
	char name[96];

	c->readable = c->writable = 0;
	snprintf(name, sizeof(name), "%s head", what);
	if (!snap_get_u16(sec, &c->head) || !q->ready || c->head >= q->size)
		return snap_bad(sec, err, name);
	/* A popped chain has at least its head's buffer (walk_chain), at most VIRTQ_MAX_SEGS. */
	snprintf(name, sizeof(name), "%s length", what);
	if (!snap_get_u16(sec, &c->nsegs) || c->nsegs == 0 || c->nsegs > VIRTQ_MAX_SEGS)
		return snap_bad(sec, err, name);
	snprintf(name, sizeof(name), "%s buffer", what);
	for (uint16_t i = 0; i < c->nsegs; i++) {
		struct virtq_seg *s = &c->seg[i];

		if (!snap_get_u64(sec, &s->gpa) || !snap_get_u32(sec, &s->len) ||
		    !snap_get_bool(sec, &s->device_writes) || !gm_range_ok(gm, s->gpa, s->len))
			return snap_bad(sec, err, name);
		if (s->device_writes)
			c->writable += s->len;
		else
			c->readable += s->len;
	}
	return 0;
}
