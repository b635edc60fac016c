/*
 * mbguest: a Multiboot (v1) kernel. It prints what the boot loader handed it and exits with
 * status 0 when that is a well-formed Multiboot hand-over (3 otherwise):
 *   multiboot: magic 0x2badb002 flags 0x<flags> loader "<name>"
 *   multiboot: mem_lower <KiB> KiB mem_upper <KiB> KiB
 *   multiboot: bda com1 0x<port> equipment 0x<word> base <KiB> KiB ebda 0x<segment>
 *     (the BIOS data area's words that PC firmware fills and kernels such as Xen read)
 *   multiboot: mmap [<start>, <end>) type <t>          (one line per entry)
 *   multiboot: cmdline "<command line>"
 *   multiboot: module [<start>, <end>) "<string>" begins "<first bytes>"   (one per module)
 *   multiboot: done
 */
#include "rt.h"

#define MB_BOOTLOADER_MAGIC 0x2badb002u
#define MB_INFO_MEMORY      (1u << 0)
#define MB_INFO_CMDLINE     (1u << 2)
#define MB_INFO_MODS        (1u << 3)
#define MB_INFO_MEM_MAP     (1u << 6)
#define MB_INFO_LOADER_NAME (1u << 9)

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
	uint32_t drives_length, drives_addr, config_table, boot_loader_name;
};

struct mb_mmap {
	uint32_t size;
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

struct mb_module {
	uint32_t start, end, string, reserved;
};

_Noreturn void mb_start(uint64_t magic, const struct mb_info *mi);

/* rt/start.c's PVH path is not used here. */
void guest_main(struct hvm_start_info *si)
{
	(void)si;
}

static void print_module(const struct mb_module *m)
{
	char first[9];
	uint32_t n = m->end > m->start ? m->end - m->start : 0;

	if (n > 8)
		n = 8;
	for (uint32_t i = 0; i < n; i++) {
		char c = ((const char *)(uintptr_t)m->start)[i];
		first[i] = c >= 0x20 && c < 0x7f ? c : '.';
	}
	first[n] = 0;
	con_printf("multiboot: module [0x%x, 0x%x) \"%s\" begins \"%s\"\n", m->start, m->end,
	           m->string ? (const char *)(uintptr_t)m->string : "", first);
}

/* A word of the BIOS data area (0x400 + off), read through a pointer the compiler cannot
 * see is near 0. */
static uint16_t bda_word(uintptr_t off)
{
	const volatile uint16_t *p;

	__asm__("" : "=r"(p) : "0"(0x400 + off));
	return *p;
}

_Noreturn void mb_start(uint64_t magic, const struct mb_info *mi)
{
	bool ok = magic == MB_BOOTLOADER_MAGIC && mi;

	con_printf("multiboot: magic 0x%lx flags 0x%x loader \"%s\"\n", (unsigned long)magic,
	           mi ? mi->flags : 0,
	           mi && (mi->flags & MB_INFO_LOADER_NAME) && mi->boot_loader_name
	               ? (const char *)(uintptr_t)mi->boot_loader_name
	               : "");
	if (!ok)
		guest_exit(RT_EXIT_BAD_BOOT);
	if (mi->flags & MB_INFO_MEMORY)
		con_printf("multiboot: mem_lower %u KiB mem_upper %u KiB\n", mi->mem_lower,
		           mi->mem_upper);
	else
		ok = false;
	con_printf("multiboot: bda com1 0x%x equipment 0x%x base %u KiB ebda 0x%x\n",
	           bda_word(0x00), bda_word(0x10), bda_word(0x13), bda_word(0x0e));
	if (mi->flags & MB_INFO_MEM_MAP) {
		uint64_t at = mi->mmap_addr, end = at + mi->mmap_length;

		while (at + 4 <= end) {
			const struct mb_mmap *e = (const struct mb_mmap *)(uintptr_t)at;

			con_printf("multiboot: mmap [0x%lx, 0x%lx) type %u\n",
			           (unsigned long)e->addr, (unsigned long)(e->addr + e->len),
			           e->type);
			at += (uint64_t)e->size + 4;
		}
	} else {
		ok = false; /* the header asked for memory information */
	}
	if (mi->flags & MB_INFO_CMDLINE)
		con_printf("multiboot: cmdline \"%s\"\n", (const char *)(uintptr_t)mi->cmdline);
	if (mi->flags & MB_INFO_MODS)
		for (uint32_t i = 0; i < mi->mods_count; i++)
			print_module((const struct mb_module *)(uintptr_t)mi->mods_addr + i);
	con_printf("multiboot: done\n");
	guest_exit(ok ? 0 : RT_EXIT_BAD_BOOT);
}
