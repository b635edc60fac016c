/*
 * The request layer of the API: HTTP method + path + body -> struct api_msg, with every
 * check that does not depend on the VM's state (JSON syntax, field names and types, ranges,
 * ids, features hearth does not have). The same per-section parsers read --config-file
 * (api/config_json.c), so a field means the same thing, and fails the same way, in both; the
 * rules for the values themselves are config/validate.h's, which the command line uses too.
 *
 * Error messages name the field: in a request body "field 'vcpu_count' must be an integer",
 * in a config file "machine-config.vcpu_count must be an integer".
 */
#ifndef HEARTH_API_ROUTES_H
#define HEARTH_API_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "api.h"

/*
 * Route and parse one request. url is the path (a "?query" is ignored); body may be NULL when
 * len is 0 and need not be NUL-terminated. Returns 0 with m filled (free it with api_msg_free),
 * or -1 with a message in err (then m holds nothing to free). The caller answers -1 with
 * 400 {"fault_message": err}.
 *
 * PUT /machine-config sets every MC_* bit in u.machine.has: fields the body leaves out take
 * Firecracker's defaults (smt and track_dirty_pages false, mmu auto). PATCH sets only the
 * bits of the fields it carried (at least one).
 */
int api_route(const char *method, const char *url, const char *body, size_t len, struct api_msg *m,
              char *err, size_t errlen);

/* Where a section parser reports: sect is NULL for a request body, else the field path of
 * the object being parsed in a config file ("machine-config", "drives[1]"). */
struct api_pctx {
	const char *sect;
	char *err;
	size_t errlen;
};

/*
 * Parse JSON text strictly: valid UTF-8, no NUL bytes or raw control characters inside
 * strings, no \u0000, nothing but whitespace after the value. Returns the tree or NULL with
 * "malformed JSON body: ..." (what = "body") or "malformed JSON config: ..." in err.
 */
cJSON *api_json_parse(const char *text, size_t len, const char *what, char *err, size_t errlen);

/* The section parsers. Each checks the object's fields (unknown and duplicate names are
 * errors; null counts as absent) and fills its output; strings are malloc'd. On error they
 * return -1 and leave nothing allocated in the output. path_id is the id from the URL (the
 * body's id must equal it), or NULL in a config file. */
int api_parse_boot_source(const struct api_pctx *c, const cJSON *o, struct api_msg *m);
int api_parse_machine_config(const struct api_pctx *c, const cJSON *o, bool patch,
                             struct api_msg *m);
int api_parse_drive(const struct api_pctx *c, const cJSON *o, const char *path_id,
                    struct drive_config *d);
int api_parse_drive_patch(const struct api_pctx *c, const cJSON *o, const char *path_id,
                          struct drive_config *d);
int api_parse_net(const struct api_pctx *c, const cJSON *o, const char *path_id,
                  struct net_config *n);
int api_parse_net_patch(const struct api_pctx *c, const cJSON *o, const char *path_id,
                        struct net_config *n);
int api_parse_action(const struct api_pctx *c, const cJSON *o, struct api_msg *m);
int api_parse_vm_state(const struct api_pctx *c, const cJSON *o, struct api_msg *m);
int api_parse_snapshot_create(const struct api_pctx *c, const cJSON *o, struct api_msg *m);
int api_parse_snapshot_load(const struct api_pctx *c, const cJSON *o,
                            struct snapshot_load_params *p);
int api_parse_logger(const struct api_pctx *c, const cJSON *o, struct api_msg *m);
int api_parse_metrics(const struct api_pctx *c, const cJSON *o, struct api_msg *m);

#endif
