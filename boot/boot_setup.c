/*
 * Boot structures: command line, boot GDT, memory map, and either Linux boot_params with
 * identity-mapped boot page tables (64-bit boot protocol) or a PVH hvm_start_info.
 *
 * Everything goes below 1 MiB at the fixed addresses of vmm/layout.h; the static asserts
 * below keep those structures from overlapping one another or the kernel.
 */
#include "boot.h"
#include "boot_gdt.h"
#include "vmm/layout.h"
#include "multiboot.h"
#include "pvh.h"

#include <asm/bootparam.h>
#include <inttypes.h>
#include <string.h>

#define PAGE_SIZE     4096ULL
#define PT_ENTRIES    512
#define PTE_PRESENT   (1ULL << 0)
#define PTE_RW        (1ULL << 1)
#define PTE_PS        (1ULL << 7) /* in a PD entry: a 2 MiB page */
#define PAGE_2M       (2 * MIB)
#define IDENT_MAP_END ((uint64_t)PT_ENTRIES * PAGE_2M) /* one PD: the first 1 GiB */

#define BOOT_FLAG_MAGIC 0xAA55
#define HDRS_MAGIC      0x53726448u /* "HdrS" */
#define LOADER_UNKNOWN  0xff        /* type_of_loader: no assigned boot loader id */
#define ZERO_PAGE_SIZE  PAGE_SIZE

/* The boot structures, in address order, must not overlap each other or the kernel. */
_Static_assert(sizeof(struct boot_params) == ZERO_PAGE_SIZE, "boot_params is one page");
_Static_assert(sizeof(struct hvm_start_info) <= ZERO_PAGE_SIZE, "start_info fits the zero page");
_Static_assert(LAYOUT_BDA + 0x20 <= LAYOUT_BOOT_GDT, "BIOS data area overlaps GDT");
_Static_assert(LAYOUT_BOOT_GDT + BOOT_GDT_SIZE <= LAYOUT_ZERO_PAGE, "GDT overlaps zero page");
_Static_assert(LAYOUT_ZERO_PAGE + ZERO_PAGE_SIZE <= LAYOUT_PVH_MEMMAP,
               "zero page overlaps PVH memmap");
_Static_assert(LAYOUT_PVH_MEMMAP + LAYOUT_MAX_REGIONS * sizeof(struct hvm_memmap_table_entry) <=
                   LAYOUT_PVH_MODLIST,
               "PVH memmap overlaps module list");
_Static_assert(LAYOUT_PVH_MODLIST + sizeof(struct hvm_modlist_entry) <= LAYOUT_PML4,
               "PVH module list overlaps PML4");
_Static_assert(LAYOUT_PML4 % PAGE_SIZE == 0 && LAYOUT_PDPT % PAGE_SIZE == 0 &&
                   LAYOUT_PD % PAGE_SIZE == 0,
               "page tables must be page aligned");
_Static_assert(LAYOUT_PML4 + PAGE_SIZE <= LAYOUT_PDPT, "PML4 overlaps PDPT");
_Static_assert(LAYOUT_PDPT + PAGE_SIZE <= LAYOUT_PD, "PDPT overlaps PD");
_Static_assert(LAYOUT_PD + PAGE_SIZE <= LAYOUT_CMDLINE, "PD overlaps command line");
_Static_assert(LAYOUT_CMDLINE + LAYOUT_CMDLINE_MAX <= LAYOUT_EBDA_START,
               "command line overlaps EBDA");
_Static_assert(LAYOUT_EBDA_START <= LAYOUT_KERNEL_START, "EBDA overlaps kernel");
_Static_assert(LAYOUT_RESET_VECTOR >= LAYOUT_EBDA_START &&
                   LAYOUT_RESET_VECTOR + 16 <= LAYOUT_KERNEL_START,
               "the reset vector lies in the reserved area below 1 MiB");
_Static_assert(LAYOUT_CMDLINE + LAYOUT_CMDLINE_MAX <= (1ULL << 32), "cmd_line_ptr is 32-bit");
_Static_assert(LAYOUT_MAX_REGIONS <= E820_MAX_ENTRIES_ZEROPAGE, "e820_table too small");
_Static_assert(LAYOUT_KERNEL_START < IDENT_MAP_END, "boot page tables must map the kernel");

static int put(const struct guest_memory *gm, uint64_t gpa, const void *src, uint64_t len,
               const char *what, struct error *err)
{
	if (gm_write(gm, gpa, src, len))
		return err_set(err,
		               "%s at 0x%" PRIx64 " (%" PRIu64
		               " bytes) is outside guest RAM (%" PRIu64 " bytes)",
		               what, gpa, len, gm->size);
	return 0;
}

/* The command line, after `first` and a space when there is a `first`. */
static int write_cmdline(const struct guest_memory *gm, const struct kernel_image *k,
                         const char *cmdline, const char *first, struct error *err)
{
	const char *c = cmdline ? cmdline : "";
	size_t n = strlen(c) + 1, nf = first && *first ? strlen(first) + 1 : 0;

	if (nf) {
		if (n + nf > k->cmdline_max || n + nf > LAYOUT_CMDLINE_MAX)
			return err_set(
			    err,
			    "command line with the kernel's name in front is %zu bytes, "
			    "the limit is %" PRIu32 " (both counting the terminating NUL)",
			    n + nf,
			    k->cmdline_max < LAYOUT_CMDLINE_MAX ? k->cmdline_max
			                                        : (uint32_t)LAYOUT_CMDLINE_MAX);
		if (n == 1) /* no arguments: the name alone */
			return put(gm, LAYOUT_CMDLINE, first, nf, "command line", err);
		if (put(gm, LAYOUT_CMDLINE, first, nf - 1, "command line", err) ||
		    put(gm, LAYOUT_CMDLINE + nf - 1, " ", 1, "command line", err))
			return -1;
		return put(gm, LAYOUT_CMDLINE + nf, c, n, "command line", err);
	}

	if (n > k->cmdline_max)
		return err_set(err,
		               "command line is %zu bytes, the limit is %" PRIu32
		               " (both counting the terminating NUL)",
		               n, k->cmdline_max);
	if (n > LAYOUT_CMDLINE_MAX)
		return err_set(err,
		               "command line is %zu bytes, the limit is %llu"
		               " (both counting the terminating NUL)",
		               n, LAYOUT_CMDLINE_MAX);
	return put(gm, LAYOUT_CMDLINE, c, n, "command line", err);
}

static int write_gdt(const struct guest_memory *gm, struct error *err)
{
	const uint64_t gdt[BOOT_GDT_ENTRIES] = {
	    [BOOT_GDT_SEL_CODE64 / 8] = BOOT_GDT_CODE64_DESC,
	    [BOOT_GDT_SEL_DATA / 8] = BOOT_GDT_DATA_DESC,
	    [BOOT_GDT_SEL_CODE32 / 8] = BOOT_GDT_CODE32_DESC,
	};

	_Static_assert(sizeof(gdt) == BOOT_GDT_SIZE, "boot GDT size");
	return put(gm, LAYOUT_BOOT_GDT, gdt, sizeof(gdt), "boot GDT", err);
}

/* PML4[0] -> PDPT[0] -> PD: 512 x 2 MiB identity pages covering [0, 1 GiB). No 1 GiB pages. */
static int write_page_tables(const struct guest_memory *gm, struct error *err)
{
	uint64_t table[PT_ENTRIES];

	memset(table, 0, sizeof(table));
	table[0] = LAYOUT_PDPT | PTE_PRESENT | PTE_RW;
	if (put(gm, LAYOUT_PML4, table, sizeof(table), "boot PML4", err))
		return -1;
	table[0] = LAYOUT_PD | PTE_PRESENT | PTE_RW;
	if (put(gm, LAYOUT_PDPT, table, sizeof(table), "boot PDPT", err))
		return -1;
	for (uint64_t i = 0; i < PT_ENTRIES; i++)
		table[i] = (i * PAGE_2M) | PTE_PRESENT | PTE_RW | PTE_PS;
	return put(gm, LAYOUT_PD, table, sizeof(table), "boot PD", err);
}

static int setup_linux(const struct guest_memory *gm, const struct kernel_image *k,
                       const struct boot_args *args, const struct mem_region *map, int nmap,
                       struct boot_cpu_state *cpu, struct error *err)
{
	struct boot_params bp;

	/* The 64-bit entry needs the kernel, boot_params and command line identity-mapped. */
	if (k->load_end > IDENT_MAP_END || k->entry >= IDENT_MAP_END)
		return err_set(err,
		               "kernel [0x%" PRIx64 ", 0x%" PRIx64 ") with entry 0x%" PRIx64
		               " is not inside the first 1 GiB the boot page tables map",
		               k->load_start, k->load_end, k->entry);

	memset(&bp, 0, sizeof(bp));
	if (k->format == KERNEL_BZIMAGE) {
		/* The protocol: put the image's setup header into a zeroed boot_params. */
		if (k->setup_header_len > sizeof(bp.hdr))
			return err_set(err, "bzImage setup header of %zu bytes is too long",
			               k->setup_header_len);
		memcpy(&bp.hdr, k->setup_header, k->setup_header_len);
	} else {
		/* No header in an ELF image: state the limit boot_setup enforced. */
		bp.hdr.cmdline_size = k->cmdline_max ? k->cmdline_max - 1 : 0;
	}
	bp.hdr.boot_flag = BOOT_FLAG_MAGIC;
	bp.hdr.header = HDRS_MAGIC;
	bp.hdr.type_of_loader = LOADER_UNKNOWN;
	/* The real-mode setup code (the only heap user) never runs: no heap, heap_end_ptr 0. */
	bp.hdr.loadflags = (uint8_t)((bp.hdr.loadflags | LOADED_HIGH) & ~CAN_USE_HEAP);
	bp.hdr.heap_end_ptr = 0;
	bp.hdr.setup_data = 0;
	bp.hdr.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
	bp.ext_cmd_line_ptr = (uint32_t)(LAYOUT_CMDLINE >> 32);
	bp.hdr.ramdisk_image = (uint32_t)args->initrd_addr;
	bp.ext_ramdisk_image = (uint32_t)(args->initrd_addr >> 32);
	bp.hdr.ramdisk_size = (uint32_t)args->initrd_size;
	bp.ext_ramdisk_size = (uint32_t)(args->initrd_size >> 32);
	bp.acpi_rsdp_addr = args->rsdp_addr;
	bp.e820_entries = (uint8_t)nmap;
	for (int i = 0; i < nmap; i++) {
		bp.e820_table[i].addr = map[i].addr;
		bp.e820_table[i].size = map[i].size;
		bp.e820_table[i].type = map[i].type;
	}
	if (put(gm, LAYOUT_ZERO_PAGE, &bp, sizeof(bp), "boot_params", err) ||
	    write_page_tables(gm, err))
		return -1;

	cpu->long_mode = true;
	cpu->rip = k->entry;
	cpu->rsi = LAYOUT_ZERO_PAGE;
	cpu->cr3 = LAYOUT_PML4;
	return 0;
}

static int setup_pvh(const struct guest_memory *gm, const struct kernel_image *k,
                     const struct boot_args *args, const struct mem_region *map, int nmap,
                     struct boot_cpu_state *cpu, struct error *err)
{
	struct hvm_memmap_table_entry mm[LAYOUT_MAX_REGIONS];
	struct hvm_start_info si;

	if (k->entry > UINT32_MAX)
		return err_set(err, "PVH entry point 0x%" PRIx64 " is above 4 GiB", k->entry);

	memset(&si, 0, sizeof(si));
	si.magic = XEN_HVM_START_MAGIC_VALUE;
	si.version = XEN_HVM_START_VERSION;
	si.cmdline_paddr = LAYOUT_CMDLINE;
	si.rsdp_paddr = args->rsdp_addr;
	si.memmap_paddr = LAYOUT_PVH_MEMMAP;
	si.memmap_entries = (uint32_t)nmap;

	memset(mm, 0, sizeof(mm));
	for (int i = 0; i < nmap; i++) {
		mm[i].addr = map[i].addr;
		mm[i].size = map[i].size;
		mm[i].type = map[i].type; /* the XEN_HVM_MEMMAP_TYPE_* values equal e820's */
	}
	if (put(gm, LAYOUT_PVH_MEMMAP, mm, nmap * sizeof(mm[0]), "PVH memory map", err))
		return -1;

	if (args->initrd_size) {
		struct hvm_modlist_entry mod = {
		    .paddr = args->initrd_addr,
		    .size = args->initrd_size,
		};

		if (put(gm, LAYOUT_PVH_MODLIST, &mod, sizeof(mod), "PVH module list", err))
			return -1;
		si.nr_modules = 1;
		si.modlist_paddr = LAYOUT_PVH_MODLIST;
	}
	if (gm_fill(gm, LAYOUT_ZERO_PAGE, 0, ZERO_PAGE_SIZE))
		return err_set(err, "PVH start info page at 0x%llx is outside guest RAM",
		               LAYOUT_ZERO_PAGE);
	if (put(gm, LAYOUT_ZERO_PAGE, &si, sizeof(si), "PVH start info", err))
		return -1;

	cpu->long_mode = false;
	cpu->rip = k->entry;
	cpu->rbx = LAYOUT_ZERO_PAGE;
	return 0;
}

/* The first word of a Multiboot command line: the image's file name, not its host path
 * (which the guest has no business knowing); "kernel" when that is not one word. */
static const char *multiboot_name(const char *path)
{
	const char *b = path ? strrchr(path, '/') : NULL;

	b = b ? b + 1 : path;
	if (!b || !*b || strpbrk(b, " \t\n\r\f\v"))
		return "kernel";
	return b;
}

/* Multiboot: the info structure in the zero page (the boot loader's name after it), the
 * memory map where PVH's goes, the initrd as the one module. The command line starts with
 * the kernel's name, as GRUB and QEMU pass it (Multiboot kernels skip that first word). */
static int setup_multiboot(const struct guest_memory *gm, const struct kernel_image *k,
                           const struct boot_args *args, const struct mem_region *map, int nmap,
                           struct boot_cpu_state *cpu, struct error *err)
{
	static const char loader[] = "hearth";
	const uint64_t name_at = LAYOUT_ZERO_PAGE + 0x200, mod_string_at = name_at + 0x20;
	struct multiboot_mmap_entry mm[LAYOUT_MAX_REGIONS];
	struct multiboot_info mi;

	_Static_assert(LAYOUT_ZERO_PAGE + 0x200 >= LAYOUT_ZERO_PAGE + sizeof(mi) &&
	                   sizeof(loader) <= 0x20,
	               "Multiboot strings overlap the info");
	memset(&mi, 0, sizeof(mi));
	mi.flags = MULTIBOOT_INFO_MEMORY | MULTIBOOT_INFO_CMDLINE | MULTIBOOT_INFO_MEM_MAP |
	           MULTIBOOT_INFO_LOADER_NAME;
	for (int i = 0; i < nmap; i++) {
		mm[i] = (struct multiboot_mmap_entry){sizeof(mm[i]) - 4, map[i].addr, map[i].size,
		                                      map[i].type};
		if (map[i].type != MEM_RAM)
			continue;
		if (map[i].addr == 0)
			mi.mem_lower = (uint32_t)(map[i].size / 1024);
		if (map[i].addr == LAYOUT_KERNEL_START)
			mi.mem_upper = (uint32_t)(map[i].size / 1024);
	}
	mi.mmap_addr = LAYOUT_PVH_MEMMAP;
	mi.mmap_length = (uint32_t)(nmap * sizeof(mm[0]));
	mi.cmdline = LAYOUT_CMDLINE;
	mi.boot_loader_name = (uint32_t)name_at;
	if (put(gm, LAYOUT_PVH_MEMMAP, mm, nmap * sizeof(mm[0]), "Multiboot memory map", err))
		return -1;
	if (args->initrd_size) {
		struct multiboot_module mod = {(uint32_t)args->initrd_addr,
		                               (uint32_t)(args->initrd_addr + args->initrd_size),
		                               (uint32_t)mod_string_at, 0};

		if (args->initrd_addr + args->initrd_size > (1ULL << 32))
			return err_set(err, "a Multiboot module must lie below 4 GiB");
		if (put(gm, LAYOUT_PVH_MODLIST, &mod, sizeof(mod), "Multiboot module list", err))
			return -1;
		mi.flags |= MULTIBOOT_INFO_MODS;
		mi.mods_count = 1;
		mi.mods_addr = LAYOUT_PVH_MODLIST;
	}
	if (gm_fill(gm, LAYOUT_ZERO_PAGE, 0, ZERO_PAGE_SIZE))
		return err_set(err, "Multiboot info page at 0x%llx is outside guest RAM",
		               LAYOUT_ZERO_PAGE);
	if (put(gm, LAYOUT_ZERO_PAGE, &mi, sizeof(mi), "Multiboot info", err) ||
	    put(gm, name_at, loader, sizeof(loader), "Multiboot loader name", err) ||
	    put(gm, mod_string_at, "initrd", sizeof("initrd"), "Multiboot module name", err))
		return -1;
	cpu->long_mode = false;
	cpu->rip = k->entry;
	cpu->rax = MULTIBOOT_BOOTLOADER_MAGIC;
	cpu->rbx = LAYOUT_ZERO_PAGE;
	return 0;
}

static int check_initrd(const struct guest_memory *gm, const struct kernel_image *k,
                        const struct boot_args *args, struct error *err)
{
	uint64_t a = args->initrd_addr, n = args->initrd_size;

	if (!a && !n)
		return 0;
	if (!a || !n)
		return err_set(err,
		               "initrd address 0x%" PRIx64 " and size %" PRIu64
		               " must both be set or both be 0",
		               a, n);
	if (!gm_range_ok(gm, a, n))
		return err_set(
		    err, "initrd at 0x%" PRIx64 " (%" PRIu64 " bytes) is not in guest RAM", a, n);
	if (a < LAYOUT_KERNEL_START || (a < k->load_end && a + n > k->load_start))
		return err_set(err,
		               "initrd [0x%" PRIx64 ", 0x%" PRIx64
		               ") overlaps the boot area or the kernel [0x%" PRIx64 ", 0x%" PRIx64
		               ")",
		               a, a + n, k->load_start, k->load_end);
	return 0;
}

/* The firmware at the reset vector, for a guest that jumps there to reboot (Linux's last
 * resort; with hardware-reduced ACPI and no EFI it is Linux's default path): reset the
 * machine through the keyboard controller, as a PC BIOS does. Real-mode code at F000:FFF0. */
static int write_reset_vector(const struct guest_memory *gm, struct error *err)
{
	static const uint8_t code[] = {
	    0xfa,       /* cli */
	    0xb0, 0xfe, /* mov $0xfe, %al: pulse the reset line */
	    0xe6, 0x64, /* out %al, $0x64 */
	    0xf4,       /* hlt */
	    0xeb, 0xfd, /* jmp back to hlt */
	};

	return put(gm, LAYOUT_RESET_VECTOR, code, sizeof(code), "reset vector", err);
}

/* The few words of the BIOS data area (segment 0x40) that PC firmware fills and that guests
 * read without checking: COM1's port (0x400) and the equipment word's serial-port count
 * (0x410), the base memory size in KiB (0x413) and the EBDA's segment (0x40e). Xen's
 * multiboot entry, for one, puts its trampoline below min(0x40e, 0x413) and would wrap
 * below 0 if they read 0. They agree with the memory map: RAM below the EBDA. */
static int write_bios_data_area(const struct guest_memory *gm, struct error *err)
{
	uint8_t bda[0x20] = {0};
	const uint16_t com1 = 0x3f8, equipment = 1u << 9 /* one serial port */,
	               base_kib = (uint16_t)(LAYOUT_EBDA_START / 1024),
	               ebda_seg = (uint16_t)(LAYOUT_EBDA_START >> 4);

	memcpy(&bda[0x00], &com1, 2);
	memcpy(&bda[0x10], &equipment, 2);
	memcpy(&bda[0x13], &base_kib, 2);
	memcpy(&bda[0x0e], &ebda_seg, 2);
	return put(gm, LAYOUT_BDA, bda, sizeof(bda), "BIOS data area", err);
}

int boot_setup(const struct guest_memory *gm, const struct kernel_image *k,
               const struct boot_args *args, struct boot_cpu_state *cpu, struct error *err)
{
	struct mem_region map[LAYOUT_MAX_REGIONS];
	int nmap;

	memset(cpu, 0, sizeof(*cpu));
	if (k->proto != BOOT_PROTO_LINUX64 && k->proto != BOOT_PROTO_PVH &&
	    k->proto != BOOT_PROTO_MULTIBOOT)
		return err_set(err, "kernel image has no boot protocol chosen (%d)", (int)k->proto);
	if (check_initrd(gm, k, args, err))
		return -1;

	nmap = layout_memory_map(gm->size, map, LAYOUT_MAX_REGIONS);
	if (nmap < 0)
		return err_set(err, "memory map has more than %d entries", LAYOUT_MAX_REGIONS);
	for (int i = 0; i < nmap; i++)
		if (map[i].type == MEM_RAM && !gm_range_ok(gm, map[i].addr, map[i].size))
			return err_set(err,
			               "memory map RAM [0x%" PRIx64 ", 0x%" PRIx64
			               ") is not backed by guest memory",
			               map[i].addr, map[i].addr + map[i].size);

	if (write_cmdline(
	        gm, k, args->cmdline,
	        k->proto == BOOT_PROTO_MULTIBOOT ? multiboot_name(args->kernel_name) : NULL, err) ||
	    write_gdt(gm, err) || write_reset_vector(gm, err) || write_bios_data_area(gm, err))
		return -1;
	if (k->proto == BOOT_PROTO_LINUX64)
		return setup_linux(gm, k, args, map, nmap, cpu, err);
	if (k->proto == BOOT_PROTO_MULTIBOOT)
		return setup_multiboot(gm, k, args, map, nmap, cpu, err);
	return setup_pvh(gm, k, args, map, nmap, cpu, err);
}
