#include "shadow_monitor.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#define PTE_P  0x1ULL
#define PTE_W  0x2ULL
#define PTE_NX (1ULL << 63)

/* Vectors that push an error code. */
static int has_error_code(unsigned v)
{
	return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

/* Entry stub for vector v, at SH_OFF_VECTORS + 16 * v:
 *   out %al, $SH_TRAP_PORT   (e6 ea)   exit to hearth; RIP tells the vector, RAX is untouched
 *   jmp .                    (eb fe)   never reached: hearth resumes the guest directly
 * One instruction: KVM emulates every ring-0 instruction on PVM hosts, so the stub does
 * nothing else. CR2 and the registers reach hearth through KVM_SYNC_REGS, the error code in
 * the frame the CPU pushed. */
static void write_vector_stub(uint8_t *p)
{
	static const uint8_t stub[] = {0xe6, SH_TRAP_PORT, 0xeb, 0xfe};

	memset(p, 0x90, SH_STUB_SIZE);
	memcpy(p, stub, sizeof(stub));
}

static void write_code(uint8_t *mon)
{
	/* halt: sti; hlt; jmp halt+1  -- the vCPU sleeps until an interrupt, whose stub exits */
	static const uint8_t halt[] = {0xfb, 0xf4, 0xeb, 0xfd};

	for (unsigned v = 0; v < 256; v++)
		write_vector_stub(mon + SH_OFF_VECTORS + SH_STUB_SIZE * v);
	memcpy(mon + SH_OFF_HALT, halt, sizeof(halt));
}

static void write_idt(uint8_t *mon)
{
	uint64_t *idt = (uint64_t *)(mon + SH_OFF_IDT);

	for (unsigned v = 0; v < 256; v++) {
		uint64_t off = SH_MON_VA + SH_OFF_VECTORS + SH_STUB_SIZE * v;
		/* Vectors with an error code keep DPL0, so a guest `int $n` to them raises #GP
		 * (hearth emulates it) instead of entering the stub with a wrong frame. */
		uint64_t dpl = (has_error_code(v) || v == 2) ? 0 : 3;

		idt[2 * v] = (off & 0xffff) | ((uint64_t)SH_SEL_CS0 << 16) | (0xeULL << 40) |
		             (dpl << 45) | (1ULL << 47) | (((off >> 16) & 0xffff) << 48);
		idt[2 * v + 1] = off >> 32;
	}
}

static uint64_t seg_desc(uint64_t access, uint64_t flags)
{
	/* base 0, limit 0xfffff; access byte at bits 40-47, flags (G, D/B, L) at 52-55 */
	return 0xffffULL | (0xfULL << 48) | (access << 40) | (flags << 52);
}

static void write_gdt_and_tss(struct sh_monitor *m)
{
	uint64_t *gdt = (uint64_t *)(m->mon + SH_OFF_GDT);

	gdt[SH_SEL_CS0 >> 3] = seg_desc(0x9b, 0xa); /* 64-bit code, DPL0 */
	gdt[SH_SEL_DS0 >> 3] = seg_desc(0x93, 0xc); /* data, DPL0 */
	gdt[SH_SEL_DS3 >> 3] = seg_desc(0xf3, 0xc); /* data, DPL3 */
	for (unsigned k = 0; k < m->nvcpus; k++) {
		uint8_t *tss = m->mon + sh_vcpu_area(k);
		uint64_t base = SH_MON_VA + sh_vcpu_area(k);
		uint64_t limit = 104 + 8192; /* TSS, I/O bitmap, and its 0xff terminator */
		uint64_t rsp0 = SH_MON_VA + sh_stack_top(k);
		unsigned idx = SH_SEL_TSS(k) >> 3;
		uint8_t *iomap = tss + 104;

		memset(tss, 0, 3 * 4096);
		memcpy(tss + 4, &rsp0, 8); /* RSP0 */
		tss[102] = 104;            /* I/O map base */
		tss[103] = 0;
		/* Every port open to the guest except the stub's trap port, which a guest
		 * could otherwise use to fake a trap. */
		iomap[SH_TRAP_PORT / 8] |= (uint8_t)(1u << (SH_TRAP_PORT % 8));
		iomap[8192] = 0xff;
		gdt[idx] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
		           (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
		gdt[idx + 1] = base >> 32;
	}
}

/* Page tables mapping SH_MON_VA -> the monitor's base for the fixed area (supervisor only). */
static void write_monitor_page_tables(uint8_t *mon, uint64_t gpa)
{
	uint64_t *pdpt = (uint64_t *)(mon + SH_OFF_PDPT);
	uint64_t *pd = (uint64_t *)(mon + SH_OFF_PD);
	uint64_t *pt = (uint64_t *)(mon + SH_OFF_PT);

	pdpt[0] = (gpa + SH_OFF_PD) | PTE_P | PTE_W;
	pd[0] = (gpa + SH_OFF_PT) | PTE_P | PTE_W;
	for (unsigned i = 0; i < SH_MON_SIZE / 4096; i++) {
		uint64_t off = (uint64_t)i * 4096;
		bool code = off < SH_OFF_IDT;

		pt[i] = (gpa + off) | PTE_P | (code ? 0 : PTE_W | PTE_NX);
	}
}

int sh_monitor_place(unsigned phys_bits, uint64_t guest_end, uint64_t *gpa, struct error *err)
{
	uint64_t top;

	if (phys_bits < 32 || phys_bits > 52)
		return err_set(err, "shadow mode: the host reports %u guest-physical address bits",
		               phys_bits);
	top = 1ULL << phys_bits;
	*gpa = top - SH_MON_SPAN < SH_MON_GPA_DEFAULT ? top - SH_MON_SPAN : SH_MON_GPA_DEFAULT;
	if (guest_end > *gpa)
		return err_set(err,
		               "shadow mode: guest memory up to 0x%llx leaves no room for the "
		               "monitor below the host's %u-bit guest-physical limit",
		               (unsigned long long)guest_end, phys_bits);
	return 0;
}

int sh_monitor_init(struct sh_monitor *m, unsigned nvcpus, uint64_t gpa, struct error *err)
{
	memset(m, 0, sizeof(*m));
	if (nvcpus > SH_MAX_VCPUS)
		return err_set(err, "shadow mode: at most %d vCPUs", SH_MAX_VCPUS);
	if (gpa & (SH_MON_SIZE - 1))
		return err_set(err, "shadow mode: monitor base 0x%llx is not 2 MiB aligned",
		               (unsigned long long)gpa);
	m->gpa = gpa;
	m->nvcpus = nvcpus;
	m->mon =
	    mmap(NULL, SH_MON_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	m->pool = mmap(NULL, (size_t)SH_POOL_PAGES * 4096, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->mon == MAP_FAILED || m->pool == MAP_FAILED) {
		m->mon = m->pool = NULL;
		return err_set(err, "shadow mode: cannot map the monitor: %s", strerror(errno));
	}
	write_code(m->mon);
	write_idt(m->mon);
	write_gdt_and_tss(m);
	write_monitor_page_tables(m->mon, gpa);
	return 0;
}

static int set_slot(int vm_fd, uint32_t slot, uint64_t gpa, uint64_t size, void *host)
{
	struct kvm_userspace_memory_region r = {
	    .slot = slot,
	    .guest_phys_addr = gpa,
	    .memory_size = size,
	    .userspace_addr = (uint64_t)(uintptr_t)host,
	};

	return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
}

#define SH_SLOT_MON  2
#define SH_SLOT_POOL 3

int sh_monitor_add_memslots(struct sh_monitor *m, int vm_fd, struct error *err)
{
	if (set_slot(vm_fd, SH_SLOT_MON, m->gpa, SH_MON_SIZE, m->mon) ||
	    set_slot(vm_fd, SH_SLOT_POOL, sh_pool_gpa(m), (uint64_t)SH_POOL_PAGES * 4096, m->pool))
		return err_set(err, "shadow mode: monitor memslot at 0x%llx: %s",
		               (unsigned long long)m->gpa, strerror(errno));
	return 0;
}

int sh_monitor_reload_pool(struct sh_monitor *m, int vm_fd)
{
	if (set_slot(vm_fd, SH_SLOT_POOL, sh_pool_gpa(m), 0, m->pool))
		return -1;
	return set_slot(vm_fd, SH_SLOT_POOL, sh_pool_gpa(m), (uint64_t)SH_POOL_PAGES * 4096,
	                m->pool);
}

static bool kept(unsigned i, const unsigned *keep, unsigned nkeep)
{
	for (unsigned k = 0; k < nkeep; k++)
		if (keep[k] == i && i != 0)
			return true;
	return false;
}

void sh_monitor_mirror_gdt(struct sh_monitor *m, const uint64_t *desc, unsigned n,
                           const unsigned *keep, unsigned nkeep)
{
	uint64_t *gdt = (uint64_t *)(m->mon + SH_OFF_GDT);
	unsigned old = m->guest_gdt_entries;

	if (n > SH_GUEST_GDT_MAX)
		n = SH_GUEST_GDT_MAX;
	for (unsigned i = 0; i < n; i++) {
		uint64_t d = desc[i];
		bool system = !(d & (1ULL << 44)); /* S = 0 */

		if (i == 0 || system || !(d & (1ULL << 47))) {
			/* Null, system and not-present descriptors are not loadable, except that a
			 * segment register in use keeps its descriptor (the CPU's hidden part). */
			if (!kept(i, keep, nkeep))
				gdt[i] = 0;
			continue;
		}
		if ((d & (1ULL << 43)) && ((d >> 45) & 3) == 3 && !(d & (1ULL << 42))) {
			/* The guest's own user-mode code segment: left at DPL0, so that entering
			 * it (iret, far return or jump) faults and hearth can refuse user mode. */
			gdt[i] = d & ~(3ULL << 45);
			continue;
		}
		gdt[i] = d | (3ULL << 45); /* DPL3: the guest runs at CPL3 */
	}
	for (unsigned i = n; i < old && i < SH_GUEST_GDT_MAX; i++)
		if (!kept(i, keep, nkeep))
			gdt[i] = 0;
	m->guest_gdt_entries = n > old ? n : old;
}

void sh_monitor_destroy(struct sh_monitor *m)
{
	if (m->mon)
		munmap(m->mon, SH_MON_SIZE);
	if (m->pool)
		munmap(m->pool, (size_t)SH_POOL_PAGES * 4096);
	memset(m, 0, sizeof(*m));
}
