/*
 * A decoder for the instructions a deprivileged guest makes hearth emulate: the privileged
 * ones that fault at CPL3 (control and debug registers, descriptor tables, MSRs, interrupt
 * flag, halt, far returns, segment loads...), and the plain moves drivers use to reach
 * device registers (MMIO: they fault where no RAM is mapped). Everything else decodes as
 * SH_OP_OTHER, and malformed or truncated bytes as an error: the caller then reflects #UD or
 * #GP, as hardware would. Pure: no guest memory access (unit-tested and fuzzed).
 */
#ifndef HEARTH_SHADOW_DECODE_H
#define HEARTH_SHADOW_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sh_op {
	SH_OP_OTHER,
	SH_OP_LGDT,
	SH_OP_LIDT,
	SH_OP_SGDT,
	SH_OP_SIDT,
	SH_OP_SMSW,
	SH_OP_LMSW,
	SH_OP_INVLPG,
	SH_OP_SWAPGS,
	SH_OP_XSETBV,
	SH_OP_RDTSCP,
	SH_OP_MONITOR,
	SH_OP_MWAIT,
	SH_OP_SLDT,
	SH_OP_STR,
	SH_OP_LLDT,
	SH_OP_LTR,
	SH_OP_MOV_FROM_CR,
	SH_OP_MOV_TO_CR,
	SH_OP_MOV_FROM_DR,
	SH_OP_MOV_TO_DR,
	SH_OP_WRMSR,
	SH_OP_RDMSR,
	SH_OP_RDTSC,
	SH_OP_RDPMC,
	SH_OP_CPUID,
	SH_OP_CLTS,
	SH_OP_INVD,
	SH_OP_WBINVD,
	SH_OP_CLI,
	SH_OP_STI,
	SH_OP_HLT,
	SH_OP_IN,
	SH_OP_OUT,
	SH_OP_INS,
	SH_OP_OUTS,
	SH_OP_IRET,
	SH_OP_LRET,
	SH_OP_LJMP,  /* jmp far through memory (ff /5): m16:16, m16:32 or m16:64; or, with
	                far_imm, jmp ptr16:32 / ptr16:16 (ea, outside 64-bit code) */
	SH_OP_LCALL, /* call far through memory (ff /3); or, with far_imm, call ptr (9a) */
	SH_OP_MOV_TO_SEG,
	SH_OP_POP_SEG,
	SH_OP_INT,
	SH_OP_INT3,
	SH_OP_INTO,
	SH_OP_SYSCALL,
	SH_OP_SYSRET,
	SH_OP_SYSENTER,
	SH_OP_SYSEXIT,
	SH_OP_PUSHF,
	SH_OP_POPF,
	SH_OP_UD2,
	/* Moves with a memory operand (never a register-only form: those are SH_OP_OTHER).
	 * access_size is the number of bytes accessed in memory, reg the register operand
	 * (with REX.R). A byte register (mov with access_size 1) numbered 4-7 is AH, CH, DH,
	 * BH when there is no REX prefix (rex == 0), else SPL, BPL, SIL, DIL. */
	SH_OP_MOV_LOAD,  /* mov reg, r/m (8a, 8b); mov AL/eAX, moffs (a0, a1) */
	SH_OP_MOVZX,     /* movzx reg, r/m8 or r/m16 (0f b6, 0f b7): zero-extended to opsize */
	SH_OP_MOVSX,     /* movsx reg, r/m8 or r/m16 (0f be, 0f bf), movsxd (63, 64-bit code) */
	SH_OP_MOV_STORE, /* mov r/m, reg (88, 89): the form guests write PTEs with; moffs, AL/eAX
	                    (a2, a3) */
	/* mov r/m, imm (c6 /0, c7 /0): imm is the immediate sign-extended to 64 bits. */
	SH_OP_MOV_STORE_IMM,
	/* Arithmetic and logic with a memory operand (register-only forms are SH_OP_OTHER): what
	 * `*reg |= bit` on a device register compiles to. `alu` says which; `alu_to_reg`: the
	 * register is the destination (op reg, r/m), else memory is; `alu_imm`: the other
	 * operand is `imm` (sign-extended to the operand size), else register `reg`. */
	SH_OP_ALU,
	/* Read-modify-writes that atomics compile to, with a memory operand (register-only forms
	 * are SH_OP_OTHER); access_size and reg as for the moves. xchg is locked whether or not
	 * it has the prefix. */
	SH_OP_XCHG,    /* xchg r/m, reg (86, 87) */
	SH_OP_CMPXCHG, /* cmpxchg r/m, reg (0f b0, 0f b1): compares with AL, AX, EAX or RAX */
	SH_OP_XADD,    /* xadd r/m, reg (0f c0, 0f c1) */
	/* String moves: no ModRM (mem is false); the source at RSI in DS or the override, the
	 * destination at RDI in ES; `rep` repeats RCX times. access_size: the element's bytes. */
	SH_OP_MOVS, /* a4, a5 */
	SH_OP_STOS, /* aa, ab */
	SH_OP_LODS, /* ac, ad */
	/* String comparisons: the flags of cmp ([RSI] - [RDI]; the accumulator - [RDI]); with
	 * `rep`, `repne` tells repne (f2) from repe (f3). */
	SH_OP_CMPS, /* a6, a7 */
	SH_OP_SCAS, /* ae, af. Last: range checks use it (tests/fuzz/fuzz_decode.c). */
};

/* SH_OP_ALU's operations; the first eight in the order of the opcodes' bits 5:3. */
enum sh_alu {
	SH_ADD,
	SH_OR,
	SH_ADC,
	SH_SBB,
	SH_AND,
	SH_SUB,
	SH_XOR,
	SH_CMP,
	SH_TEST,
	SH_INC,
	SH_DEC,
	SH_NOT, /* f6/f7 /2: no flags */
	SH_NEG  /* f6/f7 /3: the flags of 0 - operand */
};

/* Segment register numbers, as in ModRM.reg of mov Sreg. */
enum { SH_ES, SH_CS, SH_SS, SH_DS, SH_FS, SH_GS };

struct sh_insn {
	enum sh_op op;
	uint8_t len;
	uint8_t opsize;   /* 2, 4 or 8 */
	uint8_t addrsize; /* 4 or 8 (16-bit addressing is refused) */
	uint8_t rex;
	int seg; /* segment override, or -1 */
	bool rep, lock;
	bool repne; /* the last of f2 and f3 was f2 */
	/* ModRM operand. For mov moffs (a0-a3), which has no ModRM byte, the same fields describe
	 * the operand: mem, mod 0, no base or index, the offset in disp. */
	bool has_modrm, mem;
	uint8_t mod, reg, rm; /* reg and rm include REX.R / REX.B */
	int base, index;      /* register numbers, -1 for none */
	uint8_t scale;
	int64_t disp;
	bool rip_relative;
	/* immediates */
	uint64_t imm;
	/* a direct far jump or call (ea, 9a): the offset in imm, the selector here */
	bool far_imm;
	uint16_t far_sel;
	/* port I/O */
	uint8_t io_size;
	bool io_port_imm;
	/* the moves (SH_OP_MOV_LOAD ... SH_OP_MOV_STORE_IMM): bytes accessed in memory, 1, 2, 4
	 * or 8 (opsize stays the operand size of the register: 2, 4 or 8) */
	uint8_t access_size;
	/* SH_OP_ALU (access_size is its operand size too) */
	uint8_t alu; /* enum sh_alu */
	bool alu_to_reg, alu_imm;
};

/* Decode one instruction. `mode64`: 64-bit code segment; otherwise `def32` selects 32-bit
 * (else 16-bit) defaults. Returns 0, or -1 when the bytes are truncated or invalid. */
int sh_decode(const uint8_t *b, size_t n, bool mode64, bool def32, struct sh_insn *in);

#endif
