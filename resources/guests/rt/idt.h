/*
 * A 64-bit IDT for guests that handle their own exceptions and interrupts (rt/idt.c,
 * rt/idt_entry.S). Every vector has an assembly stub that saves the general registers and
 * calls a C handler with the frame below; the handler returns and the stub does iretq.
 * Vectors without a handler print what happened and end the VM with RT_EXIT_TRAP.
 */
#ifndef HEARTH_GUEST_IDT_H
#define HEARTH_GUEST_IDT_H

#include <stdint.h>

#define RT_EXIT_TRAP 4

#define VEC_PF 14

/* The stack at the C handler: registers the stub pushed, then the vector and error code
 * (0 for vectors without one), then what the CPU pushed. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

typedef void (*trap_handler)(struct trap_frame *f);

/* Fill all 256 gates (interrupt gates, DPL 0, code selector 0x08) and load the IDT. */
void idt_init(void);
/* Load the IDT idt_init built (for the other CPUs, which share it). */
void idt_load(void);
/* Route `vector` to `fn`; `dpl` 3 lets CPL3 code reach it with `int $vector`. */
void idt_set(unsigned vector, trap_handler fn, unsigned dpl);

#endif
