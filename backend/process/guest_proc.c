/*
 * Making the guest process: a child of hearth's VMM thread (no shared memory but the guest's
 * RAM and the shared records) that keeps only the guest-RAM memfd and the queue-notify
 * eventfds (notify.c), drops privileges it never needs, and runs the stub (stub.c), which
 * starts its vCPU threads and loads the filter built here. The child executes the stub as a
 * tiny static ELF from a memfd: a fresh address space with nothing of hearth's in it, made
 * without copying hearth's (a fork would write-protect every page hearth has touched, and
 * each later write to one costs hearth a fault). Where
 * the host refuses that execve (vm.memfd_noexec, a security module), the child is a copy of
 * hearth that maps the slot itself and unmaps everything else.
 *
 * The filter (checked in this order): the x86-64 system-call ABI (int $0x80 and friends are
 * the guest's own), an instruction pointer inside the stub's code, then only futex (wait
 * and wake), rt_sigreturn, exit, exit_group, sched_yield, arch_prctl(SET_FS/SET_GS),
 * mmap/munmap/mprotect of the RAM memfd below the slot, at most STUB_MAP_MAX at a time (or
 * the whole guest range in one unmap), and write of 8 bytes to a queue-notify eventfd
 * (STUB_NOTIFY_FD0...). Anything else is the guest's own system call: it traps (SIGSYS)
 * into the stub and hearth emulates it; it never reaches the host.
 */
#include "process.h"

#include "vmm/log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HWCAP2_FSGSBASE_ (1UL << 1) /* asm/hwcap2.h: user code may use rdfsbase & co */

extern const uint8_t stub_blob[], stub_blob_end[], stub_elf[], stub_elf_end[];

#define ARCH_SET_GS_          0x1001
#define ARCH_SET_FS_          0x1002
#define PAGE                  4096ULL
#define FLUSH_ADDR            PAGE /* the one unmap of the whole guest range */
#define FLUSH_LEN             (STUB_GUEST_VA_END - PAGE)
#define START_WAIT_S          10
#define RSEQ_FLAG_UNREGISTER_ 1
#define RSEQ_SIG_             0x53053053   /* glibc's, x86 */
#define STUB_ELF_FD           5            /* the stub's ELF, until the execve */
#define FD_HIGH               64           /* above the guest process's fixed descriptors */
#define MIN_VA_MAX            (1ULL << 20) /* a vm.mmap_min_addr above it is taken as 1 MiB */

/* ---- the guest process's filter -------------------------------------------------------- */

struct bpf {
	struct sock_filter *p;
	unsigned n, cap;
	bool overflow;
};

enum { L_TRAP = 0xfe, L_ALLOW = 0xff }; /* jump targets resolved at the end */

static void emit(struct bpf *b, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
	if (b->n == b->cap) {
		b->overflow = true;
		return;
	}
	b->p[b->n++] = (struct sock_filter){code, jt, jf, k};
}

static void ld(struct bpf *b, uint32_t off)
{
	emit(b, BPF_LD | BPF_W | BPF_ABS, 0, 0, off);
}

/* Jump targets: 0 = fall through, L_TRAP / L_ALLOW, else a relative skip. */
static void jmp(struct bpf *b, uint16_t op, uint32_t k, uint8_t jt, uint8_t jf)
{
	emit(b, BPF_JMP | op | BPF_K, jt, jf, k);
}

#define ARG_LO(i) (uint32_t)(offsetof(struct seccomp_data, args) + 8 * (i))
#define ARG_HI(i) (ARG_LO(i) + 4)

/* Fail unless argument i <= max (unsigned 64-bit). */
static void arg_le(struct bpf *b, unsigned i, uint64_t max)
{
	ld(b, ARG_HI(i));
	jmp(b, BPF_JGT, (uint32_t)(max >> 32), L_TRAP, 0);
	jmp(b, BPF_JEQ, (uint32_t)(max >> 32), 0, 2); /* below in the high word: fine */
	ld(b, ARG_LO(i));
	jmp(b, BPF_JGT, (uint32_t)max, L_TRAP, 0);
}

/* Fail unless argument i == v. */
static void arg_eq(struct bpf *b, unsigned i, uint64_t v)
{
	ld(b, ARG_HI(i));
	jmp(b, BPF_JEQ, (uint32_t)(v >> 32), 0, L_TRAP);
	ld(b, ARG_LO(i));
	jmp(b, BPF_JEQ, (uint32_t)v, 0, L_TRAP);
}

/* Fail unless argument i >= min (below 4 GiB). */
static void arg_ge(struct bpf *b, unsigned i, uint32_t min)
{
	ld(b, ARG_HI(i));
	jmp(b, BPF_JEQ, 0, 0, 2); /* above in the high word: fine */
	ld(b, ARG_LO(i));
	jmp(b, BPF_JGE, min, 0, L_TRAP);
}

/* Inside the guest range, from min_va: len <= STUB_MAP_MAX, and addr + len <= the range's
 * end, checked as addr <= end - 4 KiB for a page and addr <= end - STUB_MAP_MAX for more
 * (BPF has no 64-bit add: two tiers are what the stub needs, pages up to the end). */
static void range_ok(struct bpf *b, uint32_t min_va)
{
	arg_le(b, 1, STUB_MAP_MAX);
	arg_ge(b, 0, min_va);
	ld(b, ARG_LO(1));
	jmp(b, BPF_JGT, (uint32_t)PAGE, 6, 0);  /* more than a page: the second tier */
	arg_le(b, 0, STUB_GUEST_VA_END - PAGE); /* 5 instructions */
	emit(b, BPF_JMP | BPF_JA, 0, 0, 5);
	arg_le(b, 0, STUB_GUEST_VA_END - STUB_MAP_MAX); /* 5 instructions */
}

static void prot_ok(struct bpf *b, unsigned i)
{
	ld(b, ARG_LO(i));
	jmp(b, BPF_JSET, ~(uint32_t)(PROT_READ | PROT_WRITE | PROT_EXEC), L_TRAP, 0);
}

/* One rule per system call: "if nr == n: checks...; allow", falling through otherwise. */
static unsigned rule_start(struct bpf *b, uint32_t nr)
{
	ld(b, offsetof(struct seccomp_data, nr));
	jmp(b, BPF_JEQ, nr, 0, 0); /* jf patched to skip the rule */
	return b->n - 1;
}

static void rule_end(struct bpf *b, unsigned at)
{
	emit(b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
	if (b->n - at - 1 > 255)
		b->overflow = true;
	else if (!b->overflow)
		b->p[at].jf = (uint8_t)(b->n - at - 1);
}

int proc_guest_filter(struct sock_filter *p, unsigned cap, uint64_t min_va)
{
	static const uint32_t plain[] = {SYS_rt_sigreturn, SYS_exit, SYS_exit_group,
	                                 SYS_sched_yield};
	struct bpf b = {p, 0, cap, false};
	uint64_t code = STUB_SLOT_VA + STUB_CODE_OFF;
	unsigned at, trap;

	ld(&b, offsetof(struct seccomp_data, arch));
	jmp(&b, BPF_JEQ, AUDIT_ARCH_X86_64, 0, L_TRAP);
	ld(&b, offsetof(struct seccomp_data, instruction_pointer) + 4);
	jmp(&b, BPF_JEQ, (uint32_t)(code >> 32), 0, L_TRAP);
	/* the address after the system call instruction: in (code, code + STUB_CODE_MAX] */
	ld(&b, offsetof(struct seccomp_data, instruction_pointer));
	jmp(&b, BPF_JGT, (uint32_t)code, 0, L_TRAP);
	jmp(&b, BPF_JGT, (uint32_t)(code + STUB_CODE_MAX), L_TRAP, 0);

	for (unsigned i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		ld(&b, offsetof(struct seccomp_data, nr));
		jmp(&b, BPF_JEQ, plain[i], L_ALLOW, 0);
	}
	/* futex: wait and wake only (no requeue, no PI: nothing that reaches hearth's threads
	 * but a wake-up, which hearth checks) */
	at = rule_start(&b, SYS_futex);
	ld(&b, ARG_LO(1));
	emit(&b, BPF_ALU | BPF_AND | BPF_K, 0, 0, ~(uint32_t)FUTEX_PRIVATE_FLAG);
	jmp(&b, BPF_JEQ, FUTEX_WAIT, 1, 0);
	jmp(&b, BPF_JEQ, FUTEX_WAKE, 0, L_TRAP);
	rule_end(&b, at);
	at = rule_start(&b, SYS_arch_prctl);
	ld(&b, ARG_HI(0));
	jmp(&b, BPF_JEQ, 0, 0, L_TRAP);
	ld(&b, ARG_LO(0));
	jmp(&b, BPF_JEQ, ARCH_SET_FS_, 1, 0);
	jmp(&b, BPF_JEQ, ARCH_SET_GS_, 0, L_TRAP);
	rule_end(&b, at);
	at = rule_start(&b, SYS_mmap);
	range_ok(&b, (uint32_t)min_va);
	prot_ok(&b, 2);
	/* flags: MAP_SHARED | MAP_FIXED, with or without MAP_POPULATE */
	ld(&b, ARG_HI(3));
	jmp(&b, BPF_JEQ, 0, 0, L_TRAP);
	ld(&b, ARG_LO(3));
	emit(&b, BPF_ALU | BPF_AND | BPF_K, 0, 0, ~(uint32_t)MAP_POPULATE);
	jmp(&b, BPF_JEQ, MAP_SHARED | MAP_FIXED, 0, L_TRAP);
	arg_eq(&b, 4, STUB_RAM_FD);
	rule_end(&b, at);
	at = rule_start(&b, SYS_mprotect);
	range_ok(&b, (uint32_t)min_va);
	prot_ok(&b, 2);
	rule_end(&b, at);
	/* munmap: all of the guest range at once, or a piece of it */
	at = rule_start(&b, SYS_munmap);
	ld(&b, ARG_HI(0));
	jmp(&b, BPF_JEQ, (uint32_t)(FLUSH_ADDR >> 32), 0, 6);
	ld(&b, ARG_LO(0));
	jmp(&b, BPF_JEQ, (uint32_t)FLUSH_ADDR, 0, 4);
	ld(&b, ARG_HI(1));
	jmp(&b, BPF_JEQ, (uint32_t)(FLUSH_LEN >> 32), 0, 2);
	ld(&b, ARG_LO(1));
	jmp(&b, BPF_JEQ, (uint32_t)FLUSH_LEN, L_ALLOW, 0);
	range_ok(&b, (uint32_t)min_va);
	rule_end(&b, at);
	/* write: 8 bytes (an eventfd's counter) to a queue-notify eventfd, nothing else */
	at = rule_start(&b, SYS_write);
	ld(&b, ARG_HI(0));
	jmp(&b, BPF_JEQ, 0, 0, L_TRAP);
	ld(&b, ARG_LO(0));
	jmp(&b, BPF_JGE, STUB_NOTIFY_FD0, 0, L_TRAP);
	jmp(&b, BPF_JGE, STUB_NOTIFY_FD0 + STUB_NOTIFY_FDS, L_TRAP, 0);
	arg_eq(&b, 2, 8);
	rule_end(&b, at);
	trap = b.n;
	emit(&b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_TRAP);
	emit(&b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
	if (b.overflow)
		return -1;
	/* Resolve L_TRAP and L_ALLOW into skips to the two returns at the end. */
	for (unsigned i = 0; i < trap; i++) {
		struct sock_filter *f = &b.p[i];

		if (BPF_CLASS(f->code) != BPF_JMP)
			continue;
		if (f->jt == L_TRAP || f->jt == L_ALLOW)
			f->jt = (uint8_t)(trap + (f->jt == L_ALLOW) - i - 1);
		if (f->jf == L_TRAP || f->jf == L_ALLOW)
			f->jf = (uint8_t)(trap + (f->jf == L_ALLOW) - i - 1);
		if (trap + 1 - i - 1 > 255)
			return -1;
	}
	return (int)b.n;
}

/* ---- the child, until it jumps into the stub -------------------------------------------- */

struct spawn {
	int ram_fd, shared_fd, elf_fd;
	const int *notify_fds; /* at STUB_NOTIFY_FD0... in the guest process */
	unsigned nnotify;
	unsigned nvcpus;
	pid_t parent;
	int exec_errno; /* the execve's failure, seen by hearth (the child shares its memory) */
};

static long raw(long nr, long a, long b, long c, long d, long e, long f)
{
	return syscall(nr, a, b, c, d, e, f);
}

/* glibc registered restartable sequences for hearth's thread, in its TLS; the kernel would
 * write there on every preemption, and kill the process once the stub has unmapped it. */
static bool rseq_unregister(void)
{
	void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
	const unsigned lens[] = {__rseq_size, 32};

	if (!__rseq_size)
		return true; /* none */
	for (unsigned i = 0; i < 2; i++)
		if (raw(SYS_rseq, (long)area, lens[i], RSEQ_FLAG_UNREGISTER_, RSEQ_SIG_, 0, 0) == 0)
			return true;
	return false;
}

/* The guest process's descriptors at their fixed numbers: guest RAM (3), with `exec` the
 * shared area (4) and the ELF to run (5), and the notify eventfds (6...). Each is moved out
 * of the way first, as any of them may already sit at another's number. Only system calls
 * (see the callers). */
static bool place_fds(const struct spawn *sp, bool exec)
{
	int from[3 + STUB_NOTIFY_FDS], to[3 + STUB_NOTIFY_FDS];
	unsigned n = 0;

	_Static_assert(STUB_NOTIFY_FD0 + STUB_NOTIFY_FDS <= FD_HIGH, "fixed descriptors overlap");
	from[n] = sp->ram_fd;
	to[n++] = STUB_RAM_FD;
	if (exec) {
		from[n] = sp->shared_fd;
		to[n++] = STUB_SHARED_FD;
		from[n] = sp->elf_fd;
		to[n++] = STUB_ELF_FD;
	}
	for (unsigned i = 0; i < sp->nnotify && i < STUB_NOTIFY_FDS; i++) {
		from[n] = sp->notify_fds[i];
		to[n++] = STUB_NOTIFY_FD0 + (int)i;
	}
	for (unsigned i = 0; i < n; i++) {
		from[i] = (int)raw(SYS_fcntl, from[i], F_DUPFD, FD_HIGH, 0, 0, 0);
		if (from[i] < 0)
			return false;
	}
	for (unsigned i = 0; i < n; i++)
		if (raw(SYS_dup2, from[i], to[i], 0, 0, 0, 0) != to[i])
			return false;
	return true;
}

/* Runs in the new process, on a copy of hearth: only system calls and memcpy here (another
 * thread of hearth may have held a lock at the fork). Any failure ends the child; hearth
 * sees it die before it reports in. */
static int child_main(void *arg)
{
	const struct spawn *sp = arg;
	uint64_t code = STUB_SLOT_VA + STUB_CODE_OFF;
	uint64_t shared = STUB_SLOT_VA + STUB_SHARED_OFF;
	uint64_t stacks = STUB_SLOT_VA + STUB_STACKS_OFF;
	uint64_t top0 = stacks + STUB_STACK_SIZE;
	size_t shared_len = (STUB_SHARED_SIZE + PAGE - 1) & ~(PAGE - 1);

	/* Whatever of hearth's lies in the slot goes first (its gaps stay inaccessible): the
	 * stub unmaps only what is outside it. */
	if (raw(SYS_mmap, (long)STUB_SLOT_VA, STUB_SLOT_SIZE, PROT_NONE,
	        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
	        0) != (long)STUB_SLOT_VA)
		_exit(110);
	if (raw(SYS_mmap, (long)code, STUB_CODE_MAX, PROT_READ | PROT_WRITE,
	        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != (long)code)
		_exit(110);
	memcpy((void *)code, stub_blob, (size_t)(stub_blob_end - stub_blob));
	if (raw(SYS_mprotect, (long)code, STUB_CODE_MAX, PROT_READ | PROT_EXEC, 0, 0, 0) ||
	    raw(SYS_mmap, (long)shared, (long)shared_len, PROT_READ | PROT_WRITE,
	        MAP_SHARED | MAP_FIXED, sp->shared_fd, 0) != (long)shared ||
	    raw(SYS_mmap, (long)stacks, (long)(sp->nvcpus * STUB_PER_VCPU), PROT_READ | PROT_WRITE,
	        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) != (long)stacks)
		_exit(111);
	/* No descriptor but guest RAM and the notify eventfds, at the numbers the filter
	 * pins. */
	if (!place_fds(sp, false) || raw(SYS_close_range, 0, STUB_RAM_FD - 1, 0, 0, 0, 0) ||
	    raw(SYS_close_range, STUB_RAM_FD + 1, STUB_NOTIFY_FD0 - 1, 0, 0, 0, 0) ||
	    raw(SYS_close_range, STUB_NOTIFY_FD0 + sp->nnotify, ~0U, 0, 0, 0, 0))
		_exit(112);
	if (raw(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0) ||
	    raw(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0, 0) ||
	    raw(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0) ||
	    raw(SYS_getppid, 0, 0, 0, 0, 0, 0) != sp->parent)
		_exit(113);
	if (!rseq_unregister())
		_exit(114);
	__asm__ volatile("mov %0, %%rsp\n"
	                 "call *%2\n"
	                 "ud2\n"
	                 :
	                 : "r"(top0), "D"(shared), "r"((uint64_t)STUB_ENTRY)
	                 : "memory");
	return 0;
}

/* The descriptors the stub expects (RAM, shared area, the ELF to run, the notify eventfds)
 * at 3, 4, 5 and 6..., and no other. */
static bool child_fds(const struct spawn *sp)
{
	return place_fds(sp, true) && raw(SYS_close_range, 0, STUB_RAM_FD - 1, 0, 0, 0, 0) == 0 &&
	       raw(SYS_close_range, STUB_NOTIFY_FD0 + sp->nnotify, ~0U, 0, 0, 0, 0) == 0 &&
	       raw(SYS_fcntl, STUB_ELF_FD, F_SETFD, FD_CLOEXEC, 0, 0, 0) == 0;
}

/* The child of clone(CLONE_VM | CLONE_VFORK): it runs on hearth's memory until its execve,
 * so only raw system calls here, and it reports a failure in `exec_errno`. */
static int child_exec(void *arg)
{
	struct spawn *sp = arg;
	char *const argv[] = {(char *)"hearth-guest", NULL};
	char *const envp[] = {NULL};

	if (!child_fds(sp) || raw(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0) ||
	    raw(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0) ||
	    raw(SYS_getppid, 0, 0, 0, 0, 0, 0) != sp->parent) {
		sp->exec_errno = errno ? errno : EINVAL;
		raw(SYS_exit, 112, 0, 0, 0, 0, 0);
	}
	raw(SYS_execveat, STUB_ELF_FD, (long)"", (long)argv, (long)envp, AT_EMPTY_PATH, 0);
	sp->exec_errno = errno;
	raw(SYS_exit, 115, 0, 0, 0, 0, 0);
	return 0;
}

/* The stub as an ELF in a memfd, or -1. */
static int stub_elf_fd(void)
{
	size_t len = (size_t)(stub_elf_end - stub_elf);
	int fd = memfd_create("hearth-stub", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -1;
	if (write(fd, stub_elf, len) != (ssize_t)len ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Start the guest process by executing the stub; false if the host refused the execve. */
static bool spawn_exec(struct proc_vm *p, struct spawn *sp, char *stack_top)
{
	pid_t pid;

	sp->elf_fd = stub_elf_fd();
	if (sp->elf_fd < 0)
		return false;
	sp->exec_errno = 0;
	pid = clone(child_exec, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, sp);
	close(sp->elf_fd);
	if (pid < 0)
		return false;
	if (__atomic_load_n(&sp->exec_errno, __ATOMIC_ACQUIRE)) {
		waitpid(pid, NULL, 0);
		log_info("process engine: execve of the stub failed (%s): the guest process "
		         "starts as a copy of hearth",
		         strerror(sp->exec_errno));
		return false;
	}
	p->pid = pid;
	return true;
}

/* ---- hearth's side ------------------------------------------------------------------------- */

/* vm.mmap_min_addr, in whole pages and at least one (page 0); where it cannot be read (a jail
 * without /proc), 64 KiB, the common distribution default, so that nothing is mapped where
 * the host might refuse it. */
static uint64_t host_min_va(void)
{
	unsigned long long v = 0;
	FILE *f = fopen("/proc/sys/vm/mmap_min_addr", "re");

	if (!f || fscanf(f, "%llu", &v) != 1)
		v = PROC_MIN_VA_FLOOR;
	if (f)
		fclose(f);
	if (v > MIN_VA_MAX)
		v = MIN_VA_MAX;
	v = (v + PAGE - 1) & ~(PAGE - 1);
	return v < PAGE ? PAGE : v;
}

static bool dead(const struct proc_vm *p)
{
	struct pollfd f = {.fd = p->pidfd, .events = POLLIN};

	return poll(&f, 1, 0) == 1;
}

/* Wait (a bounded time) until every vCPU thread of the guest reported in. */
static int wait_started(struct vm *vm, struct error *err)
{
	struct proc_vm *p = proc_of(vm);
	struct stub_vcpu *recs = stub_vcpus(p->shared);
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		const struct timespec slice = {0, 1000000}; /* to look for its death meanwhile */
		unsigned waiting = 0;

		while (waiting < vm->nvcpus &&
		       __atomic_load_n(&recs[waiting].exit_seq, __ATOMIC_ACQUIRE) != 0)
			waiting++;
		if (waiting == vm->nvcpus)
			return 0;
		if (dead(p)) {
			int status = 0;

			waitpid(p->pid, &status, WNOHANG);
			return err_set(err,
			               "process engine: the guest process ended while it started "
			               "(%s %d)",
			               WIFEXITED(status) ? "status" : "signal",
			               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > START_WAIT_S)
			return err_set(err, "process engine: the guest process did not start");
		/* The stub wakes this futex with its start exit. */
		syscall(SYS_futex, &recs[waiting].exit_seq, FUTEX_WAIT, 0, &slice, NULL, 0);
	}
}

int proc_spawn(struct vm *vm, struct error *err)
{
	enum { CHILD_STACK = 64 * 1024 };
	static char stack[CHILD_STACK] __attribute__((aligned(16)));
	struct proc_vm *p = proc_of(vm);
	struct spawn sp = {vm->mem.fd, -1, -1, p->notify_pool, 0, vm->nvcpus, getpid(), 0};
	size_t shared_len = (STUB_SHARED_SIZE + PAGE - 1) & ~(PAGE - 1);
	unsigned want;
	int n;

	if (vm->nvcpus > STUB_MAX_VCPUS)
		return err_set(err, "process engine: at most %d vCPUs", STUB_MAX_VCPUS);
	p->min_va = host_min_va();
	if ((size_t)(stub_blob_end - stub_blob) > STUB_CODE_MAX)
		return err_set(err, "process engine: the stub does not fit its slot");
	/* The queue-notify eventfds, made before the devices are (they come after the guest
	 * process starts), one per queue the configuration will have: the devices take them
	 * over when the VM binds their notifies (proc_attach_notify). Fewer when the host
	 * refuses more: the other queues' notifies take the trap path. */
	want = vm->cfg ? vm_queue_count(vm->cfg) : STUB_NOTIFY_FDS;
	while (p->npool < STUB_NOTIFY_FDS && p->npool < want) {
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (fd < 0)
			break;
		p->notify_pool[p->npool++] = fd;
	}
	sp.nnotify = p->npool;
	p->shared_fd = memfd_create("hearth-stub-shared", MFD_CLOEXEC);
	if (p->shared_fd < 0 || ftruncate(p->shared_fd, (off_t)shared_len) < 0)
		return err_set(err, "process engine: shared area: %s", strerror(errno));
	p->shared = mmap(NULL, shared_len, PROT_READ | PROT_WRITE, MAP_SHARED, p->shared_fd, 0);
	if (p->shared == MAP_FAILED) {
		p->shared = NULL;
		return err_set(err, "process engine: shared area: %s", strerror(errno));
	}
	p->shared->nvcpus = vm->nvcpus;
	p->shared->parent = sp.parent;
	p->fsgsbase = (getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE_) != 0;
	p->shared->fsgsbase = p->fsgsbase;
	n = proc_guest_filter((struct sock_filter *)p->shared->filter, STUB_FILTER_MAX, p->min_va);
	if (n < 0)
		return err_set(err, "process engine: the guest filter does not fit");
	p->shared->filter_len = (uint32_t)n;
	sp.shared_fd = p->shared_fd;
	/* The fallback: a copy of hearth (no CLONE_VM), of which nothing survives the stub's
	 * start-up but the slot. */
	if (!spawn_exec(p, &sp, stack + CHILD_STACK))
		p->pid = clone(child_main, stack + CHILD_STACK, SIGCHLD, &sp);
	if (p->pid < 0)
		return err_set(err, "process engine: cannot make the guest process: %s",
		               strerror(errno));
	p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	if (p->pidfd < 0)
		return err_set(err, "process engine: pidfd_open: %s", strerror(errno));
	return 0;
}

int proc_wait_started(struct vm *vm, struct error *err)
{
	return wait_started(vm, err);
}

void proc_kill(struct vm *vm)
{
	struct proc_vm *p = proc_of(vm);

	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
}
