/*
 * Per-thread seccomp filters: one allowlist per thread kind (VMM, API, vCPU), built with
 * libseccomp and loaded by each thread itself, before it handles anything a guest or a client
 * controls. A system call outside the list traps (SIGSYS): the process-wide handler prints
 *
 *     hearth: seccomp: thread <kind> made forbidden system call <nr> (<name>)
 *
 * and the process exits with EXIT_SECCOMP (246). docs/ARCHITECTURE.md lists what each thread
 * may do and why.
 */
#ifndef HEARTH_SECCOMP_FILTERS_H
#define HEARTH_SECCOMP_FILTERS_H

#include <stdbool.h>

#include "vmm/error.h"

/* A backend names the list its vCPU threads load (backend->vcpu_filter): THREAD_VCPU_KVM for
 * KVM's vCPUs, THREAD_VCPU_KVM_SHADOW for those of its shadow engine, which may also reload
 * the shadow pool's memslot (KVM_SET_USER_MEMORY_REGION), THREAD_VCPU_PROCESS for the
 * process engine's. All are reported as "vcpu". */
enum thread_kind {
	THREAD_VMM,
	THREAD_API,
	THREAD_VCPU_KVM,
	THREAD_VCPU_KVM_SHADOW,
	THREAD_VCPU_PROCESS,
};
#define THREAD_KINDS 5

const char *thread_kind_name(enum thread_kind k);

/* Once, on the main thread before any other thread starts: filters on or off (--no-seccomp),
 * the SIGSYS handler, and the process-wide state the filtered threads must not load later
 * (the time zone). */
int seccomp_setup(bool enabled, struct error *err);
bool seccomp_enabled(void);

/* The process engine's guest process: rules that name it (kicking its threads, ending it)
 * compare against this pid. Before the first filter that needs it is loaded. */
void seccomp_set_guest_pid(int pid);

/* Load the filter of `kind` on the calling thread (and unblock SIGSYS there, so the report
 * can run). The BPF program of each kind is compiled once, on first use. A no-op when the
 * filters are off. */
int seccomp_install(enum thread_kind kind, struct error *err);

#endif
