/*
 * Multiboot (v1) entry for mbguest: what a GRUB- or QEMU-booted unikernel does.
 *
 * The loader finds the header below in the file's first 8 KiB and starts the boot vCPU at
 * mb_entry in 32-bit protected mode, paging off, with %eax = 0x2badb002 and %ebx = the
 * guest-physical address of the multiboot_info. This switches to long mode with page tables
 * prebuilt in the image and calls mb_start(magic, info).
 *
 * Built twice: without MB_KLUDGE the loader places the ELF by its program headers; with it the
 * header carries load addresses (flag 16), the only way to load the raw binary made from it.
 * With MB_SAME_SELECTOR (a third build) it first loads a GDT of its own whose 0x08 is 32-bit
 * code and far-jumps there, as QEMU's own x86_64 test kernels do: its jump to 64-bit code
 * later goes to the same selector, 0x08, which the second GDT makes 64-bit.
 */

#define MB_MAGIC 0x1badb002
#ifdef MB_KLUDGE
#define MB_FLAGS 0x00010003 /* page-aligned modules, memory info, load addresses */
#else
#define MB_FLAGS 0x00000003 /* page-aligned modules, memory info */
#endif

#define CR0_PE   0x00000001
#define CR0_PG   0x80000000
#define CR4_PAE  0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100
#define PTE_TABLE 0x023 /* present, writable, accessed */
#define PTE_LEAF  0x0e3 /* present, writable, accessed, dirty, 2 MiB */
#define SEL_CODE64 0x08
#define SEL_DATA   0x10

	.section .multiboot, "a", @progbits
	.p2align 2
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)
#ifdef MB_KLUDGE
	.long mb_header			/* header_addr */
	.long __image_start		/* load_addr */
	.long __load_end		/* load_end_addr */
	.long __image_end		/* bss_end_addr */
	.long mb_entry			/* entry_addr */
#endif

	.section .text.entry, "ax", @progbits
	.code32
	.globl mb_entry
	.type mb_entry, @function
mb_entry:
	cli
	cld
	movl %eax, %edi			/* the loader's magic: mb_start's first argument */
	movl %ebx, %esi			/* multiboot_info: its second */
#ifdef MB_SAME_SELECTOR
	lgdt gdt32_ptr
	ljmp $0x08, $1f
1:	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
#endif
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
	.size mb_entry, . - mb_entry

	.code64
long_entry:
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $__stack_top, %esp
	movl %edi, %edi			/* the upper halves are undefined after the mode switch */
	movl %esi, %esi
	movq %rdi, %r12
	movl $__bss_start, %edi
	movl $__bss_qwords, %ecx
	xorl %eax, %eax
	rep stosq
	movq %r12, %rdi
	call mb_start
1:	cli
	hlt
	jmp 1b

	.section .rodata.entry, "a", @progbits
	.p2align 3
gdt:
	.quad 0
	.quad 0x00af9b000000ffff	/* 0x08: code, L=1 */
	.quad 0x00cf93000000ffff	/* 0x10: data, 4 GiB flat */
gdt_end:
	.p2align 1
gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt
#ifdef MB_SAME_SELECTOR
	.p2align 3
gdt32:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08: code, 32-bit */
	.quad 0x00cf93000000ffff	/* 0x10: data, 4 GiB flat */
gdt32_end:
	.p2align 1
gdt32_ptr:
	.word gdt32_end - gdt32 - 1
	.long gdt32
#endif

/* Identity map of the first 4 GiB with 2 MiB pages. */
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
