/*
 * smpguest's real-mode trampoline (smpguest_trampoline.S): where it is copied and the layout
 * of the data the BSP leaves for it. Shared by the assembly and smpguest.c.
 *
 * The trampoline page is TRAMP_BASE: RAM in hearth's PVH memory map ([0, 0x9fc00) is RAM) and
 * used by nothing else (vmm/layout.h: the boot page tables end at 0xc000, the command line
 * starts at 0x20000). The SIPI vector is TRAMP_BASE >> 12, so an AP starts in real mode at
 * CS:IP = 0x1000:0000. The code sits at the start of the page, the data at TRAMP_DATA.
 */
#ifndef HEARTH_GUEST_SMPGUEST_H
#define HEARTH_GUEST_SMPGUEST_H

#define TRAMP_BASE 0x10000
#define TRAMP_DATA 0x200 /* offset of struct tramp_data in the page (the code must end before) */

/* Offsets in struct tramp_data. */
#define TD_GDT   0x00 /* 4 descriptors: null, SEL_CODE64, SEL_DATA, SEL_CODE32 */
#define TD_GDTR  0x26 /* lgdt operand: 16-bit limit, 32-bit base */
#define TD_CR3   0x2c /* the BSP's CR3 (below 4 GiB) */
#define TD_STACK 0x30 /* this AP's initial RSP */
#define TD_ENTRY 0x38 /* the C function to call: ap_main(cpu index) */
#define TD_INDEX 0x40 /* this AP's cpu index (the argument) */

/* Selectors in the trampoline's GDT. 0x08 and 0x10 match the boot GDT (rt/entry.S), so the
 * APs keep this GDT and the IDT's gates (selector 0x08) work on them. */
#define SEL_CODE64 0x08
#define SEL_DATA   0x10
#define SEL_CODE32 0x18

#ifndef __ASSEMBLER__
#include <stdint.h>

struct tramp_data {
	uint64_t gdt[4];
	uint16_t pad[3];
	uint16_t gdt_limit;
	uint32_t gdt_base;
	uint32_t cr3;
	uint64_t stack;
	uint64_t entry;
	uint64_t index;
};

_Static_assert(__builtin_offsetof(struct tramp_data, gdt) == TD_GDT, "TD_GDT");
_Static_assert(__builtin_offsetof(struct tramp_data, gdt_limit) == TD_GDTR, "TD_GDTR");
_Static_assert(__builtin_offsetof(struct tramp_data, cr3) == TD_CR3, "TD_CR3");
_Static_assert(__builtin_offsetof(struct tramp_data, stack) == TD_STACK, "TD_STACK");
_Static_assert(__builtin_offsetof(struct tramp_data, entry) == TD_ENTRY, "TD_ENTRY");
_Static_assert(__builtin_offsetof(struct tramp_data, index) == TD_INDEX, "TD_INDEX");

/* The two trampolines (position-dependent: they run only at TRAMP_BASE). */
extern const char tramp_classic[], tramp_classic_end[];
extern const char tramp_direct[], tramp_direct_end[];
#endif

#endif
