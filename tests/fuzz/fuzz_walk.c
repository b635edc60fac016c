/*
 * libFuzzer target: random guest page tables for the shadow MMU (vmm/shadow_mmu.c).
 *
 * Guest RAM is 1 MiB, zeroed; the input is a header and a list of operations that write
 * page-table entries, switch CR3 / NXE / WP, and make guest accesses. Accesses go through
 * a model of the CPU: it walks the shadow tables as hardware does for a CPL3 access and,
 * on a miss, calls sh_mmu_fault and handles the result as engine_shadow.c does, so the
 * guest can also edit its own page tables: a store to a tracked page is either emulated
 * (emulate_pt_store: a new epoch only when a present entry changes) or stepped with the page
 * exempt, then flushed. Checked after every step:
 *   - no crash, no access outside guest RAM or the pool (ASan / UBSan);
 *   - sh_mmu_translate agrees with an independent reference walk (written from the SDM);
 *   - sh_mmu_fault's verdict agrees with the reference walk, and SH_FILLED makes the access
 *     succeed in the shadow (unless the pool was just recycled);
 *   - every shadow entry of the current root: tables inside the pool, the monitor slot
 *     intact, only 4 KiB / 2 MiB leaves, and no leaf more permissive than g: same frame,
 *     W only when g allows the write and the page is dirty and no page table is in it,
 *     executable only when g allows it.
 * Writes to guest RAM that the shadow cannot see (like a device's DMA) are followed by a
 * flush, as the design requires.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/guest_memory.h"
#include "backend/kvm/shadow.h"
#include "backend/kvm/shadow_mmu.h"
#include "backend/kvm/shadow_monitor.h"

#define RAM_SIZE    (1u << 20)
#define RAM_PAGES   (RAM_SIZE >> 12)
#define SZ_4K       0x1000ULL
#define SZ_2M       0x200000ULL
#define SZ_1G       0x40000000ULL
#define SH_MON_GPA  SH_MON_GPA_DEFAULT
#define SH_POOL_GPA (SH_MON_GPA + SH_MON_SIZE)
#define POOL_END    (SH_POOL_GPA + (uint64_t)SH_POOL_PAGES * SZ_4K)
#define MON_ENTRY   ((SH_MON_GPA + SH_OFF_PDPT) | PTE_P | PTE_W)

static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static struct guest_memory gm;
static struct sh_monitor mon;
static struct sh_mmu mmu;
static uint64_t no_exempt; /* mmu.pt.exempt when no page is exempt */

static void fail(const char *what, uint64_t key, uint64_t va)
{
	fprintf(stderr, "fuzz_walk: %s (key 0x%llx, va 0x%llx)\n", what, (unsigned long long)key,
	        (unsigned long long)va);
	abort();
}

/* ---- input ---------------------------------------------------------------------------- */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t get(struct in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		v |= (uint64_t)(in->n ? *in->p : 0) << (8 * i);
		if (in->n) {
			in->p++;
			in->n--;
		}
	}
	return v;
}

/* ---- the reference walk --------------------------------------------------------------- */

enum kind { K_READ, K_WRITE, K_FETCH };

struct ref {
	uint64_t gpa, size;
	bool writable, executable, dirty;
	uint32_t err;
};

static unsigned vidx(uint64_t va, int level)
{
	return (unsigned)(va >> (12 + 9 * (level - 1))) & 511;
}

/* 4-level paging for a supervisor access, 48-bit physical addresses; tables outside RAM
 * and non-canonical addresses count as not present (hearth's conventions). */
static bool ref_walk(uint64_t key, uint64_t va, enum kind k, struct ref *r)
{
	uint32_t err = (k == K_WRITE ? PF_W : 0) | (k == K_FETCH && mmu.nxe ? PF_I : 0);
	uint64_t table = key & PTE_ADDR;
	bool w = true, x = true;

	memset(r, 0, sizeof(*r));
	if (key == SH_KEY_IDENTITY) {
		r->gpa = va & 0xffffffffULL;
		r->size = SZ_2M;
		r->writable = r->executable = r->dirty = true;
		return true;
	}
	if (((int64_t)va >> 47) != 0 && ((int64_t)va >> 47) != -1) {
		r->err = err;
		return false;
	}
	for (int l = 4; l >= 1; l--) {
		uint64_t a = table + 8ULL * vidx(va, l), e, rsvd;
		bool leaf;

		if (a + 8 > RAM_SIZE) {
			r->err = err;
			return false;
		}
		memcpy(&e, ram + a, 8);
		if (!(e & PTE_P)) {
			r->err = err;
			return false;
		}
		leaf = l == 1 || (l <= 3 && (e & PTE_PS));
		rsvd = (0xfULL << 48) | (mmu.nxe ? 0 : PTE_NX);
		if (l == 4)
			rsvd |= PTE_PS;
		else if (leaf && l == 3)
			rsvd |= ((1ULL << 30) - 1) & ~0x1fffULL; /* 29:13 */
		else if (leaf && l == 2)
			rsvd |= ((1ULL << 21) - 1) & ~0x1fffULL; /* 20:13 */
		if (e & rsvd) {
			r->err = err | PF_P | PF_RSVD;
			return false;
		}
		w = w && (e & PTE_W);
		x = x && !(mmu.nxe && (e & PTE_NX));
		if (leaf) {
			r->size = l == 1 ? SZ_4K : l == 2 ? SZ_2M : SZ_1G;
			r->gpa = (e & PTE_ADDR & ~(r->size - 1)) | (va & (r->size - 1));
			r->writable = w || !mmu.wp;
			r->executable = x;
			if ((k == K_WRITE && !r->writable) || (k == K_FETCH && !x)) {
				r->err = err | PF_P;
				return false;
			}
			r->dirty = k == K_WRITE || (e & PTE_D);
			return true;
		}
		table = e & PTE_ADDR;
	}
	return false;
}

static void check_translate(uint64_t key, uint64_t va)
{
	for (int write = 0; write <= 1; write++) {
		struct sh_walk w;
		struct ref r;
		bool ok = sh_mmu_translate(&mmu, key, va, write, &w);

		if (ok != ref_walk(key, va, write ? K_WRITE : K_READ, &r))
			fail("translate: success differs from the reference", key, va);
		if (!ok && w.fault_error != r.err)
			fail("translate: error code differs from the reference", key, va);
		if (ok && (w.gpa != r.gpa || w.page_size != r.size || w.writable != r.writable ||
		           w.executable != r.executable || w.dirty != r.dirty))
			fail("translate: result differs from the reference", key, va);
	}
}

/* ---- the shadow ----------------------------------------------------------------------- */

static bool in_pool(uint64_t gpa)
{
	return gpa >= SH_POOL_GPA && gpa < POOL_END && !(gpa & 0xfff);
}

static uint64_t *spage(uint64_t gpa)
{
	return (uint64_t *)(mon.pool + ((gpa - SH_POOL_GPA) >> 12) * SZ_4K);
}

static bool range_tracked(uint64_t base, uint64_t size)
{
	for (uint64_t a = base; a < base + size && a < RAM_SIZE; a += SZ_4K)
		if (sh_mmu_is_tracked(&mmu, a) && (a >> 12) != mmu.pt.exempt)
			return true;
	return false;
}

/* A shadow leaf at `level` (1 or 2) mapping va: never more than g allows. */
static void check_leaf(uint64_t key, uint64_t va, uint64_t e, int level)
{
	uint64_t size = level == 1 ? SZ_4K : SZ_2M;
	struct ref r;

	if (!(e & PTE_U))
		fail("shadow leaf without U", key, va);
	if (!ref_walk(key, va, K_READ, &r))
		fail("shadow maps an address g does not", key, va);
	if (r.size < size)
		fail("shadow leaf larger than g's page", key, va);
	if ((e & PTE_ADDR & ~(size - 1)) != (r.gpa & ~(size - 1)))
		fail("shadow leaf maps another frame than g", key, va);
	if (r.gpa >= SH_MON_GPA)
		fail("shadow maps hearth's memory", key, va);
	if ((e & PTE_W) && !(r.writable && r.dirty))
		fail("shadow leaf writable where g is read-only or clean", key, va);
	if ((e & PTE_W) && range_tracked(r.gpa & ~(size - 1), size))
		fail("shadow leaf writable over a guest page table", key, va);
	if (!(e & PTE_NX) && !r.executable)
		fail("shadow leaf executable where g is not", key, va);
}

static uint64_t canon(uint64_t va)
{
	return (uint64_t)((int64_t)(va << 16) >> 16);
}

/* Every entry of the root's tree. */
static void check_tree(uint64_t key, uint64_t root)
{
	uint64_t *p4;

	if (!in_pool(root))
		fail("root outside the pool", key, 0);
	p4 = spage(root);
	if (p4[SH_MON_PML4_SLOT] != MON_ENTRY)
		fail("monitor slot changed", key, 0);
	for (unsigned i4 = 0; i4 < 512; i4++) {
		uint64_t e4 = p4[i4], *p3;

		if (i4 == SH_MON_PML4_SLOT || !(e4 & PTE_P))
			continue;
		if ((e4 & PTE_PS) || !in_pool(e4 & PTE_ADDR))
			fail("PML4 entry is no pool table", key, (uint64_t)i4 << 39);
		p3 = spage(e4 & PTE_ADDR);
		for (unsigned i3 = 0; i3 < 512; i3++) {
			uint64_t e3 = p3[i3], *p2;

			if (!(e3 & PTE_P))
				continue;
			if ((e3 & PTE_PS) || !in_pool(e3 & PTE_ADDR))
				fail("shadow 1 GiB leaf, or PDPT entry outside the pool", key, 0);
			p2 = spage(e3 & PTE_ADDR);
			for (unsigned i2 = 0; i2 < 512; i2++) {
				uint64_t e2 = p2[i2], *p1;
				uint64_t va2 = canon((uint64_t)i4 << 39 | (uint64_t)i3 << 30 |
				                     (uint64_t)i2 << 21);

				if (!(e2 & PTE_P))
					continue;
				if (e2 & PTE_PS) {
					check_leaf(key, va2, e2, 2);
					continue;
				}
				if (!in_pool(e2 & PTE_ADDR))
					fail("PD entry outside the pool", key, va2);
				p1 = spage(e2 & PTE_ADDR);
				for (unsigned i1 = 0; i1 < 512; i1++)
					if (p1[i1] & PTE_P)
						check_leaf(key, va2 | (uint64_t)i1 << 12, p1[i1],
						           1);
			}
		}
	}
}

/* The CPU's check of a CPL3 access in the shadow; *err: the real #PF error code. */
static bool shadow_hw(uint64_t root, uint64_t va, enum kind k, uint64_t *gpa, uint32_t *err)
{
	uint64_t table = root;
	bool w = true, nx = false;
	uint32_t base = PF_U | (k == K_WRITE ? PF_W : 0) | (k == K_FETCH ? PF_I : 0);

	for (int l = 4; l >= 1; l--) {
		uint64_t e, size;

		if (!in_pool(table))
			fail("shadow table outside the pool", root, va);
		e = spage(table)[vidx(va, l)];
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
			size = l == 1 ? SZ_4K : l == 2 ? SZ_2M : SZ_1G;
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

/* One 8-byte access by the guest (va 8-aligned), with hearth's fault handling; `emulate`:
 * a store to a page table is one engine_shadow.c decodes (a plain mov). */
static void access(uint64_t key, uint64_t va, enum kind k, uint64_t val, bool emulate, int depth)
{
	for (int tries = 0; tries < 4; tries++) {
		uint64_t root = sh_mmu_root(&mmu, key), gpa, reloads = mmu.st.reloads;
		uint32_t err;
		struct sh_walk w;
		struct ref r;
		bool ok;
		enum sh_fault_result res;

		if (shadow_hw(root, va, k, &gpa, &err)) {
			void *h = gm_ptr(&gm, gpa, 8);

			if (h && k == K_WRITE)
				memcpy(h, &val, 8);
			return;
		}
		ok = ref_walk(key, va, k, &r);
		res = sh_mmu_fault(&mmu, key, va, err, &w);
		switch (res) {
		case SH_FILLED:
			if (!ok)
				fail("filled an access g refuses", key, va);
			if (mmu.st.reloads == reloads &&
			    !shadow_hw(sh_mmu_root(&mmu, key), va, k, &gpa, &err))
				fail("filled, but the access still faults", key, va);
			break;
		case SH_GUEST_FAULT:
			if (ok)
				fail("guest fault where g allows the access", key, va);
			if (w.fault_error != r.err)
				fail("fault error code differs from the reference", key, va);
			return;
		case SH_TRACKED_WRITE:
			if (k != K_WRITE || !ok || w.gpa != r.gpa ||
			    !sh_mmu_is_tracked(&mmu, w.gpa))
				fail("tracked write that is none", key, va);
			if (depth)
				fail("tracked write while the page is exempt", key, va);
			if (emulate) {
				uint64_t old, *p = gm_ptr(&gm, w.gpa, 8);

				if (!p)
					fail("tracked page outside RAM", key, va);
				memcpy(&old, p, 8);
				if ((old & PTE_P) && old != val)
					sh_mmu_flush(&mmu);
				memcpy(p, &val, 8);
				return;
			}
			mmu.pt.exempt = w.gpa >> 12;
			sh_mmu_untrack(&mmu, w.gpa);
			sh_mmu_flush(&mmu);
			access(key, va, k, val, false, 1);
			mmu.pt.exempt = no_exempt;
			sh_mmu_flush(&mmu);
			return;
		case SH_BAD_GPA:
			if (vidx(va, 4) != SH_MON_PML4_SLOT && !(ok && r.gpa >= SH_MON_GPA))
				fail("bad GPA for an ordinary address", key, va);
			return;
		default:
			fail("unknown fault result", key, va);
		}
	}
}

/* ---- the driver ----------------------------------------------------------------------- */

/* An entry value with the input's flag bits: a page of RAM, or a large page's frame. */
static uint64_t entry(struct in *in, bool raw)
{
	uint64_t v = get(in, 8);

	if (raw)
		return v;
	if ((v & PTE_PS) && (v & 0x100)) /* a large page, aligned, mostly beyond RAM */
		return (v & 0x8000000000000fffULL) | ((v >> 12) % 64) << 21;
	return (v & 0x8000000000000fffULL) | ((v >> 12) % RAM_PAGES) << 12;
}

static uint64_t vaddr(struct in *in, bool identity)
{
	static const unsigned pick[] = {0, 1, 2, 3, 255, 256, 509, 511};
	uint64_t c = get(in, 2), va = 0;

	if (c & 0x8000)
		return get(in, 8) & ~7ULL; /* anything, canonical or not */
	if (identity)
		return get(in, 4) & ~7ULL; /* guest paging off: 32-bit code, mostly */
	for (int l = 4; l >= 1; l--) {
		unsigned i = (c & 1) ? pick[(c >> 1) & 7] : (unsigned)get(in, 2) & 511;

		c >>= 4;
		va |= (uint64_t)i << (12 + 9 * (l - 1));
	}
	va |= get(in, 2) & 0xff8;
	return canon(va);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct in in = {data, size};
	uint64_t key, hdr;
	bool raw;

	if (!ready) {
		struct error err;

		if (sh_monitor_init(&mon, 1, SH_MON_GPA, &err))
			abort();
		gm_wrap(&gm, ram, RAM_SIZE);
		ready = true;
	}
	memset(ram, 0, sizeof(ram));
	sh_mmu_init(&mmu, &mon, &gm, -1);
	no_exempt = mmu.pt.exempt;
	hdr = get(&in, 2);
	mmu.nxe = hdr & 1;
	mmu.wp = !(hdr & 2);
	raw = hdr & 4;
	key = ((hdr >> 8) % RAM_PAGES) << 12;

	for (int op = 0; op < 256 && in.n; op++) {
		unsigned c = (unsigned)get(&in, 1);
		uint64_t va;

		switch (c % 8) {
		case 0:
		case 1: { /* write an entry behind the shadow's back (then flush) */
			uint64_t idx = get(&in, 3) % (RAM_SIZE / 8), v = entry(&in, raw && (c & 8));

			memcpy(ram + idx * 8, &v, 8);
			sh_mmu_flush(&mmu);
			break;
		}
		case 2: /* a guest store: possibly into its own page tables */
			va = vaddr(&in, key == SH_KEY_IDENTITY);
			access(key, va, K_WRITE, entry(&in, raw && (c & 8)), c & 0x10, 0);
			check_translate(key, va);
			break;
		case 3:
		case 4: /* a guest load or fetch */
			va = vaddr(&in, key == SH_KEY_IDENTITY);
			access(key, va, (c & 8) ? K_FETCH : K_READ, 0, false, 0);
			check_translate(key, va);
			break;
		case 5: /* another address space */
			if (c & 0x80)
				key = SH_KEY_IDENTITY;
			else
				key = (get(&in, 1) % RAM_PAGES) << 12;
			break;
		case 6: /* EFER.NXE / CR0.WP: the engine flushes */
			mmu.nxe = c & 0x10;
			mmu.wp = !(c & 0x20);
			sh_mmu_flush(&mmu);
			break;
		case 7:
			check_translate(key, vaddr(&in, key == SH_KEY_IDENTITY));
			break;
		}
		check_tree(key, sh_mmu_root(&mmu, key));
	}
	return 0;
}
