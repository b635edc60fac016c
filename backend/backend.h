/*
 * The backend interface: everything that depends on how guest code runs. The neutral VMM
 * (vmm/: plan the devices, load the guest, vCPU threads, pause and stop, the device buses)
 * never calls KVM or any other host facility for running a guest; it calls these.
 *
 * A backend keeps its own state behind vm->be and vcpu->be. It runs each vCPU on the vCPU
 * thread vmm/ starts for it, translates its own exit records into the neutral port I/O and
 * MMIO calls (vm_pio, vm_mmio), and creates the VM's interrupt controller (vm->irqchip,
 * irqchip/irqchip.h), through which every device raises its interrupts. Which backend and
 * engine run a VM is decided in one place: backend/select.c.
 *
 * Backends: KVM (backend/kvm/: the hardware and shadow engines), the process engine
 * (backend/process/: no KVM, the guest as a sandboxed host process) and, for tests, a null
 * backend that runs nothing (tests/unit/test_null_backend.c).
 */
#ifndef HEARTH_BACKEND_H
#define HEARTH_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "config/vm_config.h"
#include "boot/boot.h"
#include "vmm/error.h"

#include <cjson/cJSON.h>

struct vm;
struct vcpu;
struct snap_w;
struct snap_r;

/* How guest code is run. */
enum engine {
	ENGINE_HARDWARE, /* KVM runs the guest as it is (EPT/NPT, or KVM's own shadow paging) */
	ENGINE_SHADOW,   /* KVM, guest kernel deprivileged to CPL3, hearth's shadow page tables */
	ENGINE_PROCESS,  /* no KVM: the guest kernel as a sandboxed host process (f.g in the host
	                    MMU) */
};

const char *engine_name(enum engine e);

/* What a backend found on this host (probed at start, without keeping anything open). */
struct host_probe {
	bool usable;        /* it can run guests here */
	bool cpl0_emulated; /* guest ring-0 code would be emulated slowly (KVM on PVM hosts) */
	char state[16];     /* for GET /: e.g. "available", "absent" */
	char summary[128];  /* one line for logs and --version */
	char detail[256];   /* why it is not usable, and what to do */
};

struct backend {
	const char *name;
	/* Guest RAM in a memfd (gm_init_shared), for a backend that maps it elsewhere too. */
	bool shared_memory;
	/* Probe the host. */
	void (*probe)(struct host_probe *p);
	/* Open what the backend needs to build a VM (e.g. /dev/kvm), early: slow host queries
	 * may run meanwhile. Fails with one line that names what is missing. */
	int (*open)(struct vm *vm, struct error *err);
	/* Create the VM: guest memory (already loaded) mapped in, the interrupt controller
	 * (vm->irqchip), every vCPU, the boot vCPU in the state vm->boot_cpu describes. */
	int (*create)(struct vm *vm, struct error *err);
	/* On the vCPU's thread, its seccomp filter loaded: run until the VM must stop (reported
	 * through vm_request_stop); returns when vm_vcpu_checkpoint says so. */
	void (*vcpu_run)(struct vcpu *v);
	/* From any thread: make vcpu_run return to its checkpoint soon. */
	void (*vcpu_kick)(struct vcpu *v);
	/* The host CPU vCPU `id`'s thread must run on, or -1 for any (NULL: any). */
	int (*vcpu_host_cpu)(const struct vm *vm, unsigned id);
	/* Which seccomp list its vCPU threads load (an enum thread_kind, seccomp/filters.h). */
	int (*vcpu_filter)(const struct vm *vm);
	/* Signal eventfd `fd` when the guest writes `datamatch` (len bytes) at MMIO `addr`,
	 * without a trip through hearth (an ioeventfd). -ENOTSUP (or NULL): the access reaches
	 * the device's register through vm_mmio instead, which signals the same eventfd. A
	 * backend may make the descriptor `fd` name another eventfd (dup3 over it) that its own
	 * path can signal: the process engine hands its guest process eventfds before the
	 * devices exist, and the device takes one over here. */
	int (*attach_notify)(struct vm *vm, int fd, uint64_t addr, uint32_t len,
	                     uint64_t datamatch);
	/* With every vCPU parked: freeze / restart the guest's clocks. */
	void (*pause)(struct vm *vm);
	void (*resume)(struct vm *vm);
	/* Snapshots (snapshot/stream.h). With every vCPU parked (vm_pause): append the
	 * backend's state as sections: every vCPU's architectural state (registers, special
	 * and debug registers, MSRs, XSAVE state, XCR0, pending events), the interrupt chips and
	 * the clocks. NULL: this backend cannot save a VM. */
	int (*save)(struct vm *vm, struct snap_w *w, struct error *err);
	/* After create (the boot vCPU state it set is replaced), before any vCPU runs: set the
	 * state `save` wrote, from sections that are hostile input (every field validated; a
	 * bad one fails with its name and changes nothing the caller keeps). */
	int (*restore)(struct vm *vm, struct snap_r *r, struct error *err);
	/* Dirty page tracking for diff snapshots: start (every page counts as clean from now
	 * on), and collect: OR into `bitmap` (one bit per 4 KiB page of guest RAM, in
	 * guest_memory offset order: gm_offset) the pages the guest wrote since the last
	 * start or collect, which restarts the count. NULL: no tracking. */
	int (*dirty_start)(struct vm *vm, struct error *err);
	int (*dirty_collect)(struct vm *vm, uint64_t *bitmap, struct error *err);
	/* Its part of GET / (host facts, engine counters) and of the last log lines. */
	void (*info)(const struct vm *vm, cJSON *o);
	void (*log_stats)(const struct vm *vm);
	/* Release everything; `vm->be` may be partly built. */
	void (*destroy)(struct vm *vm);
	/* At process exit: release in a way that does not hold up the exit (may fall back to
	 * destroy). */
	void (*detach)(struct vm *vm);
};

/* The backends hearth has. */
extern const struct backend kvm_backend;
extern const struct backend process_backend;

/*
 * The one place where the engine is chosen, in two steps: the backend from what the host
 * offers and what the configuration asks for (before the guest is loaded, so that the
 * backend can open its devices early), then the engine from the kernel that was loaded.
 * engine_pick fails with one line that says why and what would run the kernel (*exit_code:
 * the process exit status). A Linux kernel is never given the shadow engine; one in Linux's
 * boot format that is not Linux (`linux_format`: memtest86+) only when asked for, as auto
 * keeps such kernels on the hardware engine where KVM exists.
 */
const struct backend *backend_pick(const struct host_probe *kvm, enum mmu_mode requested);
int engine_pick(const struct backend *b, const struct host_probe *kvm, enum mmu_mode requested,
                bool linux_kernel, bool linux_format, enum engine *engine, struct error *err,
                int *exit_code);

#endif
