/* x86-64 architectural constants (Intel SDM vol. 3), in one place for every part of hearth
 * that sets up or emulates a CPU. */
#ifndef HEARTH_X86_H
#define HEARTH_X86_H

/* Control registers. */
#define CR0_PE         0x1ULL
#define CR0_MP         0x2ULL
#define CR0_EM         0x4ULL
#define CR0_TS         0x8ULL
#define CR0_ET         0x10ULL
#define CR0_NE         0x20ULL
#define CR0_WP         0x10000ULL
#define CR0_AM         0x40000ULL
#define CR0_NW         0x20000000ULL
#define CR0_CD         0x40000000ULL
#define CR0_PG         0x80000000ULL
#define CR4_PSE        0x10ULL
#define CR4_PAE        0x20ULL
#define CR4_PGE        0x80ULL
#define CR4_OSFXSR     0x200ULL
#define CR4_OSXMMEXCPT 0x400ULL
#define CR4_UMIP       0x800ULL
#define CR4_FSGSBASE   0x10000ULL
#define CR4_OSXSAVE    0x40000ULL

/* EFER. */
#define EFER_SCE 0x1ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL
#define EFER_NXE 0x800ULL

/* RFLAGS. */
#define RF_CF       0x1ULL
#define RF_RESERVED 0x2ULL /* always 1 */
#define RF_PF       0x4ULL
#define RF_AF       0x10ULL
#define RF_ZF       0x40ULL
#define RF_SF       0x80ULL
#define RF_TF       0x100ULL
#define RF_IF       0x200ULL
#define RF_DF       0x400ULL
#define RF_OF       0x800ULL
#define RF_IOPL     0x3000ULL
#define RF_NT       0x4000ULL
#define RF_RF       0x10000ULL
#define RF_VM       0x20000ULL
#define RF_AC       0x40000ULL

/* MSRs. */
#define MSR_IA32_TSC          0x10
#define MSR_IA32_APIC_BASE    0x1b
#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_IA32_PAT          0x277
#define MSR_MTRR_DEF_TYPE     0x2ff
#define MSR_TSC_DEADLINE      0x6e0
#define MSR_EFER              0xc0000080
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SFMASK            0xc0000084 /* SYSCALL_MASK */
#define MSR_FS_BASE           0xc0000100
#define MSR_GS_BASE           0xc0000101
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MSR_TSC_AUX           0xc0000103

/* Exception vectors. */
enum {
	V_DE = 0,
	V_DB = 1,
	V_NMI = 2,
	V_BP = 3,
	V_OF = 4,
	V_BR = 5,
	V_UD = 6,
	V_NM = 7,
	V_DF = 8,
	V_TS = 10,
	V_NP = 11,
	V_SS = 12,
	V_GP = 13,
	V_PF = 14,
	V_MF = 16,
	V_AC = 17,
	V_XM = 19,
};

/* Page-table entries. */
#define PTE_P    0x1ULL
#define PTE_W    0x2ULL
#define PTE_U    0x4ULL
#define PTE_PWT  0x8ULL
#define PTE_PCD  0x10ULL
#define PTE_A    0x20ULL
#define PTE_D    0x40ULL
#define PTE_PS   0x80ULL
#define PTE_G    0x100ULL
#define PTE_NX   (1ULL << 63)
#define PTE_ADDR 0x000ffffffffff000ULL

/* #PF error code. */
#define PF_P    0x1u
#define PF_W    0x2u
#define PF_U    0x4u
#define PF_RSVD 0x8u
#define PF_I    0x10u

#endif
