/*
 * PVH entry for the hearth test guests.
 *
 * The VMM finds the 32-bit entry point in the Xen ELF note below and starts the boot vCPU
 * there in 32-bit protected mode: paging off, flat 4 GiB segments, %ebx = guest-physical
 * address of struct hvm_start_info. This file switches to long mode using page tables that
 * are prebuilt in the image (no loops), sets up a stack and calls rt_start(si).
 *
 * Every instruction counts (KVM may emulate this code), so the path is straight-line.
 */

#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define CR0_PE   0x00000001
#define CR0_PG   0x80000000
#define CR4_PAE  0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100

/* Page-table entry bits. Accessed (and for the 2 MiB leaves Dirty) are preset so the CPU
 * never has to write the tables back. */
#define PTE_P   0x001
#define PTE_RW  0x002
#define PTE_A   0x020
#define PTE_D   0x040
#define PTE_PS  0x080
#define PTE_TABLE (PTE_P | PTE_RW | PTE_A)
#define PTE_LEAF  (PTE_P | PTE_RW | PTE_A | PTE_D | PTE_PS)

#define SEL_CODE64 0x08
#define SEL_DATA   0x10

/*
 * The PVH note. The linker script gives .note.Xen its own PT_NOTE segment.
 *
 * The first note is the one that matters: name "Xen", type 18, a 4-byte descriptor with the
 * 32-bit physical entry address. It is followed by an empty note (no name, no descriptor).
 * That second note is well formed for any note parser, and its leading n_namesz = 0 doubles
 * as the zero upper half for loaders (QEMU) that read the descriptor as a 64-bit value.
 */
	.section .note.Xen, "a", @note
	.p2align 2
	.long 4				/* n_namesz: "Xen\0" */
	.long 4				/* n_descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY	/* n_type */
	.asciz "Xen"
	.long pvh_entry			/* desc: 32-bit physical entry */
	.long 0				/* n_namesz */
	.long 0				/* n_descsz */
	.long 0				/* n_type */

	.section .text.entry, "ax", @progbits
	.code32
	.globl pvh_entry
	.type pvh_entry, @function
pvh_entry:
	cli
	cld
	movl %ebx, %esi			/* keep start_info; rt_start gets it in %rdi */
	lgdt gdt_ptr
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	movl $EFER_LME, %eax
	xorl %edx, %edx
	wrmsr
	movl %cr0, %eax
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_CODE64, $long_entry
	.size pvh_entry, . - pvh_entry

	.code64
long_entry:
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $__stack_top, %esp		/* zero-extends into %rsp; 16-byte aligned */
	/* Zero .bss (small: the console buffer and the stack live in .noinit/.stack). */
	movl $__bss_start, %edi
	movl $__bss_qwords, %ecx
	xorl %eax, %eax
	rep stosq
	movl %esi, %edi
	call rt_start
1:	cli
	hlt
	jmp 1b

/* GDT: null, 64-bit code, data. Accessed bits preset so loading a selector never writes. */
	.section .rodata.entry, "a", @progbits
	.p2align 3
gdt:
	.quad 0
	.quad 0x00af9b000000ffff	/* 0x08: code, L=1, DPL 0 */
	.quad 0x00cf93000000ffff	/* 0x10: data, 4 GiB flat */
gdt_end:
	.p2align 1
gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt

/*
 * Identity map of the first 4 GiB with 2 MiB pages: PML4[0] -> PDPT[0..3] -> four page
 * directories of 512 entries each. Emitted by the assembler, nothing is built at run time.
 */
	.section .data.pagetables, "aw", @progbits
	.p2align 12
pml4:
	.quad pdpt + PTE_TABLE
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x0000 + PTE_TABLE
	.quad pd + 0x1000 + PTE_TABLE
	.quad pd + 0x2000 + PTE_TABLE
	.quad pd + 0x3000 + PTE_TABLE
	.fill 508, 8, 0
pd:
	.set addr, 0
	.rept 2048
	.quad addr + PTE_LEAF
	.set addr, addr + 0x200000
	.endr

	.section .note.GNU-stack, "", @progbits
