/* Page tables built at run time: see rt/paging.h. */
#include "paging.h"
#include "cpu.h"
#include "rt.h"

#define POOL_PAGES 16
#define PG_TABLE   (PG_P | PG_W | PG_U | PG_A) /* leaves decide what user code may touch */

static uint8_t pool[POOL_PAGES][PG_SIZE] __attribute__((section(".noinit"), aligned(4096)));
static unsigned pool_used;

void *pg_alloc(void)
{
	void *p;

	if (pool_used == POOL_PAGES)
		return NULL;
	p = pool[pool_used++];
	memset(p, 0, PG_SIZE);
	return p;
}

bool pg_new_root(struct pg_root *r)
{
	const uint64_t *cur = (const uint64_t *)(uintptr_t)(read_cr3() & ~0xfffULL);
	uint64_t *pml4 = pg_alloc(), *pdpt = pg_alloc(), *pd = pg_alloc(), *pt = pg_alloc();

	if (!pt)
		return false;
	pml4[0] = cur[0];
	pml4[(PG_WINDOW_VA >> 39) & 511] = pg_pa(pdpt) | PG_TABLE;
	pdpt[(PG_WINDOW_VA >> 30) & 511] = pg_pa(pd) | PG_TABLE;
	pd[(PG_WINDOW_VA >> 21) & 511] = pg_pa(pt) | PG_TABLE;
	r->cr3 = pg_pa(pml4);
	r->pt = pt;
	return true;
}
