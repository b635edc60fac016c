/* The process engine's backend ops (backend/backend.h); process.h has the picture. */
#include "process.h"
#include "seccomp/filters.h"
#include "vmm/layout.h"
#include "vmm/log.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* ---- the host --------------------------------------------------------------------------- */

static void proc_probe(struct host_probe *p)
{
	memset(p, 0, sizeof(*p));
	/* Any x86-64 Linux with seccomp filters runs it; nothing to open. */
	p->usable = true;
	snprintf(p->state, sizeof(p->state), "available");
	snprintf(p->summary, sizeof(p->summary),
	         "the guest kernel as a sandboxed host process, f.g in the host MMU");
}

/* The TSC's rate against CLOCK_MONOTONIC_RAW, from a first sample taken when the engine
 * opens to a second when the VM is created (loading the guest in between costs the
 * measurement nothing), at least 200 us apart. */
static void tsc_sample(struct timespec *t, uint64_t *tsc)
{
	clock_gettime(CLOCK_MONOTONIC_RAW, t);
	*tsc = __builtin_ia32_rdtsc();
}

uint64_t proc_tsc_hz(uint64_t ticks, uint64_t ns)
{
	/* In 128 bits: the samples may be seconds apart (a slow guest load), and ticks * 1e9
	 * overflows 64 bits after ~6 s at 3 GHz, which gave the timers a wrong rate. */
	return ns ? (uint64_t)((unsigned __int128)ticks * 1000000000ULL / ns) : 0;
}

static uint64_t tsc_hz_since(const struct timespec *a, uint64_t t0)
{
	struct timespec b;
	uint64_t t1, ns;

	do {
		tsc_sample(&b, &t1);
		ns = (uint64_t)(b.tv_sec - a->tv_sec) * 1000000000ULL + (uint64_t)b.tv_nsec -
		     (uint64_t)a->tv_nsec;
	} while (ns < 200000);
	return proc_tsc_hz(t1 - t0, ns);
}

/* The slot the guest process's stub lives in is kept free in hearth too (a PROT_NONE
 * reservation): the guest process starts as a copy of hearth's address space. */
static int proc_open(struct vm *vm, struct error *err)
{
	struct proc_vm *p = calloc(1, sizeof(*p));
	void *r;

	if (!p)
		return err_set(err, "out of memory");
	p->pidfd = p->shared_fd = -1;
	pthread_mutex_init(&p->emu_lock, NULL);
	vm->be = p;
	r = mmap((void *)STUB_SLOT_VA, STUB_SLOT_SIZE, PROT_NONE,
	         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (r == MAP_FAILED && errno != EEXIST)
		return err_set(err, "process engine: cannot reserve its slot at 0x%llx: %s",
		               (unsigned long long)STUB_SLOT_VA, strerror(errno));
	if (r != MAP_FAILED && r != (void *)STUB_SLOT_VA) {
		munmap(r, STUB_SLOT_SIZE);
		return err_set(err, "process engine: the address range at 0x%llx is taken",
		               (unsigned long long)STUB_SLOT_VA);
	}
	/* The guest process starts now and gets ready while hearth loads the guest. */
	if (vm->mem.fd < 0)
		return err_set(err, "process engine: guest RAM is not in a memfd");
	if (proc_spawn(vm, err))
		return -1;
	tsc_sample(&p->tsc_t0, &p->tsc0);
	return 0;
}

/* ---- devices of the userspace chips on the buses ---------------------------------------- */

static void port_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	const struct chip_port *c = opaque;

	memset(data, 0xff, size);
	uirq_pio_read(c->u, (uint16_t)(c->base + off), data, size);
}

static void port_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	const struct chip_port *c = opaque;

	uirq_pio_write(c->u, (uint16_t)(c->base + off), data, size);
}

static const struct bus_ops chip_port_ops = {.read = port_read, .write = port_write};

static void ioapic_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	memset(data, 0, size);
	uirq_ioapic_read(opaque, off, data, size);
}

static void ioapic_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	uirq_ioapic_write(opaque, off, data, size);
}

static const struct bus_ops ioapic_ops = {.read = ioapic_read, .write = ioapic_write};

/* The PIC pair and its ELCR, the PIT and port 0x61, the IOAPIC. */
static int add_chip_devices(struct vm *vm, struct error *err)
{
	static const struct {
		uint16_t base, len;
		const char *name;
	} ports[] = {
	    {0x20, 2, "pic-master"}, {0xa0, 2, "pic-slave"}, {0x4d0, 2, "elcr"},
	    {0x40, 4, "pit"},        {0x61, 1, "port-61"},
	};
	struct proc_vm *p = proc_of(vm);

	for (unsigned i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		struct chip_port *c = &p->ports[i];

		*c = (struct chip_port){p->uirq, ports[i].base};
		if (bus_add(&vm->pio, ports[i].base, ports[i].len, &chip_port_ops, c,
		            ports[i].name))
			return err_set(err, "port I/O bus: %s overlaps", ports[i].name);
	}
	if (bus_add(&vm->mmio, LAYOUT_IOAPIC_ADDR, 0x1000, &ioapic_ops, p->uirq, "ioapic"))
		return err_set(err, "MMIO bus: the IOAPIC overlaps");
	return 0;
}

/* ---- building ---------------------------------------------------------------------------- */

static void kick(void *opaque, unsigned cpu)
{
	struct vm *vm = opaque;

	if (cpu < vm->nvcpus)
		proc_vcpu_kick(&vm->vcpus[cpu]);
}

/* Host CPUs by their initial APIC ID, from /proc/cpuinfo ("processor" then "apicid" in each
 * block), for the first `n` IDs; -1 where not found (no /proc, as in a jail without it: the
 * plan then only keeps the two threads of a vCPU apart). Reading stops once all are found. */
static void cpus_by_apic_id(int *cpu_of, unsigned n)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];
	int cpu = -1;
	unsigned found = 0;

	for (unsigned i = 0; i < n; i++)
		cpu_of[i] = -1;
	if (!f)
		return;
	while (found < n && fgets(line, sizeof(line), f)) {
		unsigned v;

		if (sscanf(line, "processor : %u", &v) == 1)
			cpu = (int)v;
		else if (sscanf(line, "apicid : %u", &v) == 1 && v < n && cpu >= 0 &&
		         cpu_of[v] < 0) {
			cpu_of[v] = cpu;
			found++;
		}
	}
	fclose(f);
}

/*
 * Where vCPU k's two threads run. Its guest thread goes on the host CPU whose APIC ID is k
 * where the process may run there: cpuid is not trapped in this engine (no CPUID faulting
 * on such hosts), so the guest reads the APIC ID of the CPU its thread is on, and guests
 * index their per-CPU data by it (a 1-vCPU guest that reads 1 corrupts its memory). hearth's
 * thread for vCPU k goes on another allowed CPU: each side polls a little before it sleeps,
 * which pays off only when the other side runs meanwhile. Otherwise (fewer than two CPUs),
 * no pinning (-1).
 */
static void plan_cpus(struct proc_vm *p, unsigned nvcpus)
{
	int by_apic[UIRQ_MAX_CPUS];
	cpu_set_t set;
	int allowed[CPU_SETSIZE], n = 0;

	for (unsigned i = 0; i < nvcpus; i++)
		p->guest_cpu[i] = p->host_cpu[i] = -1;
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &set))
			allowed[n++] = cpu;
	if (n < 2)
		return;
	cpus_by_apic_id(by_apic, nvcpus);
	for (unsigned i = 0; i < nvcpus; i++) {
		int g = by_apic[i], h = allowed[(2 * i) % (unsigned)n];

		if (g < 0 || !CPU_ISSET(g, &set))
			g = allowed[(2 * i + 1) % (unsigned)n];
		for (int k = 1; h == g && k < n; k++)
			h = allowed[(2 * i + (unsigned)k) % (unsigned)n];
		p->guest_cpu[i] = g;
		p->host_cpu[i] = h;
	}
}

static int proc_vcpu_host_cpu(const struct vm *vm, unsigned id)
{
	return id < vm->nvcpus ? proc_of(vm)->host_cpu[id] : -1;
}

/* True when the plan gives every thread of the VM (guest and hearth's, every vCPU) a CPU
 * no other of them has. */
static bool cpus_to_themselves(const struct proc_vm *p, unsigned nvcpus)
{
	cpu_set_t used;

	CPU_ZERO(&used);
	for (unsigned i = 0; i < nvcpus; i++) {
		int c[2] = {p->guest_cpu[i], p->host_cpu[i]};

		for (int k = 0; k < 2; k++) {
			if (c[k] < 0 || c[k] >= CPU_SETSIZE || CPU_ISSET(c[k], &used))
				return false;
			CPU_SET(c[k], &used);
		}
	}
	return true;
}

/* Best effort. Where every thread has a CPU to itself and the guest threads were pinned,
 * the polls skip the yields that a shared CPU needs (stub.h, `apart`). */
static void pin_guest_threads(struct vm *vm)
{
	struct proc_vm *p = proc_of(vm);
	bool alone = cpus_to_themselves(p, vm->nvcpus);

	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct stub_vcpu *rec = &stub_vcpus(p->shared)[i];
		pid_t tid = (pid_t)rec->tid;
		struct proc_vcpu *pv = vm->vcpus[i].be;
		cpu_set_t set;
		bool apart;

		if (p->guest_cpu[i] < 0 || tid <= 0)
			continue;
		CPU_ZERO(&set);
		CPU_SET(p->guest_cpu[i], &set);
		apart = sched_setaffinity(tid, sizeof(set), &set) == 0 && alone;
		__atomic_store_n(&rec->apart, apart ? 1u : 0u, __ATOMIC_RELAXED);
		if (pv)
			pv->apart = apart;
	}
}

static int proc_create(struct vm *vm, struct error *err)
{
	struct proc_vm *p = proc_of(vm);
	struct uirq_config ucfg = {.ncpus = vm->nvcpus, .kick = kick, .kick_opaque = vm};

	p->tsc_hz = tsc_hz_since(&p->tsc_t0, p->tsc0);
	irqchip_host_clock(&ucfg.clock, p->tsc_hz);
	p->uirq = uirq_create(&ucfg);
	if (!p->uirq)
		return err_set(err, "process engine: cannot make the interrupt controllers");
	vm->irqchip = uirq_irqchip(p->uirq);
	p->mmu = pmmu_create(vm);
	if (!p->mmu)
		return err_set(err, "out of memory");
	if (add_chip_devices(vm, err) || proc_wait_started(vm, err))
		return -1;
	plan_cpus(p, vm->nvcpus);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (proc_vcpu_init(vm, &vm->vcpus[i], err))
			return -1;
	pin_guest_threads(vm);
	seccomp_set_guest_pid(p->pid);
	return 0;
}

static int proc_vcpu_filter(const struct vm *vm)
{
	(void)vm;
	return THREAD_VCPU_PROCESS;
}

/* The guest's TSC is the host's (rdtsc runs natively): it goes on while paused. */
static void proc_pause(struct vm *vm)
{
	(void)vm;
}

static void proc_resume(struct vm *vm)
{
	(void)vm;
}

static void proc_info(const struct vm *vm, cJSON *o)
{
	const struct proc_vm *p = proc_of(vm);
	cJSON *x;

	if (!p || !p->mmu)
		return;
	pmmu_stats(p->mmu, o);
	x = cJSON_GetObjectItem(o, "process");
	cJSON_AddNumberToObject(x, "traps", (double)p->traps);
	cJSON_AddNumberToObject(x, "fast_notifies", (double)proc_fast_count(vm));
	cJSON_AddNumberToObject(x, "trapped_notifies",
	                        (double)__atomic_load_n(&p->notify_traps, __ATOMIC_RELAXED));
	cJSON_AddNumberToObject(x, "guest_pid", (double)p->pid);
}

static void proc_log_stats(const struct vm *vm)
{
	const struct proc_vm *p = proc_of(vm);

	if (!p)
		return;
	log_info("process engine: %llu exits (%.2f us in hearth each), %llu queue notifies "
	         "signalled by the guest process itself, %llu trapped",
	         (unsigned long long)p->traps,
	         p->traps ? p->trap_ns / (double)p->traps / 1000.0 : 0.0,
	         (unsigned long long)proc_fast_count(vm),
	         (unsigned long long)__atomic_load_n(&p->notify_traps, __ATOMIC_RELAXED));
	if (p->mmu)
		pmmu_log_stats(p->mmu);
}

static void proc_destroy(struct vm *vm)
{
	struct proc_vm *p = proc_of(vm);

	if (!p)
		return;
	proc_kill(vm);
	for (unsigned i = 0; vm->vcpus && i < vm->nvcpus; i++) {
		free(vm->vcpus[i].be);
		vm->vcpus[i].be = NULL;
	}
	pmmu_destroy(p->mmu);
	if (p->shared)
		munmap(p->shared, (STUB_SHARED_SIZE + 4095) & ~4095ULL);
	if (p->shared_fd >= 0)
		close(p->shared_fd);
	if (p->pidfd >= 0)
		close(p->pidfd);
	for (unsigned i = 0; i < p->npool; i++)
		if (p->notify_pool[i] >= 0)
			close(p->notify_pool[i]);
	/* the uirq is vm->irqchip, which vm_destroy frees */
	pthread_mutex_destroy(&p->emu_lock);
	free(p);
	vm->be = NULL;
}

/* At exit: the guest process goes at once (it would also die with hearth's main thread). */
static void proc_detach(struct vm *vm)
{
	struct proc_vm *p = proc_of(vm);

	if (p && p->pid > 0)
		kill(p->pid, SIGKILL);
	/* (hearth's address space, guest RAM's mapping included, is released after the exit) */
	vm_teardown_after_exit();
}

const struct backend process_backend = {
    .name = "process",
    .shared_memory = true,
    .probe = proc_probe,
    .open = proc_open,
    .create = proc_create,
    .vcpu_run = proc_vcpu_run,
    .vcpu_kick = proc_vcpu_kick,
    .vcpu_host_cpu = proc_vcpu_host_cpu,
    .vcpu_filter = proc_vcpu_filter,
    .attach_notify = proc_attach_notify,
    .save = proc_save,
    .restore = proc_restore,
    .dirty_start = proc_dirty_start,
    .dirty_collect = proc_dirty_collect,
    .pause = proc_pause,
    .resume = proc_resume,
    .info = proc_info,
    .log_stats = proc_log_stats,
    .destroy = proc_destroy,
    .detach = proc_detach,
};
