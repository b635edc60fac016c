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
 *               0x7e0000000000) with crafted registers: W = socket, kill, mmap or write (8
 *               bytes to the guest-RAM descriptor, which only a notify eventfd may get) (a
 *               `syscall` found in that code, with those numbers and arguments), or entry
 *               (the slot's first byte). Where nothing is mapped there (the KVM engines,
 *               whose guests only see their own page tables) the fetch or read is a #PF
 *   scribble=W  write a pattern over part of the slot: W = shared (the records hearth
 *               reads), stacks (the stub's stacks) or code (read-only: a #PF). Then prints
 *               "hostileguest: scribbled W"
 *   notify      the process engine only, with a virtio-blk device whose sector 0 starts 00 01
 *               02 03: read sector 0 until the stub has learned the driver's QueueNotify
 *               store (stub.h: struct stub_fast_notify, in vCPU 0's record) and signals it
 *               itself; then write garbage over the fast-notify table, forge each field of
 *               the learned entry in turn (lengths, registers, queue counts, descriptors
 *               outside the notify range), store wild queue numbers, and forge entries for
 *               another instruction (a store to InterruptACK) with a notify descriptor (the
 *               stub takes it: the store is skipped, a spurious notify) and with the RAM
 *               descriptor (refused: hearth emulates the store). Every request after each
 *               step must complete with the right data. Prints "hostileguest: notify ok
 *               fast=N forged=F refused=R" (N: the stub's count; F, R: 1 each as expected);
 *               a failure prints why and exits with status 4
 *   halt        cli; hlt: the VM idles for good (for a look at its processes)
 *
 * An exception the guest did not ask for prints "hostileguest: #PF cr2=0x..." or
 * "hostileguest: vector V" and exits with status 3. Unknown actions: status 98.
 */
#include "cpu.h"
#include "idt.h"
#include "rt.h"
#include "virtio.h"

/* The slot's layout and the records (hostile knowledge of the VMM, from its own header). */
#include "../../backend/process/stub.h"

#define EXIT_EXCEPTION 3
#define EXIT_NOTIFY    4
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
	if (rt_token_is(w, "write")) /* into the guest-RAM memfd, not a notify eventfd */
		jump(find_syscall(), 1, STUB_RAM_FD, (uint64_t)(uintptr_t)path, 8, 0, 0, 0);
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

/* ---- notify ---- */

static const struct hvm_start_info *start_info;
static struct rt_virtio_dev devs[RT_VIRTIO_MAX_DEVS];
static struct rt_vblk blk;
static uint8_t sector[512] __attribute__((aligned(16)));

/* A store the stub can be told is a notify: `movl %esi, (%rdi)`, 2 bytes, at its label. */
__asm__(".text\n"
        ".globl hostile_store\n"
        "hostile_store:\n"
        "	movl %esi, (%rdi)\n"
        "	ret\n");
void hostile_store(volatile uint32_t *p, uint32_t v);

static volatile struct stub_vcpu *record(void)
{
	return (volatile struct stub_vcpu *)stub_vcpus((void *)SLOT_SHARED);
}

static _Noreturn void notify_fail(const char *why)
{
	con_printf("hostileguest: notify: %s\n", why);
	guest_exit(EXIT_NOTIFY);
}

/* Sector 0, which must arrive. */
static void request(const char *after)
{
	for (unsigned i = 0; i < 4; i++)
		sector[i] = 0xee;
	if (rt_vblk_read(&blk, 0, sector, 1, false) != VIRTIO_BLK_S_OK || sector[0] != 0 ||
	    sector[1] != 1 || sector[2] != 2 || sector[3] != 3) {
		con_printf("hostileguest: notify: the request after %s failed\n", after);
		guest_exit(EXIT_NOTIFY);
	}
}

/* The entry hearth wrote for the driver's notify: the one for QueueNotify's address. */
static volatile struct stub_fast_notify *learned(void)
{
	uint64_t addr = devs[0].base + VIRTIO_MMIO_QUEUE_NOTIFY;

	for (unsigned i = 0; i < STUB_FAST_MAX; i++)
		if (record()->fast[i].addr == addr && record()->fast[i].rip)
			return &record()->fast[i];
	notify_fail("no fast notify learned");
}

static uint64_t fast_count(void)
{
	return record()->fast_notifies;
}

static void notify(void)
{
	static const struct {
		unsigned field;
		uint8_t value;
		const char *name;
	} forged[] = {
	    {0, 0, "len 0"},     {0, 16, "len 16"},   {0, 255, "len 255"}, {1, 16, "src 16"},
	    {1, 100, "src 100"}, {1, 0xfe, "src fe"}, {2, 5, "nq 5"},      {2, 255, "nq 255"},
	    {3, 0, "fd 0"},      {3, 2, "fd 2"},      {3, 3, "fd 3"},      {3, 4, "fd 4"},
	    {3, 5, "fd 5"},      {3, 38, "fd 38"},    {3, 255, "fd 255"},
	};
	static const uint32_t wild[] = {1, 2, 3, 4, 15, 16, 255, 0x10000, 0x80000000u, ~0u};
	volatile uint32_t *ack = (volatile uint32_t *)(devs[0].base + VIRTIO_MMIO_INTERRUPT_ACK);
	volatile struct stub_fast_notify *e;
	volatile uint64_t *words;
	uint64_t before, forged_taken, refused;

	if (!rt_virtio_discover(start_info, devs, RT_VIRTIO_MAX_DEVS) || !rt_vblk_init(&blk, devs))
		notify_fail("no block device");
	for (unsigned i = 0; i < 4; i++)
		request("the start");
	learned();
	before = fast_count();
	request("learning");
	if (fast_count() != before + 1)
		notify_fail("the stub did not signal the notify");
	/* garbage over the whole table */
	words = (volatile uint64_t *)record()->fast;
	for (unsigned i = 0; i < sizeof(record()->fast) / 8; i++)
		words[i] = 0xa5a5a5a5a5a5a5a5ULL ^ (i * 0x0101010101010101ULL);
	request("garbage");
	request("garbage, again");
	/* each field of the learned entry forged in turn */
	for (unsigned i = 0; i < sizeof(forged) / sizeof(forged[0]); i++) {
		e = learned();
		if (forged[i].field == 0)
			e->len = forged[i].value;
		else if (forged[i].field == 1)
			e->src = forged[i].value;
		else if (forged[i].field == 2)
			e->nq = forged[i].value;
		else
			e->fd[0] = forged[i].value;
		request(forged[i].name);
	}
	/* queue numbers the device does not have, by the learned instruction */
	for (unsigned i = 0; i < sizeof(wild) / sizeof(wild[0]); i++)
		rt_virtio_write(devs, VIRTIO_MMIO_QUEUE_NOTIFY, wild[i]);
	request("wild queue numbers");
	/* another instruction taught as a notify: a store to InterruptACK */
	e = &record()->fast[STUB_FAST_MAX - 1];
	e->rip = (uint64_t)(uintptr_t)hostile_store;
	e->addr = (uint64_t)(uintptr_t)ack;
	e->len = 2;
	e->src = SG_RSI;
	e->nq = 1;
	e->fd[0] = STUB_NOTIFY_FD0;
	before = fast_count();
	hostile_store(ack, 0);
	forged_taken = fast_count() - before;
	e->fd[0] = STUB_RAM_FD;
	before = fast_count();
	hostile_store(ack, 0);
	refused = fast_count() == before;
	e->rip = 0;
	request("forged entries");
	con_printf("hostileguest: notify ok fast=%lu forged=%lu refused=%lu\n",
	           (unsigned long)fast_count(), (unsigned long)forged_taken,
	           (unsigned long)refused);
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
	} else if (rt_token_is(tok, "notify")) {
		notify();
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

	start_info = si;
	idt_init();
	for (unsigned v = 0; v < 32; v++)
		idt_set(v, on_other, 0);
	idt_set(VEC_UD, on_ud, 0);
	idt_set(VEC_INT80, on_int80, 0);
	con_puts("hostileguest: ready");
	while (rt_next_token(&cmdline, end, &tok))
		run(&tok);
}
