/*
 * ACPI tables (ACPI 6.3, hardware-reduced): how kernels without the virtio_mmio.device=
 * command line parameter find the virtio-mmio devices, and how ACPI kernels see the CPUs,
 * the IOAPIC, COM1 and the CMOS RTC.
 *
 * RSDP (revision 2) -> XSDT -> FADT (HW_REDUCED_ACPI, X_DSDT -> DSDT), MADT.
 * The DSDT holds, under \_SB: COM1 (PNP0501), the RTC (PNP0B00) and one LNRO0005 device
 * per virtio-mmio transport with its Memory32Fixed window and its edge-triggered GSI.
 */
#ifndef HEARTH_ACPI_H
#define HEARTH_ACPI_H

#include <stdint.h>

#include "vmm/error.h"
#include "vmm/guest_memory.h"

/* Where the tables go: inside the reserved [EBDA, 1 MiB) range of the memory map and in the
 * window [0xe0000, 0x100000) that legacy RSDP scans search, below the reset vector's page
 * (LAYOUT_RESET_VECTOR). The RSDP comes first. */
#define LAYOUT_ACPI_START 0xe0000ULL
#define LAYOUT_ACPI_END   0xf0000ULL

#define ACPI_MAX_VCPUS   254 /* 8-bit APIC IDs; the IOAPIC takes ID nvcpus */
#define ACPI_IOAPIC_PINS 24  /* KVM's in-kernel IOAPIC: GSIs 0..23 */
/* Each device has a GSI of its own: every IOAPIC pin but COM1's and the i8042's. */
#define ACPI_MAX_MMIO_DEVICES (ACPI_IOAPIC_PINS - 2)

struct acpi_mmio_device {
	uint64_t base; /* the window must lie below 4 GiB */
	uint32_t size;
	uint32_t gsi; /* < ACPI_IOAPIC_PINS, not COM1's IRQ, one device per GSI */
};

/*
 * Write every table into [addr, addr + max_len) of guest memory (addr 16-byte aligned) and
 * store the RSDP's address (= addr) in *rsdp_addr. Returns 0, or -1 with `err` set when the
 * input is invalid or the tables do not fit; guest memory is untouched then.
 * The platform: vCPU i has APIC ID and ACPI processor UID i; the IOAPIC has ID nvcpus at
 * LAYOUT_IOAPIC_ADDR with GSI base 0; ISA IRQs are identity-mapped (no overrides).
 */
int acpi_write(const struct guest_memory *gm, uint64_t addr, uint64_t max_len, unsigned nvcpus,
               const struct acpi_mmio_device *devs, unsigned ndevs, uint64_t *rsdp_addr,
               struct error *err);

#endif
