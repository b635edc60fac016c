#include "vm_config.h"

#include <stdlib.h>
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

void vm_config_free(struct vm_config *c)
{
	free(c->kernel_path);
	free(c->initrd_path);
	free(c->cmdline);
	free(c->console_path);
	free(c->api_sock);
	free(c->config_file);
	free(c->log_path);
	free(c->metrics_path);
	for (unsigned i = 0; i < c->ndrives; i++)
		free(c->drives[i].path);
	free_snapshot_params(c->snapshot);
	memset(c, 0, sizeof(*c));
}

void free_snapshot_params(struct snapshot_load_params *p)
{
	if (!p)
		return;
	free(p->state_path);
	free(p->mem_path);
	free(p);
}

int config_set_str(char **field, const char *value)
{
	char *copy = NULL;

	if (value && !(copy = strdup(value)))
		return -1;
	free(*field);
	*field = copy;
	return 0;
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
	case MMU_PROCESS:
		return "process";
	}
	return "?";
}
