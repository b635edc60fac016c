/*
 * smpguest's AP trampolines. smpguest.c copies one of them to TRAMP_BASE (smpguest.h) and
 * starts each AP there with INIT and two SIPIs (vector TRAMP_BASE >> 12): the AP begins in
 * real mode at CS:IP = (TRAMP_BASE >> 4):0000 with CS.base = TRAMP_BASE, IF = 0, CR0.PE = 0.
 * The code is position-dependent: every linear address in it is TRAMP_BASE + an offset, and
 * in real mode DS = CS makes data offsets page offsets. Nothing is executed where it is
 * linked (it lives in .rodata). The data (GDT, CR3, stack, entry, index) is at TRAMP_DATA,
 * written by the BSP; the trampoline reads it and writes nothing.
 *
 *   tramp_classic  real mode -> lgdtl, CR0.PE -> ljmpl to 32-bit protected mode -> data
 *                  segments, CR4.PAE, CR3, EFER.LME, CR0.PG -> ljmpl to 64-bit mode
 *   tramp_direct   real mode -> lgdtl, CR4.PAE, CR3, EFER.LME, then CR0.PE|PG in one mov
 *                  -> ljmpl from 16-bit (compatibility) code straight to 64-bit mode
 *
 * Both end in the same 64-bit tail: data segments, RSP from TD_STACK, EDI from TD_INDEX,
 * call *TD_ENTRY (ap_main, which does not return; a return halts).
 */
#include "smpguest.h"

#define CR0_PE   0x00000001
#define CR0_PG   0x80000000
#define CR4_PAE  0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100

/* Linear address of `label` once its trampoline (starting at `start`) is at TRAMP_BASE. */
#define LIN(label, start) (TRAMP_BASE + ((label) - (start)))
#define DATA(off)         (TRAMP_BASE + TRAMP_DATA + (off))

/* The common 64-bit part. */
.macro LONG_MODE_TAIL
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movq DATA(TD_STACK), %rsp
	movl DATA(TD_INDEX), %edi
	movq DATA(TD_ENTRY), %rax
	call *%rax
1:	cli
	hlt
	jmp 1b
.endm

	.section .rodata.smp_trampoline, "a", @progbits

/* ---- classic: real -> 32-bit protected -> long mode ---- */
	.code16
	.globl tramp_classic, tramp_classic_end
tramp_classic:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl TRAMP_DATA + TD_GDTR		/* DS:offset; the base in it is linear */
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $SEL_CODE32, $LIN(classic_32, tramp_classic)

	.code32
classic_32:
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl DATA(TD_CR3), %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $CR0_PG, %eax
	movl %eax, %cr0				/* long mode active, still 32-bit code */
	ljmpl $SEL_CODE64, $LIN(classic_64, tramp_classic)

	.code64
classic_64:
	LONG_MODE_TAIL
	.org tramp_classic + TRAMP_DATA		/* an error if the code runs into the data */
tramp_classic_end:

/* ---- direct: real mode straight to long mode ---- */
	.code16
	.globl tramp_direct, tramp_direct_end
tramp_direct:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl TRAMP_DATA + TD_GDTR
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl TRAMP_DATA + TD_CR3, %eax		/* DS:offset */
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $(CR0_PE | CR0_PG), %eax
	movl %eax, %cr0				/* protected mode and paging at once: LMA = 1 */
	ljmpl $SEL_CODE64, $LIN(direct_64, tramp_direct)

	.code64
direct_64:
	LONG_MODE_TAIL
	.org tramp_direct + TRAMP_DATA
tramp_direct_end:

	.section .note.GNU-stack, "", @progbits
