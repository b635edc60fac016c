/*
 * The VM configuration model. The one-shot command line, --config-file and (later) the REST
 * API all fill this same structure; vmm/ builds the machine from it.
 */
#ifndef HEARTH_VM_CONFIG_H
#define HEARTH_VM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/boot.h"

enum console_kind { CONSOLE_STDIO, CONSOLE_NONE, CONSOLE_FILE };
enum mmu_mode { MMU_AUTO, MMU_HARDWARE, MMU_SHADOW };

#define VM_ID_MAX     64
#define VM_MAX_VCPUS  32
#define VM_DEFAULT_MEM_MIB 128
#define VM_MAX_DRIVES 8
#define DRIVE_ID_MAX  64

struct drive_config {
	char id[DRIVE_ID_MAX + 1];
	const char *path;
	bool read_only;
};

struct vm_config {
	char id[VM_ID_MAX + 1];
	/* boot source */
	const char *kernel_path;
	const char *initrd_path;
	const char *cmdline;
	enum boot_protocol boot_protocol;
	/* machine */
	uint64_t mem_mib;
	unsigned vcpus;
	enum mmu_mode mmu;
	/* console */
	enum console_kind console;
	const char *console_path;
	/* devices */
	struct drive_config drives[VM_MAX_DRIVES];
	unsigned ndrives;
	bool virtio_console;
	/* run control */
	double timeout_sec; /* 0 = none */
	/* control plane (parsed now, served by later work) */
	const char *api_sock;
	const char *config_file;
	bool no_api;
};

void vm_config_defaults(struct vm_config *c);
const char *mmu_mode_name(enum mmu_mode m);
/* Firecracker's id rule: 1..max characters from [A-Za-z0-9_]. */
bool config_id_valid(const char *s, size_t max);

#endif
