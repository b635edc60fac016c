#include "fs.h"
#include "text.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int fs_mkdirs(const char *path, char *err, size_t errlen)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return errf(err, errlen, "%s: path too long", path);
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || !*p) {
			char c = *p;
			struct stat st;

			*p = '\0';
			if (mkdir(buf, 0755) && errno != EEXIST)
				return errf(err, errlen, "cannot create %s: %s", buf,
				            strerror(errno));
			if (stat(buf, &st) || !S_ISDIR(st.st_mode))
				return errf(err, errlen, "%s: not a directory", buf);
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

int fs_copy(const char *src, const char *dst, mode_t mode, char *err, size_t errlen)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out;
	struct stat st;
	int rc = 0;

	if (in < 0)
		return errf(err, errlen, "cannot open %s: %s", src, strerror(errno));
	if (fstat(in, &st) || !S_ISREG(st.st_mode)) {
		close(in);
		return errf(err, errlen, "%s: not a regular file", src);
	}
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (out < 0) {
		close(in);
		return errf(err, errlen, "cannot create %s: %s", dst, strerror(errno));
	}
	for (off_t left = st.st_size; left > 0 && !rc;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);

		if (n < 0 &&
		    (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
			char buf[65536];

			n = read(in, buf, sizeof(buf));
			if (n > 0 && write(out, buf, (size_t)n) != n)
				n = -1;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rc = errf(err, errlen, "copying %s to %s: %s", src, dst,
			          n < 0 ? strerror(errno) : "file shrank");
		else
			left -= n;
	}
	if (fchmod(out, mode) && !rc)
		rc = errf(err, errlen, "chmod %s: %s", dst, strerror(errno));
	if (close(out) && !rc)
		rc = errf(err, errlen, "writing %s: %s", dst, strerror(errno));
	close(in);
	return rc;
}

int fs_copy_into(const char *root, const char *host_path, char *err, size_t errlen)
{
	char dst[4096], dir[4096];
	struct stat st;

	if ((size_t)snprintf(dst, sizeof(dst), "%s%s", root, host_path) >= sizeof(dst))
		return errf(err, errlen, "%s: path too long", host_path);
	snprintf(dir, sizeof(dir), "%s", dst);
	*strrchr(dir, '/') = '\0';
	if (fs_mkdirs(dir, err, errlen))
		return -1;
	if (stat(host_path, &st))
		return errf(err, errlen, "%s: %s", host_path, strerror(errno));
	return fs_copy(host_path, dst, st.st_mode & 0755, err, errlen);
}

int fs_mknod_like(const char *host_dev, const char *path, uid_t uid, gid_t gid, char *err,
                  size_t errlen)
{
	struct stat st;
	int fd;

	errno = 0;
	if (stat(host_dev, &st) || !S_ISCHR(st.st_mode))
		return errf(err, errlen, "%s: %s", host_dev,
		            errno ? strerror(errno) : "not a character device");
	if (mknod(path, S_IFCHR | 0600, st.st_rdev))
		return errf(err, errlen, "cannot create %s (%u:%u): %s", path, major(st.st_rdev),
		            minor(st.st_rdev), strerror(errno));
	if (chown(path, uid, gid) || chmod(path, 0600))
		return errf(err, errlen, "cannot give %s to %u:%u: %s", path, uid, gid,
		            strerror(errno));
	fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errf(err, errlen,
		            "%s does not work (%s): is the chroot base on a nodev mount?", path,
		            strerror(errno));
	close(fd);
	return 0;
}

static void remove_at(int parent, const char *name, dev_t dev)
{
	struct stat st;
	int fd;
	DIR *d;
	struct dirent *e;

	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW))
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlinkat(parent, name, 0);
		return;
	}
	if (st.st_dev != dev) /* a mount point: never descend */
		return;
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			remove_at(dirfd(d), e->d_name, dev);
	closedir(d);
	unlinkat(parent, name, AT_REMOVEDIR);
}

void fs_remove_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st))
		return;
	remove_at(AT_FDCWD, path, st.st_dev);
}
