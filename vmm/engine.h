/*
 * An execution engine runs a vCPU: it sets up the boot state and runs the KVM_RUN loop until
 * the VM must stop. `hardware` lets KVM virtualize memory (EPT/NPT or KVM's own shadow
 * paging); a shadow engine (guest deprivileged, VMM-kept shadow page tables) plugs in here.
 */
#ifndef HEARTH_ENGINE_H
#define HEARTH_ENGINE_H

#include "boot.h"
#include "error.h"

struct vcpu;

struct engine {
	const char *name;
	/* Put the boot vCPU in the state `boot` describes. */
	int (*setup_boot_vcpu)(struct vcpu *v, const struct boot_cpu_state *boot,
			       struct error *err);
	/* Run until the VM stops; reports how through vm_request_stop. */
	void (*run)(struct vcpu *v);
};

extern const struct engine hardware_engine;

#endif
