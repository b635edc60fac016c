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
};

/* Map `size` bytes of anonymous memory (MADV_HUGEPAGE). Returns 0 or -errno. */
int gm_init(struct guest_memory *gm, uint64_t size);
/* The same in a memfd, mapped shared, for a backend that maps guest RAM into another
 * process too (the process engine). Returns 0 or -errno. */
int gm_init_shared(struct guest_memory *gm, uint64_t size);
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

#endif
