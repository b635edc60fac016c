/* The VM: KVM handles, guest memory, vCPUs, device buses and how the run ended. */
#ifndef HEARTH_VM_H
#define HEARTH_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config/vm_config.h"
#include "boot.h"
#include "bus.h"
#include "console.h"
#include "error.h"
#include "string_io.h"
#include "guest_memory.h"
#include "host_kvm.h"
#include "host_mmu.h"
#include "i8042.h"
#include "rtc_cmos.h"
#include "serial.h"

struct virtio_mmio;
struct virtio_blk;
struct virtio_console;
struct virtio_net;
struct sh_engine;
struct engine;

/* virtio-mmio devices get GSIs 5..15 (ISA IRQs the MP table routes), one per 4 KiB slot. */
#define VM_VIRTIO_FIRST_GSI 5
#define VM_MAX_VIRTIO       11

enum stop_reason {
	STOP_NONE,
	STOP_GUEST_EXIT,   /* status through the guest-exit port */
	STOP_RESET,        /* i8042 reset or KVM system-event reset */
	STOP_POWEROFF,     /* KVM system-event shutdown */
	STOP_TRIPLE_FAULT, /* KVM_EXIT_SHUTDOWN */
	STOP_KVM_ERROR,    /* internal error, emulation failure, failed entry */
	STOP_TIMEOUT,
	STOP_VMM_ERROR,
};

struct vm_stop {
	enum stop_reason reason;
	int status;       /* guest status for STOP_GUEST_EXIT */
	char detail[512]; /* the one line printed on stderr */
};

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	bool tsc_offset_saved;
	uint64_t tsc_offset;        /* while paused */
	struct string_io_state sio; /* rep outs batching (string_io.h) */
};

struct vm {
	const struct vm_config *cfg;
	struct host_mmu host;
	struct host_kvm kvm;  /* probed at start; /dev/kvm is opened only to build a VM */
	enum mmu_mode engine; /* the engine in use: MMU_HARDWARE or MMU_SHADOW */
	const struct engine *eng;
	bool linux_kernel; /* the loaded kernel is Linux: never the shadow engine */
	int kvm_fd, vm_fd;
	int run_size;
	struct guest_memory mem;
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, queried once */
	pthread_t cpuid_thread;   /* queries it while the guest is loaded (vm_open_kvm) */
	bool cpuid_thread_started;
	int cpuid_errno;
	uint32_t tsc_khz;
	unsigned nvcpus;
	struct vcpu *vcpus;
	struct bus pio, mmio;
	struct console console;
	struct serial uart;
	struct rtc_cmos cmos;
	struct i8042 i8042;
	struct boot_cpu_state boot_cpu;
	struct timespec t_start; /* build start: InstanceStart, or process start */
	struct virtio_mmio *virtio[VM_MAX_VIRTIO];
	unsigned nvirtio;
	struct virtio_blk *blk[VM_MAX_DRIVES];
	unsigned nblk;
	struct virtio_net *net[VM_MAX_NETS]; /* cfg->nets[i] is net[i] */
	unsigned nnet;
	struct virtio_console *vcon;
	char *cmdline;            /* the user's command line plus the virtio_mmio.device= entries */
	struct sh_engine *shadow; /* shadow mode's monitor, MMU and virtual CPU */

	/* Pause: vCPU threads park outside KVM_RUN until resumed. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool paused;
	unsigned parked;
	bool vcpus_released; /* vm_release_vcpus: the vCPUs may enter KVM_RUN */
	bool clock_saved;
	uint64_t paused_at_tsc;
	struct kvm_clock_data clock;

	pthread_mutex_t stop_lock;
	struct vm_stop stop;
	int stop_fd; /* eventfd: written once when the VM must stop */
};

/* Probe the host (no /dev/kvm needed): fills vm->kvm and vm->host. */
void vm_probe_host(struct vm *vm);
/* Open /dev/kvm, check its API; fills vm->kvm_fd. A host without it gets one line saying so
 * and what to do. */
int vm_open_kvm(struct vm *vm, struct error *err);
/* Create the VM, memory, irqchip, PIT, vCPUs, legacy devices; load the kernel; build boot data. */
int vm_build(struct vm *vm, const struct vm_config *cfg, struct error *err, int *exit_code);
/* Start the vCPU threads. Each loads its seccomp filter, then waits for vm_release_vcpus
 * before its first KVM_RUN (so that the VMM thread can load its own filter first). */
int vm_start(struct vm *vm);
void vm_release_vcpus(struct vm *vm);
/* Kick every vCPU out of KVM_RUN and join the threads (after a stop request). */
void vm_stop_vcpus(struct vm *vm);
/* Park every vCPU outside KVM_RUN / let them run again. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* Called by engines before each KVM_RUN: parks while paused; false when the VM must stop. */
bool vm_vcpu_checkpoint(struct vcpu *v);
/* For a vCPU that will not run again: wait (counted as parked) until the VM stops. */
void vm_vcpu_park(struct vcpu *v);
/* Ask the VM to stop; the first request wins. Safe from any thread. */
void vm_request_stop(struct vm *vm, enum stop_reason reason, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *stop_reason_name(enum stop_reason r);
/* auto: shadow where KVM emulates guest CPL0 (PVM), hardware elsewhere. */
enum mmu_mode vm_choose_engine(const struct host_mmu *host, enum mmu_mode requested);
/* The process exit status for how the VM stopped. */
int vm_exit_code(const struct vm_stop *s);
void vm_destroy(struct vm *vm);
/* At process exit: restore the console and leave the KVM teardown to a detached process, so
 * that the exit does not wait for KVM's SRCU grace periods. */
void vm_detach_teardown(struct vm *vm);

#endif
