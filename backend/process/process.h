/*
 * The process engine: no KVM. The guest's kernel runs as an ordinary, seccomp-sandboxed host
 * process in 64-bit user mode (its vCPUs are that process's threads); its page tables g are
 * composed with hearth's map f (guest-physical -> offset in the guest-RAM memfd) and written
 * into the host's own page tables with mmap, as faults come (pmmu.c); what user mode cannot
 * do faults and is emulated by the shared virtual CPU (cpu/guest_cpu.h) on hearth's vCPU
 * thread; interrupts come from the userspace chips (irqchip/userspace.h).
 *
 * Files: process.c (the backend ops), guest_proc.c (making the guest process and its
 * seccomp filter), vcpu.c (hearth's side of each vCPU), pmmu.c (f.g in the host MMU),
 * stub.c (the only code of hearth's in the guest process). docs/PROCESS_ENGINE.md has the
 * design.
 */
#ifndef HEARTH_PROCESS_H
#define HEARTH_PROCESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "cpu/guest_cpu.h"
#include "cpu/pagewalk.h"
#include "irqchip/userspace.h"
#include "stub.h"
#include "vmm/vm.h"

struct pmmu;

/* A port range of the userspace chips on the port bus (the bus gives offsets). */
struct chip_port {
	struct uirq *u;
	uint16_t base;
};

/* A queue's notify bound to a pool eventfd (the guest process's STUB_NOTIFY_FD0 + its index
 * in proc_vm.notify): a 4-byte store of `queue` at guest-physical `addr`. */
struct proc_notify {
	uint64_t addr;
	uint32_t queue;
};

/* vm->be */
struct proc_vm {
	pid_t pid;                /* the guest process */
	int pidfd;                /* ... to see it die */
	int shared_fd;            /* the memfd behind the shared records */
	struct stub_init *shared; /* hearth's view of them */
	struct uirq *uirq;
	struct chip_port ports[5];
	uint64_t tsc_hz;
	struct timespec tsc_t0; /* the first sample of the TSC's rate (process.c) */
	uint64_t tsc0;
	struct pmmu *mmu;
	/* Host CPUs for each vCPU's guest thread and hearth's thread (process.c); -1: any */
	int guest_cpu[STUB_MAX_VCPUS], host_cpu[STUB_MAX_VCPUS];
	uint64_t traps; /* exits handled, all vCPUs */
	double trap_ns;
	/* The queue-notify eventfds the guest process got at its start (hearth's copies until
	 * a device takes one over: -1 then), and what each is bound to. */
	int notify_pool[STUB_NOTIFY_FDS];
	unsigned npool;
	struct proc_notify notify[STUB_NOTIFY_FDS];
	unsigned nnotify;
	uint64_t notify_traps; /* notifies of bound queues that trapped (atomic) */
	/* Accesses emulated for the guest (page 0, device registers), one at a time: a locked
	 * instruction is then atomic against every other emulated one (vcpu.c,
	 * proc_emulate_access). */
	pthread_mutex_t emu_lock;
	/* The host lets the guest's wrfsbase/wrgsbase run natively: its bases come back with
	 * every exit (stub_init.fsgsbase). */
	bool fsgsbase;
	/* The lowest virtual address the guest process may map: the host's vm.mmap_min_addr
	 * (the guest process has no capability that passes it), or PROC_MIN_VA_FLOOR. Below it,
	 * as on page 0, the guest's accesses are emulated. */
	uint64_t min_va;
};

/* min_va where vm.mmap_min_addr cannot be read, or where the host refuses mappings that it
 * allows (a security module's own floor, CONFIG_LSM_MMAP_MIN_ADDR): the usual 64 KiB. */
#define PROC_MIN_VA_FLOOR 0x10000ULL

/* vcpu->be */
struct proc_vcpu {
	struct vcpu *v;
	struct stub_vcpu *rec; /* the shared record (hostile: copied before use) */
	uint32_t seen_exit;    /* the last exit_seq handled */
	struct guest_cpu cpu;
	bool started; /* the guest thread reported in */
	bool running; /* hearth has answered; the guest thread runs guest code */
	bool halted;  /* hlt: sleeping until an interrupt */
	bool halted_for_good;
	uint64_t root_key;    /* the CR3 key pmmu_sync last took it to (0: none since INIT) */
	bool interp;          /* 32-bit code: the interpreter runs it */
	bool stepping_pt;     /* single-stepping a page-table store (pmmu_unprotect) */
	bool apart;           /* its guest thread and hearth's run on different CPUs (process.c) */
	uint32_t wake;        /* futex: bumped by kicks while hearth's thread sleeps */
	unsigned op_failures; /* mapping changes that failed in a row */
	bool started_guest;   /* it has run guest code (an AP: since its first SIPI) */
	bool wait_sipi;       /* an AP after INIT: waiting for a STARTUP IPI */
	/* Snapshots: restored from one (no boot state); its FPU state, loaded at the first
	 * resume (load_fpu). */
	bool restored, load_fpu;
	uint32_t fp_len;
	uint8_t fpstate[STUB_FP_MAX];
	pid_t tid; /* the guest thread (from the start exit) */
	           /* MSRs the guest may set and read back */
#define PROC_MSRS 8
	uint32_t msr_index[PROC_MSRS];
	uint64_t msr_value[PROC_MSRS];
	/* The fast notifies in the record's table (hearth's copy, which it trusts), and the
	 * pmmu generation they were learned in. */
	struct stub_fast_notify fast[STUB_FAST_MAX];
	unsigned fast_next; /* the entry the next one replaces when all are in use */
	uint64_t fast_gen;
	uint64_t kvm_system_time, kvm_wall_clock; /* kvmclock's MSRs, as last written */
	/* the reply being built */
	struct stub_op ops[STUB_MAX_OPS];
	unsigned nops;
	uint64_t set_fs, set_gs;
	bool fs_dirty, gs_dirty;
};

static inline struct proc_vm *proc_of(const struct vm *vm)
{
	return vm->be;
}

static inline struct proc_vcpu *pvcpu_of(const struct vcpu *v)
{
	return v->be;
}

/* guest_proc.c: make the guest process (its slot, its threads, its filter); it waits for the
 * first state of each vCPU. */
int proc_spawn(struct vm *vm, struct error *err);
/* The guest process's seccomp filter (classic BPF, as the file's head says) into p[cap]:
 * its length, or -1 when it does not fit. */
struct sock_filter;
int proc_guest_filter(struct sock_filter *p, unsigned cap, uint64_t min_va);
/* ... and wait (a bounded time) until its threads reported in. */
int proc_wait_started(struct vm *vm, struct error *err);
void proc_kill(struct vm *vm);

/* process.c: the TSC's rate from `ticks` counted over `ns` nanoseconds (ns > 0). */
uint64_t proc_tsc_hz(uint64_t ticks, uint64_t ns);

/* vcpu.c */
/* An access at `va` (-> `gpa`, by a walk in pmmu generation `gen`) that is not mapped: a
 * device register, or guest page 0. */
void proc_emulate_access(struct proc_vcpu *pv, uint64_t va, uint64_t gpa, uint64_t gen);
/* The signal frame's index (SG_*) of each x86 register number (R_AX ...). */
extern const uint8_t proc_sg_of[16];
/* A store into a page table that hearth could not decode: single-step it natively. */
void proc_step_pt_store(struct proc_vcpu *pv, uint64_t va, uint64_t gpa);
/* The guest uses an address the guest process cannot map (the slot, the upper half). */
void proc_refuse_va(struct proc_vcpu *pv, uint64_t va);
/* The guest runs code below min_va, which only data accesses can reach (emulated). */
void proc_refuse_low_code(struct proc_vcpu *pv, uint64_t va, uint64_t min_va);
void proc_vcpu_run(struct vcpu *v);
void proc_vcpu_kick(struct vcpu *v);
int proc_vcpu_init(struct vm *vm, struct vcpu *v, struct error *err);
/* Queue a change of the guest process's mappings for the next resume of this vCPU; false
 * when the reply is full (the caller flushes instead). */
bool proc_vcpu_op(struct proc_vcpu *pv, uint32_t kind, uint64_t addr, uint64_t len, uint64_t off,
                  uint32_t prot);
/* How many more mappings the reply being built has room for. */
unsigned proc_vcpu_room(const struct proc_vcpu *pv);
/* Queue the unmapping of the whole guest range in place of every mapping change queued so
 * far (always fits). */
void proc_vcpu_unmap_all(struct proc_vcpu *pv);

/* notify.c: queue notifies the stub signals itself (stub.h: struct stub_fast_notify). */
/* The backend op: bind a pool eventfd to a queue's notify; it replaces the device's. */
int proc_attach_notify(struct vm *vm, int fd, uint64_t addr, uint32_t len, uint64_t datamatch);
/* The entry for the instruction `in` (decoded at `rip`, 64-bit code) that stores to `va`,
 * which is guest-physical `gpa`, given the bindings; false when it cannot be one (not a
 * 4-byte mov from a register or an immediate, no queue of a binding at `gpa`). */
bool proc_fast_entry(const struct sh_insn *in, bool code64, uint64_t rip, uint64_t va, uint64_t gpa,
                     const struct proc_notify *binds, unsigned nbinds, struct stub_fast_notify *e);
/* Whether `gpa` is a bound queue's QueueNotify register. */
bool proc_notify_bound(const struct proc_vm *p, uint64_t gpa);
/* Before an emulated access at `gpa`: whether it may teach the stub a fast notify (then *e
 * is the entry); after the emulation, install it. */
bool proc_fast_candidate(struct proc_vcpu *pv, uint64_t va, uint64_t gpa, uint64_t gen,
                         struct stub_fast_notify *e);
void proc_fast_install(struct proc_vcpu *pv, const struct stub_fast_notify *e, uint64_t gen);
/* Before a resume: the table goes when the pmmu generation moved on. */
void proc_fast_sync(struct proc_vcpu *pv);
/* Fast notifies the stubs counted (a hint: the guest can write the counters). */
uint64_t proc_fast_count(const struct vm *vm);

/* snapshot.c: the backend's snapshot ops */
int proc_save(struct vm *vm, struct snap_w *w, struct error *err);
int proc_restore(struct vm *vm, struct snap_r *r, struct error *err);
int proc_dirty_start(struct vm *vm, struct error *err);
int proc_dirty_collect(struct vm *vm, uint64_t *bitmap, struct error *err);

/* pmmu.c: f.g in the guest process's page tables. One per VM; its lock is taken inside. */
struct pmmu *pmmu_create(struct vm *vm);
void pmmu_destroy(struct pmmu *m);
/* A page fault at `va` with the host's error code: map it, reflect the guest's own #PF,
 * emulate a store to a guest page table, or emulate an access to a device. */
void pmmu_fault(struct pmmu *m, struct proc_vcpu *pv, uint64_t va, uint32_t err);
/* Drop every mapping (a changed page-table entry hearth cannot place). */
void pmmu_flush(struct pmmu *m, struct proc_vcpu *pv);
/* The vCPU's paging controls or CR3 changed: drop what the old ones allowed. */
void pmmu_sync(struct pmmu *m, struct proc_vcpu *pv);
void pmmu_invlpg(struct pmmu *m, struct proc_vcpu *pv, uint64_t va);
/* A store hearth emulated into a guest page-table entry (guest_cpu_ops.pte_stored). */
void pmmu_pte_stored(struct pmmu *m, struct proc_vcpu *pv, uint64_t gpa, uint64_t old,
                     uint64_t new);
/* A page-table store hearth cannot decode runs natively, single-stepped: the page is left
 * writable for it (unprotect), and protected again after it (step_done). */
void pmmu_unprotect(struct pmmu *m, struct proc_vcpu *pv, uint64_t gpa);
void pmmu_step_done(struct pmmu *m, struct proc_vcpu *pv);
/* hearth stored to guest RAM for an emulated instruction (a string move's other operand): a
 * guest page table among those bytes changed g behind the tracking. */
void pmmu_ram_stored(struct pmmu *m, struct proc_vcpu *pv, uint64_t gpa, unsigned len);
/* Guest-virtual -> guest-physical without side effects, as the vCPU's paging says. */
bool pmmu_translate(struct pmmu *m, const struct guest_cpu *c, uint64_t va, bool write,
                    uint64_t *gpa);
/* Whether the guest's page tables let it execute at `va` (NX, present). */
bool pmmu_fetchable(struct pmmu *m, const struct guest_cpu *c, uint64_t va);
/* A count that moves on whenever a translation hearth derived from g may have changed (a
 * page-table store, invlpg, a CR3 or paging-control write, a flush). */
uint64_t pmmu_gen(const struct pmmu *m);
void pmmu_stats(const struct pmmu *m, cJSON *o);
/* Dirty tracking: guest RAM mapped read-only until the first store to each page, which marks
 * it. Start (0 or -ENOMEM); collect ORs the marks into `bitmap` (by gm_offset page) and
 * starts over. With every vCPU parked; the unmap goes with every vCPU's next resume. */
int pmmu_dirty_start(struct pmmu *m, struct proc_vcpu *pv);
void pmmu_dirty_collect(struct pmmu *m, struct proc_vcpu *pv, uint64_t *bitmap);
void pmmu_log_stats(const struct pmmu *m);

#endif
