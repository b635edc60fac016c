/*
 * libFuzzer target: random bytes run as 32-bit code by the interpreter (cpu/interp32.c), with
 * random registers, control registers, descriptor tables and segment state, over 64 KiB of
 * guest RAM (a heap buffer: AddressSanitizer catches any access outside it).
 *
 * Input: a 64-byte header (registers and CPU state, see below), then the bytes of guest RAM
 * from address 0 (the rest is zero). The translate op is the identity with CR0.PG clear and
 * a 4-level walk of the guest's tables (in that RAM) with it set; descriptors come from the
 * guest's GDT; the IDT is wherever the header puts it. Checked on every input:
 *   - no crash, no access outside guest RAM (ASan / UBSan), a bounded run (the step budget;
 *     libFuzzer's -timeout catches a hang);
 *   - the result is one of the five; the steps reported are within the budget;
 *   - ops->stop was called exactly once for INTERP_UNSUPPORTED / INTERP_FAULT (with the
 *     right kind, and the reason in out.why), never otherwise;
 *   - INTERP_LONG_MODE: the CPU is in long mode with a 64-bit CS; outside long mode EIP and
 *     the general registers stay 32-bit (their upper halves were zero and stay zero).
 * With mode bit 3 the CPU starts as an application processor after its SIPI (real mode,
 * interp_sipi_state with the vector in byte 41), then takes the header's registers, IP (16
 * bits), flags and descriptor tables.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/guest_cpu.h"
#include "cpu/interp32.h"
#include "cpu/x86.h"
#include "vmm/guest_memory.h"

#define RAM_SIZE 0x10000u
#define HEADER   64
#define STEPS    2000

struct fz {
	struct guest_memory gm;
	struct guest_cpu c;
	unsigned stops;
	enum cpu_stop how;
	uint32_t io_value;
	uint64_t msr_value;
};

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_interp32: %s\n", what);
		abort();
	}
}

static uint64_t rd64(struct fz *z, uint64_t gpa)
{
	uint64_t v = 0;

	if (gm_read(&z->gm, gpa, &v, 8))
		return 0;
	return v;
}

static bool op_translate(void *ctx, uint64_t va, bool write, uint64_t *gpa)
{
	struct fz *z = ctx;
	uint64_t table = z->c.cr3 & PTE_ADDR, e;

	if (!(z->c.cr0 & CR0_PG)) {
		*gpa = va;
		return true;
	}
	for (int level = 3; level >= 0; level--) {
		e = rd64(z, table + 8 * ((va >> (12 + 9 * level)) & 511));
		if (!(e & PTE_P) || (write && !(e & PTE_W)))
			return false;
		if (level && level < 3 && (e & PTE_PS)) {
			uint64_t size = 1ULL << (12 + 9 * level);

			*gpa = (e & PTE_ADDR & ~(size - 1)) | (va & (size - 1));
			return true;
		}
		table = e & PTE_ADDR;
	}
	*gpa = table | (va & 4095);
	return true;
}

static uint64_t op_descriptor(void *ctx, uint16_t sel)
{
	struct fz *z = ctx;

	if (!(sel & ~7) || (sel | 7u) > z->c.gdtr.limit)
		return 0;
	return rd64(z, z->c.gdtr.base + (sel & ~7u));
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
	check(false, "a page-table store notice from the interpreter");
}

static void op_invlpg(void *ctx, uint64_t va)
{
	(void)ctx;
	(void)va;
}

static bool op_rdmsr(void *ctx, uint32_t index, uint64_t *value)
{
	struct fz *z = ctx;

	*value = z->msr_value ^ index;
	return index & 1;
}

static bool op_wrmsr(void *ctx, uint32_t index, uint64_t value)
{
	struct fz *z = ctx;

	z->msr_value = value;
	return index & 1;
}

static bool op_xsetbv(void *ctx, uint32_t index, uint64_t value)
{
	(void)ctx;
	return index == 0 && (value & 1);
}

static void op_pio(void *ctx, uint16_t port, bool write, void *data, unsigned size)
{
	struct fz *z = ctx;

	check(size == 1 || size == 2 || size == 4, "port I/O size");
	if (!write) {
		uint32_t v = z->io_value ^ port;

		memcpy(data, &v, size);
	}
}

static void op_stop(void *ctx, enum cpu_stop how, const char *why)
{
	struct fz *z = ctx;

	check(why && why[0], "a stop without a reason");
	z->stops++;
	z->how = how;
}

static void op_cpuid(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
	(void)ctx;
	out[0] = leaf;
	out[1] = subleaf;
	out[2] = ~leaf;
	out[3] = ~subleaf;
}

static const struct guest_cpu_ops ops = {
    .translate = op_translate,
    .descriptor = op_descriptor,
    .gdt_loaded = op_true,
    .paging_changed = op_paging_changed,
    .pte_stored = op_pte_stored,
    .invlpg = op_invlpg,
    .rdmsr = op_rdmsr,
    .wrmsr = op_wrmsr,
    .xsetbv = op_xsetbv,
    .pio = op_pio,
    .stop = op_stop,
    .cpuid = op_cpuid,
};

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/*
 * Header: 0-31 EAX..EDI; 32 EIP; 36 EFLAGS; 40 mode (bit 0: CR0.PG with EFER.LME/LMA and
 * CR4.PAE, bit 1: EFER.NXE, bit 2: trap port 0x80, bit 3: start from a SIPI, bits 4-5: how
 * many steps per call, 1 to STEPS); 41 CS, 42 SS (selector indexes; with bit 3: the vector); 43-44
 * GDTR limit; 45-47 GDTR base / 256; 48-49 IDTR limit; 50-51 IDTR base / 16; 52-55 CR3; 56-59 FS
 * base; 60-63 port / MSR values.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned budgets[] = {1, 7, 100, STEPS};
	struct fz *z;
	uint8_t *ram;
	uint8_t mode;
	uint64_t total = 0;
	enum interp_result r = INTERP_BUDGET;
	struct interp32_exit out;

	if (size < HEADER)
		return 0;
	ram = calloc(1, RAM_SIZE);
	z = calloc(1, sizeof(*z));
	if (!ram || !z) {
		free(ram);
		free(z);
		return 0;
	}
	memcpy(ram, data + HEADER, size - HEADER < RAM_SIZE ? size - HEADER : RAM_SIZE);
	gm_wrap(&z->gm, ram, RAM_SIZE);
	mode = data[40];
	z->c.gm = &z->gm;
	z->c.ops = &ops;
	z->c.ctx = z;
	for (unsigned i = 0; i < 8; i++)
		z->c.r.gpr[i] = le32(data + 4 * i);
	z->c.r.rip = le32(data + 32);
	z->c.r.rflags = (le32(data + 36) & 0x00250fd5u) | RF_RESERVED;
	z->c.cr0 = CR0_PE | CR0_ET | ((mode & 1) ? CR0_PG : 0);
	z->c.cr4 = (mode & 1) ? CR4_PAE : 0;
	z->c.efer = ((mode & 1) ? EFER_LME | EFER_LMA : 0) | ((mode & 2) ? EFER_NXE : 0);
	z->c.cs = (uint16_t)((data[41] & 31) << 3);
	z->c.ss = (uint16_t)((data[42] & 31) << 3);
	z->c.gdtr.limit = le16(data + 43);
	z->c.gdtr.base = (uint64_t)le16(data + 45) << 8;
	z->c.idtr.limit = le16(data + 48);
	z->c.idtr.base = (uint64_t)le16(data + 50) << 4;
	z->c.cr3 = le32(data + 52);
	z->c.fs_base = le32(data + 56);
	z->c.trap_port = (mode & 4) ? 0x80 : -1;
	z->io_value = le32(data + 60);
	z->msr_value = le32(data + 60);
	if (mode & 8) {
		struct guest_cpu h = z->c;

		interp_sipi_state(&z->c, data[41]);
		memcpy(z->c.r.gpr, h.r.gpr, sizeof(h.r.gpr));
		z->c.r.rip = h.r.rip & 0xffff;
		z->c.r.rflags = h.r.rflags;
		z->c.gdtr = h.gdtr;
		z->c.idtr = h.idtr;
	}

	/* a few calls, as an engine makes them: each within its budget */
	for (int call = 0; call < 4 && r == INTERP_BUDGET; call++) {
		unsigned budget = budgets[(mode >> 4) & 3];

		memset(&out, 0x5a, sizeof(out));
		r = interp32_run(&z->c, budget, &out);
		check(out.steps <= budget, "more steps than the budget");
		total += out.steps;
		switch (r) {
		case INTERP_BUDGET:
			check(out.steps == budget, "a budget exit before the budget");
			check(z->stops == 0, "stopped, yet more to run");
			break;
		case INTERP_HALT:
			check(z->stops == 0, "stopped, yet halted");
			break;
		case INTERP_LONG_MODE:
			check(z->stops == 0, "stopped, yet in long mode");
			check(cpu_long_mode(&z->c) && cpu_code64(&z->c),
			      "long mode without 64-bit CS");
			break;
		case INTERP_UNSUPPORTED:
			check(z->stops == 1 && z->how == CPU_STOP_REFUSED,
			      "a refusal, not one stop");
			check(out.why[0] && memchr(out.why, 0, sizeof(out.why)), "no reason");
			break;
		case INTERP_FAULT:
			check(z->stops == 1 && z->how == CPU_STOP_TRIPLE_FAULT,
			      "a fault, not one stop");
			check(out.why[0] && memchr(out.why, 0, sizeof(out.why)), "no reason");
			break;
		default:
			check(false, "result out of range");
		}
		if (!cpu_long_mode(&z->c)) { /* (a 64-bit IDT's delivery sets 64-bit RIP, RSP) */
			check(z->c.r.rip >> 32 == 0, "EIP beyond 32 bits");
			for (unsigned i = 0; i < 8; i++)
				check(z->c.r.gpr[i] >> 32 == 0, "a register beyond 32 bits");
		}
	}
	check(total <= 4ULL * STEPS, "steps");
	free(ram);
	free(z);
	return 0;
}
