#include "guest_memory.h"
#include "layout.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define GM_SMALL_PAGES_BELOW (2ULL << 20)

int gm_init(struct guest_memory *gm, uint64_t size)
{
	void *p;

	memset(gm, 0, sizeof(*gm));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
	         -1, 0);
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

void gm_destroy(struct guest_memory *gm)
{
	if (gm->host)
		munmap(gm->host, gm->size);
	memset(gm, 0, sizeof(*gm));
}

void gm_wrap(struct guest_memory *gm, void *buf, uint64_t size)
{
	gm->host = buf;
	gm->size = size;
	gm->low_size = size;
	gm->high_size = 0;
}

/* Offset into the host mapping, or UINT64_MAX when the range is not all RAM. */
static uint64_t gm_offset(const struct guest_memory *gm, uint64_t gpa, uint64_t len)
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
	memcpy(p, src, len);
	return 0;
}

int gm_fill(const struct guest_memory *gm, uint64_t gpa, int byte, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -1;
	memset(p, byte, len);
	return 0;
}
