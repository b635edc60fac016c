/*
 * libFuzzer target: the API's request layer and config parser on random input.
 *
 * Byte 0 picks the method, byte 1 the mode: one of the API's paths with the rest of the input
 * as the body; the same with a body built from the input as (field, value) pairs drawn from
 * the API's own names and edge values (so the validators are reached without a corpus);
 * or a path made of input bytes. The raw input, and the built body wrapped as a config
 * section, are also read as a --config-file. Oracles besides the sanitizers: a refused
 * request has a non-empty message and nothing allocated; every fault message renders as
 * valid JSON; a config that parses renders to JSON that parses back to the same rendering.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api/api.h"
#include "api/routes.h"

static const char *const methods[] = {"GET", "PUT", "PATCH", "DELETE", "POST", ""};
static const char *const paths[] = {
    "/",
    "/version",
    "/vm/config",
    "/machine-config",
    "/boot-source",
    "/drives/rootfs",
    "/drives/",
    "/network-interfaces/eth0",
    "/actions",
    "/vm",
    "/logger",
    "/metrics",
    "/balloon",
    "/snapshot/create",
    "/pmem/x",
    "/mmds/config",
    "/drives",
    "/network-interfaces",
    "/drives/a/b",
    "/machine-config?x=1",
};

#define NPATHS (sizeof(paths) / sizeof(paths[0]))

static const char *const keys[] = {
    "kernel_image_path",
    "boot_args",
    "initrd_path",
    "vcpu_count",
    "mem_size_mib",
    "smt",
    "track_dirty_pages",
    "cpu_template",
    "huge_pages",
    "mmu",
    "drive_id",
    "path_on_host",
    "is_root_device",
    "is_read_only",
    "partuuid",
    "cache_type",
    "rate_limiter",
    "io_engine",
    "socket",
    "iface_id",
    "host_dev_name",
    "guest_mac",
    "rx_rate_limiter",
    "tx_rate_limiter",
    "mtu",
    "action_type",
    "state",
    "log_path",
    "level",
    "show_level",
    "show_log_origin",
    "module",
    "metrics_path",
    "emit_id",
    "properties",
    "x",
};
static const char *const values[] = {
    "null",
    "true",
    "false",
    "0",
    "1",
    "2",
    "3",
    "32",
    "33",
    "4",
    "1048576",
    "1048577",
    "-1",
    "1.5",
    "1e3",
    "9007199254740993",
    "\"\"",
    "\"rootfs\"",
    "\"eth0\"",
    "\"/p\"",
    "\"None\"",
    "\"T2\"",
    "\"Sync\"",
    "\"Async\"",
    "\"Unsafe\"",
    "\"Writeback\"",
    "\"auto\"",
    "\"shadow\"",
    "\"InstanceStart\"",
    "\"FlushMetrics\"",
    "\"Paused\"",
    "\"Resumed\"",
    "\"trace\"",
    "\"06:00:ac:10:00:02\"",
    "\"01:00:5e:00:00:01\"",
    "\"tap0\"",
    "\"a/b\"",
    "{}",
    "[]",
    "{\"a\":1}",
    "\"a\\u00e9\"",
};
static const char *const sections[] = {"boot-source", "machine-config",     "logger", "metrics",
                                       "drives",      "network-interfaces", "balloon"};

#define NKEYS   (sizeof(keys) / sizeof(keys[0]))
#define NVALUES (sizeof(values) / sizeof(values[0]))

/* {"key": value, ...} from (key, value) byte pairs; returns the length written. */
static size_t build_body(const uint8_t *data, size_t size, char *out, size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "{");

	for (size_t i = 0; i + 1 < size && n + 64 < cap; i += 2)
		n += (size_t)snprintf(out + n, cap - n, "%s\"%s\": %s", i ? ", " : "",
		                      keys[data[i] % NKEYS], values[data[i + 1] % NVALUES]);
	n += (size_t)snprintf(out + n, cap - n, "}");
	return n;
}

static void check_fault(const char *msg)
{
	struct api_msg m;
	cJSON *o;

	memset(&m, 0, sizeof(m));
	api_reply_error(&m, "%s", msg);
	o = cJSON_Parse(m.body);
	if (!o || !cJSON_IsString(cJSON_GetObjectItem(o, "fault_message")))
		abort();
	cJSON_Delete(o);
	api_msg_free(&m);
}

static void fuzz_config(const char *text, size_t size);

static void fuzz_route(const uint8_t *data, size_t size)
{
	char err[512], url[300];
	const char *method, *body;
	size_t blen;
	struct api_msg m;
	int r;

	if (size < 2)
		return;
	method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
	body = (const char *)data + 2;
	blen = size - 2;
	if (data[1] < 0x80) {
		snprintf(url, sizeof(url), "%s", paths[data[1] % NPATHS]);
	} else if (data[1] < 0xc0) {
		static char built[8192], cfg[8300];
		const char *sect = sections[data[1] % (sizeof(sections) / sizeof(sections[0]))];
		size_t n;

		snprintf(url, sizeof(url), "%s", paths[data[1] % NPATHS]);
		blen = build_body(data + 2, size - 2, built, sizeof(built));
		body = built;
		/* The same object as a config section (an array element for the lists). */
		n = (size_t)snprintf(cfg, sizeof(cfg),
		                     sect[0] == 'd' || sect[0] == 'n' ? "{\"%s\": [%s]}"
		                                                      : "{\"%s\": %s}",
		                     sect, built);
		fuzz_config(cfg, n < sizeof(cfg) ? n : sizeof(cfg) - 1);
	} else {
		/* A path made of input bytes up to the first newline; the rest is the body. */
		const char *nl = memchr(body, '\n', blen);
		size_t n = nl ? (size_t)(nl - body) : blen;
		size_t off = 0;

		if (data[1] & 1)
			off = (size_t)snprintf(url, sizeof(url), "%s",
			                       data[1] & 2 ? "/drives/" : "/network-interfaces/");
		if (n > sizeof(url) - 1 - off)
			n = sizeof(url) - 1 - off;
		memcpy(url + off, body, n);
		url[off + n] = 0;
		if (nl) {
			blen -= (size_t)(nl - body) + 1;
			body = nl + 1;
		}
	}
	err[0] = 0;
	r = api_route(method, url, body, blen, &m, err, sizeof(err));
	if (r) {
		if (r != -1 || !err[0] || m.body)
			abort();
		check_fault(err);
	}
	api_msg_free(&m);
}

static void fuzz_config(const char *data, size_t size)
{
	struct vm_config c, c2;
	char err[512];
	char *text = malloc(size + 1), *json, *json2;

	if (!text)
		return;
	memcpy(text, data, size);
	text[size] = 0;
	vm_config_defaults(&c);
	if (config_from_json(text, &c, err, sizeof(err))) {
		if (!err[0])
			abort();
		check_fault(err);
		vm_config_free(&c);
		free(text);
		return;
	}
	json = config_to_json(&c);
	if (!json)
		abort();
	vm_config_defaults(&c2);
	if (config_from_json(json, &c2, err, sizeof(err))) {
		fprintf(stderr, "round trip refused: %s\n%s\n", err, json);
		abort();
	}
	json2 = config_to_json(&c2);
	if (!json2 || strcmp(json, json2))
		abort();
	free(machine_config_to_json(&c));
	free(json);
	free(json2);
	vm_config_free(&c);
	vm_config_free(&c2);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4 * API_MAX_BODY)
		return 0;
	fuzz_route(data, size);
	fuzz_config((const char *)data, size);
	return 0;
}
