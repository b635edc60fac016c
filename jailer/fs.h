/* File-system steps of building a jail: directories, copies, device nodes, removal. */
#ifndef HEARTH_JAILER_FS_H
#define HEARTH_JAILER_FS_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p with mode 0755 (root-owned); existing directories are fine. */
int fs_mkdirs(const char *path, char *err, size_t errlen);

/* Copy regular file `src` to the new file `dst` (which must not exist), mode `mode`. */
int fs_copy(const char *src, const char *dst, mode_t mode, char *err, size_t errlen);

/* Copy `host_path` to the same absolute path under `root`, creating directories. */
int fs_copy_into(const char *root, const char *host_path, char *err, size_t errlen);

/* A character device node at `path` with the numbers of the host's `host_dev`, owned by
 * uid:gid, mode 0600; opened once to prove it works (a nodev mount would fail there). */
int fs_mknod_like(const char *host_dev, const char *path, uid_t uid, gid_t gid, char *err,
                  size_t errlen);

/* rm -rf of a tree this run created, without following symlinks or leaving its file system. */
void fs_remove_tree(const char *path);

#endif
