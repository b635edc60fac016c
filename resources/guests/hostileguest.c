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
 *               "hostileguest: hostcalls ud=U int80=I". Then the syscalls again with EFER.SCE
 *               set and LSTAR at the guest's own entry (rt/idt_entry.S), which each must
 *               reach, returning ENOSYS: "hostileguest: hostcalls with EFER.SCE entered=E
 *               rax=R"
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
 * SMP actions (--vcpus 2 or more; the first one masks the PICs, starts a 1 ms LAPIC tick that
 * bounds every wait and copies smpguest's classic trampoline to 0x10000 and 16-bit startup
 * code of its own to pages 0x11000-0x18000). "The AP" is the first CPU in the MP table that
 * is not the BSP; a proper start is INIT, INIT de-assert, 10 ms, STARTUP, 1 ms, STARTUP to
 * the trampoline, which must reach ap_main within 1 s. A check that fails prints
 * "hostileguest: smp: <why>" and exits with status 5.
 *   sipistorm=N N rounds of INIT and STARTUP to, in turn, 16-bit code that loops, a page of
 *               zeros (that runs into code writing a marker) and the trampoline, each followed
 *               by two STARTUPs while the AP runs (which must be ignored), with no delay;
 *               then a proper start, which must be the one the AP runs, and a fixed IPI it
 *               must take. Prints "hostileguest: sipistorm N rounds, then apic id A up from
 *               start S"
 *   sipiraw     STARTUPs without INIT to the running AP (halted with interrupts on in
 *               ap_main): ignored, it still takes an IPI. "hostileguest: sipiraw ignored by
 *               apic id A"
 *   initbsp     INIT, INIT de-assert and STARTUP to the BSP's own APIC ID, then prints its
 *               LAPIC's SVR and timer LVT ("hostileguest: initbsp: svr=0x.. lvt timer=0x..")
 *               and waits 20 ms on the tick: "hostileguest: initbsp: the BSP (apic id 0) goes
 *               on"
 *   initbusy    INIT (no STARTUP) to the AP looping in 64-bit code with interrupts off: its
 *               loop count must stop. "hostileguest: initbusy: apic id A stopped"
 *   nmihalt     the AP halts with interrupts off (cli; hlt, in a loop); three NMIs to it must
 *               each wake it. The first NMI's handler sends the AP an NMI of its own, which
 *               must wait for the handler's iret (NMIs are blocked until then).
 *               "hostileguest: nmihalt: apic id A woke 3 times, 4 NMIs, none nested"
 *   ptalias     two roots that translate alike (rt/paging.c); the AP takes a lock, loads the
 *               second while the BSP runs on the first, and lets the lock go; the BSP waits
 *               for the lock, loads the second too and maps a page in its window, which both
 *               read (a guest relocating itself, page tables and all, as memtest86+ does).
 *               "hostileguest: ptalias: both cpus read 0x5ca1ab1e through the copy"
 *   ptdiverge   the same two roots; the AP loads the second, the BSP stays on the first and
 *               maps a page in the second's window only, which the AP then reads. Hardware:
 *               "hostileguest: ptdiverge: the AP read 0x5ca1ab1e through its own tables"
 *               (the process engine, one address space for all vCPUs, stops the VM)
 *   inithalt    the AP halts with interrupts off (cli; hlt in ap_main), then a proper start:
 *               it must come up again. "hostileguest: inithalt: apic id A up again from
 *               start S"
 *   initreal=W  the AP runs 16-bit startup code W for 20 ms (spin: cli; jmp $, clihlt: cli;
 *               hlt, stihlt: sti; hlt), then a proper start: INIT stops a CPU whatever it
 *               runs. "hostileguest: initreal=W: apic id A up from start S"
 *   realspin    every AP runs cli; jmp $ in real mode from here on. "hostileguest: realspin:
 *               N aps loop in real mode"
 *   sipibad=W   INIT and STARTUP of the AP to code no OS would start it at, 100 ms, then
 *               "hostileguest: sipibad=W: the BSP goes on" if the VM still runs. W = ud (ud2
 *               in real mode), zeros (a page of zeros, then the marker code: checked), ptables
 *               (vector 0x09: hearth's boot page tables at 0x9000), v00 (vector 0: the
 *               real-mode IVT, then the boot GDT at 0x500), vff (0xff000: up to the reset
 *               vector at 0xffff0), farbase (lgdt, CR0.PE, a far jump to 16-bit code based at
 *               0xd0000000, in the device gap), gdtnowhere (the same with the GDT at
 *               0xbfff0000, outside RAM), nmi (cli; jmp $ in real mode, then an NMI to it)
 *   bcast       INIT, INIT de-assert and STARTUP to all but self (shorthand) at code that
 *               counts the APs in (lock incw) and halts, then STARTUP to all again (ignored).
 *               "hostileguest: bcast: C of N aps counted in"
 *   nowhere     fixed, NMI, INIT (both levels) and STARTUP IPIs to APIC IDs 32, 0x7f, 0xfe
 *               (no CPU): each must leave the ICR idle and start nothing. "hostileguest:
 *               nowhere: 15 IPIs to no CPU"
 *   icrstorm=N  every AP started properly; then all CPUs at once send N rounds of a fixed
 *               IPI and a STARTUP (ignored) to every other CPU; each must have taken IPIs,
 *               none restarted, and each AP takes one more. "hostileguest: icrstorm: C cpus,
 *               N rounds each"
 *   pinreply    the process engine's shared records, from the AP: it keeps the boot vCPU's
 *               reply_seq at the value it read, so that the stub of vCPU 0 never sees
 *               hearth's answer to a trap; the AP prints "hostileguest: pinreply" when it
 *               starts, and the BSP traps (port 0x80) in a loop. vCPU 0 then never comes back to
 * hearth: a pause or a stop must still end, the VM with it.
 *
 * An exception the guest did not ask for prints "hostileguest: #PF cr2=0x..." or
 * "hostileguest: vector V" and exits with status 3. Unknown actions: status 98.
 */
#include "cpu.h"
#include "idt.h"
#include "lapic.h"
#include "paging.h"
#include "rt.h"
#include "smpguest.h"
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
/* In the shared area: vCPU 0's record after the 8 KiB stub_init, its reply_seq at 4
 * (backend/process/stub.h). */
#define PVM_INIT_SIZE 0x2000
#define PVM_REPLY_SEQ 4
#define SLOT_STACKS   (SLOT_VA + 0x1000000)

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

	/* The same calls into the guest's own kernel, as a single-ring one makes them. */
	if (!syscall_enable(0x08 /* the boot GDT's 64-bit code */, 0x700 /* TF, IF, DF */)) {
		con_puts("hostileguest: EFER.SCE did not stick");
		guest_exit(EXIT_EXCEPTION);
	}
	uint64_t r = sys64(2, p, 0x41, 0644) | sys64(85, p, 0644, 0) | sys64(41, 2, 1, 0) |
	             sys64(62, target_pid, 9, 0);
	con_printf("hostileguest: hostcalls with EFER.SCE entered=%llu rax=%lld\n",
	           (unsigned long long)rt_syscall_count, (long long)r);
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) & ~EFER_SCE);
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

/* ---- SMP: INIT, STARTUP and other IPIs an OS would never send ---- */

/* The vCPUs' APIC IDs come from the MP table; every wait is bounded by a 1 ms LAPIC tick, and
 * the BSP waits with `sti; hlt` (smpguest's scheme). An AP that is started properly runs
 * smpguest's classic trampoline at TRAMP_BASE (smpguest_trampoline.S) into ap_main. The
 * hostile startup code is 16-bit code copied to a page of its own (RM_*): its SIPI vector is
 * the page number. */
#define MAX_CPUS   32
#define AP_STACK   4096
#define TIMEOUT_MS 1000
#define VEC_TICK   0x30
#define VEC_PING   0x40
#define VEC_SPUR   0xff

#define ICR_NMI          0x400
#define V_NMI_VECTOR     2
#define ICR_ALL_BUT_SELF 0xc0000
#define INIT_ASSERT      (LAPIC_ICR_INIT | LAPIC_ICR_LEVEL | LAPIC_ICR_ASSERT)
#define INIT_DEASSERT    (LAPIC_ICR_INIT | LAPIC_ICR_LEVEL)

/* Pages for 16-bit startup code (free RAM between smpguest's trampoline and the command
 * line at 0x20000), and the marker word each may write at offset 0x100 of its page. */
#define RM_SPIN     0x11000 /* cli; jmp $ */
#define RM_CLIHLT   0x12000 /* cli; hlt (forever) */
#define RM_STIHLT   0x13000 /* sti; hlt (forever): interrupts allowed in real mode */
#define RM_UD       0x14000 /* ud2 */
#define RM_COUNT    0x15000 /* lock incw of the page's counter, then cli; hlt */
#define RM_ZEROS    0x16000 /* a page of zeros (add %al, (%bx,%si)), then RM_MARK */
#define RM_MARK     0x17000 /* writes MARK to its marker word, then cli; jmp $ */
#define RM_FAR      0x18000 /* lgdtl, CR0.PE, ljmpw $8, $0: a GDT the BSP writes at 0x200 */
#define RM_MARKER   0x100
#define RM_GDTR     0x200 /* in RM_FAR: limit, base */
#define RM_GDT      0x210 /* in RM_FAR: null, then a 16-bit code segment */
#define MARK        0x1234
#define FAR_BASE    0xd0000000ULL /* in the device gap (vmm/layout.h: the boot timer) */
#define GDT_NOWHERE 0xbfff0000ULL /* below the gap, above any RAM these tests give */

#define EXIT_SMP 5

__asm__(".pushsection .rodata.hostile_rm, \"a\", @progbits\n"
        ".code16\n"
        "rm_spin: cli\n"
        "1: jmp 1b\n"
        "rm_spin_end:\n"
        "rm_clihlt: cli\n"
        "1: hlt\n"
        "jmp 1b\n"
        "rm_clihlt_end:\n"
        "rm_stihlt: sti\n"
        "1: hlt\n"
        "jmp 1b\n"
        "rm_stihlt_end:\n"
        "rm_ud: ud2\n"
        "rm_ud_end:\n"
        "rm_count: cli\n"
        "movw %cs, %ax\n"
        "movw %ax, %ds\n"
        "lock incw 0x100\n"
        "1: hlt\n"
        "jmp 1b\n"
        "rm_count_end:\n"
        "rm_mark: movw $0x1700, %ax\n" /* RM_MARK >> 4, whatever CS is */
        "movw %ax, %ds\n"
        "movw $0x1234, 0x100\n"
        "cli\n"
        "1: jmp 1b\n"
        "rm_mark_end:\n"
        "rm_far: cli\n"
        "movw %cs, %ax\n"
        "movw %ax, %ds\n"
        "lgdtl 0x200\n"
        "movl %cr0, %eax\n"
        "orl $1, %eax\n"
        "movl %eax, %cr0\n"
        "ljmpw $8, $0\n"
        "rm_far_end:\n"
        ".code64\n"
        ".popsection\n");
extern const char rm_spin[], rm_spin_end[], rm_clihlt[], rm_clihlt_end[], rm_stihlt[],
    rm_stihlt_end[], rm_ud[], rm_ud_end[], rm_count[], rm_count_end[], rm_mark[], rm_mark_end[],
    rm_far[], rm_far_end[];

enum ap_mode {
	AP_HLT,
	AP_BUSY,
	AP_CLIHLT,
	AP_NMIHALT,
	AP_PTALIAS,
	AP_PTDIVERGE,
	AP_STORM,
	AP_PINREPLY
};

static bool smp_ready;
static int ncpus, bsp;
static uint8_t apic_ids[MAX_CPUS];
static uint8_t ap_stack[MAX_CPUS][AP_STACK] __attribute__((section(".noinit"), aligned(16)));
static volatile uint64_t ticks;
static volatile enum ap_mode ap_mode;
static volatile unsigned ap_gen[MAX_CPUS];     /* the start (generation) each AP last ran */
static volatile unsigned pings[MAX_CPUS];      /* fixed IPIs each CPU took */
static volatile uint64_t busy[MAX_CPUS];       /* AP_BUSY: the AP's loop count */
static volatile unsigned nmi_wakes[MAX_CPUS];  /* AP_NMIHALT: returns from its hlt */
static volatile unsigned nmis[MAX_CPUS];       /* NMIs each CPU took (nmihalt) */
static volatile unsigned nmi_nested[MAX_CPUS]; /* NMIs taken inside the NMI handler */
static struct pg_root pt_roots[2];             /* ptalias, ptdiverge */
static volatile uint32_t pt_lock;              /* ptalias: the AP holds it over its CR3 load */
static volatile unsigned pt_stage;             /* 1: the AP is on the copy; 3: it read */
static volatile uint64_t pt_read;              /* what the AP read through the window */
static volatile unsigned storm_done;           /* AP_STORM: APs done sending */
static volatile bool storm_go;                 /* AP_STORM: all APs are up, go */
static unsigned storm_rounds;
static unsigned generation;

static _Noreturn __attribute__((format(printf, 1, 2))) void smp_fail(const char *fmt, ...)
{
	va_list ap;

	con_write("hostileguest: smp: ", 19);
	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
	con_write("\n", 1);
	guest_exit(EXIT_SMP);
}

static int index_of(uint8_t id)
{
	for (int i = 0; i < ncpus; i++)
		if (apic_ids[i] == id)
			return i;
	return -1;
}

static void on_tick(struct trap_frame *f)
{
	(void)f;
	ticks++;
	lapic_eoi();
}

static void on_ping(struct trap_frame *f)
{
	int me = index_of(lapic_id());

	(void)f;
	if (me >= 0)
		__atomic_fetch_add(&pings[me], 1, __ATOMIC_RELAXED);
	lapic_eoi();
}

/* nmihalt: the first NMI sends this CPU another (physical destination: its own APIC ID),
 * which must not arrive before this handler's iret, however many LAPIC accesses (exits)
 * come before it. */
static void on_nmi(struct trap_frame *f)
{
	int me = index_of(lapic_id());
	unsigned n;

	(void)f;
	if (me < 0)
		return;
	n = __atomic_add_fetch(&nmis[me], 1, __ATOMIC_RELAXED);
	if (n != 1)
		return;
	lapic_send_ipi(apic_ids[me], ICR_NMI);
	for (int i = 0; i < 200; i++)
		(void)lapic_read(0x20); /* the ID register */
	if (nmis[me] != n)
		nmi_nested[me]++;
}

static void on_spurious(struct trap_frame *f)
{
	(void)f;
}

/* Halt until *word >= want or `ms` milliseconds pass (interrupts off outside). */
static bool wait_u32(volatile unsigned *word, unsigned want, unsigned ms)
{
	uint64_t end = ticks + ms + 1;

	while (*word < want) {
		if (ticks >= end)
			return false;
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	}
	return true;
}

static void delay_ms(unsigned ms)
{
	static volatile unsigned never;

	wait_u32(&never, 1, ms);
}

static void wait_icr(const char *what)
{
	uint64_t end = ticks + TIMEOUT_MS + 1;

	while (lapic_ipi_busy()) {
		if (ticks >= end)
			smp_fail("%s still pending after %u ms (icr 0x%x)", what, TIMEOUT_MS,
			         lapic_read(LAPIC_ICR_LOW));
		__asm__ volatile("sti; pause; cli" ::: "memory");
	}
}

/* An IPI to APIC ID `dest`, then a wait for the ICR's delivery status. */
static void ipi(uint8_t dest, uint32_t icr_low, const char *what)
{
	lapic_send_ipi(dest, icr_low);
	wait_icr(what);
}

static void ipi_all_but_self(uint32_t icr_low, const char *what)
{
	lapic_write(LAPIC_ICR_HIGH, 0);
	lapic_write(LAPIC_ICR_LOW, ICR_ALL_BUT_SELF | icr_low);
	wait_icr(what);
}

static void init_cpu(int cpu)
{
	ipi(apic_ids[cpu], INIT_ASSERT, "INIT");
	ipi(apic_ids[cpu], INIT_DEASSERT, "INIT de-assert");
}

static void sipi(int cpu, uint64_t page)
{
	ipi(apic_ids[cpu], LAPIC_ICR_STARTUP | (uint32_t)(page >> 12), "STARTUP");
}

_Noreturn void ap_main(unsigned arg);

_Noreturn void ap_main(unsigned arg)
{
	unsigned me = arg & 0xff;

	idt_load();
	lapic_enable();
	__atomic_store_n(&ap_gen[me], arg >> 8, __ATOMIC_RELEASE);
	switch (ap_mode) {
	case AP_BUSY:
		for (;;)
			busy[me]++;
	case AP_CLIHLT:
		for (;;)
			__asm__ volatile("cli; hlt" ::: "memory");
	case AP_PTALIAS:
	case AP_PTDIVERGE:
		if (ap_mode == AP_PTALIAS)
			while (__atomic_exchange_n(&pt_lock, 1, __ATOMIC_ACQUIRE))
				__asm__ volatile("pause");
		write_cr3(pt_roots[1].cr3);
		__atomic_store_n(&pt_stage, 1, __ATOMIC_RELEASE);
		__atomic_store_n(&pt_lock, 0, __ATOMIC_RELEASE);
		while (__atomic_load_n(&pt_stage, __ATOMIC_ACQUIRE) != 2)
			__asm__ volatile("pause");
		pt_read = *(volatile uint64_t *)(uintptr_t)PG_WINDOW_VA;
		__atomic_store_n(&pt_stage, 3, __ATOMIC_RELEASE);
		break;
	case AP_NMIHALT:
		for (;;) {
			__asm__ volatile("cli; hlt" ::: "memory");
			__atomic_fetch_add(&nmi_wakes[me], 1, __ATOMIC_RELEASE);
		}
	case AP_STORM:
		while (!__atomic_load_n(&storm_go, __ATOMIC_ACQUIRE)) /* all APs are up */
			__asm__ volatile("pause");
		for (unsigned r = 0; r < storm_rounds; r++) {
			for (int i = 0; i < ncpus; i++) {
				if (i == (int)me)
					continue;
				while (lapic_ipi_busy())
					__asm__ volatile("pause");
				lapic_send_ipi(apic_ids[i], LAPIC_ICR_FIXED | VEC_PING);
				while (lapic_ipi_busy())
					__asm__ volatile("pause");
				/* running: a STARTUP must be ignored */
				lapic_send_ipi(apic_ids[i], LAPIC_ICR_STARTUP | (RM_MARK >> 12));
			}
		}
		__atomic_fetch_add(&storm_done, 1, __ATOMIC_RELEASE);
		break;
	case AP_PINREPLY: {
		volatile uint32_t *rs =
		    (volatile uint32_t *)(uintptr_t)(SLOT_SHARED + PVM_INIT_SIZE + PVM_REPLY_SEQ);
		uint32_t v = *rs;

		con_puts("hostileguest: pinreply");
		for (;;)
			*rs = v;
	}
	case AP_HLT:
		break;
	}
	for (;;)
		__asm__ volatile("sti; hlt" ::: "memory");
}

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

static void put_rm(uint64_t page, const char *start, const char *end)
{
	rt_copy((void *)(uintptr_t)page, start, (size_t)(end - start));
}

static uint16_t marker(uint64_t page)
{
	return *(volatile uint16_t *)(uintptr_t)(page + RM_MARKER);
}

static void set_marker(uint64_t page, uint16_t v)
{
	*(volatile uint16_t *)(uintptr_t)(page + RM_MARKER) = v;
}

/* RM_FAR's GDT: a 16-bit code segment (limit 0xffff, G = D = 0) with base `base`, and the
 * lgdt operand with base `gdt` (RM_FAR + RM_GDT for the page's own table). */
static void put_far(uint64_t base, uint64_t gdt)
{
	volatile uint64_t *d = (volatile uint64_t *)(uintptr_t)(RM_FAR + RM_GDT);
	volatile uint16_t *limit = (volatile uint16_t *)(uintptr_t)(RM_FAR + RM_GDTR);
	volatile uint32_t *gbase = (volatile uint32_t *)(uintptr_t)(RM_FAR + RM_GDTR + 2);

	d[0] = 0;
	d[1] = 0xffffULL | (base & 0xffffff) << 16 | 0x9bULL << 40 | (base >> 24 & 0xff) << 56;
	*limit = 15;
	*gbase = (uint32_t)gdt;
}

static void smp_setup(void)
{
	struct tramp_data *td = (struct tramp_data *)(uintptr_t)(TRAMP_BASE + TRAMP_DATA);

	if (smp_ready)
		return;
	ncpus = rt_mp_cpus(start_info, apic_ids, MAX_CPUS);
	if (ncpus < 2 || ncpus > MAX_CPUS)
		smp_fail("the MP table lists %d cpus (these actions want 2..%d)", ncpus, MAX_CPUS);
	bsp = index_of(lapic_id());
	if (bsp < 0)
		smp_fail("the BSP's apic id %u is not in the MP table", lapic_id());
	idt_set(VEC_TICK, on_tick, 0);
	idt_set(VEC_PING, on_ping, 0);
	idt_set(VEC_SPUR, on_spurious, 0);
	outb(0x21, 0xff); /* only the LAPIC's interrupts */
	outb(0xa1, 0xff);
	lapic_enable();
	lapic_timer_periodic(VEC_TICK, apic_bus_khz()); /* 1 ms */
	rt_copy((void *)(uintptr_t)TRAMP_BASE, tramp_classic,
	        (size_t)(tramp_classic_end - tramp_classic));
	*td = (struct tramp_data){
	    .gdt = {0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL, 0x00cf9b000000ffffULL},
	    .gdt_limit = sizeof(td->gdt) - 1,
	    .gdt_base = TRAMP_BASE + TRAMP_DATA + TD_GDT,
	    .cr3 = (uint32_t)read_cr3(),
	    .entry = (uint64_t)(uintptr_t)ap_main,
	};
	put_rm(RM_SPIN, rm_spin, rm_spin_end);
	put_rm(RM_CLIHLT, rm_clihlt, rm_clihlt_end);
	put_rm(RM_STIHLT, rm_stihlt, rm_stihlt_end);
	put_rm(RM_UD, rm_ud, rm_ud_end);
	put_rm(RM_COUNT, rm_count, rm_count_end);
	memset((void *)(uintptr_t)RM_ZEROS, 0, 0x1000);
	put_rm(RM_MARK, rm_mark, rm_mark_end);
	put_rm(RM_FAR, rm_far, rm_far_end);
	smp_ready = true;
}

/* The first AP, or AP `cpu`: the index of the n-th CPU that is not the BSP. */
static int ap(int n)
{
	smp_setup();
	for (int i = 0; i < ncpus; i++)
		if (i != bsp && n-- == 0)
			return i;
	smp_fail("no AP %d", n);
}

/* Start AP `cpu` properly (INIT, INIT de-assert, 10 ms, STARTUP, 1 ms, STARTUP) in `mode`
 * and wait for it to reach ap_main. */
static void start_ap(int cpu, enum ap_mode mode)
{
	volatile struct tramp_data *td = (struct tramp_data *)(uintptr_t)(TRAMP_BASE + TRAMP_DATA);
	unsigned gen = ++generation;

	ap_mode = mode;
	td->stack = (uint64_t)(uintptr_t)(ap_stack[cpu] + AP_STACK);
	td->index = (uint64_t)cpu | (uint64_t)gen << 8;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	init_cpu(cpu);
	delay_ms(10);
	for (int n = 0; n < 2; n++) {
		sipi(cpu, TRAMP_BASE);
		delay_ms(1);
	}
	if (!wait_u32(&ap_gen[cpu], gen, TIMEOUT_MS))
		smp_fail("apic id %u did not arrive (start %u) within %u ms", apic_ids[cpu], gen,
		         TIMEOUT_MS);
	if (ap_gen[cpu] != gen)
		smp_fail("apic id %u arrived from start %u, not %u", apic_ids[cpu], ap_gen[cpu],
		         gen);
}

/* A fixed IPI to `cpu` must be taken within 1 s. */
static void ping(int cpu)
{
	unsigned want = pings[cpu] + 1;

	ipi(apic_ids[cpu], LAPIC_ICR_FIXED | VEC_PING, "ping");
	if (!wait_u32(&pings[cpu], want, TIMEOUT_MS))
		smp_fail("apic id %u took no ping within %u ms", apic_ids[cpu], TIMEOUT_MS);
}

/* INIT and one STARTUP (the AP is waiting for it after INIT, as after reset) at `page`. */
static void start_at(int cpu, uint64_t page)
{
	init_cpu(cpu);
	sipi(cpu, page);
}

/* pinreply: see the header. */
static _Noreturn void pinreply(void)
{
	start_ap(ap(0), AP_PINREPLY);
	for (;;)
		outb(0x80, 0);
}

/* sipistorm=N: N rounds of INIT, STARTUP to startup code that loops in real mode, to a page
 * of zeros that runs into code writing a marker, and to the proper trampoline, each followed
 * by STARTUPs while the AP runs (ignored), with no wait between; then a proper start, after
 * which the AP must run the last start's code and answer a ping. */
static void sipistorm(uint64_t n)
{
	volatile struct tramp_data *td = (struct tramp_data *)(uintptr_t)(TRAMP_BASE + TRAMP_DATA);
	int cpu = ap(0);
	static const uint64_t pages[] = {RM_SPIN, RM_ZEROS, TRAMP_BASE};

	smp_setup();
	ap_mode = AP_HLT;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t page = pages[i % 3];

		td->stack = (uint64_t)(uintptr_t)(ap_stack[cpu] + AP_STACK);
		td->index = (uint64_t)cpu | (uint64_t)++generation << 8;
		start_at(cpu, page);
		sipi(cpu, RM_ZEROS);
		sipi(cpu, page == RM_SPIN ? TRAMP_BASE : RM_SPIN);
	}
	start_ap(cpu, AP_HLT);
	ping(cpu);
	con_printf("hostileguest: sipistorm %lu rounds, then apic id %u up from start %u\n",
	           (unsigned long)n, apic_ids[cpu], ap_gen[cpu]);
}

/* sipiraw: STARTUP without INIT to a running AP (in ap_main, hlt with interrupts on). */
static void sipiraw(void)
{
	int cpu = ap(0);

	smp_setup();
	start_ap(cpu, AP_HLT);
	set_marker(RM_MARK, 0);
	for (int i = 0; i < 3; i++)
		sipi(cpu, RM_MARK);
	delay_ms(50);
	if (marker(RM_MARK))
		smp_fail("a STARTUP without INIT restarted apic id %u", apic_ids[cpu]);
	ping(cpu);
	con_printf("hostileguest: sipiraw ignored by apic id %u\n", apic_ids[cpu]);
}

/* initbsp: INIT (and STARTUP) to the BSP's own APIC ID. */
static void initbsp(void)
{
	smp_setup();
	ipi(apic_ids[bsp], INIT_ASSERT, "INIT to the BSP");
	ipi(apic_ids[bsp], INIT_DEASSERT, "INIT de-assert to the BSP");
	ipi(apic_ids[bsp], LAPIC_ICR_STARTUP | (RM_MARK >> 12), "STARTUP to the BSP");
	con_printf("hostileguest: initbsp: svr=0x%x lvt timer=0x%x\n", lapic_read(0xf0),
	           lapic_read(0x320));
	delay_ms(20);
	con_printf("hostileguest: initbsp: the BSP (apic id %u) goes on\n", apic_ids[bsp]);
}

/* initbusy: INIT to an AP looping in 64-bit code with interrupts off; no STARTUP. Its loop
 * count must stop, and stay stopped. */
static void initbusy(void)
{
	int cpu = ap(0);
	uint64_t a, b;

	smp_setup();
	start_ap(cpu, AP_BUSY);
	delay_ms(5);
	if (!busy[cpu])
		smp_fail("apic id %u does not run", apic_ids[cpu]);
	init_cpu(cpu);
	delay_ms(20);
	a = busy[cpu];
	delay_ms(50);
	b = busy[cpu];
	if (a != b)
		smp_fail("apic id %u still runs after INIT (%lu, then %lu)", apic_ids[cpu],
		         (unsigned long)a, (unsigned long)b);
	con_printf("hostileguest: initbusy: apic id %u stopped\n", apic_ids[cpu]);
}

/* nmihalt: see the header. */
static void nmihalt(void)
{
	int cpu = ap(0);

	smp_setup();
	idt_set(V_NMI_VECTOR, on_nmi, 0);
	start_ap(cpu, AP_NMIHALT);
	delay_ms(5);
	for (unsigned k = 1; k <= 3; k++) {
		ipi(apic_ids[cpu], ICR_NMI, "NMI");
		if (!wait_u32(&nmi_wakes[cpu], k, TIMEOUT_MS))
			smp_fail("apic id %u, halted with interrupts off, did not wake on NMI %u "
			         "within %u ms (%u NMIs taken)",
			         apic_ids[cpu], k, TIMEOUT_MS, nmis[cpu]);
	}
	delay_ms(5);
	con_printf("hostileguest: nmihalt: apic id %u woke %u times, %u NMIs, %s\n", apic_ids[cpu],
	           nmi_wakes[cpu], nmis[cpu], nmi_nested[cpu] ? "one nested" : "none nested");
}

#define PT_MARK 0x5ca1ab1eULL

/* ptalias, ptdiverge: see the header. */
static void ptroots(bool diverge)
{
	const char *name = diverge ? "ptdiverge" : "ptalias";
	int cpu = ap(0);
	uint64_t *page;

	smp_setup();
	if (!pg_new_root(&pt_roots[0]) || !pg_new_root(&pt_roots[1]) || !(page = pg_alloc()))
		smp_fail("%s: the page pool is used up", name);
	page[0] = PT_MARK;
	write_cr3(pt_roots[0].cr3);
	((volatile struct tramp_data *)(uintptr_t)(TRAMP_BASE + TRAMP_DATA))->cr3 =
	    (uint32_t)pt_roots[0].cr3; /* the AP starts on the BSP's root */
	start_ap(cpu, diverge ? AP_PTDIVERGE : AP_PTALIAS);
	if (!wait_u32(&pt_stage, 1, TIMEOUT_MS))
		smp_fail("%s: apic id %u did not load the second root", name, apic_ids[cpu]);
	if (!diverge) {
		while (__atomic_exchange_n(&pt_lock, 1, __ATOMIC_ACQUIRE))
			__asm__ volatile("pause");
		write_cr3(pt_roots[1].cr3);
		__atomic_store_n(&pt_lock, 0, __ATOMIC_RELEASE);
	}
	pt_roots[1].pt[0] = pg_pa(page) | PG_P | PG_W;
	if (!diverge) {
		invlpg(PG_WINDOW_VA);
		if (*(volatile uint64_t *)(uintptr_t)PG_WINDOW_VA != PT_MARK)
			smp_fail("ptalias: the BSP read 0x%lx through the copy",
			         (unsigned long)*(volatile uint64_t *)(uintptr_t)PG_WINDOW_VA);
	}
	__atomic_store_n(&pt_stage, 2, __ATOMIC_RELEASE);
	if (!wait_u32(&pt_stage, 3, TIMEOUT_MS))
		smp_fail("%s: apic id %u did not read the window", name, apic_ids[cpu]);
	if (diverge)
		con_printf("hostileguest: ptdiverge: the AP read 0x%lx through its own tables\n",
		           (unsigned long)pt_read);
	else
		con_printf("hostileguest: ptalias: both cpus read 0x%lx through the copy\n",
		           (unsigned long)pt_read);
}

/* inithalt: INIT to an AP halted with interrupts off (only INIT, NMI, SMI wake it), then a
 * proper start: it must come up again. */
static void inithalt(void)
{
	int cpu = ap(0);

	smp_setup();
	start_ap(cpu, AP_CLIHLT);
	delay_ms(5);
	start_ap(cpu, AP_HLT);
	ping(cpu);
	con_printf("hostileguest: inithalt: apic id %u up again from start %u\n", apic_ids[cpu],
	           ap_gen[cpu]);
}

/* initreal=W: the AP runs 16-bit startup code W (spin: cli; jmp $, clihlt: cli; hlt,
 * stihlt: sti; hlt) for 20 ms, then INIT and a proper start: INIT stops a CPU whatever it
 * runs, so it must come up. */
static void initreal(const struct token *w)
{
	int cpu = ap(0);
	uint64_t page;

	smp_setup();
	if (rt_token_is(w, "spin"))
		page = RM_SPIN;
	else if (rt_token_is(w, "clihlt"))
		page = RM_CLIHLT;
	else if (rt_token_is(w, "stihlt"))
		page = RM_STIHLT;
	else {
		con_printf("hostileguest: unknown action initreal=%.*s\n", (int)w->len, w->s);
		guest_exit(EXIT_UNKNOWN);
	}
	start_at(cpu, page);
	delay_ms(20);
	start_ap(cpu, AP_HLT);
	ping(cpu);
	con_printf("hostileguest: initreal=%.*s: apic id %u up from start %u\n", (int)w->len, w->s,
	           apic_ids[cpu], ap_gen[cpu]);
}

/* realspin: every AP loops in real mode (cli; jmp $) from here on. */
static void realspin(void)
{
	smp_setup();
	for (int i = 0; i < ncpus; i++)
		if (i != bsp)
			start_at(i, RM_SPIN);
	con_printf("hostileguest: realspin: %d aps loop in real mode\n", ncpus - 1);
}

/* sipibad=W: start the first AP at startup code no OS would point it to, wait 100 ms and
 * say so (if the VM still runs):
 *   ud       ud2 in real mode (#UD through the interrupt vector table)
 *   zeros    a page of zeros, then code that writes a marker (checked)
 *   ptables  vector 0x09: hearth's boot page tables (LAYOUT_PML4) as code
 *   v00      vector 0x00 (the real-mode IVT, then the boot GDT)
 *   vff      vector 0xff (0xff000: the reset vector's page, then the kernel at 1 MiB)
 *   farbase  lgdt, CR0.PE, far jump to 16-bit code whose base is in the device gap
 *   gdtnowhere  the same with the GDT itself outside RAM
 *   nmi      cli; jmp $ in real mode, then an NMI to it (the IVT's vector 2)
 */
static void sipibad(const struct token *w)
{
	int cpu = ap(0);

	smp_setup();
	if (rt_token_is(w, "ud")) {
		start_at(cpu, RM_UD);
	} else if (rt_token_is(w, "zeros")) {
		set_marker(RM_MARK, 0);
		start_at(cpu, RM_ZEROS);
		for (unsigned i = 0; i < 1000 && marker(RM_MARK) != MARK; i++)
			delay_ms(1);
		if (marker(RM_MARK) != MARK)
			smp_fail("the zero page did not run into the marker code");
	} else if (rt_token_is(w, "ptables")) {
		start_at(cpu, 0x9000);
	} else if (rt_token_is(w, "v00")) {
		start_at(cpu, 0);
	} else if (rt_token_is(w, "vff")) {
		start_at(cpu, 0xff000);
	} else if (rt_token_is(w, "farbase")) {
		put_far(FAR_BASE, RM_FAR + RM_GDT);
		start_at(cpu, RM_FAR);
	} else if (rt_token_is(w, "gdtnowhere")) {
		put_far(TRAMP_BASE, GDT_NOWHERE);
		start_at(cpu, RM_FAR);
	} else if (rt_token_is(w, "nmi")) {
		start_at(cpu, RM_SPIN);
		delay_ms(20);
		ipi(apic_ids[cpu], ICR_NMI, "NMI");
	} else {
		con_printf("hostileguest: unknown action sipibad=%.*s\n", (int)w->len, w->s);
		guest_exit(EXIT_UNKNOWN);
	}
	delay_ms(100);
	con_printf("hostileguest: sipibad=%.*s: the BSP goes on\n", (int)w->len, w->s);
}

/* bcast: INIT, INIT de-assert and STARTUP to all but self (shorthand), to code that counts
 * the APs in (lock incw) and halts; then another STARTUP to all (ignored: they run). */
static void bcast(void)
{
	volatile uint16_t *count = (volatile uint16_t *)(uintptr_t)(RM_COUNT + RM_MARKER);
	uint64_t end;

	smp_setup();
	*count = 0;
	ipi_all_but_self(INIT_ASSERT, "INIT to all");
	ipi_all_but_self(INIT_DEASSERT, "INIT de-assert to all");
	delay_ms(10);
	ipi_all_but_self(LAPIC_ICR_STARTUP | (RM_COUNT >> 12), "STARTUP to all");
	/* (every AP in the interpreter at once: slow where KVM is nested under TCG) */
	end = ticks + 5 * TIMEOUT_MS + 1;
	while (*count < ncpus - 1 && ticks < end)
		delay_ms(1);
	ipi_all_but_self(LAPIC_ICR_STARTUP | (RM_COUNT >> 12), "STARTUP to all again");
	delay_ms(50);
	con_printf("hostileguest: bcast: %u of %d aps counted in\n", *count, ncpus - 1);
}

/* nowhere: fixed, NMI, INIT and STARTUP IPIs to APIC IDs no CPU has: each must leave the
 * ICR idle, and nothing else happen. */
static void nowhere(void)
{
	static const uint8_t ids[] = {MAX_CPUS, 0x7f, 0xfe};
	static const uint32_t kinds[] = {LAPIC_ICR_FIXED | VEC_PING, ICR_NMI, INIT_ASSERT,
	                                 INIT_DEASSERT, LAPIC_ICR_STARTUP | (RM_MARK >> 12)};

	smp_setup();
	set_marker(RM_MARK, 0);
	for (unsigned i = 0; i < sizeof(ids); i++)
		for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
			ipi(ids[i], kinds[k], "an IPI to nowhere");
	delay_ms(20);
	if (marker(RM_MARK))
		smp_fail("a STARTUP to nowhere started a CPU");
	con_printf("hostileguest: nowhere: %u IPIs to no CPU\n",
	           (unsigned)(sizeof(ids) * sizeof(kinds) / sizeof(kinds[0])));
}

/* icrstorm=N: every AP started (one at a time; each waits for the others), then all CPUs at
 * once send N rounds of a
 * fixed IPI and a STARTUP (ignored: they run) to every other CPU; every CPU must have taken
 * pings, and every AP must answer one afterwards. */
static void icrstorm(uint64_t n)
{
	uint64_t end;

	smp_setup();
	storm_rounds = (unsigned)n;
	storm_done = 0;
	set_marker(RM_MARK, 0);
	for (int i = 0; i < ncpus; i++)
		if (i != bsp)
			start_ap(i, AP_STORM);
	__atomic_store_n(&storm_go, true, __ATOMIC_RELEASE);
	for (unsigned r = 0; r < n; r++)
		for (int i = 0; i < ncpus; i++)
			if (i != bsp) {
				lapic_send_ipi(apic_ids[i], LAPIC_ICR_FIXED | VEC_PING);
				wait_icr("storm ping");
			}
	end = ticks + 10 * TIMEOUT_MS;
	while (storm_done < (unsigned)ncpus - 1 && ticks < end)
		delay_ms(1);
	if (storm_done != (unsigned)ncpus - 1)
		smp_fail("%u of %d aps finished the storm", storm_done, ncpus - 1);
	delay_ms(20);
	for (int i = 0; i < ncpus; i++)
		if (!pings[i])
			smp_fail("apic id %u took no IPI in the storm", apic_ids[i]);
	if (marker(RM_MARK))
		smp_fail("a STARTUP to a running AP restarted it");
	for (int i = 0; i < ncpus; i++)
		if (i != bsp)
			ping(i);
	con_printf("hostileguest: icrstorm: %d cpus, %lu rounds each\n", ncpus, (unsigned long)n);
}

static void run(const struct token *tok)
{
	struct token v;
	uint64_t n;

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
	} else if (rt_token_value(tok, "sipistorm", &v)) {
		if (!rt_parse_u64(&v, &n))
			guest_exit(EXIT_UNKNOWN);
		sipistorm(n);
	} else if (rt_token_is(tok, "pinreply")) {
		pinreply();
	} else if (rt_token_is(tok, "sipiraw")) {
		sipiraw();
	} else if (rt_token_is(tok, "initbsp")) {
		initbsp();
	} else if (rt_token_is(tok, "initbusy")) {
		initbusy();
	} else if (rt_token_is(tok, "inithalt")) {
		inithalt();
	} else if (rt_token_value(tok, "initreal", &v)) {
		initreal(&v);
	} else if (rt_token_is(tok, "realspin")) {
		realspin();
	} else if (rt_token_value(tok, "sipibad", &v)) {
		sipibad(&v);
	} else if (rt_token_is(tok, "ptalias")) {
		ptroots(false);
	} else if (rt_token_is(tok, "ptdiverge")) {
		ptroots(true);
	} else if (rt_token_is(tok, "nmihalt")) {
		nmihalt();
	} else if (rt_token_is(tok, "bcast")) {
		bcast();
	} else if (rt_token_is(tok, "nowhere")) {
		nowhere();
	} else if (rt_token_value(tok, "icrstorm", &v)) {
		if (!rt_parse_u64(&v, &n))
			guest_exit(EXIT_UNKNOWN);
		icrstorm(n);
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
