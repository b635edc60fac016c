/*
 * The microVM's cgroups: <hierarchy>/<parent>/<id> in every hierarchy that holds a controller
 * named by --cgroup (v1: one mount per controller, found in /proc/mounts; v2: the unified
 * hierarchy, with each controller enabled down the parent path). Values are written first,
 * then the jailer joins (cgroup.procs), so a value the kernel refuses leaves the process where
 * it was. Everything created is recorded, and undone by cgroup_undo.
 */
#ifndef HEARTH_JAILER_CGROUP_H
#define HEARTH_JAILER_CGROUP_H

#include "args.h"

#define CG_MAX_DIRS 64

struct cg_state {
	char *created[CG_MAX_DIRS]; /* directories this run made, in creation order */
	unsigned ncreated;
	char *joined_root[JAIL_MAX_CGROUPS]; /* hierarchy roots of the cgroups joined */
	unsigned njoined;
	const char *mounts; /* "/proc/mounts" except in tests */
};

/* Check, without changing anything, that every controller of `a` has a hierarchy of the
 * requested version (and, for v2, is available in it). */
int cgroup_check(const struct jail_args *a, struct cg_state *s, char *err, size_t errlen);

/* Create the cgroups, write the values, move this process in. */
int cgroup_setup(const struct jail_args *a, struct cg_state *s, char *err, size_t errlen);

/* Move this process back to the hierarchy roots and remove what cgroup_setup created. */
void cgroup_undo(struct cg_state *s);

void cgroup_state_free(struct cg_state *s);

#endif
