#include "log.h"

#include <stdarg.h>
#include <stdio.h>

bool log_verbose;

static void vlog(const char *level, const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One write per line, so lines from different threads do not interleave. */
	fprintf(stderr, "hearth: %s%s\n", level, buf);
}

#define LOG_FN(fn, level, cond)                                                                    \
	void fn(const char *fmt, ...)                                                              \
	{                                                                                          \
		va_list ap;                                                                        \
		if (!(cond))                                                                       \
			return;                                                                    \
		va_start(ap, fmt);                                                                 \
		vlog(level, fmt, ap);                                                              \
		va_end(ap);                                                                        \
	}

LOG_FN(log_info, "", log_verbose)
LOG_FN(log_warn, "warning: ", 1)
LOG_FN(log_error, "error: ", 1)
LOG_FN(log_status, "", 1)
