#include "legacy.h"
#include "vmm/vm.h"

#include <string.h>
#include <time.h>

#include "vmm/log.h"

static void guest_exit_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	(void)off;
	(void)size;
	vm_request_stop(opaque, STOP_GUEST_EXIT, data[0], "guest exited with status %u", data[0]);
}

const struct bus_ops guest_exit_bus_ops = {.write = guest_exit_write};

/* The reset control register (0xcf9), which the FADT names as the ACPI reset register: a write
 * with RST_CPU set resets the machine, i.e. ends the VM like an i8042 reset. */
#define RESET_CTRL_RST_CPU 0x04

static void reset_ctrl_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	(void)opaque;
	(void)off;
	memset(data, 0, size);
}

static void reset_ctrl_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	(void)off;
	(void)size;
	if (data[0] & RESET_CTRL_RST_CPU)
		vm_request_stop(opaque, STOP_RESET, 0, "guest reset the VM (port 0xcf9)");
}

const struct bus_ops reset_ctrl_bus_ops = {.read = reset_ctrl_read, .write = reset_ctrl_write};

static void ignore_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	(void)opaque;
	(void)off;
	memset(data, BUS_UNCLAIMED_READ, size);
}

const struct bus_ops ignore_bus_ops = {.read = ignore_read};

static void boot_timer_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	struct vm *vm = opaque;
	struct timespec now;
	double us;

	(void)size;
	if (off != 0 || data[0] != BOOT_TIMER_MAGIC)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	us = (double)(now.tv_sec - vm->t_start.tv_sec) * 1e6 +
	     (double)(now.tv_nsec - vm->t_start.tv_nsec) / 1e3;
	log_status("Guest-boot-time = %.0f us %.0f ms", us, us / 1000);
}

const struct bus_ops boot_timer_bus_ops = {.write = boot_timer_write};
