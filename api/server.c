/*
 * The HTTP server of the API: libmicrohttpd on a unix socket we create, bind and listen on
 * ourselves, with one internal polling thread (the API thread). Each request's body is
 * collected (at most API_MAX_BODY bytes), routed and validated by api/routes.c, and, when
 * valid, handed to the VMM thread through the channel; its reply goes back as the response.
 */
#include "api.h"
#include "routes.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#define API_TIMEOUT_SEC 10 /* a client silent this long is dropped */
#define API_MAX_CONNS   64
#define API_CONN_MEMORY ((size_t)API_MAX_BODY + 16 * 1024) /* headers + a whole body */
#define API_BACKLOG     64

struct api_server {
	struct MHD_Daemon *mhd;
	struct api_channel *ch;
	char *path;
	dev_t dev; /* the socket file we created: only that one is unlinked at stop */
	ino_t ino;
	int replying; /* responses queued and not yet sent (atomic) */
};

/* Per-request state, in MHD's con_cls. */
struct request {
	char *buf;
	size_t len, cap;
	bool too_big;
	bool replied; /* a response is queued: counted in replying until completed */
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
	if (r->too_big)
		return true; /* past the limit: the rest is read and dropped */
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

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
	struct api_server *s = cls;
	struct request *r = *con_cls;
	struct api_msg m;
	char err[1024];
	enum MHD_Result ret;

	(void)version;
	if (!r) {
		const char *cl;

		/* Headers are in: refuse an oversized body before reading any of it. */
		if (!(r = calloc(1, sizeof(*r))))
			return MHD_NO;
		r->server = s;
		*con_cls = r;
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > API_MAX_BODY) {
			r->too_big = true;
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
	if (r->too_big)
		return send_fault(conn, "request body exceeds 51200 bytes");

	if (api_route(method, url, r->buf, r->len, &m, err, sizeof(err)))
		return send_fault(conn, err);
	api_channel_call(s->ch, &m);
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

struct api_server *hearth_api_server_start(const char *path, struct api_channel *ch, char *err,
                                    size_t errlen)
{
	struct api_server *s = calloc(1, sizeof(*s));
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
	sigset_t all, old;
	int fd;

	if (!s || !(s->path = strdup(path))) {
		free(s);
		srv_fail(err, errlen, "out of memory");
		return NULL;
	}
	s->ch = ch;
	if ((fd = listen_on(path, s, err, errlen)) < 0) {
		free(s->path);
		free(s);
		return NULL;
	}
	if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
		flags |= MHD_USE_EPOLL;
	/* The API thread inherits this mask: keep the VMM's signals away from it. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, s, MHD_OPTION_LISTEN_SOCKET, fd,
	                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)API_TIMEOUT_SEC,
	                          MHD_OPTION_CONNECTION_LIMIT, (unsigned int)API_MAX_CONNS,
	                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, API_CONN_MEMORY,
	                          MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!s->mhd) {
		srv_fail(err, errlen, "cannot start the API server on %s", path);
		unlink(path);
		close(fd);
		free(s->path);
		free(s);
		return NULL;
	}
	return s;
}

void hearth_api_server_stop(struct api_server *s)
{
	struct stat st;
	MHD_socket fd;

	if (!s)
		return;
	/* A request waiting on the VMM thread is answered now, so the API thread can finish. */
	api_channel_close(s->ch);
	/* Quiesce hands the listening socket back to us: close it only after the stop. */
	fd = MHD_quiesce_daemon(s->mhd);
	/* Let the responses already queued (that 400 included) reach their clients. */
	for (int i = 0; i < 100 && __atomic_load_n(&s->replying, __ATOMIC_SEQ_CST); i++)
		usleep(10 * 1000);
	MHD_stop_daemon(s->mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	if (!stat(s->path, &st) && S_ISSOCK(st.st_mode) && st.st_dev == s->dev &&
	    st.st_ino == s->ino)
		unlink(s->path);
	free(s->path);
	free(s);
}
