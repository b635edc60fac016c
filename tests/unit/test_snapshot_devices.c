/*
 * Device snapshots (the *_save / *_restore of devices/ and virtio/, snapshot/devices.c).
 * Each device's section round-trips: save, restore into a freshly initialised device, save
 * again gives the same bytes, and the restored device goes on where the saved one was.
 * Damaged sections (a bad field, a short one, bytes left over) fail with the field's name and
 * leave the device as it was (or, for virtio-net, holding nothing). Device writes to guest
 * memory through the queue layer are marked dirty.
 *
 * The legacy devices and the transport are driven through their bus ops; whole VMs (drive,
 * virtio-console) are built by a null backend as in test_null_backend.c; virtio-net runs on a
 * fake TAP (a SOCK_SEQPACKET socketpair) as in test_virtio_net.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "irqchip/userspace.h"
#include "snapshot/devices.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "vmm/layout.h"
#include "vmm/vm.h"

#define SEC       12 /* a section's fields start after its tag (4) and length (8) */
#define VERSION_1 (1ULL << VIRTIO_F_VERSION_1)
#define S_ALL                                                                                      \
	(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |      \
	 VIRTIO_CONFIG_S_DRIVER_OK)

/* ---- helpers ---------------------------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void expect_error(int r, const struct error *err, const char *needle)
{
	assert_int_equal(r, -1);
	if (!strstr(err->msg, needle))
		fail_msg("error \"%s\" does not say \"%s\"", err->msg, needle);
}

/* A copy of `w`'s bytes with `n` bytes at `off` set to `v`. */
static uint8_t *patched(const struct snap_w *w, size_t off, uint64_t v, unsigned n)
{
	uint8_t *p = malloc(w->len);

	assert_non_null(p);
	memcpy(p, w->buf, w->len);
	assert_true(off + n <= w->len);
	put_le(p + off, v, n);
	return p;
}

/* Restore one device's section (starting at buf) into a fresh device. */
typedef int (*restore_fresh_fn)(const uint8_t *buf, size_t len, struct error *err);

/* Every shortening of a one-section save fails, whether the section's length says so or the
 * file simply ends; so does a section with a byte too many. */
static void check_truncations(const struct snap_w *w, restore_fresh_fn fn)
{
	size_t body = w->len - SEC;
	uint8_t *p = malloc(w->len + 1);
	struct error err;

	assert_non_null(p);
	assert_int_equal(get_le(w->buf + 4, 8), body);
	for (size_t k = 0; k < body; k++) {
		memcpy(p, w->buf, w->len);
		put_le(p + 4, k, 8);
		expect_error(fn(p, SEC + k, &err), &err, "snapshot: section");
		expect_error(fn(w->buf, SEC + k, &err), &err, "snapshot: section");
	}
	memcpy(p, w->buf, w->len);
	p[w->len] = 0;
	put_le(p + 4, body + 1, 8);
	expect_error(fn(p, w->len + 1, &err), &err, "bytes more than this version reads");
	expect_error(fn(w->buf, 3, &err), &err, "ends early");
	free(p);
}

/* ---- UART ------------------------------------------------------------------------------- */

static void pio_w(const struct bus_ops *ops, void *dev, uint64_t off, uint8_t v)
{
	ops->write(dev, off, &v, 1);
}

static uint8_t pio_r(const struct bus_ops *ops, void *dev, uint64_t off)
{
	uint8_t v;

	ops->read(dev, off, &v, 1);
	return v;
}

/* A UART as a driver leaves it: 8N1 at 115200, interrupts on, a wrapped full FIFO. */
static void uart_busy(struct serial *s)
{
	uint8_t in[64];

	for (unsigned i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(0x30 + i);
	pio_w(&serial_bus_ops, s, 3, 0x80); /* DLAB */
	pio_w(&serial_bus_ops, s, 0, 0x01);
	pio_w(&serial_bus_ops, s, 1, 0x00);
	pio_w(&serial_bus_ops, s, 3, 0x03);
	pio_w(&serial_bus_ops, s, 2, 0xc1); /* FIFO on */
	pio_w(&serial_bus_ops, s, 1, 0x03); /* RDI | THRI: a THRE interrupt is pending */
	pio_w(&serial_bus_ops, s, 4, 0x0b);
	pio_w(&serial_bus_ops, s, 7, 0x5a);
	assert_int_equal(serial_receive(s, in, 40), 40);
	for (int i = 0; i < 30; i++)
		pio_r(&serial_bus_ops, s, 0);
	assert_int_equal(serial_receive(s, in + 40, 24), 24);
	assert_int_equal(serial_rx_space(s), 64 - 34);
}

static int uart_fresh(const uint8_t *buf, size_t len, struct error *err)
{
	struct serial s;
	struct snap_r r;

	serial_init(&s, NULL);
	snap_r_init(&r, buf, len);
	return serial_restore(&s, &r, err);
}

static void test_uart_round_trip(void **state)
{
	struct serial a, b;
	struct snap_w w1, w2;
	struct snap_r r;
	struct error err;

	(void)state;
	serial_init(&a, NULL);
	uart_busy(&a);
	snap_w_init(&w1);
	snap_w_init(&w2);
	assert_int_equal(serial_save(&a, &w1), 0);
	serial_init(&b, NULL);
	snap_r_init(&r, w1.buf, w1.len);
	assert_int_equal(serial_restore(&b, &r, &err), 0);
	assert_int_equal(snap_left(&r), 0);
	assert_int_equal(serial_save(&b, &w2), 0);
	assert_int_equal(w1.len, w2.len);
	assert_memory_equal(w1.buf, w2.buf, w1.len);
	/* What the guest reads is the same, byte for byte: registers, then the FIFO in order. */
	for (uint64_t off = 1; off < 8; off++)
		assert_int_equal(pio_r(&serial_bus_ops, &a, off), pio_r(&serial_bus_ops, &b, off));
	for (int i = 0; i < 34; i++)
		assert_int_equal(pio_r(&serial_bus_ops, &a, 0), pio_r(&serial_bus_ops, &b, 0));
	assert_int_equal(pio_r(&serial_bus_ops, &b, 5) & 0x01, 0); /* FIFO empty */
	check_truncations(&w1, uart_fresh);
	snap_w_free(&w1);
	snap_w_free(&w2);
}

static void test_uart_bad_fields(void **state)
{
	static const struct {
		size_t off;
		uint64_t v;
		const char *field;
	} bad[] = {
	    {SEC + 0, 0x10, "IER"},          {SEC + 2, 0x20, "MCR"},
	    {SEC + 7, 2, "THRE interrupt"},  {SEC + 8, 65, "receive FIFO"},
	    {SEC + 8, 0xff, "receive FIFO"}, {0, 0x41414141, "UART expected, found AAAA"},
	};
	struct serial a, b;
	struct snap_w w;
	struct error err;

	(void)state;
	serial_init(&a, NULL);
	uart_busy(&a);
	snap_w_init(&w);
	assert_int_equal(serial_save(&a, &w), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *p = patched(&w, bad[i].off, bad[i].v, 1);
		struct snap_r r;

		if (bad[i].off == 0)
			put_le(p, bad[i].v, 4);
		serial_init(&b, NULL);
		snap_r_init(&r, p, w.len);
		expect_error(serial_restore(&b, &r, &err), &err, bad[i].field);
		/* Untouched: as serial_init left it. */
		assert_int_equal(b.ier, 0);
		assert_int_equal(b.mcr, 0x08);
		assert_int_equal(b.rx_count, 0);
		free(p);
	}
	snap_w_free(&w);
}

/* ---- CMOS ------------------------------------------------------------------------------- */

static int cmos_fresh(const uint8_t *buf, size_t len, struct error *err)
{
	struct rtc_cmos c;
	struct snap_r r;

	rtc_cmos_init(&c);
	snap_r_init(&r, buf, len);
	return rtc_cmos_restore(&c, &r, err);
}

static void test_cmos_round_trip_and_bad_fields(void **state)
{
	struct rtc_cmos a, b;
	struct snap_w w1, w2;
	struct snap_r r;
	struct error err;
	uint8_t *p;

	(void)state;
	rtc_cmos_init(&a);
	pio_w(&rtc_cmos_bus_ops, &a, 0, 0x40);
	pio_w(&rtc_cmos_bus_ops, &a, 1, 0x99);
	pio_w(&rtc_cmos_bus_ops, &a, 0, 0x0e);
	pio_w(&rtc_cmos_bus_ops, &a, 1, 0x11);
	pio_w(&rtc_cmos_bus_ops, &a, 0, 0x00);
	pio_w(&rtc_cmos_bus_ops, &a, 1, 0x77); /* the seconds: not stored */
	pio_w(&rtc_cmos_bus_ops, &a, 0, 0x8f); /* NMI masked, index 0x0f */
	snap_w_init(&w1);
	snap_w_init(&w2);
	assert_int_equal(rtc_cmos_save(&a, &w1), 0);
	rtc_cmos_init(&b);
	snap_r_init(&r, w1.buf, w1.len);
	assert_int_equal(rtc_cmos_restore(&b, &r, &err), 0);
	assert_int_equal(rtc_cmos_save(&b, &w2), 0);
	assert_int_equal(w1.len, w2.len);
	assert_memory_equal(w1.buf, w2.buf, w1.len);
	assert_int_equal(pio_r(&rtc_cmos_bus_ops, &b, 0), 0x0f);
	pio_w(&rtc_cmos_bus_ops, &b, 0, 0x40);
	assert_int_equal(pio_r(&rtc_cmos_bus_ops, &b, 1), 0x99);
	pio_w(&rtc_cmos_bus_ops, &b, 0, 0x0b);
	assert_int_equal(pio_r(&rtc_cmos_bus_ops, &b, 1), 0x02); /* register B: still the clock's */
	check_truncations(&w1, cmos_fresh);

	p = patched(&w1, SEC, 0x80, 1);
	expect_error(cmos_fresh(p, w1.len, &err), &err, "bad or missing index");
	free(p);
	/* RAM behind the clock registers (seconds, register D, century) is never written. */
	for (unsigned reg = 0; reg < 128; reg++) {
		if (reg > 0x0d && reg != 0x32)
			continue;
		p = patched(&w1, SEC + 1 + reg, 1, 1);
		expect_error(cmos_fresh(p, w1.len, &err), &err, "RAM (a clock register)");
		free(p);
	}
	snap_w_free(&w1);
	snap_w_free(&w2);
}

/* ---- i8042 ------------------------------------------------------------------------------ */

static int i8042_fresh(const uint8_t *buf, size_t len, struct error *err)
{
	struct i8042 k;
	struct snap_r r;

	i8042_init(&k, NULL, NULL, NULL);
	snap_r_init(&r, buf, len);
	return i8042_restore(&k, &r, err);
}

static void test_i8042_round_trip_and_bad_fields(void **state)
{
	static const struct {
		size_t off;
		uint8_t v;
		const char *field;
	} bad[] = {
	    {SEC + 1, 0x61, "pending controller command"},
	    {SEC + 1, 0xfe, "pending controller command"},
	    {SEC + 2, 0x01, "pending keyboard command"},
	    {SEC + 3, 17, "output queue"},
	};
	struct i8042 a, b;
	struct snap_w w1, w2;
	struct snap_r r;
	struct error err;

	(void)state;
	i8042_init(&a, NULL, NULL, NULL);
	pio_w(&i8042_cmd_bus_ops, &a, 0, 0x60); /* write the command byte: 0x47 */
	pio_w(&i8042_data_bus_ops, &a, 0, 0x47);
	for (int i = 0; i < 3; i++) {
		pio_w(&i8042_cmd_bus_ops, &a, 0, 0xaa);  /* self test: 0x55 */
		pio_w(&i8042_data_bus_ops, &a, 0, 0xf2); /* identify: fa ab 83 */
	}
	for (int i = 0; i < 10; i++)
		pio_r(&i8042_data_bus_ops, &a, 0);
	i8042_send_ctrl_alt_del(&a);             /* wraps the queue */
	pio_w(&i8042_data_bus_ops, &a, 0, 0xed); /* LEDs: the data byte is pending */
	pio_w(&i8042_cmd_bus_ops, &a, 0, 0xd1);  /* write output port: pending */
	assert_int_equal(a.pending_kbd, 0xed);
	assert_int_equal(a.pending_cmd, 0xd1);
	assert_true(a.head + a.count > I8042_BUF);
	snap_w_init(&w1);
	snap_w_init(&w2);
	assert_int_equal(i8042_save(&a, &w1), 0);
	i8042_init(&b, NULL, NULL, NULL);
	snap_r_init(&r, w1.buf, w1.len);
	assert_int_equal(i8042_restore(&b, &r, &err), 0);
	assert_int_equal(i8042_save(&b, &w2), 0);
	assert_int_equal(w1.len, w2.len);
	assert_memory_equal(w1.buf, w2.buf, w1.len);
	assert_int_equal(b.ctr, 0x47);
	while (a.count)
		assert_int_equal(pio_r(&i8042_data_bus_ops, &a, 0),
		                 pio_r(&i8042_data_bus_ops, &b, 0));
	assert_int_equal(b.count, 0);
	check_truncations(&w1, i8042_fresh);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *p = patched(&w1, bad[i].off, bad[i].v, 1);

		expect_error(i8042_fresh(p, w1.len, &err), &err, bad[i].field);
		free(p);
	}
	snap_w_free(&w1);
	snap_w_free(&w2);
}

/* ---- the virtio-mmio transport ------------------------------------------------------------ */

#define T_RAM   (1u << 20)
#define T_QMAX  64
#define T_OFFER ((1ULL << 0) | (1ULL << 5) | (1ULL << 35))

/* Offsets in section VMIO. */
enum {
	V_ID = SEC,
	V_NQ = V_ID + 4,
	V_OFFER = V_NQ + 4,
	V_STATUS = V_OFFER + 8,
	V_DSEL = V_STATUS + 4,
	V_DRSEL = V_DSEL + 4,
	V_QSEL = V_DRSEL + 4,
	V_DRIVER = V_QSEL + 4,
	V_ISR = V_DRIVER + 8,
	V_GEN = V_ISR + 4,
	V_Q0 = V_GEN + 4,
	VQ_LEN =
	    32, /* size 2, ready 1, desc 8, avail 8, used 8, last_avail 2, used_idx 2, broken 1 */
	Q_SIZE = 0,
	Q_READY = 2,
	Q_DESC = 3,
	Q_AVAIL = 11,
	Q_USED = 19,
	Q_LAST = 27,
	Q_USED_IDX = 29,
	Q_BROKEN = 31,
};

static const struct virtio_dev_ops no_ops;

struct tfix {
	uint8_t *mem;
	struct guest_memory gm;
	struct virtio_mmio t;
};

static void tfix_init(struct tfix *f, uint8_t *mem)
{
	f->mem = mem;
	gm_wrap(&f->gm, mem, T_RAM);
	assert_int_equal(virtio_mmio_init(&f->t, "fake0", 42, T_OFFER, 0, 2, T_QMAX, &no_ops, NULL,
	                                  &f->gm, 0xd0000000, 5),
	                 0);
}

static void tfix_close(struct tfix *f)
{
	close(f->t.irq_fd);
	for (unsigned q = 0; q < f->t.nqueues; q++)
		close(f->t.notify_fd[q]);
}

static void reg_w(struct virtio_mmio *t, uint32_t off, uint32_t v)
{
	virtio_mmio_bus_ops.write(t, off, (uint8_t *)&v, 4);
}

static uint32_t reg_r(struct virtio_mmio *t, uint32_t off)
{
	uint32_t v;

	virtio_mmio_bus_ops.read(t, off, (uint8_t *)&v, 4);
	return v;
}

/* The driver's setup: features, queue `q` of `size` at desc/avail/used (ready if asked). */
static void setup_queue(struct virtio_mmio *t, unsigned q, uint32_t size, uint64_t desc,
                        uint64_t avail, uint64_t used, bool ready)
{
	reg_w(t, VIRTIO_MMIO_QUEUE_SEL, q);
	reg_w(t, VIRTIO_MMIO_QUEUE_NUM, size);
	reg_w(t, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	reg_w(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	reg_w(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	reg_w(t, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
	reg_w(t, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
	reg_w(t, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
	if (ready)
		reg_w(t, VIRTIO_MMIO_QUEUE_READY, 1);
}

static void negotiate(struct virtio_mmio *t, uint64_t features)
{
	reg_w(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	reg_w(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	reg_w(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	reg_w(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	reg_w(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	reg_w(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	reg_w(t, VIRTIO_MMIO_STATUS, S_ALL & ~VIRTIO_CONFIG_S_DRIVER_OK);
}

static uint64_t eventfd_count(int fd)
{
	uint64_t n = 0;

	if (read(fd, &n, sizeof(n)) < 0)
		assert_int_equal(errno, EAGAIN);
	return n;
}

/* One chain on a ready queue, taken and used: the indices move. */
static void one_request(struct tfix *f, unsigned q, uint64_t desc, uint64_t avail)
{
	struct vring_desc d = {.addr = 0x80000, .len = 64, .flags = VRING_DESC_F_WRITE};
	uint16_t idx = (uint16_t)(f->t.vq[q].last_avail + 1), head = 0;
	struct virtq_chain *c = malloc(sizeof(*c));

	assert_non_null(c);
	assert_int_equal(gm_write(&f->gm, desc, &d, sizeof(d)), 0);
	assert_int_equal(gm_write(&f->gm, avail + 4 + 2 * (f->t.vq[q].last_avail % 16), &head, 2),
	                 0);
	assert_int_equal(gm_write(&f->gm, avail + 2, &idx, 2), 0);
	pthread_mutex_lock(&f->t.lock);
	assert_true(virtio_mmio_pop(&f->t, q, c));
	assert_int_equal(virtq_push(&f->t.vq[q], &f->gm, c->head, 8), 0);
	virtio_mmio_signal_used(&f->t, q);
	pthread_mutex_unlock(&f->t.lock);
	free(c);
}

/* A transport in use: queue 0 ready and used three times, queue 1 set up but not ready, a
 * pending interrupt, a bumped config generation, odd selectors. */
static void transport_busy(struct tfix *f)
{
	negotiate(&f->t, VERSION_1 | (1ULL << 5));
	setup_queue(&f->t, 0, 16, 0x1000, 0x2000, 0x3000, true);
	setup_queue(&f->t, 1, 8, 0x5000, 0x6000, 0x7000, false);
	reg_w(&f->t, VIRTIO_MMIO_STATUS, S_ALL);
	for (int i = 0; i < 3; i++)
		one_request(f, 0, 0x1000, 0x2000);
	pthread_mutex_lock(&f->t.lock);
	virtio_mmio_config_changed(&f->t);
	pthread_mutex_unlock(&f->t.lock);
	reg_w(&f->t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
	reg_w(&f->t, VIRTIO_MMIO_QUEUE_SEL, 9);
	assert_int_equal(reg_r(&f->t, VIRTIO_MMIO_INTERRUPT_STATUS), 3);
	eventfd_count(f->t.irq_fd);
	eventfd_count(f->t.notify_fd[0]);
}

static void test_transport_round_trip(void **state)
{
	uint8_t *mem = calloc(1, T_RAM);
	struct tfix a, b;
	struct snap_w w1, w2;
	struct snap_r r;
	struct error err;

	(void)state;
	assert_non_null(mem);
	tfix_init(&a, mem);
	transport_busy(&a);
	snap_w_init(&w1);
	snap_w_init(&w2);
	assert_int_equal(virtio_mmio_save(&a.t, &w1), 0);
	assert_int_equal(w1.len, (size_t)V_Q0 + 2 * VQ_LEN);
	tfix_init(&b, mem);
	snap_r_init(&r, w1.buf, w1.len);
	assert_int_equal(virtio_mmio_restore(&b.t, &r, &err), 0);
	assert_int_equal(virtio_mmio_save(&b.t, &w2), 0);
	assert_int_equal(w1.len, w2.len);
	assert_memory_equal(w1.buf, w2.buf, w1.len);
	assert_int_equal(reg_r(&b.t, VIRTIO_MMIO_STATUS), S_ALL);
	assert_int_equal(reg_r(&b.t, VIRTIO_MMIO_CONFIG_GENERATION), 1);
	assert_int_equal(b.t.vq[0].last_avail, 3);
	assert_int_equal(b.t.vq[0].used_idx, 3);
	/* A notification and an interrupt still in their eventfds at save time are not lost:
	 * the ready queue is notified once, the pending interrupt raised again. */
	assert_int_equal(eventfd_count(b.t.notify_fd[0]), 1);
	assert_int_equal(eventfd_count(b.t.notify_fd[1]), 0);
	assert_int_equal(eventfd_count(b.t.irq_fd), 1);
	/* The restored queue goes on at the next ring entry. */
	one_request(&b, 0, 0x1000, 0x2000);
	assert_int_equal(b.t.vq[0].used_idx, 4);
	snap_w_free(&w1);
	snap_w_free(&w2);
	tfix_close(&a);
	tfix_close(&b);
	free(mem);
}

static void test_transport_bad_fields(void **state)
{
	static const struct {
		size_t off;
		uint64_t v;
		unsigned n;
		const char *field;
	} bad[] = {
	    {V_ID, 43, 4, "device type"},
	    {V_NQ, 3, 4, "queue count"},
	    {V_OFFER, T_OFFER | VERSION_1 | 2, 8,
	     "fake0 offered other features when it was saved (0x900000023) than now"},
	    {V_STATUS, 0x10f, 4, "status or driver features"},
	    /* DRIVER_OK without FEATURES_OK */
	    {V_STATUS, 0x07, 4, "status or driver features"},
	    /* features the device does not offer, or no VERSION_1, with FEATURES_OK */
	    {V_DRIVER, VERSION_1 | 2, 8, "status or driver features"},
	    {V_DRIVER, 1, 8, "status or driver features"},
	    {V_ISR, 4, 4, "interrupt status"},
	    {V_Q0 + Q_SIZE, 3, 2, "queue 0 size"},
	    {V_Q0 + Q_SIZE, 128, 2, "queue 0 size"},
	    {V_Q0 + Q_READY, 2, 1, "queue 0 ready"},
	    /* a ready queue's rings: outside RAM, misaligned, overlapping the end of RAM */
	    {V_Q0 + Q_DESC, 0x100000000ULL, 8, "queue 0 ring addresses"},
	    {V_Q0 + Q_AVAIL, 0x2001, 8, "queue 0 ring addresses"},
	    {V_Q0 + Q_USED, T_RAM - 8, 8, "queue 0 ring addresses"},
	    /* more chains in flight than the ring holds */
	    {V_Q0 + Q_LAST, 20, 2, "queue 0 indices"},
	    {V_Q0 + Q_USED_IDX, 0xfff0, 2, "queue 0 indices"},
	    {V_Q0 + VQ_LEN + Q_SIZE, 256, 2, "queue 1 size"},
	    {V_Q0 + VQ_LEN + Q_BROKEN, 7, 1, "queue 1 broken flag"},
	};
	uint8_t *mem = calloc(1, T_RAM);
	struct tfix a, b;
	struct snap_w w;
	struct error err;

	(void)state;
	assert_non_null(mem);
	tfix_init(&a, mem);
	transport_busy(&a);
	snap_w_init(&w);
	assert_int_equal(virtio_mmio_save(&a.t, &w), 0);
	tfix_init(&b, mem);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *p = patched(&w, bad[i].off, bad[i].v, bad[i].n);
		struct snap_r r;

		snap_r_init(&r, p, w.len);
		expect_error(virtio_mmio_restore(&b.t, &r, &err), &err, bad[i].field);
		/* Nothing changed, nothing signalled. */
		assert_int_equal(b.t.status, 0);
		assert_false(b.t.vq[0].ready);
		assert_int_equal(b.t.vq[0].size, 0);
		assert_int_equal(eventfd_count(b.t.notify_fd[0]), 0);
		free(p);
	}
	/* Values the driver can write are not errors: any address on a queue that is not ready,
	 * any selector, a NEEDS_RESET or FAILED status. */
	{
		uint8_t *p = patched(&w, V_Q0 + VQ_LEN + Q_DESC, 0xfffffffffffffff0ULL, 8);
		struct snap_r r;

		put_le(p + V_DSEL, 0xffffffff, 4);
		put_le(p + V_STATUS, S_ALL | VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED,
		       4);
		snap_r_init(&r, p, w.len);
		assert_int_equal(virtio_mmio_restore(&b.t, &r, &err), 0);
		assert_false(virtio_mmio_running(&b.t));
		assert_int_equal(eventfd_count(b.t.notify_fd[0]), 0); /* not running: no notify */
		free(p);
	}
	snap_w_free(&w);
	tfix_close(&a);
	tfix_close(&b);
	free(mem);
}

/* ---- virtio-net on a fake TAP ------------------------------------------------------------ */

#define N_RAM   (4u << 20)
#define N_QSIZE 8
#define HDR     VIRTIO_NET_HDR_BYTES
#define RXQ     VIRTIO_NET_RXQ
#define TXQ     VIRTIO_NET_TXQ

static const uint64_t ring_gpa[2][3] = {{0x1000, 0x2000, 0x3000}, {0x4000, 0x5000, 0x6000}};
static const uint8_t test_mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};

/* The guest's side (rings, buffers) lives in guest memory shared by the saved and the
 * restored device, as a memory file would carry it. */
struct guest {
	uint8_t *mem;
	struct guest_memory gm;
	uint16_t next_desc[2], avail_idx[2], used_seen[2];
	unsigned next_buf;
};

struct netdev {
	struct virtio_mmio t;
	struct virtio_net n;
	int peer;
	uint32_t watched;
};

static void net_watch(void *ctx, int fd, uint64_t tag, uint32_t old_events, uint32_t new_events)
{
	struct netdev *d = ctx;

	assert_int_equal(fd, d->n.tap_fd);
	assert_int_equal(tag, 7);
	assert_int_equal(old_events, d->watched);
	d->watched = new_events;
}

/* A device as the VM build makes it: fresh, on its own (new) TAP. */
static void net_open(struct netdev *d, struct guest *g)
{
	struct virtio_mmio *t = &d->t;
	int sv[2];

	memset(d, 0, sizeof(*d));
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
	                 0);
	d->peer = sv[1];
	assert_int_equal(virtio_net_init(&d->n, sv[0], "faketap", test_mac, 1500), 0);
	virtio_net_set_watch(&d->n, net_watch, d, 7);
	assert_int_equal(virtio_mmio_init(t, "net0", VIRTIO_ID_NET, virtio_net_features(&d->n),
	                                  VIRTIO_NET_CONFIG_SIZE, VIRTIO_NET_QUEUES, N_QSIZE,
	                                  &virtio_net_ops, &d->n, &g->gm, 0xd0000000, 5),
	                 0);
	d->n.t = t;
}

static void net_close(struct netdev *d)
{
	virtio_net_close(&d->n);
	if (d->peer >= 0)
		close(d->peer);
	close(d->t.irq_fd);
	for (unsigned q = 0; q < d->t.nqueues; q++)
		close(d->t.notify_fd[q]);
}

static void net_driver_ok(struct netdev *d, uint64_t features)
{
	negotiate(&d->t, features | VERSION_1);
	for (unsigned q = 0; q < 2; q++)
		setup_queue(&d->t, q, N_QSIZE, ring_gpa[q][0], ring_gpa[q][1], ring_gpa[q][2],
		            true);
	reg_w(&d->t, VIRTIO_MMIO_STATUS, S_ALL);
	assert_true(d->n.active);
}

static uint64_t new_buf(struct guest *g)
{
	return 0x100000 + 0x10000ULL * g->next_buf++;
}

static uint16_t post(struct guest *g, unsigned q, uint64_t gpa, uint32_t len, bool device_writes)
{
	uint16_t head = g->next_desc[q], idx;
	struct vring_desc desc = {
	    .addr = gpa, .len = len, .flags = device_writes ? VRING_DESC_F_WRITE : 0};

	g->next_desc[q] = (uint16_t)((head + 1) % N_QSIZE);
	assert_int_equal(gm_write(&g->gm, ring_gpa[q][0] + 16ULL * head, &desc, 16), 0);
	assert_int_equal(
	    gm_write(&g->gm, ring_gpa[q][1] + 4 + 2ULL * (g->avail_idx[q] % N_QSIZE), &head, 2), 0);
	idx = ++g->avail_idx[q];
	assert_int_equal(gm_write(&g->gm, ring_gpa[q][1] + 2, &idx, 2), 0);
	return head;
}

static bool next_used(struct guest *g, unsigned q, uint32_t *id, uint32_t *len)
{
	struct vring_used_elem e;
	uint16_t idx;

	assert_int_equal(gm_read(&g->gm, ring_gpa[q][2] + 2, &idx, 2), 0);
	if (idx == g->used_seen[q])
		return false;
	assert_int_equal(
	    gm_read(&g->gm, ring_gpa[q][2] + 4 + 8ULL * (g->used_seen[q] % N_QSIZE), &e, sizeof(e)),
	    0);
	g->used_seen[q]++;
	*id = e.id;
	*len = e.len;
	return true;
}

static size_t make_frame(uint8_t *buf, size_t n, uint8_t seed)
{
	memset(buf, 0, HDR);
	for (size_t i = 0; i < n; i++)
		buf[HDR + i] = (uint8_t)(seed + i * 7);
	return HDR + n;
}

static void net_save(struct netdev *d, struct snap_w *w)
{
	snap_w_init(w);
	assert_int_equal(virtio_mmio_save(&d->t, w), 0);
	assert_int_equal(virtio_net_save(&d->n, w), 0);
}

static int net_restore(struct netdev *d, const uint8_t *p, size_t len, struct error *err)
{
	struct snap_r r;

	snap_r_init(&r, p, len);
	if (virtio_mmio_restore(&d->t, &r, err))
		return -1;
	return virtio_net_restore(&d->n, &r, err);
}

/* A device in the middle of things: MRG_RXBUF and offloads negotiated; a frame spread over
 * two receive chains, waiting for more; a transmit that would block. `frame` gets the
 * received frame, `out` the one waiting to be sent. */
static void net_busy(struct netdev *d, struct guest *g, uint8_t *frame, size_t *flen, uint8_t *out,
                     size_t *olen)
{
	int sndbuf = 1;
	uint32_t id, len;

	net_driver_ok(d, (1ULL << VIRTIO_NET_F_MRG_RXBUF) | (1ULL << VIRTIO_NET_F_GUEST_CSUM) |
	                     (1ULL << VIRTIO_NET_F_GUEST_TSO4));
	post(g, RXQ, new_buf(g), 100, true);
	virtio_mmio_handle_notify(&d->t, RXQ); /* the chain is held for the next frame */
	assert_true(d->n.rx_held);
	*flen = make_frame(frame, 300, 9);
	assert_int_equal(write(d->peer, frame, *flen), (ssize_t)*flen);
	virtio_net_tap_event(&d->n, EPOLLIN);
	post(g, RXQ, new_buf(g), 50, true);
	virtio_mmio_handle_notify(&d->t, RXQ);
	assert_int_equal(d->n.rx_nused, 2);
	assert_int_equal(d->n.rx_tail_off, 50);
	assert_false(next_used(g, RXQ, &id, &len));

	assert_int_equal(setsockopt(d->n.tap_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)),
	                 0);
	for (uint8_t k = 0; !d->n.tx_pending; k++) {
		uint64_t gpa = new_buf(g);

		assert_true(k < 200);
		*olen = make_frame(out, 1400, k);
		assert_int_equal(gm_write(&g->gm, gpa, out, *olen), 0);
		post(g, TXQ, gpa, (uint32_t)*olen, false);
		virtio_mmio_handle_notify(&d->t, TXQ);
		while (next_used(g, TXQ, &id, &len))
			;
	}
	assert_int_equal(d->watched, EPOLLOUT);
}

static void test_net_round_trip_goes_on(void **state)
{
	struct guest g = {0};
	struct netdev *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	uint8_t frame[400], out[1500], got[2000];
	size_t flen, olen, at = 0;
	struct snap_w w1, w2;
	struct error err;
	uint32_t id, len;
	uint64_t gpa[3] = {0x100000, 0x110000, 0};

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	g.mem = calloc(1, N_RAM);
	assert_non_null(g.mem);
	gm_wrap(&g.gm, g.mem, N_RAM);
	net_open(a, &g);
	net_busy(a, &g, frame, &flen, out, &olen);
	net_save(a, &w1);

	/* A fresh device on another TAP takes the state: same bytes when saved again. */
	net_open(b, &g);
	assert_int_equal(net_restore(b, w1.buf, w1.len, &err), 0);
	net_save(b, &w2);
	assert_int_equal(w1.len, w2.len);
	assert_memory_equal(w1.buf, w2.buf, w1.len);
	net_close(a);

	/* Armed as DRIVER_OK arms it: features taken, offloads still to mirror onto the new TAP
	 * (from the VMM thread, on queue 0's notify), nothing watched yet. */
	assert_true(b->n.active);
	assert_true(b->n.mrg);
	assert_int_equal(b->n.offloads_wanted, TUN_F_CSUM | TUN_F_TSO4);
	assert_int_equal(b->n.offloads, 0);
	assert_int_equal(b->watched, 0);
	assert_true(eventfd_count(b->t.notify_fd[RXQ]) >= 1);
	/* One more buffer: the spread frame completes, with the bytes carried by the state. */
	gpa[2] = new_buf(&g);
	post(&g, RXQ, gpa[2], 200, true);
	post(&g, RXQ, new_buf(&g), 200, true); /* held for the next frame: the TAP is read */
	virtio_mmio_handle_notify(&b->t, RXQ);
	assert_int_equal(b->n.offloads, TUN_F_CSUM | TUN_F_TSO4);
	assert_int_equal(b->watched, EPOLLIN | EPOLLOUT);
	for (int i = 0; i < 3; i++) {
		assert_true(next_used(&g, RXQ, &id, &len));
		assert_int_equal(id, i);
		assert_int_equal(len, i == 0 ? 100 : i == 1 ? 50 : flen - 150);
		assert_int_equal(gm_read(&g.gm, gpa[i], got + at, len), 0);
		at += len;
	}
	assert_int_equal(at, flen);
	assert_int_equal(got[10] | got[11] << 8, 3); /* num_buffers */
	got[10] = got[11] = 0;
	assert_memory_equal(got, frame, flen);
	/* The transmit that would have blocked leaves on the new TAP once it is writable. */
	virtio_net_tap_event(&b->n, EPOLLOUT);
	assert_false(b->n.tx_pending);
	assert_int_equal(read(b->peer, got, sizeof(got)), (ssize_t)olen);
	assert_memory_equal(got, out, olen);
	assert_true(next_used(&g, TXQ, &id, &len));
	net_close(b);
	snap_w_free(&w1);
	snap_w_free(&w2);
	free(g.mem);
	free(a);
	free(b);
}

static void test_net_link_comes_back_on_a_new_tap(void **state)
{
	struct guest g = {0};
	struct netdev *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct snap_w w;
	struct error err;
	uint8_t cfg[VIRTIO_NET_CONFIG_SIZE];

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	g.mem = calloc(1, N_RAM);
	assert_non_null(g.mem);
	gm_wrap(&g.gm, g.mem, N_RAM);
	net_open(a, &g);
	net_driver_ok(a, 0);
	close(a->peer); /* the TAP goes away: link down */
	a->peer = -1;
	virtio_net_tap_event(&a->n, EPOLLHUP);
	assert_true(a->n.tap_failed);
	assert_int_equal(a->n.config.status, 0);
	net_save(a, &w);
	net_open(b, &g);
	eventfd_count(b->t.irq_fd);
	assert_int_equal(net_restore(b, w.buf, w.len, &err), 0);
	for (uint32_t off = 0; off < sizeof(cfg); off++)
		virtio_net_ops.config_read(&b->t, off, &cfg[off], 1);
	assert_memory_equal(cfg, test_mac, 6);
	assert_int_equal(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
	assert_int_equal(cfg[10] | cfg[11] << 8, 1500);
	/* The guest hears about it: a new config generation and a config interrupt. */
	assert_int_equal(b->t.config_generation, a->t.config_generation + 1);
	assert_true(b->t.interrupt_status & VIRTIO_MMIO_INT_CONFIG);
	assert_true(eventfd_count(b->t.irq_fd) >= 1);
	assert_false(b->n.tap_failed);
	net_close(a);
	net_close(b);
	snap_w_free(&w);
	free(g.mem);
	free(a);
	free(b);
}

static void test_net_bad_fields(void **state)
{
	struct guest g = {0};
	struct netdev *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	uint8_t frame[400], out[1500];
	size_t flen, olen, vnet;
	struct snap_w idle, busy;
	struct error err;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	g.mem = calloc(1, N_RAM);
	assert_non_null(g.mem);
	gm_wrap(&g.gm, g.mem, N_RAM);

	/* An idle device: VMIO, then VNET at `vnet`: mac 6, mtu 2, link 1, rx 1, tx 1. */
	net_open(a, &g);
	net_driver_ok(a, 0);
	net_save(a, &idle);
	vnet = idle.len - (SEC + 11);
	{
		static const struct {
			size_t off;
			uint64_t v;
			unsigned n;
			const char *field;
		} bad[] = {
		    {SEC + 5, 0x56, 1, "MAC 02:11:22:33:44:56 in the state"},
		    {SEC + 6, 67, 2, "bad or missing MTU"},
		    {SEC + 8, 2, 1, "link status"},
		    {SEC + 9, 3, 1, "receive state"},
		    {SEC + 9, 1, 1, "receive chain head"}, /* a held chain that is not there */
		    {SEC + 10, 1, 1, "transmit chain head"},
		    {SEC + 10, 2, 1, "transmit state"},
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			uint8_t *p = patched(&idle, vnet + bad[i].off, bad[i].v, bad[i].n);

			net_open(b, &g);
			expect_error(net_restore(b, p, idle.len, &err), &err, bad[i].field);
			net_close(b);
			free(p);
		}
	}
	/* Held chains on a device that is not DRIVER_OK. */
	{
		uint8_t *p = patched(&idle, vnet + SEC + 9, 1, 1);

		put_le(p + V_STATUS, S_ALL & ~VIRTIO_CONFIG_S_DRIVER_OK, 4);
		net_open(b, &g);
		expect_error(net_restore(b, p, idle.len, &err), &err, "receive state");
		net_close(b);
		free(p);
	}
	net_close(a);
	free(g.mem);

	/* A busy device: VNET holds a receive chain of one buffer at vnet + SEC + 10. */
	memset(&g, 0, sizeof(g));
	g.mem = calloc(1, N_RAM);
	assert_non_null(g.mem);
	gm_wrap(&g.gm, g.mem, N_RAM);
	net_open(a, &g);
	net_busy(a, &g, frame, &flen, out, &olen);
	net_save(a, &busy);
	vnet = (size_t)V_Q0 + 2 * VQ_LEN;
	assert_int_equal(get_le(busy.buf + vnet, 4), SNAP_TAG('V', 'N', 'E', 'T'));
	{
		const size_t c = vnet + SEC + 10; /* the receive chain: head 2, count 2, buffers */
		const size_t f = c + 4 + 13; /* after it: chains used 2, then (head 2, len 4)s */
		static const struct {
			size_t off;
			uint64_t v;
			unsigned n;
			const char *field;
		} bad[] = {
		    {0, N_QSIZE, 2, "receive chain head"},
		    {2, 0, 2, "receive chain length"},
		    {2, VIRTQ_MAX_SEGS + 1, 2, "receive chain length"},
		    {4, N_RAM - 50, 8, "receive chain buffer"}, /* 50 bytes past the end of RAM */
		    {12, 1000, 4, "filled receive chain"}, /* in RAM, but not what was filled */
		    {16, 9, 1, "receive chain buffer"},    /* device_writes not a bool */
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			uint8_t *p = patched(&busy, c + bad[i].off, bad[i].v, bad[i].n);

			net_open(b, &g);
			expect_error(net_restore(b, p, busy.len, &err), &err, bad[i].field);
			assert_false(b->n.rx_held);
			assert_int_equal(b->n.rx_nused, 0);
			assert_false(b->n.tx_pending);
			net_close(b);
			free(p);
		}
		static const struct {
			size_t off;
			uint64_t v;
			unsigned n;
			const char *field;
		} frame_bad[] = {
		    {0, 0, 2, "receive chain count"},
		    {0, VIRTQ_MAX_SIZE + 1, 2, "receive chain count"},
		    {2, 5, 2, "filled receive chain"},       /* the first is not the held chain */
		    {4, 99, 4, "filled receive chain"},      /* nor its length */
		    {8, N_QSIZE, 2, "filled receive chain"}, /* head out of the ring */
		    {10, 0, 4, "filled receive chain"},      /* an empty chain is never kept */
		    {14, 1, 4, "held descriptor count"},
		    {18, 49, 4, "frame rest"}, /* placed so far != the chains' lengths */
		    {22, VIRTIO_NET_BOUNCE, 4, "frame rest"},
		};
		for (size_t i = 0; i < sizeof(frame_bad) / sizeof(frame_bad[0]); i++) {
			uint8_t *p =
			    patched(&busy, f + frame_bad[i].off, frame_bad[i].v, frame_bad[i].n);

			net_open(b, &g);
			expect_error(net_restore(b, p, busy.len, &err), &err, frame_bad[i].field);
			assert_int_equal(b->n.rx_nused, 0);
			net_close(b);
			free(p);
		}
	}
	/* The transport's indices must count exactly the chains the device holds. */
	{
		uint8_t *p = patched(&busy, V_Q0 + Q_LAST, a->t.vq[RXQ].last_avail + 1, 2);

		net_open(b, &g);
		expect_error(net_restore(b, p, busy.len, &err), &err, "chains in flight");
		net_close(b);
		free(p);
		p = patched(&busy, V_Q0 + VQ_LEN + Q_USED_IDX, a->t.vq[TXQ].last_avail, 2);
		net_open(b, &g);
		expect_error(net_restore(b, p, busy.len, &err), &err, "chains in flight");
		net_close(b);
		free(p);
	}
	/* A spread frame needs MRG_RXBUF. */
	{
		uint8_t *p = patched(&busy, V_DRIVER, VERSION_1, 8);

		net_open(b, &g);
		expect_error(net_restore(b, p, busy.len, &err), &err, "without MRG_RXBUF");
		net_close(b);
		free(p);
	}
	/* Every truncation of the busy state fails cleanly. */
	for (size_t k = 0; k < busy.len; k++) {
		net_open(b, &g);
		assert_int_equal(net_restore(b, busy.buf, k, &err), -1);
		net_close(b);
	}
	net_close(a);
	snap_w_free(&idle);
	snap_w_free(&busy);
	free(g.mem);
	free(a);
	free(b);
}

/* ---- whole VMs: drive, virtio-console, devices_save / devices_restore ------------------- */

static void null_probe(struct host_probe *p)
{
	memset(p, 0, sizeof(*p));
	p->usable = true;
}

static int null_open(struct vm *vm, struct error *err)
{
	(void)vm;
	(void)err;
	return 0;
}

static int null_create(struct vm *vm, struct error *err)
{
	struct uirq_config cfg = {.ncpus = vm->nvcpus};
	struct uirq *u;

	irqchip_host_clock(&cfg.clock, 1000000000ULL);
	u = uirq_create(&cfg);
	if (!u)
		return err_set(err, "uirq_create failed");
	vm->irqchip = uirq_irqchip(u);
	return 0;
}

static void null_destroy(struct vm *vm)
{
	(void)vm;
}

static const struct backend null_backend = {
    .name = "null",
    .probe = null_probe,
    .open = null_open,
    .create = null_create,
    .destroy = null_destroy,
};

static char tmpdir[] = "/tmp/hearth-snapdev-XXXXXX";
static char kernel_path[64];

/* A minimal ELF64 kernel: one PT_LOAD of a `hlt` at 1 MiB. */
static void write_kernel(const char *path)
{
	uint8_t img[0x1001] = {0};
	FILE *f = fopen(path, "wb");
	uint16_t h16[] = {2, 62};
	uint64_t entry = 0x100000, phoff = 64;
	uint32_t type = 1, flags = 5;
	uint64_t off = 0x1000, va = 0x100000, sz = 1, align = 0x1000;

	memcpy(img, "\177ELF\2\1\1", 7);
	memcpy(img + 16, h16, 4);
	img[20] = 1;
	memcpy(img + 24, &entry, 8);
	memcpy(img + 32, &phoff, 8);
	img[52] = 64;
	img[54] = 56;
	img[56] = 1;
	memcpy(img + 64, &type, 4);
	memcpy(img + 68, &flags, 4);
	memcpy(img + 72, &off, 8);
	memcpy(img + 80, &va, 8);
	memcpy(img + 88, &va, 8);
	memcpy(img + 96, &sz, 8);
	memcpy(img + 104, &sz, 8);
	memcpy(img + 112, &align, 8);
	img[0x1000] = 0xf4;
	assert_non_null(f);
	assert_int_equal(fwrite(img, 1, sizeof(img), f), sizeof(img));
	fclose(f);
}

static void write_disk(const char *path, off_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

static int vm_group_setup(void **state)
{
	char disk[96];

	(void)state;
	assert_non_null(mkdtemp(tmpdir));
	snprintf(kernel_path, sizeof(kernel_path), "%s/k.elf", tmpdir);
	write_kernel(kernel_path);
	snprintf(disk, sizeof(disk), "%s/disk", tmpdir);
	write_disk(disk, 1 << 20);
	snprintf(disk, sizeof(disk), "%s/small", tmpdir);
	write_disk(disk, 1 << 19);
	return 0;
}

static int vm_group_teardown(void **state)
{
	char p[96];

	(void)state;
	unlink(kernel_path);
	snprintf(p, sizeof(p), "%s/disk", tmpdir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/small", tmpdir);
	unlink(p);
	rmdir(tmpdir);
	return 0;
}

/* A configuration: a drive (disk, or `drive` in the temporary directory; none for NULL) and
 * maybe a virtio-console. */
static void make_config(struct vm_config *cfg, const char *drive, bool read_only, bool vcon)
{
	char path[96];

	vm_config_defaults(cfg);
	assert_int_equal(config_set_str(&cfg->kernel_path, kernel_path), 0);
	cfg->console = CONSOLE_NONE;
	cfg->vcpus = 1;
	cfg->mem_mib = 16;
	cfg->virtio_console = vcon;
	if (drive) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, drive);
		snprintf(cfg->drives[0].id, sizeof(cfg->drives[0].id), "rootfs");
		assert_int_equal(config_set_str(&cfg->drives[0].path, path), 0);
		cfg->drives[0].read_only = read_only;
		cfg->ndrives = 1;
	}
}

static void build_vm(struct vm *vm, const struct vm_config *cfg)
{
	struct error err = {""};
	int code = 0;

	memset(vm, 0, sizeof(*vm));
	vm->stop_fd = -1;
	vm->backend = &null_backend;
	if (vm_build(vm, cfg, &err, &code))
		fail_msg("vm_build: %s", err.msg);
}

static void free_vm(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		close(vm->virtio[i]->irq_fd);
		for (unsigned q = 0; q < vm->virtio[i]->nqueues; q++)
			close(vm->virtio[i]->notify_fd[q]);
	}
	vm_destroy(vm);
}

/* Rings of slot s, queue q. */
#define VRING(s, q) (0x200000ULL + 0x10000ULL * (s) + 0x4000ULL * (q))

struct driver {
	uint16_t avail[VM_MAX_VIRTIO][2], desc[VM_MAX_VIRTIO][2];
};

static void driver_ok(struct vm *vm, unsigned slot, uint64_t features)
{
	struct virtio_mmio *t = vm->virtio[slot];

	negotiate(t, features | VERSION_1);
	for (unsigned q = 0; q < t->nqueues; q++)
		setup_queue(t, q, 16, VRING(slot, q), VRING(slot, q) + 0x1000,
		            VRING(slot, q) + 0x2000, true);
	reg_w(t, VIRTIO_MMIO_STATUS, S_ALL);
	assert_true(virtio_mmio_running(t));
}

/* A chain of n buffers on slot/queue; returns its head. */
static uint16_t vm_post(struct vm *vm, struct driver *d, unsigned slot, unsigned q,
                        const uint64_t *gpa, const uint32_t *len, const bool *wr, unsigned n)
{
	uint64_t ring = VRING(slot, q);
	uint16_t head = d->desc[slot][q], idx;

	for (unsigned i = 0; i < n; i++) {
		uint16_t k = (uint16_t)((head + i) % 16);
		struct vring_desc desc = {
		    .addr = gpa[i],
		    .len = len[i],
		    .flags = (uint16_t)((wr[i] ? VRING_DESC_F_WRITE : 0) |
		                        (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
		    .next = (uint16_t)((k + 1) % 16),
		};

		assert_int_equal(gm_write(&vm->mem, ring + 16ULL * k, &desc, 16), 0);
	}
	d->desc[slot][q] = (uint16_t)((head + n) % 16);
	assert_int_equal(
	    gm_write(&vm->mem, ring + 0x1000 + 4 + 2ULL * (d->avail[slot][q] % 16), &head, 2), 0);
	idx = ++d->avail[slot][q];
	assert_int_equal(gm_write(&vm->mem, ring + 0x1000 + 2, &idx, 2), 0);
	return head;
}

/* The driver notifies; the VMM thread handles it. */
static void vm_kick(struct vm *vm, unsigned slot, unsigned q)
{
	uint32_t v = q;

	vm_mmio(vm,
	        LAYOUT_MMIO_SLOTS_START + slot * LAYOUT_MMIO_SLOT_SIZE + VIRTIO_MMIO_QUEUE_NOTIFY,
	        true, (uint8_t *)&v, 4);
	virtio_mmio_handle_notify(vm->virtio[slot], q);
}

static uint16_t used_idx(struct vm *vm, unsigned slot, unsigned q)
{
	uint16_t v;

	assert_int_equal(gm_read(&vm->mem, VRING(slot, q) + 0x2000 + 2, &v, 2), 0);
	return v;
}

/* A disk request: T_IN / T_OUT of one sector, data at 0x300000, status at 0x280100. */
static void blk_post(struct vm *vm, struct driver *d, uint32_t type, uint64_t sector)
{
	struct virtio_blk_outhdr hdr = {.type = type, .sector = sector};
	uint64_t gpa[3] = {0x280000, 0x300000, 0x280100};
	uint32_t len[3] = {sizeof(hdr), 512, 1};
	bool wr[3] = {false, type == VIRTIO_BLK_T_IN, true};

	assert_int_equal(gm_write(&vm->mem, gpa[0], &hdr, sizeof(hdr)), 0);
	vm_post(vm, d, 0, 0, gpa, len, wr, 3);
}

/* Post, notify, check the request completed; returns its status byte. */
static uint8_t blk_rw(struct vm *vm, struct driver *d, uint32_t type, uint64_t sector)
{
	uint16_t before = used_idx(vm, 0, 0);
	uint8_t status = 0xff;

	blk_post(vm, d, type, sector);
	vm_kick(vm, 0, 0);
	assert_int_equal(used_idx(vm, 0, 0), (uint16_t)(before + 1));
	assert_int_equal(gm_read(&vm->mem, 0x280100, &status, 1), 0);
	return status;
}

/* Every device of `vm` in use: a disk request done, console input waiting for a buffer, the
 * UART's FIFO filled, the keyboard controller's queue, CMOS RAM. */
static void vm_busy(struct vm *vm, struct driver *d)
{
	uint8_t sector[512];

	for (unsigned i = 0; i < sizeof(sector); i++)
		sector[i] = (uint8_t)(i * 3 + 1);
	driver_ok(vm, 0, 1ULL << VIRTIO_BLK_F_FLUSH);
	assert_int_equal(gm_write(&vm->mem, 0x300000, sector, sizeof(sector)), 0);
	assert_int_equal(blk_rw(vm, d, VIRTIO_BLK_T_OUT, 3), VIRTIO_BLK_S_OK);
	driver_ok(vm, 1, 0);
	assert_int_equal(virtio_console_receive(vm->vcon, (const uint8_t *)"hello", 5), 5);
	uart_busy(&vm->uart);
	i8042_send_ctrl_alt_del(&vm->i8042);
	pio_w(&rtc_cmos_bus_ops, &vm->cmos, 0, 0x50);
	pio_w(&rtc_cmos_bus_ops, &vm->cmos, 1, 0xab);
}

static void test_vm_devices_round_trip(void **state)
{
	static struct vm a, b;
	struct vm_config cfg;
	struct driver d = {0};
	struct snap_w w1, w2;
	struct snap_r r;
	struct error err;
	uint8_t got[512], in[8] = {0};
	uint64_t gpa = 0x380000;
	uint32_t len = 8;
	bool wr = true;

	(void)state;
	make_config(&cfg, "disk", false, true);
	build_vm(&a, &cfg);
	vm_busy(&a, &d);
	snap_w_init(&w1);
	snap_w_init(&w2);
	assert_int_equal(devices_save(&a, &w1), 0);

	/* The restored VM: guest memory from the "memory file", then the devices. */
	build_vm(&b, &cfg);
	memcpy(b.mem.host, a.mem.host, a.mem.size);
	snap_r_init(&r, w1.buf, w1.len);
	if (devices_restore(&b, &r, &err))
		fail_msg("devices_restore: %s", err.msg);
	assert_int_equal(snap_left(&r), 0);
	assert_int_equal(devices_save(&b, &w2), 0);
	assert_int_equal(w1.len, w2.len);
	assert_memory_equal(w1.buf, w2.buf, w1.len);
	free_vm(&a);

	/* The disk goes on at the next ring entry and reads what was written before. */
	assert_int_equal(eventfd_count(b.virtio[0]->notify_fd[0]), 1);
	assert_int_equal(gm_write(&b.mem, 0x300000, in, sizeof(in)), 0);
	assert_int_equal(blk_rw(&b, &d, VIRTIO_BLK_T_IN, 3), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(&b, 0, 0), 2);
	assert_int_equal(gm_read(&b.mem, 0x300000, got, sizeof(got)), 0);
	for (unsigned i = 0; i < sizeof(got); i++)
		assert_int_equal(got[i], (uint8_t)(i * 3 + 1));
	/* The console's pending input reaches the guest's first buffer. */
	vm_post(&b, &d, 1, 0, &gpa, &len, &wr, 1);
	vm_kick(&b, 1, 0);
	assert_int_equal(used_idx(&b, 1, 0), 1);
	assert_int_equal(gm_read(&b.mem, gpa, in, 5), 0);
	assert_memory_equal(in, "hello", 5);
	/* The legacy devices. */
	assert_int_equal(pio_r(&serial_bus_ops, &b.uart, 0), 0x30 + 30);
	assert_int_equal(b.i8042.count, 8);
	pio_w(&rtc_cmos_bus_ops, &b.cmos, 0, 0x50);
	assert_int_equal(pio_r(&rtc_cmos_bus_ops, &b.cmos, 1), 0xab);

	/* Every truncation of the whole state fails cleanly, in the same (restored) VM. */
	for (size_t k = 0; k < w1.len; k++) {
		snap_r_init(&r, w1.buf, k);
		assert_int_equal(devices_restore(&b, &r, &err), -1);
	}
	free_vm(&b);
	snap_w_free(&w1);
	snap_w_free(&w2);
	vm_config_free(&cfg);
}

/* The state names a device this VM does not have, or one that differs. */
static void test_vm_devices_must_match(void **state)
{
	static const struct {
		const char *drive;
		bool read_only, vcon;
		const char *msg;
	} other[] = {
	    {"disk", false, false,
	     "the state has a virtio console in virtio slot 1, this VM has only 1"},
	    {NULL, false, true,
	     "virtio slot 0 holds console, a virtio console, in this VM, but a "
	     "block device in the state"},
	    /* read-only: VIRTIO_BLK_F_RO is offered now */
	    {"disk", true, true, "rootfs offered other features when it was saved"},
	    {"small", false, true, "drive rootfs has 1024 sectors, but 2048 when it was saved"},
	};
	static struct vm a, b;
	struct vm_config cfg;
	struct driver d = {0};
	struct snap_w w;
	struct error err;

	(void)state;
	make_config(&cfg, "disk", false, true);
	build_vm(&a, &cfg);
	vm_busy(&a, &d);
	snap_w_init(&w);
	assert_int_equal(devices_save(&a, &w), 0);
	free_vm(&a);
	vm_config_free(&cfg);
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		struct snap_r r;

		make_config(&cfg, other[i].drive, other[i].read_only, other[i].vcon);
		build_vm(&b, &cfg);
		snap_r_init(&r, w.buf, w.len);
		expect_error(devices_restore(&b, &r, &err), &err, other[i].msg);
		free_vm(&b);
		vm_config_free(&cfg);
	}
	/* A VM with one device more than the state. */
	{
		struct snap_w w0;
		struct snap_r r;

		make_config(&cfg, NULL, false, false);
		build_vm(&a, &cfg);
		snap_w_init(&w0);
		assert_int_equal(devices_save(&a, &w0), 0);
		free_vm(&a);
		vm_config_free(&cfg);
		make_config(&cfg, "disk", false, false);
		build_vm(&b, &cfg);
		snap_r_init(&r, w0.buf, w0.len);
		expect_error(
		    devices_restore(&b, &r, &err), &err,
		    "this VM has 1 virtio devices (rootfs, a block device, in slot 0), the "
		    "state 0");
		free_vm(&b);
		vm_config_free(&cfg);
		snap_w_free(&w0);
	}
	snap_w_free(&w);
}

static void test_console_bad_fields(void **state)
{
	static struct vm a, b;
	struct vm_config cfg;
	struct driver d = {0};
	struct snap_w w;
	struct error err;
	size_t vcon;

	(void)state;
	make_config(&cfg, "disk", false, true);
	build_vm(&a, &cfg);
	vm_busy(&a, &d);
	snap_w_init(&w);
	assert_int_equal(devices_save(&a, &w), 0);
	free_vm(&a);
	/* VCON is the last section: count 4, then "hello". */
	vcon = w.len - (SEC + 4 + 5);
	assert_int_equal(get_le(w.buf + vcon, 4), SNAP_TAG('V', 'C', 'O', 'N'));
	{
		uint8_t *p = patched(&w, vcon + SEC, VCON_RX_PENDING + 1, 4);
		struct snap_r r;

		build_vm(&b, &cfg);
		snap_r_init(&r, p, w.len);
		expect_error(devices_restore(&b, &r, &err), &err,
		             "section VCON: bad or missing "
		             "pending input");
		assert_int_equal(b.vcon->npending, 0);
		free_vm(&b);
		free(p);
	}
	{
		/* The console's receive queue (VMIO before VCON) with a chain in flight. */
		size_t vmio = vcon - (V_Q0 + 2 * VQ_LEN);
		uint8_t *p;
		struct snap_r r;

		assert_int_equal(get_le(w.buf + vmio, 4), SNAP_TAG('V', 'M', 'I', 'O'));
		p = patched(&w, vmio + V_Q0 + Q_LAST, 1, 2);
		build_vm(&b, &cfg);
		snap_r_init(&r, p, w.len);
		expect_error(devices_restore(&b, &r, &err), &err, "chains in flight");
		free_vm(&b);
		free(p);
	}
	snap_w_free(&w);
	vm_config_free(&cfg);
}

/* ---- dirty tracking of device writes ------------------------------------------------------ */

static bool page_dirty(const uint64_t *bm, uint64_t gpa)
{
	return (bm[gpa / 4096 / 64] >> (gpa / 4096 % 64)) & 1;
}

static void collect(struct guest_memory *gm, uint64_t *bm, size_t words)
{
	memset(bm, 0, words * 8);
	gm_dirty_collect(gm, bm);
}

static void test_queue_writes_are_dirty(void **state)
{
	uint8_t *mem = calloc(1, T_RAM);
	uint64_t bm[T_RAM / 4096 / 64];
	struct guest_memory gm;
	/* The used ring straddles a page: flags and idx at 0x3ff0, element 2 at 0x4004. */
	struct virtq q = {.size = 8, .desc_gpa = 0x1000, .avail_gpa = 0x2000, .used_gpa = 0x3ff0};
	struct vring_desc desc[3] = {
	    {.addr = 0x10000, .len = 100, .flags = VRING_DESC_F_NEXT, .next = 1},
	    {.addr = 0x20f00,
	     .len = 0x200,
	     .flags = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
	     .next = 2},
	    {.addr = 0x30000, .len = 16, .flags = VRING_DESC_F_WRITE},
	};
	uint16_t head = 0, idx = 1;
	struct virtq_chain *c = malloc(sizeof(*c));
	struct iovec iov[4];
	uint8_t buf[0x300] = {0};
	size_t words = sizeof(bm) / 8;

	(void)state;
	assert_non_null(mem);
	assert_non_null(c);
	gm_wrap(&gm, mem, T_RAM);
	assert_int_equal(gm_write(&gm, 0x1000, desc, sizeof(desc)), 0);
	assert_int_equal(gm_write(&gm, 0x2004, &head, 2), 0);
	assert_int_equal(gm_write(&gm, 0x2002, &idx, 2), 0);
	assert_true(virtq_layout_ok(&q, &gm));
	q.ready = true;
	assert_int_equal(gm_dirty_start(&gm), 0);

	/* Taking a chain and reading it writes nothing. */
	assert_int_equal(virtq_pop(&q, &gm, c), VIRTQ_CHAIN);
	assert_int_equal(virtq_chain_read(c, &gm, 0, buf, 100), 100);
	assert_int_equal(virtq_chain_iov(c, &gm, false, 0, VIRTQ_ALL, iov), 1);
	collect(&gm, bm, words);
	for (size_t i = 0; i < words; i++)
		assert_int_equal(bm[i], 0);
	/* A copy into the chain marks the bytes it wrote: 0x20f00.. spans two pages only when
	 * it is long enough. */
	assert_int_equal(virtq_chain_write(c, &gm, 0, buf, 0x100), 0x100);
	collect(&gm, bm, words);
	assert_true(page_dirty(bm, 0x20000));
	assert_false(page_dirty(bm, 0x21000));
	assert_false(page_dirty(bm, 0x30000));
	assert_int_equal(virtq_chain_write(c, &gm, 0x1f0, buf, 0x20), 0x20);
	collect(&gm, bm, words);
	assert_false(page_dirty(bm, 0x20000));
	assert_true(page_dirty(bm, 0x21000));
	assert_true(page_dirty(bm, 0x30000));
	/* Device-writable iovecs are filled by the caller: marked when they are made. */
	assert_int_equal(virtq_chain_iov(c, &gm, true, 0, VIRTQ_ALL, iov), 2);
	collect(&gm, bm, words);
	assert_true(page_dirty(bm, 0x20000));
	assert_true(page_dirty(bm, 0x21000));
	assert_true(page_dirty(bm, 0x30000));
	assert_false(page_dirty(bm, 0x10000));
	/* The used ring: element and index, and its flags. */
	assert_int_equal(virtq_push(&q, &gm, c->head, 16), 0);
	collect(&gm, bm, words);
	for (uint64_t p = 0; p < T_RAM; p += 4096)
		assert_int_equal(page_dirty(bm, p), p == 0x3000);
	assert_int_equal(virtq_push(&q, &gm, c->head, 16), 0);
	assert_int_equal(virtq_push(&q, &gm, c->head, 16), 0); /* element 2: the next page */
	collect(&gm, bm, words);
	for (uint64_t p = 0; p < T_RAM; p += 4096)
		assert_int_equal(page_dirty(bm, p), p == 0x3000 || p == 0x4000);
	virtq_set_notify(&q, &gm, false);
	collect(&gm, bm, words);
	for (uint64_t p = 0; p < T_RAM; p += 4096)
		assert_int_equal(page_dirty(bm, p), p == 0x3000);
	gm_dirty_stop(&gm);
	free(c);
	free(mem);
}

/* A virtio-blk read in a whole VM: the sector read, the status byte and the used ring are
 * dirty; the descriptors and the avail ring (the driver's) are not. */
static void test_blk_read_is_dirty(void **state)
{
	static struct vm a;
	struct vm_config cfg;
	struct driver d = {0};
	uint64_t *bm;
	size_t words;

	(void)state;
	make_config(&cfg, "disk", false, false);
	build_vm(&a, &cfg);
	driver_ok(&a, 0, 0);
	words = (gm_pages(&a.mem) + 63) / 64;
	bm = calloc(words, 8);
	assert_non_null(bm);
	blk_post(&a, &d, VIRTIO_BLK_T_IN, 0);
	assert_int_equal(gm_dirty_start(&a.mem), 0);
	vm_kick(&a, 0, 0);
	assert_int_equal(used_idx(&a, 0, 0), 1);
	gm_dirty_collect(&a.mem, bm);
	assert_true(page_dirty(bm, 0x300000));              /* the sector */
	assert_true(page_dirty(bm, 0x280000));              /* the status byte's page */
	assert_true(page_dirty(bm, VRING(0, 0) + 0x2000));  /* used ring */
	assert_false(page_dirty(bm, VRING(0, 0)));          /* descriptors */
	assert_false(page_dirty(bm, VRING(0, 0) + 0x1000)); /* avail ring */
	free(bm);
	free_vm(&a);
	vm_config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest devices[] = {
	    cmocka_unit_test(test_uart_round_trip),
	    cmocka_unit_test(test_uart_bad_fields),
	    cmocka_unit_test(test_cmos_round_trip_and_bad_fields),
	    cmocka_unit_test(test_i8042_round_trip_and_bad_fields),
	    cmocka_unit_test(test_transport_round_trip),
	    cmocka_unit_test(test_transport_bad_fields),
	    cmocka_unit_test(test_net_round_trip_goes_on),
	    cmocka_unit_test(test_net_link_comes_back_on_a_new_tap),
	    cmocka_unit_test(test_net_bad_fields),
	    cmocka_unit_test(test_queue_writes_are_dirty),
	};
	const struct CMUnitTest vms[] = {
	    cmocka_unit_test(test_vm_devices_round_trip),
	    cmocka_unit_test(test_vm_devices_must_match),
	    cmocka_unit_test(test_console_bad_fields),
	    cmocka_unit_test(test_blk_read_is_dirty),
	};
	int failed = cmocka_run_group_tests(devices, NULL, NULL);

	return failed | cmocka_run_group_tests(vms, vm_group_setup, vm_group_teardown);
}
