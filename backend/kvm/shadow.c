/*
 * The shadow engine: the guest kernel runs deprivileged at CPL3 inside the KVM VM; hearth
 * keeps its privileged state (control registers, descriptor tables, interrupt flag, MSRs),
 * emulates the privileged instructions that fault, keeps shadow page tables (shadow_mmu.c)
 * and reflects the guest's own exceptions and interrupts through the guest's IDT.
 *
 * A trap reaches hearth like this: the CPU enters the monitor's stub for the vector through
 * the real IDT (TSS.RSP0 -> the vCPU's trap stack, where it pushes the frame), the stub's one
 * instruction, `out %al, $SH_TRAP_PORT`, exits to userspace, and the exit's RIP names the
 * vector. hearth reads the frame, handles the trap and resumes the guest at CPL3 directly:
 * registers and the CS/SS segments go back through KVM_SYNC_REGS, so a trap is one KVM_RUN
 * and no other vCPU ioctl, and the only ring-0 instruction KVM emulates is the `out`.
 * docs/SHADOW_MMU.md has the whole design.
 */
#include "kvm.h"
#include "cpu/cpuid.h"
#include "cpu/x86.h"
#include "shadow_monitor.h"
#include "vmm/boot_gdt.h"
#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/metrics.h"
#include "shadow.h"
#include "cpu/decode.h"
#include "shadow_mmu.h"

#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

/* The guest's virtual CPU, as the guest believes it to be. */
struct sh_cpu {
	uint64_t cr0, cr2, cr3, cr4, efer;
	struct {
		uint64_t base;
		uint16_t limit;
	} gdtr, idtr;
	uint16_t tr, ldtr;
	uint64_t tr_base;
	uint16_t cs, ss; /* virtual selectors (RPL 0) */
	uint64_t star, lstar, cstar, sfmask, kernel_gs_base;
	uint64_t key;     /* shadow key in use: guest CR3 or SH_KEY_IDENTITY */
	uint64_t epoch;   /* the MMU epoch the real CR3 belongs to */
	bool stepping_pt; /* single-stepping one write to a guest page table */
	uint64_t stepping_gpa;
	uint64_t traps;
	double trap_ns;
};

/* One engine per VM: shadow mode runs the boot vCPU only. */
struct sh_engine {
	struct sh_monitor mon;
	struct sh_mmu mmu;
	struct sh_cpu cpu;
	struct vcpu *v;
	struct kvm_regs g; /* guest GPRs while a trap is handled (RSP/RIP/RFLAGS from the frame) */
	bool sregs_dirty;
	bool sregs_valid; /* run->s.regs.sregs holds the current special registers */
	bool halted;      /* resumed at the monitor's halt path; the guest's state is in g */
	uint64_t cr2;     /* CR2 at the last #PF */
	bool trace;       /* HEARTH_SHADOW_TRACE=1: one stderr line per trap (debugging) */
	bool halted_for_good;
};

static struct sh_engine *engine_of(const struct vcpu *v)
{
	return kvm_of(v->vm)->shadow;
}

static struct kvm_run *run_of(const struct sh_engine *e)
{
	return kvcpu_of(e->v)->run;
}

static int fd_of(const struct sh_engine *e)
{
	return kvcpu_of(e->v)->fd;
}

/* The special registers: KVM leaves them in the sync area at every exit (kvm_valid_regs),
 * and the setup fills it before the first run; the ioctl is only a fallback. */
static struct kvm_sregs *sregs(struct sh_engine *e)
{
	struct kvm_sregs *s = &run_of(e)->s.regs.sregs;

	if (!e->sregs_valid) {
		if (ioctl(fd_of(e), KVM_GET_SREGS, s) < 0)
			memset(s, 0, sizeof(*s));
		e->sregs_valid = true;
	}
	return s;
}

/* ---- guest memory through the guest's own mapping -------------------------------- */

static bool vtranslate(struct sh_engine *e, uint64_t va, bool write, uint64_t *gpa)
{
	struct sh_walk w;

	if (!sh_mmu_translate(&e->mmu, e->cpu.key, va, write, &w))
		return false;
	*gpa = w.gpa;
	return true;
}

/* Copy between guest-virtual memory and a host buffer; false on any unmapped byte. */
static bool vcopy(struct sh_engine *e, uint64_t va, void *buf, size_t len, bool write)
{
	uint8_t *p = buf;

	while (len) {
		uint64_t gpa, chunk = 4096 - (va & 4095);
		void *h;

		if (chunk > len)
			chunk = len;
		if (!vtranslate(e, va, write, &gpa))
			return false;
		h = gm_ptr(&e->v->vm->mem, gpa, chunk);
		if (!h)
			return false;
		if (write)
			memcpy(h, p, chunk);
		else
			memcpy(p, h, chunk);
		va += chunk;
		p += chunk;
		len -= chunk;
	}
	return true;
}

/* ---- registers -------------------------------------------------------------------- */

static uint64_t *gpr(struct sh_engine *e, unsigned n)
{
	/* ModRM numbering: rax rcx rdx rbx rsp rbp rsi rdi r8..r15 */
	__u64 *r[16] = {&e->g.rax, &e->g.rcx, &e->g.rdx, &e->g.rbx, &e->g.rsp, &e->g.rbp,
	                &e->g.rsi, &e->g.rdi, &e->g.r8,  &e->g.r9,  &e->g.r10, &e->g.r11,
	                &e->g.r12, &e->g.r13, &e->g.r14, &e->g.r15};

	return (uint64_t *)r[n & 15];
}

static bool long_mode(struct sh_engine *e)
{
	return e->cpu.efer & EFER_LMA;
}

/* The real descriptor behind a selector (our mirrored GDT). */
static uint64_t real_desc(struct sh_engine *e, uint16_t sel)
{
	uint64_t *gdt = sh_mon_ptr(&e->mon, SH_OFF_GDT);

	return gdt[(sel >> 3) & (SH_GDT_ENTRIES - 1)];
}

static bool code64(struct sh_engine *e, uint16_t cs)
{
	return long_mode(e) && (real_desc(e, cs) & (1ULL << 53));
}

static bool code32(struct sh_engine *e, uint16_t cs)
{
	return real_desc(e, cs) & (1ULL << 54);
}

/* ---- stopping ------------------------------------------------------------------------ */

static void stop(struct sh_engine *e, enum stop_reason why, const char *what)
{
	vm_request_stop(e->v->vm, why, 0, "shadow mode: %s at rip=0x%llx", what,
	                (unsigned long long)e->g.rip);
}

/* ---- delivering exceptions and interrupts through the guest's IDT ------------------ */

static bool push(struct sh_engine *e, uint64_t *rsp, uint64_t v, unsigned size)
{
	*rsp -= size;
	return vcopy(e, *rsp, &v, size, true);
}

static bool has_error_code(unsigned v)
{
	return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

/* Deliver `vector` to the guest: as hardware does for an exception or interrupt taken at
 * (virtual) CPL0. `err` is pushed when the vector has an error code and !soft. */
static bool deliver(struct sh_engine *e, unsigned vector, uint32_t err, bool soft)
{
	struct sh_cpu *c = &e->cpu;
	bool with_err = has_error_code(vector) && !soft;
	uint64_t rflags = e->g.rflags, rsp = e->g.rsp;
	uint16_t sel;
	uint64_t target;
	unsigned type;

	if (long_mode(e)) {
		uint64_t gate[2];
		unsigned ist;

		if (16u * vector + 15 > c->idtr.limit ||
		    !vcopy(e, c->idtr.base + 16u * vector, gate, 16, false))
			return false;
		type = (gate[0] >> 40) & 0xf;
		if (!(gate[0] & (1ULL << 47)) || (type != 0xe && type != 0xf))
			return false;
		sel = (uint16_t)(gate[0] >> 16);
		target = (gate[0] & 0xffff) | ((gate[0] >> 32) & 0xffff0000ULL) | (gate[1] << 32);
		ist = (gate[0] >> 32) & 7;
		if (ist) {
			if (!vcopy(e, c->tr_base + 36 + 8 * (ist - 1), &rsp, 8, false))
				return false;
		}
		rsp &= ~15ULL;
		if (!push(e, &rsp, c->ss, 8) || !push(e, &rsp, e->g.rsp, 8) ||
		    !push(e, &rsp, rflags, 8) || !push(e, &rsp, c->cs, 8) ||
		    !push(e, &rsp, e->g.rip, 8) || (with_err && !push(e, &rsp, err, 8)))
			return false;
	} else {
		uint64_t gate;

		if (8u * vector + 7 > c->idtr.limit ||
		    !vcopy(e, c->idtr.base + 8u * vector, &gate, 8, false))
			return false;
		type = (gate >> 40) & 0xf;
		if (!(gate & (1ULL << 47)) || (type != 0xe && type != 0xf))
			return false;
		sel = (uint16_t)(gate >> 16);
		target = (gate & 0xffff) | ((gate >> 32) & 0xffff0000ULL);
		if (!push(e, &rsp, (uint32_t)rflags, 4) || !push(e, &rsp, c->cs, 4) ||
		    !push(e, &rsp, (uint32_t)e->g.rip, 4) || (with_err && !push(e, &rsp, err, 4)))
			return false;
	}
	c->cs = sel & ~3;
	e->g.rsp = rsp;
	e->g.rip = target;
	e->g.rflags &= ~(RF_TF | RF_NT | RF_RF | RF_VM);
	if (type == 0xe)
		e->g.rflags &= ~RF_IF; /* interrupt gate */
	if (real_desc(e, c->cs | 3) == 0)
		return false;
	return true;
}

/* Deliver, escalating as hardware would: a failed delivery is a #GP, then a #DF, then a
 * triple fault, which ends the VM. */
static void reflect(struct sh_engine *e, unsigned vector, uint32_t err, bool soft)
{
	if (deliver(e, vector, err, soft))
		return;
	if (vector != V_DF && vector != V_GP && deliver(e, V_GP, vector * 8 + 2, false))
		return;
	if (vector != V_DF && deliver(e, V_DF, 0, false))
		return;
	vm_request_stop(e->v->vm, STOP_TRIPLE_FAULT, 0,
	                "guest triple fault on vCPU 0 at rip=0x%llx (shadow mode: vector %u could "
	                "not be delivered)",
	                (unsigned long long)e->g.rip, vector);
}

/* ---- the shadow root in use ------------------------------------------------------- */

static uint64_t current_key(struct sh_engine *e)
{
	if (!(e->cpu.cr0 & CR0_PG))
		return SH_KEY_IDENTITY;
	return e->cpu.cr3 & PTE_ADDR;
}

/* Point the real CR3 at the shadow root for the guest's current mapping. */
static void load_root(struct sh_engine *e)
{
	struct kvm_sregs *s = sregs(e);

	e->cpu.key = current_key(e);
	s->cr3 = sh_mmu_root(&e->mmu, e->cpu.key);
	e->cpu.epoch = e->mmu.epoch;
	e->sregs_dirty = true;
}

/* ---- emulation ---------------------------------------------------------------------- */

static uint64_t seg_base(struct sh_engine *e, int seg)
{
	struct kvm_sregs *s = sregs(e);

	if (seg == SH_FS)
		return s->fs.base;
	if (seg == SH_GS)
		return s->gs.base;
	return 0;
}

static uint64_t effective_address(struct sh_engine *e, const struct sh_insn *in)
{
	uint64_t a = (uint64_t)in->disp;

	if (in->rip_relative)
		a += e->g.rip + in->len;
	if (in->base >= 0)
		a += *gpr(e, (unsigned)in->base);
	if (in->index >= 0)
		a += *gpr(e, (unsigned)in->index) * in->scale;
	if (in->addrsize == 4)
		a &= 0xffffffffULL;
	return a + seg_base(e, in->seg);
}

static void set_gpr(struct sh_engine *e, unsigned n, uint64_t v, unsigned size)
{
	uint64_t *r = gpr(e, n);

	if (size == 8)
		*r = v;
	else if (size == 4)
		*r = (uint32_t)v; /* 32-bit writes zero the upper half */
	else
		*r = (*r & ~0xffffULL) | (v & 0xffff);
}

/* Load the guest's GDT into the real one, deprivileged. */
static bool mirror_gdt(struct sh_engine *e)
{
	unsigned n = (e->cpu.gdtr.limit + 1u) / 8;
	uint64_t *buf;
	bool ok;

	if (n > SH_GUEST_GDT_MAX) {
		stop(e, STOP_VMM_ERROR,
		     "the guest's GDT has more descriptors than shadow mode mirrors");
		return false;
	}
	buf = calloc(n ? n : 1, 8);
	if (!buf)
		return false;
	ok = vcopy(e, e->cpu.gdtr.base, buf, n * 8, false);
	if (ok) {
		unsigned keep[2] = {e->cpu.cs >> 3, e->cpu.ss >> 3};

		sh_monitor_mirror_gdt(&e->mon, buf, n, keep, 2);
	}
	free(buf);
	return ok;
}

/* A segment register the guest may load natively has a present, mirrored descriptor. */
static bool real_ss_for(struct sh_engine *e, uint16_t sel, uint16_t *real)
{
	uint64_t d;

	if ((sel & ~3) == 0) {
		*real = SH_SEL_DS3; /* a null SS is fine at CPL0 but not at CPL3 */
		return true;
	}
	d = real_desc(e, sel);
	if (!(d & (1ULL << 47)) || (d & (1ULL << 43)) || !(d & (1ULL << 41)))
		return false; /* not present, code, or not writable */
	*real = (uint16_t)(sel | 3);
	return true;
}

static void user_mode_refused(struct sh_engine *e, const char *how)
{
	char what[160];

	snprintf(what, sizeof(what),
	         "the guest tried to enter its own user mode (%s); shadow mode runs "
	         "single-address-space guests only (use --mmu hardware)",
	         how);
	stop(e, STOP_VMM_ERROR, what);
}

static uint64_t msr_read_kvm(struct sh_engine *e, uint32_t index, bool *ok)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = {.h.nmsrs = 1, .e.index = index};

	*ok = ioctl(fd_of(e), KVM_GET_MSRS, &m) == 1;
	return m.e.data;
}

static bool msr_write_kvm(struct sh_engine *e, uint32_t index, uint64_t value)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = {.h.nmsrs = 1, .e.index = index, .e.data = value};

	return ioctl(fd_of(e), KVM_SET_MSRS, &m) == 1;
}

static bool wrmsr(struct sh_engine *e, uint32_t index, uint64_t v)
{
	struct sh_cpu *c = &e->cpu;
	struct kvm_sregs *s = sregs(e);

	switch (index) {
	case MSR_EFER:
		if (v & EFER_SCE) {
			user_mode_refused(e, "EFER.SCE enables syscall");
			return true;
		}
		c->efer = (v & (EFER_LME | EFER_NXE)) | (c->efer & EFER_LMA);
		if (e->mmu.nxe != !!(v & EFER_NXE)) {
			e->mmu.nxe = v & EFER_NXE;
			sh_mmu_flush(&e->mmu);
		}
		return true;
	case MSR_STAR:
		c->star = v;
		return true;
	case MSR_LSTAR:
		c->lstar = v;
		return true;
	case MSR_CSTAR:
		c->cstar = v;
		return true;
	case MSR_SFMASK:
		c->sfmask = v;
		return true;
	case MSR_KERNEL_GS_BASE:
		c->kernel_gs_base = v;
		return true;
	case MSR_FS_BASE:
		s->fs.base = v;
		e->sregs_dirty = true;
		return true;
	case MSR_GS_BASE:
		s->gs.base = v;
		e->sregs_dirty = true;
		return true;
	default:
		return msr_write_kvm(e, index, v); /* APIC, PAT, MTRRs, TSC, ... as KVM has them */
	}
}

static bool rdmsr(struct sh_engine *e, uint32_t index, uint64_t *v)
{
	struct sh_cpu *c = &e->cpu;
	struct kvm_sregs *s = sregs(e);
	bool ok = true;

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
		*v = s->fs.base;
		return true;
	case MSR_GS_BASE:
		*v = s->gs.base;
		return true;
	default:
		*v = msr_read_kvm(e, index, &ok);
		return ok;
	}
}

static void mov_to_cr(struct sh_engine *e, unsigned cr, uint64_t v)
{
	struct sh_cpu *c = &e->cpu;
	struct kvm_sregs *s = sregs(e);
	uint64_t old_key = c->key;

	switch (cr) {
	case 0:
		if ((v & CR0_PG) && !(v & CR0_PE)) {
			reflect(e, V_GP, 0, false);
			return;
		}
		if ((v & CR0_PG) && !(c->cr0 & CR0_PG)) {
			if (!(c->efer & EFER_LME) || !(c->cr4 & CR4_PAE)) {
				stop(e, STOP_VMM_ERROR,
				     "the guest enabled 32-bit paging, which shadow "
				     "mode does not support (4-level paging only)");
				return;
			}
			c->efer |= EFER_LMA;
		}
		if (!(v & CR0_PG))
			c->efer &= ~EFER_LMA;
		if (!!(v & CR0_WP) != e->mmu.wp) {
			e->mmu.wp = v & CR0_WP;
			sh_mmu_flush(&e->mmu);
		}
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
		s->cr8 = v & 15;
		e->sregs_dirty = true;
		return;
	default:
		reflect(e, V_UD, 0, false);
		return;
	}
	if (current_key(e) != old_key || c->epoch != e->mmu.epoch)
		load_root(e);
}

static uint64_t mov_from_cr(struct sh_engine *e, unsigned cr)
{
	switch (cr) {
	case 0:
		return e->cpu.cr0;
	case 2:
		return e->cpu.cr2;
	case 3:
		return e->cpu.cr3;
	case 4:
		return e->cpu.cr4;
	case 8:
		return sregs(e)->cr8;
	default:
		return 0;
	}
}

/* Pop `size` bytes from the guest stack. */
static bool pop(struct sh_engine *e, uint64_t *v, unsigned size)
{
	*v = 0;
	if (!vcopy(e, e->g.rsp, v, size, false))
		return false;
	e->g.rsp += size;
	return true;
}

/* iret / lret back to (virtual) CPL0 code. */
static bool far_return(struct sh_engine *e, const struct sh_insn *in, bool iret)
{
	unsigned sz = in->opsize;
	uint64_t rip, cs, fl = 0, rsp = 0, ss = 0;
	uint64_t saved_rsp = e->g.rsp;
	uint16_t real_ss;

	if (!pop(e, &rip, sz) || !pop(e, &cs, sz) || (iret && !pop(e, &fl, sz)))
		goto fault;
	if ((cs & 3) == 3) {
		user_mode_refused(e, iret ? "iret to CPL3" : "far return to CPL3");
		return true;
	}
	if (iret && (sz == 8 || long_mode(e))) {
		if (sz == 8 && (!pop(e, &rsp, 8) || !pop(e, &ss, 8)))
			goto fault;
	}
	if (!iret)
		e->g.rsp += in->imm;
	if (real_desc(e, (uint16_t)(cs | 3)) == 0)
		goto fault;
	e->cpu.cs = (uint16_t)(cs & ~3);
	e->g.rip = sz == 4 ? (uint32_t)rip : rip;
	if (iret) {
		uint64_t keep = RF_IOPL | RF_VM;

		if (sz == 4)
			fl = (e->g.rflags & ~0xffffffffULL) | (uint32_t)fl;
		e->g.rflags = (fl & ~keep) | 2;
		if (sz == 8) {
			if (!real_ss_for(e, (uint16_t)ss, &real_ss))
				goto fault;
			e->cpu.ss = (uint16_t)(ss & ~3);
			e->g.rsp = rsp;
		}
	}
	return true;
fault:
	e->g.rsp = saved_rsp;
	reflect(e, V_GP, 0, false);
	return false;
}

enum emu { EMU_DONE, EMU_STAY, EMU_HALT };

/* Elements of a rep ins/outs handled per trap: a longer string resumes at the same
 * instruction (RCX counts down), so a huge count cannot hold the vCPU thread. */
#define PIO_STRING_BATCH 4096

static void set_io_result(struct sh_engine *e, uint32_t v, unsigned size)
{
	uint64_t mask = size == 4 ? 0xffffffffULL : size == 2 ? 0xffffULL : 0xffULL;

	/* in %dx, %eax zeroes the upper half; in %dx, %al/%ax keep the rest of RAX */
	e->g.rax = size == 4 ? v : (e->g.rax & ~mask) | (v & mask);
}

/* Port I/O that faulted: hearth's own trap port is closed to the guest (nothing answers,
 * reads give all ones); every other port is open in the TSS I/O bitmap, but a CPU that does
 * not honour the bitmap from a busy TSS (QEMU's TCG, as an outer hypervisor) faults there
 * too, so the access is emulated through the port bus. False for a memory fault. */
static bool emulate_port_io(struct sh_engine *e, const struct sh_insn *in, bool *again)
{
	struct vm *vm = e->v->vm;
	uint16_t port = in->io_port_imm ? (uint16_t)in->imm : (uint16_t)e->g.rdx;
	unsigned size = in->io_size;
	uint64_t amask = in->addrsize == 4 ? 0xffffffffULL : ~0ULL;
	uint64_t count = 1, done;
	int64_t step = (e->g.rflags & (1ULL << 10)) ? -(int64_t)size : (int64_t)size;
	uint32_t v = 0;

	*again = false;
	METRIC_INC(exit_io);
	if (in->op == SH_OP_IN || in->op == SH_OP_OUT) {
		v = (uint32_t)e->g.rax;
		if (port == SH_TRAP_PORT) {
			if (in->op == SH_OP_IN)
				set_io_result(e, ~0U, size);
			return true;
		}
		vm_pio(vm, port, in->op == SH_OP_OUT, (uint8_t *)&v, size, 1);
		if (in->op == SH_OP_IN)
			set_io_result(e, v, size);
		return true;
	}
	if (in->rep) {
		count = e->g.rcx & amask;
		if (count > PIO_STRING_BATCH) {
			count = PIO_STRING_BATCH;
			*again = true;
		}
	}
	for (done = 0; done < count; done++) {
		if (in->op == SH_OP_OUTS) {
			uint64_t va = (e->g.rsi & amask) + seg_base(e, in->seg);

			if (!vcopy(e, va, &v, size, false))
				return false;
			if (port != SH_TRAP_PORT)
				vm_pio(vm, port, true, (uint8_t *)&v, size, 1);
			e->g.rsi = (e->g.rsi & ~amask) | ((e->g.rsi + (uint64_t)step) & amask);
		} else {
			v = ~0U;
			if (port != SH_TRAP_PORT)
				vm_pio(vm, port, false, (uint8_t *)&v, size, 1);
			if (!vcopy(e, e->g.rdi & amask, &v, size, true))
				return false;
			e->g.rdi = (e->g.rdi & ~amask) | ((e->g.rdi + (uint64_t)step) & amask);
		}
		if (in->rep)
			e->g.rcx = (e->g.rcx & ~amask) | ((e->g.rcx - 1) & amask);
	}
	return true;
}

/* Emulate the instruction at the guest's RIP after a #GP. */
static enum emu emulate_gp(struct sh_engine *e, uint32_t err)
{
	struct sh_cpu *c = &e->cpu;
	struct sh_insn in;
	uint8_t bytes[15];
	size_t n = 0;
	uint64_t next, v, ea;
	uint16_t cs_real = (uint16_t)(c->cs | 3);
	bool m64 = code64(e, cs_real), d32 = code32(e, cs_real);

	/* Fetch what is mapped of the next 15 bytes. */
	while (n < sizeof(bytes) && vcopy(e, e->g.rip + n, bytes + n, 1, false))
		n++;
	if (sh_decode(bytes, n, m64, d32, &in) < 0) {
		reflect(e, V_GP, err, false);
		return EMU_STAY;
	}
	next = e->g.rip + in.len;
	if (!m64)
		next &= 0xffffffffULL;

	switch (in.op) {
	case SH_OP_CLI:
		e->g.rflags &= ~RF_IF;
		break;
	case SH_OP_STI:
		e->g.rflags |= RF_IF;
		/* sti; hlt: the interrupt shadow keeps the wakeup from slipping in between. */
		if (n > in.len && bytes[in.len] == 0xf4) {
			e->g.rip = next + 1;
			return EMU_HALT;
		}
		break;
	case SH_OP_HLT:
		e->g.rip = next;
		return EMU_HALT;
	case SH_OP_MOV_TO_CR:
		v = *gpr(e, in.rm);
		if (!m64)
			v = (uint32_t)v;
		e->g.rip = next;
		mov_to_cr(e, in.reg, v);
		return EMU_DONE;
	case SH_OP_MOV_FROM_CR:
		if (in.reg != 0 && in.reg != 2 && in.reg != 3 && in.reg != 4 && in.reg != 8) {
			reflect(e, V_UD, 0, false);
			return EMU_STAY;
		}
		set_gpr(e, in.rm, mov_from_cr(e, in.reg), m64 ? 8 : 4);
		break;
	case SH_OP_MOV_TO_DR:
	case SH_OP_MOV_FROM_DR:
		/* Debug registers are not virtualized: reads give 0, writes are ignored. */
		if (in.op == SH_OP_MOV_FROM_DR)
			set_gpr(e, in.rm,
			        in.reg == 6   ? 0xffff0ff0
			        : in.reg == 7 ? 0x400
			                      : 0,
			        m64 ? 8 : 4);
		break;
	case SH_OP_WRMSR:
		if (!wrmsr(e, (uint32_t)e->g.rcx, (e->g.rdx << 32) | (uint32_t)e->g.rax)) {
			reflect(e, V_GP, 0, false);
			return EMU_STAY;
		}
		break;
	case SH_OP_RDMSR:
		if (!rdmsr(e, (uint32_t)e->g.rcx, &v)) {
			reflect(e, V_GP, 0, false);
			return EMU_STAY;
		}
		e->g.rax = (uint32_t)v;
		e->g.rdx = v >> 32;
		break;
	case SH_OP_LGDT:
	case SH_OP_LIDT: {
		uint8_t buf[10] = {0};
		uint64_t base;

		ea = effective_address(e, &in);
		if (!vcopy(e, ea, buf, m64 ? 10 : 6, false)) {
			reflect(e, V_GP, 0, false);
			return EMU_STAY;
		}
		memcpy(&base, buf + 2, 8);
		if (!m64)
			base &= 0xffffffffULL;
		if (in.op == SH_OP_LGDT) {
			memcpy(&c->gdtr.limit, buf, 2);
			c->gdtr.base = base;
			if (!mirror_gdt(e))
				return EMU_STAY;
		} else {
			memcpy(&c->idtr.limit, buf, 2);
			c->idtr.base = base;
		}
		break;
	}
	case SH_OP_SGDT:
	case SH_OP_SIDT: {
		uint8_t buf[10];
		uint64_t base = in.op == SH_OP_SGDT ? c->gdtr.base : c->idtr.base;
		uint16_t limit = in.op == SH_OP_SGDT ? c->gdtr.limit : c->idtr.limit;

		memcpy(buf, &limit, 2);
		memcpy(buf + 2, &base, 8);
		if (!vcopy(e, effective_address(e, &in), buf, m64 ? 10 : 6, true)) {
			reflect(e, V_GP, 0, false);
			return EMU_STAY;
		}
		break;
	}
	case SH_OP_SMSW:
	case SH_OP_STR:
	case SH_OP_SLDT:
		v = in.op == SH_OP_SMSW ? c->cr0 & 0xffff : in.op == SH_OP_STR ? c->tr : c->ldtr;
		if (in.mem) {
			uint16_t w = (uint16_t)v;

			if (!vcopy(e, effective_address(e, &in), &w, 2, true)) {
				reflect(e, V_GP, 0, false);
				return EMU_STAY;
			}
		} else {
			set_gpr(e, in.rm, v, in.opsize);
		}
		break;
	case SH_OP_LMSW:
		v = in.mem ? 0 : *gpr(e, in.rm);
		if (in.mem && !vcopy(e, effective_address(e, &in), &v, 2, false)) {
			reflect(e, V_GP, 0, false);
			return EMU_STAY;
		}
		e->g.rip = next;
		mov_to_cr(e, 0, (c->cr0 & ~0xeULL) | (v & 0xf) | (c->cr0 & CR0_PE));
		return EMU_DONE;
	case SH_OP_LTR:
	case SH_OP_LLDT: {
		uint16_t sel = 0;

		if (in.mem ? !vcopy(e, effective_address(e, &in), &sel, 2, false)
		           : ((sel = (uint16_t)*gpr(e, in.rm)), false)) {
			reflect(e, V_GP, 0, false);
			return EMU_STAY;
		}
		if (in.op == SH_OP_LLDT) {
			if (sel & ~3) {
				stop(e, STOP_VMM_ERROR,
				     "the guest loads an LDT, which shadow mode "
				     "does not support");
				return EMU_STAY;
			}
			c->ldtr = sel;
		} else {
			uint64_t d[2] = {0, 0};

			if (!vcopy(e, c->gdtr.base + (sel & ~7u), d, long_mode(e) ? 16 : 8,
			           false)) {
				reflect(e, V_GP, sel & ~3u, false);
				return EMU_STAY;
			}
			c->tr = sel;
			c->tr_base = ((d[0] >> 16) & 0xffffff) | (((d[0] >> 56) & 0xff) << 24) |
			             (long_mode(e) ? (d[1] & 0xffffffffULL) << 32 : 0);
		}
		break;
	}
	case SH_OP_INVLPG:
		/* The guest's page tables are write-protected, so no shadow entry can be stale:
		 * nothing to drop. Counted, as the guest's TLB maintenance. */
		e->mmu.st.invalidations++;
		break;
	case SH_OP_SWAPGS: {
		struct kvm_sregs *s = sregs(e);
		uint64_t t = s->gs.base;

		s->gs.base = c->kernel_gs_base;
		c->kernel_gs_base = t;
		e->sregs_dirty = true;
		break;
	}
	case SH_OP_XSETBV: {
		struct kvm_xcrs x = {.nr_xcrs = 1,
		                     .xcrs[0] = {.xcr = (uint32_t)e->g.rcx,
		                                 .value = (e->g.rdx << 32) | (uint32_t)e->g.rax}};

		if (ioctl(fd_of(e), KVM_SET_XCRS, &x) < 0) {
			reflect(e, V_GP, 0, false);
			return EMU_STAY;
		}
		break;
	}
	case SH_OP_CLTS:
		c->cr0 &= ~CR0_TS;
		break;
	case SH_OP_INVD:
	case SH_OP_WBINVD:
		break; /* caches are coherent: nothing to do */
	case SH_OP_IRET:
	case SH_OP_LRET:
		if (!far_return(e, &in, in.op == SH_OP_IRET))
			return EMU_STAY;
		return EMU_DONE;
	case SH_OP_MOV_TO_SEG:
	case SH_OP_POP_SEG: {
		uint64_t sel = 0;
		uint16_t real;

		if (in.op == SH_OP_POP_SEG) {
			if (!pop(e, &sel, in.opsize)) {
				reflect(e, V_SS, 0, false);
				return EMU_STAY;
			}
		} else if (in.mem) {
			if (!vcopy(e, effective_address(e, &in), &sel, 2, false)) {
				reflect(e, V_GP, 0, false);
				return EMU_STAY;
			}
		} else {
			sel = *gpr(e, in.rm) & 0xffff;
		}
		if (in.reg != SH_SS || !real_ss_for(e, (uint16_t)sel, &real)) {
			/* Other segment loads do not fault on a mirrored descriptor: this one
			 * names a descriptor the guest may not load. */
			reflect(e, V_GP, (uint32_t)sel & ~3u, false);
			return EMU_STAY;
		}
		c->ss = (uint16_t)(sel & ~3);
		break;
	}
	case SH_OP_INT:
		/* `int $n` to a vector whose real gate is DPL0 (those with error codes). */
		e->g.rip = next;
		reflect(e, (unsigned)in.imm, 0, true);
		return EMU_DONE;
	case SH_OP_IN:
	case SH_OP_OUT:
	case SH_OP_INS:
	case SH_OP_OUTS: {
		bool again;

		if (!emulate_port_io(e, &in, &again)) {
			reflect(e, V_GP, 0, false);
			return EMU_STAY;
		}
		if (again)
			return EMU_DONE; /* the rest of the string: the same instruction again */
		break;
	}
	case SH_OP_SYSRET:
	case SH_OP_SYSEXIT:
		user_mode_refused(e, in.op == SH_OP_SYSRET ? "sysret" : "sysexit");
		return EMU_STAY;
	default:
		reflect(e, V_GP, err, false);
		return EMU_STAY;
	}
	e->g.rip = next;
	return EMU_DONE;
}

/* ---- traps ---------------------------------------------------------------------------- */

/* Emulate a plain `mov` store into a guest page table (the usual way a guest writes a
 * PTE). Shadow entries can only derive from present guest entries: a store that leaves
 * every entry it touches as it was, or fills a not-present one, changes nothing hearth
 * has derived; otherwise a new epoch drops the stale shadows. Returns false when the
 * instruction is not one of these (the caller single-steps it instead). */
static bool emulate_pt_store(struct sh_engine *e, uint64_t va, uint64_t gpa)
{
	uint16_t cs_real = (uint16_t)(e->cpu.cs | 3);
	bool m64 = code64(e, cs_real);
	struct sh_insn in;
	uint8_t bytes[15];
	size_t n = 0;
	uint64_t value, old, new_entry, ea, aligned;
	unsigned size;
	uint8_t *p;

	while (n < sizeof(bytes) && vcopy(e, e->g.rip + n, bytes + n, 1, false))
		n++;
	if (sh_decode(bytes, n, m64, code32(e, cs_real), &in) < 0 || in.lock || in.rep ||
	    (in.op != SH_OP_MOV_STORE && in.op != SH_OP_MOV_STORE_IMM))
		return false;
	size = in.opsize;
	if (size != 4 && size != 8)
		return false;
	ea = effective_address(e, &in);
	if (ea != va || (gpa & 7) + size > 8)
		return false; /* not the faulting access, or an entry-straddling store */
	value = in.op == SH_OP_MOV_STORE ? *gpr(e, in.reg) : in.imm;
	aligned = gpa & ~7ULL;
	p = gm_ptr(&e->v->vm->mem, aligned, 8);
	if (!p)
		return false;
	memcpy(&old, p, 8);
	new_entry = old;
	memcpy((uint8_t *)&new_entry + (gpa & 7), &value, size);
	if ((old & PTE_P) && new_entry != old) {
		e->mmu.st.invalidations++;
		sh_mmu_flush(&e->mmu);
	}
	__atomic_store_n((uint64_t *)p, new_entry, __ATOMIC_RELEASE);
	e->g.rip += in.len;
	if (!m64)
		e->g.rip &= 0xffffffffULL;
	return true;
}

static void handle_pf(struct sh_engine *e, uint32_t err)
{
	struct sh_walk w;
	uint64_t va = e->cr2;

	switch (sh_mmu_fault(&e->mmu, e->cpu.key, va, err, &w)) {
	case SH_FILLED:
		return;
	case SH_GUEST_FAULT:
		e->cpu.cr2 = va;
		reflect(e, V_PF, w.fault_error, false);
		return;
	case SH_TRACKED_WRITE:
		if (emulate_pt_store(e, va, w.gpa))
			return;
		/* A store to one of the guest's page tables that hearth does not decode: let
		 * this one instruction write (the page writable, derived entries dropped),
		 * single-step it, and protect the page again right after. */
		e->cpu.stepping_pt = true;
		e->cpu.stepping_gpa = w.gpa;
		e->mmu.exempt = w.gpa >> 12;
		sh_mmu_untrack(&e->mmu, w.gpa);
		sh_mmu_flush(&e->mmu);
		e->g.rflags |= RF_TF;
		return;
	case SH_BAD_GPA:
		vm_request_stop(e->v->vm, STOP_VMM_ERROR, 0,
		                "shadow mode: the guest maps virtual address 0x%llx into memory "
		                "hearth reserves (PML4 slot %d or physical 0x%llx and above)",
		                (unsigned long long)va, SH_MON_PML4_SLOT,
		                (unsigned long long)e->mon.gpa);
		return;
	}
}

static void handle_db(struct sh_engine *e)
{
	if (e->cpu.stepping_pt) {
		/* The page-table write is done: the page is a page table again. */
		e->cpu.stepping_pt = false;
		e->mmu.exempt = SH_NO_EXEMPT;
		sh_mmu_flush(&e->mmu);
		e->g.rflags &= ~RF_TF;
		return;
	}
	reflect(e, V_DB, 0, false);
}

static void handle_ud(struct sh_engine *e)
{
	uint8_t b[2] = {0, 0};

	if (vcopy(e, e->g.rip, b, 2, false) && b[0] == 0x0f && (b[1] == 0x05 || b[1] == 0x34)) {
		user_mode_refused(e, b[1] == 0x05 ? "syscall" : "sysenter");
		return;
	}
	reflect(e, V_UD, 0, false);
}

/* ---- the run loop ------------------------------------------------------------------- */

/* The segment register state of a descriptor in the real GDT. */
static void seg_from_desc(uint64_t d, uint16_t sel, struct kvm_segment *s)
{
	*s = (struct kvm_segment){
	    .base = ((d >> 16) & 0xffffff) | ((d >> 56) << 24),
	    .limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000)),
	    .selector = sel,
	    .type = (d >> 40) & 0xf,
	    .s = (d >> 44) & 1,
	    .dpl = (d >> 45) & 3,
	    .present = (d >> 47) & 1,
	    .avl = (d >> 52) & 1,
	    .l = (d >> 53) & 1,
	    .db = (d >> 54) & 1,
	    .g = (d >> 55) & 1,
	};
	if (s->g)
		s->limit = (s->limit << 12) | 0xfff;
	s->unusable = !s->present;
}

/* Resume the guest at CPL3 in the state e->g and e->cpu describe, or, for a halt, the
 * monitor's `sti; hlt` at CPL0 on an empty trap stack, keeping that state for the
 * interrupt that ends the halt. */
static void resume(struct sh_engine *e, bool halt)
{
	struct kvm_run *run = run_of(e);
	struct kvm_regs *r = &run->s.regs.regs;
	struct kvm_sregs *s = sregs(e);
	uint16_t real_ss = SH_SEL_DS3;

	*r = e->g;
	if (halt) {
		r->rip = SH_MON_VA + SH_OFF_HALT;
		r->rsp = SH_MON_VA + sh_stack_top(e->v->id);
		r->rflags = 2;
		seg_from_desc(real_desc(e, SH_SEL_CS0), SH_SEL_CS0, &s->cs);
		seg_from_desc(real_desc(e, SH_SEL_DS0), SH_SEL_DS0, &s->ss);
		e->halted = true;
	} else {
		real_ss_for(e, e->cpu.ss, &real_ss);
		r->rflags = (e->g.rflags & ~(RF_IOPL | RF_VM | RF_NT)) | 2;
		seg_from_desc(real_desc(e, e->cpu.cs | 3), e->cpu.cs | 3, &s->cs);
		seg_from_desc(real_desc(e, real_ss), real_ss, &s->ss);
	}
	run->kvm_dirty_regs |= KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
}

static void trap(struct sh_engine *e, unsigned vector)
{
	struct kvm_run *run = run_of(e);
	uint64_t top = sh_stack_top(e->v->id);
	unsigned words = has_error_code(vector) ? SH_FRAME_WORDS : SH_FRAME_WORDS - 1;
	uint64_t *f;
	uint32_t err = 0;
	enum emu r = EMU_DONE;

	e->cpu.traps++;
	/* From CPL3 the CPU switched to TSS.RSP0, the top of the trap stack; from the halt path
	 * that stack was empty. Either way the frame ends at the top; anything else is a fault
	 * inside the monitor. */
	if (run->s.regs.regs.rsp != SH_MON_VA + top - 8ULL * words) {
		vm_request_stop(e->v->vm, STOP_VMM_ERROR, 0,
		                "shadow mode: unexpected trap %u inside the monitor", vector);
		return;
	}
	f = (uint64_t *)((uint8_t *)sh_mon_ptr(&e->mon, top) - 8ULL * words);
	if (words == SH_FRAME_WORDS)
		err = (uint32_t)*f++;
	/* f: RIP, CS, RFLAGS, RSP, SS */
	if (e->halted) {
		struct kvm_regs saved = e->g;

		if (f[1] != SH_SEL_CS0) {
			vm_request_stop(e->v->vm, STOP_VMM_ERROR, 0,
			                "shadow mode: trap %u from CPL3 while halted", vector);
			return;
		}
		e->halted = false;
		e->g = run->s.regs.regs;
		e->g.rip = saved.rip;
		e->g.rsp = saved.rsp;
		e->g.rflags = saved.rflags;
	} else {
		if ((f[1] & 3) != 3) {
			vm_request_stop(e->v->vm, STOP_VMM_ERROR, 0,
			                "shadow mode: unexpected trap %u inside the monitor",
			                vector);
			return;
		}
		e->g = run->s.regs.regs;
		e->g.rip = f[0];
		e->g.rflags = f[2];
		e->g.rsp = f[3];
		/* Far jumps and calls run natively: the frame holds the guest's current CS (and
		 * SS, unless it is the stand-in for a null SS). */
		e->cpu.cs = (uint16_t)(f[1] & ~3);
		if ((uint16_t)f[4] != SH_SEL_DS3)
			e->cpu.ss = (uint16_t)(f[4] & ~3);
	}
	if (vector == V_PF)
		e->cr2 = sregs(e)->cr2;
	if (e->trace)
		fprintf(stderr,
		        "shadow: trap %u err %#x rip %#llx rsp %#llx rflags %#llx cr2 %#llx\n",
		        vector, err, (unsigned long long)e->g.rip, (unsigned long long)e->g.rsp,
		        (unsigned long long)e->g.rflags, (unsigned long long)e->cr2);

	switch (vector) {
	case V_GP:
		r = emulate_gp(e, err);
		break;
	case V_PF:
		handle_pf(e, err);
		break;
	case V_DB:
		handle_db(e);
		break;
	case V_UD:
		handle_ud(e);
		break;
	case V_NMI:
		break;
	default:
		/* The guest's own exceptions, software interrupts and device interrupts. */
		reflect(e, vector, err, vector >= 32);
		break;
	}
	if (e->cpu.epoch != e->mmu.epoch || e->cpu.key != current_key(e))
		load_root(e);
	if (r == EMU_HALT && !(e->g.rflags & RF_IF)) {
		/* hlt with interrupts disabled: as hardware, the vCPU sleeps for good (only an
		 * NMI or INIT would wake it, and hearth sends neither). */
		e->halted_for_good = true;
		r = EMU_DONE;
	}
	resume(e, r == EMU_HALT);
}

/* The boot vCPU's real state: long mode, the monitor's CS/SS at CPL0, about to iretq into
 * the guest at CPL3 in the state `boot` describes. */
static int sh_setup_boot_vcpu(struct vcpu *v, const struct boot_cpu_state *boot, struct error *err)
{
	struct sh_engine *e = engine_of(v);
	struct sh_cpu *c = &e->cpu;
	struct kvm_sregs s;
	struct kvm_regs r;
	uint64_t boot_gdt[4];

	e->v = v;
	e->trace = getenv("HEARTH_SHADOW_TRACE") != NULL;
	sh_mmu_init(&e->mmu, &e->mon, &v->vm->mem, kvm_of(v->vm)->vm_fd);
	/* The guest's view at entry, as the boot protocol defines it. */
	c->gdtr.base = LAYOUT_BOOT_GDT;
	c->gdtr.limit = BOOT_GDT_SIZE - 1;
	c->ss = BOOT_GDT_SEL_DATA;
	if (boot->long_mode) {
		c->cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
		c->cr3 = boot->cr3;
		c->cr4 = CR4_PAE;
		c->efer = EFER_LME | EFER_LMA;
		c->cs = BOOT_GDT_SEL_CODE64;
	} else {
		c->cr0 = CR0_PE | CR0_ET;
		c->cs = BOOT_GDT_SEL_CODE32;
	}
	if (gm_read(&v->vm->mem, LAYOUT_BOOT_GDT, boot_gdt, sizeof(boot_gdt)))
		return err_set(err, "shadow mode: boot GDT outside RAM");
	sh_monitor_mirror_gdt(&e->mon, boot_gdt, 4, NULL, 0);

	if (ioctl(kvcpu_of(v)->fd, KVM_GET_SREGS, &s) < 0)
		return err_set(err, "KVM_GET_SREGS: %s", strerror(errno));
	/* The guest starts at CPL3 in its own (mirrored) code and stack segments. */
	seg_from_desc(real_desc(e, c->cs | 3), c->cs | 3, &s.cs);
	seg_from_desc(real_desc(e, c->ss | 3), c->ss | 3, &s.ss);
	/* The guest's data segments, as the boot protocol leaves them (DPL3 mirrors). */
	s.ds = (struct kvm_segment){.limit = 0xffffffff,
	                            .selector = BOOT_GDT_SEL_DATA | 3,
	                            .type = 0x3,
	                            .present = 1,
	                            .dpl = 3,
	                            .s = 1,
	                            .db = 1,
	                            .g = 1};
	s.es = s.fs = s.gs = s.ds;
	s.tr = (struct kvm_segment){.base = SH_MON_VA + sh_vcpu_area(v->id),
	                            .limit = 104 + 8192,
	                            .selector = SH_SEL_TSS(v->id),
	                            .type = 0xb,
	                            .present = 1};
	s.ldt = (struct kvm_segment){.type = 0x2, .unusable = 1};
	s.gdt.base = SH_MON_VA + SH_OFF_GDT;
	s.gdt.limit = SH_GDT_ENTRIES * 8 - 1;
	s.idt.base = SH_MON_VA + SH_OFF_IDT;
	s.idt.limit = 256 * 16 - 1;
	s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	/* UMIP makes sgdt/sidt/sldt/str/smsw fault at CPL3, so hearth can answer with the
	 * guest's own values instead of the monitor's. */
	s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE | CR4_FSGSBASE | CR4_UMIP;
	s.efer = EFER_LME | EFER_LMA | EFER_NXE;
	c->key = current_key(e);
	s.cr3 = sh_mmu_root(&e->mmu, c->key);
	c->epoch = e->mmu.epoch;
	if (ioctl(kvcpu_of(v)->fd, KVM_SET_SREGS, &s) < 0) {
		s.cr4 &= ~CR4_UMIP;
		if (ioctl(kvcpu_of(v)->fd, KVM_SET_SREGS, &s) < 0) {
			s.cr4 &= ~(CR4_OSXSAVE | CR4_FSGSBASE);
			if (ioctl(kvcpu_of(v)->fd, KVM_SET_SREGS, &s) < 0)
				return err_set(err, "shadow mode: KVM_SET_SREGS: %s",
				               strerror(errno));
		}
	}

	memset(&r, 0, sizeof(r));
	r.rip = boot->rip;
	r.rsp = boot->long_mode ? 0x8ff0 : 0;
	r.rflags = 2; /* interrupts off */
	r.rbx = boot->rbx;
	r.rsi = boot->rsi;
	if (ioctl(kvcpu_of(v)->fd, KVM_SET_REGS, &r) < 0)
		return err_set(err, "KVM_SET_REGS: %s", strerror(errno));
	/* From here on the special registers travel in kvm_run's sync area. */
	kvcpu_of(v)->run->s.regs.sregs = s;
	e->sregs_valid = true;
	return 0;
}

/* cpuid is not intercepted at CPL3 on hosts like PVM's: the guest sees the host CPU's own
 * leaves, including its APIC ID. Running vCPU k on the host CPU whose APIC ID is k makes
 * that ID the vCPU's own (docs/HOST_FACTS.md, Guests: guests index per-CPU data by it). Probed from
 * the VMM thread (it runs cpuid on each allowed CPU in turn); -1 when no CPU matches. */
int kvm_shadow_pin_cpu(unsigned vcpu_id)
{
	cpu_set_t allowed;
	int found = -1;

	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return -1;
	for (int cpu = 0; cpu < CPU_SETSIZE && found < 0; cpu++) {
		cpu_set_t set;
		unsigned a, b, c, d;

		if (!CPU_ISSET(cpu, &allowed))
			continue;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			continue;
		__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
		if (b >> 24 == vcpu_id)
			found = cpu;
	}
	sched_setaffinity(0, sizeof(allowed), &allowed);
	return found;
}

static bool sh_vread(void *ctx, uint64_t va, void *buf, size_t len)
{
	return vcopy(ctx, va, buf, len, false);
}

static const struct kvm_sregs *sh_sregs(void *ctx)
{
	return sregs(ctx);
}

static void *sh_ctx(struct vcpu *v)
{
	return engine_of(v);
}

/* Application processors do not run in shadow mode: they stay parked. A vCPU that halted
 * with interrupts off sleeps for good. */
static bool sh_before_run(struct vcpu *v)
{
	struct sh_engine *e = engine_of(v);
	struct kvm_run *run = kvcpu_of(v)->run;

	if (v->id != 0 || e->halted_for_good) {
		vm_vcpu_park(v);
		return false;
	}
	run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
	if (e->sregs_dirty) {
		run->kvm_dirty_regs |= KVM_SYNC_X86_SREGS;
		e->sregs_dirty = false;
	}
	return true;
}

static void sh_after_run(struct vcpu *v)
{
	engine_of(v)->sregs_valid = true; /* KVM filled the sync area (kvm_valid_regs) */
}

/* A stub's exit: the guest cannot reach the trap port (TSS I/O bitmap), and the exit's
 * address names the vector. */
static bool sh_exit_io(struct vcpu *v)
{
	struct sh_engine *e = engine_of(v);
	struct kvm_run *run = kvcpu_of(v)->run;
	struct timespec t0, t1;
	unsigned vec;

	if (run->io.port != SH_TRAP_PORT || run->io.direction != KVM_EXIT_IO_OUT ||
	    run->s.regs.regs.rip - (SH_MON_VA + SH_OFF_VECTORS) >= 256 * SH_STUB_SIZE)
		return false;
	vec = (unsigned)((run->s.regs.regs.rip - SH_MON_VA - SH_OFF_VECTORS) / SH_STUB_SIZE);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	trap(e, vec);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	e->cpu.trap_ns += (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
	return true;
}

static void sh_shutdown(struct vcpu *v)
{
	vm_request_stop(v->vm, STOP_TRIPLE_FAULT, 0,
	                "shadow mode: the monitor faulted (KVM shutdown) at rip=0x%llx",
	                (unsigned long long)kvcpu_of(v)->run->s.regs.regs.rip);
}

int kvm_shadow_create(struct vm *vm, struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	struct sh_engine *e = calloc(1, sizeof(*e));
	struct kvm_cpuid_entry2 *widths = NULL;
	uint64_t guest_end =
	    vm->mem.high_size ? LAYOUT_HIGH_RAM_START + vm->mem.high_size : LAYOUT_GAP_END;
	uint64_t gpa;

	if (!e)
		return err_set(err, "out of memory");
	k->shadow = e;
	for (uint32_t i = 0; i < k->cpuid->nent; i++)
		if (k->cpuid->entries[i].function == 0x80000008)
			widths = &k->cpuid->entries[i];
	/* The monitor sits inside the guest-physical width KVM supports (39 or 40 bits on some
	 * CPUs, and in nested setups), above everything the guest has. */
	if (sh_monitor_place(widths ? widths->eax & 0xff : 36, guest_end, &gpa, err))
		return -1;
	return sh_monitor_init(&e->mon, vm->nvcpus, gpa, err);
}

int kvm_shadow_add_memslots(struct vm *vm, struct error *err)
{
	return sh_monitor_add_memslots(&kvm_of(vm)->shadow->mon, kvm_of(vm)->vm_fd, err);
}

void kvm_shadow_destroy(struct vm *vm)
{
	struct kvm_vm *k = kvm_of(vm);

	if (!k->shadow)
		return;
	sh_monitor_destroy(&k->shadow->mon);
	free(k->shadow);
	k->shadow = NULL;
}

void kvm_shadow_info(const struct vm *vm, cJSON *o)
{
	const struct sh_engine *e = kvm_of(vm) ? kvm_of(vm)->shadow : NULL;
	cJSON *sh;

	if (!e)
		return;
	sh = cJSON_AddObjectToObject(o, "shadow");
	cJSON_AddNumberToObject(sh, "traps", (double)e->cpu.traps);
	cJSON_AddNumberToObject(sh, "cache_hits", (double)e->mmu.st.hits);
	cJSON_AddNumberToObject(sh, "cache_misses", (double)e->mmu.st.misses);
	cJSON_AddNumberToObject(sh, "fills", (double)e->mmu.st.fills);
	cJSON_AddNumberToObject(sh, "evictions", (double)e->mmu.st.evictions);
	cJSON_AddNumberToObject(sh, "invalidations", (double)e->mmu.st.invalidations);
	cJSON_AddNumberToObject(sh, "epochs", (double)e->mmu.st.epochs);
	cJSON_AddNumberToObject(sh, "pool_reloads", (double)e->mmu.st.reloads);
	cJSON_AddNumberToObject(sh, "page_table_writes", (double)e->mmu.st.tracked_writes);
}

void kvm_shadow_log_stats(const struct vm *vm)
{
	const struct sh_engine *e = kvm_of(vm) ? kvm_of(vm)->shadow : NULL;
	const struct sh_mmu_stats *st;

	if (!e)
		return;
	st = &e->mmu.st;
	log_info("shadow: %llu traps (%.2f us in hearth each), cache: %llu hits, %llu misses, "
	         "%llu fills, %llu evictions, %llu invalidations, %llu epochs, %llu pool "
	         "reloads, %llu page-table writes",
	         (unsigned long long)e->cpu.traps,
	         e->cpu.traps ? e->cpu.trap_ns / (double)e->cpu.traps / 1000.0 : 0.0,
	         (unsigned long long)st->hits, (unsigned long long)st->misses,
	         (unsigned long long)st->fills, (unsigned long long)st->evictions,
	         (unsigned long long)st->invalidations, (unsigned long long)st->epochs,
	         (unsigned long long)st->reloads, (unsigned long long)st->tracked_writes);
}

const struct kvm_engine kvm_shadow_engine = {
    .name = "shadow",
    .setup_boot_vcpu = sh_setup_boot_vcpu,
    .before_run = sh_before_run,
    .after_run = sh_after_run,
    .exit_io = sh_exit_io,
    .sregs = sh_sregs,
    .vread = sh_vread,
    .hook_ctx = sh_ctx,
    .shutdown = sh_shutdown,
};
