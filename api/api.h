/*
 * The control plane's message interface.
 *
 * The API thread (api/server.c) parses and validates each HTTP request into a struct
 * api_msg and hands it to the VMM thread through a struct api_channel; the VMM thread owns
 * all state, applies the message and fills in the reply. The API thread never touches KVM
 * or devices, and the VMM thread never parses HTTP.
 */
#ifndef HEARTH_API_H
#define HEARTH_API_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/vm_config.h"

#define API_MAX_BODY 51200 /* Firecracker's limit on request bodies */

enum api_op {
	API_GET_INFO,           /* GET / */
	API_GET_VERSION,        /* GET /version */
	API_GET_VM_CONFIG,      /* GET /vm/config */
	API_GET_MACHINE_CONFIG, /* GET /machine-config */
	API_PUT_BOOT_SOURCE,    /* PUT /boot-source */
	API_PUT_MACHINE_CONFIG, /* PUT /machine-config */
	API_PATCH_MACHINE_CONFIG,
	API_PUT_DRIVE,   /* PUT /drives/{id} */
	API_PATCH_DRIVE, /* PATCH /drives/{id}: path_on_host */
	API_PUT_NET,     /* PUT /network-interfaces/{id} */
	API_PATCH_NET,
	API_ACTION,          /* PUT /actions */
	API_PATCH_VM,        /* PATCH /vm: Paused / Resumed */
	API_PUT_LOGGER,      /* PUT /logger */
	API_PUT_METRICS,     /* PUT /metrics */
	API_SNAPSHOT_CREATE, /* PUT /snapshot/create */
	API_SNAPSHOT_LOAD,   /* PUT /snapshot/load */
};

enum api_action { ACTION_INSTANCE_START, ACTION_SEND_CTRL_ALT_DEL, ACTION_FLUSH_METRICS };

/* Which machine-config fields a request carried (PATCH changes only those). */
enum {
	MC_VCPUS = 1 << 0,
	MC_MEM = 1 << 1,
	MC_SMT = 1 << 2,
	MC_DIRTY = 1 << 3,
	MC_MMU = 1 << 4,
};

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

struct api_msg {
	enum api_op op;
	/* The parsed request; strings are malloc'd and freed by api_msg_free. */
	union {
		struct {
			char *kernel, *initrd, *cmdline;
		} boot;
		struct {
			unsigned has; /* MC_* */
			unsigned vcpus;
			uint64_t mem_mib;
			bool smt, track_dirty_pages;
			enum mmu_mode mmu;
		} machine;
		struct drive_config drive; /* PATCH: id and path only */
		struct net_config net;
		enum api_action action;
		bool pause; /* PATCH /vm */
		struct {
			char *path;
			enum log_level level;
			bool has_level, show_level, show_origin;
		} logger;
		struct {
			char *path;
		} metrics;
		struct {
			char *state_path, *mem_path;
			bool diff;
		} snap_create;
		struct snapshot_load_params snap_load;
	} u;
	/* The reply, filled by the VMM thread: 200 with a JSON body, 204, or 400 with
	 * {"fault_message": ...}. body is malloc'd (or NULL). */
	int status;
	char *body;
	/* Completion: the API thread waits until done is set. */
	bool done;
	pthread_mutex_t *lock;
	pthread_cond_t *cond;
};

/* Free the strings m owns (the request's, by op, and the reply body) and NULL them; m itself
 * is not freed. */
void api_msg_free(struct api_msg *m);
/* Fill m's reply as 400 {"fault_message": ...}. */
void api_reply_error(struct api_msg *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fill m's reply as 200 with a JSON body (takes ownership of json), or 204 when json is NULL. */
void api_reply(struct api_msg *m, char *json);

/* A one-slot mailbox between the API thread and the VMM thread. The API thread handles one
 * request at a time, so one slot is enough. */
struct api_channel {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct api_msg *pending; /* set by the API thread, taken by the VMM thread */
	int wake_fd;             /* eventfd the VMM thread polls */
	bool closed;             /* the VMM thread is gone: requests get 400 at once */
};

int api_channel_init(struct api_channel *ch);
/* API thread: submit and wait for the reply. */
void api_channel_call(struct api_channel *ch, struct api_msg *m);
/* VMM thread: take the pending message (or NULL) after wake_fd became readable. */
struct api_msg *api_channel_take(struct api_channel *ch);
/* VMM thread: the reply is filled; wake the API thread. */
void api_channel_done(struct api_channel *ch, struct api_msg *m);
/* VMM thread: stop serving; pending and later calls are answered with 400. A message already
 * taken must still be finished with api_channel_done. */
void api_channel_close(struct api_channel *ch);
/* Release the eventfd and the lock (after the server is stopped). */
void api_channel_destroy(struct api_channel *ch);

/* The HTTP server on a unix socket (API thread). */
struct api_server;
/* Bind `path` (mode 0600; a stale socket file is replaced only when nothing listens on it,
 * a live one is never stolen) and start serving in a new thread. */
struct api_server *api_server_start(const char *path, struct api_channel *ch, char *err,
                                    size_t errlen);
/* Closes the channel first (a request waiting on the VMM is answered 400), then stops the
 * server thread, closes the socket and unlinks the socket file if it is still ours. */
void api_server_stop(struct api_server *s);
/* Where to find hearth-api.so: the directory of argv[0] (api/server_loader.c). */
void api_server_set_module_dir(const char *argv0);

/* JSON <-> model (api/config_json.c). The VMM thread uses these to render replies. */
char *config_to_json(const struct vm_config *c);         /* GET /vm/config shape */
char *machine_config_to_json(const struct vm_config *c); /* GET /machine-config */
/* Parse a config file (the GET /vm/config shape) into c (defaults already set). Returns 0,
 * or -1 with a message naming the field. */
int config_from_json(const char *text, struct vm_config *c, char *err, size_t errlen);

#endif
