/*
 * The VMM thread: one epoll loop that owns the VM's state machine
 * (not started -> running <-> paused -> stopped), answers API messages, processes device
 * notifications and console input, and enforces --timeout.
 */
#ifndef HEARTH_CONTROLLER_H
#define HEARTH_CONTROLLER_H

#include <stdbool.h>

#include "api/api.h"
#include "vm.h"

enum vm_state { VM_NOT_STARTED, VM_RUNNING, VM_PAUSED, VM_STOPPED };

struct controller {
	struct vm_config *cfg; /* the model: changed by API calls before boot */
	struct vm *vm;
	enum vm_state state;
	struct api_channel *api; /* NULL without an API socket */
	bool exit_when_stopped;  /* one-shot and --no-api: leave the loop when the guest stops */
	int ep;
	int signal_fd;
	bool in_open, in_polled;
	double deadline;
	double t_start;      /* InstanceStart (or process start) for --boot-timer */
	int exit_code;       /* set when the guest stopped */
	bool exit_requested; /* SIGTERM / SIGINT */
	bool configured;     /* a configuration call was made: no snapshot load then */
};

/* Create the loop (epoll, signals, the API channel). Call first. */
int controller_init(struct controller *c);
/* Build and start the VM from c->cfg now (one-shot, --config-file). Returns 0, or an exit
 * code with the error logged. */
int controller_start_vm(struct controller *c, char *err, size_t errlen, int *code);
/* Build the VM from a snapshot and start it Paused (or running with resume_vm). On failure
 * (a message in err, the exit status in *code) c->cfg is as it was; the caller destroys the
 * partly built VM. */
int controller_restore_vm(struct controller *c, const struct snapshot_load_params *p, char *err,
                          size_t errlen, int *code);
/* Run the loop until the process should exit; returns the process exit status. */
int controller_run(struct controller *c);
const char *vm_state_name(enum vm_state s);

#endif
