/*
 * Guest RAM: one host mapping that backs [0, low) and [4 GiB, 4 GiB + high).
 * Every access the VMM makes to guest memory goes through this layer, which checks
 * gpa + len against the RAM regions (with overflow checks). Device and loader code
 * never do pointer arithmetic on raw guest addresses.
 */
#ifndef HEARTH_GUEST_MEMORY_H
#define HEARTH_GUEST_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guest_memory {
	uint8_t *host;      /* low RAM at host[0], high RAM at host[low_size] */
	uint64_t size;      /* total bytes of RAM */
	uint64_t low_size;  /* RAM in [0, low_size) */
	uint64_t high_size; /* RAM in [4 GiB, 4 GiB + high_size) */
	int fd;             /* the memfd behind `host` (gm_init_shared), else -1 */
	/* Pages hearth's own devices wrote (one bit per 4 KiB page, by gm_offset), while dirty
	 * tracking is on for diff snapshots; NULL otherwise. The guest's own writes are the
	 * backend's to track (backend.h: dirty_collect). */
	uint64_t *dirty;
};

/* Map `size` bytes of anonymous memory (MADV_HUGEPAGE). Returns 0 or -errno. */
int gm_init(struct guest_memory *gm, uint64_t size);
/* The same in a memfd, mapped shared, for a backend that maps guest RAM into another
 * process too (the process engine). Returns 0 or -errno. */
int gm_init_shared(struct guest_memory *gm, uint64_t size);
/* Map `size` bytes of the file `fd` privately (a snapshot's memory file: no copy, pages
 * read on demand, shared with other mappings of the file until written). fd may be closed
 * afterwards. Returns 0 or -errno. */
int gm_init_file(struct guest_memory *gm, int fd, uint64_t size);
void gm_destroy(struct guest_memory *gm);

/* Wrap an existing buffer as low RAM only (unit tests). */
void gm_wrap(struct guest_memory *gm, void *buf, uint64_t size);

/* True when [gpa, gpa + len) lies entirely inside one RAM region. len 0 is allowed. */
bool gm_range_ok(const struct guest_memory *gm, uint64_t gpa, uint64_t len);

/* Offset of [gpa, gpa + len) in the host mapping (and the memfd), or UINT64_MAX when the
 * range is not all RAM. */
uint64_t gm_offset(const struct guest_memory *gm, uint64_t gpa, uint64_t len);

/* Host pointer for [gpa, gpa + len), or NULL when the range is not all RAM. */
void *gm_ptr(const struct guest_memory *gm, uint64_t gpa, uint64_t len);

/* Copy to or from guest memory; return 0, or -1 when the range is not all RAM. */
int gm_read(const struct guest_memory *gm, uint64_t gpa, void *dst, uint64_t len);
int gm_write(const struct guest_memory *gm, uint64_t gpa, const void *src, uint64_t len);
int gm_fill(const struct guest_memory *gm, uint64_t gpa, int byte, uint64_t len);
/* gm_write and gm_fill(0) for the loaders' large copies (kernel segments, the initrd, BSS):
 * through the memfd's file calls (pwrite, a punched hole) where there is one, so that hearth
 * does not fault in every page it writes. Not for devices: the system calls are the VMM
 * thread's, before its filter. 0, or -1 when the range is not all RAM. */
int gm_load(const struct guest_memory *gm, uint64_t gpa, const void *src, uint64_t len);
int gm_zero(const struct guest_memory *gm, uint64_t gpa, uint64_t len);

/* Dirty tracking of device writes (diff snapshots). gm_write and gm_fill mark what they
 * write; a device that writes through gm_ptr marks it with gm_mark_dirty (a no-op when
 * tracking is off). Any thread. */
void gm_mark_dirty(const struct guest_memory *gm, uint64_t gpa, uint64_t len);
/* Start tracking (0 or -ENOMEM), or stop it. */
int gm_dirty_start(struct guest_memory *gm);
void gm_dirty_stop(struct guest_memory *gm);
/* Number of 4 KiB pages of guest RAM (the bitmaps' size in bits). */
uint64_t gm_pages(const struct guest_memory *gm);
/* OR the device-dirtied pages into `bitmap` and clear them. */
void gm_dirty_collect(struct guest_memory *gm, uint64_t *bitmap);

#endif
