/*
 * libFuzzer target: the emulation of an access the host cannot map (cpu_emulate_mmio: a
 * device register or guest page 0), as the process engine runs it after a fault. Random
 * code at RIP, random registers (RCX counts strings, RSI/RDI point anywhere, DF either
 * way), a random fault address on page 0 or in a two-page device window, over 64 KiB of
 * guest RAM (a heap buffer: AddressSanitizer catches any access outside it).
 *
 * Input: a 160-byte header (the 16 general registers, RFLAGS, the FS and GS bases, the
 * fault's address selector), then the bytes of guest RAM from address 0x1000 (code is at
 * RIP, anywhere in RAM). Guest-virtual = guest-physical in RAM; the window's two pages
 * translate to a device range. Checked on every input:
 *   - no crash, no access outside guest RAM (ASan / UBSan);
 *   - every access is 1, 2, 4 or 8 bytes, within RAM or within the window, never across a
 *     page, and there are at most two per string element of one batch;
 *   - false (nothing done) leaves the registers as they were, with no access made; the only
 *     stop is a triple fault (the guest's #PF for a string's unmapped operand, delivered
 *     through an IDT of random bytes).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/guest_cpu.h"
#include "cpu/x86.h"
#include "vmm/guest_memory.h"

#define RAM_SIZE   0x10000u
#define HEADER     160
#define WINDOW_VA  0x200000ULL /* two pages, not RAM */
#define WINDOW_GPA 0xfe000000ULL
#define MAX_ACCESS (2 * 4096 + 2)

struct fz {
	struct guest_memory gm;
	struct guest_cpu c;
	unsigned accesses;
};

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_emulate_mmio: %s\n", what);
		abort();
	}
}

static bool op_translate(void *ctx, uint64_t va, bool write, uint64_t *gpa)
{
	(void)ctx;
	(void)write;
	if (va - WINDOW_VA < 0x2000) {
		*gpa = va - WINDOW_VA + WINDOW_GPA;
		return true;
	}
	if (va >= RAM_SIZE)
		return false;
	*gpa = va;
	return true;
}

static uint64_t op_descriptor(void *ctx, uint16_t sel)
{
	(void)ctx;
	(void)sel;
	return 0;
}

static bool op_true(void *ctx)
{
	(void)ctx;
	return true;
}

static void op_paging_changed(void *ctx)
{
	(void)ctx;
}

static void op_pte_stored(void *ctx, uint64_t gpa, uint64_t old, uint64_t new)
{
	(void)ctx;
	(void)gpa;
	(void)old;
	(void)new;
}

static void op_invlpg(void *ctx, uint64_t va)
{
	(void)ctx;
	(void)va;
}

static bool op_msr(void *ctx, uint32_t index, uint64_t *value)
{
	(void)ctx;
	(void)index;
	*value = 0;
	return false;
}

static bool op_wrmsr(void *ctx, uint32_t index, uint64_t value)
{
	(void)ctx;
	(void)index;
	(void)value;
	return false;
}

static bool op_xsetbv(void *ctx, uint32_t index, uint64_t value)
{
	(void)ctx;
	(void)index;
	(void)value;
	return false;
}

static void op_pio(void *ctx, uint16_t port, bool write, void *data, unsigned size)
{
	(void)ctx;
	(void)port;
	(void)write;
	(void)data;
	(void)size;
	check(false, "port I/O from the MMIO emulation");
}

/* A #PF a string move reflects goes through the IDT, which may be garbage: a triple fault. */
static void op_stop(void *ctx, enum cpu_stop how, const char *why)
{
	(void)ctx;
	(void)why;
	check(how == CPU_STOP_TRIPLE_FAULT, "a stop other than a triple fault");
}

static const struct guest_cpu_ops ops = {
    .translate = op_translate,
    .descriptor = op_descriptor,
    .gdt_loaded = op_true,
    .paging_changed = op_paging_changed,
    .pte_stored = op_pte_stored,
    .invlpg = op_invlpg,
    .rdmsr = op_msr,
    .wrmsr = op_wrmsr,
    .xsetbv = op_xsetbv,
    .pio = op_pio,
    .stop = op_stop,
};

/* What the process engine's callback does: RAM through guest memory, the window to a
 * device (here: reads give a pattern, writes go nowhere). */
static void access(void *ctx, uint64_t gpa, bool write, void *data, unsigned len)
{
	struct fz *z = ctx;

	check(len == 1 || len == 2 || len == 4 || len == 8, "access size");
	check((gpa & 4095) + len <= 4096, "access across a page");
	check(++z->accesses <= MAX_ACCESS, "too many accesses for one trap");
	if (gpa - WINDOW_GPA < 0x2000) {
		if (!write)
			memset(data, 0x5a, len);
		return;
	}
	check(gpa + len <= RAM_SIZE, "access outside RAM and the window");
	if (write)
		check(gm_write(&z->gm, gpa, data, len) == 0, "RAM write");
	else
		check(gm_read(&z->gm, gpa, data, len) == 0, "RAM read");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz z;
	static bool ready;
	uint64_t h[HEADER / 8] = {0}, va, gpa;
	struct x86_regs before;

	if (!ready) {
		check(gm_init(&z.gm, RAM_SIZE) == 0, "guest memory");
		ready = true;
	}
	if (size < HEADER)
		return 0;
	memcpy(h, data, HEADER);
	memset(z.gm.host, 0, RAM_SIZE);
	memcpy(z.gm.host + 0x1000, data + HEADER,
	       size - HEADER < RAM_SIZE - 0x1000 ? size - HEADER : RAM_SIZE - 0x1000);
	z.c = (struct guest_cpu){
	    .cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG,
	    .cr4 = CR4_PAE,
	    .efer = EFER_LME | EFER_LMA,
	    .cs = 0x08,
	    .ss = 0x10,
	    .trap_port = -1,
	    .gm = &z.gm,
	    .ops = &ops,
	    .ctx = &z,
	};
	z.c.hidden.cs_desc = 0x00af9b000000ffffULL;
	memcpy(z.c.r.gpr, h, 16 * 8);
	/* the interesting values of the pointers more often: near page 0 or the window */
	for (unsigned i = 0; i < 16; i++)
		if ((h[19] >> (2 * i) & 3) == 1)
			z.c.r.gpr[i] &= 0x1fff;
		else if ((h[19] >> (2 * i) & 3) == 2)
			z.c.r.gpr[i] = WINDOW_VA + (z.c.r.gpr[i] & 0x1fff);
	z.c.r.rip = 0x1000 + (h[16] & 0x7fff);
	z.c.r.rflags = RF_RESERVED | (h[16] >> 32 & RF_DF);
	z.c.fs_base = h[17];
	z.c.gs_base = h[18];
	va = (h[19] >> 32) & 1 ? WINDOW_VA + (h[19] >> 40 & 0x1fff) : (h[19] >> 40 & 0xfff);
	z.accesses = 0;
	before = z.c.r;
	check(op_translate(&z, va, false, &gpa), "the fault's address translates");
	if (!cpu_emulate_mmio(&z.c, va, gpa, access, &z)) {
		check(z.accesses == 0, "accesses made, and false");
		check(!memcmp(&before, &z.c.r, sizeof(before)), "registers changed, and false");
	}
	return 0;
}
