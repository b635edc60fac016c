/*
 * The KVM backend, VM level: probing the host, /dev/kvm, the VM with its memslots, in-kernel
 * interrupt controllers and PIT, the devices' eventfds, the guest's clocks across a pause,
 * and a teardown that does not hold up hearth's exit. vcpu.c has the vCPUs, loop.c the
 * KVM_RUN loop, hardware.c and shadow.c the two engines.
 */
#include "kvm.h"
#include "cpu/cpuid.h"
#include "seccomp/filters.h"
#include "vmm/layout.h"
#include "vmm/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
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

/* ---- the host --------------------------------------------------------------------- */

static void detect(struct host_kvm *k, struct host_mmu *mmu)
{
	host_kvm_probe(k, "/dev/kvm", "/sys");
	host_mmu_detect(mmu, "/sys");
	if (k->state != KVM_AVAILABLE)
		mmu->kind = HOST_MMU_NONE;
}

static void kvm_probe(struct host_probe *p)
{
	struct host_kvm k;
	struct host_mmu mmu;

	detect(&k, &mmu);
	memset(p, 0, sizeof(*p));
	p->usable = k.state == KVM_AVAILABLE;
	p->cpl0_emulated = mmu.cpl0_emulated;
	snprintf(p->state, sizeof(p->state), "%s", host_kvm_state_name(k.state));
	snprintf(p->summary, sizeof(p->summary), "%s", host_mmu_describe(&mmu));
	snprintf(p->detail, sizeof(p->detail), "%s", k.detail);
}

/* ---- CPUID ------------------------------------------------------------------------ */

/* KVM_GET_SUPPORTED_CPUID runs the host's cpuid for every leaf: ~0.3 ms on PVM hosts, each
 * one a trap to the outer hypervisor. A thread started with kvm_open does it while the VMM
 * thread maps memory and loads the guest. */
static void *cpuid_thread(void *arg)
{
	struct kvm_vm *k = arg;

	/* Leave room for the hypervisor leaves cpuid_normalize adds. */
	k->cpuid->nent = CPUID_MAX_ENTRIES - 8;
	if (ioctl(k->kvm_fd, KVM_GET_SUPPORTED_CPUID, k->cpuid) < 0)
		k->cpuid_errno = errno;
	return NULL;
}

static void start_cpuid_query(struct kvm_vm *k)
{
	k->cpuid = calloc(1, sizeof(struct kvm_cpuid2) +
	                         CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
	if (k->cpuid && !pthread_create(&k->cpuid_thread, NULL, cpuid_thread, k))
		k->cpuid_thread_started = true;
}

static int query_cpuid(struct kvm_vm *k, struct error *err)
{
	if (!k->cpuid)
		return err_set(err, "out of memory");
	if (k->cpuid_thread_started) {
		pthread_join(k->cpuid_thread, NULL);
		k->cpuid_thread_started = false;
	} else {
		cpuid_thread(k);
	}
	if (k->cpuid_errno)
		return err_set(err, "KVM_GET_SUPPORTED_CPUID: %s", strerror(k->cpuid_errno));
	return 0;
}

/* ---- building ------------------------------------------------------------------------ */

static int kvm_open(struct vm *vm, struct error *err)
{
	struct kvm_vm *k = calloc(1, sizeof(*k));
	struct host_kvm hk;
	int v;

	if (!k)
		return err_set(err, "out of memory");
	k->kvm_fd = k->vm_fd = -1;
	vm->be = k;
	k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	detect(&hk, &k->mmu); /* the host now, not at start */
	if (k->kvm_fd < 0) {
		kvm_probe(&vm->kvm);
		return err_set(err,
		               "cannot run a guest in a KVM engine: %s. Use a host where /dev/kvm "
		               "exists and this user may open it, or the process engine, which "
		               "needs no KVM (--engine process or auto; unikernels and PVH guests)",
		               hk.detail[0] ? hk.detail : strerror(errno));
	}
	if (!vm->kvm.usable)
		kvm_probe(&vm->kvm); /* /dev/kvm appeared since start */
	v = ioctl(k->kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION_REQUIRED)
		return err_set(err, "KVM API version %d, need %d", v, KVM_API_VERSION_REQUIRED);
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++)
		if (ioctl(k->kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0)
			return err_set(err, "KVM lacks %s", required_caps[i].name);
	k->run_size = ioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k->run_size <= 0)
		return err_set(err, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	start_cpuid_query(k);
	return 0;
}

int kvm_set_memslot(struct kvm_vm *k, uint32_t slot, uint64_t gpa, uint64_t size, void *host,
                    uint32_t flags, struct error *err)
{
	struct kvm_userspace_memory_region r = {
	    .slot = slot,
	    .flags = flags,
	    .guest_phys_addr = gpa,
	    .memory_size = size,
	    .userspace_addr = (uint64_t)(uintptr_t)host,
	};

	if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return err_set(err, "KVM_SET_USER_MEMORY_REGION slot %u: %s", slot,
		               strerror(errno));
	return 0;
}

/* A queue's notify as an ioeventfd: the hot path never leaves the kernel. */
static int kvm_attach_notify(struct vm *vm, int fd, uint64_t addr, uint32_t len, uint64_t datamatch)
{
	struct kvm_ioeventfd io = {
	    .datamatch = datamatch,
	    .addr = addr,
	    .len = len,
	    .fd = fd,
	    .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
	};

	return ioctl(kvm_of(vm)->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

static int kvm_create(struct vm *vm, struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	uint64_t identity = LAYOUT_VMX_IDENTITY_ADDR;
	int xsave;

	k->eng = vm->engine == ENGINE_SHADOW ? &kvm_shadow_engine : &kvm_hardware_engine;
	k->vm_fd = ioctl(k->kvm_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0)
		return err_set(err, "KVM_CREATE_VM: %s", strerror(errno));
	/* What snapshots use (asked now: the VMM thread's filter has no KVM_CHECK_EXTENSION).
	 * KVM_CAP_XSAVE2 answers on the VM: the size of KVM_GET_XSAVE2's state. */
	xsave = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	k->xsave2 = xsave > 0;
	k->xsave_size =
	    xsave > (int)sizeof(struct kvm_xsave) ? (uint32_t)xsave : sizeof(struct kvm_xsave);
	k->sregs2 = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0;
	/* VMX needs these pages in the gap; other backends ignore or refuse them harmlessly. */
	ioctl(k->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_VMX_TSS_ADDR);
	ioctl(k->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity);
	/* Memslots before the irqchip: after it, each costs an SRCU grace period
	 * (docs/HOST_FACTS.md). */
	if (kvm_set_memslot(k, 0, 0, vm->mem.low_size, vm->mem.host, 0, err))
		return -1;
	if (vm->mem.high_size && kvm_set_memslot(k, 1, LAYOUT_HIGH_RAM_START, vm->mem.high_size,
	                                         vm->mem.host + vm->mem.low_size, 0, err))
		return -1;
	/* The CPUID query (started with /dev/kvm) is done by now: the shadow monitor's place
	 * depends on the guest-physical width it reports. */
	if (query_cpuid(k, err))
		return -1;
	if (vm->engine == ENGINE_SHADOW &&
	    (kvm_shadow_create(vm, err) || kvm_shadow_add_memslots(vm, err)))
		return -1;
	vm->irqchip = kvm_irqchip_create(k->vm_fd, err);
	if (!vm->irqchip)
		return -1;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (kvm_vcpu_create(vm, &vm->vcpus[i], err))
			return -1;
	return k->eng->setup_boot_vcpu(&vm->vcpus[0], &vm->boot_cpu, err);
}

/* ---- running ------------------------------------------------------------------------ */

static int kvm_vcpu_filter(const struct vm *vm)
{
	return vm->engine == ENGINE_SHADOW ? THREAD_VCPU_KVM_SHADOW : THREAD_VCPU_KVM;
}

static int kvm_vcpu_host_cpu(const struct vm *vm, unsigned id)
{
	int cpu;

	/* Shadow mode on a host that does not intercept cpuid at CPL3: pin vCPU k where the
	 * host CPU's APIC ID is k (kvm_shadow_pin_cpu). */
	if (vm->engine != ENGINE_SHADOW || !kvm_of(vm)->mmu.cpl0_emulated)
		return -1;
	cpu = kvm_shadow_pin_cpu(id);
	if (cpu >= 0)
		log_info("shadow mode: vCPU %u runs on host CPU %d (APIC ID %u)", id, cpu, id);
	return cpu;
}

/* Freeze the guest's clocks: kvmclock and the TSC go on from here after resume, with no
 * jump (hosts without the TSC offset attribute freeze kvmclock only). */
static void kvm_pause(struct vm *vm)
{
	struct kvm_vm *k = kvm_of(vm);

	k->clock_saved = ioctl(k->vm_fd, KVM_GET_CLOCK, &k->clock) == 0;
	k->paused_at_tsc = __builtin_ia32_rdtsc();
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct kvm_vcpu *kv = kvcpu_of(&vm->vcpus[i]);
		struct kvm_device_attr a = {.group = KVM_VCPU_TSC_CTRL,
		                            .attr = KVM_VCPU_TSC_OFFSET,
		                            .addr = (uint64_t)(uintptr_t)&kv->tsc_offset};

		kv->tsc_offset_saved = ioctl(kv->fd, KVM_GET_DEVICE_ATTR, &a) == 0;
	}
}

static void kvm_resume(struct vm *vm)
{
	struct kvm_vm *k = kvm_of(vm);
	uint64_t paused_for = __builtin_ia32_rdtsc() - k->paused_at_tsc;

	if (k->clock_saved) {
		k->clock.flags = 0;
		ioctl(k->vm_fd, KVM_SET_CLOCK, &k->clock);
	}
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct kvm_vcpu *kv = kvcpu_of(&vm->vcpus[i]);
		struct kvm_device_attr a = {.group = KVM_VCPU_TSC_CTRL,
		                            .attr = KVM_VCPU_TSC_OFFSET,
		                            .addr = (uint64_t)(uintptr_t)&kv->tsc_offset};

		if (!kv->tsc_offset_saved)
			continue;
		kv->tsc_offset -= paused_for; /* the guest's TSC did not move while paused */
		ioctl(kv->fd, KVM_SET_DEVICE_ATTR, &a);
	}
}

static void kvm_info(const struct vm *vm, cJSON *o)
{
	cJSON_AddStringToObject(o, "host_mmu", vm->kvm.summary);
	cJSON_AddStringToObject(o, "kvm", vm->kvm.state);
	if (vm->kvm.detail[0])
		cJSON_AddStringToObject(o, "kvm_detail", vm->kvm.detail);
	if (vm->engine == ENGINE_SHADOW)
		kvm_shadow_info(vm, o);
}

static void kvm_log_stats(const struct vm *vm)
{
	if (vm->engine == ENGINE_SHADOW)
		kvm_shadow_log_stats(vm);
}

/* ---- teardown ------------------------------------------------------------------------- */

static void kvm_destroy(struct vm *vm)
{
	struct kvm_vm *k = kvm_of(vm);

	if (!k)
		return;
	for (unsigned i = 0; vm->vcpus && i < vm->nvcpus; i++)
		kvm_vcpu_destroy(&vm->vcpus[i]);
	if (k->cpuid_thread_started)
		pthread_join(k->cpuid_thread, NULL);
	free(k->cpuid);
	free(k->dirty_log[0]);
	free(k->dirty_log[1]);
	kvm_shadow_destroy(vm);
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->kvm_fd >= 0)
		close(k->kvm_fd);
	free(k);
	vm->be = NULL;
}

static void kvm_detach(struct vm *vm)
{
	/* Destroying a VM within ~16 ms of creating its irqchip waits for an SRCU grace period
	 * (~10-15 ms, docs/HOST_FACTS.md): the teardown process pays that wait off the clock. */
	if (!vm_teardown_after_exit())
		vm_destroy(vm);
}

const struct backend kvm_backend = {
    .name = "kvm",
    .probe = kvm_probe,
    .open = kvm_open,
    .create = kvm_create,
    .vcpu_run = kvm_vcpu_loop,
    .vcpu_kick = kvm_vcpu_kick,
    .vcpu_host_cpu = kvm_vcpu_host_cpu,
    .vcpu_filter = kvm_vcpu_filter,
    .attach_notify = kvm_attach_notify,
    .pause = kvm_pause,
    .resume = kvm_resume,
    .save = kvm_save,
    .restore = kvm_restore,
    .dirty_start = kvm_dirty_start,
    .dirty_collect = kvm_dirty_collect,
    .info = kvm_info,
    .log_stats = kvm_log_stats,
    .destroy = kvm_destroy,
    .detach = kvm_detach,
};
