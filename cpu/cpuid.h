/*
 * CPUID as the guest sees it: the leaves a backend reports for the host (KVM's supported
 * CPUID, queried once per process: ~0.3 ms) normalized per vCPU (hypervisor leaves, its own
 * APIC ID, topology, TSC frequency). Typed in hearth's own entries; pure (unit-tested).
 */
#ifndef HEARTH_CPUID_H
#define HEARTH_CPUID_H

#include <stdbool.h>
#include <stdint.h>

#define CPUID_MAX_ENTRIES 256

/* One leaf (function, index); the index matters only with CPUID_FLAG_INDEXED. */
struct cpuid_entry {
	uint32_t function, index, flags;
	uint32_t eax, ebx, ecx, edx;
};
#define CPUID_FLAG_INDEXED 1u

struct cpuid_params {
	uint32_t apic_id;
	uint32_t nvcpus;
	uint32_t tsc_khz; /* 0: leave leaf 0x40000010 out */
	bool no_gbpages;  /* hide 1 GiB pages (pdpe1gb) */
	bool no_xsave;    /* hide XSAVE/AVX (hosts that cannot run them at guest CPL0) */
};

#define HV_LEAF_BASE   0x40000000u
#define HV_LEAF_TIMING 0x40000010u /* EAX: TSC kHz, EBX: LAPIC bus kHz */
#define LAPIC_BUS_KHZ  1000000u    /* KVM's LAPIC timer counts in ns: a 1 GHz bus */

/* Normalize `n` entries in place for one vCPU; `cap` is the array capacity. Returns the new
 * entry count, or -1 when the array is too small. */
int cpuid_normalize(struct cpuid_entry *e, int n, int cap, const struct cpuid_params *p);

/* Find an entry (index of `function`, `index`), or NULL. */
struct cpuid_entry *cpuid_find(struct cpuid_entry *e, int n, uint32_t function, uint32_t index);

#endif
