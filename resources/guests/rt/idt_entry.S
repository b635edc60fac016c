/*
 * IDT entry stubs: 256 of them, 16 bytes apart from idt_stubs (rt/idt.c points gate N at
 * idt_stubs + 16 * N). A stub pushes a zero error code when the CPU pushes none, then the
 * vector, and jumps to idt_common, which saves the general registers (struct trap_frame in
 * rt/idt.h), calls idt_dispatch(frame) and returns with iretq.
 *
 * Stack alignment: the CPU aligns RSP to 16 before it pushes its 5 or 6 words; with the
 * error code, the vector and 15 registers the frame is 22 words, so RSP is 16-byte aligned
 * at the call, as the ABI wants.
 */
	.section .text.idt, "ax", @progbits
	.code64

	.p2align 4
	.globl idt_stubs
idt_stubs:
	.set vec, 0
	.rept 256
	.p2align 4
	.if !(vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	pushq $0
	.endif
	pushq $vec
	jmp idt_common
	.set vec, vec + 1
	.endr

idt_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	cld
	call idt_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp			/* vector and error code */
	iretq

/*
 * A system-call entry for `syscall` at CPL0 (rt/cpu.h: syscall_enable), as single-ring
 * kernels use it: it records RCX, R11 and the flags it runs with, counts itself, returns
 * -38 (ENOSYS) in RAX, and goes back with the flags from R11 and a jump through RCX.
 */
	.text
	.globl rt_syscall_entry
rt_syscall_entry:
	pushfq
	popq rt_syscall_flags(%rip)
	movq %rcx, rt_syscall_rcx(%rip)
	movq %r11, rt_syscall_r11(%rip)
	incq rt_syscall_count(%rip)
	movq $-38, %rax
	pushq %r11
	popfq
	jmpq *%rcx

	.data
	.p2align 3
	.globl rt_syscall_flags, rt_syscall_rcx, rt_syscall_r11, rt_syscall_count
rt_syscall_flags:
	.quad 0
rt_syscall_rcx:
	.quad 0
rt_syscall_r11:
	.quad 0
rt_syscall_count:
	.quad 0

	.section .note.GNU-stack, "", @progbits
