/*
 * Request routing and state-independent validation (see routes.h). Everything here is pure:
 * no sockets, no VM state, so the unit tests and the fuzzer drive it directly.
 */
#include "routes.h"
#include "config/validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SAFE_INT 9007199254740992.0 /* 2^53: larger doubles are not exact integers */
#define NAME_LEN     160

static int fail(const struct api_pctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(const struct api_pctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err && c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* "vcpu_count" in a body, "machine-config.vcpu_count" in a config file. */
static const char *full_name(const struct api_pctx *c, const char *key, char *buf)
{
	if (c->sect)
		snprintf(buf, NAME_LEN, "%s.%.64s", c->sect, key);
	else
		snprintf(buf, NAME_LEN, "%.64s", key);
	return buf;
}

/* The subject of "... must be a string": "field 'vcpu_count'" / "machine-config.vcpu_count". */
static const char *subject(const struct api_pctx *c, const char *key, char *buf)
{
	if (c->sect)
		snprintf(buf, NAME_LEN, "%s.%.64s", c->sect, key);
	else
		snprintf(buf, NAME_LEN, "field '%.64s'", key);
	return buf;
}

static int oom(const struct api_pctx *c)
{
	return fail(c, "out of memory");
}

/* Every member of o must be named in known (a NULL-terminated list), and only once. */
static int check_fields(const struct api_pctx *c, const cJSON *o, const char *const *known)
{
	char name[NAME_LEN];

	for (const cJSON *it = o->child; it; it = it->next) {
		const char *k = it->string ? it->string : "";
		bool ok = false;

		for (size_t i = 0; known[i] && !ok; i++)
			ok = !strcmp(k, known[i]);
		if (!ok)
			return fail(c, "unknown field '%s'", full_name(c, k, name));
		for (const cJSON *p = o->child; p != it; p = p->next)
			if (p->string && !strcmp(p->string, k))
				return fail(c, "duplicate field '%s'", full_name(c, k, name));
	}
	return 0;
}

/* The member named key, or NULL when it is absent or null (null means "not given"). */
static const cJSON *member(const cJSON *o, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

	return it && !cJSON_IsNull(it) ? it : NULL;
}

static int missing(const struct api_pctx *c, const char *key)
{
	char name[NAME_LEN];

	return fail(c, "missing required field '%s'", full_name(c, key, name));
}

/* The getters return 1 when the field is there, 0 when it is absent, -1 on error. With
 * path, the string is a host path and must pass validate_path. */
static int get_str(const struct api_pctx *c, const cJSON *o, const char *key, bool required,
                   bool path, const char **out)
{
	const cJSON *it = member(o, key);
	char name[NAME_LEN];
	const char *rule;

	if (!it)
		return required ? missing(c, key) : 0;
	if (!cJSON_IsString(it) || !it->valuestring)
		return fail(c, "%s must be a string", subject(c, key, name));
	if (path && (rule = validate_path(it->valuestring)))
		return fail(c, "%s %s", subject(c, key, name), rule);
	*out = it->valuestring;
	return 1;
}

static int get_bool(const struct api_pctx *c, const cJSON *o, const char *key, bool required,
                    bool *out)
{
	const cJSON *it = member(o, key);
	char name[NAME_LEN];

	if (!it)
		return required ? missing(c, key) : 0;
	if (!cJSON_IsBool(it))
		return fail(c, "%s must be a boolean", subject(c, key, name));
	*out = cJSON_IsTrue(it);
	return 1;
}

/* A whole number that passes check (a config/validate.h range); 1.5 and 1e400 are not whole
 * numbers. check sees a negative number as 0 and one above 2^53 (not exact in a double) as
 * UINT64_MAX: out of every range it has. */
static int get_uint(const struct api_pctx *c, const cJSON *o, const char *key, bool required,
                    const char *(*check)(uint64_t), uint64_t *out)
{
	const cJSON *it = member(o, key);
	char name[NAME_LEN];
	const char *rule;
	uint64_t v;
	double d;

	if (!it)
		return required ? missing(c, key) : 0;
	d = it->valuedouble;
	if (!cJSON_IsNumber(it) || !isfinite(d) || d != floor(d))
		return fail(c, "%s " VALIDATE_NOT_INTEGER, subject(c, key, name));
	v = d < 0 ? 0 : d > MAX_SAFE_INT ? UINT64_MAX : (uint64_t)d;
	if ((rule = check(v)))
		return fail(c, "%s %s", subject(c, key, name), rule);
	*out = v;
	return 1;
}

/* Fields hearth knows from Firecracker's API but does not implement: absent or null only. */
static int forbid(const struct api_pctx *c, const cJSON *o, const char *key)
{
	char name[NAME_LEN];

	if (member(o, key))
		return fail(c, "%s is not supported by hearth", full_name(c, key, name));
	return 0;
}

/* A string field that only accepts one value ("None", "Sync"); others are unsupported. */
static int only_value(const struct api_pctx *c, const cJSON *o, const char *key, const char *ok)
{
	const char *v;
	char name[NAME_LEN];
	int r = get_str(c, o, key, false, false, &v);

	if (r <= 0)
		return r;
	if (strcmp(v, ok))
		return fail(c, "%s %.32s is not supported by hearth", full_name(c, key, name), v);
	return 0;
}

static int dup_str(const struct api_pctx *c, const char *s, char **out)
{
	*out = NULL;
	if (s && !(*out = strdup(s)))
		return oom(c);
	return 0;
}

/* The body's id (drive_id / iface_id): equal to the path's id, or (config file) valid. */
static int get_id(const struct api_pctx *c, const cJSON *o, const char *key, const char *path_id,
                  char out[DRIVE_ID_MAX + 1])
{
	const char *id, *rule;
	char name[NAME_LEN];

	if (get_str(c, o, key, true, false, &id) < 0)
		return -1;
	if (path_id) {
		if (strcmp(id, path_id))
			return fail(c, "%s '%.64s' in the body does not match '%s' in the path",
			            key, id, path_id);
	} else if ((rule = validate_id(id))) {
		return fail(c, "%s '%.64s' %s", full_name(c, key, name), id, rule);
	}
	strcpy(out, id);
	return 0;
}

/* ---- JSON text --------------------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s (1..4), or 0 when it is malformed. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f; /* no UTF-16 surrogates */
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f; /* <= U+10FFFF */
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* What cJSON lets through but JSON (or a C string) does not; NULL when the text is clean. */
static const char *prescan(const char *text, size_t len, size_t *at)
{
	const unsigned char *s = (const unsigned char *)text;
	bool in_str = false;

	for (size_t i = 0; i < len;) {
		unsigned char ch = s[i];
		size_t n;

		*at = i;
		if (ch == 0)
			return "NUL byte";
		if (ch >= 0x80) {
			if (!(n = utf8_len(s + i, len - i)))
				return "invalid UTF-8";
			i += n;
			continue;
		}
		if (in_str) {
			if (ch < 0x20)
				return "control character in a string";
			if (ch == '\\' && i + 1 < len && s[i + 1] >= 0x20 && s[i + 1] < 0x7f) {
				if (s[i + 1] == 'u' && i + 6 <= len &&
				    !memcmp(s + i + 2, "0000", 4))
					return "\\u0000 in a string";
				i += 2;
				continue;
			}
			if (ch == '"')
				in_str = false;
		} else if (ch == '"') {
			in_str = true;
		}
		i++;
	}
	return NULL;
}

static bool is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

cJSON *api_json_parse(const char *text, size_t len, const char *what, char *err, size_t errlen)
{
	const struct api_pctx c = {NULL, err, errlen};
	const char *bad, *end = NULL;
	char *copy, near[24];
	size_t at = 0, n = 0;
	cJSON *root;

	if ((bad = prescan(text, len, &at))) {
		fail(&c, "malformed JSON %s: %s at offset %zu", what, bad, at);
		return NULL;
	}
	/* cJSON gets a NUL-terminated copy so no path of it can read past the text. */
	if (!(copy = malloc(len + 1))) {
		oom(&c);
		return NULL;
	}
	memcpy(copy, text, len);
	copy[len] = 0;
	root = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
	at = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : len;
	if (!root) {
		for (; n + 1 < sizeof(near) && at + n < len; n++) {
			unsigned char ch = (unsigned char)copy[at + n];

			near[n] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
		}
		near[n] = 0;
		/* Config files are multi-line: say where, too. */
		char where[48] = "";
		if (strcmp(what, "body")) {
			unsigned line = 1, col = 1;

			for (size_t i = 0; i < at; i++, col++)
				if (copy[i] == '\n')
					line++, col = 0;
			snprintf(where, sizeof(where), " (line %u, column %u)", line, col);
		}
		if (n)
			fail(&c, "malformed JSON %s: syntax error at offset %zu%s near '%s'", what,
			     at, where, near);
		else
			fail(&c, "malformed JSON %s: unexpected end of input at offset %zu%s", what,
			     at, where);
		free(copy);
		return NULL;
	}
	while (at < len && is_ws(copy[at]))
		at++;
	free(copy);
	if (at < len) {
		cJSON_Delete(root);
		fail(&c, "malformed JSON %s: unexpected data after the JSON value at offset %zu",
		     what, at);
		return NULL;
	}
	return root;
}

/* ---- section parsers --------------------------------------------------------------------- */

int api_parse_boot_source(const struct api_pctx *c, const cJSON *o, struct api_msg *m)
{
	static const char *const known[] = {"kernel_image_path", "boot_args", "initrd_path", NULL};
	const char *kernel = NULL, *args = NULL, *initrd = NULL;
	char *k = NULL, *a = NULL, *i = NULL;

	if (check_fields(c, o, known) ||
	    get_str(c, o, "kernel_image_path", true, true, &kernel) < 0 ||
	    get_str(c, o, "boot_args", false, false, &args) < 0 ||
	    get_str(c, o, "initrd_path", false, true, &initrd) < 0)
		return -1;
	if (dup_str(c, kernel, &k) || dup_str(c, args, &a) || dup_str(c, initrd, &i)) {
		free(k);
		free(a);
		free(i);
		return -1;
	}
	m->u.boot.kernel = k;
	m->u.boot.cmdline = a;
	m->u.boot.initrd = i;
	return 0;
}

static const char *const mmu_names[] = {[MMU_AUTO] = "auto",
                                        [MMU_HARDWARE] = "hardware",
                                        [MMU_SHADOW] = "shadow",
                                        [MMU_PROCESS] = "process"};

int api_parse_machine_config(const struct api_pctx *c, const cJSON *o, bool patch,
                             struct api_msg *m)
{
	static const char *const known[] = {
	    "vcpu_count",   "mem_size_mib", "smt", "track_dirty_pages",
	    "cpu_template", "huge_pages",   "mmu", NULL};
	typeof(m->u.machine) *mc = &m->u.machine;
	uint64_t v;
	const char *s;
	char name[NAME_LEN];
	int r;

	memset(mc, 0, sizeof(*mc));
	mc->mmu = MMU_AUTO;
	if (check_fields(c, o, known))
		return -1;
	if ((r = get_uint(c, o, "vcpu_count", !patch, validate_vcpus, &v)) < 0)
		return -1;
	if (r) {
		mc->vcpus = (unsigned)v;
		mc->has |= MC_VCPUS;
	}
	if ((r = get_uint(c, o, "mem_size_mib", !patch, validate_mem_mib, &v)) < 0)
		return -1;
	if (r) {
		mc->mem_mib = v;
		mc->has |= MC_MEM;
	}
	if ((r = get_bool(c, o, "smt", false, &mc->smt)) < 0)
		return -1;
	if (r)
		mc->has |= MC_SMT;
	if ((r = get_bool(c, o, "track_dirty_pages", false, &mc->track_dirty_pages)) < 0)
		return -1;
	if (r)
		mc->has |= MC_DIRTY;
	if (only_value(c, o, "cpu_template", "None") || only_value(c, o, "huge_pages", "None"))
		return -1;
	if ((r = get_str(c, o, "mmu", false, false, &s)) < 0)
		return -1;
	if (r) {
		size_t i;

		for (i = 0; i < sizeof(mmu_names) / sizeof(mmu_names[0]); i++)
			if (!strcmp(s, mmu_names[i]))
				break;
		if (i == sizeof(mmu_names) / sizeof(mmu_names[0]))
			return fail(c, "%s must be one of auto, hardware, shadow, process",
			            subject(c, "mmu", name));
		mc->mmu = (enum mmu_mode)i;
		mc->has |= MC_MMU;
	}
	if (patch) {
		/* Some field must be given; cpu_template / huge_pages "None" alone is a valid,
		 * empty change. */
		bool any = false;

		for (const cJSON *it = o->child; it; it = it->next)
			any |= !cJSON_IsNull(it);
		if (!any)
			return fail(c,
			            "PATCH /machine-config needs at least one field: vcpu_count, "
			            "mem_size_mib, smt, track_dirty_pages or mmu");
		return 0;
	}
	/* PUT: the fields left out take their defaults. */
	mc->has = MC_VCPUS | MC_MEM | MC_SMT | MC_DIRTY | MC_MMU;
	if (mc->smt && mc->vcpus > 1 && mc->vcpus % 2)
		return fail(c, "%s must be 1 or an even number when smt is enabled",
		            subject(c, "vcpu_count", name));
	return 0;
}

int api_parse_drive(const struct api_pctx *c, const cJSON *o, const char *path_id,
                    struct drive_config *d)
{
	static const char *const known[] = {
	    "drive_id",   "path_on_host", "is_root_device", "is_read_only", "partuuid",
	    "cache_type", "rate_limiter", "io_engine",      "socket",       NULL};
	const char *path = NULL, *cache;
	char name[NAME_LEN];
	int r;

	memset(d, 0, sizeof(*d));
	if (check_fields(c, o, known) || get_id(c, o, "drive_id", path_id, d->id) ||
	    forbid(c, o, "socket") || get_str(c, o, "path_on_host", true, true, &path) < 0 ||
	    get_bool(c, o, "is_root_device", true, &d->is_root_device) < 0 ||
	    get_bool(c, o, "is_read_only", false, &d->read_only) < 0 || forbid(c, o, "partuuid") ||
	    forbid(c, o, "rate_limiter") || only_value(c, o, "io_engine", "Sync"))
		return -1;
	if ((r = get_str(c, o, "cache_type", false, false, &cache)) < 0)
		return -1;
	if (r && strcmp(cache, "Unsafe") && strcmp(cache, "Writeback"))
		return fail(c, "%s must be Unsafe or Writeback", subject(c, "cache_type", name));
	return dup_str(c, path, &d->path);
}

int api_parse_drive_patch(const struct api_pctx *c, const cJSON *o, const char *path_id,
                          struct drive_config *d)
{
	static const char *const known[] = {"drive_id", "path_on_host", "rate_limiter", NULL};
	const char *path = NULL;
	int r;

	memset(d, 0, sizeof(*d));
	if (check_fields(c, o, known) || get_id(c, o, "drive_id", path_id, d->id) ||
	    forbid(c, o, "rate_limiter"))
		return -1;
	if ((r = get_str(c, o, "path_on_host", false, true, &path)) < 0)
		return -1;
	if (!r)
		return fail(c, "missing required field 'path_on_host' (the only drive property "
		               "hearth can update)");
	return dup_str(c, path, &d->path);
}

int api_parse_net(const struct api_pctx *c, const cJSON *o, const char *path_id,
                  struct net_config *n)
{
	static const char *const known[] = {
	    "iface_id",        "host_dev_name", "guest_mac", "rx_rate_limiter",
	    "tx_rate_limiter", "mtu",           NULL};
	const char *dev, *mac, *rule;
	char name[NAME_LEN];
	int r;

	memset(n, 0, sizeof(*n));
	if (check_fields(c, o, known) || get_id(c, o, "iface_id", path_id, n->id) ||
	    get_str(c, o, "host_dev_name", true, false, &dev) < 0)
		return -1;
	if ((rule = validate_ifname(dev)))
		return fail(c, "%s '%.64s' %s", full_name(c, "host_dev_name", name), dev, rule);
	strcpy(n->host_dev_name, dev);
	if ((r = get_str(c, o, "guest_mac", false, false, &mac)) < 0)
		return -1;
	if (r && (rule = validate_mac(mac, n->mac)))
		return fail(c, "%s '%.64s' %s", full_name(c, "guest_mac", name), mac, rule);
	n->has_mac = r;
	if (forbid(c, o, "rx_rate_limiter") || forbid(c, o, "tx_rate_limiter") ||
	    forbid(c, o, "mtu"))
		return -1;
	return 0;
}

int api_parse_net_patch(const struct api_pctx *c, const cJSON *o, const char *path_id,
                        struct net_config *n)
{
	static const char *const known[] = {"iface_id", "rx_rate_limiter", "tx_rate_limiter", NULL};

	memset(n, 0, sizeof(*n));
	if (check_fields(c, o, known) || get_id(c, o, "iface_id", path_id, n->id) ||
	    forbid(c, o, "rx_rate_limiter") || forbid(c, o, "tx_rate_limiter"))
		return -1;
	return 0;
}

int api_parse_action(const struct api_pctx *c, const cJSON *o, struct api_msg *m)
{
	static const char *const known[] = {"action_type", NULL};
	const char *t;
	char name[NAME_LEN];

	if (check_fields(c, o, known) || get_str(c, o, "action_type", true, false, &t) < 0)
		return -1;
	if (!strcmp(t, "InstanceStart"))
		m->u.action = ACTION_INSTANCE_START;
	else if (!strcmp(t, "SendCtrlAltDel"))
		m->u.action = ACTION_SEND_CTRL_ALT_DEL;
	else if (!strcmp(t, "FlushMetrics"))
		m->u.action = ACTION_FLUSH_METRICS;
	else
		return fail(c, "%s must be one of InstanceStart, SendCtrlAltDel, FlushMetrics",
		            subject(c, "action_type", name));
	return 0;
}

int api_parse_vm_state(const struct api_pctx *c, const cJSON *o, struct api_msg *m)
{
	static const char *const known[] = {"state", NULL};
	const char *s;
	char name[NAME_LEN];

	if (check_fields(c, o, known) || get_str(c, o, "state", true, false, &s) < 0)
		return -1;
	if (!strcmp(s, "Paused"))
		m->u.pause = true;
	else if (!strcmp(s, "Resumed"))
		m->u.pause = false;
	else
		return fail(c, "%s must be Paused or Resumed", subject(c, "state", name));
	return 0;
}

int api_parse_logger(const struct api_pctx *c, const cJSON *o, struct api_msg *m)
{
	static const char *const known[] = {"log_path",        "level",  "show_level",
	                                    "show_log_origin", "module", NULL};
	/* Firecracker's levels, case-insensitive; Trace -> Debug and Off -> Error. */
	static const struct {
		const char *name;
		enum log_level level;
	} levels[] = {{"Error", LOG_LEVEL_ERROR}, {"Warning", LOG_LEVEL_WARN},
	              {"Info", LOG_LEVEL_INFO},   {"Debug", LOG_LEVEL_DEBUG},
	              {"Trace", LOG_LEVEL_DEBUG}, {"Off", LOG_LEVEL_ERROR}};
	typeof(m->u.logger) *lg = &m->u.logger;
	const char *path = NULL, *level;
	char name[NAME_LEN];
	int r;

	memset(lg, 0, sizeof(*lg));
	if (check_fields(c, o, known) || get_str(c, o, "log_path", false, true, &path) < 0 ||
	    get_bool(c, o, "show_level", false, &lg->show_level) < 0 ||
	    get_bool(c, o, "show_log_origin", false, &lg->show_origin) < 0 ||
	    forbid(c, o, "module"))
		return -1;
	if ((r = get_str(c, o, "level", false, false, &level)) < 0)
		return -1;
	if (r) {
		size_t i;

		for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
			if (!strcasecmp(level, levels[i].name))
				break;
		if (i == sizeof(levels) / sizeof(levels[0]))
			return fail(c, "%s must be one of Error, Warning, Info, Debug, Trace, Off",
			            subject(c, "level", name));
		lg->level = levels[i].level;
		lg->has_level = true;
	}
	return dup_str(c, path, &lg->path);
}

int api_parse_metrics(const struct api_pctx *c, const cJSON *o, struct api_msg *m)
{
	static const char *const known[] = {"metrics_path", "emit_id", "properties", NULL};
	const char *path = NULL;
	char name[NAME_LEN];
	bool emit_id = false;

	if (check_fields(c, o, known) || get_str(c, o, "metrics_path", true, true, &path) < 0 ||
	    get_bool(c, o, "emit_id", false, &emit_id) < 0 || forbid(c, o, "properties"))
		return -1;
	if (emit_id)
		return fail(c, "%s is not supported by hearth", full_name(c, "emit_id", name));
	return dup_str(c, path, &m->u.metrics.path);
}

int api_parse_snapshot_create(const struct api_pctx *c, const cJSON *o, struct api_msg *m)
{
	static const char *const known[] = {"snapshot_path", "mem_file_path", "snapshot_type",
	                                    NULL};
	const char *state, *mem, *type = "Full";
	char name[NAME_LEN];

	if (check_fields(c, o, known) || get_str(c, o, "snapshot_path", true, true, &state) < 0 ||
	    get_str(c, o, "mem_file_path", true, true, &mem) < 0 ||
	    get_str(c, o, "snapshot_type", false, false, &type) < 0)
		return -1;
	if (strcmp(type, "Full") && strcmp(type, "Diff"))
		return fail(c, "%s must be Full or Diff", subject(c, "snapshot_type", name));
	m->u.snap_create.diff = !strcmp(type, "Diff");
	if (dup_str(c, state, &m->u.snap_create.state_path) ||
	    dup_str(c, mem, &m->u.snap_create.mem_path)) {
		free(m->u.snap_create.state_path);
		return -1;
	}
	return 0;
}

/* mem_backend: {"backend_type": "File", "backend_path": ...}; Uffd is not implemented. */
static int get_mem_backend(const struct api_pctx *c, const cJSON *o, const char **path)
{
	static const char *const known[] = {"backend_type", "backend_path", NULL};
	const struct api_pctx sub = {"mem_backend", c->err, c->errlen};
	const char *type;

	if (!cJSON_IsObject(o))
		return fail(c, "field 'mem_backend' must be an object");
	if (check_fields(&sub, o, known) ||
	    get_str(&sub, o, "backend_type", true, false, &type) < 0 ||
	    get_str(&sub, o, "backend_path", true, true, path) < 0)
		return -1;
	if (!strcmp(type, "Uffd"))
		return fail(
		    c, "mem_backend.backend_type Uffd is not implemented by hearth (use File)");
	if (strcmp(type, "File"))
		return fail(c, "mem_backend.backend_type must be File or Uffd");
	return 0;
}

int api_parse_snapshot_load(const struct api_pctx *c, const cJSON *o,
                            struct snapshot_load_params *p)
{
	static const char *const known[] = {"snapshot_path",
	                                    "mem_file_path",
	                                    "mem_backend",
	                                    "enable_diff_snapshots",
	                                    "track_dirty_pages",
	                                    "resume_vm",
	                                    "network_overrides",
	                                    "vsock_override",
	                                    "clock_realtime",
	                                    "huge_pages",
	                                    NULL};
	const char *state, *mem = NULL, *rule;
	const cJSON *backend = member(o, "mem_backend"), *ov = member(o, "network_overrides");
	bool old_dirty = false, realtime = false;
	char name[NAME_LEN];
	int r;

	memset(p, 0, sizeof(*p));
	if (check_fields(c, o, known) || get_str(c, o, "snapshot_path", true, true, &state) < 0 ||
	    (r = get_str(c, o, "mem_file_path", false, true, &mem)) < 0)
		return -1;
	if (r && backend)
		return fail(c, "give mem_backend or mem_file_path, not both");
	if (!r && !backend)
		return fail(c, "missing required field 'mem_backend' (or the deprecated "
		               "'mem_file_path')");
	if (backend && get_mem_backend(c, backend, &mem))
		return -1;
	if (get_bool(c, o, "enable_diff_snapshots", false, &old_dirty) < 0 ||
	    get_bool(c, o, "track_dirty_pages", false, &p->track_dirty_pages) < 0 ||
	    get_bool(c, o, "resume_vm", false, &p->resume_vm) < 0 ||
	    get_bool(c, o, "clock_realtime", false, &realtime) < 0 ||
	    forbid(c, o, "vsock_override") || only_value(c, o, "huge_pages", "None"))
		return -1;
	p->track_dirty_pages |= old_dirty;
	if (realtime)
		return fail(c, "clock_realtime true is not supported by hearth (the guest's clocks "
		               "resume from where they were)");
	if (ov) {
		const cJSON *it;

		if (!cJSON_IsArray(ov))
			return fail(c, "field 'network_overrides' must be an array");
		cJSON_ArrayForEach(it, ov)
		{
			static const char *const okeys[] = {"iface_id", "host_dev_name", NULL};
			const struct api_pctx sub = {"network_overrides[]", c->err, c->errlen};
			const char *id, *dev;

			if (p->nnet_overrides == VM_MAX_NETS)
				return fail(c, "network_overrides: at most %d entries",
				            VM_MAX_NETS);
			if (!cJSON_IsObject(it))
				return fail(c, "network_overrides[] must be objects");
			if (check_fields(&sub, it, okeys) ||
			    get_str(&sub, it, "iface_id", true, false, &id) < 0 ||
			    get_str(&sub, it, "host_dev_name", true, false, &dev) < 0)
				return -1;
			if ((rule = validate_id(id)))
				return fail(c, "network_overrides[].iface_id '%.64s' %s", id, rule);
			if ((rule = validate_ifname(dev)))
				return fail(c, "%s '%.64s' %s",
				            full_name(&sub, "host_dev_name", name), dev, rule);
			for (unsigned i = 0; i < p->nnet_overrides; i++)
				if (!strcmp(p->net_overrides[i].id, id))
					return fail(c, "network_overrides: iface_id '%s' twice",
					            id);
			strcpy(p->net_overrides[p->nnet_overrides].id, id);
			strcpy(p->net_overrides[p->nnet_overrides].host_dev_name, dev);
			p->nnet_overrides++;
		}
	}
	if (dup_str(c, state, &p->state_path) || dup_str(c, mem, &p->mem_path)) {
		free(p->state_path);
		p->state_path = NULL;
		return -1;
	}
	return 0;
}

/* ---- routing ----------------------------------------------------------------------------- */

enum { M_GET = 1, M_PUT = 2, M_PATCH = 4 };

struct route {
	const char *path; /* with has_id: the prefix before "/{id}" */
	bool has_id;
	bool implemented; /* false: a Firecracker call hearth does not have */
	unsigned methods;
	const char *id_name;
};

static const struct route routes[] = {
    {"/", false, true, M_GET, NULL},
    {"/version", false, true, M_GET, NULL},
    {"/vm/config", false, true, M_GET, NULL},
    {"/machine-config", false, true, M_GET | M_PUT | M_PATCH, NULL},
    {"/boot-source", false, true, M_PUT, NULL},
    {"/drives", true, true, M_PUT | M_PATCH, "drive_id"},
    {"/network-interfaces", true, true, M_PUT | M_PATCH, "iface_id"},
    {"/actions", false, true, M_PUT, NULL},
    {"/vm", false, true, M_PATCH, NULL},
    {"/logger", false, true, M_PUT, NULL},
    {"/metrics", false, true, M_PUT, NULL},
    {"/snapshot/create", false, true, M_PUT, NULL},
    {"/snapshot/load", false, true, M_PUT, NULL},
    /* In Firecracker's API, not in hearth. */
    {"/balloon", false, false, M_GET | M_PUT | M_PATCH, NULL},
    {"/balloon/statistics", false, false, M_GET | M_PATCH, NULL},
    {"/balloon/hinting/start", false, false, M_PATCH, NULL},
    {"/balloon/hinting/status", false, false, M_GET, NULL},
    {"/balloon/hinting/stop", false, false, M_PATCH, NULL},
    {"/cpu-config", false, false, M_PUT, NULL},
    {"/pmem", true, false, M_PUT | M_PATCH, "id"},
    {"/mmds", false, false, M_GET | M_PUT | M_PATCH, NULL},
    {"/mmds/config", false, false, M_PUT, NULL},
    {"/entropy", false, false, M_PUT, NULL},
    {"/serial", false, false, M_PUT, NULL},
    {"/hotplug/memory", false, false, M_GET | M_PUT | M_PATCH, NULL},
    {"/vsock", false, false, M_PUT, NULL},
};

static unsigned method_bit(const char *method)
{
	if (!strcmp(method, "GET"))
		return M_GET;
	if (!strcmp(method, "PUT"))
		return M_PUT;
	if (!strcmp(method, "PATCH"))
		return M_PATCH;
	return 0;
}

/* Find the route for path[0..n); *id / *idlen get the "{id}" part (maybe empty). */
static const struct route *find_route(const char *path, size_t n, const char **id, size_t *idlen)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *r = &routes[i];
		size_t pl = strlen(r->path);

		if (n < pl || memcmp(path, r->path, pl))
			continue;
		if (!r->has_id) {
			if (n == pl)
				return r;
			continue;
		}
		/* "/drives", "/drives/" (no id) and "/drives/{id}"; never "/drives/a/b". */
		if (n == pl) {
			*id = path + n;
			*idlen = 0;
			return r;
		}
		if (path[pl] != '/' || memchr(path + pl + 1, '/', n - pl - 1))
			continue;
		*id = path + pl + 1;
		*idlen = n - pl - 1;
		return r;
	}
	return NULL;
}

int api_route(const char *method, const char *url, const char *body, size_t len, struct api_msg *m,
              char *err, size_t errlen)
{
	const struct api_pctx c = {NULL, err, errlen};
	size_t plen = strcspn(url, "?"), idlen = 0;
	const char *idp = NULL;
	const struct route *r;
	unsigned mb = method_bit(method);
	char id[DRIVE_ID_MAX + 2]; /* one more: an over-long id stays over-long */
	const char *rule;
	int pl = plen > 256 ? 256 : (int)plen; /* how much of the path messages quote */
	cJSON *root;
	int ret;

	memset(m, 0, sizeof(*m));
	/* As Firecracker: a body on a GET is an error, whatever the path. */
	if (mb == M_GET && len)
		return fail(&c, "GET request cannot have a body");
	r = find_route(url, plen, &idp, &idlen);
	if (!r)
		return fail(&c, "Invalid request method and/or path: %.16s %.*s", method, pl, url);
	if (!(r->methods & mb)) {
		char allowed[32] = "";

		if (r->methods & M_GET)
			strcat(allowed, ", GET");
		if (r->methods & M_PUT)
			strcat(allowed, ", PUT");
		if (r->methods & M_PATCH)
			strcat(allowed, ", PATCH");
		return fail(&c, "Invalid request method and/or path: %.16s %.*s (allowed: %s)",
		            method, pl, url, allowed + 2);
	}
	if (!r->implemented)
		return fail(&c, "%s %.*s is not implemented by hearth", method, pl, url);
	if (r->has_id) {
		if (!idlen)
			return fail(&c, "%s %.*s: missing %s in the path (%s/{%s})", method, pl,
			            url, r->id_name, r->path, r->id_name);
		memcpy(id, idp, idlen > DRIVE_ID_MAX ? DRIVE_ID_MAX + 1 : idlen);
		id[idlen > DRIVE_ID_MAX ? DRIVE_ID_MAX + 1 : idlen] = 0;
		if ((rule = validate_id(id)))
			return fail(&c, "%s '%.*s' in the path %s", r->id_name,
			            idlen > 64 ? 64 : (int)idlen, idp, rule);
	}

	if (mb == M_GET) {
		if (!strcmp(r->path, "/"))
			m->op = API_GET_INFO;
		else if (!strcmp(r->path, "/version"))
			m->op = API_GET_VERSION;
		else if (!strcmp(r->path, "/vm/config"))
			m->op = API_GET_VM_CONFIG;
		else
			m->op = API_GET_MACHINE_CONFIG;
		return 0;
	}

	{
		size_t i = 0;

		while (i < len && is_ws(body[i]))
			i++;
		if (i == len)
			return fail(&c, "missing request body: %s %.*s needs a JSON object", method,
			            pl, url);
	}
	if (!(root = api_json_parse(body, len, "body", err, errlen)))
		return -1;
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return fail(&c, "the request body must be a JSON object");
	}

	if (!strcmp(r->path, "/machine-config")) {
		m->op = mb == M_PUT ? API_PUT_MACHINE_CONFIG : API_PATCH_MACHINE_CONFIG;
		ret = api_parse_machine_config(&c, root, mb == M_PATCH, m);
	} else if (!strcmp(r->path, "/boot-source")) {
		m->op = API_PUT_BOOT_SOURCE;
		ret = api_parse_boot_source(&c, root, m);
	} else if (!strcmp(r->path, "/drives")) {
		m->op = mb == M_PUT ? API_PUT_DRIVE : API_PATCH_DRIVE;
		ret = mb == M_PUT ? api_parse_drive(&c, root, id, &m->u.drive)
		                  : api_parse_drive_patch(&c, root, id, &m->u.drive);
	} else if (!strcmp(r->path, "/network-interfaces")) {
		m->op = mb == M_PUT ? API_PUT_NET : API_PATCH_NET;
		ret = mb == M_PUT ? api_parse_net(&c, root, id, &m->u.net)
		                  : api_parse_net_patch(&c, root, id, &m->u.net);
	} else if (!strcmp(r->path, "/actions")) {
		m->op = API_ACTION;
		ret = api_parse_action(&c, root, m);
	} else if (!strcmp(r->path, "/vm")) {
		m->op = API_PATCH_VM;
		ret = api_parse_vm_state(&c, root, m);
	} else if (!strcmp(r->path, "/logger")) {
		m->op = API_PUT_LOGGER;
		ret = api_parse_logger(&c, root, m);
	} else if (!strcmp(r->path, "/snapshot/create")) {
		m->op = API_SNAPSHOT_CREATE;
		ret = api_parse_snapshot_create(&c, root, m);
	} else if (!strcmp(r->path, "/snapshot/load")) {
		m->op = API_SNAPSHOT_LOAD;
		ret = api_parse_snapshot_load(&c, root, &m->u.snap_load);
	} else {
		m->op = API_PUT_METRICS;
		ret = api_parse_metrics(&c, root, m);
	}
	cJSON_Delete(root);
	if (ret)
		memset(m, 0, sizeof(*m));
	return ret;
}
