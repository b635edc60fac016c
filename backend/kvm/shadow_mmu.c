#include "shadow_mmu.h"

#include <string.h>

#include "vmm/layout.h"

#define SIZE_4K PAGE_4K
#define SIZE_2M PAGE_2M

void sh_mmu_init(struct sh_mmu *m, struct sh_monitor *mon, const struct guest_memory *gm, int vm_fd)
{
	memset(m, 0, sizeof(*m));
	pt_tracker_init(&m->pt);
	m->mon = mon;
	m->gm = gm;
	m->vm_fd = vm_fd;
	m->wp = true;
}

static uint64_t *pool_page(struct sh_mmu *m, uint64_t idx)
{
	return (uint64_t *)(m->mon->pool + idx * SIZE_4K);
}

static uint64_t pool_gpa(const struct sh_mmu *m, uint64_t idx)
{
	return sh_pool_gpa(m->mon) + idx * SIZE_4K;
}

void sh_mmu_flush(struct sh_mmu *m)
{
	for (int i = 0; i < SH_ROOTS; i++)
		m->roots[i].valid = false;
	m->epoch++;
	m->st.epochs++;
}

/* A page KVM has never seen (since the last pool reload), zeroed. Returns UINT64_MAX when
 * the pool had to be recycled: every root is gone and the caller must start over. */
static uint64_t alloc_page(struct sh_mmu *m)
{
	uint64_t idx;

	if (m->pool_next >= SH_POOL_PAGES) {
		sh_mmu_flush(m);
		sh_monitor_reload_pool(m->mon, m->vm_fd);
		m->st.reloads++;
		m->pool_next = 0;
		return UINT64_MAX;
	}
	idx = m->pool_next++;
	memset(pool_page(m, idx), 0, SIZE_4K);
	return idx;
}

static uint64_t new_root(struct sh_mmu *m)
{
	uint64_t idx = alloc_page(m);

	if (idx == UINT64_MAX)
		idx = alloc_page(m); /* a fresh pool always has a page */
	/* Every root maps the monitor, supervisor-only. */
	pool_page(m, idx)[SH_MON_PML4_SLOT] = (m->mon->gpa + SH_OFF_PDPT) | PTE_P | PTE_W;
	return idx;
}

uint64_t sh_mmu_root(struct sh_mmu *m, uint64_t key)
{
	struct sh_root *lru = &m->roots[0];

	m->tick++;
	for (int i = 0; i < SH_ROOTS; i++) {
		struct sh_root *r = &m->roots[i];

		if (r->valid && r->key == key) {
			r->last_use = m->tick;
			m->st.hits++;
			return pool_gpa(m, r->page);
		}
		if (!r->valid || (lru->valid && r->last_use < lru->last_use))
			lru = r;
	}
	m->st.misses++;
	if (lru->valid)
		m->st.evictions++;
	lru->page = new_root(m);
	lru->key = key;
	lru->last_use = m->tick;
	lru->valid = true;
	return pool_gpa(m, lru->page);
}

bool sh_mmu_is_tracked(const struct sh_mmu *m, uint64_t gpa)
{
	return pt_tracked(&m->pt, gpa);
}

void sh_mmu_untrack(struct sh_mmu *m, uint64_t gpa)
{
	pt_untrack(&m->pt, gpa);
}

/* Walk g for `va`. With `commit`, set accessed/dirty bits as hardware does and track the
 * table pages. Returns false with w->fault_error on a guest-visible fault. */
static bool walk(struct sh_mmu *m, uint64_t cr3, uint64_t va, bool write, bool fetch, bool commit,
                 bool *new_tracked, struct sh_walk *w)
{
	struct walk_mode mode = {.write = write,
	                         .fetch = fetch,
	                         .nxe = m->nxe,
	                         .wp = m->wp,
	                         .track = commit ? &m->pt : NULL,
	                         .new_tracked = new_tracked};

	return page_walk(m->gm, cr3, va, &mode, w);
}

bool sh_mmu_translate(struct sh_mmu *m, uint64_t key, uint64_t va, bool write, struct sh_walk *w)
{
	bool unused = false;

	if (key == SH_KEY_IDENTITY) {
		memset(w, 0, sizeof(*w));
		w->gpa = va & 0xffffffffULL;
		w->page_size = SIZE_2M;
		w->writable = w->executable = w->dirty = true;
		return true;
	}
	return walk(m, key, va, write, false, false, &unused, w);
}

/* The next-level table under entry `e` of table page `tbl`, allocating it if needed.
 * Returns UINT64_MAX when the pool was recycled. */
static uint64_t descend(struct sh_mmu *m, uint64_t tbl, unsigned idx)
{
	uint64_t *e = &pool_page(m, tbl)[idx];
	uint64_t child;

	if (*e & PTE_P) {
		uint64_t addr = *e & PTE_ADDR;

		/* A large leaf where a table is now needed would have to narrow in place,
		 * which KVM would not see: start a new epoch instead; the guest faults again. */
		if ((*e & PTE_PS) || addr < pool_gpa(m, 0) || addr >= pool_gpa(m, SH_POOL_PAGES)) {
			sh_mmu_flush(m);
			return UINT64_MAX;
		}
		return (addr - pool_gpa(m, 0)) >> 12;
	}
	child = alloc_page(m);
	if (child == UINT64_MAX)
		return UINT64_MAX;
	*e = pool_gpa(m, child) | PTE_P | PTE_W | PTE_U; /* adding an entry: safe in place */
	return child;
}

/* Find the root page for key (it must be cached). */
static int root_index(struct sh_mmu *m, uint64_t key)
{
	for (int i = 0; i < SH_ROOTS; i++)
		if (m->roots[i].valid && m->roots[i].key == key)
			return i;
	return -1;
}

enum sh_fault_result sh_mmu_fault(struct sh_mmu *m, uint64_t key, uint64_t va, uint32_t err,
                                  struct sh_walk *w)
{
	bool write = err & PF_W, fetch = err & PF_I, new_tracked = false;
	uint64_t tbl, leaf_flags, gpa_page, size;
	unsigned i4 = (va >> 39) & 511, i3 = (va >> 30) & 511, i2 = (va >> 21) & 511,
	         i1 = (va >> 12) & 511;
	int ri;

	if (i4 == SH_MON_PML4_SLOT)
		return SH_BAD_GPA; /* hearth's slot: no guest mapping may live there */
	if (key == SH_KEY_IDENTITY) {
		sh_mmu_translate(m, key, va, write, w);
	} else {
		if (!walk(m, key, va, write, fetch, true, &new_tracked, w)) {
			if (new_tracked) {
				/* The walk failed, but the tables it passed are protected from now
				 * on: writable mappings of them must go all the same. */
				sh_mmu_flush(m);
				m->st.invalidations++;
			}
			return SH_GUEST_FAULT;
		}
		if (new_tracked) {
			/* A page just became a page table: entries mapping it writable must go. */
			sh_mmu_flush(m);
			m->st.invalidations++;
			sh_mmu_root(m, key);
		}
	}
	if (w->gpa >= m->mon->gpa)
		return SH_BAD_GPA;
	if (write && sh_mmu_is_tracked(m, w->gpa) && (w->gpa >> 12) != m->pt.exempt) {
		m->st.tracked_writes++;
		return SH_TRACKED_WRITE;
	}
	ri = root_index(m, key);
	if (ri < 0) {
		sh_mmu_root(m, key);
		ri = root_index(m, key);
	}
	m->st.fills++;

	/* A 2 MiB shadow leaf when g maps at least 2 MiB, the range is uniformly RAM or not
	 * RAM, and no guest page table lies inside (those must stay read-only). */
	size = SIZE_4K;
	if (w->page_size >= SIZE_2M) {
		uint64_t base = w->gpa & ~(SIZE_2M - 1);
		bool ram = gm_range_ok(m->gm, base, SIZE_2M);
		bool none =
		    !gm_range_ok(m->gm, base, 1) && !gm_range_ok(m->gm, base + SIZE_2M - 1, 1);

		if ((ram || none) && !pt_tracked_in_range(&m->pt, base, SIZE_2M))
			size = SIZE_2M;
	}
	gpa_page = w->gpa & ~(size - 1);
	leaf_flags = PTE_P | PTE_U | PTE_A;
	if (w->writable && w->dirty &&
	    !(size == SIZE_4K && sh_mmu_is_tracked(m, gpa_page) &&
	      (gpa_page >> 12) != m->pt.exempt))
		leaf_flags |= PTE_W | PTE_D;
	if (!w->executable)
		leaf_flags |= PTE_NX;

	tbl = m->roots[ri].page;
	tbl = descend(m, tbl, i4);
	if (tbl != UINT64_MAX)
		tbl = descend(m, tbl, i3);
	if (tbl == UINT64_MAX)
		return SH_FILLED; /* the pool was recycled: the guest faults again, fresh */
	if (size == SIZE_2M) {
		uint64_t *e = &pool_page(m, tbl)[i2];

		if (!(*e & PTE_P) || (*e & PTE_PS)) {
			/* A new leaf, or the same leaf gaining write permission: both widen. */
			*e = gpa_page | leaf_flags | PTE_PS;
			return SH_FILLED;
		}
		/* A 4 KiB table is already there: fill the 4 KiB entry instead. */
		gpa_page = w->gpa & ~(SIZE_4K - 1);
	}
	tbl = descend(m, tbl, i2);
	if (tbl == UINT64_MAX)
		return SH_FILLED;
	pool_page(m, tbl)[i1] = gpa_page | leaf_flags;
	return SH_FILLED;
}
