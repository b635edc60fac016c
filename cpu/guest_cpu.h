/*
 * The virtual x86 CPU of a deprivileged guest: its kernel runs at CPL3 (under KVM's shadow
 * engine, or as a host process), so what it does at ring 0 faults and is emulated here.
 * This is the CPU as the guest believes it to be: control registers, EFER, descriptor-table
 * registers, its own CS/SS, the interrupt flag (in RFLAGS), segment bases, the syscall MSRs.
 *
 * Everything works on hearth's own structs. What depends on how the guest runs comes
 * through `struct guest_cpu_ops`, which the engine provides: the address translation of
 * its MMU, the descriptor the CPU really uses for a selector, MSRs the CPU core does not
 * keep, port I/O, and the notices "paging changed" and "a page-table entry was stored".
 * Unit tests drive it with no backend at all (tests/unit/test_guest_cpu.c).
 */
#ifndef HEARTH_GUEST_CPU_H
#define HEARTH_GUEST_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decode.h"
#include "vmm/guest_memory.h"

/* General registers in ModRM order, then RIP and RFLAGS. */
enum {
	R_AX,
	R_CX,
	R_DX,
	R_BX,
	R_SP,
	R_BP,
	R_SI,
	R_DI,
	R_R8,
	R_R9,
	R_R10,
	R_R11,
	R_R12,
	R_R13,
	R_R14,
	R_R15,
};

struct x86_regs {
	uint64_t gpr[16];
	uint64_t rip, rflags;
};

struct guest_cpu;

/* How a guest CPU stops the VM: a triple fault, or something hearth refuses to run. */
enum cpu_stop { CPU_STOP_TRIPLE_FAULT, CPU_STOP_REFUSED };

struct guest_cpu_ops {
	/* Guest-virtual -> guest-physical for an access (the guest's own page tables, through
	 * the engine's MMU; no side effects). False when the guest does not map it. */
	bool (*translate)(void *ctx, uint64_t va, bool write, uint64_t *gpa);
	/* The descriptor the CPU uses for `sel` (8 bytes; 0 when none). */
	uint64_t (*descriptor)(void *ctx, uint16_t sel);
	/* The guest loaded a GDT (lgdt): the engine mirrors what it needs. False to stop. */
	bool (*gdt_loaded)(void *ctx);
	/* CR0.PG/WP, CR3 or EFER.NXE changed what the guest's mapping is. */
	void (*paging_changed)(void *ctx);
	/* A guest page-table entry at `gpa` (8 bytes) changes from `old` to `new`, by a store
	 * hearth emulated; the engine drops what it derived from the old entry. */
	void (*pte_stored)(void *ctx, uint64_t gpa, uint64_t old, uint64_t new);
	/* invlpg of `va`. */
	void (*invlpg)(void *ctx, uint64_t va);
	/* MSRs the CPU core does not keep (APIC, PAT, MTRRs, TSC...); false: #GP. */
	bool (*rdmsr)(void *ctx, uint32_t index, uint64_t *value);
	bool (*wrmsr)(void *ctx, uint32_t index, uint64_t value);
	/* xsetbv; false: #GP. */
	bool (*xsetbv)(void *ctx, uint32_t index, uint64_t value);
	/* Port I/O (one element of `size` bytes). */
	void (*pio)(void *ctx, uint16_t port, bool write, void *data, unsigned size);
	/* Stop the VM: a triple fault (`why`: which vector could not be delivered), or what
	 * hearth refuses to run; the engine adds where. */
	void (*stop)(void *ctx, enum cpu_stop how, const char *why);
	/* CPUID for an instruction hearth executes itself (the 32-bit interpreter,
	 * cpu/interp32.c): out = EAX, EBX, ECX, EDX for `leaf` / `subleaf`. The engine answers
	 * what the guest sees everywhere else (cpu/cpuid.h), so interpreted and native code agree.
	 * Optional: NULL means the host's own CPUID, which is what native user-mode code gets. */
	void (*cpuid)(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t out[4]);
};

struct guest_cpu {
	struct x86_regs r;
	uint64_t cr0, cr2, cr3, cr4, efer, cr8;
	struct {
		uint64_t base;
		uint16_t limit;
	} gdtr, idtr;
	uint16_t tr, ldtr;
	uint64_t tr_base;
	uint16_t cs, ss; /* the guest's selectors (RPL 0) */
	/* The data selectors, as the 32-bit interpreter loads them (the shadow engine does not
	 * track them: 64-bit code does not use them). */
	uint16_t ds, es, fs, gs;
	uint64_t fs_base, gs_base, kernel_gs_base;
	/* The hidden part of CS, SS, DS and ES that flat 32-bit and 64-bit code do not need:
	 * their bases and the sizes of CS and SS. An application processor's startup code needs
	 * them (real mode from its SIPI, then 16-bit code until a far jump; cpu/interp32.c keeps
	 * them). All zero means flat segments, CS and SS of their descriptors' sizes, which is
	 * what every other path assumes; the interpreter zeroes them when it reaches 64-bit
	 * code (which ignores them). FS and GS keep theirs in fs_base and gs_base. */
	struct {
		uint32_t base[4]; /* by SH_ES, SH_CS, SH_SS, SH_DS */
		bool code16;      /* CS is 16-bit code (real mode, or before the far jump) */
		bool stack16;     /* SS is a 16-bit stack: SP, not ESP */
		/* The descriptor CS was loaded from: what its L and D bits say holds until CS is
		 * loaded again, whatever the guest does to its GDT meanwhile (a kernel that loads
		 * a new GDT before its far jump). 0: read it from the GDT. As the engine's
		 * descriptor op gives it (the shadow engine's is its DPL3 mirror). */
		uint64_t cs_desc;
		uint64_t ss_desc; /* the same for SS (the shadow engine loads SS at every entry) */
	} hidden;
	uint64_t star, lstar, cstar, sfmask;
	/* An NMI was delivered and no iret has run since: the next NMI waits (SDM 6.7.1). Set
	 * by the engine that delivers NMIs, cleared by an emulated iret. */
	bool nmi_blocked;
	/* The port the engine's traps use: closed to the guest, nothing answers there. */
	int trap_port;
	const struct guest_memory *gm;
	const struct guest_cpu_ops *ops;
	void *ctx;
	/* Set when the CPU asks the engine to stop the VM (right before ops->stop), for code that
	 * steps the CPU (cpu/interp32.c, which clears it when it starts). */
	bool stopped;
	enum cpu_stop stop_how;
	/* The guest's descriptors are not the CPU's (the process engine): data segment loads
	 * fault and are emulated here against the guest's GDT. */
	bool virtual_segments;
	/* Virtual addresses below this (and page 0 always) are never mapped for the guest's
	 * native accesses (the process engine: the host's vm.mmap_min_addr): a string
	 * instruction's operand there is done by cpu_emulate_mmio. */
	uint64_t unmapped_below;
};

/* What emulating one instruction led to. */
enum emu {
	EMU_DONE, /* resume at the (updated) RIP */
	EMU_STAY, /* a fault was reflected, or the VM stops */
	EMU_HALT, /* hlt (or sti; hlt): sleep until an interrupt */
};

bool cpu_long_mode(const struct guest_cpu *c);
/* Whether the CPU pushes an error code for this exception vector. */
bool cpu_vector_has_error_code(unsigned vector);
/* The guest's code segment: 64-bit, or 32-bit default size. */
bool cpu_code64(const struct guest_cpu *c);
bool cpu_code32(const struct guest_cpu *c);

/* Guest-virtual memory through the guest's mapping; false on any unmapped byte. */
bool cpu_read(struct guest_cpu *c, uint64_t va, void *buf, size_t len);
bool cpu_write(struct guest_cpu *c, uint64_t va, const void *buf, size_t len);
/* Fetch and decode the instruction at RIP (as much of 15 bytes as is mapped). */
int cpu_fetch_decode(struct guest_cpu *c, struct sh_insn *in, uint8_t *bytes, size_t *n);

/* Whether an exception or interrupt can be delivered now: hearth delivers through a 32- or
 * 64-bit IDT onto a flat stack, which rules out real mode (the interrupt vector table) and a
 * 16-bit stack or one with a base outside long mode (an AP's startup code). */
bool cpu_can_deliver(const struct guest_cpu *c);

/* Deliver `vector` as hardware does at (virtual) CPL0: through the guest's IDT, escalating
 * a failed delivery to #GP, then #DF, then a triple fault. `err` is pushed when the vector
 * has an error code and it is not a software interrupt. Where cpu_can_deliver says no, the
 * VM stops instead (CPU_STOP_REFUSED). */
void cpu_reflect(struct guest_cpu *c, unsigned vector, uint32_t err, bool soft);
/* The same for a #PF at `va`: CR2 is set first. */
void cpu_page_fault(struct guest_cpu *c, uint64_t va, uint32_t err);

/* Emulate the instruction at RIP after the guest took a #GP there (privileged
 * instructions, port I/O, segment loads, iret/lret to ring 0...). */
enum emu cpu_emulate_gp(struct guest_cpu *c, uint32_t err);
/* The same for an instruction the caller fetched from RIP and decoded (sh_decode, `m64`:
 * in 64-bit code): `bytes` are the n bytes fetched. `err` is the #GP error code for what
 * is not emulated. For code that knows the mode better than the current CS descriptor
 * tells (cpu/interp32.c). */
enum emu cpu_emulate_insn(struct guest_cpu *c, const struct sh_insn *in, const uint8_t *bytes,
                          size_t n, bool m64, uint32_t err);
/* After a #UD: a syscall with EFER.SCE set, in long mode, is emulated (to LSTAR or CSTAR at
 * CPL0); a sysenter is refused (the guest's user mode); anything else is the guest's #UD. */
void cpu_emulate_ud(struct guest_cpu *c);

/* A 48-bit canonical address: what wrmsr takes as a base or a syscall target. */
static inline bool cpu_canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}
/* A store to one of the guest's page tables at `va` (-> `gpa`): emulated when it is a plain
 * `mov` of 4 or 8 bytes to one entry (the usual way). False: not such a store (the caller
 * lets the instruction run some other way). */
bool cpu_emulate_pte_store(struct guest_cpu *c, uint64_t va, uint64_t gpa);

/* An access at `va` (-> `gpa`) that the host cannot map: a device register (no RAM there)
 * or page 0. The instruction at RIP is emulated when its memory operand is at `va`: a mov,
 * movzx or movsx (any prefixes: operand size, REX, FS/GS, address size; rip-relative,
 * moffs), an ALU operation, xchg, cmpxchg or xadd (`lock` where the CPU takes it), or a
 * string move (movs, stos, lods, with `rep`). Every memory access goes through `access`
 * (`len` 1, 2, 4 or 8 bytes at `data`, little-endian): for a string move also those of its
 * other operand, which may be RAM, at the guest-physical address the guest's tables give.
 * Registers are written as the CPU does (8- and 16-bit writes keep the rest, 32-bit writes
 * zero-extend, AH-BH without REX); RIP moves past the instruction, or stays on a string
 * that is not done (emulate_string). When the first element of a string move has its other
 * operand where the guest maps nothing, the guest gets that #PF (true). False, with nothing
 * done: not such an instruction, another address, or an access that crosses a page (the
 * caller reflects the fault). The
 * caller makes a locked instruction atomic where others could see the memory between its
 * accesses. */
typedef void (*cpu_mmio_access)(void *ctx, uint64_t gpa, bool write, void *data, unsigned len);
bool cpu_emulate_mmio(struct guest_cpu *c, uint64_t va, uint64_t gpa, cpu_mmio_access access,
                      void *ctx);

/* A segment selector the guest may load into SS (present, writable data), or a null one. */
bool cpu_ss_loadable(struct guest_cpu *c, uint16_t sel);

#endif
