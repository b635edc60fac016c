/* The per-thread allowlists and their compilation with libseccomp (build time only). */
#ifndef HEARTH_SECCOMP_RULES_H
#define HEARTH_SECCOMP_RULES_H

#include <linux/filter.h>

#include "filters.h"
#include "vmm/error.h"

/* Stands for hearth's process id in compiled programs; above any pid (PID_MAX_LIMIT is
 * 2^22), so it cannot be a real one. filters.c patches it when it loads a program. */
#define SECCOMP_PID_PLACEHOLDER 0x7eadbeefU

/* Compile `kind`'s list to BPF (prog->filter is malloc'ed). */
int seccomp_rules_compile(enum thread_kind kind, struct sock_fprog *prog, struct error *err);

#endif
