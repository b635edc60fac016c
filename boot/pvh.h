/*
 * PVH boot structures (Xen public arch-x86/hvm/start_info.h, version 1 layout).
 * A PVH kernel starts in 32-bit protected mode without paging, with %ebx holding the
 * guest-physical address of a struct hvm_start_info. All fields are little-endian and all
 * addresses are guest-physical; 0 means "not present".
 */
#ifndef HEARTH_PVH_H
#define HEARTH_PVH_H

#include <stddef.h>
#include <stdint.h>

#define XEN_HVM_START_MAGIC_VALUE 0x336ec578u
#define XEN_HVM_START_VERSION     1 /* version 1 added the memory map */

/* ELF note (name "Xen") whose descriptor is the 32-bit PVH entry point. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* hvm_memmap_table_entry.type values (the same numbers as e820). */
#define XEN_HVM_MEMMAP_TYPE_RAM      1
#define XEN_HVM_MEMMAP_TYPE_RESERVED 2
#define XEN_HVM_MEMMAP_TYPE_ACPI     3

struct hvm_start_info {
	uint32_t magic;          /* XEN_HVM_START_MAGIC_VALUE */
	uint32_t version;        /* XEN_HVM_START_VERSION */
	uint32_t flags;          /* SIF_* flags; 0 */
	uint32_t nr_modules;     /* entries at modlist_paddr */
	uint64_t modlist_paddr;  /* struct hvm_modlist_entry[nr_modules] */
	uint64_t cmdline_paddr;  /* NUL-terminated command line */
	uint64_t rsdp_paddr;     /* ACPI RSDP */
	uint64_t memmap_paddr;   /* struct hvm_memmap_table_entry[memmap_entries] */
	uint32_t memmap_entries; /* entries at memmap_paddr */
	uint32_t reserved;       /* must be 0 */
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(offsetof(struct hvm_start_info, modlist_paddr) == 16, "hvm_start_info layout");
_Static_assert(offsetof(struct hvm_start_info, memmap_paddr) == 40, "hvm_start_info layout");
_Static_assert(offsetof(struct hvm_start_info, memmap_entries) == 48, "hvm_start_info layout");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry layout");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry layout");

#endif
