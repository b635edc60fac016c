/*
 * hearth-jailer's command line: Firecracker's jailer flags, checked without touching the
 * system, so that every mistake is reported before anything is created.
 */
#ifndef HEARTH_JAILER_ARGS_H
#define HEARTH_JAILER_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#define JAIL_ID_MAX         64
#define JAIL_MAX_CGROUPS    32
#define JAIL_DEFAULT_BASE   "/srv/jailer"
#define JAIL_DEFAULT_NOFILE 2048 /* as Firecracker's jailer, when no no-file limit is given */

/* Exit statuses of hearth-jailer itself (once it execs hearth, hearth's own apply). */
#define JAIL_EXIT_USAGE 247 /* bad command line: nothing was created */
#define JAIL_EXIT_SETUP 248 /* setup failed before the jail was entered: undone */
#define JAIL_EXIT_JAIL  249 /* failed inside the jail: the jail directory and cgroups stay */

struct jail_cgroup {
	const char *file;  /* "<controller>.<name>", e.g. "memory.limit_in_bytes" */
	const char *value; /* written as given */
	char controller[32];
};

struct jail_args {
	const char *id;
	const char *exec_file;
	const char *exec_name; /* last component of exec_file */
	const char *chroot_base;
	const char *netns;
	const char *parent_cgroup; /* relative; default exec_name */
	uid_t uid;
	gid_t gid;
	int cgroup_version; /* 1 or 2 */
	struct jail_cgroup cgroups[JAIL_MAX_CGROUPS];
	unsigned ncgroups;
	bool fsize_set, nofile_set;
	rlim_t fsize, nofile;
	bool daemonize, new_pid_ns;
	bool help;
	char **exec_argv; /* hearth's own flags, after "--" */
	int exec_argc;
};

/* Parse argv into `a`. Returns 0, or -1 with a message in err naming the flag. */
int jail_parse_args(int argc, char **argv, struct jail_args *a, char *err, size_t errlen);

/* [A-Za-z0-9-], 1..64 characters, as Firecracker's jailer. */
bool jail_id_valid(const char *id);

void jail_usage(void);

#endif
