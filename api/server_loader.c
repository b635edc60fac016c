/*
 * The HTTP server lives in a module (hearth-api.so, next to the hearth binary) that is loaded
 * only when --api-sock is given: libmicrohttpd and its dependencies (GnuTLS among them) cost
 * ~1.5 ms of start time and ~2.4 MiB of memory that a one-shot VM does not need.
 */
#include "api.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static char module_dir[4096] = ".";
static struct api_server *(*start_fn)(const char *, struct api_channel *, char *, size_t);
static void (*stop_fn)(struct api_server *);

void api_server_set_module_dir(const char *argv0)
{
	const char *slash = strrchr(argv0, '/');

	if (slash)
		snprintf(module_dir, sizeof(module_dir), "%.*s", (int)(slash - argv0), argv0);
}

static int load(char *err, size_t errlen)
{
	char path[4200];
	void *h;

	if (start_fn)
		return 0;
	snprintf(path, sizeof(path), "%s/hearth-api.so", module_dir);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "cannot load the API module: %s", dlerror());
		return -1;
	}
	start_fn = (struct api_server * (*)(const char *, struct api_channel *, char *, size_t))
	    dlsym(h, "hearth_api_server_start");
	stop_fn = (void (*)(struct api_server *))dlsym(h, "hearth_api_server_stop");
	if (!start_fn || !stop_fn) {
		snprintf(err, errlen, "%s: not a hearth API module", path);
		start_fn = NULL;
		return -1;
	}
	return 0;
}

struct api_server *api_server_start(const char *path, struct api_channel *ch, char *err,
                                    size_t errlen)
{
	if (load(err, errlen))
		return NULL;
	return start_fn(path, ch, err, errlen);
}

void api_server_stop(struct api_server *s)
{
	if (stop_fn && s)
		stop_fn(s);
}
