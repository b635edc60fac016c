/*
 * The virtual x86 CPU (cpu/guest_cpu.c) on its own, with no backend: guest memory is a plain
 * buffer mapped 1:1 (the translate op is the identity), descriptors come from a small table
 * here, and every op records what the CPU asked of it. Instructions are written into guest
 * memory at RIP as an assembler encodes them (checked with GNU as / objdump).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "cpu/guest_cpu.h"
#include "cpu/x86.h"
#include "vmm/guest_memory.h"

#define MEM        (4u << 20)
#define CODE       0x10000ULL /* RIP */
#define STACK      0x80000ULL /* RSP */
#define IDT        0x20000ULL
#define HANDLER    0x30000ULL
#define DATA       0x40000ULL
#define SEL_CODE   0x08
#define SEL_DATA   0x10
#define SEL_CODE32 0x18
#define NO_PORT    (-1)
#define MMIO_VA    0xfee00000ULL /* two pages, not RAM: only the callback sees the access */
#define MMIO_GPA   0xfed00000ULL

struct fx {
	struct guest_memory gm;
	struct guest_cpu c;
	/* what the ops saw */
	unsigned paging_changes, gdt_loads, invlpgs, stops, pte_stores;
	enum cpu_stop stop_how;
	char stop_why[256];
	uint64_t pte_gpa, pte_old, pte_new, invlpg_va;
	uint32_t msr_index;
	uint64_t msr_value;
	bool msr_ok;
	struct {
		uint16_t port;
		bool write;
		uint32_t value;
		unsigned size;
	} pio[64];
	unsigned npio;
	uint32_t pio_read_value;
	/* device register accesses (cpu_emulate_mmio) */
	struct {
		uint64_t gpa, value;
		bool write;
		unsigned len;
	} mmio[8];
	unsigned nmmio;
	uint64_t mmio_read_value;
	/* the guest loaded a new GDT in which SEL_CODE is 32-bit code */
	bool gdt_swapped;
	/* the device pages are mapped read-only (a store's walk fails) */
	bool mmio_readonly;
};

static bool op_translate(void *ctx, uint64_t va, bool write, uint64_t *gpa)
{
	if (va - MMIO_VA < 0x2000) {
		if (write && ((struct fx *)ctx)->mmio_readonly)
			return false;
		*gpa = va - MMIO_VA + MMIO_GPA;
		return true;
	}
	if (va >= MEM)
		return false;
	*gpa = va;
	return true;
}

/* Null, 64-bit code (DPL0), flat writable data, flat 32-bit code. */
static uint64_t op_descriptor(void *ctx, uint16_t sel)
{
	switch (sel >> 3) {
	case SEL_CODE >> 3:
		return ((struct fx *)ctx)->gdt_swapped ? 0x00cf9b000000ffffULL
		                                       : 0x00af9b000000ffffULL;
	case SEL_DATA >> 3:
		return 0x00cf93000000ffffULL;
	case SEL_CODE32 >> 3:
		return 0x00cf9b000000ffffULL;
	default:
		return 0;
	}
}

static bool op_gdt_loaded(void *ctx)
{
	((struct fx *)ctx)->gdt_loads++;
	return true;
}

static void op_paging_changed(void *ctx)
{
	((struct fx *)ctx)->paging_changes++;
}

static void op_pte_stored(void *ctx, uint64_t gpa, uint64_t old, uint64_t new)
{
	struct fx *f = ctx;

	f->pte_stores++;
	f->pte_gpa = gpa;
	f->pte_old = old;
	f->pte_new = new;
}

static void op_invlpg(void *ctx, uint64_t va)
{
	struct fx *f = ctx;

	f->invlpgs++;
	f->invlpg_va = va;
}

static bool op_rdmsr(void *ctx, uint32_t index, uint64_t *value)
{
	struct fx *f = ctx;

	f->msr_index = index;
	*value = f->msr_value;
	return f->msr_ok;
}

static bool op_wrmsr(void *ctx, uint32_t index, uint64_t value)
{
	struct fx *f = ctx;

	f->msr_index = index;
	f->msr_value = value;
	return f->msr_ok;
}

static bool op_xsetbv(void *ctx, uint32_t index, uint64_t value)
{
	(void)ctx;
	return index == 0 && (value & 1);
}

static void op_pio(void *ctx, uint16_t port, bool write, void *data, unsigned size)
{
	struct fx *f = ctx;
	uint32_t v = 0;

	assert_true(size == 1 || size == 2 || size == 4);
	if (write)
		memcpy(&v, data, size);
	else
		memcpy(data, &f->pio_read_value, size);
	if (f->npio < 64)
		f->pio[f->npio++] = (__typeof__(f->pio[0])){port, write, v, size};
}

static void op_stop(void *ctx, enum cpu_stop how, const char *why)
{
	struct fx *f = ctx;

	f->stops++;
	f->stop_how = how;
	snprintf(f->stop_why, sizeof(f->stop_why), "%s", why);
}

static const struct guest_cpu_ops ops = {
    .translate = op_translate,
    .descriptor = op_descriptor,
    .gdt_loaded = op_gdt_loaded,
    .paging_changed = op_paging_changed,
    .pte_stored = op_pte_stored,
    .invlpg = op_invlpg,
    .rdmsr = op_rdmsr,
    .wrmsr = op_wrmsr,
    .xsetbv = op_xsetbv,
    .pio = op_pio,
    .stop = op_stop,
};

/* A 64-bit interrupt gate for `vector` at HANDLER + 16 * vector (IST 0). */
static void set_gate(struct fx *f, unsigned vector, bool trap_gate)
{
	uint64_t target = HANDLER + 16 * vector;
	uint64_t g[2] = {(target & 0xffff) | ((uint64_t)SEL_CODE << 16) |
	                     ((uint64_t)(trap_gate ? 0x8f : 0x8e) << 40) |
	                     ((target >> 16 & 0xffff) << 48),
	                 target >> 32};

	assert_int_equal(gm_write(&f->gm, IDT + 16 * vector, g, 16), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(gm_init(&f->gm, MEM), 0);
	f->c = (struct guest_cpu){
	    .r = {.rip = CODE, .rflags = RF_RESERVED | RF_IF},
	    .cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG,
	    .cr4 = CR4_PAE,
	    .efer = EFER_LME | EFER_LMA,
	    .idtr = {IDT, 256 * 16 - 1},
	    .cs = SEL_CODE,
	    .ss = SEL_DATA,
	    .trap_port = NO_PORT,
	    .gm = &f->gm,
	    .ops = &ops,
	    .ctx = f,
	};
	f->c.r.gpr[R_SP] = STACK;
	f->msr_ok = true;
	for (unsigned v = 0; v < 256; v++)
		set_gate(f, v, false);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	gm_destroy(&f->gm);
	free(f);
	return 0;
}

static void code(struct fx *f, const uint8_t *b, size_t n)
{
	assert_int_equal(gm_write(&f->gm, f->c.r.rip, b, n), 0);
}

#define CODE_(f, ...)                                                                              \
	do {                                                                                       \
		static const uint8_t b_[] = {__VA_ARGS__};                                         \
		code(f, b_, sizeof(b_));                                                           \
	} while (0)

static uint64_t stack_word(struct fx *f, unsigned i)
{
	uint64_t w = 0;

	assert_int_equal(gm_read(&f->gm, f->c.r.gpr[R_SP] + 8 * i, &w, 8), 0);
	return w;
}

/* ---- interrupt flag, halt ---------------------------------------------------------- */

static void test_cli_sti_hlt(void **state)
{
	struct fx *f = *state;

	CODE_(f, 0xfa); /* cli */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_false(f->c.r.rflags & RF_IF);
	assert_int_equal(f->c.r.rip, CODE + 1);
	CODE_(f, 0xfb, 0x90); /* sti; nop */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_true(f->c.r.rflags & RF_IF);
	assert_int_equal(f->c.r.rip, CODE + 2);
	CODE_(f, 0xf4); /* hlt */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_HALT);
	assert_int_equal(f->c.r.rip, CODE + 3);
	/* sti; hlt halts at once, past both (the interrupt shadow) */
	f->c.r.rflags &= ~RF_IF;
	CODE_(f, 0xfb, 0xf4);
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_HALT);
	assert_true(f->c.r.rflags & RF_IF);
	assert_int_equal(f->c.r.rip, CODE + 5);
}

/* ---- control registers, MSRs -------------------------------------------------------- */

static void test_control_registers(void **state)
{
	struct fx *f = *state;

	f->c.r.gpr[R_AX] = 0x5000;
	CODE_(f, 0x0f, 0x22, 0xd8); /* mov %rax, %cr3 */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.cr3, 0x5000);
	assert_int_equal(f->paging_changes, 1);
	CODE_(f, 0x0f, 0x20, 0xc3); /* mov %cr0, %rbx */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.r.gpr[R_BX], f->c.cr0);
	f->c.r.gpr[R_CX] = 0x0b;
	CODE_(f, 0x44, 0x0f, 0x22, 0xc1); /* mov %rcx, %cr8 */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.cr8, 0x0b);
	assert_int_equal(f->paging_changes, 1); /* CR8 and CR4 do not change the mapping */
	/* CR0.PG with CR0.PE clear: #GP, delivered through the IDT (error code 0) */
	f->c.r.gpr[R_AX] = CR0_PG;
	CODE_(f, 0x0f, 0x22, 0xc0); /* mov %rax, %cr0 */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
	assert_int_equal(stack_word(f, 0), 0); /* error code */
}

static void test_msrs(void **state)
{
	struct fx *f = *state;

	/* wrmsr FS_BASE; rdmsr it back: the CPU keeps these itself */
	f->c.r.gpr[R_CX] = MSR_FS_BASE;
	f->c.r.gpr[R_DX] = 0x1234;
	f->c.r.gpr[R_AX] = 0x5678abcd;
	CODE_(f, 0x0f, 0x30, 0x0f, 0x32); /* wrmsr; rdmsr */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.fs_base, 0x12345678abcdULL);
	f->c.r.gpr[R_AX] = f->c.r.gpr[R_DX] = 0;
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.r.gpr[R_AX], 0x5678abcd);
	assert_int_equal(f->c.r.gpr[R_DX], 0x1234);
	assert_int_equal(f->msr_index, 0); /* never asked the engine */
	/* EFER.NXE: the mapping changes; EFER.SCE is kept (syscall at CPL0 is emulated) */
	f->c.r.gpr[R_CX] = MSR_EFER;
	f->c.r.gpr[R_DX] = 0;
	f->c.r.gpr[R_AX] = EFER_LME | EFER_NXE;
	CODE_(f, 0x0f, 0x30);
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.efer, EFER_LME | EFER_LMA | EFER_NXE);
	assert_int_equal(f->paging_changes, 1);
	f->c.r.gpr[R_AX] = EFER_LME | EFER_NXE | EFER_SCE;
	f->c.r.rip = CODE;
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->stops, 0);
	assert_int_equal(f->c.efer, EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE);
	/* a base or syscall target that is not canonical: #GP, as hardware, nothing kept */
	f->c.r.gpr[R_CX] = MSR_LSTAR;
	f->c.r.gpr[R_DX] = 0x8000;
	f->c.r.gpr[R_AX] = 0;
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK;
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_STAY);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
	assert_int_equal(f->c.lstar, 0);
	/* Other MSRs go to the engine; a refusal is a #GP */
	f->c.r.rip = CODE;
	f->c.r.gpr[R_CX] = MSR_IA32_PAT;
	f->msr_value = 0x0007040600070406ULL;
	CODE_(f, 0x0f, 0x32);
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->msr_index, MSR_IA32_PAT);
	assert_int_equal(f->c.r.gpr[R_AX], 0x00070406);
	f->msr_ok = false;
	f->c.r.rip = CODE;
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_STAY);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
}

static void test_swapgs_and_tables(void **state)
{
	struct fx *f = *state;
	uint8_t desc[10] = {0xff, 0x0f};
	uint64_t base = 0x123456789000ULL, got;

	f->c.gs_base = 1;
	f->c.kernel_gs_base = 2;
	CODE_(f, 0x0f, 0x01, 0xf8); /* swapgs */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.gs_base, 2);
	assert_int_equal(f->c.kernel_gs_base, 1);
	/* lgdt (%rax); sgdt (%rbx): the guest's own table, not the engine's */
	memcpy(desc + 2, &base, 8);
	assert_int_equal(gm_write(&f->gm, DATA, desc, 10), 0);
	f->c.r.gpr[R_AX] = DATA;
	f->c.r.gpr[R_BX] = DATA + 0x100;
	f->c.r.rip = CODE;
	CODE_(f, 0x0f, 0x01, 0x10, 0x0f, 0x01, 0x03);
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.gdtr.base, base);
	assert_int_equal(f->c.gdtr.limit, 0xfff);
	assert_int_equal(f->gdt_loads, 1);
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(gm_read(&f->gm, DATA + 0x102, &got, 8), 0);
	assert_int_equal(got, base);
	assert_int_equal(f->c.r.rip, CODE + 6);
}

/* ---- port I/O ------------------------------------------------------------------------ */

static void test_port_io(void **state)
{
	struct fx *f = *state;

	f->c.r.gpr[R_AX] = 0xffffffff12345678ULL;
	f->c.r.gpr[R_DX] = 0x3f8;
	f->pio_read_value = 0xaabbccdd;
	/* out %al, $0xf4; in %dx, %al; in %dx, %eax */
	CODE_(f, 0xe6, 0xf4, 0xec, 0xed);
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->npio, 1);
	assert_int_equal(f->pio[0].port, 0xf4);
	assert_true(f->pio[0].write);
	assert_int_equal(f->pio[0].value, 0x78);
	assert_int_equal(f->pio[0].size, 1);
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.r.gpr[R_AX], 0xffffffff123456ddULL); /* only AL */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.r.gpr[R_AX], 0xaabbccddULL); /* EAX: the upper half cleared */
	assert_int_equal(f->c.r.rip, CODE + 4);
	/* the engine's own trap port: nothing answers, reads are all ones */
	f->c.trap_port = 0xea;
	f->npio = 0;
	f->c.r.rip = CODE;
	CODE_(f, 0xe4, 0xea); /* in $0xea, %al */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->npio, 0);
	assert_int_equal(f->c.r.gpr[R_AX] & 0xff, 0xff);
}

static void test_rep_outs(void **state)
{
	struct fx *f = *state;

	assert_int_equal(gm_write(&f->gm, DATA, "hearth", 6), 0);
	f->c.r.gpr[R_SI] = DATA;
	f->c.r.gpr[R_CX] = 6;
	f->c.r.gpr[R_DX] = 0x3f8;
	CODE_(f, 0xf3, 0x6e); /* rep outsb */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->npio, 6);
	for (unsigned i = 0; i < 6; i++) {
		assert_int_equal(f->pio[i].port, 0x3f8);
		assert_int_equal(f->pio[i].value, (uint8_t) "hearth"[i]);
	}
	assert_int_equal(f->c.r.gpr[R_CX], 0);
	assert_int_equal(f->c.r.gpr[R_SI], DATA + 6);
	assert_int_equal(f->c.r.rip, CODE + 2);
	/* backwards with DF, 16-bit elements, from the last one */
	f->npio = 0;
	f->c.r.rip = CODE;
	f->c.r.rflags |= RF_DF;
	f->c.r.gpr[R_SI] = DATA + 4;
	f->c.r.gpr[R_CX] = 3;
	CODE_(f, 0x66, 0xf3, 0x6f); /* rep outsw */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->npio, 3);
	assert_int_equal(f->pio[0].value, 0x6874); /* "th" */
	assert_int_equal(f->pio[2].value, 0x6568); /* "he" */
	assert_int_equal(f->c.r.gpr[R_SI], DATA - 2);
	/* a huge count: a batch per trap, RIP stays until RCX reaches 0 */
	f->npio = 0;
	f->c.r.rip = CODE;
	f->c.r.rflags &= ~RF_DF;
	f->c.r.gpr[R_SI] = DATA;
	f->c.r.gpr[R_CX] = 1ULL << 40;
	CODE_(f, 0xf3, 0x6e);
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.r.rip, CODE);
	assert_true(f->c.r.gpr[R_CX] < 1ULL << 40);
	/* a source the guest does not map: #GP, nothing written past it */
	f->c.r.gpr[R_SI] = MEM - 1;
	f->c.r.gpr[R_CX] = 4;
	f->npio = 0;
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_STAY);
	assert_int_equal(f->npio, 1);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
}

/* ---- delivery ---------------------------------------------------------------------- */

static void test_delivery_frame(void **state)
{
	struct fx *f = *state;
	uint64_t rsp = STACK, rflags;

	f->c.r.rip = 0x1234;
	f->c.r.rflags = rflags = RF_RESERVED | RF_IF | RF_TF;
	cpu_page_fault(&f->c, 0xdead000, PF_W | PF_P);
	/* 64-bit frame on a 16-byte aligned stack: err, RIP, CS, RFLAGS, RSP, SS */
	assert_int_equal(f->c.r.gpr[R_SP], rsp - 48);
	assert_int_equal(stack_word(f, 0), PF_W | PF_P);
	assert_int_equal(stack_word(f, 1), 0x1234);
	assert_int_equal(stack_word(f, 2), SEL_CODE);
	assert_int_equal(stack_word(f, 3), rflags);
	assert_int_equal(stack_word(f, 4), rsp);
	assert_int_equal(stack_word(f, 5), SEL_DATA);
	assert_int_equal(f->c.cr2, 0xdead000);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_PF);
	/* an interrupt gate clears IF and TF */
	assert_false(f->c.r.rflags & (RF_IF | RF_TF));
	/* a trap gate keeps IF; software interrupts push no error code */
	set_gate(f, 0x80, true);
	f->c.r.rflags |= RF_IF;
	rsp = f->c.r.gpr[R_SP];
	cpu_reflect(&f->c, 0x80, 0x55, true);
	assert_true(f->c.r.rflags & RF_IF);
	assert_int_equal(f->c.r.gpr[R_SP], rsp - 40);
}

static void test_escalation_to_triple_fault(void **state)
{
	struct fx *f = *state;
	uint64_t zero[2] = {0, 0};

	/* #PF's gate not present: #GP with the IDT error code (vector * 8 + 2) */
	assert_int_equal(gm_write(&f->gm, IDT + 16 * V_PF, zero, 16), 0);
	cpu_page_fault(&f->c, 0, 0);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
	assert_int_equal(stack_word(f, 0), V_PF * 8 + 2);
	/* an empty IDT: #DF fails too, a triple fault stops the VM */
	f->c.idtr.limit = 0;
	cpu_reflect(&f->c, V_UD, 0, false);
	assert_int_equal(f->stops, 1);
	assert_int_equal(f->stop_how, CPU_STOP_TRIPLE_FAULT);
	assert_non_null(strstr(f->stop_why, "vector 6"));
}

static void test_iretq(void **state)
{
	struct fx *f = *state;
	uint64_t frame[5] = {0x4444, SEL_CODE, RF_RESERVED | RF_IF | RF_IOPL, 0x9000, SEL_DATA};

	f->c.r.gpr[R_SP] = STACK - 40;
	assert_int_equal(gm_write(&f->gm, STACK - 40, frame, sizeof(frame)), 0);
	CODE_(f, 0x48, 0xcf); /* iretq */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->c.r.rip, 0x4444);
	assert_int_equal(f->c.r.gpr[R_SP], 0x9000);
	assert_int_equal(f->c.cs, SEL_CODE);
	assert_true(f->c.r.rflags & RF_IF);
	assert_false(f->c.r.rflags & RF_IOPL); /* the guest cannot raise its IOPL */
	/* to CPL3 (RPL 3 in CS): the guest's own user mode, refused */
	frame[1] = SEL_CODE | 3;
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK - 40;
	assert_int_equal(gm_write(&f->gm, STACK - 40, frame, sizeof(frame)), 0);
	cpu_emulate_gp(&f->c, 0);
	assert_int_equal(f->stops, 1);
	assert_non_null(strstr(f->stop_why, "user mode"));
	/* a code selector with no descriptor: #GP, nothing changed but the delivery */
	frame[1] = 0x40;
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK - 40;
	assert_int_equal(gm_write(&f->gm, STACK - 40, frame, sizeof(frame)), 0);
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_STAY);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
	assert_int_equal(f->c.cs, SEL_CODE);
}

/* jmp / call far through memory: how a kernel reloads CS after its lgdt. CS keeps the
 * descriptor it was loaded from until then, whatever the new GDT says. */
static void test_far_jump_and_call(void **state)
{
	struct fx *f = *state;
	uint8_t m32[6] = {0x55, 0x55, 0, 0, SEL_CODE32, 0};
	uint8_t m64[10] = {0x66, 0x66, 0, 0, 0, 0, 0, 0, SEL_CODE, 0};

	f->c.hidden.cs_desc = 0x00af9b000000ffffULL; /* as loaded at boot */
	f->gdt_swapped = true;                       /* lgdt of a table where 0x08 is 32-bit */
	assert_true(cpu_code64(&f->c));
	/* ljmp *(%rax): m16:32, to 32-bit code (compatibility mode) */
	assert_int_equal(gm_write(&f->gm, DATA, m32, sizeof(m32)), 0);
	f->c.r.gpr[R_AX] = DATA;
	CODE_(f, 0xff, 0x28);
	assert_int_equal(cpu_emulate_gp(&f->c, SEL_CODE32), EMU_DONE);
	assert_int_equal(f->c.r.rip, 0x5555);
	assert_int_equal(f->c.cs, SEL_CODE32);
	assert_false(cpu_code64(&f->c));
	assert_true(cpu_code32(&f->c));
	/* rex.w lcall *(%rax): m16:64, pushes CS and the return address (8 bytes each), and
	 * now SEL_CODE's descriptor is the new GDT's */
	f->c.r.rip = CODE;
	f->c.hidden.cs_desc = 0x00af9b000000ffffULL;
	f->c.cs = SEL_CODE;
	f->gdt_swapped = false;
	assert_int_equal(gm_write(&f->gm, DATA, m64, sizeof(m64)), 0);
	CODE_(f, 0x48, 0xff, 0x18);
	assert_int_equal(cpu_emulate_gp(&f->c, SEL_CODE), EMU_DONE);
	assert_int_equal(f->c.r.rip, 0x6666);
	assert_int_equal(f->c.r.gpr[R_SP], STACK - 16);
	assert_int_equal(stack_word(f, 0), CODE + 3);
	assert_int_equal(stack_word(f, 1), SEL_CODE);
	assert_true(cpu_code64(&f->c));
	/* to a selector with no descriptor: #GP with the selector, CS and RSP unchanged */
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK;
	m64[8] = 0x40;
	assert_int_equal(gm_write(&f->gm, DATA, m64, sizeof(m64)), 0);
	CODE_(f, 0x48, 0xff, 0x18);
	assert_int_equal(cpu_emulate_gp(&f->c, 0x40), EMU_STAY);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
	assert_int_equal(f->c.cs, SEL_CODE);
	assert_int_equal(stack_word(f, 0), 0x40); /* the error code */
	/* to a data segment: not code, #GP with the selector */
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK;
	m64[8] = SEL_DATA;
	assert_int_equal(gm_write(&f->gm, DATA, m64, sizeof(m64)), 0);
	CODE_(f, 0x48, 0xff, 0x18);
	assert_int_equal(cpu_emulate_gp(&f->c, SEL_DATA), EMU_STAY);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
	assert_int_equal(stack_word(f, 0), SEL_DATA);
	assert_int_equal(f->c.cs, SEL_CODE);
	/* to 32-bit code where the engine's segments are virtual (the process engine, whose
	 * host runs 64-bit user code only): refused, not run in the wrong mode */
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK;
	f->c.virtual_segments = true;
	m32[4] = SEL_CODE32;
	assert_int_equal(gm_write(&f->gm, DATA, m32, sizeof(m32)), 0);
	CODE_(f, 0xff, 0x28);
	cpu_emulate_gp(&f->c, SEL_CODE32);
	assert_int_equal(f->stops, 1);
	assert_non_null(strstr(f->stop_why, "compatibility mode"));
	f->c.virtual_segments = false;
	f->stops = 0;
	/* to the guest's user mode (RPL 3): refused */
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK;
	m32[4] = SEL_CODE | 3;
	assert_int_equal(gm_write(&f->gm, DATA, m32, sizeof(m32)), 0);
	CODE_(f, 0xff, 0x28);
	cpu_emulate_gp(&f->c, 0);
	assert_int_equal(f->stops, 1);
	assert_non_null(strstr(f->stop_why, "far jump to CPL3"));
	f->stops = 0;
	/* ljmp $0x08, $0x5678 in 32-bit code (ea): to the same selector, now 64-bit code (the
	 * shadow engine makes such a jump fault when an lgdt changed what CS's selector means) */
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK;
	f->c.cs = SEL_CODE;
	f->c.hidden.cs_desc = 0x00cf9b000000ffffULL; /* 32-bit code, as loaded before */
	assert_false(cpu_code64(&f->c));
	CODE_(f, 0xea, 0x78, 0x56, 0x00, 0x00, SEL_CODE, 0x00);
	assert_int_equal(cpu_emulate_gp(&f->c, SEL_CODE), EMU_DONE);
	assert_int_equal(f->c.r.rip, 0x5678);
	assert_int_equal(f->c.cs, SEL_CODE);
	assert_true(cpu_code64(&f->c));
	/* lcall $0x18, $0x1234 (9a) from there in 32-bit code: pushes CS and EIP (4 bytes each) */
	f->c.r.rip = CODE;
	f->c.hidden.cs_desc = 0x00cf9b000000ffffULL;
	CODE_(f, 0x9a, 0x34, 0x12, 0x00, 0x00, SEL_CODE32, 0x00);
	assert_int_equal(cpu_emulate_gp(&f->c, SEL_CODE32), EMU_DONE);
	assert_int_equal(f->c.r.rip, 0x1234);
	assert_int_equal(f->c.cs, SEL_CODE32);
	assert_int_equal(f->c.r.gpr[R_SP], STACK - 8);
}

/* ---- page-table stores, #UD, invlpg --------------------------------------------------- */

static void test_pte_store(void **state)
{
	struct fx *f = *state;
	uint64_t old = 0x5003, now;

	assert_int_equal(gm_write(&f->gm, DATA, &old, 8), 0);
	f->c.r.gpr[R_AX] = DATA;
	f->c.r.gpr[R_BX] = 0x7003;
	CODE_(f, 0x48, 0x89, 0x18); /* mov %rbx, (%rax) */
	assert_true(cpu_emulate_pte_store(&f->c, DATA, DATA));
	assert_int_equal(f->pte_stores, 1);
	assert_int_equal(f->pte_gpa, DATA);
	assert_int_equal(f->pte_old, 0x5003);
	assert_int_equal(f->pte_new, 0x7003);
	assert_int_equal(gm_read(&f->gm, DATA, &now, 8), 0);
	assert_int_equal(now, 0x7003);
	assert_int_equal(f->c.r.rip, CODE + 3);
	/* a 4-byte store to the upper half of an entry */
	f->c.r.rip = CODE;
	f->c.r.gpr[R_BX] = 0x80000000;
	CODE_(f, 0x89, 0x58, 0x04); /* mov %ebx, 4(%rax) */
	assert_true(cpu_emulate_pte_store(&f->c, DATA + 4, DATA + 4));
	assert_int_equal(f->pte_new, 0x8000000000007003ULL);
	/* not the faulting address, or not a plain mov: left alone */
	f->c.r.rip = CODE;
	assert_false(cpu_emulate_pte_store(&f->c, DATA + 8, DATA + 8));
	CODE_(f, 0xf0, 0x48, 0x0f, 0xb1, 0x18); /* lock cmpxchg %rbx, (%rax) */
	assert_false(cpu_emulate_pte_store(&f->c, DATA, DATA));
	CODE_(f, 0x88, 0x18); /* mov %bl,(%rax): a byte, not an entry's half */
	assert_false(cpu_emulate_pte_store(&f->c, DATA, DATA));
	assert_int_equal(f->pte_stores, 2);
}

static void test_ud_and_invlpg(void **state)
{
	struct fx *f = *state;

	CODE_(f, 0x0f, 0x34); /* sysenter: user mode */
	cpu_emulate_ud(&f->c);
	assert_int_equal(f->stops, 1);
	assert_non_null(strstr(f->stop_why, "sysenter"));
	CODE_(f, 0x0f, 0x05); /* syscall with EFER.SCE clear: the guest's own #UD */
	cpu_emulate_ud(&f->c);
	assert_int_equal(f->stops, 1);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_UD);
	/* with EFER.SCE: to LSTAR at CPL0, RCX = the next RIP, R11 = RFLAGS, SFMASK's bits clear */
	f->c.efer |= EFER_SCE;
	f->c.star = (uint64_t)(SEL_CODE | 3) << 32 | 0x1bULL << 48; /* RPL ignored */
	f->c.lstar = HANDLER + 0x800;
	f->c.sfmask = RF_IF | RF_DF | RF_TF;
	f->c.r.rip = CODE;
	f->c.r.rflags = RF_RESERVED | RF_IF | RF_DF | RF_CF;
	f->c.hidden.cs_desc = 0;
	f->c.ss = 0;
	cpu_emulate_ud(&f->c);
	assert_int_equal(f->stops, 1);
	assert_int_equal(f->c.r.rip, HANDLER + 0x800);
	assert_int_equal(f->c.r.gpr[R_CX], CODE + 2);
	assert_int_equal(f->c.r.gpr[R_R11], RF_RESERVED | RF_IF | RF_DF | RF_CF);
	assert_int_equal(f->c.r.rflags, RF_RESERVED | RF_CF);
	assert_int_equal(f->c.cs, SEL_CODE);
	assert_int_equal(f->c.ss, SEL_CODE + 8);
	assert_true(cpu_code64(&f->c));
	/* STAR naming something that is not 64-bit code: refused with what and where */
	f->c.star = (uint64_t)SEL_CODE32 << 32;
	f->c.r.rip = CODE;
	cpu_emulate_ud(&f->c);
	assert_int_equal(f->stops, 2);
	assert_non_null(strstr(f->stop_why, "STAR"));
	f->c.efer &= ~EFER_SCE;
	f->c.stopped = false;
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK;
	CODE_(f, 0x0f, 0x0b); /* ud2: the guest's own #UD */
	cpu_emulate_ud(&f->c);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_UD);
	f->c.r.rip = CODE;
	f->c.r.gpr[R_AX] = 0x7000;
	CODE_(f, 0x0f, 0x01, 0x38); /* invlpg (%rax) */
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_DONE);
	assert_int_equal(f->invlpgs, 1);
	assert_int_equal(f->invlpg_va, 0x7000);
}

static void test_garbage_is_a_gp(void **state)
{
	struct fx *f = *state;

	/* an instruction that does not fault for privilege (add): #GP with the error code */
	CODE_(f, 0x48, 0x01, 0xc0);
	assert_int_equal(cpu_emulate_gp(&f->c, 0x18), EMU_STAY);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
	assert_int_equal(stack_word(f, 0), 0x18);
	/* RIP outside what the guest maps: nothing to decode */
	f->c.r.rip = MEM + 0x1000;
	f->c.r.gpr[R_SP] = STACK;
	assert_int_equal(cpu_emulate_gp(&f->c, 0), EMU_STAY);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP);
}

/* ---- device registers (MMIO) ------------------------------------------------------------ */

/* The instruction at CODE, RIP there. */
#define MCODE(f, ...)                                                                              \
	do {                                                                                       \
		(f)->c.r.rip = CODE;                                                               \
		CODE_(f, __VA_ARGS__);                                                             \
	} while (0)

static void mmio_access(void *ctx, uint64_t gpa, bool write, void *data, unsigned len)
{
	struct fx *f = ctx;
	uint64_t v = 0;

	assert_true(len == 1 || len == 2 || len == 4 || len == 8);
	if (write)
		memcpy(&v, data, len);
	else
		memcpy(data, &f->mmio_read_value, len);
	assert_true(f->nmmio < 8);
	f->mmio[f->nmmio++] = (__typeof__(f->mmio[0])){gpa, write ? v : 0, write, len};
}

/* Emulate the instruction at CODE for an access at MMIO_VA (+ off); true and RIP past it. */
static void mmio_ok(struct fx *f, size_t insn_len, uint64_t off)
{
	f->c.r.rip = CODE;
	f->nmmio = 0;
	assert_true(cpu_emulate_mmio(&f->c, MMIO_VA + off, MMIO_GPA + off, mmio_access, f));
	assert_int_equal(f->c.r.rip, CODE + insn_len);
	assert_int_equal(f->nmmio, 1);
	assert_int_equal(f->mmio[0].gpa, MMIO_GPA + off);
}

/* Arithmetic and logic on a device register, against this CPU running the same bytes: each
 * form (op r/m,reg; op reg,r/m; op r/m,imm; test; inc/dec) at each size, on operands that
 * carry, overflow, borrow and come out zero, with CF both ways (adc and sbb use it). The
 * instruction addresses (%rdi) and uses %rsi (REX given, so the byte register is SIL). */
struct alu_form {
	uint8_t op[3]; /* opcode bytes after the prefixes; modrm's reg field in op[1] */
	unsigned n;    /* opcode + modrm */
	unsigned imm;  /* immediate bytes */
	unsigned size; /* operand size */
	bool to_reg, writes;
};

typedef uint64_t (*native_fn)(uint64_t *mem, uint64_t reg, uint64_t flags, uint64_t *reg_out);

static uint64_t native_run(uint8_t *page, const uint8_t *insn, size_t n, uint64_t *mem,
                           uint64_t *reg, uint64_t flags)
{
	/* push %rdx; popfq; <insn>; pushfq; pop %rax; mov %rsi,(%rcx); ret */
	size_t k = 0;
	uint64_t out;

	page[k++] = 0x52;
	page[k++] = 0x9d;
	memcpy(page + k, insn, n);
	k += n;
	memcpy(page + k, (const uint8_t[]){0x9c, 0x58, 0x48, 0x89, 0x31, 0xc3}, 6);
	__builtin___clear_cache((char *)page, (char *)page + k + 6);
	out = ((native_fn)(uintptr_t)page)(mem, *reg, flags, reg);
	return out;
}

/* Emulate the ALU instruction at CODE on the register at MMIO_VA: RIP past it, a read first. */
static void mmio_rmw(struct fx *f, size_t insn_len)
{
	f->c.r.rip = CODE;
	f->nmmio = 0;
	assert_true(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	assert_int_equal(f->c.r.rip, CODE + insn_len);
	assert_true(f->nmmio >= 1 && !f->mmio[0].write && f->mmio[0].gpa == MMIO_GPA);
}

static void test_mmio_alu_matches_the_cpu(void **state)
{
	struct fx *f = *state;
	const uint64_t status = RF_CF | RF_PF | RF_AF | RF_ZF | RF_SF | RF_OF;
	static const uint64_t vals[] = {0,
	                                1,
	                                0x7f,
	                                0x80,
	                                0xff,
	                                0x7fff,
	                                0x8000,
	                                0xffff,
	                                0x7fffffff,
	                                0x80000000,
	                                0xffffffff,
	                                0x7fffffffffffffffULL,
	                                0x8000000000000000ULL,
	                                ~0ULL,
	                                0x0f0f0f0f0f0f0f0fULL,
	                                0x123456789abcdef0ULL};
	const unsigned nv = sizeof(vals) / sizeof(vals[0]);
	uint8_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
	                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned checked = 0;

	assert_true(page != MAP_FAILED);
	for (unsigned kind = 0; kind < 8; kind++) {
		for (unsigned sz = 0; sz < 4; sz++) {
			unsigned size = 1u << sz;
			uint8_t base = (uint8_t)(kind << 3);
			/* op r/m,reg  op reg,r/m  op r/m,imm8 (83 or 80)  op r/m,imm (81) */
			struct alu_form forms[4] = {
			    {{(uint8_t)(base | (size > 1)), 0x37},
			     2,
			     0,
			     size,
			     false,
			     kind != SH_CMP},
			    {{(uint8_t)(base | 2 | (size > 1)), 0x37},
			     2,
			     0,
			     size,
			     true,
			     kind != SH_CMP},
			    {{size > 1 ? 0x83 : 0x80, (uint8_t)(kind << 3 | 7)},
			     2,
			     1,
			     size,
			     false,
			     kind != SH_CMP},
			    {{0x81, (uint8_t)(kind << 3 | 7)},
			     2,
			     size == 2 ? 2 : 4,
			     size,
			     false,
			     kind != SH_CMP},
			};

			for (unsigned fi = 0; fi < 4; fi++) {
				const struct alu_form *fm = &forms[fi];

				if (fi == 3 && size == 1)
					continue;
				for (unsigned i = 0; i < nv; i++)
					for (unsigned j = 0; j < nv; j++)
						for (unsigned cf = 0; cf < 2; cf++) {
							uint8_t insn[16];
							size_t n = 0;
							uint64_t mem = vals[i], reg = vals[j], nmem,
							         nreg = reg, nfl,
							         fl0 = RF_RESERVED |
							               (cf ? RF_CF : 0) |
							               RF_ZF; /* stale ZF */
							uint64_t mask =
							    size == 8 ? ~0ULL
							              : (1ULL << (8 * size)) - 1;

							if (size == 2)
								insn[n++] = 0x66;
							insn[n++] = size == 8 ? 0x48 : 0x40;
							memcpy(insn + n, fm->op, fm->n);
							n += fm->n;
							for (unsigned b = 0; b < fm->imm; b++)
								insn[n++] =
								    (uint8_t)(vals[j] >> (8 * b));
							nmem = mem;
							nfl = native_run(page, insn, n, &nmem,
							                 &nreg, fl0);
							/* the same bytes, emulated against a device
							 * register */
							f->c.r.gpr[R_DI] = MMIO_VA;
							f->c.r.gpr[R_SI] = reg;
							f->c.r.rflags = fl0;
							f->mmio_read_value = mem;
							f->c.r.rip = CODE;
							code(f, insn, n);
							mmio_rmw(f, n);
							if ((f->c.r.rflags & status) !=
							    (nfl & status))
								fail_msg(
								    "op %02x %02x size %u mem %#lx "
								    "reg %#lx cf "
								    "%u: flags %#lx, the CPU's "
								    "%#lx",
								    fm->op[0], fm->op[1], size,
								    (unsigned long)mem,
								    (unsigned long)reg, cf,
								    (unsigned long)(f->c.r.rflags &
								                    status),
								    (unsigned long)(nfl & status));
							if (fm->to_reg) {
								assert_int_equal(f->nmmio, 1);
								if (kind != SH_CMP)
									assert_int_equal(
									    f->c.r.gpr[R_SI], nreg);
								else
									assert_int_equal(
									    f->c.r.gpr[R_SI], reg);
							} else if (fm->writes) {
								assert_int_equal(f->nmmio, 2);
								assert_true(f->mmio[1].write);
								assert_int_equal(f->mmio[1].value,
								                 nmem & mask);
							} else {
								assert_int_equal(f->nmmio, 1);
							}
							checked++;
						}
			}
		}
	}
	/* test, inc, dec: rex.w test (%rdi),%rsi; testl $imm,(%rdi); incb/decw (%rdi) */
	{
		static const uint8_t forms[][8] = {
		    {3, 0x48, 0x85, 0x37}, {7, 0x40, 0xf7, 0x07, 0x00, 0x00, 0x00, 0x80},
		    {3, 0x40, 0xfe, 0x07}, {4, 0x66, 0x40, 0xff, 0x0f},
		    {3, 0x48, 0xff, 0x0f},
		};
		for (unsigned fi = 0; fi < sizeof(forms) / sizeof(forms[0]); fi++)
			for (unsigned i = 0; i < nv; i++)
				for (unsigned cf = 0; cf < 2; cf++) {
					uint64_t mem = vals[i], nmem = mem,
					         reg = vals[(i + 3) % nv], nreg = reg;
					uint64_t fl0 = RF_RESERVED | (cf ? RF_CF : 0), nfl;

					nfl = native_run(page, forms[fi] + 1, forms[fi][0], &nmem,
					                 &nreg, fl0);
					f->c.r.gpr[R_DI] = MMIO_VA;
					f->c.r.gpr[R_SI] = reg;
					f->c.r.rflags = fl0;
					f->mmio_read_value = mem;
					f->c.r.rip = CODE;
					code(f, forms[fi] + 1, forms[fi][0]);
					mmio_rmw(f, forms[fi][0]);
					/* AF after a logical op is undefined: not compared */
					uint64_t cmp = fi < 2 ? status & ~RF_AF : status;

					if ((f->c.r.rflags & cmp) != (nfl & cmp))
						fail_msg("form %u mem %#lx cf %u: flags %#lx, the "
						         "CPU's %#lx",
						         fi, (unsigned long)mem, cf,
						         (unsigned long)(f->c.r.rflags & cmp),
						         (unsigned long)(nfl & cmp));
					if (fi >= 2) {
						assert_int_equal(f->nmmio, 2);
						assert_int_equal(f->mmio[1].value,
						                 nmem & (fi == 2   ? 0xff
						                         : fi == 3 ? 0xffff
						                                   : ~0ULL));
					}
					checked++;
				}
	}
	/* not and neg: notq, notw, negq, negb (%rdi) */
	{
		static const struct {
			uint8_t n, b[4];
			uint64_t mask;
		} forms[] = {{3, {0x48, 0xf7, 0x17}, ~0ULL},
		             {4, {0x66, 0x40, 0xf7, 0x17}, 0xffff},
		             {3, {0x48, 0xf7, 0x1f}, ~0ULL},
		             {3, {0x40, 0xf6, 0x1f}, 0xff}};

		for (unsigned fi = 0; fi < sizeof(forms) / sizeof(forms[0]); fi++)
			for (unsigned i = 0; i < nv; i++)
				for (unsigned cf = 0; cf < 2; cf++) {
					uint64_t mem = vals[i], nmem = mem, reg = 0, nreg = 0, nfl;
					uint64_t fl0 = RF_RESERVED | (cf ? RF_CF | RF_ZF : RF_SF);

					nfl = native_run(page, forms[fi].b, forms[fi].n, &nmem,
					                 &nreg, fl0);
					f->c.r.gpr[R_DI] = MMIO_VA;
					f->c.r.gpr[R_SI] = reg;
					f->c.r.rflags = fl0;
					f->mmio_read_value = mem;
					f->c.r.rip = CODE;
					code(f, forms[fi].b, forms[fi].n);
					mmio_rmw(f, forms[fi].n);
					if ((f->c.r.rflags & status) != (nfl & status))
						fail_msg(
						    "not/neg form %u mem %#lx: flags %#lx, the "
						    "CPU's %#lx",
						    fi, (unsigned long)mem,
						    (unsigned long)(f->c.r.rflags & status),
						    (unsigned long)(nfl & status));
					assert_int_equal(f->nmmio, 2);
					assert_int_equal(f->mmio[1].value, nmem & forms[fi].mask);
					checked++;
				}
	}
	munmap(page, 4096);
	assert_true(checked > 8000);
}

static void test_mmio_loads(void **state)
{
	struct fx *f = *state;
	const uint64_t ones = ~0ULL;

	f->c.r.gpr[R_BX] = MMIO_VA;
	f->mmio_read_value = 0x1122334455667788ULL;
	f->c.r.gpr[R_AX] = ones;
	MCODE(f, 0x8b, 0x03); /* mov (%rbx),%eax: zero-extended into RAX */
	mmio_ok(f, 2, 0);
	assert_false(f->mmio[0].write);
	assert_int_equal(f->mmio[0].len, 4);
	assert_int_equal(f->c.r.gpr[R_AX], 0x55667788);
	f->c.r.gpr[R_AX] = ones;
	MCODE(f, 0x66, 0x8b, 0x03); /* mov (%rbx),%ax: the rest kept */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->mmio[0].len, 2);
	assert_int_equal(f->c.r.gpr[R_AX], 0xffffffffffff7788ULL);
	f->c.r.gpr[R_AX] = ones;
	MCODE(f, 0x8a, 0x23); /* mov (%rbx),%ah */
	mmio_ok(f, 2, 0);
	assert_int_equal(f->mmio[0].len, 1);
	assert_int_equal(f->c.r.gpr[R_AX], 0xffffffffffff88ffULL);
	f->c.r.gpr[R_SP] = ones;
	MCODE(f, 0x40, 0x8a, 0x23); /* mov (%rbx),%spl: with REX, 4 is SPL */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->c.r.gpr[R_SP], 0xffffffffffffff88ULL);
	f->c.r.gpr[R_SP] = STACK;
	f->c.r.gpr[R_R12] = ones;
	MCODE(f, 0x44, 0x8a, 0x23); /* mov (%rbx),%r12b */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->c.r.gpr[R_R12], 0xffffffffffffff88ULL);
	MCODE(f, 0x4c, 0x8b, 0x2b); /* mov (%rbx),%r13 */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->mmio[0].len, 8);
	assert_int_equal(f->c.r.gpr[R_R13], 0x1122334455667788ULL);
	/* zero and sign extension */
	f->mmio_read_value = 0x8899aabbccddeeffULL;
	f->c.r.gpr[R_AX] = ones;
	MCODE(f, 0x0f, 0xb6, 0x03); /* movzbl (%rbx),%eax */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->mmio[0].len, 1);
	assert_int_equal(f->c.r.gpr[R_AX], 0xff);
	MCODE(f, 0x0f, 0xbe, 0x03); /* movsbl (%rbx),%eax */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->c.r.gpr[R_AX], 0xffffffff);
	MCODE(f, 0x48, 0x0f, 0xbf, 0x03); /* movswq (%rbx),%rax */
	mmio_ok(f, 4, 0);
	assert_int_equal(f->mmio[0].len, 2);
	assert_int_equal(f->c.r.gpr[R_AX], 0xffffffffffffeeffULL);
	MCODE(f, 0x48, 0x63, 0x03); /* movslq (%rbx),%rax */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->mmio[0].len, 4);
	assert_int_equal(f->c.r.gpr[R_AX], 0xffffffffccddeeffULL);
	f->c.r.gpr[R_AX] = 0x1234567812345678ULL;
	MCODE(f, 0x66, 0x0f, 0xb6, 0x03); /* movzbw (%rbx),%ax */
	mmio_ok(f, 4, 0);
	assert_int_equal(f->c.r.gpr[R_AX], 0x12345678123400ffULL);
	MCODE(f, 0x0f, 0xb7, 0x03); /* movzwl (%rbx),%eax */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->c.r.gpr[R_AX], 0xeeff);
	/* moffs: movabs 0xfee00030,%rax */
	MCODE(f, 0x48, 0xa1, 0x30, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00);
	mmio_ok(f, 10, 0x30);
	assert_int_equal(f->mmio[0].len, 8);
	assert_int_equal(f->c.r.gpr[R_AX], 0x8899aabbccddeeffULL);
}

static void test_mmio_stores(void **state)
{
	struct fx *f = *state;

	f->c.r.gpr[R_BX] = MMIO_VA;
	f->c.r.gpr[R_AX] = 0x1122334455667788ULL;
	MCODE(f, 0x89, 0x03); /* mov %eax,(%rbx) */
	mmio_ok(f, 2, 0);
	assert_true(f->mmio[0].write);
	assert_int_equal(f->mmio[0].len, 4);
	assert_int_equal(f->mmio[0].value, 0x55667788);
	MCODE(f, 0x48, 0x89, 0x03); /* mov %rax,(%rbx) */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->mmio[0].len, 8);
	assert_int_equal(f->mmio[0].value, 0x1122334455667788ULL);
	MCODE(f, 0x66, 0x89, 0x43, 0x02); /* mov %ax,0x2(%rbx) */
	mmio_ok(f, 4, 2);
	assert_int_equal(f->mmio[0].len, 2);
	assert_int_equal(f->mmio[0].value, 0x7788);
	MCODE(f, 0x88, 0x23); /* mov %ah,(%rbx) */
	mmio_ok(f, 2, 0);
	assert_int_equal(f->mmio[0].len, 1);
	assert_int_equal(f->mmio[0].value, 0x77);
	f->c.r.gpr[R_SP] = 0x5a;
	MCODE(f, 0x40, 0x88, 0x23); /* mov %spl,(%rbx) */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->mmio[0].value, 0x5a);
	f->c.r.gpr[R_SP] = STACK;
	f->c.r.gpr[R_R9] = 0xa5;
	MCODE(f, 0x44, 0x88, 0x0b); /* mov %r9b,(%rbx) */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->mmio[0].value, 0xa5);
	MCODE(f, 0xc6, 0x03, 0x80); /* movb $0x80,(%rbx) */
	mmio_ok(f, 3, 0);
	assert_int_equal(f->mmio[0].len, 1);
	assert_int_equal(f->mmio[0].value, 0x80);
	MCODE(f, 0x66, 0xc7, 0x03, 0x34, 0x12); /* movw $0x1234,(%rbx) */
	mmio_ok(f, 5, 0);
	assert_int_equal(f->mmio[0].len, 2);
	assert_int_equal(f->mmio[0].value, 0x1234);
	MCODE(f, 0x48, 0xc7, 0x03, 0xff, 0xff, 0xff, 0xff); /* movq $-1,(%rbx) */
	mmio_ok(f, 7, 0);
	assert_int_equal(f->mmio[0].len, 8);
	assert_int_equal(f->mmio[0].value, ~0ULL);
	MCODE(f, 0xa2, 0x10, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00); /* movabs %al,0xfee00010 */
	mmio_ok(f, 9, 0x10);
	assert_int_equal(f->mmio[0].value, 0x88);
	/* mapped read-only: a store (whatever access the fault reported) is the guest's #PF with
	 * W and P, and reaches nothing; a load and a cmp still run */
	f->mmio_readonly = true;
	static const uint8_t stores[][3] = {
	    {0x89, 0x03}, /* mov %eax,(%rbx) */
	    {0x01, 0x03}, /* add %eax,(%rbx) */
	    {0x87, 0x03}, /* xchg %eax,(%rbx) */
	    {0xf7, 0x13}, /* notl (%rbx) */
	};
	for (unsigned i = 0; i < sizeof(stores) / sizeof(stores[0]); i++) {
		f->c.r.rip = CODE;
		f->c.r.gpr[R_SP] = STACK;
		f->c.cr2 = 0;
		code(f, stores[i], 2);
		f->nmmio = 0;
		assert_true(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
		assert_int_equal(f->nmmio, 0);
		assert_int_equal(f->c.r.rip, HANDLER + 16 * V_PF);
		assert_int_equal(f->c.cr2, MMIO_VA);
		assert_int_equal(stack_word(f, 0), PF_P | PF_W);
	}
	MCODE(f, 0x8b, 0x03); /* mov (%rbx),%eax */
	mmio_ok(f, 2, 0);
	MCODE(f, 0x39, 0x03); /* cmp %eax,(%rbx) */
	mmio_ok(f, 2, 0);
	f->mmio_readonly = false;
}

static void test_mmio_addressing(void **state)
{
	struct fx *f = *state;

	/* rip-relative: from the end of the instruction */
	MCODE(f, 0x8b, 0x05, 0xfa, 0xff, 0xff, 0xff); /* mov -0x6(%rip),%eax */
	f->c.r.rip = CODE;
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	assert_true(cpu_emulate_mmio(&f->c, CODE, MMIO_GPA, mmio_access, f));
	assert_int_equal(f->c.r.rip, CODE + 6);
	/* FS and GS bases */
	f->c.fs_base = MMIO_VA;
	MCODE(f, 0x64, 0x8b, 0x04, 0x25, 0x20, 0x00, 0x00, 0x00); /* mov %fs:0x20,%eax */
	mmio_ok(f, 8, 0x20);
	f->c.gs_base = MMIO_VA - 0x1000;
	f->c.r.gpr[R_BX] = 0x1000;
	MCODE(f, 0x65, 0x48, 0x89, 0x43, 0x08); /* mov %rax,%gs:0x8(%rbx) */
	mmio_ok(f, 5, 8);
	/* base + index * scale + displacement */
	f->c.r.gpr[R_BX] = MMIO_VA;
	f->c.r.gpr[R_CX] = 3;
	MCODE(f, 0x8b, 0x44, 0x8b, 0x04); /* mov 0x4(%rbx,%rcx,4),%eax */
	mmio_ok(f, 4, 16);
	/* 32-bit addressing (67): the upper half of RBX does not count */
	f->c.r.gpr[R_BX] = 0xabcd000000000000ULL | MMIO_VA;
	MCODE(f, 0x67, 0x8b, 0x03); /* mov (%ebx),%eax */
	mmio_ok(f, 3, 0);
	/* misaligned within a page: fine; across a page: refused (gpa is the first page's) */
	f->c.r.gpr[R_BX] = MMIO_VA + 0xffd;
	MCODE(f, 0x66, 0x8b, 0x03); /* mov (%rbx),%ax */
	mmio_ok(f, 3, 0xffd);
	assert_int_equal(f->mmio[0].len, 2);
	f->c.r.gpr[R_BX] = MMIO_VA + 0xffe;
	MCODE(f, 0x8b, 0x03); /* mov (%rbx),%eax: 2 bytes on the next page */
	f->c.r.rip = CODE;
	f->nmmio = 0;
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA + 0xffe, MMIO_GPA + 0xffe, mmio_access, f));
	assert_int_equal(f->nmmio, 0);
	f->c.r.gpr[R_BX] = MMIO_VA + 0xff8;
	MCODE(f, 0x48, 0x8b, 0x03); /* mov (%rbx),%rax: the last 8 bytes of the page */
	mmio_ok(f, 3, 0xff8);
}

/* Emulate the string instruction at CODE for a trap at `va`. */
static void string_ok(struct fx *f, uint64_t va)
{
	f->c.r.rip = CODE;
	f->nmmio = 0;
	assert_true(cpu_emulate_mmio(&f->c, va, 0, mmio_access, f));
}

static void test_mmio_strings(void **state)
{
	struct fx *f = *state;

	f->mmio_read_value = 0x1122334455667788ULL;
	/* rep stosl to a device: three stores, RCX counted down, RIP past it */
	f->c.r.gpr[R_DI] = MMIO_VA;
	f->c.r.gpr[R_CX] = 3;
	f->c.r.gpr[R_AX] = 0xaabbccdd99887766ULL;
	MCODE(f, 0xf3, 0xab);
	string_ok(f, MMIO_VA);
	assert_int_equal(f->nmmio, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_true(f->mmio[i].write);
		assert_int_equal(f->mmio[i].gpa, MMIO_GPA + 4 * i);
		assert_int_equal(f->mmio[i].len, 4);
		assert_int_equal(f->mmio[i].value, 0x99887766);
	}
	assert_int_equal(f->c.r.gpr[R_CX], 0);
	assert_int_equal(f->c.r.gpr[R_DI], MMIO_VA + 12);
	assert_int_equal(f->c.r.rip, CODE + 2);
	/* movsb from a device register to RAM: its other operand goes through the callback too */
	f->c.r.gpr[R_SI] = MMIO_VA + 5;
	f->c.r.gpr[R_DI] = DATA;
	MCODE(f, 0xa4);
	string_ok(f, MMIO_VA + 5);
	assert_int_equal(f->nmmio, 2);
	assert_true(!f->mmio[0].write && f->mmio[0].gpa == MMIO_GPA + 5 && f->mmio[0].len == 1);
	assert_true(f->mmio[1].write && f->mmio[1].gpa == DATA && f->mmio[1].value == 0x88);
	assert_int_equal(f->c.r.gpr[R_SI], MMIO_VA + 6);
	assert_int_equal(f->c.r.gpr[R_DI], DATA + 1);
	assert_int_equal(f->c.r.rip, CODE + 1);
	/* std; rep movsq from RAM to a device: downwards */
	f->c.r.rflags |= RF_DF;
	f->c.r.gpr[R_SI] = DATA + 16;
	f->c.r.gpr[R_DI] = MMIO_VA + 16;
	f->c.r.gpr[R_CX] = 2;
	MCODE(f, 0xf3, 0x48, 0xa5);
	string_ok(f, MMIO_VA + 16);
	assert_int_equal(f->nmmio, 4);
	assert_true(!f->mmio[0].write && f->mmio[0].gpa == DATA + 16 && f->mmio[0].len == 8);
	assert_true(f->mmio[1].write && f->mmio[1].gpa == MMIO_GPA + 16 &&
	            f->mmio[1].value == 0x1122334455667788ULL);
	assert_true(!f->mmio[2].write && f->mmio[2].gpa == DATA + 8);
	assert_true(f->mmio[3].write && f->mmio[3].gpa == MMIO_GPA + 8);
	assert_int_equal(f->c.r.gpr[R_SI], DATA);
	assert_int_equal(f->c.r.gpr[R_DI], MMIO_VA);
	assert_int_equal(f->c.r.gpr[R_CX], 0);
	assert_int_equal(f->c.r.rip, CODE + 3);
	f->c.r.rflags &= ~RF_DF;
	/* rep stosb across the end of page 0: the elements on it here, the rest natively (RIP
	 * stays, RCX and RDI where hardware would have them) */
	f->c.r.gpr[R_DI] = 0xffe;
	f->c.r.gpr[R_CX] = 4;
	MCODE(f, 0xf3, 0xaa);
	string_ok(f, 0xffe);
	assert_int_equal(f->nmmio, 2);
	assert_true(f->mmio[0].write && f->mmio[0].gpa == 0xffe && f->mmio[1].gpa == 0xfff);
	assert_int_equal(f->c.r.gpr[R_DI], 0x1000);
	assert_int_equal(f->c.r.gpr[R_CX], 2);
	assert_int_equal(f->c.r.rip, CODE);
	/* lodsw: AX only */
	f->c.r.gpr[R_SI] = MMIO_VA;
	f->c.r.gpr[R_AX] = ~0ULL;
	MCODE(f, 0x66, 0xad);
	string_ok(f, MMIO_VA);
	assert_int_equal(f->c.r.gpr[R_AX], 0xffffffffffff7788ULL);
	assert_int_equal(f->c.r.gpr[R_SI], MMIO_VA + 2);
	/* 32-bit addressing: ECX counts, and RCX and RDI are written as 32-bit registers */
	f->c.r.gpr[R_DI] = 0xabcd000000000000ULL | MMIO_VA;
	f->c.r.gpr[R_CX] = 0xffffffff00000001ULL;
	MCODE(f, 0x67, 0xf3, 0xaa);
	string_ok(f, MMIO_VA);
	assert_int_equal(f->nmmio, 1);
	assert_int_equal(f->c.r.gpr[R_CX], 0);
	assert_int_equal(f->c.r.gpr[R_DI], MMIO_VA + 1);
	assert_int_equal(f->c.r.rip, CODE + 3);
	/* rep with RCX 0: nothing, RIP past it (it never traps natively) */
	f->c.r.gpr[R_DI] = MMIO_VA;
	f->c.r.gpr[R_CX] = 0;
	MCODE(f, 0xf3, 0xaa);
	string_ok(f, MMIO_VA);
	assert_int_equal(f->nmmio, 0);
	assert_int_equal(f->c.r.rip, CODE + 2);
	/* rep stosw whose first element crosses page 0's end: byte by byte (both are RAM), then
	 * the next one, in ordinary memory, natively */
	f->c.r.gpr[R_DI] = 0xfff;
	f->c.r.gpr[R_CX] = 2;
	f->c.r.gpr[R_AX] = 0xbbaa;
	MCODE(f, 0x66, 0xf3, 0xab);
	string_ok(f, 0xfff);
	assert_int_equal(f->nmmio, 2);
	assert_true(f->mmio[0].write && f->mmio[0].gpa == 0xfff && f->mmio[0].len == 1 &&
	            f->mmio[0].value == 0xaa);
	assert_true(f->mmio[1].write && f->mmio[1].gpa == 0x1000 && f->mmio[1].value == 0xbb);
	assert_int_equal(f->c.r.gpr[R_DI], 0x1001);
	assert_int_equal(f->c.r.gpr[R_CX], 1);
	assert_int_equal(f->c.r.rip, CODE);
	/* ... but a device register is never split: an element across a device page's end is
	 * not done here */
	f->c.r.gpr[R_DI] = MMIO_VA + 0xfff;
	f->c.r.gpr[R_CX] = 1;
	MCODE(f, 0x66, 0xf3, 0xab);
	f->c.r.rip = CODE;
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA + 0xfff, MMIO_GPA + 0xfff, mmio_access, f));
	/* movsb from a device to an address the guest does not map: its #PF, CR2 there, and
	 * nothing done (the handler returns to the movsb) */
	f->c.r.gpr[R_SI] = MMIO_VA;
	f->c.r.gpr[R_DI] = MEM + 0x10;
	f->c.r.gpr[R_SP] = STACK;
	MCODE(f, 0xa4);
	string_ok(f, MMIO_VA);
	assert_int_equal(f->nmmio, 0);
	assert_int_equal(f->c.cr2, MEM + 0x10);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_PF);
	assert_int_equal(stack_word(f, 0), PF_W);
	assert_int_equal(stack_word(f, 1), CODE);
	assert_int_equal(f->c.r.gpr[R_SI], MMIO_VA);
	/* cmps and scas with a device operand: the flags of cmp, and repe / repne end where the
	 * comparison says (every read gives mmio_read_value here) */
	f->c.r.rflags = RF_RESERVED;
	f->c.r.gpr[R_SI] = MMIO_VA;
	f->c.r.gpr[R_DI] = MMIO_VA + 0x100;
	f->c.r.gpr[R_CX] = 4;
	MCODE(f, 0xf3, 0xa6); /* repe cmpsb: all equal, to the end */
	string_ok(f, MMIO_VA);
	assert_int_equal(f->nmmio, 8);
	assert_int_equal(f->c.r.gpr[R_CX], 0);
	assert_int_equal(f->c.r.gpr[R_SI], MMIO_VA + 4);
	assert_int_equal(f->c.r.gpr[R_DI], MMIO_VA + 0x104);
	assert_true(f->c.r.rflags & RF_ZF);
	assert_int_equal(f->c.r.rip, CODE + 2);
	f->c.r.gpr[R_DI] = MMIO_VA;
	f->c.r.gpr[R_CX] = 5;
	f->c.r.gpr[R_AX] = 0x88;
	MCODE(f, 0xf2, 0xae); /* repne scasb for 0x88: found at the first */
	string_ok(f, MMIO_VA);
	assert_int_equal(f->nmmio, 1);
	assert_int_equal(f->c.r.gpr[R_CX], 4);
	assert_int_equal(f->c.r.gpr[R_DI], MMIO_VA + 1);
	assert_true(f->c.r.rflags & RF_ZF);
	assert_int_equal(f->c.r.rip, CODE + 2);
	f->c.r.gpr[R_AX] = 0x90;
	f->c.r.gpr[R_CX] = 3;
	MCODE(f, 0xf3, 0xae); /* repe scasb for 0x90: 0x90 - 0x88, unequal at the first */
	string_ok(f, MMIO_VA + 1);
	assert_int_equal(f->nmmio, 1);
	assert_int_equal(f->c.r.gpr[R_CX], 2);
	assert_false(f->c.r.rflags & (RF_ZF | RF_CF | RF_SF));
	assert_int_equal(f->c.r.rip, CODE + 2);
	f->c.r.gpr[R_AX] = 0x80;
	f->c.r.gpr[R_CX] = 3;
	MCODE(f, 0xf2, 0xae); /* repne scasb for 0x80: 0x80 - 0x88 borrows, never equal */
	string_ok(f, MMIO_VA + 2);
	assert_int_equal(f->nmmio, 3);
	assert_int_equal(f->c.r.gpr[R_CX], 0);
	assert_true((f->c.r.rflags & (RF_ZF | RF_CF | RF_SF)) == (RF_CF | RF_SF));
	f->c.r.gpr[R_AX] = 0x1122334455667788ULL;
	MCODE(f, 0x48, 0xaf); /* scasq, no rep: equal */
	string_ok(f, MMIO_VA + 5);
	assert_int_equal(f->nmmio, 1);
	assert_int_equal(f->mmio[0].len, 8);
	assert_true(f->c.r.rflags & RF_ZF);
	assert_int_equal(f->c.r.gpr[R_DI], MMIO_VA + 13);
	assert_int_equal(f->c.r.rip, CODE + 2);
	f->c.r.gpr[R_CX] = 0;
	MCODE(f, 0xf3, 0xa6); /* rep with RCX 0: nothing, flags kept */
	f->nmmio = 0;
	assert_true(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	assert_int_equal(f->nmmio, 0);
	assert_true(f->c.r.rflags & RF_ZF);
	assert_int_equal(f->c.r.rip, CODE + 2);
}

static void test_mmio_atomics(void **state)
{
	struct fx *f = *state;

	f->mmio_read_value = 0x1122334455667788ULL;
	f->c.r.gpr[R_BX] = MMIO_VA;
	/* xchg %eax,(%rbx): the register gets the old value (zero-extended), memory EAX */
	f->c.r.gpr[R_AX] = 0xffffffff00000055ULL;
	MCODE(f, 0x87, 0x03);
	mmio_rmw(f, 2);
	assert_true(f->nmmio == 2 && f->mmio[1].write && f->mmio[1].value == 0x55);
	assert_int_equal(f->c.r.gpr[R_AX], 0x55667788);
	/* lock cmpxchg %ecx,(%rbx) that succeeds: ZF, memory gets ECX */
	f->c.r.gpr[R_CX] = 0x99;
	MCODE(f, 0xf0, 0x0f, 0xb1, 0x0b);
	mmio_rmw(f, 4);
	assert_true(f->c.r.rflags & RF_ZF);
	assert_true(f->nmmio == 2 && f->mmio[1].write && f->mmio[1].value == 0x99);
	assert_int_equal(f->c.r.gpr[R_AX], 0x55667788);
	/* ... and one that fails: no ZF, EAX gets the value, memory is not written */
	f->c.r.gpr[R_AX] = 1;
	MCODE(f, 0xf0, 0x0f, 0xb1, 0x0b);
	mmio_rmw(f, 4);
	assert_false(f->c.r.rflags & RF_ZF);
	assert_int_equal(f->nmmio, 1);
	assert_int_equal(f->c.r.gpr[R_AX], 0x55667788);
	/* lock xadd %rcx,(%rbx): memory gets the sum, RCX the old value */
	f->c.r.gpr[R_CX] = 1;
	MCODE(f, 0xf0, 0x48, 0x0f, 0xc1, 0x0b);
	mmio_rmw(f, 5);
	assert_true(f->nmmio == 2 && f->mmio[1].value == 0x1122334455667789ULL);
	assert_int_equal(f->c.r.gpr[R_CX], 0x1122334455667788ULL);
	/* xchg %ah,(%rbx): a byte register without REX */
	f->c.r.gpr[R_AX] = 0xab00;
	MCODE(f, 0x86, 0x23);
	mmio_rmw(f, 2);
	assert_true(f->nmmio == 2 && f->mmio[1].len == 1 && f->mmio[1].value == 0xab);
	assert_int_equal(f->c.r.gpr[R_AX], 0x8800);
	/* lock orl $1,(%rbx) */
	MCODE(f, 0xf0, 0x83, 0x0b, 0x01);
	mmio_rmw(f, 4);
	assert_true(f->nmmio == 2 && f->mmio[1].value == 0x55667789);
}

static void test_mmio_refused(void **state)
{
	struct fx *f = *state;
	struct guest_cpu before;

	f->c.r.gpr[R_BX] = MMIO_VA;
	f->c.r.gpr[R_AX] = 0x1234;
	before = f->c;
	/* another address than the fault's: nothing done */
	MCODE(f, 0x8b, 0x03); /* mov (%rbx),%eax */
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA + 4, MMIO_GPA + 4, mmio_access, f));
	/* not an instruction it emulates, a register-only move, locked ones the CPU refuses */
	MCODE(f, 0xff, 0x33); /* push (%rbx) */
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	MCODE(f, 0x8b, 0xc3); /* mov %ebx,%eax */
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	MCODE(f, 0x87, 0xc3); /* xchg %eax,%ebx */
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	MCODE(f, 0xf0, 0x89, 0x03); /* lock mov %eax,(%rbx): #UD */
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	MCODE(f, 0xf0, 0x39, 0x03); /* lock cmp %eax,(%rbx): #UD */
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	MCODE(f, 0x0f, 0xa3, 0x03); /* bt %eax,(%rbx) */
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	/* a string whose first element is not at the fault's address */
	f->c.r.gpr[R_DI] = MMIO_VA + 8;
	MCODE(f, 0xaa); /* stosb */
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	f->c.r.gpr[R_DI] = 0;
	assert_memory_equal(&f->c, &before, sizeof(before));
	assert_int_equal(f->nmmio, 0);
	/* an instruction cut off where the guest's mapping ends */
	{
		static const uint8_t cut[] = {0x8b, 0x04}; /* mov (%rax,...): its SIB is missing */

		assert_int_equal(gm_write(&f->gm, MEM - 2, cut, 2), 0);
		f->c.r.rip = MEM - 2;
		assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
		assert_int_equal(f->c.r.rip, MEM - 2);
	}
	/* RIP where nothing is mapped */
	f->c.r.rip = MEM + 0x1000;
	assert_false(cpu_emulate_mmio(&f->c, MMIO_VA, MMIO_GPA, mmio_access, f));
	assert_int_equal(f->nmmio, 0);
}

/* In 32-bit code: no REX (4-7 are AH-BH), 32-bit addresses, EIP. */
static void test_mmio_32bit_code(void **state)
{
	struct fx *f = *state;

	f->c.efer = 0;
	f->c.cr0 = CR0_PE | CR0_ET;
	f->c.cs = SEL_CODE32;
	f->c.r.gpr[R_SI] = MMIO_VA;
	f->c.r.gpr[R_AX] = ~0ULL;
	f->mmio_read_value = 0x11223344;
	MCODE(f, 0x8a, 0x26); /* mov (%esi),%ah */
	mmio_ok(f, 2, 0);
	assert_int_equal(f->c.r.gpr[R_AX], 0xffffffffffff44ffULL);
	MCODE(f, 0xa1, 0x40, 0x00, 0xe0, 0xfe); /* mov 0xfee00040,%eax */
	mmio_ok(f, 5, 0x40);
	assert_int_equal(f->c.r.gpr[R_AX], 0x11223344);
	f->c.r.gpr[R_DX] = 0xabcd;
	MCODE(f, 0x88, 0x36); /* mov %dh,(%esi) */
	mmio_ok(f, 2, 0);
	assert_int_equal(f->mmio[0].value, 0xab);
	MCODE(f, 0x0f, 0xbf, 0x46, 0x08); /* movswl 0x8(%esi),%eax */
	f->mmio_read_value = 0x8000;
	mmio_ok(f, 4, 8);
	assert_int_equal(f->c.r.gpr[R_AX], 0xffff8000);
}

/* A stop the CPU asks of the engine is also left in the CPU, for code that steps it. */
static void test_stop_is_recorded(void **state)
{
	struct fx *f = *state;

	assert_false(f->c.stopped);
	f->c.idtr.limit = 0;
	cpu_reflect(&f->c, V_UD, 0, false);
	assert_true(f->c.stopped);
	assert_int_equal(f->c.stop_how, CPU_STOP_TRIPLE_FAULT);
	f->c.stopped = false;
	CODE_(f, 0x0f, 0x34); /* sysenter: the guest's user mode, refused */
	cpu_emulate_ud(&f->c);
	assert_true(f->c.stopped);
	assert_int_equal(f->c.stop_how, CPU_STOP_REFUSED);
	assert_int_equal(f->stops, 2);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_cli_sti_hlt),
	    T(test_control_registers),
	    T(test_msrs),
	    T(test_swapgs_and_tables),
	    T(test_port_io),
	    T(test_rep_outs),
	    T(test_delivery_frame),
	    T(test_escalation_to_triple_fault),
	    T(test_iretq),
	    T(test_far_jump_and_call),
	    T(test_mmio_alu_matches_the_cpu),
	    T(test_pte_store),
	    T(test_ud_and_invlpg),
	    T(test_garbage_is_a_gp),
	    T(test_mmio_loads),
	    T(test_mmio_stores),
	    T(test_mmio_addressing),
	    T(test_mmio_strings),
	    T(test_mmio_atomics),
	    T(test_mmio_refused),
	    T(test_mmio_32bit_code),
	    T(test_stop_is_recorded),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
