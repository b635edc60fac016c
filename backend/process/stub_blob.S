/* The stub's code (stub.c, linked by stub.ld, made a flat image by objcopy), in hearth. */
	.section .rodata, "a", @progbits
	.p2align 4
	.globl stub_blob
stub_blob:
	.incbin STUB_BIN
	.globl stub_blob_end
stub_blob_end:
	/* The same code as a static ELF, which hearth executes as the guest process. */
	.p2align 4
	.globl stub_elf
stub_elf:
	.incbin STUB_ELF
	.globl stub_elf_end
stub_elf_end:
	.section .note.GNU-stack, "", @progbits
