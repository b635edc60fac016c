/* The per-thread allowlists and their compilation with libseccomp (build time only). */
#ifndef HEARTH_SECCOMP_RULES_H
#define HEARTH_SECCOMP_RULES_H

#include <linux/filter.h>

#include "filters.h"
#include "vmm/error.h"

/* Stands for hearth's process id in compiled programs; above any pid (PID_MAX_LIMIT is
 * 2^22), so it cannot be a real one. filters.c patches it when it loads a program. */
#define SECCOMP_PID_PLACEHOLDER 0x7eadbeefU
/* The same for the process engine's guest process (filters.c: seccomp_set_guest_pid); a rule
 * names it by comparing its first argument with GUEST_PID. Left in place (matching nothing)
 * in a VM that has no guest process. */
#define SECCOMP_GUEST_PID_PLACEHOLDER 0x7eadbeeeU
#define GUEST_PID                     1

/* Compile `kind`'s list to BPF (prog->filter is malloc'ed). */
int seccomp_rules_compile(enum thread_kind kind, struct sock_fprog *prog, struct error *err);

#endif
