/*
 * f.g in the host MMU: the guest process's own page tables are the shadow page tables.
 *
 * A fault at a guest-virtual address walks g (cpu/pagewalk.c) and maps the memfd range of
 * the guest-physical page it reaches, with the rights g gives: write only when g allows it
 * and the page is dirty (so that the first store faults and sets D, as hardware does), and
 * never for a guest page-table page, which stays read-only so that a store to it traps and
 * is emulated; execute unless g says NX. A 2 MiB guest page that is all RAM, with no page
 * table inside, gets one 2 MiB mapping. Device addresses are never mapped: an access there
 * is decoded and emulated as MMIO, and so is one to the guest's page 0, which the host
 * cannot map (vm.mmap_min_addr).
 *
 * What hearth derived from g must not outlive a change of g: each mapping remembers which
 * guest page-table entries its walk read, and a store that changes one of them (or an
 * invlpg of its address) unmaps it. A new page-table page, or a store hearth let run
 * natively, unmaps everything (one system call).
 *
 * The per-CR3 cache: the guest process has one address space, so only one root's mappings
 * can be in it. The mappings of the last few roots are remembered, though (and kept true:
 * invalidations reach them too); a CR3 load that returns to one of them unmaps the guest
 * range and maps its list again in the same reply, instead of taking a fault per page.
 * Counters: hits (a root found in the cache), misses, fills (pages mapped on a fault),
 * evictions (a cached root dropped for a new one), invalidations (mappings dropped because
 * g changed), flushes (the whole guest range unmapped).
 *
 * The mappings belong to the guest process and are shared by its vCPU threads: one cache,
 * under one lock. So the vCPUs must run on one root, or on roots that translate alike: a
 * vCPU that loads another root whose tables translate as the current one's joins it as an
 * alias (per-CPU copies of the boot tables; a guest that relocates itself, page tables and
 * all, one CPU after the other). While aliases exist, every mapping is checked against each
 * root in use, and a change to a page table drops all mappings and compares the roots again.
 * Roots that differ stop the VM with one line.
 */
#include "process.h"
#include "cpu/x86.h"
#include "vmm/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_MAPS        1024 /* per root; more and the root starts over */
#define MAX_ROOTS       4
#define ANCHORS         1024 /* 2 MiB regions with a PROT_NONE anchor (a set; full: no more) */
#define RUNS_MAX        8    /* mappings a 2 MiB guest page is split into, at most */
#define ALIASES         STUB_MAX_VCPUS /* other roots that translate as cur (switch_root) */
#define SAME_TABLES_MAX 64 /* table pages compared to find that two roots translate alike */
/* Why the VM stops when vCPUs' page tables differ, and what would run the guest. */
#define ONE_SPACE                                                                                  \
	"the guest process has one address space for all its vCPUs, so they must share one "       \
	"(run this guest with one vCPU, or in a KVM engine)"

struct pm_map {
	uint64_t va, size, off;
	uint32_t prot;
	uint64_t entry_gpa[4]; /* the entries its walk read (0: none at that level) */
};

struct pm_root {
	bool valid;
	uint64_t key; /* CR3's address bits */
	bool nxe, wp;
	uint64_t last_use;
	unsigned nmaps;
	struct pm_map maps[MAX_MAPS];
};

struct pmmu {
	pthread_mutex_t lock;
	struct vm *vm;
	struct pt_tracker pt;
	struct pm_root roots[MAX_ROOTS];
	struct pm_root *cur; /* whose mappings are in the guest process; NULL: none */
	/* Roots other vCPUs run on meanwhile, whose tables translate every address as cur's
	 * do (a guest that relocates itself, page tables included: its CPUs load the copy one
	 * after the other). Empty when cur changes; checked again whenever g changes. */
	uint64_t alias[ALIASES];
	unsigned naliases;
	uint64_t *dirty; /* dirty tracking: pages stored to, by gm_offset page; else NULL */
	/* 2 MiB regions (va >> 21, plus one; 0: free) covered by a PROT_NONE mapping before
	 * their first 4 KiB mapping. A 4 KiB mapping replaced or taken away then has neighbours
	 * in its region, so the host keeps the page-table page instead of freeing it and
	 * allocating it again at the next fill (about 80 us each on a PVM host). */
	uint64_t anchors[ANCHORS];
	uint64_t clock;
	uint64_t gen; /* pmmu_gen: written under the lock */
	uint64_t hits, misses, fills, evictions, invalidations, flushes, tracked_writes, mmio,
	    guest_faults;
};

/* The lowest address the guest process may map (process.h: proc_vm.min_va). */
static uint64_t min_va(const struct pmmu *m)
{
	return __atomic_load_n(&proc_of(m->vm)->min_va, __ATOMIC_RELAXED);
}

struct pmmu *pmmu_create(struct vm *vm)
{
	struct pmmu *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	m->vm = vm;
	pt_tracker_init(&m->pt);
	return m;
}

void pmmu_destroy(struct pmmu *m)
{
	if (m) {
		pthread_mutex_destroy(&m->lock);
		free(m->dirty);
	}
	free(m);
}

uint64_t pmmu_gen(const struct pmmu *m)
{
	return __atomic_load_n(&m->gen, __ATOMIC_ACQUIRE);
}

/* Lock held. Translations derived from g may have changed (notify.c drops its table). */
static void bump(struct pmmu *m)
{
	__atomic_store_n(&m->gen, m->gen + 1, __ATOMIC_RELEASE);
}

static uint64_t cr3_key(const struct guest_cpu *c)
{
	return c->cr3 & PTE_ADDR;
}

static bool paging(const struct guest_cpu *c)
{
	return (c->cr0 & CR0_PG) != 0;
}

/* A walk of the vCPU's tables without side effects, for a store or a fetch. */
static bool translate(const struct guest_cpu *c, uint64_t va, bool write, bool fetch, uint64_t *gpa)
{
	struct walk_mode mode = {
	    .write = write, .fetch = fetch, .nxe = c->efer & EFER_NXE, .wp = c->cr0 & CR0_WP};
	struct page_walk w;

	if (!paging(c)) {
		*gpa = va & 0xffffffffULL;
		return true;
	}
	if (!page_walk(c->gm, c->cr3, va, &mode, &w))
		return false;
	*gpa = w.gpa;
	return true;
}

bool pmmu_translate(struct pmmu *m, const struct guest_cpu *c, uint64_t va, bool write,
                    uint64_t *gpa)
{
	(void)m;
	return translate(c, va, write, false, gpa);
}

bool pmmu_fetchable(struct pmmu *m, const struct guest_cpu *c, uint64_t va)
{
	uint64_t gpa;

	(void)m;
	return translate(c, va, false, true, &gpa);
}

/* Lock held. Unmap the whole guest range; the current root's list starts over. */
static void flush_locked(struct pmmu *m, struct proc_vcpu *pv)
{
	memset(m->anchors, 0, sizeof(m->anchors));
	m->flushes++;
	bump(m);
	if (m->cur)
		m->cur->nmaps = 0;
	proc_vcpu_unmap_all(pv);
}

static void recheck_aliases(struct pmmu *m);

/* Lock held. g changed in a way hearth does not follow entry by entry: no list is true any
 * more, cached or current. */
static void forget_all(struct pmmu *m, struct proc_vcpu *pv)
{
	for (unsigned i = 0; i < MAX_ROOTS; i++)
		m->roots[i].nmaps = 0;
	flush_locked(m, pv);
	if (m->naliases)
		recheck_aliases(m);
}

void pmmu_flush(struct pmmu *m, struct proc_vcpu *pv)
{
	pthread_mutex_lock(&m->lock);
	forget_all(m, pv);
	pthread_mutex_unlock(&m->lock);
}

/* Drop the mappings that `match` selects from every root; those of the current root are
 * unmapped too (everything, when the reply has no room). */
static void invalidate_where(struct pmmu *m, struct proc_vcpu *pv,
                             bool (*match)(const struct pm_map *, uint64_t), uint64_t arg,
                             bool current_only)
{
	for (unsigned r = 0; r < MAX_ROOTS; r++) {
		struct pm_root *root = &m->roots[r];

		if (current_only && root != m->cur)
			continue;
		for (unsigned i = 0; i < root->nmaps;) {
			if (!match(&root->maps[i], arg)) {
				i++;
				continue;
			}
			m->invalidations++;
			/* PROT_NONE in place, not an unmap (with the region's anchor, the host
			 * keeps its page-table page: freeing and refilling it costs ~5x the
			 * mapping itself here). */
			if (root == m->cur && !proc_vcpu_op(pv, STUB_OP_MMAP, root->maps[i].va,
			                                    root->maps[i].size, 0, PROT_NONE)) {
				flush_locked(m, pv);
				break;
			}
			root->maps[i] = root->maps[--root->nmaps];
		}
	}
}

static bool covers(const struct pm_map *p, uint64_t va)
{
	return va - p->va < p->size;
}

static bool reads_entry(const struct pm_map *p, uint64_t gpa)
{
	for (int l = 0; l < 4; l++)
		if (p->entry_gpa[l] == gpa)
			return true;
	return false;
}

static void fill(struct pmmu *m, struct proc_vcpu *pv, uint64_t va, uint32_t err, bool prefetch);

/* Lock held. May the page at memfd offset `off` be mapped writable? Always, unless dirty
 * pages are tracked: then once it is marked, and a store (`write`) marks it. */
static bool dirty_ok(struct pmmu *m, uint64_t off, bool write)
{
	uint64_t p = off / PAGE_4K;

	if (!m->dirty)
		return true;
	if (write)
		m->dirty[p / 64] |= 1ULL << (p % 64);
	return (m->dirty[p / 64] >> (p % 64)) & 1;
}

/* Lock held, the vCPUs paused: forget_all, with the unmap in every vCPU's next reply, not
 * only `pv`'s. Whichever resumes first unmaps (they share one address space); one that stays
 * halted does not hold it back, and the others get no store through an old mapping. */
static void forget_all_everywhere(struct pmmu *m, struct proc_vcpu *pv)
{
	forget_all(m, pv);
	for (unsigned i = 0; i < m->vm->nvcpus; i++)
		if (m->vm->vcpus[i].be != pv)
			proc_vcpu_unmap_all(m->vm->vcpus[i].be);
}

int pmmu_dirty_start(struct pmmu *m, struct proc_vcpu *pv)
{
	uint64_t words = (gm_pages(&m->vm->mem) + 63) / 64;

	pthread_mutex_lock(&m->lock);
	if (!m->dirty)
		m->dirty = calloc(words, 8);
	else
		memset(m->dirty, 0, words * 8);
	if (m->dirty)
		forget_all_everywhere(m, pv); /* writable mappings go: the next store faults */
	pthread_mutex_unlock(&m->lock);
	return m->dirty ? 0 : -ENOMEM;
}

void pmmu_dirty_collect(struct pmmu *m, struct proc_vcpu *pv, uint64_t *bitmap)
{
	uint64_t words = (gm_pages(&m->vm->mem) + 63) / 64;

	pthread_mutex_lock(&m->lock);
	if (m->dirty) {
		for (uint64_t i = 0; i < words; i++) {
			bitmap[i] |= m->dirty[i];
			m->dirty[i] = 0;
		}
		forget_all_everywhere(m, pv);
	}
	pthread_mutex_unlock(&m->lock);
}

void pmmu_invlpg(struct pmmu *m, struct proc_vcpu *pv, uint64_t va)
{
	pthread_mutex_lock(&m->lock);
	bump(m);
	/* invlpg acts on this CPU's current translations only */
	invalidate_where(m, pv, covers, va, true);
	/* A guest that invalidates a page is about to use its new translation: map it now
	 * (read-only unless dirty) and save the fault. */
	if (va >= min_va(m) && va < STUB_GUEST_VA_END)
		fill(m, pv, va, 0, true);
	pthread_mutex_unlock(&m->lock);
}

/* Lock held. The vCPU other than `pv` that runs, or will resume, on page tables other than
 * `key`'s; -1: none. (A vCPU's CR3 changes only in its own thread, at a trap: what is read
 * here is what it runs on.) */
/* Is `o` on the root its CR3 names: running, or about to resume, in paged long mode
 * (`asleep_too`: or asleep in hlt with interrupts off, which an NMI ends)? */
static bool on_root(const struct proc_vcpu *o, bool asleep_too)
{
	return o->started_guest && !o->interp && !o->wait_sipi && paging(&o->cpu) &&
	       (asleep_too || !o->halted_for_good);
}

static bool runs_on_root(const struct proc_vcpu *o)
{
	return on_root(o, false);
}

static bool in_cur_class(const struct pmmu *m, uint64_t key);

/* Lock held. Has `o` loaded a root of no class that pmmu_sync has not taken it to yet? It
 * waits in hearth for the lock, and is compared in its own sync: others leave it out
 * (vCPUs loading per-CPU roots at once would otherwise refuse each other). */
static bool in_transit(const struct pmmu *m, const struct proc_vcpu *o)
{
	uint64_t k = cr3_key(&o->cpu);

	return k != o->root_key && !in_cur_class(m, k);
}

/* Lock held. Does a vCPU other than `except` (NULL: any) run on `key`'s root (`asleep_too`:
 * or sleep in hlt with interrupts off, which an NMI ends)? */
static bool key_used_but(const struct pmmu *m, const struct proc_vcpu *except, uint64_t key,
                         bool asleep_too)
{
	for (unsigned i = 0; i < m->vm->nvcpus; i++) {
		const struct proc_vcpu *o = m->vm->vcpus[i].be;

		if (o && o != except && !in_transit(m, o) && on_root(o, asleep_too) &&
		    cr3_key(&o->cpu) == key)
			return true;
	}
	return false;
}

static bool key_used(const struct pmmu *m, uint64_t key, bool asleep_too)
{
	return key_used_but(m, NULL, key, asleep_too);
}

/* Lock held. Is `key` the current root's, or one that translates alike? */
static bool in_cur_class(const struct pmmu *m, uint64_t key)
{
	if (!m->cur)
		return false;
	if (key == m->cur->key)
		return true;
	for (unsigned i = 0; i < m->naliases; i++)
		if (m->alias[i] == key)
			return true;
	return false;
}

/* Lock held. The vCPU other than `pv` that runs, or will resume, on page tables other than
 * `key`'s (or than `key`'s class: aliases count as one root when `classes`); -1: none. (A
 * vCPU halted with interrupts off is left out: an NMI that wakes it syncs it again.) */
static int other_root_of(const struct pmmu *m, const struct proc_vcpu *pv, uint64_t key,
                         bool classes)
{
	bool key_in = classes && in_cur_class(m, key);

	for (unsigned i = 0; i < m->vm->nvcpus; i++) {
		const struct proc_vcpu *o = m->vm->vcpus[i].be;
		uint64_t k;

		if (!o || o == pv || !runs_on_root(o) || in_transit(m, o))
			continue;
		k = cr3_key(&o->cpu);
		if (k != key && !(key_in && in_cur_class(m, k)))
			return (int)i;
	}
	return -1;
}

static int other_root(const struct pmmu *m, const struct proc_vcpu *pv, uint64_t key)
{
	return other_root_of(m, pv, key, true);
}

static bool same_tables(const struct guest_memory *gm, uint64_t a, uint64_t b, int level,
                        unsigned *budget);

/* Does the entry `e` at `level` map nothing: not present, or a table whose entries map
 * nothing? */
static bool maps_nothing(const struct guest_memory *gm, uint64_t e, int level, unsigned *budget)
{
	const uint64_t *t;

	if (!(e & PTE_P))
		return true;
	if (level == 1 || (e & PTE_PS) || !*budget)
		return false;
	--*budget;
	t = gm_ptr(gm, e & PTE_ADDR, PAGE_4K);
	if (!t)
		return false;
	for (unsigned i = 0; i < 512; i++)
		if (!maps_nothing(gm, __atomic_load_n(&t[i], __ATOMIC_RELAXED), level - 1, budget))
			return false;
	return true;
}

/* Do the tables at `a` and `b` (level 4: PML4) translate every address alike, with the
 * same rights? Accessed and dirty bits aside; subtrees they share are not read; an empty
 * table is as good as none; at most SAME_TABLES_MAX (*budget) table pages are read. */
static bool same_tables(const struct guest_memory *gm, uint64_t a, uint64_t b, int level,
                        unsigned *budget)
{
	const uint64_t *ta, *tb;

	if (a == b)
		return true;
	if (!*budget)
		return false;
	--*budget;
	ta = gm_ptr(gm, a, PAGE_4K);
	tb = gm_ptr(gm, b, PAGE_4K);
	if (!ta || !tb)
		return false;
	for (unsigned i = 0; i < 512; i++) {
		uint64_t ea = __atomic_load_n(&ta[i], __ATOMIC_RELAXED);
		uint64_t eb = __atomic_load_n(&tb[i], __ATOMIC_RELAXED);
		const uint64_t ignore = PTE_A | PTE_D;

		if (!(ea & PTE_P) && !(eb & PTE_P))
			continue;
		if (!((ea ^ eb) & ~ignore))
			continue;
		if (!(ea & PTE_P) || !(eb & PTE_P)) {
			if (!maps_nothing(gm, ea & PTE_P ? ea : eb, level, budget))
				return false;
			continue;
		}
		/* different tables below, alike entries otherwise: compare the tables */
		if (level == 1 || !(ea & PTE_P) || !(eb & PTE_P) || (ea & PTE_PS) ||
		    (eb & PTE_PS) || ((ea ^ eb) & ~(ignore | PTE_ADDR)) ||
		    !same_tables(gm, ea & PTE_ADDR, eb & PTE_ADDR, level - 1, budget))
			return false;
	}
	return true;
}

/* Lock held, every mapping just dropped: do the roots of the class still translate alike?
 * They are compared with one a vCPU runs on (the current root's, else an alias's, which then
 * becomes the current root's key: nothing is mapped now). One that differs is dropped when
 * no vCPU runs on it (a vCPU asleep on it joins again or stops the VM when an NMI wakes it,
 * pmmu_sync); when one does, the VM stops, as when two vCPUs load different page tables. */
static void recheck_aliases(struct pmmu *m)
{
	uint64_t ref = m->cur->key;

	if (!key_used(m, ref, false)) {
		for (unsigned i = 0; i < m->naliases; i++)
			if (key_used(m, m->alias[i], false)) {
				ref = m->alias[i];
				m->alias[i] = m->cur->key;
				break;
			}
	}
	if (ref != m->cur->key) {
		/* a cached root of that key has a stale list (the aliases filled cur's) */
		for (unsigned i = 0; i < MAX_ROOTS; i++)
			if (m->roots[i].valid && m->roots[i].key == ref)
				m->roots[i].valid = false;
		m->cur->key = ref;
		m->cur->nmaps = 0;
	}
	for (unsigned i = m->naliases; i-- > 0;) {
		uint64_t key = m->alias[i];
		unsigned budget = SAME_TABLES_MAX;

		if (same_tables(&m->vm->mem, ref, key, 4, &budget))
			continue;
		m->alias[i] = m->alias[--m->naliases];
		if (key_used(m, key, false) && key_used(m, ref, false))
			vm_request_stop(m->vm, STOP_VMM_ERROR, 0,
			                "process engine: vCPUs run on page tables at 0x%llx and at "
			                "0x%llx, which no longer translate alike; " ONE_SPACE,
			                (unsigned long long)key, (unsigned long long)ref);
	}
}

/* Lock held. Room for one more alias: when full, those no vCPU uses (or sleeps on) go. */
static bool alias_room(struct pmmu *m)
{
	for (unsigned i = m->naliases; m->naliases == ALIASES && i-- > 0;)
		if (!key_used(m, m->alias[i], true))
			m->alias[i] = m->alias[--m->naliases];
	return m->naliases < ALIASES;
}

/* Lock held. The first root since nothing was mapped (a restored VM, whose vCPUs all run
 * at once): the other vCPUs' roots join it as aliases before any of them maps anything, or
 * the VM stops. */
static void adopt_roots(struct pmmu *m, struct proc_vcpu *pv)
{
	for (unsigned i = 0; i < m->vm->nvcpus; i++) {
		const struct proc_vcpu *o = m->vm->vcpus[i].be;
		unsigned budget = SAME_TABLES_MAX;
		uint64_t k;

		if (!o || o == pv || !runs_on_root(o)) /* (one asleep syncs when an NMI wakes it) */
			continue;
		k = cr3_key(&o->cpu);
		if (in_cur_class(m, k))
			continue;
		if (alias_room(m) && !((o->cpu.efer ^ pv->cpu.efer) & EFER_NXE) &&
		    !((o->cpu.cr0 ^ pv->cpu.cr0) & CR0_WP) &&
		    same_tables(&m->vm->mem, m->cur->key, k, 4, &budget)) {
			m->alias[m->naliases++] = k;
			((struct proc_vcpu *)m->vm->vcpus[i].be)->root_key = k;
			continue;
		}
		vm_request_stop(m->vm, STOP_VMM_ERROR, 0,
		                "process engine: vCPU %u runs on page tables at 0x%llx, vCPU %u on "
		                "those at 0x%llx; " ONE_SPACE,
		                pv->v->id, (unsigned long long)m->cur->key, i,
		                (unsigned long long)k);
		return;
	}
}

/* The root the vCPU's paging state selects: the current one, one from the cache (its
 * mappings put back in this reply, as far as there is room), or a new one. `loaded`: the vCPU
 * (re)loaded it (pmmu_sync), rather than faulted on it. */
static void switch_root(struct pmmu *m, struct proc_vcpu *pv, const struct guest_cpu *c,
                        bool loaded)
{
	uint64_t key = cr3_key(c);
	bool nxe = c->efer & EFER_NXE, wp = c->cr0 & CR0_WP;
	struct pm_root *r = NULL, *victim = &m->roots[0];
	bool same_modes, first = !m->cur;
	int other;

	same_modes = m->cur && m->cur->nxe == nxe && m->cur->wp == wp;
	/* A root of the class that no vCPU used meanwhile was not checked against the others
	 * (its tables may have changed untracked): it is compared again before it is used. */
	if (loaded && same_modes && m->naliases && in_cur_class(m, key) && pv->root_key != key &&
	    !key_used_but(m, pv, key, true))
		forget_all(m, pv);
	if (m->cur && m->cur->key == key && m->cur->nxe == nxe && m->cur->wp == wp)
		return;
	/* One address space serves every vCPU of the guest process: they must share a root,
	 * or run on roots that translate alike (aliases of the current one). An alias becomes
	 * the current root once no other vCPU runs on anything else. */
	if (same_modes && in_cur_class(m, key) && other_root_of(m, pv, key, false) >= 0)
		return;
	/* (nothing mapped yet, as after a restore: the others join through the comparison) */
	other = m->cur && m->vm->nvcpus > 1 ? other_root(m, pv, key) : -1;
	if (other >= 0 && same_modes && alias_room(m)) {
		uint64_t theirs = cr3_key(&((const struct proc_vcpu *)m->vm->vcpus[other].be)->cpu);
		unsigned budget = SAME_TABLES_MAX;

		/* Every other vCPU runs on the class, that vCPU on `theirs`: may this one join
		 * (compared with a root in use)? */
		if (in_cur_class(m, theirs) && other_root(m, pv, theirs) < 0 &&
		    same_tables(c->gm, theirs, key, 4, &budget)) {
			m->alias[m->naliases++] = key;
			/* from now on every mapping comes from a walk, whose tables are tracked */
			forget_all(m, pv);
			return;
		}
	}
	if (other >= 0) {
		const struct proc_vcpu *o = m->vm->vcpus[other].be;

		vm_request_stop(m->vm, STOP_VMM_ERROR, 0,
		                "process engine: vCPU %u loads page tables at 0x%llx while vCPU %d "
		                "runs on those at 0x%llx; " ONE_SPACE,
		                pv->v->id, (unsigned long long)key, other,
		                (unsigned long long)cr3_key(&o->cpu));
		return;
	}
	for (unsigned i = 0; i < MAX_ROOTS; i++) {
		struct pm_root *x = &m->roots[i];

		if (x->valid && x->key == key && x->nxe == nxe && x->wp == wp)
			r = x;
		if (!x->valid || (victim->valid && x->last_use < victim->last_use))
			victim = x;
	}
	m->flushes++;
	bump(m);
	memset(m->anchors, 0, sizeof(m->anchors));
	proc_vcpu_unmap_all(pv);
	/* Its list may hold mappings an alias's walk made, whose entries it does not read. */
	if (m->naliases)
		m->cur->nmaps = 0;
	if (r) {
		m->hits++;
		for (unsigned i = 0; i < r->nmaps; i++) {
			const struct pm_map *p = &r->maps[i];

			if (!proc_vcpu_op(pv, STUB_OP_MMAP, p->va, p->size, p->off, p->prot)) {
				r->nmaps = i; /* the rest fault in again */
				break;
			}
		}
	} else {
		m->misses++;
		if (victim->valid)
			m->evictions++;
		r = victim;
		/* (field by field: a compound literal would zero all of maps[], 64 KiB) */
		r->valid = true;
		r->key = key;
		r->nxe = nxe;
		r->wp = wp;
		r->nmaps = 0;
	}
	r->last_use = ++m->clock;
	m->cur = r;
	m->naliases = 0;
	if (first)
		adopt_roots(m, pv);
}

void pmmu_sync(struct pmmu *m, struct proc_vcpu *pv)
{
	pthread_mutex_lock(&m->lock);
	bump(m); /* (also a CR3 load of the same root: the guest's TLB flush) */
	switch_root(m, pv, &pv->cpu, true);
	pv->root_key = cr3_key(&pv->cpu);
	pthread_mutex_unlock(&m->lock);
}

void pmmu_pte_stored(struct pmmu *m, struct proc_vcpu *pv, uint64_t gpa, uint64_t old, uint64_t new)
{
	if (!(old & PTE_P) || old == new)
		return;
	pthread_mutex_lock(&m->lock);
	bump(m);         /* (also where no mapping read it: a device page's translation) */
	if (m->naliases) /* a mapping may come from a walk of another root's copy */
		forget_all(m, pv);
	else
		invalidate_where(m, pv, reads_entry, gpa, false);
	pthread_mutex_unlock(&m->lock);
}

/* Lock held. The first 4 KiB mapping in a 2 MiB region comes after a PROT_NONE mapping of
 * the whole region (nothing else is mapped there then: a region is anchored at its first
 * fill after a flush). False: no room in the reply. */
static bool anchor_map(struct pmmu *m, struct proc_vcpu *pv, uint64_t va, bool map)
{
	uint64_t key = (va >> 21) + 1, base = va & ~(PAGE_2M - 1);
	unsigned h = (unsigned)(key * 0x9e3779b97f4a7c15ULL >> 54) % ANCHORS;

	if (base < PAGE_2M || base + PAGE_2M > STUB_GUEST_VA_END)
		return true; /* the first region holds page 0; the last borders the slot */
	for (unsigned i = 0; i < ANCHORS; i++) {
		uint64_t *e = &m->anchors[(h + i) % ANCHORS];

		if (*e == key)
			return true;
		if (!*e) {
			if (map && !proc_vcpu_op(pv, STUB_OP_MMAP, base, PAGE_2M, 0, PROT_NONE))
				return false;
			*e = key;
			return true;
		}
	}
	return true; /* the set is full: no anchor, only slower */
}

static bool anchor(struct pmmu *m, struct proc_vcpu *pv, uint64_t va)
{
	return anchor_map(m, pv, va, true);
}

/* Lock held: remember a mapping of the current root (replacing one of the same page). */
static void remember(struct pmmu *m, struct proc_vcpu *pv, const struct pm_map *p)
{
	struct pm_root *r = m->cur;

	for (unsigned i = 0; i < r->nmaps; i++)
		if (r->maps[i].va == p->va) {
			r->maps[i] = *p;
			return;
		}
	if (r->nmaps == MAX_MAPS)
		flush_locked(m, pv); /* start over: the guest faults again */
	else
		r->maps[r->nmaps++] = *p;
}

void pmmu_ram_stored(struct pmmu *m, struct proc_vcpu *pv, uint64_t gpa, unsigned len)
{
	pthread_mutex_lock(&m->lock);
	if (pt_tracked(&m->pt, gpa) || pt_tracked(&m->pt, gpa + len - 1)) {
		m->tracked_writes++;
		forget_all(m, pv);
	}
	pthread_mutex_unlock(&m->lock);
}

void pmmu_fault(struct pmmu *m, struct proc_vcpu *pv, uint64_t va, uint32_t err)
{
	pthread_mutex_lock(&m->lock);
	fill(m, pv, va, err, false);
	pthread_mutex_unlock(&m->lock);
}

/* Lock held; released and taken again around what the guest's CPU does (a #PF, an
 * emulated access). A prefetch only maps, and only what it can map without a fault. */
/* Lock held. A 2 MiB guest page of RAM that cannot be one mapping because guest page tables
 * (read-only here) or page 0 (never mapped) lie in it: map all of it now, in runs of pages
 * alike, in this one reply, instead of taking a fault per 4 KiB page (boot code and page
 * tables share the first 2 MiB in most guests). False: too many runs or no room in the
 * reply; the caller maps the one page. */
static bool fill_runs(struct pmmu *m, struct proc_vcpu *pv, const struct page_walk *w,
                      uint64_t vbase, uint64_t base, uint32_t prot)
{
	const struct guest_memory *gm = pv->cpu.gm;
	struct pm_map runs[RUNS_MAX];
	unsigned n = 0;

	for (uint64_t o = 0; o < PAGE_2M;) {
		uint64_t end = o + PAGE_4K;
		bool table;

		if (vbase + o < min_va(m)) {
			o = end;
			continue;
		}
		table = pt_tracked(&m->pt, base + o);
		while (end < PAGE_2M && pt_tracked(&m->pt, base + end) == table)
			end += PAGE_4K;
		if (n == RUNS_MAX)
			return false;
		runs[n++] = (struct pm_map){.va = vbase + o,
		                            .size = end - o,
		                            .off = gm_offset(gm, base + o, end - o),
		                            .prot = table ? prot & ~(uint32_t)PROT_WRITE : prot,
		                            .entry_gpa = {w->entry_gpa[0], w->entry_gpa[1],
		                                          w->entry_gpa[2], w->entry_gpa[3]}};
		o = end;
	}
	if (proc_vcpu_room(pv) < n + 1)
		return false;
	anchor_map(m, pv, vbase, false); /* covered whole: no PROT_NONE needed under it */
	for (unsigned i = 0; i < n; i++) {
		proc_vcpu_op(pv, STUB_OP_MMAP, runs[i].va, runs[i].size, runs[i].off, runs[i].prot);
		remember(m, pv, &runs[i]);
		m->fills++;
	}
	return true;
}

/* Lock held, roots aliased. The mapping for `va` that `w` (pv's walk) gives serves every
 * vCPU: do the other roots of the class that vCPUs use (or sleep on) translate `va` alike?
 * Their walks set accessed and dirty bits as pv's did, and track their tables from now on
 * too. *dirty: cleared unless every walk found the page dirty. A root that differs is
 * dropped from the class when only sleeping vCPUs use it (an NMI that wakes one makes it
 * join again or stop the VM). False: a root in use differs, and nothing may be mapped (the
 * VM stops, unless `prefetch`). */
static bool aliases_agree(struct pmmu *m, struct proc_vcpu *pv, uint64_t va,
                          const struct walk_mode *mode, const struct page_walk *w, bool prefetch,
                          bool *dirty)
{
	/* A forget_all below compares the roots again and may reorder or drop them: start over
	 * (each time a page newly tracked, or a root dropped, so it ends). */
restart:
	for (unsigned i = 0; m->naliases && i <= m->naliases; i++) {
		uint64_t key = i == m->naliases ? m->cur->key : m->alias[i];
		bool new_tracked = false;
		struct walk_mode om = {.write = mode->write,
		                       .fetch = mode->fetch,
		                       .nxe = mode->nxe,
		                       .wp = mode->wp,
		                       .track = &m->pt,
		                       .new_tracked = &new_tracked};
		struct page_walk ow;
		bool same;

		if (key == cr3_key(&pv->cpu) || !key_used(m, key, true))
			continue;
		same = page_walk(&m->vm->mem, key, va, &om, &ow) && ow.gpa == w->gpa &&
		       ow.page_size == w->page_size && ow.writable == w->writable &&
		       ow.executable == w->executable;
		if (same)
			*dirty = *dirty && ow.dirty;
		if (same && !new_tracked)
			continue;
		if (same || !key_used(m, key, false)) {
			forget_all(m, pv); /* (which compares the roots again) */
			if (same || !in_cur_class(m, key))
				goto restart;
		}
		if (!prefetch)
			vm_request_stop(
			    m->vm, STOP_VMM_ERROR, 0,
			    "process engine: vCPU %u runs on page tables at 0x%llx, which do not "
			    "translate 0x%llx as those at 0x%llx that another vCPU "
			    "uses; " ONE_SPACE,
			    pv->v->id, (unsigned long long)cr3_key(&pv->cpu),
			    (unsigned long long)va, (unsigned long long)key);
		return false;
	}
	return true;
}

static void fill(struct pmmu *m, struct proc_vcpu *pv, uint64_t va, uint32_t err, bool prefetch)
{
	struct guest_cpu *c = &pv->cpu;
	const struct guest_memory *gm = c->gm;
	const uint64_t low = min_va(m); /* below it, nothing is mapped */
	bool new_tracked = false, stored, all_dirty = true;
	struct walk_mode mode = {.write = err & PF_W,
	                         .fetch = err & PF_I,
	                         .nxe = c->efer & EFER_NXE,
	                         .wp = c->cr0 & CR0_WP,
	                         .track = &m->pt,
	                         .new_tracked = &new_tracked};
	struct page_walk w;
	struct pm_map map;
	uint64_t size = PAGE_4K, page;

	switch_root(m, pv, c, false);
	if (!pv->root_key && in_cur_class(m, cr3_key(c)))
		pv->root_key = cr3_key(c); /* (a restored vCPU's first fault) */
	if (!page_walk(gm, c->cr3, va, &mode, &w)) {
		if (new_tracked) /* the tables it passed are protected from now on */
			forget_all(m, pv);
		if (prefetch)
			return;
		m->guest_faults++;
		pthread_mutex_unlock(&m->lock);
		cpu_page_fault(c, va, w.fault_error);
		pthread_mutex_lock(&m->lock);
		return;
	}
	if (new_tracked) /* a page just became a page table: writable mappings of it go */
		forget_all(m, pv);
	if (m->naliases && !aliases_agree(m, pv, va, &mode, &w, prefetch, &all_dirty))
		return;
	/* (a forget_all above may have dropped pv's root from the class: it faults again) */
	if (!in_cur_class(m, cr3_key(c)))
		return;
	if (va >= STUB_GUEST_VA_END) {
		pthread_mutex_unlock(&m->lock);
		proc_refuse_va(pv, va);
		pthread_mutex_lock(&m->lock);
		return;
	}
	if (mode.write && pt_tracked(&m->pt, w.gpa) && (w.gpa >> 12) != m->pt.exempt) {
		m->tracked_writes++;
		pthread_mutex_unlock(&m->lock);
		/* under the lock of emulated accesses: atomic against a locked one that another
		 * vCPU makes on the same entry (page tables below min_va are reached that way) */
		pthread_mutex_lock(&proc_of(m->vm)->emu_lock);
		stored = cpu_emulate_pte_store(c, va, w.gpa);
		pthread_mutex_unlock(&proc_of(m->vm)->emu_lock);
		if (!stored)
			proc_step_pt_store(pv, va, w.gpa);
		pthread_mutex_lock(&m->lock);
		return;
	}
	if (!gm_range_ok(gm, w.gpa, 1) || va < low) {
		uint64_t gen = m->gen; /* what the walk saw */

		if (prefetch)
			return;
		if (va < low && (err & PF_I || (va >> 12) == (c->r.rip >> 12))) {
			pthread_mutex_unlock(&m->lock);
			proc_refuse_low_code(pv, va, low);
			pthread_mutex_lock(&m->lock);
			return;
		}
		/* MMIO (or page 0, or below min_va): decoded and done by hearth, never mapped */
		m->mmio++;
		pthread_mutex_unlock(&m->lock);
		proc_emulate_access(pv, va, w.gpa, gen);
		pthread_mutex_lock(&m->lock);
		return;
	}
	if (w.page_size >= PAGE_2M && !m->dirty) { /* (tracking dirty pages: 4 KiB each) */
		uint64_t base = w.gpa & ~(PAGE_2M - 1), vbase = va & ~(PAGE_2M - 1);
		uint32_t prot = PROT_READ | (w.writable && w.dirty && all_dirty ? PROT_WRITE : 0) |
		                (w.executable ? PROT_EXEC : 0);

		if (gm_range_ok(gm, base, PAGE_2M) && vbase + PAGE_2M <= STUB_GUEST_VA_END) {
			if (vbase >= low && !pt_tracked_in_range(&m->pt, base, PAGE_2M))
				size = PAGE_2M;
			/* (not in the last region below the slot, where the guest process's filter
			 * takes pages or all 2 MiB, not runs: the page alone then) */
			else if (vbase + PAGE_2M < STUB_GUEST_VA_END &&
			         fill_runs(m, pv, &w, vbase, base, prot))
				return;
		}
	}
	page = w.gpa & ~(size - 1);
	map = (struct pm_map){
	    .va = va & ~(size - 1),
	    .size = size,
	    .off = gm_offset(gm, page, size),
	    .prot = PROT_READ,
	    .entry_gpa = {w.entry_gpa[0], w.entry_gpa[1], w.entry_gpa[2], w.entry_gpa[3]}};
	if (w.writable && w.dirty && all_dirty && !(size == PAGE_4K && pt_tracked(&m->pt, page)) &&
	    dirty_ok(m, map.off, mode.write))
		map.prot |= PROT_WRITE;
	if (w.executable)
		map.prot |= PROT_EXEC;
	if ((size == PAGE_4K && !anchor(m, pv, map.va)) ||
	    !proc_vcpu_op(pv, STUB_OP_MMAP, map.va, map.size, map.off, map.prot)) {
		flush_locked(m, pv); /* no room: start over; the guest faults again */
	} else {
		remember(m, pv, &map);
		m->fills++;
	}
}

/* Let one store into a page table run natively: the page writable until the single step
 * that follows it ends (pmmu_step_done). */
void pmmu_unprotect(struct pmmu *m, struct proc_vcpu *pv, uint64_t gpa)
{
	pthread_mutex_lock(&m->lock);
	m->pt.exempt = gpa >> 12;
	pt_untrack(&m->pt, gpa);
	forget_all(m, pv);
	pthread_mutex_unlock(&m->lock);
}

void pmmu_step_done(struct pmmu *m, struct proc_vcpu *pv)
{
	pthread_mutex_lock(&m->lock);
	m->pt.exempt = PT_NO_EXEMPT;
	forget_all(m, pv); /* the page is found (and protected) again on its next walk */
	pthread_mutex_unlock(&m->lock);
}

void pmmu_stats(const struct pmmu *m, cJSON *o)
{
	cJSON *p = cJSON_AddObjectToObject(o, "process");

	cJSON_AddNumberToObject(p, "cache_hits", (double)m->hits);
	cJSON_AddNumberToObject(p, "cache_misses", (double)m->misses);
	cJSON_AddNumberToObject(p, "fills", (double)m->fills);
	cJSON_AddNumberToObject(p, "evictions", (double)m->evictions);
	cJSON_AddNumberToObject(p, "invalidations", (double)m->invalidations);
	cJSON_AddNumberToObject(p, "flushes", (double)m->flushes);
	cJSON_AddNumberToObject(p, "page_table_writes", (double)m->tracked_writes);
	cJSON_AddNumberToObject(p, "emulated_accesses", (double)m->mmio);
	cJSON_AddNumberToObject(p, "guest_page_faults", (double)m->guest_faults);
}

void pmmu_log_stats(const struct pmmu *m)
{
	log_info("process engine mmu: cache: %llu hits, %llu misses, %llu fills, %llu evictions, "
	         "%llu invalidations, %llu flushes; %llu page-table writes, %llu emulated "
	         "accesses, %llu guest page faults",
	         (unsigned long long)m->hits, (unsigned long long)m->misses,
	         (unsigned long long)m->fills, (unsigned long long)m->evictions,
	         (unsigned long long)m->invalidations, (unsigned long long)m->flushes,
	         (unsigned long long)m->tracked_writes, (unsigned long long)m->mmio,
	         (unsigned long long)m->guest_faults);
}
