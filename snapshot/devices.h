/*
 * Every device's state in a snapshot (snapshot.h), in a fixed order, one section each (the
 * device's own *_save / *_restore):
 *
 *   DEVS  the number of virtio devices and their types (virtio device IDs), in slot order
 *   UART  COM1 (devices/serial.c)
 *   CMOS  the RTC's index and RAM (devices/rtc_cmos.c)
 *   I842  the keyboard controller (devices/i8042.c)
 *   then per virtio device, in slot order: VMIO, its transport and queues (virtio/mmio.c),
 *   and VBLK, VNET or VCON, the device (virtio/blk.c, net.c, console.c)
 *
 * The guest-exit port, the reset control port and the boot timer hold no state (devices/
 * legacy.c): nothing is saved for them.
 */
#ifndef HEARTH_SNAPSHOT_DEVICES_H
#define HEARTH_SNAPSHOT_DEVICES_H

#include "snapshot/stream.h"
#include "vmm/error.h"

struct vm;

/* With every vCPU parked. 0, or -1 when out of memory. */
int devices_save(struct vm *vm, struct snap_w *w);

/* Into a VM built from the snapshot's configuration, with its guest memory and its backend's
 * state (the interrupt chips) restored, before any vCPU runs: a pending device interrupt is
 * signalled again (virtio_mmio_restore). The devices must be those of the state, in the same
 * order (else an error names the first that differs); every field is validated. 0, or -1
 * with err set (the caller abandons the VM). */
int devices_restore(struct vm *vm, struct snap_r *r, struct error *err);

#endif
