/*
 * libFuzzer target: the devices' state from a snapshot (snapshot/devices.c: devices_restore
 * and every device's *_restore) into freshly built devices: a UART, the RTC, the i8042, and
 * virtio-blk, virtio-net (on a socketpair for a TAP) and virtio-console on their transports.
 *
 * The input is the state itself (first byte even), or edits to a valid state of busy devices
 * (first byte odd: a length to cut it to, then (offset, byte) pairs), so that mutations reach
 * the deep fields as well as the framing. A restore may fail; it must not crash, leak or
 * touch memory outside guest RAM. A state that restores must save again, restore again, and
 * save the same bytes; and the restored devices must run (queue notifies, TAP events).
 */
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "snapshot/devices.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "vmm/vm.h"

#define RAM       (1u << 20)
#define VERSION_1 (1ULL << VIRTIO_F_VERSION_1)
#define S_ALL                                                                                      \
	(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |      \
	 VIRTIO_CONFIG_S_DRIVER_OK)

static const uint8_t mac[6] = {0x02, 1, 2, 3, 4, 5};

static uint8_t ram[RAM];
static struct guest_memory gm;
static struct vm vm;
static struct console con = {.out_fd = -1, .in_fd = -1};
static struct virtio_mmio tr[3];
static struct virtio_blk blk;
static struct virtio_net net;
static struct virtio_console vcon;
static int peer = -1;
static struct snap_w template_state;

/* A transport as vm.c makes one, without eventfds. */
static void transport(struct virtio_mmio *t, const char *name, uint32_t id, uint64_t features,
                      unsigned nqueues, const struct virtio_dev_ops *ops, void *dev)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->name = name;
	t->device_id = id;
	t->device_features = features | VERSION_1;
	t->nqueues = nqueues;
	t->queue_max = VIRTQ_MAX_SIZE;
	t->ops = ops;
	t->dev = dev;
	t->gm = &gm;
	t->irq_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		t->notify_fd[q] = -1;
}

/* Fresh devices, as a VM built from the snapshot's configuration has them. */
static void build(void)
{
	int sv[2];

	serial_init(&vm.uart, &con);
	rtc_cmos_init(&vm.cmos);
	i8042_init(&vm.i8042, NULL, NULL, NULL);

	memset(&blk, 0, sizeof(blk));
	blk.fd = -1;
	blk.capacity = 2048;
	transport(&tr[0], "rootfs", VIRTIO_ID_BLOCK, virtio_blk_features(&blk), 1, &virtio_blk_ops,
	          &blk);
	blk.t = &tr[0];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		abort();
	peer = sv[1];
	if (virtio_net_init(&net, sv[0], "fuzz", mac, 1500))
		abort();
	transport(&tr[1], "net0", VIRTIO_ID_NET, virtio_net_features(&net), VIRTIO_NET_QUEUES,
	          &virtio_net_ops, &net);
	net.t = &tr[1];

	transport(&tr[2], "console", VIRTIO_ID_CONSOLE, 0, VIRTIO_CONSOLE_QUEUES,
	          &virtio_console_ops, &vcon);
	virtio_console_init(&vcon, &tr[2], &con);

	vm.nvirtio = 3;
	for (unsigned i = 0; i < 3; i++)
		vm.virtio[i] = &tr[i];
}

static void teardown(void)
{
	virtio_net_close(&net);
	close(peer);
	peer = -1;
}

static void ready_queue(struct virtio_mmio *t, unsigned q, uint64_t base, uint16_t last,
                        uint16_t used)
{
	struct virtq *v = &t->vq[q];

	*v = (struct virtq){.size = 16,
	                    .ready = true,
	                    .desc_gpa = base,
	                    .avail_gpa = base + 0x1000,
	                    .used_gpa = base + 0x2000,
	                    .last_avail = last,
	                    .used_idx = used};
}

/* Devices in the middle of things, by hand: every optional part of every section present. */
static void make_template(void)
{
	uint8_t b;

	build();
	serial_receive(&vm.uart, (const uint8_t *)"input", 5);
	b = 0x03;
	serial_bus_ops.write(&vm.uart, 1, &b, 1);
	b = 0x40;
	rtc_cmos_bus_ops.write(&vm.cmos, 0, &b, 1);
	rtc_cmos_bus_ops.write(&vm.cmos, 1, &b, 1);
	i8042_send_ctrl_alt_del(&vm.i8042);

	for (unsigned i = 0; i < 3; i++) {
		tr[i].status = S_ALL;
		tr[i].driver_features = VERSION_1;
		tr[i].interrupt_status = 1;
		tr[i].config_generation = i;
	}
	tr[1].driver_features |= (1ULL << VIRTIO_NET_F_MRG_RXBUF) |
	                         (1ULL << VIRTIO_NET_F_GUEST_CSUM) | (1ULL << VIRTIO_NET_F_CSUM);
	ready_queue(&tr[0], 0, 0x10000, 5, 5);
	ready_queue(&tr[1], 0, 0x20000, 9, 7); /* a frame in two chains */
	ready_queue(&tr[1], 1, 0x30000, 3, 2); /* a blocked transmit */
	ready_queue(&tr[2], 0, 0x40000, 1, 1);
	ready_queue(&tr[2], 1, 0x50000, 0, 0);

	net.active = true;
	net.mrg = true;
	net.rx_chain.head = 4;
	net.rx_chain.nsegs = 2;
	net.rx_chain.seg[0] = (struct virtq_seg){0x80000, 64, true};
	net.rx_chain.seg[1] = (struct virtq_seg){0x81000, 64, true};
	net.rx_chain.writable = 128;
	net.rx_used[0].head = 4;
	net.rx_used[0].len = 128;
	net.rx_used[1].head = 5;
	net.rx_used[1].len = 40;
	net.rx_nused = 2;
	net.rx_held_descs = 3;
	net.rx_tail_off = 40;
	net.rx_tail_len = 100;
	memset(net.bounce, 0xab, 100);
	net.tx_pending = true;
	net.tx_chain.head = 7;
	net.tx_chain.nsegs = 1;
	net.tx_chain.seg[0] = (struct virtq_seg){0x90000, 60, false};
	net.tx_chain.readable = 60;

	memcpy(vcon.pending, "pending", 7);
	vcon.npending = 7;

	snap_w_init(&template_state);
	if (devices_save(&vm, &template_state))
		abort();
	teardown();
}

static int restore(const uint8_t *p, size_t n)
{
	struct error err;
	struct snap_r r;

	build();
	snap_r_init(&r, p, n);
	return devices_restore(&vm, &r, &err);
}

/* The restored devices at work: every queue notified, the TAP ready both ways. */
static void run(void)
{
	for (unsigned i = 0; i < vm.nvirtio; i++) {
		struct virtio_mmio *t = vm.virtio[i];

		pthread_mutex_lock(&t->lock);
		for (unsigned q = 0; q < t->nqueues; q++)
			if (virtio_mmio_running(t) && t->vq[q].ready)
				t->ops->queue_notify(t, q);
		pthread_mutex_unlock(&t->lock);
	}
	virtio_net_tap_event(&net, EPOLLIN | EPOLLOUT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	uint8_t *state = NULL;
	size_t n;
	struct snap_w w1, w2;

	if (!ready) {
		gm_wrap(&gm, ram, sizeof(ram));
		make_template();
		if (restore(template_state.buf, template_state.len)) /* the template is valid */
			abort();
		teardown();
		ready = true;
	}
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		/* Edits to the template: a length, then (offset, byte) pairs. */
		n = template_state.len;
		if (size >= 3 && (data[0] & 2) && (size_t)(data[1] | data[2] << 8) < n)
			n = (size_t)(data[1] | data[2] << 8);
		state = malloc(template_state.len);
		if (!state)
			return 0;
		memcpy(state, template_state.buf, template_state.len);
		for (size_t i = 3; i + 2 < size; i += 3)
			state[(size_t)(data[i] | data[i + 1] << 8) % template_state.len] =
			    data[i + 2];
	} else {
		n = size - 1;
		state = malloc(n ? n : 1);
		if (!state)
			return 0;
		memcpy(state, data + 1, n);
	}
	memset(ram, 0, sizeof(ram));
	if (restore(state, n)) {
		teardown();
		free(state);
		return 0;
	}
	/* Accepted: it saves, restores and saves again to the same bytes. */
	snap_w_init(&w1);
	snap_w_init(&w2);
	if (devices_save(&vm, &w1))
		abort();
	teardown();
	if (restore(w1.buf, w1.len) || devices_save(&vm, &w2) || w1.len != w2.len ||
	    memcmp(w1.buf, w2.buf, w1.len))
		abort();
	run();
	teardown();
	snap_w_free(&w1);
	snap_w_free(&w2);
	free(state);
	return 0;
}
