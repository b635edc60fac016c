#include "host_mmu.h"

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

void host_mmu_detect(struct host_mmu *h, const char *root)
{
	memset(h, 0, sizeof(*h));
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
	switch (h->kind) {
	case HOST_MMU_EPT:
		return "ept (hardware two-dimensional paging)";
	case HOST_MMU_NPT:
		return "npt (hardware two-dimensional paging)";
	case HOST_MMU_SHADOW:
		return "kvm shadow paging (no EPT/NPT)";
	case HOST_MMU_PVM:
		return "pvm (kvm_pvm: shadow paging, guest CPL0 emulated)";
	}
	return "unknown";
}
