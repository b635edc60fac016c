/*
 * The VM configuration model. The one-shot command line, --config-file and the REST API all
 * fill this same structure; vmm/ builds the machine from it. Strings are owned (malloc'd)
 * and freed by vm_config_free.
 */
#ifndef HEARTH_VM_CONFIG_H
#define HEARTH_VM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Which kernel entry to use (vmm/boot.h loads the kernel). */
enum boot_protocol {
	BOOT_PROTO_AUTO,      /* PVH note, else Multiboot header, else Linux 64-bit (loaders) */
	BOOT_PROTO_LINUX64,   /* Linux 64-bit boot protocol: long mode, %rsi = boot_params */
	BOOT_PROTO_PVH,       /* PVH: 32-bit protected mode, %ebx = hvm_start_info */
	BOOT_PROTO_MULTIBOOT, /* Multiboot v1: 32-bit, %eax = 0x2badb002, %ebx = info */
};

enum console_kind { CONSOLE_STDIO, CONSOLE_NONE, CONSOLE_FILE };
enum mmu_mode { MMU_AUTO, MMU_HARDWARE, MMU_SHADOW, MMU_PROCESS };

#define VM_ID_MAX          64
#define VM_MAX_VCPUS       32
#define VM_DEFAULT_MEM_MIB 128
#define VM_MIN_MEM_MIB     4       /* vmm/layout.h: LAYOUT_MIN_RAM */
#define VM_MAX_MEM_MIB     1048576 /* 1 TiB, vmm/layout.h: LAYOUT_MAX_RAM */
#define VM_MAX_DRIVES      8
#define VM_MAX_NETS        4
#define DRIVE_ID_MAX       64
#define IFACE_NAME_MAX     15 /* IFNAMSIZ - 1 */

struct drive_config {
	char id[DRIVE_ID_MAX + 1];
	char *path;
	bool read_only;
	bool is_root_device; /* Firecracker: adds root=/dev/vdX to the command line */
};

struct net_config {
	char id[DRIVE_ID_MAX + 1];
	char host_dev_name[IFACE_NAME_MAX + 1];
	bool has_mac;
	uint8_t mac[6];
};

/* What PUT /snapshot/load (or --snapshot-load) asks for; the strings are malloc'd. */
struct snapshot_load_params {
	char *state_path, *mem_path;
	bool track_dirty_pages;
	bool resume_vm;
	/* Firecracker's network_overrides: a restored interface on another TAP. */
	struct {
		char id[DRIVE_ID_MAX + 1];
		char host_dev_name[IFACE_NAME_MAX + 1];
	} net_overrides[VM_MAX_NETS];
	unsigned nnet_overrides;
};

struct vm_config {
	char id[VM_ID_MAX + 1];
	/* boot source */
	char *kernel_path;
	char *initrd_path;
	char *cmdline;
	enum boot_protocol boot_protocol;
	/* machine */
	uint64_t mem_mib;
	unsigned vcpus;
	bool smt;
	bool track_dirty_pages;
	enum mmu_mode mmu;
	/* devices */
	struct drive_config drives[VM_MAX_DRIVES];
	unsigned ndrives;
	struct net_config nets[VM_MAX_NETS];
	unsigned nnets;
	bool virtio_console;
	/* console */
	enum console_kind console;
	char *console_path;
	/* run control */
	double timeout_sec; /* 0 = none */
	bool boot_timer;
	/* control plane */
	char *api_sock;
	char *config_file;
	bool no_api;
	char *log_path;
	char *metrics_path;
	/* Restore this snapshot instead of booting (--snapshot-load, a config file's
	 * snapshot-load section); malloc'd, NULL when none. */
	struct snapshot_load_params *snapshot;
};

void vm_config_defaults(struct vm_config *c);
void free_snapshot_params(struct snapshot_load_params *p);
void vm_config_free(struct vm_config *c);
/* Replace an owned string (NULL clears it); returns -1 when out of memory. */
int config_set_str(char **field, const char *value);
const char *mmu_mode_name(enum mmu_mode m);
/* The rules each field's values follow are in config/validate.h. */

#endif
