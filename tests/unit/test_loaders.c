/* ELF64 and bzImage kernel loaders (vmm/loader_elf.c, vmm/loader_bzimage.c, kernel_loader.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <asm/bootparam.h>
#include <elf.h>

#include "boot/boot.h"
#include "vmm/layout.h"
#include "boot/pvh.h"

#define RAM_SIZE (8 * MIB)
#define POISON   0xcc

struct fixture {
	struct guest_memory gm;
	uint8_t *ram;
	struct error err;
	struct kernel_image k;
};

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
	memset(f->ram, POISON, RAM_SIZE); /* so zeroed bss is visible */
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

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* ---- ELF images ---- */

struct tseg {
	uint32_t type; /* PT_LOAD when 0 */
	uint64_t paddr, filesz, memsz;
	const uint8_t *data; /* file bytes for non-LOAD segments; LOAD gets a pattern */
	uint64_t align;
};

static uint8_t pattern(size_t seg, size_t i)
{
	return (uint8_t)(0x11 * (seg + 1) + i * 7);
}

/* An ELF64 x86_64 ET_EXEC with the given segments; file data follows the program headers. */
static uint8_t *make_elf(const struct tseg *segs, int n, uint64_t entry, size_t *len_out)
{
	size_t off = sizeof(Elf64_Ehdr) + n * sizeof(Elf64_Phdr), len = off;
	Elf64_Ehdr *eh;
	uint8_t *img;

	for (int i = 0; i < n; i++)
		len += (segs[i].filesz + 15) & ~15ULL;
	img = calloc(1, len);
	assert_non_null(img);
	eh = (Elf64_Ehdr *)img;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = entry;
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = (uint16_t)n;
	for (int i = 0; i < n; i++) {
		Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(Elf64_Ehdr)) + i;

		ph->p_type = segs[i].type ? segs[i].type : PT_LOAD;
		ph->p_offset = off;
		ph->p_paddr = segs[i].paddr;
		ph->p_vaddr = segs[i].paddr + 0xffffffff80000000ULL;
		ph->p_filesz = segs[i].filesz;
		ph->p_memsz = segs[i].memsz;
		ph->p_align = segs[i].align ? segs[i].align : 4;
		for (size_t j = 0; j < segs[i].filesz; j++)
			img[off + j] = segs[i].data ? segs[i].data[j] : pattern(i, j);
		off += (segs[i].filesz + 15) & ~15ULL;
	}
	*len_out = len;
	return img;
}

static Elf64_Phdr *phdr(uint8_t *img, int i)
{
	return (Elf64_Phdr *)(img + ((Elf64_Ehdr *)img)->e_phoff) + i;
}

/* Append one note to buf at *pos (aligned to `align`). */
static void add_note(uint8_t *buf, size_t *pos, const char *name, uint32_t type, const void *desc,
                     uint32_t descsz, size_t align)
{
	Elf64_Nhdr nh = {
	    .n_namesz = (uint32_t)strlen(name) + 1, .n_descsz = descsz, .n_type = type};

	memcpy(buf + *pos, &nh, sizeof(nh));
	*pos += sizeof(nh);
	memcpy(buf + *pos, name, nh.n_namesz);
	*pos += (nh.n_namesz + align - 1) & ~(align - 1);
	memcpy(buf + *pos, desc, descsz);
	*pos += (descsz + align - 1) & ~(align - 1);
}

#define K_ENTRY   0x100100ULL
#define PVH_ENTRY 0x100040u

/* One PT_LOAD at 1 MiB (4 KiB of file, 12 KiB in memory) and optionally a PVH note. */
static uint8_t *simple_elf(bool pvh, size_t *len)
{
	static uint8_t notes[256];
	size_t npos = 0;
	uint32_t e32 = PVH_ENTRY;
	struct tseg segs[2] = {
	    {.paddr = 0x100000, .filesz = 0x1000, .memsz = 0x3000},
	};

	memset(notes, 0, sizeof(notes));
	if (pvh) {
		uint64_t dummy = 0x1234;

		add_note(notes, &npos, "GNU", 3, &dummy, 8, 4);    /* skipped */
		add_note(notes, &npos, "Xen", 5, "xen-3.0", 8, 4); /* other Xen note, skipped */
		add_note(notes, &npos, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &e32, 4, 4);
		segs[1] = (struct tseg){.type = PT_NOTE, .filesz = npos, .data = notes};
	}
	return make_elf(segs, pvh ? 2 : 1, K_ENTRY, len);
}

static void test_elf_linux64(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *img = simple_elf(false, &len);
	const uint8_t *ram = f->ram;

	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.format, KERNEL_ELF);
	assert_int_equal(f->k.proto, BOOT_PROTO_LINUX64);
	assert_int_equal(f->k.entry, K_ENTRY);
	assert_int_equal(f->k.load_start, 0x100000);
	assert_int_equal(f->k.load_end, 0x103000);
	assert_int_equal(f->k.cmdline_max, BOOT_DEFAULT_CMDLINE_MAX);
	assert_int_equal(f->k.initrd_addr_max, 0);
	assert_int_equal(f->k.setup_header_len, 0);
	for (size_t j = 0; j < 0x1000; j++)
		assert_int_equal(ram[0x100000 + j], pattern(0, j));
	assert_true(all_bytes(ram + 0x101000, 0x2000, 0));      /* bss zeroed */
	assert_true(all_bytes(ram + 0x103000, 0x1000, POISON)); /* nothing past memsz */
	assert_true(all_bytes(ram + 0xff000, 0x1000, POISON));  /* nothing below */

	/* LINUX64 requested explicitly, and through the kernel_load dispatch. */
	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_LINUX64, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_LINUX64);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.format, KERNEL_ELF);
	assert_int_equal(f->k.entry, K_ENTRY);
	free(img);
}

static void test_elf_pvh_choice(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *img = simple_elf(true, &len);

	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_PVH);
	assert_int_equal(f->k.entry, PVH_ENTRY);
	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_PVH, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_PVH);
	assert_int_equal(f->k.entry, PVH_ENTRY);
	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_LINUX64, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_LINUX64);
	assert_int_equal(f->k.entry, K_ENTRY);
	free(img);
}

static void test_elf_want_pvh_without_note(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *img = simple_elf(false, &len);

	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_PVH, &f->k, &f->err), -1);
	expect_err(&f->err, "no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
	free(img);
}

/* A 64-bit descriptor: the low 32 bits are the entry; 8-byte aligned notes when p_align 8. */
static void test_elf_pvh_note_64bit_desc_align8(void **state)
{
	struct fixture *f = *state;
	uint8_t notes[128] = {0};
	size_t npos = 0, len;
	uint64_t e64 = 0xabcd000000100080ULL;
	uint8_t *img;

	add_note(notes, &npos, "Linux", 1, "abcdef", 6, 8);
	add_note(notes, &npos, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &e64, 8, 8);
	struct tseg segs[] = {
	    {.type = PT_NOTE, .filesz = npos, .data = notes, .align = 8},
	    {.paddr = 0x100000, .filesz = 0x200, .memsz = 0x200},
	};
	img = make_elf(segs, 2, K_ENTRY, &len);
	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_PVH);
	assert_int_equal(f->k.entry, 0x100080);
	free(img);
}

static void test_elf_two_segments(void **state)
{
	struct fixture *f = *state;
	struct tseg segs[] = {
	    {.paddr = 0x400000, .filesz = 0x800, .memsz = 0x10000},
	    {.paddr = 0x200000, .filesz = 0x1000, .memsz = 0x1000},
	    {.paddr = 0x300000, .filesz = 0, .memsz = 0}, /* empty: ignored */
	};
	size_t len;
	uint8_t *img = make_elf(segs, 3, 0x200000, &len);

	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.load_start, 0x200000);
	assert_int_equal(f->k.load_end, 0x410000);
	assert_int_equal(f->ram[0x400000], pattern(0, 0));
	assert_int_equal(f->ram[0x4007ff], pattern(0, 0x7ff));
	assert_true(all_bytes(f->ram + 0x400800, 0x10000 - 0x800, 0));
	assert_int_equal(f->ram[0x200fff], pattern(1, 0xfff));
	assert_int_equal(f->ram[0x300000], POISON);
	free(img);
}

/* Load into a hand-built memory with high RAM: segments in the gap fail, high RAM works. */
static void test_elf_gap_and_high(void **state)
{
	struct fixture *f = *state;
	struct guest_memory gm = {
	    .host = f->ram, .size = RAM_SIZE, .low_size = RAM_SIZE - MIB, .high_size = MIB};
	struct tseg segs[] = {{.paddr = LAYOUT_GAP_START, .filesz = 0x100, .memsz = 0x100}};
	size_t len;
	uint8_t *img = make_elf(segs, 1, 0x100000, &len);

	assert_int_equal(elf_load(&gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "not in guest RAM");
	/* Straddling the end of low RAM. */
	phdr(img, 0)->p_paddr = gm.low_size - 0x80;
	assert_int_equal(elf_load(&gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "not in guest RAM");
	/* Straddling from the gap into high RAM. */
	phdr(img, 0)->p_paddr = LAYOUT_HIGH_RAM_START - 0x80;
	assert_int_equal(elf_load(&gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "not in guest RAM");
	/* High RAM is RAM: the bytes land after low RAM in the host buffer. */
	phdr(img, 0)->p_paddr = LAYOUT_HIGH_RAM_START + 0x1000;
	assert_int_equal(elf_load(&gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->ram[gm.low_size + 0x1000], pattern(0, 0));
	assert_int_equal(f->k.load_start, LAYOUT_HIGH_RAM_START + 0x1000);
	/* Past the end of high RAM. */
	phdr(img, 0)->p_paddr = LAYOUT_HIGH_RAM_START + MIB - 0x80;
	assert_int_equal(elf_load(&gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "not in guest RAM");
	free(img);
}

typedef void (*mutate_fn)(uint8_t *img, size_t *len);

/* Apply `m` to a fresh good image and expect elf_load to fail with `needle`, writing nothing. */
static void elf_reject(struct fixture *f, bool pvh, mutate_fn m, const char *needle)
{
	size_t len;
	uint8_t *img = simple_elf(pvh, &len);

	m(img, &len);
	memset(f->ram, POISON, RAM_SIZE);
	memset(&f->err, 0, sizeof(f->err));
	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, needle);
	assert_true(all_bytes(f->ram + 0x100000, 0x3000, POISON));
	free(img);
}

static void m_truncate(uint8_t *img, size_t *len)
{
	(void)img;
	*len = sizeof(Elf64_Ehdr) - 1;
}
static void m_magic(uint8_t *img, size_t *len)
{
	(void)len;
	img[1] = 'X';
}
static void m_class32(uint8_t *img, size_t *len)
{
	(void)len;
	img[EI_CLASS] = ELFCLASS32;
}
static void m_bigendian(uint8_t *img, size_t *len)
{
	(void)len;
	img[EI_DATA] = ELFDATA2MSB;
}
static void m_machine(uint8_t *img, size_t *len)
{
	(void)len;
	((Elf64_Ehdr *)img)->e_machine = EM_386;
}
static void m_type_dyn(uint8_t *img, size_t *len)
{
	(void)len;
	((Elf64_Ehdr *)img)->e_type = ET_DYN;
}
static void m_phentsize(uint8_t *img, size_t *len)
{
	(void)len;
	((Elf64_Ehdr *)img)->e_phentsize = 32;
}
static void m_phoff_beyond(uint8_t *img, size_t *len)
{
	((Elf64_Ehdr *)img)->e_phoff = *len - 8;
}
static void m_phoff_wrap(uint8_t *img, size_t *len)
{
	(void)len;
	((Elf64_Ehdr *)img)->e_phoff = UINT64_MAX - 8;
}
static void m_phnum_big(uint8_t *img, size_t *len)
{
	(void)len;
	((Elf64_Ehdr *)img)->e_phnum = 0xffff;
}
static void m_phnum_zero(uint8_t *img, size_t *len)
{
	(void)len;
	((Elf64_Ehdr *)img)->e_phnum = 0;
}
static void m_seg_beyond_file(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_filesz = 0x2000; /* memsz 0x3000, but the file ends first */
}
static void m_seg_offset_wrap(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_offset = UINT64_MAX - 0x10;
}
static void m_filesz_gt_memsz(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_memsz = 0x800;
}
static void m_seg_outside_ram(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_paddr = RAM_SIZE - 0x1000; /* 12 KiB from 4 KiB below the end */
}
static void m_seg_far(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_paddr = 0x1000000000ULL;
}
static void m_seg_below_1m(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_paddr = LAYOUT_ZERO_PAGE;
}
static void m_seg_straddle_1m(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_paddr = LAYOUT_KERNEL_START - 0x1000;
}
static void m_seg_paddr_overflow(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_paddr = UINT64_MAX - 0x1000;
}
static void m_no_load(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_type = PT_NULL;
}
static void m_load_empty(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 0)->p_filesz = 0;
	phdr(img, 0)->p_memsz = 0;
}
static void m_entry_outside(uint8_t *img, size_t *len)
{
	(void)len;
	((Elf64_Ehdr *)img)->e_entry = 0x40000000;
}
/* Notes (the image from simple_elf(true): phdr 1 is the PT_NOTE; 3 notes). */
static void m_note_namesz_huge(uint8_t *img, size_t *len)
{
	(void)len;
	Elf64_Nhdr *nh = (Elf64_Nhdr *)(img + phdr(img, 1)->p_offset);

	nh->n_namesz = 0xffffffff;
}
static void m_note_descsz_huge(uint8_t *img, size_t *len)
{
	(void)len;
	Elf64_Nhdr *nh = (Elf64_Nhdr *)(img + phdr(img, 1)->p_offset);

	nh->n_descsz = 0xfffffffc;
}
static void m_note_desc_past_segment(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 1)->p_filesz -= 4; /* the last note's descriptor is cut */
}
static void m_note_pvh_descsz(uint8_t *img, size_t *len)
{
	(void)len;
	/* The PVH note is the third: GNU (12+4+8) + Xen (12+4+8) = 48 bytes in. */
	Elf64_Nhdr *nh = (Elf64_Nhdr *)(img + phdr(img, 1)->p_offset + 48);

	assert_int_equal(nh->n_type, XEN_ELFNOTE_PHYS32_ENTRY);
	nh->n_descsz = 2;
}
static void m_note_beyond_file(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 1)->p_offset = *len - 8;
}

static void test_elf_rejects(void **state)
{
	struct fixture *f = *state;

	elf_reject(f, false, m_truncate, "truncated");
	elf_reject(f, false, m_magic, "bad magic");
	elf_reject(f, false, m_class32, "32-bit ELF");
	elf_reject(f, false, m_bigendian, "little-endian");
	elf_reject(f, false, m_machine, "not x86_64");
	elf_reject(f, false, m_type_dyn, "ET_EXEC");
	elf_reject(f, false, m_phentsize, "e_phentsize");
	elf_reject(f, false, m_phoff_beyond, "program headers");
	elf_reject(f, false, m_phoff_wrap, "program headers");
	elf_reject(f, false, m_phnum_big, "program headers");
	elf_reject(f, false, m_phnum_zero, "no PT_LOAD");
	elf_reject(f, false, m_seg_beyond_file, "beyond the end of the file");
	elf_reject(f, false, m_seg_offset_wrap, "beyond the end of the file");
	elf_reject(f, false, m_filesz_gt_memsz, "larger than p_memsz");
	elf_reject(f, false, m_seg_outside_ram, "not in guest RAM");
	elf_reject(f, false, m_seg_far, "not in guest RAM");
	elf_reject(f, false, m_seg_below_1m, "boot structures");
	elf_reject(f, false, m_seg_straddle_1m, "boot structures");
	elf_reject(f, false, m_seg_paddr_overflow, "overflows");
	elf_reject(f, false, m_no_load, "no PT_LOAD");
	elf_reject(f, false, m_load_empty, "no PT_LOAD");
	elf_reject(f, false, m_entry_outside, "entry point");
	elf_reject(f, true, m_note_namesz_huge, "bad sizes");
	elf_reject(f, true, m_note_descsz_huge, "bad sizes");
	elf_reject(f, true, m_note_desc_past_segment, "bad sizes");
	elf_reject(f, true, m_note_pvh_descsz, "descsz 2, expected 4 or 8");
	elf_reject(f, true, m_note_beyond_file, "PT_NOTE segment 1");
}

/* A bad second segment must stop the load before the good first one is copied. */
static void test_elf_validates_before_writing(void **state)
{
	struct fixture *f = *state;
	struct tseg segs[] = {
	    {.paddr = 0x100000, .filesz = 0x100, .memsz = 0x100},
	    {.paddr = RAM_SIZE, .filesz = 0x100, .memsz = 0x100},
	};
	size_t len;
	uint8_t *img = make_elf(segs, 2, 0x100000, &len);

	assert_int_equal(elf_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "segment 1");
	assert_true(all_bytes(f->ram + 0x100000, 0x100, POISON));
	free(img);
}

static void test_elf_bad_want(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *img = simple_elf(false, &len);

	assert_int_equal(elf_load(&f->gm, img, len, (enum boot_protocol)42, &f->k, &f->err), -1);
	expect_err(&f->err, "unknown boot protocol");
	free(img);
}

/* ---- bzImages ---- */

struct bz_spec {
	uint8_t setup_sects;
	uint16_t version;
	uint8_t loadflags;
	uint16_t xloadflags;
	uint32_t init_size;
	uint32_t cmdline_size;
	uint32_t initrd_addr_max;
	uint8_t relocatable;
	uint32_t kernel_alignment;
	uint64_t pref_address;
	uint8_t hdr_end_byte; /* byte at 0x201 */
	size_t kbytes;
};

static const struct bz_spec bz_default = {
    .setup_sects = 4,
    .version = 0x020f,
    .loadflags = LOADED_HIGH,
    .xloadflags = XLF_KERNEL_64,
    .init_size = 0x200000,
    .cmdline_size = 2047,
    .initrd_addr_max = 0x7fffffff,
    .hdr_end_byte = 0x26c - 0x202,
    .kbytes = 0x10000,
};

static uint8_t kpattern(size_t i)
{
	return (uint8_t)(i * 13 + 5);
}

static uint8_t *make_bz(const struct bz_spec *s, size_t *len_out)
{
	size_t setup = ((s->setup_sects ? s->setup_sects : 4) + 1) * 512;
	size_t len = setup + s->kbytes;
	struct setup_header h;
	uint8_t *img = calloc(1, len);

	assert_non_null(img);
	memset(&h, 0, sizeof(h));
	h.setup_sects = s->setup_sects;
	h.boot_flag = 0xAA55;
	h.jump = (uint16_t)(0xeb | (s->hdr_end_byte << 8));
	h.header = 0x53726448;
	h.version = s->version;
	h.loadflags = s->loadflags;
	h.code32_start = 0x100000;
	h.initrd_addr_max = s->initrd_addr_max;
	h.kernel_alignment = s->kernel_alignment;
	h.relocatable_kernel = s->relocatable;
	h.xloadflags = s->xloadflags;
	h.cmdline_size = s->cmdline_size;
	h.pref_address = s->pref_address;
	h.init_size = s->init_size;
	memcpy(img + 0x1f1, &h, sizeof(h));
	for (size_t i = 0; i < s->kbytes; i++)
		img[setup + i] = kpattern(i);
	*len_out = len;
	return img;
}

static void test_bz_good(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *img = make_bz(&bz_default, &len);

	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.format, KERNEL_BZIMAGE);
	assert_int_equal(f->k.proto, BOOT_PROTO_LINUX64);
	assert_int_equal(f->k.entry, 0x100200);
	assert_int_equal(f->k.load_start, 0x100000);
	assert_int_equal(f->k.load_end, 0x100000 + 0x200000); /* init_size > kernel bytes */
	assert_int_equal(f->k.cmdline_max, 2048);
	assert_int_equal(f->k.initrd_addr_max, 0x7fffffff);
	assert_int_equal(f->k.setup_header_len, sizeof(struct setup_header));
	assert_memory_equal(f->k.setup_header, img + 0x1f1, sizeof(struct setup_header));
	for (size_t i = 0; i < bz_default.kbytes; i++)
		assert_int_equal(f->ram[0x100000 + i], kpattern(i));
	assert_int_equal(f->ram[0x100000 + bz_default.kbytes], POISON);

	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_LINUX64, &f->k, &f->err), 0);
	assert_int_equal(f->k.proto, BOOT_PROTO_LINUX64);
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.format, KERNEL_BZIMAGE);
	free(img);
}

static void test_bz_kernel_larger_than_init_size(void **state)
{
	struct fixture *f = *state;
	struct bz_spec s = bz_default;
	size_t len;
	uint8_t *img;

	s.kbytes = 0x300000;
	s.init_size = 0x1000;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.load_end, 0x400000);
	free(img);
}

static void test_bz_setup_sects(void **state)
{
	struct fixture *f = *state;
	struct bz_spec s = bz_default;
	size_t len;
	uint8_t *img;

	/* setup_sects 0 means 4: the kernel starts at 5 * 512. */
	s.setup_sects = 0;
	img = make_bz(&s, &len);
	assert_int_equal(len, 5 * 512 + s.kbytes);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->ram[0x100000], kpattern(0));
	assert_int_equal(f->ram[0x100000 + s.kbytes - 1], kpattern(s.kbytes - 1));
	free(img);

	s.setup_sects = 7;
	img = make_bz(&s, &len);
	assert_int_equal(len, 8 * 512 + s.kbytes);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->ram[0x100000], kpattern(0));
	assert_int_equal(f->ram[0x100000 + s.kbytes - 1], kpattern(s.kbytes - 1));
	free(img);
}

static void test_bz_header_length(void **state)
{
	struct fixture *f = *state;
	struct bz_spec s = bz_default;
	size_t len;
	uint8_t *img;

	/* A 2.12-era header that ends after handover_offset (0x268). */
	s.version = 0x020c;
	s.hdr_end_byte = 0x268 - 0x202;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.setup_header_len, 0x268 - 0x1f1);
	free(img);

	/* A jump that ends the header before init_size. */
	s.hdr_end_byte = 0x250 - 0x202;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "too short");
	free(img);

	/* A long jump is capped at sizeof(struct setup_header). */
	s.hdr_end_byte = 0xff;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.setup_header_len, sizeof(struct setup_header));
	free(img);
}

/* Where the kernel decompresses: aligned load address or pref_address, whichever is higher. */
static void test_bz_runtime_address(void **state)
{
	struct fixture *f = *state;
	struct bz_spec s = bz_default;
	size_t len;
	uint8_t *img;

	s.relocatable = 1;
	s.kernel_alignment = 0x200000;
	s.init_size = 0x100000;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.load_end, 0x200000 + 0x100000);
	free(img);

	s.pref_address = 0x400000;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.load_end, 0x400000 + 0x100000);
	free(img);

	/* Not relocatable: runs at pref_address. */
	s.relocatable = 0;
	s.pref_address = 0x600000;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.load_end, 0x700000);
	free(img);

	/* pref_address + init_size past the end of RAM. */
	s.pref_address = 0x1000000;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "init_size");
	free(img);

	/* A pref_address that wraps. */
	s.pref_address = UINT64_MAX - 0x10;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "pref_address");
	free(img);

	/* Relocatable with a bad alignment. */
	s = bz_default;
	s.relocatable = 1;
	s.kernel_alignment = 0x300000;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "power of two");
	free(img);
}

static void test_bz_cmdline_max(void **state)
{
	struct fixture *f = *state;
	struct bz_spec s = bz_default;
	size_t len;
	uint8_t *img;

	s.cmdline_size = 255;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.cmdline_max, 256);
	free(img);

	s.cmdline_size = UINT32_MAX;
	img = make_bz(&s, &len);
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), 0);
	assert_int_equal(f->k.cmdline_max, UINT32_MAX);
	free(img);
}

static void bz_reject(struct fixture *f, const struct bz_spec *s, size_t trim,
                      enum boot_protocol want, const char *needle)
{
	size_t len;
	uint8_t *img = make_bz(s, &len);

	memset(f->ram, POISON, RAM_SIZE);
	memset(&f->err, 0, sizeof(f->err));
	assert_int_equal(bzimage_load(&f->gm, img, len - trim, want, &f->k, &f->err), -1);
	expect_err(&f->err, needle);
	assert_true(all_bytes(f->ram + 0x100000, 0x1000, POISON));
	free(img);
}

static void test_bz_rejects(void **state)
{
	struct fixture *f = *state;
	struct bz_spec s;
	size_t len;
	uint8_t *img;

	/* Truncated: the file ends inside the setup header. */
	s = bz_default;
	s.kbytes = 0;
	bz_reject(f, &s, 5 * 512 - 0x260, BOOT_PROTO_AUTO, "truncated");
	bz_reject(f, &s, 5 * 512 - 0x100, BOOT_PROTO_AUTO, "truncated");

	s = bz_default;
	bz_reject(f, &s, 0, BOOT_PROTO_PVH, "bzImage has no PVH entry; use the ELF vmlinux");
	s.version = 0x0205;
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "boot protocol 2.05 too old, need 2.06");
	s.version = 0x0100;
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "too old");
	s = bz_default;
	s.loadflags = 0;
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "LOADED_HIGH");
	s = bz_default;
	s.version = 0x020b;
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "no 64-bit entry point");
	s = bz_default;
	s.xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G;
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "no 64-bit entry point");
	s = bz_default;
	s.init_size = 16 * 1024 * 1024;
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "needs 17 MiB");
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "init_size");
	s = bz_default;
	s.kbytes = RAM_SIZE; /* the kernel bytes alone do not fit */
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "but low RAM ends at 0x800000");
	s = bz_default;
	s.kbytes = 0;
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "empty");
	s.kbytes = 0x200;
	bz_reject(f, &s, 0, BOOT_PROTO_AUTO, "too small");
	s = bz_default;
	s.setup_sects = 200; /* setup sectors run past the end of the file */
	img = make_bz(&s, &len);
	memset(&f->err, 0, sizeof(f->err));
	assert_int_equal(bzimage_load(&f->gm, img, 0x1000, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "empty");
	free(img);

	/* Bad magic: boot_flag, then "HdrS". */
	img = make_bz(&bz_default, &len);
	img[0x1fe] = 0;
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "bad magic");
	img[0x1fe] = 0x55;
	img[0x202] = 'X';
	assert_int_equal(bzimage_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "bad magic");
	/* Through the dispatcher: neither ELF nor bzImage. */
	assert_int_equal(kernel_load(&f->gm, img, len, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "not an ELF, bzImage or Multiboot kernel (bad magic)");
	free(img);
}

static void test_kernel_load_dispatch_short(void **state)
{
	struct fixture *f = *state;
	const uint8_t tiny[3] = {0x7f, 'E', 'L'};

	assert_int_equal(kernel_load(&f->gm, tiny, sizeof(tiny), BOOT_PROTO_AUTO, &f->k, &f->err),
	                 -1);
	expect_err(&f->err, "not an ELF, bzImage or Multiboot kernel (bad magic)");
	assert_int_equal(kernel_load(&f->gm, tiny, 0, BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "bad magic");
	/* ELF magic but truncated: the ELF loader reports it. */
	const uint8_t elfish[8] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
	assert_int_equal(
	    kernel_load(&f->gm, elfish, sizeof(elfish), BOOT_PROTO_AUTO, &f->k, &f->err), -1);
	expect_err(&f->err, "truncated");
}

/* ---- file_map ---- */

static void test_file_map(void **state)
{
	struct fixture *f = *state;
	char path[] = "/tmp/hearth-test-XXXXXX";
	const uint8_t *buf;
	size_t len;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	/* Empty file: success with length 0 and a non-NULL pointer. */
	assert_int_equal(file_map(path, &buf, &len, &f->err), 0);
	assert_int_equal(len, 0);
	assert_non_null(buf);
	file_unmap(buf, len);

	assert_int_equal(write(fd, "hello", 5), 5);
	assert_int_equal(file_map(path, &buf, &len, &f->err), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "hello", 5);
	file_unmap(buf, len);
	close(fd);
	unlink(path);

	assert_int_equal(file_map(path, &buf, &len, &f->err), -1);
	expect_err(&f->err, path);
	expect_err(&f->err, "No such file or directory");
	assert_null(buf);

	assert_int_equal(file_map("/tmp", &buf, &len, &f->err), -1);
	expect_err(&f->err, "/tmp: not a regular file");
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    FX(test_elf_linux64),
	    FX(test_elf_pvh_choice),
	    FX(test_elf_want_pvh_without_note),
	    FX(test_elf_pvh_note_64bit_desc_align8),
	    FX(test_elf_two_segments),
	    FX(test_elf_gap_and_high),
	    FX(test_elf_rejects),
	    FX(test_elf_validates_before_writing),
	    FX(test_elf_bad_want),
	    FX(test_bz_good),
	    FX(test_bz_kernel_larger_than_init_size),
	    FX(test_bz_setup_sects),
	    FX(test_bz_header_length),
	    FX(test_bz_runtime_address),
	    FX(test_bz_cmdline_max),
	    FX(test_bz_rejects),
	    FX(test_kernel_load_dispatch_short),
	    FX(test_file_map),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
