/* Multiboot v1: the header search and flags (boot/loader_multiboot.c), which entry an ELF gets
 * (boot/loader_elf.c), raw images loaded by their header's addresses, and the info the guest
 * is handed (boot/boot_setup.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <elf.h>

#include "boot/boot.h"
#include "boot/multiboot.h"
#include "vmm/layout.h"

#define RAM_SIZE (16 * MIB)
#define POISON   0xcc
#define LOAD     0x100000u
#define ENTRY    0x100040u

struct fixture {
	struct guest_memory gm;
	uint8_t *ram;
	struct error err;
	struct kernel_image k;
};

static int fx_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || !(f->ram = malloc(RAM_SIZE))) {
		free(f);
		return -1;
	}
	memset(f->ram, POISON, RAM_SIZE);
	gm_wrap(&f->gm, f->ram, RAM_SIZE);
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

static void put_header(uint8_t *at, uint32_t flags, const uint32_t *addrs)
{
	uint32_t h[8] = {MULTIBOOT_HEADER_MAGIC, flags, -(MULTIBOOT_HEADER_MAGIC + flags)};

	if (addrs)
		memcpy(h + 3, addrs, 5 * sizeof(uint32_t));
	memcpy(at, h, addrs ? sizeof(h) : 12);
}

/* A raw image: `len` bytes of pattern, the header (load addresses: load at LOAD, the header
 * at file offset `hoff`) in it. */
static uint8_t *raw_image(size_t len, size_t hoff, uint32_t load_end, uint32_t bss_end,
                          uint32_t entry)
{
	uint8_t *img = malloc(len);
	uint32_t addrs[5] = {LOAD + (uint32_t)hoff, LOAD, load_end, bss_end, entry};

	assert_non_null(img);
	for (size_t i = 0; i < len; i++)
		img[i] = (uint8_t)(i * 13 + 1);
	put_header(img + hoff, MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO | MULTIBOOT_AOUT_KLUDGE,
	           addrs);
	return img;
}

static void test_find(void **state)
{
	(void)state;
	uint8_t img[MULTIBOOT_SEARCH + 64];
	struct multiboot_header h;

	memset(img, 0, sizeof(img));
	assert_int_equal(multiboot_find(img, sizeof(img), &h), -1);
	/* Magic with a bad checksum, then a good header further on. */
	put_header(img + 8, 0, NULL);
	img[8 + 8] ^= 1;
	put_header(img + 64, MULTIBOOT_MEMORY_INFO, NULL);
	assert_int_equal(multiboot_find(img, sizeof(img), &h), 64);
	assert_int_equal(h.flags, MULTIBOOT_MEMORY_INFO);
	/* Not 4-byte aligned: not a header. */
	memset(img, 0, sizeof(img));
	put_header(img + 66, 0, NULL);
	assert_int_equal(multiboot_find(img, sizeof(img), &h), -1);
	/* Past the first 8 KiB, or cut by the end of the file. */
	memset(img, 0, sizeof(img));
	put_header(img + MULTIBOOT_SEARCH, 0, NULL);
	assert_int_equal(multiboot_find(img, sizeof(img), &h), -1);
	put_header(img + MULTIBOOT_SEARCH - 12, 0, NULL);
	assert_int_equal(multiboot_find(img, sizeof(img), &h), MULTIBOOT_SEARCH - 12);
	assert_int_equal(multiboot_find(img, MULTIBOOT_SEARCH - 4, &h), -1);
	/* With load addresses, all 32 bytes of it must lie in the 8 KiB. */
	memset(img, 0, sizeof(img));
	put_header(img + MULTIBOOT_SEARCH - 16, MULTIBOOT_AOUT_KLUDGE, NULL);
	assert_int_equal(multiboot_find(img, sizeof(img), &h), -1);
	put_header(img + MULTIBOOT_SEARCH - 32, MULTIBOOT_AOUT_KLUDGE, NULL);
	assert_int_equal(multiboot_find(img, sizeof(img), &h), MULTIBOOT_SEARCH - 32);
	/* Load addresses asked for but cut off by the end of the file. */
	memset(img, 0, sizeof(img));
	put_header(img, MULTIBOOT_AOUT_KLUDGE, NULL);
	assert_int_equal(multiboot_find(img, 20, &h), -1);
	assert_int_equal(multiboot_find(img, 32, &h), 0);
}

static void test_check_flags(void **state)
{
	struct fixture *f = *state;
	struct multiboot_header h = {MULTIBOOT_HEADER_MAGIC, 0, 0, 0, 0, 0, 0, 0};

	h.flags = MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO | MULTIBOOT_AOUT_KLUDGE | (1u << 20);
	assert_int_equal(multiboot_check(&h, &f->k, &f->err), 0); /* optional bits are ignored */
	assert_string_equal(f->k.warning, "");
	/* A video mode: booted (as QEMU does), with a warning */
	h.flags = MULTIBOOT_VIDEO_MODE;
	assert_int_equal(multiboot_check(&h, &f->k, &f->err), 0);
	assert_non_null(strstr(f->k.warning, "video mode"));
	h.flags = 1u << 5;
	assert_int_equal(multiboot_check(&h, &f->k, &f->err), -1);
	expect_err(&f->err, "flags 0x0020");
}

static void test_raw_image(void **state)
{
	struct fixture *f = *state;
	size_t len = 0x3000;
	uint8_t *img = raw_image(len, 0x100, LOAD + 0x2000, LOAD + 0x5000, ENTRY);

	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.format, KERNEL_MULTIBOOT);
	assert_int_equal(f->k.proto, BOOT_PROTO_MULTIBOOT);
	assert_int_equal(f->k.entry, ENTRY);
	assert_int_equal(f->k.load_start, LOAD);
	assert_int_equal(f->k.load_end, LOAD + 0x5000);
	assert_memory_equal(f->ram + LOAD, img, 0x2000);
	for (size_t i = 0x2000; i < 0x5000; i++)
		assert_int_equal(f->ram[LOAD + i], 0); /* .bss zeroed */
	assert_int_equal(f->ram[LOAD + 0x5000], POISON);
	/* load_end_addr 0: to the end of the file; bss_end_addr 0: no .bss. */
	memset(f->ram, POISON, RAM_SIZE);
	free(img);
	img = raw_image(len, 0x100, 0, 0, ENTRY);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_MULTIBOOT, &f->k, &f->err), 0);
	assert_int_equal(f->k.load_end, LOAD + len);
	assert_memory_equal(f->ram + LOAD, img, len);
	assert_int_equal(f->ram[LOAD + len], POISON);
	/* Only the Multiboot entry exists in a raw image. */
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_LINUX64, &f->k, &f->err), -1);
	expect_err(&f->err, "only the Multiboot entry");
	free(img);
}

static void raw_reject(struct fixture *f, uint8_t *img, size_t len, const char *needle)
{
	memset(f->ram, POISON, RAM_SIZE);
	memset(&f->err, 0, sizeof(f->err));
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, needle);
	for (size_t i = 0; i < 0x10000; i++)
		assert_int_equal(f->ram[LOAD + i], POISON); /* nothing written */
	free(img);
}

static void test_raw_rejects(void **state)
{
	struct fixture *f = *state;
	uint8_t *img;
	uint32_t a[5];

	/* The header would load before the file's start. */
	img = raw_image(0x3000, 0x100, 0, 0, ENTRY);
	a[0] = LOAD + 0x200, a[1] = LOAD, a[2] = 0, a[3] = 0, a[4] = ENTRY;
	put_header(img + 0x100, MULTIBOOT_AOUT_KLUDGE, a);
	raw_reject(f, img, 0x3000, "before the file's");
	img = raw_image(0x3000, 0x100, 0, 0, ENTRY);
	a[0] = LOAD, a[1] = LOAD + 0x10;
	put_header(img + 0x100, MULTIBOOT_AOUT_KLUDGE, a);
	raw_reject(f, img, 0x3000, "before the file's");
	raw_reject(f, raw_image(0x3000, 0x100, LOAD - 1, 0, ENTRY), 0x3000, "below load_addr");
	raw_reject(f, raw_image(0x3000, 0x100, LOAD + 0x4000, 0, ENTRY), 0x3000,
	           "beyond the end of the file");
	raw_reject(f, raw_image(0x3000, 0x100, LOAD + 0x2000, LOAD + 0x1000, ENTRY), 0x3000,
	           "bss_end_addr");
	raw_reject(f, raw_image(0x3000, 0x100, 0, LOAD + RAM_SIZE, ENTRY), 0x3000,
	           "not in guest RAM");
	raw_reject(f, raw_image(0x3000, 0x100, 0, 0, LOAD + 0x3000), 0x3000, "entry point");
	raw_reject(f, raw_image(0x3000, 0x100, 0, 0, LOAD - 4), 0x3000, "entry point");
	/* Below 1 MiB: over the boot structures. */
	img = raw_image(0x3000, 0x100, 0, 0, ENTRY);
	a[0] = 0x8100, a[1] = 0x8000, a[2] = 0, a[3] = 0, a[4] = 0x8200;
	put_header(img + 0x100, MULTIBOOT_AOUT_KLUDGE, a);
	raw_reject(f, img, 0x3000, "boot structures");
	/* A requirement hearth does not know is refused before anything loads. */
	img = raw_image(0x3000, 0x100, 0, 0, ENTRY);
	a[0] = LOAD + 0x100, a[1] = LOAD, a[2] = 0, a[3] = 0, a[4] = ENTRY;
	put_header(img + 0x100, MULTIBOOT_AOUT_KLUDGE | (1u << 7), a);
	raw_reject(f, img, 0x3000, "flags 0x0080");
	/* A header without load addresses in a file that is not an ELF. */
	img = raw_image(0x3000, 0x100, 0, 0, ENTRY);
	put_header(img + 0x100, MULTIBOOT_MEMORY_INFO, NULL);
	raw_reject(f, img, 0x3000, "nothing says where to load it");
	/* Neither a header nor any other format. */
	img = calloc(1, 0x3000);
	raw_reject(f, img, 0x3000, "not an ELF, bzImage or Multiboot kernel");
}

/* An ELF (32- or 64-bit) with one PT_LOAD of 0x2000 bytes at LOAD (0x3000 in memory), its
 * file bytes at offset 0x1000, and optionally a Multiboot header at file offset 0x1010. */
static uint8_t *elf_image(bool is32, bool header, uint32_t mbflags, uint32_t mbentry,
                          uint64_t entry, size_t *len)
{
	uint8_t *img = calloc(1, 0x3000);

	assert_non_null(img);
	for (size_t i = 0x1000; i < 0x3000; i++)
		img[i] = (uint8_t)(i * 7 + 3);
	if (is32) {
		Elf32_Ehdr eh = {.e_type = ET_EXEC,
		                 .e_machine = EM_386,
		                 .e_version = EV_CURRENT,
		                 .e_entry = (uint32_t)entry,
		                 .e_phoff = sizeof(Elf32_Ehdr),
		                 .e_ehsize = sizeof(Elf32_Ehdr),
		                 .e_phentsize = sizeof(Elf32_Phdr),
		                 .e_phnum = 1};
		Elf32_Phdr ph = {PT_LOAD, 0x1000, LOAD, LOAD, 0x2000, 0x3000, PF_R | PF_X, 0x1000};

		memcpy(eh.e_ident, ELFMAG, SELFMAG);
		eh.e_ident[EI_CLASS] = ELFCLASS32;
		eh.e_ident[EI_DATA] = ELFDATA2LSB;
		memcpy(img, &eh, sizeof(eh));
		memcpy(img + sizeof(eh), &ph, sizeof(ph));
	} else {
		Elf64_Ehdr eh = {.e_type = ET_EXEC,
		                 .e_machine = EM_X86_64,
		                 .e_version = EV_CURRENT,
		                 .e_entry = entry,
		                 .e_phoff = sizeof(Elf64_Ehdr),
		                 .e_ehsize = sizeof(Elf64_Ehdr),
		                 .e_phentsize = sizeof(Elf64_Phdr),
		                 .e_phnum = 1};
		Elf64_Phdr ph = {PT_LOAD, PF_R | PF_X, 0x1000, LOAD, LOAD, 0x2000, 0x3000, 0x1000};

		memcpy(eh.e_ident, ELFMAG, SELFMAG);
		eh.e_ident[EI_CLASS] = ELFCLASS64;
		eh.e_ident[EI_DATA] = ELFDATA2LSB;
		memcpy(img, &eh, sizeof(eh));
		memcpy(img + sizeof(eh), &ph, sizeof(ph));
	}
	if (header) {
		/* Load addresses that say the same as the program header, but without .bss. */
		uint32_t a[5] = {LOAD + 0x10, LOAD, LOAD + 0x2000, 0, mbentry};

		put_header(img + 0x1010, mbflags, a);
	}
	*len = 0x3000;
	return img;
}

static void test_elf32(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *img = elf_image(true, true, MULTIBOOT_MEMORY_INFO, 0, ENTRY, &len);

	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.format, KERNEL_ELF);
	assert_int_equal(f->k.proto, BOOT_PROTO_MULTIBOOT);
	assert_int_equal(f->k.entry, ENTRY);
	assert_int_equal(f->k.load_start, LOAD);
	assert_int_equal(f->k.load_end, LOAD + 0x3000); /* by the program header: with .bss */
	assert_memory_equal(f->ram + LOAD, img + 0x1000, 0x2000);
	for (size_t i = 0x2000; i < 0x3000; i++)
		assert_int_equal(f->ram[LOAD + i], 0);
	/* No Linux 64-bit and no PVH entry in a 32-bit ELF. */
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_LINUX64, &f->k, &f->err), -1);
	expect_err(&f->err, "32-bit ELF has no Linux 64-bit entry");
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_PVH, &f->k, &f->err), -1);
	expect_err(&f->err, "no PVH entry note");
	free(img);

	/* Without a header: what hearth boots instead. */
	img = elf_image(true, false, 0, 0, ENTRY, &len);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "32-bit ELF without a Multiboot header or PVH note");
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_MULTIBOOT, &f->k, &f->err), -1);
	expect_err(&f->err, "no Multiboot header");
	/* A 32-bit ELF for another machine. */
	((Elf32_Ehdr *)img)->e_machine = EM_X86_64;
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "EM_386");
	free(img);

	/* A video mode: loaded, with a warning; an unknown requirement: refused. */
	img = elf_image(true, true, MULTIBOOT_VIDEO_MODE, 0, ENTRY, &len);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_non_null(strstr(f->k.warning, "video mode"));
	free(img);
	img = elf_image(true, true, 1u << 15, 0, ENTRY, &len);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "flags 0x8000");
	free(img);

	/* A higher-half kernel: e_entry is virtual, started at its physical address. */
	img = elf_image(true, true, MULTIBOOT_MEMORY_INFO, 0, 0xc0100000u + (ENTRY - LOAD), &len);
	((Elf32_Phdr *)(img + sizeof(Elf32_Ehdr)))->p_vaddr = 0xc0100000u;
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.entry, ENTRY);
	assert_int_equal(f->k.load_start, LOAD);
	/* ...and an entry outside every segment is refused. */
	((Elf32_Ehdr *)img)->e_entry = 0xc0200000u;
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "in no PT_LOAD segment");
	free(img);

	/* Load addresses in the header: the program headers are not looked at (here they
	 * would load far outside RAM). */
	img = elf_image(true, true, MULTIBOOT_AOUT_KLUDGE, ENTRY, 0xc0100040u, &len);
	((Elf32_Phdr *)(img + sizeof(Elf32_Ehdr)))->p_paddr = 0xc0100000u;
	memset(f->ram, POISON, RAM_SIZE);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.entry, ENTRY);
	assert_memory_equal(f->ram + LOAD, img + 0x1000, 0x2000);
	free(img);
}

static void test_elf64_choice(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *img;

	/* A header without load addresses: e_entry is the Multiboot entry. */
	img = elf_image(false, true, MULTIBOOT_MEMORY_INFO, 0, ENTRY, &len);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_MULTIBOOT);
	assert_int_equal(f->k.entry, ENTRY);
	assert_int_equal(f->k.load_end, LOAD + 0x3000);
	/* ...unless the Linux entry is asked for. */
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_LINUX64, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_LINUX64);
	free(img);

	/* Load addresses naming e_entry: Multiboot, loaded by the header (GRUB's rule). */
	img = elf_image(false, true, MULTIBOOT_AOUT_KLUDGE, ENTRY, ENTRY, &len);
	memset(f->ram, POISON, RAM_SIZE);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_MULTIBOOT);
	assert_int_equal(f->k.format, KERNEL_ELF);
	assert_int_equal(f->k.load_end, LOAD + 0x2000); /* the header's: no .bss */
	assert_memory_equal(f->ram + LOAD, img + 0x1000, 0x2000);
	assert_int_equal(f->ram[LOAD + 0x2000], POISON);
	free(img);

	/* Load addresses naming another entry than e_entry (Solo5 and Unikraft: e_entry is
	 * their 64-bit C entry): Multiboot at the header's, unless the Linux entry is asked for. */
	img = elf_image(false, true, MULTIBOOT_AOUT_KLUDGE, ENTRY + 0x10, ENTRY, &len);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_MULTIBOOT);
	assert_int_equal(f->k.entry, ENTRY + 0x10);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_LINUX64, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_LINUX64);
	assert_int_equal(f->k.entry, ENTRY);
	free(img);

	/* No header: the Linux entry, and no Multiboot one to force. */
	img = elf_image(false, false, 0, 0, ENTRY, &len);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_LINUX64);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_MULTIBOOT, &f->k, &f->err), -1);
	expect_err(&f->err, "no Multiboot header");
	free(img);

	/* A Multiboot entry above 4 GiB cannot be reached in 32-bit mode. */
	img = elf_image(false, true, MULTIBOOT_MEMORY_INFO, 0, 0x100000000ULL + ENTRY, &len);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "entry point");
	free(img);
}

static void test_boot_info(void **state)
{
	struct fixture *f = *state;
	struct kernel_image k = {.format = KERNEL_ELF,
	                         .proto = BOOT_PROTO_MULTIBOOT,
	                         .entry = ENTRY,
	                         .load_start = LOAD,
	                         .load_end = 2 * MIB,
	                         .cmdline_max = BOOT_DEFAULT_CMDLINE_MAX};
	struct boot_args args = {.cmdline = "a=1 b",
	                         .kernel_name = "/k/mb.elf",
	                         .initrd_addr = 8 * MIB,
	                         .initrd_size = 100};
	struct boot_cpu_state cpu;
	struct multiboot_info mi;
	struct multiboot_mmap_entry mm[4];
	struct multiboot_module mod;
	char s[64];

	assert_int_equal(boot_setup(&f->gm, &k, &args, &cpu, &f->err), 0);
	assert_false(cpu.long_mode);
	assert_int_equal(cpu.rip, ENTRY);
	assert_int_equal(cpu.rax, MULTIBOOT_BOOTLOADER_MAGIC);
	assert_int_equal(cpu.rbx, LAYOUT_ZERO_PAGE);
	assert_int_equal(gm_read(&f->gm, cpu.rbx, &mi, sizeof(mi)), 0);
	assert_int_equal(mi.flags, MULTIBOOT_INFO_MEMORY | MULTIBOOT_INFO_CMDLINE |
	                               MULTIBOOT_INFO_MODS | MULTIBOOT_INFO_MEM_MAP |
	                               MULTIBOOT_INFO_LOADER_NAME);
	assert_int_equal(mi.mem_lower, LAYOUT_EBDA_START / 1024);
	assert_int_equal(mi.mem_upper, (RAM_SIZE - MIB) / 1024);
	assert_int_equal(mi.mmap_length, 3 * sizeof(mm[0]));
	assert_int_equal(gm_read(&f->gm, mi.mmap_addr, mm, 3 * sizeof(mm[0])), 0);
	assert_int_equal(mm[0].size, 20);
	assert_int_equal(mm[0].addr, 0);
	assert_int_equal(mm[0].len, LAYOUT_EBDA_START);
	assert_int_equal(mm[0].type, 1);
	assert_int_equal(mm[1].type, 2);
	assert_int_equal(mm[2].addr, MIB);
	assert_int_equal(mm[2].len, RAM_SIZE - MIB);
	assert_int_equal(mm[2].type, 1);
	assert_int_equal(gm_read(&f->gm, mi.cmdline, s, sizeof(s)), 0);
	assert_string_equal(s, "mb.elf a=1 b"); /* the file name, not the host path */
	assert_int_equal(gm_read(&f->gm, mi.boot_loader_name, s, 7), 0);
	assert_string_equal(s, "hearth");
	assert_int_equal(mi.mods_count, 1);
	assert_int_equal(gm_read(&f->gm, mi.mods_addr, &mod, sizeof(mod)), 0);
	assert_int_equal(mod.mod_start, 8 * MIB);
	assert_int_equal(mod.mod_end, 8 * MIB + 100);
	assert_int_equal(gm_read(&f->gm, mod.string, s, 7), 0);
	assert_string_equal(s, "initrd");

	/* A name that is not one word: "kernel". */
	args = (struct boot_args){.cmdline = "x", .kernel_name = "/a b/my kernel"};
	assert_int_equal(boot_setup(&f->gm, &k, &args, &cpu, &f->err), 0);
	assert_int_equal(gm_read(&f->gm, LAYOUT_CMDLINE, s, 9), 0);
	assert_string_equal(s, "kernel x");
	/* No arguments: the name alone; no initrd: no modules. */
	args = (struct boot_args){.kernel_name = "kernel"};
	assert_int_equal(boot_setup(&f->gm, &k, &args, &cpu, &f->err), 0);
	assert_int_equal(gm_read(&f->gm, LAYOUT_ZERO_PAGE, &mi, sizeof(mi)), 0);
	assert_int_equal(mi.flags & MULTIBOOT_INFO_MODS, 0);
	assert_int_equal(mi.mods_count, 0);
	assert_int_equal(gm_read(&f->gm, mi.cmdline, s, 7), 0);
	assert_string_equal(s, "kernel");

	/* The name counts against the command-line limit. */
	memset(s, 'x', sizeof(s));
	s[sizeof(s) - 1] = 0;
	k.cmdline_max = sizeof(s) + 4; /* "abc " and the line with its NUL */
	args = (struct boot_args){.cmdline = s, .kernel_name = "abc"};
	assert_int_equal(boot_setup(&f->gm, &k, &args, &cpu, &f->err), 0);
	args.kernel_name = "abcd";
	assert_int_equal(boot_setup(&f->gm, &k, &args, &cpu, &f->err), -1);
	expect_err(&f->err, "kernel's name in front");
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    FX(test_find),  FX(test_check_flags),  FX(test_raw_image), FX(test_raw_rejects),
	    FX(test_elf32), FX(test_elf64_choice), FX(test_boot_info),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
