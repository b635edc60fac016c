/*
 * The SIGSYS report. A filter's default action is SECCOMP_RET_TRAP: the kernel stops the
 * call and sends SIGSYS to the thread that made it, with the call's number in si_syscall.
 * The handler writes one line to stderr and ends the process with EXIT_SECCOMP.
 *
 * Only async-signal-safe work happens here: the thread kind is a thread-local integer set when
 * the filter was loaded (initial-exec TLS, no allocation on access); the name comes from a
 * table generated at build time from the kernel's <asm/unistd_64.h> (libseccomp's resolver
 * allocates, so it cannot run in a handler); the line is formatted by hand into a stack buffer
 * and written with one write(2), which every filter allows, as it allows exit_group.
 */
#include "sigsys.h"
#include "vmm/exit_codes.h"

#include <linux/audit.h>
#include <linux/futex.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* [nr] = "name" for every x86_64 system call (build/seccomp/syscall_names.h, Makefile). */
static const char *const syscall_names[] = {
#include "syscall_names.h"
};

static __thread int thread_kind __attribute__((tls_model("initial-exec"))) = -1;
static int reporting; /* the first report wins; other trapped threads wait for the exit */

void sigsys_set_thread_kind(enum thread_kind kind)
{
	thread_kind = (int)kind;
}

static size_t put_str(char *buf, size_t pos, size_t cap, const char *s)
{
	while (*s && pos < cap)
		buf[pos++] = *s++;
	return pos;
}

static size_t put_uint(char *buf, size_t pos, size_t cap, unsigned long v)
{
	char digits[24];
	size_t n = 0;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n && pos < cap)
		buf[pos++] = digits[--n];
	return pos;
}

static void on_sigsys(int sig, siginfo_t *si, void *ucontext)
{
	char line[160];
	size_t n = 0, cap = sizeof(line) - 1;
	unsigned nr = (unsigned)si->si_syscall;
	const char *name = NULL;

	(void)sig;
	(void)ucontext;
	if (__atomic_exchange_n(&reporting, 1, __ATOMIC_SEQ_CST))
		for (;;) /* another thread is reporting; its exit_group ends this one too */
			syscall(SYS_futex, &reporting, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
	if (si->si_arch == AUDIT_ARCH_X86_64 &&
	    nr < sizeof(syscall_names) / sizeof(syscall_names[0]))
		name = syscall_names[nr];
	n = put_str(line, n, cap, "hearth: seccomp: thread ");
	n = put_str(line, n, cap,
	            thread_kind >= 0 ? thread_kind_name((enum thread_kind)thread_kind) : "unknown");
	n = put_str(line, n, cap, " made forbidden system call ");
	n = put_uint(line, n, cap, nr);
	n = put_str(line, n, cap, " (");
	n = put_str(line, n, cap, name ? name : "unknown");
	if (si->si_arch != AUDIT_ARCH_X86_64)
		n = put_str(line, n, cap, ", not the x86_64 ABI");
	n = put_str(line, n, cap, ")");
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nothing else to tell */
	}
	_exit(EXIT_SECCOMP);
}

int sigsys_install_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigfillset(&sa.sa_mask); /* nothing interrupts the report */
	return sigaction(SIGSYS, &sa, NULL);
}
