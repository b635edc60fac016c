/* Kernel format dispatch and read-only file mapping. */
#include "boot.h"
#include "multiboot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Offset and value of the bzImage setup header magic ("HdrS", little-endian). */
#define BZIMAGE_MAGIC_OFFSET 0x202
#define BZIMAGE_MAGIC        "HdrS"

int kernel_load(const struct guest_memory *gm, const uint8_t *img, size_t len,
                enum boot_protocol want, struct kernel_image *out, struct error *err)
{
	struct multiboot_header mb;
	long mb_off;

	if (len >= SELFMAG && memcmp(img, ELFMAG, SELFMAG) == 0)
		return elf_load(gm, img, len, want, out, err);
	if (len >= BZIMAGE_MAGIC_OFFSET + 4 &&
	    memcmp(img + BZIMAGE_MAGIC_OFFSET, BZIMAGE_MAGIC, 4) == 0)
		return bzimage_load(gm, img, len, want, out, err);
	mb_off = multiboot_find(img, len, &mb);
	if (mb_off >= 0 && (mb.flags & MULTIBOOT_AOUT_KLUDGE)) {
		if (want != BOOT_PROTO_AUTO && want != BOOT_PROTO_MULTIBOOT)
			return err_set(err, "a raw Multiboot image has only the Multiboot entry");
		return multiboot_load_aout(gm, img, len, &mb, (size_t)mb_off, out, err);
	}
	if (mb_off >= 0)
		return err_set(err, "a Multiboot header without load addresses (flag 16) in a file "
		                    "that is not an ELF: nothing says where to load it");
	return err_set(err, "not an ELF, bzImage or Multiboot kernel (bad magic)");
}

/* Stands in for the mapping of an empty file, so callers never see NULL. */
static const uint8_t empty_file[1];

int file_map(const char *path, const uint8_t **buf, size_t *len, struct error *err)
{
	struct stat st;
	void *p;
	int fd, e;

	*buf = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		e = errno;
		close(fd);
		return err_set(err, "%s: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, "%s: not a regular file", path);
	}
	if (st.st_size == 0) {
		close(fd);
		*buf = empty_file;
		return 0;
	}
	if ((uint64_t)st.st_size > SIZE_MAX) {
		close(fd);
		return err_set(err, "%s: file too large to map", path);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	e = errno;
	close(fd);
	if (p == MAP_FAILED)
		return err_set(err, "%s: mmap: %s", path, strerror(e));
	*buf = p;
	*len = (size_t)st.st_size;
	return 0;
}

void file_unmap(const uint8_t *buf, size_t len)
{
	if (buf && len && buf != empty_file)
		munmap((void *)buf, len);
}
