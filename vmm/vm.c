#include "vm.h"
#include "cpuid.h"
#include "engine.h"
#include "exit_codes.h"
#include "layout.h"
#include "legacy.h"
#include "log.h"
#include "mptable.h"
#include "vcpu.h"
#include "acpi.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "seccomp/filters.h"
#include "virtio/net.h"

#include <linux/virtio_blk.h>
#include <linux/virtio_console.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KVM_API_VERSION_REQUIRED 12

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
};

static void start_cpuid_query(struct vm *vm);

void vm_probe_host(struct vm *vm)
{
	host_kvm_probe(&vm->kvm, "/dev/kvm", "/sys");
	host_mmu_detect(&vm->host, "/sys");
	if (vm->kvm.state != KVM_AVAILABLE)
		vm->host.kind = HOST_MMU_NONE;
}

int vm_open_kvm(struct vm *vm, struct error *err)
{
	int v;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		vm_probe_host(vm); /* the reason now, not at start */
		return err_set(err,
		               "cannot run a guest: %s. hearth runs guests with KVM: use a host "
		               "where /dev/kvm exists and this user may open it",
		               vm->kvm.detail[0] ? vm->kvm.detail : strerror(errno));
	}
	if (vm->kvm.state != KVM_AVAILABLE)
		vm_probe_host(vm); /* /dev/kvm appeared since start */
	v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION_REQUIRED)
		return err_set(err, "KVM API version %d, need %d", v, KVM_API_VERSION_REQUIRED);
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0)
			return err_set(err, "KVM lacks %s", required_caps[i].name);
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0)
		return err_set(err, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	start_cpuid_query(vm);
	return 0;
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

enum mmu_mode vm_choose_engine(const struct host_mmu *host, enum mmu_mode requested)
{
	if (requested == MMU_AUTO)
		return host->cpl0_emulated ? MMU_SHADOW : MMU_HARDWARE;
	return requested;
}

const char *stop_reason_name(enum stop_reason r)
{
	static const char *const names[] = {
	    [STOP_NONE] = "none",
	    [STOP_GUEST_EXIT] = "guest-exit",
	    [STOP_RESET] = "reset",
	    [STOP_POWEROFF] = "poweroff",
	    [STOP_TRIPLE_FAULT] = "triple-fault",
	    [STOP_KVM_ERROR] = "kvm-error",
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
	case STOP_KVM_ERROR:
		return EXIT_KVM_ERROR;
	case STOP_TIMEOUT:
		return EXIT_TIMEOUT;
	case STOP_NONE:
	case STOP_VMM_ERROR:
		break;
	}
	return EXIT_VMM_ERROR;
}

static int set_memslot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host,
                       struct error *err)
{
	struct kvm_userspace_memory_region r = {
	    .slot = slot,
	    .guest_phys_addr = gpa,
	    .memory_size = size,
	    .userspace_addr = (uint64_t)(uintptr_t)host,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return err_set(err, "KVM_SET_USER_MEMORY_REGION slot %u: %s", slot,
		               strerror(errno));
	return 0;
}

/* KVM_GET_SUPPORTED_CPUID runs the host's cpuid for every leaf: ~0.3 ms here, each one a
 * trap to the outer hypervisor. A thread started with vm_open_kvm does it while the VMM
 * thread maps memory and loads the guest. */
static void *cpuid_thread(void *arg)
{
	struct vm *vm = arg;

	/* Leave room for the hypervisor leaves cpuid_normalize adds. */
	vm->cpuid->nent = CPUID_MAX_ENTRIES - 8;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid) < 0)
		vm->cpuid_errno = errno;
	return NULL;
}

static struct kvm_cpuid2 *cpuid_alloc(void)
{
	return calloc(1, sizeof(struct kvm_cpuid2) +
	                     CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
}

static void start_cpuid_query(struct vm *vm)
{
	vm->cpuid = cpuid_alloc();
	if (vm->cpuid && !pthread_create(&vm->cpuid_thread, NULL, cpuid_thread, vm))
		vm->cpuid_thread_started = true;
}

/* The result of the query started by vm_open_kvm; a new query when that one was used up
 * (a VM built again after a failed start). */
static int query_cpuid(struct vm *vm, struct error *err)
{
	if (vm->cpuid_thread_started) {
		pthread_join(vm->cpuid_thread, NULL);
		vm->cpuid_thread_started = false;
	} else {
		if (!vm->cpuid && !(vm->cpuid = cpuid_alloc()))
			return err_set(err, "out of memory");
		vm->cpuid_errno = 0;
		cpuid_thread(vm);
	}
	if (vm->cpuid_errno)
		return err_set(err, "KVM_GET_SUPPORTED_CPUID: %s", strerror(vm->cpuid_errno));
	return 0;
}

/* Edge-triggered ISA interrupt: raise and lower the line. */
static void irq_pulse(struct vm *vm, uint32_t irq)
{
	struct kvm_irq_level l = {.irq = irq, .level = 1};

	ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
	l.level = 0;
	ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
}

static void i8042_reset(void *ctx)
{
	vm_request_stop(ctx, STOP_RESET, 0, "guest reset the VM (i8042)");
}

static void i8042_irq(void *ctx)
{
	irq_pulse(ctx, IRQ_I8042);
}

static void uart_irq(void *ctx)
{
	irq_pulse(ctx, IRQ_COM1);
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
	    bus_add(b, PORT_I8042_DATA, 5, &i8042_bus_ops, &vm->i8042, "i8042") ||
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
	                  sizeof(struct virtio_blk_config), 1, &virtio_blk_ops, b, err);
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

/* Create the virtio devices (no KVM yet) and the command line that announces them. */
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

/* Bind each device to KVM: its GSI through an irqfd, each queue's notify through an
 * ioeventfd (the hot path never leaves the kernel), registers on the MMIO bus. */
static int wire_devices(struct vm *vm, struct error *err)
{
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct virtio_mmio *t = vm->virtio[i];
		struct kvm_irqfd irqfd = {.fd = (uint32_t)t->irq_fd, .gsi = t->gsi};

		if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
			return err_set(err, "%s: KVM_IRQFD: %s", t->name, strerror(errno));
		for (unsigned q = 0; q < t->nqueues; q++) {
			struct kvm_ioeventfd io = {
			    .datamatch = q,
			    .addr = t->base + VIRTIO_MMIO_QUEUE_NOTIFY,
			    .len = 4,
			    .fd = t->notify_fd[q],
			    .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
			};

			if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
				return err_set(err, "%s: KVM_IOEVENTFD: %s", t->name,
				               strerror(errno));
		}
		if (bus_add(&vm->mmio, t->base, LAYOUT_MMIO_SLOT_SIZE, &virtio_mmio_bus_ops, t,
		            t->name))
			return err_set(err, "%s: MMIO slot overlaps", t->name);
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
	struct boot_args args = {.cmdline = vm->cmdline};
	int r = -1;

	if (file_map(cfg->kernel_path, &img, &len, err) ||
	    kernel_load(&vm->mem, img, len, cfg->boot_protocol, &k, err)) {
		err_context(err, "kernel");
		goto out;
	}
	vm->linux_kernel = k.linux_kernel;
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

static int create_machine(struct vm *vm, struct error *err)
{
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	uint64_t identity = LAYOUT_KVM_IDENTITY_ADDR;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return err_set(err, "KVM_CREATE_VM: %s", strerror(errno));
	/* VMX needs these pages in the gap; other backends ignore or refuse them harmlessly. */
	ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_KVM_TSS_ADDR);
	ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity);
	/* Memslots before the irqchip: after it, each costs an SRCU grace period
	 * (docs/HOST_FACTS.md). */
	if (set_memslot(vm, 0, 0, vm->mem.low_size, vm->mem.host, err))
		return -1;
	if (vm->mem.high_size && set_memslot(vm, 1, LAYOUT_HIGH_RAM_START, vm->mem.high_size,
	                                     vm->mem.host + vm->mem.low_size, err))
		return -1;
	/* The CPUID query (started with /dev/kvm) is done by now: the shadow monitor's place
	 * depends on the guest-physical width it reports. */
	if (query_cpuid(vm, err))
		return -1;
	if (vm->engine == MMU_SHADOW &&
	    (shadow_engine_create(vm, err) || shadow_engine_add_memslots(vm, err)))
		return -1;
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return err_set(err, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return err_set(err, "KVM_CREATE_PIT2: %s", strerror(errno));
	if (wire_devices(vm, err))
		return -1;
	vm->vcpus = calloc(vm->nvcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return err_set(err, "out of memory");
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vcpu_create(vm, &vm->vcpus[i], i, err))
			return -1;
	return vm->eng->setup_boot_vcpu(&vm->vcpus[0], &vm->boot_cpu, err);
}

int vm_build(struct vm *vm, const struct vm_config *cfg, struct error *err, int *exit_code)
{
	struct error kvm_err = {""};
	int r, kvm_r;

	clock_gettime(CLOCK_MONOTONIC, &vm->t_start);
	vm->cfg = cfg;
	vm->nvcpus = cfg->vcpus;
	vm->vm_fd = -1;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0) {
		*exit_code = EXIT_VMM_ERROR;
		return err_set(err, "eventfd: %s", strerror(errno));
	}
	/* First: the CPUID query it starts runs while the guest is loaded. Without KVM the
	 * images are still checked, so that a bad one is reported as such on any host. */
	kvm_r = vm_open_kvm(vm, &kvm_err);
	r = gm_init(&vm->mem, cfg->mem_mib * MIB);
	if (r < 0) {
		*exit_code = EXIT_VMM_ERROR;
		return err_set(err, "cannot map %llu MiB of guest memory: %s",
		               (unsigned long long)cfg->mem_mib, strerror(-r));
	}
	if (open_nets(vm, cfg, err)) {
		*exit_code = EXIT_VMM_ERROR;
		return -1;
	}
	/* Guest images first: a bad image is reported before any KVM work. */
	if (plan_devices(vm, cfg, err) || load_guest(vm, cfg, err)) {
		*exit_code = EXIT_BAD_IMAGE;
		return -1;
	}
	/* The engine: shadow mode runs single-address-space guests; Linux has a user mode. */
	vm->engine = vm_choose_engine(&vm->host, cfg->mmu);
	if (vm->engine == MMU_SHADOW && vm->linux_kernel) {
		if (cfg->mmu == MMU_SHADOW) {
			*exit_code = EXIT_USAGE;
			return err_set(err,
			               "--mmu shadow: this is a Linux kernel, which has its own "
			               "user mode; shadow mode runs single-address-space guests "
			               "only (use --mmu hardware or auto)");
		}
		vm->engine = MMU_HARDWARE;
	}
	vm->eng = vm->engine == MMU_SHADOW ? &shadow_engine : &hardware_engine;
	if (kvm_r) {
		*err = kvm_err;
		*exit_code = EXIT_VMM_ERROR;
		return -1;
	}
	if (console_open(&vm->console, cfg->console, cfg->console_path, err)) {
		*exit_code = EXIT_USAGE;
		return -1;
	}
	if (add_legacy_devices(vm, err) || create_machine(vm, err)) {
		*exit_code = EXIT_VMM_ERROR;
		return -1;
	}
	return 0;
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
	/* The vCPU filter goes on before the first KVM_RUN (seccomp/filters.c). */
	if (seccomp_install(v->vm->engine == MMU_SHADOW ? THREAD_VCPU_SHADOW : THREAD_VCPU, &err)) {
		vm_request_stop(v->vm, STOP_VMM_ERROR, 0, "vCPU %u: %s", v->id, err.msg);
		return NULL;
	}
	if (vcpu_wait_release(v->vm))
		v->vm->eng->run(v);
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

	/* The kick signal interrupts KVM_RUN; only vCPU threads take it. */
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		pthread_attr_t attr;
		int cpu = -1, r;

		pthread_attr_init(&attr);
		if (vm->engine == MMU_SHADOW && vm->host.cpl0_emulated)
			cpu = shadow_engine_pin_cpu(i);
		if (cpu >= 0) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(cpu, &set);
			pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
			log_info("shadow mode: vCPU %u runs on host CPU %d (APIC ID %u)", i, cpu,
			         i);
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
		vcpu_kick(&vm->vcpus[i]);
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
		v->run->immediate_exit = 0;
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
		vcpu_kick(&vm->vcpus[i]);
	/* Wait until every vCPU is parked outside KVM_RUN (or the VM stopped). */
	while (vm->parked < vm->nvcpus && !__atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
	/* Freeze the guest's clocks: kvmclock and the TSC go on from here after resume, with
	 * no jump (hosts without the TSC offset attribute freeze kvmclock only). */
	vm->clock_saved = ioctl(vm->vm_fd, KVM_GET_CLOCK, &vm->clock) == 0;
	vm->paused_at_tsc = __builtin_ia32_rdtsc();
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct kvm_device_attr a = {.group = KVM_VCPU_TSC_CTRL,
		                            .attr = KVM_VCPU_TSC_OFFSET,
		                            .addr = (uint64_t)(uintptr_t)&vm->vcpus[i].tsc_offset};

		vm->vcpus[i].tsc_offset_saved =
		    ioctl(vm->vcpus[i].fd, KVM_GET_DEVICE_ATTR, &a) == 0;
	}
}

void vm_resume(struct vm *vm)
{
	uint64_t paused_for = __builtin_ia32_rdtsc() - vm->paused_at_tsc;

	if (vm->clock_saved) {
		vm->clock.flags = 0;
		ioctl(vm->vm_fd, KVM_SET_CLOCK, &vm->clock);
	}
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		struct kvm_device_attr a = {.group = KVM_VCPU_TSC_CTRL,
		                            .attr = KVM_VCPU_TSC_OFFSET,
		                            .addr = (uint64_t)(uintptr_t)&v->tsc_offset};

		if (!v->tsc_offset_saved)
			continue;
		v->tsc_offset -= paused_for; /* the guest's TSC did not move while paused */
		ioctl(v->fd, KVM_SET_DEVICE_ATTR, &a);
	}
	pthread_mutex_lock(&vm->pause_lock);
	__atomic_store_n(&vm->paused, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_destroy(struct vm *vm)
{
	console_close(&vm->console);
	for (unsigned i = 0; vm->vcpus && i < vm->nvcpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	if (vm->cpuid_thread_started)
		pthread_join(vm->cpuid_thread, NULL);
	vm->cpuid_thread_started = false;
	free(vm->cpuid);
	vm->cpuid = NULL;
	shadow_engine_destroy(vm);
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
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
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

void vm_detach_teardown(struct vm *vm)
{
	enum { STACK = 64 * 1024 };
	static char stack[STACK] __attribute__((aligned(16)));
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	pid_t pid = -1;

	console_close(&vm->console);
	/* Destroying a VM within ~16 ms of creating its irqchip waits for an SRCU grace period
	 * (~10-15 ms, docs/HOST_FACTS.md). A process sharing our memory but holding its own copy of
	 * the fd table keeps the VM alive past our exit and pays that wait off the clock; with
	 * no exit signal, init reaps it. */
	if (pidfd >= 0)
		pid = clone(teardown_main, stack + STACK, CLONE_VM, (void *)(intptr_t)pidfd);
	if (pid < 0)
		vm_destroy(vm);
}
