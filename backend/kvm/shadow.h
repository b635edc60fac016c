/*
 * Shadow mode: the guest runs deprivileged at CPL3; hearth keeps its privileged state and
 * shadow page tables. docs/SHADOW_MMU.md has the design. This header holds the monitor's
 * fixed layout, shared by the monitor builder, the shadow MMU and the engine.
 *
 * Address spaces:
 *   guest-virtual --g (guest page tables)--> guest-physical --f--> KVM-physical
 * f is the identity for guest RAM and device addresses. The monitor (stub code, IDT, GDT,
 * TSS, trap stacks, the shadow-page pool) lives at KVM-physical addresses from the
 * monitor's base (struct sh_monitor's gpa: sh_monitor_place), far above anything the guest's
 * memory map describes, and is mapped at the fixed virtual address SH_MON_VA (PML4 slot 510,
 * supervisor-only) in every shadow root.
 */
#ifndef HEARTH_SHADOW_H
#define HEARTH_SHADOW_H

#include <stdint.h>

/* The monitor's base: here where the host's guest-physical width allows (47 bits or more),
 * else just below the top of that width (sh_monitor_place). */
#define SH_MON_GPA_DEFAULT 0x7f0000000000ULL
#define SH_MON_VA          0xffffff0000000000ULL
#define SH_MON_PML4_SLOT   510
#define SH_MON_SIZE        (2ULL << 20)
#define SH_POOL_PAGES      8192          /* 32 MiB of shadow page tables, after the monitor */
#define SH_MON_SPAN        (64ULL << 20) /* what the monitor and its pool reserve */
#define SH_TRAP_PORT       0xea          /* the stubs' exit: out %al, $SH_TRAP_PORT */

/* Offsets inside the fixed monitor area. */
#define SH_OFF_VECTORS 0x0000 /* 256 entry stubs, 16 bytes each: the exit RIP names the vector */
#define SH_STUB_SIZE   16
#define SH_OFF_CODE    0x1000 /* the halt path */
#define SH_OFF_HALT    (SH_OFF_CODE + 0x10)
#define SH_OFF_IDT     0x2000
#define SH_OFF_GDT     0x3000  /* 64 KiB: the guest's descriptors mirrored, then ours */
#define SH_OFF_PDPT    0x13000 /* page tables that map the monitor at SH_MON_VA */
#define SH_OFF_PD      0x14000
#define SH_OFF_PT      0x15000
#define SH_OFF_VCPU    0x16000 /* per vCPU: TSS + I/O bitmap (3 pages), trap stack (1 page) */
#define SH_VCPU_STRIDE 0x4000
#define SH_MAX_VCPUS   32

/* The monitor's own descriptors sit at the top of the 8192-entry GDT. */
#define SH_GDT_ENTRIES   8192
#define SH_GUEST_GDT_MAX 8112 /* guest descriptors 0..8111 are mirrored */
#define SH_SEL_CS0       (8112 << 3)
#define SH_SEL_DS0       (8113 << 3)
#define SH_SEL_DS3       ((8114 << 3) | 3) /* flat data, DPL3: SS when the guest's is null */
#define SH_SEL_TSS(k)    ((8120 + 2 * (k)) << 3)

/* Trap frame: what the CPU pushed on the trap stack (TSS.RSP0) entering a stub, from RSP at
 * the exit: [error code,] RIP, CS, RFLAGS, RSP, SS. The stubs push nothing. */
#define SH_FRAME_WORDS 6

static inline uint64_t sh_vcpu_area(unsigned k)
{
	return SH_OFF_VCPU + (uint64_t)k * SH_VCPU_STRIDE;
}

static inline uint64_t sh_stack_top(unsigned k) /* offset of the trap stack's top */
{
	return sh_vcpu_area(k) + SH_VCPU_STRIDE;
}

#endif
