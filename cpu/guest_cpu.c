/* The virtual x86 CPU of a deprivileged guest (cpu/guest_cpu.h): guest memory through its
 * mapping, delivery through its IDT, and the emulation of what faults at CPL3. */
#include "guest_cpu.h"
#include "x86.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Elements of a rep ins/outs handled per trap: a longer string resumes at the same
 * instruction (RCX counts down), so a huge count cannot hold the vCPU thread. */
#define PIO_STRING_BATCH 4096

/* The GDT sizes hearth emulates a walk of (the engines mirror at most this many). */
#define GDT_MAX_BYTES 65536

/* ---- state ------------------------------------------------------------------------- */

bool cpu_long_mode(const struct guest_cpu *c)
{
	return c->efer & EFER_LMA;
}

static uint64_t desc_of(const struct guest_cpu *c, uint16_t sel)
{
	return c->ops->descriptor(c->ctx, sel);
}

/* CS's descriptor: the one it was loaded from, else the GDT's. */
static uint64_t cs_desc(const struct guest_cpu *c)
{
	return c->hidden.cs_desc ? c->hidden.cs_desc : desc_of(c, c->cs);
}

bool cpu_code64(const struct guest_cpu *c)
{
	return cpu_long_mode(c) && (cs_desc(c) & (1ULL << 53));
}

bool cpu_code32(const struct guest_cpu *c)
{
	return cs_desc(c) & (1ULL << 54);
}

static void stop(struct guest_cpu *c, enum cpu_stop how, const char *why)
{
	c->stopped = true;
	c->stop_how = how;
	c->ops->stop(c->ctx, how, why);
}

static void user_mode_refused(struct guest_cpu *c, const char *how)
{
	char why[200];

	snprintf(
	    why, sizeof(why),
	    "the guest tried to enter its own user mode (%s); this engine runs "
	    "single-address-space guests only (use --engine hardware, on a host with /dev/kvm)",
	    how);
	stop(c, CPU_STOP_REFUSED, why);
}

/* ---- memory -------------------------------------------------------------------------- */

static bool copy(struct guest_cpu *c, uint64_t va, void *buf, size_t len, bool write)
{
	uint8_t *p = buf;

	while (len) {
		uint64_t gpa, chunk = 4096 - (va & 4095);
		void *h;

		if (chunk > len)
			chunk = len;
		if (!c->ops->translate(c->ctx, va, write, &gpa))
			return false;
		h = gm_ptr(c->gm, gpa, chunk);
		if (!h)
			return false;
		if (write) {
			memcpy(h, p, chunk);
			gm_mark_dirty(c->gm, gpa, chunk);
		} else {
			memcpy(p, h, chunk);
		}
		va += chunk;
		p += chunk;
		len -= chunk;
	}
	return true;
}

bool cpu_read(struct guest_cpu *c, uint64_t va, void *buf, size_t len)
{
	return copy(c, va, buf, len, false);
}

bool cpu_write(struct guest_cpu *c, uint64_t va, const void *buf, size_t len)
{
	return copy(c, va, (void *)buf, len, true);
}

int cpu_fetch_decode(struct guest_cpu *c, struct sh_insn *in, uint8_t *bytes, size_t *n)
{
	uint64_t rip = c->r.rip;
	size_t first = 4096 - (rip & 4095);

	/* What is mapped of the next 15 bytes: one translation per page. */
	*n = 0;
	if (first > 15)
		first = 15;
	if (cpu_read(c, rip, bytes, first)) {
		*n = first;
		if (first < 15 && cpu_read(c, rip + first, bytes + first, 15 - first))
			*n = 15;
	}
	return sh_decode(bytes, *n, cpu_code64(c), cpu_code32(c), in);
}

static uint64_t *gpr(struct guest_cpu *c, unsigned n)
{
	return &c->r.gpr[n & 15];
}

static void set_gpr(struct guest_cpu *c, unsigned n, uint64_t v, unsigned size)
{
	uint64_t *r = gpr(c, n);

	if (size == 8)
		*r = v;
	else if (size == 4)
		*r = (uint32_t)v; /* 32-bit writes zero the upper half */
	else
		*r = (*r & ~0xffffULL) | (v & 0xffff);
}

static uint64_t seg_base(const struct guest_cpu *c, int seg)
{
	if (seg == SH_FS)
		return c->fs_base;
	if (seg == SH_GS)
		return c->gs_base;
	return 0;
}

static uint64_t effective_address(const struct guest_cpu *c, const struct sh_insn *in)
{
	uint64_t a = (uint64_t)in->disp;

	if (in->rip_relative)
		a += c->r.rip + in->len;
	if (in->base >= 0)
		a += c->r.gpr[in->base & 15];
	if (in->index >= 0)
		a += c->r.gpr[in->index & 15] * in->scale;
	if (in->addrsize == 4)
		a &= 0xffffffffULL;
	return a + seg_base(c, in->seg);
}

/* ---- delivery through the guest's IDT ------------------------------------------------ */

static bool push(struct guest_cpu *c, uint64_t *rsp, uint64_t v, unsigned size)
{
	*rsp -= size;
	return cpu_write(c, *rsp, &v, size);
}

bool cpu_vector_has_error_code(unsigned v)
{
	return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

bool cpu_can_deliver(const struct guest_cpu *c)
{
	/* in long mode the handler is 64-bit code, whose stack has no base nor 16-bit size */
	if (cpu_long_mode(c))
		return true;
	return (c->cr0 & CR0_PE) && !c->hidden.stack16 && !c->hidden.base[SH_SS];
}

/* SS and the descriptor it is loaded from (the shadow engine enters with it). */
static void set_ss(struct guest_cpu *c, uint16_t sel)
{
	c->ss = sel & ~3;
	c->hidden.ss_desc = c->ss ? desc_of(c, c->ss) : 0;
}

/* A present code segment, L and D not both set (SDM 5.8: else #GP). */
static bool code_segment(uint64_t d)
{
	const uint64_t p = 1ULL << 47, s = 1ULL << 44, code = 1ULL << 43, l = 1ULL << 53,
	               db = 1ULL << 54;

	return (d & (p | s | code)) == (p | s | code) && !((d & l) && (d & db));
}

/* CS and its hidden part from its descriptor, as a delivery loads them (64-bit code in long
 * mode has no base). */
static void load_cs(struct guest_cpu *c, uint16_t sel, uint64_t d)
{
	bool code64 = cpu_long_mode(c) && (d & (1ULL << 53));

	c->cs = sel & ~3;
	c->hidden.cs_desc = d;
	c->hidden.base[SH_CS] =
	    code64 ? 0 : (uint32_t)(((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24));
	c->hidden.code16 = !code64 && !(d & (1ULL << 54));
}

/* Deliver `vector` as hardware does for an exception or interrupt taken at (virtual) CPL0. */
static bool deliver(struct guest_cpu *c, unsigned vector, uint32_t err, bool soft)
{
	bool with_err = cpu_vector_has_error_code(vector) && !soft;
	uint64_t rflags = c->r.rflags, rsp = c->r.gpr[R_SP];
	uint16_t sel;
	uint64_t target, d;
	unsigned type;

	if (cpu_long_mode(c)) {
		uint64_t gate[2];
		unsigned ist;

		if (16u * vector + 15 > c->idtr.limit ||
		    !cpu_read(c, c->idtr.base + 16u * vector, gate, 16))
			return false;
		type = (gate[0] >> 40) & 0xf;
		if (!(gate[0] & (1ULL << 47)) || (type != 0xe && type != 0xf))
			return false;
		sel = (uint16_t)(gate[0] >> 16);
		target = (gate[0] & 0xffff) | ((gate[0] >> 32) & 0xffff0000ULL) | (gate[1] << 32);
		ist = (gate[0] >> 32) & 7;
		if (ist && !cpu_read(c, c->tr_base + 36 + 8 * (ist - 1), &rsp, 8))
			return false;
		rsp &= ~15ULL;
		if (!push(c, &rsp, c->ss, 8) || !push(c, &rsp, c->r.gpr[R_SP], 8) ||
		    !push(c, &rsp, rflags, 8) || !push(c, &rsp, c->cs, 8) ||
		    !push(c, &rsp, c->r.rip, 8) || (with_err && !push(c, &rsp, err, 8)))
			return false;
	} else {
		uint64_t gate;

		if (8u * vector + 7 > c->idtr.limit ||
		    !cpu_read(c, c->idtr.base + 8u * vector, &gate, 8))
			return false;
		type = (gate >> 40) & 0xf;
		if (!(gate & (1ULL << 47)) || (type != 0xe && type != 0xf))
			return false;
		sel = (uint16_t)(gate >> 16);
		target = (gate & 0xffff) | ((gate >> 32) & 0xffff0000ULL);
		if (!push(c, &rsp, (uint32_t)rflags, 4) || !push(c, &rsp, c->cs, 4) ||
		    !push(c, &rsp, (uint32_t)c->r.rip, 4) || (with_err && !push(c, &rsp, err, 4)))
			return false;
	}
	d = desc_of(c, sel & ~3);
	if (!code_segment(d))
		return false;
	load_cs(c, sel, d);
	c->r.gpr[R_SP] = rsp;
	c->r.rip = target;
	c->r.rflags &= ~(RF_TF | RF_NT | RF_RF | RF_VM);
	if (type == 0xe)
		c->r.rflags &= ~RF_IF; /* interrupt gate */
	return true;
}

void cpu_reflect(struct guest_cpu *c, unsigned vector, uint32_t err, bool soft)
{
	char why[160];

	if (!cpu_can_deliver(c)) {
		snprintf(
		    why, sizeof(why),
		    "vector %u in %s, which hearth does not deliver (it delivers through a 32- "
		    "or 64-bit IDT onto a flat stack)",
		    vector, (c->cr0 & CR0_PE) ? "16-bit or non-flat stack state" : "real mode");
		stop(c, CPU_STOP_REFUSED, why);
		return;
	}
	if (deliver(c, vector, err, soft))
		return;
	if (vector != V_DF && vector != V_GP && deliver(c, V_GP, vector * 8 + 2, false))
		return;
	if (vector != V_DF && deliver(c, V_DF, 0, false))
		return;
	snprintf(why, sizeof(why), "vector %u could not be delivered", vector);
	stop(c, CPU_STOP_TRIPLE_FAULT, why);
}

void cpu_page_fault(struct guest_cpu *c, uint64_t va, uint32_t err)
{
	c->cr2 = va;
	cpu_reflect(c, V_PF, err, false);
}

/* ---- control registers and MSRs ------------------------------------------------------- */

static void mov_to_cr(struct guest_cpu *c, unsigned cr, uint64_t v)
{
	switch (cr) {
	case 0:
		if ((v & CR0_PG) && !(v & CR0_PE)) {
			cpu_reflect(c, V_GP, 0, false);
			return;
		}
		if ((v & CR0_PG) && !(c->cr0 & CR0_PG)) {
			if (!(c->efer & EFER_LME) || !(c->cr4 & CR4_PAE)) {
				stop(c, CPU_STOP_REFUSED,
				     "the guest enabled 32-bit paging, which this engine does not "
				     "support (4-level paging only)");
				return;
			}
			c->efer |= EFER_LMA;
		}
		if (!(v & CR0_PG))
			c->efer &= ~EFER_LMA;
		c->cr0 = v | CR0_ET;
		break;
	case 2:
		c->cr2 = v;
		return;
	case 3:
		c->cr3 = v;
		break;
	case 4:
		c->cr4 = v;
		return;
	case 8:
		c->cr8 = v & 15;
		return;
	default:
		cpu_reflect(c, V_UD, 0, false);
		return;
	}
	c->ops->paging_changed(c->ctx);
}

static uint64_t mov_from_cr(const struct guest_cpu *c, unsigned cr)
{
	switch (cr) {
	case 0:
		return c->cr0;
	case 2:
		return c->cr2;
	case 3:
		return c->cr3;
	case 4:
		return c->cr4;
	case 8:
		return c->cr8;
	default:
		return 0;
	}
}

/* A base or syscall target: hardware refuses (#GP, false here) an address not canonical. */
static bool set_canonical(uint64_t *msr, uint64_t v)
{
	if (!cpu_canonical(v))
		return false;
	*msr = v;
	return true;
}

/* False: #GP. */
static bool wrmsr(struct guest_cpu *c, uint32_t index, uint64_t v)
{
	switch (index) {
	case MSR_EFER: {
		bool nxe = c->efer & EFER_NXE;

		c->efer = (v & (EFER_SCE | EFER_LME | EFER_NXE)) | (c->efer & EFER_LMA);
		if (nxe != !!(v & EFER_NXE))
			c->ops->paging_changed(c->ctx);
		return true;
	}
	case MSR_STAR:
		c->star = v;
		return true;
	case MSR_LSTAR:
		return set_canonical(&c->lstar, v);
	case MSR_CSTAR:
		return set_canonical(&c->cstar, v);
	case MSR_SFMASK:
		c->sfmask = v;
		return true;
	case MSR_KERNEL_GS_BASE:
		return set_canonical(&c->kernel_gs_base, v);
	case MSR_FS_BASE:
		return set_canonical(&c->fs_base, v);
	case MSR_GS_BASE:
		return set_canonical(&c->gs_base, v);
	default:
		return c->ops->wrmsr(c->ctx, index, v);
	}
}

static bool rdmsr(struct guest_cpu *c, uint32_t index, uint64_t *v)
{
	switch (index) {
	case MSR_EFER:
		*v = c->efer;
		return true;
	case MSR_STAR:
		*v = c->star;
		return true;
	case MSR_LSTAR:
		*v = c->lstar;
		return true;
	case MSR_CSTAR:
		*v = c->cstar;
		return true;
	case MSR_SFMASK:
		*v = c->sfmask;
		return true;
	case MSR_KERNEL_GS_BASE:
		*v = c->kernel_gs_base;
		return true;
	case MSR_FS_BASE:
		*v = c->fs_base;
		return true;
	case MSR_GS_BASE:
		*v = c->gs_base;
		return true;
	default:
		return c->ops->rdmsr(c->ctx, index, v);
	}
}

/* ---- segments and far returns ------------------------------------------------------- */

bool cpu_ss_loadable(struct guest_cpu *c, uint16_t sel)
{
	uint64_t d;

	if ((sel & ~3) == 0)
		return true; /* a null SS is fine at CPL0 in long mode */
	d = desc_of(c, sel);
	/* present, data (not code), writable */
	return (d & (1ULL << 47)) && !(d & (1ULL << 43)) && (d & (1ULL << 41));
}

/* DS, ES, FS, GS at CPL0: a null selector, or a present data or readable code segment. */
static bool data_loadable(struct guest_cpu *c, uint16_t sel)
{
	uint64_t d;

	if ((sel & ~3) == 0)
		return true;
	d = desc_of(c, sel);
	return (d & (1ULL << 47)) && (d & (1ULL << 44)) &&
	       (!(d & (1ULL << 43)) || (d & (1ULL << 41)));
}

/* A loaded FS or GS takes the descriptor's (32-bit) base, also in 64-bit mode. */
static void set_data_segment(struct guest_cpu *c, unsigned reg, uint16_t sel)
{
	uint64_t d = (sel & ~3) ? desc_of(c, sel) : 0;
	uint64_t base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);

	switch (reg) {
	case SH_DS:
		c->ds = sel;
		break;
	case SH_ES:
		c->es = sel;
		break;
	case SH_FS:
		c->fs = sel;
		c->fs_base = base;
		break;
	case SH_GS:
		c->gs = sel;
		c->gs_base = base;
		break;
	}
}

static bool pop(struct guest_cpu *c, uint64_t *v, unsigned size)
{
	*v = 0;
	if (!cpu_read(c, c->r.gpr[R_SP], v, size))
		return false;
	c->r.gpr[R_SP] += size;
	return true;
}

/* A far transfer's target: a present code segment, L and D not both set (SDM 5.8: #GP). In
 * long mode, the process engine runs 64-bit code only (the host refuses 32-bit user code). */
enum target { TARGET_OK, TARGET_GP, TARGET_REFUSED };

static enum target code_target(struct guest_cpu *c, uint64_t d)
{
	if (!code_segment(d))
		return TARGET_GP;
	if (c->virtual_segments && cpu_long_mode(c) && !(d & (1ULL << 53))) {
		stop(c, CPU_STOP_REFUSED,
		     "the guest enters 32-bit code in long mode (compatibility mode), which this "
		     "engine does not run");
		return TARGET_REFUSED;
	}
	return TARGET_OK;
}

/* iret / lret back to (virtual) CPL0 code. */
static bool far_return(struct guest_cpu *c, const struct sh_insn *in, bool iret)
{
	unsigned sz = in->opsize;
	uint64_t rip, cs, fl = 0, rsp = 0, ss = 0, d;
	uint64_t saved_rsp = c->r.gpr[R_SP];
	enum target t;

	if (!pop(c, &rip, sz) || !pop(c, &cs, sz) || (iret && !pop(c, &fl, sz)))
		goto fault;
	if ((cs & 3) == 3) {
		user_mode_refused(c, iret ? "iret to CPL3" : "far return to CPL3");
		return true;
	}
	if (iret && sz == 8 && (!pop(c, &rsp, 8) || !pop(c, &ss, 8)))
		goto fault;
	if (!iret)
		c->r.gpr[R_SP] += in->imm;
	d = desc_of(c, (uint16_t)(cs & ~3));
	t = code_target(c, d);
	if (t == TARGET_REFUSED)
		return true;
	if (t == TARGET_GP)
		goto fault;
	if (iret && sz == 8 && !cpu_ss_loadable(c, (uint16_t)ss))
		goto fault;
	c->cs = (uint16_t)(cs & ~3);
	c->hidden.cs_desc = d;
	c->r.rip = sz == 4 ? (uint32_t)rip : rip;
	if (iret) {
		uint64_t keep = RF_IOPL | RF_VM;

		c->nmi_blocked = false;

		if (sz == 4)
			fl = (c->r.rflags & ~0xffffffffULL) | (uint32_t)fl;
		c->r.rflags = (fl & ~keep) | RF_RESERVED;
		if (sz == 8) {
			set_ss(c, (uint16_t)ss);
			c->r.gpr[R_SP] = rsp;
		}
	}
	return true;
fault:
	c->r.gpr[R_SP] = saved_rsp;
	cpu_reflect(c, V_GP, 0, false);
	return false;
}

/* jmp / call far through memory, or to an immediate pointer (32-bit code), to (virtual) CPL0
 * code: how kernels reload CS after lgdt. */
static bool far_jump(struct guest_cpu *c, const struct sh_insn *in, uint64_t next)
{
	unsigned sz = in->opsize;
	uint64_t off = 0, sel = 0, rsp = c->r.gpr[R_SP], d;
	enum target t;

	if (in->far_imm) {
		off = in->imm;
		sel = in->far_sel;
	} else if (!cpu_read(c, effective_address(c, in), &off, sz) ||
	           !cpu_read(c, effective_address(c, in) + sz, &sel, 2)) {
		goto fault;
	}
	if ((sel & 3) == 3) {
		user_mode_refused(c,
		                  in->op == SH_OP_LJMP ? "far jump to CPL3" : "far call to CPL3");
		return true;
	}
	d = desc_of(c, (uint16_t)(sel & ~3));
	t = code_target(c, d);
	if (t == TARGET_REFUSED)
		return true;
	if (t == TARGET_GP)
		goto fault;
	if (in->op == SH_OP_LCALL && (!push(c, &rsp, c->cs, sz) || !push(c, &rsp, next, sz)))
		goto fault;
	c->r.gpr[R_SP] = rsp;
	c->cs = (uint16_t)(sel & ~3);
	c->hidden.cs_desc = d;
	c->r.rip = sz == 8 ? off : sz == 4 ? (uint32_t)off : (uint16_t)off;
	return true;
fault:
	cpu_reflect(c, V_GP, (uint32_t)sel & ~3u, false);
	return false;
}

/* ---- port I/O ------------------------------------------------------------------------ */

static void set_io_result(struct guest_cpu *c, uint32_t v, unsigned size)
{
	uint64_t mask = size == 4 ? 0xffffffffULL : size == 2 ? 0xffffULL : 0xffULL;
	uint64_t *rax = &c->r.gpr[R_AX];

	/* in %dx, %eax zeroes the upper half; in %dx, %al/%ax keep the rest of RAX */
	*rax = size == 4 ? v : (*rax & ~mask) | (v & mask);
}

static void port_access(struct guest_cpu *c, uint16_t port, bool write, uint32_t *v, unsigned size)
{
	if ((int)port == c->trap_port) {
		if (!write)
			*v = ~0U; /* the engine's own port: nothing answers the guest there */
		return;
	}
	c->ops->pio(c->ctx, port, write, v, size);
}

/* A string register after one element: `amask` wide, as the address size writes it (a
 * 32-bit one clears the upper half, as hardware does in 64-bit mode). */
static void str_step(uint64_t *r, int64_t step, uint64_t amask)
{
	*r = amask == ~0ULL ? *r + (uint64_t)step : (uint32_t)(*r + (uint64_t)step);
}

/* False for a memory fault. *again: a string that is not done (RIP stays). */
static bool emulate_port_io(struct guest_cpu *c, const struct sh_insn *in, bool *again)
{
	uint16_t port = in->io_port_imm ? (uint16_t)in->imm : (uint16_t)c->r.gpr[R_DX];
	unsigned size = in->io_size;
	uint64_t amask = in->addrsize == 4 ? 0xffffffffULL : ~0ULL;
	int64_t step = (c->r.rflags & RF_DF) ? -(int64_t)size : (int64_t)size;
	uint64_t count = 1, *rsi = gpr(c, R_SI), *rdi = gpr(c, R_DI), *rcx = gpr(c, R_CX);
	uint32_t v = 0;

	*again = false;
	if (in->op == SH_OP_IN || in->op == SH_OP_OUT) {
		v = (uint32_t)c->r.gpr[R_AX];
		port_access(c, port, in->op == SH_OP_OUT, &v, size);
		if (in->op == SH_OP_IN)
			set_io_result(c, v, size);
		return true;
	}
	if (in->rep) {
		count = *rcx & amask;
		if (count > PIO_STRING_BATCH) {
			count = PIO_STRING_BATCH;
			*again = true;
		}
	}
	for (uint64_t done = 0; done < count; done++) {
		if (in->op == SH_OP_OUTS) {
			if (!cpu_read(c, (*rsi & amask) + seg_base(c, in->seg), &v, size))
				return false;
			port_access(c, port, true, &v, size);
			str_step(rsi, step, amask);
		} else {
			port_access(c, port, false, &v, size);
			if (!cpu_write(c, *rdi & amask, &v, size))
				return false;
			str_step(rdi, step, amask);
		}
		if (in->rep)
			str_step(rcx, -1, amask);
	}
	return true;
}

/* ---- the instructions that fault at CPL3 ----------------------------------------------- */

static enum emu fault(struct guest_cpu *c, unsigned vector, uint32_t err)
{
	cpu_reflect(c, vector, err, false);
	return EMU_STAY;
}

/* lgdt/lidt/sgdt/sidt: the 6- or 10-byte pseudo-descriptor at the operand. */
static enum emu table_register(struct guest_cpu *c, const struct sh_insn *in, bool m64)
{
	uint8_t buf[10] = {0};
	uint64_t ea = effective_address(c, in), base;
	unsigned len = m64 ? 10 : 6;
	bool gdt = in->op == SH_OP_LGDT || in->op == SH_OP_SGDT;
	__typeof__(c->gdtr) *t = gdt ? &c->gdtr : &c->idtr;

	if (in->op == SH_OP_SGDT || in->op == SH_OP_SIDT) {
		memcpy(buf, &t->limit, 2);
		memcpy(buf + 2, &t->base, 8);
		return cpu_write(c, ea, buf, len) ? EMU_DONE : fault(c, V_GP, 0);
	}
	if (!cpu_read(c, ea, buf, len))
		return fault(c, V_GP, 0);
	memcpy(&base, buf + 2, 8);
	if (!m64) /* a 16-bit operand size loads a 24-bit base */
		base &= in->opsize == 2 ? 0xffffffULL : 0xffffffffULL;
	memcpy(&t->limit, buf, 2);
	t->base = base;
	if (gdt && !c->ops->gdt_loaded(c->ctx))
		return EMU_STAY;
	return EMU_DONE;
}

static enum emu load_tr_ldt(struct guest_cpu *c, const struct sh_insn *in)
{
	uint16_t sel = 0;
	uint64_t d[2] = {0, 0};

	if (in->mem ? !cpu_read(c, effective_address(c, in), &sel, 2)
	            : ((sel = (uint16_t)*gpr(c, in->rm)), false))
		return fault(c, V_GP, 0);
	if (in->op == SH_OP_LLDT) {
		if (sel & ~3) {
			stop(c, CPU_STOP_REFUSED,
			     "the guest loads an LDT, which this engine does not support");
			return EMU_STAY;
		}
		c->ldtr = sel;
		return EMU_DONE;
	}
	if (!cpu_read(c, c->gdtr.base + (sel & ~7u), d, cpu_long_mode(c) ? 16 : 8))
		return fault(c, V_GP, sel & ~3u);
	c->tr = sel;
	c->tr_base = ((d[0] >> 16) & 0xffffff) | (((d[0] >> 56) & 0xff) << 24) |
	             (cpu_long_mode(c) ? (d[1] & 0xffffffffULL) << 32 : 0);
	return EMU_DONE;
}

static enum emu load_segment(struct guest_cpu *c, const struct sh_insn *in)
{
	uint64_t sel = 0;

	if (in->op == SH_OP_POP_SEG) {
		if (!pop(c, &sel, in->opsize))
			return fault(c, V_SS, 0);
	} else if (in->mem) {
		if (!cpu_read(c, effective_address(c, in), &sel, 2))
			return fault(c, V_GP, 0);
	} else {
		sel = *gpr(c, in->rm) & 0xffff;
	}
	if (in->reg == SH_SS) {
		if (!cpu_ss_loadable(c, (uint16_t)sel))
			return fault(c, V_GP, (uint32_t)sel & ~3u);
		set_ss(c, (uint16_t)sel);
		return EMU_DONE;
	}
	/* Where the guest's descriptors are not the CPU's, every data segment load faults and
	 * is done here; elsewhere only one that names a descriptor the guest may not load. */
	if (!c->virtual_segments || in->reg == SH_CS || !data_loadable(c, (uint16_t)sel))
		return fault(c, V_GP, (uint32_t)sel & ~3u);
	set_data_segment(c, in->reg, (uint16_t)sel);
	return EMU_DONE;
}

enum emu cpu_emulate_gp(struct guest_cpu *c, uint32_t err)
{
	struct sh_insn in;
	uint8_t bytes[15];
	size_t n;

	if (cpu_fetch_decode(c, &in, bytes, &n) < 0)
		return fault(c, V_GP, err);
	return cpu_emulate_insn(c, &in, bytes, n, cpu_code64(c), err);
}

enum emu cpu_emulate_insn(struct guest_cpu *c, const struct sh_insn *inp, const uint8_t *bytes,
                          size_t n, bool m64, uint32_t err)
{
	const struct sh_insn in = *inp;
	uint64_t next, v;
	enum emu r = EMU_DONE;

	next = c->r.rip + in.len;
	if (!m64)
		next &= 0xffffffffULL;

	switch (in.op) {
	case SH_OP_CLI:
		c->r.rflags &= ~RF_IF;
		break;
	case SH_OP_STI:
		c->r.rflags |= RF_IF;
		/* sti; hlt: the interrupt shadow keeps the wakeup from slipping in between. */
		if (n > in.len && bytes[in.len] == 0xf4) {
			c->r.rip = next + 1;
			return EMU_HALT;
		}
		break;
	case SH_OP_HLT:
		c->r.rip = next;
		return EMU_HALT;
	case SH_OP_MOV_TO_CR:
		v = *gpr(c, in.rm);
		c->r.rip = next; /* before: a CR write may stop the VM or fault */
		mov_to_cr(c, in.reg, m64 ? v : (uint32_t)v);
		return EMU_DONE;
	case SH_OP_MOV_FROM_CR:
		if (in.reg != 0 && in.reg != 2 && in.reg != 3 && in.reg != 4 && in.reg != 8)
			return fault(c, V_UD, 0);
		set_gpr(c, in.rm, mov_from_cr(c, in.reg), m64 ? 8 : 4);
		break;
	case SH_OP_MOV_TO_DR:
	case SH_OP_MOV_FROM_DR:
		/* Debug registers are not virtualized: reads give 0, writes are ignored. */
		if (in.op == SH_OP_MOV_FROM_DR)
			set_gpr(c, in.rm,
			        in.reg == 6   ? 0xffff0ff0
			        : in.reg == 7 ? 0x400
			                      : 0,
			        m64 ? 8 : 4);
		break;
	case SH_OP_WRMSR:
		if (!wrmsr(c, (uint32_t)c->r.gpr[R_CX],
		           (c->r.gpr[R_DX] << 32) | (uint32_t)c->r.gpr[R_AX]))
			return fault(c, V_GP, 0);
		break;
	case SH_OP_RDMSR:
		if (!rdmsr(c, (uint32_t)c->r.gpr[R_CX], &v))
			return fault(c, V_GP, 0);
		c->r.gpr[R_AX] = (uint32_t)v;
		c->r.gpr[R_DX] = v >> 32;
		break;
	case SH_OP_LGDT:
	case SH_OP_LIDT:
	case SH_OP_SGDT:
	case SH_OP_SIDT:
		r = table_register(c, &in, m64);
		break;
	case SH_OP_SMSW:
	case SH_OP_STR:
	case SH_OP_SLDT:
		v = in.op == SH_OP_SMSW ? c->cr0 & 0xffff : in.op == SH_OP_STR ? c->tr : c->ldtr;
		if (in.mem) {
			uint16_t w = (uint16_t)v;

			if (!cpu_write(c, effective_address(c, &in), &w, 2))
				return fault(c, V_GP, 0);
		} else {
			set_gpr(c, in.rm, v, in.opsize);
		}
		break;
	case SH_OP_LMSW:
		v = in.mem ? 0 : *gpr(c, in.rm);
		if (in.mem && !cpu_read(c, effective_address(c, &in), &v, 2))
			return fault(c, V_GP, 0);
		c->r.rip = next;
		mov_to_cr(c, 0, (c->cr0 & ~0xeULL) | (v & 0xf) | (c->cr0 & CR0_PE));
		return EMU_DONE;
	case SH_OP_LTR:
	case SH_OP_LLDT:
		r = load_tr_ldt(c, &in);
		break;
	case SH_OP_INVLPG:
		c->ops->invlpg(c->ctx, effective_address(c, &in));
		break;
	case SH_OP_SWAPGS:
		v = c->gs_base;
		c->gs_base = c->kernel_gs_base;
		c->kernel_gs_base = v;
		break;
	case SH_OP_XSETBV:
		if (!c->ops->xsetbv(c->ctx, (uint32_t)c->r.gpr[R_CX],
		                    (c->r.gpr[R_DX] << 32) | (uint32_t)c->r.gpr[R_AX]))
			return fault(c, V_GP, 0);
		break;
	case SH_OP_CLTS:
		c->cr0 &= ~CR0_TS;
		break;
	case SH_OP_INVD:
	case SH_OP_WBINVD:
		break; /* caches are coherent: nothing to do */
	case SH_OP_IRET:
	case SH_OP_LRET:
		return far_return(c, &in, in.op == SH_OP_IRET) ? EMU_DONE : EMU_STAY;
	case SH_OP_LJMP:
	case SH_OP_LCALL:
		return far_jump(c, &in, next) ? EMU_DONE : EMU_STAY;
	case SH_OP_MOV_TO_SEG:
	case SH_OP_POP_SEG:
		r = load_segment(c, &in);
		break;
	case SH_OP_INT:
		/* `int $n` to a vector whose real gate is DPL0 (those with error codes). */
		c->r.rip = next;
		cpu_reflect(c, (unsigned)in.imm, 0, true);
		return EMU_DONE;
	case SH_OP_IN:
	case SH_OP_OUT:
	case SH_OP_INS:
	case SH_OP_OUTS: {
		bool again;

		if (!emulate_port_io(c, &in, &again))
			return fault(c, V_GP, 0);
		if (again)
			return EMU_DONE; /* the rest of the string: the same instruction again */
		break;
	}
	case SH_OP_SYSRET:
	case SH_OP_SYSEXIT:
		user_mode_refused(c, in.op == SH_OP_SYSRET ? "sysret" : "sysexit");
		return EMU_STAY;
	default:
		return fault(c, V_GP, err);
	}
	if (r != EMU_DONE)
		return r;
	c->r.rip = next;
	return EMU_DONE;
}

/* syscall at (virtual) CPL0, as single-address-space guests use it: a call into their own
 * kernel at LSTAR (CSTAR from compatibility mode, as AMD CPUs do; Intel's give #UD there),
 * which comes back with a jump through RCX (sysret would go to CPL3: refused). Hardware
 * loads CS and SS with fixed flat descriptors; the engines run the guest on its GDT's, so
 * STAR's selector must name 64-bit code there and the next one a data segment, as every
 * kernel sets them up. */
static void emulate_syscall(struct guest_cpu *c)
{
	uint16_t sel = (uint16_t)(c->star >> 32) & ~3;
	uint64_t d = desc_of(c, sel), target = cpu_code64(c) ? c->lstar : c->cstar;
	char why[160];

	if (!code_segment(d) || !(d & (1ULL << 53)) || !cpu_ss_loadable(c, (uint16_t)(sel + 8))) {
		snprintf(why, sizeof(why),
		         "syscall: STAR's selector 0x%x is not 64-bit code (descriptor 0x%016llx), "
		         "or 0x%x not a writable data segment, in the guest's GDT at rip=0x%llx",
		         sel, (unsigned long long)d, sel + 8, (unsigned long long)c->r.rip);
		stop(c, CPU_STOP_REFUSED, why);
		return;
	}
	c->r.gpr[R_CX] = c->r.rip + 2;
	c->r.gpr[R_R11] = c->r.rflags & ~RF_RF;
	c->r.rflags = (c->r.rflags & ~(c->sfmask | RF_RF | RF_VM)) | RF_RESERVED;
	load_cs(c, sel, d);
	set_ss(c, (uint16_t)(sel + 8));
	c->r.rip = target;
}

void cpu_emulate_ud(struct guest_cpu *c)
{
	uint8_t b[2] = {0, 0};

	/* syscall with EFER.SCE clear is a #UD on hardware too; with it set, in long mode, it is
	 * emulated. sysenter is the guest's user-mode entry. */
	if (cpu_read(c, c->r.rip, b, 2) && b[0] == 0x0f) {
		if (b[1] == 0x05 && (c->efer & EFER_SCE) && cpu_long_mode(c)) {
			emulate_syscall(c);
			return;
		}
		if (b[1] == 0x34) {
			user_mode_refused(c, "sysenter");
			return;
		}
	}
	cpu_reflect(c, V_UD, 0, false);
}

bool cpu_emulate_pte_store(struct guest_cpu *c, uint64_t va, uint64_t gpa)
{
	struct sh_insn in;
	uint8_t bytes[15];
	size_t n;
	uint64_t value, old, new_entry, aligned;
	unsigned size;
	uint8_t *p;

	if (cpu_fetch_decode(c, &in, bytes, &n) < 0 || in.lock || in.rep ||
	    (in.op != SH_OP_MOV_STORE && in.op != SH_OP_MOV_STORE_IMM))
		return false;
	size = in.access_size;
	if (size != 4 && size != 8)
		return false;
	if (effective_address(c, &in) != va || (gpa & 7) + size > 8)
		return false; /* not the faulting access, or an entry-straddling store */
	value = in.op == SH_OP_MOV_STORE ? *gpr(c, in.reg) : in.imm;
	aligned = gpa & ~7ULL;
	p = gm_ptr(c->gm, aligned, 8);
	if (!p)
		return false;
	memcpy(&old, p, 8);
	new_entry = old;
	memcpy((uint8_t *)&new_entry + (gpa & 7), &value, size);
	/* The store, then what derives from the entry goes: a walk by another vCPU in between
	 * maps from the new entry and is dropped too, never one from the old that stays. */
	__atomic_store_n((uint64_t *)p, new_entry, __ATOMIC_RELEASE);
	gm_mark_dirty(c->gm, aligned, 8);
	c->ops->pte_stored(c->ctx, aligned, old, new_entry);
	c->r.rip += in.len;
	if (!cpu_code64(c))
		c->r.rip &= 0xffffffffULL;
	return true;
}

/* ---- device registers (MMIO) ---------------------------------------------------------- */

/* A byte register: 4-7 are AH, CH, DH, BH without a REX prefix. */
static uint64_t *byte_reg(struct guest_cpu *c, unsigned n, bool rex, unsigned *shift)
{
	if (!rex && n >= 4 && n < 8) {
		*shift = 8;
		return gpr(c, n - 4);
	}
	*shift = 0;
	return gpr(c, n);
}

/* ---- arithmetic and logic on a device register (or a page the engine cannot map) ------ */

static bool parity_even(uint64_t v)
{
	return !(__builtin_popcount((unsigned)(v & 0xff)) & 1);
}

/* `a` op `b` at `size` bytes: the result, and the flags the instruction leaves (SDM vol. 2:
 * ADD, ADC, SUB, SBB, CMP by carry and overflow; AND, OR, XOR, TEST clear CF and OF; INC and
 * DEC keep CF). AF is computed for the arithmetic ones and cleared for the logical ones (the
 * SDM leaves it undefined there). */
static uint64_t alu_op(unsigned kind, uint64_t a, uint64_t b, unsigned size, uint64_t *rflags)
{
	unsigned bits = 8 * size;
	uint64_t mask = bits == 64 ? ~0ULL : (1ULL << bits) - 1, sign = 1ULL << (bits - 1);
	uint64_t cin = (kind == SH_ADC || kind == SH_SBB) ? (*rflags & RF_CF) : 0, res, fl;
	bool cf = false, of = false, arith = true;

	a &= mask;
	b &= mask;
	switch (kind) {
	case SH_ADD:
	case SH_ADC:
	case SH_INC:
		if (kind == SH_INC)
			b = 1;
		res = (a + b + cin) & mask;
		cf = res < a || (cin && res == a);
		of = ((a ^ res) & (b ^ res) & sign) != 0;
		break;
	case SH_SUB:
	case SH_SBB:
	case SH_CMP:
	case SH_DEC:
		if (kind == SH_DEC)
			b = 1;
		res = (a - b - cin) & mask;
		cf = a < b || (cin && a == b);
		of = ((a ^ b) & (a ^ res) & sign) != 0;
		break;
	case SH_AND:
	case SH_TEST:
		res = a & b;
		arith = false;
		break;
	case SH_OR:
		res = a | b;
		arith = false;
		break;
	default: /* SH_XOR */
		res = a ^ b;
		arith = false;
		break;
	}
	fl = *rflags & ~(RF_CF | RF_PF | RF_AF | RF_ZF | RF_SF | RF_OF);
	if (kind == SH_INC || kind == SH_DEC)
		fl |= *rflags & RF_CF;
	else if (cf)
		fl |= RF_CF;
	if (of)
		fl |= RF_OF;
	if (arith && ((a ^ b ^ res) & 0x10))
		fl |= RF_AF;
	if (parity_even(res))
		fl |= RF_PF;
	if (!res)
		fl |= RF_ZF;
	if (res & sign)
		fl |= RF_SF;
	*rflags = fl;
	return res;
}

/* The register operand of an ALU instruction, `size` bytes of it. */
static uint64_t alu_reg(struct guest_cpu *c, const struct sh_insn *in, unsigned size)
{
	unsigned shift;
	uint64_t *r;

	if (size == 1) {
		r = byte_reg(c, in->reg, in->rex != 0, &shift); /* (sets shift: before using it) */
		return *r >> shift;
	}
	return *gpr(c, in->reg);
}

/* The register operand of a memory instruction gets `v` (`size` bytes): 8- and 16-bit
 * writes keep the rest, 32-bit writes zero-extend, AH-BH without REX. */
static void set_reg_operand(struct guest_cpu *c, const struct sh_insn *in, uint64_t v,
                            unsigned size)
{
	unsigned shift;
	uint64_t *r;

	if (size == 1) {
		r = byte_reg(c, in->reg, in->rex != 0, &shift);
		*r = (*r & ~(0xffULL << shift)) | ((v & 0xff) << shift);
	} else {
		set_gpr(c, in->reg, v, size);
	}
}

/* AL, AX, EAX or RAX gets `v`, as set_reg_operand writes. */
static void set_accumulator(struct guest_cpu *c, uint64_t v, unsigned size)
{
	uint64_t *rax = gpr(c, R_AX);

	if (size == 1)
		*rax = (*rax & ~0xffULL) | (v & 0xff);
	else
		set_gpr(c, R_AX, v, size);
}

static void emulate_alu(struct guest_cpu *c, const struct sh_insn *in, uint64_t gpa,
                        cpu_mmio_access access, void *ctx)
{
	unsigned size = in->access_size;
	uint64_t m = 0, other = in->alu_imm ? in->imm : alu_reg(c, in, size), res;

	access(ctx, gpa, false, &m, size);
	if (in->alu == SH_NOT || in->alu == SH_NEG) {
		res = in->alu == SH_NOT ? ~m : alu_op(SH_SUB, 0, m, size, &c->r.rflags);
		access(ctx, gpa, true, &res, size);
		return;
	}
	if (in->alu_to_reg) {
		res = alu_op(in->alu, alu_reg(c, in, size), m, size, &c->r.rflags);
		if (in->alu != SH_CMP)
			set_reg_operand(c, in, res, size);
		return;
	}
	res = alu_op(in->alu, m, other, size, &c->r.rflags);
	if (in->alu != SH_CMP && in->alu != SH_TEST)
		access(ctx, gpa, true, &res, size);
}

/* xchg, cmpxchg, xadd (SDM vol. 2). A cmpxchg that fails does not write the memory operand
 * back, so that a device register sees no store the guest did not mean (the caller makes the
 * whole instruction atomic where it must). */
static void emulate_atomic(struct guest_cpu *c, const struct sh_insn *in, uint64_t gpa,
                           cpu_mmio_access access, void *ctx)
{
	unsigned size = in->access_size;
	uint64_t m = 0, r = alu_reg(c, in, size), res;

	access(ctx, gpa, false, &m, size);
	switch (in->op) {
	case SH_OP_XCHG:
		access(ctx, gpa, true, &r, size);
		set_reg_operand(c, in, m, size);
		break;
	case SH_OP_CMPXCHG:
		alu_op(SH_CMP, c->r.gpr[R_AX], m, size, &c->r.rflags);
		if (c->r.rflags & RF_ZF)
			access(ctx, gpa, true, &r, size);
		else
			set_accumulator(c, m, size);
		break;
	default: /* SH_OP_XADD */
		res = alu_op(SH_ADD, m, r, size, &c->r.rflags);
		access(ctx, gpa, true, &res, size);
		set_reg_operand(c, in, m, size);
		break;
	}
}

/* A string element's operand: its guest-physical address, and whether the host cannot map
 * it (page 0 or below unmapped_below, or no RAM: a device), so that only this emulation
 * reaches it. One walk per page. */
struct str_page {
	bool valid, special;
	uint64_t vpage, gbase;
};

enum str_where { STR_OK, STR_CROSSES, STR_UNMAPPED };

static enum str_where str_operand(struct guest_cpu *c, struct str_page *pg, uint64_t va,
                                  unsigned size, bool write, uint64_t *gpa, bool *special)
{
	if ((va & 4095) + size > 4096)
		return STR_CROSSES;
	if (!pg->valid || pg->vpage != va >> 12) {
		uint64_t g;

		if (!c->ops->translate(c->ctx, va & ~4095ULL, write, &g))
			return STR_UNMAPPED;
		pg->valid = true;
		pg->vpage = va >> 12;
		pg->gbase = g & ~4095ULL;
		pg->special = pg->vpage == 0 ||
		              va < __atomic_load_n(&c->unmapped_below, __ATOMIC_RELAXED) ||
		              !gm_range_ok(c->gm, pg->gbase, 4096);
	}
	*gpa = pg->gbase | (va & 4095);
	*special = pg->special;
	return STR_OK;
}

/* The operands a string instruction has: a source at RSI (in DS or the override), one at
 * RDI (in ES) that it stores to or compares with, and whether it compares (cmps, scas: the
 * flags of cmp, and `rep` is repe or repne). */
static bool str_uses_si(const struct sh_insn *in)
{
	return in->op == SH_OP_MOVS || in->op == SH_OP_LODS || in->op == SH_OP_CMPS;
}

static bool str_uses_di(const struct sh_insn *in)
{
	return in->op != SH_OP_LODS;
}

static bool str_stores(const struct sh_insn *in)
{
	return in->op == SH_OP_MOVS || in->op == SH_OP_STOS;
}

/* One element, given how to read the RSI operand and the RDI operand and how to store at
 * RDI: what movs, stos, lods, cmps and scas each do with them. */
struct str_io {
	struct guest_cpu *c;
	cpu_mmio_access access;
	void *ctx;
	uint64_t si[8], di[8]; /* guest-physical addresses: one, or one per byte */
	bool bytewise;
};

static uint64_t str_read(struct str_io *io, const uint64_t *gpa, unsigned size)
{
	uint64_t v = 0;

	if (!io->bytewise) {
		io->access(io->ctx, gpa[0], false, &v, size);
		return v;
	}
	for (unsigned k = 0; k < size; k++)
		io->access(io->ctx, gpa[k], false, (uint8_t *)&v + k, 1);
	return v;
}

static void str_element(struct str_io *io, const struct sh_insn *in)
{
	struct guest_cpu *c = io->c;
	unsigned size = in->access_size;
	uint64_t v = str_uses_si(in) ? str_read(io, io->si, size) : c->r.gpr[R_AX];

	if (str_stores(in)) {
		if (!io->bytewise)
			io->access(io->ctx, io->di[0], true, &v, size);
		else
			for (unsigned k = 0; k < size; k++)
				io->access(io->ctx, io->di[k], true, (uint8_t *)&v + k, 1);
	} else if (in->op == SH_OP_LODS) {
		set_accumulator(c, v, size);
	} else { /* cmps: [RSI] - [RDI]; scas: the accumulator - [RDI] */
		alu_op(SH_CMP, v, str_read(io, io->di, size), size, &c->r.rflags);
	}
}

/* An element across a page's end: byte by byte, when every byte is RAM (page 0 included;
 * a device register is never split). False: not so, nothing done. */
static bool str_element_bytes(struct str_io *io, const struct sh_insn *in, uint64_t src,
                              uint64_t dst)
{
	struct guest_cpu *c = io->c;

	for (unsigned k = 0; k < in->access_size; k++) {
		if (str_uses_si(in) && (!c->ops->translate(c->ctx, src + k, false, &io->si[k]) ||
		                        !gm_range_ok(c->gm, io->si[k], 1)))
			return false;
		if (str_uses_di(in) &&
		    (!c->ops->translate(c->ctx, dst + k, str_stores(in), &io->di[k]) ||
		     !gm_range_ok(c->gm, io->di[k], 1)))
			return false;
	}
	io->bytewise = true;
	str_element(io, in);
	return true;
}

/* The guest's page fault for an operand it does not map (at its CPL0: no U bit). */
static void str_page_fault(struct guest_cpu *c, uint64_t va, bool write)
{
	uint64_t g;
	uint32_t err = write ? PF_W : 0;

	if (c->ops->translate(c->ctx, va & ~4095ULL, false, &g))
		err |= PF_P; /* present, but not writable */
	cpu_page_fault(c, va, err);
}

/* movs, stos, lods, cmps and scas where an operand is one the host cannot map. The elements
 * are done here while one of their operands is such, at most STRING_BATCH per trap; from the
 * first whose operands are all ordinary memory (or one without a translation) the
 * instruction goes on natively, with RSI, RDI, RCX and the flags where hardware would have
 * them, and traps again where it must. repe and repne end where a comparison says so. RIP
 * moves on when the instruction is done. The first element's other operand unmapped: the
 * guest's #PF for it (hardware's order: the source first). False: nothing was done. */
#define STRING_BATCH 4096

static bool emulate_string(struct guest_cpu *c, const struct sh_insn *in, uint64_t va,
                           cpu_mmio_access access, void *ctx)
{
	unsigned size = in->access_size;
	uint64_t amask = in->addrsize == 4 ? 0xffffffffULL : ~0ULL;
	int64_t step = (c->r.rflags & RF_DF) ? -(int64_t)size : (int64_t)size;
	uint64_t *rsi = gpr(c, R_SI), *rdi = gpr(c, R_DI), *rcx = gpr(c, R_CX);
	uint64_t count = in->rep ? *rcx & amask : 1, done = 0;
	bool uses_si = str_uses_si(in), uses_di = str_uses_di(in), stores = str_stores(in);
	bool compares = in->op == SH_OP_CMPS || in->op == SH_OP_SCAS, ended = false;
	struct str_page src_page = {0}, dst_page = {0};
	struct str_io io = {.c = c, .access = access, .ctx = ctx};

	if (!count) { /* rep with RCX 0: nothing (it never traps natively) */
		c->r.rip += in->len;
		return true;
	}
	/* the trap was at an operand of the first element */
	if (!((uses_si && va - ((*rsi & amask) + seg_base(c, in->seg)) < size) ||
	      (uses_di && va - (*rdi & amask) < size)))
		return false;
	for (; done < count && done < STRING_BATCH && !ended; done++) {
		uint64_t src = (*rsi & amask) + seg_base(c, in->seg), dst = *rdi & amask;
		bool src_special = false, dst_special = false;
		enum str_where ws = STR_OK, wd = STR_OK;

		if (uses_si)
			ws = str_operand(c, &src_page, src, size, false, &io.si[0], &src_special);
		if (uses_di)
			wd = str_operand(c, &dst_page, dst, size, stores, &io.di[0], &dst_special);
		if (ws == STR_UNMAPPED || wd == STR_UNMAPPED) {
			if (done)
				break;          /* natively from here: its fault comes then */
			if (ws == STR_UNMAPPED) /* hardware's order: the source first */
				str_page_fault(c, src, false);
			else
				str_page_fault(c, dst, stores);
			return true;
		}
		if (ws == STR_CROSSES || wd == STR_CROSSES) {
			if (!str_element_bytes(&io, in, src, dst))
				break;
		} else if (!src_special && !dst_special) {
			break;
		} else {
			io.bytewise = false;
			str_element(&io, in);
		}
		if (uses_si)
			str_step(rsi, step, amask);
		if (uses_di)
			str_step(rdi, step, amask);
		if (in->rep)
			str_step(rcx, -1, amask);
		/* repe goes on while equal, repne while not */
		if (compares && in->rep && !(c->r.rflags & RF_ZF) != in->repne)
			ended = true;
	}
	if (!done)
		return false;
	if (done == count || ended)
		c->r.rip += in->len;
	return true;
}

/* Whether the instruction stores to its memory operand (a failed cmpxchg too: hardware
 * writes the old value back, and faults as a store). */
static bool mmio_writes(const struct sh_insn *in)
{
	switch (in->op) {
	case SH_OP_MOV_STORE:
	case SH_OP_MOV_STORE_IMM:
	case SH_OP_XCHG:
	case SH_OP_CMPXCHG:
	case SH_OP_XADD:
		return true;
	case SH_OP_ALU:
		return !in->alu_to_reg && in->alu != SH_CMP && in->alu != SH_TEST;
	default:
		return false;
	}
}

/* A lock prefix the CPU takes with this instruction (else #UD; here: not emulated): the
 * read-modify-writes, not a plain mov. */
static bool lock_allowed(const struct sh_insn *in)
{
	return mmio_writes(in) && in->op != SH_OP_MOV_STORE && in->op != SH_OP_MOV_STORE_IMM;
}

bool cpu_emulate_mmio(struct guest_cpu *c, uint64_t va, uint64_t gpa, cpu_mmio_access access,
                      void *ctx)
{
	struct sh_insn in;
	uint8_t bytes[15];
	size_t n;
	unsigned size;
	uint64_t v = 0;
	bool code64 = cpu_code64(c);

	if (cpu_fetch_decode(c, &in, bytes, &n) < 0 || (in.lock && !lock_allowed(&in)))
		return false;
	switch (in.op) {
	case SH_OP_MOV_LOAD:
	case SH_OP_MOVZX:
	case SH_OP_MOVSX:
	case SH_OP_MOV_STORE:
	case SH_OP_MOV_STORE_IMM:
	case SH_OP_ALU:
	case SH_OP_XCHG:
	case SH_OP_CMPXCHG:
	case SH_OP_XADD:
		break;
	case SH_OP_MOVS:
	case SH_OP_STOS:
	case SH_OP_LODS:
	case SH_OP_CMPS:
	case SH_OP_SCAS:
		if (!emulate_string(c, &in, va, access, ctx))
			return false;
		if (!code64)
			c->r.rip &= 0xffffffffULL;
		return true;
	default:
		return false;
	}
	size = in.access_size;
	if (effective_address(c, &in) != va || (va & 4095) + size > 4096)
		return false;
	/* The walk that found `gpa` was for the access the fault reported, which the guest can
	 * forge (or change the instruction after it): a store must be one g allows. */
	if (mmio_writes(&in)) {
		uint64_t g;

		if (!c->ops->translate(c->ctx, va, true, &g)) {
			str_page_fault(c, va, true); /* W, and P unless the page went meanwhile */
			return true;
		}
		if (g != gpa)
			return false;
	}
	if (in.op == SH_OP_ALU) {
		emulate_alu(c, &in, gpa, access, ctx);
	} else if (in.op == SH_OP_XCHG || in.op == SH_OP_CMPXCHG || in.op == SH_OP_XADD) {
		emulate_atomic(c, &in, gpa, access, ctx);
	} else if (in.op == SH_OP_MOV_STORE || in.op == SH_OP_MOV_STORE_IMM) {
		v = in.op == SH_OP_MOV_STORE_IMM ? in.imm : alu_reg(c, &in, size);
		access(ctx, gpa, true, &v, size);
	} else {
		access(ctx, gpa, false, &v, size);
		if (size < 8)
			v &= (1ULL << (8 * size)) - 1;
		if (in.op == SH_OP_MOVSX && size < 8 && (v >> (8 * size - 1)))
			v |= ~0ULL << (8 * size);
		if (in.op == SH_OP_MOV_LOAD)
			set_reg_operand(c, &in, v, size);
		else
			set_gpr(c, in.reg, v, in.opsize);
	}
	c->r.rip += in.len;
	if (!code64)
		c->r.rip &= 0xffffffffULL;
	return true;
}
