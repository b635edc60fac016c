/* Intel MultiProcessor Specification 1.4 tables: how the guest learns its CPUs and IOAPIC. */
#ifndef HEARTH_MPTABLE_H
#define HEARTH_MPTABLE_H

#include <stdint.h>

#include "vmm/error.h"
#include "vmm/guest_memory.h"

/* Write the floating pointer and configuration table at `addr` (in the reserved EBDA area).
 * The IOAPIC gets ID `nvcpus`; ISA IRQs 0..15 route to IOAPIC pins 0..15. */
int mptable_write(const struct guest_memory *gm, uint64_t addr, unsigned nvcpus, uint32_t ioapic,
                  struct error *err);

/* Bytes the tables take for `nvcpus` CPUs. */
uint64_t mptable_size(unsigned nvcpus);

#endif
