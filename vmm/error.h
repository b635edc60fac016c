/* A small error value: functions that can fail on input fill one and return -1. */
#ifndef HEARTH_ERROR_H
#define HEARTH_ERROR_H

#include <stddef.h>

struct error {
	char msg[512];
};

/* Set the message (printf-style); always returns -1 so callers can `return err_set(...)`. */
int err_set(struct error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
