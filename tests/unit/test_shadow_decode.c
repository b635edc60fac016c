/*
 * The privileged-instruction decoder of shadow mode (vmm/shadow_decode.c), on the byte
 * sequences compilers and assemblers emit, in 64-bit and 32-bit code.
 *
 * Every instruction goes through dec(), which also checks that
 *   - len is exact (it equals the number of bytes given),
 *   - every truncation of the bytes is refused (-1),
 *   - bytes after the instruction change nothing,
 *   - decoding is deterministic,
 *   - 32-bit forms are refused as 16-bit code.
 * Encodings were checked against GNU as (objdump -d).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cpu/decode.h"

#define M64 true
#define M32 false

static void same(const struct sh_insn *a, const struct sh_insn *b)
{
	assert_int_equal(a->op, b->op);
	assert_int_equal(a->len, b->len);
	assert_int_equal(a->opsize, b->opsize);
	assert_int_equal(a->addrsize, b->addrsize);
	assert_int_equal(a->rex, b->rex);
	assert_int_equal(a->seg, b->seg);
	assert_int_equal(a->rep, b->rep);
	assert_int_equal(a->lock, b->lock);
	assert_int_equal(a->has_modrm, b->has_modrm);
	assert_int_equal(a->mem, b->mem);
	assert_int_equal(a->mod, b->mod);
	assert_int_equal(a->reg, b->reg);
	assert_int_equal(a->rm, b->rm);
	assert_int_equal(a->base, b->base);
	assert_int_equal(a->index, b->index);
	if (a->index >= 0)
		assert_int_equal(a->scale, b->scale);
	assert_int_equal(a->disp, b->disp);
	assert_int_equal(a->rip_relative, b->rip_relative);
	assert_int_equal(a->imm, b->imm);
	assert_int_equal(a->io_size, b->io_size);
	assert_int_equal(a->io_port_imm, b->io_port_imm);
}

/* Decode exactly n bytes as one instruction, with the checks above. */
static struct sh_insn dec(bool m64, const uint8_t *b, size_t n)
{
	struct sh_insn in, again;
	uint8_t buf[40];

	assert_true(n <= 15);
	assert_int_equal(sh_decode(b, n, m64, true, &in), 0);
	assert_int_equal(in.len, n);
	assert_int_equal(sh_decode(b, n, m64, true, &again), 0);
	same(&in, &again);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(sh_decode(b, k, m64, true, &again), -1);
	for (int fill = 0; fill < 3; fill++) {
		static const uint8_t fills[] = {0x00, 0xff, 0x0f};

		memcpy(buf, b, n);
		memset(buf + n, fills[fill], sizeof(buf) - n);
		assert_int_equal(sh_decode(buf, sizeof(buf), m64, true, &again), 0);
		same(&in, &again);
	}
	if (!m64)
		assert_int_equal(sh_decode(b, n, false, false, &again), -1);
	/* def32 does not matter in 64-bit mode */
	if (m64) {
		assert_int_equal(sh_decode(b, n, true, false, &again), 0);
		same(&in, &again);
	}
	return in;
}

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})
#define D64(...)   dec(M64, BYTES(__VA_ARGS__))
#define D32(...)   dec(M32, BYTES(__VA_ARGS__))

static void no_prefixes(const struct sh_insn *in)
{
	assert_int_equal(in->seg, -1);
	assert_false(in->rep);
	assert_false(in->lock);
}

/* ---- ModRM / SIB forms ---------------------------------------------------------------- */

struct form {
	const char *asm_; /* AT&T, for failure messages */
	uint8_t rex;      /* REX bits (B, X) for the operand; 0: none */
	bool p67;
	uint8_t mod, rm;
	int sib; /* -1: none */
	int dispbytes;
	int64_t disp;
	int base, index, scale;
	bool rip;
};

static const struct form forms64[] = {
    {"(%rax)", 0, 0, 0, 0, -1, 0, 0, 0, -1, 0, false},
    {"(%rbx)", 0, 0, 0, 3, -1, 0, 0, 3, -1, 0, false},
    {"8(%rax)", 0, 0, 1, 0, -1, 1, 8, 0, -1, 0, false},
    {"-8(%rsi)", 0, 0, 1, 6, -1, 1, -8, 6, -1, 0, false},
    {"0x12345678(%rdi)", 0, 0, 2, 7, -1, 4, 0x12345678, 7, -1, 0, false},
    {"-0x80000000(%rdx)", 0, 0, 2, 2, -1, 4, -0x80000000LL, 2, -1, 0, false},
    {"(%rsp)", 0, 0, 0, 4, 0x24, 0, 0, 4, -1, 0, false},
    {"0x10(%rsp)", 0, 0, 1, 4, 0x24, 1, 0x10, 4, -1, 0, false},
    {"(%rax,%rcx,4)", 0, 0, 0, 4, 0x88, 0, 0, 0, 1, 4, false},
    {"0x10(%rbx,%rdx,2)", 0, 0, 1, 4, 0x53, 1, 0x10, 3, 2, 2, false},
    {"-0x10(%rbx,%rdx,1)", 0, 0, 1, 4, 0x13, 1, -0x10, 3, 2, 1, false},
    {"0x12345678(%rax,%rcx,8)", 0, 0, 2, 4, 0xc8, 4, 0x12345678, 0, 1, 8, false},
    {"0x12345678(,%rcx,4)", 0, 0, 0, 4, 0x8d, 4, 0x12345678, -1, 1, 4, false},
    {"0x12345678 (SIB, no base, no index)", 0, 0, 0, 4, 0x25, 4, 0x12345678, -1, -1, 0, false},
    {"0x0(%rbp)", 0, 0, 1, 5, -1, 1, 0, 5, -1, 0, false},
    {"0x12345678(%rbp)", 0, 0, 2, 5, -1, 4, 0x12345678, 5, -1, 0, false},
    {"0x0(%rbp,%rax,1)", 0, 0, 1, 4, 0x05, 1, 0, 5, 0, 1, false},
    {"0x12345678(%rip)", 0, 0, 0, 5, -1, 4, 0x12345678, -1, -1, 0, true},
    {"-0x10(%rip)", 0, 0, 0, 5, -1, 4, -0x10, -1, -1, 0, true},
    {"(%r8)", 0x41, 0, 0, 0, -1, 0, 0, 8, -1, 0, false},
    {"0x20(%r15)", 0x41, 0, 1, 7, -1, 1, 0x20, 15, -1, 0, false},
    {"(%r12)", 0x41, 0, 0, 4, 0x24, 0, 0, 12, -1, 0, false},
    {"0x0(%r13)", 0x41, 0, 1, 5, -1, 1, 0, 13, -1, 0, false},
    {"0x100(%r13)", 0x41, 0, 2, 5, -1, 4, 0x100, 13, -1, 0, false},
    {"0x12345678(%rip) with REX.B", 0x41, 0, 0, 5, -1, 4, 0x12345678, -1, -1, 0, true},
    {"0x1000 (SIB, no base) with REX.B", 0x41, 0, 0, 4, 0x25, 4, 0x1000, -1, -1, 0, false},
    {"(%rax,%r12,1)", 0x42, 0, 0, 4, 0x20, 0, 0, 0, 12, 1, false},
    {"(%r15,%r8,8)", 0x43, 0, 0, 4, 0xc7, 0, 0, 15, 8, 8, false},
    {"0x7f(%r9,%r10,2)", 0x43, 0, 1, 4, 0x51, 1, 0x7f, 9, 10, 2, false},
    {"(%eax)", 0, 1, 0, 0, -1, 0, 0, 0, -1, 0, false},
    {"0x10(%esp)", 0, 1, 1, 4, 0x24, 1, 0x10, 4, -1, 0, false},
    {"0x12345678(%eip)", 0, 1, 0, 5, -1, 4, 0x12345678, -1, -1, 0, true},
    {"(%r8d,%eax,4)", 0x41, 1, 0, 4, 0x80, 0, 0, 8, 0, 4, false},
};

static const struct form forms32[] = {
    {"(%eax)", 0, 0, 0, 0, -1, 0, 0, 0, -1, 0, false},
    {"(%edi)", 0, 0, 0, 7, -1, 0, 0, 7, -1, 0, false},
    {"8(%eax)", 0, 0, 1, 0, -1, 1, 8, 0, -1, 0, false},
    {"-0x80(%ecx)", 0, 0, 1, 1, -1, 1, -0x80, 1, -1, 0, false},
    {"0x12345678(%edx)", 0, 0, 2, 2, -1, 4, 0x12345678, 2, -1, 0, false},
    {"(%esp)", 0, 0, 0, 4, 0x24, 0, 0, 4, -1, 0, false},
    {"0x4(%esp)", 0, 0, 1, 4, 0x24, 1, 4, 4, -1, 0, false},
    {"(%eax,%ecx,4)", 0, 0, 0, 4, 0x88, 0, 0, 0, 1, 4, false},
    {"0x12345678(%eax,%esi,8)", 0, 0, 2, 4, 0xf0, 4, 0x12345678, 0, 6, 8, false},
    {"0xc0100000(,%ebx,2)", 0, 0, 0, 4, 0x5d, 4, (int32_t)0xc0100000, -1, 3, 2, false},
    {"0x12345678 (SIB, no base)", 0, 0, 0, 4, 0x25, 4, 0x12345678, -1, -1, 0, false},
    {"0xc0101000 (absolute)", 0, 0, 0, 5, -1, 4, (int32_t)0xc0101000, -1, -1, 0, false},
    {"0x8(%ebp)", 0, 0, 1, 5, -1, 1, 8, 5, -1, 0, false},
};

/* opcode bytes, then ModRM with `reg` and the form's mod/rm, SIB and displacement. */
static size_t encode(uint8_t *out, const uint8_t *prefix, size_t np, const uint8_t *opc, size_t no,
                     unsigned reg, const struct form *fm)
{
	size_t n = 0;

	memcpy(out + n, prefix, np);
	n += np;
	if (fm->p67)
		out[n++] = 0x67;
	if (fm->rex || (reg & 8))
		out[n++] = (uint8_t)(0x40 | fm->rex | ((reg & 8) ? 4 : 0));
	memcpy(out + n, opc, no);
	n += no;
	out[n++] = (uint8_t)(fm->mod << 6 | (reg & 7) << 3 | fm->rm);
	if (fm->sib >= 0)
		out[n++] = (uint8_t)fm->sib;
	for (int i = 0; i < fm->dispbytes; i++)
		out[n++] = (uint8_t)((uint64_t)fm->disp >> (8 * i));
	return n;
}

static void check_form(const struct sh_insn *in, const struct form *fm, bool m64)
{
	assert_true(in->has_modrm);
	assert_true(in->mem);
	assert_int_equal(in->mod, fm->mod);
	assert_int_equal(in->base, fm->base);
	assert_int_equal(in->index, fm->index);
	if (fm->index >= 0)
		assert_int_equal(in->scale, fm->scale);
	assert_int_equal(in->disp, fm->disp);
	assert_int_equal(in->rip_relative, fm->rip);
	assert_int_equal(in->addrsize, m64 && !fm->p67 ? 8 : 4);
}

/* Every form of a memory-operand instruction: opc + ModRM.reg = reg -> op. */
static void all_forms(const uint8_t *opc, size_t no, unsigned reg, enum sh_op op)
{
	static const uint8_t prefixes[][1] = {{0}, {0x65}, {0x2e}, {0x66}};

	for (unsigned p = 0; p < 4; p++) {
		size_t np = p == 0 ? 0 : 1;

		for (size_t i = 0; i < sizeof(forms64) / sizeof(forms64[0]); i++) {
			uint8_t b[16];
			size_t n = encode(b, prefixes[p], np, opc, no, reg, &forms64[i]);
			struct sh_insn in = dec(M64, b, n);

			assert_int_equal(in.op, op);
			assert_int_equal(in.reg & 7, reg & 7);
			check_form(&in, &forms64[i], true);
			assert_int_equal(in.seg, p == 1 ? SH_GS : p == 2 ? SH_CS : -1);
		}
		for (size_t i = 0; i < sizeof(forms32) / sizeof(forms32[0]); i++) {
			uint8_t b[16];
			size_t n = encode(b, prefixes[p], np, opc, no, reg, &forms32[i]);
			struct sh_insn in = dec(M32, b, n);

			assert_int_equal(in.op, op);
			assert_int_equal(in.reg, reg & 7);
			check_form(&in, &forms32[i], false);
			assert_int_equal(in.opsize, p == 3 ? 2 : 4);
		}
	}
	/* REX.R only changes ModRM.reg's number, not the operation; REX.W the operand size. */
	{
		uint8_t b[16];
		size_t n = encode(b, b, 0, opc, no, reg | 8, &forms64[0]);
		struct sh_insn in = dec(M64, b, n);

		assert_int_equal(in.op, op);
		assert_int_equal(in.reg & 7, reg & 7);
		if (op != SH_OP_MOV_TO_SEG) /* Sreg numbers have no REX.R */
			assert_int_equal(in.reg, reg | 8);
		b[0] |= 0x08;
		in = dec(M64, b, n);
		assert_int_equal(in.op, op);
		assert_int_equal(in.opsize, 8);
	}
}

static void test_descriptor_tables(void **state)
{
	(void)state;
	all_forms(BYTES(0x0f, 0x01), 0, SH_OP_SGDT);
	all_forms(BYTES(0x0f, 0x01), 1, SH_OP_SIDT);
	all_forms(BYTES(0x0f, 0x01), 2, SH_OP_LGDT);
	all_forms(BYTES(0x0f, 0x01), 3, SH_OP_LIDT);
}

/* Spot checks against the assembler's bytes. */
static void test_descriptor_tables_as(void **state)
{
	struct sh_insn in;

	(void)state;
	in = D64(0x0f, 0x01, 0x15, 0x00, 0x10, 0x00, 0x00); /* lgdt 0x1000(%rip) */
	assert_int_equal(in.op, SH_OP_LGDT);
	assert_true(in.rip_relative);
	assert_int_equal(in.disp, 0x1000);
	in = D64(0x0f, 0x01, 0x1c, 0x24); /* lidt (%rsp) */
	assert_int_equal(in.op, SH_OP_LIDT);
	assert_int_equal(in.base, 4);
	in = D64(0x41, 0x0f, 0x01, 0x54, 0x24, 0x08); /* lgdt 0x8(%r12) */
	assert_int_equal(in.op, SH_OP_LGDT);
	assert_int_equal(in.base, 12);
	assert_int_equal(in.disp, 8);
	in = D64(0x0f, 0x01, 0x05, 0xf9, 0xff, 0xff, 0xff); /* sgdt -0x7(%rip) */
	assert_int_equal(in.op, SH_OP_SGDT);
	assert_int_equal(in.disp, -7);
	in = D64(0x42, 0x0f, 0x01, 0x0c, 0xa8); /* sidt (%rax,%r13,4) */
	assert_int_equal(in.op, SH_OP_SIDT);
	assert_int_equal(in.base, 0);
	assert_int_equal(in.index, 13);
	assert_int_equal(in.scale, 4);
	in = D32(0x0f, 0x01, 0x15, 0x00, 0x30, 0x10, 0xc0); /* lgdtl 0xc0103000 */
	assert_int_equal(in.op, SH_OP_LGDT);
	assert_false(in.rip_relative);
	assert_int_equal(in.base, -1);
	assert_int_equal((uint32_t)in.disp, 0xc0103000);
	in = D32(0x0f, 0x01, 0x5c, 0x24, 0x04); /* lidtl 0x4(%esp) */
	assert_int_equal(in.op, SH_OP_LIDT);
	assert_int_equal(in.base, 4);
	assert_int_equal(in.disp, 4);
	no_prefixes(&in);
	/* 0f 01 /5 with memory is not one of them */
	{
		uint8_t b[] = {0x0f, 0x01, 0x28};
		struct sh_insn x;

		assert_int_equal(sh_decode(b, sizeof(b), true, true, &x), -1);
	}
}

static void test_invlpg(void **state)
{
	struct sh_insn in;

	(void)state;
	all_forms(BYTES(0x0f, 0x01), 7, SH_OP_INVLPG);
	in = D64(0x0f, 0x01, 0x38); /* invlpg (%rax) */
	assert_int_equal(in.op, SH_OP_INVLPG);
	assert_int_equal(in.base, 0);
	in = D64(0x41, 0x0f, 0x01, 0x3f); /* invlpg (%r15) */
	assert_int_equal(in.base, 15);
	in = D64(0x0f, 0x01, 0x7d, 0x08); /* invlpg 0x8(%rbp) */
	assert_int_equal(in.base, 5);
	assert_int_equal(in.disp, 8);
	in = D32(0x0f, 0x01, 0x38); /* invlpg (%eax) */
	assert_int_equal(in.op, SH_OP_INVLPG);
}

/* ---- control and debug registers ------------------------------------------------------ */

static void test_mov_cr(void **state)
{
	static const struct {
		uint8_t b[4];
		size_t n;
		enum sh_op op;
		uint8_t reg, rm;
	} c64[] = {
	    {{0x0f, 0x22, 0xc0}, 3, SH_OP_MOV_TO_CR, 0, 0},          /* mov %rax,%cr0 */
	    {{0x0f, 0x20, 0xc0}, 3, SH_OP_MOV_FROM_CR, 0, 0},        /* mov %cr0,%rax */
	    {{0x0f, 0x20, 0xd0}, 3, SH_OP_MOV_FROM_CR, 2, 0},        /* mov %cr2,%rax */
	    {{0x0f, 0x22, 0xd0}, 3, SH_OP_MOV_TO_CR, 2, 0},          /* mov %rax,%cr2 */
	    {{0x0f, 0x22, 0xdf}, 3, SH_OP_MOV_TO_CR, 3, 7},          /* mov %rdi,%cr3 */
	    {{0x0f, 0x20, 0xd8}, 3, SH_OP_MOV_FROM_CR, 3, 0},        /* mov %cr3,%rax */
	    {{0x0f, 0x22, 0xe1}, 3, SH_OP_MOV_TO_CR, 4, 1},          /* mov %rcx,%cr4 */
	    {{0x0f, 0x20, 0xe2}, 3, SH_OP_MOV_FROM_CR, 4, 2},        /* mov %cr4,%rdx */
	    {{0x44, 0x0f, 0x22, 0xc0}, 4, SH_OP_MOV_TO_CR, 8, 0},    /* mov %rax,%cr8 */
	    {{0x44, 0x0f, 0x20, 0xc3}, 4, SH_OP_MOV_FROM_CR, 8, 3},  /* mov %cr8,%rbx */
	    {{0x41, 0x0f, 0x22, 0xd8}, 4, SH_OP_MOV_TO_CR, 3, 8},    /* mov %r8,%cr3 */
	    {{0x41, 0x0f, 0x20, 0xdf}, 4, SH_OP_MOV_FROM_CR, 3, 15}, /* mov %cr3,%r15 */
	    {{0x45, 0x0f, 0x22, 0xc4}, 4, SH_OP_MOV_TO_CR, 8, 12},   /* mov %r12,%cr8 */
	    {{0x0f, 0x23, 0xf8}, 3, SH_OP_MOV_TO_DR, 7, 0},          /* mov %rax,%db7 */
	    {{0x0f, 0x21, 0xc0}, 3, SH_OP_MOV_FROM_DR, 0, 0},        /* mov %db0,%rax */
	    {{0x0f, 0x21, 0xf1}, 3, SH_OP_MOV_FROM_DR, 6, 1},        /* mov %db6,%rcx */
	    {{0x41, 0x0f, 0x23, 0xd9}, 4, SH_OP_MOV_TO_DR, 3, 9},    /* mov %r9,%db3 */
	    {{0x41, 0x0f, 0x21, 0xfa}, 4, SH_OP_MOV_FROM_DR, 7, 10}, /* mov %db7,%r10 */
	};
	static const struct {
		uint8_t b[3];
		enum sh_op op;
		uint8_t reg, rm;
	} c32[] = {
	    {{0x0f, 0x22, 0xc0}, SH_OP_MOV_TO_CR, 0, 0},   /* mov %eax,%cr0 */
	    {{0x0f, 0x20, 0xc0}, SH_OP_MOV_FROM_CR, 0, 0}, /* mov %cr0,%eax */
	    {{0x0f, 0x20, 0xd6}, SH_OP_MOV_FROM_CR, 2, 6}, /* mov %cr2,%esi */
	    {{0x0f, 0x22, 0xd8}, SH_OP_MOV_TO_CR, 3, 0},   /* mov %eax,%cr3 */
	    {{0x0f, 0x22, 0xe3}, SH_OP_MOV_TO_CR, 4, 3},   /* mov %ebx,%cr4 */
	    {{0x0f, 0x23, 0xf8}, SH_OP_MOV_TO_DR, 7, 0},   /* mov %eax,%db7 */
	    {{0x0f, 0x21, 0xc8}, SH_OP_MOV_FROM_DR, 1, 0}, /* mov %db1,%eax */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c64) / sizeof(c64[0]); i++) {
		struct sh_insn in = dec(M64, c64[i].b, c64[i].n);

		assert_int_equal(in.op, c64[i].op);
		assert_int_equal(in.reg, c64[i].reg);
		assert_int_equal(in.rm, c64[i].rm);
		assert_false(in.mem);
		assert_int_equal(in.opsize, 8);
		no_prefixes(&in);
	}
	for (size_t i = 0; i < sizeof(c32) / sizeof(c32[0]); i++) {
		struct sh_insn in = dec(M32, c32[i].b, 3);

		assert_int_equal(in.op, c32[i].op);
		assert_int_equal(in.reg, c32[i].reg);
		assert_int_equal(in.rm, c32[i].rm);
		assert_false(in.mem);
		assert_int_equal(in.opsize, 4);
	}
}

/* For mov to/from CR/DR the ModRM mod bits are ignored: the operand is always a register
 * and no SIB or displacement follows (SDM: MOV-Move to/from Control Registers). */
static void test_mov_cr_mod_ignored(void **state)
{
	static const uint8_t forms[][2] = {
	    {0x22, 0x18}, /* mod 0, rm 0: mov %rax,%cr3 */
	    {0x22, 0x1c}, /* mod 0, rm 4: mov %rsp,%cr3, no SIB */
	    {0x22, 0x1d}, /* mod 0, rm 5: mov %rbp,%cr3, no disp32 */
	    {0x20, 0x58}, /* mod 1: mov %cr3,%rax, no disp8 */
	    {0x20, 0x98}, /* mod 2: mov %cr3,%rax, no disp32 */
	    {0x23, 0x3c}, /* mov %rsp,%db7 */
	};

	(void)state;
	for (int m = 0; m < 2; m++) {
		for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
			uint8_t b[16] = {0x0f, forms[i][0], forms[i][1], 0x24, 0x90,
			                 0x90, 0x90,        0x90,        0x90, 0x90};
			struct sh_insn in;

			assert_int_equal(sh_decode(b, sizeof(b), m == 0, true, &in), 0);
			assert_int_equal(in.len, 3);
			assert_int_equal(in.rm, forms[i][1] & 7);
			assert_false(in.mem);
			assert_int_equal(sh_decode(b, 3, m == 0, true, &in), 0);
		}
	}
}

/* ---- simple privileged instructions --------------------------------------------------- */

static void test_simple(void **state)
{
	static const struct {
		uint8_t b[4];
		size_t n;
		enum sh_op op;
		int in64, in32; /* 1: valid there; 0: not an instruction there; -1: unchecked */
	} c[] = {
	    {{0x0f, 0x30}, 2, SH_OP_WRMSR, true, true},
	    {{0x0f, 0x32}, 2, SH_OP_RDMSR, true, true},
	    {{0x0f, 0x01, 0xd1}, 3, SH_OP_XSETBV, true, true},
	    {{0xfa}, 1, SH_OP_CLI, true, true},
	    {{0xfb}, 1, SH_OP_STI, true, true},
	    {{0xf4}, 1, SH_OP_HLT, true, true},
	    {{0xcc}, 1, SH_OP_INT3, true, true},
	    {{0x0f, 0x34}, 2, SH_OP_SYSENTER, true, true},
	    {{0x0f, 0x35}, 2, SH_OP_SYSEXIT, true, true},
	    {{0x0f, 0x01, 0xf8}, 3, SH_OP_SWAPGS, 1, -1}, /* test_swapgs_32bit */
	    {{0x0f, 0x05}, 2, SH_OP_SYSCALL, true, false},
	    {{0x0f, 0x07}, 2, SH_OP_SYSRET, true, false},
	    {{0xce}, 1, SH_OP_INTO, false, true},
	    /* the others the decoder knows */
	    {{0x0f, 0x01, 0xf9}, 3, SH_OP_RDTSCP, true, true},
	    {{0x0f, 0x01, 0xc8}, 3, SH_OP_MONITOR, true, true},
	    {{0x0f, 0x01, 0xc9}, 3, SH_OP_MWAIT, true, true},
	    {{0x0f, 0x31}, 2, SH_OP_RDTSC, true, true},
	    {{0x0f, 0x33}, 2, SH_OP_RDPMC, true, true},
	    {{0x0f, 0xa2}, 2, SH_OP_CPUID, true, true},
	    {{0x0f, 0x06}, 2, SH_OP_CLTS, true, true},
	    {{0x0f, 0x08}, 2, SH_OP_INVD, true, true},
	    {{0x0f, 0x09}, 2, SH_OP_WBINVD, true, true},
	    {{0x0f, 0x0b}, 2, SH_OP_UD2, true, true},
	    {{0x9c}, 1, SH_OP_PUSHF, true, true},
	    {{0x9d}, 1, SH_OP_POPF, true, true},
	    {{0x0f, 0x01, 0xe0}, 3, SH_OP_SMSW, true, true}, /* smsw %eax */
	    {{0x0f, 0x01, 0xf0}, 3, SH_OP_LMSW, true, true}, /* lmsw %ax */
	    {{0x0f, 0x00, 0xc0}, 3, SH_OP_SLDT, true, true}, /* sldt %eax */
	    {{0x0f, 0x00, 0xc8}, 3, SH_OP_STR, true, true},  /* str %eax */
	    {{0x0f, 0x01, 0x20}, 3, SH_OP_SMSW, true, true}, /* smsw (%rax) */
	    {{0x0f, 0x01, 0x30}, 3, SH_OP_LMSW, true, true}, /* lmsw (%rax) */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		for (int m = 0; m < 2; m++) {
			bool m64 = m == 0;
			struct sh_insn in;
			int valid = m64 ? c[i].in64 : c[i].in32;

			if (valid < 0)
				continue;
			if (valid) {
				in = dec(m64, c[i].b, c[i].n);
				assert_int_equal(in.op, c[i].op);
				no_prefixes(&in);
			} else if (sh_decode(c[i].b, c[i].n, m64, true, &in) == 0) {
				/* Not an instruction of this mode: not emulated as one. */
				assert_int_equal(in.op, SH_OP_OTHER);
			}
		}
	}
}

static void test_sys_sizes(void **state)
{
	struct sh_insn in;

	(void)state;
	in = D64(0x0f, 0x07); /* sysretl */
	assert_int_equal(in.opsize, 4);
	in = D64(0x48, 0x0f, 0x07); /* sysretq */
	assert_int_equal(in.op, SH_OP_SYSRET);
	assert_int_equal(in.opsize, 8);
	in = D64(0x48, 0x0f, 0x35); /* sysexitq */
	assert_int_equal(in.op, SH_OP_SYSEXIT);
	assert_int_equal(in.opsize, 8);
	in = D32(0x0f, 0x35); /* sysexit */
	assert_int_equal(in.opsize, 4);
}

static void test_int(void **state)
{
	struct sh_insn in;

	(void)state;
	for (unsigned v = 0; v < 256; v++) {
		uint8_t b[2] = {0xcd, (uint8_t)v};

		in = dec(M64, b, 2);
		assert_int_equal(in.op, SH_OP_INT);
		assert_int_equal(in.imm, v);
		in = dec(M32, b, 2);
		assert_int_equal(in.op, SH_OP_INT);
		assert_int_equal(in.imm, v);
	}
}

/* ---- LDT and TR ----------------------------------------------------------------------- */

static void test_lldt_ltr(void **state)
{
	struct sh_insn in;

	(void)state;
	in = D64(0x0f, 0x00, 0xd0); /* lldt %ax */
	assert_int_equal(in.op, SH_OP_LLDT);
	assert_false(in.mem);
	assert_int_equal(in.rm, 0);
	in = D64(0x0f, 0x00, 0xd8); /* ltr %ax */
	assert_int_equal(in.op, SH_OP_LTR);
	assert_false(in.mem);
	in = D64(0x0f, 0x00, 0xdf); /* ltr %di */
	assert_int_equal(in.op, SH_OP_LTR);
	assert_int_equal(in.rm, 7);
	in = D64(0x41, 0x0f, 0x00, 0xd0); /* lldt %r8w */
	assert_int_equal(in.op, SH_OP_LLDT);
	assert_int_equal(in.rm, 8);
	in = D64(0x41, 0x0f, 0x00, 0xdb); /* ltr %r11w */
	assert_int_equal(in.op, SH_OP_LTR);
	assert_int_equal(in.rm, 11);
	in = D32(0x0f, 0x00, 0xd8); /* ltr %ax */
	assert_int_equal(in.op, SH_OP_LTR);
	in = D32(0x0f, 0x00, 0xd1); /* lldt %cx */
	assert_int_equal(in.op, SH_OP_LLDT);
	assert_int_equal(in.rm, 1);
	all_forms(BYTES(0x0f, 0x00), 2, SH_OP_LLDT);
	all_forms(BYTES(0x0f, 0x00), 3, SH_OP_LTR);
	in = D64(0x0f, 0x00, 0x5d, 0x08); /* ltr 0x8(%rbp) */
	assert_int_equal(in.op, SH_OP_LTR);
	assert_true(in.mem);
	assert_int_equal(in.base, 5);
}

/* ---- port I/O ------------------------------------------------------------------------- */

static void test_port_io(void **state)
{
	static const struct {
		uint8_t b[4];
		size_t n;
		enum sh_op op;
		uint8_t size;
		int port; /* -1: %dx */
	} c[] = {
	    {{0xe4, 0x60}, 2, SH_OP_IN, 1, 0x60},        /* in $0x60,%al */
	    {{0xe5, 0x71}, 2, SH_OP_IN, 4, 0x71},        /* in $0x71,%eax */
	    {{0x66, 0xe5, 0x40}, 3, SH_OP_IN, 2, 0x40},  /* in $0x40,%ax */
	    {{0xe6, 0x80}, 2, SH_OP_OUT, 1, 0x80},       /* out %al,$0x80 */
	    {{0xe7, 0xff}, 2, SH_OP_OUT, 4, 0xff},       /* out %eax,$0xff */
	    {{0x66, 0xe7, 0x43}, 3, SH_OP_OUT, 2, 0x43}, /* out %ax,$0x43 */
	    {{0xec}, 1, SH_OP_IN, 1, -1},                /* in (%dx),%al */
	    {{0xed}, 1, SH_OP_IN, 4, -1},                /* in (%dx),%eax */
	    {{0x66, 0xed}, 2, SH_OP_IN, 2, -1},          /* in (%dx),%ax */
	    {{0xee}, 1, SH_OP_OUT, 1, -1},               /* out %al,(%dx) */
	    {{0xef}, 1, SH_OP_OUT, 4, -1},               /* out %eax,(%dx) */
	    {{0x66, 0xef}, 2, SH_OP_OUT, 2, -1},         /* out %ax,(%dx) */
	    {{0x6c}, 1, SH_OP_INS, 1, -1},               /* insb (%dx),%es:(%rdi) */
	    {{0x6d}, 1, SH_OP_INS, 4, -1},               /* insl */
	    {{0x66, 0x6d}, 2, SH_OP_INS, 2, -1},         /* insw */
	    {{0x6e}, 1, SH_OP_OUTS, 1, -1},              /* outsb */
	    {{0x6f}, 1, SH_OP_OUTS, 4, -1},              /* outsl */
	    {{0x66, 0x6f}, 2, SH_OP_OUTS, 2, -1},        /* outsw */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		for (int m = 0; m < 2; m++) {
			struct sh_insn in = dec(m == 0, c[i].b, c[i].n);

			assert_int_equal(in.op, c[i].op);
			assert_int_equal(in.io_size, c[i].size);
			assert_int_equal(in.io_port_imm, c[i].port >= 0);
			if (c[i].port >= 0)
				assert_int_equal(in.imm, c[i].port);
			assert_false(in.rep);
		}
	}
	/* REX.W does not make port I/O 64-bit. */
	{
		struct sh_insn in = D64(0x48, 0xed);

		assert_int_equal(in.op, SH_OP_IN);
		assert_int_equal(in.io_size, 4);
		in = D64(0x66, 0x48, 0xe7, 0x10);
		assert_int_equal(in.io_size, 4);
	}
}

static void test_string_io_prefixes(void **state)
{
	struct sh_insn in;

	(void)state;
	in = D64(0xf3, 0x6c); /* rep insb */
	assert_int_equal(in.op, SH_OP_INS);
	assert_true(in.rep);
	assert_int_equal(in.io_size, 1);
	in = D64(0x66, 0xf3, 0x6d); /* rep insw */
	assert_true(in.rep);
	assert_int_equal(in.io_size, 2);
	in = D64(0xf3, 0x66, 0x6f); /* rep outsw, prefixes the other way round */
	assert_int_equal(in.op, SH_OP_OUTS);
	assert_true(in.rep);
	assert_int_equal(in.io_size, 2);
	in = D64(0xf3, 0x6f); /* rep outsl */
	assert_int_equal(in.io_size, 4);
	assert_int_equal(in.addrsize, 8);
	in = D64(0x67, 0xf3, 0x6e); /* rep outsb %ds:(%esi),(%dx) */
	assert_int_equal(in.addrsize, 4);
	assert_true(in.rep);
	in = D64(0x2e, 0x6e); /* outsb %cs:(%rsi),(%dx) */
	assert_int_equal(in.seg, SH_CS);
	in = D64(0x64, 0xf3, 0x6f); /* rep outsl %fs:(%rsi),(%dx) */
	assert_int_equal(in.seg, SH_FS);
	assert_true(in.rep);
	in = D32(0xf3, 0x6d); /* rep insl */
	assert_true(in.rep);
	assert_int_equal(in.addrsize, 4);
	in = D32(0x66, 0xf3, 0x6f);
	assert_int_equal(in.io_size, 2);
	in = D32(0x26, 0xf2, 0x6e); /* repnz outsb %es:(%esi),(%dx) */
	assert_int_equal(in.seg, SH_ES);
	assert_true(in.rep);
}

/* ---- far returns ---------------------------------------------------------------------- */

static void test_iret_lret(void **state)
{
	struct sh_insn in;

	(void)state;
	in = D64(0xcf); /* iretl */
	assert_int_equal(in.op, SH_OP_IRET);
	assert_int_equal(in.opsize, 4);
	in = D64(0x48, 0xcf); /* iretq */
	assert_int_equal(in.op, SH_OP_IRET);
	assert_int_equal(in.opsize, 8);
	in = D64(0x66, 0xcf); /* iretw */
	assert_int_equal(in.opsize, 2);
	in = D64(0x66, 0x48, 0xcf); /* REX.W wins over 66 */
	assert_int_equal(in.opsize, 8);
	in = D32(0xcf);
	assert_int_equal(in.op, SH_OP_IRET);
	assert_int_equal(in.opsize, 4);
	in = D32(0x66, 0xcf);
	assert_int_equal(in.opsize, 2);

	in = D64(0xcb); /* lret */
	assert_int_equal(in.op, SH_OP_LRET);
	assert_int_equal(in.opsize, 4);
	assert_int_equal(in.imm, 0);
	in = D64(0x48, 0xcb); /* lretq */
	assert_int_equal(in.opsize, 8);
	in = D64(0xca, 0x08, 0x00); /* lret $0x8 */
	assert_int_equal(in.op, SH_OP_LRET);
	assert_int_equal(in.imm, 8);
	in = D64(0x48, 0xca, 0x10, 0x00); /* lretq $0x10 */
	assert_int_equal(in.opsize, 8);
	assert_int_equal(in.imm, 0x10);
	in = D64(0xca, 0xfe, 0xff); /* lret $0xfffe: unsigned */
	assert_int_equal(in.imm, 0xfffe);
	in = D32(0xcb);
	assert_int_equal(in.op, SH_OP_LRET);
	in = D32(0xca, 0x04, 0x00); /* lret $0x4 */
	assert_int_equal(in.imm, 4);
	in = D32(0x66, 0xcb); /* lretw */
	assert_int_equal(in.opsize, 2);

	in = D64(0xff, 0x6c, 0x24, 0xfa); /* ljmp *-0x6(%rsp): m16:32 */
	assert_int_equal(in.op, SH_OP_LJMP);
	assert_int_equal(in.opsize, 4);
	assert_int_equal(in.len, 4);
	assert_int_equal(in.base, 4);
	assert_int_equal(in.disp, -6);
	in = D64(0x48, 0xff, 0x18); /* rex.w lcall *(%rax): m16:64 */
	assert_int_equal(in.op, SH_OP_LCALL);
	assert_int_equal(in.opsize, 8);
	in = D32(0xff, 0x2d, 0x00, 0x10, 0x00, 0x00); /* ljmp *0x1000 */
	assert_int_equal(in.op, SH_OP_LJMP);
	assert_int_equal(in.len, 6);
	in = D64(0xff, 0xe8); /* ff /5 with a register: #UD, not a far jump */
	assert_int_equal(in.op, SH_OP_OTHER);
	in = D64(0xff, 0x20); /* jmp *(%rax): near */
	assert_int_equal(in.op, SH_OP_OTHER);
	in = D64(0xff, 0x00); /* incl (%rax) */
	assert_int_equal(in.op, SH_OP_ALU);
	assert_int_equal(in.alu, SH_INC);
	assert_int_equal(in.access_size, 4);
	in = D64(0xff, 0xc0); /* incl %eax: no memory operand */
	assert_int_equal(in.op, SH_OP_OTHER);
}

static void test_alu_forms(void **state)
{
	struct sh_insn in;

	(void)state;
	in = D64(0x81, 0x48, 0x10, 0x00, 0x01, 0x00, 0x00); /* orl $0x100,0x10(%rax) */
	assert_int_equal(in.op, SH_OP_ALU);
	assert_int_equal(in.alu, SH_OR);
	assert_true(in.alu_imm);
	assert_false(in.alu_to_reg);
	assert_int_equal(in.imm, 0x100);
	assert_int_equal(in.access_size, 4);
	assert_int_equal(in.len, 7);
	in = D64(0x48, 0x83, 0x3f, 0xf9); /* cmpq $-7,(%rdi): imm8 sign-extended */
	assert_int_equal(in.alu, SH_CMP);
	assert_int_equal(in.access_size, 8);
	assert_int_equal((int64_t)in.imm, -7);
	in = D64(0x66, 0x81, 0x27, 0xff, 0xfe); /* andw $0xfeff,(%rdi): imm16 */
	assert_int_equal(in.alu, SH_AND);
	assert_int_equal(in.access_size, 2);
	assert_int_equal(in.imm & 0xffff, 0xfeff);
	assert_int_equal(in.len, 5);
	in = D64(0x48, 0x81, 0x37, 0x0f, 0x00, 0x00, 0x80); /* xorq $imm32 sign-extended */
	assert_int_equal(in.alu, SH_XOR);
	assert_int_equal(in.imm, 0xffffffff8000000fULL);
	in = D64(0x80, 0x0f, 0x01); /* orb $1,(%rdi) */
	assert_int_equal(in.access_size, 1);
	assert_int_equal(in.alu, SH_OR);
	in = D64(0x2b, 0x07); /* sub (%rdi),%eax: into the register */
	assert_int_equal(in.alu, SH_SUB);
	assert_true(in.alu_to_reg);
	assert_false(in.alu_imm);
	in = D64(0x00, 0x27); /* add %ah,(%rdi) */
	assert_int_equal(in.alu, SH_ADD);
	assert_int_equal(in.access_size, 1);
	assert_int_equal(in.reg, 4);
	in = D64(0x85, 0x07); /* test %eax,(%rdi) */
	assert_int_equal(in.alu, SH_TEST);
	in = D64(0xf7, 0x07, 0x01, 0x00, 0x00, 0x00); /* testl $1,(%rdi) */
	assert_int_equal(in.alu, SH_TEST);
	assert_true(in.alu_imm);
	assert_int_equal(in.len, 6);
	in = D64(0xf7, 0x1f); /* negl (%rdi) */
	assert_int_equal(in.op, SH_OP_ALU);
	assert_int_equal(in.alu, SH_NEG);
	assert_int_equal(in.access_size, 4);
	assert_int_equal(in.len, 2);
	in = D64(0xf6, 0x17); /* notb (%rdi) */
	assert_int_equal(in.alu, SH_NOT);
	assert_int_equal(in.access_size, 1);
	in = D64(0xf7, 0x27); /* mull (%rdi): not decoded further */
	assert_int_equal(in.op, SH_OP_OTHER);
	in = D64(0xfe, 0x0f); /* decb (%rdi) */
	assert_int_equal(in.alu, SH_DEC);
	assert_int_equal(in.access_size, 1);
	in = D64(0x01, 0xc0); /* add %eax,%eax */
	assert_int_equal(in.op, SH_OP_OTHER);
	in = D32(0x83, 0x05, 0x00, 0x10, 0x00, 0x00, 0x01); /* addl $1,0x1000 (32-bit code) */
	assert_int_equal(in.alu, SH_ADD);
	assert_int_equal(in.disp, 0x1000);
	assert_int_equal(in.len, 7);
}

/* ---- segment registers ---------------------------------------------------------------- */

static void test_mov_sreg(void **state)
{
	static const struct {
		uint8_t modrm;
		int seg;
	} regs[] = {
	    {0xd0, SH_SS}, /* mov %eax,%ss */
	    {0xd8, SH_DS}, /* mov %eax,%ds */
	    {0xc0, SH_ES}, /* mov %eax,%es */
	    {0xe0, SH_FS}, /* mov %eax,%fs */
	    {0xe8, SH_GS}, /* mov %eax,%gs */
	    {0xd3, SH_SS}, /* mov %ebx,%ss */
	};
	struct sh_insn in;

	(void)state;
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		for (int m = 0; m < 2; m++) {
			uint8_t b[3] = {0x8e, regs[i].modrm};

			in = dec(m == 0, b, 2);
			assert_int_equal(in.op, SH_OP_MOV_TO_SEG);
			assert_int_equal(in.reg, regs[i].seg);
			assert_int_equal(in.rm, regs[i].modrm & 7);
			assert_false(in.mem);
			b[0] = 0x66; /* mov %ax,%ss: same thing */
			b[1] = 0x8e;
			b[2] = regs[i].modrm;
			in = dec(m == 0, b, 3);
			assert_int_equal(in.op, SH_OP_MOV_TO_SEG);
			assert_int_equal(in.reg, regs[i].seg);
		}
	}
	in = D64(0x41, 0x8e, 0xd0); /* mov %r8d,%ss */
	assert_int_equal(in.reg, SH_SS);
	assert_int_equal(in.rm, 8);
	in = D64(0x44, 0x8e, 0xd8); /* REX.R is ignored for Sreg */
	assert_int_equal(in.reg, SH_DS);
	in = D64(0x8e, 0x18); /* mov (%rax),%ds */
	assert_true(in.mem);
	assert_int_equal(in.reg, SH_DS);
	assert_int_equal(in.base, 0);
	in = D64(0x8e, 0x55, 0xf8); /* mov -0x8(%rbp),%ss */
	assert_int_equal(in.reg, SH_SS);
	assert_int_equal(in.disp, -8);
	in = D64(0x8e, 0x15, 0x10, 0x00, 0x00, 0x00); /* mov 0x10(%rip),%ss */
	assert_true(in.rip_relative);
	all_forms(BYTES(0x8e), SH_SS, SH_OP_MOV_TO_SEG);
}

/* CS and the non-existent Sreg 6 and 7 are #UD for mov Sreg: never a segment load. */
static void test_mov_sreg_invalid(void **state)
{
	static const uint8_t modrm[] = {0xc8, 0xf0, 0xf8, 0x08, 0x30};

	(void)state;
	for (int m = 0; m < 2; m++) {
		for (size_t i = 0; i < sizeof(modrm); i++) {
			uint8_t b[] = {0x8e, modrm[i]};
			struct sh_insn in;

			if (sh_decode(b, sizeof(b), m == 0, true, &in) == 0)
				assert_int_not_equal(in.op, SH_OP_MOV_TO_SEG);
		}
	}
}

static void test_pop_seg(void **state)
{
	static const struct {
		uint8_t op;
		int seg;
	} c[] = {{0x07, SH_ES}, {0x17, SH_SS}, {0x1f, SH_DS}};
	struct sh_insn in;

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		uint8_t b[2] = {0x66, c[i].op};

		in = dec(M32, b + 1, 1);
		assert_int_equal(in.op, SH_OP_POP_SEG);
		assert_int_equal(in.reg, c[i].seg);
		assert_int_equal(in.opsize, 4);
		in = dec(M32, b, 2);
		assert_int_equal(in.op, SH_OP_POP_SEG);
		assert_int_equal(in.opsize, 2);
		/* Invalid in 64-bit mode. */
		if (sh_decode(b + 1, 1, true, true, &in) == 0)
			assert_int_not_equal(in.op, SH_OP_POP_SEG);
	}
	in = D32(0x0f, 0xa1); /* pop %fs */
	assert_int_equal(in.op, SH_OP_POP_SEG);
	assert_int_equal(in.reg, SH_FS);
	assert_int_equal(in.opsize, 4);
	in = D32(0x0f, 0xa9); /* pop %gs */
	assert_int_equal(in.reg, SH_GS);
	in = D32(0x66, 0x0f, 0xa9); /* popw %gs */
	assert_int_equal(in.opsize, 2);
	in = D64(0x0f, 0xa1);
	assert_int_equal(in.op, SH_OP_POP_SEG);
	assert_int_equal(in.reg, SH_FS);
	in = D64(0x0f, 0xa9);
	assert_int_equal(in.op, SH_OP_POP_SEG);
	assert_int_equal(in.reg, SH_GS);
	in = D64(0x66, 0x0f, 0xa9); /* popw %gs */
	assert_int_equal(in.opsize, 2);
}

/* In 64-bit mode pop %fs / pop %gs pop 8 bytes (the default stack operand size is 64
 * bits; 66 makes it 16; there is no 32-bit form). The engine pops in.opsize bytes. */
static void test_pop_fs_gs_64bit_size(void **state)
{
	struct sh_insn in;

	(void)state;
	in = D64(0x0f, 0xa1); /* pop %fs */
	assert_int_equal(in.opsize, 8);
	in = D64(0x48, 0x0f, 0xa9); /* rex.W pop %gs */
	assert_int_equal(in.opsize, 8);
	in = D64(0x0f, 0xa9); /* pop %gs */
	assert_int_equal(in.opsize, 8);
}

/* swapgs exists in 64-bit mode only (#UD elsewhere). */
static void test_swapgs_32bit(void **state)
{
	uint8_t b[] = {0x0f, 0x01, 0xf8};
	struct sh_insn in;

	(void)state;
	if (sh_decode(b, sizeof(b), false, true, &in) == 0)
		assert_int_not_equal(in.op, SH_OP_SWAPGS);
}

/* ---- plain stores (emulated when they hit a guest page table) ------------------------- */

static void test_mov_store(void **state)
{
	struct sh_insn in;

	(void)state;
	in = D64(0x48, 0x89, 0x07); /* mov %rax,(%rdi) */
	assert_int_equal(in.op, SH_OP_MOV_STORE);
	assert_int_equal(in.opsize, 8);
	assert_int_equal(in.reg, 0);
	assert_int_equal(in.base, 7);
	in = D64(0x89, 0x07); /* mov %eax,(%rdi) */
	assert_int_equal(in.op, SH_OP_MOV_STORE);
	assert_int_equal(in.opsize, 4);
	in = D64(0x66, 0x89, 0x07); /* mov %ax,(%rdi) */
	assert_int_equal(in.opsize, 2);
	in = D64(0x4c, 0x89, 0x07); /* mov %r8,(%rdi) */
	assert_int_equal(in.reg, 8);
	in = D64(0x48, 0x89, 0x04, 0xc8); /* mov %rax,(%rax,%rcx,8) */
	assert_int_equal(in.index, 1);
	assert_int_equal(in.scale, 8);
	in = D64(0x65, 0x48, 0x89, 0x53, 0x18); /* mov %rdx,%gs:0x18(%rbx) */
	assert_int_equal(in.op, SH_OP_MOV_STORE);
	assert_int_equal(in.seg, SH_GS);
	assert_int_equal(in.reg, 2);
	assert_int_equal(in.disp, 0x18);
	in = D64(0x48, 0xc7, 0x07, 0x78, 0x56, 0x34, 0x12); /* movq $0x12345678,(%rdi) */
	assert_int_equal(in.op, SH_OP_MOV_STORE_IMM);
	assert_int_equal(in.opsize, 8);
	assert_int_equal(in.imm, 0x12345678);
	in = D64(0x48, 0xc7, 0x07, 0x00, 0x00, 0x00, 0x80); /* sign-extended to 64 bits */
	assert_int_equal(in.imm, 0xffffffff80000000ULL);
	in = D64(0xc7, 0x07, 0x01, 0x00, 0x00, 0x00); /* movl $0x1,(%rdi) */
	assert_int_equal(in.op, SH_OP_MOV_STORE_IMM);
	assert_int_equal(in.opsize, 4);
	assert_int_equal(in.imm & 0xffffffff, 1);
	in = D64(0x66, 0xc7, 0x07, 0x34, 0x12); /* movw $0x1234,(%rdi): a 16-bit immediate */
	assert_int_equal(in.opsize, 2);
	assert_int_equal(in.imm & 0xffff, 0x1234);
	/* movq $0x1,0x10(%rip): the displacement is relative to the end, after the imm32 */
	in = D64(0x48, 0xc7, 0x05, 0x10, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00);
	assert_true(in.rip_relative);
	assert_int_equal(in.disp, 0x10);
	assert_int_equal(in.imm, 1);
	in = D64(0x49, 0xc7, 0x44, 0x24, 0x08, 0x63, 0x00, 0x00, 0x00); /* movq $0x63,0x8(%r12) */
	assert_int_equal(in.base, 12);
	assert_int_equal(in.disp, 8);
	assert_int_equal(in.imm, 0x63);
	in = D32(0x89, 0x03); /* mov %eax,(%ebx) */
	assert_int_equal(in.op, SH_OP_MOV_STORE);
	assert_int_equal(in.base, 3);
	in = D32(0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0x03, 0x20, 0x00,
	         0x00); /* movl $0x2003,0x1000 */
	assert_int_equal(in.op, SH_OP_MOV_STORE_IMM);
	assert_int_equal(in.base, -1);
	assert_int_equal(in.imm, 0x2003);
	/* Register destinations are not stores. */
	{
		uint8_t rr[] = {0x48, 0x89, 0xc7};                   /* mov %rax,%rdi */
		uint8_t ri[] = {0x48, 0xc7, 0xc0, 1, 0, 0, 0};       /* mov $1,%rax */
		uint8_t xb[] = {0xc7, 0xf8, 0x10, 0x00, 0x00, 0x00}; /* xbegin */

		assert_int_equal(sh_decode(rr, sizeof(rr), true, true, &in), 0);
		assert_int_equal(in.op, SH_OP_OTHER);
		assert_int_equal(sh_decode(ri, sizeof(ri), true, true, &in), 0);
		assert_int_equal(in.op, SH_OP_OTHER);
		assert_int_equal(sh_decode(xb, sizeof(xb), true, true, &in), 0);
		assert_int_equal(in.op, SH_OP_OTHER);
		assert_int_equal(in.len, 6); /* its rel32 too */
	}
}

/* ---- the moves drivers reach device registers with (MMIO) --------------------------------- */

/* Every ModRM form of a move, with no prefix, GS, FS, CS and 66, in 64- and 32-bit code; then
 * REX.R and REX.W. `access`: bytes in memory (0: the operand size); `imm`: immediate bytes
 * after the operand (-1: 2 or 4 by operand size). */
static void move_forms(const uint8_t *opc, size_t no, unsigned reg, enum sh_op op, unsigned access,
                       int imm, bool only64)
{
	static const uint8_t prefixes[][1] = {{0}, {0x65}, {0x64}, {0x2e}, {0x66}};
	static const int segs[] = {-1, SH_GS, SH_FS, SH_CS, -1};

	for (unsigned p = 0; p < 5; p++) {
		size_t np = p == 0 ? 0 : 1;

		for (int m = 0; m < 2; m++) {
			const struct form *forms = m == 0 ? forms64 : forms32;
			size_t nforms = m == 0 ? sizeof(forms64) / sizeof(forms64[0])
			                       : sizeof(forms32) / sizeof(forms32[0]);

			for (size_t i = 0; i < nforms; i++) {
				uint8_t b[24];
				size_t n = encode(b, prefixes[p], np, opc, no, reg, &forms[i]);
				unsigned opsize = p == 4 ? 2 : 4;
				int k = imm < 0 ? (int)opsize : imm;
				struct sh_insn in;

				for (int j = 0; j < k; j++)
					b[n++] = (uint8_t)(0x81 +
					                   j); /* negative: sign extension shows */
				if (n > 15)
					continue;
				if (m == 1 && only64) {
					assert_int_equal(sh_decode(b, n, false, true, &in), 0);
					assert_int_equal(in.op, SH_OP_OTHER);
					continue;
				}
				in = dec(m == 0, b, n);
				assert_int_equal(in.op, op);
				assert_int_equal(in.reg & 7, reg & 7);
				check_form(&in, &forms[i], m == 0);
				assert_int_equal(in.seg, segs[p]);
				assert_int_equal(in.opsize, opsize);
				assert_int_equal(in.access_size, access ? access : opsize);
				if (k == 1)
					assert_int_equal(in.imm, 0xffffffffffffff81ULL);
				else if (k == 2)
					assert_int_equal(in.imm, 0xffffffffffff8281ULL);
				else if (k == 4)
					assert_int_equal(in.imm, 0xffffffff84838281ULL);
			}
		}
	}
	/* REX.R: another register; REX.W: 64-bit operand (and access, unless fixed) */
	{
		uint8_t b[16];
		size_t n = encode(b, b, 0, opc, no, reg | 8, &forms64[0]);
		struct sh_insn in;

		for (int j = 0; j < (imm < 0 ? 4 : imm); j++)
			b[n++] = 0x7f;
		in = dec(M64, b, n);
		assert_int_equal(in.op, op);
		assert_int_equal(in.reg, reg | 8);
		assert_int_equal(in.rex, 0x44);
		b[0] |= 0x08;
		in = dec(M64, b, n);
		assert_int_equal(in.op, op);
		assert_int_equal(in.opsize, 8);
		assert_int_equal(in.access_size, access ? access : 8);
		if (imm)
			assert_int_equal(in.imm, imm == 1 ? 0x7f : 0x7f7f7f7f);
	}
}

static void test_mmio_move_forms(void **state)
{
	(void)state;
	move_forms(BYTES(0x88), 3, SH_OP_MOV_STORE, 1, 0, false);
	move_forms(BYTES(0x89), 5, SH_OP_MOV_STORE, 0, 0, false);
	move_forms(BYTES(0x8a), 6, SH_OP_MOV_LOAD, 1, 0, false);
	move_forms(BYTES(0x8b), 1, SH_OP_MOV_LOAD, 0, 0, false);
	move_forms(BYTES(0x0f, 0xb6), 2, SH_OP_MOVZX, 1, 0, false);
	move_forms(BYTES(0x0f, 0xb7), 0, SH_OP_MOVZX, 2, 0, false);
	move_forms(BYTES(0x0f, 0xbe), 7, SH_OP_MOVSX, 1, 0, false);
	move_forms(BYTES(0x0f, 0xbf), 4, SH_OP_MOVSX, 2, 0, false);
	move_forms(BYTES(0xc6), 0, SH_OP_MOV_STORE_IMM, 1, 1, false);
	move_forms(BYTES(0xc7), 0, SH_OP_MOV_STORE_IMM, 0, -1, false);
}

/* movsxd (63) exists in 64-bit code only (in 32-bit code it is arpl). */
static void test_mmio_movsxd(void **state)
{
	struct sh_insn in;
	uint8_t arpl[] = {0x63, 0x03}; /* arpl %ax,(%ebx) */

	(void)state;
	in = D64(0x48, 0x63, 0x02); /* movslq (%rdx),%rax */
	assert_int_equal(in.op, SH_OP_MOVSX);
	assert_int_equal(in.opsize, 8);
	assert_int_equal(in.access_size, 4);
	assert_int_equal(in.base, 2);
	in = D64(0x63, 0x02); /* movsxd without REX.W: a 32-bit move */
	assert_int_equal(in.access_size, 4);
	assert_int_equal(in.opsize, 4);
	in = D64(0x66, 0x63, 0x02);
	assert_int_equal(in.access_size, 2);
	in = D32(0x63, 0x03);
	assert_int_equal(in.op, SH_OP_OTHER);
	assert_int_equal(sh_decode(arpl, 1, false, true, &in), -1); /* its ModRM is needed */
}

/* Spot checks against the assembler's bytes. */
static void test_mmio_moves_as(void **state)
{
	struct sh_insn in;

	(void)state;
	in = D64(0x88, 0x07); /* mov %al,(%rdi) */
	assert_int_equal(in.op, SH_OP_MOV_STORE);
	assert_int_equal(in.access_size, 1);
	assert_int_equal(in.reg, 0);
	in = D64(0x88, 0x23); /* mov %ah,(%rbx): reg 4, no REX */
	assert_int_equal(in.reg, 4);
	assert_int_equal(in.rex, 0);
	in = D64(0x40, 0x88, 0x33); /* mov %sil,(%rbx): reg 6 with an empty REX */
	assert_int_equal(in.reg, 6);
	assert_int_equal(in.rex, 0x40);
	in = D64(0x44, 0x8a, 0x08); /* mov (%rax),%r9b */
	assert_int_equal(in.op, SH_OP_MOV_LOAD);
	assert_int_equal(in.reg, 9);
	assert_int_equal(in.access_size, 1);
	in = D64(0x8a, 0x39); /* mov (%rcx),%bh */
	assert_int_equal(in.reg, 7);
	in = D64(0x4e, 0x8b, 0x94, 0xa8, 0x78, 0x56, 0x34,
	         0x12); /* mov 0x12345678(%rax,%r13,4),%r10 */
	assert_int_equal(in.op, SH_OP_MOV_LOAD);
	assert_int_equal(in.reg, 10);
	assert_int_equal(in.index, 13);
	assert_int_equal(in.access_size, 8);
	in = D64(0x66, 0x44, 0x89, 0x7d, 0xf8); /* mov %r15w,-0x8(%rbp) */
	assert_int_equal(in.op, SH_OP_MOV_STORE);
	assert_int_equal(in.reg, 15);
	assert_int_equal(in.access_size, 2);
	in = D64(0x0f, 0xb6, 0x05, 0x10, 0x00, 0x00, 0x00); /* movzbl 0x10(%rip),%eax */
	assert_int_equal(in.op, SH_OP_MOVZX);
	assert_true(in.rip_relative);
	assert_int_equal(in.disp, 0x10);
	assert_int_equal(in.opsize, 4);
	in = D64(0x4c, 0x0f, 0xb7, 0x20); /* movzwq (%rax),%r12 */
	assert_int_equal(in.reg, 12);
	assert_int_equal(in.opsize, 8);
	assert_int_equal(in.access_size, 2);
	in = D64(0x66, 0x0f, 0xbe, 0x01); /* movsbw (%rcx),%ax */
	assert_int_equal(in.op, SH_OP_MOVSX);
	assert_int_equal(in.opsize, 2);
	assert_int_equal(in.access_size, 1);
	in = D64(0x65, 0x0f, 0xbf, 0x14, 0x25, 0x18, 0x00, 0x00, 0x00); /* movswl %gs:0x18,%edx */
	assert_int_equal(in.seg, SH_GS);
	assert_int_equal(in.base, -1);
	assert_int_equal(in.disp, 0x18);
	in = D64(0x4c, 0x0f, 0xbe, 0x46, 0x01); /* movsbq 0x1(%rsi),%r8 */
	assert_int_equal(in.reg, 8);
	assert_int_equal(in.opsize, 8);
	/* mov moffs: an 8-byte offset in 64-bit code, 4 with 67 and in 32-bit code */
	in = D64(0xa1, 0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34,
	         0x12); /* movabs 0x123456789abcdef0,%eax */
	assert_int_equal(in.op, SH_OP_MOV_LOAD);
	assert_int_equal(in.reg, 0);
	assert_int_equal(in.access_size, 4);
	assert_int_equal(in.disp, 0x123456789abcdef0LL);
	assert_true(in.mem);
	assert_int_equal(in.base, -1);
	assert_int_equal(in.index, -1);
	assert_false(in.rip_relative);
	in = D64(0xa2, 0x00, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00); /* movabs %al,0xfee00000 */
	assert_int_equal(in.op, SH_OP_MOV_STORE);
	assert_int_equal(in.access_size, 1);
	assert_int_equal(in.disp, 0xfee00000LL);
	in = D64(0x48, 0xa1, 0x30, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00,
	         0x00); /* movabs 0xfee00030,%rax */
	assert_int_equal(in.access_size, 8);
	in = D64(0x67, 0xa1, 0x00, 0x10, 0x00, 0x00); /* addr32 mov 0x1000,%eax */
	assert_int_equal(in.addrsize, 4);
	assert_int_equal(in.disp, 0x1000);
	in = D64(0x64, 0x89, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00); /* mov %eax,%fs:0x10 */
	assert_int_equal(in.seg, SH_FS);
	in = D64(0xc6, 0x00, 0x05); /* movb $0x5,(%rax) */
	assert_int_equal(in.op, SH_OP_MOV_STORE_IMM);
	assert_int_equal(in.access_size, 1);
	assert_int_equal(in.imm, 5);
	in = D64(0x66, 0xc7, 0x00, 0xff, 0x00); /* movw $0xff,(%rax) */
	assert_int_equal(in.access_size, 2);
	assert_int_equal(in.imm, 0xff);
	in = D64(0x48, 0xc7, 0x44, 0x24, 0x08, 0xff, 0xff, 0xff, 0xff); /* movq $-1,0x8(%rsp) */
	assert_int_equal(in.access_size, 8);
	assert_int_equal(in.imm, ~0ULL);
	in = D64(0x65, 0x41, 0xc6, 0x03, 0x80); /* movb $0x80,%gs:(%r11) */
	assert_int_equal(in.base, 11);
	assert_int_equal(in.seg, SH_GS);
	assert_int_equal(in.imm & 0xff, 0x80);
	/* 32-bit code */
	in = D32(0xa1, 0xb0, 0x00, 0xe0, 0xfe); /* mov 0xfee000b0,%eax */
	assert_int_equal(in.op, SH_OP_MOV_LOAD);
	assert_int_equal((uint32_t)in.disp, 0xfee000b0);
	assert_int_equal(in.addrsize, 4);
	in = D32(0xa3, 0xb0, 0x00, 0xe0, 0xfe); /* mov %eax,0xfee000b0 */
	assert_int_equal(in.op, SH_OP_MOV_STORE);
	assert_int_equal(in.access_size, 4);
	in = D32(0xa2, 0xb0, 0x00, 0xe0, 0xfe); /* mov %al,0xfee000b0 */
	assert_int_equal(in.access_size, 1);
	in = D32(0x64, 0xa1, 0x04, 0x00, 0x00, 0x00); /* mov %fs:0x4,%eax */
	assert_int_equal(in.seg, SH_FS);
	assert_int_equal(in.disp, 4);
	in = D32(0xc6, 0x00, 0x01); /* movb $0x1,(%eax) */
	assert_int_equal(in.op, SH_OP_MOV_STORE_IMM);
	in = D32(0x0f, 0xb6, 0x03); /* movzbl (%ebx),%eax */
	assert_int_equal(in.op, SH_OP_MOVZX);
	in = D32(0x0f, 0xbf, 0x7c, 0x51, 0x02); /* movswl 0x2(%ecx,%edx,2),%edi */
	assert_int_equal(in.op, SH_OP_MOVSX);
	assert_int_equal(in.reg, 7);
	assert_int_equal(in.index, 2);
	in = D32(0x88, 0x36); /* mov %dh,(%esi) */
	assert_int_equal(in.reg, 6);
	in = D32(0x8a, 0x2f); /* mov (%edi),%ch */
	assert_int_equal(in.reg, 5);
	/* c6 and c7 other than /0 with memory are not moves, and keep their immediate */
	{
		uint8_t b[] = {0xc6, 0x08, 0x05, 0x90}; /* c6 /1: invalid */

		assert_int_equal(sh_decode(b, sizeof(b), true, true, &in), 0);
		assert_int_equal(in.op, SH_OP_OTHER);
		assert_int_equal(in.len, 3);
		assert_int_equal(in.access_size, 0);
	}
	/* a 16-bit address in 32-bit code: refused */
	{
		uint8_t b[] = {0x67, 0xa1, 0x00, 0x10};

		assert_int_equal(sh_decode(b, sizeof(b), false, true, &in), -1);
	}
}

/* ---- prefixes ------------------------------------------------------------------------- */

static void test_prefixes(void **state)
{
	static const struct {
		uint8_t b;
		int seg;
	} segs[] = {{0x26, SH_ES}, {0x2e, SH_CS}, {0x36, SH_SS},
	            {0x3e, SH_DS}, {0x64, SH_FS}, {0x65, SH_GS}};
	struct sh_insn in;

	(void)state;
	for (size_t i = 0; i < 6; i++) {
		for (int m = 0; m < 2; m++) {
			uint8_t b[] = {segs[i].b, 0x0f, 0x01, 0x10}; /* lgdt %seg:(%rax) */

			in = dec(m == 0, b, sizeof(b));
			assert_int_equal(in.op, SH_OP_LGDT);
			assert_int_equal(in.seg, segs[i].seg);
		}
	}
	/* The last segment override counts. */
	in = D64(0x2e, 0x65, 0x0f, 0x01, 0x18);
	assert_int_equal(in.seg, SH_GS);
	in = D64(0x65, 0x64, 0x0f, 0x01, 0x18);
	assert_int_equal(in.seg, SH_FS);
	/* lock, rep, 66, 67, segment and REX together */
	in = D64(0xf0, 0x0f, 0x01, 0x10);
	assert_true(in.lock);
	assert_int_equal(in.op, SH_OP_LGDT);
	in = D64(0xf3, 0x66, 0x67, 0x65, 0xf0, 0x48, 0x0f, 0x01, 0x54, 0x88, 0x10);
	assert_int_equal(in.op, SH_OP_LGDT);
	assert_true(in.rep);
	assert_true(in.lock);
	assert_int_equal(in.seg, SH_GS);
	assert_int_equal(in.addrsize, 4);
	assert_int_equal(in.opsize, 8);
	assert_int_equal(in.rex, 0x48);
	assert_int_equal(in.base, 0);
	assert_int_equal(in.index, 1);
	assert_int_equal(in.scale, 4);
	assert_int_equal(in.disp, 0x10);
	in = D64(0x66, 0x2e, 0x0f, 0x01, 0x15, 0x00, 0x00, 0x00, 0x00);
	assert_int_equal(in.opsize, 2);
	assert_int_equal(in.seg, SH_CS);
	assert_true(in.rip_relative);
	in = D64(0x40, 0xfa); /* an empty REX */
	assert_int_equal(in.op, SH_OP_CLI);
	assert_int_equal(in.rex, 0x40);
	in = D64(0x3e, 0x66, 0xe7, 0x70); /* ignored prefixes on out */
	assert_int_equal(in.op, SH_OP_OUT);
	assert_int_equal(in.io_size, 2);
	in = D32(0x66, 0x3e, 0x0f, 0x01, 0x15, 0x00, 0x10, 0x00, 0x00);
	assert_int_equal(in.op, SH_OP_LGDT);
	assert_int_equal(in.opsize, 2);
	assert_int_equal(in.seg, SH_DS);
	in = D32(0xf0, 0xf3, 0x2e, 0xfa);
	assert_int_equal(in.op, SH_OP_CLI);
	/* In 32-bit code 40-4f are inc/dec, not REX. */
	in = D32(0x48);
	assert_int_equal(in.op, SH_OP_OTHER);
	{
		uint8_t b[] = {0x44, 0x0f, 0x22, 0xc0};

		assert_int_equal(sh_decode(b, sizeof(b), false, true, &in), 0);
		assert_int_equal(in.len, 1);
		assert_int_equal(in.op, SH_OP_OTHER);
		assert_int_equal(sh_decode(b + 1, 3, false, true, &in), 0);
		assert_int_equal(in.op, SH_OP_MOV_TO_CR);
		assert_int_equal(in.reg, 0);
	}
}

/* A REX prefix is only one when it comes last, right before the opcode; followed by a
 * legacy prefix it is ignored (SDM 2.2.1) and the instruction goes on. */
static void test_rex_before_legacy_prefix(void **state)
{
	struct sh_insn in;
	uint8_t iret[] = {0x48, 0x66, 0xcf};             /* iretw, REX ignored */
	uint8_t lgdt[] = {0x41, 0x2e, 0x0f, 0x01, 0x10}; /* lgdt %cs:(%rax), not (%r8) */

	(void)state;
	assert_int_equal(sh_decode(iret, sizeof(iret), true, true, &in), 0);
	assert_int_equal(in.op, SH_OP_IRET);
	assert_int_equal(in.len, 3);
	assert_int_equal(in.opsize, 2);
	assert_int_equal(sh_decode(lgdt, sizeof(lgdt), true, true, &in), 0);
	assert_int_equal(in.op, SH_OP_LGDT);
	assert_int_equal(in.len, 5);
	assert_int_equal(in.base, 0);
}

/* ---- limits and refusals -------------------------------------------------------------- */

static void test_length_limit(void **state)
{
	/* lgdt 0x12345678(%rax,%rcx,8) with REX: 9 bytes, so 6 prefixes make 15. */
	static const uint8_t insn[] = {0x48, 0x0f, 0x01, 0x94, 0xc8, 0x78, 0x56, 0x34, 0x12};
	static const uint8_t pfx[] = {0x2e, 0x3e, 0x66, 0xf3, 0x26, 0x65, 0x67, 0x64};
	uint8_t b[32];
	struct sh_insn in;

	(void)state;
	for (size_t np = 0; np <= 8; np++) {
		size_t n = np + sizeof(insn);

		memcpy(b, pfx, np);
		memcpy(b + np, insn, sizeof(insn));
		memset(b + n, 0x90, sizeof(b) - n);
		if (n <= 15) {
			in = dec(M64, b, n);
			assert_int_equal(in.op, SH_OP_LGDT);
			assert_int_equal(sh_decode(b, sizeof(b), true, true, &in), 0);
			assert_int_equal(in.len, n);
		} else {
			assert_int_equal(sh_decode(b, n, true, true, &in), -1);
			assert_int_equal(sh_decode(b, sizeof(b), true, true, &in), -1);
		}
	}
	/* 14 prefixes + a 1-byte instruction: 15, fine; 15 prefixes: too long. */
	memset(b, 0x3e, sizeof(b));
	b[14] = 0xfa;
	in = dec(M64, b, 15);
	assert_int_equal(in.op, SH_OP_CLI);
	in = dec(M32, b, 15);
	assert_int_equal(in.op, SH_OP_CLI);
	b[14] = 0x3e;
	b[15] = 0xfa;
	assert_int_equal(sh_decode(b, 16, true, true, &in), -1);
	assert_int_equal(sh_decode(b, 16, false, true, &in), -1);
	assert_int_equal(sh_decode(b, sizeof(b), true, true, &in), -1);
	/* Prefixes only, of any length. */
	for (size_t n = 0; n <= sizeof(b); n++) {
		memset(b, 0x66, sizeof(b));
		assert_int_equal(sh_decode(b, n, true, true, &in), -1);
	}
}

static void test_16bit_refused(void **state)
{
	static const uint8_t insns[][4] = {
	    {0xfa}, {0xf4}, {0x0f, 0x01, 0x10}, {0xcf}, {0x0f, 0x22, 0xd8}, {0xcd, 0x10},
	};
	struct sh_insn in;

	(void)state;
	for (size_t i = 0; i < sizeof(insns) / sizeof(insns[0]); i++)
		assert_int_equal(sh_decode(insns[i], 4, false, false, &in), -1);
	/* 16-bit addressing in 32-bit code */
	{
		uint8_t b[] = {0x67, 0x0f, 0x01, 0x17}; /* lgdt (%bx) */

		assert_int_equal(sh_decode(b, sizeof(b), false, true, &in), -1);
	}
}

/* Ordinary instructions compilers emit: SH_OP_OTHER (or refused), never a privileged op. */
static void test_other_instructions(void **state)
{
	static const struct {
		uint8_t b[12];
		size_t n;
	} c[] = {
	    {{0x90}, 1},
	    {{0x48, 0x89, 0xe5}, 3},                      /* mov %rsp,%rbp */
	    {{0x55}, 1},                                  /* push %rbp */
	    {{0xc3}, 1},                                  /* ret */
	    {{0xe8, 0x00, 0x00, 0x00, 0x00}, 5},          /* call */
	    {{0xff, 0x15, 0x00, 0x00, 0x00, 0x00}, 6},    /* call *0x0(%rip) */
	    {{0x0f, 0x1f, 0x44, 0x00, 0x00}, 5},          /* nopl 0x0(%rax,%rax,1) */
	    {{0x66, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0}, 9}, /* nopw */
	    {{0xf3, 0x0f, 0x1e, 0xfa}, 4},                /* endbr64 */
	    {{0x0f, 0x01, 0xd0}, 3},                      /* xgetbv */
	    {{0x0f, 0x01, 0xca}, 3},                      /* clac */
	    {{0x0f, 0x01, 0xcb}, 3},                      /* stac */
	    {{0x0f, 0x01, 0xc1}, 3},                      /* vmcall */
	    {{0x0f, 0x01, 0xee}, 3},                      /* rdpkru */
	    {{0x0f, 0xae, 0xf0}, 3},                      /* mfence */
	    {{0x0f, 0x00, 0xe0}, 3},                      /* verr %ax */
	    {{0xc5, 0xf8, 0x77}, 3},                      /* vzeroupper */
	    {{0x48, 0x8b, 0xc3}, 3},                      /* mov %rbx,%rax */
	    {{0x0f, 0xb6, 0xc1}, 3},                      /* movzbl %cl,%eax */
	    {{0x48, 0x63, 0xc7}, 3},                      /* movslq %edi,%rax */
	    {{0xc6, 0xc0, 0x05}, 3},                      /* mov $0x5,%al */
	    {{0x88, 0xe0}, 2},                            /* mov %ah,%al */
	    {{0x87, 0xd8}, 2},                            /* xchg %ebx,%eax */
	    {{0x0f, 0xb1, 0xd8}, 3},                      /* cmpxchg %ebx,%eax */
	    {{0x0f, 0xa3, 0x03}, 3},                      /* bt %eax,(%rbx) */
	    {{0xd1, 0x23}, 2},                            /* shll (%rbx) */
	    {{0x8c, 0xd0}, 2},                            /* mov %ss,%eax */
	    {{0x0e}, 1},                                  /* push %cs (32-bit) */
	    {{0x16}, 1},                                  /* push %ss (32-bit) */
	    {{0x0f, 0xa0}, 2},                            /* push %fs */
	    {{0x0f, 0x0d, 0x08}, 3},                      /* prefetchw (%rax) */
	};
	struct sh_insn in;

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		for (int m = 0; m < 2; m++)
			if (sh_decode(c[i].b, c[i].n, m == 0, true, &in) == 0) {
				assert_int_equal(in.op, SH_OP_OTHER);
				assert_true(in.len >= 1 && in.len <= c[i].n);
			}
}

/* The string moves and the atomics with a memory operand: which, the element or operand
 * size, the prefixes. */
static void test_strings_and_atomics(void **state)
{
	static const struct {
		uint8_t b[8];
		size_t n;
		enum sh_op op;
		uint8_t size, addrsize;
		bool rep, lock;
	} c[] = {
	    {{0xa4}, 1, SH_OP_MOVS, 1, 8, false, false},                     /* movsb */
	    {{0xf3, 0x48, 0xa5}, 3, SH_OP_MOVS, 8, 8, true, false},          /* rep movsq */
	    {{0x66, 0xa5}, 2, SH_OP_MOVS, 2, 8, false, false},               /* movsw */
	    {{0xf3, 0xaa}, 2, SH_OP_STOS, 1, 8, true, false},                /* rep stosb */
	    {{0x67, 0xf3, 0xab}, 3, SH_OP_STOS, 4, 4, true, false},          /* rep stosl (%edi) */
	    {{0xad}, 1, SH_OP_LODS, 4, 8, false, false},                     /* lodsl */
	    {{0xf2, 0xae}, 2, SH_OP_SCAS, 1, 8, true, false},                /* repne scasb */
	    {{0xf3, 0x48, 0xa7}, 3, SH_OP_CMPS, 8, 8, true, false},          /* repe cmpsq */
	    {{0xa6}, 1, SH_OP_CMPS, 1, 8, false, false},                     /* cmpsb */
	    {{0x86, 0x03}, 2, SH_OP_XCHG, 1, 8, false, false},               /* xchg %al,(%rbx) */
	    {{0x48, 0x87, 0x03}, 3, SH_OP_XCHG, 8, 8, false, false},         /* xchg %rax,(%rbx) */
	    {{0xf0, 0x0f, 0xb1, 0x0b}, 4, SH_OP_CMPXCHG, 4, 8, false, true}, /* lock cmpxchg */
	    {{0xf0, 0x0f, 0xb0, 0x0b}, 4, SH_OP_CMPXCHG, 1, 8, false, true}, /* ... byte */
	    {{0xf0, 0x66, 0x0f, 0xc1, 0x0b}, 5, SH_OP_XADD, 2, 8, false, true}, /* lock xadd */
	};
	struct sh_insn in;

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		assert_int_equal(sh_decode(c[i].b, c[i].n, true, true, &in), 0);
		assert_int_equal(in.op, c[i].op);
		assert_int_equal(in.len, c[i].n);
		assert_int_equal(in.access_size, c[i].size);
		assert_int_equal(in.addrsize, c[i].addrsize);
		assert_int_equal(in.rep, c[i].rep);
		assert_int_equal(in.lock, c[i].lock);
		assert_int_equal(in.mem, c[i].op == SH_OP_XCHG || c[i].op == SH_OP_CMPXCHG ||
		                             c[i].op == SH_OP_XADD);
	}
	/* repne and repe: the last of f2 and f3 counts, as on the CPU */
	assert_int_equal(sh_decode((const uint8_t[]){0xf2, 0xae}, 2, true, true, &in), 0);
	assert_true(in.rep && in.repne);
	assert_int_equal(sh_decode((const uint8_t[]){0xf3, 0xae}, 2, true, true, &in), 0);
	assert_true(in.rep && !in.repne);
	assert_int_equal(sh_decode((const uint8_t[]){0xf2, 0xf3, 0xa6}, 3, true, true, &in), 0);
	assert_true(in.rep && !in.repne);
	/* the register operand of xchg and xadd, with REX.R */
	assert_int_equal(sh_decode((const uint8_t[]){0x4c, 0x0f, 0xc1, 0x0b}, 4, true, true, &in),
	                 0);
	assert_int_equal(in.reg, 9);
	assert_int_equal(in.base, 3);
}

/* Direct far jumps and calls (ea, 9a): 32-bit code only, the pointer in imm and far_sel. */
static void test_direct_far_transfers(void **state)
{
	struct sh_insn in;

	(void)state;
	assert_int_equal(sh_decode((const uint8_t[]){0xea, 0x78, 0x56, 0x34, 0x12, 0x08, 0x00}, 7,
	                           false, true, &in),
	                 0);
	assert_int_equal(in.op, SH_OP_LJMP);
	assert_true(in.far_imm);
	assert_false(in.mem);
	assert_int_equal(in.imm, 0x12345678);
	assert_int_equal(in.far_sel, 0x08);
	assert_int_equal(in.len, 7);
	/* 66: ptr16:16 */
	assert_int_equal(
	    sh_decode((const uint8_t[]){0x66, 0x9a, 0x34, 0x12, 0x18, 0x00}, 6, false, true, &in),
	    0);
	assert_int_equal(in.op, SH_OP_LCALL);
	assert_int_equal(in.imm, 0x1234);
	assert_int_equal(in.far_sel, 0x18);
	assert_int_equal(in.len, 6);
	/* invalid in 64-bit code, cut off: an error */
	assert_int_equal(sh_decode((const uint8_t[]){0xea, 0x78, 0x56, 0x34, 0x12, 0x08, 0x00}, 7,
	                           true, true, &in),
	                 0);
	assert_int_equal(in.op, SH_OP_OTHER);
	assert_int_equal(
	    sh_decode((const uint8_t[]){0xea, 0x78, 0x56, 0x34, 0x12, 0x08}, 6, false, true, &in),
	    -1);
}

/* Random bytes: never a crash; on success a length within the input and 15, sane fields;
 * the same answer twice. */
static void test_garbage(void **state)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	uint8_t b[24];

	(void)state;
	for (int iter = 0; iter < 300000; iter++) {
		struct sh_insn in, again;
		size_t n;
		bool m64, d32;
		int r;

		for (size_t i = 0; i < sizeof(b); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			b[i] = (uint8_t)x;
			/* Bias towards the interesting bytes. */
			if ((x >> 40) % 4 == 0)
				b[i] =
				    (uint8_t[]){0x0f, 0x01, 0x66, 0x67, 0x48, 0x41,
				                0xf3, 0x8e, 0x22, 0x20, 0x00, 0xcf}[(x >> 48) % 12];
		}
		n = (size_t)((x >> 20) % 21);
		m64 = (x >> 30) & 1;
		d32 = (x >> 31) & 1;
		r = sh_decode(b, n, m64, d32, &in);
		assert_true(r == 0 || r == -1);
		assert_int_equal(sh_decode(b, n, m64, d32, &again), r);
		if (r < 0)
			continue;
		same(&in, &again);
		assert_true(in.len >= 1);
		assert_true(in.len <= n);
		assert_true(in.len <= 15);
		assert_true(in.op <= SH_OP_SCAS);
		assert_true(in.opsize == 2 || in.opsize == 4 || in.opsize == 8);
		assert_true(in.addrsize == 4 || in.addrsize == 8);
		assert_true(in.reg < 16 && in.rm < 16);
		assert_true(in.base >= -1 && in.base < 16);
		assert_true(in.index >= -1 && in.index < 16);
		assert_true(in.seg >= -1 && in.seg <= SH_GS);
		assert_true(in.io_size == 0 || in.io_size == 1 || in.io_size == 2 ||
		            in.io_size == 4);
		/* an access size for the moves and ALU operations (with a memory operand) only */
		if (in.op == SH_OP_ALU) {
			assert_true(in.mem);
			assert_true(in.alu <= SH_NEG);
			assert_true(in.access_size == 1 || in.access_size == in.opsize);
		} else if (in.op >= SH_OP_MOV_LOAD && in.op <= SH_OP_MOV_STORE_IMM) {
			assert_true(in.mem);
			assert_true(in.access_size == 1 || in.access_size == 2 ||
			            in.access_size == 4 || in.access_size == 8);
			if (in.op == SH_OP_MOVZX || in.op == SH_OP_MOVSX)
				assert_true(in.access_size <= in.opsize);
			else
				assert_true(in.access_size == 1 || in.access_size == in.opsize);
		} else if (in.op >= SH_OP_XCHG) {
			assert_true(in.op >= SH_OP_MOVS || in.mem);
			assert_true(in.op < SH_OP_MOVS || !in.mem);
			assert_true(in.access_size == 1 || in.access_size == in.opsize);
		} else {
			assert_int_equal(in.access_size, 0);
		}
		if (!m64) {
			assert_false(in.rip_relative);
			assert_int_equal(in.rex, 0);
			assert_true(d32);
		}
		/* The decoded bytes alone decode the same. */
		assert_int_equal(sh_decode(b, in.len, m64, d32, &again), 0);
		same(&in, &again);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_descriptor_tables),
	    cmocka_unit_test(test_descriptor_tables_as),
	    cmocka_unit_test(test_invlpg),
	    cmocka_unit_test(test_alu_forms),
	    cmocka_unit_test(test_mov_cr),
	    cmocka_unit_test(test_mov_cr_mod_ignored),
	    cmocka_unit_test(test_simple),
	    cmocka_unit_test(test_sys_sizes),
	    cmocka_unit_test(test_int),
	    cmocka_unit_test(test_lldt_ltr),
	    cmocka_unit_test(test_port_io),
	    cmocka_unit_test(test_string_io_prefixes),
	    cmocka_unit_test(test_iret_lret),
	    cmocka_unit_test(test_mov_sreg),
	    cmocka_unit_test(test_mov_sreg_invalid),
	    cmocka_unit_test(test_pop_seg),
	    cmocka_unit_test(test_pop_fs_gs_64bit_size),
	    cmocka_unit_test(test_swapgs_32bit),
	    cmocka_unit_test(test_mov_store),
	    cmocka_unit_test(test_mmio_move_forms),
	    cmocka_unit_test(test_mmio_movsxd),
	    cmocka_unit_test(test_mmio_moves_as),
	    cmocka_unit_test(test_prefixes),
	    cmocka_unit_test(test_rex_before_legacy_prefix),
	    cmocka_unit_test(test_length_limit),
	    cmocka_unit_test(test_16bit_refused),
	    cmocka_unit_test(test_other_instructions),
	    cmocka_unit_test(test_strings_and_atomics),
	    cmocka_unit_test(test_direct_far_transfers),
	    cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
