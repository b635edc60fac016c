/* Formatting helpers shared by the jailer's parts. */
#ifndef HEARTH_JAILER_TEXT_H
#define HEARTH_JAILER_TEXT_H

#include <stddef.h>

/* Format a message into err (at most errlen bytes); always returns -1, for `return errf(...)`. */
int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* snprintf into a fixed buffer; -1 (errno ENAMETOOLONG) when the result does not fit. */
int fmt_to(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
