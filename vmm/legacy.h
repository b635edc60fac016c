/* The minimum legacy devices besides the UART and RTC: i8042 reset and the guest-exit port. */
#ifndef HEARTH_LEGACY_H
#define HEARTH_LEGACY_H

#include "bus.h"

/* opaque = struct vm *. At port 0x64: 0xFE resets (ends) the VM; the status reads 0. */
extern const struct bus_ops i8042_bus_ops;
/* At port 0x60: no keyboard, reads 0. */
extern const struct bus_ops i8042_data_bus_ops;
/* opaque = struct vm *. A write of byte N to port 0xf4 ends the VM with exit status N. */
extern const struct bus_ops guest_exit_bus_ops;
/* Ports written by firmware-style code that hearth accepts silently (POST codes, 0x80). */
extern const struct bus_ops ignore_bus_ops;

#endif
