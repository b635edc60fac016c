#include "legacy.h"
#include "vm.h"

#include <string.h>

#define I8042_CMD_RESET 0xfe

static void i8042_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	(void)opaque;
	(void)off;
	memset(data, 0, size); /* no keyboard: empty buffers, no data */
}

static void i8042_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	(void)size;
	(void)off;
	if (data[0] == I8042_CMD_RESET)
		vm_request_stop(opaque, STOP_RESET, 0, "guest reset the VM (i8042)");
}

const struct bus_ops i8042_bus_ops = {.read = i8042_read, .write = i8042_write};
const struct bus_ops i8042_data_bus_ops = {.read = i8042_read};

static void guest_exit_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	(void)off;
	(void)size;
	vm_request_stop(opaque, STOP_GUEST_EXIT, data[0], "guest exited with status %u", data[0]);
}

const struct bus_ops guest_exit_bus_ops = {.write = guest_exit_write};

static void ignore_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	(void)opaque;
	(void)off;
	memset(data, BUS_UNCLAIMED_READ, size);
}

const struct bus_ops ignore_bus_ops = {.read = ignore_read};
