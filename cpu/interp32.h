/*
 * An interpreter for the guest's code before long mode, for engines whose host cannot run
 * it: the 32-bit entry code (PVH: 32-bit protected mode, paging off, flat segments), and an
 * application processor's startup code from its SIPI (16-bit real mode, then 16-bit code
 * with CR0.PE set until a far jump, then 32-bit code, or straight to 64-bit code). It runs
 * the guest on its virtual CPU (cpu/guest_cpu.h) until the guest has enabled long mode and
 * jumped to a 64-bit code segment, from where the engine runs it natively.
 *
 * What it covers is what such code does: moves (segment registers included), the ALU with
 * its flags, shifts and rotates, multiplication and division, bit tests, stack, near and
 * far branches, string instructions with rep, cpuid, and through the CPU core (reused, not
 * duplicated) control registers, MSRs, descriptor tables and port I/O; 16- and 32-bit
 * operand and address sizes (0x66 and 0x67 flip them) with 16-bit ModRM addressing, and
 * fninit and fnclex, as no-ops: it runs no x87 instruction, so the state is the one the
 * thread started with (an AP that ran natively before its INIT keeps what it had there,
 * where hardware's fninit would reset it). It refuses what such code
 * does not need (the rest of x87, SSE, segment limits other than 4 GiB in protected mode,
 * task switches, single-stepping, virtual-8086 mode, string port I/O in 16-bit code) with
 * INTERP_UNSUPPORTED.
 *
 * Segments are as the CPU caches them (guest_cpu.hidden): the bases of CS, DS, ES, SS (FS
 * and GS: fs_base, gs_base) and the sizes of CS and SS, loaded by segment loads and far
 * transfers only. In real mode a load makes the base the selector times 16 and leaves the
 * rest; so after `mov %cr0` sets PE the code goes on with the real-mode CS (16-bit, its base)
 * until a far jump loads one from the GDT: 32-bit code (D), 64-bit code (L, with EFER.LMA:
 * INTERP_LONG_MODE) or 16-bit code (neither), any base. Limits are not checked (real mode's
 * 64 KiB included); IP wraps at 16 bits only on relative branches and returns.
 *
 * Exceptions are delivered where cpu_can_deliver says hearth can: not in real mode (the
 * interrupt vector table is not emulated) nor on a 16-bit stack or one with a base outside
 * long mode; there a fault, int n, or an exception the CPU core raises stops the VM
 * (INTERP_UNSUPPORTED, CPU_STOP_REFUSED) with what and where.
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
 * with cpu_reflect between two calls, when IF is set and cpu_can_deliver says yes (an AP in
 * real mode with IF set cannot take one: cpu_reflect would stop the VM). Nor accessed bits
 * in descriptors, segment limits, or DPL checks (an engine may present deprivileged
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
	char why[192];  /* INTERP_UNSUPPORTED / INTERP_FAULT: what, where (EIP, CS:IP), the bytes */
};

/* Run the code at CS:EIP (c->r.rip, an offset in CS) for at most `max_steps` instructions.
 * `out` may be NULL. The caller calls it while the guest runs code before long mode, from
 * the entry point (or the SIPI state) until it returns INTERP_LONG_MODE. The mode is CR0.PE
 * and CS's hidden part: c->hidden zeroed is flat 32-bit code, as PVH enters it. CS is looked
 * up again only when a far transfer or a delivery loads it (as the CPU caches it: after lgdt
 * the selector may name something else). */
enum interp_result interp32_run(struct guest_cpu *c, uint64_t max_steps, struct interp32_exit *out);

/* Put `c` in the state an application processor starts in after INIT and a SIPI with
 * `vector` (SDM vol. 3, 9.1.1 and 9.4.4): real mode, CS = vector << 8 with base vector << 12,
 * IP = 0, other segments 0, 16-bit code and stack, GDTR and IDTR base 0 limit 0xffff,
 * CR0 = CD | NW | ET, CR3 = CR4 = EFER = 0, RFLAGS = 2, general registers 0 but EDX (the
 * processor signature: CPUID leaf 1's EAX, through ops->cpuid: gm, ops and ctx must be set
 * and are kept, as are trap_port, virtual_segments and MSRs other than EFER). Paging is
 * off: the engine makes its translate the identity (ops->paging_changed is not called).
 * Then interp32_run from there. */
void interp_sipi_state(struct guest_cpu *c, uint8_t vector);

#endif
