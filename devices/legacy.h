/* The guest-exit port, the reset control port, and ports hearth accepts silently. */
#ifndef HEARTH_LEGACY_H
#define HEARTH_LEGACY_H

#include "vmm/bus.h"

/* opaque = struct vm *. A write of byte N to port 0xf4 ends the VM with exit status N. */
extern const struct bus_ops guest_exit_bus_ops;
/* opaque = struct vm *. Port 0xcf9 (the ACPI reset register): RST_CPU ends the VM as a reset. */
extern const struct bus_ops reset_ctrl_bus_ops;
/* Ports written by firmware-style code that hearth accepts silently (POST codes, 0x80). */
extern const struct bus_ops ignore_bus_ops;

/* opaque = struct vm *. --boot-timer: a write of 123 logs the time since InstanceStart. */
extern const struct bus_ops boot_timer_bus_ops;
#define BOOT_TIMER_MAGIC 123

#endif
