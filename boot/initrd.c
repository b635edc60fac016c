/*
 * Initrd placement: as high in low RAM as allowed, page aligned, above the kernel.
 *
 * The top is the end of low RAM, lowered to initrd_addr_max + 1 when the kernel states a
 * limit. The initrd must start at or above the kernel's load_end (which for a bzImage covers
 * the area it decompresses into) and never in the boot area below 1 MiB. An empty initrd is
 * refused ("initrd is empty") rather than silently booting without one.
 */
#include "boot.h"
#include "vmm/layout.h"

#include <inttypes.h>

#define PAGE_MASK_4K (~(uint64_t)0xfff)

int initrd_load(const struct guest_memory *gm, const struct kernel_image *k, const uint8_t *img,
                size_t len, uint64_t *addr_out, struct error *err)
{
	uint64_t top = gm->low_size, floor = k->load_end, addr;
	const char *limit = "the end of low RAM";

	*addr_out = 0;
	if (len == 0)
		return err_set(err, "initrd is empty");
	if (k->initrd_addr_max && k->initrd_addr_max < top - 1) {
		top = k->initrd_addr_max + 1; /* initrd_addr_max is inclusive */
		limit = "the kernel's initrd_addr_max";
	}
	if (floor < LAYOUT_KERNEL_START)
		floor = LAYOUT_KERNEL_START;
	if (len > top || ((top - len) & PAGE_MASK_4K) < floor)
		return err_set(err,
		               "initrd of %zu bytes does not fit between the kernel end 0x%" PRIx64
		               " and 0x%" PRIx64 " (%s)",
		               len, floor, top, limit);
	addr = (top - len) & PAGE_MASK_4K;
	if (gm_load(gm, addr, img, len))
		return err_set(err, "initrd of %zu bytes at 0x%" PRIx64 " is not in guest RAM", len,
		               addr);
	*addr_out = addr;
	return 0;
}
