/*
 * smpguest: starts the application processors (APs) the way an OS does, so that hearth's
 * engines can be tested on INIT/SIPI, real-mode startup code and IPIs. One line per check:
 *
 *   smpguest: classic trampoline at 0x10000 (sipi vector 0x10), 4 cpus in the MP table
 *   smpguest: 4 cpus up (apic ids 0 1 2 3)
 *   smpguest: ipi ping-pong ok (8 rounds with 3 aps)
 *
 * The BSP reads the CPUs' APIC IDs from the MP table hearth writes (rt/mptable.c), loads an
 * IDT (rt/idt.c), masks the PICs, enables its LAPIC and runs the LAPIC timer periodically
 * (1 ms; rt/lapic.c), which bounds every wait: it waits with `sti; hlt`, so a waiting BSP
 * leaves the host CPU to the APs. It copies a trampoline (smpguest_trampoline.S) to the free
 * page TRAMP_BASE (smpguest.h) and then starts the APs one at a time, as the MP spec (B.4)
 * and SDM 8.4.4 say: INIT (level, assert), INIT de-assert, 10 ms, STARTUP with vector
 * TRAMP_BASE >> 12, 1 ms, STARTUP again, each time waiting for the ICR's delivery status to
 * clear; then it waits up to 1 s for the AP to arrive. Before each, it leaves the AP's stack
 * and cpu index in the trampoline's data. The trampoline takes the AP to long mode on the
 * BSP's page tables and calls ap_main(index): the AP loads the IDT, enables its LAPIC, reads
 * its APIC ID, counts itself in (an atomic add) and halts with interrupts enabled.
 *
 * Ping-pong: ROUNDS times, the BSP sends each AP in turn a fixed IPI (VEC_PING, physical
 * destination = its APIC ID); the AP's handler answers with VEC_PONG to the BSP and EOIs; the
 * BSP waits up to 1 s for the pong and checks which AP sent it and how many pings it saw.
 *
 * Command line: `classic` (the default) or `direct` picks the trampoline:
 *   classic  real mode -> 32-bit protected mode -> long mode (as Linux's trampoline)
 *   direct   real mode straight to long mode: CR4.PAE, CR3, EFER.LME, then CR0.PE|PG at once
 * and `ownroot` makes each AP, once every AP is up, load a page-table root of its own (a copy
 * of the boot PML4: the same mappings through another CR3), all of them at once, as kernels
 * with per-CPU roots do.
 * `rounds=N` (1..100000) plays N rounds instead of ROUNDS, 50 ms apart, each printed as
 * "smpguest: round K ok" (for snapshots taken while APs run).
 * `page0=N` (1..1000000): once every CPU is up, all of them at once add 1 to one quadword on
 * page 0, N times each, with `lock incq` (atomic on every CPU), then the BSP checks the sum:
 * "smpguest: page0 lock incq ok (N per cpu, total T)". A host process cannot map page 0, so
 * in the process engine every one of those is emulated, from several host threads at once.
 * Tokens whose key contains a '.' are skipped.
 *
 * Exit status: 0 all checks passed; else a "smpguest: FAIL ..." line and
 *   10  no MP table, fewer than 2 or more than MAX_CPUS CPUs in it, or the BSP's APIC ID is
 *       not in it
 *   11  the trampoline page is not free RAM (outside the memory map's RAM, or the boot data
 *       hearth passed lies in it)
 *   12  an IPI stayed pending: the ICR's delivery status did not clear within 1 s
 *   13  an AP did not arrive within 1 s of its STARTUP IPIs ("APs did not arrive")
 *   14  an AP reported an APIC ID other than the one the MP table lists for it
 *   15  ping-pong: no pong within 1 s, a pong from the wrong AP, or a wrong ping count
 *   16  page0: a CPU did not finish within 60 s, or the sum is not N times the CPUs
 *   4   (RT_EXIT_TRAP) an unexpected exception or interrupt
 *   98  unknown action
 */
#include "cpu.h"
#include "idt.h"
#include "lapic.h"
#include "rt.h"
#include "smpguest.h"

enum {
	EXIT_CPUS = 10,
	EXIT_TRAMP = 11,
	EXIT_ICR = 12,
	EXIT_ARRIVE = 13,
	EXIT_APIC_ID = 14,
	EXIT_PINGPONG = 15,
	EXIT_PAGE0 = 16,
	EXIT_UNKNOWN = 98,
};

#define PAGE_4K    0x1000
#define MAX_CPUS   32 /* hearth's --vcpus limit */
#define AP_STACK   4096
#define ROUNDS     8
#define TIMEOUT_MS 1000

#define VEC_TICK     0x30
#define VEC_PING     0x40
#define VEC_PONG     0x41
#define VEC_SPURIOUS 0xff /* rt/lapic.c's spurious vector */

#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1

/* Boot GDT descriptors (as rt/entry.S), with a 32-bit code segment for the classic path.
 * Accessed bits preset: loading a selector never writes the GDT. */
#define DESC_CODE64 0x00af9b000000ffffULL
#define DESC_DATA   0x00cf93000000ffffULL
#define DESC_CODE32 0x00cf9b000000ffffULL

static int ncpus;
static uint8_t apic_ids[MAX_CPUS]; /* from the MP table, in table order */
static int bsp;                    /* the BSP's index in apic_ids */
static uint8_t ap_stack[MAX_CPUS][AP_STACK] __attribute__((section(".noinit"), aligned(16)));

/* Written by the APs. */
static volatile unsigned arrived;               /* APs in ap_main (atomic add) */
static volatile uint8_t seen_apic_id[MAX_CPUS]; /* the ID each AP read from its LAPIC */
static volatile unsigned pings[MAX_CPUS];       /* pings each AP took */
static volatile int pong_from = -1;             /* the index of the last AP that answered */

/* Written by the BSP's handlers. */
static volatile uint64_t ticks; /* 1 ms each */
static volatile unsigned pongs;

static _Noreturn __attribute__((format(printf, 2, 3))) void fail(int status, const char *fmt, ...)
{
	va_list ap;

	con_write("smpguest: FAIL ", 15);
	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
	con_write("\n", 1);
	guest_exit(status);
}

static int index_of(uint8_t apic_id)
{
	for (int i = 0; i < ncpus; i++)
		if (apic_ids[i] == apic_id)
			return i;
	return -1;
}

/* ---- interrupt handlers (the IDT is shared by all CPUs) ---- */

static void on_tick(struct trap_frame *f)
{
	(void)f;
	ticks++;
	lapic_eoi();
}

static void on_pong(struct trap_frame *f)
{
	(void)f;
	pongs++;
	lapic_eoi();
}

static void on_spurious(struct trap_frame *f)
{
	(void)f; /* no EOI for a spurious interrupt */
}

/* On an AP: count the ping, answer the BSP. */
static void on_ping(struct trap_frame *f)
{
	int me = index_of(lapic_id());

	(void)f;
	if (me >= 0)
		pings[me]++;
	pong_from = me;
	for (unsigned n = 0; lapic_ipi_busy() && n < 1000000; n++)
		__asm__ volatile("pause");
	lapic_send_ipi(apic_ids[bsp], LAPIC_ICR_FIXED | VEC_PONG);
	lapic_eoi();
}

/* ---- waiting on the BSP: every wait is bounded by the 1 ms tick ---- */

/* Halt until *counter >= want (an interrupt or a tick wakes the BSP to look) or `ms`
 * milliseconds pass; whether the count was reached. Interrupts are off outside waits. */
static bool wait_count(volatile unsigned *counter, unsigned want, unsigned ms)
{
	uint64_t end = ticks + ms + 1; /* the first tick may come at once */

	while (*counter < want) {
		if (ticks >= end)
			return false;
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	}
	return true;
}

static void delay_ms(unsigned ms)
{
	static volatile unsigned never;

	wait_count(&never, 1, ms);
}

/* Send an IPI and wait for the ICR's delivery status to clear (interrupts on meanwhile, so
 * that the tick runs). */
static void send_ipi(int cpu, uint32_t icr_low, const char *what)
{
	uint64_t end;

	lapic_send_ipi(apic_ids[cpu], icr_low);
	end = ticks + TIMEOUT_MS + 1;
	while (lapic_ipi_busy()) {
		if (ticks >= end)
			fail(EXIT_ICR, "%s to apic id %u still pending after %u ms (icr 0x%x)",
			     what, apic_ids[cpu], TIMEOUT_MS, lapic_read(LAPIC_ICR_LOW));
		__asm__ volatile("sti; pause; cli" ::: "memory");
	}
}

/* ---- the APs ---- */

_Noreturn void ap_main(unsigned index);

static bool own_root;                      /* `ownroot` */
static volatile unsigned roots_go, rooted; /* `ownroot`: load them now; APs that did */
/* `page0=N`: increments per CPU on page 0, all CPUs at once once `page0_go` is set */
static unsigned page0_n;
static volatile unsigned page0_go, page0_done;
#define PAGE0_COUNTER 0xf00ULL /* on page 0, clear of the boot GDT at 0x500 */

static volatile uint64_t *page0_counter(void)
{
	uintptr_t at = PAGE0_COUNTER;

	__asm__("" : "+r"(at)); /* (an address the compiler does not take for null) */
	return (volatile uint64_t *)at;
}

static void page0_increments(void)
{
	volatile uint64_t *counter = page0_counter();

	while (!__atomic_load_n(&page0_go, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	for (unsigned i = 0; i < page0_n; i++)
		__asm__ volatile("lock incq %0" : "+m"(*counter));
	__atomic_fetch_add(&page0_done, 1, __ATOMIC_RELEASE);
}
/* Each AP's own copy of the boot PML4 (`ownroot`). */
static uint64_t ap_pml4[MAX_CPUS][512] __attribute__((aligned(PAGE_4K)));

_Noreturn void ap_main(unsigned index)
{
	idt_load();
	lapic_enable();
	seen_apic_id[index] = lapic_id();
	__atomic_fetch_add(&arrived, 1, __ATOMIC_RELEASE);
	if (own_root) {
		const uint64_t *boot = (const uint64_t *)(uintptr_t)(read_cr3() & ~0xfffULL);

		for (unsigned i = 0; i < 512; i++)
			ap_pml4[index][i] = boot[i];
		while (!__atomic_load_n(&roots_go, __ATOMIC_ACQUIRE))
			__asm__ volatile("pause");
		write_cr3((uint64_t)(uintptr_t)ap_pml4[index]);
		__atomic_fetch_add(&rooted, 1, __ATOMIC_RELEASE);
	}
	if (page0_n)
		page0_increments();
	for (;;)
		__asm__ volatile("sti; hlt" ::: "memory"); /* pings arrive here */
}

static bool overlaps(uint64_t addr, uint64_t len)
{
	return len && addr < TRAMP_BASE + PAGE_4K && TRAMP_BASE < addr + len;
}

/* The trampoline page must be RAM that the boot data hearth passed does not use. */
static void check_tramp_page(const struct hvm_start_info *si)
{
	const char *cmdline = rt_cmdline(si);

	if (!rt_in_ram(si, TRAMP_BASE, PAGE_4K))
		fail(EXIT_TRAMP, "trampoline page 0x%x is not RAM in the memory map", TRAMP_BASE);
	if (overlaps((uintptr_t)si, sizeof(*si)) ||
	    overlaps(si->memmap_paddr,
	             (uint64_t)si->memmap_entries * sizeof(struct hvm_memmap_table_entry)) ||
	    overlaps((uintptr_t)cmdline, rt_strnlen(cmdline, RT_CMDLINE_MAX) + 1))
		fail(EXIT_TRAMP, "trampoline page 0x%x holds boot data (start_info at %p)",
		     TRAMP_BASE, (void *)si);
}

static void install_trampoline(bool direct)
{
	const char *start = direct ? tramp_direct : tramp_classic;
	const char *end = direct ? tramp_direct_end : tramp_classic_end;
	struct tramp_data *td = (struct tramp_data *)(uintptr_t)(TRAMP_BASE + TRAMP_DATA);

	rt_copy((void *)(uintptr_t)TRAMP_BASE, start, (size_t)(end - start));
	*td = (struct tramp_data){
	    .gdt = {0, DESC_CODE64, DESC_DATA, DESC_CODE32},
	    .gdt_limit = sizeof(td->gdt) - 1,
	    .gdt_base = TRAMP_BASE + TRAMP_DATA + TD_GDT,
	    .cr3 = (uint32_t)read_cr3(), /* the boot identity map, inside the image (< 1 GiB) */
	    .entry = (uint64_t)(uintptr_t)ap_main,
	};
}

/* INIT, INIT de-assert, 10 ms, STARTUP, 1 ms, STARTUP; then wait for the AP to arrive. */
static void start_ap(int cpu, unsigned want_arrived)
{
	volatile struct tramp_data *td = (struct tramp_data *)(uintptr_t)(TRAMP_BASE + TRAMP_DATA);

	td->stack = (uint64_t)(uintptr_t)(ap_stack[cpu] + AP_STACK);
	td->index = (uint64_t)cpu;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	send_ipi(cpu, LAPIC_ICR_INIT | LAPIC_ICR_LEVEL | LAPIC_ICR_ASSERT, "INIT");
	send_ipi(cpu, LAPIC_ICR_INIT | LAPIC_ICR_LEVEL, "INIT de-assert");
	delay_ms(10);
	for (int n = 0; n < 2; n++) {
		send_ipi(cpu, LAPIC_ICR_STARTUP | (TRAMP_BASE >> 12), "STARTUP");
		delay_ms(1);
	}
	if (!wait_count(&arrived, want_arrived, TIMEOUT_MS))
		fail(EXIT_ARRIVE,
		     "APs did not arrive: %u of %d up, apic id %u missing %u ms after its "
		     "STARTUP IPIs",
		     arrived, ncpus - 1, apic_ids[cpu], TIMEOUT_MS);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
}

static void start_aps(void)
{
	unsigned want = 0;

	for (int i = 0; i < ncpus; i++)
		if (i != bsp)
			start_ap(i, ++want);

	con_printf("smpguest: %d cpus up (apic ids", ncpus);
	for (int i = 0; i < ncpus; i++) {
		uint8_t seen = i == bsp ? lapic_id() : seen_apic_id[i];

		if (seen != apic_ids[i])
			fail(EXIT_APIC_ID, "cpu %d reads apic id %u, the MP table lists %u", i,
			     seen, apic_ids[i]);
		con_printf(" %u", seen);
	}
	con_puts(")");
	if (own_root) {
		__atomic_store_n(&roots_go, 1, __ATOMIC_RELEASE);
		if (!wait_count(&rooted, want, TIMEOUT_MS))
			fail(EXIT_ARRIVE, "only %u of %u APs loaded their own root within %u ms",
			     rooted, want, TIMEOUT_MS);
	}
}

/* ---- ping-pong ---- */

static unsigned rounds = ROUNDS;
static bool paced; /* `rounds=N`: a line per round, 50 ms apart */

static void ping_pong(void)
{
	for (unsigned round = 1; round <= rounds; round++) {
		for (int i = 0; i < ncpus; i++) {
			unsigned want = pongs + 1;

			if (i == bsp)
				continue;
			pong_from = -1;
			send_ipi(i, LAPIC_ICR_FIXED | VEC_PING, "ping");
			if (!wait_count(&pongs, want, TIMEOUT_MS))
				fail(EXIT_PINGPONG,
				     "no pong from apic id %u in round %u within %u ms (it took %u "
				     "pings)",
				     apic_ids[i], round, TIMEOUT_MS, pings[i]);
			if (pong_from != i || pings[i] != round || pongs != want)
				fail(EXIT_PINGPONG,
				     "round %u, apic id %u: pong from cpu %d, %u pings taken, %u "
				     "pongs "
				     "(want cpu %d, %u, %u)",
				     round, apic_ids[i], pong_from, pings[i], pongs, i, round,
				     want);
		}
		if (paced) {
			con_printf("smpguest: round %u ok\n", round);
			delay_ms(50);
		}
	}
	con_printf("smpguest: ipi ping-pong ok (%u rounds with %d aps)\n", rounds, ncpus - 1);
}

/* ---- page 0, from every CPU at once ---- */

static void page0_race(void)
{
	uint64_t want = (uint64_t)page0_n * (unsigned)ncpus, got;

	*page0_counter() = 0;
	__atomic_store_n(&page0_go, 1, __ATOMIC_RELEASE);
	page0_increments();
	if (!wait_count(&page0_done, (unsigned)ncpus, 60000))
		fail(EXIT_PAGE0, "page0: only %u of %d cpus finished within 60 s", page0_done,
		     ncpus);
	got = *page0_counter();
	if (got != want)
		fail(EXIT_PAGE0, "page0: the sum is %lu, not %lu", (unsigned long)got,
		     (unsigned long)want);
	con_printf("smpguest: page0 lock incq ok (%u per cpu, total %lu)\n", page0_n,
	           (unsigned long)got);
}

/* ---- setup and command line ---- */

static void find_cpus(const struct hvm_start_info *si)
{
	ncpus = rt_mp_cpus(si, apic_ids, MAX_CPUS);
	if (ncpus < 0)
		fail(EXIT_CPUS, "no valid MP table");
	if (ncpus < 2 || ncpus > MAX_CPUS)
		fail(EXIT_CPUS, "the MP table lists %d cpus (this test wants 2..%d)", ncpus,
		     MAX_CPUS);
	bsp = index_of(lapic_id());
	if (bsp < 0)
		fail(EXIT_CPUS, "the BSP's apic id %u is not in the MP table", lapic_id());
}

/* APIC bus kHz for the tick: CPUID 0x40000010 EBX (hearth, KVM), else KVM's 1 GHz. */
static uint32_t apic_bus_khz(void)
{
	uint32_t r[4];

	cpuid(0x40000000, 0, r);
	if (r[0] >= 0x40000010) {
		cpuid(0x40000010, 0, r);
		if (r[1])
			return r[1];
	}
	return 1000000;
}

static void setup_bsp(void)
{
	idt_init();
	idt_set(VEC_TICK, on_tick, 0);
	idt_set(VEC_PING, on_ping, 0);
	idt_set(VEC_PONG, on_pong, 0);
	idt_set(VEC_SPURIOUS, on_spurious, 0);
	outb(PIC1_DATA, 0xff); /* only the LAPIC interrupts */
	outb(PIC2_DATA, 0xff);
	lapic_enable();
	lapic_timer_periodic(VEC_TICK, apic_bus_khz()); /* 1 ms */
}

static bool is_foreign_param(const struct token *tok)
{
	const char *eq = rt_memchr(tok->s, '=', tok->len);
	size_t key_len = eq ? (size_t)(eq - tok->s) : tok->len;

	return rt_memchr(tok->s, '.', key_len) != NULL;
}

static bool want_direct(const char *pos, const char *end)
{
	struct token tok, val;
	bool direct = false;

	while (rt_next_token(&pos, end, &tok)) {
		if (rt_token_is(&tok, "direct"))
			direct = true;
		else if (rt_token_is(&tok, "classic"))
			direct = false;
		else if (rt_token_is(&tok, "ownroot"))
			own_root = true;
		else if (rt_token_value(&tok, "rounds", &val)) {
			uint64_t n;

			if (!rt_parse_u64(&val, &n) || n < 1 || n > 100000) {
				con_printf("smpguest: bad rounds %.*s\n", (int)val.len, val.s);
				guest_exit(EXIT_UNKNOWN);
			}
			rounds = (unsigned)n;
			paced = true;
		} else if (rt_token_value(&tok, "page0", &val)) {
			uint64_t n;

			if (!rt_parse_u64(&val, &n) || n < 1 || n > 1000000) {
				con_printf("smpguest: bad page0 %.*s\n", (int)val.len, val.s);
				guest_exit(EXIT_UNKNOWN);
			}
			page0_n = (unsigned)n;
		} else if (!is_foreign_param(&tok)) {
			con_printf("smpguest: unknown action %.*s\n", (int)tok.len, tok.s);
			guest_exit(EXIT_UNKNOWN);
		}
	}
	return direct;
}

void guest_main(struct hvm_start_info *si)
{
	const char *cmdline = rt_cmdline(si);
	bool direct = want_direct(cmdline, cmdline + rt_strnlen(cmdline, RT_CMDLINE_MAX));

	find_cpus(si);
	check_tramp_page(si);
	con_printf("smpguest: %s trampoline at 0x%x (sipi vector 0x%x), %d cpus in the MP table\n",
	           direct ? "direct" : "classic", TRAMP_BASE, TRAMP_BASE >> 12, ncpus);
	setup_bsp();
	install_trampoline(direct);
	start_aps();
	if (page0_n)
		page0_race();
	ping_pong();
	lapic_timer_stop();
}
