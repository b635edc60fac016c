/* The VM: guest memory, vCPUs, devices and their buses, and how the run ended. The backend
 * that runs it keeps its own state behind `be` (backend/backend.h). */
#ifndef HEARTH_VM_H
#define HEARTH_VM_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "backend/backend.h"
#include "irqchip/irqchip.h"
#include "config/vm_config.h"
#include "boot/boot.h"
#include "bus.h"
#include "console.h"
#include "error.h"
#include "guest_memory.h"
#include "devices/i8042.h"
#include "devices/rtc_cmos.h"
#include "devices/serial.h"

struct virtio_mmio;
struct virtio_blk;
struct virtio_console;
struct virtio_net;

/* The signal that interrupts a vCPU thread's blocking call (a kick); only vCPU threads take
 * it. */
#define VCPU_KICK_SIGNAL SIGUSR1

/* virtio-mmio devices get GSIs 5..15 (ISA IRQs the MP table routes), one per 4 KiB slot. */
#define VM_VIRTIO_FIRST_GSI 5
#define VM_MAX_VIRTIO       11

enum stop_reason {
	STOP_NONE,
	STOP_GUEST_EXIT,   /* status through the guest-exit port */
	STOP_RESET,        /* i8042 or reset-control reset, or the backend saw a reset */
	STOP_POWEROFF,     /* the backend saw a power-off */
	STOP_TRIPLE_FAULT, /* the guest's CPU shut down */
	STOP_CPU_ERROR,    /* the backend could not run the guest: an instruction it cannot
	                      emulate, an internal error, a failed entry ("kvm-error") */
	STOP_TIMEOUT,
	STOP_VMM_ERROR,
};

struct vm_stop {
	enum stop_reason reason;
	int status;       /* guest status for STOP_GUEST_EXIT */
	char detail[512]; /* the one line printed on stderr */
};

struct vm;
struct backend;

struct vcpu {
	struct vm *vm;
	unsigned id;
	pthread_t thread;
	bool thread_started;
	void *be; /* the backend's part of this vCPU */
};

struct vm {
	const struct vm_config *cfg;
	struct host_probe kvm; /* probed at start; a backend opens its devices to build a VM */
	const struct backend *backend;
	enum engine engine;
	void *be;                /* the backend's part of this VM */
	struct irqchip *irqchip; /* the backend's interrupt controller: every device's IRQs */
	bool linux_kernel;       /* the loaded kernel is Linux: never the shadow engine */
	bool linux_format;       /* a bzImage (Linux, or another kernel in its boot format) */
	struct guest_memory mem;
	bool dirty_tracking; /* track_dirty_pages: the backend and guest memory count writes */
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
	uint32_t irq_polled; /* bit i: virtio[i]'s interrupt eventfd is polled by the VMM loop */
	struct virtio_blk *blk[VM_MAX_DRIVES];
	unsigned nblk;
	struct virtio_net *net[VM_MAX_NETS]; /* cfg->nets[i] is net[i] */
	unsigned nnet;
	struct virtio_console *vcon;
	char *cmdline; /* the user's command line plus the virtio_mmio.device= entries */

	/* Pause: vCPU threads park outside the guest until resumed. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool paused;
	unsigned parked;
	bool vcpus_released; /* vm_release_vcpus: the vCPUs may run the guest */

	pthread_mutex_t stop_lock;
	struct vm_stop stop;
	int stop_fd; /* eventfd: written once when the VM must stop */
};

/* Probe the host (nothing is kept open): fills vm->kvm. */
void vm_probe_host(struct vm *vm);
/* The backend's part of GET /: the host as it sees it, its engine's counters. */
void vm_info(const struct vm *vm, cJSON *o);
/* Load the kernel and boot data, plan the devices, choose the engine, and have the backend
 * create the VM (memory, interrupt controller, vCPUs). */
int vm_build(struct vm *vm, const struct vm_config *cfg, struct error *err, int *exit_code);
/* The same for a VM restored from a snapshot (snapshot/snapshot.h): built from the
 * snapshot's configuration `cfg`, guest RAM from `mem_path`, then every part's state from
 * the snapshot; no guest is loaded. */
struct snapshot_file;
int vm_build_restored(struct vm *vm, const struct vm_config *cfg, struct snapshot_file *snap,
                      const char *mem_path, struct error *err, int *exit_code);

/* How many virtqueues `cfg`'s devices will have (known before the devices are made). */
unsigned vm_queue_count(const struct vm_config *cfg);
/* Start the vCPU threads. Each loads its seccomp filter, then waits for vm_release_vcpus
 * before it runs the guest (so that the VMM thread can load its own filter first). */
int vm_start(struct vm *vm);
void vm_release_vcpus(struct vm *vm);
/* Kick every vCPU out of the guest and join the threads (after a stop request). */
void vm_stop_vcpus(struct vm *vm);
/* Park every vCPU outside the guest, freezing its clocks / let them run again. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* A restored VM: its vCPUs park before their first instruction (call before
 * vm_release_vcpus); vm_wait_parked waits until they have. */
void vm_hold(struct vm *vm);
void vm_wait_parked(struct vm *vm);
/* Called by backends before each entry into the guest: parks while paused; false when the
 * VM must stop. */
bool vm_vcpu_checkpoint(struct vcpu *v);
/* For a vCPU that will not run again: wait (counted as parked) until the VM stops. */
void vm_vcpu_park(struct vcpu *v);
/* Ask the VM to stop; the first request wins. Safe from any thread. */
void vm_request_stop(struct vm *vm, enum stop_reason reason, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *stop_reason_name(enum stop_reason r);
/* The neutral exit path of every backend: a port access (`count` elements of `size` bytes
 * at `data`, a string when count > 1) and an MMIO access (len <= 8), to the device buses. */
void vm_pio(struct vm *vm, uint16_t port, bool write, uint8_t *data, unsigned size, unsigned count);
void vm_mmio(struct vm *vm, uint64_t gpa, bool write, uint8_t *data, unsigned len);
/* Raise (level 1) or lower an interrupt line; a pulse for edge-triggered devices. */
void vm_set_irq(struct vm *vm, unsigned gsi, bool level);
void vm_irq_pulse(struct vm *vm, unsigned gsi);
/* The process exit status for how the VM stopped. */
int vm_exit_code(const struct vm_stop *s);
void vm_destroy(struct vm *vm);
/* At process exit: restore the console and let the backend release the VM without holding
 * up the exit. */
void vm_detach_teardown(struct vm *vm);
/* For a backend's detach: a process that shares this one's memory, waits for it to exit and
 * then releases what is left (fds, the address space) off the clock. False: none made. */
bool vm_teardown_after_exit(void);

#endif
