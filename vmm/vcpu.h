/* vCPU creation, per-vCPU platform state (CPUID, MSRs, LAPIC) and the exit handling the
 * engines share (port I/O and MMIO dispatch, error reports). */
#ifndef HEARTH_VCPU_H
#define HEARTH_VCPU_H

#include "vm.h"

/* Create vCPU `id`: fd, run area, normalized CPUID, boot MSRs, LAPIC LINT0/LINT1. */
int vcpu_create(struct vm *vm, struct vcpu *v, unsigned id, struct error *err);
void vcpu_destroy(struct vcpu *v);

/* Dispatch a KVM_EXIT_IO / KVM_EXIT_MMIO exit to the device buses. */
void vcpu_handle_io(struct vcpu *v);
void vcpu_handle_mmio(struct vcpu *v);

/* Report a KVM internal error / emulation failure / failed entry (reads RIP and the bytes). */
void vcpu_report_internal_error(struct vcpu *v);
void vcpu_report_shutdown(struct vcpu *v);

/* Signal used to kick a vCPU thread out of KVM_RUN. */
#define VCPU_KICK_SIGNAL SIGUSR1
void vcpu_kick(struct vcpu *v);

#endif
