/*
 * hearth's side of a process-engine vCPU, on the vCPU thread vmm/ starts: it answers its
 * guest thread's exits (stub.c) through the shared record, like a KVM_RUN loop.
 *
 * An exit is a host signal the guest thread took: a privileged instruction (#GP, emulated by
 * the virtual CPU), a page fault (pmmu.c: mapped, reflected, or an emulated device access),
 * an exception that is the guest's own (reflected through its IDT), the guest's own system
 * call (trapped by the guest process's filter), or a kick. The record lives in memory the
 * guest can write: it is copied once and nothing in it is trusted beyond the guest's own
 * state. Interrupts (irqchip/userspace.h) are delivered through the guest's IDT when its
 * virtual IF is set; a guest that runs when one becomes due is kicked (SIGUSR1 to its
 * thread). hlt sleeps until an interrupt is due.
 */
#include "process.h"
#include "cpu/interp32.h"
#include "cpu/pvclock.h"
#include "cpu/x86.h"
#include "seccomp/filters.h"
#include "boot/boot_gdt.h"
#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/metrics.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS       50000ULL /* how long to poll the record before a futex wait */
#define WAIT_SLICE_NS 50000000ULL
/* A guest thread kicked for a pause or stop answers within this, or the VM ends. */
#define KICK_ANSWER_NS  5000000000ULL
#define AHEAD_MAX       8 /* instructions emulated behind a trap, at most */
#define INTERP_STEPS    100000
#define MAX_OP_FAILURES 3 /* in a row, each after a flush */
#define PAGE_SIZE_      4096ULL

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static long futex(uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, w, op, val, ts, NULL, 0);
}

bool proc_vcpu_op(struct proc_vcpu *pv, uint32_t kind, uint64_t addr, uint64_t len, uint64_t off,
                  uint32_t prot)
{
	/* two places stay free for the FS and GS bases (reply) */
	bool base = kind == STUB_OP_SET_FS || kind == STUB_OP_SET_GS;

	struct stub_op *last = pv->nops ? &pv->ops[pv->nops - 1] : NULL;

	/* A mapping that replaces the one just queued for the same range (an invalidation's
	 * PROT_NONE, then the new translation: a PTE store and its invlpg in one exit) is one
	 * system call. */
	if (kind == STUB_OP_MMAP && last && last->kind == STUB_OP_MMAP && last->addr == addr &&
	    last->len == len) {
		*last = (struct stub_op){kind, prot, addr, len, off};
		return true;
	}
	if (pv->nops >= STUB_MAX_OPS - (base ? 0 : 2))
		return false;
	pv->ops[pv->nops++] = (struct stub_op){kind, prot, addr, len, off};
	return true;
}

unsigned proc_vcpu_room(const struct proc_vcpu *pv)
{
	return pv->nops + 2 < STUB_MAX_OPS ? STUB_MAX_OPS - 2 - pv->nops : 0;
}

void proc_vcpu_unmap_all(struct proc_vcpu *pv)
{
	unsigned n = 0;

	/* Everything queued for the guest range is moot: one unmap of all of it, last. */
	for (unsigned i = 0; i < pv->nops; i++)
		if (pv->ops[i].kind == STUB_OP_SET_FS || pv->ops[i].kind == STUB_OP_SET_GS)
			pv->ops[n++] = pv->ops[i];
	pv->nops = n;
	proc_vcpu_op(pv, STUB_OP_MUNMAP, PAGE_SIZE_, STUB_GUEST_VA_END - PAGE_SIZE_, 0, 0);
}

static struct vm *vm_of(const struct proc_vcpu *pv)
{
	return pv->v->vm;
}

/* The VM must stop or pause: its vCPUs go to the checkpoint. */
static bool stop_or_pause(const struct vm *vm)
{
	return __atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE) ||
	       __atomic_load_n(&vm->paused, __ATOMIC_ACQUIRE);
}

static bool guest_alive(const struct proc_vm *p)
{
	struct pollfd f = {.fd = p->pidfd, .events = POLLIN};

	return poll(&f, 1, 0) == 0;
}

/* How the guest process ended, for the stop reason (it is reaped later). */
static void death(const struct proc_vm *p, char *buf, size_t len)
{
	siginfo_t si = {0};

	if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || !si.si_pid)
		snprintf(buf, len, "ended");
	else if (si.si_code == CLD_EXITED)
		snprintf(buf, len, "exited with status %d", si.si_status);
	else
		snprintf(buf, len, "was killed by signal %d (%s)", si.si_status,
		         strsignal(si.si_status));
}

/* ---- the virtual CPU's ops ---------------------------------------------------------------- */

static bool op_translate(void *ctx, uint64_t va, bool write, uint64_t *gpa)
{
	struct proc_vcpu *pv = ctx;

	return pmmu_translate(proc_of(vm_of(pv))->mmu, &pv->cpu, va, write, gpa);
}

/* The guest's own GDT: nothing is mirrored, the host's is never the guest's. */
static uint64_t op_descriptor(void *ctx, uint16_t sel)
{
	struct proc_vcpu *pv = ctx;
	uint64_t d = 0, off = sel & ~7u;

	if (!(sel >> 3) || off + 7 > pv->cpu.gdtr.limit ||
	    !cpu_read(&pv->cpu, pv->cpu.gdtr.base + off, &d, 8))
		return 0;
	return d;
}

static bool op_gdt_loaded(void *ctx)
{
	(void)ctx;
	return true;
}

static void op_paging_changed(void *ctx)
{
	struct proc_vcpu *pv = ctx;

	/* The interpreter's paging is its own walk of the guest's tables: the guest process's
	 * mappings, which other vCPUs may be running on, follow at INTERP_LONG_MODE. */
	if (pv->interp)
		return;
	pmmu_sync(proc_of(vm_of(pv))->mmu, pv);
}

static void op_pte_stored(void *ctx, uint64_t gpa, uint64_t old, uint64_t new)
{
	struct proc_vcpu *pv = ctx;

	pmmu_pte_stored(proc_of(vm_of(pv))->mmu, pv, gpa, old, new);
}

static void op_invlpg(void *ctx, uint64_t va)
{
	struct proc_vcpu *pv = ctx;

	pmmu_invlpg(proc_of(vm_of(pv))->mmu, pv, va);
}

/* MSRs: the local APIC's (the userspace chips), the TSC, and a few the guest may set and read
 * back (PAT, MTRR default type, SYSENTER, TSC_AUX, MISC_ENABLE). */
/* kvmclock, for guests that find KVM's CPUID leaves (the host's, on a KVM guest without
 * nested virtualization): system time is the VM's age in ns, the TSC the host's at its
 * measured rate. A record outside RAM is not written, as KVM leaves it. */
static void kvmclock_msr(struct proc_vcpu *pv, uint32_t index, uint64_t value)
{
	struct vm *vm = vm_of(pv);
	struct timespec mono, real;
	uint64_t tsc = __builtin_ia32_rdtsc(), age;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	age = (uint64_t)(mono.tv_sec - vm->t_start.tv_sec) * 1000000000ULL +
	      (uint64_t)mono.tv_nsec - (uint64_t)vm->t_start.tv_nsec;
	if (index == MSR_KVM_SYSTEM_TIME || index == MSR_KVM_SYSTEM_TIME_NEW) {
		pv->kvm_system_time = value;
		if (value & 1)
			pvclock_write_time(pv->cpu.gm, value & ~1ULL, proc_of(vm)->tsc_hz, tsc,
			                   age);
	} else {
		pv->kvm_wall_clock = value;
		pvclock_write_wall(pv->cpu.gm, value,
		                   (uint64_t)real.tv_sec * 1000000000ULL + (uint64_t)real.tv_nsec -
		                       age);
	}
}

static bool op_rdmsr(void *ctx, uint32_t index, uint64_t *value)
{
	struct proc_vcpu *pv = ctx;
	int r = uirq_rdmsr(proc_of(vm_of(pv))->uirq, pv->v->id, index, value);

	if (r != UIRQ_MSR_NOT_MINE)
		return r == 0;
	switch (index) {
	case MSR_IA32_TSC:
		*value = __builtin_ia32_rdtsc();
		return true;
	case MSR_KVM_SYSTEM_TIME:
	case MSR_KVM_SYSTEM_TIME_NEW:
		*value = pv->kvm_system_time;
		return true;
	case MSR_KVM_WALL_CLOCK:
	case MSR_KVM_WALL_CLOCK_NEW:
		*value = pv->kvm_wall_clock;
		return true;
	case MSR_IA32_MISC_ENABLE:
		*value = 1; /* fast strings */
		return true;
	default:
		for (unsigned i = 0; i < PROC_MSRS; i++)
			if (pv->msr_index[i] == index) {
				*value = pv->msr_value[i];
				return true;
			}
		if (index == MSR_IA32_PAT) {
			*value = 0x0007040600070406ULL;
			return true;
		}
		if (index == MSR_MTRR_DEF_TYPE || index == MSR_TSC_AUX ||
		    (index >= MSR_IA32_SYSENTER_CS && index <= MSR_IA32_SYSENTER_EIP)) {
			*value = 0;
			return true;
		}
		return false;
	}
}

static bool op_wrmsr(void *ctx, uint32_t index, uint64_t value)
{
	struct proc_vcpu *pv = ctx;
	int r = uirq_wrmsr(proc_of(vm_of(pv))->uirq, pv->v->id, index, value);

	if (r != UIRQ_MSR_NOT_MINE)
		return r == 0;
	switch (index) {
	case MSR_IA32_TSC:
		return true; /* the TSC is the host's: a write is ignored */
	case MSR_KVM_SYSTEM_TIME:
	case MSR_KVM_SYSTEM_TIME_NEW:
	case MSR_KVM_WALL_CLOCK:
	case MSR_KVM_WALL_CLOCK_NEW:
		kvmclock_msr(pv, index, value);
		return true;
	case MSR_IA32_PAT:
	case MSR_MTRR_DEF_TYPE:
	case MSR_TSC_AUX:
	case MSR_IA32_SYSENTER_CS:
	case MSR_IA32_SYSENTER_ESP:
	case MSR_IA32_SYSENTER_EIP:
		for (unsigned i = 0; i < PROC_MSRS; i++)
			if (pv->msr_index[i] == index || !pv->msr_index[i]) {
				pv->msr_index[i] = index;
				pv->msr_value[i] = value;
				return true;
			}
		return false;
	default:
		return false;
	}
}

/* XCR0: the host's decides what xsave does natively; the guest may enable what it has. */
static bool op_xsetbv(void *ctx, uint32_t index, uint64_t value)
{
	uint32_t lo, hi;
	uint64_t host;

	(void)ctx;
	if (index != 0 || !(value & 1))
		return false;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	host = (uint64_t)hi << 32 | lo;
	return (value & ~host) == 0;
}

static void op_pio(void *ctx, uint16_t port, bool write, void *data, unsigned size)
{
	struct proc_vcpu *pv = ctx;

	METRIC_INC(exit_io);
	vm_pio(vm_of(pv), port, write, data, size, 1);
}

static void op_stop(void *ctx, enum cpu_stop how, const char *why)
{
	struct proc_vcpu *pv = ctx;

	if (how == CPU_STOP_TRIPLE_FAULT)
		vm_request_stop(vm_of(pv), STOP_TRIPLE_FAULT, 0,
		                "guest triple fault on vCPU %u at rip=0x%llx (process engine: %s)",
		                pv->v->id, (unsigned long long)pv->cpu.r.rip, why);
	else
		vm_request_stop(vm_of(pv), STOP_VMM_ERROR, 0, "process engine: %s at rip=0x%llx",
		                why, (unsigned long long)pv->cpu.r.rip);
}

/* CPUID for interpreted code: the host's, as native code sees it (no CPUID faulting here). */
static void op_cpuid(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
	(void)ctx;
	__asm__ volatile("cpuid"
	                 : "=a"(out[0]), "=b"(out[1]), "=c"(out[2]), "=d"(out[3])
	                 : "a"(leaf), "c"(subleaf));
}

static const struct guest_cpu_ops proc_cpu_ops = {
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
    .cpuid = op_cpuid,
};

/* ---- device accesses and odd addresses -------------------------------------------------- */

static void mmio_access(void *ctx, uint64_t gpa, bool write, void *data, unsigned len)
{
	struct proc_vcpu *pv = ctx;
	struct vm *vm = vm_of(pv);
	struct proc_vm *p = proc_of(vm);
	uint64_t lapic;

	if (gm_range_ok(&vm->mem, gpa, len)) { /* page 0, or a string move's other operand */
		if (write) {
			gm_write(&vm->mem, gpa, data, len);
			pmmu_ram_stored(p->mmu, pv, gpa, len);
		} else {
			gm_read(&vm->mem, gpa, data, len);
		}
		return;
	}
	METRIC_INC(exit_mmio);
	if (uirq_lapic_mmio_base(p->uirq, pv->v->id, &lapic) && gpa - lapic < PAGE_SIZE_) {
		if (write)
			uirq_lapic_write(p->uirq, pv->v->id, gpa - lapic, data, len);
		else
			uirq_lapic_read(p->uirq, pv->v->id, gpa - lapic, data, len);
		return;
	}
	vm_mmio(vm, gpa, write, data, len);
}

void proc_emulate_access(struct proc_vcpu *pv, uint64_t va, uint64_t gpa, uint64_t gen)
{
	struct proc_vm *p = proc_of(vm_of(pv));
	struct stub_fast_notify fast;
	/* A queue notify: the stub can do the next one by this instruction itself (notify.c). */
	bool notify = proc_notify_bound(p, gpa);
	bool learn = notify && proc_fast_candidate(pv, va, gpa, gen, &fast);

	bool done;

	/* One at a time, whatever the memory (a string from a device may write page 0): a
	 * locked instruction is then atomic against every other emulated access. */
	pthread_mutex_lock(&p->emu_lock);
	done = cpu_emulate_mmio(&pv->cpu, va, gpa, mmio_access, pv);
	pthread_mutex_unlock(&p->emu_lock);
	if (!done) {
		cpu_reflect(&pv->cpu, V_GP, 0, false);
		return;
	}
	if (notify)
		__atomic_add_fetch(&p->notify_traps, 1, __ATOMIC_RELAXED);
	if (learn && pv->cpu.r.rip == fast.rip + fast.len)
		proc_fast_install(pv, &fast, gen);
}

void proc_step_pt_store(struct proc_vcpu *pv, uint64_t va, uint64_t gpa)
{
	(void)va;
	pv->stepping_pt = true;
	pmmu_unprotect(proc_of(vm_of(pv))->mmu, pv, gpa);
	pv->cpu.r.rflags |= RF_TF;
}

void proc_refuse_va(struct proc_vcpu *pv, uint64_t va)
{
	vm_request_stop(
	    vm_of(pv), STOP_VMM_ERROR, 0,
	    "process engine: the guest uses virtual address 0x%llx, beyond what a host "
	    "process can map (the upper half, or the slot hearth reserves from 0x%llx); "
	    "this engine runs guests that live in the lower half (a KVM engine runs the "
	    "others)",
	    (unsigned long long)va, (unsigned long long)STUB_SLOT_VA);
}

void proc_refuse_low_code(struct proc_vcpu *pv, uint64_t va, uint64_t min_va)
{
	vm_request_stop(vm_of(pv), STOP_VMM_ERROR, 0,
	                "process engine: the guest runs code at 0x%llx (rip 0x%llx), below the "
	                "lowest address a host process may map here (vm.mmap_min_addr: 0x%llx); "
	                "this engine emulates data accesses there, not code (a KVM engine runs "
	                "it)",
	                (unsigned long long)va, (unsigned long long)pv->cpu.r.rip,
	                (unsigned long long)min_va);
}

/* The signals the stub takes (stub.c). */
static bool stub_signal(uint32_t signo)
{
	switch (signo) {
	case SIGSEGV:
	case SIGBUS:
	case SIGILL:
	case SIGFPE:
	case SIGTRAP:
	case SIGSYS:
	case SIGUSR1:
		return true;
	}
	return false;
}

/* The guest jumped into the slot (the stub's code, say with crafted registers): what runs
 * there is hearth's, and whatever it did, the filter kept it to the guest process. No
 * hardware would have let the guest reach that address: the VM ends. */
static void stub_entered(struct proc_vcpu *pv, uint64_t rip, uint32_t signo)
{
	if (rip - STUB_SLOT_VA >= STUB_SLOT_SIZE) { /* the upper half (the vsyscall page) */
		proc_refuse_va(pv, rip);
		return;
	}
	vm_request_stop(vm_of(pv), STOP_VMM_ERROR, 0,
	                "process engine: the guest ran code at 0x%llx (signal %u there), in the "
	                "slot hearth reserves at 0x%llx-0x%llx for its own code, which a guest "
	                "may not map or use",
	                (unsigned long long)rip, signo, (unsigned long long)STUB_SLOT_VA,
	                (unsigned long long)(STUB_SLOT_VA + STUB_SLOT_SIZE - 1));
}

/* A security module may keep the guest process from mapping below 64 KiB although
 * vm.mmap_min_addr says less (SELinux's mmap_zero check, CONFIG_LSM_MMAP_MIN_ADDR): after a
 * refused mapping, take 64 KiB as the floor, once. True if it was lower. */
static bool raise_min_va(struct vm *vm)
{
	struct proc_vm *p = proc_of(vm);

	if (__atomic_load_n(&p->min_va, __ATOMIC_RELAXED) >= PROC_MIN_VA_FLOOR)
		return false;
	__atomic_store_n(&p->min_va, PROC_MIN_VA_FLOOR, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		__atomic_store_n(&pvcpu_of(&vm->vcpus[i])->cpu.unmapped_below, PROC_MIN_VA_FLOOR,
		                 __ATOMIC_RELAXED);
	log_info("process engine: the host refused a mapping; accesses below 0x%llx are "
	         "emulated from now on",
	         (unsigned long long)PROC_MIN_VA_FLOOR);
	return true;
}

/* A change of the guest process's mappings failed (say, the host's limit on mappings): start
 * over from none; when even that fails, the VM ends. False: stop now. */
static bool mappings_failed(struct proc_vcpu *pv, int64_t op_error)
{
	struct proc_vm *p = proc_of(vm_of(pv));

	if ((op_error == -EPERM || op_error == -EACCES) && raise_min_va(vm_of(pv))) {
		pmmu_flush(p->mmu, pv);
		return true;
	}
	if (op_error > -4096 && op_error < 0 && ++pv->op_failures <= MAX_OP_FAILURES) {
		pmmu_flush(p->mmu, pv);
		return true;
	}
	vm_request_stop(vm_of(pv), STOP_VMM_ERROR, 0,
	                "process engine: the guest process cannot map guest memory: %s",
	                op_error < 0 && op_error > -4096 ? strerror((int)-op_error)
	                                                 : "a bad report from the guest process");
	return false;
}

/* ---- registers in and out ------------------------------------------------------------------ */

const uint8_t proc_sg_of[16] = {
    [R_AX] = SG_RAX,  [R_CX] = SG_RCX,  [R_DX] = SG_RDX,  [R_BX] = SG_RBX,
    [R_SP] = SG_RSP,  [R_BP] = SG_RBP,  [R_SI] = SG_RSI,  [R_DI] = SG_RDI,
    [R_R8] = SG_R8,   [R_R9] = SG_R9,   [R_R10] = SG_R10, [R_R11] = SG_R11,
    [R_R12] = SG_R12, [R_R13] = SG_R13, [R_R14] = SG_R14, [R_R15] = SG_R15,
};

/* The guest's registers from an exit. Its IF is virtual (the real one is always set). */
static void regs_in(struct guest_cpu *c, const uint64_t *g)
{
	for (unsigned i = 0; i < 16; i++)
		c->r.gpr[i] = g[proc_sg_of[i]];
	c->r.rip = g[SG_RIP];
	c->r.rflags = (g[SG_EFL] & ~RF_IF) | (c->r.rflags & RF_IF) | RF_RESERVED;
}

static void regs_out(uint64_t *g, const struct guest_cpu *c)
{
	for (unsigned i = 0; i < 16; i++)
		g[proc_sg_of[i]] = c->r.gpr[i];
	g[SG_RIP] = c->r.rip;
	g[SG_EFL] = (c->r.rflags & ~(RF_IOPL | RF_VM | RF_NT)) | RF_IF | RF_RESERVED;
}

/* ---- the loop -------------------------------------------------------------------------------- */

/* Answer the guest thread: the queued changes, the registers, resume. */
static void reply(struct proc_vcpu *pv)
{
	struct stub_vcpu *r = pv->rec;
	struct guest_cpu *c = &pv->cpu;

	if ((c->fs_base != pv->set_fs || pv->fs_dirty) &&
	    proc_vcpu_op(pv, STUB_OP_SET_FS, c->fs_base, 0, 0, 0)) {
		pv->set_fs = c->fs_base;
		pv->fs_dirty = false;
	}
	if ((c->gs_base != pv->set_gs || pv->gs_dirty) &&
	    proc_vcpu_op(pv, STUB_OP_SET_GS, c->gs_base, 0, 0, 0)) {
		pv->set_gs = c->gs_base;
		pv->gs_dirty = false;
	}
	if (pv->load_fpu) { /* a restored vCPU's first resume */
		memcpy(r->fpstate, pv->fpstate, pv->fp_len);
		r->fp_len = pv->fp_len;
		pv->load_fpu = false;
		r->reply.load_fpu = 1;
	} else {
		r->reply.load_fpu = 0;
	}
	memcpy(r->reply.ops, pv->ops, pv->nops * sizeof(pv->ops[0]));
	r->reply.nops = pv->nops;
	pv->nops = 0;
	regs_out(r->reply.gregs, c);
	r->reply.command = STUB_RESUME;
	pv->running = true;
	__atomic_add_fetch(&r->reply_seq, 1, __ATOMIC_SEQ_CST); /* then the flag (stub.h) */
	if (__atomic_load_n(&r->stub_sleeps, __ATOMIC_ACQUIRE))
		futex(&r->reply_seq, FUTEX_WAKE, 1, NULL);
}

void proc_vcpu_kick(struct vcpu *v)
{
	struct proc_vcpu *pv = pvcpu_of(v);
	struct proc_vm *p = proc_of(v->vm);

	if (!pv || !p)
		return;
	__atomic_add_fetch(&pv->wake, 1, __ATOMIC_SEQ_CST);
	futex(&pv->wake, FUTEX_WAKE, 1, NULL);
	if (pv->rec) /* our own wait on the record ends too */
		futex(&pv->rec->exit_seq, FUTEX_WAKE, INT32_MAX, NULL);
	if (__atomic_load_n(&pv->running, __ATOMIC_ACQUIRE) && pv->tid > 0 && p->pid > 0)
		syscall(SYS_tgkill, p->pid, pv->tid, SIGUSR1);
}

/* Wait until the guest thread exits to the stub; false when the VM must stop. Timers that
 * come due meanwhile are fired, and a guest that can take the interrupt is kicked. */
static bool wait_exit(struct proc_vcpu *pv)
{
	struct vm *vm = vm_of(pv);
	struct proc_vm *p = proc_of(vm);
	uint32_t *seq = &pv->rec->exit_seq;
	bool kicked = false;
	uint64_t stop_kick = 0; /* when a pause or stop kicked the guest thread */
	uint64_t spin_until = now_ns() + SPIN_NS;

	for (unsigned i = 0;; i++) {
		uint32_t cur = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
		uint64_t now, deadline;
		struct timespec ts;

		if (cur != pv->seen_exit) {
			pv->seen_exit = cur;
			pv->running = false;
			return true;
		}
		/* A trap comes back within microseconds: poll a while before sleeping. */
		if (spin_until && ((i & 255) || now_ns() < spin_until)) {
			if ((i & 63) == 63 && !pv->apart)
				sched_yield(); /* the guest thread may share this CPU */
			else
				__asm__ volatile("pause");
			continue;
		}
		spin_until = 0;
		if (stop_or_pause(vm)) {
			if (!kicked) /* out of guest code: pause and stop happen at the checkpoint
			              */
				syscall(SYS_tgkill, p->pid, pv->tid, SIGUSR1);
			kicked = true;
			if (!guest_alive(p))
				return false;
			/* A guest thread that never comes back is stuck in the stub, with hearth's
			 * answer lost: its records were written by the guest (another vCPU can).
			 * The VM ends rather than hearth waiting for it forever. */
			if (!stop_kick) {
				stop_kick = now_ns();
			} else if (now_ns() - stop_kick > KICK_ANSWER_NS) {
				vm_request_stop(
				    vm, STOP_VMM_ERROR, 0,
				    "process engine: vCPU %u did not come back to hearth "
				    "within %llu s of a pause or stop: its guest process no "
				    "longer answers (records overwritten by the guest?)",
				    pv->v->id,
				    (unsigned long long)(KICK_ANSWER_NS / 1000000000ULL));
				return false;
			}
		}
		now = now_ns();
		uirq_tick(p->uirq, (int)pv->v->id);
		/* (An NMI stays pending: deliver_interrupts takes it. IF does not hold it back.) */
		if (!kicked &&
		    (((pv->cpu.r.rflags & RF_IF) && uirq_pending(p->uirq, pv->v->id) >= 0) ||
		     (!pv->cpu.nmi_blocked && uirq_nmi_pending(p->uirq, pv->v->id)))) {
			syscall(SYS_tgkill, p->pid, pv->tid, SIGUSR1);
			kicked = true;
		}
		deadline = uirq_next_deadline(p->uirq, (int)pv->v->id);
		if (deadline > now + WAIT_SLICE_NS)
			deadline = now + WAIT_SLICE_NS;
		ts.tv_sec = 0;
		ts.tv_nsec = deadline > now ? (long)(deadline - now) : 0;
		if (ts.tv_nsec) {
			/* Say so, then look once more (stub.h); the wait is bounded anyway. */
			__atomic_store_n(&pv->rec->hearth_sleeps, 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(seq, __ATOMIC_SEQ_CST) == cur)
				futex(seq, FUTEX_WAIT, cur, &ts);
			__atomic_store_n(&pv->rec->hearth_sleeps, 0, __ATOMIC_RELAXED);
		}
		if (!guest_alive(p)) {
			char how[64];

			death(p, how, sizeof(how));
			vm_request_stop(vm, STOP_VMM_ERROR, 0,
			                "process engine: the guest process (vCPU %u) %s", pv->v->id,
			                how);
			return false;
		}
	}
}

/* Deliver what is due: an NMI unless one is being handled (until its iret), else an
 * interrupt when the guest's IF allows. */
static void deliver_interrupts(struct proc_vcpu *pv)
{
	struct proc_vm *p = proc_of(vm_of(pv));
	int vec;

	if (!pv->cpu.nmi_blocked && uirq_take_nmi(p->uirq, pv->v->id)) {
		cpu_reflect(&pv->cpu, V_NMI, 0, false);
		pv->cpu.nmi_blocked = true;
		pv->halted = false;
		return;
	}
	if (!(pv->cpu.r.rflags & RF_IF))
		return;
	vec = uirq_ack(p->uirq, pv->v->id);
	if (vec < 0)
		return;
	pv->halted = false;
	cpu_reflect(&pv->cpu, (unsigned)vec, 0, true);
}

/* A halted vCPU's nap: until its next timer is due (WAIT_SLICE_NS at most) or a kick. `w`:
 * pv->wake as read before the caller looked for what ends the sleep. */
static void nap(struct proc_vcpu *pv, uint32_t w)
{
	struct proc_vm *p = proc_of(vm_of(pv));
	uint64_t now = now_ns(), deadline = uirq_next_deadline(p->uirq, (int)pv->v->id);
	struct timespec ts = {0, 0};

	if (deadline > now + WAIT_SLICE_NS)
		deadline = now + WAIT_SLICE_NS;
	if (deadline <= now)
		return;
	ts.tv_nsec = (long)(deadline - now);
	futex(&pv->wake, FUTEX_WAIT, w, &ts); /* an IPI kicks it awake */
}

/* hlt with IF set: sleep until an interrupt is due (true), or the VM must stop or pause
 * (false). */
static bool sleep_halted(struct proc_vcpu *pv)
{
	struct proc_vm *p = proc_of(vm_of(pv));

	for (;;) {
		uint32_t w = __atomic_load_n(&pv->wake, __ATOMIC_ACQUIRE);

		uirq_tick(p->uirq, (int)pv->v->id);
		if (uirq_wakeup_pending_blocked(p->uirq, pv->v->id, pv->cpu.nmi_blocked))
			return true;
		if (stop_or_pause(vm_of(pv)))
			return false;
		nap(pv, w);
	}
}

static void take_startup(struct proc_vcpu *pv);

/* hlt with interrupts off in 64-bit code: as on hardware, only an NMI or INIT wakes the
 * vCPU. True: an NMI is due (the caller delivers it, to return after the hlt). False: INIT
 * came (an AP then waits for its STARTUP; at the boot vCPU it is a reset, which stops the
 * VM), or the VM must stop or pause (the caller sleeps again after a pause). */
static bool sleep_interrupts_off(struct proc_vcpu *pv)
{
	struct proc_vm *p = proc_of(vm_of(pv));

	for (;;) {
		uint32_t w = __atomic_load_n(&pv->wake, __ATOMIC_ACQUIRE);

		uirq_tick(p->uirq, (int)pv->v->id); /* (a timer may be wired to deliver NMIs) */
		take_startup(pv);
		if (pv->wait_sipi || !pv->halted_for_good) /* INIT, or INIT and STARTUP */
			return false;
		if (!pv->cpu.nmi_blocked && uirq_nmi_pending(p->uirq, pv->v->id))
			return true;
		if (stop_or_pause(vm_of(pv)))
			return false;
		nap(pv, w);
	}
}

/* Instructions that trap in the guest process anyway (privileged at CPL3) and that the CPU
 * core emulates without leaving hearth. */
static bool traps_anyway(const struct sh_insn *in)
{
	switch (in->op) {
	case SH_OP_INVLPG:
	case SH_OP_MOV_TO_CR:
	case SH_OP_MOV_FROM_CR:
	case SH_OP_RDMSR:
	case SH_OP_WRMSR:
	case SH_OP_CLI:
	case SH_OP_HLT:
	case SH_OP_IN:
	case SH_OP_OUT:
	case SH_OP_WBINVD:
	case SH_OP_INVD:
	case SH_OP_CLTS:
	case SH_OP_LGDT:
	case SH_OP_LIDT:
		return true;
	default:
		return false;
	}
}

/* After a trap, the instructions right behind it that would trap too (a PTE store's invlpg,
 * a status port read and then the data port write) are emulated in the same exit: each
 * would cost a signal round trip. Not across anything that changes what may be delivered
 * (sti, iret, popf), nor while single-stepping, nor past a stop or pause. */
static void emulate_ahead(struct proc_vcpu *pv)
{
	struct guest_cpu *c = &pv->cpu;
	struct vm *vm = vm_of(pv);

	for (unsigned i = 0; i < AHEAD_MAX; i++) {
		struct sh_insn in;
		uint8_t bytes[15];
		size_t n;
		uint64_t rip = c->r.rip;
		enum emu r;

		if (pv->halted || pv->interp || pv->wait_sipi || pv->stepping_pt ||
		    (c->r.rflags & RF_TF) || stop_or_pause(vm))
			return;
		if (cpu_fetch_decode(c, &in, bytes, &n) < 0 || !traps_anyway(&in))
			return;
		/* hearth's fetch reads what the guest maps, executable or not: an instruction on
		 * a page its tables mark NX is left to the CPU, which faults on it */
		if (!pmmu_fetchable(proc_of(vm)->mmu, c, rip) ||
		    (((rip ^ (rip + in.len - 1)) >> 12) &&
		     !pmmu_fetchable(proc_of(vm)->mmu, c, rip + in.len - 1)))
			return;
		r = cpu_emulate_insn(c, &in, bytes, n, cpu_code64(c), 0);
		if (r == EMU_HALT)
			pv->halted = true;
		if (r != EMU_DONE || c->r.rip == rip)
			return;
	}
}

static void handle_signal(struct proc_vcpu *pv, uint32_t signo, const uint64_t *g,
                          uint32_t syscall_arch)
{
	struct guest_cpu *c = &pv->cpu;
	struct proc_vm *p = proc_of(vm_of(pv));
	uint64_t trapno = g[SG_TRAPNO];
	uint32_t err = (uint32_t)g[SG_ERR];

	switch (signo) {
	case SIGSEGV:
		if (trapno == V_PF) {
			pmmu_fault(p->mmu, pv, g[SG_CR2], err);
		} else if (trapno == V_GP) {
			if (cpu_emulate_gp(c, err) == EMU_HALT)
				pv->halted = true;
		} else {
			cpu_reflect(c, trapno < 32 ? (unsigned)trapno : V_GP, err, false);
		}
		break;
	case SIGBUS:
		cpu_reflect(c, trapno == V_AC ? V_AC : V_GP, 0, false);
		break;
	case SIGILL:
		cpu_emulate_ud(c);
		break;
	case SIGFPE:
		cpu_reflect(c, trapno == V_MF || trapno == V_XM ? (unsigned)trapno : V_DE, 0,
		            false);
		break;
	case SIGTRAP:
		if (trapno == V_BP) {
			cpu_reflect(c, V_BP, 0, true); /* RIP is past the int3 */
		} else if (pv->stepping_pt) {
			pv->stepping_pt =
			    false; /* the page-table store ran: protect the page again */
			c->r.rflags &= ~RF_TF;
			pmmu_step_done(p->mmu, pv);
		} else {
			cpu_reflect(c, V_DB, 0, false);
		}
		break;
	case SIGSYS:
		/* The guest's own system call: syscall (x86-64 ABI, RIP past it) is its user mode,
		 * which this engine refuses as #UD would; int $0x80 (i386 ABI) goes to its IDT. */
		if (syscall_arch == AUDIT_ARCH_X86_64) {
			c->r.rip -= 2;
			cpu_emulate_ud(c);
		} else {
			cpu_reflect(c, 0x80, 0, true);
		}
		break;
	default: /* a kick: nothing to do but what is due */
		break;
	}
}

/* The first state: the boot vCPU as the boot protocol says; the others wait for INIT and a
 * STARTUP IPI (wait_for_sipi). */
static void boot_state(struct proc_vcpu *pv)
{
	const struct boot_cpu_state *b = &vm_of(pv)->boot_cpu;
	struct guest_cpu *c = &pv->cpu;

	c->gdtr.base = LAYOUT_BOOT_GDT;
	c->gdtr.limit = BOOT_GDT_SIZE - 1;
	c->ss = c->ds = c->es = c->fs = c->gs = BOOT_GDT_SEL_DATA;
	memset(&c->r, 0, sizeof(c->r));
	c->r.rip = b->rip;
	c->r.gpr[R_SI] = b->rsi;
	c->r.gpr[R_BX] = b->rbx;
	c->r.gpr[R_AX] = b->rax;
	c->r.rflags = RF_RESERVED;
	if (b->long_mode) {
		c->cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
		c->cr3 = b->cr3;
		c->cr4 = CR4_PAE;
		c->efer = EFER_LME | EFER_LMA;
		c->cs = BOOT_GDT_SEL_CODE64;
		c->hidden.cs_desc = BOOT_GDT_CODE64_DESC;
		/* Where the host keeps the boot stack's page unmappable (vm.mmap_min_addr of 64
		 * KiB), a stack there would make every push an emulated access, and most a #GP: the
		 * top of the free RAM below the EBDA instead (the boot protocol sets no RSP). */
		c->r.gpr[R_SP] = c->r.gpr[R_BP] =
		    ((LAYOUT_BOOT_STACK - 8) & ~(PAGE_SIZE_ - 1)) < proc_of(vm_of(pv))->min_va
		        ? LAYOUT_EBDA_START - 16
		        : LAYOUT_BOOT_STACK;
	} else {
		c->cr0 = CR0_PE | CR0_ET;
		c->cs = BOOT_GDT_SEL_CODE32;
		c->hidden.cs_desc = BOOT_GDT_CODE32_DESC;
		pv->interp = true;
	}
}

/* An application processor's STARTUP (SDM 8.4.4): real mode at vector << 12, in the
 * interpreter until its startup code reaches long mode. Whatever it was doing is gone. */
static void sipi_state(struct proc_vcpu *pv, uint8_t vector)
{
	interp_sipi_state(&pv->cpu, vector);
	pv->cpu.nmi_blocked = false;
	pv->root_key = 0;
	pv->interp = true;
	pv->wait_sipi = pv->halted = pv->halted_for_good = pv->stepping_pt = false;
	pv->started_guest = true;
	/* FS and GS bases are 0 after INIT: the guest thread's too, at the next resume. */
	pv->set_fs = pv->set_gs = 0;
	pv->fs_dirty = pv->gs_dirty = true;
}

/* INIT and STARTUP IPIs: INIT stops an AP (it waits for a SIPI, whatever it ran), a SIPI
 * in that state starts it. INIT to the BSP resets it, which restarts it at the reset vector:
 * a reset of the VM, which ends it as the KVM engines' reset vector does. */
static void take_startup(struct proc_vcpu *pv)
{
	uint8_t vector = 0;
	unsigned s;

	s = uirq_take_startup(proc_of(vm_of(pv))->uirq, pv->v->id, &vector);
	if (pv->v->id == 0) {
		if (s & UIRQ_INIT)
			vm_request_stop(vm_of(pv), STOP_RESET, 0,
			                "guest reset the VM (INIT to the boot vCPU)");
		return;
	}
	if (s & UIRQ_INIT) {
		pv->wait_sipi = true;
		pv->started_guest = false;   /* nothing of its state is left to run */
		pv->cpu.nmi_blocked = false; /* INIT ends an NMI handler too */
		pv->root_key = 0;
	}
	if ((s & UIRQ_SIPI) && pv->wait_sipi)
		sipi_state(pv, vector);
}

/* An AP in wait-for-SIPI: sleep until its STARTUP IPI (true), or the VM stops (false). */
static bool wait_for_sipi(struct proc_vcpu *pv)
{
	while (vm_vcpu_checkpoint(pv->v)) {
		uint32_t w = __atomic_load_n(&pv->wake, __ATOMIC_ACQUIRE);
		struct timespec ts = {0, WAIT_SLICE_NS};

		take_startup(pv);
		if (!pv->wait_sipi)
			return true;
		futex(&pv->wake, FUTEX_WAIT, w, &ts); /* an IPI kicks it awake */
	}
	return false;
}

/* Code before long mode (the BSP's 32-bit PVH entry, an AP's startup code): the interpreter
 * runs it until the guest is in long mode (interp cleared), an AP takes INIT or halts with
 * interrupts off (interp still set: the caller looks again), or the VM stops (false). */
static bool interpret(struct proc_vcpu *pv)
{
	struct vm *vm = vm_of(pv);
	struct interp32_exit x;

	while (vm_vcpu_checkpoint(pv->v)) {
		take_startup(pv); /* INIT stops an AP in its startup code too */
		if (pv->wait_sipi)
			return true;
		switch (interp32_run(&pv->cpu, INTERP_STEPS, &x)) {
		case INTERP_LONG_MODE:
			pv->interp = false;
			pmmu_sync(proc_of(vm)->mmu, pv);
			return true;
		case INTERP_BUDGET:
			continue;
		case INTERP_HALT:
			if (!(pv->cpu.r.rflags & RF_IF)) {
				if (pv->v->id != 0) {
					pv->halted_for_good = true; /* until INIT */
					return true;
				}
				vm_vcpu_park(pv->v);
				return false;
			}
			sleep_halted(pv);
			deliver_interrupts(pv);
			continue;
		case INTERP_UNSUPPORTED:
		case INTERP_FAULT:
			return false; /* the CPU core asked the VM to stop, saying why */
		}
	}
	return false;
}

void proc_vcpu_run(struct vcpu *v)
{
	struct proc_vcpu *pv = pvcpu_of(v);
	struct proc_vm *p = proc_of(v->vm);
	struct timespec t0, t1;

	pv->seen_exit = __atomic_load_n(&pv->rec->exit_seq, __ATOMIC_ACQUIRE); /* the start */
	pv->tid = (pid_t)__atomic_load_n(&pv->rec->tid, __ATOMIC_ACQUIRE);
	if (!pv->restored) {
		if (v->id == 0) {
			boot_state(pv);
			pv->started_guest = true;
		} else {
			pv->wait_sipi = true; /* as an AP comes out of reset */
		}
	} else if (!pv->started_guest) {
		pv->wait_sipi = true; /* an AP that had not started when the snapshot was taken */
	} else {
		pv->load_fpu = pv->fp_len != 0; /* the snapshot's, at the first resume */
	}
	while (vm_vcpu_checkpoint(v)) {
		uint64_t g[SG_COUNT];
		uint32_t signo, arch;
		int64_t op_error;

		take_startup(pv);
		if (pv->halted_for_good && pv->interp) {
			/* halted in startup code with interrupts off: an AP waits for INIT */
			if (v->id == 0) {
				vm_vcpu_park(v);
				return;
			}
			pv->wait_sipi = true;
			pv->started_guest = pv->halted_for_good = false;
		} else if (pv->halted_for_good) {
			if (!sleep_interrupts_off(pv)) {
				if (pv->wait_sipi) /* INIT: the AP's state is gone */
					pv->started_guest = pv->halted_for_good = false;
				continue; /* (the checkpoint pauses or stops) */
			}
			pv->halted_for_good = false; /* the NMI is delivered below */
			/* The others did not wait for it: its page tables go in again (pmmu.c). */
			pmmu_sync(p->mmu, pv);
		}
		if (pv->wait_sipi && !wait_for_sipi(pv))
			return;
		if (pv->interp) {
			if (!interpret(pv))
				return;
			if (pv->interp)
				continue; /* not in long mode: INIT, or halted for good */
		}
		if (pv->halted) {
			if (!sleep_halted(pv))
				continue; /* paused or stopping: still in hlt */
			pv->halted = false;
			take_startup(pv);
			/* INIT alone: wait for the STARTUP. INIT and STARTUP both taken while
			 * it slept: its startup code is the interpreter's (before 2026-12-07
			 * this went on to resume the guest thread in real mode). */
			if (pv->wait_sipi || pv->interp)
				continue;
		}
		deliver_interrupts(pv);
		proc_fast_sync(pv);
		reply(pv);
		if (!wait_exit(pv))
			continue; /* the checkpoint says stop */
		clock_gettime(CLOCK_MONOTONIC, &t0);
		/* The record is the guest's to scribble on: one copy, then only the copy. */
		memcpy(g, pv->rec->exit.gregs, sizeof(g));
		signo = __atomic_load_n(&pv->rec->exit.signo, __ATOMIC_RELAXED);
		arch = __atomic_load_n(&pv->rec->exit.syscall_arch, __ATOMIC_RELAXED);
		op_error = __atomic_load_n(&pv->rec->exit.op_error, __ATOMIC_RELAXED);
		if (!stub_signal(signo)) {
			/* The stub never reports that: the guest wrote over the record. */
			vm_request_stop(
			    vm_of(pv), STOP_VMM_ERROR, 0,
			    "process engine: the guest wrote over its exit record in the "
			    "slot hearth reserves at 0x%llx (no signal %u comes from there)",
			    (unsigned long long)STUB_SLOT_VA, signo);
			continue;
		}
		if (g[SG_RIP] >= STUB_GUEST_VA_END) {
			/* Guest code never runs there: the guest jumped into the slot. */
			stub_entered(pv, g[SG_RIP], signo);
			continue;
		}
		if (!op_error)
			pv->op_failures = 0;
		else if (!mappings_failed(pv, op_error))
			continue;
		regs_in(&pv->cpu, g);
		if (p->fsgsbase && !op_error) {
			/* The thread's bases: the guest may have set them with wrfsbase or
			 * wrgsbase (any value it writes there, it could have loaded itself). Not
			 * after a failed op: a SET_FS may be what failed. */
			pv->cpu.fs_base = pv->set_fs =
			    __atomic_load_n(&pv->rec->exit.fs_base, __ATOMIC_RELAXED);
			pv->cpu.gs_base = pv->set_gs =
			    __atomic_load_n(&pv->rec->exit.gs_base, __ATOMIC_RELAXED);
		}
		handle_signal(pv, signo, g, arch);
		if (signo == SIGSEGV)
			emulate_ahead(pv);
		if (pv->halted && !(pv->cpu.r.rflags & RF_IF)) {
			/* hlt with interrupts off: as hardware, asleep for good */
			pv->halted = false;
			pv->halted_for_good = true;
		} /* (with IF set, the loop sleeps until an interrupt is due) */
		p->traps++;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		p->trap_ns +=
		    (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
	}
}

int proc_vcpu_init(struct vm *vm, struct vcpu *v, struct error *err)
{
	struct proc_vm *p = proc_of(vm);
	struct proc_vcpu *pv = calloc(1, sizeof(*pv));

	if (!pv)
		return err_set(err, "out of memory");
	v->be = pv;
	pv->v = v;
	pv->rec = stub_vcpus(p->shared) + v->id;
	pv->cpu.gm = &vm->mem;
	pv->cpu.ops = &proc_cpu_ops;
	pv->cpu.virtual_segments = true;
	pv->cpu.unmapped_below = proc_of(vm)->min_va;
	pv->cpu.ctx = pv;
	pv->cpu.trap_port = -1;
	/* The guest thread's bases are what its thread inherited (a copy of hearth has
	 * hearth's): the first resume sets the guest's. */
	pv->fs_dirty = pv->gs_dirty = true;
	return 0;
}
