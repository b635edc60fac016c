/*
 * hostileguest: a guest that attacks its VMM, for hearth's tests (above all the process
 * engine's, docs/PROCESS_ENGINE.md, where the guest's code runs in a host process). It
 * installs its own IDT, prints "hostileguest: ready", runs the actions its command line
 * names, in order, and exits with status 0 when they run out. Whatever it does must stay
 * inside the VM: on the host nothing may happen.
 *
 *   path=P      the host file the system calls below try to create (default /tmp/hearth-x)
 *   pid=N       the host process they try to kill (default 1)
 *   hostcalls   the host's system calls, made as the guest's own: syscall with x86-64
 *               numbers (open, creat, socket, kill) and int $0x80 with i386 numbers (open,
 *               creat, socketcall, kill). EFER.SCE is clear, so each syscall is a #UD, and
 *               int $0x80 goes to the guest's own handler, as on hardware. Prints
 *               "hostileguest: hostcalls ud=U int80=I"
 *   stubjump=W  jump into the process engine's slot (hearth's code in the guest process, at
 *               0x7e0000000000) with crafted registers: W = socket, kill or mmap (a
 *               `syscall` found in that code, with those numbers and arguments), or entry
 *               (the slot's first byte). Where nothing is mapped there (the KVM engines,
 *               whose guests only see their own page tables) the fetch or read is a #PF
 *   scribble=W  write a pattern over part of the slot: W = shared (the records hearth
 *               reads), stacks (the stub's stacks) or code (read-only: a #PF). Then prints
 *               "hostileguest: scribbled W"
 *   halt        cli; hlt: the VM idles for good (for a look at its processes)
 *
 * An exception the guest did not ask for prints "hostileguest: #PF cr2=0x..." or
 * "hostileguest: vector V" and exits with status 3. Unknown actions: status 98.
 */
#include "cpu.h"
#include "idt.h"
#include "rt.h"

#define EXIT_EXCEPTION 3
#define EXIT_UNKNOWN   98
#define EXIT_RETURNED  97

#define VEC_UD    6
#define VEC_INT80 0x80

/* The process engine's slot (backend/process/stub.h): hostile knowledge of the VMM. */
#define SLOT_VA     0x7e0000000000ULL
#define SLOT_CODE   0x10000ULL
#define SLOT_SHARED (SLOT_VA + 0x100000)
#define SLOT_STACKS (SLOT_VA + 0x1000000)

static char path[128] = "/tmp/hearth-x";
static uint64_t target_pid = 1;
static unsigned ud_count, int80_count;

static void on_ud(struct trap_frame *f)
{
	/* syscall is 0f 05: step over it, as if the system call had returned */
	ud_count++;
	f->rip += 2;
}

static void on_int80(struct trap_frame *f)
{
	(void)f;
	int80_count++;
}

static void on_other(struct trap_frame *f)
{
	if (f->vector == VEC_PF)
		con_printf("hostileguest: #PF cr2=0x%llx\n", (unsigned long long)read_cr2());
	else
		con_printf("hostileguest: vector %llu\n", (unsigned long long)f->vector);
	guest_exit(EXIT_EXCEPTION);
}

static uint64_t sys64(uint64_t nr, uint64_t a, uint64_t b, uint64_t c)
{
	register uint64_t rax __asm__("rax") = nr;

	__asm__ volatile("syscall" : "+r"(rax) : "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return rax;
}

static uint32_t sys32(uint32_t nr, uint32_t a, uint32_t b, uint32_t c)
{
	register uint64_t rax __asm__("rax") = nr;

	__asm__ volatile("int $0x80" : "+r"(rax) : "b"(a), "c"(b), "d"(c) : "memory");
	return (uint32_t)rax;
}

static void hostcalls(void)
{
	static uint32_t sock_args[3] = {2, 1, 0}; /* AF_INET, SOCK_STREAM, 0 */
	uint64_t p = (uint64_t)(uintptr_t)path;

	sys64(2, p, 0x41 /* O_CREAT | O_WRONLY */, 0644); /* open */
	sys64(85, p, 0644, 0);                            /* creat */
	sys64(41, 2, 1, 0);                               /* socket */
	sys64(62, target_pid, 9, 0);                      /* kill(pid, SIGKILL) */
	sys32(5, (uint32_t)p, 0x41, 0644);                /* open */
	sys32(8, (uint32_t)p, 0644, 0);                   /* creat */
	sys32(102, 1, (uint32_t)(uintptr_t)sock_args, 0); /* socketcall(SYS_SOCKET) */
	sys32(37, (uint32_t)target_pid, 9, 0);            /* kill */
	con_printf("hostileguest: hostcalls ud=%u int80=%u\n", ud_count, int80_count);
}

/* The first `syscall` (0f 05) in the slot's code: reading it is a #PF where the slot is not
 * mapped. */
static uint64_t find_syscall(void)
{
	const volatile uint8_t *code = (const volatile uint8_t *)SLOT_VA;

	for (uint64_t i = 0; i + 1 < SLOT_CODE; i++)
		if (code[i] == 0x0f && code[i + 1] == 0x05)
			return SLOT_VA + i;
	con_puts("hostileguest: no syscall in the slot");
	guest_exit(EXIT_EXCEPTION);
}

static _Noreturn void jump(uint64_t to, uint64_t rax, uint64_t rdi, uint64_t rsi, uint64_t rdx,
                           uint64_t r10, uint64_t r8, uint64_t r9)
{
	register uint64_t r10_ __asm__("r10") = r10;
	register uint64_t r8_ __asm__("r8") = r8;
	register uint64_t r9_ __asm__("r9") = r9;

	__asm__ volatile("jmp *%[to]"
	                 :
	                 : [to] "r"(to), "a"(rax), "D"(rdi), "S"(rsi), "d"(rdx), "r"(r10_),
	                   "r"(r8_), "r"(r9_)
	                 : "memory");
	__builtin_unreachable();
}

static void stubjump(const struct token *w)
{
	if (rt_token_is(w, "entry"))
		jump(SLOT_VA, 0, SLOT_SHARED, 0, 0, 0, 0, 0);
	if (rt_token_is(w, "socket"))
		jump(find_syscall(), 41, 2, 1, 0, 0, 0, 0);
	if (rt_token_is(w, "kill"))
		jump(find_syscall(), 62, target_pid, 9, 0, 0, 0, 0);
	if (rt_token_is(w, "mmap")) /* guest RAM over the stub's own code */
		jump(find_syscall(), 9, SLOT_VA, 0x1000, 7, 0x11, 3, 0);
	con_printf("hostileguest: unknown action stubjump=%.*s\n", (int)w->len, w->s);
	guest_exit(EXIT_UNKNOWN);
}

static void scribble(const struct token *w)
{
	volatile uint64_t *p;
	uint64_t n;

	if (rt_token_is(w, "shared")) {
		p = (volatile uint64_t *)SLOT_SHARED;
		n = 0x22000 / 8;
	} else if (rt_token_is(w, "stacks")) {
		p = (volatile uint64_t *)SLOT_STACKS;
		n = 0x20000 / 8;
	} else if (rt_token_is(w, "code")) {
		p = (volatile uint64_t *)SLOT_VA;
		n = 0x1000 / 8;
	} else {
		con_printf("hostileguest: unknown action scribble=%.*s\n", (int)w->len, w->s);
		guest_exit(EXIT_UNKNOWN);
	}
	for (uint64_t i = 0; i < n; i++)
		p[i] = 0xa5a5a5a5a5a5a5a5ULL ^ i;
	con_printf("hostileguest: scribbled %.*s\n", (int)w->len, w->s);
}

static void run(const struct token *tok)
{
	struct token v;

	if (rt_token_value(tok, "path", &v)) {
		size_t n = v.len < sizeof(path) - 1 ? v.len : sizeof(path) - 1;

		memcpy(path, v.s, n);
		path[n] = 0;
	} else if (rt_token_value(tok, "pid", &v)) {
		if (!rt_parse_u64(&v, &target_pid))
			guest_exit(EXIT_UNKNOWN);
	} else if (rt_token_is(tok, "hostcalls")) {
		hostcalls();
	} else if (rt_token_value(tok, "stubjump", &v)) {
		stubjump(&v);
	} else if (rt_token_value(tok, "scribble", &v)) {
		scribble(&v);
	} else if (rt_token_is(tok, "halt")) {
		con_flush();
		guest_halt();
	} else if (!rt_memchr(tok->s, '.', tok->len)) {
		con_printf("hostileguest: unknown action %.*s\n", (int)tok->len, tok->s);
		guest_exit(EXIT_UNKNOWN);
	}
}

void guest_main(struct hvm_start_info *si)
{
	const char *cmdline = rt_cmdline(si);
	const char *end = cmdline + rt_strnlen(cmdline, RT_CMDLINE_MAX);
	struct token tok;

	idt_init();
	for (unsigned v = 0; v < 32; v++)
		idt_set(v, on_other, 0);
	idt_set(VEC_UD, on_ud, 0);
	idt_set(VEC_INT80, on_int80, 0);
	con_puts("hostileguest: ready");
	while (rt_next_token(&cmdline, end, &tok))
		run(&tok);
}
