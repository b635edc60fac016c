/*
 * The interpreter of code before long mode (cpu/interp32.h). One step: fetch a window of up
 * to 15 bytes at CS:EIP, decode it with two small tables (ModRM and immediates per opcode),
 * execute. The mode of each step (real mode, 16- or 32-bit code) comes from CR0.PE and CS's
 * hidden part; operand and address sizes, the ModRM forms and the stack's size follow from
 * it. Nothing is allocated. Instructions that belong to the CPU core (control registers,
 * MSRs, descriptor tables, port I/O) are decoded again by sh_decode (32-bit code; for 16-bit
 * code or addressing, which it does not take, built from this decoder's) and emulated by
 * cpu_emulate_insn, so the interpreted and the trapped paths behave the same.
 *
 * Faults: every handler does its memory reads and writes before it changes a register,
 * and a store that spans two pages checks both first, so a fault leaves the instruction
 * undone; the flags are put back as they were (for a rep string: after the last element
 * done, which is where hardware leaves them too).
 */
#include "interp32.h"
#include "x86.h"

#include <cpuid.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The arithmetic flags (RFLAGS), and the two x86.h does not name. */
#define FL_CF    0x001u
#define FL_PF    0x004u
#define FL_AF    0x010u
#define FL_ZF    0x040u
#define FL_SF    0x080u
#define FL_OF    0x800u
#define FL_ARITH (FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_OF)
#define FL_VIF   0x80000u
#define FL_VIP   0x100000u
#define FL_ID    0x200000u

/* Segment descriptor bits. */
#define D_W    (1ULL << 41) /* data: writable; code: readable */
#define D_E    (1ULL << 42) /* data: expand-down; code: conforming */
#define D_CODE (1ULL << 43)
#define D_S    (1ULL << 44) /* code or data (not a system descriptor) */
#define D_P    (1ULL << 47)
#define D_L    (1ULL << 53)
#define D_DB   (1ULL << 54)
#define D_G    (1ULL << 55)

/* A rep string does at most this much per step (then the same instruction again). */
#define STRING_CHUNK 4096 /* bytes, movs/stos forwards */
#define STRING_BATCH 256  /* elements, the others */

/* How a step ended. */
enum {
	ST_NEXT,  /* done: EIP = s->next */
	ST_FAULT, /* an exception was delivered (EIP, CS and the stack are the handler's) */
	ST_CORE,  /* the CPU core emulated it (it moved RIP) */
	ST_EXIT,  /* return s->res */
};

enum { ALU_ADD, ALU_OR, ALU_ADC, ALU_SBB, ALU_AND, ALU_SUB, ALU_XOR, ALU_CMP };

/* Decoding tables: what follows the opcode. */
#define F_M    0x01 /* ModRM (and SIB, displacement) */
#define F_I8   0x02 /* imm8 */
#define F_IZ   0x04 /* imm16 or imm32, by operand size */
#define F_I16  0x08 /* imm16 */
#define F_MOFS 0x10 /* moffs: an offset of the address size */
#define F_SEL  0x20 /* then a 16-bit selector (ptr16:32) */
#define F_E8   0x40 /* then an imm8 (enter) */
#define F_MREG 0x80 /* ModRM that always names registers (mov CR/DR) */

#define ALU_ROW(x)                                                                                 \
	[x] = F_M, [(x) + 1] = F_M, [(x) + 2] = F_M, [(x) + 3] = F_M, [(x) + 4] = F_I8,            \
	[(x) + 5] = F_IZ

static const uint8_t ops1[256] = {
    ALU_ROW(0x00),          ALU_ROW(0x08),
    ALU_ROW(0x10),          ALU_ROW(0x18),
    ALU_ROW(0x20),          ALU_ROW(0x28),
    ALU_ROW(0x30),          ALU_ROW(0x38),
    [0x62] = F_M,           [0x63] = F_M,
    [0x68] = F_IZ,          [0x69] = F_M | F_IZ,
    [0x6a] = F_I8,          [0x6b] = F_M | F_I8,
    [0x70 ... 0x7f] = F_I8, [0x80] = F_M | F_I8,
    [0x81] = F_M | F_IZ,    [0x82] = F_M | F_I8,
    [0x83] = F_M | F_I8,    [0x84 ... 0x8f] = F_M,
    [0x9a] = F_IZ | F_SEL,  [0xa0 ... 0xa3] = F_MOFS,
    [0xa8] = F_I8,          [0xa9] = F_IZ,
    [0xb0 ... 0xb7] = F_I8, [0xb8 ... 0xbf] = F_IZ,
    [0xc0] = F_M | F_I8,    [0xc1] = F_M | F_I8,
    [0xc2] = F_I16,         [0xc4] = F_M,
    [0xc5] = F_M,           [0xc6] = F_M | F_I8,
    [0xc7] = F_M | F_IZ,    [0xc8] = F_I16 | F_E8,
    [0xca] = F_I16,         [0xcd] = F_I8,
    [0xd0 ... 0xd3] = F_M,  [0xd4] = F_I8,
    [0xd5] = F_I8,          [0xd8 ... 0xdf] = F_M,
    [0xe0 ... 0xe7] = F_I8, [0xe8] = F_IZ,
    [0xe9] = F_IZ,          [0xea] = F_IZ | F_SEL,
    [0xeb] = F_I8,          [0xf6] = F_M,
    [0xf7] = F_M,           [0xfe] = F_M,
    [0xff] = F_M,
};

static const uint8_t ops2[256] = {
    [0x00] = F_M,
    [0x01] = F_M,
    [0x0d] = F_M,
    [0x18 ... 0x1f] = F_M,
    [0x20 ... 0x23] = F_MREG,
    [0x40 ... 0x4f] = F_M,
    [0x80 ... 0x8f] = F_IZ,
    [0x90 ... 0x9f] = F_M,
    [0xa3] = F_M,
    [0xa4] = F_M | F_I8,
    [0xa5] = F_M,
    [0xab] = F_M,
    [0xac] = F_M | F_I8,
    [0xad] = F_M,
    [0xaf] = F_M,
    [0xb0 ... 0xb7] = F_M,
    [0xba] = F_M | F_I8,
    [0xbb ... 0xbf] = F_M,
    [0xc0] = F_M,
    [0xc1] = F_M,
};

struct step {
	struct guest_cpu *c;
	struct interp32_exit *out;
	enum interp_result res;
	int st;            /* a failed memory access: how the step ends */
	uint64_t miss_gpa; /* and where it found no RAM (see host()) */
	uint64_t flags;    /* RFLAGS as a fault must leave them */
	uint32_t eip, next;
	uint32_t lin; /* EIP's linear address: with CS's base */
	bool real;    /* real mode (CR0.PE clear) */
	bool code16;  /* CS is 16-bit code */
	uint8_t b[15];
	size_t n; /* bytes fetched */
	/* the instruction */
	uint8_t len, op, op2; /* op 0x0f: two-byte opcode op2 */
	uint8_t osize;        /* 2 or 4 */
	uint8_t asize;        /* address size: 2 or 4 */
	uint8_t rep;          /* 0, 0xf2 or 0xf3 */
	bool lock;
	int seg; /* segment override (SH_ES...), or -1 */
	bool mem;
	uint8_t mod, reg, rm;
	int base; /* base register of the memory operand, or -1 */
	uint32_t off, ea;
	uint32_t imm, imm2;
};

/* ---- registers, flags ---------------------------------------------------------------- */

static uint32_t mask_of(unsigned size)
{
	return size == 4 ? 0xffffffffu : size == 2 ? 0xffffu : 0xffu;
}

static uint32_t msb_of(unsigned size)
{
	return 1u << (8 * size - 1);
}

static uint32_t sext(uint32_t v, unsigned size)
{
	return size == 1 ? (uint32_t)(int8_t)v : size == 2 ? (uint32_t)(int16_t)v : v;
}

static uint32_t reg32(const struct guest_cpu *c, unsigned n)
{
	return (uint32_t)c->r.gpr[n];
}

/* 8-bit registers 4-7 are AH, CH, DH, BH (there is no REX in 32-bit code). */
static uint32_t getr(const struct guest_cpu *c, unsigned n, unsigned size)
{
	if (size == 1)
		return n < 4 ? c->r.gpr[n] & 0xff : (c->r.gpr[n - 4] >> 8) & 0xff;
	return (uint32_t)c->r.gpr[n] & mask_of(size);
}

static void setr(struct guest_cpu *c, unsigned n, uint32_t v, unsigned size)
{
	uint64_t *r = &c->r.gpr[size == 1 && n >= 4 ? n - 4 : n];

	if (size == 4)
		*r = v; /* the upper half is zeroed, as a 32-bit write in 64-bit mode does */
	else if (size == 2)
		*r = (*r & ~0xffffULL) | (v & 0xffff);
	else if (n < 4)
		*r = (*r & ~0xffULL) | (v & 0xff);
	else
		*r = (*r & ~0xff00ULL) | ((uint64_t)(v & 0xff) << 8);
}

static void flags_put(struct guest_cpu *c, uint64_t which, uint64_t values)
{
	c->r.rflags = (c->r.rflags & ~which) | (values & which);
}

static uint64_t szp(uint32_t r, unsigned size)
{
	uint64_t f = 0;

	r &= mask_of(size);
	if (!r)
		f |= FL_ZF;
	if (r & msb_of(size))
		f |= FL_SF;
	if (!__builtin_parity(r & 0xff))
		f |= FL_PF;
	return f;
}

static bool flag(const struct guest_cpu *c, uint64_t f)
{
	return c->r.rflags & f;
}

/* add, or, adc, sbb, and, sub, xor, cmp: the result (cmp: of the subtraction) and all six
 * flags (AF is cleared by the logical ones, where the SDM leaves it undefined). */
static uint32_t alu(struct guest_cpu *c, unsigned op, uint32_t a, uint32_t b, unsigned size)
{
	uint32_t m = mask_of(size), msb = msb_of(size);
	uint64_t carry = flag(c, FL_CF) ? 1 : 0, r, f = 0, bb;

	a &= m;
	b &= m;
	switch (op) {
	case ALU_ADD:
	case ALU_ADC:
		r = (uint64_t)a + b + (op == ALU_ADC ? carry : 0);
		if (r > m)
			f |= FL_CF;
		if ((a ^ r) & (b ^ r) & msb)
			f |= FL_OF;
		if ((a ^ b ^ r) & 0x10)
			f |= FL_AF;
		break;
	case ALU_SUB:
	case ALU_SBB:
	case ALU_CMP:
		bb = (uint64_t)b + (op == ALU_SBB ? carry : 0);
		r = (uint64_t)a - bb;
		if (a < bb)
			f |= FL_CF;
		if ((a ^ b) & (a ^ r) & msb)
			f |= FL_OF;
		if ((a ^ b ^ r) & 0x10)
			f |= FL_AF;
		break;
	case ALU_AND:
		r = a & b;
		break;
	case ALU_OR:
		r = a | b;
		break;
	default:
		r = a ^ b;
		break;
	}
	r &= m;
	flags_put(c, FL_ARITH, f | szp((uint32_t)r, size));
	return (uint32_t)r;
}

/* inc / dec: as add / sub 1, CF kept. */
static uint32_t incdec(struct guest_cpu *c, uint32_t a, bool dec, unsigned size)
{
	uint64_t cf = c->r.rflags & FL_CF;
	uint32_t r = alu(c, dec ? ALU_SUB : ALU_ADD, a, 1, size);

	c->r.rflags = (c->r.rflags & ~(uint64_t)FL_CF) | cf;
	return r;
}

/* rol, ror, rcl, rcr, shl, shr, sal (= shl), sar by `cnt` (masked to 5 bits: a count of 0
 * changes nothing, flags included). Shifts set CF, OF, SF, ZF, PF and clear AF; rotates set
 * CF and OF only. OF is computed as for a count of 1 whatever the count (the SDM leaves it
 * undefined otherwise). */
static uint32_t shift(struct guest_cpu *c, unsigned op, uint32_t a, unsigned cnt, unsigned size)
{
	unsigned bits = 8 * size, k;
	uint32_t m = mask_of(size), msb = msb_of(size), r;
	bool cf = flag(c, FL_CF), of;
	int32_t sa;

	cnt &= 31;
	a &= m;
	if (!cnt)
		return a;
	switch (op) {
	case 0: /* rol */
		k = cnt % bits;
		r = k ? ((a << k) | (a >> (bits - k))) & m : a;
		cf = r & 1;
		of = !!(r & msb) != cf;
		break;
	case 1: /* ror */
		k = cnt % bits;
		r = k ? ((a >> k) | (a << (bits - k))) & m : a;
		cf = !!(r & msb);
		of = !!(r & msb) != !!(r & (msb >> 1));
		break;
	case 2: /* rcl */
		k = size == 4 ? cnt : cnt % (bits + 1);
		r = a;
		for (unsigned i = 0; i < k; i++) {
			bool out = r & msb;

			r = ((r << 1) | cf) & m;
			cf = out;
		}
		of = !!(r & msb) != cf;
		break;
	case 3: /* rcr */
		k = size == 4 ? cnt : cnt % (bits + 1);
		of = !!(a & msb) != cf;
		r = a;
		for (unsigned i = 0; i < k; i++) {
			bool out = r & 1;

			r = (r >> 1) | ((uint32_t)cf << (bits - 1));
			cf = out;
		}
		break;
	case 4:
	case 6: /* shl */
		cf = cnt <= bits ? ((uint64_t)a >> (bits - cnt)) & 1 : 0;
		r = (uint32_t)(((uint64_t)a << cnt) & m);
		of = !!(r & msb) != cf;
		flags_put(c, FL_ARITH, (cf ? FL_CF : 0) | (of ? FL_OF : 0) | szp(r, size));
		return r;
	case 5: /* shr */
		cf = cnt <= bits ? (a >> (cnt - 1)) & 1 : 0;
		r = cnt < bits ? a >> cnt : 0;
		of = a & msb;
		flags_put(c, FL_ARITH, (cf ? FL_CF : 0) | (of ? FL_OF : 0) | szp(r, size));
		return r;
	default: /* sar */
		sa = (int32_t)sext(a, size);
		cf = (sa >> (cnt - 1 < bits - 1 ? cnt - 1 : bits - 1)) & 1;
		r = (uint32_t)(sa >> (cnt < bits - 1 ? cnt : bits - 1)) & m;
		flags_put(c, FL_ARITH, (cf ? FL_CF : 0) | szp(r, size));
		return r;
	}
	flags_put(c, FL_CF | FL_OF, (cf ? FL_CF : 0) | (of ? FL_OF : 0));
	return r;
}

/* shld / shrd: `dst` shifted, filled from `src`. */
static uint32_t shift_double(struct guest_cpu *c, uint32_t dst, uint32_t src, unsigned cnt,
                             unsigned size, bool right)
{
	unsigned bits = 8 * size;
	uint32_t m = mask_of(size), r;
	unsigned __int128 v;
	bool cf;

	cnt &= 31;
	dst &= m;
	src &= m;
	if (!cnt)
		return dst;
	if (right) {
		v = ((unsigned __int128)src << bits) | dst;
		cf = (v >> (cnt - 1)) & 1;
		r = (uint32_t)(v >> cnt) & m;
	} else {
		v = (((unsigned __int128)dst << bits) | src) << cnt;
		cf = (v >> (2 * bits)) & 1;
		r = (uint32_t)(v >> bits) & m;
	}
	flags_put(c, FL_ARITH,
	          (cf ? FL_CF : 0) | (((r ^ dst) & msb_of(size)) ? FL_OF : 0) | szp(r, size));
	return r;
}

/* The condition of jcc / setcc / cmovcc number `cc`. */
static bool cond(const struct guest_cpu *c, unsigned cc)
{
	bool r;

	switch ((cc >> 1) & 7) {
	case 0:
		r = flag(c, FL_OF);
		break;
	case 1:
		r = flag(c, FL_CF);
		break;
	case 2:
		r = flag(c, FL_ZF);
		break;
	case 3:
		r = flag(c, FL_CF) || flag(c, FL_ZF);
		break;
	case 4:
		r = flag(c, FL_SF);
		break;
	case 5:
		r = flag(c, FL_PF);
		break;
	case 6:
		r = flag(c, FL_SF) != flag(c, FL_OF);
		break;
	default:
		r = flag(c, FL_ZF) || flag(c, FL_SF) != flag(c, FL_OF);
		break;
	}
	return (cc & 1) ? !r : r;
}

/* ---- ending a step: refusal, exceptions ------------------------------------------------ */

static void put_why(struct step *s, const char *why)
{
	if (s->out)
		snprintf(s->out->why, sizeof(s->out->why), "%s", why);
}

/* "<which interpreter>: <what> at <where>": flat 32-bit code as EIP, the rest as CS:IP. */
static void say_where(const struct step *s, char *buf, size_t len, const char *what)
{
	const struct guest_cpu *c = s->c;
	const char *mode = s->real ? " (real mode)" : "";

	if (s->code16)
		snprintf(buf, len, "16-bit interpreter%s: %s at cs:ip=0x%04x:0x%04x", mode, what,
		         c->cs, s->eip);
	else if (s->real || c->hidden.base[SH_CS])
		snprintf(buf, len, "32-bit interpreter%s: %s at cs:eip=0x%04x:0x%08x", mode, what,
		         c->cs, s->eip);
	else
		snprintf(buf, len, "32-bit interpreter: %s at eip=0x%08x", what, s->eip);
}

static int unsupported(struct step *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Refuse: the message names what, where, and the bytes there; the engine is told to stop. */
static int unsupported(struct step *s, const char *fmt, ...)
{
	char what[112], why[192];
	size_t k, shown = s->len ? s->len : s->n < 8 ? s->n : 8;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	say_where(s, why, sizeof(why), what);
	k = strlen(why);
	snprintf(why + k, sizeof(why) - k, " (bytes:");
	for (size_t i = 0; i < shown; i++) {
		k = strlen(why);
		snprintf(why + k, sizeof(why) - k, " %02x", s->b[i]);
	}
	k = strlen(why);
	snprintf(why + k, sizeof(why) - k, "%s)", s->n ? "" : " none");
	put_why(s, why);
	s->c->stopped = true;
	s->c->stop_how = CPU_STOP_REFUSED;
	s->c->ops->stop(s->c->ctx, CPU_STOP_REFUSED, why);
	s->res = INTERP_UNSUPPORTED;
	return ST_EXIT;
}

/* Its length is not known: the bytes shown are the window at EIP. */
static int not_implemented(struct step *s)
{
	s->len = 0;
	return unsupported(s, "an instruction the interpreter does not implement");
}

/* An exception where hearth delivers none (cpu_can_deliver): real mode would take it
 * through the interrupt vector table, 16-bit or based stacks need a delivery hearth does not
 * have. The instruction stays undone; the VM stops. */
static int undeliverable(struct step *s, unsigned vector, bool soft)
{
	s->c->r.rip = s->eip;
	s->c->r.rflags = s->flags;
	return unsupported(
	    s, "%s %u, which is not delivered %s", soft ? "int" : "exception", vector,
	    s->real ? "in real mode (no interrupt vector table)" : "on a 16-bit or based stack");
}

/* A fault of this instruction: delivered at its address, with the flags it found. */
static int raise_fault(struct step *s, unsigned vector, uint32_t err)
{
	if (!cpu_can_deliver(s->c))
		return undeliverable(s, vector, false);
	s->c->r.rip = s->eip;
	s->c->r.rflags = s->flags;
	cpu_reflect(s->c, vector, err, false);
	return ST_FAULT;
}

/* An access that found no RAM: a #PF where the guest's tables do not map the address;
 * otherwise it is not RAM (a device, or nothing), which entry code has no business reaching. */
static int mem_fault(struct step *s, uint32_t addr, bool write, bool fetch)
{
	struct guest_cpu *c = s->c;
	const char *what = fetch ? "code at" : write ? "a store to" : "a load from";

	if (s->miss_gpa == UINT64_MAX && (c->cr0 & CR0_PG)) {
		if (!cpu_can_deliver(c))
			return undeliverable(s, V_PF, false);
		c->r.rip = s->eip;
		c->r.rflags = s->flags;
		cpu_page_fault(c, addr,
		               (write ? PF_W : 0) | (fetch && (c->efer & EFER_NXE) ? PF_I : 0));
		return ST_FAULT;
	}
	if (c->cr0 & CR0_PG)
		return unsupported(s, "%s 0x%08x (guest-physical 0x%llx), which is not guest RAM",
		                   what, addr, (unsigned long long)s->miss_gpa);
	return unsupported(s, "%s 0x%08x, which is not guest RAM (paging is off)", what, addr);
}

/* ---- memory --------------------------------------------------------------------------- */

/* Host bytes for [addr, addr + len) within one page (cpu_read / cpu_write's path). NULL
 * with s->miss_gpa: the guest-physical address that is not RAM, or UINT64_MAX when the
 * guest does not map `addr`. */
static void *host(struct step *s, uint32_t addr, unsigned len, bool write)
{
	struct guest_cpu *c = s->c;
	uint64_t gpa;
	void *h;

	if (!c->ops->translate(c->ctx, addr, write, &gpa)) {
		s->miss_gpa = UINT64_MAX;
		return NULL;
	}
	h = gm_ptr(c->gm, gpa, len);
	if (!h)
		s->miss_gpa = gpa;
	else if (write)
		gm_mark_dirty(c->gm, gpa, len); /* written by the caller (conservatively) */
	return h;
}

/* Read or write `len` (<= 4096) bytes at linear `addr` (wrapping at 4 GiB). Both pages are
 * looked up before anything is copied. False: the fault is delivered, s->st says how. */
static bool access_mem(struct step *s, uint32_t addr, void *buf, unsigned len, bool write)
{
	unsigned first = 4096 - (addr & 4095);
	uint8_t *h1, *h2 = NULL;

	if (first > len)
		first = len;
	h1 = host(s, addr, first, write);
	if (!h1) {
		s->st = mem_fault(s, addr, write, false);
		return false;
	}
	if (first < len) {
		h2 = host(s, addr + first, len - first, write);
		if (!h2) {
			s->st = mem_fault(s, addr + first, write, false);
			return false;
		}
	}
	if (write) {
		memcpy(h1, buf, first);
		if (h2)
			memcpy(h2, (uint8_t *)buf + first, len - first);
	} else {
		memcpy(buf, h1, first);
		if (h2)
			memcpy((uint8_t *)buf + first, h2, len - first);
	}
	return true;
}

static bool rd(struct step *s, uint32_t addr, uint32_t *v, unsigned size)
{
	*v = 0;
	return access_mem(s, addr, v, size, false);
}

static bool wr(struct step *s, uint32_t addr, uint32_t v, unsigned size)
{
	return access_mem(s, addr, &v, size, true);
}

/* The base of segment register `seg` (its hidden part: 0 when flat). */
static uint32_t seg_base(const struct guest_cpu *c, int seg)
{
	switch (seg) {
	case SH_ES:
	case SH_CS:
	case SH_SS:
	case SH_DS:
		return c->hidden.base[seg];
	case SH_FS:
		return (uint32_t)c->fs_base;
	case SH_GS:
		return (uint32_t)c->gs_base;
	default:
		return 0;
	}
}

/* The segment of a string source, moffs or xlat: DS unless overridden. */
static int data_seg(const struct step *s)
{
	return s->seg >= 0 ? s->seg : SH_DS;
}

/* The r/m operand. */
static bool rm_get(struct step *s, unsigned size, uint32_t *v)
{
	if (s->mem)
		return rd(s, s->ea, v, size);
	*v = getr(s->c, s->rm, size);
	return true;
}

static bool rm_put(struct step *s, unsigned size, uint32_t v)
{
	if (s->mem)
		return wr(s, s->ea, v, size);
	setr(s->c, s->rm, v, size);
	return true;
}

/* The stack: SS:ESP, or SS:SP on a 16-bit stack (no limit). */
static uint32_t sp_get(const struct guest_cpu *c)
{
	return getr(c, R_SP, c->hidden.stack16 ? 2 : 4);
}

static void sp_set(struct guest_cpu *c, uint32_t sp)
{
	setr(c, R_SP, sp, c->hidden.stack16 ? 2 : 4);
}

/* The linear address of stack offset `sp` (SP, ESP, or BP / EBP for leave). */
static uint32_t stack_at(const struct guest_cpu *c, uint32_t sp)
{
	return seg_base(c, SH_SS) + (sp & mask_of(c->hidden.stack16 ? 2 : 4));
}

static bool push(struct step *s, uint32_t v, unsigned size)
{
	uint32_t sp = sp_get(s->c) - size;

	if (!wr(s, stack_at(s->c, sp), v, size))
		return false;
	sp_set(s->c, sp);
	return true;
}

/* Read `n` values of `size` bytes from the top of the stack, ESP unchanged. */
static bool peek(struct step *s, uint32_t *v, unsigned n, unsigned size)
{
	uint8_t buf[32] = {0};

	if (!access_mem(s, stack_at(s->c, sp_get(s->c)), buf, n * size, false))
		return false;
	for (unsigned i = 0; i < n; i++) {
		v[i] = 0;
		memcpy(&v[i], buf + i * size, size);
	}
	return true;
}

static void drop(struct guest_cpu *c, uint32_t bytes)
{
	sp_set(c, sp_get(c) + bytes);
}

/* ---- fetch and decode ------------------------------------------------------------------ */

static int fetch(struct step *s)
{
	size_t first = 4096 - (s->lin & 4095);
	uint8_t *h;

	if (first > 15)
		first = 15;
	s->n = 0;
	h = host(s, s->lin, (unsigned)first, false);
	if (!h)
		return mem_fault(s, s->lin, false, true);
	memcpy(s->b, h, first);
	s->n = first;
	if (first < 15) {
		h = host(s, s->lin + (uint32_t)first, (unsigned)(15 - first), false);
		if (h) {
			memcpy(s->b + first, h, 15 - first);
			s->n = 15;
		}
	}
	return ST_NEXT;
}

/* The bytes ran out: the next page is not mapped, or the instruction is over 15 bytes. */
static int truncated(struct step *s)
{
	if (s->n < 15)
		return mem_fault(s, s->lin + (uint32_t)s->n, false, true);
	return raise_fault(s, V_GP, 0);
}

static bool take(struct step *s, size_t *p, unsigned bytes, uint32_t *v)
{
	if (*p + bytes > s->n)
		return false;
	*v = 0;
	for (unsigned i = 0; i < bytes; i++)
		*v |= (uint32_t)s->b[*p + i] << (8 * i);
	*p += bytes;
	return true;
}

/* A 32-bit ModRM memory operand (SIB, displacement): its offset, and the segment it
 * defaults to (SS for a base of ESP or EBP). */
static int modrm32(struct step *s, size_t *p, int *dseg)
{
	const struct guest_cpu *c = s->c;
	uint32_t off = 0, v;

	if (s->rm == 4) {
		uint8_t sib;
		unsigned idx, base;

		if (*p >= s->n)
			return truncated(s);
		sib = s->b[(*p)++];
		idx = (sib >> 3) & 7;
		base = sib & 7;
		if (idx != 4)
			off = reg32(c, idx) << (sib >> 6);
		if (base == 5 && s->mod == 0) {
			if (!take(s, p, 4, &v))
				return truncated(s);
			off += v;
		} else {
			s->base = (int)base;
			off += reg32(c, base);
		}
	} else if (s->rm == 5 && s->mod == 0) {
		if (!take(s, p, 4, &v))
			return truncated(s);
		off = v;
	} else {
		s->base = s->rm;
		off = reg32(c, s->rm);
	}
	if (s->mod == 1) {
		if (!take(s, p, 1, &v))
			return truncated(s);
		off += sext(v, 1);
	} else if (s->mod == 2) {
		if (!take(s, p, 4, &v))
			return truncated(s);
		off += v;
	}
	s->off = off;
	*dseg = s->base == R_SP || s->base == R_BP ? SH_SS : SH_DS;
	return ST_NEXT;
}

/* A 16-bit ModRM memory operand: [BX+SI], [BX+DI], [BP+SI], [BP+DI], [SI], [DI], [BP] (mod
 * 0: disp16), [BX], with a displacement, wrapping at 64 KiB; BP-based ones default to SS. */
static int modrm16(struct step *s, size_t *p, int *dseg)
{
	static const int8_t base[8] = {R_BX, R_BX, R_BP, R_BP, R_SI, R_DI, R_BP, R_BX};
	static const int8_t index[8] = {R_SI, R_DI, R_SI, R_DI, -1, -1, -1, -1};
	const struct guest_cpu *c = s->c;
	uint32_t off = 0, v;

	*dseg = SH_DS;
	if (s->rm == 6 && s->mod == 0) {
		if (!take(s, p, 2, &v))
			return truncated(s);
		off = v;
	} else {
		off = getr(c, (unsigned)base[s->rm], 2);
		if (index[s->rm] >= 0)
			off += getr(c, (unsigned)index[s->rm], 2);
		if (base[s->rm] == R_BP)
			*dseg = SH_SS;
	}
	if (s->mod == 1) {
		if (!take(s, p, 1, &v))
			return truncated(s);
		off += sext(v, 1);
	} else if (s->mod == 2) {
		if (!take(s, p, 2, &v))
			return truncated(s);
		off += v;
	}
	s->off = off & 0xffff;
	return ST_NEXT;
}

static int decode(struct step *s)
{
	const struct guest_cpu *c = s->c;
	size_t p = 0;
	uint8_t op, fl;
	bool osize_prefix = false, asize_prefix = false;

	s->seg = -1;
	s->rep = 0;
	s->lock = s->mem = false;
	s->base = -1;
	s->op2 = 0;
	for (;;) {
		if (p >= s->n)
			return truncated(s);
		op = s->b[p++];
		switch (op) {
		case 0x66: /* the other operand size: 32 bits in 16-bit code, 16 in 32-bit */
			osize_prefix = true;
			continue;
		case 0x67: /* the same for addresses */
			asize_prefix = true;
			continue;
		case 0xf0:
			s->lock = true;
			continue;
		case 0xf2:
		case 0xf3:
			s->rep = op;
			continue;
		case 0x26:
			s->seg = SH_ES;
			continue;
		case 0x2e:
			s->seg = SH_CS;
			continue;
		case 0x36:
			s->seg = SH_SS;
			continue;
		case 0x3e:
			s->seg = SH_DS;
			continue;
		case 0x64:
			s->seg = SH_FS;
			continue;
		case 0x65:
			s->seg = SH_GS;
			continue;
		default:
			break;
		}
		break;
	}
	s->osize = s->code16 != osize_prefix ? 2 : 4;
	s->asize = s->code16 != asize_prefix ? 2 : 4;
	s->op = op;
	fl = ops1[op];
	if (op == 0x0f) {
		if (p >= s->n)
			return truncated(s);
		s->op2 = s->b[p++];
		fl = ops2[s->op2];
	}
	if (fl & (F_M | F_MREG)) {
		uint8_t m;

		if (p >= s->n)
			return truncated(s);
		m = s->b[p++];
		s->mod = m >> 6;
		s->reg = (m >> 3) & 7;
		s->rm = m & 7;
		if (s->mod != 3 && !(fl & F_MREG)) {
			int dseg = SH_DS, st;

			s->mem = true;
			st = s->asize == 2 ? modrm16(s, &p, &dseg) : modrm32(s, &p, &dseg);
			if (st != ST_NEXT)
				return st;
			s->ea = s->off + seg_base(c, s->seg >= 0 ? s->seg : dseg);
		}
	}
	s->imm = s->imm2 = 0;
	if (((fl & F_I8) && !take(s, &p, 1, &s->imm)) ||
	    ((fl & F_IZ) && !take(s, &p, s->osize, &s->imm)) ||
	    ((fl & F_I16) && !take(s, &p, 2, &s->imm)) ||
	    ((fl & F_MOFS) && !take(s, &p, s->asize, &s->imm)) ||
	    ((fl & F_SEL) && !take(s, &p, 2, &s->imm2)) ||
	    ((fl & F_E8) && !take(s, &p, 1, &s->imm2)))
		return truncated(s);
	/* test r/m, imm (f6 /0 /1, f7 /0 /1) */
	if ((op == 0xf6 || op == 0xf7) && s->reg < 2 &&
	    !take(s, &p, op == 0xf6 ? 1 : s->osize, &s->imm))
		return truncated(s);
	s->len = (uint8_t)p;
	s->next = s->eip + (uint32_t)p;
	return ST_NEXT;
}

/* lock is valid only on a read-modify-write of memory (SDM: LOCK); else #UD. */
static bool lockable(const struct step *s)
{
	if (!s->mem)
		return false;
	if (s->op == 0x0f) {
		switch (s->op2) {
		case 0xab:
		case 0xb3:
		case 0xbb:
		case 0xb0:
		case 0xb1:
		case 0xc0:
		case 0xc1:
			return true;
		case 0xba:
			return s->reg >= 5;
		default:
			return false;
		}
	}
	if (s->op < 0x40)
		return (s->op & 7) < 2 && (s->op >> 3) != ALU_CMP;
	switch (s->op) {
	case 0x80:
	case 0x81:
	case 0x82:
	case 0x83:
		return s->reg != ALU_CMP;
	case 0x86:
	case 0x87:
		return true;
	case 0xf6:
	case 0xf7:
		return s->reg == 2 || s->reg == 3;
	case 0xfe:
	case 0xff:
		return s->reg < 2;
	default:
		return false;
	}
}

/* ---- segments ------------------------------------------------------------------------- */

static uint32_t desc_base(uint64_t d)
{
	return (uint32_t)(((d >> 16) & 0xffffff) | ((d >> 56) << 24));
}

static uint32_t desc_limit(uint64_t d)
{
	uint32_t l = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));

	return (d & D_G) ? (l << 12) | 0xfff : l;
}

/* Code this interpreter runs, outside long mode: 32-bit code with a 4 GiB limit (limits are
 * not emulated), or 16-bit code (its 64 KiB are what IP reaches); any base. */
static bool code_runnable(uint64_t d)
{
	return (d & (D_P | D_S | D_CODE)) == (D_P | D_S | D_CODE) &&
	       (!(d & D_DB) || desc_limit(d) == 0xffffffffu);
}

static uint64_t descriptor(const struct guest_cpu *c, uint16_t sel)
{
	return c->ops->descriptor(c->ctx, sel & ~3);
}

static const char *seg_name(unsigned seg)
{
	static const char *const names[] = {"ES", "CS", "SS", "DS", "FS", "GS"};

	return seg < 6 ? names[seg] : "?";
}

static uint16_t seg_selector(const struct guest_cpu *c, unsigned seg)
{
	switch (seg) {
	case SH_ES:
		return c->es;
	case SH_CS:
		return c->cs;
	case SH_SS:
		return c->ss;
	case SH_DS:
		return c->ds;
	case SH_FS:
		return c->fs;
	default:
		return c->gs;
	}
}

/* A data segment register and its hidden part. */
static void set_seg(struct step *s, unsigned seg, uint16_t sel, uint32_t base, bool stack16)
{
	struct guest_cpu *c = s->c;

	switch (seg) {
	case SH_ES:
		c->es = sel;
		break;
	case SH_SS:
		c->ss = s->real ? sel : sel & ~3;
		c->hidden.stack16 = stack16;
		break;
	case SH_DS:
		c->ds = sel;
		break;
	case SH_FS:
		c->fs = sel;
		c->fs_base = base;
		return;
	default:
		c->gs = sel;
		c->gs_base = base;
		return;
	}
	c->hidden.base[seg] = base;
}

/* Load a data segment register (mov, pop, lds...). In real mode its base is the selector
 * times 16, the rest of the hidden part stays. In protected mode, the checks of the SDM
 * (MOV: "Loading a segment register while in protected mode"), except the DPL, which an
 * engine may present deprivileged; then any base, but only a 4 GiB limit (limits are not
 * emulated). */
static int load_seg(struct step *s, unsigned seg, uint16_t sel)
{
	struct guest_cpu *c = s->c;
	uint64_t d = 0;
	uint32_t base = 0;
	bool code;

	if (seg == SH_CS || seg > SH_GS)
		return raise_fault(s, V_UD, 0);
	if (s->real) {
		set_seg(s, seg, sel, (uint32_t)sel << 4, c->hidden.stack16);
		return ST_NEXT;
	}
	if ((sel & ~3) == 0) {
		if (seg == SH_SS)
			return raise_fault(s, V_GP, 0);
	} else {
		d = descriptor(c, sel);
		code = d & D_CODE;
		if (!(d & D_S))
			return raise_fault(s, V_GP, sel & ~3u);
		if (seg == SH_SS) {
			if (code || !(d & D_W) || (sel & 3))
				return raise_fault(s, V_GP, sel & ~3u);
			if (!(d & D_P))
				return raise_fault(s, V_SS, sel & ~3u);
		} else {
			if (code && !(d & D_W))
				return raise_fault(s, V_GP, sel & ~3u);
			if (!(d & D_P))
				return raise_fault(s, V_NP, sel & ~3u);
		}
		base = desc_base(d);
		if (desc_limit(d) != 0xffffffffu || (!code && (d & D_E)))
			return unsupported(s, "a segment that is not flat: %s = 0x%04x (0x%016llx)",
			                   seg_name(seg), sel, (unsigned long long)d);
	}
	set_seg(s, seg, sel, base, seg == SH_SS && !(d & D_DB));
	return ST_NEXT;
}

/* Where a far transfer goes: CS's new hidden part. */
struct far_dest {
	unsigned bits; /* 16, 32 or 64 */
	uint32_t base;
};

/* The target of a far jmp / call / ret / iret: ST_NEXT with where it goes (in real mode, CS
 * gets the selector times 16 as its base, its size stays; in protected mode, the
 * descriptor's); else the fault or the refusal. */
static int far_target(struct step *s, uint16_t sel, struct far_dest *to)
{
	struct guest_cpu *c = s->c;
	uint64_t d;

	if (s->real) {
		to->bits = c->hidden.code16 ? 16 : 32;
		to->base = (uint32_t)sel << 4;
		return ST_NEXT;
	}
	if ((sel & ~3) == 0)
		return raise_fault(s, V_GP, 0);
	if (sel & 3)
		return unsupported(s, "a far transfer to RPL %u (CS 0x%04x): only ring 0 runs here",
		                   sel & 3u, sel);
	d = descriptor(c, sel);
	if ((d & (D_S | D_CODE)) != (D_S | D_CODE) || ((d & D_L) && (d & D_DB)))
		return raise_fault(s, V_GP, sel & ~3u);
	if (!(d & D_P))
		return raise_fault(s, V_NP, sel & ~3u);
	if (cpu_long_mode(c) && (d & D_L)) {
		to->bits = 64;
		to->base = 0;
		return ST_NEXT;
	}
	if (!code_runnable(d))
		return unsupported(
		    s, "a far transfer to CS 0x%04x, 32-bit code with a limit (0x%016llx)", sel,
		    (unsigned long long)d);
	to->bits = (d & D_DB) ? 32 : 16;
	to->base = desc_base(d);
	return ST_NEXT;
}

/* 64-bit code ignores the bases of CS, DS, ES and SS and the sizes: the hidden part is left
 * as every other path expects it (cpu/guest_cpu.h). */
static int to_long_mode(struct step *s)
{
	memset(&s->c->hidden, 0, sizeof(s->c->hidden));
	/* ...but CS keeps the descriptor it was just loaded from (cpu/guest_cpu.h). */
	s->c->hidden.cs_desc = s->c->ops->descriptor(s->c->ctx, s->c->cs);
	s->res = INTERP_LONG_MODE;
	return ST_EXIT;
}

static int far_go(struct step *s, uint16_t sel, uint32_t off, const struct far_dest *to)
{
	struct guest_cpu *c = s->c;

	c->cs = s->real ? sel : sel & ~3;
	c->hidden.cs_desc = 0; /* the interpreter keeps CS's size itself */
	if (to->bits == 64) {
		c->r.rip = off;
		return to_long_mode(s);
	}
	c->hidden.base[SH_CS] = to->base;
	c->hidden.code16 = to->bits == 16;
	s->next = s->osize == 2 ? off & 0xffff : off;
	return ST_NEXT;
}

static int far_jump(struct step *s, uint16_t sel, uint32_t off)
{
	struct far_dest to;
	int st = far_target(s, sel, &to);

	return st == ST_NEXT ? far_go(s, sel, off, &to) : st;
}

static int far_call(struct step *s, uint16_t sel, uint32_t off)
{
	struct guest_cpu *c = s->c;
	unsigned sz = s->osize;
	uint8_t frame[8];
	uint32_t sp = sp_get(c) - 2 * sz, cs = c->cs;
	struct far_dest to;
	int st = far_target(s, sel, &to);

	if (st != ST_NEXT)
		return st;
	memcpy(frame, &s->next, sz);
	memcpy(frame + sz, &cs, sz);
	if (!access_mem(s, stack_at(c, sp), frame, 2 * sz, true))
		return s->st;
	sp_set(c, sp);
	return far_go(s, sel, off, &to);
}

static int far_return(struct step *s, uint32_t extra)
{
	uint32_t v[2];
	struct far_dest to;
	int st;

	if (!peek(s, v, 2, s->osize))
		return s->st;
	if ((st = far_target(s, (uint16_t)v[1], &to)) != ST_NEXT)
		return st;
	drop(s->c, 2 * s->osize + extra);
	return far_go(s, (uint16_t)v[1], v[0], &to);
}

/* iret: in real mode IP, CS and FLAGS (real-mode CS), in protected mode to CPL0 code of the
 * same task. */
static int iret(struct step *s)
{
	struct guest_cpu *c = s->c;
	unsigned sz = s->osize;
	uint64_t keep =
	    sz == 4 ? FL_ARITH | RF_TF | RF_IF | RF_DF | RF_NT | RF_AC | FL_ID | FL_VIF | FL_VIP
	            : FL_ARITH | RF_TF | RF_IF | RF_DF | RF_NT;
	uint32_t v[3];
	struct far_dest to;
	int st;

	if (cpu_long_mode(c))
		return unsupported(s, "iret in compatibility mode");
	if (flag(c, RF_NT) && !s->real)
		return unsupported(s, "a task return (iret with NT set)");
	if (!peek(s, v, 3, sz))
		return s->st;
	if (sz == 4 && (v[2] & RF_VM) && !s->real) /* (real mode leaves VM as it is: clear) */
		return unsupported(s, "an iret to virtual-8086 mode");
	if (v[2] & RF_TF)
		return unsupported(s, "single-stepping (iret sets TF)");
	if ((st = far_target(s, (uint16_t)v[1], &to)) != ST_NEXT)
		return st;
	drop(c, 3 * sz);
	c->r.rflags = ((c->r.rflags & ~keep) | (v[2] & keep) | RF_RESERVED) & ~RF_RF;
	c->nmi_blocked = false; /* (an NMI handler's end) */
	return far_go(s, (uint16_t)v[1], v[0], &to);
}

/* lds, les, lfs, lgs, lss: a far pointer from memory. */
static int load_far_pointer(struct step *s, unsigned seg)
{
	uint8_t buf[6];
	uint32_t off = 0;
	uint16_t sel;
	int st;

	if (!s->mem)
		return raise_fault(s, V_UD, 0);
	if (!access_mem(s, s->ea, buf, s->osize + 2, false))
		return s->st;
	memcpy(&off, buf, s->osize);
	memcpy(&sel, buf + s->osize, 2);
	if ((st = load_seg(s, seg, sel)) != ST_NEXT)
		return st;
	setr(s->c, s->reg, off, s->osize);
	return ST_NEXT;
}

/* ---- what the CPU core does ------------------------------------------------------------- */

/* The CPU core's view of an instruction of 16-bit code or with 16-bit addressing, which
 * sh_decode does not take: built from this decoder's, a memory operand as its linear address
 * (as core_view does). False: not one the core emulates. */
static bool core_insn16(const struct step *s, struct sh_insn *in)
{
	static const enum sh_op tables[8] = {SH_OP_SGDT, SH_OP_SIDT,  SH_OP_LGDT, SH_OP_LIDT,
	                                     SH_OP_SMSW, SH_OP_OTHER, SH_OP_LMSW, SH_OP_INVLPG};
	static const enum sh_op ldt_tr[4] = {SH_OP_SLDT, SH_OP_STR, SH_OP_LLDT, SH_OP_LTR};
	uint8_t op = s->op;

	memset(in, 0, sizeof(*in));
	in->op = SH_OP_OTHER;
	in->len = s->len;
	in->opsize = s->osize;
	in->addrsize = 4;
	in->seg = -1;
	in->base = in->index = -1;
	in->has_modrm = s->mem;
	in->mem = s->mem;
	in->mod = s->mod;
	in->reg = s->reg;
	in->rm = s->rm;
	in->disp = s->ea;
	if ((op >= 0xe4 && op <= 0xe7) || (op >= 0xec && op <= 0xef)) { /* in, out */
		in->op = (op & 2) ? SH_OP_OUT : SH_OP_IN;
		in->io_size = (op & 1) ? s->osize : 1;
		in->io_port_imm = op < 0xec;
		in->imm = s->imm;
		return true;
	}
	if (op != 0x0f)
		return false;
	switch (s->op2) {
	case 0x00:
		if (s->reg < 4)
			in->op = ldt_tr[s->reg];
		break;
	case 0x01:
		if (s->mem)
			in->op = tables[s->reg];
		else if (s->reg == 2 && s->rm == 1)
			in->op = SH_OP_XSETBV;
		else if (s->reg == 4 || s->reg == 6)
			in->op = s->reg == 4 ? SH_OP_SMSW : SH_OP_LMSW;
		break;
	case 0x06:
		in->op = SH_OP_CLTS;
		break;
	case 0x08:
	case 0x09:
		in->op = s->op2 == 0x08 ? SH_OP_INVD : SH_OP_WBINVD;
		break;
	case 0x20: /* mov CR/DR: registers, 32 bits whatever the operand size */
	case 0x21:
	case 0x22:
	case 0x23:
		in->op = s->op2 == 0x20   ? SH_OP_MOV_FROM_CR
		         : s->op2 == 0x22 ? SH_OP_MOV_TO_CR
		         : s->op2 == 0x21 ? SH_OP_MOV_FROM_DR
		                          : SH_OP_MOV_TO_DR;
		in->mod = 3;
		in->opsize = 4;
		break;
	case 0x30:
		in->op = SH_OP_WRMSR;
		break;
	case 0x32:
		in->op = SH_OP_RDMSR;
		break;
	default:
		break;
	}
	return in->op != SH_OP_OTHER;
}

/* The instruction as the CPU core takes it: sh_decode's for 32-bit code and addressing (the
 * trapped path's own), built here otherwise; a memory operand is given as the linear address
 * decode() computed (with its segment's base, which the core does not add). -1: the core
 * does not take it (`*why` says how). */
static int core_view(struct step *s, struct sh_insn *in, const char **why)
{
	*why = "an instruction the interpreter does not implement";
	if (s->code16 || s->asize == 2)
		return core_insn16(s, in) ? 0 : -1;
	if (sh_decode(s->b, s->n, false, true, in) < 0 || in->len != s->len) {
		*why = "an instruction the CPU core decodes differently";
		return -1;
	}
	if (in->mem) {
		in->base = in->index = -1;
		in->disp = s->ea;
		in->seg = -1;
		in->rip_relative = false;
	}
	return 0;
}

/* Control and debug registers, MSRs, descriptor tables, port I/O: as when they trap. */
static int core(struct step *s)
{
	struct guest_cpu *c = s->c;
	struct sh_insn in;
	const char *why;

	if ((s->code16 || s->asize == 2) && s->op >= 0x6c && s->op <= 0x6f)
		return unsupported(s, "string port I/O (ins, outs) in 16-bit code or addressing");
	if (core_view(s, &in, &why) < 0)
		return unsupported(s, "%s", why);
	/* ins / outs: the core addresses ES:EDI and DS:ESI (FS, GS) as flat 32-bit */
	if ((in.op == SH_OP_INS && seg_base(c, SH_ES)) ||
	    (in.op == SH_OP_OUTS && in.seg != SH_FS && in.seg != SH_GS && seg_base(c, data_seg(s))))
		return unsupported(s, "string port I/O with a segment base");
	c->r.rip = s->eip;
	if (cpu_emulate_insn(c, &in, s->b, s->n, false, 0) == EMU_HALT) {
		s->res = INTERP_HALT;
		return ST_EXIT;
	}
	return ST_CORE;
}

/* What the guest's CPUID says: the engine's, else the host's. */
static void cpuid_of(const struct guest_cpu *c, uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	if (c->ops->cpuid)
		c->ops->cpuid(c->ctx, leaf, sub, r);
	else
		__cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

static int cpuid(struct step *s)
{
	struct guest_cpu *c = s->c;
	uint32_t r[4], leaf = reg32(c, R_AX), sub = reg32(c, R_CX);

	cpuid_of(c, leaf, sub, r);
	c->r.gpr[R_AX] = r[0];
	c->r.gpr[R_BX] = r[1];
	c->r.gpr[R_CX] = r[2];
	c->r.gpr[R_DX] = r[3];
	return ST_NEXT;
}

/* int n, int3, into: a software interrupt, from the next instruction. */
static int soft_int(struct step *s, unsigned vector)
{
	if (!cpu_can_deliver(s->c))
		return undeliverable(s, vector, true);
	s->c->r.rip = s->next;
	cpu_reflect(s->c, vector, 0, true);
	return ST_FAULT;
}

/* ---- the instruction groups ------------------------------------------------------------ */

static int mul_div(struct step *s, unsigned size)
{
	struct guest_cpu *c = s->c;
	uint32_t a, m = mask_of(size);
	uint64_t u, q, rem, hi;
	int64_t sv, sq, sr, sd;

	if (!rm_get(s, size, &a))
		return s->st;
	switch (s->reg) {
	case 4: /* mul */
		u = (uint64_t)getr(c, R_AX, size) * a;
		if (size == 1) {
			setr(c, R_AX, (uint32_t)u, 2);
			hi = u >> 8;
		} else {
			setr(c, R_AX, (uint32_t)u & m, size);
			setr(c, R_DX, (uint32_t)(u >> (8 * size)) & m, size);
			hi = u >> (8 * size);
		}
		flags_put(c, FL_CF | FL_OF, hi ? FL_CF | FL_OF : 0);
		return ST_NEXT;
	case 5: /* imul */
		sv = (int64_t)(int32_t)sext(getr(c, R_AX, size), size) * (int32_t)sext(a, size);
		if (size == 1) {
			setr(c, R_AX, (uint32_t)sv, 2);
		} else {
			setr(c, R_AX, (uint32_t)sv & m, size);
			setr(c, R_DX, (uint32_t)((uint64_t)sv >> (8 * size)) & m, size);
		}
		flags_put(c, FL_CF | FL_OF,
		          sv != (int32_t)sext((uint32_t)sv, size) ? FL_CF | FL_OF : 0);
		return ST_NEXT;
	case 6: /* div */
		if (!a)
			return raise_fault(s, V_DE, 0);
		u = size == 1 ? getr(c, R_AX, 2)
		              : ((uint64_t)getr(c, R_DX, size) << (8 * size)) | getr(c, R_AX, size);
		q = u / a;
		rem = u % a;
		if (q > m)
			return raise_fault(s, V_DE, 0);
		if (size == 1) {
			setr(c, R_AX, (uint32_t)q | (uint32_t)rem << 8, 2);
		} else {
			setr(c, R_AX, (uint32_t)q, size);
			setr(c, R_DX, (uint32_t)rem, size);
		}
		return ST_NEXT;
	default: /* idiv */
		sd = (int32_t)sext(a, size);
		if (!sd)
			return raise_fault(s, V_DE, 0);
		if (size == 1)
			sv = (int16_t)getr(c, R_AX, 2);
		else if (size == 2)
			sv = (int32_t)(getr(c, R_DX, 2) << 16 | getr(c, R_AX, 2));
		else
			sv = (int64_t)((uint64_t)getr(c, R_DX, 4) << 32 | getr(c, R_AX, 4));
		if (sv == INT64_MIN && sd == -1)
			return raise_fault(s, V_DE, 0);
		sq = sv / sd;
		sr = sv % sd;
		if (sq != (int32_t)sext((uint32_t)sq, size) || sq > INT32_MAX || sq < INT32_MIN)
			return raise_fault(s, V_DE, 0);
		if (size == 1) {
			setr(c, R_AX, ((uint32_t)sq & 0xff) | ((uint32_t)sr & 0xff) << 8, 2);
		} else {
			setr(c, R_AX, (uint32_t)sq, size);
			setr(c, R_DX, (uint32_t)sr, size);
		}
		return ST_NEXT;
	}
}

/* Two- and three-operand imul: the truncated product, CF = OF = it was truncated. */
static uint32_t imul(struct guest_cpu *c, uint32_t a, uint32_t b, unsigned size)
{
	int64_t p = (int64_t)(int32_t)sext(a, size) * (int32_t)sext(b, size);

	flags_put(c, FL_CF | FL_OF, p != (int32_t)sext((uint32_t)p, size) ? FL_CF | FL_OF : 0);
	return (uint32_t)p & mask_of(size);
}

/* bt, bts, btr, btc (kind 0-3). A register offset reaches memory around the operand. */
static int bit_test(struct step *s, unsigned kind, uint32_t offset, bool imm)
{
	struct guest_cpu *c = s->c;
	unsigned sz = s->osize, bits = 8 * sz, bit;
	uint32_t addr = s->ea, v;

	if (s->mem && !imm) {
		int32_t o = (int32_t)sext(offset, sz);

		addr += (uint32_t)((o >> (sz == 4 ? 5 : 4)) * (int32_t)sz);
		bit = (unsigned)o & (bits - 1);
	} else {
		bit = offset & (bits - 1);
	}
	if (s->mem ? !rd(s, addr, &v, sz) : ((v = getr(c, s->rm, sz)), false))
		return s->st;
	flags_put(c, FL_CF, (v >> bit) & 1 ? FL_CF : 0);
	if (kind == 0)
		return ST_NEXT;
	if (kind == 1)
		v |= 1u << bit;
	else if (kind == 2)
		v &= ~(1u << bit);
	else
		v ^= 1u << bit;
	if (s->mem) {
		if (!wr(s, addr, v, sz))
			return s->st;
	} else {
		setr(c, s->rm, v, sz);
	}
	return ST_NEXT;
}

/* movs and stos forwards, a page at a time. 0: done this way; -1: go element by element
 * (an element straddles a page or a 16-bit offset's wrap, or source and destination overlap
 * closely). */
static int string_bulk(struct step *s, unsigned size, uint32_t count, uint32_t sbase)
{
	struct guest_cpu *c = s->c;
	uint8_t buf[STRING_CHUNK];
	unsigned as = s->asize;
	uint32_t di = getr(c, R_DI, as), si = getr(c, R_SI, as), v = getr(c, R_AX, size);
	uint32_t dst = seg_base(c, SH_ES) + di, src = sbase + si;
	uint64_t bytes = (uint64_t)count * size, room = 4096 - (dst & 4095);
	bool movs = s->op == 0xa4 || s->op == 0xa5;

	if (as == 2 && room > 0x10000u - di)
		room = 0x10000u - di;
	if (movs) {
		if (room > 4096 - (src & 4095))
			room = 4096 - (src & 4095);
		if (as == 2 && room > 0x10000u - si)
			room = 0x10000u - si;
		/* an overlap: element by element copies what earlier elements wrote */
		if (dst - src != 0 && dst - src < bytes && dst - src < room)
			room = dst - src;
	}
	if (bytes > room)
		bytes = room - room % size;
	if (bytes < size)
		return -1;
	if (movs) {
		if (!access_mem(s, src, buf, (unsigned)bytes, false))
			return s->st;
	} else if (size == 1) {
		memset(buf, (int)v, bytes);
	} else {
		for (uint64_t i = 0; i < bytes; i += size)
			memcpy(buf + i, &v, size);
	}
	if (!access_mem(s, dst, buf, (unsigned)bytes, true))
		return s->st;
	setr(c, R_DI, di + (uint32_t)bytes, as);
	if (movs)
		setr(c, R_SI, si + (uint32_t)bytes, as);
	setr(c, R_CX, count - (uint32_t)(bytes / size), as);
	if (getr(c, R_CX, as))
		s->next = s->eip; /* more: the same instruction again */
	return ST_NEXT;
}

/* movs, cmps, stos, lods, scas with rep / repe / repne: the source at DS:rSI (or the
 * override), the destination at ES:rDI, rSI, rDI and rCX of the address size. */
static int string_op(struct step *s)
{
	struct guest_cpu *c = s->c;
	uint8_t op = s->op;
	unsigned size = (op & 1) ? s->osize : 1, as = s->asize;
	uint32_t step = flag(c, RF_DF) ? (uint32_t)-size : size;
	uint32_t sbase = seg_base(c, data_seg(s)), dbase = seg_base(c, SH_ES);
	uint32_t todo = s->rep ? getr(c, R_CX, as) : 1, x, y;
	bool compare = op == 0xa6 || op == 0xa7 || op == 0xae || op == 0xaf;

	if (!todo)
		return ST_NEXT;
	if (s->rep && !flag(c, RF_DF) && (op == 0xa4 || op == 0xa5 || op == 0xaa || op == 0xab)) {
		int st = string_bulk(s, size, todo, sbase);

		if (st >= 0)
			return st;
	}
	for (unsigned i = 0; i < STRING_BATCH; i++) {
		uint32_t si = getr(c, R_SI, as), di = getr(c, R_DI, as);

		switch (op) {
		case 0xa4:
		case 0xa5: /* movs */
			if (!rd(s, sbase + si, &x, size) || !wr(s, dbase + di, x, size))
				return s->st;
			break;
		case 0xa6:
		case 0xa7: /* cmps */
			if (!rd(s, sbase + si, &x, size) || !rd(s, dbase + di, &y, size))
				return s->st;
			alu(c, ALU_CMP, x, y, size);
			break;
		case 0xaa:
		case 0xab: /* stos */
			if (!wr(s, dbase + di, getr(c, R_AX, size), size))
				return s->st;
			break;
		case 0xac:
		case 0xad: /* lods */
			if (!rd(s, sbase + si, &x, size))
				return s->st;
			setr(c, R_AX, x, size);
			break;
		default: /* scas */
			if (!rd(s, dbase + di, &y, size))
				return s->st;
			alu(c, ALU_CMP, getr(c, R_AX, size), y, size);
			break;
		}
		if (op != 0xaa && op != 0xab && op != 0xae && op != 0xaf)
			setr(c, R_SI, si + step, as);
		if (op != 0xac && op != 0xad)
			setr(c, R_DI, di + step, as);
		s->flags = c->r.rflags; /* a fault in a later element leaves these */
		if (!s->rep)
			return ST_NEXT;
		setr(c, R_CX, --todo, as);
		if (!todo || (compare && flag(c, FL_ZF) != (s->rep == 0xf3)))
			return ST_NEXT;
	}
	s->next = s->eip; /* more: the same instruction again */
	return ST_NEXT;
}

/* A relative branch taken: with a 16-bit operand size EIP keeps 16 bits. */
static void jump(struct step *s, uint32_t rel)
{
	s->next += rel;
	if (s->osize == 2)
		s->next &= 0xffff;
}

/* The 0f xx instructions. */
static int exec2(struct step *s)
{
	struct guest_cpu *c = s->c;
	unsigned sz = s->osize, op = s->op2;
	uint32_t a, b;

	if (op >= 0x40 && op <= 0x4f) { /* cmovcc */
		if (!rm_get(s, sz, &a))
			return s->st;
		if (cond(c, op & 15))
			setr(c, s->reg, a, sz);
		return ST_NEXT;
	}
	if (op >= 0x80 && op <= 0x8f) { /* jcc rel16/32 */
		if (cond(c, op & 15))
			jump(s, s->imm);
		return ST_NEXT;
	}
	if (op >= 0x90 && op <= 0x9f) /* setcc */
		return rm_put(s, 1, cond(c, op & 15)) ? ST_NEXT : s->st;
	if (op >= 0xc8 && op <= 0xcf) { /* bswap */
		if (sz != 4)
			return unsupported(s, "bswap of a 16-bit register");
		setr(c, op & 7, __builtin_bswap32(reg32(c, op & 7)), 4);
		return ST_NEXT;
	}
	switch (op) {
	case 0x00: /* sldt, str, lldt, ltr: not in real mode */
		if (s->reg > 3)
			break;
		if (s->real)
			return raise_fault(s, V_UD, 0);
		return core(s);
	case 0x01: {
		struct sh_insn in;

		if (s->code16 || s->asize == 2 ? !core_insn16(s, &in)
		                               : sh_decode(s->b, s->n, false, true, &in) < 0)
			break;
		switch (in.op) {
		case SH_OP_LGDT:
		case SH_OP_LIDT:
		case SH_OP_SGDT:
		case SH_OP_SIDT:
		case SH_OP_SMSW:
		case SH_OP_LMSW:
		case SH_OP_INVLPG:
		case SH_OP_XSETBV:
			return core(s);
		default:
			break;
		}
		break;
	}
	case 0x06: /* clts */
	case 0x08: /* invd */
	case 0x09: /* wbinvd */
	case 0x20: /* mov CR/DR */
	case 0x21:
	case 0x22:
	case 0x23:
	case 0x30: /* wrmsr */
	case 0x32: /* rdmsr */
		return core(s);
	case 0x0b: /* ud2 */
		return raise_fault(s, V_UD, 0);
	case 0x0d: /* prefetch, hint nops: no access */
	case 0x18 ... 0x1f:
		return ST_NEXT;
	case 0x31: { /* rdtsc: the host's TSC, as guest code running natively reads it */
		uint64_t t = __builtin_ia32_rdtsc();

		c->r.gpr[R_AX] = (uint32_t)t;
		c->r.gpr[R_DX] = t >> 32;
		return ST_NEXT;
	}
	case 0xa2:
		return cpuid(s);
	case 0xa0: /* push fs / gs */
	case 0xa8:
		return push(s, seg_selector(c, op == 0xa0 ? SH_FS : SH_GS), sz) ? ST_NEXT : s->st;
	case 0xa1: /* pop fs / gs */
	case 0xa9: {
		int st;

		if (!peek(s, &a, 1, sz))
			return s->st;
		if ((st = load_seg(s, op == 0xa1 ? SH_FS : SH_GS, (uint16_t)a)) != ST_NEXT)
			return st;
		drop(c, sz);
		return ST_NEXT;
	}
	case 0xa3: /* bt, bts, btr, btc r/m, reg */
	case 0xab:
	case 0xb3:
	case 0xbb:
		return bit_test(s, (op >> 3) & 3, getr(c, s->reg, sz), false);
	case 0xba: /* bt, bts, btr, btc r/m, imm8 */
		if (s->reg < 4)
			return raise_fault(s, V_UD, 0);
		return bit_test(s, s->reg & 3, s->imm, true);
	case 0xa4: /* shld, shrd */
	case 0xa5:
	case 0xac:
	case 0xad:
		if (!rm_get(s, sz, &a))
			return s->st;
		a = shift_double(c, a, getr(c, s->reg, sz), (op & 1) ? getr(c, R_CX, 1) : s->imm,
		                 sz, op >= 0xac);
		return rm_put(s, sz, a) ? ST_NEXT : s->st;
	case 0xaf: /* imul reg, r/m */
		if (!rm_get(s, sz, &a))
			return s->st;
		setr(c, s->reg, imul(c, getr(c, s->reg, sz), a, sz), sz);
		return ST_NEXT;
	case 0xb0: /* cmpxchg */
	case 0xb1: {
		unsigned size = op & 1 ? sz : 1;

		if (!rm_get(s, size, &a))
			return s->st;
		alu(c, ALU_CMP, getr(c, R_AX, size), a, size);
		if (flag(c, FL_ZF))
			return rm_put(s, size, getr(c, s->reg, size)) ? ST_NEXT : s->st;
		setr(c, R_AX, a, size);
		return ST_NEXT;
	}
	case 0xb2: /* lss, lfs, lgs */
		return load_far_pointer(s, SH_SS);
	case 0xb4:
		return load_far_pointer(s, SH_FS);
	case 0xb5:
		return load_far_pointer(s, SH_GS);
	case 0xb6: /* movzx, movsx */
	case 0xb7:
	case 0xbe:
	case 0xbf: {
		unsigned size = op & 1 ? 2 : 1;

		if (!rm_get(s, size, &a))
			return s->st;
		setr(c, s->reg, op >= 0xbe ? sext(a, size) : a, sz);
		return ST_NEXT;
	}
	case 0xbc: /* bsf, bsr (with f3: tzcnt, lzcnt) */
	case 0xbd:
		if (s->rep == 0xf3)
			break;
		if (!rm_get(s, sz, &a))
			return s->st;
		flags_put(c, FL_ZF, a ? 0 : FL_ZF);
		if (a)
			setr(c, s->reg,
			     op == 0xbc ? (uint32_t)__builtin_ctz(a) : 31u - __builtin_clz(a), sz);
		return ST_NEXT;
	case 0xc0: /* xadd */
	case 0xc1: {
		unsigned size = op & 1 ? sz : 1;

		if (!rm_get(s, size, &a))
			return s->st;
		b = alu(c, ALU_ADD, a, getr(c, s->reg, size), size);
		if (s->mem) {
			if (!wr(s, s->ea, b, size))
				return s->st;
			setr(c, s->reg, a, size);
		} else {
			setr(c, s->reg, a, size);
			setr(c, s->rm, b, size);
		}
		return ST_NEXT;
	}
	default:
		break;
	}
	return not_implemented(s);
}

static int exec(struct step *s)
{
	struct guest_cpu *c = s->c;
	unsigned sz = s->osize, size = (s->op & 1) ? sz : 1;
	uint8_t op = s->op;
	uint32_t a, b, r, v[8];
	int st;

	if (s->lock && !lockable(s))
		return raise_fault(s, V_UD, 0);
	if (op == 0x0f)
		return exec2(s);
	if (op < 0x40 && (op & 7) < 6) { /* add, or, adc, sbb, and, sub, xor, cmp */
		unsigned k = op >> 3;

		switch (op & 7) {
		case 0:
		case 1: /* r/m, reg */
			if (!rm_get(s, size, &a))
				return s->st;
			r = alu(c, k, a, getr(c, s->reg, size), size);
			return k == ALU_CMP || rm_put(s, size, r) ? ST_NEXT : s->st;
		case 2:
		case 3: /* reg, r/m */
			if (!rm_get(s, size, &b))
				return s->st;
			r = alu(c, k, getr(c, s->reg, size), b, size);
			break;
		default: /* AL / eAX, imm */
			s->reg = R_AX;
			r = alu(c, k, getr(c, R_AX, size), s->imm, size);
			break;
		}
		if (k != ALU_CMP)
			setr(c, s->reg, r, size);
		return ST_NEXT;
	}
	if (op >= 0x40 && op <= 0x4f) { /* inc, dec reg */
		setr(c, op & 7, incdec(c, getr(c, op & 7, sz), op >= 0x48, sz), sz);
		return ST_NEXT;
	}
	if (op >= 0x50 && op <= 0x57) /* push reg */
		return push(s, getr(c, op & 7, sz), sz) ? ST_NEXT : s->st;
	if (op >= 0x58 && op <= 0x5f) { /* pop reg (pop %esp: the value popped) */
		if (!peek(s, &a, 1, sz))
			return s->st;
		drop(c, sz);
		setr(c, op & 7, a, sz);
		return ST_NEXT;
	}
	if (op >= 0x70 && op <= 0x7f) { /* jcc rel8 */
		if (cond(c, op & 15))
			jump(s, sext(s->imm, 1));
		return ST_NEXT;
	}
	if (op >= 0x91 && op <= 0x97) { /* xchg eAX, reg */
		a = getr(c, R_AX, sz);
		setr(c, R_AX, getr(c, op & 7, sz), sz);
		setr(c, op & 7, a, sz);
		return ST_NEXT;
	}
	if ((op >= 0xa4 && op <= 0xa7) || (op >= 0xaa && op <= 0xaf))
		return string_op(s);
	if (op >= 0xb0 && op <= 0xbf) { /* mov reg, imm */
		setr(c, op & 7, s->imm, op < 0xb8 ? 1 : sz);
		return ST_NEXT;
	}
	switch (op) {
	case 0x06: /* push es, cs, ss, ds */
	case 0x0e:
	case 0x16:
	case 0x1e:
		return push(s, seg_selector(c, op >> 3), sz) ? ST_NEXT : s->st;
	case 0x07: /* pop es, ss, ds */
	case 0x17:
	case 0x1f:
		if (!peek(s, &a, 1, sz))
			return s->st;
		if ((st = load_seg(s, op >> 3, (uint16_t)a)) != ST_NEXT)
			return st;
		drop(c, sz);
		return ST_NEXT;
	case 0x60: /* pusha: EAX first, EDI at the new ESP */
		for (unsigned i = 0; i < 8; i++)
			v[i] = getr(c, 7 - i, sz);
		{
			uint8_t buf[32];
			uint32_t sp = sp_get(c) - 8 * sz;

			for (unsigned i = 0; i < 8; i++)
				memcpy(buf + i * sz, &v[i], sz);
			if (!access_mem(s, stack_at(c, sp), buf, 8 * sz, true))
				return s->st;
			sp_set(c, sp);
		}
		return ST_NEXT;
	case 0x61: /* popa: ESP's slot skipped */
		if (!peek(s, v, 8, sz))
			return s->st;
		drop(c, 8 * sz);
		for (unsigned i = 0; i < 8; i++)
			if (7 - i != R_SP)
				setr(c, 7 - i, v[i], sz);
		return ST_NEXT;
	case 0x68: /* push imm */
		return push(s, s->imm, sz) ? ST_NEXT : s->st;
	case 0x6a:
		return push(s, sext(s->imm, 1), sz) ? ST_NEXT : s->st;
	case 0x69: /* imul reg, r/m, imm */
	case 0x6b:
		if (!rm_get(s, sz, &a))
			return s->st;
		setr(c, s->reg, imul(c, a, op == 0x6b ? sext(s->imm, 1) : s->imm, sz), sz);
		return ST_NEXT;
	case 0x6c: /* ins, outs */
	case 0x6d:
	case 0x6e:
	case 0x6f:
	case 0xe4: /* in, out */
	case 0xe5:
	case 0xe6:
	case 0xe7:
	case 0xec:
	case 0xed:
	case 0xee:
	case 0xef:
		return core(s);
	case 0x80: /* group 1: alu r/m, imm */
	case 0x81:
	case 0x82:
	case 0x83:
		if (!rm_get(s, size, &a))
			return s->st;
		r = alu(c, s->reg, a, op == 0x83 ? sext(s->imm, 1) : s->imm, size);
		return s->reg == ALU_CMP || rm_put(s, size, r) ? ST_NEXT : s->st;
	case 0x84: /* test r/m, reg */
	case 0x85:
		if (!rm_get(s, size, &a))
			return s->st;
		alu(c, ALU_AND, a, getr(c, s->reg, size), size);
		return ST_NEXT;
	case 0x86: /* xchg r/m, reg */
	case 0x87:
		if (!rm_get(s, size, &a) || !rm_put(s, size, getr(c, s->reg, size)))
			return s->st;
		setr(c, s->reg, a, size);
		return ST_NEXT;
	case 0x88: /* mov r/m, reg */
	case 0x89:
		return rm_put(s, size, getr(c, s->reg, size)) ? ST_NEXT : s->st;
	case 0x8a: /* mov reg, r/m */
	case 0x8b:
		if (!rm_get(s, size, &a))
			return s->st;
		setr(c, s->reg, a, size);
		return ST_NEXT;
	case 0x8c: /* mov r/m, Sreg: a register gets it zero-extended, memory 16 bits */
		if (s->reg > SH_GS)
			return raise_fault(s, V_UD, 0);
		return rm_put(s, s->mem ? 2 : sz, seg_selector(c, s->reg)) ? ST_NEXT : s->st;
	case 0x8d: /* lea: the offset, no segment base */
		if (!s->mem)
			return raise_fault(s, V_UD, 0);
		setr(c, s->reg, s->off, sz);
		return ST_NEXT;
	case 0x8e: /* mov Sreg, r/m */
		if (s->reg == SH_CS || s->reg > SH_GS)
			return raise_fault(s, V_UD, 0);
		if (!rm_get(s, 2, &a))
			return s->st;
		return load_seg(s, s->reg, (uint16_t)a);
	case 0x8f: /* pop r/m: an ESP-based address is taken after the pop */
		if (s->reg)
			break;
		if (!peek(s, &a, 1, sz))
			return s->st;
		if (s->mem) {
			if (!wr(s, s->ea + (s->base == R_SP ? sz : 0), a, sz))
				return s->st;
			drop(c, sz);
		} else {
			drop(c, sz);
			setr(c, s->rm, a, sz);
		}
		return ST_NEXT;
	case 0x90: /* nop, pause */
	case 0x9b: /* fwait: no x87 state to wait for */
		return ST_NEXT;
	case 0x98: /* cwde, cbw */
		setr(c, R_AX, sext(getr(c, R_AX, sz / 2), sz / 2), sz);
		return ST_NEXT;
	case 0x99: /* cdq, cwd */
		setr(c, R_DX, (getr(c, R_AX, sz) & msb_of(sz)) ? ~0u : 0, sz);
		return ST_NEXT;
	case 0x9a: /* lcall ptr16:32 */
		return far_call(s, (uint16_t)s->imm2, s->imm);
	case 0x9c: /* pushf: VM and RF read as 0 */
		return push(s, (uint32_t)c->r.rflags & ~(uint32_t)(RF_VM | RF_RF), sz) ? ST_NEXT
		                                                                       : s->st;
	case 0x9d: { /* popf: at CPL0 all but VM, RF, VIF, VIP, and IOPL (the guest keeps 0) */
		uint64_t keep =
		    FL_ARITH | RF_TF | RF_IF | RF_DF | RF_NT | (sz == 4 ? RF_AC | FL_ID : 0);

		if (!peek(s, &a, 1, sz))
			return s->st;
		if (a & RF_TF)
			return unsupported(s, "single-stepping (popf sets TF)");
		drop(c, sz);
		c->r.rflags = ((c->r.rflags & ~keep) | (a & keep) | RF_RESERVED) & ~RF_RF;
		return ST_NEXT;
	}
	case 0x9e: /* sahf */
		flags_put(c, FL_SF | FL_ZF | FL_AF | FL_PF | FL_CF, getr(c, 4, 1));
		return ST_NEXT;
	case 0x9f: /* lahf */
		setr(c, 4, ((uint32_t)c->r.rflags & 0xd5) | 2, 1);
		return ST_NEXT;
	case 0xa0: /* mov AL / eAX, moffs and back */
	case 0xa1:
		if (!rd(s, s->imm + seg_base(c, data_seg(s)), &a, size))
			return s->st;
		setr(c, R_AX, a, size);
		return ST_NEXT;
	case 0xa2:
	case 0xa3:
		return wr(s, s->imm + seg_base(c, data_seg(s)), getr(c, R_AX, size), size) ? ST_NEXT
		                                                                           : s->st;
	case 0xa8: /* test AL / eAX, imm */
	case 0xa9:
		alu(c, ALU_AND, getr(c, R_AX, size), s->imm, size);
		return ST_NEXT;
	case 0xc0: /* group 2: rol ... sar */
	case 0xc1:
	case 0xd0:
	case 0xd1:
	case 0xd2:
	case 0xd3:
		if (!rm_get(s, size, &a))
			return s->st;
		b = op <= 0xc1 ? s->imm : op <= 0xd1 ? 1 : getr(c, R_CX, 1);
		if (!(b & 31))
			return ST_NEXT;
		r = shift(c, s->reg, a, b, size);
		return rm_put(s, size, r) ? ST_NEXT : s->st;
	case 0xc2: /* ret, ret imm16 */
	case 0xc3:
		if (!peek(s, &a, 1, sz))
			return s->st;
		drop(c, sz + (op == 0xc2 ? s->imm : 0));
		s->next = a;
		return ST_NEXT;
	case 0xc4: /* les, lds (with mod 3: VEX) */
	case 0xc5:
		if (!s->mem)
			break;
		return load_far_pointer(s, op == 0xc4 ? SH_ES : SH_DS);
	case 0xc6: /* mov r/m, imm */
	case 0xc7:
		if (s->reg)
			break;
		return rm_put(s, size, s->imm) ? ST_NEXT : s->st;
	case 0xc8: { /* enter imm16, 0 */
		uint32_t frame;

		if (s->imm2 & 31)
			return unsupported(s, "enter with a nesting level");
		if (!push(s, getr(c, R_BP, sz), sz))
			return s->st;
		frame = sp_get(c);
		setr(c, R_BP, frame, sz);
		sp_set(c, frame - s->imm);
		return ST_NEXT;
	}
	case 0xc9: /* leave: rSP = rBP (of the stack's size), pop rBP */
		b = getr(c, R_BP, c->hidden.stack16 ? 2 : 4);
		if (!rd(s, stack_at(c, b), &a, sz))
			return s->st;
		sp_set(c, b + sz);
		setr(c, R_BP, a, sz);
		return ST_NEXT;
	case 0xca: /* lret, lret imm16 */
	case 0xcb:
		return far_return(s, op == 0xca ? s->imm : 0);
	case 0xcc:
		return soft_int(s, V_BP);
	case 0xcd:
		return soft_int(s, s->imm);
	case 0xce:
		return flag(c, FL_OF) ? soft_int(s, V_OF) : ST_NEXT;
	case 0xcf:
		return iret(s);
	case 0xdb: /* fninit (db e3), fnclex (db e2): no-ops, the interpreter runs no other x87
	            * instruction (interp32.h says when that differs from hardware) */
		if (!s->mem && s->reg == 4 && (s->rm == 2 || s->rm == 3))
			return ST_NEXT;
		break;
	case 0xd7: /* xlat */
		a = (getr(c, R_BX, s->asize) + getr(c, R_AX, 1)) & mask_of(s->asize);
		if (!rd(s, a + seg_base(c, data_seg(s)), &a, 1))
			return s->st;
		setr(c, R_AX, a, 1);
		return ST_NEXT;
	case 0xe0: /* loopne, loope, loop, jecxz */
	case 0xe1:
	case 0xe2:
	case 0xe3: { /* the count in CX or ECX, by the address size */
		unsigned as = s->asize;
		bool taken;

		if (op == 0xe3) {
			taken = getr(c, R_CX, as) == 0;
		} else {
			setr(c, R_CX, getr(c, R_CX, as) - 1, as);
			taken = getr(c, R_CX, as) != 0 &&
			        (op == 0xe2 || (op == 0xe1) == flag(c, FL_ZF));
		}
		if (taken)
			jump(s, sext(s->imm, 1));
		return ST_NEXT;
	}
	case 0xe8: /* call rel */
		if (!push(s, s->next, sz))
			return s->st;
		jump(s, s->imm);
		return ST_NEXT;
	case 0xe9: /* jmp rel */
		jump(s, s->imm);
		return ST_NEXT;
	case 0xea: /* ljmp ptr16:32 */
		return far_jump(s, (uint16_t)s->imm2, s->imm);
	case 0xeb: /* jmp rel8 */
		jump(s, sext(s->imm, 1));
		return ST_NEXT;
	case 0xf4: /* hlt */
		c->r.rip = s->next;
		s->res = INTERP_HALT;
		return ST_EXIT;
	case 0xf5: /* cmc, clc, stc, cli, sti, cld, std */
		c->r.rflags ^= FL_CF;
		return ST_NEXT;
	case 0xf8:
	case 0xf9:
		flags_put(c, FL_CF, op == 0xf9 ? FL_CF : 0);
		return ST_NEXT;
	case 0xfa:
	case 0xfb:
		flags_put(c, RF_IF, op == 0xfb ? RF_IF : 0);
		return ST_NEXT;
	case 0xfc:
	case 0xfd:
		flags_put(c, RF_DF, op == 0xfd ? RF_DF : 0);
		return ST_NEXT;
	case 0xf6: /* group 3 */
	case 0xf7:
		switch (s->reg) {
		case 0:
		case 1: /* test r/m, imm */
			if (!rm_get(s, size, &a))
				return s->st;
			alu(c, ALU_AND, a, s->imm, size);
			return ST_NEXT;
		case 2: /* not */
			if (!rm_get(s, size, &a))
				return s->st;
			return rm_put(s, size, ~a) ? ST_NEXT : s->st;
		case 3: /* neg */
			if (!rm_get(s, size, &a))
				return s->st;
			return rm_put(s, size, alu(c, ALU_SUB, 0, a, size)) ? ST_NEXT : s->st;
		default:
			return mul_div(s, size);
		}
	case 0xfe: /* group 4: inc, dec r/m8 */
	case 0xff: /* group 5 */
		if (s->reg < 2) {
			if (!rm_get(s, size, &a))
				return s->st;
			return rm_put(s, size, incdec(c, a, s->reg == 1, size)) ? ST_NEXT : s->st;
		}
		if (op == 0xfe || s->reg == 7)
			return raise_fault(s, V_UD, 0);
		if ((s->reg == 3 || s->reg == 5) && !s->mem)
			return raise_fault(s, V_UD, 0);
		if (s->reg == 3 || s->reg == 5) { /* lcall, ljmp m16:32 */
			uint8_t buf[6];
			uint16_t sel;

			a = 0;
			if (!access_mem(s, s->ea, buf, sz + 2, false))
				return s->st;
			memcpy(&a, buf, sz);
			memcpy(&sel, buf + sz, 2);
			return s->reg == 3 ? far_call(s, sel, a) : far_jump(s, sel, a);
		}
		if (!rm_get(s, sz, &a))
			return s->st;
		if (s->reg == 6) /* push r/m */
			return push(s, a, sz) ? ST_NEXT : s->st;
		if (s->reg == 2 && !push(s, s->next, sz)) /* call r/m */
			return s->st;
		s->next = a; /* call / jmp r/m */
		return ST_NEXT;
	default:
		break;
	}
	return not_implemented(s);
}

/* ---- the loop ------------------------------------------------------------------------- */

/* After a delivery or a CS change: where the code goes on (CS's hidden part is the
 * descriptor's). */
static int check_cs(struct step *s)
{
	struct guest_cpu *c = s->c;
	uint64_t d = descriptor(c, c->cs);

	if (cpu_long_mode(c)) {
		if ((d & D_L) && !(d & D_DB))
			return to_long_mode(s);
		/* the SDM makes a gate to other than 64-bit code a #GP, which hearth's delivery
		 * does not check */
		return unsupported(s, "a handler in CS 0x%04x, not 64-bit code, in long mode",
		                   c->cs);
	}
	if (!code_runnable(d))
		return unsupported(s,
		                   "code in CS 0x%04x, not 32-bit code without a limit nor "
		                   "16-bit code (0x%016llx)",
		                   c->cs, (unsigned long long)d);
	c->hidden.base[SH_CS] = desc_base(d);
	c->hidden.code16 = !(d & D_DB);
	return ST_NEXT;
}

/* The CPU core asked the engine to stop (ops->stop, already called). */
static enum interp_result core_stopped(struct step *s)
{
	char why[192];

	say_where(s, why, sizeof(why),
	          s->c->stop_how == CPU_STOP_TRIPLE_FAULT ? "a triple fault (no usable IDT)"
	                                                  : "the CPU core refused to go on");
	put_why(s, why);
	return s->c->stop_how == CPU_STOP_TRIPLE_FAULT ? INTERP_FAULT : INTERP_UNSUPPORTED;
}

enum interp_result interp32_run(struct guest_cpu *c, uint64_t max_steps, struct interp32_exit *out)
{
	struct step s = {.c = c, .out = out};
	uint64_t steps = 0;
	enum interp_result res = INTERP_BUDGET;

	c->stopped = false;
	if (out) {
		out->steps = 0;
		out->why[0] = 0;
	}
	while (steps < max_steps) {
		uint16_t cs = c->cs;
		int st;

		steps++;
		s.eip = (uint32_t)c->r.rip;
		s.real = !(c->cr0 & CR0_PE);
		s.code16 = c->hidden.code16;
		s.lin = seg_base(c, SH_CS) + s.eip;
		s.flags = c->r.rflags;
		s.len = 0;
		if (s.real && !s.code16) { /* PE cleared in 32-bit code: nothing here does that */
			unsupported(&s,
			            "real mode with a 32-bit CS (CR0.PE cleared in 32-bit code)");
			res = s.res;
			break;
		}
		st = fetch(&s);
		if (st == ST_NEXT)
			st = decode(&s);
		if (st == ST_NEXT)
			st = exec(&s);
		if (st == ST_NEXT) {
			c->r.rip = s.next;
			continue;
		}
		if (st != ST_EXIT && c->stopped) {
			res = core_stopped(&s);
			break;
		}
		if (st == ST_FAULT || (st == ST_CORE && c->cs != cs && !s.real))
			st = check_cs(&s);
		if (st == ST_EXIT) {
			res = s.res;
			break;
		}
	}
	if (out)
		out->steps = steps;
	return res;
}

void interp_sipi_state(struct guest_cpu *c, uint8_t vector)
{
	uint32_t id[4];

	memset(&c->r, 0, sizeof(c->r));
	c->r.rflags = RF_RESERVED;
	cpuid_of(c, 1, 0, id);
	c->r.gpr[R_DX] = id[0]; /* the processor signature, as after INIT */
	c->cr0 = CR0_CD | CR0_NW | CR0_ET;
	c->cr2 = c->cr3 = c->cr4 = c->efer = c->cr8 = 0;
	c->gdtr.base = c->idtr.base = 0;
	c->gdtr.limit = c->idtr.limit = 0xffff;
	c->ldtr = c->tr = 0;
	c->tr_base = 0;
	c->cs = (uint16_t)(vector << 8);
	c->ss = c->ds = c->es = c->fs = c->gs = 0;
	c->fs_base = c->gs_base = 0;
	memset(&c->hidden, 0, sizeof(c->hidden));
	c->hidden.base[SH_CS] = (uint32_t)vector << 12;
	c->hidden.code16 = c->hidden.stack16 = true;
	c->stopped = false;
}
