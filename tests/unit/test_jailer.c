/* hearth-jailer's pure parts: the command line and the ELF dependency reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jailer/args.h"
#include "jailer/elf_deps.h"

/* Parse a NULL-terminated list of arguments (copied: the parser may write into them). */
static int parse(struct jail_args *a, char *err, const char *first, ...)
{
	static char store[64][256];
	static char *argv[65];
	va_list ap;
	int argc = 0;

	argv[argc++] = "hearth-jailer";
	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *)) {
		snprintf(store[argc], sizeof(store[0]), "%s", s);
		argv[argc] = store[argc];
		argc++;
	}
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return jail_parse_args(argc, argv, a, err, 512);
}

#define BASE "--id", "vm-1", "--exec-file", "/usr/bin/hearth", "--uid", "100", "--gid", "101"

static void test_minimal_and_defaults(void **state)
{
	struct jail_args a;
	char err[512];

	(void)state;
	assert_int_equal(parse(&a, err, BASE, NULL), 0);
	assert_string_equal(a.id, "vm-1");
	assert_string_equal(a.exec_name, "hearth");
	assert_string_equal(a.chroot_base, "/srv/jailer");
	assert_string_equal(a.parent_cgroup, "hearth");
	assert_int_equal(a.uid, 100);
	assert_int_equal(a.gid, 101);
	assert_int_equal(a.cgroup_version, 1);
	assert_false(a.daemonize || a.new_pid_ns || a.fsize_set || a.nofile_set);
	assert_int_equal(a.exec_argc, 0);
}

static void test_every_flag(void **state)
{
	struct jail_args a;
	char err[512];

	(void)state;
	assert_int_equal(parse(&a, err, BASE, "--chroot-base-dir=/var/jails", "--netns",
	                       "/run/netns/a", "--cgroup-version", "2", "--cgroup",
	                       "memory.max=256M", "--cgroup", "cpu.max=50000 100000",
	                       "--parent-cgroup", "vms/fast", "--resource-limit", "fsize=1000",
	                       "--resource-limit", "no-file=64", "--daemonize", "--new-pid-ns",
	                       "--", "--api-sock", "/api.sock", NULL),
	                 0);
	assert_string_equal(a.chroot_base, "/var/jails");
	assert_string_equal(a.netns, "/run/netns/a");
	assert_int_equal(a.cgroup_version, 2);
	assert_int_equal(a.ncgroups, 2);
	assert_string_equal(a.cgroups[0].file, "memory.max");
	assert_string_equal(a.cgroups[0].value, "256M");
	assert_string_equal(a.cgroups[0].controller, "memory");
	assert_string_equal(a.cgroups[1].value, "50000 100000");
	assert_string_equal(a.cgroups[1].controller, "cpu");
	assert_string_equal(a.parent_cgroup, "vms/fast");
	assert_true(a.fsize_set && a.fsize == 1000);
	assert_true(a.nofile_set && a.nofile == 64);
	assert_true(a.daemonize && a.new_pid_ns);
	assert_int_equal(a.exec_argc, 2);
	assert_string_equal(a.exec_argv[0], "--api-sock");
	assert_string_equal(a.exec_argv[1], "/api.sock");
}

static void expect_error(const char *contains, const char *a1, const char *a2, const char *a3,
                         const char *a4)
{
	struct jail_args a;
	char err[512];

	assert_int_equal(parse(&a, err, BASE, a1, a2, a3, a4, NULL), -1);
	if (!strstr(err, contains))
		fail_msg("error '%s' lacks '%s'", err, contains);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("given twice", "--id", "vm-2", NULL, NULL);
	expect_error("unknown flag '--nope'", "--nope", NULL, NULL, NULL);
	expect_error("unexpected argument 'stray'", "stray", NULL, NULL, NULL);
	expect_error("--netns needs a value", "--netns", NULL, NULL, NULL);
	expect_error("1 or 2", "--cgroup-version", "0", NULL, NULL);
	expect_error("expected FILE=VALUE", "--cgroup", "memory", NULL, NULL);
	expect_error("<controller>.<name>", "--cgroup", ".max=1", NULL, NULL);
	expect_error("<controller>.<name>", "--cgroup", "memory.=1", NULL, NULL);
	expect_error("one non-empty line", "--cgroup", "memory.max=", NULL, NULL);
	expect_error("the jailer's", "--cgroup", "cgroup.procs=1", NULL, NULL);
	expect_error("given twice", "--cgroup", "pids.max=1", "--cgroup", "pids.max=2");
	expect_error("--parent-cgroup", "--parent-cgroup", "/abs", NULL, NULL);
	expect_error("--parent-cgroup", "--parent-cgroup", "a/../b", NULL, NULL);
	expect_error("--parent-cgroup", "--parent-cgroup", "a//b", NULL, NULL);
	expect_error("unknown resource", "--resource-limit", "nproc=5", NULL, NULL);
	expect_error("16..1048576", "--resource-limit", "no-file=3", NULL, NULL);
	expect_error("decimal", "--resource-limit", "fsize=1k", NULL, NULL);
	expect_error("absolute path other than /", "--chroot-base-dir", "/", NULL, NULL);
	expect_error("without '..'", "--chroot-base-dir", "/srv/../etc", NULL, NULL);
	expect_error("the jailer passes --id", "--", "--id=x", NULL, NULL);
}

static void test_ids_and_users(void **state)
{
	struct jail_args a;
	char err[512];
	char long_id[JAIL_ID_MAX + 2];

	(void)state;
	assert_true(jail_id_valid("551e7604-e35c-42b3-b825-416853441234"));
	assert_false(jail_id_valid(""));
	assert_false(jail_id_valid("a_b"));
	assert_false(jail_id_valid("a b"));
	assert_false(jail_id_valid("../x"));
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[JAIL_ID_MAX] = '\0';
	assert_true(jail_id_valid(long_id));
	long_id[JAIL_ID_MAX] = 'a';
	long_id[JAIL_ID_MAX + 1] = '\0';
	assert_false(jail_id_valid(long_id));
	assert_int_equal(
	    parse(&a, err, "--id", "x", "--exec-file", "/h", "--uid", "0", "--gid", "1", NULL), -1);
	assert_non_null(strstr(err, "--uid 0"));
	assert_int_equal(parse(&a, err, "--id", "x", "--exec-file", "/h", "--uid", "1", "--gid",
	                       "4294967295", NULL),
	                 -1);
	assert_int_equal(
	    parse(&a, err, "--id", "x", "--exec-file", "/h", "--uid", " 1", "--gid", "1", NULL),
	    -1);
	assert_int_equal(
	    parse(&a, err, "--id", "x", "--exec-file", "/dir/", "--uid", "1", "--gid", "1", NULL),
	    -1);
	assert_non_null(strstr(err, "not a file name"));
	assert_int_equal(parse(&a, err, "--help", NULL), 0);
	assert_true(a.help);
}

/* ---- ELF ---- */

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A minimal ELF64 with one PT_LOAD over the whole file, a PT_INTERP, a PT_DYNAMIC with two
 * DT_NEEDED entries and the string table. `strsz_delta` and `needed_off` corrupt it. */
static size_t make_elf(uint8_t *buf, size_t cap, uint64_t strsz_delta, uint64_t needed_off)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
	Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof(*eh));
	const char interp[] = "/lib64/ld-test.so.2";
	const char strtab[] = "\0libone.so.1\0libtwo.so.2";
	size_t off = sizeof(*eh) + 3 * sizeof(*ph);
	size_t interp_off = off, str_off, dyn_off;
	Elf64_Dyn *dyn;

	memset(buf, 0, cap);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_type = ET_DYN;
	eh->e_machine = EM_X86_64;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 3;
	memcpy(buf + off, interp, sizeof(interp));
	off += sizeof(interp);
	str_off = off;
	memcpy(buf + off, strtab, sizeof(strtab));
	off += sizeof(strtab);
	off = (off + 7) & ~(size_t)7;
	dyn_off = off;
	dyn = (Elf64_Dyn *)(buf + off);
	dyn[0] = (Elf64_Dyn){.d_tag = DT_NEEDED, .d_un.d_val = needed_off};
	dyn[1] = (Elf64_Dyn){.d_tag = DT_NEEDED, .d_un.d_val = 13};
	dyn[2] = (Elf64_Dyn){.d_tag = DT_STRTAB, .d_un.d_ptr = 0x400000 + str_off};
	dyn[3] = (Elf64_Dyn){.d_tag = DT_STRSZ, .d_un.d_val = sizeof(strtab) + strsz_delta};
	dyn[4] = (Elf64_Dyn){.d_tag = DT_NULL};
	off += 5 * sizeof(*dyn);
	ph[0] =
	    (Elf64_Phdr){.p_type = PT_INTERP, .p_offset = interp_off, .p_filesz = sizeof(interp)};
	ph[1] = (Elf64_Phdr){
	    .p_type = PT_LOAD, .p_offset = 0, .p_vaddr = 0x400000, .p_filesz = off, .p_memsz = off};
	ph[2] =
	    (Elf64_Phdr){.p_type = PT_DYNAMIC, .p_offset = dyn_off, .p_filesz = 5 * sizeof(*dyn)};
	return off;
}

static void test_elf_needed(void **state)
{
	uint8_t buf[1024];
	char path[] = "/tmp/hearth-test-elf-XXXXXX", err[512], *interp, *names[8];
	int fd = mkstemp(path), n;
	size_t len;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	len = make_elf(buf, sizeof(buf), 0, 1);
	write_file(path, buf, len);
	n = elf_needed(path, &interp, names, 8, err, sizeof(err));
	if (n != 2)
		fail_msg("elf_needed: %d: %s", n, err);
	assert_string_equal(interp, "/lib64/ld-test.so.2");
	assert_string_equal(names[0], "libone.so.1");
	assert_string_equal(names[1], "libtwo.so.2");
	free(interp);
	free(names[0]);
	free(names[1]);
	/* A NEEDED offset past the string table. */
	len = make_elf(buf, sizeof(buf), 0, 4000);
	write_file(path, buf, len);
	assert_int_equal(elf_needed(path, &interp, names, 8, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "outside the string table"));
	assert_null(interp);
	/* Every truncation of a good file is refused or read within its bounds. */
	len = make_elf(buf, sizeof(buf), 0, 1);
	for (size_t cut = 0; cut < len; cut++) {
		write_file(path, buf, cut);
		n = elf_needed(path, &interp, names, 8, err, sizeof(err));
		for (int i = 0; i < n; i++)
			free(names[i]);
		free(interp);
	}
	/* Not ELF, and not x86-64. */
	write_file(path, "#!/bin/sh\n", 10);
	assert_int_equal(elf_needed(path, &interp, names, 8, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an x86-64 ELF64"));
	len = make_elf(buf, sizeof(buf), 0, 1);
	((Elf64_Ehdr *)buf)->e_machine = EM_AARCH64;
	write_file(path, buf, len);
	assert_int_equal(elf_needed(path, &interp, names, 8, err, sizeof(err)), -1);
	unlink(path);
}

static void test_deps_of_a_real_program(void **state)
{
	struct elf_deps d = {0};
	char err[512];
	bool libc = false, interp = false;

	(void)state;
	/* This test binary itself: dynamically linked against libc and cmocka. */
	assert_int_equal(elf_deps_add(&d, "/proc/self/exe", err, sizeof(err)), 0);
	assert_string_equal(d.path[0], "/proc/self/exe");
	for (unsigned i = 0; i < d.n; i++) {
		libc |= strstr(d.path[i], "/libc.so.6") != NULL;
		interp |= strstr(d.path[i], "ld-linux-x86-64.so.2") != NULL;
		for (unsigned k = 0; k < i; k++)
			assert_string_not_equal(d.path[i], d.path[k]);
	}
	assert_true(libc && interp);
	elf_deps_free(&d);
	assert_int_equal(elf_deps_add(&d, "/nonexistent/prog", err, sizeof(err)), -1);
	elf_deps_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_minimal_and_defaults),
	    cmocka_unit_test(test_every_flag),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_ids_and_users),
	    cmocka_unit_test(test_elf_needed),
	    cmocka_unit_test(test_deps_of_a_real_program),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
