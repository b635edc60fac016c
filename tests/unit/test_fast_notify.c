/*
 * The process engine's queue notifies without an exit (backend/process/notify.c, stub.h):
 * which instructions hearth teaches the stub (proc_fast_entry, on instructions as compilers
 * emit them), the stub's check of an entry the guest may have written (stub_fast_check: no
 * entry, however forged, yields a descriptor outside the notify range or a bad length), and
 * the binding that hands a device's notify eventfd over to the guest process's
 * (proc_attach_notify).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/process/process.h"

#define NOTIFY_GPA 0xd0000050ULL /* a QueueNotify register */
#define NOTIFY_VA  0x7f0000050ULL
#define RIP        0x101234ULL

/* Bindings as bind_device_fds makes them: device A's queues 0 and 1, device B's queue 0. */
static const struct proc_notify binds[] = {
    {NOTIFY_GPA, 0},
    {NOTIFY_GPA + 0x1000, 0},
    {NOTIFY_GPA, 1},
};

static bool entry(const uint8_t *bytes, size_t n, bool code64, struct stub_fast_notify *e)
{
	struct sh_insn in;

	assert_int_equal(sh_decode(bytes, n, true, true, &in), 0);
	return proc_fast_entry(&in, code64, RIP, NOTIFY_VA, NOTIFY_GPA, binds, 3, e);
}

static void test_register_store(void **state)
{
	static const uint8_t mov_eax[] = {0x89, 0x42, 0x50};      /* mov %eax,0x50(%rdx) */
	static const uint8_t mov_r9d[] = {0x44, 0x89, 0x08};      /* mov %r9d,(%rax) */
	static const uint8_t mov_esi[] = {0x89, 0x34, 0x25, 0x50, /* mov %esi,0xd0000050 */
	                                  0x00, 0x00, 0xd0};
	struct stub_fast_notify e;

	(void)state;
	assert_true(entry(mov_eax, sizeof(mov_eax), true, &e));
	assert_int_equal(e.rip, RIP);
	assert_int_equal(e.addr, NOTIFY_VA);
	assert_int_equal(e.len, 3);
	assert_int_equal(e.src, SG_RAX);
	assert_int_equal(e.nq, 2);
	assert_int_equal(e.fd[0], STUB_NOTIFY_FD0 + 0);
	assert_int_equal(e.fd[1], STUB_NOTIFY_FD0 + 2);
	assert_int_equal(e.fd[2], 0);
	assert_true(entry(mov_r9d, sizeof(mov_r9d), true, &e));
	assert_int_equal(e.src, SG_R9);
	assert_int_equal(e.len, 3);
	assert_true(entry(mov_esi, sizeof(mov_esi), true, &e));
	assert_int_equal(e.src, SG_RSI);
	assert_int_equal(e.len, 7);
}

static void test_immediate_store(void **state)
{
	static const uint8_t movl1[] = {0xc7, 0x40, 0x50, 0x01, 0x00, 0x00, 0x00}; /* movl $1 */
	struct stub_fast_notify e;

	(void)state;
	assert_true(entry(movl1, sizeof(movl1), true, &e));
	assert_int_equal(e.src, STUB_FAST_IMM);
	assert_int_equal(e.imm, 1);
	assert_int_equal(e.len, 7);
}

static void test_other_instructions_are_not_taught(void **state)
{
	static const struct {
		uint8_t b[8];
		size_t n;
	} refused[] = {
	    {{0x48, 0x89, 0x42, 0x50}, 4},             /* mov %rax: 8 bytes */
	    {{0x66, 0x89, 0x42, 0x50}, 4},             /* mov %ax: 2 bytes */
	    {{0x88, 0x42, 0x50}, 3},                   /* mov %al: 1 byte */
	    {{0x8b, 0x42, 0x50}, 3},                   /* a load */
	    {{0xf3, 0x89, 0x42, 0x50}, 4},             /* with a rep prefix */
	    {{0x66, 0xc7, 0x40, 0x50, 0x01, 0x00}, 6}, /* movw $1 */
	};
	static const uint8_t mov_eax[] = {0x89, 0x42, 0x50};
	struct stub_fast_notify e;
	struct sh_insn in;

	(void)state;
	for (unsigned i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		assert_int_equal(sh_decode(refused[i].b, refused[i].n, true, true, &in), 0);
		assert_false(proc_fast_entry(&in, true, RIP, NOTIFY_VA, NOTIFY_GPA, binds, 3, &e));
	}
	/* not 64-bit code; no binding at that address; a binding of a queue beyond the table */
	assert_false(entry(mov_eax, sizeof(mov_eax), false, &e));
	assert_int_equal(sh_decode(mov_eax, sizeof(mov_eax), true, true, &in), 0);
	assert_false(proc_fast_entry(&in, true, RIP, NOTIFY_VA, NOTIFY_GPA + 8, binds, 3, &e));
	assert_false(proc_fast_entry(&in, true, 0, NOTIFY_VA, NOTIFY_GPA, binds, 3, &e));
	{
		const struct proc_notify far[] = {{NOTIFY_GPA, STUB_FAST_QUEUES}};

		assert_false(proc_fast_entry(&in, true, RIP, NOTIFY_VA, NOTIFY_GPA, far, 1, &e));
	}
}

static struct stub_fast_notify good(void)
{
	return (struct stub_fast_notify){.rip = RIP,
	                                 .addr = NOTIFY_VA,
	                                 .len = 3,
	                                 .src = SG_RAX,
	                                 .nq = 2,
	                                 .fd = {STUB_NOTIFY_FD0, STUB_NOTIFY_FD0 + 5}};
}

static void test_stub_check(void **state)
{
	uint64_t g[SG_COUNT] = {0};
	struct stub_fast_notify e = good();
	int fd = -1;

	(void)state;
	g[SG_RAX] = 1;
	assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 3);
	assert_int_equal(fd, STUB_NOTIFY_FD0 + 5);
	g[SG_RAX] = 0x100000000ULL; /* a 4-byte store: queue 0 */
	assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 3);
	assert_int_equal(fd, STUB_NOTIFY_FD0);
	g[SG_RAX] = 2; /* no such queue: the trap path (the device ignores it) */
	assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 0);
	g[SG_RAX] = 0xffffffff;
	assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 0);
	g[SG_RAX] = 0;
	assert_int_equal(stub_fast_check(&e, RIP + 1, NOTIFY_VA, g, &fd), 0);
	assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA + 4, g, &fd), 0);
	e.src = STUB_FAST_IMM;
	e.imm = 1;
	assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 3);
	assert_int_equal(fd, STUB_NOTIFY_FD0 + 5);
	e.imm = 0x100000001ULL; /* only its low 32 bits are stored */
	assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 3);
	assert_int_equal(fd, STUB_NOTIFY_FD0 + 5);
}

/* Each field forged in turn: the stub refuses the entry. */
static void test_stub_check_refuses_forged_fields(void **state)
{
	static const uint8_t bad_len[] = {0, 16, 255};
	static const uint8_t bad_src[] = {SG_RSP + 1, SG_RIP, SG_COUNT, 100, 0xfe};
	static const uint8_t bad_nq[] = {STUB_FAST_QUEUES + 1, 255};
	static const uint8_t bad_fd[] = {
	    0,  1, 2, STUB_RAM_FD, 4, 5, STUB_NOTIFY_FD0 - 1, STUB_NOTIFY_FD0 + STUB_NOTIFY_FDS,
	    255};
	uint64_t g[SG_COUNT] = {0};
	struct stub_fast_notify e;
	int fd = -1;

	(void)state;
	for (unsigned i = 0; i < sizeof(bad_len); i++) {
		e = good();
		e.len = bad_len[i];
		assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 0);
	}
	for (unsigned i = 0; i < sizeof(bad_src); i++) {
		e = good();
		e.src = bad_src[i];
		assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 0);
	}
	for (unsigned i = 0; i < sizeof(bad_nq); i++) {
		e = good();
		e.nq = bad_nq[i];
		assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 0);
	}
	for (unsigned i = 0; i < sizeof(bad_fd); i++) {
		e = good();
		e.fd[0] = bad_fd[i];
		assert_int_equal(stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd), 0);
	}
	e = good();
	e.rip = 0; /* a free entry never matches */
	assert_int_equal(stub_fast_check(&e, 0, NOTIFY_VA, g, &fd), 0);
}

/* Random entries and registers (a fixed seed): whatever matches has a length of 1..15 and a
 * descriptor in the notify range. */
static void test_stub_check_random_entries(void **state)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL, g[SG_COUNT];
	unsigned hits = 0;

	(void)state;
	for (unsigned round = 0; round < 200000; round++) {
		struct stub_fast_notify e;
		uint8_t *b = (uint8_t *)&e;
		unsigned len;
		int fd = -1;

		for (size_t i = 0; i < sizeof(e); i++) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			b[i] = (uint8_t)(x >> 56);
		}
		for (unsigned i = 0; i < SG_COUNT; i++) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			g[i] =
			    (x >> 60) < 8 ? (x >> 61) : x; /* small values often: queue indices */
		}
		/* Most fields most of the time in their range, so that the one that is not is
		 * what decides; half of the entries match the fault. */
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		if ((x >> 32) & 7)
			e.len = (uint8_t)(1 + (x >> 40) % 15);
		if ((x >> 35) & 7)
			e.src = (x >> 48) % 17 == 16 ? STUB_FAST_IMM : (uint8_t)((x >> 48) % 17);
		if ((x >> 38) & 7)
			e.nq = (uint8_t)((x >> 56) % (STUB_FAST_QUEUES + 1));
		for (unsigned q = 0; q < STUB_FAST_QUEUES; q++)
			if ((x >> (4 + 4 * q)) & 7)
				e.fd[q] =
				    (uint8_t)(STUB_NOTIFY_FD0 + (x >> (20 + q)) % STUB_NOTIFY_FDS);
		if (round & 1) {
			e.rip = RIP;
			e.addr = NOTIFY_VA;
		}
		len = stub_fast_check(&e, RIP, NOTIFY_VA, g, &fd);
		if (!len)
			continue;
		hits++;
		assert_true(len >= 1 && len <= 15);
		assert_true(fd >= STUB_NOTIFY_FD0 && fd < STUB_NOTIFY_FD0 + STUB_NOTIFY_FDS);
		assert_true(e.nq <= STUB_FAST_QUEUES);
	}
	assert_true(hits > 1000);
}

/* The device's notify descriptor names the pool's eventfd afterwards: a write through the
 * guest process's copy is what the VMM thread reads on the device's number. */
static void test_attach_hands_the_device_fd_over(void **state)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct proc_vm *p = calloc(1, sizeof(*p));
	int dev_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), guest_copy;
	uint64_t one = 1, n = 0;

	(void)state;
	assert_non_null(vm);
	assert_non_null(p);
	vm->be = p;
	p->notify_pool[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	p->npool = 1;
	guest_copy = dup(p->notify_pool[0]); /* what the guest process holds */
	assert_true(dev_fd >= 0 && guest_copy >= 0);
	assert_int_equal(proc_attach_notify(vm, dev_fd, NOTIFY_GPA, 4, 1), 0);
	assert_int_equal(p->nnotify, 1);
	assert_int_equal(p->notify[0].addr, NOTIFY_GPA);
	assert_int_equal(p->notify[0].queue, 1);
	assert_int_equal(p->notify_pool[0], -1);
	assert_int_equal(write(guest_copy, &one, 8), 8);
	assert_int_equal(read(dev_fd, &n, 8), 8);
	assert_int_equal(n, 1);
	/* the pool is used up; a queue the table has no room for; not a 4-byte notify */
	assert_int_equal(proc_attach_notify(vm, dev_fd, NOTIFY_GPA, 4, 0), -ENOTSUP);
	p->npool = 2;
	p->notify_pool[1] = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(proc_attach_notify(vm, dev_fd, NOTIFY_GPA, 4, STUB_FAST_QUEUES), -ENOTSUP);
	assert_int_equal(proc_attach_notify(vm, dev_fd, NOTIFY_GPA, 2, 0), -ENOTSUP);
	assert_int_equal(p->nnotify, 1);
	close(p->notify_pool[1]);
	close(guest_copy);
	close(dev_fd);
	free(p);
	free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_register_store),
	    cmocka_unit_test(test_immediate_store),
	    cmocka_unit_test(test_other_instructions_are_not_taught),
	    cmocka_unit_test(test_stub_check),
	    cmocka_unit_test(test_stub_check_refuses_forged_fields),
	    cmocka_unit_test(test_stub_check_random_entries),
	    cmocka_unit_test(test_attach_hands_the_device_fd_over),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
