#include "decode.h"

#include <string.h>

#define MAX_INSN 15

struct cursor {
	const uint8_t *b;
	size_t n, pos;
	bool bad;
};

static uint8_t next(struct cursor *c)
{
	if (c->pos >= c->n || c->pos >= MAX_INSN) {
		c->bad = true;
		return 0;
	}
	return c->b[c->pos++];
}

static int64_t next_signed(struct cursor *c, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)next(c) << (8 * i);
	if (bytes < 8 && (v >> (8 * bytes - 1)) & 1)
		v |= ~0ULL << (8 * bytes);
	return (int64_t)v;
}

/* ModRM, SIB and displacement (32- and 64-bit addressing only). */
static void modrm(struct cursor *c, struct sh_insn *in, bool mode64)
{
	uint8_t m = next(c);

	in->has_modrm = true;
	in->mod = m >> 6;
	in->reg = ((m >> 3) & 7) | ((in->rex & 4) ? 8 : 0);
	in->rm = (m & 7) | ((in->rex & 1) ? 8 : 0);
	in->base = in->index = -1;
	if (in->mod == 3) {
		in->mem = false;
		return;
	}
	in->mem = true;
	if ((m & 7) == 4) { /* SIB */
		uint8_t sib = next(c);
		unsigned idx = ((sib >> 3) & 7) | ((in->rex & 2) ? 8 : 0);
		unsigned base = (sib & 7) | ((in->rex & 1) ? 8 : 0);

		in->scale = (uint8_t)(1u << (sib >> 6));
		if (idx != 4)
			in->index = (int)idx;
		if ((sib & 7) == 5 && in->mod == 0)
			in->disp = next_signed(c, 4);
		else
			in->base = (int)base;
	} else if ((m & 7) == 5 && in->mod == 0) {
		in->disp = next_signed(c, 4);
		in->rip_relative = mode64;
	} else {
		in->base = in->rm;
	}
	if (in->mod == 1)
		in->disp += next_signed(c, 1);
	else if (in->mod == 2)
		in->disp += next_signed(c, 4);
}

static int twobyte(struct cursor *c, struct sh_insn *in, bool mode64)
{
	uint8_t op = next(c);

	switch (op) {
	case 0x00:
		modrm(c, in, mode64);
		switch (in->reg & 7) {
		case 0:
			in->op = SH_OP_SLDT;
			break;
		case 1:
			in->op = SH_OP_STR;
			break;
		case 2:
			in->op = SH_OP_LLDT;
			break;
		case 3:
			in->op = SH_OP_LTR;
			break;
		default:
			in->op = SH_OP_OTHER;
			break;
		}
		return 0;
	case 0x01:
		modrm(c, in, mode64);
		if (in->mod == 3) {
			uint8_t sub = (uint8_t)(((in->reg & 7) << 3) | (in->rm & 7));

			switch (sub) {
			case 0x38:
				in->op = mode64 ? SH_OP_SWAPGS : SH_OP_OTHER;
				break;
			case 0x39:
				in->op = SH_OP_RDTSCP;
				break;
			case 0x11:
				in->op = SH_OP_XSETBV;
				break;
			case 0x08:
				in->op = SH_OP_MONITOR;
				break;
			case 0x09:
				in->op = SH_OP_MWAIT;
				break;
			default:
				if ((in->reg & 7) == 4)
					in->op = SH_OP_SMSW;
				else if ((in->reg & 7) == 6)
					in->op = SH_OP_LMSW;
				else
					in->op = SH_OP_OTHER;
			}
			return 0;
		}
		switch (in->reg & 7) {
		case 0:
			in->op = SH_OP_SGDT;
			break;
		case 1:
			in->op = SH_OP_SIDT;
			break;
		case 2:
			in->op = SH_OP_LGDT;
			break;
		case 3:
			in->op = SH_OP_LIDT;
			break;
		case 4:
			in->op = SH_OP_SMSW;
			break;
		case 6:
			in->op = SH_OP_LMSW;
			break;
		case 7:
			in->op = SH_OP_INVLPG;
			break;
		default:
			return -1;
		}
		return 0;
	case 0x05:
		in->op = mode64 ? SH_OP_SYSCALL : SH_OP_OTHER;
		return 0;
	case 0x06:
		in->op = SH_OP_CLTS;
		return 0;
	case 0x07:
		in->op = mode64 ? SH_OP_SYSRET : SH_OP_OTHER;
		return 0;
	case 0x08:
		in->op = SH_OP_INVD;
		return 0;
	case 0x09:
		in->op = SH_OP_WBINVD;
		return 0;
	case 0x0b:
		in->op = SH_OP_UD2;
		return 0;
	case 0x20:
	case 0x21:
	case 0x22:
	case 0x23: {
		/* mov to/from control and debug registers: ModRM is always a register form,
		 * whatever its mod field says (no SIB, no displacement). */
		uint8_t m = next(c);

		in->has_modrm = true;
		in->mod = 3;
		in->reg = ((m >> 3) & 7) | ((in->rex & 4) ? 8 : 0);
		in->rm = (m & 7) | ((in->rex & 1) ? 8 : 0);
		in->base = in->index = -1;
		in->mem = false;
		in->op = op == 0x20   ? SH_OP_MOV_FROM_CR
		         : op == 0x22 ? SH_OP_MOV_TO_CR
		         : op == 0x21 ? SH_OP_MOV_FROM_DR
		                      : SH_OP_MOV_TO_DR;
		in->opsize = mode64 ? 8 : 4;
		return 0;
	}
	case 0x30:
		in->op = SH_OP_WRMSR;
		return 0;
	case 0x31:
		in->op = SH_OP_RDTSC;
		return 0;
	case 0x32:
		in->op = SH_OP_RDMSR;
		return 0;
	case 0x33:
		in->op = SH_OP_RDPMC;
		return 0;
	case 0x34:
		in->op = SH_OP_SYSENTER;
		return 0;
	case 0x35:
		in->op = SH_OP_SYSEXIT;
		return 0;
	case 0xa1:
	case 0xa9:
		in->op = SH_OP_POP_SEG;
		in->reg = op == 0xa1 ? SH_FS : SH_GS;
		if (mode64 && in->opsize == 4)
			in->opsize = 8; /* stack operations default to 64 bits */
		return 0;
	case 0xa2:
		in->op = SH_OP_CPUID;
		return 0;
	case 0xb0:
	case 0xb1:
	case 0xc0:
	case 0xc1:
		modrm(c, in, mode64);
		if (in->mem) {
			in->op = op < 0xc0 ? SH_OP_CMPXCHG : SH_OP_XADD;
			in->access_size = (op & 1) ? in->opsize : 1;
		} else {
			in->op = SH_OP_OTHER;
		}
		return 0;
	case 0xb6:
	case 0xb7:
	case 0xbe:
	case 0xbf:
		modrm(c, in, mode64);
		if (in->mem) {
			in->op = op < 0xbe ? SH_OP_MOVZX : SH_OP_MOVSX;
			in->access_size = (op & 1) ? 2 : 1;
		} else {
			in->op = SH_OP_OTHER;
		}
		return 0;
	default:
		in->op = SH_OP_OTHER;
		return 0;
	}
}

static void alu(struct sh_insn *in, unsigned kind, unsigned size, bool to_reg)
{
	in->op = SH_OP_ALU;
	in->alu = (uint8_t)kind;
	in->access_size = (uint8_t)size;
	in->alu_to_reg = to_reg;
}

int sh_decode(const uint8_t *b, size_t n, bool mode64, bool def32, struct sh_insn *in)
{
	struct cursor c = {b, n, 0, false};
	bool opsize_prefix = false, addr_prefix = false;
	uint8_t op, size;

	memset(in, 0, sizeof(*in));
	in->seg = -1;
	/* Legacy prefixes, then REX (64-bit mode: it must come last). */
	for (;;) {
		op = next(&c);
		if (c.bad)
			return -1;
		switch (op) {
		case 0x66:
			opsize_prefix = true;
			continue;
		case 0x67:
			addr_prefix = true;
			continue;
		case 0xf0:
			in->lock = true;
			continue;
		case 0xf2:
		case 0xf3:
			in->rep = true;
			in->repne = op == 0xf2;
			continue;
		case 0x26:
			in->seg = SH_ES;
			continue;
		case 0x2e:
			in->seg = SH_CS;
			continue;
		case 0x36:
			in->seg = SH_SS;
			continue;
		case 0x3e:
			in->seg = SH_DS;
			continue;
		case 0x64:
			in->seg = SH_FS;
			continue;
		case 0x65:
			in->seg = SH_GS;
			continue;
		default:
			break;
		}
		if (mode64 && (op & 0xf0) == 0x40) {
			/* REX counts only right before the opcode: a later prefix cancels it. */
			uint8_t rex = op;

			op = next(&c);
			if (c.bad)
				return -1;
			if (op == 0x66 || op == 0x67 || op == 0xf0 || op == 0xf2 || op == 0xf3 ||
			    op == 0x26 || op == 0x2e || op == 0x36 || op == 0x3e || op == 0x64 ||
			    op == 0x65 || (op & 0xf0) == 0x40) {
				c.pos--;
				continue;
			}
			in->rex = rex;
		}
		break;
	}
	if (mode64) {
		in->addrsize = addr_prefix ? 4 : 8;
		in->opsize = (in->rex & 8) ? 8 : opsize_prefix ? 2 : 4;
	} else {
		if (!def32 || addr_prefix)
			return -1; /* 16-bit code and addressing are not supported */
		in->addrsize = 4;
		in->opsize = opsize_prefix ? 2 : 4;
	}

	switch (op) {
	case 0x0f:
		if (twobyte(&c, in, mode64))
			return -1;
		break;
	case 0xfa:
		in->op = SH_OP_CLI;
		break;
	case 0xfb:
		in->op = SH_OP_STI;
		break;
	case 0xf4:
		in->op = SH_OP_HLT;
		break;
	case 0x9c:
		in->op = SH_OP_PUSHF;
		break;
	case 0x9d:
		in->op = SH_OP_POPF;
		break;
	case 0xcc:
		in->op = SH_OP_INT3;
		break;
	case 0xcd:
		in->op = SH_OP_INT;
		in->imm = next(&c);
		break;
	case 0xce:
		in->op = mode64 ? SH_OP_OTHER : SH_OP_INTO;
		break;
	case 0xcf:
		in->op = SH_OP_IRET;
		break;
	case 0xca:
		in->op = SH_OP_LRET;
		in->imm = (uint64_t)next_signed(&c, 2) & 0xffff;
		break;
	case 0xcb:
		in->op = SH_OP_LRET;
		break;
	case 0xea:
	case 0x9a:
		/* jmp/call ptr16:32 (ptr16:16 with 66): invalid in 64-bit code (#UD) */
		if (mode64) {
			in->op = SH_OP_OTHER;
			break;
		}
		in->op = op == 0xea ? SH_OP_LJMP : SH_OP_LCALL;
		in->far_imm = true;
		in->imm = (uint64_t)next_signed(&c, in->opsize) &
		          (in->opsize == 4 ? 0xffffffffULL : 0xffffULL);
		in->far_sel = (uint16_t)next_signed(&c, 2);
		break;
	case 0xfe:
	case 0xff:
		modrm(&c, in, mode64);
		if (in->mem && op == 0xff && (in->reg & 7) == 5)
			in->op = SH_OP_LJMP;
		else if (in->mem && op == 0xff && (in->reg & 7) == 3)
			in->op = SH_OP_LCALL;
		else if (in->mem && (in->reg & 7) <= 1)
			alu(in, (in->reg & 7) ? SH_DEC : SH_INC, op == 0xfe ? 1 : in->opsize,
			    false);
		else
			in->op = SH_OP_OTHER;
		break;
	case 0x00:
	case 0x01:
	case 0x02:
	case 0x03: /* add */
	case 0x08:
	case 0x09:
	case 0x0a:
	case 0x0b: /* or */
	case 0x10:
	case 0x11:
	case 0x12:
	case 0x13: /* adc */
	case 0x18:
	case 0x19:
	case 0x1a:
	case 0x1b: /* sbb */
	case 0x20:
	case 0x21:
	case 0x22:
	case 0x23: /* and */
	case 0x28:
	case 0x29:
	case 0x2a:
	case 0x2b: /* sub */
	case 0x30:
	case 0x31:
	case 0x32:
	case 0x33: /* xor */
	case 0x38:
	case 0x39:
	case 0x3a:
	case 0x3b: /* cmp */
		modrm(&c, in, mode64);
		if (in->mem)
			alu(in, op >> 3, (op & 1) ? in->opsize : 1, op & 2);
		else
			in->op = SH_OP_OTHER;
		break;
	case 0x80:
	case 0x81:
	case 0x83:
		modrm(&c, in, mode64);
		size = op == 0x80 ? 1 : in->opsize;
		in->imm = (uint64_t)next_signed(&c, op != 0x81 ? 1 : size == 8 ? 4 : size);
		if (in->mem) {
			alu(in, in->reg & 7, size, false);
			in->alu_imm = true;
		} else {
			in->op = SH_OP_OTHER;
		}
		break;
	case 0x84:
	case 0x85:
		modrm(&c, in, mode64);
		if (in->mem)
			alu(in, SH_TEST, op == 0x84 ? 1 : in->opsize, false);
		else
			in->op = SH_OP_OTHER;
		break;
	case 0xf6:
	case 0xf7:
		/* only test (/0, /1) has an immediate; not and neg (/2, /3) are read-modify-writes;
		 * mul and div are not decoded further */
		modrm(&c, in, mode64);
		size = op == 0xf6 ? 1 : in->opsize;
		if (in->mem && (in->reg & 7) <= 1) {
			in->imm = (uint64_t)next_signed(&c, size == 8 ? 4 : size);
			alu(in, SH_TEST, size, false);
			in->alu_imm = true;
		} else if (in->mem && (in->reg & 7) <= 3) {
			alu(in, (in->reg & 7) == 2 ? SH_NOT : SH_NEG, size, false);
		} else {
			in->op = SH_OP_OTHER;
		}
		break;
	case 0x88:
	case 0x89:
	case 0x8a:
	case 0x8b:
		modrm(&c, in, mode64);
		if (in->mem) {
			in->op = (op & 2) ? SH_OP_MOV_LOAD : SH_OP_MOV_STORE;
			in->access_size = (op & 1) ? in->opsize : 1;
		} else {
			in->op = SH_OP_OTHER;
		}
		break;
	case 0x86:
	case 0x87:
		modrm(&c, in, mode64);
		if (in->mem) {
			in->op = SH_OP_XCHG;
			in->access_size = (op & 1) ? in->opsize : 1;
		} else {
			in->op = SH_OP_OTHER;
		}
		break;
	case 0xa4:
	case 0xa5:
	case 0xaa:
	case 0xab:
	case 0xac:
	case 0xad:
		in->op = op < 0xaa ? SH_OP_MOVS : op < 0xac ? SH_OP_STOS : SH_OP_LODS;
		in->access_size = (op & 1) ? in->opsize : 1;
		break;
	case 0xa6:
	case 0xa7:
	case 0xae:
	case 0xaf:
		in->op = op < 0xae ? SH_OP_CMPS : SH_OP_SCAS;
		in->access_size = (op & 1) ? in->opsize : 1;
		break;
	case 0x63: /* movsxd (64-bit code); arpl in 32-bit code */
		modrm(&c, in, mode64);
		if (mode64 && in->mem) {
			in->op = SH_OP_MOVSX;
			in->access_size = in->opsize == 2 ? 2 : 4;
		} else {
			in->op = SH_OP_OTHER;
		}
		break;
	case 0xa0:
	case 0xa1:
	case 0xa2:
	case 0xa3:
		/* mov moffs: an absolute offset of the address size, no ModRM */
		in->has_modrm = in->mem = true;
		in->base = in->index = -1;
		in->disp = next_signed(&c, in->addrsize);
		in->op = (op & 2) ? SH_OP_MOV_STORE : SH_OP_MOV_LOAD;
		in->access_size = (op & 1) ? in->opsize : 1;
		break;
	case 0xc6:
	case 0xc7:
		/* every form has the immediate (xabort and xbegin too) */
		modrm(&c, in, mode64);
		size = op == 0xc6 ? 1 : in->opsize;
		in->imm = (uint64_t)next_signed(&c, size == 8 ? 4 : size);
		if (in->mem && (in->reg & 7) == 0) {
			in->op = SH_OP_MOV_STORE_IMM;
			in->access_size = size;
		} else {
			in->op = SH_OP_OTHER;
		}
		break;
	case 0x8e:
		modrm(&c, in, mode64);
		in->op = SH_OP_MOV_TO_SEG;
		in->reg &= 7;
		if (in->reg == SH_CS || in->reg > SH_GS)
			return -1; /* #UD */
		break;
	case 0x07:
		in->op = mode64 ? SH_OP_OTHER : SH_OP_POP_SEG;
		in->reg = SH_ES;
		break;
	case 0x17:
		in->op = mode64 ? SH_OP_OTHER : SH_OP_POP_SEG;
		in->reg = SH_SS;
		break;
	case 0x1f:
		in->op = mode64 ? SH_OP_OTHER : SH_OP_POP_SEG;
		in->reg = SH_DS;
		break;
	case 0xe4:
	case 0xe5:
	case 0xe6:
	case 0xe7:
		in->op = (op & 2) ? SH_OP_OUT : SH_OP_IN;
		in->io_size = (op & 1) ? (in->opsize == 2 ? 2 : 4) : 1;
		in->io_port_imm = true;
		in->imm = next(&c);
		break;
	case 0xec:
	case 0xed:
	case 0xee:
	case 0xef:
		in->op = (op & 2) ? SH_OP_OUT : SH_OP_IN;
		in->io_size = (op & 1) ? (in->opsize == 2 ? 2 : 4) : 1;
		break;
	case 0x6c:
	case 0x6d:
		in->op = SH_OP_INS;
		in->io_size = (op & 1) ? (in->opsize == 2 ? 2 : 4) : 1;
		break;
	case 0x6e:
	case 0x6f:
		in->op = SH_OP_OUTS;
		in->io_size = (op & 1) ? (in->opsize == 2 ? 2 : 4) : 1;
		break;
	default:
		in->op = SH_OP_OTHER;
		break;
	}
	if (c.bad)
		return -1;
	in->len = (uint8_t)c.pos;
	return 0;
}
