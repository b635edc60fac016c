/*
 * The stub: the only code of hearth's in the guest process (backend/process/stub.h has the
 * slot's layout). Built freestanding, linked at STUB_SLOT_VA, copied there read-only and
 * executable when the guest process is made.
 *
 * Two ways in. hearth starts the guest process with execve of this code as a tiny static
 * ELF (stub_exec_entry: the kernel's fresh stack, fd 3 the guest RAM, fd 4 the shared
 * area, fds 6... the queue-notify eventfds), which maps the shared area and the stacks into
 * the slot and goes on as below; or, where the host refuses that, as a copy of hearth that
 * maps the slot and calls stub_start.
 *
 * Start-up (stub_start, on vCPU 0's stub stack): unmap everything outside the slot (all of
 * what the process inherited from hearth, the vDSO and vvar included), take the fault and
 * kick signals on per-thread signal stacks, start a thread per further vCPU, load the
 * seccomp filter hearth prepared on every thread, and raise a start trap on each thread.
 *
 * From then on the stub runs only in its signal handler: every fault, trap, refused system
 * call or kick of the guest becomes an exit record in the shared area; hearth answers with
 * the registers to resume with and the mappings to change; the handler makes those system
 * calls (the only ones the filter lets through, and only from here) and returns into the
 * guest. Nothing here trusts the shared area: it is the guest's to scribble on.
 *
 * One fault never reaches hearth: a queue notify it has taught the stub (stub.h: struct
 * stub_fast_notify). The handler writes the queue's eventfd (fd 6... in this process, the
 * ones hearth's VMM thread polls), steps over the store and returns into the guest.
 *
 * No libc, no globals (the code page is read-only), no FS or GS: the guest owns those. A
 * thread finds its context at the base of the signal stack it runs on.
 */
#include "stub.h"

#include <asm/unistd.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <stddef.h>

#define SIGILL_            4
#define SIGTRAP_           5
#define SIGBUS_            7
#define SIGFPE_            8
#define SIGUSR1_           10
#define SIGSEGV_           11
#define SIGSYS_            31
#define SA_SIGINFO_        0x4
#define SA_ONSTACK_        0x08000000
#define SA_RESTORER_       0x04000000
#define SIG_SETMASK_       2
#define MAP_SHARED_        0x01
#define MAP_PRIVATE_       0x02
#define MAP_FIXED_         0x10
#define MAP_ANON_          0x20
#define MAP_NORESERVE_     0x4000
#define MAP_POPULATE_      0x8000
#define PROT_RW_           0x3
#define PR_SET_DUMPABLE_   4
#define CAP_V3_            0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */
#define PR_SET_NAME_       15
#define ARCH_SET_GS_       0x1001
#define ARCH_SET_FS_       0x1002
#define CLONE_THREAD_FLAGS 0x50f00 /* VM | FS | FILES | SIGHAND | THREAD | SYSVSEM */
#define SPIN               1000    /* pause loops before a futex wait (~20 us) */
#define YIELD_EVERY                                                                                \
	64                   /* ... with a sched_yield now and then: on a shared CPU,              \
	                        hearth's thread may be what the wait is for */
#define UCONTEXT_GREGS   40  /* offset of uc_mcontext's registers in a ucontext */
#define UCONTEXT_FPREGS  224 /* ... and of its pointer to the FPU state */
#define FP_SW_OFF        464 /* the kernel's software header in the FXSAVE area */
#define FP_XSTATE_MAGIC1 0x46505853u
#define FXSAVE_LEN       512
#define USER_VA_END      0x7ffffffff000ULL /* the kernel's TASK_SIZE */
#define TRAP_PF          14
#define PF_W_            0x2
#define PF_RSVD_         0x8
#define PF_I_            0x10
#define EFLAGS_TF        0x100

struct ksigaction {
	void (*handler)(int, void *, void *);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

/* A thread's context, at the base of its signal stack. Set up before the guest runs; the
 * guest can write it later, and only hurts itself then (a bad FPU size is still bounded by
 * the frame, a wrong `fsgsbase` ends its process with SIGILL). */
struct tctx {
	struct stub_vcpu *v;
	uint32_t started;
	uint32_t xsave;    /* the kernel saves FPU state with XSAVE (CPUID.1:ECX.OSXSAVE) */
	uint32_t fsgsbase; /* rdfsbase/rdgsbase work here (stub_init.fsgsbase) */
};

static inline long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	long r;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ volatile("syscall"
	                 : "=a"(r)
	                 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
	                 : "rcx", "r11", "memory");
	return r;
}

#define sys(nr, a, b, c) sys6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)

static inline uint64_t slot(uint64_t off)
{
	return STUB_SLOT_VA + off;
}

static struct stub_init *init_area(void)
{
	return (struct stub_init *)slot(STUB_SHARED_OFF);
}

static uint64_t stack_top(unsigned k)
{
	return slot(STUB_STACKS_OFF) + k * STUB_PER_VCPU + STUB_STACK_SIZE;
}

static uint64_t altstack_base(unsigned k)
{
	return stack_top(k);
}

static struct tctx *self(void)
{
	uint64_t sp;

	__asm__ volatile("mov %%rsp, %0" : "=r"(sp));
	return (struct tctx *)(sp & ~(STUB_STACK_SIZE - 1));
}

static void futex_wait(uint32_t *w, uint32_t old)
{
	sys6(__NR_futex, (long)w, FUTEX_WAIT, old, 0, 0, 0);
}

static void futex_wake(uint32_t *w)
{
	sys6(__NR_futex, (long)w, FUTEX_WAKE, 1, 0, 0, 0);
}

static __attribute__((noreturn)) void die(long code)
{
	for (;;)
		sys(__NR_exit_group, code, 0, 0);
}

/* Run hearth's list of changes; report the first failure in the next exit. */
static void run_ops(struct stub_vcpu *v)
{
	uint32_t n = v->reply.nops;

	if (n > STUB_MAX_OPS)
		n = STUB_MAX_OPS;
	for (uint32_t i = 0; i < n; i++) {
		const struct stub_op *o = &v->reply.ops[i];
		long r = 0;

		switch (o->kind) {
		case STUB_OP_MMAP:
			/* A 4 KiB page is populated at once: it is about to be used (a fault or an
			 * invlpg asked for it), and a fault would cost more than the mapping. */
			r = sys6(__NR_mmap, (long)o->addr, (long)o->len, o->prot,
			         MAP_SHARED_ | MAP_FIXED_ |
			             (o->prot && o->len == 4096 ? MAP_POPULATE_ : 0),
			         STUB_RAM_FD, (long)o->off);
			break;
		case STUB_OP_MUNMAP:
			r = sys(__NR_munmap, o->addr, o->len, 0);
			break;
		case STUB_OP_MPROTECT:
			r = sys(__NR_mprotect, o->addr, o->len, o->prot);
			break;
		case STUB_OP_SET_FS:
			r = sys(__NR_arch_prctl, ARCH_SET_FS_, o->addr, 0);
			break;
		case STUB_OP_SET_GS:
			r = sys(__NR_arch_prctl, ARCH_SET_GS_, o->addr, 0);
			break;
		default:
			r = -22;
			break;
		}
		if (r < 0 && r > -4096 && !v->exit.op_error)
			v->exit.op_error = r;
	}
}

static void copy_bytes(void *dst, const void *src, uint64_t n)
{
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

/* The kernel saves FPU state with XSAVE only with CR4.OSXSAVE, which CPUID.1:ECX bit 27
 * reflects. Asked once per thread: a cpuid costs ~3000 cycles on a host that is itself a
 * guest (the hypervisor takes it), a tenth of a whole trap. */
static uint32_t os_xsave(void)
{
	uint32_t eax = 1, ecx = 0;

	__asm__ volatile("cpuid" : "+a"(eax), "+c"(ecx) : : "ebx", "edx");
	return (ecx >> 27) & 1;
}

/* The size of the FPU state the kernel saved at `fp`: XSAVE with the kernel's software
 * header (magic1, extended_size, ...), or plain FXSAVE. The kernel writes magic1 and
 * extended_size (which counts a trailing magic2) also on a CPU without XSAVE, where only
 * the FXSAVE area is in the frame. */
static uint32_t fp_size(const uint8_t *fp, uint64_t frame_end, uint32_t xsave)
{
	const uint32_t *sw = (const uint32_t *)(fp + FP_SW_OFF);
	uint32_t n = sw[0] == FP_XSTATE_MAGIC1 && xsave ? sw[1] : FXSAVE_LEN;

	return (uint64_t)fp + n <= frame_end ? n : 0; /* never past the signal stack */
}

/* A queue notify hearth has seen before (stub.h: struct stub_fast_notify): a write page
 * fault (not a fetch, not a reserved bit, not single-stepped) whose address and instruction
 * match an entry. Signal the queue's eventfd and step over the store; false: an exit. */
static int fast_notify(struct stub_vcpu *v, const uint8_t *si, uint64_t *g)
{
	uint64_t addr = *(const uint64_t *)(si + 16), rip = g[SG_RIP], one = 1;

	if (g[SG_TRAPNO] != TRAP_PF || (g[SG_ERR] & (PF_W_ | PF_RSVD_ | PF_I_)) != PF_W_ ||
	    (g[SG_EFL] & EFLAGS_TF))
		return 0;
	for (unsigned i = 0; i < STUB_FAST_MAX; i++) {
		struct stub_fast_notify e;
		unsigned len;
		int fd;

		if (__atomic_load_n(&v->fast[i].rip, __ATOMIC_RELAXED) != rip)
			continue;
		copy_bytes(&e, &v->fast[i], sizeof(e));
		len = stub_fast_check(&e, rip, addr, g, &fd);
		if (!len)
			continue;
		if (sys(__NR_write, fd, &one, sizeof(one)) != (long)sizeof(one))
			return 0; /* hearth's trap path does it, or says why not */
		g[SG_RIP] = rip + len;
		__atomic_add_fetch(&v->fast_notifies, 1, __ATOMIC_RELAXED);
		return 1;
	}
	return 0;
}

/* Every fault, trap, refused system call and kick of the guest lands here. */
static void handler(int sig, void *info, void *uc)
{
	struct tctx *t = self();
	struct stub_vcpu *v = t->v;
	uint64_t *g = (uint64_t *)((char *)uc + UCONTEXT_GREGS);
	const uint8_t *si = info;
	uint8_t *fp;
	uint32_t seq, n;
	int start;

	if (sig == SIGSEGV_ && t->started && fast_notify(v, si, g))
		return;
	start = !t->started;
	v->exit.kind = start ? STUB_EXIT_START : STUB_EXIT_SIGNAL;
	t->started = 1;
	v->exit.signo = (uint32_t)sig;
	v->exit.code = *(const uint32_t *)(si + 8);
	v->exit.addr = *(const uint64_t *)(si + 16);
	v->exit.syscall_nr = sig == SIGSYS_ ? *(const uint32_t *)(si + 24) : 0;
	v->exit.syscall_arch = sig == SIGSYS_ ? *(const uint32_t *)(si + 28) : 0;
	for (unsigned i = 0; i < SG_COUNT; i++)
		v->exit.gregs[i] = g[i];
	/* The guest may have set them itself (wrfsbase, wrgsbase run natively here). */
	if (t->fsgsbase) {
		uint64_t fs, gs;

		__asm__ volatile("rdfsbase %0" : "=r"(fs));
		__asm__ volatile("rdgsbase %0" : "=r"(gs));
		v->exit.fs_base = fs;
		v->exit.gs_base = gs;
	}
	fp = *(uint8_t **)((char *)uc + UCONTEXT_FPREGS);
	n = fp ? fp_size(fp, (uint64_t)t + STUB_STACK_SIZE, t->xsave) : 0;
	v->fp_len = n <= STUB_FP_MAX ? n : 0;
	if (v->fp_len)
		copy_bytes(v->fpstate, fp, n);
	seq = __atomic_load_n(&v->reply_seq, __ATOMIC_ACQUIRE);
	/* (a locked add: a full barrier before the flag is read; the start always wakes, as
	 * hearth's start-up wait does not say it sleeps) */
	__atomic_add_fetch(&v->exit_seq, 1, __ATOMIC_SEQ_CST);
	if (start || __atomic_load_n(&v->hearth_sleeps, __ATOMIC_ACQUIRE))
		futex_wake(&v->exit_seq);
	for (unsigned i = 0; __atomic_load_n(&v->reply_seq, __ATOMIC_ACQUIRE) == seq; i++) {
		if (i < SPIN && ((i % YIELD_EVERY) != YIELD_EVERY - 1 ||
		                 __atomic_load_n(&v->apart, __ATOMIC_RELAXED))) {
			__asm__ volatile("pause");
		} else if (i < SPIN) {
			sys(__NR_sched_yield, 0, 0, 0);
		} else {
			__atomic_store_n(&v->stub_sleeps, 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&v->reply_seq, __ATOMIC_SEQ_CST) == seq)
				futex_wait(&v->reply_seq, seq);
			__atomic_store_n(&v->stub_sleeps, 0, __ATOMIC_RELAXED);
		}
	}
	v->exit.op_error = 0;
	if (v->reply.command != STUB_RESUME)
		die(0);
	run_ops(v);
	for (unsigned i = 0; i < SG_RESUME; i++)
		g[i] = v->reply.gregs[i];
	/* A snapshot's FPU state, of the size this host's kernel uses (the kernel checks the
	 * rest at sigreturn: a bad one ends the guest process). */
	if (v->reply.load_fpu && fp && v->fp_len == n && n)
		copy_bytes(fp, v->fpstate, n);
}

/* The signal return, as the kernel expects it (SA_RESTORER). */
__asm__(".text\n"
        "stub_restorer:\n"
        "	mov $15, %eax\n" /* __NR_rt_sigreturn */
        "	syscall\n"
        "	ud2\n");
__attribute__((visibility("hidden"))) void stub_restorer(void);

/* A vCPU thread's set-up: its signal stack and context, its record, the signals. */
static void thread_setup(unsigned k)
{
	struct stub_vcpu *v = stub_vcpus(init_area()) + k;
	struct {
		uint64_t sp;
		int flags;
		int pad;
		uint64_t size;
	} ss = {altstack_base(k), 0, 0, STUB_STACK_SIZE};
	struct tctx *t = (struct tctx *)altstack_base(k);
	unsigned long mask = 0;

	t->v = v;
	t->started = 0;
	t->xsave = os_xsave();
	t->fsgsbase = init_area()->fsgsbase == 1;
	if (sys(__NR_sigaltstack, &ss, 0, 0) < 0)
		die(120);
	v->tid = (uint32_t)sys(__NR_gettid, 0, 0, 0);
	if (sys6(__NR_rt_sigprocmask, SIG_SETMASK_, (long)&mask, 0, 8, 0, 0) < 0)
		die(121);
}

/* Wait for the filter, then the start trap: hearth answers with the first state. */
static __attribute__((noreturn)) void thread_go(void)
{
	while (!__atomic_load_n(&init_area()->ready, __ATOMIC_ACQUIRE))
		futex_wait(&init_area()->ready, 0);
	__asm__ volatile("ud2");
	die(122);
}

/* A further vCPU's thread: set up (the filter refuses what that needs), then go. */
static __attribute__((noreturn)) void thread_main(unsigned k)
{
	thread_setup(k);
	__atomic_add_fetch(&init_area()->up, 1, __ATOMIC_RELEASE);
	futex_wake(&init_area()->up);
	thread_go();
}

/* clone() for a thread: the child starts on `stack` with thread_main(k) on it. */
static long spawn_thread(unsigned k, uint64_t stack)
{
	long r;
	register long r10 __asm__("r10") = 0;
	register long r8 __asm__("r8") = 0;

	stack -= 16;
	*(uint64_t *)stack = k;
	__asm__ volatile("syscall\n"
	                 "test %%rax, %%rax\n"
	                 "jnz 1f\n"
	                 "mov (%%rsp), %%rdi\n"
	                 "call *%[fn]\n"
	                 "ud2\n"
	                 "1:\n"
	                 : "=a"(r)
	                 : "a"(__NR_clone), "D"(CLONE_THREAD_FLAGS), "S"(stack), "d"(0), "r"(r10),
	                   "r"(r8), [fn] "r"(thread_main)
	                 : "rcx", "r11", "memory");
	return r;
}

__attribute__((section(".text.entry"), noreturn, used)) void stub_start(struct stub_init *in);

/* After execve: no core dumps from here on (execve made the process dumpable again), the
 * shared area and the stubs' stacks into the slot, hearth still the parent (it asked the
 * kernel to kill this process when it ends, which it may have done before that took). */
__attribute__((noreturn, used)) void stub_exec_main(void)
{
	struct stub_init *in = init_area();
	uint64_t len = (STUB_SHARED_SIZE + 4095) & ~4095ULL;
	uint64_t top0 = stack_top(0);
	uint32_t n;

	if (sys(__NR_prctl, PR_SET_DUMPABLE_, 0, 0) != 0)
		die(130);
	/* (execve named it after the memfd) */
	sys(__NR_prctl, PR_SET_NAME_, "hearth-guest", 0);
	if (sys6(__NR_mmap, (long)in, (long)len, PROT_RW_, MAP_SHARED_ | MAP_FIXED_, STUB_SHARED_FD,
	         0) != (long)in)
		die(131);
	sys(__NR_close, STUB_SHARED_FD, 0, 0);
	n = __atomic_load_n(&in->nvcpus, __ATOMIC_RELAXED);
	if (n == 0 || n > STUB_MAX_VCPUS)
		die(132);
	if (sys6(__NR_mmap, (long)slot(STUB_STACKS_OFF), (long)(n * STUB_PER_VCPU), PROT_RW_,
	         MAP_PRIVATE_ | MAP_ANON_ | MAP_FIXED_ | MAP_NORESERVE_, -1,
	         0) != (long)slot(STUB_STACKS_OFF))
		die(133);
	if (sys(__NR_getppid, 0, 0, 0) != in->parent)
		die(134);
	__asm__ volatile("mov %0, %%rsp\n"
	                 "call *%2\n"
	                 "ud2\n"
	                 :
	                 : "r"(top0), "D"(in), "r"(stub_start)
	                 : "memory");
	__builtin_unreachable();
}

/* The ELF's entry point: the kernel leaves the stack 16-byte aligned, as a call expects
 * before it pushes the return address. */
__asm__(".text\n"
        ".globl stub_exec_entry\n"
        "stub_exec_entry:\n"
        "	xor %ebp, %ebp\n"
        "	and $-16, %rsp\n"
        "	call stub_exec_main\n"
        "	ud2\n");

__attribute__((section(".text.entry"), noreturn, used)) void stub_start(struct stub_init *in)
{
	static const int sigs[] = {SIGSEGV_, SIGBUS_, SIGILL_, SIGFPE_,
	                           SIGTRAP_, SIGSYS_, SIGUSR1_};
	struct ksigaction sa = {handler, SA_SIGINFO_ | SA_ONSTACK_ | SA_RESTORER_, stub_restorer,
	                        ~0UL};
	struct {
		unsigned short len;
		const void *filter;
	} prog = {(unsigned short)in->filter_len, in->filter};
	uint32_t n = in->nvcpus;
	struct {
		uint32_t version;
		int pid;
	} cap_head = {CAP_V3_, 0};
	uint32_t cap_none[6] = {0}; /* effective, permitted, inheritable; two 32-bit words each */

	/* No capability, in this thread and so in the vCPU threads it makes: were hearth root,
	 * CAP_SYS_RAWIO would let a guest map RAM below vm.mmap_min_addr (the host kernel's
	 * guard against NULL-pointer bugs), and the rest is of no use here either. */
	if (sys(__NR_capset, &cap_head, cap_none, 0) != 0)
		die(122);
	/* Nothing of hearth stays: everything outside the slot goes, the vDSO included. */
	sys(__NR_munmap, 0x1000, STUB_SLOT_VA - 0x1000, 0);
	sys(__NR_munmap, STUB_SLOT_VA + STUB_SLOT_SIZE, USER_VA_END - STUB_SLOT_VA - STUB_SLOT_SIZE,
	    0);
	if (n == 0 || n > STUB_MAX_VCPUS)
		die(123);
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sys6(__NR_rt_sigaction, sigs[i], (long)&sa, 0, 8, 0, 0) < 0)
			die(124);
	thread_setup(0);
	for (unsigned k = 1; k < n; k++)
		if (spawn_thread(k, stack_top(k)) < 0)
			die(125);
	for (uint32_t up; (up = __atomic_load_n(&in->up, __ATOMIC_ACQUIRE)) < n - 1;)
		futex_wait(&in->up, up);
	if (sys(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
		die(126);
	__atomic_store_n(&in->ready, 1, __ATOMIC_RELEASE);
	sys6(__NR_futex, (long)&in->ready, FUTEX_WAKE, (long)n, 0, 0, 0);
	thread_go();
}
