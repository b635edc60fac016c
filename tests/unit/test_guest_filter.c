/*
 * The process engine's guest-process filter (backend/process/guest_proc.c: proc_guest_filter):
 * run on crafted seccomp_data by a small classic-BPF interpreter (every argument's high and
 * low word, the instruction-pointer window, the mmap flags with and without MAP_POPULATE,
 * the write rule of the queue-notify eventfds), and loaded into the kernel in forked
 * children that make system calls from code at the stub's address (the kernel accepts the
 * program, and allows or traps as the interpreter says).
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/process/process.h"

#define CODE      (STUB_SLOT_VA + STUB_CODE_OFF)
#define IP        (CODE + 0x100) /* a syscall instruction of the stub's */
#define TRAP      SECCOMP_RET_TRAP
#define ALLOW     SECCOMP_RET_ALLOW
#define SET_FS    0x1002
#define GET_FS    0x1003
#define GUEST_END STUB_GUEST_VA_END
#define MAP_2M    STUB_MAP_MAX
#define MIN_VA    0x10000ULL /* vm.mmap_min_addr as Debian sets it */

static struct sock_filter prog[STUB_FILTER_MAX];
static unsigned prog_len;

static int setup(void **state)
{
	int n = proc_guest_filter(prog, STUB_FILTER_MAX, MIN_VA);

	(void)state;
	if (n <= 0)
		return -1;
	prog_len = (unsigned)n;
	return 0;
}

/* Classic BPF as the kernel runs a seccomp filter, for the instructions the filter uses;
 * anything else, or a jump out of the program, fails the test. */
static uint32_t run(const struct seccomp_data *d)
{
	uint32_t a = 0;

	for (unsigned pc = 0; pc < prog_len; pc++) {
		const struct sock_filter *f = &prog[pc];
		uint32_t k = f->k;
		bool t;

		switch (f->code) {
		case BPF_LD | BPF_W | BPF_ABS:
			assert_true(k % 4 == 0 && k + 4 <= sizeof(*d));
			memcpy(&a, (const uint8_t *)d + k, 4);
			continue;
		case BPF_ALU | BPF_AND | BPF_K:
			a &= k;
			continue;
		case BPF_RET | BPF_K:
			return k;
		case BPF_JMP | BPF_JEQ | BPF_K:
			t = a == k;
			break;
		case BPF_JMP | BPF_JGT | BPF_K:
			t = a > k;
			break;
		case BPF_JMP | BPF_JGE | BPF_K:
			t = a >= k;
			break;
		case BPF_JMP | BPF_JSET | BPF_K:
			t = (a & k) != 0;
			break;
		case BPF_JMP | BPF_JA:
			pc += k;
			assert_true(pc + 1 < prog_len);
			continue;
		default:
			fail_msg("instruction %u: code 0x%x", pc, f->code);
			return 0;
		}
		pc += t ? f->jt : f->jf;
		assert_true(pc + 1 < prog_len);
	}
	fail_msg("the filter ran off its end");
	return 0;
}

static uint32_t call_at(uint64_t ip, int nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                        uint64_t a4, uint64_t a5)
{
	struct seccomp_data d = {.nr = nr,
	                         .arch = AUDIT_ARCH_X86_64,
	                         .instruction_pointer = ip,
	                         .args = {a0, a1, a2, a3, a4, a5}};

	return run(&d);
}

static uint32_t call(int nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                     uint64_t a5)
{
	return call_at(IP, nr, a0, a1, a2, a3, a4, a5);
}

static void test_abi_and_ip(void **state)
{
	struct seccomp_data d = {
	    .nr = SYS_sched_yield, .arch = AUDIT_ARCH_I386, .instruction_pointer = IP};

	(void)state;
	assert_int_equal(run(&d), TRAP); /* int $0x80 */
	d.arch = AUDIT_ARCH_X86_64;
	assert_int_equal(run(&d), ALLOW);
	/* the guest's own syscall, anywhere but the stub's code: the kernel gives the address
	 * after the instruction, so one that ends at the code's first byte (a guest's, mapped
	 * just below the slot) is not the stub's */
	assert_int_equal(call_at(0x401000, SYS_sched_yield, 0, 0, 0, 0, 0, 0), TRAP);
	assert_int_equal(call_at(CODE - 1, SYS_sched_yield, 0, 0, 0, 0, 0, 0), TRAP);
	assert_int_equal(call_at(CODE, SYS_sched_yield, 0, 0, 0, 0, 0, 0), TRAP);
	assert_int_equal(call_at(CODE + 1, SYS_sched_yield, 0, 0, 0, 0, 0, 0), ALLOW);
	assert_int_equal(call_at(CODE + STUB_CODE_MAX, SYS_sched_yield, 0, 0, 0, 0, 0, 0), ALLOW);
	assert_int_equal(call_at(CODE + STUB_CODE_MAX + 1, SYS_sched_yield, 0, 0, 0, 0, 0, 0),
	                 TRAP);
	assert_int_equal(
	    call_at((IP & 0xffffffffULL) | (1ULL << 32), SYS_sched_yield, 0, 0, 0, 0, 0, 0), TRAP);
	assert_int_equal(call_at(0x401000, SYS_write, 6, 0x1000, 8, 0, 0, 0), TRAP);
	/* what the stub never makes */
	assert_int_equal(call(SYS_read, 6, 0x1000, 8, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_openat, 0, 0x1000, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_ioctl, 3, 0, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_clone, 0, 0, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_execve, 0, 0, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_seccomp, 0, 0, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_kill, 1, 9, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_pwrite64, 6, 0x1000, 8, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_writev, 6, 0x1000, 1, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_rt_sigreturn, 0, 0, 0, 0, 0, 0), ALLOW);
	assert_int_equal(call(SYS_exit_group, 0, 0, 0, 0, 0, 0), ALLOW);
}

static void test_futex_arch_prctl(void **state)
{
	(void)state;
	assert_int_equal(call(SYS_futex, 0x1000, FUTEX_WAIT, 0, 0, 0, 0), ALLOW);
	assert_int_equal(call(SYS_futex, 0x1000, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0, 0, 0),
	                 ALLOW);
	assert_int_equal(call(SYS_futex, 0x1000, FUTEX_REQUEUE, 1, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_futex, 0x1000, FUTEX_LOCK_PI, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_arch_prctl, SET_FS, 0x1000, 0, 0, 0, 0), ALLOW);
	assert_int_equal(call(SYS_arch_prctl, GET_FS, 0x1000, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_arch_prctl, SET_FS | (1ULL << 32), 0x1000, 0, 0, 0, 0), TRAP);
}

static void test_mmap(void **state)
{
	const uint64_t sf = MAP_SHARED | MAP_FIXED, rwx = PROT_READ | PROT_WRITE | PROT_EXEC;

	(void)state;
	assert_int_equal(call(SYS_mmap, 0x200000, 4096, rwx, sf, STUB_RAM_FD, 0), ALLOW);
	/* MAP_POPULATE (the stub's 4 KiB mappings), and nothing else besides */
	assert_int_equal(
	    call(SYS_mmap, 0x200000, 4096, PROT_READ, sf | MAP_POPULATE, STUB_RAM_FD, 0), ALLOW);
	assert_int_equal(
	    call(SYS_mmap, 0x200000, 4096, PROT_READ, MAP_SHARED | MAP_POPULATE, STUB_RAM_FD, 0),
	    TRAP);
	assert_int_equal(call(SYS_mmap, 0x200000, 4096, PROT_READ, MAP_POPULATE, STUB_RAM_FD, 0),
	                 TRAP);
	assert_int_equal(
	    call(SYS_mmap, 0x200000, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, STUB_RAM_FD, 0),
	    TRAP);
	assert_int_equal(
	    call(SYS_mmap, 0x200000, 4096, PROT_READ, sf | MAP_ANONYMOUS, STUB_RAM_FD, 0), TRAP);
	assert_int_equal(call(SYS_mmap, 0x200000, 4096, PROT_READ,
	                      sf | MAP_POPULATE | MAP_GROWSDOWN, STUB_RAM_FD, 0),
	                 TRAP);
	assert_int_equal(call(SYS_mmap, 0x200000, 4096, PROT_READ,
	                      0x03 /* MAP_SHARED_VALIDATE */ | MAP_FIXED, STUB_RAM_FD, 0),
	                 TRAP);
	assert_int_equal(
	    call(SYS_mmap, 0x200000, 4096, PROT_READ, sf | (1ULL << 32), STUB_RAM_FD, 0), TRAP);
	/* only the guest-RAM memfd */
	assert_int_equal(call(SYS_mmap, 0x200000, 4096, PROT_READ, sf, STUB_RAM_FD + 1, 0), TRAP);
	assert_int_equal(call(SYS_mmap, 0x200000, 4096, PROT_READ, sf, STUB_NOTIFY_FD0, 0), TRAP);
	assert_int_equal(
	    call(SYS_mmap, 0x200000, 4096, PROT_READ, sf, STUB_RAM_FD | (1ULL << 32), 0), TRAP);
	/* rights within rwx */
	assert_int_equal(call(SYS_mmap, 0x200000, 4096, 8, sf, STUB_RAM_FD, 0), TRAP);
	assert_int_equal(
	    call(SYS_mmap, 0x200000, 4096, PROT_READ | PROT_GROWSDOWN, sf, STUB_RAM_FD, 0), TRAP);
	/* below the slot, at most 2 MiB; a page up to the last below it (the stub maps pages
	 * anywhere in the last 2 MiB) */
	assert_int_equal(call(SYS_mmap, GUEST_END - MAP_2M, MAP_2M, PROT_READ, sf, STUB_RAM_FD, 0),
	                 ALLOW);
	assert_int_equal(
	    call(SYS_mmap, GUEST_END - MAP_2M + 4096, MAP_2M, PROT_READ, sf, STUB_RAM_FD, 0), TRAP);
	assert_int_equal(call(SYS_mmap, GUEST_END - 4096, 4096, PROT_READ, sf, STUB_RAM_FD, 0),
	                 ALLOW);
	assert_int_equal(
	    call(SYS_mmap, GUEST_END - MAP_2M + 4096, 4096, PROT_READ, sf, STUB_RAM_FD, 0), ALLOW);
	assert_int_equal(call(SYS_mmap, GUEST_END - 4096, 8192, PROT_READ, sf, STUB_RAM_FD, 0),
	                 TRAP);
	/* not below vm.mmap_min_addr (a guest process with CAP_SYS_RAWIO could) */
	assert_int_equal(call(SYS_mmap, MIN_VA, 4096, PROT_READ, sf, STUB_RAM_FD, 0), ALLOW);
	assert_int_equal(call(SYS_mmap, MIN_VA - 4096, 4096, PROT_READ, sf, STUB_RAM_FD, 0), TRAP);
	assert_int_equal(call(SYS_mmap, 0, 4096, PROT_READ, sf, STUB_RAM_FD, 0), TRAP);
	assert_int_equal(call(SYS_mprotect, 0x1000, 4096, PROT_READ, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_munmap, 0, 4096, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_mmap, GUEST_END, 4096, PROT_READ, sf, STUB_RAM_FD, 0), TRAP);
	assert_int_equal(call(SYS_mmap, 0x200000, MAP_2M + 1, PROT_READ, sf, STUB_RAM_FD, 0), TRAP);
	assert_int_equal(
	    call(SYS_mmap, 0x200000, MAP_2M | (1ULL << 32), PROT_READ, sf, STUB_RAM_FD, 0), TRAP);
	assert_int_equal(
	    call(SYS_mmap, 0x200000 | (1ULL << 32), 4096, PROT_READ, sf, STUB_RAM_FD, 0),
	    ALLOW); /* (0x1_0020_0000 is below the slot) */
	assert_int_equal(
	    call(SYS_mmap, 0x200000 | (1ULL << 47), 4096, PROT_READ, sf, STUB_RAM_FD, 0), TRAP);
}

static void test_mprotect_munmap(void **state)
{
	(void)state;
	assert_int_equal(call(SYS_mprotect, 0x200000, 4096, PROT_READ | PROT_WRITE, 0, 0, 0),
	                 ALLOW);
	assert_int_equal(call(SYS_mprotect, GUEST_END, 4096, PROT_READ, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_mprotect, CODE, 4096, PROT_READ | PROT_WRITE, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_mprotect, 0x200000, 4096, PROT_READ | PROT_GROWSDOWN, 0, 0, 0),
	                 TRAP);
	assert_int_equal(call(SYS_mprotect, 0x200000, MAP_2M * 2, PROT_READ, 0, 0, 0), TRAP);
	/* the flush: all of the guest range, and nothing more */
	assert_int_equal(call(SYS_munmap, 4096, GUEST_END - 4096, 0, 0, 0, 0), ALLOW);
	assert_int_equal(call(SYS_munmap, 4096, GUEST_END, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_munmap, 0, GUEST_END, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_munmap, 8192, GUEST_END - 4096, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_munmap, 4096 | (1ULL << 32), GUEST_END - 4096, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_munmap, 4096, (GUEST_END - 4096) | (1ULL << 63), 0, 0, 0, 0),
	                 TRAP);
	assert_int_equal(call(SYS_munmap, 0x200000, MAP_2M, 0, 0, 0, 0), ALLOW);
	assert_int_equal(call(SYS_munmap, GUEST_END - 4096, 8192, 0, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_munmap, STUB_SLOT_VA, 4096, 0, 0, 0, 0), TRAP);
}

static void test_write(void **state)
{
	(void)state;
	for (uint64_t fd = 0; fd < 80; fd++)
		assert_int_equal(
		    call(SYS_write, fd, 0x1000, 8, 0, 0, 0),
		    fd >= STUB_NOTIFY_FD0 && fd < STUB_NOTIFY_FD0 + STUB_NOTIFY_FDS ? ALLOW : TRAP);
	assert_int_equal(call(SYS_write, STUB_NOTIFY_FD0 | (1ULL << 32), 0x1000, 8, 0, 0, 0), TRAP);
	assert_int_equal(call(SYS_write, (uint64_t)-1, 0x1000, 8, 0, 0, 0), TRAP);
	for (uint64_t n = 0; n < 64; n++)
		assert_int_equal(call(SYS_write, STUB_NOTIFY_FD0, 0x1000, n, 0, 0, 0),
		                 n == 8 ? ALLOW : TRAP);
	assert_int_equal(call(SYS_write, STUB_NOTIFY_FD0, 0x1000, 8 | (1ULL << 32), 0, 0, 0), TRAP);
}

/* ---- the kernel's view ------------------------------------------------------------------- */

/* The system call `nr` made by a `syscall` at the stub's address in a forked child that loaded
 * the filter: its result, or TRAP when the filter trapped it (SIGSYS). */
static const uint8_t slot_code[] = {0x0f, 0x05, 0xc3}; /* syscall; ret */

static long slot_syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
	long r;
	register long r10 __asm__("r10") = a3;
	register long r8 __asm__("r8") = a4;
	register long r9 __asm__("r9") = a5;

	__asm__ volatile("sub $128, %%rsp\n" /* (the red zone) */
	                 "call *%[fn]\n"
	                 "add $128, %%rsp\n"
	                 : "=a"(r)
	                 : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8),
	                   "r"(r9), [fn] "r"(IP)
	                 : "rcx", "r11", "memory");
	return r;
}

static int in_child(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
	struct sock_fprog fp = {(unsigned short)prog_len, prog};
	struct rlimit no_core = {0, 0};
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		long r;

		setrlimit(RLIMIT_CORE, &no_core);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) != 0)
			_exit(100); /* the kernel refused the program */
		r = slot_syscall(nr, a0, a1, a2, a3, a4, a5);
		/* 0: the call ran (whatever it returned); exit_group from the slot is allowed */
		slot_syscall(SYS_exit_group, r == -EFAULT ? 2 : 0, 0, 0, 0, 0, 0);
		_exit(101);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status)) {
		assert_int_equal(WTERMSIG(status), SIGSYS);
		return -1;
	}
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void test_kernel(void **state)
{
	uint64_t one = 1;
	void *code = mmap((void *)IP - 0x100, 4096, PROT_READ | PROT_WRITE,
	                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	int efd = eventfd(0, EFD_CLOEXEC);
	void *ram;

	(void)state;
	if (code == MAP_FAILED)
		skip();
	memcpy((uint8_t *)code + 0x100, slot_code, sizeof(slot_code));
	assert_int_equal(mprotect(code, 4096, PROT_READ | PROT_EXEC), 0);
	assert_true(efd >= 0);
	assert_int_equal(dup2(efd, STUB_NOTIFY_FD0), STUB_NOTIFY_FD0);
	ram = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(ram != MAP_FAILED);
	assert_int_equal(dup2(efd, STUB_RAM_FD), STUB_RAM_FD); /* any file, for the mmap test */

	assert_int_equal(in_child(SYS_sched_yield, 0, 0, 0, 0, 0, 0), 0);
	assert_int_equal(in_child(SYS_write, STUB_NOTIFY_FD0, (long)&one, 8, 0, 0, 0), 0);
	assert_int_equal(in_child(SYS_write, STUB_NOTIFY_FD0, (long)&one, 4, 0, 0, 0), -1);
	assert_int_equal(in_child(SYS_write, STUB_NOTIFY_FD0 - 1, (long)&one, 8, 0, 0, 0), -1);
	assert_int_equal(in_child(SYS_write, 2, (long)&one, 8, 0, 0, 0), -1);
	assert_int_equal(in_child(SYS_getpid, 0, 0, 0, 0, 0, 0), -1);
	assert_int_equal(in_child(SYS_mmap, 0x200000000000L, 4096, PROT_READ,
	                          MAP_SHARED | MAP_FIXED | MAP_POPULATE, STUB_RAM_FD, 0),
	                 0);
	assert_int_equal(in_child(SYS_mmap, 0x200000000000L, 4096, PROT_READ,
	                          MAP_PRIVATE | MAP_FIXED | MAP_POPULATE, STUB_RAM_FD, 0),
	                 -1);
	close(STUB_NOTIFY_FD0);
	close(STUB_RAM_FD);
	close(efd);
	munmap(ram, 4096);
	munmap(code, 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_abi_and_ip), cmocka_unit_test(test_futex_arch_prctl),
	    cmocka_unit_test(test_mmap),       cmocka_unit_test(test_mprotect_munmap),
	    cmocka_unit_test(test_write),      cmocka_unit_test(test_kernel),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
