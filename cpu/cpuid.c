#include "cpuid.h"

#include <string.h>

struct cpuid_entry *cpuid_find(struct cpuid_entry *e, int n, uint32_t function, uint32_t index)
{
	for (int i = 0; i < n; i++) {
		if (e[i].function != function)
			continue;
		if (!(e[i].flags & CPUID_FLAG_INDEXED) || e[i].index == index)
			return &e[i];
	}
	return NULL;
}

static struct cpuid_entry *add_entry(struct cpuid_entry *e, int *n, int cap, uint32_t function,
                                     uint32_t index, uint32_t flags)
{
	struct cpuid_entry *x = cpuid_find(e, *n, function, index);

	if (x)
		return x;
	if (*n >= cap)
		return NULL;
	x = &e[(*n)++];
	memset(x, 0, sizeof(*x));
	x->function = function;
	x->index = index;
	x->flags = flags;
	return x;
}

/* Bits needed to number `count` items (x2APIC ID shift). */
static uint32_t id_bits(uint32_t count)
{
	uint32_t b = 0;

	while ((1u << b) < count)
		b++;
	return b;
}

int cpuid_normalize(struct cpuid_entry *e, int n, int cap, const struct cpuid_params *p)
{
	uint32_t shift = id_bits(p->nvcpus);
	struct cpuid_entry *x;

	for (int i = 0; i < n; i++) {
		struct cpuid_entry *c = &e[i];

		switch (c->function) {
		case 1:
			/* APIC ID in EBX[31:24], logical processor count in EBX[23:16]. */
			c->ebx = (c->ebx & 0x0000ffffu) | (p->apic_id << 24) |
			         ((p->nvcpus & 0xff) << 16);
			if (p->nvcpus > 1)
				c->edx |= 1u << 28; /* HTT: the count field is valid */
			else
				c->edx &= ~(1u << 28);
			c->ecx |= 1u << 31; /* hypervisor present */
			if (p->no_xsave)
				c->ecx &=
				    ~((1u << 26) | (1u << 27) | (1u << 28)); /* XSAVE OSXSAVE AVX */
			break;
		case 4:
			/* Cores per package - 1 in EAX[31:26]; one thread per cache. */
			c->eax = (c->eax & 0x03ffffffu & ~(0xfffu << 14)) | ((p->nvcpus - 1) << 26);
			break;
		case 7:
			if (c->index == 0 && p->no_xsave)
				c->ebx &= ~((1u << 5) | (1u << 16) | (1u << 17) | (1u << 21) |
				            (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) |
				            (1u << 31)); /* AVX2, AVX-512 */
			break;
		case 0xb:
		case 0x1f:
			/* Topology: one thread per core, nvcpus cores per package. */
			c->edx = p->apic_id;
			if (c->index == 0) {
				c->eax = 0;
				c->ebx = 1;
				c->ecx = (1u << 8) | 0; /* SMT level */
			} else if (c->index == 1) {
				c->eax = shift;
				c->ebx = p->nvcpus;
				c->ecx = (2u << 8) | 1; /* core level */
			} else {
				c->eax = c->ebx = 0;
				c->ecx = c->index; /* invalid level: ends the enumeration */
			}
			break;
		case 0xd:
			if (p->no_xsave)
				c->eax = c->ebx = c->ecx = c->edx = 0;
			break;
		case 0x80000001:
			if (p->no_gbpages)
				c->edx &= ~(1u << 26); /* pdpe1gb */
			break;
		case 0x80000008:
			c->ecx = (c->ecx & ~0xffu) | ((p->nvcpus - 1) & 0xff); /* AMD: cores - 1 */
			break;
		case 0x8000001e:
			c->eax = p->apic_id; /* AMD extended APIC ID */
			c->ebx = (c->ebx & ~0xffffu) | (p->apic_id & 0xff);
			c->ecx &= ~0xffu;
			break;
		default:
			break;
		}
	}

	/* Hypervisor leaves: KVM's signature and features, plus the timing leaf. */
	x = add_entry(e, &n, cap, HV_LEAF_BASE, 0, 0);
	if (!x)
		return -1;
	x->ebx = 0x4b4d564b; /* "KVMK" */
	x->ecx = 0x564b4d56; /* "VMKV" */
	x->edx = 0x0000004d; /* "M\0\0\0" */
	x->eax = p->tsc_khz ? HV_LEAF_TIMING : HV_LEAF_BASE + 1;
	if (p->tsc_khz) {
		x = add_entry(e, &n, cap, HV_LEAF_TIMING, 0, 0);
		if (!x)
			return -1;
		x->eax = p->tsc_khz;
		x->ebx = LAPIC_BUS_KHZ;
		x->ecx = x->edx = 0;
	}
	return n;
}
