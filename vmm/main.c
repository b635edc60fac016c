/* hearth: a KVM microVM monitor. One-shot mode: boot, show the console, exit with the
 * guest's status. */
#include "cli.h"
#include "exit_codes.h"
#include "host_mmu.h"
#include "log.h"
#include "vm.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static struct vm vm = {.kvm_fd = -1, .vm_fd = -1, .stop_fd = -1};
	struct vm_config cfg;
	struct cli_opts opts;
	struct error err = {""};
	int code;

	vm_config_defaults(&cfg);
	switch (cli_parse(argc, argv, &cfg, &opts, &err)) {
	case CLI_ERROR:
		log_error("%s", err.msg);
		return EXIT_USAGE;
	case CLI_EXIT_OK:
		if (opts.help) {
			cli_usage(stdout);
		} else {
			struct host_mmu h;

			host_mmu_detect(&h, "/sys");
			printf("hearth %s\nhost mmu: %s\n", HEARTH_VERSION, host_mmu_describe(&h));
		}
		return 0;
	case CLI_RUN:
		break;
	}
	log_verbose = opts.verbose;
	signal(SIGPIPE, SIG_IGN); /* a closed console pipe must not kill the VMM */

	if (vm_open_kvm(&vm, &err)) {
		log_error("%s", err.msg);
		return EXIT_VMM_ERROR;
	}
	log_status("host mmu: %s; engine: hardware (--mmu %s); %u vCPU(s), %llu MiB",
		   host_mmu_describe(&vm.host), mmu_mode_name(cfg.mmu), cfg.vcpus,
		   (unsigned long long)cfg.mem_mib);
	if (vm_build(&vm, &cfg, &err, &code)) {
		log_error("%s", err.msg);
		vm_destroy(&vm);
		return code;
	}
	vm_run(&vm);
	code = vm_exit_code(&vm.stop);
	log_status("%s (exit status %d)", vm.stop.detail, code);
	vm_detach_teardown(&vm);
	return code;
}
