#include "metrics.h"
#include "controller.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "virtio/net.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct hearth_metrics metrics;
static int metrics_fd = -1;

static uint64_t get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

int metrics_open(const char *path, char *err, size_t errlen)
{
	/* O_NONBLOCK: a FIFO with no reader must not block the VMM thread. */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);

	if (fd < 0) {
		snprintf(err, errlen, "metrics_path '%s' cannot be opened: %s", path,
		         strerror(errno));
		return -1;
	}
	if (metrics_fd >= 0)
		close(metrics_fd);
	metrics_fd = fd;
	return 0;
}

int metrics_enabled(void)
{
	return metrics_fd >= 0;
}

void metrics_count_api(enum api_op op)
{
	(void)op;
	METRIC_INC(api_requests);
}

static void add(cJSON *o, const char *name, uint64_t v)
{
	cJSON_AddNumberToObject(o, name, (double)v);
}

/* virtio-net counters (Firecracker's names where it has them); the VMM thread writes them. */
static void add_net(cJSON *s, const struct virtio_net_counters *k)
{
	add(s, "rx_bytes_count", k->rx_bytes);
	add(s, "rx_packets_count", k->rx_packets);
	add(s, "tx_bytes_count", k->tx_bytes);
	add(s, "tx_packets_count", k->tx_packets);
	add(s, "rx_dropped_too_big", k->rx_dropped_too_big);
	add(s, "no_rx_avail_buffer", k->rx_no_buffers);
	add(s, "rx_fails", k->rx_errors);
	add(s, "tx_fails", k->tx_errors);
	add(s, "tx_malformed_frames", k->tx_malformed);
	add(s, "tx_would_block", k->tx_blocked);
	add(s, "tap_failures", k->tap_failures);
}

/* "net": every interface summed; "net_<iface_id>": each one. */
static void add_nets(cJSON *o, const struct vm *vm)
{
	struct virtio_net_counters sum = {0};
	char name[8 + DRIVE_ID_MAX];

	for (unsigned i = 0; i < vm->nnet; i++) {
		const struct virtio_net_counters *k = &vm->net[i]->counters;

		sum.rx_bytes += k->rx_bytes;
		sum.rx_packets += k->rx_packets;
		sum.tx_bytes += k->tx_bytes;
		sum.tx_packets += k->tx_packets;
		sum.rx_dropped_too_big += k->rx_dropped_too_big;
		sum.rx_no_buffers += k->rx_no_buffers;
		sum.rx_errors += k->rx_errors;
		sum.tx_errors += k->tx_errors;
		sum.tx_malformed += k->tx_malformed;
		sum.tx_blocked += k->tx_blocked;
		sum.tap_failures += k->tap_failures;
	}
	add_net(cJSON_AddObjectToObject(o, "net"), &sum);
	for (unsigned i = 0; i < vm->nnet && vm->net[i]->t; i++) {
		snprintf(name, sizeof(name), "net_%s", vm->net[i]->t->name);
		add_net(cJSON_AddObjectToObject(o, name), &vm->net[i]->counters);
	}
}

void metrics_flush(struct controller *c)
{
	struct vm *vm = c->vm;
	struct timespec ts;
	cJSON *o, *s;
	char *line;
	uint64_t rd = 0, wr = 0, rq = 0, wq = 0, fl = 0, errs = 0;

	if (metrics_fd < 0)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	METRIC_INC(flushes);
	o = cJSON_CreateObject();
	add(o, "utc_timestamp_ms", (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	s = cJSON_AddObjectToObject(o, "api_server");
	add(s, "requests", get(&metrics.api_requests));
	add(s, "errors", get(&metrics.api_errors));
	s = cJSON_AddObjectToObject(o, "vcpu");
	add(s, "exit_io", get(&metrics.exit_io));
	add(s, "exit_mmio", get(&metrics.exit_mmio));
	add(s, "exit_intr", get(&metrics.exit_intr));
	add(s, "exit_other", get(&metrics.exit_other));
	add(s, "unclaimed_pio", get(&metrics.unclaimed_pio));
	add(s, "unclaimed_mmio", get(&metrics.unclaimed_mmio));
	for (unsigned i = 0; i < vm->nblk; i++) {
		const struct virtio_blk_counters *k = &vm->blk[i]->counters;

		rd += k->read_bytes;
		wr += k->write_bytes;
		rq += k->read_reqs;
		wq += k->write_reqs;
		fl += k->flush_reqs;
		errs += k->errors;
	}
	s = cJSON_AddObjectToObject(o, "block");
	add(s, "read_bytes", rd);
	add(s, "write_bytes", wr);
	add(s, "read_count", rq);
	add(s, "write_count", wq);
	add(s, "flush_count", fl);
	add(s, "errors", errs);
	add_nets(o, vm);
	s = cJSON_AddObjectToObject(o, "uart");
	add(s, "write_bytes", vm->uart.tx_bytes);
	add(s, "read_bytes", vm->uart.rx_bytes);
	if (vm->vcon) {
		s = cJSON_AddObjectToObject(o, "virtio_console");
		add(s, "write_bytes", vm->vcon->tx_bytes);
		add(s, "read_bytes", vm->vcon->rx_bytes);
	}
	s = cJSON_AddObjectToObject(o, "virtio");
	{
		uint64_t n = 0, irq = 0, bad = 0;

		for (unsigned i = 0; i < vm->nvirtio; i++) {
			n += vm->virtio[i]->notifications;
			irq += vm->virtio[i]->interrupts;
			bad += vm->virtio[i]->bad_chains;
		}
		add(s, "notifications", n);
		add(s, "interrupts", irq);
		add(s, "bad_chains", bad);
	}
	line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (line) {
		size_t len = strlen(line);

		line[len] = '\n';
		if (write(metrics_fd, line, len + 1) < 0) {
			/* a full FIFO drops this line; the next flush carries the totals */
		}
		cJSON_free(line);
	}
}
