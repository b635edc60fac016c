#include "vcpu.h"
#include "cpuid.h"
#include "layout.h"
#include "metrics.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* Architectural MSRs set at boot. */
#define MSR_IA32_TSC            0x10
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_MTRR_DEF_TYPE       0x2ff
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MISC_ENABLE_FAST_STRING 1
#define MTRR_ENABLE_WB          ((1u << 11) | 6)

/* Local APIC register offsets and delivery modes. */
#define APIC_LVT_LINT0   0x350
#define APIC_LVT_LINT1   0x360
#define APIC_MODE_MASK   0x700
#define APIC_MODE_NMI    0x400
#define APIC_MODE_EXTINT 0x700

static int set_cpuid(struct vm *vm, struct vcpu *v, struct error *err)
{
	struct cpuid_params p = {
	    .apic_id = v->id,
	    .nvcpus = vm->nvcpus,
	    .tsc_khz = vm->tsc_khz,
	    .no_gbpages = !vm->host.gbpages_ok,
	    .no_xsave = vm->host.cpl0_emulated && vm->engine == MMU_HARDWARE,
	};
	size_t bytes =
	    sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = malloc(bytes);
	int n, r;

	if (!c)
		return err_set(err, "out of memory");
	memcpy(c, vm->cpuid, sizeof(*c) + vm->cpuid->nent * sizeof(c->entries[0]));
	n = cpuid_normalize(c->entries, (int)c->nent, CPUID_MAX_ENTRIES, &p);
	if (n < 0) {
		free(c);
		return err_set(err, "CPUID table too large");
	}
	c->nent = (uint32_t)n;
	r = ioctl(v->fd, KVM_SET_CPUID2, c);
	free(c);
	if (r < 0)
		return err_set(err, "KVM_SET_CPUID2: %s", strerror(errno));
	return 0;
}

static int set_boot_msrs(struct vcpu *v, struct error *err)
{
	static const struct {
		uint32_t index;
		uint64_t value;
	} boot[] = {
	    {MSR_IA32_SYSENTER_CS, 0},
	    {MSR_IA32_SYSENTER_ESP, 0},
	    {MSR_IA32_SYSENTER_EIP, 0},
	    {MSR_STAR, 0},
	    {MSR_LSTAR, 0},
	    {MSR_CSTAR, 0},
	    {MSR_SYSCALL_MASK, 0},
	    {MSR_KERNEL_GS_BASE, 0},
	    {MSR_IA32_TSC, 0},
	    {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING},
	    {MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB},
	};
	enum { N = sizeof(boot) / sizeof(boot[0]) };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[N];
	} m;
	unsigned done = 0;

	/* KVM stops at the first MSR it refuses (returns how many it set): skip it, go on. */
	while (done < N) {
		int r;

		memset(&m, 0, sizeof(m));
		m.hdr.nmsrs = N - done;
		for (unsigned i = done; i < N; i++) {
			m.e[i - done].index = boot[i].index;
			m.e[i - done].data = boot[i].value;
		}
		r = ioctl(v->fd, KVM_SET_MSRS, &m);
		if (r < 0)
			return err_set(err, "KVM_SET_MSRS: %s", strerror(errno));
		done += (unsigned)r + 1;
	}
	return 0;
}

static int set_lapic_lints(struct vcpu *v, struct error *err)
{
	struct kvm_lapic_state s;
	uint32_t *lint0 = (uint32_t *)(s.regs + APIC_LVT_LINT0);
	uint32_t *lint1 = (uint32_t *)(s.regs + APIC_LVT_LINT1);

	if (ioctl(v->fd, KVM_GET_LAPIC, &s) < 0)
		return err_set(err, "KVM_GET_LAPIC: %s", strerror(errno));
	*lint0 = (*lint0 & ~APIC_MODE_MASK) | APIC_MODE_EXTINT;
	*lint1 = (*lint1 & ~APIC_MODE_MASK) | APIC_MODE_NMI;
	if (ioctl(v->fd, KVM_SET_LAPIC, &s) < 0)
		return err_set(err, "KVM_SET_LAPIC: %s", strerror(errno));
	return 0;
}

int vcpu_create(struct vm *vm, struct vcpu *v, unsigned id, struct error *err)
{
	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0)
		return err_set(err, "KVM_CREATE_VCPU %u: %s", id, strerror(errno));
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return err_set(err, "mmap of vCPU %u run area: %s", id, strerror(errno));
	}
	if (id == 0 && !vm->tsc_khz) {
		int khz = ioctl(v->fd, KVM_GET_TSC_KHZ);

		vm->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	}
	if (set_cpuid(vm, v, err) || set_boot_msrs(v, err) || set_lapic_lints(v, err))
		return -1;
	return 0;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, (size_t)v->vm->run_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

void vcpu_kick(struct vcpu *v)
{
	if (v->run)
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_handle_io(struct vcpu *v)
{
	struct kvm_run *r = v->run;
	uint8_t *data = (uint8_t *)r + r->io.data_offset;
	struct bus *bus = &v->vm->pio;

	bool claimed = true;

	if (r->io.direction == KVM_EXIT_IO_OUT) {
		if (r->io.count == 1)
			claimed = bus_write(bus, r->io.port, data, r->io.size);
		else
			claimed = bus_write_rep(bus, r->io.port, data, r->io.size, r->io.count);
	} else {
		for (uint32_t i = 0; i < r->io.count; i++)
			claimed &=
			    bus_read(bus, r->io.port, data + (size_t)i * r->io.size, r->io.size);
	}
	if (!claimed)
		METRIC_INC(unclaimed_pio);
}

void vcpu_handle_mmio(struct vcpu *v)
{
	struct kvm_run *r = v->run;
	uint32_t len = r->mmio.len > 8 ? 8 : r->mmio.len;

	bool claimed;

	if (r->mmio.is_write)
		claimed = bus_write(&v->vm->mmio, r->mmio.phys_addr, r->mmio.data, len);
	else
		claimed = bus_read(&v->vm->mmio, r->mmio.phys_addr, r->mmio.data, len);
	if (!claimed)
		METRIC_INC(unclaimed_mmio);
}

/* Format up to 15 instruction bytes at the guest's RIP into `out`. */
static void insn_bytes(struct vcpu *v, uint64_t linear, char *out, size_t outlen)
{
	struct kvm_translation t = {.linear_address = linear};
	uint8_t b[15];
	size_t n = sizeof(b), pos = 0;

	out[0] = 0;
	if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid) {
		snprintf(out, outlen, "(rip not mapped)");
		return;
	}
	/* Stop at the end of the page: the next one may map elsewhere. */
	if ((t.physical_address & 0xfff) + n > 0x1000)
		n = 0x1000 - (t.physical_address & 0xfff);
	if (gm_read(&v->vm->mem, t.physical_address, b, n) < 0) {
		snprintf(out, outlen, "(rip outside RAM at gpa 0x%llx)",
		         (unsigned long long)t.physical_address);
		return;
	}
	for (size_t i = 0; i < n && pos + 4 < outlen; i++)
		pos += (size_t)snprintf(out + pos, outlen - pos, "%s%02x", i ? " " : "", b[i]);
}

void vcpu_report_internal_error(struct vcpu *v)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char bytes[64] = "";
	const char *what = "internal error";
	const char *hint = "";
	uint64_t rip = 0;
	unsigned cpl = 0;

	if (v->run->exit_reason == KVM_EXIT_FAIL_ENTRY)
		what = "failed VM entry";
	else if (v->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION)
		what = "emulation failure";
	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0 && ioctl(v->fd, KVM_GET_SREGS, &sregs) == 0) {
		rip = regs.rip;
		cpl = sregs.cs.dpl;
		insn_bytes(v, sregs.cs.base + regs.rip, bytes, sizeof(bytes));
	}
	if (v->vm->host.cpl0_emulated && cpl == 0 && v->vm->engine == MMU_HARDWARE)
		hint = "; hint: this host's KVM emulates guest CPL0 code and cannot run some "
		       "instructions there (int3, xsave/xrstor, SSE, cmpxchg16b)";
	vm_request_stop(v->vm, STOP_KVM_ERROR, 0,
	                "KVM %s on vCPU %u at rip=0x%llx (cpl %u), suberror %u, bytes: %s%s", what,
	                v->id, (unsigned long long)rip, cpl,
	                v->run->exit_reason == KVM_EXIT_FAIL_ENTRY ? 0 : v->run->internal.suberror,
	                bytes, hint);
}

void vcpu_report_shutdown(struct vcpu *v)
{
	struct kvm_regs regs;
	unsigned long long rip = 0;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
		rip = regs.rip;
	vm_request_stop(v->vm, STOP_TRIPLE_FAULT, 0, "guest triple fault on vCPU %u at rip=0x%llx",
	                v->id, rip);
}
