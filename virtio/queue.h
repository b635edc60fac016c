/*
 * Split virtqueues, shared by every device. Everything in the rings comes from the guest and
 * is hostile: ring addresses, indices, descriptor addresses, lengths, flags and next links
 * are validated against guest RAM (vmm/guest_memory) before use; chains are bounded by the
 * queue size (so loops end), indirect tables are checked and cannot nest.
 */
#ifndef HEARTH_VIRTIO_QUEUE_H
#define HEARTH_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/guest_memory.h"

struct snap_w;
struct snap_r;
struct error;

#define VIRTQ_MAX_SIZE 256
/* A chain has at most this many buffers (a queue's worth, or one indirect table's). */
#define VIRTQ_MAX_SEGS VIRTQ_MAX_SIZE

struct virtq {
	uint16_t size; /* set by the driver (QueueNum); a power of two <= max */
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t last_avail; /* next avail ring entry to take */
	uint16_t used_idx;   /* our used->idx */
	bool broken;         /* a malformed ring was seen: nothing more is taken until reset */
};

struct virtq_seg {
	uint64_t gpa;
	uint32_t len;
	bool device_writes; /* VRING_DESC_F_WRITE */
};

struct virtq_chain {
	uint16_t head;
	uint16_t nsegs;
	uint64_t readable; /* bytes the device may read (driver -> device) */
	uint64_t writable; /* bytes the device may write (device -> driver) */
	struct virtq_seg seg[VIRTQ_MAX_SEGS];
};

enum virtq_pop_result {
	VIRTQ_EMPTY = 0,
	VIRTQ_CHAIN = 1,      /* a valid chain */
	VIRTQ_BAD_CHAIN = -1, /* the head is valid, the chain is not: return it with len 0 */
	VIRTQ_BAD_RING = -2,  /* the ring itself is malformed: the device needs a reset */
};

/* Check ring placement when the driver sets QueueReady: alignment, size, all in RAM. */
bool virtq_layout_ok(const struct virtq *q, const struct guest_memory *gm);

/* Take the next available chain. On VIRTQ_BAD_RING the queue is marked broken. */
enum virtq_pop_result virtq_pop(struct virtq *q, const struct guest_memory *gm,
                                struct virtq_chain *c);

/* Put a chain on the used ring with `written` bytes; returns -1 if the used ring is gone. */
int virtq_push(struct virtq *q, const struct guest_memory *gm, uint16_t head, uint32_t written);

/* Whether the driver asked not to be interrupted (VRING_AVAIL_F_NO_INTERRUPT). */
bool virtq_interrupt_suppressed(const struct virtq *q, const struct guest_memory *gm);

/* Ask the driver not to notify (VRING_USED_F_NO_NOTIFY in used->flags), or to notify again.
 * A hint: a device that turns notifications back on must look at the ring once more
 * afterwards, since the driver may have added buffers before it saw the change. */
void virtq_set_notify(struct virtq *q, const struct guest_memory *gm, bool notify);

void virtq_reset(struct virtq *q);

/* Copy between a chain's buffers and host memory, starting `offset` bytes into the readable
 * (or writable) part. Return bytes copied. */
uint64_t virtq_chain_read(const struct virtq_chain *c, const struct guest_memory *gm,
                          uint64_t offset, void *dst, uint64_t len);
uint64_t virtq_chain_write(const struct virtq_chain *c, const struct guest_memory *gm,
                           uint64_t offset, const void *src, uint64_t len);

/* iovecs over a chain's device-writable (`device_writes`) or device-readable buffers:
 * `len` bytes from `offset` into that part, or all of it from there with VIRTQ_ALL. Empty
 * segments are skipped; `iov` needs room for c->nsegs entries. Returns the count, or -1 when
 * a segment is not in guest RAM or the chain holds fewer than `len` bytes. Device-writable
 * iovecs count as written (gm_mark_dirty) from here: the caller fills them. */
#define VIRTQ_ALL UINT64_MAX
int virtq_chain_iov(const struct virtq_chain *c, const struct guest_memory *gm, bool device_writes,
                    uint64_t offset, uint64_t len, struct iovec *iov);

/* Chains taken from the ring and not yet put on the used ring. */
static inline uint16_t virtq_in_flight(const struct virtq *q)
{
	return (uint16_t)(q->last_avail - q->used_idx);
}

/*
 * Snapshots (snapshot/stream.h): a queue's registers and run-time state, as fields of its
 * transport's section. virtq_restore reads them as hostile input: a size that is 0 or a power
 * of two <= `max`, a ready queue's rings in guest RAM (virtq_layout_ok), no more chains in
 * flight than the ring holds. *q is written only when every field is good; -1 (err set,
 * naming "queue <n> <field>") otherwise.
 */
void virtq_save(const struct virtq *q, struct snap_w *w);
int virtq_restore(struct virtq *q, unsigned n, uint16_t max, const struct guest_memory *gm,
                  struct snap_r *sec, struct error *err);
/* A chain a device holds across a snapshot, as it was popped. Restore checks it against its
 * queue `q` (ready, head < size) and every buffer against guest RAM; `what` names it in
 * errors. */
void virtq_chain_save(const struct virtq_chain *c, struct snap_w *w);
int virtq_chain_restore(struct virtq_chain *c, const struct virtq *q, const struct guest_memory *gm,
                        const char *what, struct snap_r *sec, struct error *err);

#endif
