/* hearth: a KVM microVM monitor. One process per microVM: the one-shot command line, a
 * config file, or the REST API configures it; the VMM thread (controller) runs it. */
#include "api/api.h"
#include "cli.h"
#include "controller.h"
#include "exit_codes.h"
#include "log.h"
#include "seccomp/filters.h"
#include "vm.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read a whole (small) file; NULL with errno on failure. */
static char *read_file(const char *path, size_t max)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = malloc(max + 1);
	if (!buf) {
		fclose(f);
		errno = ENOMEM;
		return NULL;
	}
	n = fread(buf, 1, max + 1, f);
	fclose(f);
	if (n > max) {
		free(buf);
		errno = EFBIG;
		return NULL;
	}
	buf[n] = 0;
	return buf;
}

static int load_config_file(struct vm_config *cfg)
{
	char err[512] = "";
	char *text = read_file(cfg->config_file, 1 << 20);
	int r;

	if (!text) {
		log_error("--config-file %s: %s", cfg->config_file, strerror(errno));
		return -1;
	}
	r = config_from_json(text, cfg, err, sizeof(err));
	free(text);
	if (r)
		log_error("--config-file %s: %s", cfg->config_file, err);
	return r;
}

int main(int argc, char **argv)
{
	static struct vm vm = {.stop_fd = -1};
	static struct vm_config cfg;
	static struct api_channel channel;
	static struct controller ctl;
	struct api_server *server = NULL;
	struct cli_opts opts;
	struct error err = {""};
	char msg[512];
	int code;

	/* One malloc arena for every thread. A thread's own arena, when it shrinks, makes glibc
	 * read /proc/sys/vm/overcommit_memory (openat), which the API and vCPU filters rightly
	 * forbid; hearth's threads allocate little, so sharing costs nothing measurable. */
	mallopt(M_ARENA_MAX, 1);
	vm_config_defaults(&cfg);
	api_server_set_module_dir(argv[0]);
	switch (cli_parse(argc, argv, &cfg, &opts, &err)) {
	case CLI_ERROR:
		log_error("%s", err.msg);
		vm_config_free(&cfg);
		return EXIT_USAGE;
	case CLI_EXIT_OK:
		if (opts.help) {
			cli_usage(stdout);
		} else {
			vm_probe_host(&vm);
			printf("hearth %s\nhost mmu: %s\nkvm: %s%s%s%s\n", HEARTH_VERSION,
			       vm.kvm.summary, vm.kvm.state, vm.kvm.detail[0] ? " (" : "",
			       vm.kvm.detail, vm.kvm.detail[0] ? ")" : "");
		}
		vm_config_free(&cfg);
		return 0;
	case CLI_RUN:
		break;
	}
	log_verbose = opts.verbose;
	signal(SIGPIPE, SIG_IGN); /* a closed console pipe or client must not kill the VMM */
	/* Before any thread exists: each installs its own filter (seccomp/filters.h). */
	if (seccomp_setup(!opts.no_seccomp, &err)) {
		log_error("%s", err.msg);
		vm_config_free(&cfg);
		return EXIT_VMM_ERROR;
	}
	if (opts.no_seccomp)
		log_warn("--no-seccomp: the seccomp filters are off; every thread may make any "
		         "system call");
	if (cfg.config_file && load_config_file(&cfg)) {
		vm_config_free(&cfg);
		return EXIT_USAGE;
	}
	if (cfg.snapshot && !cfg.api_sock && !cfg.snapshot->resume_vm) {
		log_error("--config-file %s: snapshot-load.resume_vm is false, and without the API "
		          "nothing could resume the VM",
		          cfg.config_file);
		vm_config_free(&cfg);
		return EXIT_USAGE;
	}
	/* /dev/kvm is opened when a VM is built: without it hearth still configures and
	 * serves its API, and says so when asked to run a guest. */
	vm_probe_host(&vm);

	ctl.cfg = &cfg;
	ctl.vm = &vm;
	ctl.exit_when_stopped = !cfg.api_sock;
	if (cfg.api_sock) {
		if (api_channel_init(&channel)) {
			log_error("cannot create the API channel: %s", strerror(errno));
			return EXIT_VMM_ERROR;
		}
		ctl.api = &channel;
		server = api_server_start(cfg.api_sock, &channel, msg, sizeof(msg));
		if (!server) {
			log_error("%s", msg);
			vm_config_free(&cfg);
			return EXIT_USAGE;
		}
		log_info("API listening on %s", cfg.api_sock);
	}
	if (controller_init(&ctl)) {
		log_error("cannot set up the VMM loop: %s", strerror(errno));
		return EXIT_VMM_ERROR;
	}
	/* A snapshot (--snapshot-load, a config file's snapshot-load) is restored at once. */
	if (cfg.snapshot) {
		if (controller_restore_vm(&ctl, cfg.snapshot, msg, sizeof(msg), &code)) {
			log_error("snapshot: %s", msg);
			if (server)
				api_server_stop(server);
			vm_destroy(&vm);
			vm_config_free(&cfg);
			return code;
		}
	} else if (cfg.kernel_path && !(cfg.api_sock && !cfg.config_file)) {
		/* The one-shot command line and a config file boot at once. */
		if (controller_start_vm(&ctl, msg, sizeof(msg), &code)) {
			log_error("%s", msg);
			if (server)
				api_server_stop(server);
			vm_destroy(&vm);
			vm_config_free(&cfg);
			return code;
		}
	} else if (!cfg.api_sock) {
		log_error("the configuration has no boot source (boot-source.kernel_image_path)");
		vm_config_free(&cfg);
		return EXIT_USAGE;
	}
	code = controller_run(&ctl);
	if (server)
		api_server_stop(server);
	vm_detach_teardown(&vm);
	vm_config_free(&cfg);
	return code;
}
