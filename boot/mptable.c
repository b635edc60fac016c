#include "mptable.h"
#include "table_checksum.h"
#include "vmm/layout.h"

#include <string.h>

#define MP_IRQ_COUNT 16

struct __attribute__((packed)) mpf_intel {
	char signature[4]; /* "_MP_" */
	uint32_t physptr;
	uint8_t length; /* in 16-byte units */
	uint8_t specification;
	uint8_t checksum;
	uint8_t feature[5];
};

struct __attribute__((packed)) mpc_table {
	char signature[4]; /* "PCMP" */
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;
	uint32_t lapic;
	uint16_t extended_length;
	uint8_t extended_checksum;
	uint8_t reserved;
};

struct __attribute__((packed)) mpc_cpu {
	uint8_t type; /* 0 */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t cpuflag; /* bit 0 enabled, bit 1 boot processor */
	uint32_t cpufeature;
	uint32_t featureflag;
	uint32_t reserved[2];
};

struct __attribute__((packed)) mpc_bus {
	uint8_t type; /* 1 */
	uint8_t busid;
	char bustype[6];
};

struct __attribute__((packed)) mpc_ioapic {
	uint8_t type; /* 2 */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t flags; /* bit 0 usable */
	uint32_t apicaddr;
};

struct __attribute__((packed)) mpc_intsrc {
	uint8_t type; /* 3: I/O interrupt, 4: local interrupt */
	uint8_t irqtype;
	uint16_t irqflag;
	uint8_t srcbus;
	uint8_t srcbusirq;
	uint8_t dstapic;
	uint8_t dstirq;
};

enum { MP_CPU = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

#define APIC_VERSION 0x14

uint64_t mptable_size(unsigned nvcpus)
{
	return sizeof(struct mpf_intel) + sizeof(struct mpc_table) +
	       nvcpus * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
	       sizeof(struct mpc_ioapic) + (MP_IRQ_COUNT + 2) * sizeof(struct mpc_intsrc);
}

int mptable_write(const struct guest_memory *gm, uint64_t addr, unsigned nvcpus, uint32_t ioapic,
                  struct error *err)
{
	uint64_t size = mptable_size(nvcpus);
	uint8_t *base, *p;
	struct mpf_intel *mpf;
	struct mpc_table *mpc;

	if (nvcpus == 0 || nvcpus > 254)
		return err_set(err, "MP table: %u vCPUs is outside 1..254", nvcpus);
	base = gm_ptr(gm, addr, size);
	if (!base || addr + size > LAYOUT_KERNEL_START)
		return err_set(err, "MP table of %llu bytes does not fit at 0x%llx",
		               (unsigned long long)size, (unsigned long long)addr);
	gm_mark_dirty(gm, addr, size);
	memset(base, 0, size);

	mpf = (struct mpf_intel *)base;
	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = (uint32_t)(addr + sizeof(*mpf));
	mpf->length = 1;
	mpf->specification = 4;
	mpf->checksum = table_checksum(mpf, sizeof(*mpf));

	mpc = (struct mpc_table *)(base + sizeof(*mpf));
	memcpy(mpc->signature, "PCMP", 4);
	mpc->spec = 4;
	memcpy(mpc->oem, "HEARTH  ", 8);
	memcpy(mpc->productid, "MICROVM     ", 12);
	mpc->lapic = LAYOUT_LAPIC_ADDR;
	p = (uint8_t *)(mpc + 1);

	for (unsigned i = 0; i < nvcpus; i++) {
		struct mpc_cpu *c = (struct mpc_cpu *)p;

		c->type = MP_CPU;
		c->apicid = (uint8_t)i;
		c->apicver = APIC_VERSION;
		c->cpuflag = 1 | (i == 0 ? 2 : 0);
		c->cpufeature = 0x600;                  /* family 6 */
		c->featureflag = (1u << 9) | (1u << 0); /* APIC, FPU */
		p += sizeof(*c);
	}
	{
		struct mpc_bus *b = (struct mpc_bus *)p;

		b->type = MP_BUS;
		b->busid = 0;
		memcpy(b->bustype, "ISA   ", 6);
		p += sizeof(*b);
	}
	{
		struct mpc_ioapic *io = (struct mpc_ioapic *)p;

		io->type = MP_IOAPIC;
		io->apicid = (uint8_t)nvcpus;
		io->apicver = 0x11;
		io->flags = 1;
		io->apicaddr = ioapic;
		p += sizeof(*io);
	}
	for (unsigned irq = 0; irq < MP_IRQ_COUNT; irq++) {
		struct mpc_intsrc *s = (struct mpc_intsrc *)p;

		s->type = MP_INTSRC;
		s->irqtype = MP_INT;
		s->srcbus = 0;
		s->srcbusirq = (uint8_t)irq;
		s->dstapic = (uint8_t)nvcpus;
		s->dstirq = (uint8_t)irq;
		p += sizeof(*s);
	}
	{
		/* LINT0 is ExtINT (the PIC), LINT1 is NMI, on every local APIC (0xff). */
		struct mpc_intsrc *s = (struct mpc_intsrc *)p;

		s->type = MP_LINTSRC;
		s->irqtype = MP_EXTINT;
		s->dstapic = 0xff;
		s->dstirq = 0;
		p += sizeof(*s);
		s = (struct mpc_intsrc *)p;
		s->type = MP_LINTSRC;
		s->irqtype = MP_NMI;
		s->dstapic = 0xff;
		s->dstirq = 1;
		p += sizeof(*s);
	}
	mpc->oemcount = (uint16_t)(nvcpus + 1 + 1 + MP_IRQ_COUNT + 2); /* the entry count */
	mpc->length = (uint16_t)(p - (uint8_t *)mpc);
	mpc->checksum = table_checksum(mpc, mpc->length);
	return 0;
}
