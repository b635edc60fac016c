/* The SIGSYS report (seccomp/sigsys.c): internal to seccomp/. */
#ifndef HEARTH_SECCOMP_SIGSYS_H
#define HEARTH_SECCOMP_SIGSYS_H

#include "filters.h"

/* Install the process-wide SIGSYS handler (SA_SIGINFO). */
int sigsys_install_handler(void);
/* Record which kind of thread the calling thread is, for the report. */
void sigsys_set_thread_kind(enum thread_kind kind);

#endif
