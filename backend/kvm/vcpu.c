/* KVM vCPUs: creation (CPUID, boot MSRs, LAPIC LINT0/LINT1), kicks, and the reports of the
 * exits that end a VM. */
#include "kvm.h"
#include "cpu/cpuid.h"
#include "cpu/x86.h"
#include "vmm/layout.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MISC_ENABLE_FAST_STRING 1
#define MTRR_ENABLE_WB          ((1u << 11) | 6)

/* Local APIC register offsets and delivery modes. */
#define APIC_LVT_LINT0   0x350
#define APIC_LVT_LINT1   0x360
#define APIC_MODE_MASK   0x700
#define APIC_MODE_NMI    0x400
#define APIC_MODE_EXTINT 0x700

/* The host's leaves (KVM_GET_SUPPORTED_CPUID), normalized for this vCPU. */
static int set_cpuid(struct vm *vm, struct vcpu *v, struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	struct cpuid_params p = {
	    .apic_id = v->id,
	    .nvcpus = vm->nvcpus,
	    .tsc_khz = k->tsc_khz,
	    .no_gbpages = !k->mmu.gbpages_ok,
	    .no_xsave = k->mmu.cpl0_emulated && vm->engine == ENGINE_HARDWARE,
	};
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	struct kvm_cpuid2 *c = calloc(1, sizeof(struct kvm_cpuid2) +
	                                     CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
	int n = (int)k->cpuid->nent, r;

	if (!c)
		return err_set(err, "out of memory");
	for (int i = 0; i < n; i++) {
		const struct kvm_cpuid_entry2 *x = &k->cpuid->entries[i];

		e[i] = (struct cpuid_entry){
		    .function = x->function,
		    .index = x->index,
		    .flags = x->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX ? CPUID_FLAG_INDEXED : 0,
		    .eax = x->eax,
		    .ebx = x->ebx,
		    .ecx = x->ecx,
		    .edx = x->edx};
	}
	n = cpuid_normalize(e, n, CPUID_MAX_ENTRIES, &p);
	if (n < 0) {
		free(c);
		return err_set(err, "CPUID table too large");
	}
	for (int i = 0; i < n; i++)
		c->entries[i] = (struct kvm_cpuid_entry2){
		    .function = e[i].function,
		    .index = e[i].index,
		    .flags = e[i].flags & CPUID_FLAG_INDEXED ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
		    .eax = e[i].eax,
		    .ebx = e[i].ebx,
		    .ecx = e[i].ecx,
		    .edx = e[i].edx};
	c->nent = (uint32_t)n;
	r = ioctl(kvcpu_of(v)->fd, KVM_SET_CPUID2, c);
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
	    {MSR_SFMASK, 0},
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
		r = ioctl(kvcpu_of(v)->fd, KVM_SET_MSRS, &m);
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

	if (ioctl(kvcpu_of(v)->fd, KVM_GET_LAPIC, &s) < 0)
		return err_set(err, "KVM_GET_LAPIC: %s", strerror(errno));
	*lint0 = (*lint0 & ~APIC_MODE_MASK) | APIC_MODE_EXTINT;
	*lint1 = (*lint1 & ~APIC_MODE_MASK) | APIC_MODE_NMI;
	if (ioctl(kvcpu_of(v)->fd, KVM_SET_LAPIC, &s) < 0)
		return err_set(err, "KVM_SET_LAPIC: %s", strerror(errno));
	return 0;
}

int kvm_vcpu_create(struct vm *vm, struct vcpu *v, struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	struct kvm_vcpu *kv = calloc(1, sizeof(*kv));

	if (!kv)
		return err_set(err, "out of memory");
	kv->fd = -1;
	v->be = kv;
	kv->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)v->id);
	if (kv->fd < 0)
		return err_set(err, "KVM_CREATE_VCPU %u: %s", v->id, strerror(errno));
	kv->run = mmap(NULL, (size_t)k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, kv->fd, 0);
	if (kv->run == MAP_FAILED) {
		kv->run = NULL;
		return err_set(err, "mmap of vCPU %u run area: %s", v->id, strerror(errno));
	}
	if (v->id == 0 && !k->tsc_khz) {
		int khz = ioctl(kv->fd, KVM_GET_TSC_KHZ);

		k->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	}
	if (set_cpuid(vm, v, err) || set_boot_msrs(v, err) || set_lapic_lints(v, err))
		return -1;
	return 0;
}

void kvm_vcpu_destroy(struct vcpu *v)
{
	struct kvm_vcpu *kv = kvcpu_of(v);

	if (!kv)
		return;
	if (kv->run)
		munmap(kv->run, (size_t)kvm_of(v->vm)->run_size);
	if (kv->fd >= 0)
		close(kv->fd);
	free(kv);
	v->be = NULL;
}

void kvm_vcpu_kick(struct vcpu *v)
{
	struct kvm_vcpu *kv = kvcpu_of(v);

	if (kv && kv->run)
		__atomic_store_n(&kv->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

/* Format up to 15 instruction bytes at the guest's RIP into `out`. */
static void insn_bytes(struct vcpu *v, uint64_t linear, char *out, size_t outlen)
{
	struct kvm_translation t = {.linear_address = linear};
	uint8_t b[15];
	size_t n = sizeof(b), pos = 0;

	out[0] = 0;
	if (ioctl(kvcpu_of(v)->fd, KVM_TRANSLATE, &t) < 0 || !t.valid) {
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

void kvm_report_internal_error(struct vcpu *v)
{
	struct kvm_vcpu *kv = kvcpu_of(v);
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char bytes[64] = "";
	const char *what = "internal error";
	const char *hint = "";
	uint64_t rip = 0;
	unsigned cpl = 0;

	if (kv->run->exit_reason == KVM_EXIT_FAIL_ENTRY)
		what = "failed VM entry";
	else if (kv->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION)
		what = "emulation failure";
	if (ioctl(kv->fd, KVM_GET_REGS, &regs) == 0 && ioctl(kv->fd, KVM_GET_SREGS, &sregs) == 0) {
		rip = regs.rip;
		cpl = sregs.cs.dpl;
		insn_bytes(v, sregs.cs.base + regs.rip, bytes, sizeof(bytes));
	}
	if (kvm_of(v->vm)->mmu.cpl0_emulated && cpl == 0 && v->vm->engine == ENGINE_HARDWARE)
		hint = "; hint: this host's KVM emulates guest CPL0 code and cannot run some "
		       "instructions there (int3, xsave/xrstor, SSE, cmpxchg16b)";
	vm_request_stop(v->vm, STOP_CPU_ERROR, 0,
	                "KVM %s on vCPU %u at rip=0x%llx (cpl %u), suberror %u, bytes: %s%s", what,
	                v->id, (unsigned long long)rip, cpl,
	                kv->run->exit_reason == KVM_EXIT_FAIL_ENTRY ? 0
	                                                            : kv->run->internal.suberror,
	                bytes, hint);
}

void kvm_report_triple_fault(struct vcpu *v)
{
	struct kvm_regs regs;
	unsigned long long rip = 0;

	if (ioctl(kvcpu_of(v)->fd, KVM_GET_REGS, &regs) == 0)
		rip = regs.rip;
	vm_request_stop(v->vm, STOP_TRIPLE_FAULT, 0, "guest triple fault on vCPU %u at rip=0x%llx",
	                v->id, rip);
}
