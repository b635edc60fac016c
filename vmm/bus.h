/*
 * The device bus: address ranges -> device callbacks, one bus for port I/O and one for MMIO.
 * Devices are added while the VM is built and the table is read-only once vCPUs run, so
 * dispatch takes no lock; devices lock their own state.
 */
#ifndef HEARTH_BUS_H
#define HEARTH_BUS_H

#include <stdbool.h>
#include <stdint.h>

#define BUS_MAX_DEVICES 32
/* What a read of an address with no device returns: all ones, as on an empty ISA/PCI bus. */
#define BUS_UNCLAIMED_READ 0xff

struct bus_ops {
	void (*read)(void *opaque, uint64_t offset, uint8_t *data, uint32_t size);
	void (*write)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size);
	/* Optional: a string write (`rep outs`) of `count` items in one call. */
	void (*write_rep)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size,
	                  uint32_t count);
};

struct bus_range {
	uint64_t base, len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name;
};

struct bus {
	struct bus_range dev[BUS_MAX_DEVICES];
	int n;
};

/* Add a device; fails (-1) on overlap or a full table. */
int bus_add(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops, void *opaque,
            const char *name);
/* Dispatch an access; returns false when no device claims it (reads then see all ones). */
bool bus_read(const struct bus *b, uint64_t addr, uint8_t *data, uint32_t size);
bool bus_write(const struct bus *b, uint64_t addr, const uint8_t *data, uint32_t size);
/* `count` consecutive writes of `size` bytes each to one address (string port I/O). */
bool bus_write_rep(const struct bus *b, uint64_t addr, const uint8_t *data, uint32_t size,
                   uint32_t count);

#endif
