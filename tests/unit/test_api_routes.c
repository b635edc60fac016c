/*
 * The API's request layer (api/routes.c) and config JSON (api/config_json.c), without
 * sockets: method + path + body -> struct api_msg or an exact error, and the config file
 * shape both ways. Also the channel's reply helpers (escaping of fault messages).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <stdio.h>

#include <cjson/cJSON.h>

#include "api/api.h"
#include "api/routes.h"

static char err[1024];

static int route(const char *method, const char *url, const char *body, struct api_msg *m)
{
	err[0] = 0;
	return api_route(method, url, body, body ? strlen(body) : 0, m, err, sizeof(err));
}

/* ---- valid requests ---------------------------------------------------------------------- */

struct ok_case {
	const char *method, *url, *body;
	enum api_op op;
};

static const struct ok_case ok_cases[] = {
    {"GET", "/", NULL, API_GET_INFO},
    {"GET", "/?x=1", NULL, API_GET_INFO},
    {"GET", "/version", NULL, API_GET_VERSION},
    {"GET", "/vm/config", NULL, API_GET_VM_CONFIG},
    {"GET", "/machine-config", NULL, API_GET_MACHINE_CONFIG},
    {"PUT", "/boot-source", "{\"kernel_image_path\": \"/k\"}", API_PUT_BOOT_SOURCE},
    {"PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 256}",
     API_PUT_MACHINE_CONFIG},
    {"PATCH", "/machine-config", "{\"vcpu_count\": 2}", API_PATCH_MACHINE_CONFIG},
    {"PATCH", "/machine-config", "{\"cpu_template\": \"None\"}", API_PATCH_MACHINE_CONFIG},
    {"PUT", "/drives/rootfs",
     "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/r\", \"is_root_device\": true}",
     API_PUT_DRIVE},
    {"PATCH", "/drives/rootfs", "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/r2\"}",
     API_PATCH_DRIVE},
    {"PUT", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\"}",
     API_PUT_NET},
    {"PATCH", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\"}", API_PATCH_NET},
    {"PATCH", "/network-interfaces/eth0",
     "{\"iface_id\": \"eth0\", \"rx_rate_limiter\": null, \"tx_rate_limiter\": null}",
     API_PATCH_NET},
    {"PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", API_ACTION},
    {"PATCH", "/vm", "{\"state\": \"Paused\"}", API_PATCH_VM},
    {"PUT", "/logger", "{}", API_PUT_LOGGER},
    {"PUT", "/metrics", "{\"metrics_path\": \"/m\"}", API_PUT_METRICS},
    /* whitespace around the value, a BOM-free UTF-8 path */
    {"PUT", "/boot-source", " \r\n{\"kernel_image_path\": \"/k\u00e9rn\u20ac\"}\n\t ",
     API_PUT_BOOT_SOURCE},
};

static void test_ok_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
		const struct ok_case *k = &ok_cases[i];
		struct api_msg m;
		int r = route(k->method, k->url, k->body, &m);

		if (r)
			print_error("%s %s %s -> %s\n", k->method, k->url, k->body, err);
		assert_int_equal(r, 0);
		assert_int_equal(m.op, k->op);
		api_msg_free(&m);
	}
}

static void test_boot_source_fields(void **state)
{
	struct api_msg m;

	(void)state;
	assert_int_equal(
	    route("PUT", "/boot-source",
	          "{\"kernel_image_path\": \"/vmlinux\", \"boot_args\": \"console=ttyS0 "
	          "a=\\\"b\\\"\", \"initrd_path\": \"/initrd\"}",
	          &m),
	    0);
	assert_string_equal(m.u.boot.kernel, "/vmlinux");
	assert_string_equal(m.u.boot.cmdline, "console=ttyS0 a=\"b\"");
	assert_string_equal(m.u.boot.initrd, "/initrd");
	api_msg_free(&m);
	assert_null(m.u.boot.kernel);

	/* null means absent; an empty boot_args is fine */
	assert_int_equal(route("PUT", "/boot-source",
	                       "{\"kernel_image_path\": \"/k\", \"boot_args\": \"\", "
	                       "\"initrd_path\": null}",
	                       &m),
	                 0);
	assert_string_equal(m.u.boot.cmdline, "");
	assert_null(m.u.boot.initrd);
	api_msg_free(&m);
}

static void test_machine_config_fields(void **state)
{
	struct api_msg m;

	(void)state;
	/* PUT: every field counts as given, the absent ones at their defaults */
	assert_int_equal(route("PUT", "/machine-config",
	                       "{\"vcpu_count\": 32, \"mem_size_mib\": 1048576, \"cpu_template\": "
	                       "\"None\", \"huge_pages\": \"None\", \"mmu\": \"shadow\"}",
	                       &m),
	                 0);
	assert_int_equal(m.u.machine.has, MC_VCPUS | MC_MEM | MC_SMT | MC_DIRTY | MC_MMU);
	assert_int_equal(m.u.machine.vcpus, 32);
	assert_int_equal(m.u.machine.mem_mib, 1048576);
	assert_false(m.u.machine.smt);
	assert_false(m.u.machine.track_dirty_pages);
	assert_int_equal(m.u.machine.mmu, MMU_SHADOW);

	assert_int_equal(route("PUT", "/machine-config",
	                       "{\"vcpu_count\": 1, \"mem_size_mib\": 4, \"smt\": true, "
	                       "\"track_dirty_pages\": true, \"mmu\": \"hardware\"}",
	                       &m),
	                 0);
	assert_int_equal(m.u.machine.vcpus, 1);
	assert_int_equal(m.u.machine.mem_mib, 4);
	assert_true(m.u.machine.smt);
	assert_true(m.u.machine.track_dirty_pages);
	assert_int_equal(m.u.machine.mmu, MMU_HARDWARE);

	/* 1e1 and 2.0 are whole numbers */
	assert_int_equal(
	    route("PUT", "/machine-config", "{\"vcpu_count\": 2.0, \"mem_size_mib\": 1e3}", &m), 0);
	assert_int_equal(m.u.machine.vcpus, 2);
	assert_int_equal(m.u.machine.mem_mib, 1000);

	/* PATCH: only what was carried */
	assert_int_equal(
	    route("PATCH", "/machine-config", "{\"mem_size_mib\": 512, \"mmu\": \"auto\"}", &m), 0);
	assert_int_equal(m.u.machine.has, MC_MEM | MC_MMU);
	assert_int_equal(m.u.machine.mem_mib, 512);
	assert_int_equal(m.u.machine.mmu, MMU_AUTO);
	assert_int_equal(
	    route("PATCH", "/machine-config", "{\"smt\": false, \"vcpu_count\": 3}", &m), 0);
	assert_int_equal(m.u.machine.has, MC_SMT | MC_VCPUS);
	assert_int_equal(m.u.machine.vcpus, 3);
	assert_int_equal(route("PATCH", "/machine-config", "{\"track_dirty_pages\": true}", &m), 0);
	assert_int_equal(m.u.machine.has, MC_DIRTY);
	assert_true(m.u.machine.track_dirty_pages);
}

static void test_drive_fields(void **state)
{
	struct api_msg m;

	(void)state;
	assert_int_equal(
	    route("PUT", "/drives/data_1",
	          "{\"drive_id\": \"data_1\", \"path_on_host\": \"/img\", "
	          "\"is_root_device\": false, \"is_read_only\": true, \"partuuid\": null, "
	          "\"cache_type\": \"Writeback\", \"rate_limiter\": null, "
	          "\"io_engine\": \"Sync\", \"socket\": null}",
	          &m),
	    0);
	assert_int_equal(m.op, API_PUT_DRIVE);
	assert_string_equal(m.u.drive.id, "data_1");
	assert_string_equal(m.u.drive.path, "/img");
	assert_false(m.u.drive.is_root_device);
	assert_true(m.u.drive.read_only);
	api_msg_free(&m);
	assert_null(m.u.drive.path);

	/* is_read_only defaults to false */
	assert_int_equal(
	    route("PUT", "/drives/r",
	          "{\"drive_id\": \"r\", \"path_on_host\": \"/i\", \"is_root_device\": "
	          "true, \"cache_type\": \"Unsafe\"}",
	          &m),
	    0);
	assert_true(m.u.drive.is_root_device);
	assert_false(m.u.drive.read_only);
	api_msg_free(&m);

	assert_int_equal(
	    route("PATCH", "/drives/r",
	          "{\"drive_id\": \"r\", \"path_on_host\": \"/new\", \"rate_limiter\": "
	          "null}",
	          &m),
	    0);
	assert_int_equal(m.op, API_PATCH_DRIVE);
	assert_string_equal(m.u.drive.id, "r");
	assert_string_equal(m.u.drive.path, "/new");
	api_msg_free(&m);

	/* a 64-character id is the longest */
	char url[128], body[256];
	char id[65];

	memset(id, 'a', 64);
	id[64] = 0;
	snprintf(url, sizeof(url), "/drives/%s", id);
	snprintf(body, sizeof(body),
	         "{\"drive_id\": \"%s\", \"path_on_host\": \"/x\", \"is_root_device\": false}", id);
	assert_int_equal(route("PUT", url, body, &m), 0);
	assert_string_equal(m.u.drive.id, id);
	api_msg_free(&m);
}

static void test_net_fields(void **state)
{
	static const uint8_t mac[6] = {0x06, 0x00, 0xac, 0x10, 0x00, 0xfe};
	struct api_msg m;

	(void)state;
	assert_int_equal(route("PUT", "/network-interfaces/eth0",
	                       "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap-vm.0123456\", "
	                       "\"guest_mac\": \"06:00:AC:10:00:fe\", \"rx_rate_limiter\": null}",
	                       &m),
	                 0);
	assert_string_equal(m.u.net.id, "eth0");
	assert_string_equal(m.u.net.host_dev_name, "tap-vm.0123456");
	assert_true(m.u.net.has_mac);
	assert_memory_equal(m.u.net.mac, mac, 6);

	assert_int_equal(route("PUT", "/network-interfaces/e",
	                       "{\"iface_id\": \"e\", \"host_dev_name\": \"t\"}", &m),
	                 0);
	assert_false(m.u.net.has_mac);

	assert_int_equal(route("PATCH", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\"}", &m),
	                 0);
	assert_int_equal(m.op, API_PATCH_NET);
	assert_string_equal(m.u.net.id, "eth0");
}

static void test_action_vm_logger_metrics(void **state)
{
	static const struct {
		const char *body;
		enum api_action a;
	} actions[] = {
	    {"{\"action_type\": \"InstanceStart\"}", ACTION_INSTANCE_START},
	    {"{\"action_type\": \"SendCtrlAltDel\"}", ACTION_SEND_CTRL_ALT_DEL},
	    {"{\"action_type\": \"FlushMetrics\"}", ACTION_FLUSH_METRICS},
	};
	static const struct {
		const char *level;
		enum log_level l;
	} levels[] = {{"Error", LOG_LEVEL_ERROR}, {"warning", LOG_LEVEL_WARN},
	              {"INFO", LOG_LEVEL_INFO},   {"Debug", LOG_LEVEL_DEBUG},
	              {"Trace", LOG_LEVEL_DEBUG}, {"Off", LOG_LEVEL_ERROR}};
	struct api_msg m;
	char body[128];

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(route("PUT", "/actions", actions[i].body, &m), 0);
		assert_int_equal(m.op, API_ACTION);
		assert_int_equal(m.u.action, actions[i].a);
	}
	assert_int_equal(route("PATCH", "/vm", "{\"state\": \"Paused\"}", &m), 0);
	assert_true(m.u.pause);
	assert_int_equal(route("PATCH", "/vm", "{\"state\": \"Resumed\"}", &m), 0);
	assert_false(m.u.pause);

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		snprintf(body, sizeof(body), "{\"level\": \"%s\"}", levels[i].level);
		assert_int_equal(route("PUT", "/logger", body, &m), 0);
		assert_true(m.u.logger.has_level);
		assert_int_equal(m.u.logger.level, levels[i].l);
		assert_null(m.u.logger.path);
		api_msg_free(&m);
	}
	assert_int_equal(route("PUT", "/logger",
	                       "{\"log_path\": \"/log\", \"show_level\": true, "
	                       "\"show_log_origin\": true, \"module\": null}",
	                       &m),
	                 0);
	assert_string_equal(m.u.logger.path, "/log");
	assert_false(m.u.logger.has_level);
	assert_true(m.u.logger.show_level);
	assert_true(m.u.logger.show_origin);
	api_msg_free(&m);

	assert_int_equal(
	    route("PUT", "/metrics", "{\"metrics_path\": \"/met\", \"emit_id\": false}", &m), 0);
	assert_string_equal(m.u.metrics.path, "/met");
	api_msg_free(&m);
}

/* ---- refused requests -------------------------------------------------------------------- */

struct err_case {
	const char *method, *url, *body;
	const char *msg; /* a substring of the error */
};

#define DRV(extra)                                                                                 \
	"{\"drive_id\": \"d\", \"path_on_host\": \"/p\", \"is_root_device\": false" extra "}"
#define NET(extra) "{\"iface_id\": \"n\", \"host_dev_name\": \"tap0\"" extra "}"
#define MC(extra)  "{\"vcpu_count\": 1, \"mem_size_mib\": 128" extra "}"

static const struct err_case err_cases[] = {
    /* paths and methods */
    {"GET", "/nope", NULL, "Invalid request method and/or path: GET /nope"},
    {"GET", "", NULL, "Invalid request method and/or path: GET "},
    {"GET", "/machine-config/", NULL, "Invalid request method and/or path: GET /machine-config/"},
    {"GET", "/drives/a/b", NULL, "Invalid request method and/or path: GET /drives/a/b"},
    {"GET", "//", NULL, "Invalid request method and/or path"},
    {"DELETE", "/machine-config", NULL,
     "Invalid request method and/or path: DELETE /machine-config (allowed: GET, PUT, PATCH)"},
    {"POST", "/actions", "{}", "Invalid request method and/or path: POST /actions (allowed: PUT)"},
    {"get", "/", NULL, "Invalid request method and/or path: get / (allowed: GET)"},
    {"HEAD", "/version", NULL, "(allowed: GET)"},
    {"GET", "/drives/x", NULL,
     "Invalid request method and/or path: GET /drives/x (allowed: PUT, PATCH)"},
    {"PUT", "/vm", "{}", "Invalid request method and/or path: PUT /vm (allowed: PATCH)"},
    {"PUT", "/version", "{}", "(allowed: GET)"},
    /* a GET carries no body (Firecracker: 400), whatever the path */
    {"GET", "/machine-config", "{\"ignored\": 1}", "GET request cannot have a body"},
    {"GET", "/", " ", "GET request cannot have a body"},
    {"GET", "/nope", "x", "GET request cannot have a body"},
    /* Firecracker calls hearth does not have */
    {"PUT", "/balloon", "{}", "PUT /balloon is not implemented by hearth"},
    {"GET", "/balloon", NULL, "GET /balloon is not implemented by hearth"},
    {"PATCH", "/balloon/statistics", "{}",
     "PATCH /balloon/statistics is not implemented by hearth"},
    {"PATCH", "/balloon/hinting/start", NULL,
     "PATCH /balloon/hinting/start is not implemented by hearth"},
    {"GET", "/balloon/hinting/status", NULL,
     "GET /balloon/hinting/status is not implemented by hearth"},
    {"PATCH", "/balloon/hinting/stop", NULL,
     "PATCH /balloon/hinting/stop is not implemented by hearth"},
    {"PUT", "/cpu-config", "{}", "PUT /cpu-config is not implemented by hearth"},
    {"PUT", "/pmem/p0", "{}", "PUT /pmem/p0 is not implemented by hearth"},
    {"GET", "/mmds", NULL, "GET /mmds is not implemented by hearth"},
    {"PUT", "/mmds/config", "{}", "PUT /mmds/config is not implemented by hearth"},
    {"PUT", "/entropy", "{}", "PUT /entropy is not implemented by hearth"},
    {"PUT", "/serial", "{}", "PUT /serial is not implemented by hearth"},
    {"PATCH", "/hotplug/memory", "{}", "PATCH /hotplug/memory is not implemented by hearth"},
    {"PUT", "/snapshot/create", "{}", "missing required field 'snapshot_path'"},
    {"PUT", "/snapshot/create",
     "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
     "\"snapshot_type\": \"Half\"}",
     "field 'snapshot_type' must be Full or Diff"},
    {"PUT", "/snapshot/load", "{}", "missing required field 'snapshot_path'"},
    {"PUT", "/snapshot/load", "{\"snapshot_path\": \"s\"}",
     "missing required field 'mem_backend' (or the deprecated 'mem_file_path')"},
    {"PUT", "/snapshot/load",
     "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"mem_backend\": "
     "{\"backend_type\": \"File\", \"backend_path\": \"m\"}}",
     "give mem_backend or mem_file_path, not both"},
    {"PUT", "/snapshot/load",
     "{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"Disk\", "
     "\"backend_path\": \"m\"}}",
     "mem_backend.backend_type must be File or Uffd"},
    {"PUT", "/snapshot/load",
     "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"network_overrides\": "
     "[{\"iface_id\": \"eth0\", \"host_dev_name\": \"a/b\"}]}",
     "network_overrides[].host_dev_name 'a/b' must be 1..15 bytes"},
    {"PUT", "/snapshot/load",
     "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"vsock_override\": {}}",
     "vsock_override is not supported by hearth"},
    {"PUT", "/vsock", "{}", "PUT /vsock is not implemented by hearth"},
    {"DELETE", "/vsock", NULL, "Invalid request method and/or path: DELETE /vsock (allowed: PUT)"},
    /* path ids */
    {"PUT", "/drives/", DRV(""), "PUT /drives/: missing drive_id in the path (/drives/{drive_id})"},
    {"PUT", "/drives", DRV(""), "missing drive_id in the path"},
    {"PUT", "/network-interfaces/", NET(""), "missing iface_id in the path"},
    {"PUT", "/drives/a-b", DRV(""),
     "drive_id 'a-b' in the path must be 1..64 characters from [A-Za-z0-9_]"},
    {"PUT", "/drives/a.b", DRV(""), "drive_id 'a.b' in the path must be 1..64 characters"},
    {"PUT", "/network-interfaces/e%20", NET(""),
     "iface_id 'e%20' in the path must be 1..64 characters"},
    {"PUT", "/drives/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", DRV(""),
     "drive_id 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' in the path must "
     "be "
     "1..64 characters"},
    {"PUT", "/drives/x", DRV(""), "drive_id 'd' in the body does not match 'x' in the path"},
    {"PATCH", "/drives/x", "{\"drive_id\": \"d\", \"path_on_host\": \"/p\"}",
     "drive_id 'd' in the body does not match 'x' in the path"},
    {"PUT", "/network-interfaces/x", NET(""),
     "iface_id 'n' in the body does not match 'x' in the path"},
    {"PATCH", "/network-interfaces/x", "{\"iface_id\": \"y\"}",
     "iface_id 'y' in the body does not match 'x' in the path"},
    /* bodies: presence and syntax */
    {"PUT", "/actions", NULL, "missing request body: PUT /actions needs a JSON object"},
    {"PUT", "/actions", " \n", "missing request body"},
    {"PUT", "/actions", "{", "malformed JSON body: syntax error at offset 0 near '{'"},
    {"PUT", "/actions", "{\"action_type\": \"Instance",
     "malformed JSON body: syntax error at offset 17 near 'Instance'"},
    {"PUT", "/actions", "{\"action_type\": }",
     "malformed JSON body: syntax error at offset 16 near '}'"},
    {"PUT", "/actions", "{'a': 1}", "malformed JSON body: syntax error"},
    {"PUT", "/actions", "{\"action_type\": \"InstanceStart\"} x",
     "malformed JSON body: unexpected data after the JSON value at offset 33"},
    {"PUT", "/actions", "{} {}", "unexpected data after the JSON value"},
    {"PUT", "/actions", "{\"action_type\": \"Inst\\u0000anceStart\"}",
     "malformed JSON body: \\u0000 in a string at offset 21"},
    {"PUT", "/actions", "{\"action_type\": \"a\tb\"}",
     "malformed JSON body: control character in a string at offset 18"},
    {"PUT", "/actions", "{\"action_type\": \"\xff\"}",
     "malformed JSON body: invalid UTF-8 at offset 17"},
    {"PUT", "/actions", "{\"action_type\": \"\xed\xa0\x80\"}", "invalid UTF-8"},
    {"PUT", "/actions", "{\"action_type\": \"\\ud800\"}", "malformed JSON body: syntax error"},
    {"PUT", "/actions", "[]", "the request body must be a JSON object"},
    {"PUT", "/actions", "\"InstanceStart\"", "the request body must be a JSON object"},
    {"PUT", "/actions", "null", "the request body must be a JSON object"},
    /* fields: unknown, duplicate, missing, types */
    {"PUT", "/actions", "{\"action_type\": \"InstanceStart\", \"x\": 1}", "unknown field 'x'"},
    {"PUT", "/actions", "{\"Action_Type\": \"InstanceStart\"}", "unknown field 'Action_Type'"},
    {"PUT", "/actions", "{\"action_type\": \"InstanceStart\", \"action_type\": \"FlushMetrics\"}",
     "duplicate field 'action_type'"},
    {"PUT", "/actions", "{}", "missing required field 'action_type'"},
    {"PUT", "/actions", "{\"action_type\": null}", "missing required field 'action_type'"},
    {"PUT", "/actions", "{\"action_type\": 1}", "field 'action_type' must be a string"},
    {"PUT", "/actions", "{\"action_type\": \"Reboot\"}",
     "field 'action_type' must be one of InstanceStart, SendCtrlAltDel, FlushMetrics"},
    {"PUT", "/actions", "{\"action_type\": \"instancestart\"}", "must be one of InstanceStart"},
    {"PATCH", "/vm", "{\"state\": \"Running\"}", "field 'state' must be Paused or Resumed"},
    {"PATCH", "/vm", "{}", "missing required field 'state'"},
    {"PUT", "/boot-source", "{}", "missing required field 'kernel_image_path'"},
    {"PUT", "/boot-source", "{\"kernel_image_path\": \"\"}",
     "field 'kernel_image_path' must not be empty"},
    {"PUT", "/boot-source", "{\"kernel_image_path\": [\"/k\"]}",
     "field 'kernel_image_path' must be a string"},
    {"PUT", "/boot-source", "{\"kernel_image_path\": \"/k\", \"boot_args\": 5}",
     "field 'boot_args' must be a string"},
    {"PUT", "/boot-source", "{\"kernel_image_path\": \"/k\", \"initrd_path\": \"\"}",
     "field 'initrd_path' must not be empty"},
    {"PUT", "/boot-source", "{\"kernel_image_path\": \"/k\", \"initrd\": \"/i\"}",
     "unknown field 'initrd'"},
    /* machine-config */
    {"PUT", "/machine-config", "{\"mem_size_mib\": 128}", "missing required field 'vcpu_count'"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 1}", "missing required field 'mem_size_mib'"},
    {"PUT", "/machine-config", "{\"vcpu_count\": \"2\", \"mem_size_mib\": 128}",
     "field 'vcpu_count' must be an integer"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 1.5, \"mem_size_mib\": 128}",
     "field 'vcpu_count' must be an integer"},
    {"PUT", "/machine-config", "{\"vcpu_count\": true, \"mem_size_mib\": 128}",
     "field 'vcpu_count' must be an integer"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 0, \"mem_size_mib\": 128}",
     "field 'vcpu_count' must be between 1 and 32"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 33, \"mem_size_mib\": 128}",
     "field 'vcpu_count' must be between 1 and 32"},
    {"PUT", "/machine-config", "{\"vcpu_count\": -1, \"mem_size_mib\": 128}",
     "field 'vcpu_count' must be between 1 and 32"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 4294967297, \"mem_size_mib\": 128}",
     "field 'vcpu_count' must be between 1 and 32"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 1e400, \"mem_size_mib\": 128}",
     "field 'vcpu_count' must be an integer"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 3}",
     "field 'mem_size_mib' must be between 4 and 1048576 MiB"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": -4}",
     "field 'mem_size_mib' must be between 4 and 1048576 MiB"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 1048577}",
     "field 'mem_size_mib' must be between 4 and 1048576"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 9007199254740993}",
     "field 'mem_size_mib' must be between 4 and 1048576"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 18446744073709551616}",
     "field 'mem_size_mib' must be between 4 and 1048576"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 128.25}",
     "field 'mem_size_mib' must be an integer"},
    {"PUT", "/machine-config", MC(", \"smt\": 1"), "field 'smt' must be a boolean"},
    {"PUT", "/machine-config", MC(", \"track_dirty_pages\": \"yes\""),
     "field 'track_dirty_pages' must be a boolean"},
    {"PUT", "/machine-config", MC(", \"cpu_template\": \"T2\""),
     "cpu_template T2 is not supported by hearth"},
    {"PUT", "/machine-config", MC(", \"cpu_template\": 2"),
     "field 'cpu_template' must be a string"},
    {"PUT", "/machine-config", MC(", \"huge_pages\": \"2M\""),
     "huge_pages 2M is not supported by hearth"},
    {"PUT", "/machine-config", MC(", \"mmu\": \"ept\""),
     "field 'mmu' must be one of auto, hardware, shadow, process"},
    {"PUT", "/machine-config", MC(", \"gdb_socket_path\": \"/g\""),
     "unknown field 'gdb_socket_path'"},
    {"PUT", "/machine-config", "{\"vcpu_count\": 3, \"mem_size_mib\": 128, \"smt\": true}",
     "field 'vcpu_count' must be 1 or an even number when smt is enabled"},
    {"PATCH", "/machine-config", "{}", "PATCH /machine-config needs at least one field"},
    {"PATCH", "/machine-config", "{\"vcpu_count\": null}", "needs at least one field"},
    {"PATCH", "/machine-config", "{\"vcpu_count\": 0}",
     "field 'vcpu_count' must be between 1 and 32"},
    {"PATCH", "/machine-config", "{\"vcpus\": 2}", "unknown field 'vcpus'"},
    /* drives */
    {"PUT", "/drives/d", "{\"drive_id\": \"d\", \"is_root_device\": false}",
     "missing required field 'path_on_host'"},
    {"PUT", "/drives/d", "{\"drive_id\": \"d\", \"path_on_host\": \"/p\"}",
     "missing required field 'is_root_device'"},
    {"PUT", "/drives/d", "{\"path_on_host\": \"/p\", \"is_root_device\": false}",
     "missing required field 'drive_id'"},
    {"PUT", "/drives/d", "{\"drive_id\": 5, \"path_on_host\": \"/p\", \"is_root_device\": false}",
     "field 'drive_id' must be a string"},
    {"PUT", "/drives/d", DRV(", \"is_read_only\": \"no\""),
     "field 'is_read_only' must be a boolean"},
    {"PUT", "/drives/d", "{\"drive_id\": \"d\", \"path_on_host\": \"/p\", \"is_root_device\": 1}",
     "field 'is_root_device' must be a boolean"},
    {"PUT", "/drives/d", DRV(", \"partuuid\": \"abc\""), "partuuid is not supported by hearth"},
    {"PUT", "/drives/d", DRV(", \"rate_limiter\": {}"), "rate_limiter is not supported by hearth"},
    {"PUT", "/drives/d", DRV(", \"io_engine\": \"Async\""),
     "io_engine Async is not supported by hearth"},
    {"PUT", "/drives/d", DRV(", \"socket\": \"/s\""), "socket is not supported by hearth"},
    {"PUT", "/drives/d", DRV(", \"cache_type\": \"None\""),
     "field 'cache_type' must be Unsafe or Writeback"},
    {"PUT", "/drives/d", DRV(", \"readonly\": true"), "unknown field 'readonly'"},
    {"PATCH", "/drives/d", "{\"drive_id\": \"d\"}",
     "missing required field 'path_on_host' (the only drive property hearth can update)"},
    {"PATCH", "/drives/d", "{\"drive_id\": \"d\", \"path_on_host\": \"/p\", \"rate_limiter\": {}}",
     "rate_limiter is not supported by hearth"},
    {"PATCH", "/drives/d",
     "{\"drive_id\": \"d\", \"path_on_host\": \"/p\", \"is_read_only\": true}",
     "unknown field 'is_read_only'"},
    /* network interfaces */
    {"PUT", "/network-interfaces/n", "{\"iface_id\": \"n\"}",
     "missing required field 'host_dev_name'"},
    {"PUT", "/network-interfaces/n", "{\"iface_id\": \"n\", \"host_dev_name\": \"\"}",
     "host_dev_name '' must be 1..15 bytes, without '/', ':' or whitespace, and not '.' or "
     "'..'"},
    {"PUT", "/network-interfaces/n",
     "{\"iface_id\": \"n\", \"host_dev_name\": \"0123456789abcdef\"}",
     "host_dev_name '0123456789abcdef' must be 1..15 bytes"},
    {"PUT", "/network-interfaces/n", "{\"iface_id\": \"n\", \"host_dev_name\": \"a/b\"}",
     "host_dev_name 'a/b' must be 1..15 bytes"},
    {"PUT", "/network-interfaces/n", "{\"iface_id\": \"n\", \"host_dev_name\": \"..\"}",
     "host_dev_name '..' must be 1..15 bytes"},
    {"PUT", "/network-interfaces/n", NET(", \"guest_mac\": \"06:00:ac:10:00\""),
     "guest_mac '06:00:ac:10:00' must be a MAC address like 06:00:ac:10:00:02"},
    {"PUT", "/network-interfaces/n", NET(", \"guest_mac\": \"06:00:ac:10:00:0g\""),
     "guest_mac '06:00:ac:10:00:0g' must be a MAC address"},
    {"PUT", "/network-interfaces/n", NET(", \"guest_mac\": \"06:00:ac:10:00:02:\""),
     "guest_mac '06:00:ac:10:00:02:' must be a MAC address"},
    {"PUT", "/network-interfaces/n", NET(", \"guest_mac\": \"06-00-ac-10-00-02\""),
     "guest_mac '06-00-ac-10-00-02' must be a MAC address"},
    {"PUT", "/network-interfaces/n", NET(", \"guest_mac\": \"01:00:5e:00:00:01\""),
     "guest_mac '01:00:5e:00:00:01' must be a unicast address"},
    {"PUT", "/network-interfaces/n", NET(", \"guest_mac\": \"ff:ff:ff:ff:ff:ff\""),
     "guest_mac 'ff:ff:ff:ff:ff:ff' must be a unicast address"},
    {"PUT", "/network-interfaces/n", NET(", \"guest_mac\": 1"),
     "field 'guest_mac' must be a string"},
    {"PUT", "/network-interfaces/n", NET(", \"rx_rate_limiter\": {}"),
     "rx_rate_limiter is not supported by hearth"},
    {"PUT", "/network-interfaces/n", NET(", \"tx_rate_limiter\": {\"ops\": {}}"),
     "tx_rate_limiter is not supported by hearth"},
    {"PUT", "/network-interfaces/n", NET(", \"mtu\": 1500"), "mtu is not supported by hearth"},
    {"PATCH", "/network-interfaces/n", "{\"iface_id\": \"n\", \"rx_rate_limiter\": {}}",
     "rx_rate_limiter is not supported by hearth"},
    {"PATCH", "/network-interfaces/n", "{\"iface_id\": \"n\", \"host_dev_name\": \"t\"}",
     "unknown field 'host_dev_name'"},
    {"PATCH", "/network-interfaces/n", "{}", "missing required field 'iface_id'"},
    /* logger, metrics */
    {"PUT", "/logger", "{\"level\": \"Verbose\"}",
     "field 'level' must be one of Error, Warning, Info, Debug, Trace, Off"},
    {"PUT", "/logger", "{\"level\": 3}", "field 'level' must be a string"},
    {"PUT", "/logger", "{\"show_level\": \"true\"}", "field 'show_level' must be a boolean"},
    {"PUT", "/logger", "{\"log_path\": \"\"}", "field 'log_path' must not be empty"},
    {"PUT", "/logger", "{\"module\": \"api_server\"}", "module is not supported by hearth"},
    {"PUT", "/metrics", "{}", "missing required field 'metrics_path'"},
    {"PUT", "/metrics", "{\"metrics_path\": \"/m\", \"emit_id\": true}",
     "emit_id is not supported by hearth"},
    {"PUT", "/metrics", "{\"metrics_path\": \"/m\", \"properties\": {\"a\": \"b\"}}",
     "properties is not supported by hearth"},
};

static void test_err_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++) {
		const struct err_case *k = &err_cases[i];
		struct api_msg m;
		int r = route(k->method, k->url, k->body, &m);

		if (r == 0 || !strstr(err, k->msg))
			print_error("case %zu: %s %s %s\n  got %d '%s'\n  want '%s'\n", i,
			            k->method, k->url, k->body ? k->body : "(none)", r, err,
			            k->msg);
		assert_int_equal(r, -1);
		assert_non_null(strstr(err, k->msg));
		/* a refused request leaves nothing to free */
		assert_null(m.body);
		api_msg_free(&m);
	}
}

/* Errors are cut to the buffer, never overrun it. */
static void test_small_err_buffer(void **state)
{
	struct api_msg m;
	char small[8];

	(void)state;
	memset(small, 'x', sizeof(small));
	assert_int_equal(api_route("GET", "/nope/nope/nope", NULL, 0, &m, small, sizeof(small)),
	                 -1);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	/* a body that is not NUL-terminated is read only up to len */
	assert_int_equal(api_route("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}garbage",
	                           31, &m, err, sizeof(err)),
	                 0);
	assert_int_equal(m.u.action, ACTION_FLUSH_METRICS);
}

/* Deep nesting is refused by cJSON's limit without blowing the stack. */
static void test_deep_nesting(void **state)
{
	enum { DEPTH = 20000 };
	char *body = malloc(2 * DEPTH + 1);
	struct api_msg m;

	(void)state;
	memset(body, '[', DEPTH);
	memset(body + DEPTH, ']', DEPTH);
	body[2 * DEPTH] = 0;
	assert_int_equal(route("PUT", "/actions", body, &m), -1);
	assert_non_null(strstr(err, "malformed JSON body"));
	body[0] = '{';
	assert_int_equal(route("PUT", "/actions", body, &m), -1);
	free(body);
}

/* ---- replies ----------------------------------------------------------------------------- */

static void test_reply_escaping(void **state)
{
	struct api_msg m;
	cJSON *o;

	(void)state;
	memset(&m, 0, sizeof(m));
	api_reply_error(&m, "drive '%s' is \"bad\"\n\\", "a\"b");
	assert_int_equal(m.status, 400);
	o = cJSON_Parse(m.body);
	assert_non_null(o);
	assert_string_equal(cJSON_GetObjectItem(o, "fault_message")->valuestring,
	                    "drive 'a\"b' is \"bad\"\n\\");
	cJSON_Delete(o);
	api_reply(&m, strdup("{\"a\":1}"));
	assert_int_equal(m.status, 200);
	assert_string_equal(m.body, "{\"a\":1}");
	api_reply(&m, NULL);
	assert_int_equal(m.status, 204);
	assert_null(m.body);
	api_msg_free(&m);
}

/* The channel without threads: a closed channel answers at once. */
static void test_channel_closed(void **state)
{
	struct api_channel ch;
	struct api_msg m;

	(void)state;
	assert_int_equal(api_channel_init(&ch), 0);
	assert_null(api_channel_take(&ch));
	api_channel_close(&ch);
	memset(&m, 0, sizeof(m));
	m.op = API_GET_INFO;
	api_channel_call(&ch, &m);
	assert_int_equal(m.status, 400);
	assert_non_null(strstr(m.body, "shutting down"));
	api_msg_free(&m);
	api_channel_destroy(&ch);
}

/* ---- config JSON ------------------------------------------------------------------------- */

static const char full_config[] =
    "{\n"
    "  \"boot-source\": {\"kernel_image_path\": \"/vmlinux\", \"boot_args\": \"console=ttyS0\","
    " \"initrd_path\": \"/initrd\"},\n"
    "  \"drives\": [\n"
    "    {\"drive_id\": \"rootfs\", \"path_on_host\": \"/root.img\", \"is_root_device\": true,"
    " \"is_read_only\": false, \"cache_type\": \"Unsafe\", \"io_engine\": \"Sync\","
    " \"partuuid\": null, \"rate_limiter\": null, \"socket\": null},\n"
    "    {\"drive_id\": \"data\", \"path_on_host\": \"/data.img\", \"is_root_device\": false,"
    " \"is_read_only\": true}\n"
    "  ],\n"
    "  \"machine-config\": {\"vcpu_count\": 4, \"mem_size_mib\": 2048, \"smt\": false,"
    " \"track_dirty_pages\": true, \"huge_pages\": \"None\", \"mmu\": \"shadow\"},\n"
    "  \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\","
    " \"guest_mac\": \"06:00:AC:10:00:02\"}, {\"iface_id\": \"eth1\", \"host_dev_name\": "
    "\"tap1\"}],\n"
    "  \"logger\": {\"log_path\": \"/log\", \"level\": \"Debug\"},\n"
    "  \"metrics\": {\"metrics_path\": \"/metrics\"},\n"
    "  \"balloon\": null, \"vsock\": null, \"mmds-config\": null, \"entropy\": null,"
    " \"cpu-config\": null, \"pmem\": []\n"
    "}\n";

static void expect_same(const struct vm_config *a, const struct vm_config *b)
{
	assert_string_equal(a->kernel_path, b->kernel_path);
	if (a->cmdline || b->cmdline)
		assert_string_equal(a->cmdline, b->cmdline);
	if (a->initrd_path || b->initrd_path)
		assert_string_equal(a->initrd_path, b->initrd_path);
	assert_int_equal(a->vcpus, b->vcpus);
	assert_int_equal(a->mem_mib, b->mem_mib);
	assert_int_equal(a->smt, b->smt);
	assert_int_equal(a->track_dirty_pages, b->track_dirty_pages);
	assert_int_equal(a->mmu, b->mmu);
	assert_int_equal(a->ndrives, b->ndrives);
	for (unsigned i = 0; i < a->ndrives; i++) {
		assert_string_equal(a->drives[i].id, b->drives[i].id);
		assert_string_equal(a->drives[i].path, b->drives[i].path);
		assert_int_equal(a->drives[i].read_only, b->drives[i].read_only);
		assert_int_equal(a->drives[i].is_root_device, b->drives[i].is_root_device);
	}
	assert_int_equal(a->nnets, b->nnets);
	for (unsigned i = 0; i < a->nnets; i++) {
		assert_string_equal(a->nets[i].id, b->nets[i].id);
		assert_string_equal(a->nets[i].host_dev_name, b->nets[i].host_dev_name);
		assert_int_equal(a->nets[i].has_mac, b->nets[i].has_mac);
		assert_memory_equal(a->nets[i].mac, b->nets[i].mac, 6);
	}
	if (a->log_path || b->log_path)
		assert_string_equal(a->log_path, b->log_path);
	if (a->metrics_path || b->metrics_path)
		assert_string_equal(a->metrics_path, b->metrics_path);
}

static void test_config_good(void **state)
{
	static const uint8_t mac[6] = {0x06, 0x00, 0xac, 0x10, 0x00, 0x02};
	struct vm_config c;

	(void)state;
	vm_config_defaults(&c);
	if (config_from_json(full_config, &c, err, sizeof(err)))
		print_error("%s\n", err);
	assert_string_equal(c.kernel_path, "/vmlinux");
	assert_string_equal(c.cmdline, "console=ttyS0");
	assert_string_equal(c.initrd_path, "/initrd");
	assert_int_equal(c.ndrives, 2);
	assert_string_equal(c.drives[0].id, "rootfs");
	assert_string_equal(c.drives[0].path, "/root.img");
	assert_true(c.drives[0].is_root_device);
	assert_false(c.drives[0].read_only);
	assert_string_equal(c.drives[1].id, "data");
	assert_true(c.drives[1].read_only);
	assert_int_equal(c.vcpus, 4);
	assert_int_equal(c.mem_mib, 2048);
	assert_true(c.track_dirty_pages);
	assert_int_equal(c.mmu, MMU_SHADOW);
	assert_int_equal(c.nnets, 2);
	assert_string_equal(c.nets[0].host_dev_name, "tap0");
	assert_true(c.nets[0].has_mac);
	assert_memory_equal(c.nets[0].mac, mac, 6);
	assert_false(c.nets[1].has_mac);
	assert_string_equal(c.log_path, "/log");
	assert_string_equal(c.metrics_path, "/metrics");
	vm_config_free(&c);

	/* a minimal file; absent sections keep the defaults */
	vm_config_defaults(&c);
	assert_int_equal(config_from_json("{\"boot-source\": {\"kernel_image_path\": \"/k\"}}", &c,
	                                  err, sizeof(err)),
	                 0);
	assert_string_equal(c.kernel_path, "/k");
	assert_int_equal(c.vcpus, 1);
	assert_int_equal(c.mem_mib, VM_DEFAULT_MEM_MIB);
	assert_int_equal(c.ndrives, 0);
	vm_config_free(&c);

	/* a drives section replaces the drives c had */
	vm_config_defaults(&c);
	c.ndrives = 1;
	strcpy(c.drives[0].id, "old");
	c.drives[0].path = strdup("/old");
	assert_int_equal(config_from_json("{\"drives\": []}", &c, err, sizeof(err)), 0);
	assert_int_equal(c.ndrives, 0);
	vm_config_free(&c);
}

struct cfg_err {
	const char *text, *msg;
};

static const struct cfg_err cfg_errs[] = {
    {"", "malformed JSON config: unexpected end of input at offset 0"},
    {"{\n  \"machine-config\": {\n    \"vcpu_count\": 1,\n  }\n}",
     "malformed JSON config: syntax error at offset 48 (line 4, column 4)"},
    {"[]", "the config must be a JSON object"},
    {"{\"machine_config\": {}}", "unknown section 'machine_config'"},
    {"{\"drives\": [], \"drives\": []}", "duplicate section 'drives'"},
    {"{\"balloon\": {\"amount_mib\": 1, \"deflate_on_oom\": false}}",
     "balloon is not supported by hearth"},
    {"{\"vsock\": {}}", "vsock is not supported by hearth"},
    {"{\"pmem\": [{}]}", "pmem is not supported by hearth"},
    {"{\"boot-source\": []}", "boot-source must be an object"},
    {"{\"boot-source\": {}}", "missing required field 'boot-source.kernel_image_path'"},
    {"{\"boot-source\": {\"kernel_image_path\": 1}}",
     "boot-source.kernel_image_path must be a string"},
    {"{\"boot-source\": {\"kernel_image_path\": \"/k\", \"x\": 1}}",
     "unknown field 'boot-source.x'"},
    {"{\"machine-config\": {\"vcpu_count\": \"1\", \"mem_size_mib\": 128}}",
     "machine-config.vcpu_count must be an integer"},
    {"{\"machine-config\": {\"vcpu_count\": 64, \"mem_size_mib\": 128}}",
     "machine-config.vcpu_count must be between 1 and 32"},
    {"{\"machine-config\": {\"mem_size_mib\": 128}}",
     "missing required field 'machine-config.vcpu_count'"},
    {"{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": \"C3\"}}",
     "machine-config.cpu_template C3 is not supported by hearth"},
    {"{\"drives\": {}}", "drives must be an array"},
    {"{\"drives\": [1]}", "drives[0] must be an object"},
    {"{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/a\", \"is_root_device\": false},"
     " {\"drive_id\": \"b\", \"path_on_host\": \"/b\"}]}",
     "missing required field 'drives[1].is_root_device'"},
    {"{\"drives\": [{\"drive_id\": \"a-b\", \"path_on_host\": \"/a\", \"is_root_device\": false}]}",
     "drives[0].drive_id 'a-b' must be 1..64 characters from [A-Za-z0-9_]"},
    {"{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/a\", \"is_root_device\": false},"
     " {\"drive_id\": \"a\", \"path_on_host\": \"/b\", \"is_root_device\": false}]}",
     "drives[1].drive_id 'a' is already used by drives[0]"},
    {"{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/a\", \"is_root_device\": true},"
     " {\"drive_id\": \"b\", \"path_on_host\": \"/b\", \"is_root_device\": true}]}",
     "drives[1]: only one drive can be the root device (drives[0] is one)"},
    {"{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/a\", \"is_root_device\": false,"
     " \"rate_limiter\": {}}]}",
     "drives[0].rate_limiter is not supported by hearth"},
    {"{\"drives\": [{},{},{},{},{},{},{},{},{}]}", "drives: at most 8 drives are supported"},
    {"{\"network-interfaces\": [{\"iface_id\": \"a\", \"host_dev_name\": \"t\"},"
     " {\"iface_id\": \"b\", \"host_dev_name\": \"t\"}]}",
     "network-interfaces[1].host_dev_name 't' is already used by network-interfaces[0]"},
    {"{\"network-interfaces\": [{\"iface_id\": \"a\", \"host_dev_name\": \"t\"},"
     " {\"iface_id\": \"a\", \"host_dev_name\": \"u\"}]}",
     "network-interfaces[1].iface_id 'a' is already used by network-interfaces[0]"},
    {"{\"network-interfaces\": [{\"iface_id\": \"a\", \"host_dev_name\": \"t\", \"guest_mac\":"
     " \"06:00:00:00:00:01\"}, {\"iface_id\": \"b\", \"host_dev_name\": \"u\", \"guest_mac\":"
     " \"06:00:00:00:00:01\"}]}",
     "network-interfaces[1].guest_mac is already used by network-interfaces[0]"},
    {"{\"network-interfaces\": [{\"iface_id\": \"a\", \"host_dev_name\": \"t\", \"guest_mac\": "
     "\"x\"}]}",
     "network-interfaces[0].guest_mac 'x' must be a MAC address"},
    {"{\"network-interfaces\": [{\"iface_id\": \"a\", \"host_dev_name\": \"t\", \"guest_mac\": "
     "\"03:00:00:00:00:01\"}]}",
     "network-interfaces[0].guest_mac '03:00:00:00:00:01' must be a unicast address"},
    {"{\"network-interfaces\": [{\"iface_id\": \"a\", \"host_dev_name\": \"t:0\"}]}",
     "network-interfaces[0].host_dev_name 't:0' must be 1..15 bytes"},
    {"{\"network-interfaces\": [{},{},{},{},{}]}",
     "network-interfaces: at most 4 interfaces are supported"},
    {"{\"logger\": {\"level\": \"loud\"}}", "logger.level must be one of Error"},
    {"{\"metrics\": {}}", "missing required field 'metrics.metrics_path'"},
    {"{\"metrics\": 5}", "metrics must be an object"},
};

static void test_config_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cfg_errs) / sizeof(cfg_errs[0]); i++) {
		struct vm_config c;
		int r;

		vm_config_defaults(&c);
		err[0] = 0;
		r = config_from_json(cfg_errs[i].text, &c, err, sizeof(err));
		if (r == 0 || !strstr(err, cfg_errs[i].msg))
			print_error("case %zu: got %d '%s'\n  want '%s'\n", i, r, err,
			            cfg_errs[i].msg);
		assert_int_equal(r, -1);
		assert_non_null(strstr(err, cfg_errs[i].msg));
		/* nothing of a refused file is applied */
		assert_null(c.kernel_path);
		assert_int_equal(c.ndrives, 0);
		assert_int_equal(c.nnets, 0);
		assert_int_equal(c.vcpus, 1);
		vm_config_free(&c);
	}
}

static void test_config_round_trip(void **state)
{
	struct vm_config a, b, d;
	char *json, *json2, *mc;
	cJSON *o, *mco;

	(void)state;
	vm_config_defaults(&a);
	assert_int_equal(config_from_json(full_config, &a, err, sizeof(err)), 0);
	json = config_to_json(&a);
	assert_non_null(json);
	vm_config_defaults(&b);
	if (config_from_json(json, &b, err, sizeof(err)))
		print_error("%s\n%s\n", json, err);
	expect_same(&a, &b);
	/* stable: rendering the parsed copy gives the same text */
	json2 = config_to_json(&b);
	assert_string_equal(json, json2);

	/* the shape */
	o = cJSON_Parse(json);
	assert_non_null(o);
	assert_true(cJSON_IsArray(cJSON_GetObjectItem(o, "drives")));
	assert_string_equal(
	    cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "drives"), 0),
	                        "io_engine")
	        ->valuestring,
	    "Sync");
	assert_string_equal(
	    cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "network-interfaces"), 0),
	                        "guest_mac")
	        ->valuestring,
	    "06:00:ac:10:00:02");
	assert_null(cJSON_GetObjectItem(
	    cJSON_GetArrayItem(cJSON_GetObjectItem(o, "network-interfaces"), 1), "guest_mac"));
	cJSON_Delete(o);

	mc = machine_config_to_json(&a);
	mco = cJSON_Parse(mc);
	assert_int_equal(cJSON_GetObjectItem(mco, "vcpu_count")->valueint, 4);
	assert_int_equal(cJSON_GetObjectItem(mco, "mem_size_mib")->valueint, 2048);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(mco, "smt")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(mco, "track_dirty_pages")));
	assert_string_equal(cJSON_GetObjectItem(mco, "mmu")->valuestring, "shadow");
	cJSON_Delete(mco);
	free(mc);
	free(json);
	free(json2);
	vm_config_free(&a);
	vm_config_free(&b);

	/* defaults: no boot-source, empty arrays, and still a round trip */
	vm_config_defaults(&a);
	json = config_to_json(&a);
	assert_string_equal(json,
	                    "{\"drives\":[],\"machine-config\":{\"vcpu_count\":1,"
	                    "\"mem_size_mib\":128,\"smt\":false,\"track_dirty_pages\":false,"
	                    "\"huge_pages\":\"None\",\"mmu\":\"auto\"},\"network-interfaces\":[]}");
	vm_config_defaults(&d);
	assert_int_equal(config_from_json(json, &d, err, sizeof(err)), 0);
	free(json);
	vm_config_free(&a);
	vm_config_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ok_table),
	    cmocka_unit_test(test_boot_source_fields),
	    cmocka_unit_test(test_machine_config_fields),
	    cmocka_unit_test(test_drive_fields),
	    cmocka_unit_test(test_net_fields),
	    cmocka_unit_test(test_action_vm_logger_metrics),
	    cmocka_unit_test(test_err_table),
	    cmocka_unit_test(test_small_err_buffer),
	    cmocka_unit_test(test_deep_nesting),
	    cmocka_unit_test(test_reply_escaping),
	    cmocka_unit_test(test_channel_closed),
	    cmocka_unit_test(test_config_good),
	    cmocka_unit_test(test_config_bad),
	    cmocka_unit_test(test_config_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
