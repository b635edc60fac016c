#include "host_kvm.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool module_loaded(const char *sysfs_root, const char *name)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/module/%s", sysfs_root, name);
	return access(p, F_OK) == 0;
}

static bool cpu_has_vmx_or_svm(void)
{
	unsigned a, b, c = 0, d;

	if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 5)))
		return true;
	c = 0;
	return __get_cpuid(0x80000001, &a, &b, &c, &d) && (c & (1u << 2));
}

/* Why there is no device node: what sysfs and the CPU tell. */
static const char *absent_reason(const char *sysfs_root)
{
	bool vendor =
	    module_loaded(sysfs_root, "kvm_intel") || module_loaded(sysfs_root, "kvm_amd");

	if (module_loaded(sysfs_root, "kvm_pvm") && !vendor)
		return "kvm_pvm is loaded but did not bind (a kernel that is itself a PVM guest "
		       "refuses to)";
	if (!cpu_has_vmx_or_svm())
		return "the CPU offers neither VMX nor SVM (no nested virtualization on this VM?)";
	if (!module_loaded(sysfs_root, "kvm"))
		return "the kvm modules are not loaded (modprobe kvm_intel or kvm_amd)";
	return "the kvm modules are loaded but created no device";
}

void host_kvm_probe(struct host_kvm *k, const char *dev, const char *sysfs_root)
{
	int fd = open(dev, O_RDWR | O_CLOEXEC);
	int e = errno;

	memset(k, 0, sizeof(*k));
	if (fd >= 0) {
		close(fd);
		k->state = KVM_AVAILABLE;
		return;
	}
	switch (e) {
	case ENOENT:
		k->state = KVM_ABSENT;
		snprintf(k->detail, sizeof(k->detail), "%s does not exist: %s", dev,
		         absent_reason(sysfs_root));
		break;
	case EACCES:
	case EPERM:
		k->state = KVM_NO_ACCESS;
		snprintf(k->detail, sizeof(k->detail),
		         "%s: %s (give this user read-write access, e.g. the kvm group)", dev,
		         strerror(e));
		break;
	default:
		k->state = KVM_UNUSABLE;
		snprintf(k->detail, sizeof(k->detail), "%s: %s", dev, strerror(e));
		break;
	}
}

const char *host_kvm_state_name(enum kvm_presence s)
{
	switch (s) {
	case KVM_AVAILABLE:
		return "available";
	case KVM_ABSENT:
		return "absent";
	case KVM_NO_ACCESS:
		return "no-access";
	case KVM_UNUSABLE:
		return "unusable";
	}
	return "?";
}
