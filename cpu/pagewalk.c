/* The guest's page tables walked in software, and the set of page-table pages an engine
 * protects (cpu/pagewalk.h). */
#include "pagewalk.h"
#include "x86.h"

#include <string.h>

/* Reserved bits for a guest with 48-bit physical addresses (bits 51:48); large pages add
 * their PS-specific low bits below. */
#define RSVD_HIGH 0x000f000000000000ULL

void pt_tracker_init(struct pt_tracker *t)
{
	t->n = 0;
	t->exempt = PT_NO_EXEMPT;
}

bool pt_tracked(const struct pt_tracker *t, uint64_t gpa)
{
	uint64_t pfn = gpa >> 12;

	for (unsigned i = 0; i < t->n; i++)
		if (t->pfn[i] == pfn)
			return true;
	return false;
}

bool pt_tracked_in_range(const struct pt_tracker *t, uint64_t gpa, uint64_t size)
{
	for (unsigned i = 0; i < t->n; i++) {
		uint64_t a = t->pfn[i] << 12;

		if (a >= gpa && a - gpa < size)
			return true;
	}
	return false;
}

bool pt_track(struct pt_tracker *t, uint64_t gpa)
{
	if (pt_tracked(t, gpa) || (gpa >> 12) == t->exempt)
		return false; /* (exempt is PT_NO_EXEMPT, never a page number, when unused) */
	if (t->n == PT_MAX_TRACKED) {
		memmove(t->pfn, t->pfn + 1, (PT_MAX_TRACKED - 1) * sizeof(t->pfn[0]));
		t->n--;
	}
	t->pfn[t->n++] = gpa >> 12;
	return true;
}

void pt_untrack(struct pt_tracker *t, uint64_t gpa)
{
	uint64_t pfn = gpa >> 12;

	for (unsigned i = 0; i < t->n; i++)
		if (t->pfn[i] == pfn) {
			t->pfn[i] = t->pfn[--t->n];
			return;
		}
}

bool page_walk(const struct guest_memory *gm, uint64_t cr3, uint64_t va, const struct walk_mode *m,
               struct page_walk *w)
{
	uint64_t table = cr3 & PTE_ADDR;
	bool writable = true, nx = false, commit = m->track != NULL;
	uint32_t base_err = (m->write ? PF_W : 0) | (m->fetch && m->nxe ? PF_I : 0);

	memset(w, 0, sizeof(*w));
	/* Canonical check: bits 63:47 must be equal (a #GP on hardware; reported here as a
	 * not-present fault, which callers turn into #GP where it matters). */
	if ((uint64_t)((int64_t)(va << 16) >> 16) != va) {
		w->fault_error = base_err;
		return false;
	}
	for (int level = 4; level >= 1; level--) {
		unsigned idx = (va >> (12 + 9 * (level - 1))) & 511;
		uint64_t *ep = gm_ptr(gm, table + idx * 8, 8);
		uint64_t e, rsvd;

		if (!ep) {
			/* The guest's table is not in RAM: as a walk of unbacked memory. */
			w->fault_error = base_err;
			return false;
		}
		w->entry_gpa[level - 1] = table + idx * 8;
		if (commit && pt_track(m->track, table) && m->new_tracked)
			*m->new_tracked = true;
		e = __atomic_load_n(ep, __ATOMIC_RELAXED);
		if (!(e & PTE_P)) {
			w->fault_error = base_err;
			return false;
		}
		rsvd = RSVD_HIGH | (m->nxe ? 0 : PTE_NX);
		if (level == 4)
			rsvd |= PTE_PS;
		if ((e & PTE_PS) && level == 3)
			rsvd |= 0x3fffe000ULL;
		if ((e & PTE_PS) && level == 2)
			rsvd |= 0x1fe000ULL;
		if (e & rsvd) {
			w->fault_error = base_err | PF_P | PF_RSVD;
			return false;
		}
		writable &= (e & PTE_W) != 0;
		nx |= m->nxe && (e & PTE_NX);
		if (commit && !(e & PTE_A)) {
			__atomic_fetch_or(ep, PTE_A, __ATOMIC_RELAXED);
			gm_mark_dirty(gm, table + idx * 8, 8);
		}
		if (level == 1 || ((level == 2 || level == 3) && (e & PTE_PS))) {
			uint64_t size = level == 1 ? PAGE_4K : level == 2 ? PAGE_2M : PAGE_1G;
			uint64_t frame = e & PTE_ADDR & ~(size - 1);

			w->gpa = frame | (va & (size - 1));
			w->page_size = size;
			w->writable = writable || !m->wp;
			w->executable = !nx;
			if ((m->write && !w->writable) || (m->fetch && nx)) {
				w->fault_error = base_err | PF_P;
				return false;
			}
			if (commit && m->write && !(e & PTE_D)) {
				__atomic_fetch_or(ep, PTE_D, __ATOMIC_RELAXED);
				gm_mark_dirty(gm, table + idx * 8, 8);
			}
			w->dirty = m->write || (e & PTE_D);
			return true;
		}
		table = e & PTE_ADDR;
	}
	return false;
}
