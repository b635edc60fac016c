/*
 * The guest's own mapping g (4-level paging), walked in software: what a guest-virtual
 * address maps to and with which rights, as the CPU would find it, and the set of guest
 * page-table pages an engine write-protects so that nothing it derives from g can outlive a
 * change of g. Shared by the engines that deprivilege the guest (KVM's shadow engine, the
 * process engine). Pure: guest memory only (unit-tested and fuzzed).
 */
#ifndef HEARTH_PAGEWALK_H
#define HEARTH_PAGEWALK_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/guest_memory.h"

#define PAGE_4K (1ULL << 12)
#define PAGE_2M (1ULL << 21)
#define PAGE_1G (1ULL << 30)

/* The result of walking g for one access. */
struct page_walk {
	uint64_t gpa;       /* guest-physical address of the accessed byte */
	uint64_t page_size; /* 4 KiB, 2 MiB or 1 GiB, as g maps it */
	bool writable, executable, dirty;
	uint32_t fault_error;  /* when the walk fails: the #PF error code for the guest */
	uint64_t entry_gpa[4]; /* where the entry of each level (1 = PTE ... 4) was read; 0 below a
	                          large page's level */
};

/* Guest page-table pages (GPA >> 12) an engine keeps write-protected. */
#define PT_MAX_TRACKED 4096
#define PT_NO_EXEMPT   UINT64_MAX

struct pt_tracker {
	uint64_t pfn[PT_MAX_TRACKED];
	unsigned n;
	uint64_t exempt; /* a page left writable for one instruction, or PT_NO_EXEMPT */
};

void pt_tracker_init(struct pt_tracker *t);
bool pt_tracked(const struct pt_tracker *t, uint64_t gpa);
bool pt_tracked_in_range(const struct pt_tracker *t, uint64_t gpa, uint64_t size);
/* Start protecting the page at `gpa`; true when it was new (mappings that allow writing it
 * may exist and must go). The oldest is forgotten when the set is full: it is found again
 * on its next walk. */
bool pt_track(struct pt_tracker *t, uint64_t gpa);
void pt_untrack(struct pt_tracker *t, uint64_t gpa);

/* What the walk allows and how it commits. */
struct walk_mode {
	bool write, fetch;
	bool nxe, wp; /* EFER.NXE and CR0.WP as the guest set them */
	/* Commit as hardware does: set accessed/dirty bits, and track each table page passed
	 * (*new_tracked: one of them was not tracked before). NULL: no side effects. */
	struct pt_tracker *track;
	bool *new_tracked;
};

/* Walk g from `cr3` for `va`. False with w->fault_error on a guest-visible fault (a
 * non-canonical address counts as not present). */
bool page_walk(const struct guest_memory *gm, uint64_t cr3, uint64_t va, const struct walk_mode *m,
               struct page_walk *w);

#endif
