/*
 * The shadow MMU (vmm/shadow_mmu.c): guest page tables are built by hand in a fake guest
 * memory (a calloc'd buffer wrapped as low RAM), and the shadow tables sh_mmu_fault builds
 * are read back from the monitor's pool (pool index i is at GPA SH_POOL_GPA + i * 4096).
 *
 *   - the walker of g: 4 KiB / 2 MiB / 1 GiB leaves, permissions, #PF error codes, reserved
 *     bits, canonical addresses, accessed and dirty bits;
 *   - the composer: shadow leaf sizes and permissions, the monitor slot, reserved GPAs;
 *   - the per-CR3 root cache: hits, misses, LRU, epochs, pool reloads;
 *   - write protection of the guest's page-table pages.
 *
 * Some tests drive a small model of the CPU (shadow_hw, guest_access): it walks the shadow
 * tables as hardware would for a CPL3 access and, on a miss, calls sh_mmu_fault and reacts
 * as engine_shadow.c does. Tests that expose a wild write in hearth run in a child process
 * (isolated) with a canary page at the address hearth would write, so the failure is
 * reported instead of corrupting the test runner.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/guest_memory.h"
#include "backend/kvm/shadow.h"
#include "backend/kvm/shadow_mmu.h"
#include "backend/kvm/shadow_monitor.h"

#define RAM_SIZE   (17ULL << 20) /* 17 MiB: the 2 MiB range at 16 MiB is half RAM */
#define TABLES_GPA 0x10000ULL    /* guest page tables are carved from here up */
#define SIZE_4K    0x1000ULL
#define SIZE_2M    0x200000ULL
#define SIZE_1G    0x40000000ULL
#define TBL        (PTE_P | PTE_W) /* intermediate guest entries: A clear, to see it set */
/* The monitor where a host with 40-bit guest-physical addresses has it (sh_monitor_place). */
#define SH_MON_GPA  ((1ULL << 40) - SH_MON_SPAN)
#define SH_POOL_GPA (SH_MON_GPA + SH_MON_SIZE)
#define POOL_END    (SH_POOL_GPA + (uint64_t)SH_POOL_PAGES * SIZE_4K)
#define MON_ENTRY   ((SH_MON_GPA + SH_OFF_PDPT) | PTE_P | PTE_W)

/* The real #PF error code of a CPL3 access, as the CPU reports it through the shadow. */
#define HW_READ  (PF_U)
#define HW_WRITE (PF_U | PF_W)
#define HW_FETCH (PF_U | PF_I)

struct fx {
	uint8_t *ram;
	struct guest_memory gm;
	struct sh_monitor mon;
	struct sh_mmu mmu;
	uint64_t next_table;
	uint64_t no_exempt; /* m->exempt when no page is exempt (as sh_mmu_init leaves it) */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct error err;

	assert_non_null(f);
	f->ram = calloc(1, RAM_SIZE);
	assert_non_null(f->ram);
	gm_wrap(&f->gm, f->ram, RAM_SIZE);
	assert_int_equal(sh_monitor_init(&f->mon, 1, SH_MON_GPA, &err), 0);
	sh_mmu_init(&f->mmu, &f->mon, &f->gm, -1);
	f->no_exempt = f->mmu.pt.exempt;
	f->next_table = TABLES_GPA;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	sh_monitor_destroy(&f->mon);
	free(f->ram);
	free(f);
	return 0;
}

/* ---- guest page tables ---------------------------------------------------------------- */

static unsigned vidx(uint64_t va, int level)
{
	return (unsigned)(va >> (12 + 9 * (level - 1))) & 511;
}

static uint64_t *gent(struct fx *f, uint64_t table, unsigned idx)
{
	assert_true(table + SIZE_4K <= RAM_SIZE);
	return (uint64_t *)(f->ram + table + 8ULL * idx);
}

static uint64_t new_table(struct fx *f)
{
	uint64_t t = f->next_table;

	assert_true(t + SIZE_4K <= RAM_SIZE);
	f->next_table += SIZE_4K;
	memset(f->ram + t, 0, SIZE_4K);
	return t;
}

/* Map va -> gpa under cr3 with a leaf at `level` (1: 4 KiB, 2: 2 MiB, 3: 1 GiB). Missing
 * tables are created, reached through TBL entries. Returns the leaf entry. */
static uint64_t *map(struct fx *f, uint64_t cr3, uint64_t va, uint64_t gpa, int level,
                     uint64_t flags)
{
	uint64_t table = cr3, *e;

	for (int l = 4; l > level; l--) {
		e = gent(f, table, vidx(va, l));
		if (!(*e & PTE_P))
			*e = new_table(f) | TBL;
		table = *e & PTE_ADDR;
	}
	e = gent(f, table, vidx(va, level));
	*e = gpa | flags | (level > 1 ? PTE_PS : 0);
	return e;
}

/* The guest entry used at `level` for va (the tables above must exist). */
static uint64_t *gpath(struct fx *f, uint64_t cr3, uint64_t va, int level)
{
	uint64_t table = cr3;

	for (int l = 4; l > level; l--)
		table = *gent(f, table, vidx(va, l)) & PTE_ADDR;
	return gent(f, table, vidx(va, level));
}

/* The guest table page at `level` on va's path. */
static uint64_t gtable(struct fx *f, uint64_t cr3, uint64_t va, int level)
{
	uint64_t table = cr3;

	for (int l = 4; l > level; l--)
		table = *gent(f, table, vidx(va, l)) & PTE_ADDR;
	return table;
}

/* ---- the shadow tables ---------------------------------------------------------------- */

static bool in_pool(uint64_t gpa)
{
	return gpa >= SH_POOL_GPA && gpa < POOL_END && !(gpa & 0xfff);
}

static uint64_t pool_idx(uint64_t gpa)
{
	assert_true(in_pool(gpa));
	return (gpa - SH_POOL_GPA) >> 12;
}

static uint64_t *spage(struct fx *f, uint64_t gpa)
{
	return (uint64_t *)(f->mon.pool + pool_idx(gpa) * SIZE_4K);
}

/* The shadow leaf that maps va under `root` (a pool GPA), and its level; 0 when none. */
static uint64_t sleaf(struct fx *f, uint64_t root, uint64_t va, int *level)
{
	uint64_t table = root;

	for (int l = 4; l >= 1; l--) {
		uint64_t e = spage(f, table)[vidx(va, l)];

		if (!(e & PTE_P))
			return 0;
		if (l == 4)
			assert_int_equal(e & PTE_PS, 0);
		if (l == 1 || (e & PTE_PS)) {
			if (level)
				*level = l;
			return e;
		}
		table = e & PTE_ADDR;
	}
	return 0;
}

static uint64_t cur_root(struct fx *f, uint64_t key)
{
	return sh_mmu_root(&f->mmu, key);
}

/* The smallest pool index in the tree under root (the monitor slot excluded). */
static uint64_t tree_min(struct fx *f, uint64_t table, int level)
{
	uint64_t min = pool_idx(table);

	if (level == 1)
		return min;
	for (unsigned i = 0; i < 512; i++) {
		uint64_t e = spage(f, table)[i], m;

		if (level == 4 && i == SH_MON_PML4_SLOT) {
			assert_int_equal(e, MON_ENTRY);
			continue;
		}
		if (!(e & PTE_P) || (e & PTE_PS))
			continue;
		m = tree_min(f, e & PTE_ADDR, level - 1);
		if (m < min)
			min = m;
	}
	return min;
}

/* ---- a model of the CPU running the guest through the shadow --------------------------- */

enum kind { K_READ, K_WRITE, K_FETCH };
enum acc { ACC_OK, ACC_PF, ACC_BAD, ACC_STUCK };

/* The access as hardware would check it at CPL3 in the shadow tables. On refusal, *err is
 * the real #PF error code. */
static bool shadow_hw(struct fx *f, uint64_t root, uint64_t va, enum kind k, uint64_t *gpa,
                      uint32_t *err)
{
	uint64_t table = root;
	bool w = true, nx = false;
	uint32_t base = PF_U | (k == K_WRITE ? PF_W : 0) | (k == K_FETCH ? PF_I : 0);

	for (int l = 4; l >= 1; l--) {
		uint64_t e, size;

		if (!in_pool(table)) {
			*err = 0xdead;
			return false;
		}
		e = ((uint64_t *)(f->mon.pool +
		                  ((table - SH_POOL_GPA) >> 12) * SIZE_4K))[vidx(va, l)];
		if (!(e & PTE_P)) {
			*err = base;
			return false;
		}
		if (!(e & PTE_U)) {
			*err = base | PF_P;
			return false;
		}
		w = w && (e & PTE_W);
		nx = nx || (e & PTE_NX);
		if (l == 1 || (e & PTE_PS)) {
			size = l == 1 ? SIZE_4K : l == 2 ? SIZE_2M : SIZE_1G;
			if ((k == K_WRITE && !w) || (k == K_FETCH && nx)) {
				*err = base | PF_P;
				return false;
			}
			*gpa = (e & PTE_ADDR & ~(size - 1)) | (va & (size - 1));
			return true;
		}
		table = e & PTE_ADDR;
	}
	return false;
}

/* One 8-byte guest access (va 8-aligned) with hearth's #PF handling in the loop, as
 * engine_shadow.c does it (handle_pf, then handle_db after a stepped page-table write). */
static enum acc guest_access(struct fx *f, uint64_t key, uint64_t va, enum kind k, uint64_t *val,
                             uint32_t *guest_err)
{
	for (int tries = 0; tries < 8; tries++) {
		uint64_t root = sh_mmu_root(&f->mmu, key), gpa;
		uint32_t err;
		struct sh_walk w;
		enum acc r;

		if (shadow_hw(f, root, va, k, &gpa, &err)) {
			void *p = gm_ptr(&f->gm, gpa, 8);

			if (p && k == K_WRITE)
				memcpy(p, val, 8);
			else if (p && val)
				memcpy(val, p, 8);
			return ACC_OK;
		}
		if (err == 0xdead)
			return ACC_STUCK;
		switch (sh_mmu_fault(&f->mmu, key, va, err, &w)) {
		case SH_FILLED:
			continue;
		case SH_GUEST_FAULT:
			if (guest_err)
				*guest_err = w.fault_error;
			return ACC_PF;
		case SH_TRACKED_WRITE:
			f->mmu.pt.exempt = w.gpa >> 12;
			sh_mmu_untrack(&f->mmu, w.gpa);
			sh_mmu_flush(&f->mmu);
			r = guest_access(f, key, va, k, val, guest_err);
			f->mmu.pt.exempt = f->no_exempt;
			sh_mmu_flush(&f->mmu);
			return r;
		case SH_BAD_GPA:
			return ACC_BAD;
		}
	}
	return ACC_STUCK;
}

static enum acc gstore(struct fx *f, uint64_t key, uint64_t va, uint64_t v)
{
	return guest_access(f, key, va, K_WRITE, &v, NULL);
}

/* Run fn in a child process; its exit status (0: passed), or 128 + the signal. */
static int isolated(int (*fn)(struct fx *), struct fx *f)
{
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Die of the signal: cmocka's handlers would go on running tests in the child. */
		int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT};

		for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		_exit(fn(f));
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A canary page at the host address pool + (g - SH_POOL_GPA) for some 2 MiB-aligned guest
 * physical address g below SH_MON_GPA and outside RAM: where a shadow table pointer built
 * from a guest address `g` would lead hearth. Returns g, or 0 when no such page could be
 * mapped (then the wild write is expected to crash the child instead). */
static uint64_t canary_gpa(struct fx *f, uint8_t **canary)
{
	uintptr_t pool = (uintptr_t)f->mon.pool;

	for (uint64_t j = 1; j < 65536; j++) {
		uint64_t g = SH_MON_GPA - j * SIZE_2M;
		uintptr_t t = pool - (uintptr_t)(SH_POOL_GPA - g);
		void *p;

		if (g < RAM_SIZE || t > pool)
			break;
		p = mmap((void *)t, SIZE_4K, PROT_READ | PROT_WRITE,
		         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED)
			continue;
		if (p != (void *)t) {
			munmap(p, SIZE_4K);
			continue;
		}
		memset(p, 0x5a, SIZE_4K);
		*canary = p;
		return g;
	}
	*canary = NULL;
	return 0;
}

static bool canary_intact(const uint8_t *c)
{
	for (unsigned i = 0; c && i < SIZE_4K; i++)
		if (c[i] != 0x5a)
			return false;
	return true;
}

/* ======================================================================================
 * The walker
 * ====================================================================================== */

#define VA     0x0000123456789ab8ULL /* PML4 36; offsets: 4K 0xab8, 2M 0x189ab8, 1G 0x16789ab8 */
#define GPA_4K 0x900000ULL
#define GPA_2M 0xa00000ULL
#define GPA_1G 0x40000000ULL

static uint64_t leaf_gpa(int level)
{
	return level == 1 ? GPA_4K : level == 2 ? GPA_2M : GPA_1G;
}

static uint64_t level_size(int level)
{
	return level == 1 ? SIZE_4K : level == 2 ? SIZE_2M : SIZE_1G;
}

static void test_walk_4k(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f);
	struct sh_walk w;

	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
	assert_int_equal(w.gpa, GPA_4K | (VA & 0xfff));
	assert_int_equal(w.page_size, SIZE_4K);
	assert_true(w.writable);
	assert_true(w.executable);
	assert_false(w.dirty);
	assert_int_equal(w.fault_error, 0);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA, true, &w));
	assert_true(w.dirty);
	/* Every byte of the page, and nothing next to it. */
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA & ~0xfffULL, false, &w));
	assert_int_equal(w.gpa, GPA_4K);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA | 0xfff, false, &w));
	assert_int_equal(w.gpa, GPA_4K | 0xfff);
	assert_false(sh_mmu_translate(&f->mmu, cr3, (VA | 0xfff) + 1, false, &w));
	assert_false(sh_mmu_translate(&f->mmu, cr3, (VA & ~0xfffULL) - 1, false, &w));
	/* A dirty leaf is reported dirty for reads too. */
	*gpath(f, cr3, VA, 1) |= PTE_D;
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
	assert_true(w.dirty);
	/* Ignored bits (11:9, 62:52) are not part of the address. */
	*gpath(f, cr3, VA, 1) |= 0x0ff0000000000e00ULL | (0x7fULL << 52);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
	assert_int_equal(w.gpa, GPA_4K | (VA & 0xfff));
}

static void test_walk_2m(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f);
	struct sh_walk w;

	/* Bit 12 of a large leaf is PAT, not address. */
	map(f, cr3, VA, GPA_2M | 0x1000, 2, PTE_P | PTE_W);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
	assert_int_equal(w.gpa, GPA_2M | (VA & (SIZE_2M - 1)));
	assert_int_equal(w.page_size, SIZE_2M);
	assert_true(w.writable);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA & ~(SIZE_2M - 1), false, &w));
	assert_int_equal(w.gpa, GPA_2M);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA | (SIZE_2M - 1), false, &w));
	assert_int_equal(w.gpa, GPA_2M + SIZE_2M - 1);
	assert_false(sh_mmu_translate(&f->mmu, cr3, (VA | (SIZE_2M - 1)) + 1, false, &w));
}

static void test_walk_1g(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f);
	struct sh_walk w;

	map(f, cr3, VA, GPA_1G | 0x1000, 3, PTE_P | PTE_W);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA, true, &w));
	assert_int_equal(w.gpa, GPA_1G | (VA & (SIZE_1G - 1)));
	assert_int_equal(w.page_size, SIZE_1G);
	assert_true(w.writable);
	assert_true(w.dirty);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA & ~(SIZE_1G - 1), false, &w));
	assert_int_equal(w.gpa, GPA_1G);
	assert_false(sh_mmu_translate(&f->mmu, cr3, (VA | (SIZE_1G - 1)) + 1, false, &w));
}

/* A fresh path for VA with a leaf at `leaf`; flags[l] are ORed into the level-l entry. */
static uint64_t build(struct fx *f, int leaf, const uint64_t flags[5])
{
	uint64_t cr3;

	f->next_table = TABLES_GPA;
	sh_mmu_init(&f->mmu, &f->mon, &f->gm, -1); /* the old tables are gone: so are roots */
	cr3 = new_table(f);
	map(f, cr3, VA, leaf_gpa(leaf), leaf, PTE_P);
	for (int l = 4; l >= leaf; l--) {
		uint64_t *e = gpath(f, cr3, VA, l);

		*e = (*e & ~(PTE_W | PTE_NX)) | flags[l];
	}
	return cr3;
}

/* R/W at every level: writable only when all levels allow it, unless CR0.WP is clear
 * (then the supervisor writes anything). */
static void test_walk_rw_combinations(void **state)
{
	struct fx *f = *state;

	for (int leaf = 1; leaf <= 3; leaf++) {
		unsigned nlev = (unsigned)(5 - leaf);

		for (unsigned mask = 0; mask < (1u << nlev); mask++) {
			uint64_t flags[5] = {0}, cr3;
			bool all = mask == (1u << nlev) - 1;
			struct sh_walk w;

			for (unsigned i = 0; i < nlev; i++)
				flags[4 - i] = (mask >> i) & 1 ? PTE_W : 0;
			cr3 = build(f, leaf, flags);
			for (int wp = 0; wp <= 1; wp++) {
				f->mmu.wp = wp;
				assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
				assert_int_equal(w.page_size, level_size(leaf));
				assert_int_equal(w.writable, all || !wp);
				if (all || !wp) {
					assert_true(sh_mmu_translate(&f->mmu, cr3, VA, true, &w));
					assert_true(w.dirty);
				} else {
					assert_false(sh_mmu_translate(&f->mmu, cr3, VA, true, &w));
					assert_int_equal(w.fault_error, PF_P | PF_W);
				}
			}
		}
	}
	f->mmu.wp = true;
}

/* NX on any one level: with EFER.NXE the page is not executable (a fetch faults with P|I);
 * without, bit 63 is reserved. */
static void test_walk_nx_combinations(void **state)
{
	struct fx *f = *state;

	for (int leaf = 1; leaf <= 3; leaf++) {
		for (int at = 4; at >= leaf; at--) {
			uint64_t flags[5] = {0, PTE_W, PTE_W, PTE_W, PTE_W}, cr3;
			struct sh_walk w;

			flags[at] |= PTE_NX;
			cr3 = build(f, leaf, flags);
			f->mmu.nxe = true;
			assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
			assert_false(w.executable);
			assert_true(w.writable);
			assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_FETCH, &w),
			                 SH_GUEST_FAULT);
			assert_int_equal(w.fault_error, PF_P | PF_I);
			f->mmu.nxe = false;
			assert_false(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
			assert_int_equal(w.fault_error, PF_P | PF_RSVD);
			assert_false(sh_mmu_translate(&f->mmu, cr3, VA, true, &w));
			assert_int_equal(w.fault_error, PF_P | PF_RSVD | PF_W);
			/* Without NX anywhere, the page is executable either way. */
			flags[at] &= ~PTE_NX;
			cr3 = build(f, leaf, flags);
			for (int nxe = 0; nxe <= 1; nxe++) {
				f->mmu.nxe = nxe;
				assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
				assert_true(w.executable);
				assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_FETCH, &w),
				                 SH_FILLED);
			}
		}
	}
	f->mmu.nxe = false;
}

/* Not present at each level: P clear in the error code; W for writes; I/D for fetches only
 * with NXE. Other bits of a not-present entry are ignored (no RSVD). */
static void test_walk_not_present(void **state)
{
	struct fx *f = *state;

	for (int leaf = 1; leaf <= 3; leaf++) {
		for (int at = 4; at >= leaf; at--) {
			uint64_t flags[5] = {0, PTE_W, PTE_W, PTE_W, PTE_W}, cr3;
			struct sh_walk w;

			cr3 = build(f, leaf, flags);
			*gpath(f, cr3, VA, at) &= ~PTE_P;
			*gpath(f, cr3, VA, at) |= PTE_NX | (0xfULL << 48) | PTE_PS;
			f->mmu.nxe = false;
			assert_false(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
			assert_int_equal(w.fault_error, 0);
			assert_false(sh_mmu_translate(&f->mmu, cr3, VA, true, &w));
			assert_int_equal(w.fault_error, PF_W);
			assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w),
			                 SH_GUEST_FAULT);
			assert_int_equal(w.fault_error, 0);
			assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_WRITE, &w),
			                 SH_GUEST_FAULT);
			assert_int_equal(w.fault_error, PF_W);
			assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_FETCH, &w),
			                 SH_GUEST_FAULT);
			assert_int_equal(w.fault_error, 0);
			f->mmu.nxe = true;
			assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_FETCH, &w),
			                 SH_GUEST_FAULT);
			assert_int_equal(w.fault_error, PF_I);
			assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_WRITE, &w),
			                 SH_GUEST_FAULT);
			assert_int_equal(w.fault_error, PF_W);
			f->mmu.nxe = false;
		}
	}
}

/* Reserved bits: P|RSVD (plus W / I for the access). */
static void test_walk_reserved(void **state)
{
	struct fx *f = *state;
	struct {
		int leaf, at;
		uint64_t bits;
	} cases[] = {
	    {1, 4, PTE_PS},                                             /* PS in a PML4 entry */
	    {2, 4, PTE_PS},     {2, 2, 1ULL << 13},                     /* 2 MiB leaf: bits 20:13 */
	    {2, 2, 1ULL << 16}, {2, 2, 1ULL << 20}, {3, 3, 1ULL << 13}, /* 1 GiB leaf: bits 29:13 */
	    {3, 3, 1ULL << 21}, {3, 3, 1ULL << 29},
	};
	uint64_t flags[5] = {0, PTE_W, PTE_W, PTE_W, PTE_W};
	struct sh_walk w;

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t cr3 = build(f, cases[i].leaf, flags);

		*gpath(f, cr3, VA, cases[i].at) |= cases[i].bits;
		assert_false(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
		assert_int_equal(w.fault_error, PF_P | PF_RSVD);
		assert_false(sh_mmu_translate(&f->mmu, cr3, VA, true, &w));
		assert_int_equal(w.fault_error, PF_P | PF_RSVD | PF_W);
		f->mmu.nxe = true;
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_FETCH, &w), SH_GUEST_FAULT);
		assert_int_equal(w.fault_error, PF_P | PF_RSVD | PF_I);
		f->mmu.nxe = false;
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_FETCH, &w), SH_GUEST_FAULT);
		assert_int_equal(w.fault_error, PF_P | PF_RSVD);
	}
	/* Bits 51:48 and NX-without-NXE at every level of every leaf size. */
	for (int leaf = 1; leaf <= 3; leaf++) {
		for (int at = 4; at >= leaf; at--) {
			uint64_t bad[] = {1ULL << 48, 1ULL << 49, 1ULL << 50, 1ULL << 51, PTE_NX};

			for (unsigned b = 0; b < 5; b++) {
				uint64_t cr3 = build(f, leaf, flags);

				*gpath(f, cr3, VA, at) |= bad[b];
				assert_false(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
				assert_int_equal(w.fault_error, PF_P | PF_RSVD);
				assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_WRITE, &w),
				                 SH_GUEST_FAULT);
				assert_int_equal(w.fault_error, PF_P | PF_RSVD | PF_W);
			}
		}
	}
	/* Not reserved: PAT (bit 12) in large leaves, bit 7 (PAT) in a 4 KiB leaf, address
	 * bits 47:30 of a 1 GiB leaf and 47:21 of a 2 MiB leaf. */
	{
		uint64_t cr3 = build(f, 1, flags);

		*gpath(f, cr3, VA, 1) |= PTE_PS;
		assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
		assert_int_equal(w.page_size, SIZE_4K);
		cr3 = build(f, 2, flags);
		*gpath(f, cr3, VA, 2) |= 0x1000 | (1ULL << 47) | (1ULL << 22);
		assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
		assert_int_equal(w.gpa,
		                 (GPA_2M | (1ULL << 47) | (1ULL << 22)) + (VA & (SIZE_2M - 1)));
		cr3 = build(f, 3, flags);
		*gpath(f, cr3, VA, 3) |= 0x1000 | (1ULL << 47) | (1ULL << 31);
		assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
		assert_int_equal(w.gpa,
		                 (GPA_1G | (1ULL << 47) | (1ULL << 31)) + (VA & (SIZE_1G - 1)));
	}
}

static void test_walk_noncanonical(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f);
	uint64_t bad[] = {0x0000800000000000ULL, 0x0000800000001000ULL, 0xffff7fffffffffffULL,
	                  0x8000000000000000ULL, 0x00010000000000a0ULL, 0x7fff800000000000ULL};
	struct sh_walk w;

	/* A PML4 whose every entry maps something: only the canonical check can refuse. */
	for (unsigned i = 0; i < 512; i++)
		if (i != SH_MON_PML4_SLOT)
			map(f, cr3, (uint64_t)i << 39, GPA_1G, 3, PTE_P | PTE_W);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(sh_mmu_translate(&f->mmu, cr3, bad[i], false, &w));
		assert_int_equal(w.fault_error & (PF_P | PF_RSVD), 0);
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, bad[i], HW_READ, &w), SH_GUEST_FAULT);
	}
	/* Both halves of the canonical space work. */
	assert_true(sh_mmu_translate(&f->mmu, cr3, 0x00007f803fffffffULL, false, &w));
	assert_int_equal(w.gpa, GPA_1G + 0x3fffffff);
	assert_true(sh_mmu_translate(&f->mmu, cr3, 0xffff800000000000ULL, false, &w));
	assert_int_equal(w.gpa, GPA_1G);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0xffff800000001000ULL, HW_READ, &w), SH_FILLED);
}

/* A committed walk sets A at every level and D only on the leaf, only for writes; a walk
 * that ends in a protection fault sets no D. */
static void test_walk_accessed_dirty(void **state)
{
	struct fx *f = *state;

	for (int leaf = 1; leaf <= 3; leaf++) {
		uint64_t flags[5] = {0, PTE_W, PTE_W, PTE_W, PTE_W}, cr3 = build(f, leaf, flags);
		struct sh_walk w;

		for (int l = 4; l >= leaf; l--)
			assert_int_equal(*gpath(f, cr3, VA, l) & (PTE_A | PTE_D), 0);
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
		for (int l = 4; l >= leaf; l--)
			assert_int_equal(*gpath(f, cr3, VA, l) & (PTE_A | PTE_D), PTE_A);
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_WRITE | PF_P, &w), SH_FILLED);
		assert_true(w.dirty);
		for (int l = 4; l > leaf; l--)
			assert_int_equal(*gpath(f, cr3, VA, l) & (PTE_A | PTE_D), PTE_A);
		assert_int_equal(*gpath(f, cr3, VA, leaf) & (PTE_A | PTE_D), PTE_A | PTE_D);

		/* Read-only: the write faults and the leaf stays clean. */
		flags[leaf] = 0;
		cr3 = build(f, leaf, flags);
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_WRITE, &w), SH_GUEST_FAULT);
		assert_int_equal(w.fault_error, PF_P | PF_W);
		assert_int_equal(*gpath(f, cr3, VA, leaf) & PTE_D, 0);
		for (int l = 4; l > leaf; l--)
			assert_int_equal(*gpath(f, cr3, VA, l) & PTE_A, PTE_A);
	}
}

/* sh_mmu_translate has no side effects: no A/D bits, no tracking, no roots, no stats. */
static void test_translate_no_side_effects(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f);
	uint8_t *ram_before = malloc(RAM_SIZE);
	struct sh_mmu before;
	struct sh_walk w;

	assert_non_null(ram_before);
	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W);
	map(f, cr3, VA + SIZE_1G, GPA_2M, 2, PTE_P);
	map(f, cr3, 0x1000, GPA_4K, 1, PTE_P | PTE_W | PTE_NX);
	memcpy(ram_before, f->ram, RAM_SIZE);
	memcpy(&before, &f->mmu, sizeof(before));
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA, true, &w));
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA + SIZE_1G, false, &w));
	assert_false(sh_mmu_translate(&f->mmu, cr3, VA + SIZE_1G, true, &w));
	assert_false(sh_mmu_translate(&f->mmu, cr3, 0x1000, false, &w)); /* NX w/o NXE */
	assert_false(sh_mmu_translate(&f->mmu, cr3, 0x5000000, false, &w));
	assert_true(sh_mmu_translate(&f->mmu, SH_KEY_IDENTITY, 0x1234, true, &w));
	assert_memory_equal(ram_before, f->ram, RAM_SIZE);
	assert_memory_equal(&before, &f->mmu, sizeof(before));
	assert_int_equal(f->mmu.pt.n, 0);
	free(ram_before);
}

/* Tables outside RAM fault (not present); RAM tables beyond them still walk. */
static void test_walk_table_outside_ram(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f);
	struct sh_walk w;

	assert_false(sh_mmu_translate(&f->mmu, 0x40000000, VA, false, &w));
	assert_int_equal(w.fault_error, 0);
	assert_false(sh_mmu_translate(&f->mmu, RAM_SIZE - 8, VA, true, &w)); /* cr3 bits 11:0 */
	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W);
	*gpath(f, cr3, VA, 4) = 0x7e0000000000ULL | TBL; /* a PDPT far outside RAM */
	assert_false(sh_mmu_translate(&f->mmu, cr3, VA, true, &w));
	assert_int_equal(w.fault_error, PF_W);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_GUEST_FAULT);
	/* cr3's low bits (PCD, PWT, PCID) are not part of the table address. */
	*gpath(f, cr3, 0x1000, 4) = 0;
	map(f, cr3, 0x1000, GPA_4K, 1, PTE_P);
	assert_true(sh_mmu_translate(&f->mmu, cr3 | 0x18, 0x1000, false, &w));
	assert_int_equal(w.gpa, GPA_4K);
}

static void test_translate_identity(void **state)
{
	struct fx *f = *state;
	struct sh_walk w;

	assert_true(sh_mmu_translate(&f->mmu, SH_KEY_IDENTITY, 0x12345678, true, &w));
	assert_int_equal(w.gpa, 0x12345678);
	assert_true(w.writable && w.executable && w.dirty);
	assert_int_equal(sh_mmu_fault(&f->mmu, SH_KEY_IDENTITY, 0x600123, HW_WRITE, &w), SH_FILLED);
	{
		int level = 0;
		uint64_t e = sleaf(f, cur_root(f, SH_KEY_IDENTITY), 0x600123, &level);

		assert_int_equal(level, 2);
		assert_int_equal(e & PTE_ADDR, 0x600000);
		assert_true(e & PTE_W);
		assert_true(e & PTE_U);
		assert_false(e & PTE_NX);
	}
}

/* ======================================================================================
 * The composer
 * ====================================================================================== */

static void check_sh_intermediate(struct fx *f, uint64_t root, uint64_t va, int leaf_level)
{
	uint64_t table = root;

	for (int l = 4; l > leaf_level; l--) {
		uint64_t e = spage(f, table)[vidx(va, l)];

		assert_int_equal(e & (PTE_P | PTE_W | PTE_U | PTE_PS | PTE_NX),
		                 PTE_P | PTE_W | PTE_U);
		assert_true(in_pool(e & PTE_ADDR));
		table = e & PTE_ADDR;
	}
}

static void test_fill_4k(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), e, root;
	struct sh_walk w;
	int level;

	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W); /* clean */
	map(f, cr3, VA + 0x1000, GPA_4K + 0x1000, 1, PTE_P | PTE_W | PTE_D);
	map(f, cr3, VA + 0x2000, GPA_4K + 0x2000, 1, PTE_P | PTE_D); /* read-only */
	map(f, cr3, VA + 0x3000, GPA_4K + 0x3000, 1, PTE_P | PTE_W | PTE_NX);

	/* A read of a clean writable page: present, user, read-only (to catch the first
	 * write and set D). */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
	root = cur_root(f, cr3);
	e = sleaf(f, root, VA, &level);
	assert_int_equal(level, 1);
	assert_int_equal(e & PTE_ADDR, GPA_4K);
	assert_int_equal(e & (PTE_P | PTE_U | PTE_W | PTE_NX | PTE_PS), PTE_P | PTE_U);
	check_sh_intermediate(f, root, VA, 1);
	/* The write: W (and D) in place, same root. */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_WRITE | PF_P, &w), SH_FILLED);
	assert_int_equal(cur_root(f, cr3), root);
	e = sleaf(f, root, VA, &level);
	assert_int_equal(e & (PTE_P | PTE_U | PTE_W | PTE_NX), PTE_P | PTE_U | PTE_W);
	assert_int_equal(e & PTE_ADDR, GPA_4K);
	/* Already dirty: W on a read. */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA + 0x1000, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, VA + 0x1000, &level);
	assert_int_equal(e & (PTE_P | PTE_U | PTE_W), PTE_P | PTE_U | PTE_W);
	assert_int_equal(e & PTE_ADDR, GPA_4K + 0x1000);
	/* Read-only and dirty: never W; the write is the guest's fault. */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA + 0x2000, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, VA + 0x2000, &level);
	assert_int_equal(e & (PTE_P | PTE_U | PTE_W), PTE_P | PTE_U);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA + 0x2000, HW_WRITE | PF_P, &w),
	                 SH_GUEST_FAULT);
	assert_int_equal(w.fault_error, PF_P | PF_W);
	/* NX with NXE: NX in the shadow; a fetch is the guest's fault. */
	f->mmu.nxe = true;
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA + 0x3000, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, VA + 0x3000, &level);
	assert_true(e & PTE_NX);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA + 0x3000, HW_FETCH | PF_P, &w),
	                 SH_GUEST_FAULT);
	assert_int_equal(w.fault_error, PF_P | PF_I);
	f->mmu.nxe = false;
	/* WP clear: a read-only page is writable for the (supervisor) guest. */
	f->mmu.wp = false;
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA + 0x2000, HW_WRITE | PF_P, &w), SH_FILLED);
	e = sleaf(f, root, VA + 0x2000, &level);
	assert_true(e & PTE_W);
	f->mmu.wp = true;
	assert_int_equal(f->mmu.st.fills, 6);
}

/* A write-protected upper level: the shadow leaf is read-only even when the leaf is W+D. */
static void test_fill_upper_level_rw(void **state)
{
	struct fx *f = *state;

	for (int at = 4; at >= 1; at--) {
		uint64_t flags[5] = {0, PTE_W | PTE_D, PTE_W, PTE_W, PTE_W}, cr3, e;
		struct sh_walk w;

		flags[at] &= ~PTE_W;
		cr3 = build(f, 1, flags);
		sh_mmu_init(&f->mmu, &f->mon, &f->gm, -1);
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
		e = sleaf(f, cur_root(f, cr3), VA, NULL);
		assert_int_equal(e & (PTE_P | PTE_W | PTE_U), PTE_P | PTE_U);
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_WRITE | PF_P, &w),
		                 SH_GUEST_FAULT);
		assert_int_equal(w.fault_error, PF_P | PF_W);
	}
}

static void test_fill_2m(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), e, root;
	struct sh_walk w;
	int level;

	/* RAM without page tables: one 2 MiB shadow leaf. */
	map(f, cr3, 0x40000000, GPA_2M, 2, PTE_P | PTE_W);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40012345, HW_READ, &w), SH_FILLED);
	root = cur_root(f, cr3);
	e = sleaf(f, root, 0x40012345, &level);
	assert_int_equal(level, 2);
	assert_int_equal(e & PTE_ADDR, GPA_2M);
	assert_int_equal(e & (PTE_P | PTE_U | PTE_W | PTE_PS | PTE_NX), PTE_P | PTE_U | PTE_PS);
	check_sh_intermediate(f, root, 0x40012345, 2);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x401fff00, HW_WRITE | PF_P, &w), SH_FILLED);
	e = sleaf(f, root, 0x40000000, &level);
	assert_int_equal(level, 2);
	assert_true(e & PTE_W);
	assert_true(*gpath(f, cr3, 0x40000000, 2) & PTE_D);

	/* Not RAM at all (MMIO, say): also 2 MiB. */
	map(f, cr3, 0x40200000, 0x80000000, 2, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40212345, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, 0x40212345, &level);
	assert_int_equal(level, 2);
	assert_int_equal(e & PTE_ADDR, 0x80000000);
	assert_true(e & PTE_W);

	/* Half RAM (RAM ends at 17 MiB): 4 KiB leaves. */
	map(f, cr3, 0x40400000, 0x1000000, 2, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40401234, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, 0x40401234, &level);
	assert_int_equal(level, 1);
	assert_int_equal(e & PTE_ADDR, 0x1001000);
	assert_true(e & PTE_W);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40500000, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, 0x40500000, &level);
	assert_int_equal(level, 1);
	assert_int_equal(e & PTE_ADDR, 0x1100000);

	/* The range [0, 2 MiB) holds the page tables: 4 KiB leaves, the tables read-only. */
	map(f, cr3, 0x40600000, 0, 2, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40600000 + cr3, HW_READ, &w), SH_FILLED);
	root = cur_root(f, cr3);
	e = sleaf(f, root, 0x40600000 + cr3, &level);
	assert_int_equal(level, 1);
	assert_int_equal(e & PTE_ADDR, cr3);
	assert_int_equal(e & (PTE_P | PTE_U | PTE_W), PTE_P | PTE_U);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40700000, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, 0x40700000, &level);
	assert_int_equal(level, 1);
	assert_int_equal(e & PTE_ADDR, 0x100000);
	assert_int_equal(e & (PTE_P | PTE_U | PTE_W), PTE_P | PTE_U | PTE_W);
}

/* A 4 KiB shadow table already under a 2 MiB range (it held a page table, since untracked):
 * a 2 MiB guest page then fills 4 KiB entries in it. */
static void test_fill_2m_over_4k_table(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), cr3b, e, root;
	struct sh_walk w;
	int level;

	map(f, cr3, 0x40000000, 0x600000, 2, PTE_P | PTE_W | PTE_D);
	/* Another address space whose PML4 (only) lies in [6 MiB, 8 MiB). */
	f->next_table = 0x601000;
	cr3b = new_table(f);
	f->next_table = 0x20000;
	map(f, cr3b, 0x1000, GPA_4K, 1, PTE_P);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3b, 0x1000, HW_READ, &w), SH_FILLED);
	assert_true(sh_mmu_is_tracked(&f->mmu, 0x601000));
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40001000, HW_READ, &w), SH_FILLED);
	root = cur_root(f, cr3);
	e = sleaf(f, root, 0x40001000, &level);
	assert_int_equal(level, 1);
	assert_int_equal(e & (PTE_ADDR | PTE_W), 0x601000);
	sh_mmu_untrack(&f->mmu, 0x601000);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40002000, HW_READ, &w), SH_FILLED);
	assert_int_equal(cur_root(f, cr3), root);
	e = sleaf(f, root, 0x40002000, &level);
	assert_int_equal(level, 1);
	assert_int_equal(e & (PTE_ADDR | PTE_W), 0x602000 | PTE_W);
	e = sleaf(f, root, 0x40001000, &level); /* untouched */
	assert_int_equal(e & (PTE_ADDR | PTE_W), 0x601000);
}

/* 1 GiB guest pages are 2 MiB (or 4 KiB) in the shadow, never 1 GiB. */
static void test_fill_1g(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), e, root;
	struct sh_walk w;
	int level;

	map(f, cr3, SIZE_1G, 0, 3, PTE_P | PTE_W | PTE_D);
	map(f, cr3, 2 * SIZE_1G, GPA_1G, 3, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, SIZE_1G + 0x412345, HW_READ, &w), SH_FILLED);
	root = cur_root(f, cr3);
	e = sleaf(f, root, SIZE_1G + 0x412345, &level);
	assert_int_equal(level, 2);
	assert_int_equal(e & PTE_ADDR, 0x400000);
	assert_true(e & PTE_W);
	check_sh_intermediate(f, root, SIZE_1G, 2);
	/* Not RAM: 2 MiB. */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, SIZE_1G + 0x20000000, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, SIZE_1G + 0x20000000, &level);
	assert_int_equal(level, 2);
	assert_int_equal(e & PTE_ADDR, 0x20000000);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 2 * SIZE_1G + 0x3fe00000, HW_READ, &w),
	                 SH_FILLED);
	e = sleaf(f, root, 2 * SIZE_1G + 0x3fe00000, &level);
	assert_int_equal(level, 2);
	assert_int_equal(e & PTE_ADDR, GPA_1G + 0x3fe00000);
	/* The first 2 MiB hold the page tables: 4 KiB, tables read-only. */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, SIZE_1G + cr3, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, SIZE_1G + cr3, &level);
	assert_int_equal(level, 1);
	assert_int_equal(e & (PTE_ADDR | PTE_W), cr3);
	/* No 1 GiB entry anywhere in the shadow. */
	for (unsigned i = 0; i < 512; i++) {
		uint64_t p4 = spage(f, root)[i];

		if (i == SH_MON_PML4_SLOT || !(p4 & PTE_P))
			continue;
		for (unsigned j = 0; j < 512; j++)
			assert_int_equal(spage(f, p4 & PTE_ADDR)[j] & PTE_PS, 0);
	}
}

/* Slot 510 maps the monitor (supervisor-only) in every root and is never overwritten. */
static void test_monitor_slot(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), root;
	uint64_t vas[] = {0x1000,
	                  0x00007ffffffff000ULL,
	                  0xffff800000000000ULL,
	                  0xffffff8000000000ULL,
	                  0xfffffe8000000000ULL,
	                  0xffffffffffe00000ULL};
	struct sh_walk w;

	for (unsigned i = 0; i < sizeof(vas) / sizeof(vas[0]); i++)
		map(f, cr3, vas[i], GPA_4K, 1, PTE_P | PTE_W | PTE_D);
	for (unsigned i = 0; i < sizeof(vas) / sizeof(vas[0]); i++) {
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, vas[i], HW_WRITE, &w), SH_FILLED);
		root = cur_root(f, cr3);
		assert_int_equal(spage(f, root)[SH_MON_PML4_SLOT], MON_ENTRY);
		assert_int_equal(sleaf(f, root, vas[i], NULL) & PTE_ADDR, GPA_4K);
	}
	/* A guest mapping in slot 510 is refused and leaves the slot alone. */
	map(f, cr3, SH_MON_VA + 0x5000, GPA_4K, 1, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, SH_MON_VA + 0x5000, HW_READ, &w), SH_BAD_GPA);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, SH_MON_VA, HW_WRITE | PF_P, &w), SH_BAD_GPA);
	assert_int_equal(spage(f, cur_root(f, cr3))[SH_MON_PML4_SLOT], MON_ENTRY);
	/* Every root: new keys, the identity key, after flushes. */
	for (unsigned k = 0; k < 2 * SH_ROOTS; k++) {
		root = cur_root(f, k == 5 ? SH_KEY_IDENTITY : 0x100000 + k * SIZE_4K);
		assert_int_equal(spage(f, root)[SH_MON_PML4_SLOT], MON_ENTRY);
		for (unsigned i = 0; i < 512; i++)
			if (i != SH_MON_PML4_SLOT)
				assert_int_equal(spage(f, root)[i], 0);
		if (k % 7 == 0)
			sh_mmu_flush(&f->mmu);
	}
	/* The monitor's own tables, which the slot points to, are not guest-visible. */
	assert_false(in_pool(MON_ENTRY & PTE_ADDR));
}

/* GPAs at or above SH_MON_GPA belong to hearth. */
static void test_bad_gpa(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f);
	struct {
		uint64_t gpa;
		int level;
		enum sh_fault_result r;
	} cases[] = {
	    {SH_MON_GPA, 1, SH_BAD_GPA},
	    {SH_MON_GPA + SH_OFF_PDPT, 1, SH_BAD_GPA},
	    {SH_POOL_GPA, 1, SH_BAD_GPA},
	    {POOL_END - SIZE_4K, 1, SH_BAD_GPA},
	    {0x0000fffffffff000ULL, 1, SH_BAD_GPA},
	    {SH_MON_GPA, 2, SH_BAD_GPA},
	    {SH_POOL_GPA, 2, SH_BAD_GPA},
	    {(SH_MON_GPA + SIZE_1G - 1) & ~(SIZE_1G - 1), 3, SH_BAD_GPA}, /* 1 GiB aligned */
	    {SH_MON_GPA - SIZE_4K, 1, SH_FILLED}, /* not RAM, but not hearth's either */
	    {SH_MON_GPA - SIZE_2M, 2, SH_FILLED},
	    {(SH_MON_GPA & ~(SIZE_1G - 1)) - SIZE_1G, 3, SH_FILLED},
	    /* a 1 GiB guest page whose start is below the monitor and which covers it: only
	     * its 2 MiB pieces below the monitor are the guest's */
	    {SH_MON_GPA & ~(SIZE_1G - 1), 3, SH_FILLED},
	};
	struct sh_walk w;

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t va = (uint64_t)(i + 1) << 39; /* one PML4 slot each */
		uint64_t off = cases[i].level == 1 ? 0x10 : 0x1000;

		map(f, cr3, va, cases[i].gpa, cases[i].level, PTE_P | PTE_W | PTE_D);
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va + off, HW_READ, &w), cases[i].r);
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va + off, HW_WRITE, &w), cases[i].r);
		if (cases[i].r == SH_BAD_GPA)
			assert_int_equal(sleaf(f, cur_root(f, cr3), va + off, NULL), 0);
		else
			assert_int_equal(sleaf(f, cur_root(f, cr3), va + off, NULL) & PTE_ADDR,
			                 (cases[i].gpa + off) &
			                     ~(cases[i].level == 1 ? 0xfffULL : SIZE_2M - 1));
	}
}

/* ======================================================================================
 * The root cache
 * ====================================================================================== */

#define KEY(i) (0x100000ULL + (uint64_t)(i)*SIZE_4K)

static void test_root_hit_miss(void **state)
{
	struct fx *f = *state;
	uint64_t a, b;

	a = cur_root(f, KEY(1));
	assert_true(in_pool(a));
	assert_int_equal(f->mmu.st.misses, 1);
	assert_int_equal(f->mmu.st.hits, 0);
	assert_int_equal(cur_root(f, KEY(1)), a);
	assert_int_equal(f->mmu.st.hits, 1);
	b = cur_root(f, KEY(2));
	assert_true(in_pool(b));
	assert_true(a != b);
	assert_int_equal(f->mmu.st.misses, 2);
	assert_int_equal(cur_root(f, SH_KEY_IDENTITY), cur_root(f, SH_KEY_IDENTITY));
	assert_int_equal(f->mmu.st.misses, 3);
	assert_int_equal(f->mmu.st.hits, 2);
	assert_int_equal(cur_root(f, KEY(1)), a);
	assert_int_equal(cur_root(f, KEY(2)), b);
	assert_int_equal(f->mmu.st.hits, 4);
	assert_int_equal(f->mmu.st.evictions, 0);
}

static void test_root_lru(void **state)
{
	struct fx *f = *state;
	uint64_t roots[SH_ROOTS + 1];

	for (unsigned i = 0; i < SH_ROOTS; i++)
		roots[i] = cur_root(f, KEY(i));
	assert_int_equal(f->mmu.st.misses, SH_ROOTS);
	assert_int_equal(f->mmu.st.evictions, 0);
	for (unsigned i = 0; i < SH_ROOTS; i++)
		assert_int_equal(cur_root(f, KEY(i)), roots[i]);
	assert_int_equal(f->mmu.st.hits, SH_ROOTS);
	/* Use 0 again: 1 is now the least recently used and goes first. */
	cur_root(f, KEY(0));
	roots[SH_ROOTS] = cur_root(f, KEY(SH_ROOTS));
	assert_int_equal(f->mmu.st.evictions, 1);
	assert_int_equal(cur_root(f, KEY(0)), roots[0]);
	for (unsigned i = 2; i <= SH_ROOTS; i++)
		assert_int_equal(cur_root(f, KEY(i)), roots[i]);
	assert_int_equal(f->mmu.st.evictions, 1);
	/* 1 comes back on a fresh page, evicting 0 (the least recently used now). */
	{
		uint64_t misses = f->mmu.st.misses, r1 = cur_root(f, KEY(1));

		assert_int_equal(f->mmu.st.misses, misses + 1);
		assert_true(r1 != roots[1]);
		assert_true(pool_idx(r1) > pool_idx(roots[SH_ROOTS]));
		assert_int_equal(f->mmu.st.evictions, 2);
		for (unsigned i = 2; i <= SH_ROOTS; i++)
			assert_int_equal(cur_root(f, KEY(i)), roots[i]);
		assert_int_equal(f->mmu.st.misses, misses + 1);
		cur_root(f, KEY(0));
		assert_int_equal(f->mmu.st.misses, misses + 2);
		assert_int_equal(f->mmu.st.evictions, 3);
	}
}

/* A flush drops every root; new roots and their tables come from pages never used before
 * (KVM may still shadow the old ones: double shadowing). */
static void test_flush_fresh_pages(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), old, used, epochs;
	struct sh_walk w;

	for (unsigned i = 0; i < 8; i++)
		map(f, cr3, VA + i * SIZE_1G, GPA_4K, 1, PTE_P | PTE_W | PTE_D);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA + i * SIZE_1G, HW_READ, &w),
		                 SH_FILLED);
	for (unsigned i = 0; i < 4; i++)
		cur_root(f, KEY(i));
	old = cur_root(f, cr3);
	used = f->mmu.pool_next;
	epochs = f->mmu.st.epochs;
	sh_mmu_flush(&f->mmu);
	assert_int_equal(f->mmu.st.epochs, epochs + 1);
	for (unsigned i = 0; i < SH_ROOTS; i++)
		assert_false(f->mmu.roots[i].valid);
	{
		uint64_t misses = f->mmu.st.misses, root = cur_root(f, cr3);

		assert_int_equal(f->mmu.st.misses, misses + 1);
		assert_true(root != old);
		assert_true(pool_idx(root) >= used);
		assert_int_equal(sleaf(f, root, VA, NULL), 0);
		for (unsigned i = 0; i < 8; i++)
			assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA + i * SIZE_1G, HW_READ, &w),
			                 SH_FILLED);
		assert_int_equal(cur_root(f, cr3), root);
		assert_true(tree_min(f, root, 4) >= used);
		assert_true(pool_idx(cur_root(f, KEY(0))) >= used);
	}
}

/* 8192 roots use the whole pool; the next allocation reloads it (vm_fd -1: the ioctl fails
 * harmlessly), drops every root and starts again from page 0. */
static void test_pool_reload(void **state)
{
	struct fx *f = *state;

	for (unsigned i = 0; i < SH_POOL_PAGES; i++)
		assert_int_equal(pool_idx(cur_root(f, KEY(i))), i);
	assert_int_equal(f->mmu.st.reloads, 0);
	assert_int_equal(f->mmu.pool_next, SH_POOL_PAGES);
	assert_int_equal(pool_idx(cur_root(f, KEY(SH_POOL_PAGES))), 0);
	assert_int_equal(f->mmu.st.reloads, 1);
	assert_int_equal(f->mmu.st.epochs, 1);
	assert_int_equal(f->mmu.pool_next, 1);
	assert_int_equal(spage(f, cur_root(f, KEY(SH_POOL_PAGES)))[SH_MON_PML4_SLOT], MON_ENTRY);
	for (unsigned i = SH_POOL_PAGES - SH_ROOTS; i < SH_POOL_PAGES; i++)
		assert_int_equal(pool_idx(cur_root(f, KEY(i))), 1 + i - (SH_POOL_PAGES - SH_ROOTS));
	assert_int_equal(f->mmu.st.reloads, 1);
}

/* The pool runs out in the middle of a fill: nothing is mapped, the roots are gone, and the
 * retried fault builds a complete new tree from page 0. */
static void test_pool_reload_during_fill(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), root, e;
	struct sh_walk w;
	unsigned k = 0;

	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W | PTE_D);
	map(f, cr3, 0x1000, GPA_4K, 1, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x1000, HW_READ, &w), SH_FILLED);
	while (f->mmu.pool_next < SH_POOL_PAGES - 2)
		cur_root(f, KEY(k++));
	root = cur_root(f, cr3); /* the last page but one */
	assert_int_equal(pool_idx(root), SH_POOL_PAGES - 2);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
	assert_int_equal(f->mmu.st.reloads, 1);
	for (unsigned i = 0; i < SH_ROOTS; i++)
		assert_false(f->mmu.roots[i].valid);
	root = cur_root(f, cr3);
	assert_int_equal(pool_idx(root), 0);
	assert_int_equal(sleaf(f, root, VA, NULL), 0);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, VA, NULL);
	assert_int_equal(e & (PTE_ADDR | PTE_P | PTE_W), GPA_4K | PTE_P | PTE_W);
	assert_int_equal(tree_min(f, root, 4), 0);
	assert_int_equal(f->mmu.pool_next, 4);
	assert_int_equal(spage(f, root)[SH_MON_PML4_SLOT], MON_ENTRY);
}

/* ======================================================================================
 * Write protection of the guest's page tables
 * ====================================================================================== */

static void test_tables_tracked(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f);
	struct sh_walk w;

	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W);
	map(f, cr3, 0x40000000, GPA_2M, 2, PTE_P | PTE_W);
	assert_true(sh_mmu_translate(&f->mmu, cr3, VA, false, &w));
	assert_false(sh_mmu_is_tracked(&f->mmu, cr3));
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
	for (int l = 4; l >= 1; l--) {
		assert_true(sh_mmu_is_tracked(&f->mmu, gtable(f, cr3, VA, l)));
		assert_true(sh_mmu_is_tracked(&f->mmu, gtable(f, cr3, VA, l) + 0xff8));
	}
	assert_false(sh_mmu_is_tracked(&f->mmu, GPA_4K));
	assert_false(sh_mmu_is_tracked(&f->mmu, gtable(f, cr3, 0x40000000, 2)));
	assert_int_equal(f->mmu.pt.n, 4);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40000000, HW_READ, &w), SH_FILLED);
	assert_true(sh_mmu_is_tracked(&f->mmu, gtable(f, cr3, 0x40000000, 2)));
	assert_int_equal(f->mmu.pt.n, 6);
	assert_false(sh_mmu_is_tracked(&f->mmu, GPA_2M));
}

/* Finding a new table page starts a new epoch: a fresh root, so no old writable mapping of
 * the page survives. Known tables do not. */
static void test_new_table_new_epoch(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), x = new_table(f), pdpt, root, e;
	const uint64_t va_x = 0x2000, va_b = 0x40000000;
	struct sh_walk w;

	map(f, cr3, va_x, x, 1, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_x, HW_WRITE, &w), SH_FILLED);
	assert_int_equal(f->mmu.st.epochs, 1);
	assert_int_equal(f->mmu.st.invalidations, 1);
	root = cur_root(f, cr3);
	assert_true(sleaf(f, root, va_x, NULL) & PTE_W);
	/* Known tables: no new epoch. */
	map(f, cr3, va_x + 0x1000, GPA_4K, 1, PTE_P);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_x + 0x1000, HW_READ, &w), SH_FILLED);
	assert_int_equal(f->mmu.st.epochs, 1);
	assert_int_equal(cur_root(f, cr3), root);
	/* x becomes a page directory (the PDPT was written by an emulated store, after which
	 * the engine flushes) and the shadow maps x writable again before any walk uses it. */
	pdpt = gtable(f, cr3, va_b, 3);
	*gent(f, pdpt, vidx(va_b, 3)) = x | TBL;
	sh_mmu_flush(&f->mmu);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_x, HW_WRITE, &w), SH_FILLED);
	root = cur_root(f, cr3);
	assert_true(sleaf(f, root, va_x, NULL) & PTE_W);
	*gent(f, x, 0) = GPA_2M | PTE_P | PTE_PS;
	/* The first walk through x: new epoch, the writable mapping of x is gone. */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_b, HW_READ, &w), SH_FILLED);
	assert_int_equal(f->mmu.st.invalidations, 2);
	assert_int_equal(f->mmu.st.epochs, 3);
	assert_true(sh_mmu_is_tracked(&f->mmu, x));
	assert_true(cur_root(f, cr3) != root);
	root = cur_root(f, cr3);
	assert_int_equal(sleaf(f, root, va_x, NULL), 0);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_x, HW_READ, &w), SH_FILLED);
	e = sleaf(f, root, va_x, NULL);
	assert_int_equal(e & (PTE_ADDR | PTE_P | PTE_W), x | PTE_P);
}

/* A shadow leaf of a tracked page is read-only, whatever g allows; a write is handed to the
 * engine (SH_TRACKED_WRITE). */
static void test_tracked_page_read_only(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), pt, e;
	const uint64_t va_t = 0x300000;
	struct sh_walk w;

	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
	pt = gtable(f, cr3, VA, 1);
	/* The guest maps its own PT (and PML4) writable and dirty. */
	map(f, cr3, va_t, pt, 1, PTE_P | PTE_W | PTE_D);
	map(f, cr3, va_t + 0x1000, cr3, 1, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t + 8, HW_READ, &w), SH_FILLED);
	e = sleaf(f, cur_root(f, cr3), va_t, NULL);
	assert_int_equal(e & (PTE_ADDR | PTE_P | PTE_W), pt | PTE_P);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t + 8, HW_WRITE | PF_P, &w),
	                 SH_TRACKED_WRITE);
	assert_int_equal(w.gpa, pt + 8);
	assert_int_equal(f->mmu.st.tracked_writes, 1);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t + 0x1ff8, HW_READ, &w), SH_FILLED);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t + 0x1ff8, HW_WRITE | PF_P, &w),
	                 SH_TRACKED_WRITE);
	assert_int_equal(w.gpa, cr3 + 0xff8);
	assert_int_equal(f->mmu.st.tracked_writes, 2);
	e = sleaf(f, cur_root(f, cr3), va_t + 0x1000, NULL);
	assert_int_equal(e & (PTE_ADDR | PTE_P | PTE_W), cr3 | PTE_P);
	/* Through a 2 MiB guest page too. */
	map(f, cr3, 0x40000000, 0, 2, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40000000 + pt, HW_WRITE, &w),
	                 SH_TRACKED_WRITE);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40000000 + pt, HW_READ, &w), SH_FILLED);
	e = sleaf(f, cur_root(f, cr3), 0x40000000 + pt, NULL);
	assert_int_equal(e & (PTE_ADDR | PTE_W), pt);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x40100000, HW_WRITE, &w), SH_FILLED);
	e = sleaf(f, cur_root(f, cr3), 0x40100000, NULL);
	assert_int_equal(e & (PTE_ADDR | PTE_W), 0x100000 | PTE_W);
	/* Reads of it are not emulated. */
	assert_int_equal(f->mmu.st.tracked_writes, 3);
}

/* The engine's single step over a page-table write: exempt + untracked, the page maps
 * writable and is not tracked again until the exemption ends; then a new epoch protects
 * it again. */
static void test_untrack_exempt(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), pt, e, n, inv;
	const uint64_t va_t = 0x300000;
	struct sh_walk w;

	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W | PTE_D);
	map(f, cr3, va_t, 0, 1, PTE_P | PTE_W);
	pt = gtable(f, cr3, VA, 1);
	*gpath(f, cr3, va_t, 1) = pt | PTE_P | PTE_W;
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t, HW_WRITE, &w), SH_TRACKED_WRITE);
	n = f->mmu.pt.n;
	inv = f->mmu.st.invalidations;
	f->mmu.pt.exempt = pt >> 12;
	sh_mmu_untrack(&f->mmu, pt);
	assert_false(sh_mmu_is_tracked(&f->mmu, pt));
	assert_int_equal(f->mmu.pt.n, n - 1);
	sh_mmu_untrack(&f->mmu, pt); /* not tracked: nothing */
	sh_mmu_untrack(&f->mmu, 0x7000000);
	assert_int_equal(f->mmu.pt.n, n - 1);
	for (int l = 4; l >= 2; l--)
		assert_true(sh_mmu_is_tracked(&f->mmu, gtable(f, cr3, VA, l)));
	sh_mmu_flush(&f->mmu);
	/* A walk through pt (VA's) does not track it again; the write maps it writable. */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
	assert_false(sh_mmu_is_tracked(&f->mmu, pt));
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t, HW_WRITE, &w), SH_FILLED);
	assert_false(sh_mmu_is_tracked(&f->mmu, pt));
	e = sleaf(f, cur_root(f, cr3), va_t, NULL);
	assert_int_equal(e & (PTE_ADDR | PTE_W), pt | PTE_W);
	assert_int_equal(f->mmu.st.invalidations, inv);
	/* The step is over: the next walk through pt tracks it, in a new epoch. */
	f->mmu.pt.exempt = f->no_exempt;
	sh_mmu_flush(&f->mmu);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t, HW_READ, &w), SH_FILLED);
	assert_false(sh_mmu_is_tracked(&f->mmu, pt)); /* va_t's walk does not pass pt */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
	assert_true(sh_mmu_is_tracked(&f->mmu, pt));
	assert_int_equal(f->mmu.st.invalidations, inv + 1);
	assert_int_equal(sleaf(f, cur_root(f, cr3), va_t, NULL), 0); /* new root */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t, HW_READ, &w), SH_FILLED);
	e = sleaf(f, cur_root(f, cr3), va_t, NULL);
	assert_int_equal(e & (PTE_ADDR | PTE_W), pt);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t, HW_WRITE | PF_P, &w), SH_TRACKED_WRITE);
}

/* The engine loop end to end: a guest edits its own page table through a writable-looking
 * mapping; every store is emulated and the new mapping is seen right after. */
static void test_guest_edits_page_table(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), pt, v = 0;
	const uint64_t va_t = 0x300000, va_new = 0x205000; /* both in one PT */
	uint32_t gerr = 0;

	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W | PTE_D);
	map(f, cr3, va_t, 0, 1, PTE_P | PTE_W);
	pt = gtable(f, cr3, va_t, 1);
	*gpath(f, cr3, va_t, 1) = pt | PTE_P | PTE_W;
	assert_int_equal(gstore(f, cr3, VA, 0x1122334455667788ULL), ACC_OK);
	assert_int_equal(*(uint64_t *)(f->ram + GPA_4K + (VA & 0xfff)), 0x1122334455667788ULL);
	assert_int_equal(guest_access(f, cr3, va_new, K_READ, &v, &gerr), ACC_PF);
	assert_int_equal(gerr, 0);
	assert_int_equal(gstore(f, cr3, va_t + 8 * vidx(va_new, 1), GPA_4K | PTE_P | PTE_W),
	                 ACC_OK);
	assert_int_equal(f->mmu.st.tracked_writes, 1);
	assert_int_equal(guest_access(f, cr3, va_new + (VA & 0xfff), K_READ, &v, NULL), ACC_OK);
	assert_int_equal(v, 0x1122334455667788ULL);
	/* Unmapping is seen too. */
	assert_int_equal(gstore(f, cr3, va_t + 8 * vidx(va_new, 1), 0), ACC_OK);
	assert_int_equal(f->mmu.st.tracked_writes, 2);
	assert_int_equal(guest_access(f, cr3, va_new, K_READ, &v, &gerr), ACC_PF);
	assert_true(sh_mmu_is_tracked(&f->mmu, pt));
}

/* ======================================================================================
 * Bugs: these assert the correct behaviour and fail against the current shadow_mmu.c
 * ====================================================================================== */

/* A page table at guest-physical page 0 must be write-protected like any other.
 * (m->exempt uses 0 for "none", which is also page 0: track() never tracks it.) */
static void test_table_at_page_zero_tracked(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), e;
	const uint64_t va_t = 0x300000;
	struct sh_walk w;

	map(f, cr3, VA, GPA_4K, 1, PTE_P | PTE_W | PTE_D);
	*gpath(f, cr3, VA, 2) = 0 | TBL; /* the PT is page 0 */
	memset(f->ram, 0, SIZE_4K);
	*gent(f, 0, vidx(VA, 1)) = GPA_4K | PTE_P | PTE_W | PTE_D;
	map(f, cr3, va_t, 0, 1, PTE_P | PTE_W | PTE_D);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, VA, HW_READ, &w), SH_FILLED);
	assert_int_equal(w.gpa, GPA_4K | (VA & 0xfff));
	assert_true(sh_mmu_is_tracked(&f->mmu, 0));
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t, HW_READ, &w), SH_FILLED);
	e = sleaf(f, cur_root(f, cr3), va_t, NULL);
	assert_int_equal(e & PTE_W, 0);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_t, HW_WRITE | PF_P, &w), SH_TRACKED_WRITE);
}

/* A walk that fails can still discover a new table page (it tracks every table it
 * reads); shadow leaves that map that page writable must go like after a successful walk. */
static void test_failed_walk_new_table(void **state)
{
	struct fx *f = *state;
	uint64_t cr3 = new_table(f), x = new_table(f), root, e;
	const uint64_t va_x = 0x2000, va_b = 0x40000000;
	struct sh_walk w;

	map(f, cr3, va_x, x, 1, PTE_P | PTE_W | PTE_D);
	map(f, cr3, 0x1000, GPA_4K, 1, PTE_P);
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, 0x1000, HW_READ, &w), SH_FILLED);
	/* x becomes a page directory; its entries are all empty for now. */
	*gent(f, gtable(f, cr3, va_b, 3), vidx(va_b, 3)) = x | TBL;
	sh_mmu_flush(&f->mmu); /* the engine flushes after an emulated table write */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_x, HW_WRITE, &w), SH_FILLED);
	assert_true(sleaf(f, cur_root(f, cr3), va_x, NULL) & PTE_W);
	/* The first walk through x faults (x[0] not present) but tracks x. */
	assert_int_equal(sh_mmu_fault(&f->mmu, cr3, va_b, HW_READ, &w), SH_GUEST_FAULT);
	assert_true(sh_mmu_is_tracked(&f->mmu, x));
	root = cur_root(f, cr3);
	e = sleaf(f, root, va_x, NULL);
	/* Expected: no writable shadow mapping of a tracked page. */
	assert_int_equal(e & PTE_W, 0);
}

/* Writes outside the pool must never happen. Scenario, driven by guest actions only (see
 * test_failed_walk_new_table): a table page stays writable in the shadow; the guest turns a
 * 2 MiB leaf of it into a pointer to a known page table; the next fault in that range fills
 * a 4 KiB entry "below" the shadow's 2 MiB leaf, taking the leaf's guest address for a pool
 * page: hearth writes 8 guest-chosen bytes at pool + (g - SH_POOL_GPA). */
static int child_guest_turns_2m_into_table(struct fx *f)
{
	uint64_t cr3 = new_table(f), x = new_table(f), pdpt, g, pt0;
	const uint64_t va_x = 0x2000, va_p = 0x3000, va_a = 0x40000000;
	uint8_t *canary;

	g = canary_gpa(f, &canary);
	if (!g)
		g = SH_MON_GPA - 512 * SIZE_2M;
	map(f, cr3, va_x, x, 1, PTE_P | PTE_W);
	pdpt = gtable(f, cr3, va_x, 3);
	map(f, cr3, va_p, pdpt, 1, PTE_P | PTE_W); /* the guest's view of its PDPT */
	pt0 = gtable(f, cr3, va_x, 1);
	map(f, cr3, 0x5000, GPA_4K, 1, PTE_P | PTE_W); /* pt0[5] */
	if (gstore(f, cr3, va_x, 0) != ACC_OK)
		return 10;
	/* Install x as the page directory for [1 GiB, 2 GiB): an emulated store. */
	if (gstore(f, cr3, va_p + 8 * vidx(va_a, 3), x | PTE_P | PTE_W) != ACC_OK)
		return 11;
	if (gstore(f, cr3, va_x, 0) != ACC_OK) /* x mapped writable again: not a table yet */
		return 12;
	if (guest_access(f, cr3, va_a, K_READ, NULL, NULL) != ACC_PF) /* x[0] empty; x tracked */
		return 13;
	/* x[0] = a clean 2 MiB page at g; then read it: a 2 MiB shadow leaf at g. */
	if (gstore(f, cr3, va_x, g | PTE_P | PTE_W | PTE_PS) != ACC_OK)
		return 14;
	if (guest_access(f, cr3, va_a, K_READ, NULL, NULL) != ACC_OK)
		return 15;
	/* x[0] = pt0 (already tracked), then write va_a + 5 pages, through pt0[5]. */
	if (gstore(f, cr3, va_x, pt0 | PTE_P | PTE_W) != ACC_OK)
		return 16;
	gstore(f, cr3, va_a + 5 * SIZE_4K, 0);
	return canary_intact(canary) ? 0 : 1;
}

static void test_guest_turns_2m_into_table(void **state)
{
	assert_int_equal(isolated(child_guest_turns_2m_into_table, *state), 0);
}

/* The same wild write without the epoch bug, when g changes without a store the shadow
 * sees (a device's DMA into a page table, or an engine-emulated store that goes through
 * sh_mmu_translate, which checks no tracking): a fill must not follow a 2 MiB shadow leaf
 * as if it were a table. */
static int child_stale_2m_leaf(struct fx *f)
{
	uint64_t cr3 = new_table(f), g, pt0;
	const uint64_t va_a = 0x40000000;
	struct sh_walk w;
	uint8_t *canary;

	g = canary_gpa(f, &canary);
	if (!g)
		g = SH_MON_GPA - 512 * SIZE_2M;
	map(f, cr3, 0x5000, GPA_4K, 1, PTE_P | PTE_W);
	pt0 = gtable(f, cr3, 0x5000, 1);
	map(f, cr3, va_a, g, 2, PTE_P | PTE_W);
	if (sh_mmu_fault(&f->mmu, cr3, 0x5000, HW_READ, &w) != SH_FILLED)
		return 10;
	if (sh_mmu_fault(&f->mmu, cr3, va_a, HW_READ, &w) != SH_FILLED)
		return 11;
	*gpath(f, cr3, va_a, 2) = pt0 | PTE_P | PTE_W; /* not seen by the shadow */
	sh_mmu_fault(&f->mmu, cr3, va_a + 5 * SIZE_4K, HW_WRITE | PF_P, &w);
	return canary_intact(canary) ? 0 : 1;
}

static void test_stale_2m_leaf_no_wild_write(void **state)
{
	assert_int_equal(isolated(child_stale_2m_leaf, *state), 0);
}

/* Guest paging off (the identity key) and an address in the monitor's PML4 slot: a guest
 * that loads a 64-bit code segment with CR0.PG clear (its descriptors are mirrored as they
 * are) can fault there. The fill must not descend into the monitor's own tables. */
static int child_identity_monitor_slot(struct fx *f)
{
	struct sh_walk w;
	enum sh_fault_result r;
	uint64_t root = cur_root(f, SH_KEY_IDENTITY);

	r = sh_mmu_fault(&f->mmu, SH_KEY_IDENTITY, SH_MON_VA + 0x1000, HW_READ | PF_P, &w);
	if (r == SH_FILLED)
		return 2;
	if (spage(f, root)[SH_MON_PML4_SLOT] != MON_ENTRY)
		return 3;
	return 0;
}

static void test_identity_monitor_slot(void **state)
{
	assert_int_equal(isolated(child_identity_monitor_slot, *state), 0);
}

/* The monitor goes inside the host's guest-physical width, above all of the guest. */
static void test_monitor_place(void **state)
{
	struct error err = {""};
	uint64_t gpa;

	(void)state;
	assert_int_equal(sh_monitor_place(48, 4ULL << 30, &gpa, &err), 0);
	assert_int_equal(gpa, SH_MON_GPA_DEFAULT);
	assert_int_equal(sh_monitor_place(52, 4ULL << 30, &gpa, &err), 0);
	assert_int_equal(gpa, SH_MON_GPA_DEFAULT);
	assert_int_equal(sh_monitor_place(40, 4ULL << 30, &gpa, &err), 0);
	assert_int_equal(gpa, (1ULL << 40) - SH_MON_SPAN);
	assert_true(gpa + SH_MON_SIZE + (uint64_t)SH_POOL_PAGES * 4096 <= 1ULL << 40);
	assert_int_equal(sh_monitor_place(39, 4ULL << 30, &gpa, &err), 0);
	assert_int_equal(gpa, (1ULL << 39) - SH_MON_SPAN);
	assert_int_equal(gpa % SH_MON_SIZE, 0);
	/* Guest RAM up to the top of a 39-bit space leaves no room. */
	assert_int_equal(sh_monitor_place(39, (1ULL << 39) - (32ULL << 20), &gpa, &err), -1);
	assert_non_null(strstr(err.msg, "39-bit"));
	assert_int_equal(sh_monitor_place(20, 4ULL << 30, &gpa, &err), -1);
	assert_int_equal(sh_monitor_place(64, 4ULL << 30, &gpa, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_monitor_place),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(test_walk_4k),
	    T(test_walk_2m),
	    T(test_walk_1g),
	    T(test_walk_rw_combinations),
	    T(test_walk_nx_combinations),
	    T(test_walk_not_present),
	    T(test_walk_reserved),
	    T(test_walk_noncanonical),
	    T(test_walk_accessed_dirty),
	    T(test_translate_no_side_effects),
	    T(test_walk_table_outside_ram),
	    T(test_translate_identity),
	    T(test_fill_4k),
	    T(test_fill_upper_level_rw),
	    T(test_fill_2m),
	    T(test_fill_2m_over_4k_table),
	    T(test_fill_1g),
	    T(test_monitor_slot),
	    T(test_bad_gpa),
	    T(test_root_hit_miss),
	    T(test_root_lru),
	    T(test_flush_fresh_pages),
	    T(test_pool_reload),
	    T(test_pool_reload_during_fill),
	    T(test_tables_tracked),
	    T(test_new_table_new_epoch),
	    T(test_tracked_page_read_only),
	    T(test_untrack_exempt),
	    T(test_guest_edits_page_table),
	    T(test_table_at_page_zero_tracked),
	    T(test_failed_walk_new_table),
	    T(test_guest_turns_2m_into_table),
	    T(test_stale_2m_leaf_no_wild_write),
	    T(test_identity_monitor_slot),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
