/*
 * An execution engine runs a vCPU: it sets up the boot state and runs the KVM_RUN loop until
 * the VM must stop. `hardware` lets KVM virtualize memory (EPT/NPT or KVM's own shadow
 * paging); a shadow engine (guest deprivileged, VMM-kept shadow page tables) plugs in here.
 */
#ifndef HEARTH_ENGINE_H
#define HEARTH_ENGINE_H

#include "boot.h"
#include "error.h"

#include <stdint.h>

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
extern const struct engine shadow_engine;

struct vm;
/* Shadow mode's monitor and MMU, created before the VM's memslots are final. */
int shadow_engine_create(struct vm *vm, struct error *err);
int shadow_engine_add_memslots(struct vm *vm, struct error *err);
void shadow_engine_destroy(struct vm *vm);

struct shadow_stats {
	uint64_t traps, hits, misses, fills, evictions, invalidations, epochs, reloads,
	    tracked_writes;
	double trap_ns; /* time spent handling traps in hearth (exit to re-entry) */
};
void shadow_engine_stats(struct vm *vm, struct shadow_stats *s);
/* The host CPU to run vCPU `id` on so that cpuid's APIC ID is its own, or -1. */
int shadow_engine_pin_cpu(unsigned vcpu_id);

#endif
