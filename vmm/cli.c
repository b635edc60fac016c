#include "cli.h"
#include "exit_codes.h"
#include "layout.h"
#include "config/validate.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
	OPT_KERNEL = 256,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_MEM,
	OPT_VCPUS,
	OPT_CONSOLE,
	OPT_MMU,
	OPT_TIMEOUT,
	OPT_BOOT,
	OPT_API_SOCK,
	OPT_CONFIG_FILE,
	OPT_NO_API,
	OPT_ID,
	OPT_VERBOSE,
	OPT_HELP,
	OPT_VERSION,
	OPT_DRIVE,
	OPT_VIRTIO_CONSOLE,
	OPT_BOOT_TIMER,
	OPT_NO_SECCOMP,
	OPT_SNAPSHOT_LOAD,
	OPT_SNAPSHOT_MEM,
	OPT_NET_OVERRIDE,
	OPT_NET,
};

static const struct option options[] = {
    {"kernel", required_argument, NULL, OPT_KERNEL},
    {"initrd", required_argument, NULL, OPT_INITRD},
    {"cmdline", required_argument, NULL, OPT_CMDLINE},
    {"mem", required_argument, NULL, OPT_MEM},
    {"vcpus", required_argument, NULL, OPT_VCPUS},
    {"console", required_argument, NULL, OPT_CONSOLE},
    {"engine", required_argument, NULL, OPT_MMU},
    {"mmu", required_argument, NULL, OPT_MMU}, /* its first name */
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"boot", required_argument, NULL, OPT_BOOT},
    {"api-sock", required_argument, NULL, OPT_API_SOCK},
    {"config-file", required_argument, NULL, OPT_CONFIG_FILE},
    {"no-api", no_argument, NULL, OPT_NO_API},
    {"id", required_argument, NULL, OPT_ID},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"drive", required_argument, NULL, OPT_DRIVE},
    {"net", required_argument, NULL, OPT_NET},
    {"virtio-console", no_argument, NULL, OPT_VIRTIO_CONSOLE},
    {"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
    {"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
    {"snapshot-load", required_argument, NULL, OPT_SNAPSHOT_LOAD},
    {"snapshot-mem", required_argument, NULL, OPT_SNAPSHOT_MEM},
    {"net-override", required_argument, NULL, OPT_NET_OVERRIDE},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

void cli_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: hearth --kernel PATH [options]\n"
	    "\n"
	    "Boot a microVM (with KVM, or without it as a sandboxed process), show its\n"
	    "console, exit with the guest's status.\n"
	    "\n"
	    "  --kernel PATH        kernel: ELF64 vmlinux (Linux 64-bit entry), PVH ELF,\n"
	    "                       bzImage, or Multiboot (32/64-bit ELF, raw image)\n"
	    "  --initrd PATH        initial ramdisk, placed at the top of low RAM\n"
	    "  --cmdline STR        kernel command line (limit: the image's, else 2047 bytes)\n"
	    "  --mem MIB            guest RAM in MiB, %llu..%llu (default %d)\n"
	    "  --vcpus N            number of vCPUs, 1..%d (default 1)\n"
	    "  --console stdio|none|FILE\n"
	    "                       where the serial console goes (default stdio: output to\n"
	    "                       stdout, input from stdin); FILE is created or truncated\n"
	    "  --engine auto|hardware|shadow|process\n"
	    "                       how guest code runs (--mmu is the same option): hardware =\n"
	    "                       KVM; shadow = KVM, guest kernel at CPL3 on hearth's shadow\n"
	    "                       page tables; process = no KVM, the guest kernel as a\n"
	    "                       sandboxed host process. Default auto: process without a\n"
	    "                       usable /dev/kvm, shadow where KVM emulates guest CPL0,\n"
	    "                       else hardware (always hardware for Linux kernels)\n"
	    "  --boot auto|linux|pvh|multiboot\n"
	    "                       kernel entry to use: auto = PVH note if present, else a\n"
	    "                       Multiboot header (but not in a Linux ELF), else the Linux\n"
	    "                       64-bit entry (hearth extension)\n"
	    "  --drive PATH[,ro][,id=NAME]\n"
	    "                       a virtio-blk disk on a raw image file (repeatable, up to\n"
	    "                       %d); the first is /dev/vda in Linux; NAME ([A-Za-z0-9_])\n"
	    "                       is the disk's serial (default drive<N>)\n"
	    "  --net TAP[,mac=MAC][,id=NAME]\n"
	    "                       a virtio-net interface on the existing TAP interface TAP\n"
	    "                       (repeatable, up to %d); MAC like 06:00:ac:10:00:02\n"
	    "                       (default: random, locally administered); NAME\n"
	    "                       ([A-Za-z0-9_]) is the interface id (default net<N>)\n"
	    "  --virtio-console     add a virtio-console (hvc0) on the same console target\n"
	    "  --timeout SEC        stop the guest after SEC seconds (fractions allowed)\n"
	    "  --id ID              instance id ([A-Za-z0-9_-], at most %d characters)\n"
	    "  --api-sock PATH      serve the Firecracker-compatible REST API on this unix\n"
	    "                       socket; the VM starts with PUT /actions InstanceStart\n"
	    "  --config-file FILE   the VM as JSON (the GET /vm/config shape); boots at once\n"
	    "  --no-api             with --config-file: no API socket, exit when the guest stops\n"
	    "  --snapshot-load STATE  restore the snapshot whose state file is STATE (with\n"
	    "                       --snapshot-mem, its memory file) instead of booting, and run\n"
	    "                       it (PUT /snapshot/load does the same through the API)\n"
	    "  --snapshot-mem FILE  the snapshot's memory file\n"
	    "  --net-override ID=TAP  with --snapshot-load: attach interface ID to TAP\n"
	    "                       (repeatable)\n"
	    "  --boot-timer         log the time from start to the guest's write of 123 to\n"
	    "                       the boot-timer device (MMIO 0xd0000000)\n"
	    "  --no-seccomp         run without the per-thread seccomp filters (a warning is\n"
	    "                       logged; for debugging only)\n"
	    "  --verbose            more log lines on stderr\n"
	    "  --help               this text\n"
	    "  --version            version and the host's memory virtualization\n"
	    "\n"
	    "Guest exit port: a guest writes a byte N to I/O port 0x%x to end the VM with status "
	    "N.\n"
	    "\n"
	    "Exit status:\n"
	    "  0..%d   the guest's own status (exit port); 0 also when the guest resets or\n"
	    "           powers off; a guest status above %d is reported as %d\n"
	    "  %d      bad command line\n"
	    "  %d      kernel, initrd or drive image missing, unreadable or malformed\n"
	    "  %d      VMM or host error (e.g. /dev/kvm unavailable)\n"
	    "  %d      guest crashed (triple fault)\n"
	    "  %d      KVM internal error or emulation failure\n"
	    "  %d      timeout (--timeout)\n"
	    "  %d      a seccomp filter stopped a forbidden system call (named on stderr)\n",
	    (unsigned long long)(LAYOUT_MIN_RAM / MIB), (unsigned long long)(LAYOUT_MAX_RAM / MIB),
	    VM_DEFAULT_MEM_MIB, VM_MAX_VCPUS, VM_MAX_DRIVES, VM_MAX_NETS, VM_ID_MAX,
	    PORT_GUEST_EXIT, EXIT_GUEST_MAX, EXIT_GUEST_MAX, EXIT_GUEST_MAX, EXIT_USAGE,
	    EXIT_BAD_IMAGE, EXIT_VMM_ERROR, EXIT_TRIPLE_FAULT, EXIT_CPU_ERROR, EXIT_TIMEOUT,
	    EXIT_SECCOMP);
}

/* The usage text and the config model state the same RAM limits as the memory layout. */
_Static_assert(VM_MIN_MEM_MIB *MIB == LAYOUT_MIN_RAM, "VM_MIN_MEM_MIB != LAYOUT_MIN_RAM");
_Static_assert(VM_MAX_MEM_MIB *MIB == LAYOUT_MAX_RAM, "VM_MAX_MEM_MIB != LAYOUT_MAX_RAM");

/* "<what> '<value>' <rule>" (a config/validate.h rule); a long value is cut short so the
 * rule always fits in the message. */
static int bad_value(struct error *err, const char *what, const char *value, const char *rule)
{
	size_t n = strlen(value);

	return err_set(err, "%s '%.*s%s' %s", what, n > 160 ? 157 : (int)n, value,
	               n > 160 ? "..." : "", rule);
}

/* A count flag: digits only, then the field's range. */
static int parse_count(const char *flag, const char *s, const char *(*check)(uint64_t),
                       uint64_t *out, struct error *err)
{
	const char *rule = validate_uint_text(s, out);

	if (rule || (rule = check(*out)))
		return bad_value(err, flag, s, rule);
	return 0;
}

/* A path flag (--kernel, --initrd, ...): the path rules, then a copy in *field. */
static int set_path(const char *flag, char **field, const char *s, struct error *err)
{
	const char *rule = validate_path(s);

	if (rule)
		return bad_value(err, flag, s, rule);
	if (config_set_str(field, s))
		return err_set(err, "out of memory");
	return 0;
}

static struct snapshot_load_params *snapshot_params(struct vm_config *cfg)
{
	if (!cfg->snapshot) {
		cfg->snapshot = calloc(1, sizeof(*cfg->snapshot));
		if (cfg->snapshot)
			cfg->snapshot->resume_vm =
			    true; /* the command line runs what it restores */
	}
	return cfg->snapshot;
}

/* --net-override ID=TAP */
static int parse_net_override(const char *s, struct vm_config *cfg, struct error *err)
{
	struct snapshot_load_params *p = snapshot_params(cfg);
	const char *eq = strchr(s, '='), *rule;
	char id[DRIVE_ID_MAX + 2];
	size_t n = eq ? (size_t)(eq - s) : 0;

	if (!p)
		return err_set(err, "out of memory");
	if (!eq || n > DRIVE_ID_MAX)
		return err_set(err, "--net-override '%.64s': expected ID=TAP", s);
	memcpy(id, s, n);
	id[n] = 0;
	if ((rule = validate_id(id)))
		return bad_value(err, "--net-override interface id", id, rule);
	if ((rule = validate_ifname(eq + 1)))
		return bad_value(err, "--net-override TAP", eq + 1, rule);
	if (p->nnet_overrides == VM_MAX_NETS)
		return err_set(err, "--net-override: at most %d", VM_MAX_NETS);
	strcpy(p->net_overrides[p->nnet_overrides].id, id);
	strcpy(p->net_overrides[p->nnet_overrides].host_dev_name, eq + 1);
	p->nnet_overrides++;
	return 0;
}

static enum cli_result oom(struct error *err)
{
	err_set(err, "out of memory");
	return CLI_ERROR;
}

/* PATH[,ro][,id=NAME] */
static int parse_drive(char *arg, struct vm_config *cfg, struct error *err)
{
	struct drive_config *d;
	char *opt, *save = NULL;
	const char *rule;

	if (cfg->ndrives >= VM_MAX_DRIVES)
		return err_set(err, "--drive: at most %d drives", VM_MAX_DRIVES);
	d = &cfg->drives[cfg->ndrives];
	memset(d, 0, sizeof(*d));
	opt = strtok_r(arg, ",", &save);
	if (!opt || !*opt || arg[0] == ',')
		return err_set(err, "--drive: expected PATH[,ro][,id=NAME]");
	if (set_path("--drive: path", &d->path, opt, err))
		return -1;
	cfg->ndrives++; /* owned by cfg from here on, also on the error paths below */
	snprintf(d->id, sizeof(d->id), "drive%u", cfg->ndrives - 1);
	while ((opt = strtok_r(NULL, ",", &save))) {
		if (!strcmp(opt, "ro")) {
			d->read_only = true;
		} else if (!strncmp(opt, "id=", 3)) {
			if ((rule = validate_id(opt + 3)))
				return bad_value(err, "--drive: id", opt + 3, rule);
			strcpy(d->id, opt + 3);
		} else {
			return err_set(err, "--drive: unknown option '%s' (expected ro or id=NAME)",
			               opt);
		}
	}
	for (unsigned i = 0; i + 1 < cfg->ndrives; i++)
		if (!strcmp(cfg->drives[i].id, d->id))
			return err_set(err, "--drive: id '%s' is used twice", d->id);
	return 0;
}

/* TAP[,mac=XX:XX:XX:XX:XX:XX][,id=NAME] */
static int parse_net(char *arg, struct vm_config *cfg, struct error *err)
{
	struct net_config *n;
	char *opt, *save = NULL;
	const char *rule;

	if (cfg->nnets >= VM_MAX_NETS)
		return err_set(err, "--net: at most %d network interfaces", VM_MAX_NETS);
	n = &cfg->nets[cfg->nnets];
	memset(n, 0, sizeof(*n));
	opt = strtok_r(arg, ",", &save);
	if (!opt || !*opt || arg[0] == ',')
		return err_set(err, "--net: expected TAP[,mac=XX:XX:XX:XX:XX:XX][,id=NAME]");
	if ((rule = validate_ifname(opt)))
		return bad_value(err, "--net: TAP name", opt, rule);
	strcpy(n->host_dev_name, opt);
	snprintf(n->id, sizeof(n->id), "net%u", cfg->nnets);
	while ((opt = strtok_r(NULL, ",", &save))) {
		if (!strncmp(opt, "mac=", 4)) {
			if ((rule = validate_mac(opt + 4, n->mac)))
				return bad_value(err, "--net: mac", opt + 4, rule);
			n->has_mac = true;
		} else if (!strncmp(opt, "id=", 3)) {
			if ((rule = validate_id(opt + 3)))
				return bad_value(err, "--net: id", opt + 3, rule);
			strcpy(n->id, opt + 3);
		} else {
			return err_set(
			    err, "--net: unknown option '%s' (expected mac=MAC or id=NAME)", opt);
		}
	}
	for (unsigned i = 0; i < cfg->nnets; i++) {
		const struct net_config *o = &cfg->nets[i];

		if (!strcmp(o->id, n->id))
			return err_set(err, "--net: id '%s' is used twice", n->id);
		if (!strcmp(o->host_dev_name, n->host_dev_name))
			return err_set(err, "--net: TAP '%s' is used twice", n->host_dev_name);
		if (n->has_mac && o->has_mac && !memcmp(o->mac, n->mac, 6))
			return err_set(
			    err, "--net: mac '%02x:%02x:%02x:%02x:%02x:%02x' is used twice",
			    n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
	}
	cfg->nnets++;
	return 0;
}

enum cli_result cli_parse(int argc, char **argv, struct vm_config *cfg, struct cli_opts *o,
                          struct error *err)
{
	int c, idx;
	uint64_t v;

	memset(o, 0, sizeof(*o));
	opterr = 0;
	optind = 0; /* 0, not 1: also resets getopt's position inside a cluster like -xyz */
	while ((c = getopt_long(argc, argv, ":", options, &idx)) != -1) {
		switch (c) {
		case OPT_KERNEL:
			if (set_path("--kernel", &cfg->kernel_path, optarg, err))
				return CLI_ERROR;
			break;
		case OPT_INITRD:
			if (set_path("--initrd", &cfg->initrd_path, optarg, err))
				return CLI_ERROR;
			break;
		case OPT_CMDLINE:
			if (config_set_str(&cfg->cmdline, optarg))
				return oom(err);
			break;
		case OPT_MEM:
			if (parse_count("--mem", optarg, validate_mem_mib, &v, err))
				return CLI_ERROR;
			cfg->mem_mib = v;
			break;
		case OPT_VCPUS:
			if (parse_count("--vcpus", optarg, validate_vcpus, &v, err))
				return CLI_ERROR;
			cfg->vcpus = (unsigned)v;
			break;
		case OPT_CONSOLE:
			if (!strcmp(optarg, "stdio")) {
				cfg->console = CONSOLE_STDIO;
			} else if (!strcmp(optarg, "none")) {
				cfg->console = CONSOLE_NONE;
			} else if (!*optarg) {
				err_set(err, "--console: expected stdio, none or a file path");
				return CLI_ERROR;
			} else {
				cfg->console = CONSOLE_FILE;
				if (set_path("--console", &cfg->console_path, optarg, err))
					return CLI_ERROR;
			}
			break;
		case OPT_MMU:
			if (!strcmp(optarg, "auto"))
				cfg->mmu = MMU_AUTO;
			else if (!strcmp(optarg, "hardware"))
				cfg->mmu = MMU_HARDWARE;
			else if (!strcmp(optarg, "shadow"))
				cfg->mmu = MMU_SHADOW;
			else if (!strcmp(optarg, "process"))
				cfg->mmu = MMU_PROCESS;
			else {
				err_set(err,
				        "--%s '%s': expected auto, hardware, shadow or process",
				        options[idx].name, optarg);
				return CLI_ERROR;
			}
			break;
		case OPT_BOOT:
			if (!strcmp(optarg, "auto"))
				cfg->boot_protocol = BOOT_PROTO_AUTO;
			else if (!strcmp(optarg, "linux"))
				cfg->boot_protocol = BOOT_PROTO_LINUX64;
			else if (!strcmp(optarg, "pvh"))
				cfg->boot_protocol = BOOT_PROTO_PVH;
			else if (!strcmp(optarg, "multiboot"))
				cfg->boot_protocol = BOOT_PROTO_MULTIBOOT;
			else {
				err_set(err, "--boot '%s': expected auto, linux, pvh or multiboot",
				        optarg);
				return CLI_ERROR;
			}
			break;
		case OPT_TIMEOUT: {
			char *end;
			double t;

			errno = 0;
			t = strtod(optarg, &end);
			if (errno || *end || !*optarg || !isfinite(t) || t <= 0 || t > 1e6) {
				err_set(err, "--timeout '%s': expected seconds, > 0 and <= 1000000",
				        optarg);
				return CLI_ERROR;
			}
			cfg->timeout_sec = t;
			break;
		}
		case OPT_API_SOCK:
			if (set_path("--api-sock", &cfg->api_sock, optarg, err))
				return CLI_ERROR;
			break;
		case OPT_CONFIG_FILE:
			if (set_path("--config-file", &cfg->config_file, optarg, err))
				return CLI_ERROR;
			break;
		case OPT_NO_API:
			cfg->no_api = true;
			break;
		case OPT_ID: {
			const char *rule = validate_vm_id(optarg);

			if (rule) {
				bad_value(err, "--id", optarg, rule);
				return CLI_ERROR;
			}
			strcpy(cfg->id, optarg);
			break;
		}
		case OPT_VERBOSE:
			o->verbose = true;
			break;
		case OPT_DRIVE:
			if (parse_drive(optarg, cfg, err))
				return CLI_ERROR;
			break;
		case OPT_NET:
			if (parse_net(optarg, cfg, err))
				return CLI_ERROR;
			break;
		case OPT_VIRTIO_CONSOLE:
			cfg->virtio_console = true;
			break;
		case OPT_BOOT_TIMER:
			cfg->boot_timer = true;
			break;
		case OPT_NO_SECCOMP:
			o->no_seccomp = true;
			break;
		case OPT_SNAPSHOT_LOAD:
			if (!snapshot_params(cfg))
				return oom(err);
			if (set_path("--snapshot-load", &cfg->snapshot->state_path, optarg, err))
				return CLI_ERROR;
			break;
		case OPT_SNAPSHOT_MEM:
			if (!snapshot_params(cfg))
				return oom(err);
			if (set_path("--snapshot-mem", &cfg->snapshot->mem_path, optarg, err))
				return CLI_ERROR;
			break;
		case OPT_NET_OVERRIDE:
			if (parse_net_override(optarg, cfg, err))
				return CLI_ERROR;
			break;
		case OPT_HELP:
			o->help = true;
			return CLI_EXIT_OK;
		case OPT_VERSION:
			o->version = true;
			return CLI_EXIT_OK;
		case ':':
			err_set(err, "option '%s' needs a value", argv[optind - 1]);
			return CLI_ERROR;
		default:
			if (optopt > 0 && optopt < 256) /* a short option, maybe inside a cluster */
				err_set(err, "unknown option '-%c' (see --help)", optopt);
			else
				err_set(err, "unknown option '%s' (see --help)", argv[optind - 1]);
			return CLI_ERROR;
		}
	}
	if (optind < argc) {
		err_set(err, "unexpected argument '%s' (see --help)", argv[optind]);
		return CLI_ERROR;
	}
	if (cfg->config_file && (cfg->kernel_path || cfg->ndrives || cfg->nnets)) {
		err_set(err, "--config-file describes the whole VM: do not combine it with "
		             "--kernel, --drive or --net");
		return CLI_ERROR;
	}
	if (cfg->snapshot && !cfg->config_file) {
		if (!cfg->snapshot->state_path || !cfg->snapshot->mem_path) {
			err_set(err, "--snapshot-load STATE and --snapshot-mem FILE go together "
			             "(--net-override needs them)");
			return CLI_ERROR;
		}
		if (cfg->kernel_path || cfg->ndrives || cfg->nnets || cfg->virtio_console) {
			err_set(err,
			        "--snapshot-load restores the VM the snapshot describes: do not "
			        "combine it with --kernel, --drive, --net or --virtio-console");
			return CLI_ERROR;
		}
	}
	if (cfg->snapshot && cfg->config_file) {
		err_set(err, "--config-file describes the whole VM: give the snapshot in its "
		             "snapshot-load section, not with --snapshot-load");
		return CLI_ERROR;
	}
	if (cfg->no_api && !cfg->config_file) {
		err_set(err, "--no-api needs --config-file (nothing else could start the VM)");
		return CLI_ERROR;
	}
	if (cfg->no_api && cfg->api_sock) {
		err_set(err, "--no-api and --api-sock contradict each other");
		return CLI_ERROR;
	}
	if (!cfg->kernel_path && !cfg->api_sock && !cfg->config_file && !cfg->snapshot) {
		err_set(err, "no kernel: --kernel PATH is required (or --api-sock / "
		             "--config-file; see --help)");
		return CLI_ERROR;
	}
	return CLI_RUN;
}
