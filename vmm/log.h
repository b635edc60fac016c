/* Log lines on stderr, prefixed "hearth: ". Info lines only with --verbose. */
#ifndef HEARTH_LOG_H
#define HEARTH_LOG_H

#include <stdbool.h>

extern bool log_verbose;

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Always printed: the start line and the one line that says how the run ended. */
void log_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
