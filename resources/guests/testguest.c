/*
 * testguest: a guest for hearth's integration tests. It prints "testguest: ready", then
 * performs the actions named on its command line, in order, and exits with status 0 when
 * they run out:
 *
 *   exit=N          exit with status N (0..255)
 *   print=WORD      print "testguest: WORD"
 *   banner          print "testguest: <mem> MiB RAM (<n> map entries), <cpus> CPU(s),
 *                   cmdline "<cmdline>"" (the information hello prints)
 *   spin            loop forever with interrupts disabled
 *   halt            cli; hlt forever (the VM idles)
 *   triple          triple fault: load an IDT with a zero limit, then ud2
 *   reset           write 0xfe to the i8042 command port; exit 99 if that returns
 *   acpireset       write the FADT's reset value to its reset register (found through the
 *                   RSDP in the boot information); exit 99 if that returns, 96 if the
 *                   FADT has no usable I/O-port reset register
 *   int3            int3 with a zero-limit IDT (a triple fault on real hardware);
 *                   exit 97 if execution somehow continues
 *   echo            echo COM1 input back until a 'q' (not echoed), then print
 *                   "testguest: echo done" on a line of its own
 *   readport=PORT   inb from PORT (decimal or 0x hex) and print
 *                   "testguest: port 0xNNNN = 0xVV"
 *   cad             wait for Ctrl+Alt+Del from the i8042 keyboard (scancode set 1 or 2),
 *                   print "testguest: ctrl-alt-del", then reset through the i8042
 *   ticks=N         print "testguest: tick K" N times, 100 ms of TSC time apart (TSC
 *                   frequency from CPUID leaf 0x40000010, else 1 GHz)
 *   boottimer       write 123 to the boot-timer device (MMIO 0xd0000000)
 *   cpuid           print "testguest: cpuid apic=A count=N hv=H tsc_khz=K": the APIC ID and
 *                   logical count of leaf 1, the hypervisor bit, leaf 0x40000010's EAX
 *   traps=N         execute N `cli` instructions (each one traps in shadow mode) and print
 *                   "testguest: traps N cycles C" (rdtsc cycles for all of them)
 *   sgdt            print "testguest: gdtr base=B limit=L" as sgdt reports it
 *   newgdt          load a GDT whose 0x08 is 32-bit code (CS stays what it was loaded as:
 *                   64-bit), far-jump through memory to its 64-bit code at 0x10, load its
 *                   data selector 0x18, then the runtime's GDT again and lretq back to
 *                   0x08; print "testguest: newgdt ok" (what a kernel does around lgdt)
 *   rmw             read-modify-write instructions on memory only an emulator reaches in some
 *                   engines: orl/andl on the local APIC's SVR (MMIO), and cmpq, addq, incq,
 *                   xorq on page 0; prints "testguest: rmw svr 0xA -> 0xB -> 0xC page0
 *                   eq=E D I X" (the SVR as read before, after the or, after the and; the
 *                   compare's ZF and the values after add, inc and xor)
 *   strops          string moves and atomics where only an emulator reaches in some engines:
 *                   on page 0, rep stosq, rep movsb in and rep movsq out, lodsq, xchg, lock
 *                   xadd, lock cmpxchg (one that succeeds, one that fails), lock or, and a
 *                   rep stosb and a backwards rep movsb across the end of page 0; on the
 *                   local APIC (MMIO), lodsl and movsl from its version register and
 *                   stosl, xchg, lock xadd, lock cmpxchg on its TPR. Prints "testguest:
 *                   strops page0 S X A C F O K apic V T" (S: 1 if the stos, movs and lods
 *                   results are right; X, A: memory after xchg and xadd; C, F: the
 *                   cmpxchgs' ZF and memory after them; O: after the or; K: the byte sum
 *                   across the page end; V: 1 if lods and movs read what mov reads; T: the
 *                   TPR after stos, xchg, xadd and cmpxchg, in hex), then sets TPR to 0.
 *                   Then the comparisons, on "hearth" at 0x700 of page 0: repne scasb for
 *                   its end (strlen), repe cmpsb against "heaRth" in RAM, scasq on its
 *                   first quadword, and a backwards repne scasb for 'e'; prints
 *                   "testguest: strops compare len=L left=N zf=Z cf=C eq=E back=B at=A"
 *                   (the length, RCX and the flags after the cmpsb, ZF after the scasq,
 *                   RCX and RDI's offset after the backwards scan)
 *   fsgsbase        where CPUID.7:EBX.FSGSBASE is set: set CR4.FSGSBASE, wrfsbase and
 *                   wrgsbase, read both bases back through their MSRs, write the FS base
 *                   through its MSR and read it with rdfsbase; prints "testguest: fsgsbase
 *                   msr fs=F gs=G rdfsbase=R" (hex), then sets both bases to 0; else prints
 *                   "testguest: fsgsbase absent"
 *   loadss=SEL      load SEL into SS; if that returns, print "testguest: loadss survived"
 *                   and load 0x10 again
 *   farjump=SEL     ljmp through memory to SEL:<next instruction>; if that returns, print
 *                   "testguest: farjump survived" and lretq back to 0x08 (selectors
 *                   beyond the guest's GDT must fault, whatever an engine keeps there)
 *   kvmclock        enable KVM's paravirtual clock (MSR_KVM_WALL_CLOCK_NEW, then
 *                   MSR_KVM_SYSTEM_TIME_NEW, whatever CPUID says), read it, spin 20M TSC
 *                   cycles, read it again: "testguest: kvmclock version=V flags=F t1=NS
 *                   t2=NS wall=SEC" (system times in ns, the wall clock's seconds at 0)
 *
 * Tokens whose key contains a '.' (kernel-style parameters such as virtio_mmio.device=...,
 * which a VMM may append) are skipped. Any other unknown or malformed token prints
 * "testguest: unknown action <tok>" and exits with status 98.
 */
#include "rt.h"

#define EXIT_UNKNOWN_ACTION 98
#define EXIT_RESET_FAILED   99
#define EXIT_FAULT_RETURNED 97
#define EXIT_NO_RESET_REG   96

#define LSR_DATA_READY 0x01

struct idt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

static void load_empty_idt(void)
{
	static const struct idt_ptr empty = {0, 0};

	__asm__ volatile("lidt %0" : : "m"(empty));
}

static _Noreturn void spin(void)
{
	__asm__ volatile("cli");
	for (;;)
		__asm__ volatile("" ::: "memory");
}

static _Noreturn void triple_fault(void)
{
	load_empty_idt();
	for (;;)
		__asm__ volatile("ud2");
}

static _Noreturn void breakpoint(void)
{
	load_empty_idt();
	__asm__ volatile("int3");
	con_puts("testguest: int3 returned");
	guest_exit(EXIT_FAULT_RETURNED);
}

static _Noreturn void reset(void)
{
	outb(RT_PORT_I8042_CMD, 0xfe);
	con_puts("testguest: reset via i8042 did not happen");
	guest_exit(EXIT_RESET_FAILED);
}

/* ACPI's reset path, as an OS takes it: RSDP -> XSDT -> FACP -> RESET_REG (system I/O). */
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static _Noreturn void acpi_reset(const struct hvm_start_info *si)
{
	const uint8_t *rsdp = (const uint8_t *)(uintptr_t)si->rsdp_paddr;
	const uint8_t *xsdt, *fadt = 0;
	uint32_t len;

	if (!rsdp || rsdp[15] < 2)
		guest_exit(EXIT_NO_RESET_REG);
	xsdt = (const uint8_t *)(uintptr_t)get64(rsdp + 24);
	len = get32(xsdt + 4);
	for (uint32_t off = 36; off + 8 <= len; off += 8) {
		const uint8_t *t = (const uint8_t *)(uintptr_t)get64(xsdt + off);

		if (!memcmp(t, "FACP", 4))
			fadt = t;
	}
	/* flags bit 10: RESET_REG_SUP; reset_reg at 116 (GAS, space 1 = I/O), value at 128 */
	if (!fadt || !(get32(fadt + 112) & (1u << 10)) || fadt[116] != 1)
		guest_exit(EXIT_NO_RESET_REG);
	outb((uint16_t)get64(fadt + 120), fadt[128]);
	con_puts("testguest: reset via the ACPI reset register did not happen");
	guest_exit(EXIT_RESET_FAILED);
}

static void echo(void)
{
	char last = '\n';

	for (;;) {
		char c;

		while (!(inb(RT_PORT_COM1_LSR) & LSR_DATA_READY))
			;
		c = (char)inb(RT_PORT_COM1);
		if (c == 'q')
			break;
		outb(RT_PORT_COM1, (uint8_t)c);
		last = c;
	}
	if (last != '\n')
		con_write("\n", 1);
	con_puts("testguest: echo done");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* KVM's pvclock records (the KVM API's msr.rst), at their guest-physical addresses: the
 * boot page tables map this image 1:1. */
struct pvclock_time {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t mul;
	int8_t shift;
	uint8_t flags, pad[2];
};
static volatile struct pvclock_time pvti __attribute__((aligned(32)));
static volatile uint32_t pvwall[3] __attribute__((aligned(16)));

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static uint64_t pvclock_ns(void)
{
	uint32_t v;
	uint64_t ns, d;

	do {
		v = pvti.version;
		__asm__ volatile("" ::: "memory");
		d = rdtsc() - pvti.tsc_timestamp;
		d = pvti.shift < 0 ? d >> -pvti.shift : d << pvti.shift;
		ns = pvti.system_time + (uint64_t)(((unsigned __int128)d * pvti.mul) >> 32);
		__asm__ volatile("" ::: "memory");
	} while ((v & 1) || v != pvti.version);
	return ns;
}

static void kvmclock(void)
{
	uint64_t t1, t2, t0;

	wrmsr(0x4b564d00, (uint64_t)(uintptr_t)pvwall);
	wrmsr(0x4b564d01, (uint64_t)(uintptr_t)&pvti | 1);
	t1 = pvclock_ns();
	for (t0 = rdtsc(); rdtsc() - t0 < 20000000;)
		__asm__ volatile("pause");
	t2 = pvclock_ns();
	con_printf("testguest: kvmclock version=%u flags=%u t1=%lu t2=%lu wall=%u\n",
	           (unsigned)pvti.version, (unsigned)pvti.flags, (unsigned long)t1,
	           (unsigned long)t2, (unsigned)pvwall[1]);
}

static uint64_t tsc_khz(void)
{
	uint32_t a, b, c, d;

	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x40000000), "c"(0));
	if (a < 0x40000010)
		return 1000000;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x40000010), "c"(0));
	return a ? a : 1000000;
}

static void ticks(uint64_t n)
{
	uint64_t step = tsc_khz() * 100, next = rdtsc() + step;

	for (uint64_t k = 1; k <= n; k++) {
		while (rdtsc() < next)
			__asm__ volatile("pause");
		next += step;
		con_printf("testguest: tick %u\n", (unsigned)k);
	}
}

/* Poll the i8042 until Delete arrives while Ctrl and Alt are down. */
static _Noreturn void wait_ctrl_alt_del(void)
{
	bool ctrl = false, alt = false, release = false;

	for (;;) {
		uint8_t b;

		if (!(inb(0x64) & 1))
			continue;
		b = inb(0x60);
		if (b == 0xe0)
			continue;
		if (b == 0xf0) { /* set 2: the next code is a release */
			release = true;
			continue;
		}
		if (b == 0x1d || b == 0x14)
			ctrl = !release;
		else if (b == 0x38 || b == 0x11)
			alt = !release;
		else if ((b == 0x53 || b == 0x71) && !release && ctrl && alt)
			break;
		release = false;
	}
	con_puts("testguest: ctrl-alt-del");
	reset();
}

/* ljmp through memory (m16:32) to `sel`, at the next instruction. */
static void far_jump_to(uint16_t sel)
{
	struct {
		uint32_t off;
		uint16_t sel;
	} __attribute__((packed)) far = {0, sel};

	__asm__ volatile("lea 1f(%%rip), %%rax\n"
	                 "mov %%eax, %0\n"
	                 "ljmp *%0\n"
	                 "1:\n"
	                 : "+m"(far)
	                 :
	                 : "rax", "memory");
}

/* lretq to the runtime's code selector 0x08, at the next instruction. */
static void far_return_to_08(void)
{
	__asm__ volatile("pushq $0x08\n"
	                 "lea 1f(%%rip), %%rax\n"
	                 "pushq %%rax\n"
	                 "lretq\n"
	                 "1:\n" ::
	                     : "rax", "memory");
}

static void load_data_segments(uint16_t sel)
{
	__asm__ volatile("mov %0, %%ds\n"
	                 "mov %0, %%es\n"
	                 "mov %0, %%ss\n" ::"r"((uint32_t)sel)
	                 : "memory");
}

/* A kernel's own GDT, loaded before CS is: until the far jump, the CPU keeps running the
 * code segment it loaded from the old table. Accessed bits preset (the CPU would write them). */
static void new_gdt(void)
{
	static const uint64_t gdt[4] __attribute__((aligned(8))) = {
	    0, 0x00cf9b000000ffffULL /* 0x08: 32-bit code */,
	    0x00af9b000000ffffULL /* 0x10: 64-bit */, 0x00cf93000000ffffULL /* 0x18: data */};
	/* The runtime's layout (rt/entry.S), at another address: sgdt cannot be trusted to
	 * give the guest's own (the process engine's host has no UMIP). */
	static const uint64_t back[3]
	    __attribute__((aligned(8))) = {0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL};
	struct idt_ptr p = {sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt};
	struct idt_ptr q = {sizeof(back) - 1, (uint64_t)(uintptr_t)back};

	__asm__ volatile("lgdt %0" ::"m"(p) : "memory");
	far_jump_to(0x10);
	load_data_segments(0x18);
	__asm__ volatile("lgdt %0" ::"m"(q) : "memory");
	far_return_to_08();
	load_data_segments(0x10);
	con_puts("testguest: newgdt ok");
}

/* `*reg |= bit` as one instruction, the way compilers emit it for a volatile device register,
 * and arithmetic on page 0, which a host process cannot map. */
static void rmw(void)
{
	volatile uint32_t *svr = (volatile uint32_t *)0xfee000f0ULL;
	uintptr_t at = 8;
	volatile uint64_t *p0;
	uint32_t a = *svr, b, c;
	uint64_t add, inc, xr;
	uint8_t eq;

	__asm__ volatile("orl $0x100, %0" : "+m"(*svr));
	b = *svr;
	__asm__ volatile("andl $0xfffffeff, %0" : "+m"(*svr));
	c = *svr;
	__asm__("" : "+r"(at)); /* (the compiler would take address 8 for a null pointer) */
	p0 = (volatile uint64_t *)at;
	*p0 = 7;
	__asm__ volatile("cmpq $7, %1\n"
	                 "sete %0"
	                 : "=q"(eq)
	                 : "m"(*p0));
	__asm__ volatile("addq $5, %0" : "+m"(*p0));
	add = *p0;
	__asm__ volatile("incq %0" : "+m"(*p0));
	inc = *p0;
	__asm__ volatile("xorq $0xf, %0" : "+m"(*p0));
	xr = *p0;
	con_printf("testguest: rmw svr 0x%x -> 0x%x -> 0x%x page0 eq=%u %lu %lu %lu\n", a, b, c,
	           (unsigned)eq, (unsigned long)add, (unsigned long)inc, (unsigned long)xr);
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return (uint64_t)hi << 32 | lo;
}

/* The FS and GS bases a kernel sets itself with wrfsbase/wrgsbase: what the MSRs say then. */
static void fsgsbase(void)
{
	uint32_t a, b, c, d;
	uint64_t cr4, fs, gs, r;

	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
	if (!(b & 1)) {
		con_puts("testguest: fsgsbase absent");
		return;
	}
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | (1ULL << 16)));
	__asm__ volatile("wrfsbase %0" : : "r"(0x123000ULL));
	__asm__ volatile("wrgsbase %0" : : "r"(0x456000ULL));
	fs = rdmsr(0xc0000100);
	gs = rdmsr(0xc0000101);
	wrmsr(0xc0000100, 0x789000);
	__asm__ volatile("rdfsbase %0" : "=r"(r));
	wrmsr(0xc0000100, 0);
	wrmsr(0xc0000101, 0);
	con_printf("testguest: fsgsbase msr fs=%lx gs=%lx rdfsbase=%lx\n", (unsigned long)fs,
	           (unsigned long)gs, (unsigned long)r);
}

/* An address the compiler cannot see is (near) null. */
static void *addr(uintptr_t a)
{
	__asm__("" : "+r"(a));
	return (void *)a;
}

/* strops' comparisons: cmps and scas with an operand on page 0. */
static void str_compares(void)
{
	char *s = addr(0x700), ram[8] = "heaRth";
	uint64_t quad;
	bool eqz;
	unsigned long cnt = ~0UL, left, back;
	void *d = s, *sp;
	bool zf, cf;

	for (unsigned i = 0; i < 8; i++)
		s[i] = "hearth"[i < 6 ? i : 6];
	__asm__ volatile("repne scasb" : "+D"(d), "+c"(cnt) : "a"(0) : "memory");
	sp = s, d = ram, left = 6;
	__asm__ volatile("repe cmpsb"
	                 : "+D"(d), "+S"(sp), "+c"(left), "=@ccz"(zf), "=@ccc"(cf)
	                 :
	                 : "memory");
	quad = *(volatile uint64_t *)s;
	d = s;
	__asm__ volatile("scasq" : "+D"(d), "=@ccz"(eqz) : "a"(quad) : "memory");
	d = s + 5, back = 6;
	__asm__ volatile("std\n"
	                 "repne scasb\n"
	                 "cld"
	                 : "+D"(d), "+c"(back)
	                 : "a"('e')
	                 : "memory");
	con_printf("testguest: strops compare len=%lu left=%lu zf=%u cf=%u eq=%u back=%lu "
	           "at=%ld\n",
	           ~cnt - 1, left, (unsigned)zf, (unsigned)cf, (unsigned)eqz, back,
	           (long)((char *)d - s));
}

static void strops(void)
{
	uint64_t *q = addr(0x100), *m = addr(0x300), src[8], back[8], v, x, rax, after, last;
	uint8_t *b = addr(0x200), *edge = addr(0xff0), bytes[32];
	volatile uint32_t *lapic = (volatile uint32_t *)0xfee00000ULL;
	uint32_t ver = lapic[0x30 / 4], lver, mver, t[4], r32;
	void *d, *sp;
	unsigned long cnt, sum = 0;
	unsigned ok = 1;
	bool zf1, zf2;

	for (unsigned i = 0; i < 8; i++)
		src[i] = 0x0101010101010101ULL * (i * 3 + 1);
	d = q, cnt = 8, v = 0xa5a5a5a5a5a5a5a5ULL;
	__asm__ volatile("rep stosq" : "+D"(d), "+c"(cnt) : "a"(v) : "memory");
	for (unsigned i = 0; i < 8; i++)
		ok &= q[i] == v;
	d = b, sp = src, cnt = 64;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(sp), "+c"(cnt) : : "memory");
	d = back, sp = b, cnt = 8;
	__asm__ volatile("rep movsq" : "+D"(d), "+S"(sp), "+c"(cnt) : : "memory");
	for (unsigned i = 0; i < 8; i++)
		ok &= back[i] == src[i];
	sp = q + 1;
	__asm__ volatile("lodsq" : "=a"(x), "+S"(sp) : : "memory");
	ok &= x == v && sp == q + 2;

	*m = 5, x = 9;
	__asm__ volatile("xchgq %0, %1" : "+r"(x), "+m"(*m));
	ok &= x == 5;
	v = *m;
	x = 4;
	__asm__ volatile("lock xaddq %0, %1" : "+r"(x), "+m"(*m));
	ok &= x == 9;
	x = *m;
	rax = 13;
	__asm__ volatile("lock cmpxchgq %3, %1" : "=@ccz"(zf1), "+m"(*m), "+a"(rax) : "r"(20UL));
	rax = 1;
	__asm__ volatile("lock cmpxchgq %3, %1" : "=@ccz"(zf2), "+m"(*m), "+a"(rax) : "r"(30UL));
	ok &= rax == 20;
	after = *(volatile uint64_t *)m;
	__asm__ volatile("lock orq $0x100, %0" : "+m"(*m));
	last = *(volatile uint64_t *)m;

	d = edge, cnt = 32;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(cnt) : "a"(0x5a) : "memory");
	for (unsigned i = 0; i < 32; i++)
		bytes[i] = (uint8_t)(i + 1);
	d = edge + 31, sp = bytes + 31, cnt = 32;
	__asm__ volatile("std\n"
	                 "rep movsb\n"
	                 "cld"
	                 : "+D"(d), "+S"(sp), "+c"(cnt)
	                 :
	                 : "memory");
	for (unsigned i = 0; i < 32; i++)
		sum += edge[i] * (i + 1);

	sp = (void *)&lapic[0x30 / 4];
	__asm__ volatile("lodsl" : "=a"(lver), "+S"(sp) : : "memory");
	d = &mver, sp = (void *)&lapic[0x30 / 4], cnt = 1;
	__asm__ volatile("rep movsl" : "+D"(d), "+S"(sp), "+c"(cnt) : : "memory");
	d = (void *)&lapic[0x80 / 4];
	__asm__ volatile("stosl" : "+D"(d) : "a"(0x10) : "memory");
	t[0] = lapic[0x80 / 4];
	r32 = 0x20;
	__asm__ volatile("xchgl %0, %1" : "+r"(r32), "+m"(lapic[0x80 / 4]));
	ok &= r32 == 0x10;
	t[1] = lapic[0x80 / 4];
	r32 = 0x10;
	__asm__ volatile("lock xaddl %0, %1" : "+r"(r32), "+m"(lapic[0x80 / 4]));
	ok &= r32 == 0x20;
	t[2] = lapic[0x80 / 4];
	r32 = 0x30;
	__asm__ volatile("lock cmpxchgl %2, %1" : "+a"(r32), "+m"(lapic[0x80 / 4]) : "r"(0x40));
	t[3] = lapic[0x80 / 4];
	lapic[0x80 / 4] = 0;
	con_printf("testguest: strops page0 %u %lu %lu %u,%u %lu %lu %lu apic %u "
	           "%x,%x,%x,%x\n",
	           ok, (unsigned long)v, (unsigned long)x, (unsigned)zf1, (unsigned)zf2,
	           (unsigned long)after, (unsigned long)last, sum,
	           (unsigned)(lver == ver && mver == ver), t[0], t[1], t[2], t[3]);
	str_compares();
}

static void load_ss(uint16_t sel)
{
	__asm__ volatile("mov %0, %%ss" ::"r"((uint32_t)sel) : "memory");
	con_puts("testguest: loadss survived");
	load_data_segments(0x10);
}

static void far_jump_and_back(uint16_t sel)
{
	far_jump_to(sel);
	con_puts("testguest: farjump survived");
	far_return_to_08();
}

static _Noreturn void unknown(const struct token *tok)
{
	con_printf("testguest: unknown action %.*s\n", (int)tok->len, tok->s);
	guest_exit(EXIT_UNKNOWN_ACTION);
}

/* A kernel-style "module.param=value" (or "module.flag") token. */
static bool is_foreign_param(const struct token *tok)
{
	const char *eq = rt_memchr(tok->s, '=', tok->len);
	size_t key_len = eq ? (size_t)(eq - tok->s) : tok->len;

	return rt_memchr(tok->s, '.', key_len) != NULL;
}

static void run(const struct hvm_start_info *si, const struct token *tok)
{
	struct token val;
	uint64_t n;

	if (rt_token_value(tok, "exit", &val)) {
		if (!rt_parse_u64(&val, &n) || n > 255)
			unknown(tok);
		guest_exit((int)n);
	} else if (rt_token_value(tok, "print", &val)) {
		con_printf("testguest: %.*s\n", (int)val.len, val.s);
	} else if (rt_token_is(tok, "banner")) {
		rt_print_banner("testguest: ", si);
	} else if (rt_token_is(tok, "spin")) {
		spin();
	} else if (rt_token_is(tok, "halt")) {
		guest_halt();
	} else if (rt_token_is(tok, "triple")) {
		triple_fault();
	} else if (rt_token_is(tok, "reset")) {
		reset();
	} else if (rt_token_is(tok, "acpireset")) {
		acpi_reset(si);
	} else if (rt_token_is(tok, "int3")) {
		breakpoint();
	} else if (rt_token_is(tok, "echo")) {
		echo();
	} else if (rt_token_value(tok, "readport", &val)) {
		if (!rt_parse_u64(&val, &n) || n > 0xffff)
			unknown(tok);
		con_printf("testguest: port 0x%04x = 0x%02x\n", (unsigned)n, inb((uint16_t)n));
	} else if (rt_token_is(tok, "cad")) {
		wait_ctrl_alt_del();
	} else if (rt_token_value(tok, "ticks", &val)) {
		if (!rt_parse_u64(&val, &n))
			unknown(tok);
		ticks(n);
	} else if (rt_token_is(tok, "cpuid")) {
		uint32_t a, b, c, d;

		__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
		con_printf("testguest: cpuid apic=%u count=%u hv=%u tsc_khz=%u\n", b >> 24,
		           (b >> 16) & 0xff, c >> 31, (unsigned)tsc_khz());
	} else if (rt_token_value(tok, "traps", &val)) {
		uint64_t t0;

		if (!rt_parse_u64(&val, &n))
			unknown(tok);
		t0 = rdtsc();
		for (uint64_t i = 0; i < n; i++)
			__asm__ volatile("cli" ::: "memory");
		con_printf("testguest: traps %lu cycles %lu\n", (unsigned long)n,
		           (unsigned long)(rdtsc() - t0));
	} else if (rt_token_is(tok, "kvmclock")) {
		kvmclock();
	} else if (rt_token_is(tok, "sgdt")) {
		struct idt_ptr g;

		__asm__ volatile("sgdt %0" : "=m"(g));
		con_printf("testguest: gdtr base=0x%lx limit=0x%x\n", (unsigned long)g.base,
		           (unsigned)g.limit);
	} else if (rt_token_value(tok, "loadss", &val) || rt_token_value(tok, "farjump", &val)) {
		uint64_t sel;

		if (!rt_parse_u64(&val, &sel) || sel > 0xffff)
			unknown(tok);
		if (rt_token_value(tok, "loadss", &val))
			load_ss((uint16_t)sel);
		else
			far_jump_and_back((uint16_t)sel);
	} else if (rt_token_is(tok, "rmw")) {
		rmw();
	} else if (rt_token_is(tok, "strops")) {
		strops();
	} else if (rt_token_is(tok, "fsgsbase")) {
		fsgsbase();
	} else if (rt_token_is(tok, "newgdt")) {
		new_gdt();
	} else if (rt_token_is(tok, "boottimer")) {
		*(volatile uint32_t *)0xd0000000ULL = 123;
	} else if (!is_foreign_param(tok)) {
		unknown(tok);
	}
}

void guest_main(struct hvm_start_info *si)
{
	const char *cmdline = rt_cmdline(si);
	const char *pos = cmdline, *end = cmdline + rt_strnlen(cmdline, RT_CMDLINE_MAX);
	struct token tok;

	con_puts("testguest: ready");
	while (rt_next_token(&pos, end, &tok))
		run(si, &tok);
}
