/*
 * The VM, backend-neutral: plan the devices, load the guest, choose the engine, let the
 * backend build the machine, run the vCPU threads, pause, stop, and dispatch what the guest
 * does to the device buses.
 */
#include "vm.h"
#include "exit_codes.h"
#include "layout.h"
#include "devices/legacy.h"
#include "log.h"
#include "boot/mptable.h"
#include "boot/acpi.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "seccomp/filters.h"
#include "virtio/net.h"

#include <linux/virtio_blk.h>
#include <linux/virtio_console.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "metrics.h"

#include "snapshot/snapshot.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void vm_probe_host(struct vm *vm)
{
	kvm_backend.probe(&vm->kvm);
}

void vm_info(const struct vm *vm, cJSON *o)
{
	/* The host's KVM facts always; the running backend's own part after them. */
	kvm_backend.info(vm, o);
	if (vm->backend && vm->backend != &kvm_backend)
		vm->backend->info(vm, o);
}

void vm_request_stop(struct vm *vm, enum stop_reason reason, int status, const char *fmt, ...)
{
	va_list ap;
	uint64_t one = 1;
	bool first;

	pthread_mutex_lock(&vm->stop_lock);
	first = vm->stop.reason == STOP_NONE;
	if (first) {
		vm->stop.status = status;
		va_start(ap, fmt);
		vsnprintf(vm->stop.detail, sizeof(vm->stop.detail), fmt, ap);
		va_end(ap);
		__atomic_store_n(&vm->stop.reason, reason, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&vm->stop_lock);
	if (first) {
		pthread_mutex_lock(&vm->pause_lock);
		pthread_cond_broadcast(&vm->pause_cond);
		pthread_mutex_unlock(&vm->pause_lock);
	}
	if (first && write(vm->stop_fd, &one, sizeof(one)) < 0)
		log_warn("stop eventfd: %s", strerror(errno));
}

const char *stop_reason_name(enum stop_reason r)
{
	static const char *const names[] = {
	    [STOP_NONE] = "none",
	    [STOP_GUEST_EXIT] = "guest-exit",
	    [STOP_RESET] = "reset",
	    [STOP_POWEROFF] = "poweroff",
	    [STOP_TRIPLE_FAULT] = "triple-fault",
	    [STOP_CPU_ERROR] = "kvm-error", /* the API's name, kept */
	    [STOP_TIMEOUT] = "timeout",
	    [STOP_VMM_ERROR] = "vmm-error",
	};

	return r <= STOP_VMM_ERROR ? names[r] : "?";
}

int vm_exit_code(const struct vm_stop *s)
{
	switch (s->reason) {
	case STOP_GUEST_EXIT:
		return s->status > EXIT_GUEST_MAX ? EXIT_GUEST_MAX : s->status;
	case STOP_RESET:
	case STOP_POWEROFF:
		return 0;
	case STOP_TRIPLE_FAULT:
		return EXIT_TRIPLE_FAULT;
	case STOP_CPU_ERROR:
		return EXIT_CPU_ERROR;
	case STOP_TIMEOUT:
		return EXIT_TIMEOUT;
	case STOP_NONE:
	case STOP_VMM_ERROR:
		break;
	}
	return EXIT_VMM_ERROR;
}

void vm_set_irq(struct vm *vm, unsigned gsi, bool level)
{
	irqchip_set_irq(vm->irqchip, gsi, level);
}

/* Edge-triggered: raise and lower the line. */
void vm_irq_pulse(struct vm *vm, unsigned gsi)
{
	irqchip_pulse(vm->irqchip, gsi);
}

void vm_pio(struct vm *vm, uint16_t port, bool write, uint8_t *data, unsigned size, unsigned count)
{
	bool claimed = true;

	if (write) {
		if (count == 1)
			claimed = bus_write(&vm->pio, port, data, size);
		else
			claimed = bus_write_rep(&vm->pio, port, data, size, count);
	} else {
		for (unsigned i = 0; i < count; i++)
			claimed &= bus_read(&vm->pio, port, data + (size_t)i * size, size);
	}
	if (!claimed)
		METRIC_INC(unclaimed_pio);
}

void vm_mmio(struct vm *vm, uint64_t gpa, bool write, uint8_t *data, unsigned len)
{
	bool claimed;

	if (len > 8)
		len = 8;
	if (write)
		claimed = bus_write(&vm->mmio, gpa, data, len);
	else
		claimed = bus_read(&vm->mmio, gpa, data, len);
	if (!claimed)
		METRIC_INC(unclaimed_mmio);
}

static void i8042_reset(void *ctx)
{
	vm_request_stop(ctx, STOP_RESET, 0, "guest reset the VM (i8042)");
}

static void i8042_irq(void *ctx)
{
	vm_irq_pulse(ctx, IRQ_I8042);
}

static void uart_irq(void *ctx)
{
	vm_irq_pulse(ctx, IRQ_COM1);
}

static int add_legacy_devices(struct vm *vm, struct error *err)
{
	struct bus *b = &vm->pio;

	serial_init(&vm->uart, &vm->console);
	vm->uart.irq_pulse = uart_irq;
	vm->uart.irq_ctx = vm;
	rtc_cmos_init(&vm->cmos);
	i8042_init(&vm->i8042, i8042_reset, i8042_irq, vm);
	if (bus_add(b, PORT_COM1, 8, &serial_bus_ops, &vm->uart, "uart") ||
	    bus_add(b, PORT_I8042_DATA, 1, &i8042_data_bus_ops, &vm->i8042, "i8042") ||
	    bus_add(b, PORT_I8042_CMD, 1, &i8042_cmd_bus_ops, &vm->i8042, "i8042") ||
	    bus_add(b, PORT_CMOS_INDEX, 2, &rtc_cmos_bus_ops, &vm->cmos, "rtc") ||
	    bus_add(b, PORT_GUEST_EXIT, 1, &guest_exit_bus_ops, vm, "guest-exit") ||
	    bus_add(b, PORT_RESET_CTRL, 1, &reset_ctrl_bus_ops, vm, "reset-control"))
		return err_set(err, "port I/O bus: overlapping devices");
	if (vm->cfg->boot_timer && bus_add(&vm->mmio, LAYOUT_BOOT_TIMER_ADDR, LAYOUT_MMIO_SLOT_SIZE,
	                                   &boot_timer_bus_ops, vm, "boot-timer"))
		return err_set(err, "MMIO bus: overlapping devices");
	return 0;
}

/* A transport for the next free slot: base address and GSI follow the slot index. */
static struct virtio_mmio *new_transport(struct vm *vm, const char *name, uint32_t device_id,
                                         uint64_t features, uint32_t config_size, unsigned nqueues,
                                         const struct virtio_dev_ops *ops, void *dev,
                                         struct error *err)
{
	struct virtio_mmio *t;
	unsigned slot = vm->nvirtio;

	if (slot >= VM_MAX_VIRTIO) {
		err_set(err, "too many devices: at most %d virtio devices", VM_MAX_VIRTIO);
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		err_set(err, "out of memory");
		return NULL;
	}
	vm->virtio[vm->nvirtio++] = t;
	if (virtio_mmio_init(t, name, device_id, features, config_size, nqueues, VIRTQ_MAX_SIZE,
	                     ops, dev, &vm->mem,
	                     LAYOUT_MMIO_SLOTS_START + slot * LAYOUT_MMIO_SLOT_SIZE,
	                     VM_VIRTIO_FIRST_GSI + slot) < 0) {
		err_set(err, "%s: cannot create eventfds: %s", name, strerror(errno));
		return NULL;
	}
	return t;
}

static int add_drive(struct vm *vm, const struct drive_config *d, struct error *err)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	struct virtio_mmio *t;

	if (!b)
		return err_set(err, "out of memory");
	vm->blk[vm->nblk++] = b;
	if (virtio_blk_open(b, d->path, d->read_only, d->id, err))
		return -1;
	if (b->warning[0])
		log_warn("drive %s: %s", d->id, b->warning);
	t = new_transport(vm, d->id, VIRTIO_ID_BLOCK, virtio_blk_features(b),
	                  sizeof(struct virtio_blk_config), VIRTIO_BLK_QUEUES, &virtio_blk_ops, b,
	                  err);
	if (!t)
		return -1;
	b->t = t;
	return 0;
}

/* Attach every TAP before devices are planned: a missing or busy interface is a host
 * problem (EXIT_VMM_ERROR), not a bad image. The MAC is fixed here for the VM's life. */
static int open_nets(struct vm *vm, const struct vm_config *cfg, struct error *err)
{
	for (unsigned i = 0; i < cfg->nnets; i++) {
		const struct net_config *nc = &cfg->nets[i];
		struct virtio_net *n = calloc(1, sizeof(*n));
		char msg[sizeof(err->msg)];
		uint8_t mac[6];

		if (!n)
			return err_set(err, "out of memory");
		n->tap_fd = -1;
		vm->net[vm->nnet++] = n;
		if (nc->has_mac)
			memcpy(mac, nc->mac, sizeof(mac));
		else
			virtio_net_random_mac(mac);
		if (virtio_net_open(n, nc->host_dev_name, mac, err)) {
			memcpy(msg, err->msg, sizeof(msg));
			return err_set(err, "network interface %s: %s", nc->id, msg);
		}
		log_info("network interface %s: TAP %s, MAC %02x:%02x:%02x:%02x:%02x:%02x, MTU %u",
		         nc->id, n->ifname, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], n->mtu);
	}
	return 0;
}

static int add_net(struct vm *vm, unsigned i, struct error *err)
{
	struct virtio_net *n = vm->net[i];
	struct virtio_mmio *t;

	t = new_transport(vm, vm->cfg->nets[i].id, VIRTIO_ID_NET, virtio_net_features(n),
	                  VIRTIO_NET_CONFIG_SIZE, VIRTIO_NET_QUEUES, &virtio_net_ops, n, err);
	if (!t)
		return -1;
	n->t = t;
	return 0;
}

unsigned vm_queue_count(const struct vm_config *cfg)
{
	return cfg->ndrives * VIRTIO_BLK_QUEUES + cfg->nnets * VIRTIO_NET_QUEUES +
	       (cfg->virtio_console ? VIRTIO_CONSOLE_QUEUES : 0);
}

/* Create the virtio devices (no backend yet) and the command line that announces them. */
static int plan_devices(struct vm *vm, const struct vm_config *cfg, struct error *err)
{
	size_t len = (cfg->cmdline ? strlen(cfg->cmdline) : 0) + 1;
	char *p;

	for (unsigned i = 0; i < cfg->ndrives; i++)
		if (add_drive(vm, &cfg->drives[i], err))
			return -1;
	for (unsigned i = 0; i < vm->nnet; i++)
		if (add_net(vm, i, err))
			return -1;
	if (cfg->virtio_console) {
		struct virtio_mmio *t;

		vm->vcon = calloc(1, sizeof(*vm->vcon));
		if (!vm->vcon)
			return err_set(err, "out of memory");
		t = new_transport(vm, "console", VIRTIO_ID_CONSOLE, 0,
		                  sizeof(struct virtio_console_config), VIRTIO_CONSOLE_QUEUES,
		                  &virtio_console_ops, vm->vcon, err);
		if (!t)
			return -1;
		virtio_console_init(vm->vcon, t, &vm->console);
	}
	/* " virtio_mmio.device=4K@0x<base>:<gsi>" per device, for kernels that parse it. */
	len += vm->nvirtio * 48;
	vm->cmdline = p = malloc(len);
	if (!p)
		return err_set(err, "out of memory");
	p += snprintf(p, len, "%s", cfg->cmdline ? cfg->cmdline : "");
	for (unsigned i = 0; i < vm->nvirtio; i++)
		p += snprintf(p, len - (size_t)(p - vm->cmdline),
		              "%svirtio_mmio.device=4K@0x%llx:%u", p == vm->cmdline ? "" : " ",
		              (unsigned long long)vm->virtio[i]->base, vm->virtio[i]->gsi);
	return 0;
}

/* Each device's registers on the MMIO bus. Its notification and interrupt eventfds are
 * bound once the backend built the machine (bind_device_fds). */
static int map_devices(struct vm *vm, struct error *err)
{
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct virtio_mmio *t = vm->virtio[i];

		if (bus_add(&vm->mmio, t->base, LAYOUT_MMIO_SLOT_SIZE, &virtio_mmio_bus_ops, t,
		            t->name))
			return err_set(err, "%s: MMIO slot overlaps", t->name);
	}
	return 0;
}

/* Each device's interrupt eventfd to its GSI and each queue's notify eventfd to its
 * QueueNotify write, where the backend can do that without hearth's threads (the backend may
 * swap the notify eventfd for one of its own under the same descriptor). Otherwise the VMM
 * loop polls the interrupt eventfd (vm->irq_polled), and a notify arrives as the MMIO write
 * it is, which signals the same eventfd. */
static int bind_device_fds(struct vm *vm, struct error *err)
{
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct virtio_mmio *t = vm->virtio[i];
		int r = irqchip_attach_irqfd(vm->irqchip, t->irq_fd, t->gsi);

		if (r == -ENOTSUP)
			vm->irq_polled |= 1u << i;
		else if (r < 0)
			return err_set(err, "%s: interrupt eventfd on GSI %u: %s", t->name, t->gsi,
			               strerror(-r));
		for (unsigned q = 0; q < t->nqueues && vm->backend->attach_notify; q++) {
			r = vm->backend->attach_notify(vm, t->notify_fd[q],
			                               t->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q);
			if (r < 0 && r != -ENOTSUP)
				return err_set(err, "%s: queue %u notify eventfd: %s", t->name, q,
				               strerror(-r));
		}
	}
	return 0;
}

/* ACPI tables describe the same platform as the MP table, plus the virtio-mmio devices
 * for kernels that only discover them through ACPI. */
static int write_acpi(struct vm *vm, uint64_t *rsdp, struct error *err)
{
	struct acpi_mmio_device devs[VM_MAX_VIRTIO];

	for (unsigned i = 0; i < vm->nvirtio; i++)
		devs[i] = (struct acpi_mmio_device){vm->virtio[i]->base, LAYOUT_MMIO_SLOT_SIZE,
		                                    vm->virtio[i]->gsi};
	return acpi_write(&vm->mem, LAYOUT_ACPI_START, LAYOUT_ACPI_END - LAYOUT_ACPI_START,
	                  vm->nvcpus, devs, vm->nvirtio, rsdp, err);
}

/* Prefix an error message with what was being loaded. */
static int err_context(struct error *err, const char *what)
{
	char msg[sizeof(err->msg)];

	memcpy(msg, err->msg, sizeof(msg));
	return err_set(err, "%s: %s", what, msg);
}

/* Load kernel and initrd and build the boot structures; only guest memory is touched. */
static int load_guest(struct vm *vm, const struct vm_config *cfg, struct error *err)
{
	const uint8_t *img = NULL, *rd = NULL;
	size_t len = 0, rdlen = 0;
	struct kernel_image k;
	struct boot_args args = {.cmdline = vm->cmdline, .kernel_name = cfg->kernel_path};
	int r = -1;

	if (file_map(cfg->kernel_path, &img, &len, err) ||
	    kernel_load(&vm->mem, img, len, cfg->boot_protocol, &k, err)) {
		err_context(err, "kernel");
		goto out;
	}
	vm->linux_kernel = k.linux_kernel;
	vm->linux_format = k.format == KERNEL_BZIMAGE;
	if (k.warning[0])
		log_warn("kernel: %s", k.warning);
	if (cfg->initrd_path) {
		if (file_map(cfg->initrd_path, &rd, &rdlen, err) ||
		    initrd_load(&vm->mem, &k, rd, rdlen, &args.initrd_addr, err)) {
			err_context(err, "initrd");
			goto out;
		}
		args.initrd_size = rdlen;
	}
	if (write_acpi(vm, &args.rsdp_addr, err) ||
	    boot_setup(&vm->mem, &k, &args, &vm->boot_cpu, err))
		goto out;
	r = mptable_write(&vm->mem, LAYOUT_MPTABLE, vm->nvcpus, LAYOUT_IOAPIC_ADDR, err);
out:
	if (img)
		file_unmap(img, len);
	if (rd)
		file_unmap(rd, rdlen);
	return r;
}

/* The backend a snapshot's engine needs. */
static const struct backend *snapshot_backend(const struct snapshot_file *snap)
{
	return snap->meta.engine == ENGINE_PROCESS ? &process_backend : &kvm_backend;
}

/* Dirty page tracking (diff snapshots): the guest's writes through the backend, the devices'
 * through guest memory. */
static int start_dirty_tracking(struct vm *vm, struct error *err)
{
	if (!vm->backend->dirty_start)
		return err_set(err, "track_dirty_pages: the %s engine cannot track dirty pages",
		               engine_name(vm->engine));
	if (vm->backend->dirty_start(vm, err))
		return -1;
	if (gm_dirty_start(&vm->mem))
		return err_set(err, "track_dirty_pages: out of memory");
	vm->dirty_tracking = true;
	return 0;
}

/* Guest RAM: new, or a snapshot's memory file. */
static int map_memory(struct vm *vm, const struct vm_config *cfg, struct snapshot_file *snap,
                      const char *mem_path, struct error *err, int *exit_code)
{
	int r;

	*exit_code = EXIT_VMM_ERROR;
	if (snap)
		return snapshot_map_memory(&vm->mem, mem_path, &snap->meta,
		                           vm->backend->shared_memory, err);
	r = vm->backend->shared_memory ? gm_init_shared(&vm->mem, cfg->mem_mib * MIB)
	                               : gm_init(&vm->mem, cfg->mem_mib * MIB);
	if (r == -EFBIG)
		return err_set(
		    err,
		    "cannot make %llu MiB of guest memory: the %s engine keeps guest RAM "
		    "in a file (a memfd), and the file-size limit (RLIMIT_FSIZE; the "
		    "jailer's --resource-limit fsize) is lower",
		    (unsigned long long)cfg->mem_mib, vm->backend->name);
	if (r < 0)
		return err_set(err, "cannot map %llu MiB of guest memory: %s",
		               (unsigned long long)cfg->mem_mib, strerror(-r));
	return 0;
}

/* Build a VM that boots `cfg`'s kernel, or (snap) one restored from a snapshot. */
static int build(struct vm *vm, const struct vm_config *cfg, struct snapshot_file *snap,
                 const char *mem_path, struct error *err, int *exit_code)
{
	struct error open_err = {""};
	int open_r;

	clock_gettime(CLOCK_MONOTONIC, &vm->t_start);
	vm->cfg = cfg;
	vm->nvcpus = cfg->vcpus;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0) {
		*exit_code = EXIT_VMM_ERROR;
		return err_set(err, "eventfd: %s", strerror(errno));
	}
	/* The backend opens its devices first: slow host queries run while the guest is
	 * loaded. Its failure is reported after the images are checked, so that a bad image is
	 * reported as such on any host. */
	if (!vm->backend) /* (a test may bring its own) */
		vm->backend = snap ? snapshot_backend(snap) : backend_pick(&vm->kvm, cfg->mmu);
	/* A backend that maps guest RAM elsewhere too gets it before it opens (the process
	 * engine starts its guest process there, while the guest is loaded). */
	if (vm->backend->shared_memory && map_memory(vm, cfg, snap, mem_path, err, exit_code))
		return -1;
	open_r = vm->backend->open(vm, &open_err);
	if (snap && open_r) {
		*err = open_err;
		*exit_code = EXIT_VMM_ERROR;
		return -1;
	}
	if (!vm->backend->shared_memory && map_memory(vm, cfg, snap, mem_path, err, exit_code))
		return -1;
	if (open_nets(vm, cfg, err)) {
		*exit_code = EXIT_VMM_ERROR;
		return -1;
	}
	if (snap) {
		/* The guest is in guest memory already; the engine is the one it ran in. */
		if (plan_devices(vm, cfg, err)) {
			*exit_code = EXIT_VMM_ERROR;
			return -1;
		}
		vm->linux_kernel = snap->meta.linux_kernel;
		vm->engine = (enum engine)snap->meta.engine;
	} else {
		/* Guest images first: a bad image is reported before the machine is built. */
		if (plan_devices(vm, cfg, err) || load_guest(vm, cfg, err)) {
			*exit_code = EXIT_BAD_IMAGE;
			return -1;
		}
		if (engine_pick(vm->backend, &vm->kvm, cfg->mmu, vm->linux_kernel, vm->linux_format,
		                &vm->engine, err, exit_code))
			return -1;
	}
	if (open_r) {
		*err = open_err;
		*exit_code = EXIT_VMM_ERROR;
		return -1;
	}
	if (console_open(&vm->console, cfg->console, cfg->console_path, err)) {
		*exit_code = EXIT_USAGE;
		return -1;
	}
	vm->vcpus = calloc(vm->nvcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		*exit_code = EXIT_VMM_ERROR;
		return err_set(err, "out of memory");
	}
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vm->vcpus[i] = (struct vcpu){.vm = vm, .id = i};
	if (add_legacy_devices(vm, err) || map_devices(vm, err) || vm->backend->create(vm, err) ||
	    bind_device_fds(vm, err) || (snap && snapshot_restore_state(vm, snap, err)) ||
	    (cfg->track_dirty_pages && start_dirty_tracking(vm, err))) {
		*exit_code = EXIT_VMM_ERROR;
		return -1;
	}
	return 0;
}

int vm_build(struct vm *vm, const struct vm_config *cfg, struct error *err, int *exit_code)
{
	return build(vm, cfg, NULL, NULL, err, exit_code);
}

int vm_build_restored(struct vm *vm, const struct vm_config *cfg, struct snapshot_file *snap,
                      const char *mem_path, struct error *err, int *exit_code)
{
	return build(vm, cfg, snap, mem_path, err, exit_code);
}

/* vCPU threads wait here, their filter loaded, until the VMM thread has loaded its own
 * (vm_release_vcpus); false when the VM must stop instead. */
static bool vcpu_wait_release(struct vm *vm)
{
	bool go;

	pthread_mutex_lock(&vm->pause_lock);
	while (!vm->vcpus_released && !__atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	go = !__atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&vm->pause_lock);
	return go;
}

void vm_release_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->vcpus_released = true;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct error err = {""};
	char name[16];
	sigset_t set;

	snprintf(name, sizeof(name), "hearth-vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	/* The vCPU filter goes on before the guest runs (seccomp/filters.c). */
	if (seccomp_install((enum thread_kind)v->vm->backend->vcpu_filter(v->vm), &err)) {
		vm_request_stop(v->vm, STOP_VMM_ERROR, 0, "vCPU %u: %s", v->id, err.msg);
		return NULL;
	}
	if (vcpu_wait_release(v->vm))
		v->vm->backend->vcpu_run(v);
	return NULL;
}

static void kick_handler(int sig)
{
	(void)sig;
}

int vm_start(struct vm *vm)
{
	struct sigaction sa = {.sa_handler = kick_handler};
	sigset_t set;

	/* The kick signal interrupts a vCPU's blocking call; only vCPU threads take it. */
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		pthread_attr_t attr;
		int cpu = -1, r;

		pthread_attr_init(&attr);
		if (vm->backend->vcpu_host_cpu)
			cpu = vm->backend->vcpu_host_cpu(vm, i);
		if (cpu >= 0) {
			cpu_set_t cpus;

			CPU_ZERO(&cpus);
			CPU_SET(cpu, &cpus);
			pthread_attr_setaffinity_np(&attr, sizeof(cpus), &cpus);
		}
		r = pthread_create(&v->thread, &attr, vcpu_thread, v);
		pthread_attr_destroy(&attr);
		if (r != 0) {
			vm_request_stop(vm, STOP_VMM_ERROR, 0, "cannot start vCPU %u thread", i);
			return -1;
		}
		v->thread_started = true;
	}
	return 0;
}

void vm_stop_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->paused = false;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vm->backend->vcpu_kick(&vm->vcpus[i]);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].thread_started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].thread_started = false;
		}
}

bool vm_vcpu_checkpoint(struct vcpu *v)
{
	struct vm *vm = v->vm;

	if (__atomic_load_n(&vm->paused, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&vm->pause_lock);
		vm->parked++;
		pthread_cond_broadcast(&vm->pause_cond);
		while (vm->paused && !__atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE))
			pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
		vm->parked--;
		pthread_mutex_unlock(&vm->pause_lock);
	}
	return !__atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE);
}

void vm_vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (!__atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	__atomic_store_n(&vm->paused, true, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vm->backend->vcpu_kick(&vm->vcpus[i]);
	/* Wait until every vCPU is parked outside the guest (or the VM stopped). */
	while (vm->parked < vm->nvcpus && !__atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
	vm->backend->pause(vm); /* the guest's clocks stop too */
}

void vm_hold(struct vm *vm)
{
	/* Before the vCPUs are released: they park at their first checkpoint. The backend's
	 * clocks are as restore left them: stopped until vm_resume. */
	pthread_mutex_lock(&vm->pause_lock);
	__atomic_store_n(&vm->paused, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_wait_parked(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->parked < vm->nvcpus && !__atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_resume(struct vm *vm)
{
	vm->backend->resume(vm);
	pthread_mutex_lock(&vm->pause_lock);
	__atomic_store_n(&vm->paused, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_destroy(struct vm *vm)
{
	console_close(&vm->console);
	irqchip_destroy(vm->irqchip);
	vm->irqchip = NULL;
	if (vm->backend)
		vm->backend->destroy(vm);
	free(vm->vcpus);
	vm->vcpus = NULL;
	for (unsigned i = 0; i < vm->nblk; i++) {
		virtio_blk_close(vm->blk[i]);
		free(vm->blk[i]);
	}
	for (unsigned i = 0; i < vm->nvirtio; i++)
		free(vm->virtio[i]);
	for (unsigned i = 0; i < vm->nnet; i++) {
		virtio_net_close(vm->net[i]);
		free(vm->net[i]);
	}
	free(vm->vcon);
	free(vm->cmdline);
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	gm_destroy(&vm->mem);
}

/* Runs in the teardown process: wait until hearth has exited (so that this process holds
 * the last references to the VM), then drop every fd and leave. Only raw system calls: this
 * process shares hearth's memory but none of its threads. */
static int teardown_main(void *arg)
{
	int pidfd = (int)(intptr_t)arg;
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	/* Do not keep hearth's stdout/stderr open: whoever reads them waits for EOF. */
	syscall(SYS_close_range, 0, 2, 0);
	syscall(SYS_poll, &p, 1, 5000);
	syscall(SYS_close_range, 0, ~0U, 0);
	syscall(SYS_exit, 0);
	return 0;
}

bool vm_teardown_after_exit(void)
{
	enum { STACK = 64 * 1024 };
	static char stack[STACK] __attribute__((aligned(16)));
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);

	/* A process sharing our memory but holding its own copy of the fd table keeps the VM
	 * (its fds, guest memory, the address space itself) alive past our exit and pays for
	 * releasing them off the clock; with no exit signal, init reaps it. */
	return pidfd >= 0 &&
	       clone(teardown_main, stack + STACK, CLONE_VM, (void *)(intptr_t)pidfd) >= 0;
}

void vm_detach_teardown(struct vm *vm)
{
	console_close(&vm->console);
	if (vm->backend)
		vm->backend->detach(vm);
	else
		vm_destroy(vm);
}
