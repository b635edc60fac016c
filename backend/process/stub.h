/*
 * The process engine's guest process: the layout of its reserved slot and the records it
 * shares with hearth. Included by hearth (backend/process/) and by the stub (stub.c), which
 * is built freestanding and runs in the guest process, linked at STUB_SLOT_VA.
 *
 * The guest process's address space holds only the slot and the guest's own mappings:
 *
 *   [0, STUB_SLOT_VA)        the guest's virtual addresses, mapped by hearth as f.g:
 *                            guest-virtual -> guest-physical (the guest's page tables g)
 *                            -> offset in the guest-RAM memfd (f), with g's rights
 *   STUB_SLOT_VA + CODE      the stub's code, read-only and executable
 *   STUB_SLOT_VA + SHARED    the records shared with hearth (a memfd both map): one per vCPU
 *   STUB_SLOT_VA + STACKS    the stub's stacks and signal stacks, private to the guest process
 *
 * The guest's code can read and write all of the slot but its code (nothing but its own
 * page protection keeps it out, and this host has no protection keys): everything in the
 * shared records is hostile input to hearth, and the guest process's seccomp filter lets
 * only the stub's own instructions make the few system calls the stub needs, with their
 * arguments pinned (backend/process/seccomp_guest.c). A guest that scribbles over the slot
 * can only break itself.
 */
#ifndef HEARTH_STUB_H
#define HEARTH_STUB_H

#include <stdint.h>

#define STUB_SLOT_VA    0x7e0000000000ULL
#define STUB_SLOT_SIZE  (64ULL << 20)
#define STUB_CODE_OFF   0x0ULL /* at most STUB_CODE_MAX */
#define STUB_CODE_MAX   0x10000ULL
#define STUB_SHARED_OFF 0x100000ULL
#define STUB_STACKS_OFF 0x1000000ULL
#define STUB_MAX_VCPUS  32
/* Per vCPU: a thread stack, then a signal stack whose base holds the thread's context. */
#define STUB_STACK_SIZE 0x10000ULL
#define STUB_PER_VCPU   (2 * STUB_STACK_SIZE)

/* The guest process's fixed descriptors (the seccomp filter pins them). */
#define STUB_RAM_FD 3 /* the guest-RAM memfd */
/* Queue-notify eventfds, the same ones hearth's VMM thread polls: STUB_NOTIFY_FD0 + k is
 * hearth's binding k (process.c: proc_attach_notify). The stub may write 8 bytes to these
 * and to no other descriptor. */
#define STUB_NOTIFY_FD0 6
#define STUB_NOTIFY_FDS 32

/* Highest address a guest mapping may reach: the slot starts above it. */
#define STUB_GUEST_VA_END STUB_SLOT_VA
/* Largest single mapping the stub makes: a 2 MiB guest page, or an unmap of the guest
 * range in one go. */
#define STUB_MAP_MAX (2ULL << 20)

/* What the stub reports (stub_exit.kind). */
enum stub_exit_kind {
	STUB_EXIT_START = 1, /* the thread is up, waiting for its first state */
	STUB_EXIT_SIGNAL,    /* the guest took a host signal (a fault, a trap, a kick) */
};

/* What hearth asks the stub to do before it resumes the guest (stub_op.kind). */
enum stub_op_kind {
	STUB_OP_MMAP = 1, /* map [addr, addr + len) to RAM at `off` with `prot` */
	STUB_OP_MUNMAP,   /* unmap [addr, addr + len) */
	STUB_OP_MPROTECT, /* change the rights of [addr, addr + len) to `prot` */
	STUB_OP_SET_FS,   /* FS base := addr */
	STUB_OP_SET_GS,   /* GS base := addr */
};

#define STUB_MAX_OPS 32
#define STUB_FP_MAX  8192 /* the XSAVE area with AVX-512 is ~2.7 KiB */

struct stub_op {
	uint32_t kind, prot;
	uint64_t addr, len, off;
};

/* The register file the kernel saves in a signal frame (ucontext gregs, in its order), which
 * the stub copies out at an exit and, for the first 18, back at a resume. */
enum {
	SG_R8,
	SG_R9,
	SG_R10,
	SG_R11,
	SG_R12,
	SG_R13,
	SG_R14,
	SG_R15,
	SG_RDI,
	SG_RSI,
	SG_RBP,
	SG_RBX,
	SG_RDX,
	SG_RAX,
	SG_RCX,
	SG_RSP,
	SG_RIP,
	SG_EFL,
	SG_CSGSFS,
	SG_ERR,
	SG_TRAPNO,
	SG_OLDMASK,
	SG_CR2,
	SG_COUNT,
};
#define SG_RESUME 18 /* gregs[0..17] go back at a resume */

/* Commands in a reply. */
enum stub_command {
	STUB_RESUME = 1, /* run the ops, load gregs[0..17], return to the guest */
	STUB_EXIT,       /* end the guest process (exit_group) */
};

/*
 * A queue notify the stub signals itself (the ioeventfd of this engine): a 4-byte store by
 * the instruction at `rip` to `addr` (the guest-virtual address of a virtio-mmio QueueNotify
 * register, as si_addr reports it), which hearth decoded and emulated once. The stub writes
 * the eventfd of the queue the stored value names and resumes after the instruction, without
 * an exit. hearth fills an entry while its guest thread waits for a reply, and clears the
 * table whenever what the guest's page tables say may have changed (pmmu_gen). The guest can
 * write here too: the stub checks every field (stub_fast_check), and the worst a forged entry
 * does is a spurious notify or a skipped instruction of the guest's own.
 */
#define STUB_FAST_MAX    16   /* entries per vCPU */
#define STUB_FAST_QUEUES 4    /* queues of one device */
#define STUB_FAST_IMM    0xff /* `src`: the value is `imm` (mov $imm32, mem) */

struct stub_fast_notify {
	uint64_t rip;  /* 0: a free entry */
	uint64_t addr; /* the fault address */
	uint64_t imm;  /* the value stored, for STUB_FAST_IMM */
	uint8_t len;   /* the instruction's length, 1..15 */
	uint8_t src;   /* the register stored (a gregs index, SG_R8..SG_RSP), or STUB_FAST_IMM */
	uint8_t nq;    /* queues in fd[] */
	uint8_t pad;
	uint8_t fd[STUB_FAST_QUEUES]; /* queue -> descriptor (STUB_NOTIFY_FD0...); else 0 */
};

/*
 * One vCPU's record in the shared area. The stub fills `exit` and bumps exit_seq (hearth
 * waits on it as a futex); hearth fills the reply and bumps reply_seq (the stub waits on
 * it). Both spin for a while before they sleep: a trap then costs little more than the
 * host's own signal round trip. Each says when it sleeps (hearth_sleeps, stub_sleeps, set
 * before its last look at the sequence number), and the other side wakes it only then: a
 * futex wake costs a system call (1.3 us here) that a spinning waiter does not need. (The
 * guest can write these flags too: it can only delay itself, and hearth's waits are
 * bounded.)
 */
struct stub_vcpu {
	uint32_t exit_seq;
	uint32_t reply_seq;
	uint32_t tid;           /* the guest thread, for kicks */
	uint32_t hearth_sleeps; /* hearth waits for exit_seq in the kernel */
	uint32_t stub_sleeps;   /* the stub waits for reply_seq in the kernel */
	/* Set by hearth: every thread of the VM (this guest thread, hearth's, the other vCPUs')
	 * is pinned to a CPU of its own, so no poll needs a sched_yield to let another run (each
	 * yield is a system call, and it slows a CPU that shares a core with the other side's).
	 * 0: yield now and then. */
	uint32_t apart;
	struct {
		uint32_t kind, signo, code, syscall_nr;
		uint32_t syscall_arch, pad;
		uint64_t addr; /* si_addr */
		uint64_t gregs[SG_COUNT];
		int64_t op_error; /* the first failing op of the last reply: -errno, or 0 */
		/* the thread's FS and GS bases at the exit, where stub_init.fsgsbase */
		uint64_t fs_base, gs_base;
	} exit;
	struct {
		uint32_t command, nops;
		uint64_t gregs[SG_RESUME];
		struct stub_op ops[STUB_MAX_OPS];
		uint32_t load_fpu; /* 1: the FPU/SSE/AVX state below replaces the guest's */
	} reply;
	struct stub_fast_notify fast[STUB_FAST_MAX];
	uint64_t fast_notifies; /* counted by the stub (hearth takes it as a hint) */
	/* The guest's FPU/SSE/AVX state as the kernel saved it in the signal frame (the XSAVE
	 * layout with its software header): copied out at every exit, in at a resume with
	 * reply.load_fpu (a snapshot's). fp_len 0: it did not fit. */
	uint32_t fp_len;
	uint8_t fpstate[STUB_FP_MAX] __attribute__((aligned(64)));
} __attribute__((aligned(4096)));

/*
 * The stub's check of a fast-notify entry `e` (its own copy: the shared one may change under
 * it) for a write fault at `addr` by the instruction at `rip`, with the guest's registers
 * `gregs` (the signal frame's): the instruction's length, with the descriptor to signal in
 * *fd; 0: the trap path takes it (no match, a bad field, a queue the entry does not have).
 */
static inline unsigned stub_fast_check(const struct stub_fast_notify *e, uint64_t rip,
                                       uint64_t addr, const uint64_t *gregs, int *fd)
{
	uint64_t v;
	unsigned f;

	if (!rip || e->rip != rip || e->addr != addr || e->len < 1 || e->len > 15)
		return 0;
	if (e->src <= SG_RSP)
		v = gregs[e->src];
	else if (e->src == STUB_FAST_IMM)
		v = e->imm;
	else
		return 0;
	v &= 0xffffffffu; /* a 4-byte store */
	if (e->nq > STUB_FAST_QUEUES || v >= e->nq)
		return 0;
	f = e->fd[v];
	if (f < STUB_NOTIFY_FD0 || f >= STUB_NOTIFY_FD0 + STUB_NOTIFY_FDS)
		return 0;
	*fd = (int)f;
	return e->len;
}

/* How the guest process starts (at the start of the shared area, written by hearth). */
#define STUB_MAX_UNMAP  256
#define STUB_FILTER_MAX 256

struct stub_init {
	uint32_t nvcpus;
	uint32_t nunmap;
	struct {
		uint64_t addr, len;
	} unmap[STUB_MAX_UNMAP]; /* hearth's own mappings, inherited by the guest process */
	uint32_t filter_len;
	int32_t parent; /* hearth's process id: the guest process checks it is still its child */
	uint64_t filter[STUB_FILTER_MAX]; /* struct sock_filter[], 8 bytes each */
	int32_t init_error;               /* the stub's start-up failure: -errno, step in high */
	uint32_t up;    /* futex: threads past their set-up (vCPU 0 not counted) */
	uint32_t ready; /* futex: 1 when the filter is loaded */
	/* 1: the host lets user code use rdfsbase/wrfsbase (HWCAP2_FSGSBASE). The guest's
	 * wrfsbase and wrgsbase then run natively, and the stub reports both bases at every
	 * exit so that hearth's copies stay the guest's. */
	uint32_t fsgsbase;
} __attribute__((aligned(4096)));

#define STUB_SHARED_SIZE (sizeof(struct stub_init) + STUB_MAX_VCPUS * sizeof(struct stub_vcpu))

static inline struct stub_vcpu *stub_vcpus(void *shared)
{
	return (struct stub_vcpu *)((char *)shared + sizeof(struct stub_init));
}

/* The stub's entry (the first bytes of its code): rdi = the stub_init in the slot. */
#define STUB_ENTRY (STUB_SLOT_VA + STUB_CODE_OFF)

/* A guest process started by execve of the stub as an ELF (guest_proc.c) finds the shared
 * area at this descriptor, maps it, and closes it. */
#define STUB_SHARED_FD 4

#endif
