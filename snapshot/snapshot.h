/*
 * Snapshots of a VM (docs/SNAPSHOTS.md): a state file (snapshot/stream.h: the configuration,
 * the backend's state, every device's) and a memory file (guest RAM as it is, page for page;
 * a diff snapshot holds only the pages written since the previous snapshot).
 *
 * Create: with every vCPU parked (the VM is Paused). Load: in a fresh hearth, the VM is
 * built from the configuration in the state file (drives re-opened, TAPs re-attached, with
 * network overrides), guest RAM is the memory file (mapped private where the engine allows:
 * no copy, pages come in on demand, clones share the page cache), then the backend and the
 * devices take their state from the file.
 */
#ifndef HEARTH_SNAPSHOT_H
#define HEARTH_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "snapshot/stream.h"
#include "vmm/error.h"

struct vm;
struct vm_config;
struct guest_memory;

enum snapshot_type { SNAPSHOT_FULL, SNAPSHOT_DIFF };

/* What the state file says about the VM it holds (section META). */
struct snapshot_meta {
	uint32_t engine; /* enum engine */
	uint32_t nvcpus;
	uint64_t mem_size, low_size, high_size;
	bool linux_kernel;
	uint32_t type; /* enum snapshot_type */
};

struct snapshot_file {
	uint8_t *payload;
	size_t len;
	struct snapshot_meta meta;
	struct snap_r state; /* the backend's and the devices' sections */
};

/* Write a snapshot of `vm` (paused), built from `cfg`. A diff snapshot needs dirty tracking
 * (track_dirty_pages) and writes only the pages written since the VM started tracking or
 * since the last snapshot; either kind restarts the count. 0, or -1 with err set (the VM is
 * unchanged and can go on). */
int snapshot_create(struct vm *vm, const struct vm_config *cfg, enum snapshot_type type,
                    const char *state_path, const char *mem_path, struct error *err);

/* Read and check a state file; `cfg` (defaults set, the process's own console, id, logger
 * already in it) gets the snapshot's machine and devices. 0, or -1 with err set. */
int snapshot_open(const char *state_path, struct vm_config *cfg, struct snapshot_file *f,
                  struct error *err);
void snapshot_close(struct snapshot_file *f);

/* Guest RAM from the memory file: mapped private (`shared` false) or copied into a shared
 * memfd (`shared`: the process engine maps guest RAM into another process). The file must be
 * exactly as large as the snapshot's RAM. 0 or -1 (err set). */
int snapshot_map_memory(struct guest_memory *gm, const char *mem_path,
                        const struct snapshot_meta *m, bool shared, struct error *err);

/* The backend's and the devices' state, into a VM built from the snapshot's configuration
 * (before any vCPU runs). 0 or -1 (err set). */
int snapshot_restore_state(struct vm *vm, struct snapshot_file *f, struct error *err);

#endif
