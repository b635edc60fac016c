#include "args.h"
#include "text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool jail_id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > JAIL_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
	}
	return true;
}

/* A decimal number in [min, max], nothing else (no sign, no spaces, no suffix). */
static bool parse_u64(const char *s, unsigned long long min, unsigned long long max,
                      unsigned long long *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* A relative cgroup path: components of [A-Za-z0-9_.-], none of them "." or "..". */
static bool cgroup_path_valid(const char *p)
{
	const char *c = p;

	if (!*p || *p == '/' || strlen(p) > 256)
		return false;
	while (*c) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);

		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		for (size_t i = 0; i < n; i++) {
			char ch = c[i];

			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
				return false;
		}
		c += n;
		if (*c == '/')
			c++;
	}
	return true;
}

/* "<controller>.<name>=<value>": a file of one controller, in the cgroup's own directory. */
static int parse_cgroup(char *arg, struct jail_cgroup *cg, char *err, size_t errlen)
{
	char *eq = strchr(arg, '=');
	char *dot;
	size_t clen;

	if (!eq)
		return errf(err, errlen, "--cgroup '%s': expected FILE=VALUE (e.g. cpu.shares=10)",
		            arg);
	*eq = '\0';
	cg->file = arg;
	cg->value = eq + 1;
	dot = strchr(arg, '.');
	if (!dot || dot == arg || !dot[1])
		return errf(err, errlen,
		            "--cgroup '%s': the file must be <controller>.<name> (e.g. "
		            "memory.max)",
		            arg);
	for (const char *c = arg; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '.'))
			return errf(err, errlen,
			            "--cgroup '%s': a cgroup file name has only [A-Za-z0-9_.]",
			            arg);
	clen = (size_t)(dot - arg);
	if (clen >= sizeof(cg->controller))
		return errf(err, errlen, "--cgroup '%s': controller name too long", arg);
	memcpy(cg->controller, arg, clen);
	cg->controller[clen] = '\0';
	if (!strcmp(cg->controller, "cgroup") || !strcmp(cg->file, "tasks"))
		return errf(err, errlen,
		            "--cgroup '%s': the cgroup's own files (membership, subtree control) "
		            "are the jailer's",
		            arg);
	if (!*cg->value || strchr(cg->value, '\n'))
		return errf(err, errlen, "--cgroup %s: the value must be one non-empty line",
		            cg->file);
	return 0;
}

static int parse_limit(const char *arg, struct jail_args *a, char *err, size_t errlen)
{
	const char *eq = strchr(arg, '=');
	unsigned long long v;

	if (!eq)
		return errf(err, errlen, "--resource-limit '%s': expected fsize=N or no-file=N",
		            arg);
	if (!parse_u64(eq + 1, 0, RLIM_INFINITY - 1, &v))
		return errf(err, errlen, "--resource-limit '%s': N must be a decimal number", arg);
	if ((size_t)(eq - arg) == 5 && !strncmp(arg, "fsize", 5)) {
		a->fsize = (rlim_t)v;
		a->fsize_set = true;
	} else if ((size_t)(eq - arg) == 7 && !strncmp(arg, "no-file", 7)) {
		if (v < 16 || v > 1048576)
			return errf(err, errlen,
			            "--resource-limit no-file=%llu: must be 16..1048576 (hearth "
			            "needs a few descriptors to run at all)",
			            v);
		a->nofile = (rlim_t)v;
		a->nofile_set = true;
	} else {
		return errf(err, errlen,
		            "--resource-limit '%s': unknown resource (known: fsize, no-file)", arg);
	}
	return 0;
}

enum { F_ID, F_EXEC, F_UID, F_GID, F_BASE, F_NETNS, F_CGV, F_CGROUP, F_PARENT, F_LIMIT };

static const struct {
	const char *name;
	int key;
} valued[] = {
    {"id", F_ID},
    {"exec-file", F_EXEC},
    {"uid", F_UID},
    {"gid", F_GID},
    {"chroot-base-dir", F_BASE},
    {"netns", F_NETNS},
    {"cgroup-version", F_CGV},
    {"cgroup", F_CGROUP},
    {"parent-cgroup", F_PARENT},
    {"resource-limit", F_LIMIT},
};

int jail_parse_args(int argc, char **argv, struct jail_args *a, char *err, size_t errlen)
{
	bool seen[F_LIMIT + 1] = {false};
	int i;

	memset(a, 0, sizeof(*a));
	a->chroot_base = JAIL_DEFAULT_BASE;
	a->cgroup_version = 1;
	for (i = 1; i < argc; i++) {
		char *arg = argv[i], *val = NULL, *eq;
		unsigned long long v;
		int key = -1;
		size_t nlen;

		if (!strcmp(arg, "--")) {
			i++;
			break;
		}
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			a->help = true;
			return 0;
		}
		if (!strcmp(arg, "--daemonize")) {
			a->daemonize = true;
			continue;
		}
		if (!strcmp(arg, "--new-pid-ns")) {
			a->new_pid_ns = true;
			continue;
		}
		if (strncmp(arg, "--", 2))
			return errf(err, errlen,
			            "unexpected argument '%s' (hearth's own flags go after '--')",
			            arg);
		eq = strchr(arg, '=');
		nlen = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
			if (strlen(valued[k].name) == nlen &&
			    !strncmp(arg + 2, valued[k].name, nlen))
				key = valued[k].key;
		if (key < 0)
			return errf(err, errlen, "unknown flag '%.*s' (see --help)", (int)nlen + 2,
			            arg);
		if (eq) {
			val = eq + 1;
		} else {
			if (i + 1 >= argc)
				return errf(err, errlen, "%s needs a value", arg);
			val = argv[++i];
		}
		if (seen[key] && key != F_CGROUP && key != F_LIMIT)
			return errf(err, errlen, "--%.*s given twice", (int)nlen, arg + 2);
		seen[key] = true;
		switch (key) {
		case F_ID:
			if (!jail_id_valid(val))
				return errf(err, errlen,
				            "--id '%s': 1 to %d characters of [A-Za-z0-9-]", val,
				            JAIL_ID_MAX);
			a->id = val;
			break;
		case F_EXEC:
			if (!*val)
				return errf(err, errlen, "--exec-file: empty path");
			a->exec_file = val;
			break;
		case F_UID:
		case F_GID:
			if (!parse_u64(val, 0, 0xfffffffeULL, &v))
				return errf(err, errlen, "--%s '%s': a decimal id is expected",
				            key == F_UID ? "uid" : "gid", val);
			if (v == 0)
				return errf(err, errlen,
				            "--%s 0: hearth must not run as root in the jail; "
				            "choose an unprivileged %s",
				            key == F_UID ? "uid" : "gid",
				            key == F_UID ? "user" : "group");
			if (key == F_UID)
				a->uid = (uid_t)v;
			else
				a->gid = (gid_t)v;
			break;
		case F_BASE:
			if (val[0] != '/' || !strcmp(val, "/") || strstr(val, "/../") ||
			    (strlen(val) >= 3 && !strcmp(val + strlen(val) - 3, "/..")))
				return errf(err, errlen,
				            "--chroot-base-dir '%s': an absolute path other than / "
				            "without '..'",
				            val);
			a->chroot_base = val;
			break;
		case F_NETNS:
			if (!*val)
				return errf(err, errlen, "--netns: empty path");
			a->netns = val;
			break;
		case F_CGV:
			if (strcmp(val, "1") && strcmp(val, "2"))
				return errf(err, errlen, "--cgroup-version '%s': 1 or 2", val);
			a->cgroup_version = val[0] - '0';
			break;
		case F_CGROUP:
			if (a->ncgroups == JAIL_MAX_CGROUPS)
				return errf(err, errlen, "at most %d --cgroup flags",
				            JAIL_MAX_CGROUPS);
			if (parse_cgroup(val, &a->cgroups[a->ncgroups], err, errlen))
				return -1;
			for (unsigned k = 0; k < a->ncgroups; k++)
				if (!strcmp(a->cgroups[k].file, a->cgroups[a->ncgroups].file))
					return errf(err, errlen, "--cgroup %s given twice",
					            a->cgroups[k].file);
			a->ncgroups++;
			break;
		case F_PARENT:
			if (!cgroup_path_valid(val))
				return errf(err, errlen,
				            "--parent-cgroup '%s': a relative path of "
				            "[A-Za-z0-9_.-] components, without '.' or '..'",
				            val);
			a->parent_cgroup = val;
			break;
		case F_LIMIT:
			if (parse_limit(val, a, err, errlen))
				return -1;
			break;
		}
	}
	a->exec_argv = argv + i;
	a->exec_argc = argc - i;
	if (!a->id)
		return errf(err, errlen, "--id is required");
	if (!a->exec_file)
		return errf(err, errlen, "--exec-file is required");
	if (!seen[F_UID])
		return errf(err, errlen, "--uid is required");
	if (!seen[F_GID])
		return errf(err, errlen, "--gid is required");
	a->exec_name = strrchr(a->exec_file, '/') ? strrchr(a->exec_file, '/') + 1 : a->exec_file;
	if (!*a->exec_name || !strcmp(a->exec_name, ".") || !strcmp(a->exec_name, ".."))
		return errf(err, errlen, "--exec-file '%s': not a file name", a->exec_file);
	if (!cgroup_path_valid(a->exec_name))
		return errf(err, errlen,
		            "--exec-file '%s': the file name must be of [A-Za-z0-9_.-] (it names "
		            "the jail directory)",
		            a->exec_file);
	if (!a->parent_cgroup)
		a->parent_cgroup = a->exec_name;
	for (int k = 0; k < a->exec_argc; k++)
		if (!strcmp(a->exec_argv[k], "--id") || !strncmp(a->exec_argv[k], "--id=", 5))
			return errf(err, errlen,
			            "'%s' after '--': the jailer passes --id %s to hearth itself",
			            a->exec_argv[k], a->id);
	return 0;
}

void jail_usage(void)
{
	printf("usage: hearth-jailer --id ID --exec-file PATH --uid UID --gid GID [options]\n"
	       "                     [-- hearth's own flags]\n"
	       "\n"
	       "Builds a jail for one microVM and execs hearth inside it, unprivileged.\n"
	       "\n"
	       "  --id ID                 the microVM's id: 1..%d characters of [A-Za-z0-9-];\n"
	       "                          passed on to hearth as --id ID\n"
	       "  --exec-file PATH        the hearth binary; it is copied into the jail with\n"
	       "                          hearth-api.so (when beside it) and the shared libraries\n"
	       "                          both need\n"
	       "  --uid UID, --gid GID    the unprivileged user and group hearth runs as (not 0)\n"
	       "  --chroot-base-dir DIR   where jails are built (default %s); the jail is\n"
	       "                          DIR/<exec file name>/ID/root and must not exist yet\n"
	       "  --netns PATH            join this network namespace (e.g. /run/netns/NAME)\n"
	       "  --cgroup-version 1|2    cgroup hierarchy for --cgroup (default 1)\n"
	       "  --cgroup FILE=VALUE     write VALUE to FILE (e.g. memory.limit_in_bytes=256M,\n"
	       "                          cpu.max=50000 100000) in the microVM's cgroup\n"
	       "                          <hierarchy>/<parent>/ID, which hearth joins; repeatable\n"
	       "  --parent-cgroup PATH    the parent of that cgroup, relative to the hierarchy's\n"
	       "                          root (default: the exec file's name)\n"
	       "  --resource-limit fsize=N|no-file=N\n"
	       "                          rlimits (repeatable); no-file defaults to %d\n"
	       "  --daemonize             new session, standard I/O to /dev/null\n"
	       "  --new-pid-ns            hearth runs as pid 1 of a new pid namespace\n"
	       "  --help                  this text\n"
	       "\n"
	       "The hearth pid (as seen from outside) is written to <jail>/<exec file name>.pid.\n"
	       "Paths given to hearth (--api-sock, kernel, drives) are inside the jail: copy or\n"
	       "hard-link the files into <jail> first, or after the API socket appears.\n"
	       "\n"
	       "Exit status: hearth's own once it runs; before that\n"
	       "  %d  bad command line: nothing was created\n"
	       "  %d  setup failed before entering the jail; what was created was removed\n"
	       "  %d  setup failed inside the jail; the jail directory and the cgroups stay\n",
	       JAIL_ID_MAX, JAIL_DEFAULT_BASE, JAIL_DEFAULT_NOFILE, JAIL_EXIT_USAGE,
	       JAIL_EXIT_SETUP, JAIL_EXIT_JAIL);
}
