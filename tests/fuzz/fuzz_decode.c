/*
 * libFuzzer target: random bytes and mode flags into the shadow-mode instruction decoder
 * (vmm/shadow_decode.c). The first byte picks the mode (bit 0: 64-bit code, bit 1: 32-bit
 * defaults); the rest are the instruction bytes, copied into a buffer of exactly that size
 * so AddressSanitizer catches a read past n. Checked on every input:
 *   - the result is 0 or -1, and the same when decoding again (deterministic);
 *   - on success: 1 <= len <= 15, len <= n, and the first len bytes alone decode to the same
 *     instruction while len - 1 bytes do not (len is exact);
 *   - 16-bit code is always refused;
 *   - the fields stay in range (register numbers, sizes, segment).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/decode.h"

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_decode: %s\n", what);
		abort();
	}
}

static bool same(const struct sh_insn *a, const struct sh_insn *b)
{
	return a->op == b->op && a->len == b->len && a->opsize == b->opsize &&
	       a->addrsize == b->addrsize && a->rex == b->rex && a->seg == b->seg &&
	       a->rep == b->rep && a->lock == b->lock && a->has_modrm == b->has_modrm &&
	       a->mem == b->mem && a->mod == b->mod && a->reg == b->reg && a->rm == b->rm &&
	       a->base == b->base && a->index == b->index && a->scale == b->scale &&
	       a->disp == b->disp && a->rip_relative == b->rip_relative && a->imm == b->imm &&
	       a->io_size == b->io_size && a->io_port_imm == b->io_port_imm;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sh_insn a, b;
	bool m64, d32;
	uint8_t *buf;
	size_t n;
	int r;

	if (size < 1)
		return 0;
	m64 = data[0] & 1;
	d32 = data[0] & 2;
	n = size - 1;
	buf = malloc(n ? n : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, n);

	r = sh_decode(buf, n, m64, d32, &a);
	check(r == 0 || r == -1, "result neither 0 nor -1");
	check(sh_decode(buf, n, m64, d32, &b) == r, "not deterministic (result)");
	if (r == 0) {
		check(same(&a, &b), "not deterministic (fields)");
		check(a.len >= 1 && a.len <= 15, "len out of 1..15");
		check(a.len <= n, "len beyond the input");
		check(m64 || d32, "16-bit code accepted");
		check(sh_decode(buf, a.len, m64, d32, &b) == 0 && same(&a, &b),
		      "the first len bytes decode differently");
		check(sh_decode(buf, a.len - 1u, m64, d32, &b) == -1,
		      "len - 1 bytes still decode: len is not exact");
		check(a.op <= SH_OP_SCAS, "op out of range");
		check(a.op < SH_OP_XCHG || a.access_size == 1 || a.access_size == a.opsize,
		      "atomic or string operand size");
		check(a.op < SH_OP_XCHG || a.op > SH_OP_XADD || a.mem, "atomic without memory");
		check(a.op < SH_OP_MOVS || !a.mem, "string move with a ModRM operand");
		check(a.op != SH_OP_ALU || (a.mem && a.alu <= SH_NEG &&
		                            (a.access_size == 1 || a.access_size == a.opsize)),
		      "ALU operand");
		check(a.opsize == 2 || a.opsize == 4 || a.opsize == 8, "opsize");
		check(a.addrsize == 4 || a.addrsize == 8, "addrsize");
		check(m64 || (a.addrsize == 4 && a.rex == 0 && !a.rip_relative), "32-bit fields");
		check(a.reg < 16 && a.rm < 16, "register number");
		check(a.base >= -1 && a.base < 16 && a.index >= -1 && a.index < 16, "base/index");
		/* base, index and scale mean something only for a memory operand */
		check(!a.mem || a.index < 0 || a.scale == 1 || a.scale == 2 || a.scale == 4 ||
		          a.scale == 8,
		      "scale");
		check(a.seg >= -1 && a.seg <= SH_GS, "segment");
		check(a.io_size == 0 || a.io_size == 1 || a.io_size == 2 || a.io_size == 4,
		      "io_size");
		check(!a.mem || a.has_modrm, "memory operand without ModRM");
		check(!a.rip_relative || (a.mem && a.base < 0 && a.index < 0), "rip-relative");
		check(a.op != SH_OP_INT || a.imm < 256, "int vector");
		check(a.op != SH_OP_LRET || a.imm < 65536, "lret immediate");
	}
	free(buf);
	return 0;
}
