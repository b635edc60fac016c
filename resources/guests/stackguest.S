/*
 * stackguest: a 64-bit ELF with no PVH note and no Multiboot header, so hearth enters it
 * through the Linux 64-bit boot protocol, on the stack hearth gives it (RSP; the protocol
 * sets none, Firecracker's is 0x8ff0). It pushes, calls and returns there, then exits
 * through port 0xf4 with RSP's page number (RSP >> 12) as its status: 8 on hearth's usual
 * stack. In the process engine, where the host cannot map that page (vm.mmap_min_addr above
 * 0x8000), the stack is elsewhere and the status says where; a push or call that hearth
 * could not do there would end in a triple fault (there is no IDT).
 */
	.section .text.entry, "ax", @progbits
	.code64
	.globl stack_entry
stack_entry:
	pushq %rbx
	call 1f
	popq %rbx
	movq %rsp, %rax
	shrq $12, %rax
	outb %al, $0xf4
2:	hlt
	jmp 2b
1:	ret

	.section .note.GNU-stack, "", @progbits
