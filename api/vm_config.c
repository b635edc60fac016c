#include "vm_config.h"

#include <string.h>

void vm_config_defaults(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->id, "anonymous-instance");
	c->mem_mib = VM_DEFAULT_MEM_MIB;
	c->vcpus = 1;
	c->mmu = MMU_AUTO;
	c->console = CONSOLE_STDIO;
	c->boot_protocol = BOOT_PROTO_AUTO;
}

const char *mmu_mode_name(enum mmu_mode m)
{
	switch (m) {
	case MMU_AUTO:
		return "auto";
	case MMU_HARDWARE:
		return "hardware";
	case MMU_SHADOW:
		return "shadow";
	}
	return "?";
}

bool config_id_valid(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}
