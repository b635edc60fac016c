/*
 * The 32-bit interpreter (cpu/interp32.c) on the virtual CPU with no backend. Guest memory
 * is a plain buffer; while CR0.PG is clear the translate op is the identity, once it is set
 * the op walks the guest's own 4-level tables (so code between enabling paging and the far
 * jump runs through the tables the guest built). Descriptors come from the guest's GDT in
 * memory; at the start that is hearth's boot GDT (boot/boot_gdt.h: PVH enters with CS 0x18,
 * data 0x10).
 *
 * The code is in the tests as bytes, written from the SDM's encodings and checked against
 * GNU as (objdump -d); each line names the instruction and its address. Flags are checked
 * against the SDM's definition of each instruction (defined flags only).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cpuid.h>

#include "cpu/guest_cpu.h"
#include "cpu/interp32.h"
#include "cpu/x86.h"
#include "vmm/guest_memory.h"

#define MEM        (8u << 20)
#define CODE       0x10000u /* EIP */
#define STACK      0x80000u /* ESP */
#define DATA       0x40000u
#define GDT        0x500u
#define IDT        0x20000u
#define HANDLER    0x30000u /* vector v at HANDLER + 16 * v */
#define START_INFO 0x7000u
#define SEL_CODE64 0x08
#define SEL_DATA   0x10
#define SEL_CODE32 0x18

#define CF    0x001u
#define PF    0x004u
#define AF    0x010u
#define ZF    0x040u
#define SF    0x080u
#define OF    0x800u
#define ARITH (CF | PF | AF | ZF | SF | OF)

struct fx {
	struct guest_memory gm;
	struct guest_cpu c;
	struct interp32_exit out;
	unsigned stops, gdt_loads, paging_changes, cpuids;
	enum cpu_stop stop_how;
	char stop_why[256];
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
};

/* ---- the ops ---------------------------------------------------------------------------- */

static uint64_t rd64(struct fx *f, uint64_t gpa)
{
	uint64_t v = 0;

	if (gm_read(&f->gm, gpa, &v, 8))
		return 0;
	return v;
}

/* Identity with paging off; with it on, the guest's 4-level tables (4 KiB, 2 MiB, 1 GiB). */
static bool op_translate(void *ctx, uint64_t va, bool write, uint64_t *gpa)
{
	struct fx *f = ctx;
	uint64_t table = f->c.cr3 & PTE_ADDR, e = 0;

	if (!(f->c.cr0 & CR0_PG)) {
		*gpa = va;
		return true;
	}
	for (int level = 3; level >= 0; level--) {
		e = rd64(f, table + 8 * ((va >> (12 + 9 * level)) & 511));
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

/* The guest's GDT, as the CPU reads it. */
static uint64_t op_descriptor(void *ctx, uint16_t sel)
{
	struct fx *f = ctx;

	if (!(sel & ~7) || (sel | 7u) > f->c.gdtr.limit)
		return 0;
	return rd64(f, f->c.gdtr.base + (sel & ~7u));
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
	(void)ctx;
	(void)gpa;
	(void)old;
	(void)new;
	fail_msg("no page-table store is emulated here");
}

static void op_invlpg(void *ctx, uint64_t va)
{
	(void)ctx;
	(void)va;
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
	(void)index;
	(void)value;
	return false;
}

static void op_pio(void *ctx, uint16_t port, bool write, void *data, unsigned size)
{
	struct fx *f = ctx;
	uint32_t v = 0;

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

/* A made-up CPU: leaf in EAX, subleaf in ECX, the rest recognizable. */
static void op_cpuid(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
	struct fx *f = ctx;

	f->cpuids++;
	out[0] = leaf;
	out[1] = 0x68656172; /* "hear" */
	out[2] = subleaf;
	out[3] = 0x74680000;
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
    .cpuid = op_cpuid,
};

/* ---- fixture ------------------------------------------------------------------------------ */

static const uint64_t boot_gdt[] = {
    0,                     /* null */
    0x00af9b000000ffffULL, /* 0x08: 64-bit code */
    0x00cf93000000ffffULL, /* 0x10: flat data */
    0x00cf9b000000ffffULL, /* 0x18: flat 32-bit code */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(gm_init(&f->gm, MEM), 0);
	assert_int_equal(gm_write(&f->gm, GDT, boot_gdt, sizeof(boot_gdt)), 0);
	/* PVH: 32-bit protected mode, paging off, flat segments, %ebx = start info */
	f->c = (struct guest_cpu){
	    .r = {.rip = CODE, .rflags = RF_RESERVED},
	    .cr0 = CR0_PE | CR0_ET,
	    .gdtr = {GDT, sizeof(boot_gdt) - 1},
	    .cs = SEL_CODE32,
	    .ss = SEL_DATA,
	    .ds = SEL_DATA,
	    .es = SEL_DATA,
	    .trap_port = -1,
	    .gm = &f->gm,
	    .ops = &ops,
	    .ctx = f,
	};
	f->c.r.gpr[R_SP] = STACK;
	f->c.r.gpr[R_BX] = START_INFO;
	f->msr_ok = true;
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

static void put(struct fx *f, uint32_t addr, const void *b, size_t n)
{
	assert_int_equal(gm_write(&f->gm, addr, b, n), 0);
}

static uint32_t get32(struct fx *f, uint32_t addr)
{
	uint32_t v = 0;

	assert_int_equal(gm_read(&f->gm, addr, &v, 4), 0);
	return v;
}

static void put32(struct fx *f, uint32_t addr, uint32_t v)
{
	put(f, addr, &v, 4);
}

/* Code at CODE, EIP there. */
#define CODE32(f, ...)                                                                             \
	do {                                                                                       \
		static const uint8_t b_[] = {__VA_ARGS__};                                         \
		put(f, CODE, b_, sizeof(b_));                                                      \
		(f)->c.r.rip = CODE;                                                               \
	} while (0)

/* Code at `addr`, EIP there. */
#define CODE_AT(f, addr, ...)                                                                      \
	do {                                                                                       \
		static const uint8_t b_[] = {__VA_ARGS__};                                         \
		put(f, addr, b_, sizeof(b_));                                                      \
		(f)->c.r.rip = addr;                                                               \
	} while (0)

static enum interp_result run(struct fx *f, uint64_t steps)
{
	return interp32_run(&f->c, steps, &f->out);
}

/* Run to the next hlt. */
static void to_hlt(struct fx *f)
{
	enum interp_result r = run(f, 100000);

	if (r != INTERP_HALT)
		fail_msg("expected hlt, got %d at eip 0x%llx: %s", r,
		         (unsigned long long)f->c.r.rip, f->out.why);
}

static uint32_t reg(struct fx *f, unsigned n)
{
	return (uint32_t)f->c.r.gpr[n];
}

/* The arithmetic flags in `mask` are exactly `set`. */
static void flags_are(struct fx *f, unsigned mask, unsigned set)
{
	unsigned got = (unsigned)f->c.r.rflags & mask;

	if (got != set)
		fail_msg("flags 0x%03x, expected 0x%03x (mask 0x%03x) at eip 0x%llx", got, set,
		         mask, (unsigned long long)f->c.r.rip);
}

/* A 32-bit interrupt gate for `vector` to HANDLER + 16 * vector in the flat code segment. */
static void set_gate32(struct fx *f, unsigned vector)
{
	uint32_t target = HANDLER + 16 * vector;
	uint64_t g = (target & 0xffff) | ((uint64_t)SEL_CODE32 << 16) | (0x8eULL << 40) |
	             ((uint64_t)(target >> 16) << 48);

	put(f, IDT + 8 * vector, &g, 8);
}

/* A 32-bit IDT whose every handler is a hlt. */
static void idt_of_hlts(struct fx *f)
{
	static const uint8_t hlt = 0xf4;

	for (unsigned v = 0; v < 256; v++) {
		set_gate32(f, v);
		put(f, HANDLER + 16 * v, &hlt, 1);
	}
	f->c.idtr.base = IDT;
	f->c.idtr.limit = 256 * 8 - 1;
}

/* The boot GDT and more: a data segment with a base, one with a 1 MiB limit, a
 * not-present one, a flat one, a not-present code segment. */
static void big_gdt(struct fx *f)
{
	static const uint64_t more[] = {
	    0x00cf93001000ffffULL, /* 0x20: data, base 0x1000, 4 GiB */
	    0x004f93000000ffffULL, /* 0x28: data, limit 1 MiB (G = 0) */
	    0x00cf13000000ffffULL, /* 0x30: data, not present */
	    0x00cf93000000ffffULL, /* 0x38: data, flat */
	    0x00cf1b000000ffffULL, /* 0x40: 32-bit code, not present */
	};

	put(f, GDT + sizeof(boot_gdt), more, sizeof(more));
	f->c.gdtr.limit = sizeof(boot_gdt) + sizeof(more) - 1;
}

/* ---- ALU ------------------------------------------------------------------------------- */

static void test_add_adc(void **state)
{
	struct fx *f = *state;

	CODE32(f, 0xb8, 0xff, 0xff, 0xff, 0x7f, /* 10000: mov $0x7fffffff,%eax */
	       0x83, 0xc0, 0x01,                /* 10005: add $0x1,%eax */
	       0xf4,                            /* 10008: hlt */
	       0xb9, 0xff, 0xff, 0xff, 0xff,    /* 10009: mov $0xffffffff,%ecx */
	       0x83, 0xc1, 0x01,                /* 1000e: add $0x1,%ecx */
	       0xf4,                            /* 10011: hlt */
	       0xb0, 0xff,                      /* 10012: mov $0xff,%al */
	       0x04, 0x01,                      /* 10014: add $0x1,%al */
	       0xf4,                            /* 10016: hlt */
	       0xf9,                            /* 10017: stc */
	       0xba, 0x00, 0x00, 0x00, 0x00,    /* 10018: mov $0x0,%edx */
	       0x83, 0xd2, 0x00,                /* 1001d: adc $0x0,%edx */
	       0xf4,                            /* 10020: hlt */
	       0xb8, 0x01, 0x00, 0x00, 0x00,    /* 10021: mov $0x1,%eax */
	       0x66, 0x05, 0xff, 0x7f,          /* 10026: add $0x7fff,%ax */
	       0xf4,                            /* 1002a: hlt */
	       0xb8, 0x78, 0x56, 0x34, 0x12,    /* 1002b: mov $0x12345678,%eax */
	       0xf9,                            /* 10030: stc */
	       0x66, 0x15, 0x00, 0x80,          /* 10031: adc $0x8000,%ax */
	       0xf4,                            /* 10035: hlt */
	);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x80000000);
	flags_are(f, ARITH, OF | SF | AF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_CX), 0);
	flags_are(f, ARITH, CF | ZF | AF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x80000000 & ~0xffu); /* only AL changed */
	flags_are(f, ARITH, CF | ZF | AF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 1);
	flags_are(f, ARITH, 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x8000);
	flags_are(f, ARITH, OF | SF | AF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x1234d679); /* 0x5678 + 0x8000 + CF */
	flags_are(f, ARITH, SF);
	assert_int_equal(f->c.r.rip, 0x10036);
}

static void test_sub_cmp_neg(void **state)
{
	struct fx *f = *state;

	CODE32(f, 0xb8, 0x00, 0x00, 0x00, 0x00, /* 10000: mov $0x0,%eax */
	       0x83, 0xe8, 0x01,                /* 10005: sub $0x1,%eax */
	       0xf4,                            /* 10008: hlt */
	       0xb8, 0x00, 0x00, 0x00, 0x80,    /* 10009: mov $0x80000000,%eax */
	       0x83, 0xf8, 0x01,                /* 1000e: cmp $0x1,%eax */
	       0xf4,                            /* 10011: hlt */
	       0xf9,                            /* 10012: stc */
	       0xb9, 0x05, 0x00, 0x00, 0x00,    /* 10013: mov $0x5,%ecx */
	       0x83, 0xd9, 0x05,                /* 10018: sbb $0x5,%ecx */
	       0xf4,                            /* 1001b: hlt */
	       0xba, 0x05, 0x00, 0x00, 0x00,    /* 1001c: mov $0x5,%edx */
	       0xf7, 0xda,                      /* 10021: neg %edx */
	       0xf4,                            /* 10023: hlt */
	       0x31, 0xd2,                      /* 10024: xor %edx,%edx */
	       0xf7, 0xda,                      /* 10026: neg %edx */
	       0xf4,                            /* 10028: hlt */
	       0xba, 0x00, 0x00, 0x00, 0x80,    /* 10029: mov $0x80000000,%edx */
	       0xf7, 0xda,                      /* 1002e: neg %edx */
	       0xf4,                            /* 10030: hlt */
	       0xb3, 0x40,                      /* 10031: mov $0x40,%bl */
	       0x80, 0xfb, 0x41,                /* 10033: cmp $0x41,%bl */
	       0xf4,                            /* 10036: hlt */
	);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0xffffffff);
	flags_are(f, ARITH, CF | SF | AF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x80000000); /* cmp keeps it */
	flags_are(f, ARITH, OF | AF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_CX), 0xffffffff); /* 5 - 5 - CF */
	flags_are(f, ARITH, CF | SF | AF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 0xfffffffb);
	flags_are(f, ARITH, CF | SF | AF);
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 0);
	flags_are(f, ARITH, ZF | PF); /* neg 0: CF clear */
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 0x80000000);
	flags_are(f, ARITH, CF | OF | SF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_BX) & 0xff, 0x40);
	flags_are(f, ARITH, CF | SF | AF | PF); /* 0x40 - 0x41 = 0xff */
}

static void test_logic_inc_dec(void **state)
{
	struct fx *f = *state;
	const unsigned noaf = ARITH & ~AF; /* AF is undefined after the logical ones */

	put32(f, DATA, 0x12345678);
	CODE32(f, 0xf9,                                        /* 10000: stc */
	       0xb8, 0xf0, 0xf0, 0xf0, 0xf0,                   /* 10001: mov $0xf0f0f0f0,%eax */
	       0x25, 0x0f, 0x0f, 0x0f, 0x0f,                   /* 10006: and $0xf0f0f0f,%eax */
	       0xf4,                                           /* 1000b: hlt */
	       0x0c, 0x80,                                     /* 1000c: or $0x80,%al */
	       0xf4,                                           /* 1000e: hlt */
	       0xb9, 0x78, 0x56, 0x34, 0x12,                   /* 1000f: mov $0x12345678,%ecx */
	       0x31, 0xc9,                                     /* 10014: xor %ecx,%ecx */
	       0xf4,                                           /* 10016: hlt */
	       0xba, 0x00, 0x80, 0x00, 0x00,                   /* 10017: mov $0x8000,%edx */
	       0x66, 0x85, 0xd2,                               /* 1001c: test %dx,%dx */
	       0xf4,                                           /* 1001f: hlt */
	       0xbe, 0x01, 0x01, 0x00, 0x00,                   /* 10020: mov $0x101,%esi */
	       0xf7, 0xc6, 0x00, 0x01, 0x00, 0x00,             /* 10025: test $0x100,%esi */
	       0xf4,                                           /* 1002b: hlt */
	       0xf9,                                           /* 1002c: stc */
	       0xb8, 0xff, 0xff, 0xff, 0xff,                   /* 1002d: mov $0xffffffff,%eax */
	       0x40,                                           /* 10032: inc %eax */
	       0xf4,                                           /* 10033: hlt */
	       0xbb, 0x00, 0x00, 0x00, 0x80,                   /* 10034: mov $0x80000000,%ebx */
	       0x4b,                                           /* 10039: dec %ebx */
	       0xf4,                                           /* 1003a: hlt */
	       0xb8, 0x00, 0x7f, 0x00, 0x00,                   /* 1003b: mov $0x7f00,%eax */
	       0xfe, 0xc4,                                     /* 10040: inc %ah */
	       0xf4,                                           /* 10042: hlt */
	       0xb9, 0x00, 0x00, 0x00, 0x00,                   /* 10043: mov $0x0,%ecx */
	       0xf7, 0xd1,                                     /* 10048: not %ecx */
	       0xf4,                                           /* 1004a: hlt */
	       0x81, 0x25, 0x00, 0x00, 0x04, 0x00,             /* 1004b: andl $0xfffff000,0x40000 */
	       0x00, 0xf0, 0xff, 0xff,                         /*         (imm32) */
	       0x66, 0x83, 0x0d, 0x00, 0x00, 0x04, 0x00, 0x03, /* 10055: orw $0x3,0x40000 */
	       0x80, 0x35, 0x03, 0x00, 0x04, 0x00, 0xff,       /* 1005d: xorb $0xff,0x40003 */
	       0xf4,                                           /* 10064: hlt */
	);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0);
	flags_are(f, noaf, ZF | PF); /* CF cleared */
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x80);
	flags_are(f, noaf, SF);
	to_hlt(f);
	assert_int_equal(reg(f, R_CX), 0);
	flags_are(f, noaf, ZF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 0x8000);
	flags_are(f, noaf, SF | PF);
	to_hlt(f);
	flags_are(f, noaf, PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0);
	flags_are(f, ARITH, CF | ZF | AF | PF); /* inc keeps CF */
	to_hlt(f);
	assert_int_equal(reg(f, R_BX), 0x7fffffff);
	flags_are(f, ARITH, CF | OF | AF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x8000);
	flags_are(f, ARITH, CF | OF | SF | AF);
	to_hlt(f);
	assert_int_equal(reg(f, R_CX), 0xffffffff);
	flags_are(f, ARITH, CF | OF | SF | AF); /* not changes no flag */
	to_hlt(f);
	assert_int_equal(get32(f, DATA), 0xed345003);
	flags_are(f, noaf, SF | PF);
}

static void test_shifts_rotates(void **state)
{
	struct fx *f = *state;
	const unsigned shf = CF | SF | ZF | PF; /* defined for any count; OF for a count of 1 */
	uint64_t before;

	put32(f, DATA, 0x12345678);
	CODE32(f, 0xb8, 0x01, 0x00, 0x00, 0x80,          /* 10000: mov $0x80000001,%eax */
	       0xd1, 0xe0,                               /* 10005: shl %eax */
	       0xf4,                                     /* 10007: hlt */
	       0xb8, 0x3f, 0x12, 0x00, 0x00,             /* 10008: mov $0x123f,%eax */
	       0xc1, 0xe8, 0x04,                         /* 1000d: shr $0x4,%eax */
	       0xf4,                                     /* 10010: hlt */
	       0xb8, 0x00, 0x00, 0x00, 0x80,             /* 10011: mov $0x80000000,%eax */
	       0xc1, 0xf8, 0x1f,                         /* 10016: sar $0x1f,%eax */
	       0xf4,                                     /* 10019: hlt */
	       0xba, 0x00, 0x00, 0x00, 0x40,             /* 1001a: mov $0x40000000,%edx */
	       0xb1, 0x02,                               /* 1001f: mov $0x2,%cl */
	       0xd3, 0xe2,                               /* 10021: shl %cl,%edx */
	       0xf4,                                     /* 10023: hlt */
	       0xf9,                                     /* 10024: stc */
	       0xc1, 0xe2, 0x00,                         /* 10025: shl $0x0,%edx */
	       0xf4,                                     /* 10028: hlt */
	       0xb8, 0x00, 0x00, 0x00, 0x80,             /* 10029: mov $0x80000000,%eax */
	       0xd1, 0xc0,                               /* 1002e: rol %eax */
	       0xf4,                                     /* 10030: hlt */
	       0xb8, 0x01, 0x00, 0x00, 0x00,             /* 10031: mov $0x1,%eax */
	       0xd1, 0xc8,                               /* 10036: ror %eax */
	       0xf4,                                     /* 10038: hlt */
	       0xf8,                                     /* 10039: clc */
	       0xb8, 0x00, 0x00, 0x00, 0x80,             /* 1003a: mov $0x80000000,%eax */
	       0xd1, 0xd0,                               /* 1003f: rcl %eax */
	       0xf4,                                     /* 10041: hlt */
	       0xf9,                                     /* 10042: stc */
	       0xb8, 0x00, 0x00, 0x00, 0x00,             /* 10043: mov $0x0,%eax */
	       0xd1, 0xd8,                               /* 10048: rcr %eax */
	       0xf4,                                     /* 1004a: hlt */
	       0xb0, 0x01,                               /* 1004b: mov $0x1,%al */
	       0xc0, 0xe0, 0x09,                         /* 1004d: shl $0x9,%al */
	       0xf4,                                     /* 10050: hlt */
	       0xb3, 0x81,                               /* 10051: mov $0x81,%bl */
	       0xd0, 0xfb,                               /* 10053: sar %bl */
	       0xf4,                                     /* 10055: hlt */
	       0xb8, 0x78, 0x56, 0x34, 0x12,             /* 10056: mov $0x12345678,%eax */
	       0xba, 0xf0, 0xde, 0xbc, 0x9a,             /* 1005b: mov $0x9abcdef0,%edx */
	       0x0f, 0xa4, 0xd0, 0x08,                   /* 10060: shld $0x8,%edx,%eax */
	       0xf4,                                     /* 10064: hlt */
	       0xb8, 0x78, 0x56, 0x34, 0x12,             /* 10065: mov $0x12345678,%eax */
	       0x0f, 0xac, 0xd0, 0x04,                   /* 1006a: shrd $0x4,%edx,%eax */
	       0xf4,                                     /* 1006e: hlt */
	       0xb9, 0x78, 0x56, 0x34, 0x12,             /* 1006f: mov $0x12345678,%ecx */
	       0xc1, 0x0d, 0x00, 0x00, 0x04, 0x00, 0x08, /* 10074: rorl $0x8,0x40000 */
	       0xf4,                                     /* 1007b: hlt */
	);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 2);
	flags_are(f, shf | OF, CF | OF); /* OF = MSB(result) ^ CF */
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x123);
	flags_are(f, shf, CF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0xffffffff);
	flags_are(f, shf, SF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 0);
	flags_are(f, shf, CF | ZF | PF); /* the last bit out was bit 30 */
	before = f->c.r.rflags;
	to_hlt(f);
	assert_int_equal(f->c.r.rflags, before | CF); /* a count of 0 changes nothing */
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 1);
	flags_are(f, shf | OF, CF | OF | ZF | PF); /* rotates keep SF, ZF, PF */
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x80000000);
	flags_are(f, CF | OF, CF | OF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0);
	flags_are(f, CF | OF, CF | OF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x80000000);
	flags_are(f, CF | OF, OF); /* OF = MSB ^ CF before the rotation */
	to_hlt(f);
	assert_int_equal(reg(f, R_AX) & 0xff, 0);
	flags_are(f, SF | ZF | PF, ZF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_BX) & 0xff, 0xc0);
	flags_are(f, shf | OF, CF | SF | PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x3456789a);
	flags_are(f, shf, PF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x01234567);
	flags_are(f, shf, CF);
	to_hlt(f);
	assert_int_equal(get32(f, DATA), 0x78123456);
	flags_are(f, CF, 0);
}

static void test_mul_div(void **state)
{
	struct fx *f = *state;

	put32(f, DATA, 0x1000);
	CODE32(f, 0xb8, 0x00, 0x00, 0x01, 0x00,          /* 10000: mov $0x10000,%eax */
	       0xb9, 0x00, 0x00, 0x01, 0x00,             /* 10005: mov $0x10000,%ecx */
	       0xf7, 0xe1,                               /* 1000a: mul %ecx */
	       0xf4,                                     /* 1000c: hlt */
	       0xb8, 0x07, 0x00, 0x00, 0x00,             /* 1000d: mov $0x7,%eax */
	       0x31, 0xd2,                               /* 10012: xor %edx,%edx */
	       0xb9, 0x02, 0x00, 0x00, 0x00,             /* 10014: mov $0x2,%ecx */
	       0xf7, 0xf1,                               /* 10019: div %ecx */
	       0xf4,                                     /* 1001b: hlt */
	       0xb8, 0xf9, 0xff, 0xff, 0xff,             /* 1001c: mov $0xfffffff9,%eax */
	       0x99,                                     /* 10021: cltd */
	       0xf7, 0xf9,                               /* 10022: idiv %ecx */
	       0xf4,                                     /* 10024: hlt */
	       0xb9, 0x05, 0x00, 0x00, 0x00,             /* 10025: mov $0x5,%ecx */
	       0x6b, 0xc1, 0xfd,                         /* 1002a: imul $-3,%ecx,%eax */
	       0xf4,                                     /* 1002d: hlt */
	       0xb9, 0x00, 0x00, 0x01, 0x00,             /* 1002e: mov $0x10000,%ecx */
	       0x0f, 0xaf, 0xc9,                         /* 10033: imul %ecx,%ecx */
	       0xf4,                                     /* 10036: hlt */
	       0xb0, 0x10,                               /* 10037: mov $0x10,%al */
	       0xb1, 0x10,                               /* 10039: mov $0x10,%cl */
	       0xf6, 0xe1,                               /* 1003b: mul %cl */
	       0xf4,                                     /* 1003d: hlt */
	       0xb8, 0xfe, 0xff, 0xff, 0xff,             /* 1003e: mov $0xfffffffe,%eax */
	       0xbb, 0x03, 0x00, 0x00, 0x00,             /* 10043: mov $0x3,%ebx */
	       0xf7, 0xeb,                               /* 10048: imul %ebx */
	       0xf4,                                     /* 1004a: hlt */
	       0x66, 0xb8, 0x34, 0x02,                   /* 1004b: mov $0x234,%ax */
	       0xb3, 0x10,                               /* 1004f: mov $0x10,%bl */
	       0xf6, 0xf3,                               /* 10051: div %bl */
	       0xf4,                                     /* 10053: hlt */
	       0xb8, 0xe8, 0x03, 0x00, 0x00,             /* 10054: mov $0x3e8,%eax */
	       0x69, 0xd0, 0xe8, 0x03, 0x00, 0x00,       /* 10059: imul $0x3e8,%eax,%edx */
	       0xf4,                                     /* 1005f: hlt */
	       0xc7, 0x05, 0x00, 0x00, 0x04, 0x00,       /* 10060: movl $0x1000,0x40000 */
	       0x00, 0x10, 0x00, 0x00,                   /*         (imm32) */
	       0x66, 0xb8, 0x00, 0x10,                   /* 1006a: mov $0x1000,%ax */
	       0x66, 0xf7, 0x25, 0x00, 0x00, 0x04, 0x00, /* 1006e: mulw 0x40000 */
	       0xf4,                                     /* 10075: hlt */
	);
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 1);
	assert_int_equal(reg(f, R_AX), 0);
	flags_are(f, CF | OF, CF | OF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 3);
	assert_int_equal(reg(f, R_DX), 1);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), (uint32_t)-3);
	assert_int_equal(reg(f, R_DX), (uint32_t)-1); /* the remainder has the dividend's sign */
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), (uint32_t)-15);
	flags_are(f, CF | OF, 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_CX), 0);
	flags_are(f, CF | OF, CF | OF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0xffff0100); /* AX = AL * CL, the rest kept */
	flags_are(f, CF | OF, CF | OF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), (uint32_t)-6);
	assert_int_equal(reg(f, R_DX), 0xffffffff);
	flags_are(f, CF | OF, 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0xffff0423); /* AL = 0x23, AH = 4 */
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 1000000);
	flags_are(f, CF | OF, 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0);
	assert_int_equal(reg(f, R_DX), 0x000f0100); /* DX:AX = 0x01000000, EDX's top kept */
	flags_are(f, CF | OF, CF | OF);
}

/* Exceptions of interpreted code go through the guest's 32-bit IDT; its handlers return with
 * iret. */
static void test_exceptions_32bit_idt(void **state)
{
	struct fx *f = *state;
	static const uint8_t skip2[] = {
	    0xf4,                   /* hlt */
	    0x83, 0x04, 0x24, 0x02, /* addl $0x2,(%esp) */
	    0xcf,                   /* iret */
	};
	static const uint8_t skip2_err[] = {
	    0xf4,                   /* hlt */
	    0x83, 0xc4, 0x04,       /* add $0x4,%esp */
	    0x83, 0x04, 0x24, 0x02, /* addl $0x2,(%esp) */
	    0xcf,                   /* iret */
	};
	static const uint8_t soft[] = {0xf4, 0xcf}; /* hlt; iret */

	for (unsigned v = 0; v < 256; v++)
		set_gate32(f, v);
	f->c.idtr.base = IDT;
	f->c.idtr.limit = 256 * 8 - 1;
	put(f, HANDLER + 16 * V_DE, skip2, sizeof(skip2));
	put(f, HANDLER + 16 * V_UD, skip2, sizeof(skip2));
	put(f, HANDLER + 16 * V_GP, skip2_err, sizeof(skip2_err));
	put(f, HANDLER + 16 * 0x80, soft, sizeof(soft));
	f->c.r.rflags |= RF_IF;
	CODE32(f, 0xb3, 0x10,                /* 10000: mov $0x10,%bl */
	       0x66, 0xb8, 0x34, 0x12,       /* 10002: mov $0x1234,%ax */
	       0xf6, 0xf3,                   /* 10006: div %bl: the quotient is too big */
	       0x31, 0xd2,                   /* 10008: xor %edx,%edx */
	       0xb8, 0x00, 0x00, 0x00, 0x80, /* 1000a: mov $0x80000000,%eax */
	       0xb9, 0xff, 0xff, 0xff, 0xff, /* 1000f: mov $0xffffffff,%ecx */
	       0x99,                         /* 10014: cltd */
	       0xf7, 0xf9,                   /* 10015: idiv %ecx: INT_MIN / -1 */
	       0x0f, 0x0b,                   /* 10017: ud2 */
	       0xcd, 0x80,                   /* 10019: int $0x80 */
	       0xb9, 0x00, 0x00, 0x00, 0x00, /* 1001b: mov $0x0,%ecx */
	       0x8e, 0xd1,                   /* 10020: mov %ecx,%ss: a null SS */
	       0xf4,                         /* 10022: hlt */
	);
	/* #DE: EIP, CS, EFLAGS, no error code; the interrupt gate clears IF */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_DE + 1);
	assert_int_equal(reg(f, R_SP), STACK - 12);
	assert_int_equal(get32(f, STACK - 12), 0x10006);
	assert_int_equal(get32(f, STACK - 8), SEL_CODE32);
	assert_true(get32(f, STACK - 4) & RF_IF);
	assert_false(f->c.r.rflags & RF_IF);
	assert_int_equal(reg(f, R_AX) & 0xffff, 0x1234); /* nothing done */
	/* iret back past it; then idiv overflows */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_DE + 1);
	assert_int_equal(get32(f, STACK - 12), 0x10015);
	assert_int_equal(reg(f, R_AX), 0x80000000);
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_UD + 1);
	assert_int_equal(get32(f, STACK - 12), 0x10017);
	/* int $0x80: the frame holds the next instruction */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * 0x80 + 1);
	assert_int_equal(get32(f, STACK - 12), 0x1001b);
	/* #GP(0) with its error code */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP + 1);
	assert_int_equal(reg(f, R_SP), STACK - 16);
	assert_int_equal(get32(f, STACK - 16), 0);
	assert_int_equal(get32(f, STACK - 12), 0x10020);
	assert_int_equal(f->c.ss, SEL_DATA);
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x10023);
	assert_int_equal(reg(f, R_SP), STACK);
	assert_true(f->c.r.rflags & RF_IF); /* iret restored it */
	assert_int_equal(f->stops, 0);
}

/* With no IDT an exception cannot be delivered: a triple fault. */
static void test_triple_fault(void **state)
{
	struct fx *f = *state;

	CODE32(f, 0x90,    /* 10000: nop */
	       0x0f, 0x0b, /* 10001: ud2 */
	);
	assert_int_equal(run(f, 100), INTERP_FAULT);
	assert_int_equal(f->stops, 1);
	assert_int_equal(f->stop_how, CPU_STOP_TRIPLE_FAULT);
	assert_int_equal(f->out.steps, 2);
	assert_non_null(strstr(f->out.why, "triple fault"));
	assert_non_null(strstr(f->out.why, "eip=0x00010001"));
}

/* ---- stack, calls --------------------------------------------------------------------------- */

static void test_stack_calls(void **state)
{
	struct fx *f = *state;
	static const uint8_t funcs[] = {
	    0xc8, 0x10, 0x00, 0x00,                   /* 10100: f1: enter $0x10,$0x0 */
	    0xc7, 0x45, 0xfc, 0x55, 0x00, 0x00, 0x00, /* 10104: movl $0x55,-0x4(%ebp) */
	    0x8b, 0x45, 0xfc,                         /* 1010b: mov -0x4(%ebp),%eax */
	    0xc9,                                     /* 1010e: leave */
	    0xc3,                                     /* 1010f: ret */
	    0xb8, 0x66, 0x00, 0x00, 0x00,             /* 10110: f2: mov $0x66,%eax */
	    0xc3,                                     /* 10115: ret */
	    0x8b, 0x44, 0x24, 0x04,                   /* 10116: f3: mov 0x4(%esp),%eax */
	    0x03, 0x44, 0x24, 0x08,                   /* 1011a: add 0x8(%esp),%eax */
	    0xc2, 0x08, 0x00,                         /* 1011e: ret $0x8 */
	};
	static const uint8_t hlt = 0xf4;

	put(f, 0x10100, funcs, sizeof(funcs));
	put(f, 0x10090, &hlt, 1);
	put32(f, DATA, 0xaabbccdd);
	CODE32(f, 0xb8, 0x11, 0x11, 0x11, 0x11,    /* 10000: mov $0x11111111,%eax */
	       0x50,                               /* 10005: push %eax */
	       0x6a, 0xfe,                         /* 10006: push $0xfffffffe */
	       0x66, 0x68, 0x34, 0x12,             /* 10008: pushw $0x1234 */
	       0xff, 0x35, 0x00, 0x00, 0x04, 0x00, /* 1000c: push 0x40000 */
	       0x5b,                               /* 10012: pop %ebx */
	       0x66, 0x59,                         /* 10013: pop %cx */
	       0x5a,                               /* 10015: pop %edx */
	       0x5e,                               /* 10016: pop %esi */
	       0xf4,                               /* 10017: hlt */
	       0xe8, 0xe3, 0x00, 0x00, 0x00,       /* 10018: call 10100 <f1> */
	       0xf4,                               /* 1001d: hlt */
	       0xb8, 0x10, 0x01, 0x01, 0x00,       /* 1001e: mov $0x10110,%eax */
	       0xff, 0xd0,                         /* 10023: call *%eax */
	       0xf4,                               /* 10025: hlt */
	       0xc7, 0x05, 0x04, 0x00, 0x04, 0x00, /* 10026: movl $0x10110,0x40004 */
	       0x10, 0x01, 0x01, 0x00,             /*         (imm32) */
	       0xff, 0x15, 0x04, 0x00, 0x04, 0x00, /* 10030: call *0x40004 */
	       0xf4,                               /* 10036: hlt */
	       0x9c,                               /* 10037: pushf */
	       0x58,                               /* 10038: pop %eax */
	       0x0d, 0xd5, 0x08, 0x00, 0x00,       /* 10039: or $0x8d5,%eax */
	       0x50,                               /* 1003e: push %eax */
	       0x9d,                               /* 1003f: popf */
	       0xf4,                               /* 10040: hlt */
	       0xb8, 0x01, 0x00, 0x00, 0x00,       /* 10041: mov $0x1,%eax */
	       0xb9, 0x02, 0x00, 0x00, 0x00,       /* 10046: mov $0x2,%ecx */
	       0xba, 0x03, 0x00, 0x00, 0x00,       /* 1004b: mov $0x3,%edx */
	       0xbb, 0x04, 0x00, 0x00, 0x00,       /* 10050: mov $0x4,%ebx */
	       0xbd, 0x06, 0x00, 0x00, 0x00,       /* 10055: mov $0x6,%ebp */
	       0xbe, 0x07, 0x00, 0x00, 0x00,       /* 1005a: mov $0x7,%esi */
	       0xbf, 0x08, 0x00, 0x00, 0x00,       /* 1005f: mov $0x8,%edi */
	       0x60,                               /* 10064: pusha */
	       0x31, 0xc0,                         /* 10065: xor %eax,%eax */
	       0x31, 0xc9,                         /* 10067: xor %ecx,%ecx */
	       0x31, 0xd2,                         /* 10069: xor %edx,%edx */
	       0x31, 0xdb,                         /* 1006b: xor %ebx,%ebx */
	       0x31, 0xed,                         /* 1006d: xor %ebp,%ebp */
	       0x31, 0xf6,                         /* 1006f: xor %esi,%esi */
	       0x31, 0xff,                         /* 10071: xor %edi,%edi */
	       0x61,                               /* 10073: popa */
	       0xf4,                               /* 10074: hlt */
	       0x6a, 0x09,                         /* 10075: push $0x9 */
	       0x6a, 0x0a,                         /* 10077: push $0xa */
	       0xe8, 0x98, 0x00, 0x00, 0x00,       /* 10079: call 10116 <f3> */
	       0xf4,                               /* 1007e: hlt */
	       0x8f, 0x44, 0x24, 0x04,             /* 1007f: pop 0x4(%esp) */
	       0xf4,                               /* 10083: hlt */
	       0xff, 0xe0,                         /* 10084: jmp *%eax */
	);
	to_hlt(f);
	assert_int_equal(reg(f, R_BX), 0xaabbccdd);
	assert_int_equal(reg(f, R_CX), 0x1234);     /* a 16-bit push and pop */
	assert_int_equal(reg(f, R_DX), 0xfffffffe); /* push imm8 sign-extends */
	assert_int_equal(reg(f, R_SI), 0x11111111);
	assert_int_equal(reg(f, R_SP), STACK);
	/* call, enter, a local, leave, ret */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x1001e);
	assert_int_equal(reg(f, R_AX), 0x55);
	assert_int_equal(get32(f, STACK - 12), 0x55);
	assert_int_equal(get32(f, STACK - 4), 0x1001d); /* the return address */
	assert_int_equal(reg(f, R_SP), STACK);
	assert_int_equal(reg(f, R_BP), 0);
	/* call *%eax, call *mem */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x10026);
	assert_int_equal(reg(f, R_AX), 0x66);
	f->c.r.gpr[R_AX] = 0;
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x10037);
	assert_int_equal(reg(f, R_AX), 0x66);
	assert_int_equal(reg(f, R_SP), STACK);
	/* pushf / popf */
	to_hlt(f);
	flags_are(f, ARITH, ARITH);
	assert_true(f->c.r.rflags & RF_RESERVED);
	/* pusha / popa: ESP's slot holds ESP before pusha, popa skips it */
	to_hlt(f);
	assert_int_equal(get32(f, STACK - 32), 8);     /* EDI at the new ESP */
	assert_int_equal(get32(f, STACK - 20), STACK); /* ESP */
	assert_int_equal(get32(f, STACK - 4), 1);      /* EAX pushed first */
	assert_int_equal(reg(f, R_AX), 1);
	assert_int_equal(reg(f, R_CX), 2);
	assert_int_equal(reg(f, R_DX), 3);
	assert_int_equal(reg(f, R_BX), 4);
	assert_int_equal(reg(f, R_BP), 6);
	assert_int_equal(reg(f, R_SI), 7);
	assert_int_equal(reg(f, R_DI), 8);
	assert_int_equal(reg(f, R_SP), STACK);
	/* arguments, ret $8 */
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 19);
	assert_int_equal(reg(f, R_SP), STACK);
	flags_are(f, ARITH, AF);
	/* pop 4(%esp): the address is taken with ESP after the pop */
	put32(f, STACK, 0x12345678);
	put32(f, STACK + 4, 0);
	put32(f, STACK + 8, 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_SP), STACK + 4);
	assert_int_equal(get32(f, STACK + 8), 0x12345678);
	assert_int_equal(get32(f, STACK + 4), 0);
	/* jmp *%eax */
	f->c.r.gpr[R_AX] = 0x10090;
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x10091);
}

/* ---- conditions, branches ---------------------------------------------------------------- */

/* The 16 conditions after cmp, against C's comparisons, through setcc (0f 90+cc). */
static void test_conditions(void **state)
{
	struct fx *f = *state;
	static const uint32_t pairs[][2] = {
	    {0, 0},
	    {1, 2},
	    {2, 1},
	    {0x80000000, 1},
	    {0x7fffffff, 0xffffffff},
	    {0xffffffff, 0x7fffffff},
	    {0x80000000, 0x80000000},
	    {5, 0xfffffffb},
	    {0x12, 0x34},
	    {0xffffffff, 0},
	};
	uint8_t code[2 + 16 * 4 + 1], got[16];
	size_t n = 0;

	code[n++] = 0x39; /* cmp %ebx,%eax */
	code[n++] = 0xd8;
	for (unsigned cc = 0; cc < 16; cc++) { /* setcc cc(%edi), the disp8 form */
		code[n++] = 0x0f;
		code[n++] = (uint8_t)(0x90 + cc);
		code[n++] = 0x47;
		code[n++] = (uint8_t)cc;
	}
	code[n++] = 0xf4; /* hlt */
	put(f, CODE, code, n);
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		uint32_t a = pairs[i][0], b = pairs[i][1], r = a - b;
		int64_t sr = (int64_t)(int32_t)a - (int32_t)b;
		bool want[16];

		want[0] = sr != (int32_t)sr;            /* o */
		want[2] = a < b;                        /* b */
		want[4] = a == b;                       /* e */
		want[6] = a <= b;                       /* be */
		want[8] = (int32_t)r < 0;               /* s */
		want[10] = !__builtin_parity(r & 0xff); /* p */
		want[12] = (int32_t)a < (int32_t)b;     /* l */
		want[14] = (int32_t)a <= (int32_t)b;    /* le */
		for (unsigned cc = 1; cc < 16; cc += 2)
			want[cc] = !want[cc - 1];
		assert_int_equal(gm_fill(&f->gm, DATA, 0x55, 16), 0);
		f->c.r.rip = CODE;
		f->c.r.gpr[R_AX] = a;
		f->c.r.gpr[R_BX] = b;
		f->c.r.gpr[R_DI] = DATA;
		to_hlt(f);
		assert_int_equal(gm_read(&f->gm, DATA, got, 16), 0);
		for (unsigned cc = 0; cc < 16; cc++)
			if (got[cc] != want[cc])
				fail_msg("0x%x cmp 0x%x: condition %u is %u", a, b, cc, got[cc]);
	}
}

static void test_branches(void **state)
{
	struct fx *f = *state;

	CODE32(f, 0xb9, 0x03, 0x00, 0x00, 0x00,    /* 10000: mov $0x3,%ecx */
	       0x31, 0xc0,                         /* 10005: xor %eax,%eax */
	       0x40,                               /* 10007: 1: inc %eax */
	       0x83, 0xf8, 0x0a,                   /* 10008: cmp $0xa,%eax */
	       0xe0, 0xfa,                         /* 1000b: loopne 1b */
	       0xf4,                               /* 1000d: hlt */
	       0xb9, 0x05, 0x00, 0x00, 0x00,       /* 1000e: mov $0x5,%ecx */
	       0x31, 0xc0,                         /* 10013: xor %eax,%eax */
	       0x40,                               /* 10015: 2: inc %eax */
	       0x83, 0xf8, 0x02,                   /* 10016: cmp $0x2,%eax */
	       0xe0, 0xfa,                         /* 10019: loopne 2b */
	       0xf4,                               /* 1001b: hlt */
	       0xb9, 0x05, 0x00, 0x00, 0x00,       /* 1001c: mov $0x5,%ecx */
	       0x31, 0xc0,                         /* 10021: xor %eax,%eax */
	       0x40,                               /* 10023: 3: inc %eax */
	       0x39, 0xc0,                         /* 10024: cmp %eax,%eax */
	       0xe1, 0xfb,                         /* 10026: loope 3b */
	       0xf4,                               /* 10028: hlt */
	       0x31, 0xc9,                         /* 10029: xor %ecx,%ecx */
	       0x31, 0xdb,                         /* 1002b: xor %ebx,%ebx */
	       0xe3, 0x05,                         /* 1002d: jecxz 4f */
	       0xbb, 0x01, 0x00, 0x00, 0x00,       /* 1002f: mov $0x1,%ebx */
	       0xf4,                               /* 10034: 4: hlt */
	       0xb9, 0x01, 0x00, 0x00, 0x00,       /* 10035: mov $0x1,%ecx */
	       0xe3, 0x05,                         /* 1003a: jecxz 5f */
	       0xbb, 0x02, 0x00, 0x00, 0x00,       /* 1003c: mov $0x2,%ebx */
	       0xf4,                               /* 10041: 5: hlt */
	       0xb8, 0x01, 0x00, 0x00, 0x00,       /* 10042: mov $0x1,%eax */
	       0x83, 0xf8, 0x02,                   /* 10047: cmp $0x2,%eax */
	       0x0f, 0x8c, 0x05, 0x00, 0x00, 0x00, /* 1004a: jl 6f (rel32) */
	       0xbb, 0x03, 0x00, 0x00, 0x00,       /* 10050: mov $0x3,%ebx */
	       0x0f, 0x8f, 0x05, 0x00, 0x00, 0x00, /* 10055: 6: jg 7f (rel32) */
	       0xbb, 0x04, 0x00, 0x00, 0x00,       /* 1005b: mov $0x4,%ebx */
	       0xf4,                               /* 10060: 7: hlt */
	       0xb8, 0x01, 0x00, 0x00, 0x00,       /* 10061: mov $0x1,%eax */
	       0xbb, 0x02, 0x00, 0x00, 0x00,       /* 10066: mov $0x2,%ebx */
	       0xb9, 0x03, 0x00, 0x00, 0x00,       /* 1006b: mov $0x3,%ecx */
	       0x39, 0xd8,                         /* 10070: cmp %ebx,%eax */
	       0x0f, 0x4c, 0xc3,                   /* 10072: cmovl %ebx,%eax */
	       0x0f, 0x4f, 0xc1,                   /* 10075: cmovg %ecx,%eax */
	       0x0f, 0x9c, 0xc6,                   /* 10078: setl %dh */
	       0xf4,                               /* 1007b: hlt */
	       0xeb, 0x01,                         /* 1007c: jmp 8f */
	       0xf4,                               /* 1007e: hlt */
	       0xe9, 0x01, 0x00, 0x00, 0x00,       /* 1007f: 8: jmp 9f */
	       0xf4,                               /* 10084: hlt */
	       0xf4,                               /* 10085: 9: hlt */
	);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 3); /* loopne: ECX ran out */
	assert_int_equal(reg(f, R_CX), 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 2); /* loopne: ZF ended it */
	assert_int_equal(reg(f, R_CX), 3);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 5); /* loope */
	assert_int_equal(reg(f, R_CX), 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_BX), 0); /* jecxz taken */
	to_hlt(f);
	assert_int_equal(reg(f, R_BX), 2); /* not taken */
	to_hlt(f);
	assert_int_equal(reg(f, R_BX), 4); /* jl taken, jg not */
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 2); /* cmovl moved, cmovg did not */
	assert_int_equal(reg(f, R_DX) >> 8 & 0xff, 1);
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x10086);
}

/* ---- strings ------------------------------------------------------------------------------ */

static void test_strings(void **state)
{
	struct fx *f = *state;
	uint8_t buf[128];

	put(f, 0x43000, "hello, world!!!!", 16);
	put(f, 0x44000, "hello, there....", 16);
	put(f, 0x43020, "x", 1);
	for (unsigned i = 0; i < 128; i++)
		buf[i] = (uint8_t)('A' + i % 26);
	put(f, DATA, buf, sizeof(buf));
	for (unsigned i = 0; i < 4; i++)
		put32(f, 0x41000 + 4 * i, 0x1000 + i);
	f->c.fs_base = 0x1000;
	CODE32(f, 0xbf, 0x00, 0x00, 0x10, 0x00, /* 10000: mov $0x100000,%edi */
	       0xb8, 0xef, 0xbe, 0xad, 0xde,    /* 10005: mov $0xdeadbeef,%eax */
	       0xb9, 0x00, 0x14, 0x00, 0x00,    /* 1000a: mov $0x1400,%ecx */
	       0xf3, 0xab,                      /* 1000f: rep stos %eax,%es:(%edi) */
	       0xf4,                            /* 10011: hlt */
	       0xbe, 0x00, 0x00, 0x04, 0x00,    /* 10012: mov $0x40000,%esi */
	       0x8d, 0x7e, 0x01,                /* 10017: lea 0x1(%esi),%edi */
	       0xb9, 0x64, 0x00, 0x00, 0x00,    /* 1001a: mov $0x64,%ecx */
	       0xf3, 0xa4,                      /* 1001f: rep movsb */
	       0xf4,                            /* 10021: hlt */
	       0xfd,                            /* 10022: std */
	       0xbe, 0x0c, 0x10, 0x04, 0x00,    /* 10023: mov $0x4100c,%esi */
	       0xbf, 0x0c, 0x20, 0x04, 0x00,    /* 10028: mov $0x4200c,%edi */
	       0xb9, 0x04, 0x00, 0x00, 0x00,    /* 1002d: mov $0x4,%ecx */
	       0xf3, 0xa5,                      /* 10032: rep movsl */
	       0xfc,                            /* 10034: cld */
	       0xf4,                            /* 10035: hlt */
	       0xbe, 0x00, 0x30, 0x04, 0x00,    /* 10036: mov $0x43000,%esi */
	       0xbf, 0x00, 0x40, 0x04, 0x00,    /* 1003b: mov $0x44000,%edi */
	       0xb9, 0x10, 0x00, 0x00, 0x00,    /* 10040: mov $0x10,%ecx */
	       0xf3, 0xa6,                      /* 10045: repz cmpsb */
	       0xf4,                            /* 10047: hlt */
	       0xbf, 0x00, 0x30, 0x04, 0x00,    /* 10048: mov $0x43000,%edi */
	       0xb0, 0x78,                      /* 1004d: mov $0x78,%al */
	       0xb9, 0x64, 0x00, 0x00, 0x00,    /* 1004f: mov $0x64,%ecx */
	       0xf2, 0xae,                      /* 10054: repnz scas %es:(%edi),%al */
	       0xf4,                            /* 10056: hlt */
	       0xbe, 0x00, 0x30, 0x04, 0x00,    /* 10057: mov $0x43000,%esi */
	       0xad,                            /* 1005c: lods %ds:(%esi),%eax */
	       0x66, 0xad,                      /* 1005d: lods %ds:(%esi),%ax */
	       0xac,                            /* 1005f: lods %ds:(%esi),%al */
	       0xf4,                            /* 10060: hlt */
	       0xbf, 0xfe, 0x5f, 0x04, 0x00,    /* 10061: mov $0x45ffe,%edi */
	       0xb9, 0x03, 0x00, 0x00, 0x00,    /* 10066: mov $0x3,%ecx */
	       0x66, 0xb8, 0xcd, 0xab,          /* 1006b: mov $0xabcd,%ax */
	       0x66, 0xf3, 0xab,                /* 1006f: rep stos %ax,%es:(%edi) */
	       0xf4,                            /* 10072: hlt */
	       0xbe, 0x00, 0x30, 0x04, 0x00,    /* 10073: mov $0x43000,%esi */
	       0xbf, 0x00, 0x60, 0x04, 0x00,    /* 10078: mov $0x46000,%edi */
	       0xa4,                            /* 1007d: movsb */
	       0x66, 0xa5,                      /* 1007e: movsw */
	       0xa5,                            /* 10080: movsl */
	       0x64, 0xa5,                      /* 10081: movsl %fs:(%esi),%es:(%edi) */
	       0xf4,                            /* 10083: hlt */
	);
	/* 20 KiB: five pages, a step each */
	to_hlt(f);
	assert_int_equal(f->out.steps, 3 + 5 + 1);
	for (uint32_t a = 0x100000; a < 0x105000; a += 4)
		assert_int_equal(get32(f, a), 0xdeadbeef);
	assert_int_equal(get32(f, 0x105000), 0);
	assert_int_equal(reg(f, R_DI), 0x105000);
	assert_int_equal(reg(f, R_CX), 0);
	/* an overlapping forward copy repeats the first byte, element by element */
	to_hlt(f);
	assert_int_equal(gm_read(&f->gm, DATA, buf, 102), 0);
	for (unsigned i = 0; i <= 100; i++)
		assert_int_equal(buf[i], 'A');
	assert_int_equal(buf[101], 'A' + 101 % 26);
	assert_int_equal(reg(f, R_SI), DATA + 100);
	assert_int_equal(reg(f, R_DI), DATA + 101);
	/* backwards */
	to_hlt(f);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(get32(f, 0x42000 + 4 * i), 0x1000 + i);
	assert_int_equal(reg(f, R_SI), 0x40ffc);
	assert_int_equal(reg(f, R_DI), 0x41ffc);
	/* repe cmpsb stops after the first difference ('w' - 't') */
	to_hlt(f);
	assert_int_equal(reg(f, R_SI), 0x43008);
	assert_int_equal(reg(f, R_DI), 0x44008);
	assert_int_equal(reg(f, R_CX), 8);
	flags_are(f, ARITH, PF);
	/* repne scasb stops on the match */
	to_hlt(f);
	assert_int_equal(reg(f, R_DI), 0x43021);
	assert_int_equal(reg(f, R_CX), 100 - 33);
	flags_are(f, ZF, ZF);
	/* lods: 4, 2, 1 bytes into EAX, AX, AL */
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x6c6c2c20);
	assert_int_equal(reg(f, R_SI), 0x43007);
	/* an element up to the page end, then the next page */
	to_hlt(f);
	assert_int_equal(gm_read(&f->gm, 0x45ffe, buf, 6), 0);
	assert_memory_equal(buf, "\xcd\xab\xcd\xab\xcd\xab", 6);
	assert_int_equal(reg(f, R_DI), 0x46004);
	/* single moves; FS's base applies to the source */
	to_hlt(f);
	assert_int_equal(gm_read(&f->gm, 0x46000, buf, 11), 0);
	assert_memory_equal(buf, "hello, ther", 11);
	assert_int_equal(reg(f, R_SI), 0x4300b);
	assert_int_equal(reg(f, R_DI), 0x4600b);
}

/* ---- moves, bits ------------------------------------------------------------------------- */

static void test_moves(void **state)
{
	struct fx *f = *state;
	static const uint8_t xlat_byte = 0x9a;

	put32(f, DATA + 4, 0xccddeeff);
	put(f, DATA + 0x13, &xlat_byte, 1);
	CODE32(f, 0xb8, 0x44, 0x33, 0x22, 0x11,          /* 10000: mov $0x11223344,%eax */
	       0xa3, 0x00, 0x00, 0x04, 0x00,             /* 10005: mov %eax,0x40000 */
	       0x8b, 0x1d, 0x00, 0x00, 0x04, 0x00,       /* 1000a: mov 0x40000,%ebx */
	       0xc6, 0x05, 0x01, 0x00, 0x04, 0x00, 0xa5, /* 10010: movb $0xa5,0x40001 */
	       0x66, 0xc7, 0x05, 0x02, 0x00, 0x04, 0x00, /* 10017: movw $0x8677,0x40002 */
	       0x77, 0x86,                               /*         (imm16) */
	       0x8b, 0x0d, 0x00, 0x00, 0x04, 0x00,       /* 10020: mov 0x40000,%ecx */
	       0x88, 0xe2,                               /* 10026: mov %ah,%dl */
	       0x88, 0xce,                               /* 10028: mov %cl,%dh */
	       0x0f, 0xb6, 0x35, 0x03, 0x00, 0x04, 0x00, /* 1002a: movzbl 0x40003,%esi */
	       0x0f, 0xbe, 0x3d, 0x01, 0x00, 0x04, 0x00, /* 10031: movsbl 0x40001,%edi */
	       0x0f, 0xbf, 0x2d, 0x02, 0x00, 0x04, 0x00, /* 10038: movswl 0x40002,%ebp */
	       0xf4,                                     /* 1003f: hlt */
	       0xbb, 0x00, 0x00, 0x04, 0x00,             /* 10040: mov $0x40000,%ebx */
	       0xbe, 0x03, 0x00, 0x00, 0x00,             /* 10045: mov $0x3,%esi */
	       0x8d, 0x44, 0xb3, 0x10,                   /* 1004a: lea 0x10(%ebx,%esi,4),%eax */
	       0x8d, 0x0c, 0xf5, 0x00, 0x00, 0x00, 0x00, /* 1004e: lea 0x0(,%esi,8),%ecx */
	       0x0f, 0xb7, 0x54, 0x33, 0x02,             /* 10055: movzwl 0x2(%ebx,%esi,1),%edx */
	       0x66, 0x0f, 0xbe, 0x3b,                   /* 1005a: movsbw (%ebx),%di */
	       0x91,                                     /* 1005e: xchg %eax,%ecx */
	       0x86, 0xd6,                               /* 1005f: xchg %dl,%dh */
	       0x87, 0x2d, 0x00, 0x00, 0x04, 0x00,       /* 10061: xchg %ebp,0x40000 */
	       0xf4,                                     /* 10067: hlt */
	       0xb8, 0x00, 0x80, 0x00, 0x00,             /* 10068: mov $0x8000,%eax */
	       0x98,                                     /* 1006d: cwtl */
	       0x99,                                     /* 1006e: cltd */
	       0xb9, 0x80, 0x00, 0x00, 0x00,             /* 1006f: mov $0x80,%ecx */
	       0x91,                                     /* 10074: xchg %eax,%ecx */
	       0x66, 0x98,                               /* 10075: cbtw */
	       0xbb, 0x78, 0x56, 0x34, 0x12,             /* 10077: mov $0x12345678,%ebx */
	       0x0f, 0xcb,                               /* 1007c: bswap %ebx */
	       0xf4,                                     /* 1007e: hlt */
	       0xbb, 0x10, 0x00, 0x04, 0x00,             /* 1007f: mov $0x40010,%ebx */
	       0xb8, 0x03, 0x00, 0x00, 0x00,             /* 10084: mov $0x3,%eax */
	       0xd7,                                     /* 10089: xlat %ds:(%ebx) */
	       0xf4,                                     /* 1008a: hlt */
	       0xb8, 0x05, 0x00, 0x00, 0x00,             /* 1008b: mov $0x5,%eax */
	       0xc7, 0x05, 0x20, 0x00, 0x04, 0x00,       /* 10090: movl $0x5,0x40020 */
	       0x05, 0x00, 0x00, 0x00,                   /*         (imm32) */
	       0xb9, 0x09, 0x00, 0x00, 0x00,             /* 1009a: mov $0x9,%ecx */
	       0x0f, 0xb1, 0x0d, 0x20, 0x00, 0x04, 0x00, /* 1009f: cmpxchg %ecx,0x40020 */
	       0xf4,                                     /* 100a6: hlt */
	       0x0f, 0xb1, 0x0d, 0x20, 0x00, 0x04, 0x00, /* 100a7: cmpxchg %ecx,0x40020 */
	       0xf4,                                     /* 100ae: hlt */
	       0xba, 0x0a, 0x00, 0x00, 0x00,             /* 100af: mov $0xa,%edx */
	       0x0f, 0xc1, 0x15, 0x20, 0x00, 0x04, 0x00, /* 100b4: xadd %edx,0x40020 */
	       0xf4,                                     /* 100bb: hlt */
	       0xb4, 0xd7,                               /* 100bc: mov $0xd7,%ah */
	       0x9e,                                     /* 100be: sahf */
	       0xb4, 0x00,                               /* 100bf: mov $0x0,%ah */
	       0x9f,                                     /* 100c1: lahf */
	       0xf4,                                     /* 100c2: hlt */
	);
	to_hlt(f);
	assert_int_equal(reg(f, R_BX), 0x11223344);
	assert_int_equal(reg(f, R_CX), 0x8677a544);
	assert_int_equal(reg(f, R_DX), 0x4433); /* DL = AH, DH = CL */
	assert_int_equal(reg(f, R_SI), 0x86);
	assert_int_equal(reg(f, R_DI), 0xffffffa5);
	assert_int_equal(reg(f, R_BP), 0xffff8677);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x18);       /* lea (,%esi,8), swapped */
	assert_int_equal(reg(f, R_CX), 0x4001c);    /* lea 0x10(%ebx,%esi,4) */
	assert_int_equal(reg(f, R_DX), 0xeedd);     /* movzwl 0x40005, DL and DH swapped */
	assert_int_equal(reg(f, R_DI), 0xffff0044); /* movsbw: DI only */
	assert_int_equal(reg(f, R_BP), 0x8677a544);
	assert_int_equal(get32(f, DATA), 0xffff8677);
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 0xffffffff); /* cltd of 0xffff8000 */
	assert_int_equal(reg(f, R_CX), 0xffff8000); /* cwtl */
	assert_int_equal(reg(f, R_AX), 0xff80);     /* cbtw */
	assert_int_equal(reg(f, R_BX), 0x78563412);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x9a);
	to_hlt(f);
	assert_int_equal(get32(f, DATA + 0x20), 9); /* equal: stored */
	flags_are(f, ZF, ZF);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 9); /* not equal: loaded */
	flags_are(f, ARITH, CF | SF | AF | PF);
	to_hlt(f);
	assert_int_equal(get32(f, DATA + 0x20), 19);
	assert_int_equal(reg(f, R_DX), 9);
	flags_are(f, ARITH, AF);
	to_hlt(f);
	flags_are(f, ARITH, SF | ZF | AF | PF | CF); /* OF is not sahf's */
	assert_int_equal(reg(f, R_AX), 0xd709);
}

static void test_bit_ops(void **state)
{
	struct fx *f = *state;

	put32(f, DATA, 0x80000020);
	put32(f, DATA + 4, 0xffffffff);
	put32(f, DATA + 8, 0);
	CODE32(f, 0xbb, 0x00, 0x00, 0x04, 0x00, /* 10000: mov $0x40000,%ebx */
	       0xb9, 0x05, 0x00, 0x00, 0x00,    /* 10005: mov $0x5,%ecx */
	       0x0f, 0xa3, 0x0b,                /* 1000a: bt %ecx,(%ebx) */
	       0x0f, 0x92, 0xc0,                /* 1000d: setb %al */
	       0x0f, 0xab, 0x0b,                /* 10010: bts %ecx,(%ebx) */
	       0xb9, 0xff, 0xff, 0xff, 0xff,    /* 10013: mov $0xffffffff,%ecx */
	       0x0f, 0xb3, 0x4b, 0x04,          /* 10018: btr %ecx,0x4(%ebx): bit 31 of (%ebx) */
	       0xb9, 0x23, 0x00, 0x00, 0x00,    /* 1001c: mov $0x23,%ecx */
	       0x0f, 0xbb, 0x0b,                /* 10021: btc %ecx,(%ebx): bit 3 of 4(%ebx) */
	       0x0f, 0xba, 0x6b, 0x08, 0x1f,    /* 10024: btsl $0x1f,0x8(%ebx) */
	       0xf4,                            /* 10029: hlt */
	       0xba, 0x10, 0x00, 0x00, 0x00,    /* 1002a: mov $0x10,%edx */
	       0x0f, 0xba, 0xe2, 0x04,          /* 1002f: bt $0x4,%edx */
	       0x0f, 0xba, 0xf2, 0x24,          /* 10033: btr $0x24,%edx: bit 36 & 31 */
	       0x66, 0x0f, 0xba, 0xfa, 0x01,    /* 10037: btc $0x1,%dx */
	       0xf4,                            /* 1003c: hlt */
	       0xbe, 0x00, 0x00, 0xf0, 0x00,    /* 1003d: mov $0xf00000,%esi */
	       0x0f, 0xbc, 0xc6,                /* 10042: bsf %esi,%eax */
	       0x0f, 0xbd, 0xce,                /* 10045: bsr %esi,%ecx */
	       0xf4,                            /* 10048: hlt */
	       0x31, 0xf6,                      /* 10049: xor %esi,%esi */
	       0xb8, 0x07, 0x00, 0x00, 0x00,    /* 1004b: mov $0x7,%eax */
	       0x0f, 0xbc, 0xc6,                /* 10050: bsf %esi,%eax */
	       0xf4,                            /* 10053: hlt */
	);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX) & 0xff, 1);
	assert_int_equal(get32(f, DATA), 0x20);
	assert_int_equal(get32(f, DATA + 4), 0xfffffff7);
	assert_int_equal(get32(f, DATA + 8), 0x80000000);
	flags_are(f, CF, 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_DX), 2);
	flags_are(f, CF, 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 20);
	assert_int_equal(reg(f, R_CX), 23);
	flags_are(f, ZF, 0);
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 7); /* a zero source: ZF, the destination kept */
	flags_are(f, ZF, ZF);
}

/* ---- segments, far transfers ---------------------------------------------------------------- */

static void test_segments(void **state)
{
	struct fx *f = *state;

	idt_of_hlts(f);
	big_gdt(f);
	put32(f, DATA, 0xffffffff);
	put32(f, DATA + 0x10, 0x7000); /* lss: offset, selector */
	put32(f, DATA + 0x14, SEL_DATA);
	put32(f, DATA + 0x20, 0x1234); /* lgs */
	put32(f, DATA + 0x24, 0x20);
	put32(f, 0x1004, 0xfeedface);
	CODE32(f, 0xb8, 0x10, 0x00, 0x00, 0x00,          /* 10000: mov $0x10,%eax */
	       0x8e, 0xd8,                               /* 10005: mov %eax,%ds */
	       0x8e, 0xc0,                               /* 10007: mov %eax,%es */
	       0x50,                                     /* 10009: push %eax */
	       0x0f, 0xa1,                               /* 1000a: pop %fs */
	       0x8c, 0xd9,                               /* 1000c: mov %ds,%ecx */
	       0x8c, 0x15, 0x00, 0x00, 0x04, 0x00,       /* 1000e: mov %ss,0x40000 */
	       0x0f, 0xb2, 0x25, 0x10, 0x00, 0x04, 0x00, /* 10014: lss 0x40010,%esp */
	       0x0f, 0xb5, 0x1d, 0x20, 0x00, 0x04, 0x00, /* 1001b: lgs 0x40020,%ebx */
	       0x65, 0x8b, 0x15, 0x04, 0x00, 0x00, 0x00, /* 10022: mov %gs:0x4,%edx */
	       0xf4,                                     /* 10029: hlt */
	       0xb8, 0x28, 0x00, 0x00, 0x00,             /* 1002a: mov $0x28,%eax */
	       0x8e, 0xd8,                               /* 1002f: mov %eax,%ds */
	       0xf4,                                     /* 10031: hlt */
	       0xb8, 0x30, 0x00, 0x00, 0x00,             /* 10032: mov $0x30,%eax */
	       0x8e, 0xc0,                               /* 10037: mov %eax,%es */
	       0xf4,                                     /* 10039: hlt */
	       0xb8, 0x3b, 0x00, 0x00, 0x00,             /* 1003a: mov $0x3b,%eax */
	       0x8e, 0xd0,                               /* 1003f: mov %eax,%ss */
	       0xf4,                                     /* 10041: hlt */
	       0xb8, 0x18, 0x00, 0x00, 0x00,             /* 10042: mov $0x18,%eax */
	       0x8e, 0xd8,                               /* 10047: mov %eax,%ds */
	       0xf4,                                     /* 10049: hlt */
	);
	f->c.ds = f->c.es = f->c.fs = f->c.gs = 0;
	to_hlt(f);
	assert_int_equal(f->c.ds, SEL_DATA);
	assert_int_equal(f->c.es, SEL_DATA);
	assert_int_equal(f->c.fs, SEL_DATA);
	assert_int_equal(f->c.fs_base, 0);
	assert_int_equal(reg(f, R_CX), SEL_DATA);                /* mov %ds,%ecx: zero-extended */
	assert_int_equal(get32(f, DATA), 0xffff0000 | SEL_DATA); /* to memory: 16 bits */
	assert_int_equal(f->c.ss, SEL_DATA);
	assert_int_equal(reg(f, R_SP), 0x7000);
	assert_int_equal(f->c.gs, 0x20);
	assert_int_equal(f->c.gs_base, 0x1000);
	assert_int_equal(reg(f, R_BX), 0x1234);
	assert_int_equal(reg(f, R_DX), 0xfeedface); /* %gs:4 is 0x1004 */
	/* a 1 MiB limit: refused */
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "not flat: DS = 0x0028"));
	assert_non_null(strstr(f->out.why, "eip=0x0001002f"));
	assert_int_equal(f->stops, 1);
	assert_int_equal(f->stop_how, CPU_STOP_REFUSED);
	assert_int_equal(f->c.r.rip, 0x1002f);
	assert_int_equal(f->c.ds, SEL_DATA);
	/* not present: #NP(selector) */
	f->c.r.rip = 0x10032;
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_NP + 1);
	assert_int_equal(get32(f, 0x7000 - 16), 0x30);
	assert_int_equal(get32(f, 0x7000 - 12), 0x10037);
	/* SS with RPL 3: #GP(selector) */
	f->c.r.rip = 0x1003a;
	f->c.r.gpr[R_SP] = 0x7000;
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP + 1);
	assert_int_equal(get32(f, 0x7000 - 16), 0x38);
	assert_int_equal(f->c.ss, SEL_DATA);
	/* readable code in DS is fine */
	f->c.r.rip = 0x10042;
	to_hlt(f);
	assert_int_equal(f->c.ds, SEL_CODE32);
	assert_int_equal(f->c.r.rip, 0x1004a);
}

static void test_far_transfers(void **state)
{
	struct fx *f = *state;
	static const uint8_t lret = 0xcb, hlt = 0xf4;
	static const uint16_t frame16[2] = {0x0100, SEL_CODE32};

	idt_of_hlts(f);
	big_gdt(f);
	put(f, 0x10100, &lret, 1);
	put(f, 0x100, &hlt, 1);
	put32(f, DATA, 0x12345678); /* m16:32 */
	put32(f, DATA + 4, SEL_CODE64);
	f->c.r.rflags |= RF_IF | CF;
	CODE32(f, 0xea, 0x07, 0x00, 0x01, 0x00, 0x18, 0x00, /* 10000: ljmp $0x18,$0x10007 */
	       0x9a, 0x00, 0x01, 0x01, 0x00, 0x18, 0x00,    /* 10007: lcall $0x18,$0x10100 */
	       0xf4,                                        /* 1000e: hlt */
	       0x9c,                                        /* 1000f: pushf */
	       0x0e,                                        /* 10010: push %cs */
	       0x68, 0x17, 0x00, 0x01, 0x00,                /* 10011: push $0x10017 */
	       0xcf,                                        /* 10016: iret */
	       0xf4,                                        /* 10017: hlt */
	       0xff, 0x2d, 0x00, 0x00, 0x04, 0x00,          /* 10018: ljmp *0x40000 */
	       0xea, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,    /* 1001e: ljmp $0x10,$0x0 */
	       0xea, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00,    /* 10025: ljmp $0x40,$0x0 */
	       0xea, 0x00, 0x00, 0x00, 0x00, 0x1b, 0x00,    /* 1002c: ljmp $0x1b,$0x0 */
	       0xff, 0x1d, 0x00, 0x00, 0x04, 0x00,          /* 10033: lcall *0x40000 */
	       0x66, 0xcb,                                  /* 10039: lretw */
	);
	/* ljmp and lcall within 32-bit code, lret */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x1000f);
	assert_int_equal(f->c.cs, SEL_CODE32);
	assert_int_equal(get32(f, STACK - 8), 0x1000e);
	assert_int_equal(get32(f, STACK - 4), SEL_CODE32);
	assert_int_equal(reg(f, R_SP), STACK);
	/* iret with a 32-bit frame */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x10018);
	assert_int_equal(reg(f, R_SP), STACK);
	assert_true(f->c.r.rflags & RF_IF);
	flags_are(f, CF, CF);
	/* to a 64-bit segment outside long mode: its D bit is clear, it is 16-bit code */
	assert_int_equal(run(f, 1), INTERP_BUDGET);
	assert_int_equal(f->c.cs, SEL_CODE64);
	assert_true(f->c.hidden.code16);
	assert_int_equal(f->c.r.rip, 0x12345678);
	f->c.cs = SEL_CODE32;
	f->c.hidden.code16 = false;
	/* to data: #GP(selector); not present: #NP(selector) */
	f->c.r.rip = 0x1001e;
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP + 1);
	assert_int_equal(get32(f, STACK - 16), SEL_DATA);
	f->c.r.rip = 0x10025;
	f->c.r.gpr[R_SP] = STACK;
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_NP + 1);
	assert_int_equal(get32(f, STACK - 16), 0x40);
	/* RPL 3: the guest's user mode, not for this interpreter */
	f->c.r.rip = 0x1002c;
	f->c.r.gpr[R_SP] = STACK;
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "RPL 3"));
	/* in long mode, lcall m16:32 to the 64-bit segment: native from there */
	f->c.efer = EFER_LME | EFER_LMA;
	f->c.r.rip = 0x10033;
	assert_int_equal(run(f, 10), INTERP_LONG_MODE);
	assert_int_equal(f->out.steps, 1);
	assert_int_equal(f->c.r.rip, 0x12345678);
	assert_int_equal(f->c.cs, SEL_CODE64);
	assert_int_equal(reg(f, R_SP), STACK - 8);
	assert_int_equal(get32(f, STACK - 8), 0x10039);
	assert_int_equal(get32(f, STACK - 4), SEL_CODE32);
	/* lretw: a 16-bit frame, a 16-bit offset */
	f->c.efer = 0;
	f->c.cs = SEL_CODE32;
	f->c.r.rip = 0x10039;
	put(f, STACK - 4, frame16, sizeof(frame16));
	f->c.r.gpr[R_SP] = STACK - 4;
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x101);
	assert_int_equal(reg(f, R_SP), STACK);
}

/* ---- what goes through the CPU core, cpuid ----------------------------------------------------
 */

static void test_privileged(void **state)
{
	struct fx *f = *state;
	static const uint8_t idt_desc[6] = {0xff, 0x07, 0x00, 0x00, 0x02, 0x00};
	uint8_t sidt[6];
	uint64_t t0, t1, tsc;

	put(f, DATA, "abc", 3);
	put(f, DATA + 0x10, idt_desc, sizeof(idt_desc));
	f->msr_value = 0xfee00100;
	f->pio_read_value = 0x1234abcd;
	f->c.r.rflags |= RF_IF;
	CODE32(f, 0xfa,                                  /* 10000: cli */
	       0xb9, 0x1b, 0x00, 0x00, 0x00,             /* 10001: mov $0x1b,%ecx */
	       0x0f, 0x32,                               /* 10006: rdmsr */
	       0x0d, 0x00, 0x08, 0x00, 0x00,             /* 10008: or $0x800,%eax */
	       0x0f, 0x30,                               /* 1000d: wrmsr */
	       0x66, 0xba, 0xf8, 0x03,                   /* 1000f: mov $0x3f8,%dx */
	       0xb0, 0x41,                               /* 10013: mov $0x41,%al */
	       0xee,                                     /* 10015: out %al,(%dx) */
	       0xe4, 0x71,                               /* 10016: in $0x71,%al */
	       0x66, 0xed,                               /* 10018: in (%dx),%ax */
	       0xbe, 0x00, 0x00, 0x04, 0x00,             /* 1001a: mov $0x40000,%esi */
	       0xb9, 0x03, 0x00, 0x00, 0x00,             /* 1001f: mov $0x3,%ecx */
	       0xf3, 0x6e,                               /* 10024: rep outsb */
	       0x0f, 0x01, 0x1d, 0x10, 0x00, 0x04, 0x00, /* 10026: lidtl 0x40010 */
	       0x0f, 0x01, 0x0d, 0x20, 0x00, 0x04, 0x00, /* 1002d: sidtl 0x40020 */
	       0xfb,                                     /* 10034: sti */
	       0xf4,                                     /* 10035: hlt */
	       0xb8, 0x0d, 0x00, 0x00, 0x00,             /* 10036: mov $0xd,%eax */
	       0xb9, 0x01, 0x00, 0x00, 0x00,             /* 1003b: mov $0x1,%ecx */
	       0x0f, 0xa2,                               /* 10040: cpuid */
	       0xf4,                                     /* 10042: hlt */
	       0x0f, 0x31,                               /* 10043: rdtsc */
	       0xf4,                                     /* 10045: hlt */
	       0x0f, 0x20, 0xc0,                         /* 10046: mov %cr0,%eax */
	       0x25, 0xfe, 0xff, 0xff, 0x7f,             /* 10049: and $0x7ffffffe,%eax */
	       0x0f, 0x22, 0xc0,                         /* 1004e: mov %eax,%cr0 */
	       0x90,                                     /* 10051: nop */
	       0xf4,                                     /* 10052: hlt */
	);
	to_hlt(f);
	assert_int_equal(f->msr_index, 0x1b); /* the APIC base: the engine's */
	assert_int_equal(f->msr_value, 0xfee00900);
	assert_int_equal(f->npio, 6);
	assert_int_equal(f->pio[0].port, 0x3f8);
	assert_true(f->pio[0].write);
	assert_int_equal(f->pio[0].value, 0x41);
	assert_int_equal(f->pio[1].port, 0x71);
	assert_false(f->pio[1].write);
	assert_int_equal(f->pio[2].size, 2);
	assert_int_equal(reg(f, R_AX), 0xfee0abcd); /* in %dx,%ax: AX only */
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(f->pio[3 + i].value, (uint8_t) "abc"[i]);
		assert_int_equal(f->pio[3 + i].port, 0x3f8);
	}
	assert_int_equal(reg(f, R_SI), DATA + 3);
	assert_int_equal(reg(f, R_CX), 0);
	assert_int_equal(f->c.idtr.base, 0x20000);
	assert_int_equal(f->c.idtr.limit, 0x7ff);
	assert_int_equal(gm_read(&f->gm, DATA + 0x20, sidt, 6), 0);
	assert_memory_equal(sidt, idt_desc, 6);
	assert_true(f->c.r.rflags & RF_IF);
	/* cpuid: the engine's answer */
	to_hlt(f);
	assert_int_equal(f->cpuids, 1);
	assert_int_equal(reg(f, R_AX), 0xd);
	assert_int_equal(reg(f, R_BX), 0x68656172);
	assert_int_equal(reg(f, R_CX), 1);
	assert_int_equal(reg(f, R_DX), 0x74680000);
	/* rdtsc: the host's */
	t0 = __builtin_ia32_rdtsc();
	to_hlt(f);
	t1 = __builtin_ia32_rdtsc();
	tsc = (uint64_t)reg(f, R_DX) << 32 | reg(f, R_AX);
	assert_true(tsc >= t0 && tsc <= t1);
	/* clearing CR0.PE: real mode, which this interpreter does not run */
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_int_equal(f->out.steps, 4);
	assert_non_null(strstr(f->out.why, "real mode"));
	assert_int_equal(f->c.r.rip, 0x10051);
}

/* With no cpuid op, cpuid is the host's, as for native user-mode code. */
static void test_cpuid_host(void **state)
{
	struct fx *f = *state;
	struct guest_cpu_ops no_cpuid = ops;
	unsigned a, b, c, d;

	no_cpuid.cpuid = NULL;
	f->c.ops = &no_cpuid;
	CODE32(f, 0x31, 0xc0, /* 10000: xor %eax,%eax */
	       0x0f, 0xa2,    /* 10002: cpuid */
	       0xf4,          /* 10004: hlt */
	);
	to_hlt(f);
	__cpuid_count(0, 0, a, b, c, d);
	assert_int_equal(reg(f, R_AX), a);
	assert_int_equal(reg(f, R_BX), b);
	assert_int_equal(reg(f, R_CX), c);
	assert_int_equal(reg(f, R_DX), d);
	assert_int_equal(f->cpuids, 0);
}

/* ---- budget, refusals, faults ------------------------------------------------------------------
 */

static void test_budget_and_resume(void **state)
{
	struct fx *f = *state;
	unsigned calls = 0;
	uint64_t total = 0;
	enum interp_result r;

	CODE32(f, 0x31, 0xc0,                /* 10000: xor %eax,%eax */
	       0xb9, 0xe8, 0x03, 0x00, 0x00, /* 10002: mov $0x3e8,%ecx */
	       0x01, 0xc8,                   /* 10007: 1: add %ecx,%eax */
	       0xe2, 0xfc,                   /* 10009: loop 1b */
	       0xf4,                         /* 1000b: hlt */
	       0xbf, 0x00, 0x00, 0x10, 0x00, /* 1000c: mov $0x100000,%edi */
	       0xb9, 0x00, 0x30, 0x00, 0x00, /* 10011: mov $0x3000,%ecx */
	       0xf3, 0xaa,                   /* 10016: rep stosb */
	       0xf4,                         /* 10018: hlt */
	);
	/* no budget: nothing done */
	assert_int_equal(run(f, 0), INTERP_BUDGET);
	assert_int_equal(f->out.steps, 0);
	assert_int_equal(f->c.r.rip, CODE);
	/* 2003 instructions, 100 at a time */
	while ((r = run(f, 100)) == INTERP_BUDGET) {
		assert_int_equal(f->out.steps, 100);
		total += 100;
		calls++;
	}
	assert_int_equal(r, INTERP_HALT);
	total += f->out.steps;
	assert_int_equal(calls, 20);
	assert_int_equal(total, 2003);
	assert_int_equal(reg(f, R_AX), 500500);
	assert_int_equal(reg(f, R_CX), 0);
	/* a rep string stops between its chunks and goes on */
	f->c.r.gpr[R_AX] = 0x5a;
	assert_int_equal(run(f, 3), INTERP_BUDGET);
	assert_int_equal(f->c.r.rip, 0x10016);
	assert_int_equal(reg(f, R_CX), 0x2000);
	assert_int_equal(reg(f, R_DI), 0x101000);
	assert_int_equal(run(f, 1), INTERP_BUDGET);
	assert_int_equal(f->c.r.rip, 0x10016);
	assert_int_equal(reg(f, R_CX), 0x1000);
	to_hlt(f);
	assert_int_equal(f->out.steps, 2);
	assert_int_equal(reg(f, R_CX), 0);
	assert_int_equal(reg(f, R_DI), 0x103000);
	assert_int_equal(get32(f, 0x102ffc), 0x5a5a5a5a);
}

/* What the interpreter does not do is named, with where and the bytes, and stops the VM. */
static void test_unsupported(void **state)
{
	struct fx *f = *state;
	static const struct {
		uint8_t b[8];
		size_t n;
		const char *what;
	} cases[] = {
	    {{0xd9, 0xe8}, 2, "(bytes: d9 e8 "},                   /* fld1 */
	    {{0xdb, 0xe4}, 2, "(bytes: db e4 "},                   /* fnsetpm (287 only) */
	    {{0xdb, 0x2d, 0, 0, 1, 0}, 6, "(bytes: db 2d "},       /* fldt 0x10000 */
	    {{0x67, 0x6e}, 2, "string port I/O"},                  /* outsb (%si),(%dx) */
	    {{0xc8, 0x08, 0x00, 0x01}, 4, "nesting level"},        /* enter $8,$1 */
	    {{0x0f, 0x05}, 2, "does not implement"},               /* syscall */
	    {{0x66, 0x0f, 0x6f, 0xc1}, 4, "(bytes: 66 0f 6f c1 "}, /* movdqa %xmm1,%xmm0 */
	    {{0x68, 0x00, 0x01, 0x00, 0x00, 0x9d}, 6, "TF"},       /* push $0x100; popf */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		put(f, CODE, cases[i].b, cases[i].n);
		f->c.r.rip = CODE;
		f->c.r.gpr[R_SP] = STACK;
		f->stops = 0;
		assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
		if (!strstr(f->out.why, cases[i].what))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, f->out.why, cases[i].what);
		assert_non_null(strstr(f->out.why, "eip=0x000100"));
		assert_int_equal(f->stops, 1);
		assert_int_equal(f->stop_how, CPU_STOP_REFUSED);
		assert_string_equal(f->stop_why, f->out.why);
	}
	/* the first one, in full: its length unknown, the 8 bytes at EIP */
	put(f, CODE, "\xd9\xe8\x90\x90\x90\x90\x90\x90\x90", 9);
	f->c.r.rip = CODE;
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_string_equal(f->out.why,
	                    "32-bit interpreter: an instruction the interpreter does not "
	                    "implement at eip=0x00010000 (bytes: d9 e8 90 90 90 90 90 "
	                    "90)");
	assert_int_equal(f->c.r.rip, CODE); /* not executed */
	/* fninit and fnclex: the x87 state is still the reset state, nothing to do */
	put(f, CODE, "\xdb\xe3\xdb\xe2\x9b\xf4", 6); /* fninit; fnclex; fwait; hlt */
	f->c.r.rip = CODE;
	f->stops = 0;
	assert_int_equal(run(f, 10), INTERP_HALT);
	assert_int_equal(f->c.r.rip, CODE + 6);
	assert_int_equal(f->stops, 0);
	/* iret with NT set: a task return */
	f->c.r.rflags |= RF_NT;
	CODE32(f, 0xcf); /* iret */
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "task return"));
}

/* With paging off, an access where there is no RAM is not for entry code: refused. */
static void test_not_ram(void **state)
{
	struct fx *f = *state;

	CODE32(f, 0xa1, 0xb0, 0x00, 0xe0, 0xfe, /* 10000: mov 0xfee000b0,%eax */
	);
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "a load from 0xfee000b0, which is not guest RAM"));
	/* code there */
	f->c.r.rip = MEM + 0x1000;
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "code at 0x00801000"));
	assert_non_null(strstr(f->out.why, "(bytes: none)"));
	/* an instruction cut off by the end of RAM */
	{
		static const uint8_t mov[] = {0xb8, 0x01}; /* mov $imm32,%eax, 3 bytes short */

		put(f, MEM - 2, mov, 2);
		f->c.r.rip = MEM - 2;
		assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
		assert_non_null(strstr(f->out.why, "code at 0x00800000"));
	}
}

/* lock only on a read-modify-write of memory; a bare 15-byte limit. */
static void test_lock_and_length(void **state)
{
	struct fx *f = *state;
	uint8_t code[16];

	idt_of_hlts(f);
	put32(f, DATA, 5);
	f->c.r.gpr[R_BX] = DATA;
	f->c.r.gpr[R_AX] = 3;
	CODE32(f, 0xf0, 0x01, 0x03, /* 10000: lock add %eax,(%ebx) */
	       0xf0, 0x01, 0xc3,    /* 10003: lock add %eax,%ebx */
	);
	to_hlt(f);
	assert_int_equal(get32(f, DATA), 8);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_UD + 1);
	assert_int_equal(get32(f, STACK - 12), 0x10003);
	/* 14 prefixes and a nop: 15 bytes, fine; 15 prefixes: #GP */
	memset(code, 0x3e, sizeof(code));
	code[14] = 0x90;
	put(f, CODE, code, 15);
	f->c.r.rip = CODE;
	f->c.r.gpr[R_SP] = STACK;
	assert_int_equal(run(f, 1), INTERP_BUDGET);
	assert_int_equal(f->c.r.rip, CODE + 15);
	code[14] = 0x3e;
	code[15] = 0x90;
	put(f, CODE, code, 16);
	f->c.r.rip = CODE;
	to_hlt(f);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_GP + 1);
}

static void test_operand_size_16(void **state)
{
	struct fx *f = *state;

	f->c.r.gpr[R_AX] = 0x12340000;
	CODE32(f, 0x66, 0xb8, 0xff, 0x7f, /* 10000: mov $0x7fff,%ax */
	       0x66, 0x83, 0xc0, 0x01,    /* 10004: add $0x1,%ax */
	       0x66, 0x50,                /* 10008: push %ax */
	       0x66, 0x0f, 0xb6, 0xd8,    /* 1000a: movzbw %al,%bx */
	       0xf4,                      /* 1000e: hlt */
	);
	f->c.r.gpr[R_BX] = 0xffffffff;
	to_hlt(f);
	assert_int_equal(reg(f, R_AX), 0x12348000);
	flags_are(f, ARITH, OF | SF | AF | PF);
	assert_int_equal(reg(f, R_SP), STACK - 2);
	assert_int_equal(get32(f, STACK - 2) & 0xffff, 0x8000);
	assert_int_equal(reg(f, R_BX), 0xffff0000); /* movzbw: BX = AL */
}

/* Compatibility mode: CR0.PG is set, the far jump to 64-bit code has not come yet. The
 * guest's tables map 0-10 MiB (RAM ends at 8), 2-4 MiB with 4 KiB pages of which 0x250000 is
 * not present; its IDT is a 64-bit one whose handlers are 64-bit code. */
#define PG_ROOT 0x600000u
#define HOLE    0x250000u

static void compat_mode(struct fx *f)
{
	uint64_t e;

	assert_int_equal(gm_fill(&f->gm, PG_ROOT, 0, 4 * 4096), 0);
	e = (PG_ROOT + 0x1000) | 3;
	put(f, PG_ROOT, &e, 8);
	e = (PG_ROOT + 0x2000) | 3;
	put(f, PG_ROOT + 0x1000, &e, 8);
	for (unsigned i = 0; i < 5; i++) { /* the fifth: 8-10 MiB, beyond RAM */
		e = i == 1 ? (PG_ROOT + 0x3000) | 3 : (uint64_t)i << 21 | 0x83;
		put(f, PG_ROOT + 0x2000 + 8 * i, &e, 8);
	}
	for (unsigned i = 0; i < 512; i++) {
		e = 0x200000 + 4096 * i == HOLE ? 0 : (0x200000 + 4096ULL * i) | 3;
		put(f, PG_ROOT + 0x3000 + 8 * i, &e, 8);
	}
	for (unsigned v = 0; v < 256; v++) {
		uint64_t target = HANDLER + 16 * v;
		uint64_t g[2] = {(target & 0xffff) | ((uint64_t)SEL_CODE64 << 16) |
		                     (0x8eULL << 40) | ((target >> 16 & 0xffff) << 48),
		                 0};

		put(f, IDT + 16 * v, g, 16);
	}
	f->c.idtr.base = IDT;
	f->c.idtr.limit = 256 * 16 - 1;
	f->c.cr3 = PG_ROOT;
	f->c.cr4 = CR4_PAE;
	f->c.efer = EFER_LME | EFER_LMA | EFER_NXE;
	f->c.cr0 |= CR0_PG;
}

static uint64_t q(struct fx *f, uint64_t addr)
{
	return rd64(f, addr);
}

static void test_compat_mode_faults(void **state)
{
	struct fx *f = *state;
	static const uint8_t straddle[] = {0xb8, 0x01, 0x02}; /* mov $imm32,%eax, cut by the hole */

	compat_mode(f);
	assert_int_equal(gm_fill(&f->gm, HOLE - 2, 0xee, 2), 0);
	CODE32(f, 0xbb, 0x00, 0x00, 0x25, 0x00, /* 10000: mov $0x250000,%ebx */
	       0x8b, 0x03,                      /* 10005: mov (%ebx),%eax */
	       0xa3, 0xfe, 0xff, 0x24, 0x00,    /* 10007: mov %eax,0x24fffe */
	);
	/* a load from the hole: #PF through the 64-bit IDT, whose handler is 64-bit code */
	assert_int_equal(run(f, 10), INTERP_LONG_MODE);
	assert_int_equal(f->out.steps, 2);
	assert_int_equal(f->c.cs, SEL_CODE64);
	assert_int_equal(f->c.r.rip, HANDLER + 16 * V_PF);
	assert_int_equal(f->c.cr2, HOLE);
	assert_int_equal(f->c.r.gpr[R_SP], STACK - 48);
	assert_int_equal(q(f, STACK - 48), 0);       /* error code: not present, read */
	assert_int_equal(q(f, STACK - 40), 0x10005); /* the faulting instruction */
	assert_int_equal(q(f, STACK - 32), SEL_CODE32);
	assert_int_equal(q(f, STACK - 16), STACK);
	assert_int_equal(q(f, STACK - 8), SEL_DATA);
	/* a store across into the hole: nothing written, CR2 the hole, W in the error code */
	f->c.cs = SEL_CODE32;
	f->c.r.rip = 0x10007;
	f->c.r.gpr[R_SP] = STACK;
	f->c.r.gpr[R_AX] = 0x11223344;
	assert_int_equal(run(f, 10), INTERP_LONG_MODE);
	assert_int_equal(f->c.cr2, HOLE);
	assert_int_equal(q(f, STACK - 48), PF_W);
	assert_int_equal(get32(f, HOLE - 4) >> 16, 0xeeee);
	/* an instruction running into the hole: an instruction fetch (I, with NXE) */
	put(f, HOLE - 3, straddle, sizeof(straddle));
	f->c.cs = SEL_CODE32;
	f->c.r.rip = HOLE - 3;
	f->c.r.gpr[R_SP] = STACK;
	assert_int_equal(run(f, 10), INTERP_LONG_MODE);
	assert_int_equal(f->out.steps, 1);
	assert_int_equal(f->c.cr2, HOLE);
	assert_int_equal(q(f, STACK - 48), PF_I);
	assert_int_equal(q(f, STACK - 40), HOLE - 3);
	/* mapped, but not to RAM: not for entry code */
	f->c.cs = SEL_CODE32;
	f->c.r.gpr[R_SP] = STACK;
	CODE32(f, 0xa1, 0x10, 0x00, 0x80, 0x00, /* 10000: mov 0x800010,%eax */
	);
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "a load from 0x00800010 (guest-physical 0x800010), "
	                                   "which is not guest RAM"));
}

/* ---- whole entry sequences ------------------------------------------------------------------ */

/*
 * PVH entry code as kernels write it (after Linux's arch/x86/platform/pvh/head.S, with page
 * tables built at run time as other PVH stubs do): find the load address with call/pop,
 * patch and load a GDT, load the data segments, copy the start info with rep movsl, clear
 * six pages of tables with rep stosl, link PML4 -> PDPT -> four PDs in a loop, fill the 2048
 * 2 MiB entries of the PDs in a loop (identity map of 4 GiB), CR4.PAE, CR3, EFER.LME with
 * rdmsr / bts / wrmsr, CR0.PG | PE, then push the 64-bit selector and target and lret.
 */
#define PVH_BASE 0x200000u
#define PT_PML4  0x300000u
#define PT_PDPT  0x301000u
#define PT_PD    0x302000u

static void test_pvh_entry_builds_tables(void **state)
{
	struct fx *f = *state;
	static const uint8_t gdt_desc[8] = {0x1f, 0x00}; /* limit 31; base patched by the code */
	static const uint64_t gdt[] = {
	    0,                     /* null */
	    0x00cf9b000000ffffULL, /* 0x08: 32-bit code */
	    0x00af9b000000ffffULL, /* 0x10: 64-bit code */
	    0x00cf93000000ffffULL, /* 0x18: data */
	};
	const uint32_t magic = 0x336ec578; /* hvm_start_info.magic */
	uint32_t si[8];

	/* dirty the table pages: the code must clear them */
	assert_int_equal(gm_fill(&f->gm, PT_PML4, 0xa5, 6 * 4096), 0);
	for (unsigned i = 0; i < 8; i++)
		si[i] = magic + i;
	put(f, START_INFO, si, sizeof(si));
	put(f, PVH_BASE + 0xd0, gdt_desc, sizeof(gdt_desc));
	put(f, PVH_BASE + 0xd8, gdt, sizeof(gdt));
	CODE_AT(f, PVH_BASE, 0xfa,                  /* 200000: cli */
	        0xfc,                               /* 200001: cld */
	        0x8b, 0x03,                         /* 200002: mov (%ebx),%eax */
	        0x8d, 0x63, 0x04,                   /* 200004: lea 0x4(%ebx),%esp */
	        0xe8, 0x00, 0x00, 0x00, 0x00,       /* 200007: call 20000c */
	        0x5d,                               /* 20000c: pop %ebp */
	        0x89, 0x03,                         /* 20000d: mov %eax,(%ebx) */
	        0x83, 0xed, 0x0c,                   /* 20000f: sub $0xc,%ebp */
	        0x8d, 0x85, 0xd0, 0x00, 0x00, 0x00, /* 200012: lea 0xd0(%ebp),%eax (gdt_desc) */
	        0x8d, 0x8d, 0xd8, 0x00, 0x00, 0x00, /* 200018: lea 0xd8(%ebp),%ecx (gdt) */
	        0x89, 0x48, 0x02,                   /* 20001e: mov %ecx,0x2(%eax) */
	        0x0f, 0x01, 0x10,                   /* 200021: lgdtl (%eax) */
	        0xb8, 0x18, 0x00, 0x00, 0x00,       /* 200024: mov $0x18,%eax */
	        0x8e, 0xd8,                         /* 200029: mov %eax,%ds */
	        0x8e, 0xc0,                         /* 20002b: mov %eax,%es */
	        0x8e, 0xd0,                         /* 20002d: mov %eax,%ss */
	        0x8d, 0xa5, 0x58, 0x01, 0x00, 0x00, /* 20002f: lea 0x158(%ebp),%esp */
	        0x8d, 0xbd, 0xf8, 0x00, 0x00, 0x00, /* 200035: lea 0xf8(%ebp),%edi */
	        0x89, 0xde,                         /* 20003b: mov %ebx,%esi */
	        0xb9, 0x08, 0x00, 0x00, 0x00,       /* 20003d: mov $0x8,%ecx */
	        0xf3, 0xa5,                         /* 200042: rep movsl */
	        0xbf, 0x00, 0x00, 0x30, 0x00,       /* 200044: mov $0x300000,%edi */
	        0x31, 0xc0,                         /* 200049: xor %eax,%eax */
	        0xb9, 0x00, 0x18, 0x00, 0x00,       /* 20004b: mov $0x1800,%ecx */
	        0xf3, 0xab,                         /* 200050: rep stos %eax,%es:(%edi) */
	        0xc7, 0x05, 0x00, 0x00, 0x30, 0x00, /* 200052: movl $0x301003,0x300000 */
	        0x03, 0x10, 0x30, 0x00,             /*         (imm32) */
	        0xbf, 0x00, 0x10, 0x30, 0x00,       /* 20005c: mov $0x301000,%edi */
	        0xb8, 0x03, 0x20, 0x30, 0x00,       /* 200061: mov $0x302003,%eax */
	        0xb9, 0x04, 0x00, 0x00, 0x00,       /* 200066: mov $0x4,%ecx */
	        0x89, 0x07,                         /* 20006b: 1: mov %eax,(%edi) */
	        0x05, 0x00, 0x10, 0x00, 0x00,       /* 20006d: add $0x1000,%eax */
	        0x83, 0xc7, 0x08,                   /* 200072: add $0x8,%edi */
	        0xe2, 0xf4,                         /* 200075: loop 1b */
	        0xbf, 0x00, 0x20, 0x30, 0x00,       /* 200077: mov $0x302000,%edi */
	        0xb8, 0x83, 0x00, 0x00, 0x00,       /* 20007c: mov $0x83,%eax */
	        0x31, 0xc9,                         /* 200081: xor %ecx,%ecx */
	        0x89, 0x04, 0xcf,                   /* 200083: 2: mov %eax,(%edi,%ecx,8) */
	        0xc7, 0x44, 0xcf, 0x04,             /* 200086: movl $0x0,0x4(%edi,%ecx,8) */
	        0x00, 0x00, 0x00, 0x00,             /*         (imm32) */
	        0x05, 0x00, 0x00, 0x20, 0x00,       /* 20008e: add $0x200000,%eax */
	        0x41,                               /* 200093: inc %ecx */
	        0x81, 0xf9, 0x00, 0x08, 0x00, 0x00, /* 200094: cmp $0x800,%ecx */
	        0x72, 0xe7,                         /* 20009a: jb 2b */
	        0x0f, 0x20, 0xe0,                   /* 20009c: mov %cr4,%eax */
	        0x83, 0xc8, 0x20,                   /* 20009f: or $0x20,%eax */
	        0x0f, 0x22, 0xe0,                   /* 2000a2: mov %eax,%cr4 */
	        0xb8, 0x00, 0x00, 0x30, 0x00,       /* 2000a5: mov $0x300000,%eax */
	        0x0f, 0x22, 0xd8,                   /* 2000aa: mov %eax,%cr3 */
	        0xb9, 0x80, 0x00, 0x00, 0xc0,       /* 2000ad: mov $0xc0000080,%ecx */
	        0x0f, 0x32,                         /* 2000b2: rdmsr */
	        0x0f, 0xba, 0xe8, 0x08,             /* 2000b4: bts $0x8,%eax */
	        0x0f, 0x30,                         /* 2000b8: wrmsr */
	        0x0f, 0x20, 0xc0,                   /* 2000ba: mov %cr0,%eax */
	        0x0d, 0x01, 0x00, 0x00, 0x80,       /* 2000bd: or $0x80000001,%eax */
	        0x0f, 0x22, 0xc0,                   /* 2000c2: mov %eax,%cr0 */
	        0x6a, 0x10,                         /* 2000c5: push $0x10 */
	        0x8d, 0x85, 0x58, 0x01, 0x00, 0x00, /* 2000c7: lea 0x158(%ebp),%eax (entry64) */
	        0x50,                               /* 2000cd: push %eax */
	        0xcb,                               /* 2000ce: lret */
	);
	assert_int_equal(run(f, 100000), INTERP_LONG_MODE);
	/* the 64-bit code at entry64, in long mode with the guest's tables */
	assert_int_equal(f->c.r.rip, PVH_BASE + 0x158);
	assert_int_equal(f->c.cs, 0x10);
	assert_int_equal(f->c.cr0, CR0_PG | CR0_ET | CR0_PE);
	assert_int_equal(f->c.cr4, CR4_PAE);
	assert_int_equal(f->c.cr3, PT_PML4);
	assert_int_equal(f->c.efer, EFER_LME | EFER_LMA);
	assert_true(cpu_long_mode(&f->c) && cpu_code64(&f->c));
	assert_int_equal(f->c.gdtr.base, PVH_BASE + 0xd8);
	assert_int_equal(f->c.gdtr.limit, 31);
	assert_int_equal(f->gdt_loads, 1);
	assert_int_equal(f->paging_changes, 2); /* CR3, CR0 */
	assert_int_equal(f->c.ds, 0x18);
	assert_int_equal(f->c.es, 0x18);
	assert_int_equal(f->c.ss, 0x18);
	assert_int_equal(f->c.r.gpr[R_SP], PVH_BASE + 0x158); /* the lret frame popped */
	assert_int_equal(f->c.r.gpr[R_BP], PVH_BASE);
	assert_int_equal(f->c.r.gpr[R_SI], START_INFO + 32);
	assert_int_equal(f->c.r.gpr[R_DI], PT_PD);
	/* the start info: its magic put back, and copied */
	assert_int_equal(get32(f, START_INFO), magic);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(get32(f, PVH_BASE + 0xf8 + 4 * i), magic + i);
	/* the tables */
	assert_int_equal(rd64(f, PT_PML4), PT_PDPT | 3);
	for (unsigned i = 1; i < 512; i++)
		assert_int_equal(rd64(f, PT_PML4 + 8 * i), 0);
	for (unsigned i = 0; i < 512; i++)
		assert_int_equal(rd64(f, PT_PDPT + 8 * i), i < 4 ? (PT_PD + 0x1000 * i) | 3 : 0);
	for (unsigned i = 0; i < 2048; i++)
		assert_int_equal(rd64(f, PT_PD + 8 * i), (uint64_t)i * 0x200000 | 0x83);
	/* ~6 instructions per entry, a few rep chunks: the budget of a real entry */
	assert_true(f->out.steps > 12288 && f->out.steps < 13000);
	assert_int_equal(f->stops, 0);
}

/*
 * The bundled guests' entry (resources/guests/rt/entry.S), its 32-bit part: straight-line,
 * page tables prebuilt in the image, ljmp to the 64-bit selector. Laid out as the linker
 * would: pvh_entry at 0x100020, long_entry right after, gdt at 0x100a00, gdt_ptr at 0x100a18,
 * pml4 / pdpt / pd at 0x102000 / 0x103000 / 0x104000.
 */
static void test_rt_guest_entry(void **state)
{
	struct fx *f = *state;
	static const uint64_t gdt[] = {
	    0,                     /* null */
	    0x00af9b000000ffffULL, /* 0x08: code, L=1 */
	    0x00cf93000000ffffULL, /* 0x10: data, 4 GiB flat */
	};
	static const uint8_t gdt_ptr[6] = {0x17, 0x00, 0x00, 0x0a, 0x10, 0x00};
	const uint64_t table = 0x23, leaf = 0xe3; /* P RW A; P RW A D PS */

	put(f, 0x100a00, gdt, sizeof(gdt));
	put(f, 0x100a18, gdt_ptr, sizeof(gdt_ptr));
	assert_int_equal(gm_fill(&f->gm, 0x102000, 0, 6 * 4096), 0);
	for (unsigned i = 0; i < 2048; i++) {
		uint64_t e = (uint64_t)i * 0x200000 + leaf;

		put(f, 0x104000 + 8 * i, &e, 8);
		if (i < 4) {
			e = 0x104000 + 0x1000 * i + table;
			put(f, 0x103000 + 8 * i, &e, 8);
		}
	}
	{
		uint64_t e = 0x103000 + table;

		put(f, 0x102000, &e, 8);
	}
	CODE_AT(f, 0x100020, 0xfa,                        /* 100020: cli */
	        0xfc,                                     /* 100021: cld */
	        0x89, 0xde,                               /* 100022: mov %ebx,%esi */
	        0x0f, 0x01, 0x15, 0x18, 0x0a, 0x10, 0x00, /* 100024: lgdtl 0x100a18 (gdt_ptr) */
	        0xb8, 0x20, 0x00, 0x00, 0x00,             /* 10002b: mov $0x20,%eax */
	        0x0f, 0x22, 0xe0,                         /* 100030: mov %eax,%cr4 */
	        0xb8, 0x00, 0x20, 0x10, 0x00,             /* 100033: mov $0x102000,%eax (pml4) */
	        0x0f, 0x22, 0xd8,                         /* 100038: mov %eax,%cr3 */
	        0xb9, 0x80, 0x00, 0x00, 0xc0,             /* 10003b: mov $0xc0000080,%ecx */
	        0xb8, 0x00, 0x01, 0x00, 0x00,             /* 100040: mov $0x100,%eax */
	        0x31, 0xd2,                               /* 100045: xor %edx,%edx */
	        0x0f, 0x30,                               /* 100047: wrmsr */
	        0x0f, 0x20, 0xc0,                         /* 100049: mov %cr0,%eax */
	        0x0d, 0x01, 0x00, 0x00, 0x80,             /* 10004c: or $0x80000001,%eax */
	        0x0f, 0x22, 0xc0,                         /* 100051: mov %eax,%cr0 */
	        0xea, 0x5b, 0x00, 0x10, 0x00, 0x08, 0x00, /* 100054: ljmp $0x8,$0x10005b */
	);
	f->c.r.rflags |= RF_IF;
	assert_int_equal(run(f, 1000), INTERP_LONG_MODE);
	assert_int_equal(f->out.steps, 16);
	assert_int_equal(f->c.r.rip, 0x10005b);
	assert_int_equal(f->c.cs, SEL_CODE64);
	assert_int_equal(f->c.r.gpr[R_SI], START_INFO);
	assert_int_equal(f->c.cr0, CR0_PG | CR0_ET | CR0_PE);
	assert_int_equal(f->c.cr3, 0x102000);
	assert_int_equal(f->c.cr4, CR4_PAE);
	assert_int_equal(f->c.efer, EFER_LME | EFER_LMA);
	assert_int_equal(f->c.gdtr.base, 0x100a00);
	assert_int_equal(f->c.gdtr.limit, 0x17);
	assert_false(f->c.r.rflags & (RF_IF | RF_DF));
	assert_true(cpu_code64(&f->c));
}

/* ---- application processors: from the SIPI state through real mode ---------------------- */

/* Identity-mapped 8 MiB (2 MiB pages) at PT_PML4, for the trampolines below. */
static void identity_tables(struct fx *f)
{
	uint64_t e;

	assert_int_equal(gm_fill(&f->gm, PT_PML4, 0, 3 * 4096), 0);
	e = PT_PDPT | 3;
	put(f, PT_PML4, &e, 8);
	e = PT_PD | 3;
	put(f, PT_PDPT, &e, 8);
	for (unsigned i = 0; i < 4; i++) {
		e = (uint64_t)i * 0x200000 | 0x83;
		put(f, PT_PD + 8 * i, &e, 8);
	}
}

/* The state INIT and a SIPI leave, as the SDM tables it. */
static void test_sipi_state(void **state)
{
	struct fx *f = *state;

	f->c.r.gpr[R_AX] = f->c.r.gpr[R_R8] = 0x1234;
	f->c.efer = EFER_LME | EFER_LMA;
	f->c.cr4 = CR4_PAE;
	f->c.fs_base = 0x5000;
	interp_sipi_state(&f->c, 0x9a);
	assert_int_equal(f->c.cr0, 0x60000010);
	assert_int_equal(f->c.cr3, 0);
	assert_int_equal(f->c.cr4, 0);
	assert_int_equal(f->c.efer, 0);
	assert_int_equal(f->c.r.rflags, 2);
	assert_int_equal(f->c.r.rip, 0);
	assert_int_equal(f->c.r.gpr[R_AX], 0);
	assert_int_equal(f->c.r.gpr[R_R8], 0);
	assert_int_equal(f->c.r.gpr[R_DX], 1); /* CPUID.1:EAX, from the cpuid op */
	assert_int_equal(f->c.cs, 0x9a00);
	assert_int_equal(f->c.hidden.base[SH_CS], 0x9a000);
	assert_int_equal(f->c.ds | f->c.es | f->c.ss | f->c.fs | f->c.gs, 0);
	assert_int_equal(f->c.hidden.base[SH_DS] | f->c.hidden.base[SH_ES] |
	                     f->c.hidden.base[SH_SS] | (uint32_t)f->c.fs_base,
	                 0);
	assert_true(f->c.hidden.code16 && f->c.hidden.stack16);
	assert_int_equal(f->c.gdtr.base, 0);
	assert_int_equal(f->c.gdtr.limit, 0xffff);
	assert_int_equal(f->c.idtr.base, 0);
	assert_int_equal(f->c.idtr.limit, 0xffff);
	assert_false(cpu_can_deliver(&f->c));
	/* hlt right there: the AP waits (IF is clear) */
	CODE_AT(f, 0x9a000, 0xf4);
	f->c.r.rip = 0;
	assert_int_equal(run(f, 10), INTERP_HALT);
	assert_int_equal(f->c.r.rip, 1);
	assert_int_equal(f->stops, 0);
}

/*
 * Linux's AP trampoline (arch/x86/realmode/rm/trampoline_64.S) in outline, at SIPI vector
 * 0x08: a far jump to fix CS, DS = ES = SS = CS, a real-mode stack and a call to a CPU
 * check (pushf / popf, cpuid), lidtl and lgdtl of DS-relative pointers, CR0.PE through
 * `mov %cr0`, ljmpl to 32-bit code, which loads the data segments, enables PAE, long mode
 * and paging, and far-jumps to 64-bit code. The data after the code: tr_gdt at 0x80a8 (its
 * GDT at 0x80b0: 0x08 64-bit code, 0x10 32-bit code, 0x18 data), tr_idt at 0x80d0, tr_cr4
 * at 0x80d8, tr_efer at 0x80e0.
 */
static void test_ap_linux_trampoline(void **state)
{
	struct fx *f = *state;
	static const uint16_t tr_gdt[4] = {0x1f, 0x80b0, 0, 0};
	static const uint64_t gdt[] = {
	    0, 0x00af9b000000ffffULL, /* 0x08: 64-bit code */
	    0x00cf9b000000ffffULL,    /* 0x10: 32-bit code */
	    0x00cf93000000ffffULL,    /* 0x18: data */
	};
	static const uint64_t tr_idt = 0, tr_cr4 = CR4_PAE, tr_efer = EFER_LME;

	identity_tables(f);
	put(f, 0x80a8, tr_gdt, sizeof(tr_gdt));
	put(f, 0x80b0, gdt, sizeof(gdt));
	put(f, 0x80d0, &tr_idt, 8);
	put(f, 0x80d8, &tr_cr4, 8);
	put(f, 0x80e0, &tr_efer, 8);
	CODE_AT(f, 0x8000, 0xfa,                                /* 8000: cli */
	        0x0f, 0x09,                                     /* 8001: wbinvd */
	        0xea, 0x08, 0x00, 0x00, 0x08,                   /* 8003: ljmp $0x800,$0x8 */
	        0x8c, 0xc8,                                     /* 8008: mov %cs,%ax */
	        0x8e, 0xd8,                                     /* 800a: mov %ax,%ds */
	        0x8e, 0xc0,                                     /* 800c: mov %ax,%es */
	        0x8e, 0xd0,                                     /* 800e: mov %ax,%ss */
	        0x66, 0xbc, 0x00, 0x10, 0x00, 0x00,             /* 8010: mov $0x1000,%esp */
	        0xe8, 0x26, 0x00,                               /* 8016: call 803f */
	        0x66, 0x85, 0xc0,                               /* 8019: test %eax,%eax */
	        0x75, 0x45,                                     /* 801c: jne 8063 */
	        0x66, 0x0f, 0x01, 0x1e, 0xd0, 0x00,             /* 801e: lidtl 0xd0 */
	        0x66, 0x0f, 0x01, 0x16, 0xa8, 0x00,             /* 8024: lgdtl 0xa8 */
	        0xba, 0x18, 0x00,                               /* 802a: mov $0x18,%dx */
	        0x0f, 0x20, 0xc0,                               /* 802d: mov %cr0,%eax */
	        0x66, 0x83, 0xc8, 0x01,                         /* 8030: or $0x1,%eax */
	        0x0f, 0x22, 0xc0,                               /* 8034: mov %eax,%cr0 */
	        0x66, 0xea, 0x64, 0x80, 0x00, 0x00, 0x10, 0x00, /* 8037: ljmpl $0x10,$0x8064 */
	        0x9c,                                           /* 803f: pushf */
	        0x6a, 0x00,                                     /* 8040: push $0x0 */
	        0x9d,                                           /* 8042: popf */
	        0x66, 0x9c,                                     /* 8043: pushfl */
	        0x66, 0x58,                                     /* 8045: pop %eax */
	        0x66, 0xb8, 0x01, 0x00, 0x00, 0x80,             /* 8047: mov $0x80000001,%eax */
	        0x0f, 0xa2,                                     /* 804d: cpuid */
	        0x66, 0x0f, 0xba, 0xe2, 0x1d,                   /* 804f: bt $0x1d,%edx */
	        0x73, 0x05,                                     /* 8054: jae 805b */
	        0x9d,                                           /* 8056: popf */
	        0x66, 0x31, 0xc0,                               /* 8057: xor %eax,%eax */
	        0xc3,                                           /* 805a: ret */
	        0x9d,                                           /* 805b: popf */
	        0x66, 0xb8, 0x01, 0x00, 0x00, 0x00,             /* 805c: mov $0x1,%eax */
	        0xc3,                                           /* 8062: ret */
	        0xf4,                                           /* 8063: hlt */
	        0x8e, 0xd2,                                     /* 8064: mov %edx,%ss */
	        0x81, 0xc4, 0x00, 0x80, 0x00, 0x00,             /* 8066: add $0x8000,%esp */
	        0x8e, 0xda,                                     /* 806c: mov %edx,%ds */
	        0x8e, 0xc2,                                     /* 806e: mov %edx,%es */
	        0x8e, 0xe2,                                     /* 8070: mov %edx,%fs */
	        0x8e, 0xea,                                     /* 8072: mov %edx,%gs */
	        0xa1, 0xd8, 0x80, 0x00, 0x00,                   /* 8074: mov 0x80d8,%eax */
	        0x0f, 0x22, 0xe0,                               /* 8079: mov %eax,%cr4 */
	        0xb8, 0x00, 0x00, 0x30, 0x00,                   /* 807c: mov $0x300000,%eax */
	        0x0f, 0x22, 0xd8,                               /* 8081: mov %eax,%cr3 */
	        0xb9, 0x80, 0x00, 0x00, 0xc0,                   /* 8084: mov $0xc0000080,%ecx */
	        0x0f, 0x32,                                     /* 8089: rdmsr */
	        0xa1, 0xe0, 0x80, 0x00, 0x00,                   /* 808b: mov 0x80e0,%eax */
	        0x8b, 0x15, 0xe4, 0x80, 0x00, 0x00,             /* 8090: mov 0x80e4,%edx */
	        0x0f, 0x30,                                     /* 8096: wrmsr */
	        0xb8, 0x11, 0x00, 0x00, 0x80,                   /* 8098: mov $0x80000011,%eax */
	        0x0f, 0x22, 0xc0,                               /* 809d: mov %eax,%cr0 */
	        0xea, 0xa7, 0x80, 0x00, 0x00, 0x08, 0x00,       /* 80a0: ljmp $0x8,$0x80a7 */
	        0xf4,                                           /* 80a7: hlt */
	);
	interp_sipi_state(&f->c, 0x08);
	assert_int_equal(run(f, 1000), INTERP_LONG_MODE);
	assert_int_equal(f->out.steps, 48);
	assert_int_equal(f->stops, 0);
	assert_int_equal(f->c.r.rip, 0x80a7);
	assert_int_equal(f->c.cs, 0x08);
	assert_true(cpu_long_mode(&f->c) && cpu_code64(&f->c));
	assert_int_equal(f->c.cr0, CR0_PG | CR0_ET | CR0_PE); /* CD and NW cleared */
	assert_int_equal(f->c.cr3, PT_PML4);
	assert_int_equal(f->c.cr4, CR4_PAE);
	assert_int_equal(f->c.efer, EFER_LME | EFER_LMA);
	assert_int_equal(f->c.gdtr.base, 0x80b0);
	assert_int_equal(f->c.gdtr.limit, 0x1f);
	assert_int_equal(f->c.idtr.base, 0);
	assert_int_equal(f->c.idtr.limit, 0);
	assert_int_equal(f->gdt_loads, 1);
	assert_int_equal(f->c.ss, 0x18);
	assert_int_equal(f->c.ds, 0x18);
	assert_int_equal(f->c.es, 0x18);
	assert_int_equal(f->c.fs, 0x18);
	assert_int_equal(f->c.gs, 0x18);
	assert_int_equal(f->c.r.gpr[R_SP], 0x9000); /* 0x1000 in the real-mode SS, made linear */
	assert_false(f->c.r.rflags & RF_IF);
	/* the CPU check's call left its return address on the real-mode stack */
	assert_int_equal(get32(f, 0x8ffc) >> 16, 0x0019);
	/* 64-bit code: the hidden part is flat again */
	assert_int_equal(f->c.hidden.base[SH_CS] | f->c.hidden.base[SH_DS] |
	                     f->c.hidden.base[SH_SS] | f->c.hidden.base[SH_ES],
	                 0);
	assert_false(f->c.hidden.code16 || f->c.hidden.stack16);
	assert_true(cpu_can_deliver(&f->c));
}

/* Straight from real mode to 64-bit code (SIPI vector 0x09): PAE, EFER.LME, then PE and PG
 * in one `mov %eax, %cr0`; the 16-bit code after it runs through the page tables (in
 * compatibility mode) until ljmpl to the 64-bit segment. The GDT pointer at 0x9048, the GDT
 * at 0x9050 (0x08 64-bit code, 0x10 data). */
static void test_ap_real_to_long_mode(void **state)
{
	struct fx *f = *state;
	static const uint16_t gdtptr[4] = {0x17, 0x9050, 0, 0};
	static const uint64_t gdt[] = {0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL};

	identity_tables(f);
	put(f, 0x9048, gdtptr, sizeof(gdtptr));
	put(f, 0x9050, gdt, sizeof(gdt));
	CODE_AT(f, 0x9000, 0xfa,                                /* 9000: cli */
	        0xfc,                                           /* 9001: cld */
	        0x8c, 0xc8,                                     /* 9002: mov %cs,%ax */
	        0x8e, 0xd8,                                     /* 9004: mov %ax,%ds */
	        0x66, 0x0f, 0x01, 0x16, 0x48, 0x00,             /* 9006: lgdtl 0x48 */
	        0x66, 0xb8, 0x20, 0x00, 0x00, 0x00,             /* 900c: mov $0x20,%eax */
	        0x0f, 0x22, 0xe0,                               /* 9012: mov %eax,%cr4 */
	        0x66, 0xb8, 0x00, 0x00, 0x30, 0x00,             /* 9015: mov $0x300000,%eax */
	        0x0f, 0x22, 0xd8,                               /* 901b: mov %eax,%cr3 */
	        0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0,             /* 901e: mov $0xc0000080,%ecx */
	        0x0f, 0x32,                                     /* 9024: rdmsr */
	        0x66, 0x0d, 0x00, 0x01, 0x00, 0x00,             /* 9026: or $0x100,%eax */
	        0x0f, 0x30,                                     /* 902c: wrmsr */
	        0x66, 0xb8, 0x01, 0x00, 0x00, 0x80,             /* 902e: mov $0x80000001,%eax */
	        0x0f, 0x22, 0xc0,                               /* 9034: mov %eax,%cr0 */
	        0xb8, 0x10, 0x00,                               /* 9037: mov $0x10,%ax */
	        0x8e, 0xd0,                                     /* 903a: mov %ax,%ss */
	        0x66, 0xea, 0x44, 0x90, 0x00, 0x00, 0x08, 0x00, /* 903c: ljmpl $0x8,$0x9044 */
	        0xf4,                                           /* 9044: hlt */
	);
	interp_sipi_state(&f->c, 0x09);
	assert_int_equal(run(f, 1000), INTERP_LONG_MODE);
	assert_int_equal(f->out.steps, 18);
	assert_int_equal(f->c.r.rip, 0x9044);
	assert_int_equal(f->c.cs, 0x08);
	assert_int_equal(f->c.ss, 0x10);
	assert_int_equal(f->c.ds, 0x900);
	assert_int_equal(f->c.cr0, CR0_PG | CR0_ET | CR0_PE);
	assert_int_equal(f->c.cr4, CR4_PAE);
	assert_int_equal(f->c.efer, EFER_LME | EFER_LMA);
	assert_int_equal(f->c.gdtr.base, 0x9050);
	assert_true(cpu_code64(&f->c));
	assert_false(f->c.hidden.code16 || f->c.hidden.stack16 || f->c.hidden.base[SH_DS]);
	assert_int_equal(f->paging_changes, 2); /* CR3, CR0 */
	assert_int_equal(f->stops, 0);
}

/* Real-mode code at SIPI vector 0x10 (CS 0x1000, base 0x10000): the 16-bit addressing
 * forms with their default segments (BP-based: SS) and overrides, 0x66 and 0x67, wrapping
 * offsets; a 16-bit stack with 16- and 32-bit push, pop, call, ret, lcall, lret; strings,
 * loop, jcxz, moffs, a 16-bit lgdt (a 24-bit base), port I/O. */
static void test_real_mode_addressing_stack(void **state)
{
	struct fx *f = *state;
	static const uint8_t gdtw[6] = {0x27, 0x00, 0x78, 0x56, 0x34, 0x12};
	uint8_t b = 0xab;
	uint16_t w = 0;

	put(f, 0x3ffff, &b, 1);
	put(f, 0x20010, "abcd", 4);
	put32(f, 0x20020, 0xbeef);
	put(f, 0x20400, gdtw, sizeof(gdtw));
	f->pio_read_value = 0x5678;
	CODE_AT(f, 0x10000, 0xb8, 0x00, 0x20,             /* 10000: mov $0x2000,%ax */
	        0x8e, 0xd8,                               /* 10003: mov %ax,%ds */
	        0xb8, 0x00, 0x30,                         /* 10005: mov $0x3000,%ax */
	        0x8e, 0xc0,                               /* 10008: mov %ax,%es */
	        0xb8, 0x00, 0x40,                         /* 1000a: mov $0x4000,%ax */
	        0x8e, 0xd0,                               /* 1000d: mov %ax,%ss */
	        0xbc, 0x00, 0x01,                         /* 1000f: mov $0x100,%sp */
	        0xbb, 0x10, 0x00,                         /* 10012: mov $0x10,%bx */
	        0xbe, 0x04, 0x00,                         /* 10015: mov $0x4,%si */
	        0xbf, 0x08, 0x00,                         /* 10018: mov $0x8,%di */
	        0xbd, 0x20, 0x00,                         /* 1001b: mov $0x20,%bp */
	        0xc7, 0x00, 0x11, 0x11,                   /* 1001e: movw $0x1111,(%bx,%si) */
	        0xc7, 0x43, 0x02, 0x22, 0x22,             /* 10022: movw $0x2222,0x2(%bp,%di) */
	        0x26, 0xc7, 0x07, 0x33, 0x33,             /* 10027: movw $0x3333,%es:(%bx) */
	        0xc7, 0x06, 0x34, 0x12, 0x44, 0x44,       /* 1002c: movw $0x4444,0x1234 */
	        0x36, 0xc7, 0x04, 0x55, 0x55,             /* 10032: movw $0x5555,%ss:(%si) */
	        0x2e, 0xc7, 0x06, 0x00, 0x08, 0x66, 0x66, /* 10037: movw $0x6666,%cs:0x800 */
	        0xc7, 0x46, 0x00, 0x77, 0x77,             /* 1003e: movw $0x7777,0x0(%bp) */
	        0x66, 0xb8, 0x78, 0x56, 0x34, 0x12,       /* 10043: mov $0x12345678,%eax */
	        0x66, 0x89, 0x41, 0x40,                   /* 10049: mov %eax,0x40(%bx,%di) */
	        0x66, 0xb9, 0x00, 0x01, 0x01, 0x00,       /* 1004d: mov $0x10100,%ecx */
	        0x67, 0x66, 0x89, 0x01,                   /* 10053: mov %eax,(%ecx) */
	        0x26, 0x67, 0x66, 0x89, 0x84, 0xb1, 0x00, 0x02, 0x00,
	        0x00,                               /* 10057: mov %eax,%es:0x200(%ecx,%esi,4) */
	        0xbb, 0xff, 0xff,                   /* 10061: mov $0xffff,%bx */
	        0xc6, 0x47, 0x01, 0x99,             /* 10064: movb $0x99,0x1(%bx) */
	        0x8d, 0x52, 0x10,                   /* 10068: lea 0x10(%bp,%si),%dx */
	        0x8b, 0x0e, 0x34, 0x12,             /* 1006b: mov 0x1234,%cx */
	        0x8b, 0x7e, 0x00,                   /* 1006f: mov 0x0(%bp),%di */
	        0x26, 0x8a, 0x07,                   /* 10072: mov %es:(%bx),%al */
	        0xf4,                               /* 10075: hlt */
	        0xbc, 0x00, 0x01,                   /* 10076: mov $0x100,%sp */
	        0x50,                               /* 10079: push %ax */
	        0x66, 0x68, 0x0d, 0xf0, 0xfe, 0xca, /* 1007a: pushl $0xcafef00d */
	        0x66, 0x5a,                         /* 10080: pop %edx */
	        0x59,                               /* 10082: pop %cx */
	        0xe8, 0x10, 0x00,                   /* 10083: call 10096 */
	        0x66, 0xe8, 0x0d, 0x00, 0x00, 0x00, /* 10086: calll 10099 */
	        0x89, 0xe7,                         /* 1008c: mov %sp,%di */
	        0x9c,                               /* 1008e: pushf */
	        0x9d,                               /* 1008f: popf */
	        0x9a, 0x9d, 0x00, 0x00, 0x10,       /* 10090: lcall $0x1000,$0x9d */
	        0xf4,                               /* 10095: hlt */
	        0x89, 0xe6,                         /* 10096: mov %sp,%si */
	        0xc3,                               /* 10098: ret */
	        0x89, 0xe5,                         /* 10099: mov %sp,%bp */
	        0x66, 0xc3,                         /* 1009b: retl */
	        0x89, 0xe3,                         /* 1009d: mov %sp,%bx */
	        0xcb,                               /* 1009f: lret */
	        0xbe, 0x10, 0x00,                   /* 100a0: mov $0x10,%si */
	        0xbf, 0x00, 0x01,                   /* 100a3: mov $0x100,%di */
	        0xb9, 0x04, 0x00,                   /* 100a6: mov $0x4,%cx */
	        0xf3, 0xa4,                         /* 100a9: rep movsb %ds:(%si),%es:(%di) */
	        0xbe, 0x20, 0x00,                   /* 100ab: mov $0x20,%si */
	        0xb9, 0x03, 0x00,                   /* 100ae: mov $0x3,%cx */
	        0xad,                               /* 100b1: lods %ds:(%si),%ax */
	        0x89, 0xc3,                         /* 100b2: mov %ax,%bx */
	        0xb9, 0x05, 0x00,                   /* 100b4: mov $0x5,%cx */
	        0xe2, 0xfe,                         /* 100b7: loop 100b7 */
	        0xe3, 0x01,                         /* 100b9: jcxz 100bc */
	        0xf4,                               /* 100bb: hlt */
	        0xa1, 0x10, 0x00,                   /* 100bc: mov 0x10,%ax */
	        0x26, 0xa3, 0x00, 0x03,             /* 100bf: mov %ax,%es:0x300 */
	        0x0f, 0x01, 0x16, 0x00, 0x04,       /* 100c3: lgdtw 0x400 */
	        0xba, 0xf8, 0x03,                   /* 100c8: mov $0x3f8,%dx */
	        0xb0, 0x41,                         /* 100cb: mov $0x41,%al */
	        0xee,                               /* 100cd: out %al,(%dx) */
	        0xed,                               /* 100ce: in (%dx),%ax */
	        0xf4,                               /* 100cf: hlt */
	);
	interp_sipi_state(&f->c, 0x10);
	/* addressing */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x76);
	assert_int_equal(f->c.ds, 0x2000);
	assert_int_equal(f->c.hidden.base[SH_DS], 0x20000);
	assert_int_equal(f->c.hidden.base[SH_ES], 0x30000);
	assert_int_equal(f->c.hidden.base[SH_SS], 0x40000);
	assert_int_equal(get32(f, 0x20014) & 0xffff, 0x1111); /* (%bx,%si) */
	assert_int_equal(get32(f, 0x4002a) & 0xffff, 0x2222); /* 2(%bp,%di): SS */
	assert_int_equal(get32(f, 0x30010) & 0xffff, 0x3333); /* %es:(%bx) */
	assert_int_equal(get32(f, 0x21234) & 0xffff, 0x4444); /* disp16 */
	assert_int_equal(get32(f, 0x40004) & 0xffff, 0x5555); /* %ss:(%si) */
	assert_int_equal(get32(f, 0x10800) & 0xffff, 0x6666); /* %cs:0x800 */
	assert_int_equal(get32(f, 0x40020) & 0xffff, 0x7777); /* 0(%bp): SS */
	assert_int_equal(get32(f, 0x20058), 0x12345678);      /* 0x66: 32-bit store */
	assert_int_equal(get32(f, 0x30100), 0x12345678);      /* 0x67: DS + ECX */
	assert_int_equal(get32(f, 0x40310), 0x12345678);      /* 0x67: SIB, ES */
	assert_int_equal(get32(f, 0x20000) & 0xff, 0x99);     /* 1(%bx) with BX 0xffff wraps */
	assert_int_equal(reg(f, R_DX), 0x34);                 /* lea: the offset */
	assert_int_equal(reg(f, R_CX), 0x10000 | 0x4444);     /* only CX */
	assert_int_equal(reg(f, R_DI), 0x7777);
	assert_int_equal(reg(f, R_AX), 0x123456ab); /* %es:0xffff */
	/* stack */
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0x96);
	assert_int_equal(reg(f, R_DX), 0xcafef00d);
	assert_int_equal(reg(f, R_CX), 0x156ab); /* only CX */
	assert_int_equal(reg(f, R_SI), 0xfe);    /* call: a 2-byte return address */
	assert_int_equal(reg(f, R_BP), 0xfc);    /* calll: 4 bytes */
	assert_int_equal(reg(f, R_BX), 0xfc);    /* lcall: CS and IP, 2 bytes each */
	assert_int_equal(reg(f, R_DI), 0x100);
	assert_int_equal(reg(f, R_SP), 0x100);
	assert_int_equal(get32(f, 0x400fc), 0x10000095); /* lcall's frame */
	assert_int_equal(f->c.cs, 0x1000);
	/* strings and the rest */
	f->c.r.rip = 0xa0;
	to_hlt(f);
	assert_int_equal(f->c.r.rip, 0xd0);
	assert_int_equal(get32(f, 0x30100), 0x64636261); /* rep movsb DS:SI -> ES:DI */
	assert_int_equal(reg(f, R_SI), 0x22);
	assert_int_equal(reg(f, R_DI), 0x104);
	assert_int_equal(reg(f, R_BX), 0xbeef);
	assert_int_equal(reg(f, R_CX), 0x10000); /* rep and loop count CX, not ECX */
	assert_int_equal(gm_read(&f->gm, 0x30300, &w, 2), 0);
	assert_int_equal(w, 0x6261);
	assert_int_equal(f->c.gdtr.base, 0x345678);
	assert_int_equal(f->c.gdtr.limit, 0x27);
	assert_int_equal(f->npio, 2);
	assert_int_equal(f->pio[0].port, 0x3f8);
	assert_int_equal(f->pio[0].value, 0x41);
	assert_int_equal(f->pio[1].size, 2);
	assert_int_equal(reg(f, R_AX), 0x12345678);
	assert_int_equal(f->stops, 0);
}

/* An exception in real mode would go through the interrupt vector table, which is not
 * emulated: the run stops cleanly, the instruction undone. */
static void test_real_mode_faults(void **state)
{
	struct fx *f = *state;

	CODE_AT(f, 0x10000, 0x31, 0xc9, /* 10000: xor %cx,%cx */
	        0xf7, 0xf1,             /* 10002: div %cx */
	        0xcd, 0x10,             /* 10004: int $0x10 */
	        0x0f, 0x30,             /* 10006: wrmsr */
	        0x0f, 0x0b,             /* 10008: ud2 */
	);
	interp_sipi_state(&f->c, 0x10);
	f->c.r.gpr[R_AX] = 7;
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "16-bit interpreter (real mode): exception 0"));
	assert_non_null(strstr(f->out.why, "cs:ip=0x1000:0x0002"));
	assert_non_null(strstr(f->out.why, "(bytes: f7 f1)"));
	assert_int_equal(f->c.r.rip, 2);
	assert_int_equal(reg(f, R_AX), 7);
	assert_int_equal(f->stops, 1);
	assert_int_equal(f->stop_how, CPU_STOP_REFUSED);
	/* int $0x10 */
	f->c.r.rip = 4;
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "int 16"));
	assert_int_equal(f->c.r.rip, 4);
	/* a #GP the CPU core raises (wrmsr refused by the engine) */
	f->msr_ok = false;
	f->c.r.rip = 6;
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_int_equal(f->stops, 3);
	assert_non_null(strstr(f->stop_why, "vector 13 in real mode"));
	assert_non_null(strstr(f->out.why, "cs:ip=0x1000:0x0006"));
	/* CR0.PE set, but still on the real-mode (16-bit) stack: ud2 is not delivered either */
	f->c.cr0 |= CR0_PE;
	f->c.r.rip = 8;
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "16-bit interpreter: exception 6"));
	assert_non_null(strstr(f->out.why, "16-bit or based stack"));
	assert_int_equal(f->c.r.rip, 8);
}

/* After lmsw sets PE, the real-mode CS and DS stay until reloaded; a far jump to a 16-bit
 * code segment with a base (protected mode), and on to 32-bit code with a base, data with
 * a base. Real mode at 0x20000 (the GDT at 0x20020), the 16-bit segment at 0x50000, the
 * 32-bit one at 0x60000, data at 0x70000. */
static void test_ap_16bit_protected_mode(void **state)
{
	struct fx *f = *state;
	static const uint64_t gdt[] = {
	    0,
	    0x00009b050000ffffULL, /* 0x08: 16-bit code, base 0x50000, 64 KiB */
	    0x00cf9b060000ffffULL, /* 0x10: 32-bit code, base 0x60000 */
	    0x00cf93070000ffffULL, /* 0x18: data, base 0x70000 */
	    0x00cf93000000ffffULL, /* 0x20: flat data */
	};
	static const uint8_t pm16[] = {
	    0xb8, 0x18, 0x00,                               /* 50010: mov $0x18,%ax */
	    0x8e, 0xd8,                                     /* 50013: mov %ax,%ds */
	    0xc7, 0x06, 0x10, 0x00, 0xcd, 0xab,             /* 50015: movw $0xabcd,0x10 */
	    0xb8, 0x20, 0x00,                               /* 5001b: mov $0x20,%ax */
	    0x8e, 0xd0,                                     /* 5001e: mov %ax,%ss */
	    0x66, 0xbc, 0x00, 0x80, 0x00, 0x00,             /* 50020: mov $0x8000,%esp */
	    0x66, 0xea, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, /* 50026: ljmpl $0x10,$0x0 */
	};
	static const uint8_t pm32[] = {
	    0xc7, 0x05, 0x20, 0x00, 0x00,
	    0x00, 0x78, 0x56, 0x34, 0x12, /* 60000: movl $0x12345678,0x20 */
	    0x6a, 0x5a,                   /* 6000a: push $0x5a */
	    0xe8, 0x00, 0x00, 0x00, 0x00, /* 6000c: call 60011 */
	    0x59,                         /* 60011: pop %ecx */
	    0xf4,                         /* 60012: hlt */
	};

	put(f, 0x20020, (const uint8_t[]){0x27, 0, 0x28, 0, 0x02, 0}, 6);
	put(f, 0x20028, gdt, sizeof(gdt));
	put(f, 0x50010, pm16, sizeof(pm16));
	put(f, 0x60000, pm32, sizeof(pm32));
	CODE_AT(f, 0x20000, 0x8c, 0xc8,             /* 20000: mov %cs,%ax */
	        0x8e, 0xd8,                         /* 20002: mov %ax,%ds */
	        0x66, 0x0f, 0x01, 0x16, 0x20, 0x00, /* 20004: lgdtl 0x20 */
	        0x0f, 0x01, 0xe0,                   /* 2000a: smsw %ax */
	        0x83, 0xc8, 0x01,                   /* 2000d: or $0x1,%ax */
	        0x0f, 0x01, 0xf0,                   /* 20010: lmsw %ax */
	        0x8b, 0x1e, 0x00, 0x00,             /* 20013: mov 0x0,%bx */
	        0xea, 0x10, 0x00, 0x08, 0x00,       /* 20017: ljmp $0x8,$0x10 */
	);
	interp_sipi_state(&f->c, 0x20);
	/* up to the far jump: PE set, CS and DS as they were */
	assert_int_equal(run(f, 7), INTERP_BUDGET);
	assert_true(f->c.cr0 & CR0_PE);
	assert_int_equal(f->c.r.rip, 0x17);
	assert_int_equal(reg(f, R_BX), 0xc88c); /* DS:0, the real-mode base */
	assert_true(f->c.hidden.code16);
	assert_int_equal(f->c.hidden.base[SH_CS], 0x20000);
	/* 16-bit protected mode */
	assert_int_equal(run(f, 1), INTERP_BUDGET);
	assert_int_equal(f->c.cs, 0x08);
	assert_int_equal(f->c.r.rip, 0x10);
	assert_true(f->c.hidden.code16);
	assert_int_equal(f->c.hidden.base[SH_CS], 0x50000);
	/* and 32-bit code */
	to_hlt(f);
	assert_int_equal(f->c.cs, 0x10);
	assert_int_equal(f->c.r.rip, 0x13);
	assert_false(f->c.hidden.code16 || f->c.hidden.stack16);
	assert_int_equal(f->c.hidden.base[SH_CS], 0x60000);
	assert_int_equal(f->c.hidden.base[SH_DS], 0x70000);
	assert_int_equal(f->c.hidden.base[SH_SS], 0);
	assert_int_equal(get32(f, 0x70010) & 0xffff, 0xabcd);
	assert_int_equal(get32(f, 0x70020), 0x12345678);
	assert_int_equal(reg(f, R_CX), 0x11); /* call pushed the offset, not the linear address */
	assert_int_equal(reg(f, R_SP), 0x7ffc);
	assert_int_equal(get32(f, 0x7ffc), 0x5a);
	assert_true(cpu_can_deliver(&f->c));
	assert_int_equal(f->stops, 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_add_adc),
	    T(test_sub_cmp_neg),
	    T(test_logic_inc_dec),
	    T(test_shifts_rotates),
	    T(test_mul_div),
	    T(test_exceptions_32bit_idt),
	    T(test_triple_fault),
	    T(test_stack_calls),
	    T(test_conditions),
	    T(test_branches),
	    T(test_strings),
	    T(test_moves),
	    T(test_bit_ops),
	    T(test_segments),
	    T(test_far_transfers),
	    T(test_privileged),
	    T(test_cpuid_host),
	    T(test_budget_and_resume),
	    T(test_unsupported),
	    T(test_not_ram),
	    T(test_lock_and_length),
	    T(test_operand_size_16),
	    T(test_compat_mode_faults),
	    T(test_pvh_entry_builds_tables),
	    T(test_rt_guest_entry),
	    T(test_sipi_state),
	    T(test_ap_linux_trampoline),
	    T(test_ap_real_to_long_mode),
	    T(test_real_mode_addressing_stack),
	    T(test_real_mode_faults),
	    T(test_ap_16bit_protected_mode),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
