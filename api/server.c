/*
 * The HTTP server of the API: libmicrohttpd on a unix socket we create, bind and listen on
 * ourselves, driven by one thread of ours (the API thread) through MHD's external epoll mode:
 * the thread loads its seccomp filter before it accepts anything. Each request's body is
 * collected (at most API_MAX_BODY bytes), routed and validated by api/routes.c, and, when
 * valid, handed to the VMM thread through the channel; its reply goes back as the response.
 */
#include "api.h"
#include "routes.h"

#include "seccomp/filters.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#define API_TIMEOUT_SEC 10 /* a client silent this long is dropped */
#define API_MAX_CONNS   64
/* libmicrohttpd's per-connection pool: headers and read buffer. The body need not fit: each
 * chunk is copied into the request's own buffer. At 32 KiB the pool comes from the heap
 * instead of an mmap/munmap (and 17 page faults) per connection. */
#define API_CONN_MEMORY ((size_t)32 * 1024)
#define API_BACKLOG     64
#define API_DRAIN_MAX   (1u << 20) /* an oversized body up to this is read before the 400 */

struct api_server {
	struct MHD_Daemon *mhd;
	struct api_channel *ch;
	char *path;
	dev_t dev; /* the socket file we created: only that one is unlinked at stop */
	ino_t ino;
	int replying; /* responses queued and not yet sent (atomic) */
	int stop_fd;  /* eventfd: the VMM thread asks the API thread to finish */
	pthread_t thread;
	/* start-up: the API thread says whether its filter is loaded (1) or not (-1) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int started;
	char start_err[512];
};

/* Per-request state, in MHD's con_cls (made by uri_seen, before the headers are parsed). */
struct request {
	const char *raw_uri; /* the request line's URI as received, in MHD's buffer */
	size_t raw_len;      /* its length up to the first NUL */
	bool nul_in_uri;     /* a NUL byte in the path: raw, or escaped as %00 */
	bool started;
	char *buf;
	size_t len, cap;
	bool too_big;
	size_t dropped; /* bytes read and dropped past the limit */
	bool replied;   /* a response is queued: counted in replying until completed */
	struct api_server *server;
};

static int srv_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int srv_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Queue status with body (malloc'd JSON, owned by the response from here on) or none. */
static enum MHD_Result send_reply(struct MHD_Connection *conn, unsigned status, char *body)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (body) {
		resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
		if (!resp) {
			free(body);
			return MHD_NO;
		}
		if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
		                            "application/json") != MHD_YES) {
			MHD_destroy_response(resp);
			return MHD_NO;
		}
	} else {
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
	}
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* From here on the request has (or will have) a response that stop should let go out. */
static void mark_replied(struct request *r)
{
	r->replied = true;
	__atomic_add_fetch(&r->server->replying, 1, __ATOMIC_SEQ_CST);
}

static enum MHD_Result send_fault(struct MHD_Connection *conn, const char *msg)
{
	struct api_msg m;

	memset(&m, 0, sizeof(m));
	api_reply_error(&m, "%s", msg);
	return send_reply(conn, 400, m.body);
}

static bool append(struct request *r, const char *data, size_t n)
{
	if (r->too_big) {
		/* Past the limit: the rest is read and dropped, so that the client, still
		 * writing, gets its 400 rather than a reset connection; up to a point. */
		r->dropped += n;
		return r->dropped <= API_DRAIN_MAX;
	}
	if (n > API_MAX_BODY - r->len) {
		r->too_big = true;
		free(r->buf);
		r->buf = NULL;
		r->len = r->cap = 0;
		return true;
	}
	if (r->len + n > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		char *b;

		while (cap < r->len + n)
			cap *= 2;
		if (cap > API_MAX_BODY)
			cap = API_MAX_BODY;
		if (!(b = realloc(r->buf, cap + 1)))
			return false;
		r->buf = b;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	r->buf[r->len] = 0;
	return true;
}

/* MHD's URI callback: the request line's URI before MHD unescapes it in place. */
static void *uri_seen(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct request *r = calloc(1, sizeof(*r));

	(void)conn;
	if (r) {
		r->server = cls;
		r->raw_uri = uri;
		r->raw_len = strlen(uri);
		r->nul_in_uri = strstr(uri, "%00") != NULL;
	}
	return r;
}

/* MHD parses the request line in place: the version follows the URI and its terminator. A
 * raw NUL in the URI ends MHD's string early, so the version then lies further on. */
static bool raw_nul_in_uri(const struct request *r, const char *version)
{
	return version && version > r->raw_uri && version != r->raw_uri + r->raw_len + 1;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
	struct request *r = *con_cls;
	struct api_msg m;
	char err[1024];
	enum MHD_Result ret;

	(void)cls;
	if (!r)
		return MHD_NO; /* uri_seen is out of memory */
	if (!r->started) {
		const char *cl;

		r->started = true;
		if (r->nul_in_uri || raw_nul_in_uri(r, version)) {
			r->nul_in_uri = true;
			r->too_big = true; /* the body, if any, is read and dropped */
			return MHD_YES;
		}
		/* Headers are in: refuse an oversized body before reading any of it. */
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > API_MAX_BODY) {
			r->too_big = true;
			if (strtoull(cl, NULL, 10) <= API_DRAIN_MAX)
				return MHD_YES; /* refused once it has been read */
			mark_replied(r);
			return send_fault(conn, "request body exceeds 51200 bytes");
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		bool ok = append(r, upload_data, *upload_data_size);

		*upload_data_size = 0;
		return ok ? MHD_YES : MHD_NO;
	}
	if (r->replied)
		return MHD_YES;
	mark_replied(r);
	if (r->nul_in_uri)
		return send_fault(conn, "the request path contains a NUL byte");
	if (r->too_big)
		return send_fault(conn, "request body exceeds 51200 bytes");

	if (api_route(method, url, r->buf, r->len, &m, err, sizeof(err)))
		return send_fault(conn, err);
	api_channel_call(r->server->ch, &m);
	ret = send_reply(conn, m.status >= 100 && m.status <= 599 ? (unsigned)m.status : 500,
	                 m.status == 204 ? NULL : m.body);
	if (m.status != 204)
		m.body = NULL; /* the response owns it now */
	api_msg_free(&m);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
	struct request *r = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (r) {
		if (r->replied)
			__atomic_sub_fetch(&r->server->replying, 1, __ATOMIC_SEQ_CST);
		free(r->buf);
		free(r);
		*con_cls = NULL;
	}
}

/* A socket file at path: a stale one (nobody listening) is removed, a live one is an error,
 * anything that is not a socket is an error. */
static int clear_stale(const char *path, const struct sockaddr_un *sa, char *err, size_t errlen)
{
	struct stat st;
	int fd, r, e;

	if (lstat(path, &st)) {
		if (errno == ENOENT)
			return 0;
		return srv_fail(err, errlen, "cannot use socket %s: %s", path, strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return srv_fail(err, errlen, "%s exists and is not a socket", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return srv_fail(err, errlen, "socket: %s", strerror(errno));
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	e = errno;
	close(fd);
	if (r == 0 || e == EAGAIN || e == EINPROGRESS) /* EAGAIN: alive, backlog full */
		return srv_fail(err, errlen, "socket %s is in use by another process", path);
	if (e != ECONNREFUSED)
		return srv_fail(err, errlen, "cannot check socket %s: %s", path, strerror(e));
	if (unlink(path) && errno != ENOENT)
		return srv_fail(err, errlen, "cannot remove stale socket %s: %s", path,
		                strerror(errno));
	return 0;
}

static int listen_on(const char *path, struct api_server *s, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (!path[0] || strlen(path) >= sizeof(sa.sun_path))
		return srv_fail(err, errlen,
		                "socket path '%s' is empty or too long (at most %zu bytes)", path,
		                sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, path);
	if (clear_stale(path, &sa, err, errlen))
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return srv_fail(err, errlen, "socket: %s", strerror(errno));
	/* The socket file takes its mode from the socket inode (and the umask): set it before
	 * bind, so the file never exists with a wider mode, without touching the process-wide
	 * umask that other threads may be relying on. */
	if (fchmod(fd, 0600) || bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		srv_fail(err, errlen, "cannot bind socket %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (stat(path, &st) || ((st.st_mode & 07777) != 0600 && chmod(path, 0600)) ||
	    listen(fd, API_BACKLOG)) {
		srv_fail(err, errlen, "cannot listen on socket %s: %s", path, strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	return fd;
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The API thread's loop: wait on MHD's epoll set (and, until asked to stop, the stop eventfd)
 * for as long as MHD's own timeouts allow, then let MHD do its work. Asked to stop, it stops
 * accepting, lets the responses already queued (a 400 from a closed channel included) reach
 * their clients for up to a second, and shuts MHD down. */
static void serve(struct api_server *s, int epfd)
{
	MHD_socket listen_fd = MHD_INVALID_SOCKET;
	bool stopping = false;
	double give_up = 0;

	for (;;) {
		struct pollfd p[2] = {{.fd = epfd, .events = POLLIN},
		                      {.fd = s->stop_fd, .events = POLLIN}};
		MHD_UNSIGNED_LONG_LONG t;
		int timeout = -1;

		if (MHD_get_timeout(s->mhd, &t) == MHD_YES)
			timeout = t > INT_MAX ? INT_MAX : (int)t;
		if (stopping) {
			if (!__atomic_load_n(&s->replying, __ATOMIC_SEQ_CST) ||
			    mono_now() >= give_up)
				break;
			if (timeout < 0 || timeout > 10)
				timeout = 10;
		}
		if (poll(p, stopping ? 1 : 2, timeout) < 0 && errno != EINTR)
			break;
		if (!stopping && (p[1].revents & POLLIN)) {
			stopping = true;
			give_up = mono_now() + 1.0;
			listen_fd = MHD_quiesce_daemon(s->mhd); /* ours to close from here on */
		}
		MHD_run(s->mhd);
	}
	MHD_stop_daemon(s->mhd);
	s->mhd = NULL;
	if (listen_fd != MHD_INVALID_SOCKET)
		close(listen_fd);
}

static void *api_thread(void *arg)
{
	struct api_server *s = arg;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	struct error err = {""};
	int rc = info ? 0 : err_set(&err, "libmicrohttpd has no epoll set");

	pthread_setname_np(pthread_self(), "hearth-api");
	/* The filter goes on before the first accept (seccomp/filters.c). */
	if (!rc)
		rc = seccomp_install(THREAD_API, &err);
	pthread_mutex_lock(&s->lock);
	s->started = rc ? -1 : 1;
	snprintf(s->start_err, sizeof(s->start_err), "%s", err.msg);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (!rc)
		serve(s, info->epoll_fd);
	return NULL;
}

static void free_server(struct api_server *s)
{
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}

struct api_server *hearth_api_server_start(const char *path, struct api_channel *ch, char *err,
                                           size_t errlen)
{
	struct api_server *s = calloc(1, sizeof(*s));
	sigset_t all, old;
	int fd, rc;

	if (!s || !(s->path = strdup(path))) {
		free(s);
		srv_fail(err, errlen, "out of memory");
		return NULL;
	}
	s->ch = ch;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		srv_fail(err, errlen, "eventfd: %s", strerror(errno));
		free_server(s);
		return NULL;
	}
	if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES) {
		srv_fail(err, errlen, "libmicrohttpd was built without epoll support");
		free_server(s);
		return NULL;
	}
	if ((fd = listen_on(path, s, err, errlen)) < 0) {
		free_server(s);
		return NULL;
	}
	/* External polling (no MHD thread): the API thread below runs MHD. */
	s->mhd = MHD_start_daemon(MHD_USE_EPOLL, 0, NULL, NULL, handle, s, MHD_OPTION_LISTEN_SOCKET,
	                          fd, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)API_TIMEOUT_SEC,
	                          MHD_OPTION_CONNECTION_LIMIT, (unsigned int)API_MAX_CONNS,
	                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, API_CONN_MEMORY,
	                          MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
	                          MHD_OPTION_URI_LOG_CALLBACK, uri_seen, s, MHD_OPTION_END);
	if (!s->mhd) {
		srv_fail(err, errlen, "cannot start the API server on %s", path);
		unlink(path);
		close(fd);
		free_server(s);
		return NULL;
	}
	/* The API thread inherits this mask: keep the VMM's signals away from it. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&s->thread, NULL, api_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		srv_fail(err, errlen, "cannot start the API thread: %s", strerror(rc));
	} else {
		pthread_mutex_lock(&s->lock);
		while (!s->started)
			pthread_cond_wait(&s->cond, &s->lock);
		pthread_mutex_unlock(&s->lock);
		if (s->started > 0)
			return s;
		pthread_join(s->thread, NULL);
		srv_fail(err, errlen, "API thread: %s", s->start_err);
	}
	MHD_stop_daemon(s->mhd); /* closes the listening socket */
	unlink(path);
	free_server(s);
	return NULL;
}

void hearth_api_server_stop(struct api_server *s)
{
	uint64_t one = 1;
	struct stat st;

	if (!s)
		return;
	/* A request waiting on the VMM thread is answered now, so the API thread can finish. */
	api_channel_close(s->ch);
	while (write(s->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(s->thread, NULL);
	if (!stat(s->path, &st) && S_ISSOCK(st.st_mode) && st.st_dev == s->dev &&
	    st.st_ino == s->ino)
		unlink(s->path);
	free_server(s);
}
