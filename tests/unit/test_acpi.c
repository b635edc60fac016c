/* ACPI tables (vmm/acpi.c) and the AML encoder (vmm/aml.c), read back by offsets from the spec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "boot/acpi.h"
#include "boot/aml.h"
#include "vmm/guest_memory.h"
#include "vmm/layout.h"

#define MEM_SIZE (2 * MIB)

struct fx {
	uint8_t *buf;
	struct guest_memory gm;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->buf = calloc(1, MEM_SIZE);
	if (!f->buf) {
		free(f);
		return -1;
	}
	gm_wrap(&f->gm, f->buf, MEM_SIZE);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	free(f->buf);
	free(f);
	return 0;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/* A table with a valid header at `gpa`: signature, length inside memory, checksum, OEM IDs. */
static const uint8_t *table_at(const struct fx *f, uint64_t gpa, const char *sig, uint8_t revision)
{
	const uint8_t *t;
	uint32_t len;

	assert_true(gpa >= LAYOUT_ACPI_START && gpa + 36 <= MEM_SIZE);
	t = f->buf + gpa;
	assert_memory_equal(t, sig, 4);
	len = rd32(t + 4);
	assert_true(len >= 36);
	assert_true(gpa + len <= LAYOUT_ACPI_END);
	assert_int_equal(t[8], revision);
	assert_int_equal(sum8(t, len), 0);
	assert_memory_equal(t + 10, "HEARTH", 6);
	assert_memory_equal(t + 16, "HEARTHVM", 8);
	return t;
}

/* ---- a reader for the AML subset the DSDT uses ---- */

struct aml_dev {
	char name[5];
	char hid_str[16];   /* _HID as a string, or "" */
	uint32_t hid_eisa;  /* _HID as an EisaId, or 0 */
	int64_t uid;        /* -1: no _UID */
	int64_t cca;        /* -1: no _CCA */
	const uint8_t *crs; /* _CRS buffer bytes */
	size_t crs_len;
};

/* Decode a PkgLength at p (inside [p, end)); returns the byte count of the encoding. */
static unsigned pkglength(const uint8_t *p, const uint8_t *end, size_t *len)
{
	unsigned n = (p[0] >> 6) + 1;

	assert_true(p + n <= end);
	if (n == 1) {
		*len = p[0] & 0x3f;
		return 1;
	}
	assert_int_equal(p[0] & 0x30, 0); /* bits 5:4 are zero in the multi-byte form */
	*len = p[0] & 0x0f;
	for (unsigned i = 1; i < n; i++)
		*len |= (size_t)p[i] << (4 + 8 * (i - 1));
	return n;
}

static uint64_t integer(const uint8_t **pp, const uint8_t *end)
{
	const uint8_t *p = *pp;
	unsigned n;
	uint64_t v = 0;

	assert_true(p < end);
	switch (*p) {
	case 0x00:
		*pp = p + 1;
		return 0;
	case 0x01:
		*pp = p + 1;
		return 1;
	case 0xff:
		*pp = p + 1;
		return UINT64_MAX;
	case 0x0a:
		n = 1;
		break;
	case 0x0b:
		n = 2;
		break;
	case 0x0c:
		n = 4;
		break;
	case 0x0e:
		n = 8;
		break;
	default:
		fail_msg("not an integer: opcode 0x%02x", *p);
		return 0;
	}
	assert_true(p + 1 + n <= end);
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[1 + i] << (8 * i);
	*pp = p + 1 + n;
	return v;
}

/* Name (seg, object) inside a Device. */
static void parse_name(const uint8_t **pp, const uint8_t *end, struct aml_dev *d)
{
	const uint8_t *p = *pp;
	char seg[5] = {0};

	assert_int_equal(*p++, 0x08); /* NameOp */
	assert_true(p + 4 < end);
	memcpy(seg, p, 4);
	p += 4;
	if (*p == 0x0d) { /* String */
		size_t n = strnlen((const char *)p + 1, (size_t)(end - p - 1));

		assert_true(p + 1 + n < end);
		assert_string_equal(seg, "_HID");
		assert_true(n < sizeof(d->hid_str));
		memcpy(d->hid_str, p + 1, n + 1);
		p += n + 2;
	} else if (*p == 0x11) { /* Buffer */
		size_t len, size;
		const uint8_t *pkg_end, *q;

		p++;
		q = p + pkglength(p, end, &len);
		pkg_end = p + len;
		assert_true(pkg_end <= end);
		size = (size_t)integer(&q, pkg_end);
		assert_int_equal(q + size, pkg_end);
		assert_string_equal(seg, "_CRS");
		d->crs = q;
		d->crs_len = size;
		p = pkg_end;
	} else {
		uint64_t v = integer(&p, end);

		if (!strcmp(seg, "_HID")) {
			assert_int_equal(p[-5], 0x0c); /* EisaId is a DWord */
			d->hid_eisa = (uint32_t)v;
		} else if (!strcmp(seg, "_UID")) {
			d->uid = (int64_t)v;
		} else if (!strcmp(seg, "_CCA")) {
			d->cca = (int64_t)v;
		} else {
			fail_msg("unexpected name %s", seg);
		}
	}
	*pp = p;
}

/* The DSDT body must be exactly Scope (\_SB) { Device (...) { Name ... } ... }. */
static unsigned parse_dsdt(const uint8_t *body, size_t body_len, struct aml_dev *devs, unsigned max)
{
	const uint8_t *end = body + body_len, *p = body, *scope_end;
	size_t len;
	unsigned n = 0;

	assert_int_equal(*p++, 0x10); /* ScopeOp */
	scope_end = p + (pkglength(p, end, &len), len);
	assert_ptr_equal(scope_end, end); /* the scope is the whole body */
	p += pkglength(p, end, &len);
	assert_memory_equal(p, "\\_SB_", 5);
	p += 5;
	while (p < scope_end) {
		struct aml_dev *d;
		const uint8_t *dev_end;

		assert_true(n < max);
		d = &devs[n++];
		memset(d, 0, sizeof(*d));
		d->uid = d->cca = -1;
		assert_int_equal(p[0], 0x5b); /* DeviceOp */
		assert_int_equal(p[1], 0x82);
		p += 2;
		dev_end = p + (pkglength(p, scope_end, &len), len);
		assert_true(dev_end <= scope_end);
		p += pkglength(p, scope_end, &len);
		memcpy(d->name, p, 4);
		p += 4;
		while (p < dev_end)
			parse_name(&p, dev_end, d);
		assert_ptr_equal(p, dev_end);
	}
	return n;
}

static const struct aml_dev *find_dev(const struct aml_dev *devs, unsigned n, const char *name)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(devs[i].name, name))
			return &devs[i];
	fail_msg("no device %s in the DSDT", name);
	return NULL;
}

static size_t count_bytes(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	size_t c = 0;

	for (size_t i = 0; i + m <= n; i++)
		if (!memcmp(hay + i, needle, m))
			c++;
	return c;
}

/* ---- the tables ---- */

static void make_devs(struct acpi_mmio_device *devs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		devs[i].base = LAYOUT_MMIO_SLOTS_START + i * LAYOUT_MMIO_SLOT_SIZE;
		devs[i].size = (uint32_t)LAYOUT_MMIO_SLOT_SIZE;
		devs[i].gsi = i < 19 ? 5 + i : i == 19 ? 0 : i - 18; /* 5..23, 0, then 2..3 */
	}
}

/* Write the tables at LAYOUT_ACPI_START and check every one of them. */
static void check_tables(struct fx *f, unsigned nvcpus, unsigned ndevs)
{
	struct acpi_mmio_device devs[ACPI_MAX_MMIO_DEVICES];
	struct aml_dev found[ACPI_MAX_MMIO_DEVICES + 3];
	struct error err = {{0}};
	uint64_t rsdp = 0, xsdt, fadt_addr = 0, madt_addr = 0, dsdt_addr;
	const uint8_t *r, *x, *fadt, *madt, *dsdt, *e;
	uint32_t xlen, mlen, n_lapic = 0, n_ioapic = 0, n_nmi = 0;
	unsigned nfound;

	memset(f->buf, 0, MEM_SIZE);
	make_devs(devs, ndevs);
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, LAYOUT_ACPI_END - LAYOUT_ACPI_START,
	                            nvcpus, devs, ndevs, &rsdp, &err),
	                 0);
	assert_int_equal(rsdp, LAYOUT_ACPI_START);
	assert_int_equal(rsdp % 16, 0);

	/* RSDP: revision 2, both checksums, XSDT address, no RSDT. */
	r = f->buf + rsdp;
	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum8(r, 20), 0);
	assert_memory_equal(r + 9, "HEARTH", 6);
	assert_int_equal(r[15], 2);
	assert_int_equal(rd32(r + 16), 0);
	assert_int_equal(rd32(r + 20), 36);
	assert_int_equal(sum8(r, 36), 0);
	xsdt = rd64(r + 24);

	/* XSDT: FADT and MADT. */
	x = table_at(f, xsdt, "XSDT", 1);
	xlen = rd32(x + 4);
	assert_int_equal(xlen, 36 + 2 * 8);
	for (uint32_t off = 36; off < xlen; off += 8) {
		uint64_t t = rd64(x + off);

		assert_true(t < MEM_SIZE);
		if (!memcmp(f->buf + t, "FACP", 4))
			fadt_addr = t;
		else if (!memcmp(f->buf + t, "APIC", 4))
			madt_addr = t;
		else
			fail_msg("unexpected table in the XSDT");
	}
	assert_true(fadt_addr && madt_addr);

	/* FADT 6.3, hardware-reduced, X_DSDT. */
	fadt = table_at(f, fadt_addr, "FACP", 6);
	assert_int_equal(rd32(fadt + 4), 276);
	assert_int_equal(fadt[131] & 0x0f, 3);      /* minor version */
	assert_true(rd32(fadt + 112) & (1u << 20)); /* HW_REDUCED_ACPI */
	assert_int_equal(rd32(fadt + 36), 0);       /* no FACS */
	assert_int_equal(rd64(fadt + 132), 0);      /* no X_FACS */
	assert_int_equal(rd32(fadt + 40), 0);       /* only the 64-bit DSDT pointer */
	assert_int_equal(rd16(fadt + 46), 0);       /* no SCI */
	assert_int_equal(rd32(fadt + 76), 0);       /* no PM timer */
	assert_true(rd16(fadt + 109) & (1u << 1));  /* 8042 */
	assert_true(rd16(fadt + 109) & (1u << 2));  /* no VGA */
	assert_false(rd16(fadt + 109) & (1u << 5)); /* the CMOS RTC is there */
	assert_int_equal(fadt[108], 0x32);          /* century register */
	/* The reset register: byte 6 to the reset control port (Linux's ACPI reboot path). */
	assert_true(rd32(fadt + 112) & (1u << 10)); /* RESET_REG_SUP */
	assert_int_equal(fadt[116], 1);             /* system I/O space */
	assert_int_equal(fadt[117], 8);             /* 8 bits wide */
	assert_int_equal(fadt[118], 0);             /* at bit 0 */
	assert_int_equal(fadt[119], 1);             /* byte access */
	assert_int_equal(rd64(fadt + 120), 0xcf9);
	assert_int_equal(fadt[128], 6);
	dsdt_addr = rd64(fadt + 140);

	/* MADT: one enabled local APIC per vCPU, the IOAPIC, LINT1 NMI, no overrides. */
	madt = table_at(f, madt_addr, "APIC", 5);
	mlen = rd32(madt + 4);
	assert_int_equal(rd32(madt + 36), LAYOUT_LAPIC_ADDR);
	assert_int_equal(rd32(madt + 40), 1); /* PCAT_COMPAT */
	for (e = madt + 44; e < madt + mlen; e += e[1]) {
		assert_true(e[1] >= 2 && e + e[1] <= madt + mlen);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			assert_int_equal(e[2], n_lapic); /* processor UID */
			assert_int_equal(e[3], n_lapic); /* APIC ID */
			assert_int_equal(rd32(e + 4), 1);
			n_lapic++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_int_equal(e[2], nvcpus);
			assert_int_equal(rd32(e + 4), LAYOUT_IOAPIC_ADDR);
			assert_int_equal(rd32(e + 8), 0);
			n_ioapic++;
			break;
		case 4:
			assert_int_equal(e[1], 6);
			assert_int_equal(e[2], 0xff);
			assert_int_equal(rd16(e + 3), 0);
			assert_int_equal(e[5], 1);
			n_nmi++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
	}
	assert_ptr_equal(e, madt + mlen);
	assert_int_equal(n_lapic, nvcpus);
	assert_int_equal(n_ioapic, 1);
	assert_int_equal(n_nmi, 1);

	/* DSDT: COM1, the keyboard controller, RTC and the virtio-mmio devices. */
	dsdt = table_at(f, dsdt_addr, "DSDT", 2);
	nfound = parse_dsdt(dsdt + 36, rd32(dsdt + 4) - 36, found, ndevs + 3);
	assert_int_equal(nfound, ndevs + 3);
	assert_int_equal(count_bytes(dsdt, rd32(dsdt + 4), "LNRO0005", 9), ndevs);
	{
		const struct aml_dev *com1 = find_dev(found, nfound, "COM1");
		const struct aml_dev *rtc = find_dev(found, nfound, "RTC_");
		static const uint8_t com1_crs[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03,
		                                   0x01, 0x08, 0x22, 0x10, 0x00, 0x79};
		static const uint8_t rtc_crs[] = {0x47, 0x01, 0x70, 0x00, 0x70,
		                                  0x00, 0x01, 0x02, 0x79};

		assert_int_equal(com1->hid_eisa, 0x0105d041); /* EisaId ("PNP0501") */
		assert_int_equal(com1->crs_len, sizeof(com1_crs) + 1);
		assert_memory_equal(com1->crs, com1_crs, sizeof(com1_crs));
		assert_int_equal(sum8(com1->crs, com1->crs_len), 0);
		{
			/* IO 0x60, IO 0x64, IRQNoFlags {1}: i8042 finds its IRQ here. */
			const struct aml_dev *kbd = find_dev(found, nfound, "KBD_");
			static const uint8_t kbd_crs[] = {0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01,
			                                  0x01, 0x47, 0x01, 0x64, 0x00, 0x64, 0x00,
			                                  0x01, 0x01, 0x22, 0x02, 0x00, 0x79};

			assert_int_equal(kbd->hid_eisa, 0x0303d041); /* EisaId ("PNP0303") */
			assert_int_equal(kbd->crs_len, sizeof(kbd_crs) + 1);
			assert_memory_equal(kbd->crs, kbd_crs, sizeof(kbd_crs));
			assert_int_equal(sum8(kbd->crs, kbd->crs_len), 0);
		}
		assert_int_equal(rtc->hid_eisa, 0x000bd041); /* EisaId ("PNP0B00") */
		assert_int_equal(rtc->crs_len, sizeof(rtc_crs) + 1);
		assert_memory_equal(rtc->crs, rtc_crs, sizeof(rtc_crs));
		assert_int_equal(sum8(rtc->crs, rtc->crs_len), 0);
	}
	for (unsigned i = 0; i < ndevs; i++) {
		char name[8];
		const struct aml_dev *d;
		uint8_t crs[22];

		snprintf(name, sizeof(name), "V%03u", i);
		d = find_dev(found, nfound, name);
		assert_string_equal(d->hid_str, "LNRO0005");
		assert_int_equal(d->uid, i);
		assert_int_equal(d->cca, 1);
		/* Memory32Fixed (ReadWrite, base, size) */
		crs[0] = 0x86;
		crs[1] = 9;
		crs[2] = 0;
		crs[3] = 1;
		for (int b = 0; b < 4; b++) {
			crs[4 + b] = (uint8_t)(devs[i].base >> (8 * b));
			crs[8 + b] = (uint8_t)(devs[i].size >> (8 * b));
		}
		/* Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi } */
		crs[12] = 0x89;
		crs[13] = 6;
		crs[14] = 0;
		crs[15] = 0x03;
		crs[16] = 1;
		for (int b = 0; b < 4; b++)
			crs[17 + b] = (uint8_t)(devs[i].gsi >> (8 * b));
		crs[21] = 0x79;
		assert_int_equal(d->crs_len, sizeof(crs) + 1);
		assert_memory_equal(d->crs, crs, sizeof(crs));
		assert_int_equal(sum8(d->crs, d->crs_len), 0);
	}

	/* Nothing is written past the last table. */
	{
		uint64_t last = dsdt_addr + rd32(dsdt + 4);

		for (uint64_t a = last; a < LAYOUT_ACPI_END; a++)
			assert_int_equal(f->buf[a], 0);
	}
}

static void test_1cpu_0dev(void **state)
{
	check_tables(*state, 1, 0);
}

static void test_1cpu_1dev(void **state)
{
	check_tables(*state, 1, 1);
}

static void test_1cpu_3dev(void **state)
{
	check_tables(*state, 1, 3);
}

static void test_4cpu_0dev(void **state)
{
	check_tables(*state, 4, 0);
}

static void test_4cpu_1dev(void **state)
{
	check_tables(*state, 4, 1);
}

static void test_4cpu_3dev(void **state)
{
	check_tables(*state, 4, 3);
}

/* The largest platform fits the reserved window (and the DSDT needs 2-byte PkgLengths). */
static void test_max(void **state)
{
	check_tables(*state, ACPI_MAX_VCPUS, ACPI_MAX_MMIO_DEVICES);
}

/* Bytes the tables take, from the DSDT's end. */
static uint64_t tables_size(struct fx *f, unsigned nvcpus, const struct acpi_mmio_device *devs,
                            unsigned ndevs)
{
	struct error err = {{0}};
	uint64_t rsdp = 0, xsdt, fadt, dsdt;

	assert_int_equal(
	    acpi_write(&f->gm, LAYOUT_ACPI_START, 0x20000, nvcpus, devs, ndevs, &rsdp, &err), 0);
	xsdt = rd64(f->buf + rsdp + 24);
	fadt = rd64(f->buf + xsdt + 36);
	if (memcmp(f->buf + fadt, "FACP", 4))
		fadt = rd64(f->buf + xsdt + 44);
	dsdt = rd64(f->buf + fadt + 140);
	return dsdt + rd32(f->buf + dsdt + 4) - rsdp;
}

static void test_too_small(void **state)
{
	struct fx *f = *state;
	struct acpi_mmio_device devs[3];
	struct error err = {{0}};
	uint64_t rsdp = 0x1234, need;

	make_devs(devs, 3);
	need = tables_size(f, 4, devs, 3);
	memset(f->buf, 0xa5, MEM_SIZE);
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, need - 1, 4, devs, 3, &rsdp, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "do not fit"));
	assert_int_equal(rsdp, 0x1234);
	for (uint64_t a = LAYOUT_ACPI_START; a < LAYOUT_ACPI_END; a++)
		assert_int_equal(f->buf[a], 0xa5); /* untouched */
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, need, 4, devs, 3, &rsdp, &err), 0);
	assert_int_equal(rsdp, LAYOUT_ACPI_START);
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, 0, 1, NULL, 0, &rsdp, &err), -1);
}

/* Tables that would run past guest RAM, or wrap around, are refused. */
static void test_outside_ram(void **state)
{
	struct fx *f = *state;
	struct error err = {{0}};
	uint64_t rsdp = 0;

	assert_int_equal(acpi_write(&f->gm, MEM_SIZE - 256, 0x10000, 1, NULL, 0, &rsdp, &err), -1);
	assert_non_null(strstr(err.msg, "not guest RAM"));
	assert_int_equal(acpi_write(&f->gm, UINT64_MAX - 15, UINT64_MAX, 1, NULL, 0, &rsdp, &err),
	                 -1);
	assert_int_equal(
	    acpi_write(&f->gm, LAYOUT_ACPI_START + 8, 0x10000, 1, NULL, 0, &rsdp, &err), -1);
	assert_non_null(strstr(err.msg, "aligned"));
}

static void test_too_many_devices(void **state)
{
	struct fx *f = *state;
	struct acpi_mmio_device devs[ACPI_MAX_MMIO_DEVICES + 1];
	struct error err = {{0}};
	uint64_t rsdp = 0;

	make_devs(devs, ACPI_MAX_MMIO_DEVICES);
	devs[ACPI_MAX_MMIO_DEVICES] = devs[0];
	memset(f->buf, 0, MEM_SIZE);
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, LAYOUT_ACPI_END - LAYOUT_ACPI_START,
	                            1, devs, ACPI_MAX_MMIO_DEVICES + 1, &rsdp, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "at most"));
	assert_int_equal(f->buf[LAYOUT_ACPI_START], 0);
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, LAYOUT_ACPI_END - LAYOUT_ACPI_START,
	                            1, NULL, 2, &rsdp, &err),
	                 -1);
}

static void test_bad_input(void **state)
{
	struct fx *f = *state;
	struct acpi_mmio_device devs[2];
	struct error err = {{0}};
	uint64_t rsdp = 0, len = LAYOUT_ACPI_END - LAYOUT_ACPI_START;

	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, len, 0, NULL, 0, &rsdp, &err), -1);
	assert_non_null(strstr(err.msg, "vCPUs"));
	assert_int_equal(
	    acpi_write(&f->gm, LAYOUT_ACPI_START, len, ACPI_MAX_VCPUS + 1, NULL, 0, &rsdp, &err),
	    -1);

	make_devs(devs, 2);
	devs[1].gsi = ACPI_IOAPIC_PINS;
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, len, 1, devs, 2, &rsdp, &err), -1);
	assert_non_null(strstr(err.msg, "GSI"));
	devs[1].gsi = IRQ_COM1;
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, len, 1, devs, 2, &rsdp, &err), -1);
	devs[1].gsi = IRQ_I8042;
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, len, 1, devs, 2, &rsdp, &err), -1);
	devs[1].gsi = devs[0].gsi;
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, len, 1, devs, 2, &rsdp, &err), -1);
	assert_non_null(strstr(err.msg, "shares"));

	make_devs(devs, 2);
	devs[1].base = (4 * GIB) - 0x800; /* crosses 4 GiB */
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, len, 1, devs, 2, &rsdp, &err), -1);
	assert_non_null(strstr(err.msg, "4 GiB"));
	devs[1].base = (4 * GIB) - 0x1000; /* ends exactly at 4 GiB: fine */
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, len, 1, devs, 2, &rsdp, &err), 0);
	devs[1].size = 0;
	assert_int_equal(acpi_write(&f->gm, LAYOUT_ACPI_START, len, 1, devs, 2, &rsdp, &err), -1);
}

/* ---- the AML encoder ---- */

static void test_aml_pkglength(void **state)
{
	static uint8_t buf[1 << 21];
	struct aml a;
	size_t mark;

	(void)state;
	assert_int_equal(aml_pkglength_size(0), 1);
	assert_int_equal(aml_pkglength_size(62), 1);
	assert_int_equal(aml_pkglength_size(63), 2);
	assert_int_equal(aml_pkglength_size(4093), 2);
	assert_int_equal(aml_pkglength_size(4094), 3);
	assert_int_equal(aml_pkglength_size(0xfffff - 3), 3);
	assert_int_equal(aml_pkglength_size(0xfffff - 2), 4);
	assert_int_equal(aml_pkglength_size(AML_MAX_PKGLENGTH - 4), 4);
	assert_int_equal(aml_pkglength_size(AML_MAX_PKGLENGTH - 3), 0);

	/* 1 byte: length 1 + 3. */
	aml_init(&a, buf, sizeof(buf));
	mark = a.len;
	aml_bytes(&a, "abc", 3);
	aml_end(&a, mark);
	assert_false(a.error);
	assert_int_equal(a.len, 4);
	assert_memory_equal(buf,
	                    "\x04"
	                    "abc",
	                    4);

	/* 2 bytes: 0x100 + 2 = 0x102 -> 0x42 0x10. */
	aml_init(&a, buf, sizeof(buf));
	{
		uint8_t fill[0x100];

		memset(fill, 0x5a, sizeof(fill));
		aml_bytes(&a, fill, sizeof(fill));
	}
	aml_end(&a, 0);
	assert_false(a.error);
	assert_int_equal(a.len, 0x102);
	assert_int_equal(buf[0], 0x42);
	assert_int_equal(buf[1], 0x10);
	assert_int_equal(buf[2], 0x5a);
	assert_int_equal(buf[0x101], 0x5a);

	/* 3 bytes: 0x12345 + 3 = 0x12348 -> 0x88 0x34 0x12. */
	aml_init(&a, buf, sizeof(buf));
	a.len = 0x12345;
	aml_end(&a, 0);
	assert_false(a.error);
	assert_int_equal(a.len, 0x12348);
	assert_memory_equal(buf, "\x88\x34\x12", 3);

	/* 4 bytes: 0x100000 + 4 -> 0xc4 0x00 0x00 0x01. */
	aml_init(&a, buf, sizeof(buf));
	a.len = 0x100000;
	aml_end(&a, 0);
	assert_false(a.error);
	assert_memory_equal(buf, "\xc4\x00\x00\x01", 4);

	/* No room for the PkgLength. */
	aml_init(&a, buf, 8);
	aml_bytes(&a, "12345678", 8);
	aml_end(&a, 0);
	assert_true(a.error);
}

static void test_aml_names(void **state)
{
	uint8_t buf[64];
	struct aml a;

	(void)state;
	aml_init(&a, buf, sizeof(buf));
	aml_namestring(&a, "\\_SB");
	assert_false(a.error);
	assert_int_equal(a.len, 5);
	assert_memory_equal(buf, "\\_SB_", 5);

	aml_init(&a, buf, sizeof(buf));
	aml_namestring(&a, "\\_SB.V0");
	assert_int_equal(a.len, 10);
	assert_memory_equal(buf, "\\\x2e_SB_V0__", 10);

	aml_init(&a, buf, sizeof(buf));
	aml_namestring(&a, "^^A.B.C");
	assert_int_equal(a.len, 2 + 2 + 12);
	assert_memory_equal(buf,
	                    "^^\x2f\x03"
	                    "A___B___C___",
	                    16);

	aml_init(&a, buf, sizeof(buf));
	aml_namestring(&a, "\\");
	assert_int_equal(a.len, 2);
	assert_memory_equal(buf, "\\\x00", 2);

	static const char *const bad[] = {"ABCDE", "1ABC", "a", "A..B", "A.", "\\.A", "A-B"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_init(&a, buf, sizeof(buf));
		aml_namestring(&a, bad[i]);
		assert_true(a.error);
	}
}

static void test_aml_data(void **state)
{
	uint8_t buf[64];
	struct aml a;

	(void)state;
	aml_init(&a, buf, sizeof(buf));
	aml_integer(&a, 0);
	aml_integer(&a, 1);
	aml_integer(&a, 2);
	aml_integer(&a, 0x1234);
	aml_integer(&a, 0x12345678);
	aml_integer(&a, 0x123456789ULL);
	aml_integer(&a, UINT64_MAX);
	assert_false(a.error);
	assert_int_equal(a.len, 1 + 1 + 2 + 3 + 5 + 9 + 1);
	assert_memory_equal(buf,
	                    "\x00\x01\x0a\x02\x0b\x34\x12\x0c\x78\x56\x34\x12"
	                    "\x0e\x89\x67\x45\x23\x01\x00\x00\x00\xff",
	                    22);

	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "PNP0501");
	aml_string(&a, "AB");
	assert_false(a.error);
	assert_memory_equal(buf,
	                    "\x0c\x41\xd0\x05\x01\x0d"
	                    "AB\x00",
	                    9);
	aml_eisaid(&a, "PNP050");
	assert_true(a.error);
	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "pnp0501");
	assert_true(a.error);
	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "PNP050G");
	assert_true(a.error);

	/* Buffer (3) { 1, 2, 3 } */
	aml_init(&a, buf, sizeof(buf));
	aml_buffer(&a, "\x01\x02\x03", 3);
	assert_false(a.error);
	assert_memory_equal(buf, "\x11\x06\x0a\x03\x01\x02\x03", 7);

	/* A full template: its checksum makes every byte sum to zero. */
	aml_init(&a, buf, sizeof(buf));
	aml_res_memory32_fixed(&a, false, 0xd0000000, 0x200);
	aml_res_interrupt(&a, false, true, true, 40);
	aml_res_irq_noflags(&a, 15);
	aml_res_end(&a);
	assert_false(a.error);
	assert_int_equal(a.len, 12 + 9 + 3 + 2);
	assert_int_equal(buf[3], 0);     /* read-only */
	assert_int_equal(buf[15], 0x0d); /* consumer, level, active-low, shared */
	assert_int_equal(sum8(buf, a.len), 0);
	aml_res_irq_noflags(&a, 16);
	assert_true(a.error);

	/* Overflow sticks. */
	aml_init(&a, buf, 4);
	aml_string(&a, "ABCD");
	assert_true(a.error);
	aml_byte(&a, 0);
	aml_byte(&a, 0);
	assert_true(a.error);
	assert_int_equal(a.len, 1); /* the prefix went in; nothing after the failure */
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    FX(test_1cpu_0dev),
	    FX(test_1cpu_1dev),
	    FX(test_1cpu_3dev),
	    FX(test_4cpu_0dev),
	    FX(test_4cpu_1dev),
	    FX(test_4cpu_3dev),
	    FX(test_max),
	    FX(test_too_small),
	    FX(test_outside_ram),
	    FX(test_too_many_devices),
	    FX(test_bad_input),
	    cmocka_unit_test(test_aml_pkglength),
	    cmocka_unit_test(test_aml_names),
	    cmocka_unit_test(test_aml_data),
	};

	return cmocka_run_group_tests_name("acpi", tests, NULL, NULL);
}
