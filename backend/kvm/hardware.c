/* The hardware engine: KVM runs the guest as it is (EPT/NPT, or KVM's own shadow paging). */
#include "kvm.h"
#include "cpu/x86.h"
#include "boot/boot_gdt.h"
#include "vmm/guest_memory.h"
#include "vmm/layout.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

static struct kvm_segment flat_segment(uint16_t sel, uint8_t type, bool code64)
{
	return (struct kvm_segment){
	    .base = 0,
	    .limit = 0xffffffff,
	    .selector = sel,
	    .type = type,
	    .present = 1,
	    .dpl = 0,
	    .db = code64 ? 0 : 1,
	    .s = 1,
	    .l = code64 ? 1 : 0,
	    .g = 1,
	};
}

static int hw_setup_boot_vcpu(struct vcpu *v, const struct boot_cpu_state *boot, struct error *err)
{
	struct kvm_sregs s;
	struct kvm_regs r;
	struct kvm_segment data = flat_segment(BOOT_GDT_SEL_DATA, 0x3, false);

	int fd = kvcpu_of(v)->fd;

	if (ioctl(fd, KVM_GET_SREGS, &s) < 0)
		return err_set(err, "KVM_GET_SREGS: %s", strerror(errno));
	s.gdt.base = LAYOUT_BOOT_GDT;
	s.gdt.limit = BOOT_GDT_SIZE - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.tr = (struct kvm_segment){.limit = 0xffff, .type = 0xb, .present = 1};
	s.ldt = (struct kvm_segment){.type = 0x2, .unusable = 1};
	if (boot->long_mode) {
		s.cs = flat_segment(BOOT_GDT_SEL_CODE64, 0xb, true);
		s.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
		s.cr3 = boot->cr3;
		s.cr4 = CR4_PAE;
		s.efer = EFER_LME | EFER_LMA;
	} else {
		s.cs = flat_segment(BOOT_GDT_SEL_CODE32, 0xb, false);
		s.cr0 = CR0_PE | CR0_ET;
		s.cr3 = 0;
		s.cr4 = 0;
		s.efer = 0;
	}
	if (ioctl(fd, KVM_SET_SREGS, &s) < 0)
		return err_set(err, "KVM_SET_SREGS: %s", strerror(errno));

	memset(&r, 0, sizeof(r));
	r.rflags = RF_RESERVED;
	r.rip = boot->rip;
	r.rsi = boot->rsi;
	r.rbx = boot->rbx;
	r.rax = boot->rax;
	if (boot->long_mode)
		r.rsp = r.rbp = LAYOUT_BOOT_STACK;
	if (ioctl(fd, KVM_SET_REGS, &r) < 0)
		return err_set(err, "KVM_SET_REGS: %s", strerror(errno));
	return 0;
}

/* Guest-linear memory through KVM's own translation (any paging mode), a page at a time. */
static bool hw_vread(void *ctx, uint64_t linear, void *buf, size_t len)
{
	struct vcpu *v = ctx;
	uint8_t *p = buf;

	while (len) {
		struct kvm_translation t = {.linear_address = linear};
		size_t chunk = 4096 - (linear & 4095);

		if (chunk > len)
			chunk = len;
		if (ioctl(kvcpu_of(v)->fd, KVM_TRANSLATE, &t) < 0 || !t.valid ||
		    gm_read(&v->vm->mem, t.physical_address, p, chunk))
			return false;
		p += chunk;
		linear += chunk;
		len -= chunk;
	}
	return true;
}

/* The special registers by ioctl: only needed when an output exit repeats (string_io.h). */
static const struct kvm_sregs *hw_sregs(void *ctx)
{
	static __thread struct kvm_sregs s;
	struct vcpu *v = ctx;

	return ioctl(kvcpu_of(v)->fd, KVM_GET_SREGS, &s) == 0 ? &s : NULL;
}

/* General registers come back with every exit (KVM_SYNC_REGS): RIP tells a string output
 * apart, without an ioctl. */
static bool hw_before_run(struct vcpu *v)
{
	kvcpu_of(v)->run->kvm_valid_regs = KVM_SYNC_X86_REGS;
	return true;
}

static void *hw_ctx(struct vcpu *v)
{
	return v;
}

const struct kvm_engine kvm_hardware_engine = {
    .name = "hardware",
    .setup_boot_vcpu = hw_setup_boot_vcpu,
    .before_run = hw_before_run,
    .sregs = hw_sregs,
    .vread = hw_vread,
    .hook_ctx = hw_ctx,
    .shutdown = kvm_report_triple_fault,
};
