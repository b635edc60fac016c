/* Whether this host can run KVM guests at all: /dev/kvm probed without keeping it open. hearth
 * starts, configures and serves its API without KVM; only building a VM needs it. */
#ifndef HEARTH_HOST_KVM_H
#define HEARTH_HOST_KVM_H

enum kvm_presence {
	KVM_AVAILABLE, /* /dev/kvm opens read-write */
	KVM_ABSENT,    /* no /dev/kvm */
	KVM_NO_ACCESS, /* /dev/kvm exists, this process may not open it */
	KVM_UNUSABLE,  /* it exists but cannot be opened for another reason */
};

struct host_kvm {
	enum kvm_presence state;
	char detail[256]; /* why, when not available; names the device and what to do */
};

/* Probe `dev` (normally "/dev/kvm"); `sysfs_root` ("/sys") explains an absent device. */
void host_kvm_probe(struct host_kvm *k, const char *dev, const char *sysfs_root);
/* "available", "absent", "no-access" or "unusable" (the API's "kvm" field). */
const char *host_kvm_state_name(enum kvm_presence s);

#endif
