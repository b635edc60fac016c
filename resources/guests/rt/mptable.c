/*
 * CPU count and APIC IDs from the Intel MultiProcessor Specification (1.4) table.
 *
 * The floating pointer ("_MP_", 16-byte aligned) is searched for in [0x9fc00, 0xa0000) (where
 * hearth puts it) and then in [0xf0000, 0x100000). Both it and the configuration table
 * ("PCMP") must have valid checksums. Nothing here relies on BIOS data areas, and the
 * configuration table is read only when it lies in one of those ranges or in RAM.
 */
#include "rt.h"

#define MP_FLOAT_SIGNATURE  0x5f504d5fu /* "_MP_" */
#define MP_CONFIG_SIGNATURE 0x504d4350u /* "PCMP" */

#define MP_ENTRY_PROCESSOR      0
#define MP_ENTRY_LOCAL_INTR     4 /* highest base-table entry type */
#define MP_PROCESSOR_ENTRY_SIZE 20
#define MP_OTHER_ENTRY_SIZE     8
#define MP_CPU_ENABLED          0x01

struct mp_floating {
	uint32_t signature;
	uint32_t config_paddr; /* 0: a default configuration (feature1 says which) */
	uint8_t length;        /* in 16-byte units */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t feature1;
	uint8_t feature2;
	uint8_t feature3[3];
} __attribute__((packed));

struct mp_config {
	uint32_t signature;
	uint16_t base_length; /* bytes, header included */
	uint8_t spec_rev;
	uint8_t checksum;
	char oem_id[8];
	char product_id[12];
	uint32_t oem_table;
	uint16_t oem_table_size;
	uint16_t entry_count;
	uint32_t lapic_paddr;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct mp_floating) == 16, "MP floating pointer is 16 bytes");
_Static_assert(sizeof(struct mp_config) == 44, "MP config header is 44 bytes");

struct range {
	uint32_t start, end;
};

static const struct range mp_ranges[] = {
    {0x9fc00, 0xa0000},  /* last KiB of base memory (EBDA): hearth's MP table */
    {0xf0000, 0x100000}, /* BIOS ROM area */
};

typedef uint64_t u64_unaligned __attribute__((aligned(1), may_alias));

static uint64_t load64(const uint8_t *p)
{
	return *(const u64_unaligned *)p;
}

/* Low byte of lane0 + lane1 + lane2 + lane3 of four 16-bit lanes (carries only go up). */
static uint64_t fold_lanes(uint64_t lanes)
{
	return lanes + (lanes >> 16) + (lanes >> 32) + (lanes >> 48);
}

/*
 * Byte sum of p[0, n) mod 256, sixteen bytes per step (KVM may emulate every instruction).
 * `even` collects the even bytes of each qword in 16-bit lanes; `all` is the plain 64-bit sum
 * of the qwords, so (all - even) >> 8 is the sum of the odd bytes in the same lanes (only the
 * top lane loses bits, above the 8 that matter). With at most 128 qwords per chunk no lane
 * can overflow.
 */
static uint8_t byte_sum(const uint8_t *p, size_t n)
{
	const uint64_t m = 0x00ff00ff00ff00ffULL;
	uint64_t total = 0;

	while (n >= 16) {
		size_t pairs = n / 16 < 64 ? n / 16 : 64;
		const uint8_t *stop = p + pairs * 16;
		uint64_t all = 0, even = 0;

		n -= pairs * 16;
		do {
			uint64_t a = load64(p), b = load64(p + 8);

			all += a + b;
			even += (a & m) + (b & m);
			p += 16;
		} while (p != stop);
		total += fold_lanes(even + ((all - even) >> 8));
	}
	if (n >= 8) {
		uint64_t w = load64(p);

		total += fold_lanes((w & m) + ((w >> 8) & m));
		p += 8;
		n -= 8;
	}
	while (n--)
		total += *p++;
	return (uint8_t)total;
}

static bool in_mp_range(uint64_t addr, uint64_t len)
{
	for (size_t i = 0; i < sizeof(mp_ranges) / sizeof(mp_ranges[0]); i++)
		if (addr >= mp_ranges[i].start && len <= mp_ranges[i].end - addr)
			return true;
	return false;
}

static const struct mp_floating *mp_search(uint32_t start, uint32_t end)
{
	for (uint32_t a = start; a + sizeof(struct mp_floating) <= end; a += 16) {
		const struct mp_floating *f = (const struct mp_floating *)(uintptr_t)a;

		if (f->signature != MP_FLOAT_SIGNATURE)
			continue;
		if (f->length == 0 || f->length > (end - a) / 16)
			continue;
		if (byte_sum((const uint8_t *)f, f->length * 16u) == 0)
			return f;
	}
	return NULL;
}

int rt_mp_cpus(const struct hvm_start_info *si, uint8_t *apic_ids, int max)
{
	const struct mp_floating *f = NULL;
	const struct mp_config *c;
	const uint8_t *p, *end;
	int cpus = 0;

	for (size_t i = 0; !f && i < sizeof(mp_ranges) / sizeof(mp_ranges[0]); i++)
		f = mp_search(mp_ranges[i].start, mp_ranges[i].end);
	if (!f)
		return -1;
	if (f->config_paddr == 0) {
		if (!f->feature1)
			return -1;
		/* Every default configuration has two CPUs, APIC IDs 0 and 1. */
		for (int i = 0; i < 2 && i < max; i++)
			apic_ids[i] = (uint8_t)i;
		return 2;
	}

	c = (const struct mp_config *)(uintptr_t)f->config_paddr;
	if (!in_mp_range(f->config_paddr, sizeof(*c)) &&
	    !rt_in_ram(si, f->config_paddr, sizeof(*c)))
		return -1;
	if (c->signature != MP_CONFIG_SIGNATURE || c->base_length < sizeof(*c))
		return -1;
	if (!in_mp_range(f->config_paddr, c->base_length) &&
	    !rt_in_ram(si, f->config_paddr, c->base_length))
		return -1;
	if (byte_sum((const uint8_t *)c, c->base_length) != 0)
		return -1;

	/* Walk the entries by the table length alone, as Linux does: some firmware (qboot)
	 * leaves entry_count at 0. */
	p = (const uint8_t *)(c + 1);
	end = (const uint8_t *)c + c->base_length;
	while (p < end) {
		unsigned type = *p;

		if (type - 1u < MP_ENTRY_LOCAL_INTR) {
			p += MP_OTHER_ENTRY_SIZE; /* bus, I/O APIC, I/O or local interrupt */
		} else if (type == MP_ENTRY_PROCESSOR) {
			if (end - p < MP_PROCESSOR_ENTRY_SIZE)
				break;
			if (p[3] & MP_CPU_ENABLED) {
				if (cpus < max)
					apic_ids[cpus] = p[1];
				cpus++;
			}
			p += MP_PROCESSOR_ENTRY_SIZE;
		} else {
			break; /* not a base-table entry: the rest cannot be parsed */
		}
	}
	return cpus;
}

int rt_mp_cpu_count(const struct hvm_start_info *si)
{
	return rt_mp_cpus(si, NULL, 0);
}
