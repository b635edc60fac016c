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
 * One vCPU's record in the shared area. The stub fills `exit` and bumps exit_seq (hearth
 * waits on it as a futex); hearth fills the reply and bumps reply_seq (the stub waits on
 * it). Both spin for a while before they sleep: a trap then costs little more than the
 * host's own signal round trip.
 */
struct stub_vcpu {
	uint32_t exit_seq;
	uint32_t reply_seq;
	uint32_t tid; /* the guest thread, for kicks */
	uint32_t pad0;
	struct {
		uint32_t kind, signo, code, syscall_nr;
		uint32_t syscall_arch, pad;
		uint64_t addr; /* si_addr */
		uint64_t gregs[SG_COUNT];
		int64_t op_error; /* the first failing op of the last reply: -errno, or 0 */
	} exit;
	struct {
		uint32_t command, nops;
		uint64_t gregs[SG_RESUME];
		struct stub_op ops[STUB_MAX_OPS];
		uint32_t load_fpu; /* 1: the FPU/SSE/AVX state below replaces the guest's */
	} reply;
	/* The guest's FPU/SSE/AVX state as the kernel saved it in the signal frame (the XSAVE
	 * layout with its software header): copied out at every exit, in at a resume with
	 * reply.load_fpu (a snapshot's). fp_len 0: it did not fit. */
	uint32_t fp_len;
	uint8_t fpstate[STUB_FP_MAX] __attribute__((aligned(64)));
} __attribute__((aligned(4096)));

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
