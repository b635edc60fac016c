#include "i8042.h"

#include <string.h>

#include "snapshot/stream.h"

#define ST_OBF      0x01 /* output buffer full */
#define ST_SYS      0x04 /* system flag: self test passed */
#define ST_CMD      0x08 /* last write was to the command port */
#define ST_UNLOCK   0x10 /* keyboard not inhibited */
#define CTR_KBD_INT 0x01
#define CTR_XLATE   0x40

#define KBD_ACK 0xfa

void i8042_init(struct i8042 *k, void (*reset)(void *), void (*irq)(void *), void *ctx)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->ctr = CTR_KBD_INT | CTR_XLATE | 0x04; /* what firmware leaves: IRQ on, translate */
	k->reset = reset;
	k->irq = irq;
	k->ctx = ctx;
}

/* Queue a byte for the guest (lock held). Returns whether to interrupt. */
static int push(struct i8042 *k, uint8_t b)
{
	if (k->count == I8042_BUF)
		return 0;
	k->buf[(k->head + k->count++) % I8042_BUF] = b;
	return (k->ctr & CTR_KBD_INT) != 0;
}

static void controller_command(struct i8042 *k, uint8_t cmd, int *irq, int *reset)
{
	switch (cmd) {
	case 0x20: /* read command byte */
		*irq |= push(k, k->ctr);
		break;
	case 0x60: /* write command byte: data follows on port 0x60 */
	case 0xd1: /* write output port */
	case 0xd4: /* write to aux device: there is none */
		k->pending_cmd = cmd;
		break;
	case 0xaa: /* controller self test */
		*irq |= push(k, 0x55);
		break;
	case 0xab: /* keyboard interface test */
		*irq |= push(k, 0x00);
		break;
	case 0xa9: /* aux interface test: no aux port */
		*irq |= push(k, 0xff);
		break;
	case 0xfe: /* pulse the reset line */
		*reset = 1;
		break;
	default: /* enable/disable keyboard or aux, and others: accepted */
		break;
	}
}

static void keyboard_command(struct i8042 *k, uint8_t b, int *irq)
{
	if (k->pending_kbd) { /* the data byte of 0xed (LEDs) or 0xf0 (scancode set) */
		k->pending_kbd = 0;
		*irq |= push(k, KBD_ACK);
		return;
	}
	switch (b) {
	case 0xff: /* reset: ack, then self test passed */
		*irq |= push(k, KBD_ACK);
		*irq |= push(k, 0xaa);
		break;
	case 0xf2: /* identify: an MF2 keyboard */
		*irq |= push(k, KBD_ACK);
		*irq |= push(k, 0xab);
		*irq |= push(k, 0x83);
		break;
	case 0xed:
	case 0xf0:
	case 0xf3: /* typematic rate */
		k->pending_kbd = b;
		*irq |= push(k, KBD_ACK);
		break;
	default:
		*irq |= push(k, KBD_ACK);
		break;
	}
}

static void i8042_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	struct i8042 *k = opaque;

	memset(data, 0, size);
	pthread_mutex_lock(&k->lock);
	if (off == 0) {
		if (k->count) {
			data[0] = k->buf[k->head];
			k->head = (k->head + 1) % I8042_BUF;
			k->count--;
		}
	} else if (off == 4) {
		data[0] = ST_SYS | ST_UNLOCK | (k->count ? ST_OBF : 0);
	}
	pthread_mutex_unlock(&k->lock);
}

static void i8042_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	struct i8042 *k = opaque;
	int irq = 0, reset = 0;

	(void)size;
	pthread_mutex_lock(&k->lock);
	if (off == 4) {
		controller_command(k, data[0], &irq, &reset);
	} else if (off == 0) {
		if (k->pending_cmd == 0x60)
			k->ctr = data[0];
		else if (!k->pending_cmd)
			keyboard_command(k, data[0], &irq);
		k->pending_cmd = 0;
	}
	pthread_mutex_unlock(&k->lock);
	if (reset && k->reset)
		k->reset(k->ctx);
	if (irq && k->irq)
		k->irq(k->ctx);
}

void i8042_send_ctrl_alt_del(struct i8042 *k)
{
	/* Presses then releases of Ctrl, Alt, Delete: scancode set 1 when the controller
	 * translates (what guests expect by default), else set 2. */
	static const uint8_t set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
	static const uint8_t set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0,
	                               0x71, 0xf0, 0x11, 0xf0, 0x14};
	const uint8_t *codes;
	size_t n;
	int irq = 0;

	pthread_mutex_lock(&k->lock);
	if (k->ctr & CTR_XLATE) {
		codes = set1;
		n = sizeof(set1);
	} else {
		codes = set2;
		n = sizeof(set2);
	}
	for (size_t i = 0; i < n; i++)
		irq |= push(k, codes[i]);
	pthread_mutex_unlock(&k->lock);
	if (irq && k->irq)
		k->irq(k->ctx);
}

/* ---- snapshots -------------------------------------------------------------------------- */

#define TAG_I8042 SNAP_TAG('I', '8', '4', '2')

int i8042_save(const struct i8042 *k, struct snap_w *w)
{
	struct i8042 *m = (struct i8042 *)k; /* the lock only */
	size_t at;

	pthread_mutex_lock(&m->lock);
	at = snap_begin(w, TAG_I8042);
	snap_u8(w, k->ctr);
	snap_u8(w, k->pending_cmd);
	snap_u8(w, k->pending_kbd);
	snap_u8(w, (uint8_t)k->count); /* the queue in order, oldest byte first */
	for (unsigned i = 0; i < k->count; i++)
		snap_u8(w, k->buf[(k->head + i) % I8042_BUF]);
	snap_end(w, at);
	pthread_mutex_unlock(&m->lock);
	return w->failed ? -1 : 0;
}

int i8042_restore(struct i8042 *k, struct snap_r *r, struct error *err)
{
	uint8_t ctr, cmd, kbd, count, buf[I8042_BUF];
	struct snap_r sec;

	if (snap_section(r, TAG_I8042, &sec, err))
		return -1;
	if (!snap_get_u8(&sec, &ctr)) /* any byte the guest wrote */
		return snap_bad(&sec, err, "command byte");
	/* The commands that wait for a data byte (controller_command, keyboard_command). */
	if (!snap_get_u8(&sec, &cmd) || (cmd && cmd != 0x60 && cmd != 0xd1 && cmd != 0xd4))
		return snap_bad(&sec, err, "pending controller command");
	if (!snap_get_u8(&sec, &kbd) || (kbd && kbd != 0xed && kbd != 0xf0 && kbd != 0xf3))
		return snap_bad(&sec, err, "pending keyboard command");
	if (!snap_get_u8(&sec, &count) || count > I8042_BUF || !snap_get_bytes(&sec, buf, count))
		return snap_bad(&sec, err, "output queue");
	if (snap_section_done(&sec, err))
		return -1;
	pthread_mutex_lock(&k->lock);
	k->ctr = ctr;
	k->pending_cmd = cmd;
	k->pending_kbd = kbd;
	memcpy(k->buf, buf, count);
	k->head = 0;
	k->count = count;
	pthread_mutex_unlock(&k->lock);
	return 0;
}

/* Two registrations, 0x60 and 0x64: the ports between belong to others (0x61: the PIT's
 * gate and speaker, in KVM's in-kernel chips or hearth's userspace ones). */
static void data_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	(void)off;
	i8042_read(opaque, 0, data, size);
}

static void data_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	(void)off;
	i8042_write(opaque, 0, data, size);
}

static void cmd_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	(void)off;
	i8042_read(opaque, 4, data, size);
}

static void cmd_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	(void)off;
	i8042_write(opaque, 4, data, size);
}

const struct bus_ops i8042_data_bus_ops = {.read = data_read, .write = data_write};
const struct bus_ops i8042_cmd_bus_ops = {.read = cmd_read, .write = cmd_write};
