/*
 * The host side of the trap benchmark (bench/process.sh). In the process engine a privileged
 * instruction of the guest kernel faults in user mode, the kernel delivers SIGSEGV to the
 * stub in the guest process, and hearth emulates the instruction. This program times the
 * bare part of that round trip in one process: the same instruction in user mode, a SIGSEGV
 * handler that only steps RIP over it (in the ucontext), and the return through
 * rt_sigreturn. Modes:
 *
 *   cr0       mov %cr0, %rax (#GP in user mode; mapguest's cr0reads)
 *   out       outb %al, $0x80 (#GP without ioperm; mapguest's ioexits)
 *   hlt       hlt (#GP)
 *   syscall   getppid(2): a plain system call, the kernel entry and exit alone
 *   pingpong  the hand-off the engine adds to a trap, without the signal: this process and
 *             a child pass a counter in shared memory back and forth, each side bumping it,
 *             waking the other with FUTEX_WAKE and polling (4000 x pause) before a
 *             FUTEX_WAIT, as the stub and hearth's vCPU thread do. One loop = one hand-off
 *             each way. Placed by the scheduler, as the engine's two threads are.
 *   pingpong-apart   the same, the two sides pinned to two different CPUs (the first two
 *             this process may use; skipped with one CPU)
 *   pingpong-same    the same, both sides pinned to one CPU: every poll runs out before the
 *             other side can run
 *
 *   trap_host: MODE=N cycles=C ns=T
 *
 * (cycles: TSC ticks over the N round trips, rdtsc; ns: CLOCK_MONOTONIC over them.)
 *
 * Usage: trap_host [N [MODE...]]   (default 20000, every mode)
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define SPIN 4000 /* pause loops before a futex wait (the stub's SPIN) */

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The faulting instruction of the current mode: its bytes, so that the handler checks it
 * stepped over the right one. */
static const uint8_t *insn;
static size_t insn_len;
static volatile uint64_t faults;

static const uint8_t insn_cr0[] = {0x0f, 0x20, 0xc0}; /* mov %cr0, %rax */
static const uint8_t insn_out[] = {0xe6, 0x80};       /* out %al, $0x80 */
static const uint8_t insn_hlt[] = {0xf4};             /* hlt */

static void on_segv(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	uint8_t *rip = (uint8_t *)uc->uc_mcontext.gregs[REG_RIP];

	(void)sig;
	(void)si;
	if (!insn || memcmp(rip, insn, insn_len) != 0) {
		static const char msg[] = "trap_host: SIGSEGV at an unexpected instruction\n";

		if (write(2, msg, sizeof(msg) - 1) < 0) {
			/* nothing else to tell */
		}
		_exit(3);
	}
	uc->uc_mcontext.gregs[REG_RIP] += (greg_t)insn_len;
	faults++;
}

static void report(const char *mode, uint64_t n, uint64_t cycles, uint64_t ns)
{
	printf("trap_host: %s=%llu cycles=%llu ns=%llu\n", mode, (unsigned long long)n,
	       (unsigned long long)cycles, (unsigned long long)ns);
}

/* One faulting instruction per iteration; the compiler cannot move or merge them. */
static void run_insn(char mode, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		switch (mode) {
		case 'c': {
			uint64_t v;

			__asm__ volatile("mov %%cr0, %0" : "=a"(v) : : "memory");
			(void)v;
			break;
		}
		case 'o':
			__asm__ volatile("out %%al, $0x80" : : "a"(0) : "memory");
			break;
		default:
			__asm__ volatile("hlt" : : : "memory");
			break;
		}
	}
}

static int trap_mode(const char *name, uint64_t n)
{
	uint64_t t0, t1, n0, n1, warm = n / 10 + 1;
	char mode = name[0];

	if (mode == 'c') {
		insn = insn_cr0;
		insn_len = sizeof(insn_cr0);
	} else if (mode == 'o') {
		insn = insn_out;
		insn_len = sizeof(insn_out);
	} else {
		insn = insn_hlt;
		insn_len = sizeof(insn_hlt);
	}
	run_insn(mode, warm);
	faults = 0;
	n0 = now_ns();
	t0 = rdtsc();
	run_insn(mode, n);
	t1 = rdtsc();
	n1 = now_ns();
	if (faults != n) {
		fprintf(stderr, "trap_host: %s: %llu faults for %llu instructions\n", name,
		        (unsigned long long)faults, (unsigned long long)n);
		return 1;
	}
	report(name, n, t1 - t0, n1 - n0);
	return 0;
}

static int syscall_mode(uint64_t n)
{
	uint64_t t0, t1, n0, n1;

	for (uint64_t i = 0; i < n / 10 + 1; i++)
		syscall(SYS_getppid);
	n0 = now_ns();
	t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++)
		syscall(SYS_getppid);
	t1 = rdtsc();
	n1 = now_ns();
	report("syscall", n, t1 - t0, n1 - n0);
	return 0;
}

static long futex(uint32_t *w, int op, uint32_t val)
{
	return syscall(SYS_futex, w, op, val, NULL, NULL, 0);
}

/* Wait until *w is no longer `old`: poll, then sleep. */
static void await_change(uint32_t *w, uint32_t old)
{
	for (unsigned i = 0; __atomic_load_n(w, __ATOMIC_ACQUIRE) == old; i++) {
		if (i < SPIN)
			__asm__ volatile("pause");
		else
			futex(w, FUTEX_WAIT, old);
	}
}

static void bump(uint32_t *w)
{
	__atomic_add_fetch(w, 1, __ATOMIC_RELEASE);
	futex(w, FUTEX_WAKE, 1);
}

/* Pin the calling process to one CPU. */
static int pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

/* The parent plays the stub (it posts an exit and waits for the reply), the child plays
 * hearth's vCPU thread. Two words in a MAP_SHARED page, as the engine's shared records.
 * where: 0 = the scheduler's choice, 1 = two CPUs, 2 = one CPU. */
static int pingpong_mode(const char *name, uint64_t n, int where)
{
	uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t t0 = 0, t1, n0 = 0, n1, warm = n / 10 + 1;
	int status, cpu[2] = {-1, -1}, found = 0;
	uint32_t *exit_seq, *reply_seq;
	cpu_set_t allowed;
	pid_t pid;

	if (w == MAP_FAILED) {
		perror("trap_host: mmap");
		return 1;
	}
	if (where) {
		if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0) {
			perror("trap_host: sched_getaffinity");
			return 1;
		}
		for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
			if (CPU_ISSET(c, &allowed))
				cpu[found++] = c;
		if (where == 1 && found < 2) {
			printf("trap_host: %s skipped (one CPU)\n", name);
			return 0;
		}
		if (where == 2)
			cpu[1] = cpu[0];
	}
	exit_seq = &w[0];
	reply_seq = &w[16]; /* another cache line */
	pid = fork();
	if (pid < 0) {
		perror("trap_host: fork");
		return 1;
	}
	if (pid == 0) {
		if (where && pin(cpu[1]) < 0)
			_exit(1);
		for (uint32_t seen = 0; seen < warm + n; seen++) {
			await_change(exit_seq, seen);
			bump(reply_seq);
		}
		_exit(0);
	}
	if (where && pin(cpu[0]) < 0) {
		perror("trap_host: sched_setaffinity");
		return 1;
	}
	for (uint64_t i = 0; i < warm + n; i++) {
		uint32_t seq = __atomic_load_n(reply_seq, __ATOMIC_ACQUIRE);

		if (i == warm) {
			n0 = now_ns();
			t0 = rdtsc();
		}
		bump(exit_seq);
		await_change(reply_seq, seq);
	}
	t1 = rdtsc();
	n1 = now_ns();
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "trap_host: %s: the child failed\n", name);
		return 1;
	}
	munmap(w, 4096);
	if (where) { /* back to every CPU for the next mode */
		if (sched_setaffinity(0, sizeof(allowed), &allowed) < 0) {
			perror("trap_host: sched_setaffinity");
			return 1;
		}
	}
	report(name, n, t1 - t0, n1 - n0);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const all[] = {
	    "cr0", "out", "hlt", "syscall", "pingpong", "pingpong-apart", "pingpong-same"};
	const int nall = (int)(sizeof(all) / sizeof(all[0]));
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 20000;
	struct sigaction sa;
	int rc = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) < 0) {
		perror("trap_host: sigaction");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < (argc > 2 ? argc - 2 : nall) && !rc; i++) {
		const char *m = argc > 2 ? argv[i + 2] : all[i];

		if (!strcmp(m, "cr0") || !strcmp(m, "out") || !strcmp(m, "hlt"))
			rc = trap_mode(m, n);
		else if (!strcmp(m, "syscall"))
			rc = syscall_mode(n);
		else if (!strcmp(m, "pingpong"))
			rc = pingpong_mode(m, n, 0);
		else if (!strcmp(m, "pingpong-apart"))
			rc = pingpong_mode(m, n, 1);
		else if (!strcmp(m, "pingpong-same"))
			rc = pingpong_mode(m, n, 2);
		else {
			fprintf(stderr, "trap_host: unknown mode %s\n", m);
			rc = 2;
		}
	}
	return rc;
}
