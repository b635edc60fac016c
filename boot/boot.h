/*
 * Kernel loading and boot-structure builders.
 *
 * A kernel image is parsed from a byte buffer (the mapped file), its pieces are copied into
 * guest memory, and the result is described by a struct kernel_image. The boot builders then
 * lay out the structures the chosen boot protocol needs (Linux boot_params or a PVH
 * hvm_start_info, command line, memory map, initrd) and say how the boot vCPU must start.
 * Everything here validates its input and reports problems through struct error; nothing
 * here calls KVM.
 */
#ifndef HEARTH_BOOT_H
#define HEARTH_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/vm_config.h" /* enum boot_protocol */
#include "vmm/error.h"
#include "vmm/guest_memory.h"

struct multiboot_header;

enum kernel_format { KERNEL_ELF, KERNEL_BZIMAGE, KERNEL_MULTIBOOT /* a raw Multiboot image */ };

/* Command-line limit (bytes including the NUL) when the image does not state one. */
#define BOOT_DEFAULT_CMDLINE_MAX 2048

struct kernel_image {
	enum kernel_format format;
	enum boot_protocol proto; /* never AUTO once loaded */
	uint64_t entry;           /* guest-physical entry point for `proto` */
	uint64_t load_start;      /* lowest guest-physical byte loaded */
	uint64_t load_end;        /* one past the highest byte the kernel occupies */
	uint32_t cmdline_max;     /* bytes including the NUL */
	uint64_t initrd_addr_max; /* highest address the initrd may end at (inclusive), 0 = none */
	bool linux_kernel;        /* a Linux kernel (bzImage, or an ELF with "Linux" notes) */
	char warning[160];        /* something the user should hear about the image, or "" */
	/* bzImage only: the setup header bytes from offset 0x1f1 of the file. */
	uint8_t setup_header[0x7f];
	size_t setup_header_len;
};

/* How the boot vCPU starts: filled by the boot builders, applied by vmm/vcpu. */
struct boot_cpu_state {
	bool long_mode; /* true: 64-bit with paging (CR3 = boot PML4); false: 32-bit flat, no paging
	                 */
	uint64_t rip;
	uint64_t rsi; /* Linux 64-bit: boot_params */
	uint64_t rbx; /* PVH: hvm_start_info; Multiboot: multiboot_info */
	uint64_t rax; /* Multiboot: MULTIBOOT_BOOTLOADER_MAGIC */
	uint64_t cr3;
};

/* Parse and load a kernel from `img` into guest memory: an ELF (64-bit; 32-bit with a
 * Multiboot header), a bzImage, or a raw Multiboot image (header with load addresses). */
int kernel_load(const struct guest_memory *gm, const uint8_t *img, size_t len,
                enum boot_protocol want, struct kernel_image *out, struct error *err);
int elf_load(const struct guest_memory *gm, const uint8_t *img, size_t len, enum boot_protocol want,
             struct kernel_image *out, struct error *err);
/* Load the image by its Multiboot header's load addresses (MULTIBOOT_AOUT_KLUDGE), the
 * header found at file offset `off`. */
int multiboot_load_aout(const struct guest_memory *gm, const uint8_t *img, size_t len,
                        const struct multiboot_header *h, size_t off, struct kernel_image *out,
                        struct error *err);
int bzimage_load(const struct guest_memory *gm, const uint8_t *img, size_t len,
                 enum boot_protocol want, struct kernel_image *out, struct error *err);

/* Copy an initrd to the top of low RAM (page aligned, above the kernel, below any limit). */
int initrd_load(const struct guest_memory *gm, const struct kernel_image *k, const uint8_t *img,
                size_t len, uint64_t *addr_out, struct error *err);

struct boot_args {
	const char *cmdline;  /* may be NULL (empty) */
	uint64_t initrd_addr; /* 0 when there is no initrd */
	uint64_t initrd_size;
	uint64_t rsdp_addr;      /* 0 when there are no ACPI tables */
	const char *kernel_name; /* Multiboot: the kernel's path, whose file name is the first word
	                          * of its command line; may be NULL */
};

/* Build boot_params (Linux) or hvm_start_info (PVH), the command line, the memory map, the
 * boot GDT and (Linux 64-bit) the identity-mapped boot page tables; fill `cpu`. */
int boot_setup(const struct guest_memory *gm, const struct kernel_image *k,
               const struct boot_args *args, struct boot_cpu_state *cpu, struct error *err);

/* Map a file read-only; *len may be 0. Returns 0, or -1 with a message naming the path. */
int file_map(const char *path, const uint8_t **buf, size_t *len, struct error *err);
void file_unmap(const uint8_t *buf, size_t len);

#endif
