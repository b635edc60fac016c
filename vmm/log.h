/* Log lines on stderr, prefixed "hearth: ". Info lines only with --verbose. */
#ifndef HEARTH_LOG_H
#define HEARTH_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "api/api.h"

extern bool log_verbose;

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Always printed: the start line and the one line that says how the run ended. */
void log_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* PUT /logger: also write lines to `path` (file or FIFO). */
int log_open_file(const char *path, bool has_level, enum log_level level, bool show_level,
                  bool show_origin, const char *id, char *err, size_t errlen);

#endif
