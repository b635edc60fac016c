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
	/* to a 64-bit segment outside long mode: its D bit is clear, that would be 16-bit code */
	assert_int_equal(run(f, 10), INTERP_UNSUPPORTED);
	assert_non_null(strstr(f->out.why, "not flat 32-bit code"));
	assert_int_equal(f->c.cs, SEL_CODE32);
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
	    {{0x67, 0x8b, 0x07}, 3, "16-bit addressing"},          /* mov (%bx),%eax */
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
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
