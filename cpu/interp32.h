/*
 * An interpreter for the guest's 32-bit entry code (PVH: 32-bit protected mode, paging off,
 * flat segments), for engines whose host cannot run 32-bit code: it runs the guest on its
 * virtual CPU (cpu/guest_cpu.h) until the guest has enabled long mode and jumped to a 64-bit
 * code segment, from where the engine runs it natively.
 *
 * What it covers is what entry code does: moves (segment registers included), the ALU with
 * its flags, shifts and rotates, multiplication and division, bit tests, stack, near and
 * far branches, string instructions with rep, cpuid, and through the CPU core (reused, not
 * duplicated) control registers, MSRs, descriptor tables and port I/O. It refuses what
 * such code does not need (16-bit code and addressing, x87/SSE, non-flat segments, task
 * switches, single-stepping, virtual-8086 mode) with INTERP_UNSUPPORTED.
 *
 * Memory goes through ops->translate and guest RAM, as cpu_read / cpu_write do: the engine
 * makes translate the identity while CR0.PG is clear, and walks the guest's tables once it
 * is set (the code between `mov %eax, %cr0` and the far jump runs in compatibility mode).
 * An address the guest's tables do not map is a #PF; one that is not RAM (a device) refuses
 * the run: a device's registers are not for entry code. Stores go straight to guest RAM
 * (no ops->pte_stored: an engine that derives anything from the guest's tables rebuilds it
 * when it gets INTERP_LONG_MODE). Exceptions go through the guest's IDT (cpu_reflect).
 *
 * Not done here: interrupts. IF is the guest's; an engine that has one pending delivers it
 * with cpu_reflect between two calls, when IF is set. Nor accessed bits in descriptors,
 * segment limits (segments are flat), or DPL checks (an engine may present deprivileged
 * descriptors: a selector with RPL 3 is refused instead).
 */
#ifndef HEARTH_INTERP32_H
#define HEARTH_INTERP32_H

#include <stdint.h>

#include "guest_cpu.h"

enum interp_result {
	/* The guest is in long mode with a 64-bit CS (after a far jump, far call, far return,
	 * iret or an exception delivered through its 64-bit IDT): RIP, CS and the rest are set,
	 * the engine runs it natively from here. */
	INTERP_LONG_MODE,
	/* max_steps instructions were executed: call again (after a look at pause and stop). */
	INTERP_BUDGET,
	/* hlt: RIP is past it; wait for an interrupt, then call again. */
	INTERP_HALT,
	/* An instruction or a state the interpreter does not implement, or something the CPU
	 * core refuses: the VM cannot go on. ops->stop has been called (CPU_STOP_REFUSED). */
	INTERP_UNSUPPORTED,
	/* A fault that could not be delivered (no usable IDT): a triple fault, ops->stop has been
	 * called (CPU_STOP_TRIPLE_FAULT). */
	INTERP_FAULT,
};

struct interp32_exit {
	uint64_t steps; /* instructions executed (a chunk of a rep string counts as one) */
	char why[192];  /* INTERP_UNSUPPORTED / INTERP_FAULT: what, at which EIP, the bytes */
};

/* Run the 32-bit code at CS:EIP (c->r.rip) for at most `max_steps` instructions. `out` may
 * be NULL. The caller calls it while the guest runs 32-bit code, from the entry point until
 * it returns INTERP_LONG_MODE. CS is taken to be flat 32-bit code and looked up again only
 * when it changes (as the CPU caches it: after lgdt the selector may name something else). */
enum interp_result interp32_run(struct guest_cpu *c, uint64_t max_steps, struct interp32_exit *out);

#endif
