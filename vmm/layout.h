/* The fixed guest-physical layout (x86_64). docs/ARCHITECTURE.md has the table. */
#ifndef HEARTH_LAYOUT_H
#define HEARTH_LAYOUT_H

#include <stdint.h>

#define KIB (1ULL << 10)
#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

/* RAM runs from 0 up to 3 GiB, the device gap fills [3 GiB, 4 GiB), RAM continues at 4 GiB. */
#define LAYOUT_LOW_RAM_MAX    (3 * GIB)
#define LAYOUT_GAP_START      (3 * GIB)
#define LAYOUT_GAP_END        (4 * GIB)
#define LAYOUT_HIGH_RAM_START (4 * GIB)

/* Boot structures, all below 1 MiB. */
#define LAYOUT_BDA           0x0400ULL /* BIOS data area: the words guests read */
#define LAYOUT_BOOT_GDT      0x0500ULL /* 4 descriptors */
#define LAYOUT_ZERO_PAGE     0x7000ULL /* Linux boot_params, or PVH hvm_start_info */
#define LAYOUT_PVH_MEMMAP    0x8000ULL /* PVH memory map (hvm_memmap_table_entry[]) */
#define LAYOUT_PVH_MODLIST   0x8c00ULL /* PVH module list (the initrd) */
#define LAYOUT_PML4          0x9000ULL /* boot page tables: identity map of the */
#define LAYOUT_PDPT          0xa000ULL /* first 1 GiB with 2 MiB pages */
#define LAYOUT_PD            0xb000ULL
#define LAYOUT_BOOT_STACK    0x8ff0ULL /* RSP at a 64-bit entry (Firecracker's) */
#define LAYOUT_CMDLINE       0x20000ULL
#define LAYOUT_CMDLINE_MAX   0x10000ULL /* bytes reserved for the command line */
#define LAYOUT_EBDA_START    0x9fc00ULL /* [EBDA, 1 MiB) is reserved in the e820 map */
#define LAYOUT_MPTABLE       LAYOUT_EBDA_START
#define LAYOUT_RESET_VECTOR  0xffff0ULL  /* F000:FFF0, where a CPU reset starts */
#define LAYOUT_KERNEL_START  0x100000ULL /* kernels load at or above 1 MiB */
#define LAYOUT_BOOT_AREA_END LAYOUT_KERNEL_START

/* Device gap contents. */
#define LAYOUT_MMIO_SLOTS_START 0xc0000000ULL /* virtio-mmio: one 4 KiB slot per device */
#define LAYOUT_MMIO_SLOT_SIZE   0x1000ULL
#define LAYOUT_BOOT_TIMER_ADDR  0xd0000000ULL /* --boot-timer: the guest writes 123 here */
#define LAYOUT_IOAPIC_ADDR      0xfec00000ULL
#define LAYOUT_LAPIC_ADDR       0xfee00000ULL
/* A VMX-based backend (KVM on Intel) needs three pages for a TSS and one for an identity map
 * of real mode here; the range is kept free in every VM. */
#define LAYOUT_VMX_TSS_ADDR      0xfffbd000ULL
#define LAYOUT_VMX_IDENTITY_ADDR 0xfffbc000ULL

/* Smallest and largest RAM hearth accepts. */
#define LAYOUT_MIN_RAM (4 * MIB)
#define LAYOUT_MAX_RAM (1024 * GIB)

/* Legacy I/O ports. */
#define PORT_COM1       0x3f8
#define IRQ_COM1        4
#define IRQ_I8042       1
#define PORT_I8042_DATA 0x60
#define PORT_I8042_CMD  0x64
#define PORT_CMOS_INDEX 0x70
#define PORT_CMOS_DATA  0x71
/* hearth's guest-exit port (the same address as QEMU's isa-debug-exit) */
#define PORT_GUEST_EXIT 0xf4
#define PORT_RESET_CTRL 0xcf9 /* reset control: the FADT reset register */

/* Memory map entry types (e820). */
enum mem_type { MEM_RAM = 1, MEM_RESERVED = 2, MEM_ACPI = 3 };

struct mem_region {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

#define LAYOUT_MAX_REGIONS 8

/* Fill the guest's memory map for `ram_size` bytes of RAM; returns the entry count. */
int layout_memory_map(uint64_t ram_size, struct mem_region *out, int max);

/* Bytes of RAM below the gap and above 4 GiB for a given total. */
uint64_t layout_low_ram(uint64_t ram_size);
uint64_t layout_high_ram(uint64_t ram_size);

#endif
