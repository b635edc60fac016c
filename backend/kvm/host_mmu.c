#include "host_mmu.h"

#include <cpuid.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool path_exists(const char *root, const char *rel)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return access(p, F_OK) == 0;
}

/* True when the sysfs parameter reads "Y" or "1". */
static bool param_on(const char *root, const char *rel)
{
	char p[256], v[8] = "";
	int fd;
	ssize_t n;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, v, sizeof(v) - 1);
	close(fd);
	return n > 0 && (v[0] == 'Y' || v[0] == 'y' || v[0] == '1');
}

/* Without sysfs: what the host CPU offers (VMX in leaf 1 ECX[5], SVM in 0x80000001 ECX[2]). */
static void detect_from_cpu(struct host_mmu *h)
{
	unsigned a, b, c = 0, d;
	bool vmx = false, svm = false;

	if (__get_cpuid(1, &a, &b, &c, &d))
		vmx = c & (1u << 5);
	c = 0;
	if (__get_cpuid(0x80000001, &a, &b, &c, &d))
		svm = c & (1u << 2);
	h->assumed = true;
	if (!vmx && !svm) {
		h->kind = HOST_MMU_PVM;
		h->cpl0_emulated = true;
		return;
	}
	h->kind = vmx ? HOST_MMU_EPT : HOST_MMU_NPT;
	h->gbpages_ok = true;
}

void host_mmu_detect(struct host_mmu *h, const char *root)
{
	memset(h, 0, sizeof(*h));
	if (!path_exists(root, "module")) {
		detect_from_cpu(h);
		return;
	}
	if (path_exists(root, "module/kvm_pvm")) {
		/* PVM runs guests without VMX/SVM: shadow paging, CPL0 emulated, no 1 GiB pages. */
		h->kind = HOST_MMU_PVM;
		h->cpl0_emulated = true;
		return;
	}
	h->gbpages_ok = true;
	if (param_on(root, "module/kvm_intel/parameters/ept"))
		h->kind = HOST_MMU_EPT;
	else if (param_on(root, "module/kvm_amd/parameters/npt"))
		h->kind = HOST_MMU_NPT;
	else
		h->kind = HOST_MMU_SHADOW;
}

const char *host_mmu_describe(const struct host_mmu *h)
{
	if (h->assumed)
		switch (h->kind) {
		case HOST_MMU_PVM:
			return "pvm (assumed: no VMX/SVM on the host CPU, /sys not visible)";
		case HOST_MMU_EPT:
			return "ept (assumed: VMX on the host CPU, /sys not visible)";
		case HOST_MMU_NPT:
			return "npt (assumed: SVM on the host CPU, /sys not visible)";
		default:
			break;
		}
	switch (h->kind) {
	case HOST_MMU_EPT:
		return "ept (hardware two-dimensional paging)";
	case HOST_MMU_NPT:
		return "npt (hardware two-dimensional paging)";
	case HOST_MMU_SHADOW:
		return "kvm shadow paging (no EPT/NPT)";
	case HOST_MMU_PVM:
		return "pvm (kvm_pvm: shadow paging, guest CPL0 emulated)";
	case HOST_MMU_NONE:
		return "none (no usable /dev/kvm)";
	}
	return "unknown";
}
