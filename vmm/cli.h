/* The command line: one-shot flags mapped onto the VM configuration model. */
#ifndef HEARTH_CLI_H
#define HEARTH_CLI_H

#include <stdio.h>

#include "config/vm_config.h"
#include "error.h"

enum cli_result { CLI_RUN, CLI_EXIT_OK, CLI_ERROR };

struct cli_opts {
	bool help, version, verbose;
	bool no_seccomp; /* --no-seccomp: no per-thread filters */
};

enum cli_result cli_parse(int argc, char **argv, struct vm_config *cfg, struct cli_opts *o,
                          struct error *err);
void cli_usage(FILE *f);

#endif
