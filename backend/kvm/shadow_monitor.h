/* The ring-0 monitor of shadow mode: stub code, IDT, GDT, TSS and trap stacks, built by
 * hearth in memory the guest cannot reach (vmm/shadow.h has the layout). */
#ifndef HEARTH_SHADOW_MONITOR_H
#define HEARTH_SHADOW_MONITOR_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/error.h"
#include "vmm/guest_memory.h"
#include "shadow.h"

struct sh_monitor {
	uint64_t gpa;  /* the monitor's guest-physical base; the pool follows at + SH_MON_SIZE */
	uint8_t *mon;  /* host view of [gpa, + SH_MON_SIZE) */
	uint8_t *pool; /* host view of the shadow-page pool */
	unsigned nvcpus;
	unsigned guest_gdt_entries; /* mirrored so far */
};

/* Where the monitor goes for a host whose guest-physical addresses have `phys_bits` bits (KVM's
 * CPUID leaf 0x80000008) and a guest whose RAM and devices end below `guest_end`. */
int sh_monitor_place(unsigned phys_bits, uint64_t guest_end, uint64_t *gpa, struct error *err);
int sh_monitor_init(struct sh_monitor *m, unsigned nvcpus, uint64_t gpa, struct error *err);
static inline uint64_t sh_pool_gpa(const struct sh_monitor *m)
{
	return m->gpa + SH_MON_SIZE;
}
/* Register the monitor and pool memslots (before the irqchip: docs/HOST_FACTS.md). */
int sh_monitor_add_memslots(struct sh_monitor *m, int vm_fd, struct error *err);
/* Delete and re-add the pool memslot: KVM forgets every shadow of the pool's pages, so
 * pages may be reused with new contents (docs/HOST_FACTS.md, double shadowing). */
int sh_monitor_reload_pool(struct sh_monitor *m, int vm_fd);
/* Mirror `n` guest descriptors (8 bytes each) into the real GDT, deprivileged to DPL3;
 * system descriptors are not mirrored. Entries beyond n are cleared, except the indices in
 * `keep` (segment registers in use), which keep their descriptor while the new table has
 * none there: as the CPU's hidden segment state outlives an lgdt. */
void sh_monitor_mirror_gdt(struct sh_monitor *m, const uint64_t *desc, unsigned n,
                           const unsigned *keep, unsigned nkeep);
/* Host pointers into the monitor. */
static inline void *sh_mon_ptr(struct sh_monitor *m, uint64_t off)
{
	return m->mon + off;
}
void sh_monitor_destroy(struct sh_monitor *m);

#endif
