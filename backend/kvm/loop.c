/* The KVM_RUN loop both KVM engines share: exits become neutral port I/O and MMIO accesses
 * (vm_pio, vm_mmio), or go to the engine's hooks (kvm.h, struct kvm_engine). */
#include "kvm.h"
#include "vmm/metrics.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

static void exit_io(struct vcpu *v, struct kvm_run *r)
{
	uint8_t *data = (uint8_t *)r + r->io.data_offset;

	vm_pio(v->vm, r->io.port, r->io.direction == KVM_EXIT_IO_OUT, data, r->io.size,
	       r->io.count);
}

void kvm_vcpu_loop(struct vcpu *v)
{
	struct kvm_vcpu *kv = kvcpu_of(v);
	const struct kvm_engine *eng = kvm_of(v->vm)->eng;
	struct kvm_run *run = kv->run;
	struct vm *vm = v->vm;

	for (;;) {
		/* A pause parks the vCPU at the checkpoint. KVM finishes an exit (the data of a
		 * port or MMIO read, the registers an engine left in the sync area) only at the
		 * next KVM_RUN: after an exit, one with immediate_exit first, which does that and
		 * returns before the guest runs, so that a parked vCPU's state is whole (a
		 * snapshot reads it). Paused is read once here: when it was not set, the kick
		 * that follows setting it makes KVM_RUN return, and this comes round again. */
		bool paused = __atomic_load_n(&vm->paused, __ATOMIC_ACQUIRE);

		if (paused && kv->exited)
			run->immediate_exit = 1;
		else if (paused ? !vm_vcpu_checkpoint(v)
		                : __atomic_load_n(&vm->stop.reason, __ATOMIC_ACQUIRE) != STOP_NONE)
			return;
		if (eng->before_run && !eng->before_run(v))
			return;
		if (ioctl(kv->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				METRIC_INC(exit_intr);
				run->immediate_exit = 0; /* a kick: back to the checkpoint */
				kv->exited = false;
				continue;
			}
			vm_request_stop(vm, STOP_VMM_ERROR, 0, "KVM_RUN on vCPU %u: %s", v->id,
			                strerror(errno));
			return;
		}
		kv->exited = true;
		if (eng->after_run)
			eng->after_run(v);
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (eng->exit_io && eng->exit_io(v))
				break;
			METRIC_INC(exit_io);
			exit_io(v, run);
			string_io_after_exit(&kv->sio, run, &vm->pio, eng->sregs, eng->vread,
			                     eng->hook_ctx(v));
			break;
		case KVM_EXIT_MMIO:
			METRIC_INC(exit_mmio);
			vm_mmio(vm, run->mmio.phys_addr, run->mmio.is_write, run->mmio.data,
			        run->mmio.len);
			break;
		case KVM_EXIT_HLT:
			/* Only without an in-kernel LAPIC; hearth always has one. */
			break;
		case KVM_EXIT_SHUTDOWN:
			eng->shutdown(v);
			return;
		case KVM_EXIT_SYSTEM_EVENT:
			if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
				vm_request_stop(vm, STOP_RESET, 0, "guest reset the VM");
			else
				vm_request_stop(vm, STOP_POWEROFF, 0, "guest powered off");
			return;
		case KVM_EXIT_INTERNAL_ERROR:
		case KVM_EXIT_FAIL_ENTRY:
			kvm_report_internal_error(v);
			return;
		case KVM_EXIT_INTR:
			break;
		default:
			METRIC_INC(exit_other);
			vm_request_stop(vm, STOP_CPU_ERROR, 0,
			                "unexpected KVM exit reason %u on vCPU %u",
			                run->exit_reason, v->id);
			return;
		}
	}
}
