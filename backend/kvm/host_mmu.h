/* What memory virtualization the host's KVM provides, read from sysfs once at start. */
#ifndef HEARTH_HOST_MMU_H
#define HEARTH_HOST_MMU_H

#include <stdbool.h>

enum host_mmu_kind {
	HOST_MMU_EPT,    /* Intel VMX with EPT */
	HOST_MMU_NPT,    /* AMD SVM with NPT */
	HOST_MMU_SHADOW, /* VMX/SVM without EPT/NPT: KVM's own shadow paging */
	HOST_MMU_PVM,    /* kvm_pvm: shadow paging, guest CPL0 code emulated */
	HOST_MMU_NONE,   /* no usable /dev/kvm */
};

struct host_mmu {
	enum host_mmu_kind kind;
	bool cpl0_emulated; /* guest ring-0 code is emulated instruction by instruction */
	bool gbpages_ok;    /* 1 GiB guest pages work */
	bool assumed;       /* sysfs not visible (e.g. in a jail): inferred from CPUID */
};

/* Detect from /sys/module/{kvm_pvm,kvm_intel,kvm_amd}; `sysfs_root` is "/sys" except in tests.
 * Where <sysfs_root>/module cannot be seen (hearth-jailer's jail has no /sys), the host CPU
 * decides: a working /dev/kvm on a CPU without VMX and SVM is kvm_pvm; with VMX or SVM, EPT
 * or NPT is assumed (KVM's default wherever the CPU has it). */
void host_mmu_detect(struct host_mmu *h, const char *sysfs_root);
const char *host_mmu_describe(const struct host_mmu *h);

#endif
