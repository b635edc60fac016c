/*
 * Page tables built at run time (rt/paging.c), for the guests that test an MMU: a root
 * keeps the boot identity map (PML4 slot 0: the first 4 GiB, 2 MiB pages) and adds a 2 MiB
 * window of 4 KiB pages at PG_WINDOW_VA, in PML4 slot 1, whose PTEs the guest sets itself.
 */
#ifndef HEARTH_GUEST_PAGING_H
#define HEARTH_GUEST_PAGING_H

#include <stdbool.h>
#include <stdint.h>

#define PG_P 0x001ULL
#define PG_W 0x002ULL
#define PG_U 0x004ULL
#define PG_A 0x020ULL
#define PG_D 0x040ULL

#define PG_SIZE      4096ULL
#define PG_WINDOW_VA 0x8000000000ULL /* 512 GiB */

struct pg_root {
	uint64_t cr3;
	uint64_t *pt; /* pt[i] maps PG_WINDOW_VA + i * 4 KiB; all zero (not present) at first */
};

/* A zeroed 4 KiB page from a small static pool (16 pages), or NULL when it is used up. */
void *pg_alloc(void);
/* A new root (PML4, PDPT, PD and PT from the pool). The identity map is the one in the
 * PML4 that CR3 points at now. False when the pool is used up. */
bool pg_new_root(struct pg_root *r);

static inline uint64_t pg_pa(const void *p)
{
	return (uint64_t)(uintptr_t)p; /* identity mapped */
}

#endif
