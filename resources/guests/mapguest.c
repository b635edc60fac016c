/*
 * mapguest: a page-table benchmark. It builds its own root (rt/paging.c) and then, `loops`
 * times, points the PTE of one scratch virtual address at page 0 or page 1 (alternately),
 * invlpg's the address and reads it, checking that the read sees the page just mapped:
 *
 *   mapguest: loops=N ok cycles=C tsc_khz=K
 *
 * (cycles: TSC ticks over the whole loop, rdtsc; K from CPUID 0x40000010, 0 when absent).
 * Command line: loops=N (default 20000). With cr0reads=N it first times N reads of CR0
 * (mov from CR0: a privileged instruction, one trap each in shadow mode, no MMU work):
 *
 *   mapguest: cr0reads=N cycles=C
 *
 * and ioexits=N times N writes to port 0x80 (a VM exit to hearth in both engines, which
 * shadow mode takes straight from CPL3, without its monitor):
 *
 *   mapguest: ioexits=N cycles=C
 *
 * Exit status 10: a read saw the wrong page (a "mapguest: FAIL" line says which); 9: no
 * pages for the tables; 98: a bad token.
 */
#include "cpu.h"
#include "paging.h"
#include "rt.h"

#define DEFAULT_LOOPS 20000
#define LEAF_RW       (PG_P | PG_W | PG_A | PG_D)

void guest_main(struct hvm_start_info *si)
{
	static const uint64_t mark[2] = {0x5a5a000000000000ULL, 0xa5a5111111111111ULL};
	const char *pos = rt_cmdline(si), *end = pos + rt_strnlen(pos, RT_CMDLINE_MAX);
	volatile uint64_t *scratch = (volatile uint64_t *)PG_WINDOW_VA;
	uint64_t loops = DEFAULT_LOOPS, cr0reads = 0, ioexits = 0, pa[2], t0, t1;
	struct token tok, val;
	struct pg_root root;
	uint64_t *page[2];

	while (rt_next_token(&pos, end, &tok)) {
		if ((rt_token_value(&tok, "loops", &val) && !rt_parse_u64(&val, &loops)) ||
		    (rt_token_value(&tok, "cr0reads", &val) && !rt_parse_u64(&val, &cr0reads)) ||
		    (rt_token_value(&tok, "ioexits", &val) && !rt_parse_u64(&val, &ioexits))) {
			con_printf("mapguest: bad token %.*s\n", (int)tok.len, tok.s);
			guest_exit(98);
		}
	}
	if (cr0reads) {
		t0 = rdtsc();
		for (uint64_t i = 0; i < cr0reads; i++)
			(void)read_cr0();
		t1 = rdtsc();
		con_printf("mapguest: cr0reads=%lu cycles=%lu\n", (unsigned long)cr0reads,
		           (unsigned long)(t1 - t0));
	}
	if (ioexits) {
		t0 = rdtsc();
		for (uint64_t i = 0; i < ioexits; i++)
			outb(0x80, 0);
		t1 = rdtsc();
		con_printf("mapguest: ioexits=%lu cycles=%lu\n", (unsigned long)ioexits,
		           (unsigned long)(t1 - t0));
	}
	if (!pg_new_root(&root) || !(page[0] = pg_alloc()) || !(page[1] = pg_alloc())) {
		con_puts("mapguest: FAIL page pool used up");
		guest_exit(9);
	}
	for (int k = 0; k < 2; k++) {
		page[k][0] = mark[k];
		pa[k] = pg_pa(page[k]) | LEAF_RW;
	}
	root.pt[0] = pa[0];
	write_cr3(root.cr3);
	t0 = rdtsc();
	for (uint64_t i = 0; i < loops; i++) {
		uint64_t got;

		root.pt[0] = pa[i & 1];
		invlpg(PG_WINDOW_VA);
		got = *scratch;
		if (got != mark[i & 1]) {
			con_printf("mapguest: FAIL loop %lu read 0x%lx, want 0x%lx (page %lu)\n",
			           (unsigned long)i, (unsigned long)got, (unsigned long)mark[i & 1],
			           (unsigned long)(i & 1));
			guest_exit(10);
		}
	}
	t1 = rdtsc();
	con_printf("mapguest: loops=%lu ok cycles=%lu tsc_khz=%u\n", (unsigned long)loops,
	           (unsigned long)(t1 - t0), tsc_khz());
}
