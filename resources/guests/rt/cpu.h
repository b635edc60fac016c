/*
 * Privileged CPU helpers for the guests that manage their own machine state (mmuguest,
 * mapguest, sha256guest): control registers, TLB, MSRs, XCR0, CPUID, TSC. Header only.
 */
#ifndef HEARTH_GUEST_CPU_H
#define HEARTH_GUEST_CPU_H

#include <stdint.h>

#define CR0_MP         (1ULL << 1)
#define CR0_EM         (1ULL << 2)
#define CR0_TS         (1ULL << 3)
#define CR0_WP         (1ULL << 16)
#define CR4_OSFXSR     (1ULL << 9)
#define CR4_OSXMMEXCPT (1ULL << 10)
#define CR4_OSXSAVE    (1ULL << 18)

#define MSR_EFER   0xc0000080
#define EFER_SCE   (1ULL << 0)
#define MSR_STAR   0xc0000081
#define MSR_LSTAR  0xc0000082
#define MSR_SFMASK 0xc0000084

#define CPUID1_ECX_XSAVE (1u << 26)
#define CPUID1_ECX_AVX   (1u << 28)

#define DEFINE_CR(n)                                                                               \
	static inline uint64_t read_cr##n(void)                                                    \
	{                                                                                          \
		uint64_t v;                                                                        \
		__asm__ volatile("mov %%cr" #n ", %0" : "=r"(v));                                  \
		return v;                                                                          \
	}                                                                                          \
	static inline void write_cr##n(uint64_t v)                                                 \
	{                                                                                          \
		__asm__ volatile("mov %0, %%cr" #n : : "r"(v) : "memory");                         \
	}
DEFINE_CR(0)
DEFINE_CR(2)
DEFINE_CR(3)
DEFINE_CR(4)
#undef DEFINE_CR

static inline void invlpg(uint64_t va)
{
	__asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return (uint64_t)hi << 32 | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

/* rt/idt_entry.S: where syscall_enable points syscall, and what it records. */
extern char rt_syscall_entry[];
extern volatile uint64_t rt_syscall_flags, rt_syscall_rcx, rt_syscall_r11, rt_syscall_count;

/* syscall at CPL0 goes to rt_syscall_entry with CS `cs` (STAR), the flags in `mask` cleared
 * (SFMASK); sets EFER.SCE. False when SCE does not stick. */
static inline int syscall_enable(uint16_t cs, uint64_t mask)
{
	wrmsr(MSR_STAR, (uint64_t)cs << 32);
	wrmsr(MSR_LSTAR, (uint64_t)(uintptr_t)rt_syscall_entry);
	wrmsr(MSR_SFMASK, mask);
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
	return (rdmsr(MSR_EFER) & EFER_SCE) != 0;
}

static inline void xsetbv(uint32_t xcr, uint64_t v)
{
	__asm__ volatile("xsetbv" : : "c"(xcr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

/* r[0..3] = EAX, EBX, ECX, EDX of leaf/subleaf. */
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid"
	                 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
	                 : "a"(leaf), "c"(sub));
}

/* TSC frequency in kHz from the hypervisor leaf 0x40000010, or 0 when it is not there. */
static inline uint32_t tsc_khz(void)
{
	uint32_t r[4];

	cpuid(0x40000000, 0, r);
	if (r[0] < 0x40000010)
		return 0;
	cpuid(0x40000010, 0, r);
	return r[0];
}

#endif
