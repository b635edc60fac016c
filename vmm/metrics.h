/*
 * Metrics: counters kept with relaxed atomics wherever events happen, written as one JSON
 * line per flush (FlushMetrics, every 60 s, and when the guest stops) to the file or FIFO
 * named by PUT /metrics.
 */
#ifndef HEARTH_METRICS_H
#define HEARTH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

struct hearth_metrics {
	uint64_t api_requests;
	uint64_t api_errors;
	uint64_t exit_io, exit_mmio, exit_intr, exit_other;
	uint64_t unclaimed_pio, unclaimed_mmio;
	uint64_t flushes;
};

extern struct hearth_metrics metrics;

#define METRIC_INC(field) __atomic_fetch_add(&metrics.field, 1, __ATOMIC_RELAXED)

struct controller;

int metrics_open(const char *path, char *err, size_t errlen);
int metrics_enabled(void);
void metrics_count_api(enum api_op op);
/* Write one JSON line with every counter (no-op when metrics are not configured). */
void metrics_flush(struct controller *c);

#endif
