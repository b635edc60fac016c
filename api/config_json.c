/*
 * The VM configuration as JSON: GET /vm/config and GET /machine-config render it, and
 * --config-file reads the same shape back. Reading uses the section parsers of the request
 * layer (api/routes.c), so a config file is checked exactly like the PUT calls it stands for.
 */
#include "api.h"
#include "routes.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* ---- model -> JSON ----------------------------------------------------------------------- */

static bool add_machine(cJSON *o, const struct vm_config *c)
{
	return cJSON_AddNumberToObject(o, "vcpu_count", c->vcpus) &&
	       cJSON_AddNumberToObject(o, "mem_size_mib", (double)c->mem_mib) &&
	       cJSON_AddBoolToObject(o, "smt", c->smt) &&
	       cJSON_AddBoolToObject(o, "track_dirty_pages", c->track_dirty_pages) &&
	       cJSON_AddStringToObject(o, "huge_pages", "None") &&
	       cJSON_AddStringToObject(o, "mmu", mmu_mode_name(c->mmu));
}

static char *print_and_free(cJSON *root, bool ok)
{
	char *s = ok ? cJSON_PrintUnformatted(root) : NULL;

	cJSON_Delete(root);
	return s;
}

char *machine_config_to_json(const struct vm_config *c)
{
	cJSON *root = cJSON_CreateObject();

	return root ? print_and_free(root, add_machine(root, c)) : NULL;
}

static bool add_drive(cJSON *arr, const struct drive_config *d)
{
	cJSON *o = cJSON_CreateObject();

	if (!o || !cJSON_AddItemToArray(arr, o)) {
		cJSON_Delete(o);
		return false;
	}
	return cJSON_AddStringToObject(o, "drive_id", d->id) &&
	       (!d->path || cJSON_AddStringToObject(o, "path_on_host", d->path)) &&
	       cJSON_AddBoolToObject(o, "is_root_device", d->is_root_device) &&
	       cJSON_AddBoolToObject(o, "is_read_only", d->read_only) &&
	       cJSON_AddStringToObject(o, "cache_type", "Unsafe") &&
	       cJSON_AddStringToObject(o, "io_engine", "Sync");
}

static bool add_net(cJSON *arr, const struct net_config *n)
{
	cJSON *o = cJSON_CreateObject();
	char mac[18];

	if (!o || !cJSON_AddItemToArray(arr, o)) {
		cJSON_Delete(o);
		return false;
	}
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1], n->mac[2],
	         n->mac[3], n->mac[4], n->mac[5]);
	return cJSON_AddStringToObject(o, "iface_id", n->id) &&
	       cJSON_AddStringToObject(o, "host_dev_name", n->host_dev_name) &&
	       (!n->has_mac || cJSON_AddStringToObject(o, "guest_mac", mac));
}

char *config_to_json(const struct vm_config *c)
{
	cJSON *root = cJSON_CreateObject(), *o, *arr;
	bool ok = root != NULL;

	if (!ok)
		return NULL;
	/* Sections in Firecracker's order; absent optional values are left out. */
	ok = ok && (arr = cJSON_AddArrayToObject(root, "drives"));
	for (unsigned i = 0; ok && i < c->ndrives && i < VM_MAX_DRIVES; i++)
		ok = add_drive(arr, &c->drives[i]);
	if (ok && c->kernel_path) {
		ok = (o = cJSON_AddObjectToObject(root, "boot-source")) &&
		     cJSON_AddStringToObject(o, "kernel_image_path", c->kernel_path) &&
		     (!c->cmdline || cJSON_AddStringToObject(o, "boot_args", c->cmdline)) &&
		     (!c->initrd_path || cJSON_AddStringToObject(o, "initrd_path", c->initrd_path));
	}
	if (ok && c->log_path)
		ok = (o = cJSON_AddObjectToObject(root, "logger")) &&
		     cJSON_AddStringToObject(o, "log_path", c->log_path);
	ok = ok && (o = cJSON_AddObjectToObject(root, "machine-config")) && add_machine(o, c);
	if (ok && c->metrics_path)
		ok = (o = cJSON_AddObjectToObject(root, "metrics")) &&
		     cJSON_AddStringToObject(o, "metrics_path", c->metrics_path);
	ok = ok && (arr = cJSON_AddArrayToObject(root, "network-interfaces"));
	for (unsigned i = 0; ok && i < c->nnets && i < VM_MAX_NETS; i++)
		ok = add_net(arr, &c->nets[i]);
	return print_and_free(root, ok);
}

/* ---- JSON -> model (--config-file) ------------------------------------------------------- */

/* Everything a config file can set, parsed in full before any of it is applied to c. */
struct parsed {
	bool has_boot, has_machine, has_drives, has_nets, has_logger, has_metrics, has_snapshot;
	struct snapshot_load_params snapshot;
	struct api_msg boot, machine, logger, metrics;
	struct drive_config drives[VM_MAX_DRIVES];
	unsigned ndrives;
	struct net_config nets[VM_MAX_NETS];
	unsigned nnets;
};

static void parsed_free(struct parsed *p)
{
	free(p->boot.u.boot.kernel);
	free(p->boot.u.boot.initrd);
	free(p->boot.u.boot.cmdline);
	free(p->logger.u.logger.path);
	free(p->metrics.u.metrics.path);
	for (unsigned i = 0; i < p->ndrives; i++)
		free(p->drives[i].path);
	free(p->snapshot.state_path);
	free(p->snapshot.mem_path);
}

static int cfail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int parse_drives(const cJSON *arr, struct parsed *p, char *err, size_t errlen)
{
	const cJSON *it;
	char sect[32];
	unsigned i = 0;

	if (!cJSON_IsArray(arr))
		return cfail(err, errlen, "drives must be an array");
	if (cJSON_GetArraySize(arr) > VM_MAX_DRIVES)
		return cfail(err, errlen, "drives: at most %d drives are supported", VM_MAX_DRIVES);
	cJSON_ArrayForEach(it, arr)
	{
		struct api_pctx c = {sect, err, errlen};
		struct drive_config *d = &p->drives[i];

		snprintf(sect, sizeof(sect), "drives[%u]", i);
		if (!cJSON_IsObject(it))
			return cfail(err, errlen, "%s must be an object", sect);
		if (api_parse_drive(&c, it, NULL, d))
			return -1;
		p->ndrives = ++i;
		for (unsigned j = 0; j + 1 < i; j++) {
			if (!strcmp(p->drives[j].id, d->id))
				return cfail(err, errlen,
				             "%s.drive_id '%s' is already used by drives[%u]", sect,
				             d->id, j);
			if (d->is_root_device && p->drives[j].is_root_device)
				return cfail(err, errlen,
				             "%s: only one drive can be the root device "
				             "(drives[%u] is one)",
				             sect, j);
		}
	}
	return 0;
}

static int parse_nets(const cJSON *arr, struct parsed *p, char *err, size_t errlen)
{
	const cJSON *it;
	char sect[40];
	unsigned i = 0;

	if (!cJSON_IsArray(arr))
		return cfail(err, errlen, "network-interfaces must be an array");
	if (cJSON_GetArraySize(arr) > VM_MAX_NETS)
		return cfail(err, errlen, "network-interfaces: at most %d interfaces are supported",
		             VM_MAX_NETS);
	cJSON_ArrayForEach(it, arr)
	{
		struct api_pctx c = {sect, err, errlen};
		struct net_config *n = &p->nets[i];

		snprintf(sect, sizeof(sect), "network-interfaces[%u]", i);
		if (!cJSON_IsObject(it))
			return cfail(err, errlen, "%s must be an object", sect);
		if (api_parse_net(&c, it, NULL, n))
			return -1;
		p->nnets = ++i;
		for (unsigned j = 0; j + 1 < i; j++) {
			const struct net_config *o = &p->nets[j];

			if (!strcmp(o->id, n->id))
				return cfail(err, errlen,
				             "%s.iface_id '%s' is already used by "
				             "network-interfaces[%u]",
				             sect, n->id, j);
			if (!strcmp(o->host_dev_name, n->host_dev_name))
				return cfail(err, errlen,
				             "%s.host_dev_name '%s' is already used by "
				             "network-interfaces[%u]",
				             sect, n->host_dev_name, j);
			if (n->has_mac && o->has_mac && !memcmp(o->mac, n->mac, 6))
				return cfail(
				    err, errlen,
				    "%s.guest_mac is already used by network-interfaces[%u]", sect,
				    j);
		}
	}
	return 0;
}

/* Sections of Firecracker's config that hearth does not implement: null (or, for the
 * arrays, empty) only, which is what Firecracker itself writes when they are unused. */
static const char *const unsupported_sections[] = {
    "balloon", "cpu-config",     "mmds-config", "vsock", "entropy",
    "pmem",    "memory-hotplug", "serial",      NULL,
};

static int parse_sections(const cJSON *root, struct parsed *p, char *err, size_t errlen)
{
	static const char *const known[] = {"boot-source",        "drives", "machine-config",
	                                    "network-interfaces", "logger", "metrics",
	                                    "snapshot-load",      NULL};

	for (const cJSON *it = root->child; it; it = it->next) {
		const char *k = it->string ? it->string : "";
		struct api_pctx c = {k, err, errlen};
		size_t i;

		for (const cJSON *q = root->child; q != it; q = q->next)
			if (q->string && !strcmp(q->string, k))
				return cfail(err, errlen, "duplicate section '%.64s'", k);
		for (i = 0; known[i] && strcmp(known[i], k); i++)
			;
		if (!known[i]) {
			for (i = 0; unsupported_sections[i] && strcmp(unsupported_sections[i], k);
			     i++)
				;
			if (!unsupported_sections[i])
				return cfail(err, errlen, "unknown section '%.64s'", k);
			if (cJSON_IsNull(it) || (cJSON_IsArray(it) && !it->child))
				continue;
			return cfail(err, errlen, "%s is not supported by hearth", k);
		}
		if (cJSON_IsNull(it))
			continue; /* Firecracker writes null for an unset section */
		if (!strcmp(k, "drives")) {
			p->has_drives = true;
			if (parse_drives(it, p, err, errlen))
				return -1;
			continue;
		}
		if (!strcmp(k, "network-interfaces")) {
			p->has_nets = true;
			if (parse_nets(it, p, err, errlen))
				return -1;
			continue;
		}
		if (!cJSON_IsObject(it))
			return cfail(err, errlen, "%s must be an object", k);
		if (!strcmp(k, "boot-source")) {
			if (api_parse_boot_source(&c, it, &p->boot))
				return -1;
			p->has_boot = true;
		} else if (!strcmp(k, "machine-config")) {
			if (api_parse_machine_config(&c, it, false, &p->machine))
				return -1;
			p->has_machine = true;
		} else if (!strcmp(k, "logger")) {
			if (api_parse_logger(&c, it, &p->logger))
				return -1;
			p->has_logger = true;
		} else if (!strcmp(k, "snapshot-load")) {
			/* hearth's: PUT /snapshot/load's body, the VM restored instead of booted */
			if (api_parse_snapshot_load(&c, it, &p->snapshot))
				return -1;
			p->has_snapshot = true;
		} else {
			if (api_parse_metrics(&c, it, &p->metrics))
				return -1;
			p->has_metrics = true;
		}
	}
	return 0;
}

static void replace(char **field, char **value)
{
	free(*field);
	*field = *value;
	*value = NULL;
}

int config_from_json(const char *text, struct vm_config *c, char *err, size_t errlen)
{
	struct parsed p;
	cJSON *root;

	memset(&p, 0, sizeof(p));
	if (!(root = api_json_parse(text, strlen(text), "config", err, errlen)))
		return -1;
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return cfail(err, errlen, "the config must be a JSON object");
	}
	if (parse_sections(root, &p, err, errlen)) {
		cJSON_Delete(root);
		parsed_free(&p);
		return -1;
	}
	cJSON_Delete(root);

	if (p.has_snapshot && (p.has_boot || p.has_machine || p.has_drives || p.has_nets)) {
		parsed_free(&p);
		return cfail(err, errlen,
		             "snapshot-load brings the VM's whole configuration: do not combine it "
		             "with boot-source, machine-config, drives or network-interfaces");
	}
	if (p.has_snapshot) {
		free_snapshot_params(c->snapshot);
		c->snapshot = malloc(sizeof(*c->snapshot));
		if (!c->snapshot) {
			parsed_free(&p);
			return cfail(err, errlen, "out of memory");
		}
		*c->snapshot = p.snapshot;
		p.snapshot.state_path = p.snapshot.mem_path = NULL;
	}
	/* Apply: each section given replaces what c had for it. */
	if (p.has_boot) {
		replace(&c->kernel_path, &p.boot.u.boot.kernel);
		replace(&c->initrd_path, &p.boot.u.boot.initrd);
		replace(&c->cmdline, &p.boot.u.boot.cmdline);
	}
	if (p.has_machine) {
		c->vcpus = p.machine.u.machine.vcpus;
		c->mem_mib = p.machine.u.machine.mem_mib;
		c->smt = p.machine.u.machine.smt;
		c->track_dirty_pages = p.machine.u.machine.track_dirty_pages;
		c->mmu = p.machine.u.machine.mmu;
	}
	if (p.has_drives) {
		for (unsigned i = 0; i < c->ndrives; i++)
			free(c->drives[i].path);
		memcpy(c->drives, p.drives, sizeof(p.drives));
		c->ndrives = p.ndrives;
		p.ndrives = 0; /* the paths now belong to c */
	}
	if (p.has_nets) {
		memcpy(c->nets, p.nets, sizeof(p.nets));
		c->nnets = p.nnets;
	}
	if (p.has_logger)
		replace(&c->log_path, &p.logger.u.logger.path);
	if (p.has_metrics)
		replace(&c->metrics_path, &p.metrics.u.metrics.path);
	parsed_free(&p);
	return 0;
}
