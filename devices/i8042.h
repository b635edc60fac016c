/*
 * A minimal i8042 keyboard controller at ports 0x60/0x64: enough for a guest's driver to
 * find a keyboard (self tests, command byte, keyboard acks), to reset the VM (0xFE to 0x64),
 * and to receive Ctrl+Alt+Del (the SendCtrlAltDel action). No mouse (aux port).
 */
#ifndef HEARTH_I8042_H
#define HEARTH_I8042_H

#include <pthread.h>
#include <stdint.h>

#include "vmm/bus.h"

#define I8042_BUF 16

struct snap_w;
struct snap_r;
struct error;

struct i8042 {
	pthread_mutex_t lock;
	uint8_t ctr;         /* controller command byte */
	uint8_t pending_cmd; /* controller command waiting for its data byte */
	uint8_t pending_kbd; /* keyboard command waiting for its data byte */
	uint8_t buf[I8042_BUF];
	unsigned head, count;
	void (*reset)(void *ctx); /* 0xFE to port 0x64 */
	void (*irq)(void *ctx);   /* pulse IRQ 1 */
	void *ctx;
};

void i8042_init(struct i8042 *k, void (*reset)(void *), void (*irq)(void *), void *ctx);
/* Queue the key presses and releases of Ctrl+Alt+Del and interrupt the guest. */
void i8042_send_ctrl_alt_del(struct i8042 *k);

/* Snapshots (snapshot/stream.h): command byte, pending controller and keyboard commands, the
 * output queue, as section I842. Restore validates every field; on a bad one (-1, err set)
 * nothing changes. */
int i8042_save(const struct i8042 *k, struct snap_w *w);
int i8042_restore(struct i8042 *k, struct snap_r *r, struct error *err);

extern const struct bus_ops i8042_data_bus_ops; /* registered at 0x60, length 1 */
extern const struct bus_ops i8042_cmd_bus_ops;  /* registered at 0x64, length 1 */

#endif
