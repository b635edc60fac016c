#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool log_verbose;

/* The file named by PUT /logger: Firecracker-style lines, filtered by level. */
static struct {
	int fd;
	enum log_level level;
	bool show_level, show_origin;
	char id[72];
} sink = {.fd = -1};

int log_open_file(const char *path, bool has_level, enum log_level level, bool show_level,
                  bool show_origin, const char *id, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);

	if (fd < 0) {
		snprintf(err, errlen, "log_path '%s' cannot be opened: %s", path, strerror(errno));
		return -1;
	}
	if (sink.fd >= 0)
		close(sink.fd);
	sink.fd = fd;
	sink.level = has_level ? level : LOG_LEVEL_INFO;
	sink.show_level = show_level;
	sink.show_origin = show_origin;
	snprintf(sink.id, sizeof(sink.id), "%s", id);
	return 0;
}

static void to_file(enum log_level level, const char *name, const char *msg)
{
	char line[1300], thread[16] = "?";
	struct timespec ts;
	struct tm tm;
	int n;

	if (sink.fd < 0 || level > sink.level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	pthread_getname_np(pthread_self(), thread, sizeof(thread));
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ [%s:%s]%s%s%s %s\n",
	             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	             ts.tv_nsec, sink.id, thread, sink.show_level ? " [" : "",
	             sink.show_level ? name : "", sink.show_level ? "]" : "", msg);
	if (n > 0 &&
	    write(sink.fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line)) < 0) {
		/* a full FIFO drops the line; the VMM never blocks on its log */
	}
}

static void vlog(enum log_level level, const char *name, const char *prefix, bool to_stderr,
                 const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One write per line, so lines from different threads do not interleave. */
	if (to_stderr)
		fprintf(stderr, "hearth: %s%s\n", prefix, buf);
	to_file(level, name, buf);
}

#define LOG_FN(fn, level, name, prefix, cond)                                                      \
	void fn(const char *fmt, ...)                                                              \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		vlog(level, name, prefix, cond, fmt, ap);                                          \
		va_end(ap);                                                                        \
	}

LOG_FN(log_info, LOG_LEVEL_INFO, "Info", "", log_verbose)
LOG_FN(log_warn, LOG_LEVEL_WARN, "Warn", "warning: ", true)
LOG_FN(log_error, LOG_LEVEL_ERROR, "Error", "error: ", true)
LOG_FN(log_status, LOG_LEVEL_INFO, "Info", "", true)
