#include "cgroup.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <mntent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether comma-separated `list` contains `word`. */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len == n && !strncmp(p, word, n))
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

/* The mount point of the v1 hierarchy holding `controller`, or of the v2 hierarchy. */
static int find_mount(const struct cg_state *s, int version, const char *controller, char *out,
                      size_t outlen)
{
	FILE *f = setmntent(s->mounts ? s->mounts : "/proc/mounts", "r");
	struct mntent *m;
	int rc = -1;

	if (!f)
		return -1;
	while ((m = getmntent(f))) {
		bool ok = version == 2
		              ? !strcmp(m->mnt_type, "cgroup2")
		              : !strcmp(m->mnt_type, "cgroup") && has_word(m->mnt_opts, controller);

		if (ok && strlen(m->mnt_dir) < outlen) {
			fmt_to(out, outlen, "%s", m->mnt_dir);
			rc = 0;
			break;
		}
	}
	endmntent(f);
	return rc;
}

static int read_line(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static int write_str(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n, len = (ssize_t)strlen(value);

	if (fd < 0)
		return -1;
	n = write(fd, value, (size_t)len);
	if (close(fd) && n == len)
		return -1;
	if (n != len) {
		if (n >= 0)
			errno = EIO;
		return -1;
	}
	return 0;
}

/* The space-separated controllers a v2 cgroup offers. */
static bool v2_offers(const char *dir, const char *controller)
{
	char path[4200], buf[1024];

	if (fmt_to(path, sizeof(path), "%s/cgroup.controllers", dir) ||
	    read_line(path, buf, sizeof(buf)))
		return false;
	for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
		if (!strcmp(t, controller))
			return true;
	return false;
}

int cgroup_check(const struct jail_args *a, struct cg_state *s, char *err, size_t errlen)
{
	for (unsigned i = 0; i < a->ncgroups; i++) {
		const char *c = a->cgroups[i].controller;
		char mnt[4096];

		if (find_mount(s, a->cgroup_version, c, mnt, sizeof(mnt)))
			return errf(err, errlen,
			            a->cgroup_version == 1
			                ? "--cgroup %s: no cgroup v1 hierarchy has the %s "
			                  "controller (see /proc/mounts)"
			                : "--cgroup %s: no cgroup v2 hierarchy is mounted%.0s",
			            a->cgroups[i].file, c);
		if (a->cgroup_version == 2 && !v2_offers(mnt, c))
			return errf(err, errlen,
			            "--cgroup %s: the cgroup v2 hierarchy at %s does not offer the "
			            "%s controller (cgroup.controllers)",
			            a->cgroups[i].file, mnt, c);
	}
	return 0;
}

static int remember(struct cg_state *s, const char *dir, char *err, size_t errlen)
{
	if (s->ncreated == CG_MAX_DIRS)
		return errf(err, errlen, "too many cgroup directories");
	if (!(s->created[s->ncreated] = strdup(dir)))
		return errf(err, errlen, "out of memory");
	s->ncreated++;
	return 0;
}

/* v1 cpuset: a new cgroup starts with no CPUs and no memory nodes, and nothing can join it;
 * give it its parent's. */
static int cpuset_inherit(const char *dir, const char *parent, char *err, size_t errlen)
{
	static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};

	for (int i = 0; i < 2; i++) {
		char path[4200], buf[4096];

		if (fmt_to(path, sizeof(path), "%s/%s", parent, files[i]) ||
		    read_line(path, buf, sizeof(buf)))
			return errf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		if (*buf &&
		    (fmt_to(path, sizeof(path), "%s/%s", dir, files[i]) || write_str(path, buf)))
			return errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
	}
	return 0;
}

/* mkdir -p of `rel` under `root`. The last component (the id) must be new; each created
 * directory is recorded. */
static int make_path(struct cg_state *s, const char *root, const char *rel, bool cpuset, char *err,
                     size_t errlen)
{
	char dir[4200], parent[4200];
	const char *p = rel;

	if (strlen(root) + 1 + strlen(rel) >= sizeof(dir))
		return errf(err, errlen, "cgroup path too long");
	fmt_to(dir, sizeof(dir), "%s", root);
	while (*p) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		bool last = !end;

		memcpy(parent, dir, sizeof(parent));
		if (fmt_to(dir + strlen(dir), sizeof(dir) - strlen(dir), "/%.*s", (int)n, p))
			return errf(err, errlen, "cgroup path too long");
		if (mkdir(dir, 0755) == 0) {
			if (remember(s, dir, err, errlen))
				return -1;
			if (cpuset && cpuset_inherit(dir, parent, err, errlen))
				return -1;
		} else if (errno != EEXIST || last) {
			return errf(err, errlen,
			            errno == EEXIST ? "cgroup %s already exists (is the id in use?)"
			                            : "cannot create cgroup %s: %s",
			            dir, strerror(errno));
		}
		p = end ? end + 1 : p + n;
	}
	return 0;
}

int cgroup_setup(const struct jail_args *a, struct cg_state *s, char *err, size_t errlen)
{
	char roots[JAIL_MAX_CGROUPS][4096];
	unsigned nroots = 0;
	char pid[32];
	char rel[4200];

	if (!a->ncgroups)
		return 0;
	if (fmt_to(rel, sizeof(rel), "%s/%s", a->parent_cgroup, a->id))
		return errf(err, errlen, "cgroup path too long");
	sprintf(pid, "%d", (int)getpid());
	/* One cgroup per hierarchy: v1 controllers may share a mount, v2 has one. */
	for (unsigned i = 0; i < a->ncgroups; i++) {
		const char *c = a->cgroups[i].controller;
		char root[4096], dir[8400], file[8600];
		bool seen = false;

		if (find_mount(s, a->cgroup_version, c, root, sizeof(root)))
			return errf(err, errlen, "--cgroup %s: hierarchy gone", a->cgroups[i].file);
		if (fmt_to(dir, sizeof(dir), "%s/%s", root, rel))
			return errf(err, errlen, "cgroup path too long");
		for (unsigned k = 0; k < nroots; k++)
			seen |= !strcmp(roots[k], root);
		if (!seen) {
			if (make_path(s, root, rel, a->cgroup_version == 1 && !strcmp(c, "cpuset"),
			              err, errlen))
				return -1;
			memcpy(roots[nroots++], root, sizeof(roots[0]));
		}
		if (a->cgroup_version == 2) {
			/* Enable the controller from the root down to the id's parent. */
			char path[8400], ctl[8600], plus[64];
			const char *p = rel;

			fmt_to(path, sizeof(path), "%s", root);
			fmt_to(plus, sizeof(plus), "+%s", c);
			while (strchr(p, '/')) {
				if (fmt_to(ctl, sizeof(ctl), "%s/cgroup.subtree_control", path) ||
				    write_str(ctl, plus))
					return errf(err, errlen,
					            "cannot enable the %s controller in %s: %s", c,
					            ctl, strerror(errno));
				fmt_to(path + strlen(path), sizeof(path) - strlen(path), "/%.*s",
				       (int)(strchr(p, '/') - p), p);
				p = strchr(p, '/') + 1;
			}
			if (fmt_to(ctl, sizeof(ctl), "%s/cgroup.subtree_control", path) ||
			    write_str(ctl, plus))
				return errf(err, errlen,
				            "cannot enable the %s controller in %s: %s", c, ctl,
				            strerror(errno));
		}
		if (fmt_to(file, sizeof(file), "%s/%s", dir, a->cgroups[i].file) ||
		    access(file, F_OK))
			return errf(err, errlen, "--cgroup %s: %s does not exist",
			            a->cgroups[i].file, file);
		if (write_str(file, a->cgroups[i].value))
			return errf(err, errlen, "--cgroup %s=%s: cannot write %s: %s",
			            a->cgroups[i].file, a->cgroups[i].value, file, strerror(errno));
	}
	for (unsigned k = 0; k < nroots; k++) {
		char procs[8600];

		if (fmt_to(procs, sizeof(procs), "%s/%s/cgroup.procs", roots[k], rel) ||
		    write_str(procs, pid))
			return errf(err, errlen, "cannot join %s: %s", procs, strerror(errno));
		if (!(s->joined_root[s->njoined] = strdup(roots[k])))
			return errf(err, errlen, "out of memory");
		s->njoined++;
	}
	return 0;
}

void cgroup_undo(struct cg_state *s)
{
	char pid[32], procs[4200];

	sprintf(pid, "%d", (int)getpid());
	for (unsigned k = 0; k < s->njoined; k++) {
		if (!fmt_to(procs, sizeof(procs), "%s/cgroup.procs", s->joined_root[k]))
			write_str(procs, pid);
	}
	for (unsigned i = s->ncreated; i-- > 0;)
		rmdir(s->created[i]);
}

void cgroup_state_free(struct cg_state *s)
{
	for (unsigned i = 0; i < s->ncreated; i++)
		free(s->created[i]);
	for (unsigned k = 0; k < s->njoined; k++)
		free(s->joined_root[k]);
	s->ncreated = s->njoined = 0;
}
