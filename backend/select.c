/* Which backend and engine run a VM: the one place where that is decided. */
#include "backend.h"
#include "vmm/exit_codes.h"

const char *engine_name(enum engine e)
{
	switch (e) {
	case ENGINE_HARDWARE:
		return "hardware";
	case ENGINE_SHADOW:
		return "shadow";
	case ENGINE_PROCESS:
		return "process";
	}
	return "?";
}

const struct backend *backend_pick(const struct host_probe *kvm, enum mmu_mode requested)
{
	switch (requested) {
	case MMU_PROCESS:
		return &process_backend;
	case MMU_HARDWARE:
	case MMU_SHADOW:
		return &kvm_backend; /* its open says what is missing where there is no KVM */
	case MMU_AUTO:
		break;
	}
	return kvm->usable ? &kvm_backend : &process_backend;
}

/* Linux maps itself in the upper half of the address space, which a host process cannot
 * map: it needs KVM. */
static int linux_needs_kvm(const struct host_probe *kvm, enum mmu_mode requested, struct error *err,
                           int *exit_code)
{
	if (requested == MMU_PROCESS) {
		*exit_code = EXIT_USAGE;
		return err_set(err,
		               "--engine process: this is a Linux kernel (a bzImage, or an ELF "
		               "with Linux's notes), which maps itself in the upper half of the "
		               "address space, out of a host process's "
		               "reach; it needs KVM (--engine hardware on a host with "
		               "/dev/kvm)");
	}
	*exit_code = EXIT_VMM_ERROR;
	return err_set(err,
	               "this is a Linux kernel (a bzImage, or an ELF with Linux's notes), "
	               "which maps itself in the upper half of the address space and so needs KVM, "
	               "and /dev/kvm is not usable here (%s); "
	               "without KVM, hearth runs guests that live in the lower half "
	               "(unikernels, PVH guests) as host processes",
	               kvm->detail[0] ? kvm->detail : kvm->state);
}

int engine_pick(const struct backend *b, const struct host_probe *kvm, enum mmu_mode requested,
                bool linux_kernel, bool linux_format, enum engine *engine, struct error *err,
                int *exit_code)
{
	if (b == &process_backend) {
		if (linux_kernel)
			return linux_needs_kvm(kvm, requested, err, exit_code);
		*engine = ENGINE_PROCESS;
		return 0;
	}
	switch (requested) {
	case MMU_HARDWARE:
	case MMU_PROCESS:
		*engine = ENGINE_HARDWARE;
		return 0;
	case MMU_SHADOW:
		/* Shadow mode runs single-address-space guests; Linux has a user mode. */
		if (linux_kernel) {
			*exit_code = EXIT_USAGE;
			return err_set(err,
			               "--engine shadow: this is a Linux kernel, which has its own "
			               "user mode; shadow mode runs single-address-space guests "
			               "only (use --engine hardware or auto)");
		}
		*engine = ENGINE_SHADOW;
		return 0;
	case MMU_AUTO:
		break;
	}
	/* auto: shadow where KVM emulates guest ring-0 code (PVM), except for Linux and the
	 * other kernels in its boot format (large kernels, tested in the hardware engine). */
	*engine =
	    kvm->cpl0_emulated && !linux_kernel && !linux_format ? ENGINE_SHADOW : ENGINE_HARDWARE;
	return 0;
}
