#include "serial.h"

#include <string.h>

#include "snapshot/stream.h"

/* Register offsets and bits (8250/16550). */
enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };
#define IER_RDI      0x01
#define IER_THRI     0x02
#define IIR_NO_INT   0x01
#define IIR_THRI     0x02
#define IIR_RDI      0x04
#define IIR_FIFO_ON  0xc0
#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB     0x80
#define MCR_LOOP     0x10
#define LSR_DR       0x01
#define LSR_THRE     0x20
#define LSR_TEMT     0x40
#define MSR_DEFAULT  0xb0 /* DCD, DSR, CTS */

void serial_init(struct serial *s, struct console *console)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->console = console;
	s->mcr = 0x08; /* OUT2 */
	s->dll = 12;   /* 9600 baud, as firmware would leave it */
}

static uint8_t iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO_ON : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thre_pending)
		return fifo | IIR_THRI;
	return fifo | IIR_NO_INT;
}

static void rx_push(struct serial *s, uint8_t b)
{
	if (s->rx_count < SERIAL_RX_FIFO) {
		s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO] = b;
		s->rx_count++;
		s->rx_bytes++;
	}
}

static void pulse_if(struct serial *s, bool cond)
{
	if (cond && s->irq_pulse)
		s->irq_pulse(s->irq_ctx);
}

size_t serial_rx_space(struct serial *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = SERIAL_RX_FIFO - s->rx_count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;
	bool irq;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < SERIAL_RX_FIFO)
		rx_push(s, buf[n++]);
	irq = n && (s->ier & IER_RDI);
	pthread_mutex_unlock(&s->lock);
	pulse_if(s, irq);
	return n;
}

static void serial_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	struct serial *s = opaque;
	uint8_t v = 0;
	bool drained = false;

	memset(data, 0, size);
	pthread_mutex_lock(&s->lock);
	switch (off) {
	case RBR_THR:
		if (s->lcr & LCR_DLAB) {
			v = s->dll;
		} else if (s->rx_count) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO;
			drained = --s->rx_count == 0;
		}
		break;
	case IER:
		v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case IIR_FCR:
		v = iir(s);
		if ((v & 0x0f) == IIR_THRI)
			s->thre_pending = false; /* reading IIR acknowledges THRE */
		break;
	case LCR:
		v = s->lcr;
		break;
	case MCR:
		v = s->mcr;
		break;
	case LSR:
		v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
		break;
	case MSR:
		if (s->mcr & MCR_LOOP) /* loopback: modem outputs feed the inputs */
			v = (uint8_t)(((s->mcr & 0x02) << 3) | ((s->mcr & 0x01) << 5) |
			              ((s->mcr & 0x04) << 4) | ((s->mcr & 0x08) << 4));
		else
			v = MSR_DEFAULT;
		break;
	case SCR:
		v = s->scr;
		break;
	}
	pthread_mutex_unlock(&s->lock);
	data[0] = v;
	if (drained && s->rx_drained)
		s->rx_drained(s->rx_ctx);
}

/* Transmit `len` bytes written to THR; called with the lock held. Returns whether to pulse. */
static bool transmit(struct serial *s, const uint8_t *buf, size_t len)
{
	if (s->mcr & MCR_LOOP) {
		for (size_t i = 0; i < len; i++)
			rx_push(s, buf[i]);
		return (s->ier & IER_RDI) != 0;
	}
	console_write(s->console, buf, len);
	s->tx_bytes += len;
	s->thre_pending = true; /* the byte left at once: THR is empty again */
	return (s->ier & IER_THRI) != 0;
}

static void serial_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	struct serial *s = opaque;
	uint8_t v = data[0];
	bool irq = false;

	(void)size;
	pthread_mutex_lock(&s->lock);
	switch (off) {
	case RBR_THR:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			irq = transmit(s, &v, 1);
		break;
	case IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
		} else {
			/* Enabling THRE interrupts with an empty THR raises one at once. */
			if ((v & IER_THRI) && !(s->ier & IER_THRI)) {
				s->thre_pending = true;
				irq = true;
			}
			s->ier = v & 0x0f;
			irq |= (s->ier & IER_RDI) && s->rx_count;
		}
		break;
	case IIR_FCR:
		s->fcr = v;
		if (v & FCR_CLEAR_RX)
			s->rx_count = 0;
		break;
	case LCR:
		s->lcr = v;
		break;
	case MCR:
		s->mcr = v & 0x1f;
		break;
	case SCR:
		s->scr = v;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
	pthread_mutex_unlock(&s->lock);
	pulse_if(s, irq);
}

/* `rep outsb` to THR: one console write for the whole string (one KVM exit carries it). */
static void serial_write_rep(void *opaque, uint64_t off, const uint8_t *data, uint32_t size,
                             uint32_t count)
{
	struct serial *s = opaque;
	bool irq;

	if (off != RBR_THR || size != 1) {
		for (uint32_t i = 0; i < count; i++)
			serial_write(opaque, off, data + (size_t)i * size, size);
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (s->lcr & LCR_DLAB) {
		s->dll = data[count - 1];
		irq = false;
	} else {
		irq = transmit(s, data, count);
	}
	pthread_mutex_unlock(&s->lock);
	pulse_if(s, irq);
}

/* ---- snapshots -------------------------------------------------------------------------- */

#define TAG_UART SNAP_TAG('U', 'A', 'R', 'T')

int serial_save(const struct serial *s, struct snap_w *w)
{
	struct serial *u = (struct serial *)s; /* the lock only */
	size_t at;

	pthread_mutex_lock(&u->lock);
	at = snap_begin(w, TAG_UART);
	snap_u8(w, s->ier);
	snap_u8(w, s->lcr);
	snap_u8(w, s->mcr);
	snap_u8(w, s->scr);
	snap_u8(w, s->dll);
	snap_u8(w, s->dlm);
	snap_u8(w, s->fcr);
	snap_bool(w, s->thre_pending);
	/* The FIFO in order, oldest byte first. */
	snap_u8(w, (uint8_t)s->rx_count);
	for (unsigned i = 0; i < s->rx_count; i++)
		snap_u8(w, s->rx[(s->rx_head + i) % SERIAL_RX_FIFO]);
	snap_end(w, at);
	pthread_mutex_unlock(&u->lock);
	return w->failed ? -1 : 0;
}

int serial_restore(struct serial *s, struct snap_r *r, struct error *err)
{
	struct snap_r sec;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr, count, rx[SERIAL_RX_FIFO];
	bool thre;

	if (snap_section(r, TAG_UART, &sec, err))
		return -1;
	/* LCR, SCR, the divisor latch and FCR hold any byte the guest wrote; IER keeps 4 bits,
	 * MCR 5 (serial_write). */
	if (!snap_get_u8(&sec, &ier) || ier & ~0x0f)
		return snap_bad(&sec, err, "IER");
	if (!snap_get_u8(&sec, &lcr))
		return snap_bad(&sec, err, "LCR");
	if (!snap_get_u8(&sec, &mcr) || mcr & ~0x1f)
		return snap_bad(&sec, err, "MCR");
	if (!snap_get_u8(&sec, &scr))
		return snap_bad(&sec, err, "SCR");
	if (!snap_get_u8(&sec, &dll) || !snap_get_u8(&sec, &dlm))
		return snap_bad(&sec, err, "divisor latch");
	if (!snap_get_u8(&sec, &fcr))
		return snap_bad(&sec, err, "FCR");
	if (!snap_get_bool(&sec, &thre))
		return snap_bad(&sec, err, "THRE interrupt");
	if (!snap_get_u8(&sec, &count) || count > SERIAL_RX_FIFO ||
	    !snap_get_bytes(&sec, rx, count))
		return snap_bad(&sec, err, "receive FIFO");
	if (snap_section_done(&sec, err))
		return -1;
	pthread_mutex_lock(&s->lock);
	s->ier = ier;
	s->lcr = lcr;
	s->mcr = mcr;
	s->scr = scr;
	s->dll = dll;
	s->dlm = dlm;
	s->fcr = fcr;
	s->thre_pending = thre;
	memcpy(s->rx, rx, count);
	s->rx_head = 0;
	s->rx_count = count;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

const struct bus_ops serial_bus_ops = {
    .read = serial_read,
    .write = serial_write,
    .write_rep = serial_write_rep,
};
