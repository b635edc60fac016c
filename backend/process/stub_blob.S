/* The stub's code (stub.c, linked by stub.ld, made a flat image by objcopy), in hearth. */
	.section .rodata, "a", @progbits
	.p2align 4
	.globl stub_blob
stub_blob:
	.incbin STUB_BIN
	.globl stub_blob_end
stub_blob_end:
	.section .note.GNU-stack, "", @progbits
