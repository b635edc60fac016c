#include "elf_deps.h"
#include "text.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The loader's default directories on Debian x86-64, in its search order. */
static const char *const lib_dirs[] = {
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
};

#define MAX_PHDRS  64
#define MAX_DYN    4096
#define MAX_NEEDED 32

static bool read_at(int fd, void *buf, size_t len, uint64_t off, uint64_t fsize)
{
	if (off > fsize || len > fsize - off)
		return false;
	return pread(fd, buf, len, (off_t)off) == (ssize_t)len;
}

/* A NUL-terminated string at `off`, at most `max` bytes before the NUL. */
static char *read_str(int fd, uint64_t off, uint64_t max, uint64_t fsize)
{
	char buf[4096];
	size_t n;
	char *nul;

	if (off >= fsize)
		return NULL;
	n = sizeof(buf) - 1;
	if (n > fsize - off)
		n = (size_t)(fsize - off);
	if (n > max)
		n = (size_t)max;
	if (pread(fd, buf, n, (off_t)off) != (ssize_t)n)
		return NULL;
	buf[n] = '\0';
	nul = memchr(buf, '\0', n + 1);
	if (nul == buf || nul == buf + n) /* empty, or no terminator within the window */
		return NULL;
	return strdup(buf);
}

/* File offset of virtual address `va` through the PT_LOAD segments. */
static bool va_to_off(const Elf64_Phdr *ph, unsigned n, uint64_t va, uint64_t *off)
{
	for (unsigned i = 0; i < n; i++)
		if (ph[i].p_type == PT_LOAD && va >= ph[i].p_vaddr &&
		    va - ph[i].p_vaddr < ph[i].p_filesz) {
			*off = ph[i].p_offset + (va - ph[i].p_vaddr);
			return true;
		}
	return false;
}

int elf_needed(const char *path, char **interp, char **names, unsigned max, char *err,
               size_t errlen)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph[MAX_PHDRS];
	Elf64_Dyn dyn[256];
	uint64_t strtab = 0, strsz = 0, dyn_off = 0, dyn_size = 0, fsize, str_off;
	uint64_t needed[MAX_NEEDED];
	unsigned nneeded = 0, nph;
	bool have_strtab = false, have_dyn = false;
	struct stat st;
	int fd, count = 0;

	*interp = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errf(err, errlen, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return errf(err, errlen, "%s: not a regular file", path);
	}
	fsize = (uint64_t)st.st_size;
	if (!read_at(fd, &eh, sizeof(eh), 0, fsize) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64 || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)) {
		close(fd);
		return errf(err, errlen, "%s: not an x86-64 ELF64 executable or library", path);
	}
	nph = eh.e_phnum;
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || nph > MAX_PHDRS ||
	    !read_at(fd, ph, nph * sizeof(Elf64_Phdr), eh.e_phoff, fsize)) {
		close(fd);
		return errf(err, errlen, "%s: bad program headers", path);
	}
	for (unsigned i = 0; i < nph; i++) {
		if (ph[i].p_type == PT_INTERP) {
			free(*interp);
			*interp = read_str(fd, ph[i].p_offset, ph[i].p_filesz, fsize);
			if (!*interp || (*interp)[0] != '/') {
				close(fd);
				free(*interp);
				*interp = NULL;
				return errf(err, errlen, "%s: bad PT_INTERP", path);
			}
		} else if (ph[i].p_type == PT_DYNAMIC) {
			dyn_off = ph[i].p_offset;
			dyn_size = ph[i].p_filesz;
			have_dyn = true;
		}
	}
	if (!have_dyn) { /* static: nothing to load */
		close(fd);
		return 0;
	}
	for (uint64_t done = 0; done < dyn_size && done / sizeof(Elf64_Dyn) < MAX_DYN;) {
		size_t chunk = sizeof(dyn);
		bool end = false;

		if (chunk > dyn_size - done)
			chunk = (size_t)(dyn_size - done) / sizeof(Elf64_Dyn) * sizeof(Elf64_Dyn);
		if (!chunk || !read_at(fd, dyn, chunk, dyn_off + done, fsize))
			break;
		for (size_t k = 0; k < chunk / sizeof(Elf64_Dyn); k++) {
			switch (dyn[k].d_tag) {
			case DT_NULL:
				end = true;
				break;
			case DT_NEEDED:
				if (nneeded == MAX_NEEDED) {
					close(fd);
					free(*interp);
					*interp = NULL;
					return errf(err, errlen, "%s: more than %d DT_NEEDED", path,
					            MAX_NEEDED);
				}
				needed[nneeded++] = dyn[k].d_un.d_val;
				break;
			case DT_STRTAB:
				strtab = dyn[k].d_un.d_ptr;
				have_strtab = true;
				break;
			case DT_STRSZ:
				strsz = dyn[k].d_un.d_val;
				break;
			}
			if (end)
				break;
		}
		if (end)
			break;
		done += chunk;
	}
	if (nneeded && (!have_strtab || !va_to_off(ph, nph, strtab, &str_off))) {
		close(fd);
		free(*interp);
		*interp = NULL;
		return errf(err, errlen, "%s: DT_STRTAB outside the file", path);
	}
	for (unsigned k = 0; k < nneeded; k++) {
		char *name;

		if (needed[k] >= strsz ||
		    !(name = read_str(fd, str_off + needed[k], strsz - needed[k], fsize))) {
			for (int j = 0; j < count; j++)
				free(names[j]);
			close(fd);
			free(*interp);
			*interp = NULL;
			return errf(err, errlen, "%s: a DT_NEEDED name outside the string table",
			            path);
		}
		if ((unsigned)count < max)
			names[count++] = name;
		else
			free(name);
	}
	close(fd);
	return count;
}

static bool have(const struct elf_deps *d, const char *path)
{
	for (unsigned i = 0; i < d->n; i++)
		if (!strcmp(d->path[i], path))
			return true;
	return false;
}

static int push(struct elf_deps *d, const char *path, char *err, size_t errlen)
{
	if (d->n == ELF_DEPS_MAX)
		return errf(err, errlen, "more than %d files to copy into the jail", ELF_DEPS_MAX);
	if (!(d->path[d->n] = strdup(path)))
		return errf(err, errlen, "out of memory");
	d->n++;
	return 0;
}

/* Where the loader would find `name`: a path as given, else the first library directory
 * that holds a regular file of that name. */
static int resolve(const char *name, char *out, size_t outlen)
{
	struct stat st;

	if (strchr(name, '/')) {
		snprintf(out, outlen, "%s", name);
		return stat(out, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -1;
	}
	for (size_t i = 0; i < sizeof(lib_dirs) / sizeof(lib_dirs[0]); i++) {
		if ((size_t)snprintf(out, outlen, "%s/%s", lib_dirs[i], name) >= outlen)
			continue;
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
			return 0;
	}
	return -1;
}

int elf_deps_add(struct elf_deps *d, const char *path, char *err, size_t errlen)
{
	char *names[MAX_NEEDED], *interp = NULL;
	int n, rc = 0;

	if (have(d, path))
		return 0;
	if (push(d, path, err, errlen))
		return -1;
	n = elf_needed(path, &interp, names, MAX_NEEDED, err, errlen);
	if (n < 0)
		return -1;
	if (interp && !have(d, interp))
		rc = push(d, interp, err, errlen);
	free(interp);
	for (int i = 0; i < n; i++) {
		char found[4096];

		if (!rc && resolve(names[i], found, sizeof(found)))
			rc = errf(err, errlen,
			          "%s needs %s, which is in none of the library "
			          "directories",
			          path, names[i]);
		if (!rc)
			rc = elf_deps_add(d, found, err, errlen);
		free(names[i]);
	}
	return rc;
}

void elf_deps_free(struct elf_deps *d)
{
	for (unsigned i = 0; i < d->n; i++)
		free(d->path[i]);
	d->n = 0;
}
