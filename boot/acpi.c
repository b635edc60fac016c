#include "acpi.h"
#include "table_checksum.h"
#include "aml.h"
#include "vmm/layout.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define OEM_ID           "HEARTH"   /* 6 characters */
#define OEM_TABLE_ID     "HEARTHVM" /* 8 characters */
#define OEM_REVISION     1
#define CREATOR_ID       "HRTH"
#define CREATOR_REVISION 1

/* Everything follows ACPI 6.3 (the newest revision acpica-tools 20200925 knows). */
#define RSDP_REVISION      2 /* ACPI 2.0+ RSDP: XSDT address and extended checksum */
#define XSDT_REVISION      1
#define FADT_REVISION      6 /* FADT major version 6 ... */
#define FADT_MINOR_VERSION 3 /* ... minor 3: ACPI 6.3 */
#define MADT_REVISION      5
#define DSDT_REVISION      2 /* 64-bit AML integers */

#define TABLE_ALIGN 16

struct __attribute__((packed)) acpi_rsdp {
	char signature[8]; /* "RSD PTR " */
	uint8_t checksum;  /* over the first 20 bytes (the ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address; /* 0: there is no RSDT, only the XSDT */
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum; /* over all 36 bytes */
	uint8_t reserved[3];
};

struct __attribute__((packed)) acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
};

/* Generic Address Structure. */
struct __attribute__((packed)) acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
};

struct __attribute__((packed)) acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl; /* no FACS: hardware-reduced, no global lock, no waking vector */
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk;
	uint32_t pm1b_evt_blk;
	uint32_t pm1a_cnt_blk;
	uint32_t pm1b_cnt_blk;
	uint32_t pm2_cnt_blk;
	uint32_t pm_tmr_blk;
	uint32_t gpe0_blk;
	uint32_t gpe1_blk;
	uint8_t pm1_evt_len;
	uint8_t pm1_cnt_len;
	uint8_t pm2_cnt_len;
	uint8_t pm_tmr_len;
	uint8_t gpe0_blk_len;
	uint8_t gpe1_blk_len;
	uint8_t gpe1_base;
	uint8_t cst_cnt;
	uint16_t p_lvl2_lat;
	uint16_t p_lvl3_lat;
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	uint64_t hypervisor_vendor_id;
};

/* FADT flags (ACPI 6.3, table 5-34). */
#define FADT_WBINVD          (1u << 0)
#define FADT_PWR_BUTTON      (1u << 4)  /* set: no fixed-feature power button */
#define FADT_SLP_BUTTON      (1u << 5)  /* set: no fixed-feature sleep button */
#define FADT_RESET_REG_SUP   (1u << 10) /* reset_reg/reset_value are valid */
#define FADT_HW_REDUCED_ACPI (1u << 20)
#define GAS_SYSTEM_IO        1
#define GAS_ACCESS_BYTE      1
#define RESET_VALUE          0x06 /* RST_CPU | SYS_RST at the reset control port */

/* IA-PC boot architecture flags (table 5-35). */
#define IAPC_LEGACY_DEVICES  (1u << 0) /* user-visible ISA devices: COM1 */
#define IAPC_8042            (1u << 1) /* ports 0x60/0x64 */
#define IAPC_VGA_NOT_PRESENT (1u << 2)

#define CMOS_CENTURY_INDEX 0x32 /* vmm/rtc_cmos.c keeps the century there */

struct __attribute__((packed)) acpi_madt {
	struct acpi_header h;
	uint32_t lapic_address;
	uint32_t flags;
};

#define MADT_PCAT_COMPAT 1u /* the dual 8259 PIC is there too (KVM's in-kernel PIC) */

enum { MADT_LAPIC = 0, MADT_IOAPIC = 1, MADT_LAPIC_NMI = 4 };

struct __attribute__((packed)) madt_lapic {
	uint8_t type;
	uint8_t length;
	uint8_t processor_uid;
	uint8_t apic_id;
	uint32_t flags; /* bit 0: enabled */
};

struct __attribute__((packed)) madt_ioapic {
	uint8_t type;
	uint8_t length;
	uint8_t ioapic_id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
};

struct __attribute__((packed)) madt_lapic_nmi {
	uint8_t type;
	uint8_t length;
	uint8_t processor_uid; /* 0xff: all processors */
	uint16_t flags;        /* 0: polarity and trigger conform to the bus */
	uint8_t lint;
};

_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP layout");
_Static_assert(sizeof(struct acpi_header) == 36, "header layout");
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS layout");
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT layout");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT offset");
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT layout");
_Static_assert(sizeof(struct madt_lapic) == 8, "MADT local APIC layout");
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT IOAPIC layout");
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT local APIC NMI layout");

/* Room for the DSDT's AML: COM1, the RTC and ACPI_MAX_MMIO_DEVICES devices take ~1.7 KiB. */
#define DSDT_AML_MAX 4096

#define XSDT_ENTRIES 2 /* FADT, MADT */

static uint64_t align_up(uint64_t v)
{
	return (v + TABLE_ALIGN - 1) & ~(uint64_t)(TABLE_ALIGN - 1);
}

static void header_init(struct acpi_header *h, const char *sig, uint32_t length, uint8_t revision)
{
	memcpy(h->signature, sig, 4);
	h->length = length;
	h->revision = revision;
	memcpy(h->oem_id, OEM_ID, 6);
	memcpy(h->oem_table_id, OEM_TABLE_ID, 8);
	h->oem_revision = OEM_REVISION;
	memcpy(h->creator_id, CREATOR_ID, 4);
	h->creator_revision = CREATOR_REVISION;
}

/* Fill the checksum of a table whose header is at `t` (all of header.length is written). */
static void header_seal(void *t)
{
	struct acpi_header *h = t;

	h->checksum = 0;
	h->checksum = table_checksum(t, h->length);
}

/* One ResourceTemplate as a Name (_CRS, Buffer) object. */
static void crs_end(struct aml *dsdt, struct aml *res)
{
	aml_res_end(res);
	if (res->error) {
		dsdt->error = true;
		return;
	}
	aml_name(dsdt, "_CRS");
	aml_buffer(dsdt, res->buf, res->len);
}

/* COM1 in the namespace: in hardware-reduced mode Linux has no legacy PIC and maps no ISA IRQs
 * by itself, so the 8250 driver gets IRQ 4 (GSI 4, IOAPIC pin 4) only through this _CRS. */
static void dsdt_com1(struct aml *a)
{
	uint8_t buf[32];
	struct aml res;
	size_t dev = aml_device(a, "COM1");

	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0501"); /* 16550A-compatible COM port */
	aml_name(a, "_UID");
	aml_integer(a, 1);
	aml_init(&res, buf, sizeof(buf));
	aml_res_io(&res, PORT_COM1, 8);
	aml_res_irq_noflags(&res, IRQ_COM1);
	crs_end(a, &res);
	aml_end(a, dev);
}

/* The keyboard controller with its IRQ: Linux's i8042 driver looks for a PNP0303 device and
 * takes the IRQ from it; without one it assumes ISA IRQ 1, which hardware-reduced ACPI does
 * not map, and the probe fails (EINVAL from request_irq). No PS/2 aux port (no PNP0F13). */
static void dsdt_kbd(struct aml *a)
{
	uint8_t buf[32];
	struct aml res;
	size_t dev = aml_device(a, "KBD");

	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0303"); /* IBM enhanced keyboard (101/102-key, PS/2) */
	aml_init(&res, buf, sizeof(buf));
	aml_res_io(&res, PORT_I8042_DATA, 1);
	aml_res_io(&res, PORT_I8042_CMD, 1);
	aml_res_irq_noflags(&res, IRQ_I8042);
	crs_end(a, &res);
	aml_end(a, dev);
}

/* The RTC without an interrupt: hearth's CMOS raises none, and ACPI kernels in hardware-reduced
 * mode map no ISA IRQs by default (the rtc_cmos driver then runs without alarms). */
static void dsdt_rtc(struct aml *a)
{
	uint8_t buf[16];
	struct aml res;
	size_t dev = aml_device(a, "RTC");

	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0B00"); /* AT real-time clock */
	aml_init(&res, buf, sizeof(buf));
	aml_res_io(&res, PORT_CMOS_INDEX, 2);
	crs_end(a, &res);
	aml_end(a, dev);
}

static void dsdt_virtio(struct aml *a, unsigned index, const struct acpi_mmio_device *d)
{
	char name[8];
	uint8_t buf[32];
	struct aml res;
	size_t dev;

	snprintf(name, sizeof(name), "V%03u", index % 1000);
	dev = aml_device(a, name);
	aml_name(a, "_HID");
	aml_string(a, "LNRO0005"); /* virtio-mmio (Linux's virtio_mmio ACPI match) */
	aml_name(a, "_UID");
	aml_integer(a, index);
	aml_name(a, "_CCA");
	aml_integer(a, 1); /* DMA is cache-coherent */
	aml_init(&res, buf, sizeof(buf));
	aml_res_memory32_fixed(&res, true, (uint32_t)d->base, d->size);
	/* Edge, active-high: the transport signals with an irqfd, a pulse on the GSI. */
	aml_res_interrupt(&res, true, false, false, d->gsi);
	crs_end(a, &res);
	aml_end(a, dev);
}

static void dsdt_aml(struct aml *a, const struct acpi_mmio_device *devs, unsigned ndevs)
{
	size_t sb = aml_scope(a, "\\_SB");

	dsdt_com1(a);
	dsdt_kbd(a);
	dsdt_rtc(a);
	for (unsigned i = 0; i < ndevs; i++)
		dsdt_virtio(a, i, &devs[i]);
	aml_end(a, sb);
}

static int check_devices(const struct acpi_mmio_device *devs, unsigned ndevs, struct error *err)
{
	uint32_t gsis_seen = 0;

	if (ndevs > ACPI_MAX_MMIO_DEVICES)
		return err_set(err, "ACPI: %u virtio-mmio devices, at most %d", ndevs,
		               ACPI_MAX_MMIO_DEVICES);
	if (ndevs && !devs)
		return err_set(err, "ACPI: no device array for %u devices", ndevs);
	for (unsigned i = 0; i < ndevs; i++) {
		const struct acpi_mmio_device *d = &devs[i];

		if (d->size == 0 || d->base > (1ULL << 32) - d->size)
			return err_set(err,
			               "ACPI: device %u window 0x%llx+0x%x is empty or not below "
			               "4 GiB",
			               i, (unsigned long long)d->base, d->size);
		if (d->gsi >= ACPI_IOAPIC_PINS || d->gsi == IRQ_COM1 || d->gsi == IRQ_I8042)
			return err_set(err, "ACPI: device %u GSI %u is not a free IOAPIC pin", i,
			               d->gsi);
		if (gsis_seen & (1u << d->gsi))
			return err_set(err, "ACPI: device %u shares GSI %u with another device", i,
			               d->gsi);
		gsis_seen |= 1u << d->gsi;
	}
	return 0;
}

int acpi_write(const struct guest_memory *gm, uint64_t addr, uint64_t max_len, unsigned nvcpus,
               const struct acpi_mmio_device *devs, unsigned ndevs, uint64_t *rsdp_addr,
               struct error *err)
{
	uint8_t aml_buf[DSDT_AML_MAX];
	struct aml aml;
	uint64_t xsdt_off, fadt_off, madt_off, dsdt_off, total;
	uint32_t xsdt_len, madt_len, dsdt_len;
	uint8_t *base;

	if (nvcpus == 0 || nvcpus > ACPI_MAX_VCPUS)
		return err_set(err, "ACPI: %u vCPUs is outside 1..%d", nvcpus, ACPI_MAX_VCPUS);
	if (check_devices(devs, ndevs, err))
		return -1;
	if (addr % TABLE_ALIGN)
		return err_set(err, "ACPI: table address 0x%llx is not 16-byte aligned",
		               (unsigned long long)addr);

	aml_init(&aml, aml_buf, sizeof(aml_buf));
	dsdt_aml(&aml, devs, ndevs);
	if (aml.error)
		return err_set(err, "ACPI: cannot encode the DSDT");

	xsdt_len = sizeof(struct acpi_header) + XSDT_ENTRIES * sizeof(uint64_t);
	madt_len = sizeof(struct acpi_madt) + nvcpus * sizeof(struct madt_lapic) +
	           sizeof(struct madt_ioapic) + sizeof(struct madt_lapic_nmi);
	dsdt_len = (uint32_t)(sizeof(struct acpi_header) + aml.len);
	xsdt_off = align_up(sizeof(struct acpi_rsdp));
	fadt_off = align_up(xsdt_off + xsdt_len);
	madt_off = align_up(fadt_off + sizeof(struct acpi_fadt));
	dsdt_off = align_up(madt_off + madt_len);
	total = dsdt_off + dsdt_len;

	if (total > max_len || addr > UINT64_MAX - total)
		return err_set(err, "ACPI: tables of %llu bytes do not fit in %llu bytes at 0x%llx",
		               (unsigned long long)total, (unsigned long long)max_len,
		               (unsigned long long)addr);
	base = gm_ptr(gm, addr, total);
	if (!base)
		return err_set(err, "ACPI: [0x%llx, 0x%llx) is not guest RAM",
		               (unsigned long long)addr, (unsigned long long)(addr + total));
	gm_mark_dirty(gm, addr, total);
	memset(base, 0, total);

	/* DSDT. */
	{
		struct acpi_header *h = (struct acpi_header *)(base + dsdt_off);

		header_init(h, "DSDT", dsdt_len, DSDT_REVISION);
		memcpy(h + 1, aml.buf, aml.len);
		header_seal(h);
	}

	/* FADT: hardware-reduced, so no PM1/GPE blocks, PM timer, SCI, SMI or FACS. */
	{
		struct acpi_fadt *f = (struct acpi_fadt *)(base + fadt_off);

		header_init(&f->h, "FACP", sizeof(*f), FADT_REVISION);
		f->century = CMOS_CENTURY_INDEX;
		f->iapc_boot_arch = IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_VGA_NOT_PRESENT;
		f->flags = FADT_WBINVD | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_HW_REDUCED_ACPI |
		           FADT_RESET_REG_SUP;
		/* An OS that resets through ACPI writes RESET_VALUE to the reset control port. */
		f->reset_reg = (struct acpi_gas){.space_id = GAS_SYSTEM_IO,
		                                 .bit_width = 8,
		                                 .access_size = GAS_ACCESS_BYTE,
		                                 .address = PORT_RESET_CTRL};
		f->reset_value = RESET_VALUE;
		f->minor_version = FADT_MINOR_VERSION;
		f->x_dsdt = addr + dsdt_off;
		memcpy(&f->hypervisor_vendor_id, "HEARTH\0\0", 8);
		header_seal(f);
	}

	/* MADT. */
	{
		struct acpi_madt *m = (struct acpi_madt *)(base + madt_off);
		uint8_t *p = (uint8_t *)(m + 1);
		struct madt_ioapic *io;
		struct madt_lapic_nmi *nmi;

		header_init(&m->h, "APIC", madt_len, MADT_REVISION);
		m->lapic_address = (uint32_t)LAYOUT_LAPIC_ADDR;
		m->flags = MADT_PCAT_COMPAT;
		for (unsigned i = 0; i < nvcpus; i++) {
			struct madt_lapic *l = (struct madt_lapic *)p;

			l->type = MADT_LAPIC;
			l->length = sizeof(*l);
			l->processor_uid = (uint8_t)i;
			l->apic_id = (uint8_t)i;
			l->flags = 1; /* enabled */
			p += sizeof(*l);
		}
		io = (struct madt_ioapic *)p;
		io->type = MADT_IOAPIC;
		io->length = sizeof(*io);
		io->ioapic_id = (uint8_t)nvcpus;
		io->address = (uint32_t)LAYOUT_IOAPIC_ADDR;
		io->gsi_base = 0;
		p += sizeof(*io);
		/*
		 * No Interrupt Source Overrides: every interrupt controller hearth has routes GSI
		 * n to PIC pin n and IOAPIC pin n for n < 16 (KVM's in-kernel default, and the
		 * userspace chips), and the PIT raises GSI 0, so IRQ 0 arrives on IOAPIC pin 0
		 * like every other ISA IRQ (QEMU's 0 -> 2 override matches the routing QEMU
		 * installs itself).
		 */
		nmi = (struct madt_lapic_nmi *)p;
		nmi->type = MADT_LAPIC_NMI;
		nmi->length = sizeof(*nmi);
		nmi->processor_uid = 0xff;
		nmi->flags = 0;
		nmi->lint = 1;
		header_seal(m);
	}

	/* XSDT. */
	{
		struct acpi_header *h = (struct acpi_header *)(base + xsdt_off);
		uint64_t entries[XSDT_ENTRIES] = {addr + fadt_off, addr + madt_off};

		header_init(h, "XSDT", xsdt_len, XSDT_REVISION);
		memcpy(h + 1, entries, sizeof(entries));
		header_seal(h);
	}

	/* RSDP. */
	{
		struct acpi_rsdp *r = (struct acpi_rsdp *)base;

		memcpy(r->signature, "RSD PTR ", 8);
		memcpy(r->oem_id, OEM_ID, 6);
		r->revision = RSDP_REVISION;
		r->length = sizeof(*r);
		r->xsdt_address = addr + xsdt_off;
		r->checksum = table_checksum(r, 20);
		r->extended_checksum = table_checksum(r, sizeof(*r));
	}

	*rsdp_addr = addr;
	return 0;
}
