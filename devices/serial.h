/* A 16550A-compatible UART (COM1): output to the console target, input from it. */
#ifndef HEARTH_SERIAL_H
#define HEARTH_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/console.h"

#define SERIAL_RX_FIFO 64

struct snap_w;
struct snap_r;
struct error;

struct serial {
	pthread_mutex_t lock;
	struct console *console;
	/* Pulse the guest interrupt line (edge-triggered ISA IRQ). */
	void (*irq_pulse)(void *ctx);
	void *irq_ctx;
	/* Called (outside the lock) when the guest empties the receive FIFO. */
	void (*rx_drained)(void *ctx);
	void *rx_ctx;

	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thre_pending; /* transmitter-empty interrupt not yet acknowledged */
	uint8_t rx[SERIAL_RX_FIFO];
	unsigned rx_head, rx_count;
	uint64_t tx_bytes, rx_bytes;
};

void serial_init(struct serial *s, struct console *console);
/* Queue input bytes for the guest; returns how many fit in the FIFO. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);
size_t serial_rx_space(struct serial *s);

/* Snapshots (snapshot/stream.h): the registers, the pending THRE interrupt and the receive
 * FIFO, as section UART. Restore validates every field; on a bad one (-1, err set) the UART
 * is left as it was. Counters are not state: they start again at 0. */
int serial_save(const struct serial *s, struct snap_w *w);
int serial_restore(struct serial *s, struct snap_r *r, struct error *err);

extern const struct bus_ops serial_bus_ops;

#endif
