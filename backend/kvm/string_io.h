/*
 * String output (`rep outs`) in one exit instead of one per element.
 *
 * KVM's instruction emulator retires one element of a `rep outsb/w/d` per exit to userspace,
 * with the registers already updated for it (RCX one less, RSI advanced, RIP still at the
 * instruction). A guest that prints a line with `rep outsb` thus makes one exit per byte:
 * ~30 µs each from CPL3 on PVM hosts. When a port-output exit repeats at the same RIP, the
 * vCPU decodes the instruction there and, if it is a `rep outs` to that port, writes the
 * remaining elements to the device itself and steps over the instruction.
 */
#ifndef HEARTH_STRING_IO_H
#define HEARTH_STRING_IO_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/bus.h"

/* A decoded `rep outs`. */
struct rep_outs {
	unsigned len;      /* instruction length */
	unsigned size;     /* element size: 1, 2 or 4 */
	unsigned addrsize; /* 2, 4 or 8 */
	int seg;           /* segment of the source: 0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS */
};

/* Decode `bytes` (n of them, read at RIP) as a rep-prefixed OUTS in a code segment that is
 * 64-bit (`long64`) or has default size 32 (`db`) or 16. False for anything else. */
bool rep_outs_decode(const uint8_t *bytes, size_t n, bool long64, bool db, struct rep_outs *out);

/* Reads guest-virtual (linear) memory for the batcher; false on an unmapped byte. */
typedef bool (*vread_fn)(void *ctx, uint64_t linear, void *buf, size_t len);

/* After a port-output exit whose element KVM already retired: finish the `rep outs` at RIP,
 * writing its remaining elements to `port` on `bus`, at most `max` of them. Updates r (RCX,
 * RSI, and RIP once the count reaches 0); the caller marks the registers dirty. Returns the
 * number of elements written (0: not a rep outs to this port, or nothing readable). */
uint64_t rep_outs_finish(struct kvm_regs *r, const struct kvm_sregs *s, uint16_t port,
                         unsigned size, const struct bus *bus, vread_fn vread, void *ctx,
                         uint64_t max);

/* The per-vCPU trigger: a port-output exit at the RIP and port of the one before it. */
struct string_io_state {
	uint64_t last_rip;
	uint16_t last_port;
	bool have_last;
	uint64_t not_outs_rip; /* the last RIP found not to be a rep outs */
	bool have_not_outs;
};

/* Whether this output exit repeats the previous one (and so may be a string); records it. */
bool string_io_repeats(struct string_io_state *st, uint64_t rip, uint16_t port);
void string_io_not_outs(struct string_io_state *st, uint64_t rip);

/* The special registers, fetched only when a repeat makes them needed (NULL: unavailable). */
typedef const struct kvm_sregs *(*sregs_fn)(void *ctx);

/* Call after a KVM_EXIT_IO has been handled, with run->s.regs.regs valid: on a repeated
 * single-element output, finish a `rep outs` there and mark the registers dirty. */
void string_io_after_exit(struct string_io_state *st, struct kvm_run *run, const struct bus *bus,
                          sregs_fn sregs, vread_fn vread, void *ctx);

#endif
