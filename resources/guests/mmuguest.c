/*
 * mmuguest: exercises what a kernel does with its MMU and CPU, for hearth's shadow engine.
 * It builds two page-table roots at run time (rt/paging.c: the boot identity map plus a
 * window of 4 KiB pages at PG_WINDOW_VA) that differ in one page, installs its own IDT
 * (rt/idt.c), turns on CR0.WP and runs the checks its command line names, in order; with no
 * action on the command line it runs "roots remap pf timer sse avx". One line per check:
 *
 *   roots     "mmuguest: two roots ok": VA X maps page A in root 1 and page B in root 2;
 *             reads and writes through X follow CR3 back and forth
 *   remap     "mmuguest: remap+invlpg ok": X's PTE moves to page C, invlpg X, X shows C
 *             (root 2 still shows B); then back to A
 *   pf        "mmuguest: #PF cr2=0x... err=0x3 ok": a write to a read-only page faults once;
 *             the handler checks CR2 and the error code (present|write), makes the page
 *             writable, invlpg's it and returns, and the write completes
 *   timer     "mmuguest: timer ok": LAPIC one-shot timer (vector 0x40), sti; hlt until it
 *             arrives, EOI
 *   sse       "mmuguest: sse ok": CR4.OSFXSR|OSXMMEXCPT, CR0.MP, then SSE2 integer code whose
 *             XMM state must survive a privileged instruction (mov from CR0)
 *   avx       "mmuguest: avx ok" (or "mmuguest: avx skipped (no AVX)" when CPUID lacks
 *             XSAVE or AVX): CR4.OSXSAVE, XCR0 = 7, then 256-bit AVX code, likewise
 *   usermode  enter CPL3 with iretq (code page at X + 0x3000, user selectors, a TSS); the
 *             user code runs hlt, whose #GP brings it back: "mmuguest: user mode ok", exit 0
 *             (ends the run). Not `int $n`: PVM hosts answer int from CPL3 with #UD.
 *   nx        EFER.NXE; page 4 of the window executable and ending with `out %al, $0x80`,
 *             page 5 marked NX and starting with another: calling the first must give one
 *             #PF at page 5 with P and I/D set, as on hardware (the second out never runs):
 *             "mmuguest: nx ok (#PF cr2=0x8000005000 err=0x11)"
 *   syscall   set EFER.SCE, STAR, LSTAR and SFMASK (DF), then syscall at CPL0 with CF and DF
 *             set: the entry must see RCX = the return address, R11 = the flags (CF and
 *             DF set) and DF clear; back through RCX with R11's flags, CF and DF set.
 *             (Not CF at the entry: QEMU's TCG, under the nested tests' KVM, clears it.)
 *             "mmuguest: syscall ok"
 *
 * Tokens whose key contains a '.' are skipped. Exit status: 0 when every check passed, else
 * the first failure's (a "mmuguest: FAIL ..." line says why): 10 roots, 11 remap, 12 pf,
 * 13 timer, 14 sse, 15 avx, 16 usermode, 17 syscall, 18 nx, 9 page pool used up, 98 unknown action,
 * 4 (RT_EXIT_TRAP) an unexpected exception or interrupt.
 */
#include "cpu.h"
#include "idt.h"
#include "lapic.h"
#include "paging.h"
#include "rt.h"

enum {
	EXIT_POOL = 9,
	EXIT_ROOTS = 10,
	EXIT_REMAP = 11,
	EXIT_PF = 12,
	EXIT_TIMER = 13,
	EXIT_SSE = 14,
	EXIT_AVX = 15,
	EXIT_USER = 16,
	EXIT_SYSCALL = 17,
	EXIT_NX = 18,
	EXIT_UNKNOWN = 98,
};

#define VA_X    (PG_WINDOW_VA + 0x0000) /* page 0 of the window: A (root 1) or B (root 2) */
#define VA_RO   (PG_WINDOW_VA + 0x1000) /* page 1: D, read-only until the #PF handler */
#define VA_USER (PG_WINDOW_VA + 0x3000) /* page 3: user code */

#define VEC_TIMER   0x40
#define VEC_GP      13
#define TIMER_COUNT 100000 /* bus cycles, divide by 1 */

#define LEAF_RW (PG_P | PG_W | PG_A | PG_D)
#define LEAF_RO (PG_P | PG_A)

#define MARK_A 0xa1a1a1a1a1a1a1a1ULL
#define MARK_B 0xb2b2b2b2b2b2b2b2ULL
#define MARK_C 0xc3c3c3c3c3c3c3c3ULL
#define MARK_D 0xd4d4d4d4d4d4d4d4ULL

static struct pg_root root[2];
static volatile uint64_t *page_a, *page_b, *page_c, *page_d;
static volatile uint64_t *const x = (volatile uint64_t *)VA_X;

static _Noreturn __attribute__((format(printf, 2, 3))) void fail(int status, const char *fmt, ...)
{
	va_list ap;

	con_write("mmuguest: FAIL ", 15);
	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
	con_write("\n", 1);
	guest_exit(status);
}

static volatile uint64_t *alloc_page(void)
{
	volatile uint64_t *p = pg_alloc();

	if (!p)
		fail(EXIT_POOL, "page pool used up");
	return p;
}

static void setup(void)
{
	idt_init();
	if (!pg_new_root(&root[0]) || !pg_new_root(&root[1]))
		fail(EXIT_POOL, "page pool used up");
	page_a = alloc_page();
	page_b = alloc_page();
	page_c = alloc_page();
	page_d = alloc_page();
	for (int k = 0; k < 2; k++) {
		root[k].pt[0] = pg_pa((void *)(k ? page_b : page_a)) | LEAF_RW;
		root[k].pt[1] = pg_pa((void *)page_d) | LEAF_RO;
	}
	/* Supervisor writes must honour read-only pages (the boot path leaves WP clear). */
	write_cr0(read_cr0() | CR0_WP);
	write_cr3(root[0].cr3);
}

/* ---- roots ---- */

static void check_roots(void)
{
	page_a[0] = MARK_A;
	page_b[0] = MARK_B;
	for (int i = 0; i < 6; i++) {
		int k = i & 1;
		volatile uint64_t *page = k ? page_b : page_a;
		uint64_t want = k ? MARK_B : MARK_A, got;

		write_cr3(root[k].cr3);
		got = x[0];
		if (got != want)
			fail(EXIT_ROOTS, "two roots: root %d reads 0x%lx at 0x%lx, want 0x%lx",
			     k + 1, (unsigned long)got, (unsigned long)VA_X, (unsigned long)want);
		x[1] = want + (uint64_t)i;
		if (page[1] != want + (uint64_t)i)
			fail(EXIT_ROOTS, "two roots: a write through root %d missed page %c", k + 1,
			     k ? 'B' : 'A');
	}
	write_cr3(root[0].cr3);
	con_puts("mmuguest: two roots ok");
}

/* ---- remap + invlpg ---- */

static void expect_x(uint64_t want, const char *when)
{
	uint64_t got = x[0];

	if (got != want)
		fail(EXIT_REMAP, "remap: 0x%lx reads 0x%lx %s, want 0x%lx", (unsigned long)VA_X,
		     (unsigned long)got, when, (unsigned long)want);
}

static void check_remap(void)
{
	page_a[0] = MARK_A;
	page_b[0] = MARK_B;
	page_c[0] = MARK_C;
	write_cr3(root[0].cr3);
	expect_x(MARK_A, "before the remap");
	root[0].pt[0] = pg_pa((void *)page_c) | LEAF_RW;
	invlpg(VA_X);
	expect_x(MARK_C, "after its PTE moved to page C and invlpg");
	x[2] = MARK_C + 2;
	if (page_c[2] != MARK_C + 2)
		fail(EXIT_REMAP, "remap: a write through 0x%lx missed page C", (unsigned long)VA_X);
	write_cr3(root[1].cr3);
	expect_x(MARK_B, "in root 2 (whose PTE did not change)");
	write_cr3(root[0].cr3);
	expect_x(MARK_C, "in root 1 again");
	root[0].pt[0] = pg_pa((void *)page_a) | LEAF_RW;
	invlpg(VA_X);
	expect_x(MARK_A, "after its PTE moved back to page A and invlpg");
	con_puts("mmuguest: remap+invlpg ok");
}

/* ---- #PF on a read-only page ---- */

static volatile uint64_t pf_expect, pf_cr2, pf_err;
static volatile unsigned pf_count;

static void on_pf(struct trap_frame *f)
{
	uint64_t cr2 = read_cr2();

	if (!pf_expect || cr2 != pf_expect || f->error != 0x3 || pf_count)
		fail(EXIT_PF,
		     "#PF at rip=0x%lx cr2=0x%lx err=0x%lx (expected one, cr2=0x%lx err=0x3)",
		     (unsigned long)f->rip, (unsigned long)cr2, (unsigned long)f->error,
		     (unsigned long)pf_expect);
	pf_count++;
	pf_cr2 = cr2;
	pf_err = f->error;
	root[0].pt[(cr2 - PG_WINDOW_VA) >> 12] |= PG_W | PG_D;
	invlpg(cr2);
}

static void check_pf(void)
{
	volatile uint64_t *ro = (volatile uint64_t *)VA_RO;

	write_cr3(root[0].cr3);
	root[0].pt[1] = pg_pa((void *)page_d) | LEAF_RO;
	invlpg(VA_RO);
	page_d[0] = 0;
	idt_set(VEC_PF, on_pf, 0);
	pf_expect = VA_RO;
	pf_count = 0;
	*ro = MARK_D; /* faults once; the handler makes the page writable and it retries */
	pf_expect = 0;
	if (pf_count != 1 || page_d[0] != MARK_D)
		fail(EXIT_PF, "#PF: %u faults, page D holds 0x%lx (want 1 fault and 0x%lx)",
		     pf_count, (unsigned long)page_d[0], (unsigned long)MARK_D);
	con_printf("mmuguest: #PF cr2=0x%lx err=0x%lx ok\n", (unsigned long)pf_cr2,
	           (unsigned long)pf_err);
}

/* ---- NX: the next instruction on a page the guest marks NX ---- */

#define VA_NXA   (PG_WINDOW_VA + 0x4000) /* page 4: executable, ends with out */
#define VA_NXB   (PG_WINDOW_VA + 0x5000) /* page 5: NX, starts with out; ret */
#define PG_NX    (1ULL << 63)
#define EFER_NXE (1ULL << 11)
#define PF_ERR_P 0x01ULL
#define PF_ERR_I 0x10ULL

static volatile uint64_t nx_cr2, nx_err;
static volatile unsigned nx_count;

static void on_nx_pf(struct trap_frame *f)
{
	nx_cr2 = read_cr2();
	nx_err = f->error;
	nx_count++;
	f->rip = *(const uint64_t *)f->rsp; /* back to the caller of the code */
	f->rsp += 8;
}

static void check_nx(void)
{
	uint8_t *a = pg_alloc(), *b = pg_alloc();

	if (!a || !b)
		fail(EXIT_POOL, "page pool used up");
	a[0xffe] = 0xe6, a[0xfff] = 0x80;      /* out %al, $0x80 */
	b[0] = 0xe6, b[1] = 0x80, b[2] = 0xc3; /* out %al, $0x80; ret */
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
	write_cr3(root[0].cr3);
	root[0].pt[(VA_NXA - PG_WINDOW_VA) >> 12] = pg_pa(a) | PG_P | PG_A;
	root[0].pt[(VA_NXB - PG_WINDOW_VA) >> 12] = pg_pa(b) | PG_P | PG_A | PG_NX;
	invlpg(VA_NXA);
	invlpg(VA_NXB);
	idt_set(VEC_PF, on_nx_pf, 0);
	((void (*)(void))(VA_NXA + 0xffe))();
	if (nx_count != 1 || nx_cr2 != VA_NXB || nx_err != (PF_ERR_P | PF_ERR_I))
		fail(EXIT_NX, "nx: %u faults, cr2=0x%lx err=0x%lx (want one at 0x%lx, err 0x11)",
		     nx_count, (unsigned long)nx_cr2, (unsigned long)nx_err, (unsigned long)VA_NXB);
	con_printf("mmuguest: nx ok (#PF cr2=0x%lx err=0x%lx)\n", (unsigned long)nx_cr2,
	           (unsigned long)nx_err);
}

/* ---- LAPIC timer ---- */

static volatile unsigned ticks;

static void on_timer(struct trap_frame *f)
{
	(void)f;
	ticks++;
	lapic_eoi();
}

static void check_timer(void)
{
	idt_set(VEC_TIMER, on_timer, 0);
	outb(0x21, 0xff); /* mask both PICs: only the LAPIC timer may interrupt */
	outb(0xa1, 0xff);
	lapic_enable();
	ticks = 0;
	lapic_timer_oneshot(VEC_TIMER, TIMER_COUNT);
	while (!ticks)
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	if (ticks != 1)
		fail(EXIT_TIMER, "timer: %u interrupts from a one-shot timer", ticks);
	con_puts("mmuguest: timer ok");
}

/* ---- SSE and AVX ---- */

static void enable_sse(void)
{
	write_cr0((read_cr0() | CR0_MP) & ~(CR0_EM | CR0_TS));
	write_cr4(read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT);
}

/* Four 32-bit lanes: a + b, then reversed (pshufd); the XMM registers must hold their
 * values across `mov %cr0` (a trap in shadow mode). */
static void check_sse(void)
{
	static const uint32_t a[4] = {1, 2, 3, 0x7fffffff}, b[4] = {10, 20, 30, 1};
	static const uint32_t want[4] = {0x80000000, 33, 22, 11};
	uint32_t out[4];

	enable_sse();
	__asm__ volatile("movdqu %1, %%xmm0\n\t"
	                 "movdqu %2, %%xmm1\n\t"
	                 "paddd %%xmm1, %%xmm0\n\t"
	                 "pshufd $0x1b, %%xmm0, %%xmm2\n\t"
	                 "mov %%cr0, %%rax\n\t"
	                 "movdqu %%xmm2, %0"
	                 : "=m"(out)
	                 : "m"(a), "m"(b)
	                 : "rax", "memory");
	for (int i = 0; i < 4; i++)
		if (out[i] != want[i])
			fail(EXIT_SSE, "sse: lane %d is 0x%x, want 0x%x", i, out[i], want[i]);
	con_puts("mmuguest: sse ok");
}

/* x * y + x on four doubles (as bit patterns: this file is built without FP types). */
static void check_avx(void)
{
	static const uint64_t x4[4] = {0x3ff0000000000000ULL, 0x4000000000000000ULL,
	                               0x3fe0000000000000ULL,
	                               0xc010000000000000ULL}; /* 1 2 .5 -4 */
	static const uint64_t y4[4] = {0x4000000000000000ULL, 0x4008000000000000ULL,
	                               0x3fd0000000000000ULL,
	                               0x3ff8000000000000ULL}; /* 2 3 .25 1.5 */
	static const uint64_t want[4] = {0x4008000000000000ULL, 0x4020000000000000ULL,
	                                 0x3fe4000000000000ULL,
	                                 0xc024000000000000ULL}; /* 3 8 .625 -10 */
	uint64_t out[4];
	uint32_t r[4];

	cpuid(1, 0, r);
	if (!(r[2] & CPUID1_ECX_XSAVE) || !(r[2] & CPUID1_ECX_AVX)) {
		con_puts("mmuguest: avx skipped (no AVX)");
		return;
	}
	enable_sse();
	write_cr4(read_cr4() | CR4_OSXSAVE);
	xsetbv(0, 7); /* x87 | SSE | AVX */
	__asm__ volatile("vmovdqu %1, %%ymm0\n\t"
	                 "vmovdqu %2, %%ymm1\n\t"
	                 "vmulpd %%ymm1, %%ymm0, %%ymm2\n\t"
	                 "vaddpd %%ymm0, %%ymm2, %%ymm3\n\t"
	                 "mov %%cr0, %%rax\n\t"
	                 "vmovdqu %%ymm3, %0\n\t"
	                 "vzeroupper"
	                 : "=m"(out)
	                 : "m"(x4), "m"(y4)
	                 : "rax", "memory");
	for (int i = 0; i < 4; i++)
		if (out[i] != want[i])
			fail(EXIT_AVX, "avx: lane %d is 0x%lx, want 0x%lx", i,
			     (unsigned long)out[i], (unsigned long)want[i]);
	con_puts("mmuguest: avx ok");
}

/* ---- user mode (shadow mode refuses it) and syscall at CPL0 ---- */

#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define SEL_TSS   0x28

static uint64_t gdt[7] __attribute__((aligned(16))) = {
    0,
    0x00af9b000000ffffULL, /* 0x08: kernel code, 64-bit (as the boot GDT) */
    0x00cf93000000ffffULL, /* 0x10: kernel data */
    0x00cff3000000ffffULL, /* 0x18: user data, DPL 3 */
    0x00affb000000ffffULL, /* 0x20: user code, 64-bit, DPL 3 */
    0,                     /* 0x28: TSS, filled in below */
    0,
};
static uint32_t tss[26] __attribute__((aligned(16)));
static uint8_t kstack[4096] __attribute__((section(".noinit"), aligned(16)));

static void on_user_gp(struct trap_frame *f)
{
	if ((f->cs & 3) != 3 || f->rip != VA_USER)
		fail(EXIT_USER, "usermode: #GP at rip=0x%lx cs=0x%lx, want the user hlt at 0x%lx",
		     (unsigned long)f->rip, (unsigned long)f->cs, (unsigned long)VA_USER);
	con_printf("mmuguest: user mode ok (#GP from hlt at cs=0x%lx)\n", (unsigned long)f->cs);
	guest_exit(0);
}

static _Noreturn void enter_user_mode(void)
{
	static const uint8_t code[] = {0xf4, 0xeb, 0xfe}; /* hlt (#GP at CPL3); jmp . */
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) gdtr = {sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt};
	uint64_t t = (uint64_t)(uintptr_t)tss,
	         rsp0 = (uint64_t)(uintptr_t)(kstack + sizeof(kstack));
	uint8_t *upage = pg_alloc();

	if (!upage)
		fail(EXIT_POOL, "page pool used up");
	rt_copy(upage, code, sizeof(code));
	tss[1] = (uint32_t)rsp0; /* RSP0 */
	tss[2] = (uint32_t)(rsp0 >> 32);
	tss[25] = sizeof(tss) << 16; /* I/O map base: none */
	gdt[5] = (sizeof(tss) - 1) | (t & 0xffffff) << 16 | 0x89ULL << 40 | (t >> 24 & 0xff) << 56;
	gdt[6] = t >> 32;
	__asm__ volatile("lgdt %0" : : "m"(gdtr));
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS));
	idt_set(VEC_GP, on_user_gp, 0);
	write_cr3(root[0].cr3);
	root[0].pt[(VA_USER - PG_WINDOW_VA) >> 12] = pg_pa(upage) | PG_P | PG_U | PG_A;
	invlpg(VA_USER);
	__asm__ volatile("pushq %0\n\t"
	                 "pushq %1\n\t"
	                 "pushq $2\n\t"
	                 "pushq %2\n\t"
	                 "pushq %3\n\t"
	                 "iretq"
	                 :
	                 : "i"(SEL_UDATA), "r"(VA_USER + PG_SIZE), "i"(SEL_UCODE), "r"(VA_USER)
	                 : "memory");
	__builtin_unreachable();
}

#define RF_CF 0x1ULL
#define RF_DF 0x400ULL

static void syscall_at_cpl0(void)
{
	uint64_t back, rax, after;

	if (!syscall_enable(0x08 /* the boot GDT's 64-bit code */, RF_DF))
		fail(EXIT_SYSCALL, "syscall: EFER.SCE did not stick");
	__asm__ volatile("lea 1f(%%rip), %0\n\t"
	                 "std\n\t"
	                 "stc\n\t"
	                 "syscall\n"
	                 "1:\tpushfq\n\t"
	                 "popq %1\n\t"
	                 "cld"
	                 : "=&r"(back), "=&r"(after), "=a"(rax)
	                 : "a"(0UL)
	                 : "rcx", "r11", "memory", "cc");
	if (rt_syscall_count != 1 || rt_syscall_rcx != back || rax != (uint64_t)-38)
		fail(EXIT_SYSCALL, "syscall: entered %lu times, rcx=0x%lx (want 0x%lx), rax=0x%lx",
		     (unsigned long)rt_syscall_count, (unsigned long)rt_syscall_rcx,
		     (unsigned long)back, (unsigned long)rax);
	if ((rt_syscall_r11 & (RF_CF | RF_DF)) != (RF_CF | RF_DF) || (rt_syscall_flags & RF_DF) ||
	    (after & (RF_CF | RF_DF)) != (RF_CF | RF_DF))
		fail(EXIT_SYSCALL, "syscall: r11=0x%lx, flags at the entry 0x%lx, after 0x%lx",
		     (unsigned long)rt_syscall_r11, (unsigned long)rt_syscall_flags,
		     (unsigned long)after);
	con_puts("mmuguest: syscall ok");
}

/* ---- command line ---- */

static bool is_foreign_param(const struct token *tok)
{
	const char *eq = rt_memchr(tok->s, '=', tok->len);
	size_t key_len = eq ? (size_t)(eq - tok->s) : tok->len;

	return rt_memchr(tok->s, '.', key_len) != NULL;
}

static void run(const struct token *tok)
{
	if (rt_token_is(tok, "roots"))
		check_roots();
	else if (rt_token_is(tok, "remap"))
		check_remap();
	else if (rt_token_is(tok, "pf"))
		check_pf();
	else if (rt_token_is(tok, "nx"))
		check_nx();
	else if (rt_token_is(tok, "timer"))
		check_timer();
	else if (rt_token_is(tok, "sse"))
		check_sse();
	else if (rt_token_is(tok, "avx"))
		check_avx();
	else if (rt_token_is(tok, "usermode"))
		enter_user_mode();
	else if (rt_token_is(tok, "syscall"))
		syscall_at_cpl0();
	else if (!is_foreign_param(tok)) {
		con_printf("mmuguest: unknown action %.*s\n", (int)tok->len, tok->s);
		guest_exit(EXIT_UNKNOWN);
	}
}

static unsigned run_all(const char *pos, const char *end)
{
	struct token tok;
	unsigned actions = 0;

	while (rt_next_token(&pos, end, &tok)) {
		if (!is_foreign_param(&tok))
			actions++;
		run(&tok);
	}
	return actions;
}

void guest_main(struct hvm_start_info *si)
{
	static const char all[] = "roots remap pf timer sse avx";
	const char *cmdline = rt_cmdline(si);

	setup();
	if (!run_all(cmdline, cmdline + rt_strnlen(cmdline, RT_CMDLINE_MAX)))
		run_all(all, all + sizeof(all) - 1);
}
