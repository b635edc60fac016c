/*
 * api_client: the load and timing client of bench/api.sh (the control-plane benchmark).
 *
 *   api_client start  HEARTH RUNS [ARGS...]      process start -> socket ready, wall and CPU
 *   api_client get    HEARTH REQUESTS            GET / latency: keep-alive, and one
 *                                                connection per request
 *   api_client boot   HEARTH RUNS KERNEL MMU     InstanceStart -> first guest console byte
 *   api_client listen PATH                       a baseline server: bind, listen, pause
 *
 * HEARTH is the binary to run (it gets --api-sock PATH, plus ARGS for `start`); with HEARTH
 * "baseline", `start` runs `api_client listen PATH` instead: a process that does nothing but
 * create the socket, to give the floor of exec + dynamic loading on this host.
 *
 * Clocks: wall times are CLOCK_MONOTONIC, taken in this process; start times count from
 * just before posix_spawn. CPU times are the child's process CPU clock (clock_getcpuclockid:
 * the CLOCK_PROCESS_CPUTIME_ID of that process, every thread, ns resolution), read by this
 * process right after the event. That is the clock Firecracker's process_startup_time_cpu_us
 * uses (its "8 CPU ms" spec); it includes exec and the dynamic loader.
 *
 * Output: human-readable lines, and one machine-readable line per series:
 *   RESULT <name> n=<n> min=<us> p50=<us> p90=<us> p99=<us> max=<us> mean=<us>
 * and KV <name> <value> lines for single values. All times in microseconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define POLL_NS       50000 /* socket-ready poll period: 50 us */
#define READY_LIMIT_S 10.0  /* give up on a child whose socket is not up by then */
#define IO_TIMEOUT_MS 10000
#define RESP_MAX      (256 * 1024)

static const char *prog = "api_client";

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double cpu_us_of(clockid_t clk)
{
	struct timespec ts;

	if (clock_gettime(clk, &ts))
		return -1;
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* ---- statistics ------------------------------------------------------------------- */

struct series {
	const char *name;
	double *v;
	size_t n, cap;
};

static void add(struct series *s, double x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (!s->v)
			die("out of memory");
	}
	s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, size_t n, double q)
{
	size_t k = (size_t)(q * (double)n + 0.999999);

	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

static void report(struct series *s)
{
	double sum = 0;

	if (!s->n) {
		printf("RESULT %s n=0\n", s->name);
		return;
	}
	qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	for (size_t i = 0; i < s->n; i++)
		sum += s->v[i];
	printf("RESULT %s n=%zu min=%.1f p50=%.1f p90=%.1f p99=%.1f max=%.1f mean=%.1f\n", s->name,
	       s->n, s->v[0], pct(s->v, s->n, 0.50), pct(s->v, s->n, 0.90), pct(s->v, s->n, 0.99),
	       s->v[s->n - 1], sum / (double)s->n);
	fflush(stdout);
}

/* ---- child processes -------------------------------------------------------------- */

struct child {
	pid_t pid;
	clockid_t cpu;
	int out_fd; /* read end of the child's stdout, or -1 */
	char sock[108];
	double t_spawn;
};

static char self_exe[PATH_MAX];
static char sock_dir[PATH_MAX];

/*
 * Start HEARTH --api-sock <fresh path> [extra...] (or the baseline listener). stdout goes to
 * a pipe when want_out, else to /dev/null; stderr to log_path (or /dev/null); stdin is
 * /dev/null. t_spawn is taken just before posix_spawn (a vfork: the parent is stopped
 * until the child execs, so nothing of ours runs in between).
 */
static void spawn(struct child *c, const char *hearth, char **extra, bool want_out,
                  const char *log_path, char **envp)
{
	static unsigned seq;
	posix_spawn_file_actions_t fa;
	char *argv[64];
	int argc = 0, pipefd[2] = {-1, -1}, rc;

	if (snprintf(c->sock, sizeof(c->sock), "%.64s/api-%d-%u.sock", sock_dir, (int)getpid(),
	             seq++) >= (int)sizeof(c->sock))
		die("socket path too long");
	unlink(c->sock);
	if (!strcmp(hearth, "baseline")) {
		argv[argc++] = self_exe;
		argv[argc++] = "listen";
		argv[argc++] = c->sock;
	} else {
		argv[argc++] = (char *)hearth;
		argv[argc++] = "--api-sock";
		argv[argc++] = c->sock;
		for (; extra && *extra && argc < 62; extra++)
			argv[argc++] = *extra;
	}
	argv[argc] = NULL;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (want_out) {
		if (pipe2(pipefd, O_CLOEXEC))
			die("pipe: %s", strerror(errno));
		posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	} else {
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	}
	posix_spawn_file_actions_addopen(&fa, 2, log_path ? log_path : "/dev/null",
	                                 O_WRONLY | O_CREAT | O_TRUNC, 0644);
	c->t_spawn = now_us();
	rc = posix_spawn(&c->pid, argv[0], &fa, NULL, argv, envp ? envp : environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		die("cannot run %s: %s", argv[0], strerror(rc));
	if (want_out) {
		close(pipefd[1]);
		c->out_fd = pipefd[0];
	} else {
		c->out_fd = -1;
	}
	if ((rc = clock_getcpuclockid(c->pid, &c->cpu)))
		die("clock_getcpuclockid(%d): %s", (int)c->pid, strerror(rc));
}

/* Has the child exited already? Then say how and fail. */
static void check_alive(struct child *c, const char *log_path)
{
	int st;

	if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
		c->pid = 0;
		die("the child exited early (%s %d)%s%s", WIFEXITED(st) ? "status" : "signal",
		    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), log_path ? "; see " : "",
		    log_path ? log_path : "");
	}
}

static int try_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	if (errno != ENOENT && errno != ECONNREFUSED && errno != EAGAIN)
		die("connect %s: %s", path, strerror(errno));
	close(fd);
	return -1;
}

/*
 * Poll connect() every 50 us until the socket accepts; the child's CPU clock is read right
 * after. Returns the connected fd; *t and *cpu get the wall time (since spawn) and CPU time.
 */
static int wait_ready(struct child *c, double *t, double *cpu, const char *log_path)
{
	const struct timespec period = {0, POLL_NS};
	unsigned tries = 0;
	int fd;

	for (;;) {
		fd = try_connect(c->sock);
		if (fd >= 0) {
			double tw = now_us();

			*cpu = cpu_us_of(c->cpu);
			*t = tw - c->t_spawn;
			return fd;
		}
		if (++tries % 64 == 0) {
			check_alive(c, log_path);
			if (now_us() - c->t_spawn > READY_LIMIT_S * 1e6)
				die("the socket %s was not ready after %.0f s", c->sock,
				    READY_LIMIT_S);
		}
		nanosleep(&period, NULL);
	}
}

/* SIGTERM, wait, return the exit status (or 128 + signal); rusage CPU in *user, *sys. */
static int stop_child(struct child *c, double *user, double *sys)
{
	struct rusage ru;
	int st;

	if (c->out_fd >= 0)
		close(c->out_fd);
	c->out_fd = -1;
	if (!c->pid)
		return -1;
	kill(c->pid, SIGTERM);
	if (wait4(c->pid, &st, 0, &ru) != c->pid)
		die("wait4: %s", strerror(errno));
	c->pid = 0;
	unlink(c->sock);
	if (user)
		*user = (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec;
	if (sys)
		*sys = (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- HTTP ------------------------------------------------------------------------- */

struct resp {
	int status;
	char buf[RESP_MAX + 1];
	size_t len;
	const char *body;
	size_t body_len;
};

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write to the API socket: %s", w < 0 ? strerror(errno) : "short write");
		p += w;
		n -= (size_t)w;
	}
}

static size_t format_request(char *buf, size_t cap, const char *method, const char *path,
                             const char *body)
{
	int n;

	if (body)
		n = snprintf(buf, cap,
		             "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
		             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		             method, path, strlen(body), body);
	else
		n = snprintf(
		    buf, cap,
		    "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n", method,
		    path);
	if (n < 0 || (size_t)n >= cap)
		die("request too long");
	return (size_t)n;
}

/*
 * Feed what is in r->buf: true once a whole response (headers + Content-Length bytes) is
 * there. No chunked encoding: hearth's replies always carry a Content-Length.
 */
static bool parse_resp(struct resp *r)
{
	const char *end, *p;
	size_t hlen, clen = 0;

	r->buf[r->len] = 0;
	if (!(end = strstr(r->buf, "\r\n\r\n")))
		return false;
	hlen = (size_t)(end - r->buf) + 4;
	if (sscanf(r->buf, "HTTP/1.%*d %d", &r->status) != 1)
		die("bad status line: %.80s", r->buf);
	for (p = strstr(r->buf, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n"))
		if (!strncasecmp(p + 2, "Content-Length:", 15))
			clen = strtoull(p + 17, NULL, 10);
	if (r->len < hlen + clen)
		return false;
	if (r->len > hlen + clen)
		die("unexpected bytes after the response");
	r->body = r->buf + hlen;
	r->body_len = clen;
	return true;
}

/* Read one response from fd (blocking, with a timeout). */
static void read_resp(int fd, struct resp *r)
{
	r->len = 0;
	r->status = 0;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		n = read(fd, r->buf + r->len, RESP_MAX - r->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (poll(&p, 1, IO_TIMEOUT_MS) <= 0)
				die("no reply from the API within %d ms", IO_TIMEOUT_MS);
			continue;
		}
		if (n < 0)
			die("read from the API socket: %s", strerror(errno));
		if (n == 0)
			die("the API closed the connection mid-response (%zu bytes in)", r->len);
		r->len += (size_t)n;
		if (parse_resp(r))
			return;
		if (r->len == RESP_MAX)
			die("response too large");
	}
}

static void set_timeouts(int fd)
{
	struct timeval tv = {IO_TIMEOUT_MS / 1000, 0};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static struct resp resp; /* one at a time: large, so not on the stack */

/* One request on a connected fd; dies unless the status is `expect`. */
static struct resp *call(int fd, const char *method, const char *path, const char *body, int expect)
{
	char req[4096];
	size_t n = format_request(req, sizeof(req), method, path, body);

	write_all(fd, req, n);
	read_resp(fd, &resp);
	if (resp.status != expect)
		die("%s %s: status %d (expected %d): %.*s", method, path, resp.status, expect,
		    (int)resp.body_len, resp.body);
	return &resp;
}

/* ---- start: process start -> socket ready ----------------------------------------- */

/* The environment for a child: ours, with LD_PRELOAD=shim and API_BENCH_MARK=mark. */
static char **mark_env(const char *shim, const char *mark)
{
	static char preload[PATH_MAX + 16], markvar[PATH_MAX + 32];
	size_t n = 0, k = 0;
	char **envp;

	while (environ[n])
		n++;
	if (!(envp = calloc(n + 3, sizeof(*envp))))
		die("out of memory");
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11) &&
		    strncmp(environ[i], "API_BENCH_MARK=", 15))
			envp[k++] = environ[i];
	snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", shim);
	snprintf(markvar, sizeof(markvar), "API_BENCH_MARK=%s", mark);
	envp[k++] = preload;
	envp[k++] = markvar;
	return envp;
}

/* The marks the shim wrote (bench/api_mark.c): "<event> <cpu ns> <monotonic ns>" lines.
 * "listen" is written just after listen() returns, so it may trail our connect by a
 * little: wait up to 2 s for it. */
struct marks {
	bool dl; /* dlopen of hearth-api.so seen */
	double dl_enter_cpu, dl_exit_cpu, dl_enter_mono, dl_exit_mono;
	double listen_cpu, listen_mono;
};

static bool read_marks(const char *path, struct marks *mk)
{
	for (int i = 0; i < 20000; i++) {
		FILE *f = fopen(path, "re");
		bool listen_seen = false;
		char ev[32];
		long long cpu, mono;

		memset(mk, 0, sizeof(*mk));
		if (f) {
			while (fscanf(f, "%31s %lld %lld", ev, &cpu, &mono) == 3) {
				double c = (double)cpu / 1e3, m = (double)mono / 1e3;

				if (!strcmp(ev, "dlopen_enter")) {
					mk->dl_enter_cpu = c;
					mk->dl_enter_mono = m;
				} else if (!strcmp(ev, "dlopen_exit")) {
					mk->dl_exit_cpu = c;
					mk->dl_exit_mono = m;
					mk->dl = true;
				} else if (!strcmp(ev, "listen")) {
					mk->listen_cpu = c;
					mk->listen_mono = m;
					listen_seen = true;
				}
			}
			fclose(f);
		}
		if (listen_seen)
			return true;
		usleep(100);
	}
	return false;
}

/* A read of another process's CPU clock below this is a kernel accounting artefact (seen
 * on a kvm_pvm guest: the running slice of a task on another CPU not yet accounted, reads
 * of 0 to 0.1 ms); exec of a libc-only program alone costs more than 0.5 ms there. Such
 * reads are dropped and counted. */
#define CPU_READ_FLOOR_US 500.0

static int cmd_start(const char *hearth, int runs, char **extra)
{
	struct series w_listen = {.name = "start_wall_listen_us"},
	              c_listen = {.name = "start_cpu_listen_us"},
	              w_conn = {.name = "start_wall_connect_us"},
	              c_conn = {.name = "start_cpu_connect_us"},
	              w_reply = {.name = "start_wall_first_reply_us"},
	              c_reply = {.name = "start_cpu_first_reply_us"},
	              c_life = {.name = "start_cpu_lifetime_us"},
	              c_pre = {.name = "start_cpu_before_dlopen_us"},
	              c_dl = {.name = "start_cpu_dlopen_api_us"},
	              c_post = {.name = "start_cpu_dlopen_to_listen_us"},
	              w_dl = {.name = "start_wall_dlopen_api_us"};
	const char *log_path = getenv("API_BENCH_LOG");
	const char *shim = getenv("API_BENCH_PRELOAD");
	bool baseline = !strcmp(hearth, "baseline");
	unsigned dropped_conn = 0, dropped_reply = 0;
	char mark[PATH_MAX];
	char **envp = NULL;

	if (shim) {
		if (snprintf(mark, sizeof(mark), "%s/api-mark-%d.txt", sock_dir, (int)getpid()) >=
		    (int)sizeof(mark))
			die("mark path too long");
		envp = mark_env(shim, mark);
	}
	for (int i = 0; i < runs; i++) {
		struct child c;
		double t, cpu, user, sys;
		int fd, st;

		if (shim)
			unlink(mark);
		spawn(&c, hearth, extra, false, log_path, envp);
		fd = wait_ready(&c, &t, &cpu, log_path);
		add(&w_conn, t);
		if (cpu >= CPU_READ_FLOOR_US)
			add(&c_conn, cpu);
		else
			dropped_conn++;
		if (getenv("API_BENCH_VERBOSE"))
			fprintf(stderr, "run %d: connect after %.1f us wall, %.1f us CPU\n", i, t,
			        cpu);
		/* The first request on the connection that got in: answered once the API thread
		 * runs (libmicrohttpd started, seccomp filter loaded). The baseline does not
		 * answer. */
		if (!baseline) {
			set_timeouts(fd);
			call(fd, "GET", "/", NULL, 200);
			t = now_us() - c.t_spawn;
			cpu = cpu_us_of(c.cpu);
			add(&w_reply, t);
			if (cpu >= CPU_READ_FLOOR_US)
				add(&c_reply, cpu);
			else
				dropped_reply++;
		}
		close(fd);
		if (shim) {
			struct marks mk;

			if (!read_marks(mark, &mk))
				die("run %d: no mark from the listen() shim in %s", i, mark);
			add(&c_listen, mk.listen_cpu);
			add(&w_listen, mk.listen_mono - c.t_spawn);
			if (mk.dl) {
				add(&c_pre, mk.dl_enter_cpu);
				add(&c_dl, mk.dl_exit_cpu - mk.dl_enter_cpu);
				add(&w_dl, mk.dl_exit_mono - mk.dl_enter_mono);
				add(&c_post, mk.listen_cpu - mk.dl_exit_cpu);
			}
		}
		st = stop_child(&c, &user, &sys);
		/* hearth exits 0 on SIGTERM before boot; the baseline dies of it. */
		if (st != 0 && st != 128 + SIGTERM)
			die("run %d: the child exited with %d", i, st);
		add(&c_life, user + sys);
	}
	if (shim) {
		unlink(mark);
		report(&w_listen);
		report(&c_listen);
		if (c_dl.n) {
			report(&c_pre);
			report(&c_dl);
			report(&w_dl);
			report(&c_post);
		}
	}
	report(&w_conn);
	report(&c_conn);
	if (!baseline) {
		report(&w_reply);
		report(&c_reply);
	}
	report(&c_life);
	printf("KV start_cpu_connect_dropped %u\n", dropped_conn);
	printf("KV start_cpu_reply_dropped %u\n", dropped_reply);
	return 0;
}

/* ---- get: GET / latency ----------------------------------------------------------- */

/* Context switches (voluntary + involuntary) of every thread of pid so far. */
static double ctx_switches(pid_t pid)
{
	char path[64], line[256];
	double total = 0;
	struct dirent *d;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(dir = opendir(path)))
		return -1;
	while ((d = readdir(dir))) {
		FILE *f;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/status", (int)pid, d->d_name);
		if (!(f = fopen(path, "re")))
			continue;
		while (fgets(line, sizeof(line), f)) {
			unsigned long long v;

			if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1 ||
			    sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
				total += (double)v;
		}
		fclose(f);
	}
	closedir(dir);
	return total;
}

static int connect_or_die(const char *path)
{
	int fd = try_connect(path);

	if (fd < 0)
		die("connect %s: %s", path, strerror(errno));
	set_timeouts(fd);
	return fd;
}

/* Minor page faults of the whole process so far (/proc/PID/stat field 10). */
static double minor_faults(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* After "(comm)": state ppid pgrp session tty_nr tpgid flags minflt */
	if (!(p = strrchr(buf, ')')) || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu", &v) != 1)
		return -1;
	return (double)v;
}

static int cmd_get(const char *hearth, int requests)
{
	struct series ka = {.name = "get_keepalive_us"}, nc = {.name = "get_newconn_us"};
	const char *log_path = getenv("API_BENCH_LOG");
	char req[512];
	size_t reqlen = format_request(req, sizeof(req), "GET", "/", NULL);
	struct child c;
	double t, cpu, cpu0, self0, wall0, ctx0, flt0;
	struct timespec self;
	int fd;

	spawn(&c, hearth, NULL, false, log_path, NULL);
	fd = wait_ready(&c, &t, &cpu, log_path);
	set_timeouts(fd);
	for (int i = 0; i < 200; i++) /* warm-up */
		call(fd, "GET", "/", NULL, 200);

	/* Keep-alive: one connection, requests back to back. */
	ctx0 = ctx_switches(c.pid);
	flt0 = minor_faults(c.pid);
	cpu0 = cpu_us_of(c.cpu);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &self);
	self0 = (double)self.tv_sec * 1e6 + (double)self.tv_nsec / 1e3;
	wall0 = now_us();
	for (int i = 0; i < requests; i++) {
		double t0 = now_us();

		write_all(fd, req, reqlen);
		read_resp(fd, &resp);
		add(&ka, now_us() - t0);
		if (resp.status != 200)
			die("GET /: status %d", resp.status);
	}
	t = now_us() - wall0;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &self);
	printf("KV get_keepalive_rate_per_s %.0f\n", requests / (t / 1e6));
	printf("KV get_keepalive_server_cpu_us_per_req %.1f\n",
	       (cpu_us_of(c.cpu) - cpu0) / requests);
	printf("KV get_keepalive_client_cpu_us_per_req %.1f\n",
	       ((double)self.tv_sec * 1e6 + (double)self.tv_nsec / 1e3 - self0) / requests);
	printf("KV get_keepalive_server_ctxsw_per_req %.2f\n",
	       (ctx_switches(c.pid) - ctx0) / requests);
	printf("KV get_keepalive_server_faults_per_req %.2f\n",
	       (minor_faults(c.pid) - flt0) / requests);
	printf("KV get_body_bytes %zu\n", resp.body_len);
	close(fd);

	/* A new connection per request: connect, send, read the whole reply, close. */
	ctx0 = ctx_switches(c.pid);
	flt0 = minor_faults(c.pid);
	cpu0 = cpu_us_of(c.cpu);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &self);
	self0 = (double)self.tv_sec * 1e6 + (double)self.tv_nsec / 1e3;
	wall0 = now_us();
	for (int i = 0; i < requests; i++) {
		double t0 = now_us();

		fd = connect_or_die(c.sock);
		write_all(fd, req, reqlen);
		read_resp(fd, &resp);
		add(&nc, now_us() - t0);
		close(fd);
		if (resp.status != 200)
			die("GET /: status %d", resp.status);
	}
	t = now_us() - wall0;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &self);
	printf("KV get_newconn_rate_per_s %.0f\n", requests / (t / 1e6));
	printf("KV get_newconn_server_cpu_us_per_req %.1f\n", (cpu_us_of(c.cpu) - cpu0) / requests);
	printf("KV get_newconn_server_ctxsw_per_req %.2f\n",
	       (ctx_switches(c.pid) - ctx0) / requests);
	printf("KV get_newconn_server_faults_per_req %.2f\n",
	       (minor_faults(c.pid) - flt0) / requests);
	printf("KV get_newconn_client_cpu_us_per_req %.1f\n",
	       ((double)self.tv_sec * 1e6 + (double)self.tv_nsec / 1e3 - self0) / requests);

	/* Still alive and answering after all that. */
	fd = connect_or_die(c.sock);
	call(fd, "GET", "/", NULL, 200);
	close(fd);
	if (stop_child(&c, NULL, NULL) != 0)
		die("hearth did not exit with 0 after SIGTERM");
	report(&ka);
	report(&nc);
	return 0;
}

/* ---- boot: InstanceStart -> first console byte ------------------------------------ */

static int cmd_boot(const char *hearth, int runs, const char *kernel, const char *mmu)
{
	char name[4][64], body[PATH_MAX + 256], out[4096];
	struct series reply, first, line, stopped;
	const char *log_path = getenv("API_BENCH_LOG");
	char req[512];
	size_t reqlen = format_request(req, sizeof(req), "PUT", "/actions",
	                               "{\"action_type\": \"InstanceStart\"}");

	snprintf(name[0], sizeof(name[0]), "boot_%s_reply_us", mmu);
	snprintf(name[1], sizeof(name[1]), "boot_%s_first_byte_us", mmu);
	snprintf(name[2], sizeof(name[2]), "boot_%s_first_line_us", mmu);
	snprintf(name[3], sizeof(name[3]), "boot_%s_stopped_us", mmu);
	reply = (struct series){.name = name[0]};
	first = (struct series){.name = name[1]};
	line = (struct series){.name = name[2]};
	stopped = (struct series){.name = name[3]};

	for (int i = 0; i < runs; i++) {
		struct child c;
		double t, cpu, t0, t_reply = 0, t_first = 0, t_line = 0;
		size_t out_len = 0;
		int fd, st;

		spawn(&c, hearth, NULL, true, log_path, NULL);
		fd = wait_ready(&c, &t, &cpu, log_path);
		set_timeouts(fd);
		snprintf(body, sizeof(body),
		         "{\"kernel_image_path\": \"%s\", \"boot_args\": \"api bench\"}", kernel);
		call(fd, "PUT", "/boot-source", body, 204);
		snprintf(body, sizeof(body),
		         "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"mmu\": \"%s\"}", mmu);
		call(fd, "PUT", "/machine-config", body, 204);

		/* InstanceStart: watch the reply and the console pipe at once (the guest may
		 * print before the 204 is out). */
		fcntl(fd, F_SETFL, O_NONBLOCK);
		fcntl(c.out_fd, F_SETFL, O_NONBLOCK);
		resp.len = 0;
		t0 = now_us();
		write_all(fd, req, reqlen);
		while (!t_reply || !t_line) {
			struct pollfd p[2] = {{.fd = fd, .events = t_reply ? 0 : POLLIN},
			                      {.fd = c.out_fd, .events = t_line ? 0 : POLLIN}};
			ssize_t n;

			if (poll(p, 2, IO_TIMEOUT_MS) <= 0)
				die("run %d (%s): no %s within %d ms", i, mmu,
				    t_reply ? "console line" : "reply", IO_TIMEOUT_MS);
			if (p[1].revents) {
				double tn = now_us();

				n = read(c.out_fd, out + out_len, sizeof(out) - 1 - out_len);
				if (n <= 0)
					die("run %d (%s): the console closed (%zu bytes: %.*s)", i,
					    mmu, out_len, (int)out_len, out);
				if (!t_first)
					t_first = tn - t0;
				out_len += (size_t)n;
				out[out_len] = 0;
				if (strchr(out, '\n'))
					t_line = tn - t0;
				else if (out_len == sizeof(out) - 1)
					die("run %d: console line too long", i);
			}
			if (p[0].revents) {
				double tn = now_us();

				n = read(fd, resp.buf + resp.len, RESP_MAX - resp.len);
				if (n < 0 && errno == EAGAIN)
					continue;
				if (n <= 0)
					die("run %d (%s): the API closed the connection", i, mmu);
				resp.len += (size_t)n;
				if (parse_resp(&resp)) {
					if (resp.status != 204)
						die("run %d (%s): InstanceStart: status %d: %.*s",
						    i, mmu, resp.status, (int)resp.body_len,
						    resp.body);
					t_reply = tn - t0;
				}
			}
		}
		if (strncmp(out, "hello from hearth", 17))
			die("run %d (%s): unexpected console output: %s", i, mmu, out);
		/* Until GET / says the guest stopped (a poll: at most ~100 us late). */
		fcntl(fd, F_SETFL, 0);
		for (;;) {
			struct resp *r = call(fd, "GET", "/", NULL, 200);

			if (strstr(r->body, "\"state\":\"Stopped\"")) {
				if (!strstr(r->body, "\"status\":0"))
					die("run %d (%s): the guest stopped badly: %.*s", i, mmu,
					    (int)r->body_len, r->body);
				snprintf(body, sizeof(body), "\"engine\":\"%s\"", mmu);
				if (strcmp(mmu, "auto") && !strstr(r->body, body))
					die("run %d: engine is not %s: %.*s", i, mmu,
					    (int)r->body_len, r->body);
				add(&stopped, now_us() - t0);
				break;
			}
			if (now_us() - t0 > IO_TIMEOUT_MS * 1e3)
				die("run %d (%s): the guest did not stop", i, mmu);
			usleep(100);
		}
		close(fd);
		add(&reply, t_reply);
		add(&first, t_first);
		add(&line, t_line);
		if ((st = stop_child(&c, NULL, NULL)) != 0)
			die("run %d (%s): hearth exited with %d", i, mmu, st);
	}
	report(&reply);
	report(&first);
	report(&line);
	report(&stopped);
	return 0;
}

/* ---- listen: the baseline server --------------------------------------------------- */

static int cmd_listen(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64))
		die("listen %s: %s", path, strerror(errno));
	pause();
	return 0;
}

static int count(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || v < 1 || v > 10000000)
		die("bad count '%s'", s);
	return (int)v;
}

int main(int argc, char **argv)
{
	const char *dir = getenv("API_BENCH_DIR");

	signal(SIGPIPE, SIG_IGN);
	if (readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1) < 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	if (dir && strlen(dir) > 64)
		die("API_BENCH_DIR is longer than 64 bytes: the socket path would not fit");
	snprintf(sock_dir, sizeof(sock_dir), "%s", dir ? dir : "/tmp");
	if (argc == 3 && !strcmp(argv[1], "listen"))
		return cmd_listen(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "start"))
		return cmd_start(argv[2], count(argv[3]), argv + 4);
	if (argc == 4 && !strcmp(argv[1], "get"))
		return cmd_get(argv[2], count(argv[3]));
	if (argc == 6 && !strcmp(argv[1], "boot"))
		return cmd_boot(argv[2], count(argv[3]), argv[4], argv[5]);
	fprintf(stderr,
	        "usage: %s start HEARTH|baseline RUNS [HEARTH-ARGS...]\n"
	        "       %s get HEARTH REQUESTS\n"
	        "       %s boot HEARTH RUNS KERNEL auto|shadow|hardware\n"
	        "       %s listen PATH\n",
	        prog, prog, prog, prog);
	return 2;
}
