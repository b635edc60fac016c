/*
 * The snapshot state file's encoding: a header, a sequence of tagged sections, a CRC64 over
 * all of it (docs/SNAPSHOTS.md has the layout). Writers append little-endian fields to a
 * growing buffer; readers take them back with every length checked: a state file is
 * hostile input until each field has been validated by the part that reads it.
 *
 * A component (a device, a backend, an interrupt chip) saves its state as one section:
 *
 *     size_t at = snap_begin(w, SNAP_TAG('U', 'A', 'R', 'T'));
 *     snap_u32(w, s->ier); ...
 *     snap_end(w, at);
 *
 * and restores it from that section, failing (with the field's name) on anything short,
 * out of range or inconsistent with the VM's configuration:
 *
 *     struct snap_r sec;
 *     if (snap_section(r, SNAP_TAG('U', 'A', 'R', 'T'), &sec, err)) return -1;
 *     uint32_t ier; if (!snap_get_u32(&sec, &ier) || ier > 0xf) return snap_bad(&sec, err, "ier");
 */
#ifndef HEARTH_SNAPSHOT_STREAM_H
#define HEARTH_SNAPSHOT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/error.h"

#define SNAP_TAG(a, b, c, d)                                                                       \
	((uint32_t)(uint8_t)(a) | (uint32_t)(uint8_t)(b) << 8 | (uint32_t)(uint8_t)(c) << 16 |     \
	 (uint32_t)(uint8_t)(d) << 24)

/* ---- writing ---------------------------------------------------------------------------- */

struct snap_w {
	uint8_t *buf;
	size_t len, cap;
	bool failed; /* out of memory: every later call does nothing */
};

void snap_w_init(struct snap_w *w);
void snap_w_free(struct snap_w *w);
void snap_u8(struct snap_w *w, uint8_t v);
void snap_u16(struct snap_w *w, uint16_t v);
void snap_u32(struct snap_w *w, uint32_t v);
void snap_u64(struct snap_w *w, uint64_t v);
void snap_bool(struct snap_w *w, bool v);
void snap_bytes(struct snap_w *w, const void *p, size_t n);
/* A section: its tag now, its length filled in by snap_end. Returns where it starts. */
size_t snap_begin(struct snap_w *w, uint32_t tag);
void snap_end(struct snap_w *w, size_t at);

/* ---- reading ---------------------------------------------------------------------------- */

struct snap_r {
	const uint8_t *p;
	size_t len, off;
	uint32_t tag; /* the section's, for messages (0 at the top) */
};

void snap_r_init(struct snap_r *r, const void *p, size_t len);
/* Each false when fewer bytes are left than the field needs (nothing consumed then). */
bool snap_get_u8(struct snap_r *r, uint8_t *v);
bool snap_get_u16(struct snap_r *r, uint16_t *v);
bool snap_get_u32(struct snap_r *r, uint32_t *v);
bool snap_get_u64(struct snap_r *r, uint64_t *v);
bool snap_get_bool(struct snap_r *r, bool *v); /* false also for a byte other than 0 or 1 */
bool snap_get_bytes(struct snap_r *r, void *p, size_t n);
size_t snap_left(const struct snap_r *r);
/* The next section, which must carry `tag`: *sec reads its contents. -1 (err set) when it is
 * missing, another one, or longer than what is left. */
int snap_section(struct snap_r *r, uint32_t tag, struct snap_r *sec, struct error *err);
/* A section must be read to its end: -1 (err set) when bytes are left over. */
int snap_section_done(const struct snap_r *sec, struct error *err);
/* Fail with "snapshot: section XXXX: bad <field>"; returns -1. */
int snap_bad(const struct snap_r *sec, struct error *err, const char *field);

/* ---- the file --------------------------------------------------------------------------- */

#define SNAP_MAGIC   "HEARTHSN"
#define SNAP_VERSION 1u

/* CRC-64/XZ (ECMA-182 polynomial, reflected) of `n` bytes, continuing from `crc`
 * (start with 0). */
uint64_t snap_crc64(uint64_t crc, const void *p, size_t n);

/* The whole file for a payload (sections): header, payload, CRC. 0 or -1 (err set). */
int snap_write_file(const char *path, const struct snap_w *payload, struct error *err);
/* Read a state file: magic, version, length and CRC checked; *payload (malloc'd, freed by
 * the caller) is the sections. 0 or -1 (err set, naming what is wrong). */
int snap_read_file(const char *path, uint8_t **payload, size_t *len, struct error *err);

#endif
