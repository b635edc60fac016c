/*
 * Multiboot (version 1, specification 0.6.96) structures.
 *
 * A Multiboot kernel carries a header in the first 8 KiB of its file, 4-byte aligned: the
 * magic, flags saying what it needs, and a checksum. It starts in 32-bit protected mode
 * without paging, with %eax = MULTIBOOT_BOOTLOADER_MAGIC and %ebx = the guest-physical address
 * of a struct multiboot_info. All fields are little-endian and 32-bit.
 */
#ifndef HEARTH_MULTIBOOT_H
#define HEARTH_MULTIBOOT_H

#include <stddef.h>
#include <stdint.h>

#include "boot.h"
#include "vmm/error.h"
#include "vmm/guest_memory.h"

#define MULTIBOOT_HEADER_MAGIC     0x1BADB002u
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u
#define MULTIBOOT_SEARCH           8192 /* the header lies in the file's first 8 KiB */

/* Header flags. Bits 0-15 are requirements: a loader that cannot meet one must refuse. */
#define MULTIBOOT_PAGE_ALIGN  (1u << 0)  /* modules page aligned */
#define MULTIBOOT_MEMORY_INFO (1u << 1)  /* mem_lower/mem_upper (and the memory map) */
#define MULTIBOOT_VIDEO_MODE  (1u << 2)  /* a video mode: hearth has no display */
#define MULTIBOOT_AOUT_KLUDGE (1u << 16) /* the address fields below are valid */

struct multiboot_header {
	uint32_t magic;
	uint32_t flags;
	uint32_t checksum; /* magic + flags + checksum == 0 (mod 2^32) */
	/* MULTIBOOT_AOUT_KLUDGE */
	uint32_t header_addr;   /* where the header's magic loads */
	uint32_t load_addr;     /* where the file's text starts loading */
	uint32_t load_end_addr; /* end of the loaded bytes; 0: to the end of the file */
	uint32_t bss_end_addr;  /* end of .bss (zeroed); 0: none */
	uint32_t entry_addr;
};

/* multiboot_info.flags: which fields are valid. */
#define MULTIBOOT_INFO_MEMORY      (1u << 0)
#define MULTIBOOT_INFO_CMDLINE     (1u << 2)
#define MULTIBOOT_INFO_MODS        (1u << 3)
#define MULTIBOOT_INFO_MEM_MAP     (1u << 6)
#define MULTIBOOT_INFO_LOADER_NAME (1u << 9)

struct multiboot_info {
	uint32_t flags;
	uint32_t mem_lower; /* KiB of RAM from 0 */
	uint32_t mem_upper; /* KiB of RAM from 1 MiB up to the first hole */
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count;
	uint32_t mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length; /* bytes */
	uint32_t mmap_addr;
	uint32_t drives_length;
	uint32_t drives_addr;
	uint32_t config_table;
	uint32_t boot_loader_name;
	uint32_t apm_table;
	uint32_t vbe[4];         /* VBE fields (16 bytes) */
	uint32_t framebuffer[7]; /* framebuffer fields (28 bytes) */
};
_Static_assert(sizeof(struct multiboot_info) == 116, "multiboot_info layout");

/* A memory map entry; `size` counts the bytes after itself (20), and the next entry starts
 * size + 4 bytes on. */
struct multiboot_mmap_entry {
	uint32_t size;
	uint64_t addr;
	uint64_t len;
	uint32_t type; /* 1 RAM, 3 ACPI reclaimable, else reserved (e820's numbers) */
} __attribute__((packed));
_Static_assert(sizeof(struct multiboot_mmap_entry) == 24, "multiboot mmap entry layout");

struct multiboot_module {
	uint32_t mod_start;
	uint32_t mod_end; /* one past the last byte */
	uint32_t string;  /* the module's command line */
	uint32_t reserved;
};

/* The first valid Multiboot header in `img` (copied to *h): its file offset, or -1. */
long multiboot_find(const uint8_t *img, size_t len, struct multiboot_header *h);

/* Refuse a header whose required flags hearth does not know; a video mode (which hearth,
 * without a display, cannot give) only gets a warning in k->warning, as QEMU boots those. */
int multiboot_check(const struct multiboot_header *h, struct kernel_image *k, struct error *err);

#endif
