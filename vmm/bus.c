#include "bus.h"

#include <string.h>

int bus_add(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops, void *opaque,
            const char *name)
{
	if (b->n >= BUS_MAX_DEVICES || len == 0 || base + len < base)
		return -1;
	for (int i = 0; i < b->n; i++)
		if (base < b->dev[i].base + b->dev[i].len && b->dev[i].base < base + len)
			return -1;
	b->dev[b->n++] = (struct bus_range){base, len, ops, opaque, name};
	return 0;
}

static const struct bus_range *find(const struct bus *b, uint64_t addr, uint32_t size)
{
	for (int i = 0; i < b->n; i++) {
		const struct bus_range *r = &b->dev[i];

		if (addr >= r->base && addr - r->base < r->len && size <= r->len - (addr - r->base))
			return r;
	}
	return NULL;
}

bool bus_read(const struct bus *b, uint64_t addr, uint8_t *data, uint32_t size)
{
	const struct bus_range *r = find(b, addr, size);

	if (!r || !r->ops->read) {
		memset(data, BUS_UNCLAIMED_READ, size);
		return r != NULL;
	}
	r->ops->read(r->opaque, addr - r->base, data, size);
	return true;
}

bool bus_write(const struct bus *b, uint64_t addr, const uint8_t *data, uint32_t size)
{
	const struct bus_range *r = find(b, addr, size);

	if (!r)
		return false;
	if (r->ops->write)
		r->ops->write(r->opaque, addr - r->base, data, size);
	return true;
}

bool bus_write_rep(const struct bus *b, uint64_t addr, const uint8_t *data, uint32_t size,
                   uint32_t count)
{
	const struct bus_range *r = find(b, addr, size);

	if (!r)
		return false;
	if (r->ops->write_rep) {
		r->ops->write_rep(r->opaque, addr - r->base, data, size, count);
		return true;
	}
	for (uint32_t i = 0; r->ops->write && i < count; i++)
		r->ops->write(r->opaque, addr - r->base, data + (uint64_t)i * size, size);
	return true;
}
