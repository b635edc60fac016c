/* Boot structures (vmm/boot_setup.c) and initrd placement (vmm/initrd.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <asm/bootparam.h>

#include "boot/boot.h"
#include "boot/boot_gdt.h"
#include "vmm/layout.h"
#include "boot/pvh.h"

#define RAM_SIZE (16 * MIB)

struct fixture {
	struct guest_memory gm;
	uint8_t *ram;
	struct error err;
	struct kernel_image k;
	struct boot_args args;
	struct boot_cpu_state cpu;
};

/* An ELF kernel at [1 MiB, 2 MiB) with a Linux 64-bit entry. */
static void elf_kernel(struct kernel_image *k, enum boot_protocol proto)
{
	memset(k, 0, sizeof(*k));
	k->format = KERNEL_ELF;
	k->proto = proto;
	k->entry = proto == BOOT_PROTO_PVH ? 0x100040 : 0x100000;
	k->load_start = LAYOUT_KERNEL_START;
	k->load_end = 2 * MIB;
	k->cmdline_max = BOOT_DEFAULT_CMDLINE_MAX;
}

static int fx_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = malloc(RAM_SIZE);
	if (!f->ram) {
		free(f);
		return -1;
	}
	memset(f->ram, 0xcc, RAM_SIZE); /* stale contents: the builders must zero what they own */
	gm_wrap(&f->gm, f->ram, RAM_SIZE);
	elf_kernel(&f->k, BOOT_PROTO_LINUX64);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fixture *f = *state;

	free(f->ram);
	free(f);
	return 0;
}

static void expect_err(const struct error *err, const char *needle)
{
	if (!strstr(err->msg, needle))
		fail_msg("error \"%s\" does not contain \"%s\"", err->msg, needle);
}

static void read_bp(struct fixture *f, struct boot_params *bp)
{
	assert_int_equal(gm_read(&f->gm, LAYOUT_ZERO_PAGE, bp, sizeof(*bp)), 0);
}

static void expect_e820(const struct boot_params *bp, uint64_t ram_size)
{
	struct mem_region map[LAYOUT_MAX_REGIONS];
	int n = layout_memory_map(ram_size, map, LAYOUT_MAX_REGIONS);

	assert_true(n > 0);
	assert_int_equal(bp->e820_entries, n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(bp->e820_table[i].addr, map[i].addr);
		assert_int_equal(bp->e820_table[i].size, map[i].size);
		assert_int_equal(bp->e820_table[i].type, map[i].type);
	}
	for (int i = n; i < E820_MAX_ENTRIES_ZEROPAGE; i++)
		assert_int_equal(bp->e820_table[i].size, 0);
}

static void expect_gdt(struct fixture *f)
{
	uint64_t gdt[BOOT_GDT_ENTRIES];

	assert_int_equal(gm_read(&f->gm, LAYOUT_BOOT_GDT, gdt, sizeof(gdt)), 0);
	assert_int_equal(gdt[0], 0);
	assert_int_equal(gdt[BOOT_GDT_SEL_CODE64 / 8], 0x00af9b000000ffffULL);
	assert_int_equal(gdt[BOOT_GDT_SEL_DATA / 8], 0x00cf93000000ffffULL);
	assert_int_equal(gdt[BOOT_GDT_SEL_CODE32 / 8], 0x00cf9b000000ffffULL);
	assert_int_equal(BOOT_GDT_SEL_CODE64, 0x08);
	assert_int_equal(BOOT_GDT_SEL_DATA, 0x10);
	assert_int_equal(BOOT_GDT_SEL_CODE32, 0x18);
	assert_int_equal(BOOT_GDT_SIZE, 32);
}

/* The firmware at F000:FFF0 resets through the i8042: cli; mov $0xfe,%al; out %al,$0x64. */
static void expect_reset_vector(struct fixture *f)
{
	static const uint8_t want[] = {0xfa, 0xb0, 0xfe, 0xe6, 0x64, 0xf4};
	uint8_t got[sizeof(want)];

	assert_int_equal(gm_read(&f->gm, LAYOUT_RESET_VECTOR, got, sizeof(got)), 0);
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(LAYOUT_RESET_VECTOR, 0xf0000 + 0xfff0);
}

static const char *cmdline_in_guest(struct fixture *f)
{
	return gm_ptr(&f->gm, LAYOUT_CMDLINE, 1);
}

static void test_linux_elf_boot_params(void **state)
{
	struct fixture *f = *state;
	struct boot_params bp;
	static const uint8_t zero[sizeof(bp.hdr)];

	f->args.cmdline = "console=ttyS0 reboot=k panic=1";
	f->args.initrd_addr = 0x800000;
	f->args.initrd_size = 0x12345;
	f->args.rsdp_addr = 0xe0000;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	read_bp(f, &bp);

	assert_int_equal(bp.hdr.boot_flag, 0xAA55);
	assert_memory_equal(&bp.hdr.header, "HdrS", 4);
	assert_int_equal(bp.hdr.type_of_loader, 0xff);
	assert_true(bp.hdr.loadflags & LOADED_HIGH);
	assert_false(bp.hdr.loadflags & CAN_USE_HEAP);
	assert_int_equal(bp.hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	assert_int_equal(bp.ext_cmd_line_ptr, 0);
	assert_int_equal(bp.hdr.cmdline_size, BOOT_DEFAULT_CMDLINE_MAX - 1);
	assert_string_equal(cmdline_in_guest(f), "console=ttyS0 reboot=k panic=1");
	assert_int_equal(bp.hdr.ramdisk_image, 0x800000);
	assert_int_equal(bp.hdr.ramdisk_size, 0x12345);
	assert_int_equal(bp.ext_ramdisk_image, 0);
	assert_int_equal(bp.ext_ramdisk_size, 0);
	assert_int_equal(bp.acpi_rsdp_addr, 0xe0000);
	assert_int_equal(bp.sentinel, 0);
	expect_e820(&bp, RAM_SIZE);
	/* The rest of the header is zero for an ELF kernel (nothing copied). */
	assert_int_equal(bp.hdr.version, 0);
	assert_int_equal(bp.hdr.setup_sects, 0);
	assert_int_equal(bp.hdr.setup_data, 0);
	assert_int_equal(bp.hdr.init_size, 0);
	assert_memory_equal(bp._pad7, zero, sizeof(bp._pad7));

	assert_true(f->cpu.long_mode);
	assert_int_equal(f->cpu.rip, f->k.entry);
	assert_int_equal(f->cpu.rsi, LAYOUT_ZERO_PAGE);
	assert_int_equal(f->cpu.cr3, LAYOUT_PML4);
	assert_int_equal(f->cpu.rbx, 0);
	expect_gdt(f);
	expect_reset_vector(f);
}

static void test_linux_no_initrd_no_cmdline(void **state)
{
	struct fixture *f = *state;
	struct boot_params bp;

	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	read_bp(f, &bp);
	assert_int_equal(bp.hdr.ramdisk_image, 0);
	assert_int_equal(bp.hdr.ramdisk_size, 0);
	assert_int_equal(bp.acpi_rsdp_addr, 0);
	assert_int_equal(bp.hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	assert_string_equal(cmdline_in_guest(f), "");
}

static void test_page_tables(void **state)
{
	struct fixture *f = *state;
	uint64_t pml4[512], pdpt[512], pd[512];

	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	assert_int_equal(gm_read(&f->gm, LAYOUT_PML4, pml4, sizeof(pml4)), 0);
	assert_int_equal(gm_read(&f->gm, LAYOUT_PDPT, pdpt, sizeof(pdpt)), 0);
	assert_int_equal(gm_read(&f->gm, LAYOUT_PD, pd, sizeof(pd)), 0);

	assert_int_equal(pml4[0], LAYOUT_PDPT | 0x3); /* present | rw */
	assert_int_equal(pdpt[0], LAYOUT_PD | 0x3);
	assert_false(pdpt[0] & 0x80); /* never a 1 GiB page */
	for (int i = 1; i < 512; i++) {
		assert_int_equal(pml4[i], 0);
		assert_int_equal(pdpt[i], 0);
	}
	for (uint64_t i = 0; i < 512; i++)
		assert_int_equal(pd[i], (i << 21) | 0x83); /* present | rw | 2 MiB page */
}

/* A bzImage-style kernel_image whose saved setup header must end up in boot_params. */
static void bz_kernel(struct kernel_image *k, uint32_t cmdline_size)
{
	struct setup_header h;

	memset(&h, 0, sizeof(h));
	h.setup_sects = 27;
	h.boot_flag = 0xAA55;
	h.jump = 0x6aeb;
	h.header = 0x53726448;
	h.version = 0x020f;
	h.type_of_loader = 0;
	h.loadflags = LOADED_HIGH | CAN_USE_HEAP;
	h.heap_end_ptr = 0xfe00;
	h.code32_start = 0x100000;
	h.initrd_addr_max = 0x7fffffff;
	h.kernel_alignment = 0x200000;
	h.relocatable_kernel = 1;
	h.min_alignment = 21;
	h.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
	h.cmdline_size = cmdline_size;
	h.pref_address = 0x1000000;
	h.init_size = 0x2000000;
	h.handover_offset = 0x190;
	h.kernel_info_offset = 0x1234;

	memset(k, 0, sizeof(*k));
	k->format = KERNEL_BZIMAGE;
	k->proto = BOOT_PROTO_LINUX64;
	k->entry = 0x100200;
	k->load_start = LAYOUT_KERNEL_START;
	k->load_end = 0x3000000;
	k->cmdline_max = cmdline_size + 1;
	k->initrd_addr_max = h.initrd_addr_max;
	memcpy(k->setup_header, &h, sizeof(h));
	k->setup_header_len = sizeof(h);
}

static void test_linux_bzimage_header(void **state)
{
	struct fixture *f = *state;
	struct guest_memory gm;
	struct boot_params bp;
	struct setup_header *saved = (struct setup_header *)f->k.setup_header;
	uint8_t *ram = calloc(1, 64 * MIB);

	assert_non_null(ram);
	gm_wrap(&gm, ram, 64 * MIB);
	bz_kernel(&f->k, 255);
	f->args.cmdline = "root=/dev/vda";
	f->args.initrd_addr = 0x3200000;
	f->args.initrd_size = 4096;
	assert_int_equal(boot_setup(&gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	assert_int_equal(gm_read(&gm, LAYOUT_ZERO_PAGE, &bp, sizeof(bp)), 0);

	/* Copied from the image. */
	assert_int_equal(bp.hdr.setup_sects, 27);
	assert_int_equal(bp.hdr.version, 0x020f);
	assert_int_equal(bp.hdr.kernel_alignment, 0x200000);
	assert_int_equal(bp.hdr.relocatable_kernel, 1);
	assert_int_equal(bp.hdr.min_alignment, 21);
	assert_int_equal(bp.hdr.xloadflags, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
	assert_int_equal(bp.hdr.pref_address, 0x1000000);
	assert_int_equal(bp.hdr.init_size, 0x2000000);
	assert_int_equal(bp.hdr.handover_offset, 0x190);
	assert_int_equal(bp.hdr.kernel_info_offset, 0x1234);
	assert_int_equal(bp.hdr.cmdline_size, 255); /* the kernel's value, kept */
	assert_int_equal(bp.hdr.initrd_addr_max, 0x7fffffff);
	/* Written by the loader. */
	assert_int_equal(bp.hdr.type_of_loader, 0xff);
	assert_int_equal(bp.hdr.loadflags, LOADED_HIGH); /* CAN_USE_HEAP cleared */
	assert_int_equal(bp.hdr.heap_end_ptr, 0);
	assert_int_equal(bp.hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	assert_int_equal(bp.hdr.ramdisk_image, 0x3200000);
	assert_int_equal(bp.hdr.ramdisk_size, 4096);
	assert_string_equal((const char *)gm_ptr(&gm, LAYOUT_CMDLINE, 1), "root=/dev/vda");
	expect_e820(&bp, 64 * MIB);
	assert_true(f->cpu.long_mode);
	assert_int_equal(f->cpu.rip, 0x100200);
	assert_int_equal(f->cpu.rsi, LAYOUT_ZERO_PAGE);
	/* The saved header itself is untouched. */
	assert_int_equal(saved->type_of_loader, 0);
	free(ram);
}

/* A short saved header (older protocol) leaves the rest of hdr zero. */
static void test_linux_bzimage_short_header(void **state)
{
	struct fixture *f = *state;
	struct boot_params bp;

	bz_kernel(&f->k, 2047);
	f->k.load_end = 4 * MIB;
	f->k.setup_header_len = offsetof(struct setup_header, kernel_info_offset);
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	read_bp(f, &bp);
	assert_int_equal(bp.hdr.handover_offset, 0x190);
	assert_int_equal(bp.hdr.kernel_info_offset, 0);
}

/* The ext_* fields carry bits 32..63; needs RAM above 4 GiB (MAP_NORESERVE, untouched). */
static void test_linux_high_initrd(void **state)
{
	struct fixture *f = *state;
	struct guest_memory gm;
	struct boot_params bp;

	if (gm_init(&gm, 9 * GIB) != 0)
		skip();
	f->args.initrd_addr = LAYOUT_HIGH_RAM_START + 0x2000;
	f->args.initrd_size = 5 * GIB;
	assert_int_equal(boot_setup(&gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	assert_int_equal(gm_read(&gm, LAYOUT_ZERO_PAGE, &bp, sizeof(bp)), 0);
	assert_int_equal(bp.hdr.ramdisk_image, 0x2000);
	assert_int_equal(bp.ext_ramdisk_image, 1);
	assert_int_equal(bp.hdr.ramdisk_size, 0x40000000);
	assert_int_equal(bp.ext_ramdisk_size, 1);
	expect_e820(&bp, 9 * GIB);
	assert_int_equal(bp.e820_entries, 4);
	assert_int_equal(bp.e820_table[3].addr, LAYOUT_HIGH_RAM_START);
	assert_int_equal(bp.e820_table[3].size, 6 * GIB);
	gm_destroy(&gm);
}

static void test_pvh(void **state)
{
	struct fixture *f = *state;
	struct hvm_start_info si;
	struct hvm_modlist_entry mod;
	struct hvm_memmap_table_entry mm[LAYOUT_MAX_REGIONS];
	struct mem_region map[LAYOUT_MAX_REGIONS];
	int n = layout_memory_map(RAM_SIZE, map, LAYOUT_MAX_REGIONS);

	elf_kernel(&f->k, BOOT_PROTO_PVH);
	f->args.cmdline = "console=hvc0";
	f->args.initrd_addr = 0x900000;
	f->args.initrd_size = 0x4321;
	f->args.rsdp_addr = 0xe0000;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);

	assert_int_equal(gm_read(&f->gm, LAYOUT_ZERO_PAGE, &si, sizeof(si)), 0);
	assert_int_equal(si.magic, 0x336ec578);
	assert_int_equal(si.version, 1);
	assert_int_equal(si.flags, 0);
	assert_int_equal(si.nr_modules, 1);
	assert_int_equal(si.modlist_paddr, LAYOUT_PVH_MODLIST);
	assert_int_equal(si.cmdline_paddr, LAYOUT_CMDLINE);
	assert_int_equal(si.rsdp_paddr, 0xe0000);
	assert_int_equal(si.memmap_paddr, LAYOUT_PVH_MEMMAP);
	assert_int_equal(si.memmap_entries, n);
	assert_int_equal(si.reserved, 0);
	assert_string_equal(cmdline_in_guest(f), "console=hvc0");

	assert_int_equal(gm_read(&f->gm, LAYOUT_PVH_MEMMAP, mm, n * sizeof(mm[0])), 0);
	for (int i = 0; i < n; i++) {
		assert_int_equal(mm[i].addr, map[i].addr);
		assert_int_equal(mm[i].size, map[i].size);
		assert_int_equal(mm[i].type, map[i].type);
		assert_int_equal(mm[i].reserved, 0);
	}
	assert_int_equal(gm_read(&f->gm, LAYOUT_PVH_MODLIST, &mod, sizeof(mod)), 0);
	assert_int_equal(mod.paddr, 0x900000);
	assert_int_equal(mod.size, 0x4321);
	assert_int_equal(mod.cmdline_paddr, 0);
	assert_int_equal(mod.reserved, 0);
	/* The rest of the start-info page is zeroed. */
	assert_int_equal(*(uint8_t *)gm_ptr(&f->gm, LAYOUT_ZERO_PAGE + sizeof(si), 1), 0);

	assert_false(f->cpu.long_mode);
	assert_int_equal(f->cpu.rip, 0x100040);
	assert_int_equal(f->cpu.rbx, LAYOUT_ZERO_PAGE);
	assert_int_equal(f->cpu.rsi, 0);
	assert_int_equal(f->cpu.cr3, 0);
	expect_gdt(f);
	expect_reset_vector(f);
}

static void test_pvh_no_initrd(void **state)
{
	struct fixture *f = *state;
	struct hvm_start_info si;

	elf_kernel(&f->k, BOOT_PROTO_PVH);
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	assert_int_equal(gm_read(&f->gm, LAYOUT_ZERO_PAGE, &si, sizeof(si)), 0);
	assert_int_equal(si.nr_modules, 0);
	assert_int_equal(si.modlist_paddr, 0);
	assert_int_equal(si.rsdp_paddr, 0);
	assert_string_equal(cmdline_in_guest(f), "");
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = 0;
	return s;
}

static void test_cmdline_limits(void **state)
{
	struct fixture *f = *state;
	char *s;

	/* ELF: 2048 bytes including the NUL. */
	s = repeat('a', 2047);
	f->args.cmdline = s;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	assert_string_equal(cmdline_in_guest(f), s);
	free(s);
	s = repeat('a', 2048);
	f->args.cmdline = s;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "command line is 2049 bytes, the limit is 2048");
	free(s);

	/* bzImage with cmdline_size 255. */
	bz_kernel(&f->k, 255);
	f->k.load_end = 4 * MIB;
	s = repeat('b', 255);
	f->args.cmdline = s;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	free(s);
	s = repeat('b', 256);
	f->args.cmdline = s;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "command line is 257 bytes, the limit is 256");
	free(s);

	/* A kernel limit above the space hearth reserves: the reserved area decides. */
	f->k.cmdline_max = UINT32_MAX;
	s = repeat('c', LAYOUT_CMDLINE_MAX - 1);
	f->args.cmdline = s;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	free(s);
	s = repeat('c', LAYOUT_CMDLINE_MAX);
	f->args.cmdline = s;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "the limit is 65536");
	free(s);
}

static void test_setup_rejects(void **state)
{
	struct fixture *f = *state;
	struct guest_memory small;

	/* No protocol chosen. */
	f->k.proto = BOOT_PROTO_AUTO;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "protocol");
	elf_kernel(&f->k, BOOT_PROTO_LINUX64);

	/* Initrd outside RAM, overlapping the kernel, or half specified. */
	f->args.initrd_addr = RAM_SIZE - 0x1000;
	f->args.initrd_size = 0x2000;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "not in guest RAM");
	f->args.initrd_addr = 0x1ff000;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "overlaps");
	f->args.initrd_addr = 0x80000;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "overlaps");
	f->args.initrd_size = 0;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "both");
	f->args.initrd_addr = 0;

	/* Linux 64-bit: the kernel must sit inside the identity-mapped first 1 GiB. */
	f->k.load_end = GIB + 0x1000;
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "1 GiB");
	f->k.load_end = 2 * MIB;

	/* A memory whose size disagrees with its regions, and one too small to hold them. */
	gm_wrap(&small, f->ram, 64 * KIB);
	assert_int_equal(boot_setup(&small, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "not backed");
	small.size = 16 * MIB;
	assert_int_equal(boot_setup(&small, &f->k, &f->args, &f->cpu, &f->err), -1);
	expect_err(&f->err, "not backed");
}

/* ---- initrd placement ---- */

static bool page_aligned(uint64_t v)
{
	return (v & 0xfff) == 0;
}

static void test_initrd_top_of_ram(void **state)
{
	struct fixture *f = *state;
	size_t len = 0x12345;
	uint8_t *img = malloc(len);
	uint64_t addr = 0;

	assert_non_null(img);
	for (size_t i = 0; i < len; i++)
		img[i] = (uint8_t)(i * 31);
	assert_int_equal(initrd_load(&f->gm, &f->k, img, len, &addr, &f->err), 0);
	assert_true(page_aligned(addr));
	assert_true(addr + len <= RAM_SIZE);
	assert_true(addr + len + 0x1000 > RAM_SIZE); /* as high as alignment allows */
	assert_int_equal(addr, (RAM_SIZE - len) & ~0xfffULL);
	assert_memory_equal(f->ram + addr, img, len);

	/* An exact multiple of the page size ends exactly at the top. */
	assert_int_equal(initrd_load(&f->gm, &f->k, img, 0x10000, &addr, &f->err), 0);
	assert_int_equal(addr, RAM_SIZE - 0x10000);
	free(img);
}

static void test_initrd_addr_max(void **state)
{
	struct fixture *f = *state;
	uint8_t *img = calloc(1, 2 * MIB);
	uint64_t addr = 0;

	assert_non_null(img);
	/* initrd_addr_max is inclusive: the initrd may end at initrd_addr_max + 1. */
	f->k.initrd_addr_max = 8 * MIB - 1;
	assert_int_equal(initrd_load(&f->gm, &f->k, img, 0x1800, &addr, &f->err), 0);
	assert_int_equal(addr, 8 * MIB - 0x2000);

	/* A limit above the end of RAM changes nothing. */
	f->k.initrd_addr_max = 0x7fffffff;
	assert_int_equal(initrd_load(&f->gm, &f->k, img, 0x1000, &addr, &f->err), 0);
	assert_int_equal(addr, RAM_SIZE - 0x1000);
	f->k.initrd_addr_max = UINT64_MAX;
	assert_int_equal(initrd_load(&f->gm, &f->k, img, 0x1000, &addr, &f->err), 0);
	assert_int_equal(addr, RAM_SIZE - 0x1000);

	/* The limit leaves no room above the kernel end (2 MiB). */
	f->k.initrd_addr_max = 3 * MIB - 1;
	addr = 1;
	assert_int_equal(initrd_load(&f->gm, &f->k, img, 2 * MIB, &addr, &f->err), -1);
	expect_err(&f->err, "initrd of 2097152 bytes does not fit between the kernel end 0x200000 "
	                    "and 0x300000");
	expect_err(&f->err, "initrd_addr_max");
	assert_int_equal(addr, 0);
	free(img);
}

static void test_initrd_refused(void **state)
{
	struct fixture *f = *state;
	uint8_t *img = calloc(1, RAM_SIZE);
	uint64_t addr;

	assert_non_null(img);
	/* Too big for RAM above the kernel. */
	assert_int_equal(initrd_load(&f->gm, &f->k, img, 15 * MIB, &addr, &f->err), -1);
	expect_err(&f->err, "does not fit between the kernel end 0x200000 and 0x1000000");
	assert_int_equal(initrd_load(&f->gm, &f->k, img, RAM_SIZE, &addr, &f->err), -1);
	expect_err(&f->err, "does not fit");
	/* Would overlap the kernel. */
	f->k.load_end = 15 * MIB;
	assert_int_equal(initrd_load(&f->gm, &f->k, img, MIB + 1, &addr, &f->err), -1);
	expect_err(&f->err, "kernel end 0xf00000");
	assert_int_equal(initrd_load(&f->gm, &f->k, img, MIB, &addr, &f->err), 0);
	assert_int_equal(addr, 15 * MIB);
	/* Never into the boot area, even for a kernel that reports no end. */
	f->k.load_end = 0;
	assert_int_equal(initrd_load(&f->gm, &f->k, img, RAM_SIZE - 0x1000, &addr, &f->err), -1);
	expect_err(&f->err, "kernel end 0x100000");
	/* Empty. */
	assert_int_equal(initrd_load(&f->gm, &f->k, img, 0, &addr, &f->err), -1);
	expect_err(&f->err, "initrd is empty");
	free(img);
}

/* The pieces together: load an initrd, then boot_setup points at it. */
static void test_initrd_then_setup(void **state)
{
	struct fixture *f = *state;
	uint8_t img[5000];
	struct boot_params bp;
	uint64_t addr;

	memset(img, 0x5a, sizeof(img));
	assert_int_equal(initrd_load(&f->gm, &f->k, img, sizeof(img), &addr, &f->err), 0);
	f->args.initrd_addr = addr;
	f->args.initrd_size = sizeof(img);
	assert_int_equal(boot_setup(&f->gm, &f->k, &f->args, &f->cpu, &f->err), 0);
	read_bp(f, &bp);
	assert_int_equal(bp.hdr.ramdisk_image, addr);
	assert_int_equal(bp.hdr.ramdisk_size, sizeof(img));
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    FX(test_linux_elf_boot_params),
	    FX(test_linux_no_initrd_no_cmdline),
	    FX(test_page_tables),
	    FX(test_linux_bzimage_header),
	    FX(test_linux_bzimage_short_header),
	    FX(test_linux_high_initrd),
	    FX(test_pvh),
	    FX(test_pvh_no_initrd),
	    FX(test_cmdline_limits),
	    FX(test_setup_rejects),
	    FX(test_initrd_top_of_ram),
	    FX(test_initrd_addr_max),
	    FX(test_initrd_refused),
	    FX(test_initrd_then_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
