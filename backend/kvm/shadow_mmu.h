/*
 * The shadow MMU: shadow page tables that compose the guest's own mapping g (guest-virtual
 * to guest-physical, walked in software) with hearth's map f (guest-physical to
 * KVM-physical: the identity for RAM and devices). Entries are filled lazily on #PF;
 * roots are cached per guest CR3 (LRU); the guest's page-table pages are write-protected
 * in the shadow, so a cached root is never more permissive than g.
 *
 * Double shadowing (docs/HOST_FACTS.md): KVM shadows these tables in turn and does not see
 * userspace stores that remove or narrow an entry. So an existing shadow entry is only
 * ever widened in place; anything that must narrow or drop an entry starts a new epoch:
 * every cached root is dropped and new ones are built from pages KVM has never seen. When
 * the pool runs out, its memslot is reloaded, which makes KVM forget all its pages.
 */
#ifndef HEARTH_SHADOW_MMU_H
#define HEARTH_SHADOW_MMU_H

#include <stdbool.h>
#include <stdint.h>

#include "cpu/pagewalk.h"
#include "cpu/x86.h"
#include "vmm/guest_memory.h"
#include "shadow_monitor.h"

#define SH_ROOTS        16
#define SH_KEY_IDENTITY (~0ULL) /* guest paging off: VA = GPA */
#define SH_NO_EXEMPT    PT_NO_EXEMPT

struct sh_mmu_stats {
	uint64_t hits, misses, fills, evictions, invalidations, epochs, reloads, tracked_writes;
};

struct sh_root {
	uint64_t key;  /* guest CR3 (address bits) or SH_KEY_IDENTITY */
	uint64_t page; /* pool index of the PML4 */
	uint64_t last_use;
	bool valid;
};

struct sh_mmu {
	struct sh_monitor *mon;
	const struct guest_memory *gm;
	int vm_fd;
	unsigned pool_next; /* pages [pool_next, end) have never been seen by KVM */
	uint64_t epoch;     /* bumps whenever cached roots were dropped */
	uint64_t tick;
	struct sh_root roots[SH_ROOTS];
	/* guest page-table pages, write-protected in every shadow; pt.exempt: a page left
	 * writable for one instruction */
	struct pt_tracker pt;
	/* guest paging controls that change what a walk allows */
	bool nxe, wp;
	struct sh_mmu_stats st;
};

#define sh_walk page_walk

enum sh_fault_result {
	SH_FILLED,        /* the shadow now maps the address; resume */
	SH_GUEST_FAULT,   /* g does not allow it: reflect #PF (walk.fault_error) */
	SH_TRACKED_WRITE, /* a write to one of the guest's page-table pages */
	SH_BAD_GPA,       /* g maps it to a physical address hearth reserves */
};

void sh_mmu_init(struct sh_mmu *m, struct sh_monitor *mon, const struct guest_memory *gm,
                 int vm_fd);
/* The KVM-physical address of the shadow root for `key`; builds one on a miss. */
uint64_t sh_mmu_root(struct sh_mmu *m, uint64_t key);
/* Handle a shadow page fault at `va` (real #PF error code `err`) under root `key`. */
enum sh_fault_result sh_mmu_fault(struct sh_mmu *m, uint64_t key, uint64_t va, uint32_t err,
                                  struct sh_walk *w);
/* Walk g without side effects (no A/D updates): for instruction fetch and emulation.
 * Returns false (with w->fault_error) when g does not map `va` for the access. */
bool sh_mmu_translate(struct sh_mmu *m, uint64_t key, uint64_t va, bool write, struct sh_walk *w);
/* Drop every cached root (a new epoch). */
void sh_mmu_flush(struct sh_mmu *m);
bool sh_mmu_is_tracked(const struct sh_mmu *m, uint64_t gpa);
void sh_mmu_untrack(struct sh_mmu *m, uint64_t gpa);

/* Pure helper for tests: the error code hardware would report for this walk failure. */
#endif
