/*
 * The process engine's part of a snapshot: every vCPU's virtual CPU (the registers the stub
 * reported at its last exit, which is where a parked vCPU waits; hearth's virtual control
 * state; its FPU/SSE/AVX state as the kernel saved it in the signal frame), and the userspace
 * interrupt chips. The guest TSC is the host's: it keeps counting across a save and restore.
 * The guest process's mappings are not saved: the restored VM starts with none and faults
 * them in again.
 *
 * Dirty pages (diff snapshots): while tracking, pmmu maps guest RAM read-only until the
 * guest's first store to a page, which marks it (pmmu.c).
 */
#include "process.h"
#include "cpu/x86.h"
#include "snapshot/stream.h"

#include <string.h>

#define TAG_PVM SNAP_TAG('P', 'V', 'M', '0')
#define TAG_CPU SNAP_TAG('P', 'C', 'P', 'U')

static void save_cpu(struct snap_w *w, const struct proc_vcpu *pv)
{
	const struct guest_cpu *c = &pv->cpu;
	size_t at = snap_begin(w, TAG_CPU);

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
	for (unsigned i = 0; i < PROC_MSRS; i++) {
		snap_u32(w, pv->msr_index[i]);
		snap_u64(w, pv->msr_value[i]);
	}
	snap_bool(w, pv->halted_for_good);
	snap_bool(w, pv->halted);
	snap_bool(w, pv->interp);
	snap_bool(w, pv->started_guest);
	snap_u32(w, pv->fp_len);
	snap_bytes(w, pv->fpstate, pv->fp_len);
	snap_end(w, at);
}

int proc_save(struct vm *vm, struct snap_w *w, struct error *err)
{
	struct proc_vm *p = proc_of(vm);
	size_t at = snap_begin(w, TAG_PVM);

	snap_u32(w, vm->nvcpus);
	snap_end(w, at);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct proc_vcpu *pv = pvcpu_of(&vm->vcpus[i]);
		/* The guest thread waits in the stub: its last exit's FPU state is the state. */
		uint32_t n = __atomic_load_n(&pv->rec->fp_len, __ATOMIC_ACQUIRE);

		pv->fp_len = 0;
		/* The snapshot keeps a 32-bit interpreter's state (PVH entry code), not the
		 * segment caches of an AP's 16-bit startup code: that lasts microseconds. */
		if (pv->started_guest && pv->interp &&
		    (!(pv->cpu.cr0 & CR0_PE) || pv->cpu.hidden.code16 || pv->cpu.hidden.stack16 ||
		     pv->cpu.hidden.base[0] | pv->cpu.hidden.base[1] | pv->cpu.hidden.base[2] |
		         pv->cpu.hidden.base[3]))
			return err_set(
			    err,
			    "process engine: vCPU %u is in its 16-bit startup code (between "
			    "its STARTUP IPI and long mode); pause it a moment later",
			    i);
		if (pv->started_guest) {
			if (!n || n > STUB_FP_MAX)
				return err_set(
				    err,
				    "process engine: vCPU %u's FPU state did not fit the "
				    "exit record",
				    i);
			memcpy(pv->fpstate, pv->rec->fpstate, n);
			pv->fp_len = n;
		}
		save_cpu(w, pv);
	}
	if (uirq_save(p->uirq, w))
		return err_set(err, "process engine: cannot save the interrupt controllers");
	return 0;
}

/* A control-register state hearth's virtual CPU can run: protected mode, and either the
 * interpreter's 32-bit code or long mode with paging. */
static bool modes_ok(const struct guest_cpu *c, bool interp)
{
	if (!(c->cr0 & CR0_PE))
		return false;
	if (interp)
		return !(c->efer & EFER_LMA);
	return (c->cr0 & CR0_PG) && (c->cr4 & CR4_PAE) && (c->efer & EFER_LME) &&
	       (c->efer & EFER_LMA);
}

static int restore_cpu(struct snap_r *r, struct proc_vcpu *pv, uint32_t host_fp_len,
                       struct error *err)
{
	struct guest_cpu *c = &pv->cpu;
	struct snap_r s;
	bool ok = true;
	uint32_t fp_len;

	if (snap_section(r, TAG_CPU, &s, err))
		return -1;
	for (unsigned i = 0; i < 16; i++)
		ok &= snap_get_u64(&s, &c->r.gpr[i]);
	ok &= snap_get_u64(&s, &c->r.rip) && snap_get_u64(&s, &c->r.rflags) &&
	      snap_get_u64(&s, &c->cr0) && snap_get_u64(&s, &c->cr2) && snap_get_u64(&s, &c->cr3) &&
	      snap_get_u64(&s, &c->cr4) && snap_get_u64(&s, &c->efer) &&
	      snap_get_u64(&s, &c->cr8) && snap_get_u64(&s, &c->gdtr.base) &&
	      snap_get_u16(&s, &c->gdtr.limit) && snap_get_u64(&s, &c->idtr.base) &&
	      snap_get_u16(&s, &c->idtr.limit) && snap_get_u16(&s, &c->tr) &&
	      snap_get_u16(&s, &c->ldtr) && snap_get_u64(&s, &c->tr_base) &&
	      snap_get_u16(&s, &c->cs) && snap_get_u16(&s, &c->ss) && snap_get_u16(&s, &c->ds) &&
	      snap_get_u16(&s, &c->es) && snap_get_u16(&s, &c->fs) && snap_get_u16(&s, &c->gs) &&
	      snap_get_u64(&s, &c->fs_base) && snap_get_u64(&s, &c->gs_base) &&
	      snap_get_u64(&s, &c->kernel_gs_base) && snap_get_u64(&s, &c->star) &&
	      snap_get_u64(&s, &c->lstar) && snap_get_u64(&s, &c->cstar) &&
	      snap_get_u64(&s, &c->sfmask);
	if (!ok)
		return snap_bad(&s, err, "registers");
	/* Segments as their selectors' descriptors in the restored GDT say (a snapshot holds no
	 * hidden part: it is refused in the 16-bit start-up code that has one). */
	memset(&c->hidden, 0, sizeof(c->hidden));
	for (unsigned i = 0; i < PROC_MSRS; i++)
		if (!snap_get_u32(&s, &pv->msr_index[i]) || !snap_get_u64(&s, &pv->msr_value[i]))
			return snap_bad(&s, err, "MSRs");
	if (!snap_get_bool(&s, &pv->halted_for_good) || !snap_get_bool(&s, &pv->halted) ||
	    !snap_get_bool(&s, &pv->interp) || !snap_get_bool(&s, &pv->started_guest))
		return snap_bad(&s, err, "run state");
	/* A vCPU that never ran (a parked AP) has no state to check; one that ran has what the
	 * host would accept and hearth produces. */
	if (pv->started_guest) {
		if ((c->r.rflags & (RF_VM | RF_NT | RF_IOPL)) || !(c->r.rflags & RF_RESERVED))
			return snap_bad(&s, err, "rflags");
		if ((c->cr3 & ~(PTE_ADDR | 0xfffULL)) || c->cr8 > 15)
			return snap_bad(&s, err, "control registers");
		if (c->fs_base >= STUB_GUEST_VA_END || c->gs_base >= STUB_GUEST_VA_END)
			return snap_bad(&s, err, "FS/GS base (beyond what a host process can use)");
		if (!cpu_canonical(c->lstar) || !cpu_canonical(c->cstar) ||
		    !cpu_canonical(c->kernel_gs_base))
			return snap_bad(&s, err, "LSTAR/CSTAR/KERNEL_GS_BASE (not canonical)");
		if (!modes_ok(c, pv->interp))
			return snap_bad(&s, err, "CPU mode (CR0/CR4/EFER)");
	}
	if (!snap_get_u32(&s, &fp_len) || fp_len > STUB_FP_MAX || fp_len > snap_left(&s))
		return snap_bad(&s, err, "FPU state");
	if (fp_len && fp_len != host_fp_len)
		return err_set(err,
		               "snapshot: its FPU/AVX state is %u bytes, this host's is %u: the "
		               "snapshot comes from a host with other XSAVE features",
		               fp_len, host_fp_len);
	pv->fp_len = fp_len;
	snap_get_bytes(&s, pv->fpstate, fp_len);
	pv->restored = true;
	return snap_section_done(&s, err);
}

int proc_restore(struct vm *vm, struct snap_r *r, struct error *err)
{
	struct proc_vm *p = proc_of(vm);
	struct snap_r s;
	uint32_t n;

	if (snap_section(r, TAG_PVM, &s, err))
		return -1;
	if (!snap_get_u32(&s, &n) || n != vm->nvcpus)
		return snap_bad(&s, err, "vCPU count");
	if (snap_section_done(&s, err))
		return -1;
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct proc_vcpu *pv = pvcpu_of(&vm->vcpus[i]);
		/* the start exit reported this host's FPU state size */
		uint32_t host = __atomic_load_n(&pv->rec->fp_len, __ATOMIC_ACQUIRE);

		if (restore_cpu(r, pv, host, err))
			return -1;
	}
	return uirq_restore(p->uirq, r, err);
}

int proc_dirty_start(struct vm *vm, struct error *err)
{
	if (pmmu_dirty_start(proc_of(vm)->mmu, pvcpu_of(&vm->vcpus[0])))
		return err_set(err, "track_dirty_pages: out of memory");
	return 0;
}

int proc_dirty_collect(struct vm *vm, uint64_t *bitmap, struct error *err)
{
	(void)err;
	pmmu_dirty_collect(proc_of(vm)->mmu, pvcpu_of(&vm->vcpus[0]), bitmap);
	return 0;
}
