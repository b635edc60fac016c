/*
 * What a dynamically linked program needs in its jail: its ELF interpreter (PT_INTERP) and
 * the transitive closure of its DT_NEEDED libraries, resolved the way the dynamic loader
 * resolves them on a Debian system without DT_RPATH/DT_RUNPATH (the multiarch and plain
 * library directories, in the loader's order). hearth's own jail copies each file to the
 * same absolute path inside the jail, so the loader finds them there with no cache.
 */
#ifndef HEARTH_JAILER_ELF_DEPS_H
#define HEARTH_JAILER_ELF_DEPS_H

#include <stddef.h>

#define ELF_DEPS_MAX 64

struct elf_deps {
	char *path[ELF_DEPS_MAX]; /* absolute host paths, deduplicated */
	unsigned n;
};

/* The NEEDED names and interpreter of one ELF64 x86-64 file, without resolving them. Returns
 * the number of names stored in `names` (each malloc'ed), or -1 with a message: a file that is
 * not ELF64 x86-64, or whose headers point outside it. A static executable has none. */
int elf_needed(const char *path, char **interp, char **names, unsigned max, char *err,
               size_t errlen);

/* Add `path` itself, its interpreter and all its libraries (transitively) to `d`. Returns 0,
 * or -1 with a message naming the library that cannot be found or read. */
int elf_deps_add(struct elf_deps *d, const char *path, char *err, size_t errlen);

void elf_deps_free(struct elf_deps *d);

#endif
