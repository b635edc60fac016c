/* What the guest knows about its machine: the PVH memory map, and the banner line. */
#include "rt.h"

/* Memory-map entries looked at, at most (hearth writes a handful). */
#define RT_MEMMAP_MAX 128

static const struct hvm_memmap_table_entry *memmap(const struct hvm_start_info *si, uint32_t *n)
{
	uint64_t pa = si->memmap_paddr;

	*n = 0;
	if (si->version < 1 || pa == 0 ||
	    pa >= (1ULL << 32) - RT_MEMMAP_MAX * sizeof(struct hvm_memmap_table_entry))
		return NULL;
	*n = si->memmap_entries < RT_MEMMAP_MAX ? si->memmap_entries : RT_MEMMAP_MAX;
	return (const struct hvm_memmap_table_entry *)(uintptr_t)pa;
}

void rt_mem_summary(const struct hvm_start_info *si, struct mem_summary *out)
{
	uint32_t n;
	const struct hvm_memmap_table_entry *e = memmap(si, &n);
	uint64_t ram = 0;

	for (uint32_t i = 0; i < n; i++)
		if (e[i].type == HVM_MEMMAP_TYPE_RAM)
			ram += e[i].size;
	out->ram_bytes = ram;
	out->entries = e ? si->memmap_entries : 0;
}

bool rt_in_ram(const struct hvm_start_info *si, uint64_t addr, uint64_t len)
{
	uint32_t n;
	const struct hvm_memmap_table_entry *e = memmap(si, &n);

	for (uint32_t i = 0; i < n; i++)
		if (e[i].type == HVM_MEMMAP_TYPE_RAM && addr >= e[i].addr &&
		    addr - e[i].addr <= e[i].size && len <= e[i].size - (addr - e[i].addr))
			return true;
	return false;
}

#define CON_LITERAL(s) con_append_raw(s, sizeof(s) - 1)

/*
 * `<prefix><mem> MiB RAM (<n> map entries), <cpus> CPU(s), cmdline "<cmdline>"`, written
 * piece by piece rather than through con_printf: this line is on every boot's path.
 */
void rt_print_banner(const char *prefix, const struct hvm_start_info *si)
{
	struct mem_summary mem;
	const char *cmdline = rt_cmdline(si);
	int cpus = rt_mp_cpu_count(si);

	rt_mem_summary(si, &mem);
	con_append_raw(prefix, rt_strnlen(prefix, (size_t)-1));
	con_put_u64(mem.ram_bytes >> 20);
	CON_LITERAL(" MiB RAM (");
	con_put_u64(mem.entries);
	CON_LITERAL(" map entries), ");
	if (cpus < 0)
		CON_LITERAL("?");
	else
		con_put_u64((uint64_t)cpus);
	CON_LITERAL(" CPU(s), cmdline \"");
	con_append_raw(cmdline, rt_strnlen(cmdline, RT_CMDLINE_MAX));
	CON_LITERAL("\"\n");
	con_flush();
}
