/*
 * The KVM backend's own state and the calls its files share. Nothing outside backend/kvm/
 * includes this header (or <linux/kvm.h>).
 *
 * Two engines run vCPUs here: `hardware` lets KVM virtualize memory (EPT/NPT, or KVM's own
 * shadow paging); `shadow` deprivileges the guest kernel to CPL3 under a ring-0 monitor and
 * keeps hearth's shadow page tables (docs/SHADOW_MMU.md). Both use one KVM_RUN loop
 * (kvm_vcpu_loop) with a few engine hooks.
 */
#ifndef HEARTH_KVM_H
#define HEARTH_KVM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "irqchip/irqchip.h"
#include "host_kvm.h"
#include "host_mmu.h"
#include "string_io.h"
#include "vmm/vm.h"

struct sh_engine;
struct kvm_engine;

/* vm->be */
struct kvm_vm {
	int kvm_fd, vm_fd;
	int run_size;
	struct host_mmu mmu;      /* the host's flavour of KVM */
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, queried once */
	pthread_t cpuid_thread;   /* queries it while the guest is loaded (kvm_open) */
	bool cpuid_thread_started;
	int cpuid_errno;
	uint32_t tsc_khz;
	const struct kvm_engine *eng;
	struct sh_engine *shadow; /* the shadow engine's monitor, MMU and virtual CPU */
	/* pause: the guest's clocks */
	bool clock_saved;
	uint64_t paused_at_tsc;
	struct kvm_clock_data clock;
	/* snapshots (snapshot.c): what this KVM offers, asked at create */
	uint32_t xsave_size; /* KVM_GET_XSAVE2's (KVM_CAP_XSAVE2), or struct kvm_xsave's */
	bool xsave2, sregs2;
	/* dirty page tracking: one KVM dirty log per guest-RAM memslot */
	uint64_t *dirty_log[2];
};

/* vcpu->be */
struct kvm_vcpu {
	int fd;
	struct kvm_run *run;
	bool tsc_offset_saved;
	uint64_t tsc_offset;        /* while paused */
	struct string_io_state sio; /* rep outs batching (string_io.h) */
	bool exited; /* the last KVM_RUN returned an exit, which KVM completes at the next */
};

static inline struct kvm_vm *kvm_of(const struct vm *vm)
{
	return vm->be;
}

static inline struct kvm_vcpu *kvcpu_of(const struct vcpu *v)
{
	return v->be;
}

/* An engine: how the boot vCPU starts, and the hooks of the shared KVM_RUN loop. */
struct kvm_engine {
	const char *name;
	/* Put the boot vCPU in the state `boot` describes. */
	int (*setup_boot_vcpu)(struct vcpu *v, const struct boot_cpu_state *boot,
	                       struct error *err);
	/* Before each KVM_RUN: false when this vCPU must not run on (it was parked). */
	bool (*before_run)(struct vcpu *v);
	/* After each KVM_RUN that returned an exit. */
	void (*after_run)(struct vcpu *v);
	/* A KVM_EXIT_IO the engine handles itself (true), before the port bus sees it. */
	bool (*exit_io)(struct vcpu *v);
	/* The special registers (string_io.h), fetched only when needed; and guest memory
	 * by linear address. */
	const struct kvm_sregs *(*sregs)(void *ctx);
	bool (*vread)(void *ctx, uint64_t linear, void *buf, size_t len);
	void *(*hook_ctx)(struct vcpu *v);
	/* KVM_EXIT_SHUTDOWN */
	void (*shutdown)(struct vcpu *v);
};

extern const struct kvm_engine kvm_hardware_engine;
extern const struct kvm_engine kvm_shadow_engine;

/* The KVM_RUN loop both engines share: exits go to the engine's hooks and the device buses. */
void kvm_vcpu_loop(struct vcpu *v);

/* kvm.c: a memslot of guest memory (flags: KVM_MEM_LOG_DIRTY_PAGES or 0). */
int kvm_set_memslot(struct kvm_vm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *host,
                    uint32_t flags, struct error *err);

/* snapshot.c: the backend's snapshot ops (backend.h). */
int kvm_save(struct vm *vm, struct snap_w *w, struct error *err);
int kvm_restore(struct vm *vm, struct snap_r *r, struct error *err);
int kvm_dirty_start(struct vm *vm, struct error *err);
int kvm_dirty_collect(struct vm *vm, uint64_t *bitmap, struct error *err);

/* irqchip_kvm.c: the in-kernel PIC, IOAPIC, LAPICs and PIT (after the memslots). */
struct irqchip *kvm_irqchip_create(int vm_fd, struct error *err);

/* vcpu.c */
int kvm_vcpu_create(struct vm *vm, struct vcpu *v, struct error *err);
void kvm_vcpu_destroy(struct vcpu *v);
void kvm_vcpu_kick(struct vcpu *v);
/* Report a KVM internal error / emulation failure / failed entry (reads RIP and the bytes). */
void kvm_report_internal_error(struct vcpu *v);
void kvm_report_triple_fault(struct vcpu *v);

/* shadow.c: the shadow engine's monitor and MMU, created before the VM's memslots are
 * final (the monitor's memslots go in before the irqchip: docs/HOST_FACTS.md). */
int kvm_shadow_create(struct vm *vm, struct error *err);
int kvm_shadow_add_memslots(struct vm *vm, struct error *err);
void kvm_shadow_destroy(struct vm *vm);
void kvm_shadow_info(const struct vm *vm, cJSON *o);
void kvm_shadow_log_stats(const struct vm *vm);
/* Snapshots of the shadow engine (its part of snapshot.c's): the virtual CPU, the mirrored
 * GDT, the trap frame and the engine's run state as a section; the boot vCPU's real
 * registers as the engine last left them (kvm_run's sync area); and, at restore (the
 * section first), those real registers checked against the monitor's rules and set. */
int kvm_shadow_save(struct vm *vm, struct snap_w *w, struct error *err);
int kvm_shadow_restore(struct vm *vm, struct snap_r *r, struct error *err);
void kvm_shadow_real_regs(const struct vm *vm, struct kvm_regs *regs, struct kvm_sregs *sregs);
int kvm_shadow_set_real_regs(struct vm *vm, const struct kvm_regs *regs,
                             const struct kvm_sregs *sregs, struct error *err);
/* The host CPU to run vCPU `id` on so that cpuid's APIC ID is its own, or -1. */
int kvm_shadow_pin_cpu(unsigned vcpu_id);

#endif
