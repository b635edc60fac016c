/*
 * The allowlists, one per thread kind, and their compilation to BPF with libseccomp. This
 * runs at build time only (seccomp/gen_bpf.c writes the programs into a header that
 * seccomp/filters.c loads): hearth itself neither links libseccomp nor compiles a filter
 * at start.
 *
 * Each list is a table of rules: a system call, optionally with conditions on its arguments
 * (ioctl requests, flags), all of which must hold. Anything else traps (SIGSYS, reported by
 * seccomp/sigsys.c). Rules that compare against hearth's own process id use
 * SECCOMP_PID_PLACEHOLDER, which filters.c replaces with getpid() when it loads a program.
 */
#include "rules.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Sanitizer builds (make asan) get the extra calls their runtimes make; see san_rules. */
#if defined(__SANITIZE_ADDRESS__)
#define HEARTH_SAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEARTH_SAN 1
#endif
#endif

struct rule {
	int nr;
	unsigned nargs;
	struct scmp_arg_cmp arg[2];
};

#define CMP(i, o, a, b)                                                                            \
	{                                                                                          \
		.arg = (i), .op = (o), .datum_a = (a), .datum_b = (b)                              \
	}
#define EQ(i, v)       CMP(i, SCMP_CMP_EQ, (scmp_datum_t)(v), 0)
#define CLEAR(i, bits) CMP(i, SCMP_CMP_MASKED_EQ, (scmp_datum_t)(bits), 0)
#define ALLOW(name)                                                                                \
	{                                                                                          \
		.nr = SCMP_SYS(name)                                                               \
	}
#define ALLOW1(name, c)                                                                            \
	{                                                                                          \
		.nr = SCMP_SYS(name), .nargs = 1, .arg = { c }                                     \
	}
#define ALLOW2(name, c, d)                                                                         \
	{                                                                                          \
		.nr = SCMP_SYS(name), .nargs = 2, .arg = { c, d }                                  \
	}
/* ioctl(fd, request, ...): the request is compared on its low 32 bits (the kernel's is an
 * unsigned int), so a sign-extended request cannot slip past. */
#define IOCTL(req)                                                                                 \
	ALLOW1(ioctl, CMP(1, SCMP_CMP_MASKED_EQ, 0xffffffffULL, (scmp_datum_t)(req)&0xffffffffULL))
/* open flags that create, truncate or make an anonymous file */
#define CREATE_FLAGS (O_CREAT | O_TRUNC | __O_TMPFILE)

/* Every thread: the SIGSYS report (write, exit_group), locks and condition variables, the
 * end of a thread, clocks (vDSO first; the call itself when the clock source has no vDSO
 * path), and glibc's allocator: arenas grow with mmap/mprotect and shrink with
 * munmap/madvise, the main arena with brk. restart_syscall resumes a call (poll, nanosleep)
 * that a stop and continue (job control, a debugger) interrupted: it only continues a call the
 * list already allowed. No call may map executable memory. */
#define COMMON_RULES                                                                               \
	ALLOW(write), ALLOW(exit_group), ALLOW(exit), ALLOW(futex), ALLOW(clock_gettime),          \
	    ALLOW(restart_syscall), ALLOW1(mmap, CLEAR(2, PROT_EXEC)),                             \
	    ALLOW1(mprotect, CLEAR(2, PROT_EXEC)), ALLOW(munmap), ALLOW(madvise), ALLOW(brk)

/* The VMM thread, from the moment the guest runs: its event loop, the devices' I/O, the calls
 * the API may still make after boot, and the exit. Building the VM (KVM_CREATE_VM, memslots,
 * vCPUs, threads, file creation for the console, log and metrics) happens before the filter. */
static const struct rule vmm_rules[] = {
    COMMON_RULES,
    ALLOW(mremap), /* realloc of large blocks (cJSON replies) */
    /* event loop: epoll over the stop/API/notify eventfds, signalfd, console input, TAP */
    ALLOW(epoll_wait),
    ALLOW(epoll_ctl),
    ALLOW(read),
    /* virtio-blk requests and flushes, discard and write-zeroes; virtio-net frames */
    ALLOW(preadv),
    ALLOW(pwritev),
    ALLOW(fdatasync),
    ALLOW(fallocate),
    ALLOW(readv),
    ALLOW(writev),
    /* PATCH /drives: open the new medium (never creating or truncating a file), check it */
    ALLOW1(openat, CLEAR(2, CREATE_FLAGS)),
    ALLOW(newfstatat),
    ALLOW(fstat),
    ALLOW1(fcntl, EQ(1, F_GETFL)),
    ALLOW1(fcntl, EQ(1, F_SETFL)),
    ALLOW(close),
    IOCTL(BLKGETSIZE64), /* a block device as the new medium */
    /* SendCtrlAltDel raises the keyboard IRQ; pause/resume save and restore the clocks */
    IOCTL(KVM_IRQ_LINE),
    IOCTL(KVM_GET_CLOCK),
    IOCTL(KVM_SET_CLOCK),
    IOCTL(KVM_GET_DEVICE_ATTR),
    IOCTL(KVM_SET_DEVICE_ATTR),
    IOCTL(TUNSETOFFLOAD), /* virtio-net offloads follow the driver */
    IOCTL(TCSETS),        /* the terminal is restored at exit (tcsetattr), */
    IOCTL(TCGETS),        /* which reads the settings back to check them */
    /* kicking a vCPU out of KVM_RUN: pthread_kill = getpid + tgkill with the kick signal
     * (the process id is filled in when the filter is built), signals blocked around it */
    ALLOW(getpid),
    ALLOW2(tgkill, EQ(0, 0), EQ(2, SIGUSR1)),
    ALLOW(rt_sigprocmask),
    ALLOW1(prctl, EQ(0, PR_GET_NAME)), /* the thread name in log-file lines */
    /* exit: remove the API socket file; the detached teardown process (vm.c): pidfd of
     * hearth, clone(CLONE_VM), then in the child close_range, poll and exit */
    ALLOW(unlink),
    ALLOW2(pidfd_open, EQ(0, 0), EQ(1, 0)),
    ALLOW1(clone, EQ(0, CLONE_VM)),
    ALLOW(close_range),
    ALLOW(poll),
    /* the process engine: kick a guest thread (an interrupt raised here), end the guest
     * process and reap it */
    ALLOW2(tgkill, EQ(0, GUEST_PID), EQ(2, SIGUSR1)),
    ALLOW2(kill, EQ(0, GUEST_PID), EQ(1, SIGKILL)),
    ALLOW1(wait4, EQ(0, GUEST_PID)),
    /* PUT /snapshot/create: the state and memory files, created (or truncated) for writing
     * with exactly these flags, filled and synced */
    ALLOW1(openat, EQ(2, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC)),
    ALLOW(ftruncate),
    ALLOW(pwrite64),
    ALLOW(fsync),
    /* PUT /snapshot/create in a KVM engine (backend/kvm/snapshot.c), every vCPU parked:
     * read each vCPU's state (SREGS2 and XSAVE2 where KVM has them), the interrupt chips
     * and the PIT (the clock is the one the pause saved), and the dirty logs of a diff */
    IOCTL(KVM_GET_MP_STATE),
    IOCTL(KVM_GET_REGS),
    IOCTL(KVM_GET_SREGS),
    IOCTL(KVM_GET_SREGS2),
    IOCTL(KVM_GET_XSAVE),
    IOCTL(KVM_GET_XSAVE2),
    IOCTL(KVM_GET_XCRS),
    IOCTL(KVM_GET_DEBUGREGS),
    IOCTL(KVM_GET_LAPIC),
    IOCTL(KVM_GET_MSRS),
    IOCTL(KVM_GET_VCPU_EVENTS),
    IOCTL(KVM_GET_IRQCHIP),
    IOCTL(KVM_GET_PIT2),
    IOCTL(KVM_GET_DIRTY_LOG),
};

/* The API thread: one HTTP connection loop over MHD's epoll set and a stop eventfd, and the
 * mailbox to the VMM thread. It opens no file and creates nothing: the listening socket
 * exists before the thread starts. */
static const struct rule api_rules[] = {
    COMMON_RULES,          ALLOW(mremap),   ALLOW(poll),   ALLOW(epoll_wait), ALLOW(epoll_ctl),
    ALLOW(accept4),        ALLOW(recvfrom), ALLOW(sendto), ALLOW(sendmsg),    ALLOW(shutdown),
    ALLOW(close),          ALLOW(read), /* drain the stop eventfd */
    ALLOW(rt_sigprocmask),              /* thread exit */
};

/* vCPU threads: KVM_RUN and the exits handled in place (port I/O and MMIO on the device
 * buses, which write to the console and to eventfds and raise ISA IRQs); the registers for
 * an error report; the kick signal. */
static const struct rule vcpu_rules[] = {
    COMMON_RULES,
    IOCTL(KVM_RUN),
    IOCTL(KVM_IRQ_LINE),  /* UART and i8042 interrupts */
    IOCTL(KVM_GET_REGS),  /* triple-fault and internal-error reports */
    IOCTL(KVM_GET_SREGS), /* internal-error report */
    IOCTL(KVM_TRANSLATE), /* internal-error report: the bytes at RIP */
    IOCTL(TUNSETOFFLOAD), /* virtio-net: DRIVER_OK and reset arrive as MMIO writes */
    ALLOW(epoll_ctl),     /* virtio-net asks the VMM loop to watch its TAP */
    /* the shadow engine emulates rdmsr/wrmsr and xsetbv through KVM (registers and
     * segments travel in kvm_run's sync area, without ioctls) */
    IOCTL(KVM_GET_MSRS),
    IOCTL(KVM_SET_MSRS),
    IOCTL(KVM_SET_XCRS),
    ALLOW(rt_sigreturn),   /* return from the kick signal's handler */
    ALLOW(rt_sigprocmask), /* thread exit */
    ALLOW1(prctl, EQ(0, PR_GET_NAME)),
};

/* A shadow-engine vCPU: the vCPU list, plus the reload of the shadow pool's memslot (delete
 * and re-add, so that KVM forgets the pool pages it shadowed: shadow_monitor.c). The ioctl's
 * argument is a pointer, which a filter cannot look into; the vCPU thread only ever passes
 * the pool's slot. Hardware-mode vCPUs never get it. */
static const struct rule vcpu_shadow_rules[] = {
    IOCTL(KVM_SET_USER_MEMORY_REGION),
};

/* A process-engine vCPU: it answers its guest thread through shared memory (futex), kicks
 * guest threads (an interrupt or a pause: SIGUSR1 to a thread of the guest process, nothing
 * else), checks that the guest process lives (poll of its pidfd), and handles port I/O and
 * MMIO on the device buses as KVM's vCPUs do. */
static const struct rule vcpu_process_rules[] = {
    COMMON_RULES,
    ALLOW2(tgkill, EQ(0, GUEST_PID), EQ(2, SIGUSR1)),
    ALLOW(poll),
    ALLOW(sched_yield), /* while it waits for its guest thread, which may share the CPU */
    /* how it died, left for the VMM thread to reap */
    ALLOW2(waitid, EQ(0, P_PIDFD), EQ(3, WEXITED | WNOHANG | WNOWAIT)),
    IOCTL(TUNSETOFFLOAD),  /* virtio-net: DRIVER_OK and reset arrive as MMIO writes */
    ALLOW(epoll_ctl),      /* virtio-net asks the VMM loop to watch its TAP */
    ALLOW(rt_sigreturn),   /* return from the kick signal's handler */
    ALLOW(rt_sigprocmask), /* thread exit */
    ALLOW1(prctl, EQ(0, PR_GET_NAME)),
};

#ifdef HEARTH_SAN
/* make asan: the sanitizer runtimes' own calls in every thread. At exit LeakSanitizer stops
 * the world (a tracer task made with clone, ptrace on every thread listed from
 * /proc/self/task, waitpid) and a report reads /proc/self/maps and may run the symbolizer;
 * neither happens in a normal build, which never contains these rules. */
static const struct rule san_rules[] = {
    ALLOW(clone),           ALLOW(ptrace),         ALLOW(wait4),      ALLOW(prctl),
    ALLOW(openat),          ALLOW(open),           ALLOW(getdents64), ALLOW(sched_yield),
    ALLOW(getdents),        ALLOW(getpid),         ALLOW(gettid),     ALLOW(sigaltstack),
    ALLOW(rt_sigaction),    ALLOW(rt_sigprocmask), ALLOW(mmap),       ALLOW(mprotect),
    ALLOW(readlink),        ALLOW(read),           ALLOW(close),      ALLOW(fstat),
    ALLOW(newfstatat),      ALLOW(lseek),          ALLOW(pipe2),      ALLOW(dup2),
    ALLOW(execve),          ALLOW(kill),           ALLOW(tgkill),     ALLOW(nanosleep),
    ALLOW(clock_nanosleep), ALLOW(getrlimit),      ALLOW(prlimit64),  ALLOW(sysinfo),
    ALLOW(unlink),          ALLOW(getppid),
};
#endif

static const struct {
	const struct rule *rules;
	size_t n;
} lists[THREAD_KINDS] = {
    [THREAD_VMM] = {vmm_rules, sizeof(vmm_rules) / sizeof(vmm_rules[0])},
    [THREAD_API] = {api_rules, sizeof(api_rules) / sizeof(api_rules[0])},
    [THREAD_VCPU_KVM] = {vcpu_rules, sizeof(vcpu_rules) / sizeof(vcpu_rules[0])},
    [THREAD_VCPU_KVM_SHADOW] = {vcpu_rules, sizeof(vcpu_rules) / sizeof(vcpu_rules[0])},
    [THREAD_VCPU_PROCESS] = {vcpu_process_rules,
                             sizeof(vcpu_process_rules) / sizeof(vcpu_process_rules[0])},
};

static int add_rules(scmp_filter_ctx ctx, const struct rule *r, size_t n, struct error *err)
{
	for (size_t i = 0; i < n; i++) {
		struct scmp_arg_cmp a[2];
		int rc;

		memcpy(a, r[i].arg, sizeof(a));
		/* Where a rule compares against hearth's process id (or the guest process's):
		 * the placeholder. */
		if ((r[i].nr == SCMP_SYS(tgkill) || r[i].nr == SCMP_SYS(pidfd_open) ||
		     r[i].nr == SCMP_SYS(kill) || r[i].nr == SCMP_SYS(wait4)) &&
		    r[i].nargs)
			a[0].datum_a = a[0].datum_a == GUEST_PID ? SECCOMP_GUEST_PID_PLACEHOLDER
			                                         : SECCOMP_PID_PLACEHOLDER;
		rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, r[i].nr, r[i].nargs, a);
		if (rc < 0) {
			char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, r[i].nr);

			err_set(err, "seccomp: rule for %s: %s", name ? name : "?", strerror(-rc));
			free(name);
			return -1;
		}
	}
	return 0;
}

/* Build `kind`'s list with libseccomp and export it as a BPF program (through a pipe: the
 * program is at most a few KiB, far below the pipe's buffer). */
int seccomp_rules_compile(enum thread_kind kind, struct sock_fprog *prog, struct error *err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	int p[2] = {-1, -1}, rc = -1;
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (!ctx)
		return err_set(err, "seccomp: cannot create a filter");
	/* A call through another ABI (int 0x80, x32) traps too, and is reported as such. */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP) ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) {
		err_set(err, "seccomp: cannot set the filter attributes");
		goto out;
	}
	if (add_rules(ctx, lists[kind].rules, lists[kind].n, err))
		goto out;
	if (kind == THREAD_VCPU_KVM_SHADOW &&
	    add_rules(ctx, vcpu_shadow_rules,
	              sizeof(vcpu_shadow_rules) / sizeof(vcpu_shadow_rules[0]), err))
		goto out;
#ifdef HEARTH_SAN
	if (add_rules(ctx, san_rules, sizeof(san_rules) / sizeof(san_rules[0]), err))
		goto out;
#endif
	if (pipe2(p, O_CLOEXEC)) {
		err_set(err, "seccomp: pipe: %s", strerror(errno));
		goto out;
	}
	rc = seccomp_export_bpf(ctx, p[1]);
	close(p[1]);
	if (rc < 0) {
		err_set(err, "seccomp: cannot export filter %d: %s", (int)kind, strerror(-rc));
		rc = -1;
		goto out;
	}
	rc = -1;
	for (;;) {
		ssize_t n;

		if (len == cap) {
			char *b = realloc(buf, cap = cap ? cap * 2 : 4096);

			if (!b) {
				err_set(err, "out of memory");
				goto out;
			}
			buf = b;
		}
		n = read(p[0], buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_set(err, "seccomp: reading the filter: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len == 0 || len % sizeof(struct sock_filter) ||
	    len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
		err_set(err, "seccomp: filter %d has a bad size (%zu bytes)", (int)kind, len);
		goto out;
	}
	prog->len = (unsigned short)(len / sizeof(struct sock_filter));
	prog->filter = (struct sock_filter *)buf;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	if (p[0] >= 0)
		close(p[0]);
	seccomp_release(ctx);
	return rc;
}
