/*
 * Platform pieces that need no KVM: CPUID normalization (vmm/cpuid.c), MP tables
 * (vmm/mptable.c), the 16550A UART (vmm/serial.c), the device bus (vmm/bus.c), the CMOS RTC
 * (vmm/rtc_cmos.c), host MMU detection (vmm/host_mmu.c) and the command line (vmm/cli.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cpuid.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/vm_config.h"
#include "vmm/bus.h"
#include "vmm/cli.h"
#include "vmm/console.h"
#include "cpu/cpuid.h"
#include "vmm/guest_memory.h"
#include "backend/kvm/host_kvm.h"
#include "backend/kvm/host_mmu.h"
#include "vmm/layout.h"
#include "boot/mptable.h"
#include "devices/rtc_cmos.h"
#include "devices/serial.h"

/* ------------------------------------------------------------------------------------------ */
/* CPUID                                                                                       */

#define SIG CPUID_FLAG_INDEXED

/* Leaf 1 inputs: low EBX bits (brand index, CLFLUSH size) must survive, high bits are junk. */
#define L1_EBX_IN 0xabcd0800u
#define L1_ECX_IN ((1u << 0) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30)) /* +RDRAND */
#define L1_EDX_IN ((1u << 0) | (1u << 28))                                        /* FPU, HTT */
/* Leaf 4 EAX: type/level/etc. in [13:0], junk in [25:14] and [31:26]. */
#define L4_EAX_LOW 0x00000121u
#define L4_EAX_IN  (0xfc000000u | 0x03ffc000u | L4_EAX_LOW)
#define L7_EBX_IN                                                                                  \
	((1u << 0) | (1u << 3) | (1u << 5) | (1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) |   \
	 (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
#define L7_EBX_AVX_BITS                                                                            \
	((1u << 5) | (1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | \
	 (1u << 30) | (1u << 31))
#define PDPE1GB         (1u << 26)
#define LM              (1u << 29)
#define HV_FEATURES_EAX 0x01000fffu

static void add(struct cpuid_entry *e, int *n, uint32_t fn, uint32_t idx, uint32_t flags,
                uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	memset(&e[*n], 0, sizeof(e[*n]));
	e[*n].function = fn;
	e[*n].index = idx;
	e[*n].flags = flags;
	e[*n].eax = a;
	e[*n].ebx = b;
	e[*n].ecx = c;
	e[*n].edx = d;
	(*n)++;
}

/* A plausible KVM_GET_SUPPORTED_CPUID answer. `with_hv`: include KVM's 0x40000000. */
static int fake_cpuid(struct cpuid_entry *e, bool with_hv)
{
	int n = 0;

	add(e, &n, 0, 0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65); /* AuthenticAMD */
	add(e, &n, 1, 0, 0, 0x00a00f11, L1_EBX_IN, L1_ECX_IN, L1_EDX_IN);
	for (uint32_t i = 0; i < 4; i++)
		add(e, &n, 4, i, SIG, i < 3 ? L4_EAX_IN : 0, 0x01c0003f, 0x3f, 0);
	add(e, &n, 7, 0, SIG, 0, L7_EBX_IN, 0x12345678, 0);
	for (uint32_t i = 0; i < 3; i++)
		add(e, &n, 0xb, i, SIG, 0xdead, 0xbeef, 0xcafe, 0xf00d);
	add(e, &n, 0xd, 0, SIG, 0x7, 0x340, 0x340, 0);
	if (with_hv)
		add(e, &n, HV_LEAF_BASE, 0, 0, HV_LEAF_BASE + 1, 0x4b4d564b, 0x564b4d56, 0x4d);
	add(e, &n, HV_LEAF_BASE + 1, 0, 0, HV_FEATURES_EAX, 0, 0, 0);
	add(e, &n, 0x80000001, 0, 0, 0, 0, 0x1, PDPE1GB | LM);
	add(e, &n, 0x80000008, 0, 0, 0x3030, 0, 0x7007, 0);
	return n;
}

static struct cpuid_entry *must_find(struct cpuid_entry *e, int n, uint32_t fn, uint32_t idx)
{
	struct cpuid_entry *x = cpuid_find(e, n, fn, idx);

	assert_non_null(x);
	return x;
}

static int normalize(struct cpuid_entry *e, bool with_hv, struct cpuid_params p)
{
	int n = fake_cpuid(e, with_hv);

	return cpuid_normalize(e, n, CPUID_MAX_ENTRIES, &p);
}

static void test_cpuid_find(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n = fake_cpuid(e, true);

	(void)state;
	/* Significant index: each subleaf is its own entry. */
	assert_int_equal(must_find(e, n, 4, 2)->index, 2);
	assert_int_equal(must_find(e, n, 0xb, 1)->index, 1);
	assert_null(cpuid_find(e, n, 4, 9));
	/* No significant index: any index finds the one entry. */
	assert_int_equal(must_find(e, n, 1, 5)->function, 1);
	assert_null(cpuid_find(e, n, 0x12345, 0));
}

static void test_cpuid_leaf1_one_vcpu(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n = normalize(e, true, (struct cpuid_params){.apic_id = 0, .nvcpus = 1});
	struct cpuid_entry *l1;

	(void)state;
	assert_true(n > 0);
	l1 = must_find(e, n, 1, 0);
	assert_int_equal(l1->ebx >> 24, 0);
	assert_int_equal((l1->ebx >> 16) & 0xff, 1);
	assert_int_equal(l1->ebx & 0xffff, L1_EBX_IN & 0xffff);
	assert_int_equal(l1->edx & (1u << 28), 0); /* HTT off with one logical CPU */
	assert_int_equal(l1->edx & 1, 1);
	assert_int_not_equal(l1->ecx & (1u << 31), 0);      /* hypervisor */
	assert_int_equal(l1->ecx & ~(1u << 31), L1_ECX_IN); /* XSAVE/AVX kept */
	assert_int_equal(l1->eax, 0x00a00f11);
}

static void test_cpuid_leaf1_apic3_of4(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n = normalize(e, true, (struct cpuid_params){.apic_id = 3, .nvcpus = 4});
	struct cpuid_entry *l1;

	(void)state;
	l1 = must_find(e, n, 1, 0);
	assert_int_equal(l1->ebx >> 24, 3);
	assert_int_equal((l1->ebx >> 16) & 0xff, 4);
	assert_int_equal(l1->ebx & 0xffff, L1_EBX_IN & 0xffff);
	assert_int_not_equal(l1->edx & (1u << 28), 0); /* HTT: count valid */
	assert_int_not_equal(l1->ecx & (1u << 31), 0);
}

static void test_cpuid_topology_leaf_b(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n = normalize(e, true, (struct cpuid_params){.apic_id = 3, .nvcpus = 4});
	struct cpuid_entry *s0, *s1, *s2;

	(void)state;
	s0 = must_find(e, n, 0xb, 0);
	s1 = must_find(e, n, 0xb, 1);
	s2 = must_find(e, n, 0xb, 2);
	/* EDX: x2APIC ID of this CPU, in every subleaf. */
	assert_int_equal(s0->edx, 3);
	assert_int_equal(s1->edx, 3);
	assert_int_equal(s2->edx, 3);
	/* SMT level: 1 thread, shift 0, level type 1, level number 0. */
	assert_int_equal(s0->eax, 0);
	assert_int_equal(s0->ebx, 1);
	assert_int_equal(s0->ecx, 0x100);
	/* Core level: shift 2 (4 CPUs), 4 logical CPUs, level type 2, level number 1. */
	assert_int_equal(s1->eax, 2);
	assert_int_equal(s1->ebx, 4);
	assert_int_equal(s1->ecx, 0x201);
	/* Invalid level: type 0 ends the enumeration, ECX[7:0] echoes the subleaf. */
	assert_int_equal(s2->eax, 0);
	assert_int_equal(s2->ebx, 0);
	assert_int_equal(s2->ecx, 2);

	/* Non-power-of-two counts round the shift up; APIC ID 0. */
	n = normalize(e, true, (struct cpuid_params){.apic_id = 0, .nvcpus = 3});
	s1 = must_find(e, n, 0xb, 1);
	assert_int_equal(s1->eax, 2);
	assert_int_equal(s1->ebx, 3);
	assert_int_equal(s1->edx, 0);
	assert_int_equal(must_find(e, n, 0xb, 0)->edx, 0);
	n = normalize(e, true, (struct cpuid_params){.apic_id = 0, .nvcpus = 1});
	assert_int_equal(must_find(e, n, 0xb, 1)->eax, 0);
	assert_int_equal(must_find(e, n, 0xb, 1)->ebx, 1);
}

static void test_cpuid_leaf4_cores(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n;

	(void)state;
	for (uint32_t ncpu = 1; ncpu <= 8; ncpu *= 2) {
		n = normalize(e, true, (struct cpuid_params){.apic_id = 0, .nvcpus = ncpu});
		for (uint32_t i = 0; i < 3; i++) {
			struct cpuid_entry *c = must_find(e, n, 4, i);

			assert_int_equal(c->eax >> 26, ncpu - 1);      /* cores per package - 1 */
			assert_int_equal((c->eax >> 14) & 0xfff, 0);   /* one thread per cache */
			assert_int_equal(c->eax & 0x3fff, L4_EAX_LOW); /* cache type/level kept */
			assert_int_equal(c->ebx, 0x01c0003f);
		}
	}
}

static void test_cpuid_amd_leaves(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n = normalize(e, true, (struct cpuid_params){.apic_id = 2, .nvcpus = 4});

	(void)state;
	assert_int_equal(must_find(e, n, 0x80000008, 0)->ecx, 0x7003); /* NC = cores - 1 */
	assert_int_equal(must_find(e, n, 0x80000008, 0)->eax, 0x3030);
}

static void test_cpuid_gbpages(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n;

	(void)state;
	n = normalize(e, true, (struct cpuid_params){.nvcpus = 1, .no_gbpages = true});
	assert_int_equal(must_find(e, n, 0x80000001, 0)->edx, LM);
	n = normalize(e, true, (struct cpuid_params){.nvcpus = 1, .no_gbpages = false});
	assert_int_equal(must_find(e, n, 0x80000001, 0)->edx, PDPE1GB | LM);
}

static void test_cpuid_xsave(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	struct cpuid_entry *d;
	int n;

	(void)state;
	n = normalize(e, true, (struct cpuid_params){.nvcpus = 1, .no_xsave = true});
	assert_int_equal(must_find(e, n, 1, 0)->ecx,
	                 (1u << 31) | (L1_ECX_IN & ~((1u << 26) | (1u << 27) | (1u << 28))));
	assert_int_equal(must_find(e, n, 7, 0)->ebx, L7_EBX_IN & ~L7_EBX_AVX_BITS);
	assert_int_equal(must_find(e, n, 7, 0)->ecx, 0x12345678);
	d = must_find(e, n, 0xd, 0);
	assert_int_equal(d->eax | d->ebx | d->ecx | d->edx, 0);

	n = normalize(e, true, (struct cpuid_params){.nvcpus = 1, .no_xsave = false});
	assert_int_equal(must_find(e, n, 1, 0)->ecx, (1u << 31) | L1_ECX_IN);
	assert_int_equal(must_find(e, n, 7, 0)->ebx, L7_EBX_IN);
	assert_int_equal(must_find(e, n, 0xd, 0)->eax, 0x7);
	assert_int_equal(must_find(e, n, 0xd, 0)->ebx, 0x340);
}

static void expect_kvm_signature(const struct cpuid_entry *x)
{
	char sig[13] = "";

	memcpy(sig, &x->ebx, 4);
	memcpy(sig + 4, &x->ecx, 4);
	memcpy(sig + 8, &x->edx, 4);
	assert_string_equal(sig, "KVMKVMKVM");
}

static void test_cpuid_hypervisor_leaves_tsc(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n0 = fake_cpuid(e, true);
	struct cpuid_params p = {.apic_id = 0, .nvcpus = 2, .tsc_khz = 2994231};
	struct cpuid_entry *hv, *t;
	int n = cpuid_normalize(e, n0, CPUID_MAX_ENTRIES, &p);

	(void)state;
	assert_int_equal(n, n0 + 1); /* 0x40000000 reused, 0x40000010 added */
	hv = must_find(e, n, HV_LEAF_BASE, 0);
	expect_kvm_signature(hv);
	assert_int_equal(hv->eax, 0x40000010);
	t = must_find(e, n, HV_LEAF_TIMING, 0);
	assert_int_equal(t->eax, 2994231);
	assert_int_equal(t->ebx, 1000000);
	assert_int_equal(t->ecx, 0);
	assert_int_equal(t->edx, 0);
	/* KVM's feature leaf is passed through. */
	assert_int_equal(must_find(e, n, HV_LEAF_BASE + 1, 0)->eax, HV_FEATURES_EAX);
}

static void test_cpuid_hypervisor_leaves_no_tsc(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n0 = fake_cpuid(e, true);
	struct cpuid_params p = {.apic_id = 0, .nvcpus = 1, .tsc_khz = 0};
	int n = cpuid_normalize(e, n0, CPUID_MAX_ENTRIES, &p);
	struct cpuid_entry *hv;

	(void)state;
	assert_int_equal(n, n0);
	hv = must_find(e, n, HV_LEAF_BASE, 0);
	expect_kvm_signature(hv);
	assert_int_equal(hv->eax, HV_LEAF_BASE + 1);
	assert_null(cpuid_find(e, n, HV_LEAF_TIMING, 0));
}

static void test_cpuid_hypervisor_leaf_added(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	int n0 = fake_cpuid(e, false);
	struct cpuid_params p = {.apic_id = 0, .nvcpus = 1, .tsc_khz = 1000000};
	int n = cpuid_normalize(e, n0, CPUID_MAX_ENTRIES, &p);

	(void)state;
	assert_int_equal(n, n0 + 2);
	expect_kvm_signature(must_find(e, n, HV_LEAF_BASE, 0));
	assert_int_equal(must_find(e, n, HV_LEAF_BASE, 0)->eax, HV_LEAF_TIMING);
	assert_int_equal(must_find(e, n, HV_LEAF_TIMING, 0)->eax, 1000000);
}

static void test_cpuid_capacity(void **state)
{
	struct cpuid_entry e[CPUID_MAX_ENTRIES];
	struct cpuid_params tsc = {.apic_id = 0, .nvcpus = 1, .tsc_khz = 1000};
	struct cpuid_params no_tsc = {.apic_id = 0, .nvcpus = 1};
	int n;

	(void)state;
	/* No room for 0x40000000. */
	n = fake_cpuid(e, false);
	assert_int_equal(cpuid_normalize(e, n, n, &no_tsc), -1);
	/* Room for 0x40000000 but not for the timing leaf. */
	n = fake_cpuid(e, false);
	assert_int_equal(cpuid_normalize(e, n, n + 1, &tsc), -1);
	n = fake_cpuid(e, true);
	assert_int_equal(cpuid_normalize(e, n, n, &tsc), -1);
	/* Exactly enough room. */
	n = fake_cpuid(e, true);
	assert_int_equal(cpuid_normalize(e, n, n, &no_tsc), n);
	n = fake_cpuid(e, false);
	assert_int_equal(cpuid_normalize(e, n, n + 2, &tsc), n + 2);
}

/* ------------------------------------------------------------------------------------------ */
/* MP tables                                                                                   */

#define MP_RAM (1 * MIB)

/* Static: a failing assertion leaves the test by longjmp, which must not leak. */
static uint8_t mp_ram[MP_RAM];

static uint8_t sum8(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

struct mp_parsed {
	unsigned cpus, buses, ioapics, ioints, lints, entries;
	uint8_t cpu_id[256], cpu_flags[256];
	uint8_t ioapic_id, ioapic_flags;
	uint32_t ioapic_addr;
	uint8_t ioint_srcirq[32], ioint_dstapic[32], ioint_dstirq[32], ioint_type[32];
	uint8_t lint_type[4], lint_dstapic[4], lint_dstirq[4];
	char bus_type[7];
};

/* Check the floating pointer and the header at `addr`, then walk the entries by length. */
static void mp_parse(uint8_t *ram, uint64_t addr, struct mp_parsed *m)
{
	const uint8_t *f = ram + addr, *t, *p, *end;
	uint16_t len;

	memset(m, 0, sizeof(*m));
	assert_memory_equal(f, "_MP_", 4);
	assert_int_equal(f[8], 1); /* length: one 16-byte unit */
	assert_int_equal(f[9], 4); /* spec 1.4 */
	assert_int_equal(sum8(f, 16), 0);
	assert_int_equal(f[11], 0); /* no default configuration: the table follows */
	assert_int_equal(rd32(f + 4), addr + 16);

	t = ram + rd32(f + 4);
	assert_memory_equal(t, "PCMP", 4);
	len = rd16(t + 4);
	assert_true(len >= 44);
	assert_int_equal(t[6], 4);
	assert_int_equal(sum8(t, len), 0);
	assert_int_equal(rd32(t + 36), LAYOUT_LAPIC_ADDR);
	assert_int_equal(rd16(t + 40), 0); /* no extended table */

	for (p = t + 44, end = t + len; p < end;) {
		m->entries++;
		switch (p[0]) {
		case 0:
			m->cpu_id[m->cpus] = p[1];
			m->cpu_flags[m->cpus] = p[3];
			assert_int_not_equal(p[2], 0); /* local APIC version */
			m->cpus++;
			p += 20;
			break;
		case 1:
			memcpy(m->bus_type, p + 2, 6);
			m->buses++;
			p += 8;
			break;
		case 2:
			m->ioapic_id = p[1];
			m->ioapic_flags = p[3];
			m->ioapic_addr = rd32(p + 4);
			m->ioapics++;
			p += 8;
			break;
		case 3:
			assert_true(m->ioints < 32);
			m->ioint_type[m->ioints] = p[1];
			assert_int_equal(p[4], 0); /* source bus: ISA */
			m->ioint_srcirq[m->ioints] = p[5];
			m->ioint_dstapic[m->ioints] = p[6];
			m->ioint_dstirq[m->ioints] = p[7];
			m->ioints++;
			p += 8;
			break;
		case 4:
			assert_true(m->lints < 4);
			m->lint_type[m->lints] = p[1];
			m->lint_dstapic[m->lints] = p[6];
			m->lint_dstirq[m->lints] = p[7];
			m->lints++;
			p += 8;
			break;
		default:
			fail_msg("unknown MP entry type %u at offset %td", p[0], p - t);
		}
	}
	assert_ptr_equal(p, end);
}

static void check_mptable(unsigned ncpus)
{
	uint8_t *ram = mp_ram;
	struct guest_memory gm;
	struct error err = {""};
	struct mp_parsed m;
	uint64_t size = mptable_size(ncpus);

	memset(ram, 0xaa, MP_RAM);
	gm_wrap(&gm, ram, MP_RAM);
	assert_int_equal(mptable_write(&gm, LAYOUT_MPTABLE, ncpus, LAYOUT_IOAPIC_ADDR, &err), 0);
	assert_string_equal(err.msg, "");
	mp_parse(ram, LAYOUT_MPTABLE, &m);

	assert_int_equal(16 + rd16(ram + LAYOUT_MPTABLE + 16 + 4), size);
	assert_int_equal(m.cpus, ncpus);
	for (unsigned i = 0; i < ncpus; i++) {
		assert_int_equal(m.cpu_id[i], i);
		assert_int_equal(m.cpu_flags[i], i == 0 ? 3 : 1); /* enabled; BSP only for CPU 0 */
	}
	assert_int_equal(m.buses, 1);
	assert_memory_equal(m.bus_type, "ISA   ", 6);
	assert_int_equal(m.ioapics, 1);
	assert_int_equal(m.ioapic_id, ncpus);
	assert_int_equal(m.ioapic_flags & 1, 1);
	assert_int_equal(m.ioapic_addr, LAYOUT_IOAPIC_ADDR);
	assert_int_equal(m.ioints, 16);
	for (unsigned i = 0; i < 16; i++) {
		assert_int_equal(m.ioint_type[i], 0); /* INT */
		assert_int_equal(m.ioint_srcirq[i], i);
		assert_int_equal(m.ioint_dstapic[i], ncpus);
		assert_int_equal(m.ioint_dstirq[i], i);
	}
	assert_int_equal(m.lints, 2);
	assert_int_equal(m.lint_type[0], 3); /* ExtINT on LINT0 */
	assert_int_equal(m.lint_dstirq[0], 0);
	assert_int_equal(m.lint_type[1], 1); /* NMI on LINT1 */
	assert_int_equal(m.lint_dstirq[1], 1);
	assert_int_equal(m.lint_dstapic[0], 0xff);
	assert_int_equal(m.lint_dstapic[1], 0xff);
	assert_int_equal(m.entries, ncpus + 1 + 1 + 16 + 2);
	/* Nothing written outside [addr, addr + size). */
	assert_int_equal(ram[LAYOUT_MPTABLE - 1], 0xaa);
	assert_int_equal(ram[LAYOUT_MPTABLE + size], 0xaa);
}

static void test_mptable_1cpu(void **state)
{
	(void)state;
	check_mptable(1);
}

static void test_mptable_4cpus(void **state)
{
	(void)state;
	check_mptable(4);
}

static void test_mptable_max_cpus(void **state)
{
	(void)state;
	check_mptable(254);
}

/* MP spec 1.4, table 4-2: "Entry Count: the number of entries in the variable portion of the
 * base table". Parsers that walk by the count (FreeBSD's mptable.c) need it. */
static void test_mptable_entry_count(void **state)
{
	uint8_t *ram = mp_ram;
	struct guest_memory gm;
	struct error err = {""};

	(void)state;
	gm_wrap(&gm, ram, MP_RAM);
	for (unsigned ncpus = 1; ncpus <= 4; ncpus += 3) {
		struct mp_parsed m;

		assert_int_equal(
		    mptable_write(&gm, LAYOUT_MPTABLE, ncpus, LAYOUT_IOAPIC_ADDR, &err), 0);
		mp_parse(ram, LAYOUT_MPTABLE, &m);
		assert_int_equal(rd16(ram + LAYOUT_MPTABLE + 16 + 34), m.entries);
	}
}

static void test_mptable_refuses(void **state)
{
	uint8_t *ram = mp_ram;
	struct guest_memory gm, small;
	struct error err = {""};

	(void)state;
	gm_wrap(&gm, ram, MP_RAM);
	assert_int_equal(mptable_write(&gm, LAYOUT_MPTABLE, 0, LAYOUT_IOAPIC_ADDR, &err), -1);
	assert_string_equal(err.msg, "MP table: 0 vCPUs is outside 1..254");
	assert_int_equal(mptable_write(&gm, LAYOUT_MPTABLE, 255, LAYOUT_IOAPIC_ADDR, &err), -1);
	assert_string_equal(err.msg, "MP table: 255 vCPUs is outside 1..254");

	/* Would run past the boot area into the kernel at 1 MiB. */
	err.msg[0] = 0;
	assert_int_equal(mptable_write(&gm, LAYOUT_KERNEL_START - mptable_size(4) + 1, 4,
	                               LAYOUT_IOAPIC_ADDR, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "does not fit"));
	/* Just fits. */
	assert_int_equal(
	    mptable_write(&gm, LAYOUT_KERNEL_START - mptable_size(4), 4, LAYOUT_IOAPIC_ADDR, &err),
	    0);
	/* Not in RAM at all. */
	gm_wrap(&small, ram, 64 * KIB);
	err.msg[0] = 0;
	assert_int_equal(mptable_write(&small, LAYOUT_MPTABLE, 1, LAYOUT_IOAPIC_ADDR, &err), -1);
	assert_string_equal(err.msg, "MP table of 240 bytes does not fit at 0x9fc00");
}

/* ------------------------------------------------------------------------------------------ */
/* 16550A UART                                                                                 */

enum { RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

struct uart_fx {
	struct serial s;
	struct console con;
	int pipe[2];
	int pulses, drained;
};

static void count_pulse(void *ctx)
{
	((struct uart_fx *)ctx)->pulses++;
}

static void count_drained(void *ctx)
{
	((struct uart_fx *)ctx)->drained++;
}

static int uart_setup(void **state)
{
	struct uart_fx *f = calloc(1, sizeof(*f));

	if (!f || pipe2(f->pipe, O_NONBLOCK | O_CLOEXEC))
		return -1;
	f->con.out_fd = f->pipe[1];
	f->con.in_fd = -1;
	serial_init(&f->s, &f->con);
	f->s.irq_pulse = count_pulse;
	f->s.irq_ctx = f;
	f->s.rx_drained = count_drained;
	f->s.rx_ctx = f;
	*state = f;
	return 0;
}

static int uart_teardown(void **state)
{
	struct uart_fx *f = *state;

	close(f->pipe[0]);
	close(f->pipe[1]);
	pthread_mutex_destroy(&f->s.lock);
	free(f);
	return 0;
}

static uint8_t uin(struct uart_fx *f, uint64_t off)
{
	uint8_t v[4] = {0x5a, 0x5a, 0x5a, 0x5a};

	serial_bus_ops.read(&f->s, off, v, 1);
	return v[0];
}

static void uout(struct uart_fx *f, uint64_t off, uint8_t v)
{
	serial_bus_ops.write(&f->s, off, &v, 1);
}

/* Everything written to the console so far (NUL-terminated). */
static size_t drain_pipe(struct uart_fx *f, char *buf, size_t cap)
{
	ssize_t n = read(f->pipe[0], buf, cap - 1);

	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		n = 0;
	}
	buf[n] = 0;
	return (size_t)n;
}

static void test_uart_reset_state(void **state)
{
	struct uart_fx *f = *state;

	assert_int_equal(uin(f, LSR), 0x60); /* THRE | TEMT, no data */
	assert_int_equal(uin(f, IIR), 0x01); /* no interrupt, FIFO off */
	assert_int_equal(uin(f, IER), 0);
	assert_int_equal(uin(f, MCR), 0x08); /* OUT2 */
	assert_int_equal(uin(f, MSR), 0xb0); /* DCD, DSR, CTS */
	assert_int_equal(uin(f, RBR), 0);    /* empty FIFO reads 0 */
	assert_int_equal(serial_rx_space(&f->s), SERIAL_RX_FIFO);
	assert_int_equal(f->pulses, 0);
}

static void test_uart_thr_output(void **state)
{
	struct uart_fx *f = *state;
	char buf[64];

	uout(f, RBR, 'h');
	uout(f, RBR, 'i');
	assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 2);
	assert_string_equal(buf, "hi");
	assert_int_equal(f->s.tx_bytes, 2);
	assert_int_equal(uin(f, LSR), 0x60);
	assert_int_equal(f->pulses, 0); /* THRE interrupt not enabled */
}

static void test_uart_write_rep(void **state)
{
	struct uart_fx *f = *state;
	const char *msg = "hello from a rep outsb\n";
	char buf[64];

	serial_bus_ops.write_rep(&f->s, RBR, (const uint8_t *)msg, 1, (uint32_t)strlen(msg));
	assert_int_equal(drain_pipe(f, buf, sizeof(buf)), strlen(msg));
	assert_string_equal(buf, msg);
	assert_int_equal(f->s.tx_bytes, strlen(msg));

	/* Through the bus: the same single write. */
	{
		struct bus b = {.n = 0};

		assert_int_equal(bus_add(&b, PORT_COM1, 8, &serial_bus_ops, &f->s, "com1"), 0);
		assert_true(bus_write_rep(&b, PORT_COM1, (const uint8_t *)"abc", 1, 3));
		assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 3);
		assert_string_equal(buf, "abc");
	}
	/* A string write to another register falls back to single writes: last one wins. */
	serial_bus_ops.write_rep(&f->s, SCR, (const uint8_t *)"xyz", 1, 3);
	assert_int_equal(uin(f, SCR), 'z');
	assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 0);
}

static void test_uart_receive_order(void **state)
{
	struct uart_fx *f = *state;

	assert_int_equal(serial_receive(&f->s, (const uint8_t *)"abc", 3), 3);
	assert_int_equal(uin(f, LSR), 0x61); /* DR */
	assert_int_equal(serial_rx_space(&f->s), SERIAL_RX_FIFO - 3);
	assert_int_equal(uin(f, RBR), 'a');
	assert_int_equal(uin(f, RBR), 'b');
	assert_int_equal(f->drained, 0);
	assert_int_equal(uin(f, LSR), 0x61);
	assert_int_equal(uin(f, RBR), 'c');
	assert_int_equal(f->drained, 1); /* the guest emptied the FIFO */
	assert_int_equal(uin(f, LSR), 0x60);
	assert_int_equal(uin(f, RBR), 0);
	assert_int_equal(f->drained, 1);
	assert_int_equal(f->s.rx_bytes, 3);
	assert_int_equal(f->pulses, 0); /* RDI not enabled */
}

static void test_uart_fifo_limit(void **state)
{
	struct uart_fx *f = *state;
	uint8_t in[SERIAL_RX_FIFO + 10];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	assert_int_equal(serial_receive(&f->s, in, sizeof(in)), SERIAL_RX_FIFO);
	assert_int_equal(serial_rx_space(&f->s), 0);
	assert_int_equal(serial_receive(&f->s, in, 1), 0);
	/* Reads free room; order survives the ring wrapping around. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(uin(f, RBR), i);
	assert_int_equal(serial_receive(&f->s, in + SERIAL_RX_FIFO, 20), 10);
	for (int i = 10; i < SERIAL_RX_FIFO + 10; i++)
		assert_int_equal(uin(f, RBR), i);
	assert_int_equal(uin(f, LSR) & 1, 0);

	/* FCR bit 1 clears the receive FIFO. */
	assert_int_equal(serial_receive(&f->s, in, 5), 5);
	uout(f, FCR, 0x03);
	assert_int_equal(uin(f, LSR), 0x60);
	assert_int_equal(serial_rx_space(&f->s), SERIAL_RX_FIFO);
}

static void test_uart_rx_interrupt(void **state)
{
	struct uart_fx *f = *state;

	uout(f, IER, 0x01);
	assert_int_equal(f->pulses, 0); /* nothing received yet */
	assert_int_equal(uin(f, IIR), 0x01);
	assert_int_equal(serial_receive(&f->s, (const uint8_t *)"x", 1), 1);
	assert_int_equal(f->pulses, 1);
	assert_int_equal(uin(f, IIR), 0x04);
	assert_int_equal(uin(f, IIR), 0x04); /* reading IIR does not acknowledge RDI */
	assert_int_equal(uin(f, RBR), 'x');
	assert_int_equal(uin(f, IIR), 0x01);
	/* Data already waiting when RDI gets enabled: interrupt at once. */
	uout(f, IER, 0x00);
	assert_int_equal(serial_receive(&f->s, (const uint8_t *)"y", 1), 1);
	assert_int_equal(f->pulses, 1);
	uout(f, IER, 0x01);
	assert_int_equal(f->pulses, 2);
	/* FIFO enabled: IIR bits 7:6 set. */
	uout(f, FCR, 0x01);
	assert_int_equal(uin(f, IIR), 0xc4);
	assert_int_equal(uin(f, RBR), 'y');
	assert_int_equal(uin(f, IIR), 0xc1);
}

static void test_uart_thre_interrupt(void **state)
{
	struct uart_fx *f = *state;
	char buf[8];

	/* Enabling THRI with an empty THR raises the interrupt at once. */
	uout(f, IER, 0x02);
	assert_int_equal(f->pulses, 1);
	assert_int_equal(uin(f, IER), 0x02);
	assert_int_equal(uin(f, IIR), 0x02);
	/* That read acknowledged it. */
	assert_int_equal(uin(f, IIR), 0x01);
	/* Rewriting IER with THRI still set is not a new edge. */
	uout(f, IER, 0x02);
	assert_int_equal(f->pulses, 1);
	assert_int_equal(uin(f, IIR), 0x01);
	/* Each THR write raises it again. */
	uout(f, RBR, 'a');
	assert_int_equal(f->pulses, 2);
	assert_int_equal(uin(f, IIR), 0x02);
	assert_int_equal(uin(f, IIR), 0x01);
	serial_bus_ops.write_rep(&f->s, RBR, (const uint8_t *)"bc", 1, 2);
	assert_int_equal(f->pulses, 3); /* one pulse for the whole string */
	assert_int_equal(uin(f, IIR), 0x02);
	assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 3);
	/* Disable, then enable again: a new interrupt. */
	uout(f, IER, 0x00);
	uout(f, IER, 0x02);
	assert_int_equal(f->pulses, 4);
	assert_int_equal(uin(f, IIR), 0x02);
}

static void test_uart_iir_priority(void **state)
{
	struct uart_fx *f = *state;

	uout(f, IER, 0x03); /* RDI and THRI */
	assert_int_equal(f->pulses, 1);
	assert_int_equal(serial_receive(&f->s, (const uint8_t *)"q", 1), 1);
	assert_int_equal(f->pulses, 2);
	/* Received data outranks THRE; reading IIR then does not acknowledge THRE. */
	assert_int_equal(uin(f, IIR), 0x04);
	assert_int_equal(uin(f, IIR), 0x04);
	assert_int_equal(uin(f, RBR), 'q');
	assert_int_equal(uin(f, IIR), 0x02);
	assert_int_equal(uin(f, IIR), 0x01);
}

static void test_uart_dlab(void **state)
{
	struct uart_fx *f = *state;
	char buf[8];

	uout(f, IER, 0x05);
	uout(f, LCR, 0x83); /* DLAB, 8N1 */
	assert_int_equal(uin(f, LCR), 0x83);
	assert_int_equal(uin(f, RBR), 12); /* divisor left by serial_init: 9600 baud */
	assert_int_equal(uin(f, IER), 0);
	uout(f, RBR, 0x01); /* 115200 baud */
	uout(f, IER, 0x02);
	assert_int_equal(uin(f, RBR), 0x01);
	assert_int_equal(uin(f, IER), 0x02);
	assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 0); /* DLL write is not output */
	assert_int_equal(f->pulses, 0);                       /* DLM write is not IER */
	/* Pending input is not consumed by DLL reads. */
	assert_int_equal(serial_receive(&f->s, (const uint8_t *)"z", 1), 1);
	assert_int_equal(uin(f, RBR), 0x01);
	uout(f, LCR, 0x03);
	assert_int_equal(uin(f, IER), 0x05);
	assert_int_equal(uin(f, RBR), 'z');
	assert_int_equal(f->s.dll, 0x01);
	assert_int_equal(f->s.dlm, 0x02);
	/* rep outsb while DLAB is set goes to DLL too. */
	uout(f, LCR, 0x83);
	serial_bus_ops.write_rep(&f->s, RBR, (const uint8_t *)"\x03\x04", 1, 2);
	assert_int_equal(uin(f, RBR), 0x04);
	assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 0);
}

static void test_uart_loopback(void **state)
{
	struct uart_fx *f = *state;
	char buf[8];

	uout(f, IER, 0x01);
	uout(f, MCR, 0x10 | 0x0b); /* loop, OUT2, RTS, DTR */
	assert_int_equal(uin(f, MCR), 0x1b);
	uout(f, RBR, 'L');
	assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 0); /* nothing leaves the UART */
	assert_int_equal(f->pulses, 1);                       /* RDI */
	assert_int_equal(uin(f, LSR) & 1, 1);
	assert_int_equal(uin(f, IIR), 0x04);
	assert_int_equal(uin(f, RBR), 'L');
	assert_int_equal(uin(f, LSR) & 1, 0);

	/* MSR mirrors MCR: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD. */
	uout(f, MCR, 0x10);
	assert_int_equal(uin(f, MSR), 0x00);
	uout(f, MCR, 0x11);
	assert_int_equal(uin(f, MSR), 0x20);
	uout(f, MCR, 0x12);
	assert_int_equal(uin(f, MSR), 0x10);
	uout(f, MCR, 0x14);
	assert_int_equal(uin(f, MSR), 0x40);
	uout(f, MCR, 0x18);
	assert_int_equal(uin(f, MSR), 0x80);
	uout(f, MCR, 0x1f);
	assert_int_equal(uin(f, MSR), 0xf0);
	/* Out of loopback: output flows again and MSR shows the fixed lines. */
	uout(f, MCR, 0x0b);
	assert_int_equal(uin(f, MSR), 0xb0);
	uout(f, RBR, 'o');
	assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "o");
	/* MCR keeps only its five defined bits. */
	uout(f, MCR, 0xff);
	assert_int_equal(uin(f, MCR), 0x1f);
}

static void test_uart_scratch_and_readonly(void **state)
{
	struct uart_fx *f = *state;

	uout(f, SCR, 0xa5);
	assert_int_equal(uin(f, SCR), 0xa5);
	uout(f, SCR, 0x00);
	assert_int_equal(uin(f, SCR), 0x00);
	/* LSR and MSR ignore writes. */
	uout(f, LSR, 0x00);
	uout(f, MSR, 0x00);
	assert_int_equal(uin(f, LSR), 0x60);
	assert_int_equal(uin(f, MSR), 0xb0);
	/* IER keeps only its low four bits. */
	uout(f, IER, 0xf0);
	assert_int_equal(uin(f, IER), 0x00);
}

static void test_uart_no_console(void **state)
{
	struct uart_fx *f = *state;

	/* Output discarded (--console none) must still count and raise THRE. */
	f->con.out_fd = -1;
	uout(f, IER, 0x02);
	assert_int_equal(uin(f, IIR), 0x02);
	uout(f, RBR, 'n');
	assert_int_equal(f->s.tx_bytes, 1);
	assert_int_equal(uin(f, IIR), 0x02);
	f->con.out_fd = f->pipe[1];
}

/* ------------------------------------------------------------------------------------------ */
/* Device bus                                                                                  */

struct rec_dev {
	int reads, writes, reps;
	uint64_t off;
	uint32_t size, count;
	uint8_t last[8];
	uint8_t fill;
};

static void rec_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	struct rec_dev *d = opaque;

	d->reads++;
	d->off = off;
	d->size = size;
	memset(data, d->fill, size);
}

static void rec_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	struct rec_dev *d = opaque;

	d->writes++;
	d->off = off;
	d->size = size;
	memcpy(d->last, data, size < 8 ? size : 8);
}

static void rec_write_rep(void *opaque, uint64_t off, const uint8_t *data, uint32_t size,
                          uint32_t count)
{
	struct rec_dev *d = opaque;

	d->reps++;
	d->off = off;
	d->size = size;
	d->count = count;
	memcpy(d->last, data, 1);
}

static const struct bus_ops rec_ops = {.read = rec_read, .write = rec_write};
static const struct bus_ops rec_rep_ops = {
    .read = rec_read, .write = rec_write, .write_rep = rec_write_rep};
static const struct bus_ops write_only_ops = {.write = rec_write};

static void test_bus_add(void **state)
{
	struct bus b = {.n = 0};
	struct rec_dev d = {0};

	(void)state;
	assert_int_equal(bus_add(&b, 0x100, 8, &rec_ops, &d, "a"), 0);
	/* Overlaps: same range, inside, straddling either end, covering. */
	assert_int_equal(bus_add(&b, 0x100, 8, &rec_ops, &d, "x"), -1);
	assert_int_equal(bus_add(&b, 0x104, 1, &rec_ops, &d, "x"), -1);
	assert_int_equal(bus_add(&b, 0xfc, 8, &rec_ops, &d, "x"), -1);
	assert_int_equal(bus_add(&b, 0x107, 8, &rec_ops, &d, "x"), -1);
	assert_int_equal(bus_add(&b, 0x0, 0x1000, &rec_ops, &d, "x"), -1);
	/* Adjacent on both sides is fine. */
	assert_int_equal(bus_add(&b, 0x108, 8, &rec_ops, &d, "b"), 0);
	assert_int_equal(bus_add(&b, 0xf8, 8, &rec_ops, &d, "c"), 0);
	/* Empty and wrapping ranges. */
	assert_int_equal(bus_add(&b, 0x200, 0, &rec_ops, &d, "x"), -1);
	assert_int_equal(bus_add(&b, UINT64_MAX - 3, 8, &rec_ops, &d, "x"), -1);
	assert_int_equal(b.n, 3);
	assert_string_equal(b.dev[0].name, "a");
}

static void test_bus_full(void **state)
{
	struct bus b = {.n = 0};
	struct rec_dev d = {0};

	(void)state;
	for (int i = 0; i < BUS_MAX_DEVICES; i++)
		assert_int_equal(bus_add(&b, 0x1000 + (uint64_t)i * 0x10, 0x10, &rec_ops, &d, "d"),
		                 0);
	assert_int_equal(bus_add(&b, 0x9000, 1, &rec_ops, &d, "one too many"), -1);
	assert_int_equal(b.n, BUS_MAX_DEVICES);
}

static void test_bus_dispatch(void **state)
{
	struct bus b = {.n = 0};
	struct rec_dev d1 = {.fill = 0x11}, d2 = {.fill = 0x22};
	uint8_t buf[8];

	(void)state;
	assert_int_equal(bus_add(&b, 0x3f8, 8, &rec_ops, &d1, "com1"), 0);
	assert_int_equal(bus_add(&b, 0xd0000000ULL, 0x1000, &rec_ops, &d2, "mmio"), 0);

	assert_true(bus_read(&b, 0x3fd, buf, 1));
	assert_int_equal(d1.reads, 1);
	assert_int_equal(d1.off, 5);
	assert_int_equal(d1.size, 1);
	assert_int_equal(buf[0], 0x11);

	assert_true(bus_write(&b, 0x3f8, (const uint8_t *)"A", 1));
	assert_int_equal(d1.writes, 1);
	assert_int_equal(d1.off, 0);
	assert_int_equal(d1.last[0], 'A');

	memset(buf, 0, sizeof(buf));
	assert_true(bus_read(&b, 0xd0000ffcULL, buf, 4));
	assert_int_equal(d2.off, 0xffc);
	assert_int_equal(d2.size, 4);
	assert_memory_equal(buf, "\x22\x22\x22\x22", 4);
	assert_true(bus_write(&b, 0xd0000010ULL, (const uint8_t *)"\x01\x02\x03\x04", 4));
	assert_int_equal(d2.off, 0x10);
	assert_memory_equal(d2.last, "\x01\x02\x03\x04", 4);
	assert_int_equal(d1.reads, 1);
	assert_int_equal(d1.writes, 1);
}

static void test_bus_unclaimed(void **state)
{
	struct bus b = {.n = 0};
	struct rec_dev d = {.fill = 0x33};
	uint8_t buf[8];

	(void)state;
	assert_int_equal(bus_add(&b, 0x100, 8, &rec_ops, &d, "dev"), 0);
	memset(buf, 0, sizeof(buf));
	assert_false(bus_read(&b, 0x80, buf, 4));
	assert_memory_equal(buf, "\xff\xff\xff\xff\0\0\0\0", 8);
	assert_false(bus_write(&b, 0x80, buf, 1));
	assert_false(bus_write_rep(&b, 0x80, buf, 1, 4));
	/* Straddling the device's end (or start) is not claimed. */
	memset(buf, 0, sizeof(buf));
	assert_false(bus_read(&b, 0x106, buf, 4));
	assert_memory_equal(buf, "\xff\xff\xff\xff", 4);
	assert_false(bus_write(&b, 0x107, buf, 2));
	assert_false(bus_read(&b, 0xff, buf, 2));
	assert_false(bus_read(&b, 0x108, buf, 1));
	/* The last bytes inside are. */
	assert_true(bus_read(&b, 0x104, buf, 4));
	assert_int_equal(d.off, 4);
	assert_true(bus_read(&b, 0x107, buf, 1));
	assert_int_equal(d.off, 7);
	assert_int_equal(d.reads, 2);
	assert_int_equal(d.writes, 0);
	/* Huge addresses do not wrap into the device. */
	assert_false(bus_read(&b, UINT64_MAX, buf, 2));
}

static void test_bus_write_only_device(void **state)
{
	struct bus b = {.n = 0};
	struct rec_dev d = {0};
	uint8_t buf[2] = {0, 0};

	(void)state;
	assert_int_equal(bus_add(&b, 0xf4, 1, &write_only_ops, &d, "exit"), 0);
	assert_true(bus_read(&b, 0xf4, buf, 1)); /* claimed, but reads see all ones */
	assert_int_equal(buf[0], 0xff);
	assert_true(bus_write(&b, 0xf4, (const uint8_t *)"\x07", 1));
	assert_int_equal(d.last[0], 7);
}

static void test_bus_write_rep(void **state)
{
	struct bus b = {.n = 0};
	struct rec_dev plain = {0}, rep = {0};
	const uint8_t data[6] = {1, 2, 3, 4, 5, 6};

	(void)state;
	assert_int_equal(bus_add(&b, 0x10, 4, &rec_ops, &plain, "plain"), 0);
	assert_int_equal(bus_add(&b, 0x20, 4, &rec_rep_ops, &rep, "rep"), 0);
	/* Without write_rep: one write per item, same offset. */
	assert_true(bus_write_rep(&b, 0x12, data, 2, 3));
	assert_int_equal(plain.writes, 3);
	assert_int_equal(plain.off, 2);
	assert_int_equal(plain.size, 2);
	assert_memory_equal(plain.last, "\x05\x06", 2);
	/* With write_rep: one call. */
	assert_true(bus_write_rep(&b, 0x21, data, 1, 6));
	assert_int_equal(rep.reps, 1);
	assert_int_equal(rep.writes, 0);
	assert_int_equal(rep.off, 1);
	assert_int_equal(rep.count, 6);
}

/* ------------------------------------------------------------------------------------------ */
/* CMOS RTC                                                                                    */

static uint8_t cmos_get(struct rtc_cmos *c, uint8_t reg)
{
	uint8_t v[2] = {0xee, 0xee};

	rtc_cmos_bus_ops.write(c, 0, &reg, 1);
	rtc_cmos_bus_ops.read(c, 1, v, 1);
	return v[0];
}

static void cmos_set(struct rtc_cmos *c, uint8_t reg, uint8_t val)
{
	rtc_cmos_bus_ops.write(c, 0, &reg, 1);
	rtc_cmos_bus_ops.write(c, 1, &val, 1);
}

static int from_bcd(uint8_t v)
{
	assert_true((v & 0x0f) <= 9);
	assert_true((v >> 4) <= 9);
	return (v >> 4) * 10 + (v & 0x0f);
}

static void test_rtc_index_data(void **state)
{
	struct rtc_cmos c;
	uint8_t v = 0, idx = 0x8b; /* NMI mask bit set */

	(void)state;
	rtc_cmos_init(&c);
	rtc_cmos_bus_ops.write(&c, 0, &idx, 1);
	rtc_cmos_bus_ops.read(&c, 0, &v, 1);
	assert_int_equal(v, 0x0b); /* bit 7 is not part of the index */
	rtc_cmos_bus_ops.read(&c, 1, &v, 1);
	assert_int_equal(v, 0x02);
	assert_int_equal(cmos_get(&c, 0x0a), 0x26);
	assert_int_equal(cmos_get(&c, 0x0b), 0x02); /* 24-hour, BCD */
	assert_int_equal(cmos_get(&c, 0x0c), 0x00);
	assert_int_equal(cmos_get(&c, 0x0d), 0x80); /* valid RAM and time */
	/* Plain CMOS RAM keeps what the guest writes. */
	assert_int_equal(cmos_get(&c, 0x10), 0x00);
	cmos_set(&c, 0x10, 0x5a);
	cmos_set(&c, 0x7f, 0xa5);
	assert_int_equal(cmos_get(&c, 0x10), 0x5a);
	assert_int_equal(cmos_get(&c, 0x7f), 0xa5);
	/* The clock and status registers ignore writes. */
	cmos_set(&c, 0x0b, 0x06);
	cmos_set(&c, 0x0d, 0x00);
	assert_int_equal(cmos_get(&c, 0x0b), 0x02);
	assert_int_equal(cmos_get(&c, 0x0d), 0x80);
	/* Alarm registers read 0. */
	assert_int_equal(cmos_get(&c, 0x01), 0x00);
	assert_int_equal(cmos_get(&c, 0x03), 0x00);
	assert_int_equal(cmos_get(&c, 0x05), 0x00);
	pthread_mutex_destroy(&c.lock);
}

static void test_rtc_time_bcd(void **state)
{
	static const uint8_t regs[] = {0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32};
	struct rtc_cmos c;
	uint8_t a[8], b[8];
	int tries = 0;

	(void)state;
	rtc_cmos_init(&c);
	/* Read twice until both agree (a second may tick between registers). */
	do {
		for (size_t i = 0; i < sizeof(regs); i++)
			a[i] = cmos_get(&c, regs[i]);
		for (size_t i = 0; i < sizeof(regs); i++)
			b[i] = cmos_get(&c, regs[i]);
	} while (memcmp(a, b, sizeof(a)) && ++tries < 5);
	assert_memory_equal(a, b, sizeof(a));

	{
		struct tm tm = {0};
		int sec = from_bcd(a[0]), min = from_bcd(a[1]), hour = from_bcd(a[2]);
		int wday = from_bcd(a[3]), mday = from_bcd(a[4]), mon = from_bcd(a[5]);
		int year = from_bcd(a[6]), century = from_bcd(a[7]);
		struct timespec ts;
		time_t now, rtc;

		assert_in_range(sec, 0, 59);
		assert_in_range(min, 0, 59);
		assert_in_range(hour, 0, 23);
		assert_in_range(wday, 1, 7);
		assert_in_range(mday, 1, 31);
		assert_in_range(mon, 1, 12);
		assert_in_range(century, 20, 21);
		tm.tm_sec = sec;
		tm.tm_min = min;
		tm.tm_hour = hour;
		tm.tm_mday = mday;
		tm.tm_mon = mon - 1;
		tm.tm_year = century * 100 + year - 1900;
		rtc = timegm(&tm);
		/* The RTC's clock, CLOCK_REALTIME: time() may be a coarse clock a tick behind it,
		 * which made this fail when a second began between the two reads. */
		clock_gettime(CLOCK_REALTIME, &ts);
		now = ts.tv_sec;
		assert_true(rtc <= now && now - rtc <= 2); /* UTC, within two seconds */
		assert_int_equal(tm.tm_wday + 1, wday);    /* timegm filled in the weekday */
	}
	pthread_mutex_destroy(&c.lock);
}

/* ------------------------------------------------------------------------------------------ */
/* Host MMU detection                                                                          */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tree(const char *root)
{
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Create root/rel (parents too); `content` NULL makes a directory. */
static void make_path(const char *root, const char *rel, const char *content)
{
	char p[512];
	size_t n = (size_t)snprintf(p, sizeof(p), "%s/%s", root, rel);

	assert_true(n < sizeof(p));
	for (char *s = p + strlen(root) + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
		*s = '/';
	}
	if (!content) {
		assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
	} else {
		FILE *f = fopen(p, "w");

		assert_non_null(f);
		fputs(content, f);
		fclose(f);
	}
}

static void detect_in(const char *setup[][2], size_t n, struct host_mmu *h)
{
	char root[] = "/tmp/hearth-test-sysfs-XXXXXX";

	assert_non_null(mkdtemp(root));
	for (size_t i = 0; i < n; i++)
		make_path(root, setup[i][0], setup[i][1]);
	memset(h, 0xa5, sizeof(*h));
	host_mmu_detect(h, root);
	rm_tree(root);
}

static void test_host_mmu_pvm(void **state)
{
	const char *s[][2] = {{"module/kvm_pvm", NULL}, {"module/kvm/parameters/tdp_mmu", "N\n"}};
	const char *s_and_ept[][2] = {{"module/kvm_pvm/parameters/x", "1\n"},
	                              {"module/kvm_intel/parameters/ept", "Y\n"}};
	struct host_mmu h;

	(void)state;
	detect_in(s, 2, &h);
	assert_int_equal(h.kind, HOST_MMU_PVM);
	assert_true(h.cpl0_emulated);
	assert_false(h.gbpages_ok);
	assert_non_null(strstr(host_mmu_describe(&h), "pvm"));
	/* kvm_pvm wins over a loaded kvm_intel. */
	detect_in(s_and_ept, 2, &h);
	assert_int_equal(h.kind, HOST_MMU_PVM);
	assert_true(h.cpl0_emulated);
	assert_false(h.gbpages_ok);
}

static void test_host_mmu_ept(void **state)
{
	const char *y[][2] = {{"module/kvm_intel/parameters/ept", "Y\n"}};
	const char *n[][2] = {{"module/kvm_intel/parameters/ept", "N\n"}};
	struct host_mmu h;

	(void)state;
	detect_in(y, 1, &h);
	assert_int_equal(h.kind, HOST_MMU_EPT);
	assert_false(h.cpl0_emulated);
	assert_true(h.gbpages_ok);
	assert_non_null(strstr(host_mmu_describe(&h), "ept"));
	detect_in(n, 1, &h);
	assert_int_equal(h.kind, HOST_MMU_SHADOW);
	assert_false(h.cpl0_emulated);
	assert_true(h.gbpages_ok);
}

static void test_host_mmu_npt(void **state)
{
	const char *one[][2] = {{"module/kvm_amd/parameters/npt", "1\n"}};
	const char *zero[][2] = {{"module/kvm_amd/parameters/npt", "0\n"}};
	struct host_mmu h;

	(void)state;
	detect_in(one, 1, &h);
	assert_int_equal(h.kind, HOST_MMU_NPT);
	assert_false(h.cpl0_emulated);
	assert_true(h.gbpages_ok);
	assert_non_null(strstr(host_mmu_describe(&h), "npt"));
	detect_in(zero, 1, &h);
	assert_int_equal(h.kind, HOST_MMU_SHADOW);
}

static void test_host_mmu_none(void **state)
{
	const char *empty_param[][2] = {{"module/kvm_intel/parameters/ept", ""}};
	const char *other[][2] = {{"module/kvm", NULL}};
	struct host_mmu h;

	(void)state;
	detect_in(empty_param, 1, &h);
	assert_false(h.assumed);
	assert_false(h.cpl0_emulated);
	assert_true(h.gbpages_ok);
	assert_non_null(strstr(host_mmu_describe(&h), "shadow"));
	assert_int_equal(h.kind, HOST_MMU_SHADOW);
	detect_in(other, 1, &h);
	assert_int_equal(h.kind, HOST_MMU_SHADOW);
}

/* /dev/kvm: present or not, and why not, in words that name the device. */
static void test_host_kvm_probe(void **state)
{
	char root[] = "/tmp/hearth-test-kvm-XXXXXX", dev[64];
	struct host_kvm k;

	(void)state;
	assert_non_null(mkdtemp(root));
	snprintf(dev, sizeof(dev), "%s/kvm", root);
	/* Absent, with kvm_pvm loaded and nothing else: the PVM-guest case. */
	make_path(root, "module/kvm_pvm", NULL);
	make_path(root, "module/kvm", NULL);
	host_kvm_probe(&k, dev, root);
	assert_int_equal(k.state, KVM_ABSENT);
	assert_non_null(strstr(k.detail, dev));
	assert_non_null(strstr(k.detail, "does not exist"));
	assert_non_null(strstr(k.detail, "kvm_pvm"));
	assert_string_equal(host_kvm_state_name(k.state), "absent");
	/* Present and openable. */
	make_path(root, "kvm", "");
	host_kvm_probe(&k, dev, root);
	assert_int_equal(k.state, KVM_AVAILABLE);
	assert_string_equal(k.detail, "");
	assert_string_equal(host_kvm_state_name(k.state), "available");
	/* Cannot be opened for another reason. */
	snprintf(dev, sizeof(dev), "%s/kvm/x", root);
	host_kvm_probe(&k, dev, root);
	assert_int_equal(k.state, KVM_UNUSABLE);
	assert_non_null(strstr(k.detail, "Not a directory"));
	rm_tree(root);
}

/* No sysfs (a jail): the host CPU decides, and the description says it is an assumption. */
static void test_host_mmu_without_sysfs(void **state)
{
	unsigned a, b, c = 0, d;
	bool vmx = false, svm = false;
	struct host_mmu h, h2;

	(void)state;
	if (__get_cpuid(1, &a, &b, &c, &d))
		vmx = c & (1u << 5);
	c = 0;
	if (__get_cpuid(0x80000001, &a, &b, &c, &d))
		svm = c & (1u << 2);
	host_mmu_detect(&h, "/nonexistent/hearth-sysfs");
	assert_true(h.assumed);
	assert_non_null(strstr(host_mmu_describe(&h), "assumed"));
	if (!vmx && !svm) {
		assert_int_equal(h.kind, HOST_MMU_PVM);
		assert_true(h.cpl0_emulated);
		assert_false(h.gbpages_ok);
	} else {
		assert_int_equal(h.kind, vmx ? HOST_MMU_EPT : HOST_MMU_NPT);
		assert_false(h.cpl0_emulated);
	}
	/* An empty sysfs root (no module/) is the same case. */
	detect_in(NULL, 0, &h2);
	assert_true(h2.assumed);
	assert_int_equal(h2.kind, h.kind);
}

/* ------------------------------------------------------------------------------------------ */
/* Command line                                                                                */

/* glibc keeps state between getopt calls that optind = 1 does not reset; start clean so each
 * test is independent (test_cli_reparse_after_cluster_error checks cli_parse itself). */
static void getopt_reset(void)
{
	static char *dummy[] = {"x", NULL};

	optind = 0;
	getopt(1, dummy, "");
}

#define MAX_ARGS 40

/* One parse: the arguments are heap copies (cli_parse may edit them, e.g. --drive). */
struct cli_run {
	char *argv[MAX_ARGS + 2];
	int argc;
	struct vm_config cfg;
	struct cli_opts o;
	struct error err;
	enum cli_result r;
};

/* The current parse; each parse frees the previous one, the group teardown the last. */
static struct cli_run R;

static void cli_free(struct cli_run *c)
{
	for (int i = 0; i < c->argc; i++)
		free(c->argv[i]);
	vm_config_free(&c->cfg);
	memset(c, 0, sizeof(*c));
}

static int cli_group_teardown(void **state)
{
	(void)state;
	cli_free(&R);
	return 0;
}

static enum cli_result cli_run_v(bool reset, va_list ap)
{
	const char *a;

	cli_free(&R);
	R.argv[R.argc++] = strdup("hearth");
	while ((a = va_arg(ap, const char *)) != NULL) {
		assert_true(R.argc <= MAX_ARGS);
		R.argv[R.argc++] = strdup(a);
	}
	R.argv[R.argc] = NULL;
	vm_config_defaults(&R.cfg);
	if (reset)
		getopt_reset();
	R.r = cli_parse(R.argc, R.argv, &R.cfg, &R.o, &R.err);
	return R.r;
}

/* Parse "hearth" + the arguments (NULL-terminated) into R. */
static enum cli_result cli_args(int dummy, ...)
{
	va_list ap;
	enum cli_result r;

	va_start(ap, dummy);
	r = cli_run_v(true, ap);
	va_end(ap);
	return r;
}

/* The same without resetting getopt first. */
static enum cli_result cli_args_noreset(int dummy, ...)
{
	va_list ap;
	enum cli_result r;

	va_start(ap, dummy);
	r = cli_run_v(false, ap);
	va_end(ap);
	return r;
}

#define CLI(...)         cli_args(0, __VA_ARGS__, (const char *)NULL)
#define CLI_NORESET(...) cli_args_noreset(0, __VA_ARGS__, (const char *)NULL)
#define CLI_NONE()       cli_args(0, (const char *)NULL)

#define EXPECT_CLI_ERROR(want, ...)                                                                \
	do {                                                                                       \
		assert_int_equal(CLI(__VA_ARGS__), CLI_ERROR);                                     \
		assert_string_equal(R.err.msg, want);                                              \
	} while (0)

#define NO_KERNEL "no kernel: --kernel PATH is required (or --api-sock / --config-file; see --help)"

static void test_cli_defaults(void **state)
{
	(void)state;
	assert_int_equal(CLI("--kernel", "vmlinux"), CLI_RUN);
	assert_string_equal(R.cfg.kernel_path, "vmlinux");
	assert_null(R.cfg.initrd_path);
	assert_null(R.cfg.cmdline);
	assert_int_equal(R.cfg.mem_mib, 128);
	assert_int_equal(R.cfg.vcpus, 1);
	assert_int_equal(R.cfg.console, CONSOLE_STDIO);
	assert_null(R.cfg.console_path);
	assert_int_equal(R.cfg.mmu, MMU_AUTO);
	assert_int_equal(R.cfg.boot_protocol, BOOT_PROTO_AUTO);
	assert_true(R.cfg.timeout_sec == 0);
	assert_string_equal(R.cfg.id, "anonymous-instance");
	assert_int_equal(R.cfg.ndrives, 0);
	assert_false(R.cfg.virtio_console);
	assert_false(R.cfg.boot_timer);
	assert_null(R.cfg.api_sock);
	assert_null(R.cfg.config_file);
	assert_false(R.cfg.no_api);
	assert_false(R.o.help);
	assert_false(R.o.version);
	assert_false(R.o.verbose);
	assert_string_equal(R.err.msg, "");
}

static void test_cli_every_flag(void **state)
{
	(void)state;
	assert_int_equal(CLI("--kernel", "k.elf", "--initrd", "rd.img", "--cmdline",
	                     "console=ttyS0 quiet", "--mem", "256", "--vcpus", "4", "--console",
	                     "none", "--mmu", "hardware", "--boot", "pvh", "--timeout", "1.5",
	                     "--id", "vm_01-A", "--verbose", "--virtio-console", "--boot-timer",
	                     "--drive", "/tmp/a.img", "--drive", "/tmp/b.img,ro,id=data_1"),
	                 CLI_RUN);
	assert_string_equal(R.cfg.kernel_path, "k.elf");
	assert_string_equal(R.cfg.initrd_path, "rd.img");
	assert_string_equal(R.cfg.cmdline, "console=ttyS0 quiet");
	assert_int_equal(R.cfg.mem_mib, 256);
	assert_int_equal(R.cfg.vcpus, 4);
	assert_int_equal(R.cfg.console, CONSOLE_NONE);
	assert_int_equal(R.cfg.mmu, MMU_HARDWARE);
	assert_int_equal(R.cfg.boot_protocol, BOOT_PROTO_PVH);
	assert_true(R.cfg.timeout_sec == 1.5);
	assert_string_equal(R.cfg.id, "vm_01-A");
	assert_true(R.o.verbose);
	assert_true(R.cfg.virtio_console);
	assert_true(R.cfg.boot_timer);
	assert_int_equal(R.cfg.ndrives, 2);
	assert_string_equal(R.cfg.drives[0].path, "/tmp/a.img");
	assert_string_equal(R.cfg.drives[0].id, "drive0");
	assert_false(R.cfg.drives[0].read_only);
	assert_string_equal(R.cfg.drives[1].path, "/tmp/b.img");
	assert_string_equal(R.cfg.drives[1].id, "data_1");
	assert_true(R.cfg.drives[1].read_only);

	/* The other values of each enumerated flag, and --flag=value. */
	assert_int_equal(
	    CLI("--kernel=k", "--console", "stdio", "--mmu", "shadow", "--boot", "linux"), CLI_RUN);
	assert_string_equal(R.cfg.kernel_path, "k");
	assert_int_equal(R.cfg.console, CONSOLE_STDIO);
	assert_int_equal(R.cfg.mmu, MMU_SHADOW);
	assert_int_equal(R.cfg.boot_protocol, BOOT_PROTO_LINUX64);
	assert_int_equal(CLI("--kernel", "k", "--boot", "multiboot"), CLI_RUN);
	assert_int_equal(R.cfg.boot_protocol, BOOT_PROTO_MULTIBOOT);
	assert_int_equal(CLI("--kernel", "k", "--console=/tmp/out.txt", "--mmu=auto", "--boot=auto",
	                     "--mem=4", "--vcpus=32", "--timeout=1000000"),
	                 CLI_RUN);
	assert_int_equal(R.cfg.console, CONSOLE_FILE);
	assert_string_equal(R.cfg.console_path, "/tmp/out.txt");
	assert_int_equal(R.cfg.mmu, MMU_AUTO);
	assert_int_equal(R.cfg.boot_protocol, BOOT_PROTO_AUTO);
	assert_int_equal(R.cfg.mem_mib, 4);
	assert_int_equal(R.cfg.vcpus, 32);
	assert_true(R.cfg.timeout_sec == 1e6);
	/* Largest RAM and the longest id. */
	assert_int_equal(CLI("--kernel", "k", "--mem", "1048576", "--id",
	                     "0123456789012345678901234567890123456789012345678901234567890123"),
	                 CLI_RUN);
	assert_int_equal(R.cfg.mem_mib, 1048576);
	assert_int_equal(strlen(R.cfg.id), 64);
	/* Options in any order; for single values the last one wins. */
	assert_int_equal(CLI("--vcpus", "2", "--kernel", "a", "--kernel", "b", "--vcpus", "3",
	                     "--console", "/tmp/x", "--console", "none"),
	                 CLI_RUN);
	assert_string_equal(R.cfg.kernel_path, "b");
	assert_int_equal(R.cfg.vcpus, 3);
	assert_int_equal(R.cfg.console, CONSOLE_NONE);
}

static void test_cli_control_plane(void **state)
{
	(void)state;
	/* An API socket alone: the VM is configured through the API. */
	assert_int_equal(CLI("--api-sock", "/tmp/hearth.sock"), CLI_RUN);
	assert_string_equal(R.cfg.api_sock, "/tmp/hearth.sock");
	assert_null(R.cfg.kernel_path);
	assert_int_equal(CLI("--api-sock", "/tmp/hearth.sock", "--kernel", "k"), CLI_RUN);
	assert_string_equal(R.cfg.kernel_path, "k");
	/* A config file, with or without the API. */
	assert_int_equal(CLI("--config-file", "vm.json"), CLI_RUN);
	assert_string_equal(R.cfg.config_file, "vm.json");
	assert_false(R.cfg.no_api);
	assert_int_equal(CLI("--config-file", "vm.json", "--no-api"), CLI_RUN);
	assert_true(R.cfg.no_api);
	assert_int_equal(CLI("--config-file", "vm.json", "--api-sock", "/tmp/s"), CLI_RUN);
	assert_string_equal(R.cfg.api_sock, "/tmp/s");
}

static void test_cli_drives(void **state)
{
	(void)state;
	assert_int_equal(CLI("--kernel", "k", "--drive", "a", "--drive", "b", "--drive", "c,ro"),
	                 CLI_RUN);
	assert_int_equal(R.cfg.ndrives, 3);
	assert_string_equal(R.cfg.drives[2].id, "drive2");
	assert_string_equal(R.cfg.drives[2].path, "c");
	assert_true(R.cfg.drives[2].read_only);
	/* Options in either order. */
	assert_int_equal(CLI("--kernel", "k", "--drive", "d.img,id=root,ro"), CLI_RUN);
	assert_string_equal(R.cfg.drives[0].id, "root");
	assert_true(R.cfg.drives[0].read_only);
	/* Eight drives fit. */
	assert_int_equal(CLI("--kernel", "k", "--drive", "0", "--drive", "1", "--drive", "2",
	                     "--drive", "3", "--drive", "4", "--drive", "5", "--drive", "6",
	                     "--drive", "7"),
	                 CLI_RUN);
	assert_int_equal(R.cfg.ndrives, VM_MAX_DRIVES);
	assert_string_equal(R.cfg.drives[7].path, "7");
}

static void test_cli_help_version(void **state)
{
	(void)state;
	assert_int_equal(CLI("--help"), CLI_EXIT_OK);
	assert_true(R.o.help);
	assert_false(R.o.version);
	assert_int_equal(CLI("--version"), CLI_EXIT_OK);
	assert_true(R.o.version);
	assert_false(R.o.help);
	/* Either one ends parsing: later errors are not reported. */
	assert_int_equal(CLI("--kernel", "k", "--help", "--mem", "x"), CLI_EXIT_OK);
	assert_true(R.o.help);
	assert_int_equal(CLI("--version", "--bogus"), CLI_EXIT_OK);
	assert_true(R.o.version);
}

static void test_cli_usage_text(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(f);
	cli_usage(f);
	fclose(f);
	assert_non_null(strstr(buf, "usage: hearth --kernel PATH"));
	assert_non_null(strstr(buf, "4..1048576 (default 128)"));
	assert_non_null(strstr(buf, "1..32 (default 1)"));
	assert_non_null(strstr(buf, "I/O port 0xf4"));
	assert_non_null(strstr(buf, "  245      timeout"));
	free(buf);
}

static void test_cli_errors_numbers(void **state)
{
	(void)state;
	EXPECT_CLI_ERROR("--mem 'x' must be an integer", "--kernel", "k", "--mem", "x");
	EXPECT_CLI_ERROR("--mem '3' must be between 4 and 1048576 MiB", "--kernel", "k", "--mem",
	                 "3");
	EXPECT_CLI_ERROR("--mem '1048577' must be between 4 and 1048576 MiB", "--kernel", "k",
	                 "--mem", "1048577");
	EXPECT_CLI_ERROR("--mem '-128' must be between 4 and 1048576 MiB", "--kernel", "k", "--mem",
	                 "-128");
	EXPECT_CLI_ERROR("--mem '+128' must be an integer", "--kernel", "k", "--mem", "+128");
	EXPECT_CLI_ERROR("--mem '' must be an integer", "--kernel", "k", "--mem", "");
	EXPECT_CLI_ERROR("--mem '128M' must be an integer", "--kernel", "k", "--mem", "128M");
	EXPECT_CLI_ERROR("--mem '99999999999999999999999' must be between 4 and 1048576 MiB",
	                 "--kernel", "k", "--mem", "99999999999999999999999");
	EXPECT_CLI_ERROR("--vcpus '0' must be between 1 and 32", "--kernel", "k", "--vcpus", "0");
	EXPECT_CLI_ERROR("--vcpus '33' must be between 1 and 32", "--kernel", "k", "--vcpus", "33");
	EXPECT_CLI_ERROR("--vcpus 'two' must be an integer", "--kernel", "k", "--vcpus", "two");
	EXPECT_CLI_ERROR("--vcpus '1.5' must be an integer", "--kernel", "k", "--vcpus", "1.5");
	EXPECT_CLI_ERROR("--timeout '0': expected seconds, > 0 and <= 1000000", "--kernel", "k",
	                 "--timeout", "0");
	EXPECT_CLI_ERROR("--timeout '-1': expected seconds, > 0 and <= 1000000", "--kernel", "k",
	                 "--timeout", "-1");
	EXPECT_CLI_ERROR("--timeout '1000001': expected seconds, > 0 and <= 1000000", "--kernel",
	                 "k", "--timeout", "1000001");
	EXPECT_CLI_ERROR("--timeout 'abc': expected seconds, > 0 and <= 1000000", "--kernel", "k",
	                 "--timeout", "abc");
	EXPECT_CLI_ERROR("--timeout '5s': expected seconds, > 0 and <= 1000000", "--kernel", "k",
	                 "--timeout", "5s");
	EXPECT_CLI_ERROR("--timeout '': expected seconds, > 0 and <= 1000000", "--kernel", "k",
	                 "--timeout", "");
	EXPECT_CLI_ERROR("--timeout 'inf': expected seconds, > 0 and <= 1000000", "--kernel", "k",
	                 "--timeout", "inf");
	EXPECT_CLI_ERROR("--timeout 'nan': expected seconds, > 0 and <= 1000000", "--kernel", "k",
	                 "--timeout", "nan");
	EXPECT_CLI_ERROR("--timeout '1e999': expected seconds, > 0 and <= 1000000", "--kernel", "k",
	                 "--timeout", "1e999");
}

static void test_cli_errors_words(void **state)
{
	(void)state;
	EXPECT_CLI_ERROR("--console: expected stdio, none or a file path", "--kernel", "k",
	                 "--console", "");
	EXPECT_CLI_ERROR("--mmu 'fast': expected auto, hardware, shadow or process", "--kernel",
	                 "k", "--mmu", "fast");
	EXPECT_CLI_ERROR("--mmu '': expected auto, hardware, shadow or process", "--kernel", "k",
	                 "--mmu", "");
	EXPECT_CLI_ERROR("--boot 'bios': expected auto, linux, pvh or multiboot", "--kernel", "k",
	                 "--boot", "bios");
	EXPECT_CLI_ERROR("--boot 'PVH': expected auto, linux, pvh or multiboot", "--kernel", "k",
	                 "--boot", "PVH");
	EXPECT_CLI_ERROR("--id 'a b' must be 1..64 characters from [A-Za-z0-9_-]", "--kernel", "k",
	                 "--id", "a b");
	EXPECT_CLI_ERROR("--id '' must be 1..64 characters from [A-Za-z0-9_-]", "--kernel", "k",
	                 "--id", "");
	EXPECT_CLI_ERROR("--id 'x/y' must be 1..64 characters from [A-Za-z0-9_-]", "--kernel", "k",
	                 "--id", "x/y");
	EXPECT_CLI_ERROR(
	    "--id '01234567890123456789012345678901234567890123456789012345678901234' must be "
	    "1..64 characters from [A-Za-z0-9_-]",
	    "--kernel", "k", "--id",
	    "01234567890123456789012345678901234567890123456789012345678901234");
}

static void test_cli_errors_drive(void **state)
{
	(void)state;
	EXPECT_CLI_ERROR("--drive: expected PATH[,ro][,id=NAME]", "--kernel", "k", "--drive", "");
	EXPECT_CLI_ERROR("--drive: expected PATH[,ro][,id=NAME]", "--kernel", "k", "--drive",
	                 ",ro");
	EXPECT_CLI_ERROR("--drive: unknown option 'rw' (expected ro or id=NAME)", "--kernel", "k",
	                 "--drive", "a.img,rw");
	EXPECT_CLI_ERROR("--drive: id 'a-b' must be 1..64 characters from [A-Za-z0-9_]", "--kernel",
	                 "k", "--drive", "a.img,id=a-b");
	EXPECT_CLI_ERROR("--drive: id '' must be 1..64 characters from [A-Za-z0-9_]", "--kernel",
	                 "k", "--drive", "a.img,id=");
	EXPECT_CLI_ERROR("--drive: id 'root' is used twice", "--kernel", "k", "--drive",
	                 "a,id=root", "--drive", "b,id=root");
	EXPECT_CLI_ERROR("--drive: id 'drive0' is used twice", "--kernel", "k", "--drive", "a",
	                 "--drive", "b,id=drive0");
	EXPECT_CLI_ERROR("--drive: at most 8 drives", "--kernel", "k", "--drive", "0", "--drive",
	                 "1", "--drive", "2", "--drive", "3", "--drive", "4", "--drive", "5",
	                 "--drive", "6", "--drive", "7", "--drive", "8");
}

static void test_cli_errors_net(void **state)
{
	(void)state;
	EXPECT_CLI_ERROR("--net: expected TAP[,mac=XX:XX:XX:XX:XX:XX][,id=NAME]", "--kernel", "k",
	                 "--net", "");
	EXPECT_CLI_ERROR("--net: TAP name 'a/b' must be 1..15 bytes, without '/', ':' or "
	                 "whitespace, and not '.' or '..'",
	                 "--kernel", "k", "--net", "a/b");
	EXPECT_CLI_ERROR("--net: TAP name '..' must be 1..15 bytes, without '/', ':' or "
	                 "whitespace, and not '.' or '..'",
	                 "--kernel", "k", "--net", "..");
	EXPECT_CLI_ERROR("--net: TAP name '0123456789abcdef' must be 1..15 bytes, without '/', "
	                 "':' or whitespace, and not '.' or '..'",
	                 "--kernel", "k", "--net", "0123456789abcdef");
	EXPECT_CLI_ERROR("--net: mac 'zz:00:00:00:00:00' must be a MAC address like "
	                 "06:00:ac:10:00:02",
	                 "--kernel", "k", "--net", "tap0,mac=zz:00:00:00:00:00");
	EXPECT_CLI_ERROR("--net: mac '01:00:5e:00:00:01' must be a unicast address", "--kernel",
	                 "k", "--net", "tap0,mac=01:00:5e:00:00:01");
	EXPECT_CLI_ERROR("--net: id 'a-b' must be 1..64 characters from [A-Za-z0-9_]", "--kernel",
	                 "k", "--net", "tap0,id=a-b");
	assert_int_equal(CLI("--kernel", "k", "--net", "tap0,mac=06:00:AC:10:00:02,id=eth0"),
	                 CLI_RUN);
	assert_int_equal(R.cfg.nnets, 1);
	assert_true(R.cfg.nets[0].has_mac);
	assert_int_equal(R.cfg.nets[0].mac[2], 0xac);
	assert_string_equal(R.cfg.nets[0].id, "eth0");
}

/* Paths given on the command line follow validate_path; a long one is cut short in the
 * message so the rule still shows. */
static void test_cli_errors_paths(void **state)
{
	char long_path[5000];

	(void)state;
	EXPECT_CLI_ERROR("--kernel '' must not be empty", "--kernel", "");
	EXPECT_CLI_ERROR("--initrd '' must not be empty", "--kernel", "k", "--initrd", "");
	EXPECT_CLI_ERROR("--config-file '' must not be empty", "--config-file", "");
	EXPECT_CLI_ERROR("--api-sock '' must not be empty", "--api-sock", "");
	memset(long_path, 'p', sizeof(long_path) - 1);
	long_path[sizeof(long_path) - 1] = 0;
	assert_int_equal(CLI("--kernel", long_path), CLI_ERROR);
	assert_non_null(strstr(R.err.msg, "...' must be shorter than 4096 bytes"));
	assert_int_equal(strncmp(R.err.msg, "--kernel 'ppp", 13), 0);
	assert_int_equal(CLI("--kernel", "k", "--drive", long_path), CLI_ERROR);
	assert_non_null(strstr(R.err.msg, "--drive: path 'ppp"));
	assert_non_null(strstr(R.err.msg, "must be shorter than 4096 bytes"));
}

static void test_cli_errors_structure(void **state)
{
	(void)state;
	EXPECT_CLI_ERROR(NO_KERNEL, "--mem", "64");
	assert_int_equal(CLI_NONE(), CLI_ERROR);
	assert_string_equal(R.err.msg, NO_KERNEL);
	EXPECT_CLI_ERROR(NO_KERNEL, "--drive", "a.img");
	EXPECT_CLI_ERROR("option '--kernel' needs a value", "--kernel");
	EXPECT_CLI_ERROR("option '--mem' needs a value", "--kernel", "k", "--mem");
	EXPECT_CLI_ERROR("unknown option '--bogus' (see --help)", "--kernel", "k", "--bogus");
	EXPECT_CLI_ERROR("unknown option '--bogus=1' (see --help)", "--kernel", "k", "--bogus=1");
	EXPECT_CLI_ERROR("unknown option '--verbose=1' (see --help)", "--kernel", "k",
	                 "--verbose=1");
	EXPECT_CLI_ERROR("unknown option '-k' (see --help)", "--kernel", "k", "-k");
	EXPECT_CLI_ERROR("unexpected argument 'extra' (see --help)", "--kernel", "k", "extra");
	EXPECT_CLI_ERROR("unexpected argument 'vmlinux' (see --help)", "vmlinux", "--mem", "64");
	EXPECT_CLI_ERROR("--config-file describes the whole VM: do not combine it with --kernel, "
	                 "--drive or --net",
	                 "--config-file", "vm.json", "--kernel", "k");
	EXPECT_CLI_ERROR("--config-file describes the whole VM: do not combine it with --kernel, "
	                 "--drive or --net",
	                 "--config-file", "vm.json", "--drive", "a.img");
	EXPECT_CLI_ERROR("--no-api needs --config-file (nothing else could start the VM)",
	                 "--kernel", "k", "--no-api");
	EXPECT_CLI_ERROR("--no-api and --api-sock contradict each other", "--config-file",
	                 "vm.json", "--no-api", "--api-sock", "/tmp/s");
	/* The first error wins. */
	EXPECT_CLI_ERROR("--vcpus '0' must be between 1 and 32", "--vcpus", "0", "--mem", "1");
}

/* A cluster of unknown short options ("-xy"): the message must name the option, not the
 * argument before it. */
static void test_cli_unknown_short_cluster(void **state)
{
	(void)state;
	assert_int_equal(CLI("--kernel", "k", "-xy"), CLI_ERROR);
	assert_non_null(strstr(R.err.msg, "unknown option '-x"));
}

/* cli_parse must start from a clean getopt state every call, even after an error in the
 * middle of a short-option cluster. Both argument vectors stay alive, as argv does in a
 * process. */
static void test_cli_reparse_after_cluster_error(void **state)
{
	static char a0[] = "hearth", a1[] = "--kernel", a2[] = "k", a3[] = "-vx";
	static char b0[] = "hearth", b1[] = "--kernel", b2[] = "k";
	char *bad[] = {a0, a1, a2, a3, NULL};
	char *good[] = {b0, b1, b2, NULL};
	struct vm_config cfg;
	struct cli_opts o;
	struct error err = {""};

	(void)state;
	getopt_reset();
	vm_config_defaults(&cfg);
	assert_int_equal(cli_parse(4, bad, &cfg, &o, &err), CLI_ERROR);
	vm_config_free(&cfg);
	vm_config_defaults(&cfg);
	err.msg[0] = 0;
	assert_int_equal(cli_parse(3, good, &cfg, &o, &err), CLI_RUN);
	assert_string_equal(err.msg, "");
	assert_string_equal(cfg.kernel_path, "k");
	vm_config_free(&cfg);
	getopt_reset();
}

/* cli_parse called repeatedly in one process (well-formed input) gives the same answer. */
static void test_cli_reparse(void **state)
{
	(void)state;
	getopt_reset();
	for (int i = 0; i < 3; i++) {
		assert_int_equal(CLI_NORESET("--kernel", "k", "--vcpus", "2"), CLI_RUN);
		assert_int_equal(R.cfg.vcpus, 2);
		assert_int_equal(CLI_NORESET("--kernel", "k", "--bogus"), CLI_ERROR);
		assert_int_equal(CLI_NORESET("--mem"), CLI_ERROR);
	}
}

/* ------------------------------------------------------------------------------------------ */

#define UART(t) cmocka_unit_test_setup_teardown(t, uart_setup, uart_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cpuid_find),
	    cmocka_unit_test(test_cpuid_leaf1_one_vcpu),
	    cmocka_unit_test(test_cpuid_leaf1_apic3_of4),
	    cmocka_unit_test(test_cpuid_topology_leaf_b),
	    cmocka_unit_test(test_cpuid_leaf4_cores),
	    cmocka_unit_test(test_cpuid_amd_leaves),
	    cmocka_unit_test(test_cpuid_gbpages),
	    cmocka_unit_test(test_cpuid_xsave),
	    cmocka_unit_test(test_cpuid_hypervisor_leaves_tsc),
	    cmocka_unit_test(test_cpuid_hypervisor_leaves_no_tsc),
	    cmocka_unit_test(test_cpuid_hypervisor_leaf_added),
	    cmocka_unit_test(test_cpuid_capacity),
	    cmocka_unit_test(test_mptable_1cpu),
	    cmocka_unit_test(test_mptable_4cpus),
	    cmocka_unit_test(test_mptable_max_cpus),
	    cmocka_unit_test(test_mptable_entry_count),
	    cmocka_unit_test(test_mptable_refuses),
	    UART(test_uart_reset_state),
	    UART(test_uart_thr_output),
	    UART(test_uart_write_rep),
	    UART(test_uart_receive_order),
	    UART(test_uart_fifo_limit),
	    UART(test_uart_rx_interrupt),
	    UART(test_uart_thre_interrupt),
	    UART(test_uart_iir_priority),
	    UART(test_uart_dlab),
	    UART(test_uart_loopback),
	    UART(test_uart_scratch_and_readonly),
	    UART(test_uart_no_console),
	    cmocka_unit_test(test_bus_add),
	    cmocka_unit_test(test_bus_full),
	    cmocka_unit_test(test_bus_dispatch),
	    cmocka_unit_test(test_bus_unclaimed),
	    cmocka_unit_test(test_bus_write_only_device),
	    cmocka_unit_test(test_bus_write_rep),
	    cmocka_unit_test(test_rtc_index_data),
	    cmocka_unit_test(test_rtc_time_bcd),
	    cmocka_unit_test(test_host_mmu_pvm),
	    cmocka_unit_test(test_host_mmu_ept),
	    cmocka_unit_test(test_host_mmu_npt),
	    cmocka_unit_test(test_host_mmu_none),
	    cmocka_unit_test(test_host_mmu_without_sysfs),
	    cmocka_unit_test(test_host_kvm_probe),
	    cmocka_unit_test(test_cli_defaults),
	    cmocka_unit_test(test_cli_every_flag),
	    cmocka_unit_test(test_cli_control_plane),
	    cmocka_unit_test(test_cli_drives),
	    cmocka_unit_test(test_cli_help_version),
	    cmocka_unit_test(test_cli_usage_text),
	    cmocka_unit_test(test_cli_errors_numbers),
	    cmocka_unit_test(test_cli_errors_words),
	    cmocka_unit_test(test_cli_errors_drive),
	    cmocka_unit_test(test_cli_errors_net),
	    cmocka_unit_test(test_cli_errors_paths),
	    cmocka_unit_test(test_cli_errors_structure),
	    cmocka_unit_test(test_cli_unknown_short_cluster),
	    cmocka_unit_test(test_cli_reparse_after_cluster_error),
	    cmocka_unit_test(test_cli_reparse),
	};

	return cmocka_run_group_tests(tests, NULL, cli_group_teardown);
}
