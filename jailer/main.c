/*
 * hearth-jailer: build a jail for one microVM and exec hearth in it, unprivileged.
 *
 * The order (docs/ARCHITECTURE.md, "The jailer"): check everything that can be checked
 * without changing the system; close inherited fds and clear the environment; create
 * <base>/<exec-name>/<id>/root with hearth, its API module, the libraries both need and the
 * device nodes; join the network namespace; set rlimits; create and join the cgroups. Up to
 * here a failure removes what was created (JAIL_EXIT_SETUP). Then a new mount namespace,
 * pivot_root into the jail and drop the old root; daemonize and/or a new pid namespace; the
 * pid file; drop to uid:gid with no capabilities; exec. A failure from the pivot on leaves the
 * jail directory and the cgroups (JAIL_EXIT_JAIL).
 */
#include "args.h"
#include "text.h"
#include "cgroup.h"
#include "elf_deps.h"
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define API_MODULE "hearth-api.so"

static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("hearth-jailer: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* An error message for the caller; always -1. */
#define FAIL(...) errf(err, errlen, __VA_ARGS__)

struct jail {
	struct jail_args a;
	char id_dir[4096]; /* <base>/<exec-name>/<id>: created by this run */
	char root[4200];   /* id_dir/root */
	char module[4096]; /* hearth-api.so beside the exec file, or "" */
	struct elf_deps deps;
	struct cg_state cg;
	int netns_fd, devnull_fd;
	bool created;
};

/* Everything that can be checked before anything is created. */
static int check(struct jail *j, char *err, size_t errlen)
{
	struct jail_args *a = &j->a;
	struct stat st;
	const char *slash;

	if (geteuid() != 0)
		return FAIL("must run as root (it creates device nodes, cgroups "
		            "and namespaces, then drops to --uid/--gid)");
	errno = 0;
	if (stat(a->exec_file, &st) || !S_ISREG(st.st_mode) || access(a->exec_file, X_OK))
		return FAIL("--exec-file %s: %s", a->exec_file,
		            errno ? strerror(errno) : "not an executable regular file");
	slash = strrchr(a->exec_file, '/');
	if (fmt_to(j->module, sizeof(j->module), "%.*s%s",
	           slash ? (int)(slash - a->exec_file + 1) : 0, a->exec_file, API_MODULE) ||
	    access(j->module, R_OK))
		j->module[0] = '\0'; /* a hearth without the REST API module: one-shot only */
	if (elf_deps_add(&j->deps, a->exec_file, err, errlen) ||
	    (j->module[0] && elf_deps_add(&j->deps, j->module, err, errlen)))
		return -1;
	if (a->netns) {
		j->netns_fd = open(a->netns, O_RDONLY | O_CLOEXEC);
		if (j->netns_fd < 0)
			return FAIL("--netns %s: %s", a->netns, strerror(errno));
		if (ioctl(j->netns_fd, NS_GET_NSTYPE) != CLONE_NEWNET)
			return FAIL("--netns %s: not a network namespace", a->netns);
	}
	if (cgroup_check(a, &j->cg, err, errlen))
		return -1;
	if (fmt_to(j->id_dir, sizeof(j->id_dir), "%s/%s/%s", a->chroot_base, a->exec_name, a->id) ||
	    fmt_to(j->root, sizeof(j->root), "%s/root", j->id_dir))
		return FAIL("--chroot-base-dir: path too long");
	if (lstat(j->id_dir, &st) == 0)
		return FAIL("%s already exists: another jail has id %s, or an old one was not "
		            "removed",
		            j->id_dir, a->id);
	if (stat("/dev/urandom", &st))
		return FAIL("/dev/urandom missing on the host");
	if (a->daemonize && (j->devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
		return FAIL("/dev/null: %s", strerror(errno));
	return 0;
}

/* The jail directory: hearth, its module, their libraries, /dev. */
static int build(struct jail *j, char *err, size_t errlen)
{
	struct jail_args *a = &j->a;
	char parent[4096], path[4400];

	fmt_to(parent, sizeof(parent), "%s/%s", a->chroot_base, a->exec_name);
	if (fs_mkdirs(parent, err, errlen))
		return -1;
	if (mkdir(j->id_dir, 0755))
		return FAIL("cannot create %s: %s", j->id_dir, strerror(errno));
	j->created = true;
	if (mkdir(j->root, 0755))
		return FAIL("cannot create %s: %s", j->root, strerror(errno));
	fmt_to(path, sizeof(path), "%s/%s", j->root, a->exec_name);
	if (fs_copy(a->exec_file, path, 0755, err, errlen))
		return -1;
	if (j->module[0]) {
		fmt_to(path, sizeof(path), "%s/%s", j->root, API_MODULE);
		if (fs_copy(j->module, path, 0644, err, errlen))
			return -1;
	}
	/* deps.path[0] is the exec file; the module is copied above. */
	for (unsigned i = 1; i < j->deps.n; i++)
		if (strcmp(j->deps.path[i], j->module) &&
		    fs_copy_into(j->root, j->deps.path[i], err, errlen))
			return -1;
	fmt_to(path, sizeof(path), "%s/dev/net", j->root);
	if (fs_mkdirs(path, err, errlen))
		return -1;
	/* /dev/kvm and /dev/net/tun where the host has them: hearth serves its API without
	 * KVM, and says so when asked to run a guest. */
	fmt_to(path, sizeof(path), "%s/dev/kvm", j->root);
	if (access("/dev/kvm", F_OK) == 0 &&
	    fs_mknod_like("/dev/kvm", path, a->uid, a->gid, err, errlen))
		return -1;
	fmt_to(path, sizeof(path), "%s/dev/urandom", j->root);
	if (fs_mknod_like("/dev/urandom", path, a->uid, a->gid, err, errlen))
		return -1;
	fmt_to(path, sizeof(path), "%s/dev/net/tun", j->root);
	if (access("/dev/net/tun", F_OK) == 0 &&
	    fs_mknod_like("/dev/net/tun", path, a->uid, a->gid, err, errlen))
		return -1;
	/* hearth creates its API socket (and any console or log file) in the jail's root. */
	if (chown(j->root, a->uid, a->gid))
		return FAIL("chown %s: %s", j->root, strerror(errno));
	return 0;
}

static int limits(const struct jail_args *a, char *err, size_t errlen)
{
	struct rlimit nofile = {a->nofile_set ? a->nofile : JAIL_DEFAULT_NOFILE,
	                        a->nofile_set ? a->nofile : JAIL_DEFAULT_NOFILE};

	if (setrlimit(RLIMIT_NOFILE, &nofile))
		return FAIL("no-file=%llu: %s", (unsigned long long)nofile.rlim_cur,
		            strerror(errno));
	if (a->fsize_set) {
		struct rlimit fsize = {a->fsize, a->fsize};

		if (setrlimit(RLIMIT_FSIZE, &fsize))
			return FAIL("fsize=%llu: %s", (unsigned long long)a->fsize,
			            strerror(errno));
	}
	return 0;
}

/* New mount namespace, the jail as "/", the old root detached. */
static int enter(const struct jail *j, char *err, size_t errlen)
{
	if (unshare(CLONE_NEWNS))
		return FAIL("unshare(CLONE_NEWNS): %s", strerror(errno));
	if (mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL))
		return FAIL("making mounts private: %s", strerror(errno));
	/* pivot_root needs the new root to be a mount point. */
	if (mount(j->root, j->root, NULL, MS_BIND | MS_NOSUID, NULL))
		return FAIL("bind-mounting %s: %s", j->root, strerror(errno));
	if (chdir(j->root) || mkdir("old_root", 0700))
		return FAIL("preparing %s: %s", j->root, strerror(errno));
	if (syscall(SYS_pivot_root, ".", "old_root"))
		return FAIL("pivot_root: %s", strerror(errno));
	return 0;
}

/* After the pivot: nothing of the host's file system stays reachable. */
static int detach_old_root(char *err, size_t errlen)
{
	if (umount2("old_root", MNT_DETACH) || rmdir("old_root") || chroot(".") || chdir("/"))
		return FAIL("dropping the old root: %s", strerror(errno));
	return 0;
}

static int write_pid_file(const char *exec_name, pid_t pid)
{
	char path[512], line[32];
	int fd, n;

	fmt_to(path, sizeof(path), "/%s.pid", exec_name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -1;
	n = sprintf(line, "%d\n", (int)pid);
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* uid:gid, no supplementary groups, an empty bounding set, no ambient capabilities; after
 * setresuid from root the permitted and effective sets are empty too. */
static int drop_privileges(const struct jail_args *a, char *err, size_t errlen)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];

	if (setgroups(0, NULL) || setresgid(a->gid, a->gid, a->gid))
		return FAIL("cannot switch to gid %u: %s", a->gid, strerror(errno));
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno == EINVAL)
			break; /* past the last capability this kernel knows */
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (setresuid(a->uid, a->uid, a->uid))
		return FAIL("cannot switch to uid %u: %s", a->uid, strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return FAIL("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (syscall(SYS_capget, &h, d) || d[0].permitted || d[1].permitted || d[0].effective ||
	    d[1].effective)
		return FAIL("capabilities remain after dropping root");
	return 0;
}

static void undo(struct jail *j)
{
	/* enter() may have bind-mounted the root (in our own mount namespace only). */
	umount2(j->root, MNT_DETACH);
	cgroup_undo(&j->cg);
	if (j->created)
		fs_remove_tree(j->id_dir);
}

int main(int argc, char **argv)
{
	static struct jail j = {.netns_fd = -1, .devnull_fd = -1};
	char err[1024];
	char **args;
	pid_t pid;
	int n = 0;

	if (jail_parse_args(argc, argv, &j.a, err, sizeof(err))) {
		say("%s", err);
		return JAIL_EXIT_USAGE;
	}
	if (j.a.help) {
		jail_usage();
		return 0;
	}
	/* Nothing inherited reaches hearth: no descriptor but stdio, no environment. */
	if (syscall(SYS_close_range, 3U, ~0U, 0U))
		for (int fd = 3; fd < 65536; fd++)
			close(fd);
	clearenv();
	if (check(&j, err, sizeof(err))) {
		say("%s", err);
		return JAIL_EXIT_SETUP;
	}
	if (build(&j, err, sizeof(err)) ||
	    (j.netns_fd >= 0 && setns(j.netns_fd, CLONE_NEWNET) &&
	     fmt_to(err, sizeof(err), "joining --netns %s: %s", j.a.netns, strerror(errno))) ||
	    limits(&j.a, err, sizeof(err)) || cgroup_setup(&j.a, &j.cg, err, sizeof(err)) ||
	    enter(&j, err, sizeof(err))) {
		say("%s; removed what was created", err);
		undo(&j);
		return JAIL_EXIT_SETUP;
	}
	/* In the jail. From here on nothing on the host can be undone. */
	if (detach_old_root(err, sizeof(err)))
		goto jail_failed;
	if (j.netns_fd >= 0)
		close(j.netns_fd);
	if (j.a.daemonize) {
		/* setsid fails for a process group leader: a child is never one. */
		if (getpgrp() == getpid()) {
			pid = fork();
			if (pid < 0) {
				fmt_to(err, sizeof(err), "fork: %s", strerror(errno));
				goto jail_failed;
			}
			if (pid > 0)
				_exit(0);
		}
		if (setsid() < 0) {
			fmt_to(err, sizeof(err), "setsid: %s", strerror(errno));
			goto jail_failed;
		}
		dup2(j.devnull_fd, 0);
		dup2(j.devnull_fd, 1);
		dup2(j.devnull_fd, 2);
		close(j.devnull_fd);
	}
	if (j.a.new_pid_ns) {
		if (unshare(CLONE_NEWPID)) {
			fmt_to(err, sizeof(err), "unshare(CLONE_NEWPID): %s", strerror(errno));
			goto jail_failed;
		}
		pid = fork(); /* the child is pid 1 of the new namespace */
		if (pid < 0) {
			fmt_to(err, sizeof(err), "fork: %s", strerror(errno));
			goto jail_failed;
		}
		if (pid > 0) {
			if (write_pid_file(j.a.exec_name, pid)) {
				say("cannot write /%s.pid in the jail: %s", j.a.exec_name,
				    strerror(errno));
				kill(pid, SIGKILL);
				return JAIL_EXIT_JAIL;
			}
			return 0;
		}
	} else if (write_pid_file(j.a.exec_name, getpid())) {
		fmt_to(err, sizeof(err), "cannot write /%s.pid: %s", j.a.exec_name,
		       strerror(errno));
		goto jail_failed;
	}
	if (drop_privileges(&j.a, err, sizeof(err)))
		goto jail_failed;
	args = calloc((size_t)j.a.exec_argc + 4, sizeof(*args));
	if (!args) {
		fmt_to(err, sizeof(err), "out of memory");
		goto jail_failed;
	}
	{
		static char exe[512];

		fmt_to(exe, sizeof(exe), "/%s", j.a.exec_name);
		args[n++] = exe;
		args[n++] = "--id";
		args[n++] = (char *)j.a.id;
		for (int i = 0; i < j.a.exec_argc; i++)
			args[n++] = j.a.exec_argv[i];
		args[n] = NULL;
		execve(exe, args, (char *[]){NULL});
		fmt_to(err, sizeof(err), "cannot exec %s in the jail: %s", exe, strerror(errno));
	}
jail_failed:
	say("%s; the jail %s and its cgroups are left behind", err, j.root);
	return JAIL_EXIT_JAIL;
}
