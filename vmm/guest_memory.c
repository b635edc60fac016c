#include "guest_memory.h"
#include "layout.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define GM_SMALL_PAGES_BELOW (2ULL << 20)
/* gm_load writes through the memfd from this length on: below it, a page or so, the
 * system call costs more than the page faults it saves. */
#define GM_LOAD_BY_WRITE (8ULL << 10)

static int map_ram(struct guest_memory *gm, uint64_t size, int fd, bool private_file)
{
	void *p;

	memset(gm, 0, sizeof(*gm));
	gm->fd = private_file ? -1 : fd;
	if (fd < 0)
		p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	else
		p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		         (private_file ? MAP_PRIVATE : MAP_SHARED) | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Huge pages make first touches ~10x cheaper (docs/HOST_FACTS.md); failure is harmless. The
	 * first 2 MiB (boot structures, the start of a small guest) stay in 4 KiB pages: a
	 * guest touches a few pages there, and a huge page would be zeroed whole (~0.3 ms) on
	 * every boot. */
	if (size > GM_SMALL_PAGES_BELOW)
		madvise((uint8_t *)p + GM_SMALL_PAGES_BELOW, size - GM_SMALL_PAGES_BELOW,
		        MADV_HUGEPAGE);
	gm->host = p;
	gm->size = size;
	gm->low_size = layout_low_ram(size);
	gm->high_size = layout_high_ram(size);
	return 0;
}

int gm_init(struct guest_memory *gm, uint64_t size)
{
	return map_ram(gm, size, -1, false);
}

int gm_init_shared(struct guest_memory *gm, uint64_t size)
{
	int fd, r;
	struct rlimit fsize;

	/* A memfd is a file: beyond RLIMIT_FSIZE, ftruncate would raise SIGXFSZ. */
	if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY &&
	    fsize.rlim_cur < size)
		return -EFBIG;
	fd = memfd_create("hearth-guest-ram", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = map_ram(gm, size, fd, false);
	if (r < 0) {
		close(fd);
		gm->fd = -1;
	}
	return r;
}

int gm_init_file(struct guest_memory *gm, int fd, uint64_t size)
{
	return map_ram(gm, size, fd, true);
}

void gm_destroy(struct guest_memory *gm)
{
	/* (a zeroed struct has fd 0 and no mapping: nothing of it is ours to close) */
	if (gm->host) {
		munmap(gm->host, gm->size);
		if (gm->fd >= 0)
			close(gm->fd);
	}
	free(gm->dirty);
	memset(gm, 0, sizeof(*gm));
	gm->fd = -1;
}

void gm_wrap(struct guest_memory *gm, void *buf, uint64_t size)
{
	gm->host = buf;
	gm->size = size;
	gm->low_size = size;
	gm->high_size = 0;
	gm->fd = -1;
	gm->dirty = NULL;
}

uint64_t gm_offset(const struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
	uint64_t end;

	if (__builtin_add_overflow(gpa, len, &end))
		return UINT64_MAX;
	if (end <= gm->low_size)
		return gpa;
	if (gpa >= LAYOUT_HIGH_RAM_START && end - LAYOUT_HIGH_RAM_START <= gm->high_size)
		return gm->low_size + (gpa - LAYOUT_HIGH_RAM_START);
	return UINT64_MAX;
}

bool gm_range_ok(const struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
	return gm_offset(gm, gpa, len) != UINT64_MAX;
}

void *gm_ptr(const struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
	uint64_t off = gm_offset(gm, gpa, len);

	return off == UINT64_MAX ? NULL : gm->host + off;
}

int gm_read(const struct guest_memory *gm, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

int gm_write(const struct guest_memory *gm, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -1;
	gm_mark_dirty(gm, gpa, len);
	memcpy(p, src, len);
	return 0;
}

/* Through the memfd when there is one: the kernel fills the pages inside the call, where
 * every page first touched through the mapping would cost hearth a page fault (12-30 us each
 * on a PVM host, docs/BENCHMARKS.md). */
int gm_load(const struct guest_memory *gm, uint64_t gpa, const void *src, uint64_t len)
{
	uint64_t off = gm_offset(gm, gpa, len);
	const uint8_t *s = src;

	if (off == UINT64_MAX)
		return -1;
	gm_mark_dirty(gm, gpa, len);
#ifdef MADV_POPULATE_READ
	if (gm->fd >= 0 && len >= GM_LOAD_BY_WRITE) {
		/* The source (a mapped image file) in one call: pwrite would fault its pages in one
		 * at a time, at a fault's price each (an error only leaves that to pwrite). */
		uintptr_t a = (uintptr_t)s & ~(uintptr_t)4095;

		madvise((void *)a, (uintptr_t)s + len - a, MADV_POPULATE_READ);
	}
#endif
	while (gm->fd >= 0 && len >= GM_LOAD_BY_WRITE) {
		ssize_t n = pwrite(gm->fd, s, len, (off_t)off);

		if (n <= 0)
			break; /* (the mapping below does the rest) */
		s += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	memcpy(gm->host + off, s, len);
	return 0;
}

int gm_zero(const struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
	uint64_t off = gm_offset(gm, gpa, len), first, end;

	if (off == UINT64_MAX)
		return -1;
	first = (off + 4095) & ~4095ULL;
	end = (off + len) & ~4095ULL;
	/* Whole pages of a memfd become holes, which read as zeroes: no page is touched, and a
	 * fresh memfd (a boot) has no page to free there. */
	if (gm->fd >= 0 && end > first &&
	    fallocate(gm->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)first,
	              (off_t)(end - first)) == 0) {
		memset(gm->host + off, 0, first - off);
		memset(gm->host + end, 0, off + len - end);
		gm_mark_dirty(gm, gpa, len);
		return 0;
	}
	return gm_fill(gm, gpa, 0, len);
}

int gm_fill(const struct guest_memory *gm, uint64_t gpa, int byte, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -1;
	memset(p, byte, len);
	gm_mark_dirty(gm, gpa, len);
	return 0;
}

/* ---- dirty tracking of device writes ---------------------------------------------------- */

uint64_t gm_pages(const struct guest_memory *gm)
{
	return (gm->size + 4095) / 4096;
}

void gm_mark_dirty(const struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
	uint64_t *bm = __atomic_load_n(&gm->dirty, __ATOMIC_ACQUIRE);
	uint64_t off, first, last;

	if (!bm || !len)
		return;
	off = gm_offset(gm, gpa, len);
	if (off == UINT64_MAX)
		return;
	first = off / 4096;
	last = (off + len - 1) / 4096;
	for (uint64_t p = first; p <= last; p++)
		__atomic_fetch_or(&bm[p / 64], 1ULL << (p % 64), __ATOMIC_RELAXED);
}

int gm_dirty_start(struct guest_memory *gm)
{
	uint64_t *bm;

	if (gm->dirty) {
		memset(gm->dirty, 0, (gm_pages(gm) + 63) / 64 * 8);
		return 0;
	}
	bm = calloc((gm_pages(gm) + 63) / 64, 8);
	if (!bm)
		return -ENOMEM;
	__atomic_store_n(&gm->dirty, bm, __ATOMIC_RELEASE);
	return 0;
}

void gm_dirty_stop(struct guest_memory *gm)
{
	uint64_t *bm = gm->dirty;

	__atomic_store_n(&gm->dirty, NULL, __ATOMIC_RELEASE);
	free(bm); /* callers stop tracking only with every vCPU and device quiet */
}

void gm_dirty_collect(struct guest_memory *gm, uint64_t *bitmap)
{
	uint64_t words = (gm_pages(gm) + 63) / 64;

	if (!gm->dirty)
		return;
	for (uint64_t i = 0; i < words; i++)
		bitmap[i] |= __atomic_exchange_n(&gm->dirty[i], 0, __ATOMIC_RELAXED);
}
