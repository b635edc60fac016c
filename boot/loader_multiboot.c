/*
 * Multiboot v1 images: the header search, the flags hearth can honour, and loading by the
 * header's own load addresses (the "a.out kludge", flag 16), which raw binaries need and
 * which a loader must prefer for an ELF too when the flag is set (as GRUB does). ELF
 * Multiboot kernels without the flag load by their program headers (loader_elf.c).
 */
#include "boot.h"
#include "multiboot.h"
#include "vmm/layout.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

long multiboot_find(const uint8_t *img, size_t len, struct multiboot_header *h)
{
	size_t end = len < MULTIBOOT_SEARCH ? len : MULTIBOOT_SEARCH;

	/* The three fields must lie in the first 8 KiB (the address fields may not). */
	for (size_t off = 0; off + 12 <= end; off += 4) {
		uint32_t magic = le32(img + off), flags = le32(img + off + 4);

		if (magic != MULTIBOOT_HEADER_MAGIC ||
		    (uint32_t)(magic + flags + le32(img + off + 8)) != 0)
			continue;
		memset(h, 0, sizeof(*h));
		h->magic = magic;
		h->flags = flags;
		h->checksum = le32(img + off + 8);
		if ((flags & MULTIBOOT_AOUT_KLUDGE) && off + sizeof(*h) > MULTIBOOT_SEARCH)
			continue; /* the whole header lies in the first 8 KiB */
		if (off + sizeof(*h) <= len) {
			h->header_addr = le32(img + off + 12);
			h->load_addr = le32(img + off + 16);
			h->load_end_addr = le32(img + off + 20);
			h->bss_end_addr = le32(img + off + 24);
			h->entry_addr = le32(img + off + 28);
		} else if (flags & MULTIBOOT_AOUT_KLUDGE) {
			continue; /* the address fields are cut off: not a usable header */
		}
		return (long)off;
	}
	return -1;
}

int multiboot_check(const struct multiboot_header *h, struct kernel_image *k, struct error *err)
{
	uint32_t known = MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO | MULTIBOOT_VIDEO_MODE;

	if (h->flags & MULTIBOOT_VIDEO_MODE)
		snprintf(
		    k->warning, sizeof(k->warning),
		    "the Multiboot header asks for a video mode (flag 2); hearth has no display "
		    "and gives no video information");
	if (h->flags & 0xffffu & ~known)
		return err_set(err,
		               "the Multiboot header requires features hearth does not know "
		               "(flags 0x%04" PRIx32 ")",
		               h->flags & 0xffffu & ~known);
	return 0;
}

int multiboot_load_aout(const struct guest_memory *gm, const uint8_t *img, size_t len,
                        const struct multiboot_header *h, size_t off, struct kernel_image *out,
                        struct error *err)
{
	uint64_t file_off, size, load_end, bss_end;

	memset(out, 0, sizeof(*out));
	if (multiboot_check(h, out, err))
		return -1;
	/* The file offset of load_addr: the header loads at header_addr. */
	if (h->load_addr > h->header_addr || h->header_addr - h->load_addr > off)
		return err_set(err,
		               "Multiboot header: load_addr 0x%" PRIx32
		               " and header_addr 0x%" PRIx32
		               " put the image's start before the file's",
		               h->load_addr, h->header_addr);
	file_off = off - (h->header_addr - h->load_addr);
	if (h->load_end_addr) {
		if (h->load_end_addr < h->load_addr)
			return err_set(err,
			               "Multiboot header: load_end_addr 0x%" PRIx32
			               " is below load_addr 0x%" PRIx32,
			               h->load_end_addr, h->load_addr);
		size = (uint64_t)h->load_end_addr - h->load_addr;
		if (size > len - file_off)
			return err_set(err,
			               "Multiboot header: 0x%" PRIx64
			               " bytes from file offset 0x%" PRIx64
			               " are beyond the end of the file (%zu bytes)",
			               size, file_off, len);
	} else {
		size = len - file_off;
	}
	load_end = h->load_addr + size;
	bss_end = h->bss_end_addr ? h->bss_end_addr : load_end;
	if (bss_end < load_end)
		return err_set(err,
		               "Multiboot header: bss_end_addr 0x%" PRIx32
		               " is below the end of the loaded bytes (0x%" PRIx64 ")",
		               h->bss_end_addr, load_end);
	if (size == 0)
		return err_set(err, "Multiboot header: nothing to load");
	if (h->load_addr < LAYOUT_KERNEL_START)
		return err_set(err,
		               "Multiboot image at [0x%" PRIx32 ", 0x%" PRIx64
		               ") overlaps the boot structures below 0x%llx (1 MiB)",
		               h->load_addr, bss_end, LAYOUT_KERNEL_START);
	if (!gm_range_ok(gm, h->load_addr, bss_end - h->load_addr))
		return err_set(err,
		               "Multiboot image at [0x%" PRIx32 ", 0x%" PRIx64
		               ") is not in guest RAM ([0, 0x%" PRIx64 "))",
		               h->load_addr, bss_end, gm->low_size);
	if (h->entry_addr < h->load_addr || h->entry_addr >= load_end)
		return err_set(err,
		               "Multiboot entry point 0x%" PRIx32
		               " is outside the loaded image [0x%" PRIx32 ", 0x%" PRIx64 ")",
		               h->entry_addr, h->load_addr, load_end);
	if (gm_load(gm, h->load_addr, img + file_off, size) ||
	    gm_zero(gm, load_end, bss_end - load_end))
		return err_set(err, "Multiboot image does not fit guest RAM");
	out->format = KERNEL_MULTIBOOT;
	out->proto = BOOT_PROTO_MULTIBOOT;
	out->entry = h->entry_addr;
	out->load_start = h->load_addr;
	out->load_end = bss_end;
	out->cmdline_max = BOOT_DEFAULT_CMDLINE_MAX;
	return 0;
}
