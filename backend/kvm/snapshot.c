/*
 * The KVM backend's part of a snapshot (backend.h: save, restore, dirty_start,
 * dirty_collect), for both engines.
 *
 * Saved, with every vCPU parked and the clocks frozen (kvm_pause):
 *   KVM0  the VM: KVM's PIC pair, IOAPIC and PIT, and kvmclock as the pause froze it
 *   KSHD  the shadow engine's own state (shadow.c), in that engine only
 *   KCPU  per vCPU: MP state, registers, special registers (SREGS2 where KVM has it: the
 *         PDPTRs too), XSAVE state, XCRs, debug registers, local APIC, MSRs (the list
 *         below, as far as this KVM has them) and pending events. In the shadow engine
 *         the boot vCPU's registers are the engine's (kvm_run's sync area).
 * Restored after create, before any vCPU runs, in that order, each vCPU as: registers,
 * special registers, XSAVE, XCRs, MSRs (APIC base and TSC among them), local APIC, the
 * TSC deadline (it needs the LAPIC's timer mode), debug registers, events, MP state. Every
 * field is checked first; KVM has the last word on architectural values, and a value it
 * refuses fails the restore with the ioctl's name.
 *
 * Time: the TSC saved is the guest's at the pause, kvmclock the paused value; a restored
 * VM is left paused with both (the state kvm_pause leaves), and kvm_resume starts them
 * again from there: the guest's time goes on where it stopped.
 */
#include "kvm.h"
#include "cpu/x86.h"
#include "snapshot/stream.h"
#include "vmm/layout.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define TAG_VM  SNAP_TAG('K', 'V', 'M', '0')
#define TAG_CPU SNAP_TAG('K', 'C', 'P', 'U')

#define RF_DEFINED  0x3f7fd7ULL /* the RFLAGS bits that exist */
#define PAGE        4096ULL
#define IOAPIC_BASE 0xfec00000ULL

/* MSRs beyond cpu/x86.h's. */
#define MSR_IA32_FEAT_CTL       0x3a
#define MSR_IA32_TSC_ADJUST     0x3b
#define MSR_IA32_SPEC_CTRL      0x48
#define MSR_MISC_FEATURES_EN    0x140
#define MSR_IA32_XSS            0xda0
#define MSR_K7_HWCR             0xc0010015
#define MSR_AMD64_VIRT_SPEC     0xc001011f
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_KVM_ASYNC_PF_EN     0x4b564d02
#define MSR_KVM_STEAL_TIME      0x4b564d03
#define MSR_KVM_PV_EOI_EN       0x4b564d04
#define MSR_KVM_POLL_CONTROL    0x4b564d05
#define MSR_KVM_ASYNC_PF_INT    0x4b564d06

/*
 * The MSRs a vCPU keeps, in the order they are restored: the TSC first (its write sets the
 * offset the rest of the vCPU's time is read against), the async-PF vector before async PF
 * itself, the TSC deadline last (after the LAPIC). A state file's MSRs must appear in this
 * order: a subsequence, so no duplicate and nothing outside it. kvmclock's system time is
 * here under its new number only (KVM reads the old one as the same value). Its wall-clock
 * MSRs are not: writing one makes KVM write the time at that address once, into memory the
 * guest may have reused since. PMU and machine-check MSRs are not either: hearth's guests
 * get neither set up.
 */
static const uint32_t msr_list[] = {
    MSR_IA32_TSC, MSR_IA32_APIC_BASE, MSR_IA32_FEAT_CTL, MSR_IA32_TSC_ADJUST, MSR_IA32_SPEC_CTRL,
    MSR_MISC_FEATURES_EN, MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP,
    MSR_IA32_MISC_ENABLE,
    /* MTRRs: variable 0-7 (base, mask), fixed, default type */
    0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x208, 0x209, 0x20a, 0x20b, 0x20c,
    0x20d, 0x20e, 0x20f, 0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e,
    0x26f, MSR_MTRR_DEF_TYPE, MSR_IA32_PAT, MSR_IA32_XSS, MSR_STAR, MSR_LSTAR, MSR_CSTAR,
    MSR_SFMASK, MSR_KERNEL_GS_BASE, MSR_TSC_AUX, MSR_K7_HWCR, MSR_AMD64_VIRT_SPEC,
    /* KVM's paravirtual MSRs (kvmclock, async page faults, steal time, PV EOI, polling) */
    MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_ASYNC_PF_INT, MSR_KVM_ASYNC_PF_EN, MSR_KVM_STEAL_TIME,
    MSR_KVM_PV_EOI_EN, MSR_KVM_POLL_CONTROL, MSR_TSC_DEADLINE};
enum { NMSRS = sizeof(msr_list) / sizeof(msr_list[0]) };

struct msrs {
	struct kvm_msrs h;
	struct kvm_msr_entry e[NMSRS];
};

/* One vCPU's KVM state. */
struct cpu_state {
	uint32_t mp_state;
	struct kvm_regs regs;
	struct kvm_sregs2 sregs; /* SREGS or SREGS2: flags say whether the PDPTRs are there */
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[NMSRS];
	uint32_t xsave_len;
	struct kvm_xsave *xsave; /* k->xsave_size bytes */
};

static uint64_t rdtsc(void)
{
	return __builtin_ia32_rdtsc();
}

static int vcpu_ioctl(const struct vcpu *v, unsigned long req, void *arg, const char *name,
                      struct error *err)
{
	if (ioctl(kvcpu_of(v)->fd, req, arg) == 0)
		return 0;
	return err_set(err, "snapshot: vCPU %u: %s: %s", v->id, name, strerror(errno));
}

#define VCPU_IOCTL(v, req, arg, err) vcpu_ioctl(v, req, arg, #req, err)

/* ---- encoding ------------------------------------------------------------------------- */

/* KVM's 64-bit fields are __u64 (unsigned long long). */
static bool get64(struct snap_r *r, __u64 *v)
{
	uint64_t x;

	if (!snap_get_u64(r, &x))
		return false;
	*v = x;
	return true;
}

/* A field KVM keeps as 0 or 1. */
static bool get_bit(struct snap_r *r, uint8_t *v)
{
	return snap_get_u8(r, v) && *v <= 1;
}

static void put_seg(struct snap_w *w, const struct kvm_segment *g)
{
	snap_u64(w, g->base);
	snap_u32(w, g->limit);
	snap_u16(w, g->selector);
	snap_u8(w, g->type);
	snap_u8(w, g->present);
	snap_u8(w, g->dpl);
	snap_u8(w, g->db);
	snap_u8(w, g->s);
	snap_u8(w, g->l);
	snap_u8(w, g->g);
	snap_u8(w, g->avl);
	snap_u8(w, g->unusable);
}

/* Fields that are bits in a descriptor are 0 or 1 (the DPL 0-3, the type 0-15). */
static bool get_seg(struct snap_r *r, struct kvm_segment *g)
{
	memset(g, 0, sizeof(*g));
	return get64(r, &g->base) && snap_get_u32(r, &g->limit) && snap_get_u16(r, &g->selector) &&
	       snap_get_u8(r, &g->type) && g->type < 16 && get_bit(r, &g->present) &&
	       snap_get_u8(r, &g->dpl) && g->dpl < 4 && get_bit(r, &g->db) && get_bit(r, &g->s) &&
	       get_bit(r, &g->l) && get_bit(r, &g->g) && get_bit(r, &g->avl) &&
	       get_bit(r, &g->unusable);
}

static void put_dtable(struct snap_w *w, const struct kvm_dtable *t)
{
	snap_u64(w, t->base);
	snap_u16(w, t->limit);
}

static bool get_dtable(struct snap_r *r, struct kvm_dtable *t)
{
	memset(t, 0, sizeof(*t));
	return get64(r, &t->base) && snap_get_u16(r, &t->limit);
}

static void put_regs(struct snap_w *w, const struct kvm_regs *g)
{
	const uint64_t f[18] = {g->rax, g->rbx, g->rcx, g->rdx, g->rsi, g->rdi,
	                        g->rsp, g->rbp, g->r8,  g->r9,  g->r10, g->r11,
	                        g->r12, g->r13, g->r14, g->r15, g->rip, g->rflags};

	for (unsigned i = 0; i < 18; i++)
		snap_u64(w, f[i]);
}

static bool get_regs(struct snap_r *r, struct kvm_regs *g)
{
	__u64 *f[18] = {&g->rax, &g->rbx, &g->rcx, &g->rdx, &g->rsi, &g->rdi,
	                &g->rsp, &g->rbp, &g->r8,  &g->r9,  &g->r10, &g->r11,
	                &g->r12, &g->r13, &g->r14, &g->r15, &g->rip, &g->rflags};

	for (unsigned i = 0; i < 18; i++)
		if (!get64(r, f[i]))
			return false;
	return true;
}

static void put_sregs(struct snap_w *w, const struct kvm_sregs2 *s)
{
	const struct kvm_segment *seg[8] = {&s->cs, &s->ds, &s->es, &s->fs,
	                                    &s->gs, &s->ss, &s->tr, &s->ldt};

	for (unsigned i = 0; i < 8; i++)
		put_seg(w, seg[i]);
	put_dtable(w, &s->gdt);
	put_dtable(w, &s->idt);
	snap_u64(w, s->cr0);
	snap_u64(w, s->cr2);
	snap_u64(w, s->cr3);
	snap_u64(w, s->cr4);
	snap_u64(w, s->cr8);
	snap_u64(w, s->efer);
	snap_u64(w, s->apic_base);
	snap_u64(w, s->flags);
	for (unsigned i = 0; i < 4; i++)
		snap_u64(w, s->pdptrs[i]);
}

static bool get_sregs(struct snap_r *r, struct kvm_sregs2 *s)
{
	struct kvm_segment *seg[8] = {&s->cs, &s->ds, &s->es, &s->fs,
	                              &s->gs, &s->ss, &s->tr, &s->ldt};

	for (unsigned i = 0; i < 8; i++)
		if (!get_seg(r, seg[i]))
			return false;
	if (!get_dtable(r, &s->gdt) || !get_dtable(r, &s->idt) || !get64(r, &s->cr0) ||
	    !get64(r, &s->cr2) || !get64(r, &s->cr3) || !get64(r, &s->cr4) || !get64(r, &s->cr8) ||
	    !get64(r, &s->efer) || !get64(r, &s->apic_base) || !get64(r, &s->flags))
		return false;
	for (unsigned i = 0; i < 4; i++)
		if (!get64(r, &s->pdptrs[i]))
			return false;
	return true;
}

static void sregs_to2(struct kvm_sregs2 *d, const struct kvm_sregs *s)
{
	*d = (struct kvm_sregs2){.cs = s->cs,
	                         .ds = s->ds,
	                         .es = s->es,
	                         .fs = s->fs,
	                         .gs = s->gs,
	                         .ss = s->ss,
	                         .tr = s->tr,
	                         .ldt = s->ldt,
	                         .gdt = s->gdt,
	                         .idt = s->idt,
	                         .cr0 = s->cr0,
	                         .cr2 = s->cr2,
	                         .cr3 = s->cr3,
	                         .cr4 = s->cr4,
	                         .cr8 = s->cr8,
	                         .efer = s->efer,
	                         .apic_base = s->apic_base};
}

/* KVM_SET_SREGS without the PDPTRs (KVM reads them from memory); no pending interrupt in
 * its bitmap: the events carry it. */
static void sregs_from2(struct kvm_sregs *d, const struct kvm_sregs2 *s)
{
	*d = (struct kvm_sregs){.cs = s->cs,
	                        .ds = s->ds,
	                        .es = s->es,
	                        .fs = s->fs,
	                        .gs = s->gs,
	                        .ss = s->ss,
	                        .tr = s->tr,
	                        .ldt = s->ldt,
	                        .gdt = s->gdt,
	                        .idt = s->idt,
	                        .cr0 = s->cr0,
	                        .cr2 = s->cr2,
	                        .cr3 = s->cr3,
	                        .cr4 = s->cr4,
	                        .cr8 = s->cr8,
	                        .efer = s->efer,
	                        .apic_base = s->apic_base};
}

static void put_events(struct snap_w *w, const struct kvm_vcpu_events *e)
{
	snap_u8(w, e->exception.injected);
	snap_u8(w, e->exception.nr);
	snap_u8(w, e->exception.has_error_code);
	snap_u8(w, e->exception.pending);
	snap_u32(w, e->exception.error_code);
	snap_u8(w, e->interrupt.injected);
	snap_u8(w, e->interrupt.nr);
	snap_u8(w, e->interrupt.soft);
	snap_u8(w, e->interrupt.shadow);
	snap_u8(w, e->nmi.injected);
	snap_u8(w, e->nmi.pending);
	snap_u8(w, e->nmi.masked);
	snap_u32(w, e->sipi_vector);
	snap_u32(w, e->flags);
	snap_u8(w, e->smi.smm);
	snap_u8(w, e->smi.pending);
	snap_u8(w, e->smi.smm_inside_nmi);
	snap_u8(w, e->smi.latched_init);
	snap_u8(w, e->triple_fault.pending);
	snap_u8(w, e->exception_has_payload);
	snap_u64(w, e->exception_payload);
}

/* What KVM accepts and hearth's VMs can have been in: no SMM, no triple-fault event (hearth
 * does not enable it). Without KVM_CAP_EXCEPTION_PAYLOAD (hearth does not enable it) KVM
 * reports a pending exception as injected too, and ignores pending and the payload when
 * they are set back. Up to two NMIs may be pending. */
static bool get_events(struct snap_r *r, struct kvm_vcpu_events *e)
{
	const uint32_t flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
	                       KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	bool ok;

	memset(e, 0, sizeof(*e));
	ok = get_bit(r, &e->exception.injected) && snap_get_u8(r, &e->exception.nr) &&
	     get_bit(r, &e->exception.has_error_code) && get_bit(r, &e->exception.pending) &&
	     snap_get_u32(r, &e->exception.error_code) && get_bit(r, &e->interrupt.injected) &&
	     snap_get_u8(r, &e->interrupt.nr) && get_bit(r, &e->interrupt.soft) &&
	     snap_get_u8(r, &e->interrupt.shadow) && get_bit(r, &e->nmi.injected) &&
	     snap_get_u8(r, &e->nmi.pending) && e->nmi.pending <= 2 && get_bit(r, &e->nmi.masked) &&
	     snap_get_u32(r, &e->sipi_vector) && snap_get_u32(r, &e->flags) &&
	     snap_get_u8(r, &e->smi.smm) && snap_get_u8(r, &e->smi.pending) &&
	     snap_get_u8(r, &e->smi.smm_inside_nmi) && get_bit(r, &e->smi.latched_init) &&
	     snap_get_u8(r, &e->triple_fault.pending) && get_bit(r, &e->exception_has_payload) &&
	     get64(r, &e->exception_payload);
	return ok && !(e->flags & ~flags) && e->sipi_vector < 256 &&
	       (!e->exception.injected || (e->exception.nr < 32 && e->exception.nr != 2)) &&
	       e->interrupt.shadow <= (KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI) &&
	       !e->smi.smm && !e->smi.pending && !e->smi.smm_inside_nmi && !e->triple_fault.pending;
}

/* ---- vCPUs ---------------------------------------------------------------------------- */

/* One KVM_GET_MSRS for the list: KVM reads entries up to the first it does not have and
 * says how many; that one is skipped, and the rest asked again. */
static int get_msrs(const struct vcpu *v, struct cpu_state *s, struct error *err)
{
	struct kvm_vcpu *kv = kvcpu_of(v);
	struct msrs m;
	unsigned next = 0;

	s->nmsrs = 0;
	while (next < NMSRS) {
		int r;

		memset(&m, 0, sizeof(m));
		m.h.nmsrs = NMSRS - next;
		for (unsigned i = next; i < NMSRS; i++)
			m.e[i - next].index = msr_list[i];
		r = ioctl(kv->fd, KVM_GET_MSRS, &m);
		if (r < 0)
			return err_set(err, "snapshot: vCPU %u: KVM_GET_MSRS: %s", v->id,
			               strerror(errno));
		for (int i = 0; i < r; i++)
			s->msrs[s->nmsrs++] = m.e[i];
		next += (unsigned)r + 1;
	}
	return 0;
}

static int save_vcpu(struct vm *vm, struct vcpu *v, struct cpu_state *s, struct snap_w *w,
                     struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	struct kvm_vcpu *kv = kvcpu_of(v);
	struct kvm_mp_state mp;
	uint64_t now = 0;
	size_t at;

	/* As Firecracker: the MP state first (reading it lets the LAPIC take pending INIT and
	 * SIPI), the events last. */
	if (VCPU_IOCTL(v, KVM_GET_MP_STATE, &mp, err))
		return -1;
	s->mp_state = mp.mp_state;
	if (vm->engine == ENGINE_SHADOW && v->id == 0) {
		struct kvm_sregs sr;

		kvm_shadow_real_regs(vm, &s->regs, &sr);
		sregs_to2(&s->sregs, &sr);
	} else if (VCPU_IOCTL(v, KVM_GET_REGS, &s->regs, err)) {
		return -1;
	} else if (k->sregs2) {
		if (VCPU_IOCTL(v, KVM_GET_SREGS2, &s->sregs, err))
			return -1;
	} else {
		struct kvm_sregs sr;

		if (VCPU_IOCTL(v, KVM_GET_SREGS, &sr, err))
			return -1;
		sregs_to2(&s->sregs, &sr);
	}
	memset(s->xsave, 0, k->xsave_size);
	if (k->xsave2 ? VCPU_IOCTL(v, KVM_GET_XSAVE2, s->xsave, err)
	              : VCPU_IOCTL(v, KVM_GET_XSAVE, s->xsave, err))
		return -1;
	s->xsave_len = k->xsave_size;
	if (VCPU_IOCTL(v, KVM_GET_XCRS, &s->xcrs, err) ||
	    VCPU_IOCTL(v, KVM_GET_DEBUGREGS, &s->dbg, err) ||
	    VCPU_IOCTL(v, KVM_GET_LAPIC, &s->lapic, err))
		return -1;
	if (kv->tsc_offset_saved)
		now = rdtsc(); /* before the read: the TSC saved is never behind the guest's */
	if (get_msrs(v, s, err) || VCPU_IOCTL(v, KVM_GET_VCPU_EVENTS, &s->ev, err))
		return -1;
	/* The guest's TSC at the pause: its offset did not move since (kvm_pause), the host's
	 * TSC did. Without the offset, the TSC ran on while paused, and so it does after. */
	for (unsigned i = 0; kv->tsc_offset_saved && i < s->nmsrs; i++)
		if (s->msrs[i].index == MSR_IA32_TSC)
			s->msrs[i].data -= now - k->paused_at_tsc;
	if (s->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return err_set(err, "snapshot: vCPU %u: KVM_GET_XCRS: %u XCRs", v->id,
		               s->xcrs.nr_xcrs);

	at = snap_begin(w, TAG_CPU);
	snap_u32(w, v->id);
	snap_u32(w, s->mp_state);
	put_regs(w, &s->regs);
	put_sregs(w, &s->sregs);
	snap_u32(w, s->xcrs.nr_xcrs);
	for (unsigned i = 0; i < s->xcrs.nr_xcrs; i++) {
		snap_u32(w, s->xcrs.xcrs[i].xcr);
		snap_u64(w, s->xcrs.xcrs[i].value);
	}
	for (unsigned i = 0; i < 4; i++)
		snap_u64(w, s->dbg.db[i]);
	snap_u64(w, s->dbg.dr6);
	snap_u64(w, s->dbg.dr7);
	snap_bytes(w, s->lapic.regs, sizeof(s->lapic.regs));
	snap_u32(w, s->nmsrs);
	for (unsigned i = 0; i < s->nmsrs; i++) {
		snap_u32(w, s->msrs[i].index);
		snap_u64(w, s->msrs[i].data);
	}
	put_events(w, &s->ev);
	snap_u32(w, s->xsave_len);
	snap_bytes(w, s->xsave, s->xsave_len);
	snap_end(w, at);
	return 0;
}

/* A vCPU's section, every field checked (architectural values are KVM's to refuse). */
static int read_vcpu(struct kvm_vm *k, const struct vcpu *v, struct snap_r *r, struct cpu_state *s,
                     struct error *err)
{
	struct snap_r sec;
	uint32_t id, next = 0;

	if (snap_section(r, TAG_CPU, &sec, err))
		return -1;
	if (!snap_get_u32(&sec, &id) || id != v->id)
		return snap_bad(&sec, err, "vCPU id");
	/* x86's: running, uninitialized, INIT received, halted, SIPI received */
	if (!snap_get_u32(&sec, &s->mp_state) || s->mp_state > KVM_MP_STATE_SIPI_RECEIVED)
		return snap_bad(&sec, err, "MP state");
	if (!get_regs(&sec, &s->regs) || (s->regs.rflags & ~RF_DEFINED) ||
	    !(s->regs.rflags & RF_RESERVED))
		return snap_bad(&sec, err, "registers");
	if (!get_sregs(&sec, &s->sregs) || (s->sregs.flags & ~KVM_SREGS2_FLAGS_PDPTRS_VALID) ||
	    s->sregs.cr8 > 15)
		return snap_bad(&sec, err, "special registers");
	/* XCR0 is the only one */
	memset(&s->xcrs, 0, sizeof(s->xcrs));
	if (!snap_get_u32(&sec, &s->xcrs.nr_xcrs) || s->xcrs.nr_xcrs > 1)
		return snap_bad(&sec, err, "XCRs");
	for (unsigned i = 0; i < s->xcrs.nr_xcrs; i++)
		if (!snap_get_u32(&sec, &s->xcrs.xcrs[i].xcr) || s->xcrs.xcrs[i].xcr != 0 ||
		    !get64(&sec, &s->xcrs.xcrs[i].value))
			return snap_bad(&sec, err, "XCRs");
	memset(&s->dbg, 0, sizeof(s->dbg));
	for (unsigned i = 0; i < 4; i++)
		if (!get64(&sec, &s->dbg.db[i]))
			return snap_bad(&sec, err, "debug registers");
	if (!get64(&sec, &s->dbg.dr6) || !get64(&sec, &s->dbg.dr7) || s->dbg.dr6 >> 32 ||
	    s->dbg.dr7 >> 32)
		return snap_bad(&sec, err, "debug registers");
	if (!snap_get_bytes(&sec, s->lapic.regs, sizeof(s->lapic.regs)))
		return snap_bad(&sec, err, "local APIC");
	if (!snap_get_u32(&sec, &s->nmsrs) || s->nmsrs > NMSRS)
		return snap_bad(&sec, err, "MSR count");
	for (unsigned i = 0; i < s->nmsrs; i++) {
		s->msrs[i] = (struct kvm_msr_entry){0};
		if (!snap_get_u32(&sec, &s->msrs[i].index) || !get64(&sec, &s->msrs[i].data))
			return snap_bad(&sec, err, "MSRs");
		while (next < NMSRS && msr_list[next] != s->msrs[i].index)
			next++;
		if (next++ == NMSRS)
			return snap_bad(&sec, err,
			                "MSR index (one hearth does not restore, or out "
			                "of order)");
	}
	if (!get_events(&sec, &s->ev))
		return snap_bad(&sec, err, "pending events");
	if (!snap_get_u32(&sec, &s->xsave_len) || s->xsave_len < sizeof(struct kvm_xsave) ||
	    s->xsave_len > snap_left(&sec))
		return snap_bad(&sec, err, "XSAVE state");
	if (s->xsave_len > k->xsave_size)
		return err_set(err,
		               "snapshot: vCPU %u's XSAVE state is %u bytes, this host's KVM keeps "
		               "%u: the snapshot comes from a host with other XSAVE features",
		               v->id, s->xsave_len, k->xsave_size);
	memset(s->xsave, 0, k->xsave_size);
	snap_get_bytes(&sec, s->xsave, s->xsave_len);
	return snap_section_done(&sec, err);
}

static bool get_msr(struct kvm_vcpu *kv, uint32_t index, uint64_t *value)
{
	struct msrs m = {.h.nmsrs = 1, .e[0].index = index};

	if (ioctl(kv->fd, KVM_GET_MSRS, &m) != 1)
		return false;
	*value = m.e[0].data;
	return true;
}

/* KVM_SET_MSRS sets entries up to the first it refuses and says how many. A refused MSR
 * that already has the saved value (a zero this KVM will not write back: steal time on a
 * host without schedstats) needs nothing; any other fails the restore. *tsc_at: the host's
 * TSC right after the guest's TSC was written. */
static int set_msrs(const struct vcpu *v, const struct kvm_msr_entry *e, unsigned n,
                    uint64_t *tsc_at, struct error *err)
{
	struct kvm_vcpu *kv = kvcpu_of(v);
	struct msrs m;
	unsigned done = 0;

	while (done < n) {
		uint64_t have;
		int r;

		memset(&m, 0, sizeof(m));
		m.h.nmsrs = n - done;
		memcpy(m.e, e + done, (n - done) * sizeof(*e));
		r = ioctl(kv->fd, KVM_SET_MSRS, &m);
		if (r < 0)
			return err_set(err, "snapshot: vCPU %u: KVM_SET_MSRS: %s", v->id,
			               strerror(errno));
		if (done == 0 && r > 0 && e[0].index == MSR_IA32_TSC && tsc_at)
			*tsc_at = rdtsc();
		done += (unsigned)r;
		if (done == n)
			break;
		if (!get_msr(kv, e[done].index, &have) || have != e[done].data)
			return err_set(err,
			               "snapshot: vCPU %u: KVM_SET_MSRS refused MSR 0x%x = 0x%llx",
			               v->id, e[done].index, (unsigned long long)e[done].data);
		done++;
	}
	return 0;
}

/* Set a vCPU's state (read_vcpu checked it). */
static int restore_vcpu(struct vm *vm, const struct vcpu *v, struct cpu_state *s, uint64_t *tsc_at,
                        struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	struct kvm_mp_state mp = {.mp_state = s->mp_state};
	unsigned n = s->nmsrs;

	if (vm->engine == ENGINE_SHADOW && v->id == 0) {
		struct kvm_sregs sr;

		sregs_from2(&sr, &s->sregs);
		if (kvm_shadow_set_real_regs(vm, &s->regs, &sr, err))
			return -1;
	} else if (VCPU_IOCTL(v, KVM_SET_REGS, &s->regs, err)) {
		return -1;
	} else if (k->sregs2) {
		if (VCPU_IOCTL(v, KVM_SET_SREGS2, &s->sregs, err))
			return -1;
	} else {
		struct kvm_sregs sr;

		sregs_from2(&sr, &s->sregs);
		if (VCPU_IOCTL(v, KVM_SET_SREGS, &sr, err))
			return -1;
	}
	/* No XCR0 where the host has no XSAVE, and there KVM refuses even none. */
	if (VCPU_IOCTL(v, KVM_SET_XSAVE, s->xsave, err) ||
	    (s->xcrs.nr_xcrs && VCPU_IOCTL(v, KVM_SET_XCRS, &s->xcrs, err)))
		return -1;
	/* The TSC deadline after the LAPIC, which says whether its timer counts to one. */
	if (n && s->msrs[n - 1].index == MSR_TSC_DEADLINE)
		n--;
	if (set_msrs(v, s->msrs, n, tsc_at, err) || VCPU_IOCTL(v, KVM_SET_LAPIC, &s->lapic, err) ||
	    set_msrs(v, s->msrs + n, s->nmsrs - n, NULL, err) ||
	    VCPU_IOCTL(v, KVM_SET_DEBUGREGS, &s->dbg, err))
		return -1;
	/* KVM reports the SIPI vector without its flag and takes it only with it. */
	s->ev.flags |= KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if (VCPU_IOCTL(v, KVM_SET_VCPU_EVENTS, &s->ev, err) ||
	    VCPU_IOCTL(v, KVM_SET_MP_STATE, &mp, err))
		return -1;
	return 0;
}

/* ---- the VM: interrupt chips, PIT, clock ------------------------------------------------ */

static void put_pic(struct snap_w *w, const struct kvm_pic_state *p)
{
	snap_bytes(w, p, sizeof(*p)); /* sixteen bytes, in the struct's order */
}

/* As the 8259A model in KVM keeps them: flags 0 or 1, the init sequence in 0-3, the
 * rotation 0-7, the vector base a multiple of 8. */
static bool get_pic(struct snap_r *r, struct kvm_pic_state *p)
{
	return snap_get_bytes(r, p, sizeof(*p)) && p->read_reg_select <= 1 && p->poll <= 1 &&
	       p->special_mask <= 1 && p->auto_eoi <= 1 && p->rotate_on_auto_eoi <= 1 &&
	       p->special_fully_nested_mode <= 1 && p->init4 <= 1 && p->init_state <= 3 &&
	       p->priority_add <= 7 && !(p->irq_base & 7);
}

static void put_ioapic(struct snap_w *w, const struct kvm_ioapic_state *a)
{
	snap_u64(w, a->base_address);
	snap_u32(w, a->ioregsel);
	snap_u32(w, a->id);
	snap_u32(w, a->irr);
	for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		snap_u64(w, a->redirtbl[i].bits);
}

static bool get_ioapic(struct snap_r *r, struct kvm_ioapic_state *a)
{
	memset(a, 0, sizeof(*a));
	if (!get64(r, &a->base_address) || a->base_address != IOAPIC_BASE ||
	    !snap_get_u32(r, &a->ioregsel) || a->ioregsel > 0xff || !snap_get_u32(r, &a->id) ||
	    a->id > 15 || !snap_get_u32(r, &a->irr) || a->irr >> KVM_IOAPIC_NUM_PINS)
		return false;
	for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		if (!get64(r, &a->redirtbl[i].bits))
			return false;
	return true;
}

/* The load times are the host's clock: KVM_SET_PIT2 starts every count again from now. */
static void put_pit(struct snap_w *w, const struct kvm_pit_state2 *p)
{
	for (unsigned i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &p->channels[i];

		snap_u32(w, c->count);
		snap_u16(w, c->latched_count);
		snap_u8(w, c->count_latched);
		snap_u8(w, c->status_latched);
		snap_u8(w, c->status);
		snap_u8(w, c->read_state);
		snap_u8(w, c->write_state);
		snap_u8(w, c->write_latch);
		snap_u8(w, c->rw_mode);
		snap_u8(w, c->mode);
		snap_u8(w, c->bcd);
		snap_u8(w, c->gate);
	}
	snap_u32(w, p->flags);
}

/* As KVM's 8254 keeps them: a count up to 65536, access modes 0-3, read/write states 0-4,
 * counter modes 0-5, or 0xff for a counter never programmed (kvm_pit_reset). */
static bool get_pit(struct snap_r *r, struct kvm_pit_state2 *p)
{
	memset(p, 0, sizeof(*p));
	for (unsigned i = 0; i < 3; i++) {
		struct kvm_pit_channel_state *c = &p->channels[i];

		if (!snap_get_u32(r, &c->count) || c->count > 0x10000 ||
		    !snap_get_u16(r, &c->latched_count) || !snap_get_u8(r, &c->count_latched) ||
		    c->count_latched > 3 || !get_bit(r, &c->status_latched) ||
		    !snap_get_u8(r, &c->status) || !snap_get_u8(r, &c->read_state) ||
		    c->read_state > 4 || !snap_get_u8(r, &c->write_state) || c->write_state > 4 ||
		    !snap_get_u8(r, &c->write_latch) || !snap_get_u8(r, &c->rw_mode) ||
		    c->rw_mode > 3 || !snap_get_u8(r, &c->mode) ||
		    (c->mode > 5 && c->mode != 0xff) || !get_bit(r, &c->bcd) ||
		    !get_bit(r, &c->gate))
			return false;
	}
	return snap_get_u32(r, &p->flags) &&
	       !(p->flags & ~(KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON));
}

static int vm_ioctl(struct kvm_vm *k, unsigned long req, void *arg, const char *name,
                    struct error *err)
{
	if (ioctl(k->vm_fd, req, arg) == 0)
		return 0;
	return err_set(err, "snapshot: %s: %s", name, strerror(errno));
}

static int save_vm(struct vm *vm, struct snap_w *w, struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	struct kvm_irqchip chip[3] = {{.chip_id = KVM_IRQCHIP_PIC_MASTER},
	                              {.chip_id = KVM_IRQCHIP_PIC_SLAVE},
	                              {.chip_id = KVM_IRQCHIP_IOAPIC}};
	struct kvm_pit_state2 pit;
	size_t at;

	if (!k->clock_saved)
		return err_set(err, "snapshot: the guest's clock was not frozen at the pause");
	for (unsigned i = 0; i < 3; i++)
		if (vm_ioctl(k, KVM_GET_IRQCHIP, &chip[i], "KVM_GET_IRQCHIP", err))
			return -1;
	if (vm_ioctl(k, KVM_GET_PIT2, &pit, "KVM_GET_PIT2", err))
		return -1;
	at = snap_begin(w, TAG_VM);
	snap_u32(w, vm->nvcpus);
	snap_u32(w, vm->engine);
	put_pic(w, &chip[0].chip.pic);
	put_pic(w, &chip[1].chip.pic);
	put_ioapic(w, &chip[2].chip.ioapic);
	put_pit(w, &pit);
	snap_u64(w, k->clock.clock);
	snap_end(w, at);
	return 0;
}

static int restore_vm(struct vm *vm, struct snap_r *r, struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	struct kvm_irqchip chip[3] = {{.chip_id = KVM_IRQCHIP_PIC_MASTER},
	                              {.chip_id = KVM_IRQCHIP_PIC_SLAVE},
	                              {.chip_id = KVM_IRQCHIP_IOAPIC}};
	struct kvm_pit_state2 pit;
	struct snap_r s;
	uint32_t n, engine;
	uint64_t clock;

	if (snap_section(r, TAG_VM, &s, err))
		return -1;
	if (!snap_get_u32(&s, &n) || n != vm->nvcpus)
		return snap_bad(&s, err, "vCPU count");
	if (!snap_get_u32(&s, &engine) || engine != vm->engine)
		return snap_bad(&s, err, "engine");
	if (!get_pic(&s, &chip[0].chip.pic) || !get_pic(&s, &chip[1].chip.pic))
		return snap_bad(&s, err, "PIC");
	if (!get_ioapic(&s, &chip[2].chip.ioapic))
		return snap_bad(&s, err, "IOAPIC");
	if (!get_pit(&s, &pit))
		return snap_bad(&s, err, "PIT");
	if (!snap_get_u64(&s, &clock))
		return snap_bad(&s, err, "clock");
	if (snap_section_done(&s, err))
		return -1;
	for (unsigned i = 0; i < 3; i++)
		if (vm_ioctl(k, KVM_SET_IRQCHIP, &chip[i], "KVM_SET_IRQCHIP", err))
			return -1;
	if (vm_ioctl(k, KVM_SET_PIT2, &pit, "KVM_SET_PIT2", err))
		return -1;
	/* kvm_resume sets it: kvmclock goes on from the paused value. */
	memset(&k->clock, 0, sizeof(k->clock));
	k->clock.clock = clock;
	k->clock_saved = true;
	return 0;
}

/* ---- the backend ops ------------------------------------------------------------------ */

static struct cpu_state *cpu_state_new(const struct kvm_vm *k)
{
	struct cpu_state *s = calloc(1, sizeof(*s));

	if (s && !(s->xsave = calloc(1, k->xsave_size))) {
		free(s);
		s = NULL;
	}
	return s;
}

static void cpu_state_free(struct cpu_state *s)
{
	if (s)
		free(s->xsave);
	free(s);
}

int kvm_save(struct vm *vm, struct snap_w *w, struct error *err)
{
	struct cpu_state *s = cpu_state_new(kvm_of(vm));
	int r = -1;

	if (!s)
		return err_set(err, "snapshot: out of memory");
	if (save_vm(vm, w, err) || (vm->engine == ENGINE_SHADOW && kvm_shadow_save(vm, w, err)))
		goto out;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (save_vcpu(vm, &vm->vcpus[i], s, w, err))
			goto out;
	r = 0;
out:
	cpu_state_free(s);
	return r;
}

int kvm_restore(struct vm *vm, struct snap_r *r, struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	struct cpu_state *s = cpu_state_new(k);
	uint64_t tsc_at = 0;
	int ret = -1;

	if (!s)
		return err_set(err, "snapshot: out of memory");
	if (restore_vm(vm, r, err) ||
	    (vm->engine == ENGINE_SHADOW && kvm_shadow_restore(vm, r, err)))
		goto out;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (read_vcpu(k, &vm->vcpus[i], r, s, err) ||
		    restore_vcpu(vm, &vm->vcpus[i], s, i == 0 ? &tsc_at : NULL, err))
			goto out;
	/* Paused, as kvm_pause leaves a VM: the TSC offsets now, and when (vCPU 0's TSC was
	 * set: the others' writes of the same value are synchronized to it). */
	k->paused_at_tsc = tsc_at ? tsc_at : rdtsc();
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct kvm_vcpu *kv = kvcpu_of(&vm->vcpus[i]);
		struct kvm_device_attr a = {.group = KVM_VCPU_TSC_CTRL,
		                            .attr = KVM_VCPU_TSC_OFFSET,
		                            .addr = (uint64_t)(uintptr_t)&kv->tsc_offset};

		kv->tsc_offset_saved = ioctl(kv->fd, KVM_GET_DEVICE_ATTR, &a) == 0;
	}
	ret = 0;
out:
	cpu_state_free(s);
	return ret;
}

/* ---- dirty pages ------------------------------------------------------------------------ */

/* Guest RAM's memslots: slot 0 low RAM, slot 1 RAM above 4 GiB (kvm_create). */
static uint64_t slot_pages(const struct vm *vm, unsigned slot)
{
	return (slot ? vm->mem.high_size : vm->mem.low_size) / PAGE;
}

int kvm_dirty_start(struct vm *vm, struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);

	for (unsigned i = 0; i < 2; i++) {
		uint64_t pages = slot_pages(vm, i);

		if (!pages)
			continue;
		k->dirty_log[i] = calloc((pages + 63) / 64, 8);
		if (!k->dirty_log[i])
			return err_set(err, "track_dirty_pages: out of memory");
		if (kvm_set_memslot(k, i, i ? LAYOUT_HIGH_RAM_START : 0, pages * PAGE,
		                    vm->mem.host + (i ? vm->mem.low_size : 0),
		                    KVM_MEM_LOG_DIRTY_PAGES, err))
			return -1;
	}
	return 0;
}

/* KVM_GET_DIRTY_LOG hands over a slot's log and clears it (no manual protection here). */
int kvm_dirty_collect(struct vm *vm, uint64_t *bitmap, struct error *err)
{
	struct kvm_vm *k = kvm_of(vm);
	uint64_t first = 0; /* the slot's first page, in guest-memory offset order */

	for (unsigned i = 0; i < 2; i++) {
		uint64_t pages = slot_pages(vm, i);
		struct kvm_dirty_log log = {.slot = i, .dirty_bitmap = k->dirty_log[i]};

		if (!pages)
			continue;
		if (!k->dirty_log[i])
			return err_set(err, "snapshot: dirty page tracking is off");
		if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return err_set(err, "snapshot: KVM_GET_DIRTY_LOG slot %u: %s", i,
			               strerror(errno));
		/* RAM comes in MiB: a slot starts on a word of the bitmap */
		for (uint64_t w = 0; w < (pages + 63) / 64; w++)
			bitmap[first / 64 + w] |= k->dirty_log[i][w];
		first += pages;
	}
	return 0;
}
