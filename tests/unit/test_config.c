/*
 * The configuration model's validators (config/validate.c): good and bad values and the
 * boundaries of each, and parity: the command line (vmm/cli.c), the REST API's request layer
 * (api/routes.c) and the config file (api/config_json.c) refuse the same bad value with the
 * same rule text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"
#include "api/routes.h"
#include "config/validate.h"
#include "config/vm_config.h"
#include "vmm/cli.h"

#define ID_RULE     "must be 1..64 characters from [A-Za-z0-9_]"
#define VM_ID_RULE  "must be 1..64 characters from [A-Za-z0-9_-]"
#define IFNAME_RULE "must be 1..15 bytes, without '/', ':' or whitespace, and not '.' or '..'"
#define MAC_RULE    "must be a MAC address like 06:00:ac:10:00:02"
#define UNICAST     "must be a unicast address"
#define VCPUS_RULE  "must be between 1 and 32"
#define MEM_RULE    "must be between 4 and 1048576 MiB"

/* A string of n copies of ch (n < 8192), in a static buffer. */
static const char *rep(char ch, size_t n)
{
	static char buf[8192];

	memset(buf, ch, n);
	buf[n] = 0;
	return buf;
}

static void expect_rule(const char *got, const char *want, const char *value)
{
	if (!got || strcmp(got, want))
		print_error("value '%.80s': got '%s', want '%s'\n", value, got ? got : "(good)",
		            want);
	assert_non_null(got);
	assert_string_equal(got, want);
}

static void test_id(void **state)
{
	static const char *const good[] = {"a", "Z", "0", "_", "rootfs", "eth_0", "A1_b2"};
	static const char *const bad[] = {"",  "a-b", "a.b", "a b", "a/b",
	                                  "é", "a\n", " a",  "a:b", "drive!"};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_null(validate_id(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_rule(validate_id(bad[i]), ID_RULE, bad[i]);
	/* DRIVE_ID_MAX characters fit, one more does not. */
	assert_null(validate_id(rep('x', DRIVE_ID_MAX)));
	expect_rule(validate_id(rep('x', DRIVE_ID_MAX + 1)), ID_RULE, "65 x");
}

static void test_vm_id(void **state)
{
	static const char *const good[] = {"a", "anonymous-instance", "vm_1-A", "-", "_"};
	static const char *const bad[] = {"", "a b", "x/y", "a.b", "a:b", "vm!", "\t"};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_null(validate_vm_id(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_rule(validate_vm_id(bad[i]), VM_ID_RULE, bad[i]);
	assert_null(validate_vm_id(rep('-', VM_ID_MAX)));
	expect_rule(validate_vm_id(rep('a', VM_ID_MAX + 1)), VM_ID_RULE, "65 a");
	/* The VM id allows '-', a drive / interface id does not. */
	assert_non_null(validate_id("vm-1"));
	assert_null(validate_vm_id("vm-1"));
}

static void test_ifname(void **state)
{
	static const char *const good[] = {"t",  "tap0",  "a.b",  "...",
	                                   ".a", "tap-0", "br_0", "\xc3\xa9"};
	static const char *const bad[] = {"",     ".",    "..",   "a/b",  "a:b",  "a b",
	                                  "a\tb", "a\nb", "a\vb", "a\fb", "a\rb", "/"};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_null(validate_ifname(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_rule(validate_ifname(bad[i]), IFNAME_RULE, bad[i]);
	assert_null(validate_ifname(rep('x', IFACE_NAME_MAX)));
	expect_rule(validate_ifname(rep('x', IFACE_NAME_MAX + 1)), IFNAME_RULE, "16 x");
	/* Bytes, not characters: 8 two-byte characters are 16 bytes. */
	expect_rule(
	    validate_ifname("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"),
	    IFNAME_RULE, "8 x e-acute");
}

static void test_mac(void **state)
{
	static const char *const malformed[] = {
	    "",
	    "06:00:ac:10:00",
	    "06:00:ac:10:00:02:",
	    "06:00:ac:10:00:02x",
	    "06-00-ac-10-00-02",
	    "6:0:ac:10:0:2",
	    "06:00:ac:10:00:0g",
	    "06:00:ac:10:00:g2",
	    " 06:00:ac:10:00:02",
	    "06:00:ac:10:00:2",
	    "060:0:ac:10:00:02",
	    "0600ac100002",
	    "06:00:ac:10:00:02\n",
	};
	static const char *const multicast[] = {"01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff",
	                                        "03:00:00:00:00:00", "33:33:00:00:00:01",
	                                        "FF:00:00:00:00:00"};
	uint8_t mac[6];

	(void)state;
	assert_null(validate_mac("06:00:ac:10:00:02", mac));
	assert_memory_equal(mac, "\x06\x00\xac\x10\x00\x02", 6);
	assert_null(validate_mac("FE:DC:BA:98:76:54", mac));
	assert_memory_equal(mac, "\xfe\xdc\xba\x98\x76\x54", 6);
	assert_null(validate_mac("0a:Bc:dE:f0:12:34", mac));
	assert_memory_equal(mac, "\x0a\xbc\xde\xf0\x12\x34", 6);
	assert_null(validate_mac("00:00:00:00:00:00", NULL)); /* bit 0 clear: unicast */
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		memset(mac, 0x5a, sizeof(mac));
		expect_rule(validate_mac(malformed[i], mac), MAC_RULE, malformed[i]);
		assert_memory_equal(mac, "\x5a\x5a\x5a\x5a\x5a\x5a", 6); /* untouched */
	}
	for (size_t i = 0; i < sizeof(multicast) / sizeof(multicast[0]); i++) {
		memset(mac, 0x5a, sizeof(mac));
		expect_rule(validate_mac(multicast[i], mac), UNICAST, multicast[i]);
		assert_memory_equal(mac, "\x5a\x5a\x5a\x5a\x5a\x5a", 6);
	}
}

static void test_counts(void **state)
{
	(void)state;
	expect_rule(validate_vcpus(0), VCPUS_RULE, "0");
	assert_null(validate_vcpus(1));
	assert_null(validate_vcpus(VM_MAX_VCPUS));
	expect_rule(validate_vcpus(VM_MAX_VCPUS + 1), VCPUS_RULE, "33");
	expect_rule(validate_vcpus(UINT64_MAX), VCPUS_RULE, "max");
	expect_rule(validate_vcpus(1ULL << 32), VCPUS_RULE, "2^32");

	expect_rule(validate_mem_mib(0), MEM_RULE, "0");
	expect_rule(validate_mem_mib(VM_MIN_MEM_MIB - 1), MEM_RULE, "3");
	assert_null(validate_mem_mib(VM_MIN_MEM_MIB));
	assert_null(validate_mem_mib(VM_DEFAULT_MEM_MIB));
	assert_null(validate_mem_mib(VM_MAX_MEM_MIB));
	expect_rule(validate_mem_mib(VM_MAX_MEM_MIB + 1), MEM_RULE, "1048577");
	expect_rule(validate_mem_mib(UINT64_MAX), MEM_RULE, "max");
}

static void test_path(void **state)
{
	(void)state;
	expect_rule(validate_path(""), "must not be empty", "");
	assert_null(validate_path("/"));
	assert_null(validate_path("vmlinux"));
	assert_null(validate_path(" "));
	assert_null(validate_path(rep('p', 4095)));
	expect_rule(validate_path(rep('p', 4096)), "must be shorter than 4096 bytes", "4096 p");
}

static void test_uint_text(void **state)
{
	static const char *const bad[] = {"",     "-",   "+1",  "1.5", "1x",  " 1", "1 ",
	                                  "0x10", "1e3", "two", "--1", "-1x", "\t"};
	uint64_t v;

	(void)state;
	assert_null(validate_uint_text("0", &v));
	assert_int_equal(v, 0);
	assert_null(validate_uint_text("42", &v));
	assert_int_equal(v, 42);
	assert_null(validate_uint_text("007", &v));
	assert_int_equal(v, 7);
	assert_null(validate_uint_text("18446744073709551615", &v));
	assert_true(v == UINT64_MAX);
	/* Out of 64 bits and negative numbers saturate, for the range check to refuse. */
	assert_null(validate_uint_text("18446744073709551616", &v));
	assert_true(v == UINT64_MAX);
	assert_null(validate_uint_text("99999999999999999999999", &v));
	assert_true(v == UINT64_MAX);
	assert_null(validate_uint_text("-5", &v));
	assert_int_equal(v, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_rule(validate_uint_text(bad[i], &v), VALIDATE_NOT_INTEGER, bad[i]);
}

/* ---- parity ------------------------------------------------------------------------------ */

#define MAX_CLI 8

struct parity_case {
	const char *rule;         /* the validator's rule for the bad value */
	const char *quoted;       /* how the CLI and string fields quote the value, or NULL */
	const char *cli[MAX_CLI]; /* flags after "hearth", NULL-terminated */
	const char *method, *url; /* the API request */
	const char *body;         /*   and its body */
	const char *config;       /* a config file with the same value */
};

#define DRIVE_BODY(id)                                                                             \
	"{\"drive_id\": \"" id "\", \"path_on_host\": \"/d\", \"is_root_device\": false}"
#define NET_BODY(id, dev, mac) "{\"iface_id\": \"" id "\", \"host_dev_name\": \"" dev "\"" mac "}"
#define MC_BODY(vcpus, mem)    "{\"vcpu_count\": " vcpus ", \"mem_size_mib\": " mem "}"

static const struct parity_case parity[] = {
    /* drive id */
    {ID_RULE,
     "'a-b'",
     {"--kernel", "k", "--drive", "d.img,id=a-b"},
     "PUT",
     "/drives/a-b",
     DRIVE_BODY("a-b"),
     "{\"drives\": [" DRIVE_BODY("a-b") "]}"},
    /* network interface id */
    {ID_RULE,
     "'eth.0'",
     {"--kernel", "k", "--net", "tap0,id=eth.0"},
     "PUT",
     "/network-interfaces/eth.0",
     NET_BODY("eth.0", "tap0", ""),
     "{\"network-interfaces\": [" NET_BODY("eth.0", "tap0", "") "]}"},
    /* interface names */
    {IFNAME_RULE,
     "'a/b'",
     {"--kernel", "k", "--net", "a/b"},
     "PUT",
     "/network-interfaces/n",
     NET_BODY("n", "a/b", ""),
     "{\"network-interfaces\": [" NET_BODY("n", "a/b", "") "]}"},
    {IFNAME_RULE,
     "'..'",
     {"--kernel", "k", "--net", ".."},
     "PUT",
     "/network-interfaces/n",
     NET_BODY("n", "..", ""),
     "{\"network-interfaces\": [" NET_BODY("n", "..", "") "]}"},
    {IFNAME_RULE,
     "'0123456789abcdef'",
     {"--kernel", "k", "--net", "0123456789abcdef"},
     "PUT",
     "/network-interfaces/n",
     NET_BODY("n", "0123456789abcdef", ""),
     "{\"network-interfaces\": [" NET_BODY("n", "0123456789abcdef", "") "]}"},
    /* MAC addresses: malformed, multicast, broadcast */
    {MAC_RULE,
     "'06:00:ac:10:00'",
     {"--kernel", "k", "--net", "tap0,mac=06:00:ac:10:00"},
     "PUT",
     "/network-interfaces/n",
     NET_BODY("n", "tap0", ", \"guest_mac\": \"06:00:ac:10:00\""),
     "{\"network-interfaces\": [" NET_BODY("n", "tap0",
                                           ", \"guest_mac\": \"06:00:ac:10:00\"") "]}"},
    {UNICAST,
     "'01:00:5e:00:00:01'",
     {"--kernel", "k", "--net", "tap0,mac=01:00:5e:00:00:01"},
     "PUT",
     "/network-interfaces/n",
     NET_BODY("n", "tap0", ", \"guest_mac\": \"01:00:5e:00:00:01\""),
     "{\"network-interfaces\": [" NET_BODY("n", "tap0",
                                           ", \"guest_mac\": \"01:00:5e:00:00:01\"") "]}"},
    {UNICAST,
     "'ff:ff:ff:ff:ff:ff'",
     {"--kernel", "k", "--net", "tap0,mac=ff:ff:ff:ff:ff:ff"},
     "PUT",
     "/network-interfaces/n",
     NET_BODY("n", "tap0", ", \"guest_mac\": \"ff:ff:ff:ff:ff:ff\""),
     "{\"network-interfaces\": [" NET_BODY("n", "tap0",
                                           ", \"guest_mac\": \"ff:ff:ff:ff:ff:ff\"") "]}"},
    /* vCPUs and memory: below and above the range */
    {VCPUS_RULE,
     NULL,
     {"--kernel", "k", "--vcpus", "0"},
     "PUT",
     "/machine-config",
     MC_BODY("0", "128"),
     "{\"machine-config\": " MC_BODY("0", "128") "}"},
    {VCPUS_RULE,
     NULL,
     {"--kernel", "k", "--vcpus", "33"},
     "PATCH",
     "/machine-config",
     "{\"vcpu_count\": 33}",
     "{\"machine-config\": " MC_BODY("33", "128") "}"},
    {VCPUS_RULE,
     NULL,
     {"--kernel", "k", "--vcpus", "-1"},
     "PUT",
     "/machine-config",
     MC_BODY("-1", "128"),
     "{\"machine-config\": " MC_BODY("-1", "128") "}"},
    {MEM_RULE,
     NULL,
     {"--kernel", "k", "--mem", "3"},
     "PUT",
     "/machine-config",
     MC_BODY("1", "3"),
     "{\"machine-config\": " MC_BODY("1", "3") "}"},
    {MEM_RULE,
     NULL,
     {"--kernel", "k", "--mem", "1048577"},
     "PATCH",
     "/machine-config",
     "{\"mem_size_mib\": 1048577}",
     "{\"machine-config\": " MC_BODY("1", "1048577") "}"},
    {MEM_RULE,
     NULL,
     {"--kernel", "k", "--mem", "99999999999999999999"},
     "PUT",
     "/machine-config",
     MC_BODY("1", "99999999999999999999"),
     "{\"machine-config\": " MC_BODY("1", "99999999999999999999") "}"},
    /* not a whole number */
    {VALIDATE_NOT_INTEGER,
     NULL,
     {"--kernel", "k", "--vcpus", "1.5"},
     "PUT",
     "/machine-config",
     MC_BODY("1.5", "128"),
     "{\"machine-config\": " MC_BODY("1.5", "128") "}"},
    /* paths */
    {"must not be empty",
     NULL,
     {"--kernel", ""},
     "PUT",
     "/boot-source",
     "{\"kernel_image_path\": \"\"}",
     "{\"boot-source\": {\"kernel_image_path\": \"\"}}"},
    {"must not be empty",
     NULL,
     {"--kernel", "k", "--initrd", ""},
     "PUT",
     "/boot-source",
     "{\"kernel_image_path\": \"/k\", \"initrd_path\": \"\"}",
     "{\"boot-source\": {\"kernel_image_path\": \"/k\", \"initrd_path\": \"\"}}"},
};

static void cli_message(const char *const *flags, char *out, size_t outlen)
{
	char *argv[MAX_CLI + 2] = {NULL};
	struct vm_config cfg;
	struct cli_opts o;
	struct error err = {""};
	int argc = 0;

	argv[argc++] = strdup("hearth");
	for (size_t i = 0; i < MAX_CLI && flags[i]; i++)
		argv[argc++] = strdup(flags[i]); /* cli_parse cuts --drive / --net apart */
	vm_config_defaults(&cfg);
	assert_int_equal(cli_parse(argc, argv, &cfg, &o, &err), CLI_ERROR);
	snprintf(out, outlen, "%s", err.msg);
	vm_config_free(&cfg);
	for (int i = 0; i < argc; i++)
		free(argv[i]);
}

static void api_message(const struct parity_case *k, char *out, size_t outlen)
{
	struct api_msg m;

	out[0] = 0;
	assert_int_equal(api_route(k->method, k->url, k->body, strlen(k->body), &m, out, outlen),
	                 -1);
	api_msg_free(&m);
}

static void config_message(const char *text, char *out, size_t outlen)
{
	struct vm_config cfg;

	out[0] = 0;
	vm_config_defaults(&cfg);
	assert_int_equal(config_from_json(text, &cfg, out, outlen), -1);
	vm_config_free(&cfg);
}

static void expect_in(const char *who, size_t i, const char *msg, const char *want)
{
	if (!strstr(msg, want))
		print_error("case %zu, %s: '%s' lacks '%s'\n", i, who, msg, want);
	assert_non_null(strstr(msg, want));
}

static void test_parity(void **state)
{
	char cli[512], api[512], cfg[512], quoted_rule[256];

	(void)state;
	for (size_t i = 0; i < sizeof(parity) / sizeof(parity[0]); i++) {
		const struct parity_case *k = &parity[i];

		cli_message(k->cli, cli, sizeof(cli));
		api_message(k, api, sizeof(api));
		config_message(k->config, cfg, sizeof(cfg));
		expect_in("cli", i, cli, k->rule);
		expect_in("api", i, api, k->rule);
		expect_in("config", i, cfg, k->rule);
		/* All three quote a string value; the command line and the config file right
		 * before the rule ("id 'a-b' must be ..."), the API too except for an id in the
		 * path ("drive_id 'a-b' in the path must be ..."). */
		if (k->quoted) {
			snprintf(quoted_rule, sizeof(quoted_rule), "%s %s", k->quoted, k->rule);
			expect_in("cli", i, cli, quoted_rule);
			expect_in("api", i, api, k->quoted);
			expect_in("config", i, cfg, quoted_rule);
		}
	}
}

/* The rule texts in the table above are the validators' own. */
static void test_parity_rules_are_the_validators(void **state)
{
	(void)state;
	assert_string_equal(validate_id("a-b"), ID_RULE);
	assert_string_equal(validate_ifname("a/b"), IFNAME_RULE);
	assert_string_equal(validate_mac("06:00:ac:10:00", NULL), MAC_RULE);
	assert_string_equal(validate_mac("01:00:5e:00:00:01", NULL), UNICAST);
	assert_string_equal(validate_vcpus(0), VCPUS_RULE);
	assert_string_equal(validate_mem_mib(3), MEM_RULE);
	assert_string_equal(validate_path(""), "must not be empty");
}

/* The VM id is set only by the command line. */
static void test_cli_vm_id(void **state)
{
	char msg[512];
	const char *bad[] = {"--kernel", "k", "--id", "a b", NULL};

	(void)state;
	cli_message(bad, msg, sizeof(msg));
	assert_string_equal(msg, "--id 'a b' " VM_ID_RULE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_id),
	    cmocka_unit_test(test_vm_id),
	    cmocka_unit_test(test_ifname),
	    cmocka_unit_test(test_mac),
	    cmocka_unit_test(test_counts),
	    cmocka_unit_test(test_path),
	    cmocka_unit_test(test_uint_text),
	    cmocka_unit_test(test_parity_rules_are_the_validators),
	    cmocka_unit_test(test_parity),
	    cmocka_unit_test(test_cli_vm_id),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
