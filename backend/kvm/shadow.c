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
#include "cpu/guest_cpu.h"
#include "cpu/x86.h"
#include "shadow_monitor.h"
#include "boot/boot_gdt.h"
#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/metrics.h"
#include "shadow.h"
#include "cpu/decode.h"
#include "shadow_mmu.h"
#include "snapshot/stream.h"

#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

/* One engine per VM: shadow mode runs the boot vCPU only. */
/* Segment descriptor bits. */
#define DESC_ACCESSED   (1ULL << 40) /* set by the CPU when it loads one: no change of meaning */
#define DESC_WRITABLE   (1ULL << 41)
#define DESC_CONFORMING (1ULL << 42)
#define DESC_CODE       (1ULL << 43)
#define DESC_S          (1ULL << 44)
#define DESC_DPL3       (3ULL << 45)
#define DESC_P          (1ULL << 47)
#define DESC_DPL(d)     (((d) >> 45) & 3)

struct sh_engine {
	struct sh_monitor mon;
	struct sh_mmu mmu;
	struct guest_cpu cpu; /* the guest's virtual CPU (cpu/guest_cpu.h) */
	struct vcpu *v;
	uint64_t key;     /* shadow key in use: guest CR3 or SH_KEY_IDENTITY */
	uint64_t epoch;   /* the MMU epoch the real CR3 belongs to */
	bool stepping_pt; /* single-stepping one write to a guest page table */
	bool sregs_dirty;
	bool sregs_valid; /* run->s.regs.sregs holds the current special registers */
	bool halted;      /* resumed at the monitor's halt path; the guest's state is in cpu */
	uint64_t cr2;     /* CR2 at the last #PF */
	bool trace;       /* HEARTH_SHADOW_TRACE=1: one stderr line per trap (debugging) */
	bool halted_for_good;
	/* The GDT index of CS when an lgdt gave its selector another descriptor than the one CS
	 * runs on (0: none). Its mirror is left at DPL0 until CS is loaded again: a native far
	 * jump to the same selector (which hearth would not see, its selector unchanged) faults
	 * instead, and hearth emulates it with the new descriptor (cs_poison_*). */
	unsigned cs_poison;
	uint64_t traps;
	double trap_ns;
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

/* kvm_regs <-> the virtual CPU's registers (ModRM order). */
static void regs_from_kvm(struct x86_regs *r, const struct kvm_regs *k)
{
	*r = (struct x86_regs){.gpr = {k->rax, k->rcx, k->rdx, k->rbx, k->rsp, k->rbp, k->rsi,
	                               k->rdi, k->r8, k->r9, k->r10, k->r11, k->r12, k->r13, k->r14,
	                               k->r15},
	                       .rip = k->rip,
	                       .rflags = k->rflags};
}

static void regs_to_kvm(struct kvm_regs *k, const struct x86_regs *r)
{
	*k = (struct kvm_regs){.rax = r->gpr[R_AX],
	                       .rcx = r->gpr[R_CX],
	                       .rdx = r->gpr[R_DX],
	                       .rbx = r->gpr[R_BX],
	                       .rsp = r->gpr[R_SP],
	                       .rbp = r->gpr[R_BP],
	                       .rsi = r->gpr[R_SI],
	                       .rdi = r->gpr[R_DI],
	                       .r8 = r->gpr[R_R8],
	                       .r9 = r->gpr[R_R9],
	                       .r10 = r->gpr[R_R10],
	                       .r11 = r->gpr[R_R11],
	                       .r12 = r->gpr[R_R12],
	                       .r13 = r->gpr[R_R13],
	                       .r14 = r->gpr[R_R14],
	                       .r15 = r->gpr[R_R15],
	                       .rip = r->rip,
	                       .rflags = r->rflags};
}

/* The real descriptor behind a selector (our mirrored GDT). */
static uint64_t real_desc(struct sh_engine *e, uint16_t sel)
{
	uint64_t *gdt = sh_mon_ptr(&e->mon, SH_OFF_GDT);

	return gdt[(sel >> 3) & (SH_GDT_ENTRIES - 1)];
}

/* After an lgdt: CS's selector means something else now (a kernel that loads a GDT whose
 * 0x08 is 64-bit code while it runs 32-bit code at 0x08, then far-jumps to 0x08). */
static void cs_poison_set(struct sh_engine *e)
{
	uint64_t *gdt = sh_mon_ptr(&e->mon, SH_OFF_GDT);
	unsigned i = e->cpu.cs >> 3;

	e->cs_poison = 0;
	/* (only code: a far jump cannot go to anything else, and data loads must keep
	 * working natively) */
	if (!i || i >= e->mon.guest_gdt_entries || i >= SH_GUEST_GDT_MAX ||
	    !e->cpu.hidden.cs_desc || DESC_DPL(gdt[i]) != 3 || !(gdt[i] & DESC_CODE) ||
	    (gdt[i] | DESC_ACCESSED) == (e->cpu.hidden.cs_desc | DESC_ACCESSED))
		return;
	gdt[i] &= ~DESC_DPL3;
	e->cs_poison = i;
}

/* CS was loaded again from the new descriptor: the mirror goes back to DPL3. */
static void cs_poison_check(struct sh_engine *e)
{
	uint64_t *gdt = sh_mon_ptr(&e->mon, SH_OFF_GDT);
	unsigned i = e->cs_poison;

	if (i && (e->cpu.cs >> 3) == i &&
	    (e->cpu.hidden.cs_desc | DESC_ACCESSED) == (gdt[i] | DESC_DPL3 | DESC_ACCESSED)) {
		gdt[i] |= DESC_DPL3;
		e->cs_poison = 0;
	}
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

	e->key = current_key(e);
	s->cr3 = sh_mmu_root(&e->mmu, e->key);
	e->epoch = e->mmu.epoch;
	e->sregs_dirty = true;
}

/* ---- what the virtual CPU asks of this engine (struct guest_cpu_ops) ------------------ */

static bool op_translate(void *ctx, uint64_t va, bool write, uint64_t *gpa)
{
	struct sh_engine *e = ctx;
	struct sh_walk w;

	if (!sh_mmu_translate(&e->mmu, e->key, va, write, &w))
		return false;
	*gpa = w.gpa;
	return true;
}

/* The guest's own descriptors as mirrored (DPL3): never the monitor's, which sit above the
 * guest's entries, nor the DPL0 slot of its user-mode code (entering that is refused). */
static uint64_t op_descriptor(void *ctx, uint16_t sel)
{
	struct sh_engine *e = ctx;
	unsigned i = sel >> 3;
	uint64_t d;

	if (!i || (sel & 4) || i >= e->mon.guest_gdt_entries || i >= SH_GUEST_GDT_MAX)
		return 0;
	d = real_desc(e, sel);
	if (i == e->cs_poison)
		return d | DESC_DPL3; /* what the mirror holds once CS is loaded from it */
	return DESC_DPL(d) == 3 ? d : 0;
}

/* Load the guest's GDT into the real one, deprivileged. */
static bool op_gdt_loaded(void *ctx)
{
	struct sh_engine *e = ctx;
	struct guest_cpu *c = &e->cpu;
	unsigned n = (c->gdtr.limit + 1u) / 8;
	uint64_t *buf;
	bool ok;

	if (n > SH_GUEST_GDT_MAX) {
		c->ops->stop(e, CPU_STOP_REFUSED,
		             "the guest's GDT has more descriptors than shadow mode mirrors");
		return false;
	}
	buf = calloc(n ? n : 1, 8);
	if (!buf)
		return false;
	ok = cpu_read(c, c->gdtr.base, buf, n * 8);
	if (ok) {
		unsigned keep[2] = {c->cs >> 3, c->ss >> 3};

		sh_monitor_mirror_gdt(&e->mon, buf, n, keep, 2);
		cs_poison_set(e);
	} else {
		cpu_reflect(c, V_GP, 0, false);
	}
	free(buf);
	return ok;
}

static void op_paging_changed(void *ctx)
{
	struct sh_engine *e = ctx;
	bool wp = e->cpu.cr0 & CR0_WP, nxe = e->cpu.efer & EFER_NXE;

	if (e->mmu.wp != wp || e->mmu.nxe != nxe) {
		e->mmu.wp = wp;
		e->mmu.nxe = nxe;
		sh_mmu_flush(&e->mmu);
	}
	if (current_key(e) != e->key || e->epoch != e->mmu.epoch)
		load_root(e);
}

/* Shadow entries derive only from present guest entries: a store that leaves a present
 * entry as it was, or fills a not-present one, changes nothing hearth derived; otherwise a
 * new epoch drops the stale shadows. */
static void op_pte_stored(void *ctx, uint64_t gpa, uint64_t old, uint64_t new)
{
	struct sh_engine *e = ctx;

	(void)gpa;
	if ((old & PTE_P) && new != old) {
		e->mmu.st.invalidations++;
		sh_mmu_flush(&e->mmu);
	}
}

/* The guest's page tables are write-protected, so no shadow entry can be stale: nothing to
 * drop. Counted, as the guest's TLB maintenance. */
static void op_invlpg(void *ctx, uint64_t va)
{
	struct sh_engine *e = ctx;

	(void)va;
	e->mmu.st.invalidations++;
}

/* APIC, PAT, MTRRs, TSC...: as KVM has them. */
static bool op_rdmsr(void *ctx, uint32_t index, uint64_t *value)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = {.h.nmsrs = 1, .e.index = index};

	if (ioctl(fd_of(ctx), KVM_GET_MSRS, &m) != 1)
		return false;
	*value = m.e.data;
	return true;
}

static bool op_wrmsr(void *ctx, uint32_t index, uint64_t value)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = {.h.nmsrs = 1, .e.index = index, .e.data = value};

	return ioctl(fd_of(ctx), KVM_SET_MSRS, &m) == 1;
}

static bool op_xsetbv(void *ctx, uint32_t index, uint64_t value)
{
	struct kvm_xcrs x = {.nr_xcrs = 1, .xcrs[0] = {.xcr = index, .value = value}};

	return ioctl(fd_of(ctx), KVM_SET_XCRS, &x) == 0;
}

static void op_pio(void *ctx, uint16_t port, bool write, void *data, unsigned size)
{
	struct sh_engine *e = ctx;

	METRIC_INC(exit_io);
	vm_pio(e->v->vm, port, write, data, size, 1);
}

static void op_stop(void *ctx, enum cpu_stop how, const char *why)
{
	struct sh_engine *e = ctx;

	if (how == CPU_STOP_TRIPLE_FAULT)
		vm_request_stop(e->v->vm, STOP_TRIPLE_FAULT, 0,
		                "guest triple fault on vCPU %u at rip=0x%llx (shadow mode: %s)",
		                e->v->id, (unsigned long long)e->cpu.r.rip, why);
	else
		vm_request_stop(e->v->vm, STOP_VMM_ERROR, 0, "shadow mode: %s at rip=0x%llx", why,
		                (unsigned long long)e->cpu.r.rip);
}

static const struct guest_cpu_ops sh_cpu_ops = {
    .translate = op_translate,
    .descriptor = op_descriptor,
    .gdt_loaded = op_gdt_loaded,
    .paging_changed = op_paging_changed,
    .pte_stored = op_pte_stored,
    .invlpg = op_invlpg,
    .rdmsr = op_rdmsr,
    .wrmsr = op_wrmsr,
    .xsetbv = op_xsetbv,
    .pio = op_pio,
    .stop = op_stop,
};

/* ---- traps ---------------------------------------------------------------------------- */

static void handle_pf(struct sh_engine *e, uint32_t err)
{
	struct sh_walk w;
	uint64_t va = e->cr2;
	char why[200];

	switch (sh_mmu_fault(&e->mmu, e->key, va, err, &w)) {
	case SH_FILLED:
		return;
	case SH_GUEST_FAULT:
		cpu_page_fault(&e->cpu, va, w.fault_error);
		return;
	case SH_TRACKED_WRITE:
		if (cpu_emulate_pte_store(&e->cpu, va, w.gpa))
			return;
		/* A store to one of the guest's page tables that hearth does not decode: let
		 * this one instruction write (the page writable, derived entries dropped),
		 * single-step it, and protect the page again right after. */
		e->stepping_pt = true;
		e->mmu.pt.exempt = w.gpa >> 12;
		sh_mmu_untrack(&e->mmu, w.gpa);
		sh_mmu_flush(&e->mmu);
		e->cpu.r.rflags |= RF_TF;
		return;
	case SH_BAD_GPA:
		snprintf(why, sizeof(why),
		         "the guest maps virtual address 0x%llx into memory hearth reserves (PML4 "
		         "slot %d or physical 0x%llx and above)",
		         (unsigned long long)va, SH_MON_PML4_SLOT, (unsigned long long)e->mon.gpa);
		vm_request_stop(e->v->vm, STOP_VMM_ERROR, 0, "shadow mode: %s", why);
		return;
	}
}

static void handle_db(struct sh_engine *e)
{
	if (e->stepping_pt) {
		/* The page-table write is done: the page is a page table again. */
		e->stepping_pt = false;
		e->mmu.pt.exempt = SH_NO_EXEMPT;
		sh_mmu_flush(&e->mmu);
		e->cpu.r.rflags &= ~RF_TF;
		return;
	}
	cpu_reflect(&e->cpu, V_DB, 0, false);
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

/* The guest's segment bases and TPR live in the real special registers while it runs:
 * into the virtual CPU at a trap, back (when changed) at resume. */
static void sregs_to_cpu(struct sh_engine *e)
{
	struct kvm_sregs *s = sregs(e);

	e->cpu.fs_base = s->fs.base;
	e->cpu.gs_base = s->gs.base;
	e->cpu.cr8 = s->cr8;
}

static void cpu_to_sregs(struct sh_engine *e)
{
	struct kvm_sregs *s = sregs(e);

	if (s->fs.base != e->cpu.fs_base || s->gs.base != e->cpu.gs_base || s->cr8 != e->cpu.cr8) {
		s->fs.base = e->cpu.fs_base;
		s->gs.base = e->cpu.gs_base;
		s->cr8 = e->cpu.cr8;
		e->sregs_dirty = true;
	}
}

/* Resume the guest at CPL3 in the state its virtual CPU describes, or, for a halt, the
 * monitor's `sti; hlt` at CPL0 on an empty trap stack, keeping that state for the
 * interrupt that ends the halt. */
static void resume(struct sh_engine *e, bool halt)
{
	struct kvm_run *run = run_of(e);
	struct kvm_regs *r = &run->s.regs.regs;
	struct kvm_sregs *s = sregs(e);
	/* a null SS is fine at CPL0 but not at CPL3: the monitor's flat DPL3 stand-in */
	uint16_t real_ss = e->cpu.ss & ~3 ? (uint16_t)(e->cpu.ss | 3) : SH_SEL_DS3;

	cpu_to_sregs(e);
	regs_to_kvm(r, &e->cpu.r);
	if (halt) {
		r->rip = SH_MON_VA + SH_OFF_HALT;
		r->rsp = SH_MON_VA + sh_stack_top(e->v->id);
		r->rflags = RF_RESERVED;
		seg_from_desc(real_desc(e, SH_SEL_CS0), SH_SEL_CS0, &s->cs);
		seg_from_desc(real_desc(e, SH_SEL_DS0), SH_SEL_DS0, &s->ss);
		e->halted = true;
	} else {
		r->rflags = (e->cpu.r.rflags & ~(RF_IOPL | RF_VM | RF_NT)) | RF_RESERVED;
		/* CS and SS as they were loaded, not as a GDT loaded since describes them. */
		seg_from_desc(e->cpu.hidden.cs_desc ? e->cpu.hidden.cs_desc
		                                    : real_desc(e, e->cpu.cs | 3),
		              e->cpu.cs | 3, &s->cs);
		seg_from_desc(e->cpu.hidden.ss_desc && real_ss == (e->cpu.ss | 3)
		                  ? e->cpu.hidden.ss_desc
		                  : real_desc(e, real_ss),
		              real_ss, &s->ss);
	}
	run->kvm_dirty_regs |= KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
}

static void trap(struct sh_engine *e, unsigned vector)
{
	struct kvm_run *run = run_of(e);
	struct guest_cpu *c = &e->cpu;
	uint64_t top = sh_stack_top(e->v->id);
	unsigned words = cpu_vector_has_error_code(vector) ? SH_FRAME_WORDS : SH_FRAME_WORDS - 1;
	uint64_t *f;
	uint32_t err = 0;
	enum emu r = EMU_DONE;

	e->traps++;
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
		struct x86_regs saved = c->r;

		if (f[1] != SH_SEL_CS0) {
			vm_request_stop(e->v->vm, STOP_VMM_ERROR, 0,
			                "shadow mode: trap %u from CPL3 while halted", vector);
			return;
		}
		e->halted = false;
		regs_from_kvm(&c->r, &run->s.regs.regs);
		c->r.rip = saved.rip;
		c->r.gpr[R_SP] = saved.gpr[R_SP];
		c->r.rflags = saved.rflags;
	} else {
		if ((f[1] & 3) != 3) {
			vm_request_stop(e->v->vm, STOP_VMM_ERROR, 0,
			                "shadow mode: unexpected trap %u inside the monitor",
			                vector);
			return;
		}
		regs_from_kvm(&c->r, &run->s.regs.regs);
		c->r.rip = f[0];
		c->r.rflags = f[2];
		c->r.gpr[R_SP] = f[3];
		/* Far jumps and calls run natively: the frame holds the guest's current CS (and
		 * SS, unless it is the stand-in for a null SS). A selector that changed was
		 * loaded from the mirror as it is now; one that did not keeps its descriptor. */
		if ((uint16_t)(f[1] & ~3) != c->cs) {
			c->cs = (uint16_t)(f[1] & ~3);
			c->hidden.cs_desc = real_desc(e, c->cs | 3);
		}
		if ((uint16_t)f[4] != SH_SEL_DS3 && (uint16_t)(f[4] & ~3) != c->ss) {
			c->ss = (uint16_t)(f[4] & ~3);
			c->hidden.ss_desc = real_desc(e, c->ss | 3);
		}
	}
	sregs_to_cpu(e);
	if (vector == V_PF)
		e->cr2 = sregs(e)->cr2;
	if (e->trace)
		fprintf(
		    stderr, "shadow: trap %u err %#x rip %#llx rsp %#llx rflags %#llx cr2 %#llx\n",
		    vector, err, (unsigned long long)c->r.rip, (unsigned long long)c->r.gpr[R_SP],
		    (unsigned long long)c->r.rflags, (unsigned long long)e->cr2);

	switch (vector) {
	case V_GP:
		r = cpu_emulate_gp(c, err);
		break;
	case V_PF:
		handle_pf(e, err);
		break;
	case V_DB:
		handle_db(e);
		break;
	case V_UD:
		cpu_emulate_ud(c);
		break;
	case V_NMI:
		break;
	default:
		/* The guest's own exceptions, software interrupts and device interrupts. */
		cpu_reflect(c, vector, err, vector >= 32);
		break;
	}
	if (e->cs_poison)
		cs_poison_check(e);
	if (e->epoch != e->mmu.epoch || e->key != current_key(e))
		load_root(e);
	if (r == EMU_HALT && !(c->r.rflags & RF_IF)) {
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
	struct guest_cpu *c = &e->cpu;
	struct kvm_sregs s;
	struct kvm_regs r;
	uint64_t boot_gdt[4];

	e->v = v;
	e->trace = getenv("HEARTH_SHADOW_TRACE") != NULL;
	sh_mmu_init(&e->mmu, &e->mon, &v->vm->mem, kvm_of(v->vm)->vm_fd);
	c->gm = &v->vm->mem;
	c->ops = &sh_cpu_ops;
	c->ctx = e;
	c->trap_port = SH_TRAP_PORT;
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
	c->hidden.cs_desc = real_desc(e, c->cs | 3); /* as loaded, whatever GDT comes next */
	c->hidden.ss_desc = real_desc(e, c->ss | 3);

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
	s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	s.efer = EFER_LME | EFER_LMA | EFER_NXE;
	e->key = current_key(e);
	s.cr3 = sh_mmu_root(&e->mmu, e->key);
	e->epoch = e->mmu.epoch;
	if (ioctl(kvcpu_of(v)->fd, KVM_SET_SREGS, &s) < 0)
		return err_set(err, "shadow mode: KVM_SET_SREGS: %s", strerror(errno));
	/* Each of these where the vCPU's CPUID has it (KVM refuses the others), one at a time:
	 * a CPU without XSAVE (QEMU's qemu64) can still have FSGSBASE, which the guest's own
	 * wrfsbase at CPL3 needs. UMIP makes sgdt/sidt/sldt/str/smsw fault at CPL3, so hearth
	 * can answer with the guest's own values instead of the monitor's. */
	for (unsigned i = 0; i < 3; i++) {
		static const uint64_t optional[3] = {CR4_UMIP, CR4_OSXSAVE, CR4_FSGSBASE};

		s.cr4 |= optional[i];
		if (ioctl(kvcpu_of(v)->fd, KVM_SET_SREGS, &s) < 0)
			s.cr4 &= ~optional[i];
	}

	memset(&r, 0, sizeof(r));
	r.rip = boot->rip;
	r.rsp = boot->long_mode ? LAYOUT_BOOT_STACK : 0;
	r.rflags = 2; /* interrupts off */
	r.rbx = boot->rbx;
	r.rax = boot->rax;
	r.rsi = boot->rsi;
	if (ioctl(kvcpu_of(v)->fd, KVM_SET_REGS, &r) < 0)
		return err_set(err, "KVM_SET_REGS: %s", strerror(errno));
	/* From here on the registers travel in kvm_run's sync area (a snapshot reads them
	 * there, also before the first run). */
	kvcpu_of(v)->run->s.regs.regs = r;
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
	struct sh_engine *e = ctx;

	return cpu_read(&e->cpu, va, buf, len);
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
	e->trap_ns += (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
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
	cJSON_AddNumberToObject(sh, "traps", (double)e->traps);
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
	         (unsigned long long)e->traps,
	         e->traps ? e->trap_ns / (double)e->traps / 1000.0 : 0.0,
	         (unsigned long long)st->hits, (unsigned long long)st->misses,
	         (unsigned long long)st->fills, (unsigned long long)st->evictions,
	         (unsigned long long)st->invalidations, (unsigned long long)st->epochs,
	         (unsigned long long)st->reloads, (unsigned long long)st->tracked_writes);
}

/* ---- snapshots ------------------------------------------------------------------------ */

/*
 * What the shadow engine adds to the KVM vCPUs' state (snapshot.c): the virtual CPU (what
 * the guest believes its privileged state is), the guest part of the real GDT as the monitor
 * mirrored it, the trap frame on the boot vCPU's trap stack (an exit may come between the
 * CPU's entry into a stub and the stub's `out`), and whether the vCPU halted. The boot
 * vCPU's real registers are the ones in kvm_run's sync area: hearth's latest, which KVM
 * may not have taken yet. The shadow page tables are not saved: they start empty and fill
 * as the guest runs.
 *
 * The restored real state must keep the guest at CPL3 outside the monitor, whatever the
 * file says: CS and SS only from descriptors a deprivileged guest may use (or the monitor's
 * own, for a RIP on its halt path or at a stub's entry), IOPL 0, and the monitor's GDT, IDT,
 * TSS, CR0, CR4 and EFER as create set them, CR3 a fresh shadow root.
 */
#define TAG_SHADOW    SNAP_TAG('K', 'S', 'H', 'D')
#define RF_DEFINED    0x3f7fd7ULL /* the RFLAGS bits that exist */
#define HALT_CODE_LEN 4           /* sti; hlt; jmp (shadow_monitor.c) */

/* What sh_monitor_mirror_gdt puts in the guest part of the real GDT: null; a present code
 * or data segment at DPL3; the guest's user code, non-conforming at DPL0 (CPL3 cannot enter
 * it). */
static bool mirrored_ok(uint64_t d)
{
	if (!d)
		return true;
	if (!(d & DESC_S) || !(d & DESC_P))
		return false;
	return DESC_DPL(d) == 3 || (DESC_DPL(d) == 0 && (d & DESC_CODE) && !(d & DESC_CONFORMING));
}

/* A selector (any RPL) of the guest part the guest may run with: a DPL3 code segment for
 * CS, a writable DPL3 data segment for SS. */
static bool guest_cs_ok(const struct sh_engine *e, uint64_t sel)
{
	const uint64_t *gdt = (const uint64_t *)(e->mon.mon + SH_OFF_GDT);
	uint64_t i = sel >> 3;

	return sel <= 0xffff && !(sel & 4) && i && i < e->mon.guest_gdt_entries &&
	       (gdt[i] & DESC_CODE) && (gdt[i] & DESC_P) && DESC_DPL(gdt[i]) == 3;
}

static bool guest_ss_ok(const struct sh_engine *e, uint64_t sel)
{
	const uint64_t *gdt = (const uint64_t *)(e->mon.mon + SH_OFF_GDT);
	uint64_t i = sel >> 3;

	return sel <= 0xffff && !(sel & 4) && i && i < e->mon.guest_gdt_entries &&
	       !(gdt[i] & DESC_CODE) && (gdt[i] & DESC_WRITABLE) && (gdt[i] & DESC_P) &&
	       DESC_DPL(gdt[i]) == 3;
}

/* The real CS and SS of the guest at CPL3 (resume: RPL3, SS the stand-in when null). */
static bool real_cs_ok(const struct sh_engine *e, uint64_t sel)
{
	return (sel & 3) == 3 && guest_cs_ok(e, sel);
}

static bool real_ss_ok(const struct sh_engine *e, uint64_t sel)
{
	return sel == SH_SEL_DS3 || ((sel & 3) == 3 && guest_ss_ok(e, sel));
}

static void put_cpu(struct snap_w *w, const struct guest_cpu *c)
{
	for (unsigned i = 0; i < 16; i++)
		snap_u64(w, c->r.gpr[i]);
	snap_u64(w, c->r.rip);
	snap_u64(w, c->r.rflags);
	snap_u64(w, c->cr0);
	snap_u64(w, c->cr2);
	snap_u64(w, c->cr3);
	snap_u64(w, c->cr4);
	snap_u64(w, c->efer);
	snap_u64(w, c->cr8);
	snap_u64(w, c->gdtr.base);
	snap_u16(w, c->gdtr.limit);
	snap_u64(w, c->idtr.base);
	snap_u16(w, c->idtr.limit);
	snap_u16(w, c->tr);
	snap_u16(w, c->ldtr);
	snap_u64(w, c->tr_base);
	snap_u16(w, c->cs);
	snap_u16(w, c->ss);
	snap_u16(w, c->ds);
	snap_u16(w, c->es);
	snap_u16(w, c->fs);
	snap_u16(w, c->gs);
	snap_u64(w, c->fs_base);
	snap_u64(w, c->gs_base);
	snap_u64(w, c->kernel_gs_base);
	snap_u64(w, c->star);
	snap_u64(w, c->lstar);
	snap_u64(w, c->cstar);
	snap_u64(w, c->sfmask);
}

static bool get_cpu(struct snap_r *s, struct guest_cpu *c)
{
	bool ok = true;

	for (unsigned i = 0; i < 16; i++)
		ok &= snap_get_u64(s, &c->r.gpr[i]);
	return ok && snap_get_u64(s, &c->r.rip) && snap_get_u64(s, &c->r.rflags) &&
	       snap_get_u64(s, &c->cr0) && snap_get_u64(s, &c->cr2) && snap_get_u64(s, &c->cr3) &&
	       snap_get_u64(s, &c->cr4) && snap_get_u64(s, &c->efer) && snap_get_u64(s, &c->cr8) &&
	       snap_get_u64(s, &c->gdtr.base) && snap_get_u16(s, &c->gdtr.limit) &&
	       snap_get_u64(s, &c->idtr.base) && snap_get_u16(s, &c->idtr.limit) &&
	       snap_get_u16(s, &c->tr) && snap_get_u16(s, &c->ldtr) &&
	       snap_get_u64(s, &c->tr_base) && snap_get_u16(s, &c->cs) && snap_get_u16(s, &c->ss) &&
	       snap_get_u16(s, &c->ds) && snap_get_u16(s, &c->es) && snap_get_u16(s, &c->fs) &&
	       snap_get_u16(s, &c->gs) && snap_get_u64(s, &c->fs_base) &&
	       snap_get_u64(s, &c->gs_base) && snap_get_u64(s, &c->kernel_gs_base) &&
	       snap_get_u64(s, &c->star) && snap_get_u64(s, &c->lstar) &&
	       snap_get_u64(s, &c->cstar) && snap_get_u64(s, &c->sfmask);
}

/* The virtual CPU's checks: what its emulation can produce (4-level paging only, EFER's
 * SCE, LME, LMA and NXE only, canonical bases and syscall targets, the GDT it can mirror) and CS/SS
 * the guest can run in. */
static const char *cpu_bad(const struct sh_engine *e, const struct guest_cpu *c)
{
	bool pg = c->cr0 & CR0_PG;

	if ((c->r.rflags & ~RF_DEFINED) || !(c->r.rflags & RF_RESERVED))
		return "RFLAGS";
	if (!(c->cr0 & CR0_PE) || (c->efer & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)) ||
	    pg != !!(c->efer & EFER_LMA) || (pg && (!(c->efer & EFER_LME) || !(c->cr4 & CR4_PAE))))
		return "CPU mode (CR0/CR4/EFER)";
	if ((c->cr3 & ~(PTE_ADDR | 0xfffULL)) || c->cr8 > 15)
		return "CR3/CR8";
	if ((c->gdtr.limit + 1u) / 8 > SH_GUEST_GDT_MAX)
		return "GDTR";
	if (!cpu_canonical(c->fs_base) || !cpu_canonical(c->gs_base) ||
	    !cpu_canonical(c->kernel_gs_base))
		return "segment bases";
	if (!cpu_canonical(c->lstar) || !cpu_canonical(c->cstar))
		return "LSTAR/CSTAR";
	if ((c->cs & 3) || !guest_cs_ok(e, c->cs) || (c->ss & 3) ||
	    (c->ss && !guest_ss_ok(e, c->ss)))
		return "CS/SS";
	return NULL;
}

int kvm_shadow_save(struct vm *vm, struct snap_w *w, struct error *err)
{
	struct sh_engine *e = kvm_of(vm)->shadow;
	const uint64_t *gdt = sh_mon_ptr(&e->mon, SH_OFF_GDT);
	const uint64_t *frame = sh_mon_ptr(&e->mon, sh_stack_top(e->v->id) - 8ULL * SH_FRAME_WORDS);
	size_t at = snap_begin(w, TAG_SHADOW);

	(void)err;
	put_cpu(w, &e->cpu);
	snap_bool(w, e->halted);
	snap_bool(w, e->halted_for_good);
	snap_bool(w, e->stepping_pt);
	snap_u64(w, e->mmu.pt.exempt);
	snap_u32(w, e->mon.guest_gdt_entries);
	for (unsigned i = 0; i < e->mon.guest_gdt_entries; i++) /* (unpoisoned: as it will be) */
		snap_u64(w, i && i == e->cs_poison ? gdt[i] | DESC_DPL3 : gdt[i]);
	for (unsigned i = 0; i < SH_FRAME_WORDS; i++)
		snap_u64(w, frame[i]);
	snap_end(w, at);
	return 0;
}

void kvm_shadow_real_regs(const struct vm *vm, struct kvm_regs *regs, struct kvm_sregs *sregs)
{
	const struct kvm_run *run = run_of(kvm_of(vm)->shadow);

	*regs = run->s.regs.regs;
	*sregs = run->s.regs.sregs;
}

int kvm_shadow_restore(struct vm *vm, struct snap_r *r, struct error *err)
{
	struct sh_engine *e = kvm_of(vm)->shadow;
	uint64_t *gdt = sh_mon_ptr(&e->mon, SH_OFF_GDT);
	uint64_t *frame = sh_mon_ptr(&e->mon, sh_stack_top(e->v->id) - 8ULL * SH_FRAME_WORDS);
	struct guest_cpu c = e->cpu; /* its ops, context, memory and trap port stay */
	bool halted, for_good, stepping;
	uint64_t exempt;
	const char *bad;
	struct snap_r s;
	uint32_t n;

	/* CS and SS as the restored GDT mirror says (the boot state's are not the guest's). */
	memset(&c.hidden, 0, sizeof(c.hidden));

	if (snap_section(r, TAG_SHADOW, &s, err))
		return -1;
	if (!get_cpu(&s, &c))
		return snap_bad(&s, err, "virtual CPU");
	if (!snap_get_bool(&s, &halted) || !snap_get_bool(&s, &for_good) ||
	    !snap_get_bool(&s, &stepping) || !snap_get_u64(&s, &exempt) || (halted && for_good))
		return snap_bad(&s, err, "run state");
	/* Stepping one store to a guest page table: that page stays writable until the #DB. */
	if (stepping ? exempt >> 40 || !gm_range_ok(&vm->mem, exempt << 12, PAGE_4K)
	             : exempt != SH_NO_EXEMPT)
		return snap_bad(&s, err, "page-table write in progress");
	if (!snap_get_u32(&s, &n) || n > SH_GUEST_GDT_MAX || n * 8ULL > snap_left(&s))
		return snap_bad(&s, err, "GDT");
	/* Straight into the real GDT, each entry checked (a failed restore drops the VM). */
	for (unsigned i = 0; i < n; i++) {
		snap_get_u64(&s, &gdt[i]);
		if ((i == 0 && gdt[i]) || !mirrored_ok(gdt[i]))
			return snap_bad(&s, err, "GDT descriptor");
	}
	for (unsigned i = n; i < e->mon.guest_gdt_entries; i++)
		gdt[i] = 0;
	e->mon.guest_gdt_entries = n;
	if ((bad = cpu_bad(e, &c)))
		return snap_bad(&s, err, bad);
	/* Checked with the registers that use it (kvm_shadow_set_real_regs). */
	for (unsigned i = 0; i < SH_FRAME_WORDS; i++)
		if (!snap_get_u64(&s, &frame[i]))
			return snap_bad(&s, err, "trap frame");
	e->cpu = c;
	e->halted = halted;
	e->halted_for_good = for_good;
	e->stepping_pt = stepping;
	/* Shadow page tables from nothing: KVM has not run this VM, so every pool page is new
	 * to it. */
	sh_mmu_init(&e->mmu, &e->mon, &vm->mem, kvm_of(vm)->vm_fd);
	e->mmu.wp = c.cr0 & CR0_WP;
	e->mmu.nxe = c.efer & EFER_NXE;
	e->mmu.pt.exempt = exempt;
	return snap_section_done(&s, err);
}

/* A data segment register as the guest may load it at CPL3. */
static bool data_seg_ok(const struct kvm_segment *g)
{
	return g->unusable || !g->present ||
	       (g->s && g->dpl == 3 && (!(g->type & 8) || (g->type & 2)));
}

static int bad_real(struct error *err, const char *what)
{
	return err_set(err, "snapshot: vCPU 0 (shadow engine): bad or missing %s", what);
}

int kvm_shadow_set_real_regs(struct vm *vm, const struct kvm_regs *regs,
                             const struct kvm_sregs *saved, struct error *err)
{
	struct sh_engine *e = kvm_of(vm)->shadow;
	struct kvm_run *run = run_of(e);
	struct kvm_sregs s = run->s.regs.sregs; /* the monitor's, as create set them */
	uint64_t top = SH_MON_VA + sh_stack_top(e->v->id);
	uint64_t stub = regs->rip - (SH_MON_VA + SH_OFF_VECTORS);
	uint16_t cs = saved->cs.selector, ss = saved->ss.selector;

	if ((regs->rflags & ~RF_DEFINED) || !(regs->rflags & RF_RESERVED) ||
	    (regs->rflags & (RF_IOPL | RF_VM | RF_NT)))
		return bad_real(err, "RFLAGS");
	if (cs == SH_SEL_CS0) {
		/* In the monitor: on the halt path, or at a stub's `out` with the frame the CPU
		 * pushed entering it (from CPL3, or from the halt path while halted). */
		if (ss != SH_SEL_DS0)
			return bad_real(err, "SS");
		if (regs->rip - (SH_MON_VA + SH_OFF_HALT) < HALT_CODE_LEN) {
			if (!e->halted || regs->rsp != top)
				return bad_real(err, "halt state");
		} else if (stub < 256 * SH_STUB_SIZE && stub % SH_STUB_SIZE == 0) {
			unsigned words = cpu_vector_has_error_code((unsigned)(stub / SH_STUB_SIZE))
			                     ? SH_FRAME_WORDS
			                     : SH_FRAME_WORDS - 1;
			/* RIP, CS, RFLAGS, RSP, SS (the error code before them is the stub's) */
			const uint64_t *f = (const uint64_t *)sh_mon_ptr(
			    &e->mon, sh_stack_top(e->v->id) - 8ULL * (SH_FRAME_WORDS - 1));

			if (regs->rsp != top - 8ULL * words ||
			    (e->halted ? f[1] != SH_SEL_CS0
			               : !real_cs_ok(e, f[1]) || !real_ss_ok(e, f[4])))
				return bad_real(err, "trap frame");
		} else {
			return bad_real(err, "RIP in the monitor");
		}
	} else if (e->halted || !real_cs_ok(e, cs) || !real_ss_ok(e, ss)) {
		return bad_real(err, "CS/SS");
	}
	seg_from_desc(real_desc(e, cs), cs, &s.cs);
	seg_from_desc(real_desc(e, ss), ss, &s.ss);
	if (!data_seg_ok(&saved->ds) || !data_seg_ok(&saved->es) || !data_seg_ok(&saved->fs) ||
	    !data_seg_ok(&saved->gs) || !cpu_canonical(saved->fs.base) ||
	    !cpu_canonical(saved->gs.base))
		return bad_real(err, "data segments");
	if (saved->cr8 > 15)
		return bad_real(err, "CR8");
	s.ds = saved->ds;
	s.es = saved->es;
	s.fs = saved->fs;
	s.gs = saved->gs;
	s.cr2 = saved->cr2;
	s.cr8 = saved->cr8;
	s.apic_base = saved->apic_base;
	memset(s.interrupt_bitmap, 0, sizeof(s.interrupt_bitmap));
	e->key = current_key(e);
	s.cr3 = sh_mmu_root(&e->mmu, e->key);
	e->epoch = e->mmu.epoch;
	if (ioctl(fd_of(e), KVM_SET_SREGS, &s) < 0)
		return err_set(err,
		               "snapshot: vCPU 0: KVM_SET_SREGS refused the special registers: %s",
		               strerror(errno));
	if (ioctl(fd_of(e), KVM_SET_REGS, regs) < 0)
		return err_set(err, "snapshot: vCPU 0: KVM_SET_REGS refused the registers: %s",
		               strerror(errno));
	run->s.regs.regs = *regs;
	run->s.regs.sregs = s;
	e->sregs_valid = true;
	e->sregs_dirty = false;
	return 0;
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
