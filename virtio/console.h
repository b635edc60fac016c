/* virtio-console: one port (no MULTIPORT). Output goes to the console target; input comes
 * from it when the driver has posted receive buffers. */
#ifndef HEARTH_VIRTIO_CONSOLE_H
#define HEARTH_VIRTIO_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "mmio.h"
#include "vmm/console.h"

#define VCON_RX_PENDING 4096

struct virtio_console {
	struct virtio_mmio *t;
	struct console *console;
	/* Input accepted from the host but not yet in a guest buffer. */
	uint8_t pending[VCON_RX_PENDING];
	size_t npending;
	uint64_t tx_bytes, rx_bytes;
};

void virtio_console_init(struct virtio_console *c, struct virtio_mmio *t, struct console *con);
/* Host input: take what fits in the pending buffer, deliver what the guest has room for.
 * Returns the bytes taken. Takes the transport lock. */
size_t virtio_console_receive(struct virtio_console *c, const uint8_t *buf, size_t len);
/* Free room in the pending buffer (0: stop reading host input for now). */
size_t virtio_console_rx_space(struct virtio_console *c);

/* Snapshots (snapshot/stream.h), section VCON after the transport's: the input not yet in a
 * guest buffer. Output is written out as it comes and holds nothing. Restore validates every
 * field and that no chain is in flight; on a bad one (-1, err set) nothing changes. */
int virtio_console_save(const struct virtio_console *c, struct snap_w *w);
int virtio_console_restore(struct virtio_console *c, struct snap_r *r, struct error *err);

extern const struct virtio_dev_ops virtio_console_ops;
#define VIRTIO_CONSOLE_QUEUES 2 /* receiveq 0 and transmitq 0 of port 0 */

#endif
