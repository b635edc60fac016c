/*
 * ELF kernel loader: ELF64 x86_64 (e.g. an uncompressed vmlinux), and ELF32 i386 for
 * Multiboot kernels.
 *
 * Every field read from the image is checked before use: the ELF and program headers must be
 * inside the file, every PT_LOAD must be inside the file and inside guest RAM at or above
 * LAYOUT_KERNEL_START, and PT_NOTE segments are walked with bounds checks. Segments are
 * loaded by physical address (p_paddr). A "Xen" note of type XEN_ELFNOTE_PHYS32_ENTRY gives
 * the PVH entry point; a Multiboot header makes e_entry the 32-bit Multiboot entry (see
 * pick_proto); otherwise e_entry is the Linux 64-bit entry.
 */
#include "boot.h"
#include "vmm/layout.h"
#include "multiboot.h"
#include "pvh.h"

#include <elf.h>
#include <inttypes.h>
#include <string.h>

/* True when [off, off + size) lies inside a buffer of `len` bytes (no wrap-around). */
static bool in_file(uint64_t off, uint64_t size, size_t len)
{
	uint64_t end;

	return !__builtin_add_overflow(off, size, &end) && end <= len;
}

static uint64_t align_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

/*
 * Walk the notes of one PT_NOTE segment. Notes are 4-byte aligned (8-byte when the segment
 * says p_align 8, as the gABI allows for 64-bit objects). The first "Xen" PHYS32_ENTRY note
 * sets *found and *entry. Malformed notes are an error.
 */
static int scan_notes(const uint8_t *img, size_t len, const Elf64_Phdr *ph, unsigned idx,
                      bool *found, uint32_t *entry, bool *linux_note, struct error *err)
{
	uint64_t align = ph->p_align == 8 ? 8 : 4;
	uint64_t size = ph->p_filesz, off = 0;
	const uint8_t *seg;

	if (!in_file(ph->p_offset, ph->p_filesz, len))
		return err_set(err,
		               "ELF PT_NOTE segment %u (file offset 0x%" PRIx64 ", 0x%" PRIx64
		               " bytes) is beyond the end of the file (%zu bytes)",
		               idx, ph->p_offset, ph->p_filesz, len);
	seg = img + ph->p_offset;

	/* Fewer than sizeof(Elf64_Nhdr) trailing bytes can only be padding. */
	while (size - off >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		uint64_t name_off, desc_off, desc_end, next;

		memcpy(&nh, seg + off, sizeof(nh));
		name_off = off + sizeof(nh);
		/* n_namesz and n_descsz are 32-bit, so these 64-bit sums cannot wrap. */
		desc_off = name_off + align_up(nh.n_namesz, align);
		desc_end = desc_off + nh.n_descsz;
		next = desc_off + align_up(nh.n_descsz, align);
		if (desc_end > size) /* desc_off >= name_off + n_namesz, so this covers the name */
			return err_set(err,
			               "ELF PT_NOTE segment %u: note at offset 0x%" PRIx64
			               " has bad sizes (namesz %" PRIu32 ", descsz %" PRIu32
			               ") for a segment of 0x%" PRIx64 " bytes",
			               idx, off, nh.n_namesz, nh.n_descsz, size);
		/* Linux kernels carry notes owned by "Linux" (the vmlinux build notes). */
		if (nh.n_namesz == 6 && memcmp(seg + name_off, "Linux", 6) == 0)
			*linux_note = true;
		if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
		    memcmp(seg + name_off, "Xen", 4) == 0) {
			if (nh.n_descsz != 4 && nh.n_descsz != 8)
				return err_set(
				    err,
				    "ELF PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) has descsz "
				    "%" PRIu32 ", expected 4 or 8",
				    nh.n_descsz);
			if (!*found) {
				uint32_t v;

				memcpy(&v, seg + desc_off, sizeof(v)); /* low 32 bits */
				*entry = v;
				*found = true;
			}
		}
		if (next >= size)
			break;
		off = next;
	}
	return 0;
}

static int ram_error(const struct guest_memory *gm, struct error *err, const char *what,
                     unsigned idx, uint64_t start, uint64_t end)
{
	if (gm->high_size)
		return err_set(err,
		               "ELF %s %u at [0x%" PRIx64 ", 0x%" PRIx64
		               ") is not in guest RAM ([0, 0x%" PRIx64 ") and [0x%llx, 0x%" PRIx64
		               "))",
		               what, idx, start, end, gm->low_size, LAYOUT_HIGH_RAM_START,
		               (uint64_t)(LAYOUT_HIGH_RAM_START + gm->high_size));
	return err_set(err,
	               "ELF %s %u at [0x%" PRIx64 ", 0x%" PRIx64
	               ") is not in guest RAM ([0, 0x%" PRIx64 "))",
	               what, idx, start, end, gm->low_size);
}

/* Validate one PT_LOAD; *loads is incremented when it has bytes to load. */
static int check_load(const struct guest_memory *gm, size_t len, const Elf64_Phdr *ph, unsigned idx,
                      int *loads, struct error *err)
{
	uint64_t end;

	if (!in_file(ph->p_offset, ph->p_filesz, len))
		return err_set(err,
		               "ELF segment %u (file offset 0x%" PRIx64 ", 0x%" PRIx64
		               " bytes) is beyond the end of the file (%zu bytes)",
		               idx, ph->p_offset, ph->p_filesz, len);
	if (ph->p_filesz > ph->p_memsz)
		return err_set(
		    err, "ELF segment %u: p_filesz 0x%" PRIx64 " is larger than p_memsz 0x%" PRIx64,
		    idx, ph->p_filesz, ph->p_memsz);
	if (ph->p_memsz == 0)
		return 0;
	if (__builtin_add_overflow(ph->p_paddr, ph->p_memsz, &end))
		return err_set(
		    err, "ELF segment %u: p_paddr 0x%" PRIx64 " + p_memsz 0x%" PRIx64 " overflows",
		    idx, ph->p_paddr, ph->p_memsz);
	if (ph->p_paddr < LAYOUT_KERNEL_START)
		return err_set(err,
		               "ELF segment %u at [0x%" PRIx64 ", 0x%" PRIx64
		               ") overlaps the boot structures below 0x%llx (1 MiB)",
		               idx, ph->p_paddr, end, LAYOUT_KERNEL_START);
	if (!gm_range_ok(gm, ph->p_paddr, ph->p_memsz))
		return ram_error(gm, err, "segment", idx, ph->p_paddr, end);
	(*loads)++;
	return 0;
}

/* The ELF header fields the loader uses, from an ELF64 or ELF32 header. */
struct elf_info {
	bool is32;
	uint16_t machine, type, phnum, phentsize;
	uint64_t entry, phoff;
};

static int read_ehdr(const uint8_t *img, size_t len, struct elf_info *e, struct error *err)
{
	if (len < SELFMAG || memcmp(img, ELFMAG, SELFMAG) != 0)
		return err_set(err, "not an ELF file (bad magic)");
	if (len < EI_NIDENT)
		return err_set(err, "ELF kernel truncated: %zu bytes", len);
	if (img[EI_DATA] != ELFDATA2LSB)
		return err_set(err, "ELF data encoding %u is not little-endian (ELFDATA2LSB)",
		               img[EI_DATA]);
	if (img[EI_CLASS] == ELFCLASS64) {
		Elf64_Ehdr eh;

		if (len < sizeof(eh))
			return err_set(err,
			               "ELF kernel truncated: %zu bytes, the ELF header needs %zu",
			               len, sizeof(eh));
		memcpy(&eh, img, sizeof(eh));
		*e = (struct elf_info){false,          eh.e_machine, eh.e_type, eh.e_phnum,
		                       eh.e_phentsize, eh.e_entry,   eh.e_phoff};
	} else if (img[EI_CLASS] == ELFCLASS32) {
		Elf32_Ehdr eh;

		if (len < sizeof(eh))
			return err_set(err,
			               "ELF kernel truncated: %zu bytes, the ELF header needs %zu",
			               len, sizeof(eh));
		memcpy(&eh, img, sizeof(eh));
		*e = (struct elf_info){true,           eh.e_machine, eh.e_type, eh.e_phnum,
		                       eh.e_phentsize, eh.e_entry,   eh.e_phoff};
	} else {
		return err_set(err, "ELF class %u is neither ELFCLASS64 nor ELFCLASS32",
		               img[EI_CLASS]);
	}
	if (e->machine != (e->is32 ? EM_386 : EM_X86_64))
		return err_set(err, "ELF machine %u is not %s", e->machine,
		               e->is32 ? "i386 (EM_386) in a 32-bit ELF" : "x86_64 (EM_X86_64)");
	if (e->type != ET_EXEC)
		return err_set(err, "ELF type %u is not an executable (ET_EXEC)", e->type);
	if (e->phnum == 0)
		return err_set(err, "ELF has no program headers (no PT_LOAD segment)");
	if (e->phentsize != (e->is32 ? sizeof(Elf32_Phdr) : sizeof(Elf64_Phdr)))
		return err_set(err, "ELF e_phentsize is %u, expected %zu", e->phentsize,
		               e->is32 ? sizeof(Elf32_Phdr) : sizeof(Elf64_Phdr));
	/* 16-bit * 16-bit: cannot overflow */
	if (!in_file(e->phoff, (uint64_t)e->phnum * e->phentsize, len))
		return err_set(err,
		               "ELF program headers (offset 0x%" PRIx64 ", %u x %u bytes) are "
		               "beyond the end of the file (%zu bytes)",
		               e->phoff, e->phnum, e->phentsize, len);
	return 0;
}

/* Program header i, widened to the ELF64 layout. */
static void read_phdr(const uint8_t *img, const struct elf_info *e, unsigned i, Elf64_Phdr *ph)
{
	const uint8_t *at = img + e->phoff + (uint64_t)i * e->phentsize;

	if (!e->is32) {
		memcpy(ph, at, sizeof(*ph));
		return;
	}
	Elf32_Phdr p;

	memcpy(&p, at, sizeof(p));
	*ph = (Elf64_Phdr){.p_type = p.p_type,
	                   .p_flags = p.p_flags,
	                   .p_offset = p.p_offset,
	                   .p_vaddr = p.p_vaddr,
	                   .p_paddr = p.p_paddr,
	                   .p_filesz = p.p_filesz,
	                   .p_memsz = p.p_memsz,
	                   .p_align = p.p_align};
}

/*
 * Which entry: asked for, or (auto) the PVH note, else a Multiboot header (unless the ELF is
 * Linux's, whose notes say so), else the Linux 64-bit entry, as Firecracker boots an ELF. A
 * Multiboot kernel's e_entry may be a C function (Solo5's, Unikraft's): its header's
 * entry_addr, or else e_entry, is where a Multiboot loader starts it.
 */
static int pick_proto(enum boot_protocol want, const struct elf_info *e, bool have_pvh,
                      bool linux_note, bool have_mb, enum boot_protocol *proto, struct error *err)
{
	switch (want) {
	case BOOT_PROTO_PVH:
		if (!have_pvh)
			return err_set(err, "ELF kernel has no PVH entry note "
			                    "(XEN_ELFNOTE_PHYS32_ENTRY)");
		break;
	case BOOT_PROTO_MULTIBOOT:
		if (!have_mb)
			return err_set(err,
			               "the kernel has no Multiboot header (magic 0x1badb002 in "
			               "its first 8 KiB)");
		break;
	case BOOT_PROTO_LINUX64:
		if (e->is32)
			return err_set(err, "a 32-bit ELF has no Linux 64-bit entry");
		break;
	default:
		if (have_pvh)
			want = BOOT_PROTO_PVH;
		else if (have_mb && (e->is32 || !linux_note))
			want = BOOT_PROTO_MULTIBOOT;
		else if (e->is32)
			return err_set(err,
			               "a 32-bit ELF without a Multiboot header or PVH note: "
			               "hearth boots 64-bit ELF kernels (Linux 64-bit entry or "
			               "PVH note), Multiboot kernels and bzImages");
		else
			want = BOOT_PROTO_LINUX64;
	}
	*proto = want;
	return 0;
}

/* A Multiboot ELF's entry: e_entry is a virtual address, started at the physical address the
 * segment holding it loads at (what GRUB and QEMU do). */
static int multiboot_entry(const uint8_t *img, const struct elf_info *e, uint64_t *entry,
                           struct error *err)
{
	Elf64_Phdr ph;

	for (unsigned i = 0; i < e->phnum; i++) {
		read_phdr(img, e, i, &ph);
		if (ph.p_type == PT_LOAD && e->entry >= ph.p_vaddr &&
		    e->entry - ph.p_vaddr < ph.p_memsz) {
			*entry = e->entry - ph.p_vaddr + ph.p_paddr;
			return 0;
		}
	}
	return err_set(err, "ELF Multiboot entry point 0x%" PRIx64 " is in no PT_LOAD segment",
	               e->entry);
}

int elf_load(const struct guest_memory *gm, const uint8_t *img, size_t len, enum boot_protocol want,
             struct kernel_image *out, struct error *err)
{
	uint64_t lo = UINT64_MAX, hi = 0, entry = 0;
	enum boot_protocol proto = BOOT_PROTO_AUTO;
	struct multiboot_header mb;
	uint32_t pvh_entry = 0;
	bool have_pvh = false, linux_note = false;
	struct elf_info e = {0};
	Elf64_Phdr ph;
	long mb_off;
	int loads = 0;

	memset(out, 0, sizeof(*out));
	if (want != BOOT_PROTO_AUTO && want != BOOT_PROTO_LINUX64 && want != BOOT_PROTO_PVH &&
	    want != BOOT_PROTO_MULTIBOOT)
		return err_set(err, "unknown boot protocol %d", (int)want);
	if (read_ehdr(img, len, &e, err))
		return -1;
	mb_off = multiboot_find(img, len, &mb);

	/* The notes first: they and the Multiboot header choose the entry. */
	for (unsigned i = 0; i < e.phnum && !e.is32; i++) {
		read_phdr(img, &e, i, &ph);
		if (ph.p_type == PT_NOTE &&
		    scan_notes(img, len, &ph, i, &have_pvh, &pvh_entry, &linux_note, err))
			return -1;
	}
	if (pick_proto(want, &e, have_pvh, linux_note, mb_off >= 0, &proto, err) ||
	    (proto == BOOT_PROTO_MULTIBOOT && multiboot_check(&mb, out, err)))
		return -1;
	/* A Multiboot header with load addresses wins over the program headers, which may then
	 * be anything (GRUB's and QEMU's rule): they are not looked at. */
	if (proto == BOOT_PROTO_MULTIBOOT && (mb.flags & MULTIBOOT_AOUT_KLUDGE)) {
		char warning[sizeof(out->warning)];

		memcpy(warning, out->warning, sizeof(warning));
		if (multiboot_load_aout(gm, img, len, &mb, (size_t)mb_off, out, err))
			return -1;
		out->format = KERNEL_ELF;
		out->linux_kernel = linux_note;
		memcpy(out->warning, warning, sizeof(warning));
		return 0;
	}

	/* Pass 1: validate every segment; nothing is written yet. */
	for (unsigned i = 0; i < e.phnum; i++) {
		read_phdr(img, &e, i, &ph);
		if (ph.p_type != PT_LOAD)
			continue;
		if (check_load(gm, len, &ph, i, &loads, err))
			return -1;
		if (ph.p_memsz == 0)
			continue;
		if (ph.p_paddr < lo)
			lo = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > hi)
			hi = ph.p_paddr + ph.p_memsz;
	}
	if (loads == 0)
		return err_set(err, "ELF has no PT_LOAD segment with bytes to load");
	if (proto == BOOT_PROTO_PVH)
		entry = pvh_entry;
	else if (proto == BOOT_PROTO_MULTIBOOT) {
		if (multiboot_entry(img, &e, &entry, err))
			return -1;
	} else
		entry = e.entry;
	if (!gm_range_ok(gm, entry, 1))
		return err_set(err, "ELF %s entry point 0x%" PRIx64 " is not in guest RAM",
		               proto == BOOT_PROTO_PVH         ? "PVH"
		               : proto == BOOT_PROTO_MULTIBOOT ? "Multiboot"
		                                               : "64-bit",
		               entry);
	if (proto == BOOT_PROTO_MULTIBOOT && entry > UINT32_MAX)
		return err_set(err, "ELF Multiboot entry point 0x%" PRIx64 " is above 4 GiB",
		               entry);

	/* Pass 2: copy p_filesz bytes and zero the rest up to p_memsz. */
	for (unsigned i = 0; i < e.phnum; i++) {
		read_phdr(img, &e, i, &ph);
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (gm_load(gm, ph.p_paddr, img + ph.p_offset, ph.p_filesz) ||
		    gm_zero(gm, ph.p_paddr + ph.p_filesz, ph.p_memsz - ph.p_filesz))
			return ram_error(gm, err, "segment", i, ph.p_paddr,
			                 ph.p_paddr + ph.p_memsz);
	}

	out->format = KERNEL_ELF;
	out->proto = proto;
	out->entry = entry;
	out->load_start = lo;
	out->load_end = hi;
	out->linux_kernel = linux_note;
	out->cmdline_max = BOOT_DEFAULT_CMDLINE_MAX;
	out->initrd_addr_max = 0;
	out->setup_header_len = 0;
	return 0;
}
