#include "layout.h"

uint64_t layout_low_ram(uint64_t ram_size)
{
	return ram_size < LAYOUT_LOW_RAM_MAX ? ram_size : LAYOUT_LOW_RAM_MAX;
}

uint64_t layout_high_ram(uint64_t ram_size)
{
	return ram_size - layout_low_ram(ram_size);
}

int layout_memory_map(uint64_t ram_size, struct mem_region *out, int max)
{
	uint64_t low = layout_low_ram(ram_size), high = layout_high_ram(ram_size);
	struct mem_region map[4];
	int n = 0;

	map[n++] = (struct mem_region){0, LAYOUT_EBDA_START, MEM_RAM};
	map[n++] = (struct mem_region){LAYOUT_EBDA_START, LAYOUT_KERNEL_START - LAYOUT_EBDA_START,
	                               MEM_RESERVED};
	if (low > LAYOUT_KERNEL_START)
		map[n++] =
		    (struct mem_region){LAYOUT_KERNEL_START, low - LAYOUT_KERNEL_START, MEM_RAM};
	if (high)
		map[n++] = (struct mem_region){LAYOUT_HIGH_RAM_START, high, MEM_RAM};
	if (n > max)
		return -1;
	for (int i = 0; i < n; i++)
		out[i] = map[i];
	return n;
}
