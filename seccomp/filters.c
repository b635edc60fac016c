/*
 * Loading the per-thread filters. The allowlists live in seccomp/rules.c and are compiled to
 * BPF at build time (seccomp/gen_bpf.c -> build/seccomp/filters_bpf.h): at run time hearth
 * only copies a program, puts its own process id where a rule compares against it, and loads
 * it. Every thread of a kind loads the same program on itself: filters are per thread and
 * stack, so each thread installs its own after the threads it creates exist (see
 * docs/ARCHITECTURE.md, "Seccomp").
 */
#include "filters.h"
#include "rules.h"
#include "sigsys.h"

#include "filters_bpf.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef HEARTH_SECCOMP_TEST
#include <sys/socket.h>
#endif

static bool enabled;
static uint32_t guest_pid = SECCOMP_GUEST_PID_PLACEHOLDER;
static pthread_mutex_t programs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sock_fprog programs[THREAD_KINDS];

#ifdef HEARTH_SECCOMP_TEST
/* Test-only build (make build/hearth-seccomp-test): HEARTH_SECCOMP_TEST=vmm|api|vcpu makes the
 * first thread of that kind call socket(2), which no list allows, right after its filter is
 * loaded. A normal build has no such path. */
static const char *test_kind;
static int test_fired;
#endif

const char *thread_kind_name(enum thread_kind k)
{
	switch (k) {
	case THREAD_VMM:
		return "vmm";
	case THREAD_API:
		return "api";
	case THREAD_VCPU_KVM:
	case THREAD_VCPU_KVM_SHADOW:
	case THREAD_VCPU_PROCESS:
		return "vcpu";
	}
	return "unknown";
}

void seccomp_set_guest_pid(int pid)
{
	guest_pid = (uint32_t)pid;
}

bool seccomp_enabled(void)
{
	return enabled;
}

int seccomp_setup(bool on, struct error *err)
{
	enabled = on;
	if (!on)
		return 0;
	/* glibc reads the time zone on the first gmtime/localtime of the process, from whichever
	 * thread comes first (the HTTP Date header, log-file lines): do it now, before any thread
	 * is filtered. */
	tzset();
	if (sigsys_install_handler())
		return err_set(err, "seccomp: cannot install the SIGSYS handler: %s",
		               strerror(errno));
#ifdef HEARTH_SECCOMP_TEST
	test_kind = getenv("HEARTH_SECCOMP_TEST");
#endif
	return 0;
}

/* The program of `kind` with this process's id in place of the placeholder, built once. */
static int program(enum thread_kind kind, struct error *err)
{
	const struct sock_filter *src = bpf_programs[kind].insns;
	unsigned short len = bpf_programs[kind].len;
	struct sock_filter *p;

	if (programs[kind].filter)
		return 0;
	p = malloc(len * sizeof(*p));
	if (!p)
		return err_set(err, "seccomp: out of memory");
	memcpy(p, src, len * sizeof(*p));
	for (unsigned i = 0; i < len; i++)
		if (p[i].code == (BPF_JMP | BPF_JEQ | BPF_K) && p[i].k == SECCOMP_PID_PLACEHOLDER)
			p[i].k = (uint32_t)getpid();
		else if (p[i].code == (BPF_JMP | BPF_JEQ | BPF_K) &&
		         p[i].k == SECCOMP_GUEST_PID_PLACEHOLDER)
			p[i].k = guest_pid;
	programs[kind].filter = p;
	programs[kind].len = len;
	return 0;
}

int seccomp_install(enum thread_kind kind, struct error *err)
{
	sigset_t sys;
	int rc = 0;

	if (!enabled)
		return 0;
	if ((unsigned)kind >= THREAD_KINDS)
		return err_set(err, "seccomp: unknown thread kind %d", (int)kind);
	pthread_mutex_lock(&programs_lock);
	rc = program(kind, err);
	pthread_mutex_unlock(&programs_lock);
	if (rc)
		return -1;
	/* A trapped call with SIGSYS blocked would kill the process without the report. */
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
	sigsys_set_thread_kind(kind);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return err_set(err, "seccomp: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &programs[kind]))
		return err_set(err, "seccomp: cannot load the %s filter: %s",
		               thread_kind_name(kind), strerror(errno));
#ifdef HEARTH_SECCOMP_TEST
	if (test_kind && !strcmp(test_kind, thread_kind_name(kind)) &&
	    !__atomic_exchange_n(&test_fired, 1, __ATOMIC_SEQ_CST))
		syscall(SYS_socket, AF_INET, SOCK_DGRAM, 0);
#endif
	return 0;
}
