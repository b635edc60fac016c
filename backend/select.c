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
	}
	return "?";
}

const struct backend *backend_pick(const struct host_probe *kvm, enum mmu_mode requested)
{
	(void)kvm;
	(void)requested;
	return &kvm_backend; /* the only backend that runs guests; it says so where it cannot */
}

int engine_pick(const struct backend *b, const struct host_probe *kvm, enum mmu_mode requested,
                bool linux_kernel, enum engine *engine, struct error *err, int *exit_code)
{
	(void)b;
	switch (requested) {
	case MMU_HARDWARE:
		*engine = ENGINE_HARDWARE;
		return 0;
	case MMU_SHADOW:
		/* Shadow mode runs single-address-space guests; Linux has a user mode. */
		if (linux_kernel) {
			*exit_code = EXIT_USAGE;
			return err_set(err,
			               "--mmu shadow: this is a Linux kernel, which has its own "
			               "user mode; shadow mode runs single-address-space guests "
			               "only (use --mmu hardware or auto)");
		}
		*engine = ENGINE_SHADOW;
		return 0;
	case MMU_AUTO:
		break;
	}
	/* auto: shadow where KVM emulates guest ring-0 code (PVM), except for Linux. */
	*engine = kvm->cpl0_emulated && !linux_kernel ? ENGINE_SHADOW : ENGINE_HARDWARE;
	return 0;
}
