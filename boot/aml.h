/*
 * A small AML (ACPI Machine Language, ACPI 6.3 chapter 20) encoder: enough for a DSDT that
 * names devices, their IDs and their resources (chapter 6.4 resource descriptors).
 *
 * Everything writes into a caller's buffer. A write that does not fit, a bad name or a bad
 * value sets `error` and leaves the buffer unusable; callers check `error` once at the end.
 * Packages (Scope, Device, Buffer) are opened with a call that returns a mark and closed with
 * aml_end(mark), which inserts the PkgLength in front of the contents.
 */
#ifndef HEARTH_AML_H
#define HEARTH_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t cap;
	size_t len;
	bool error;
};

/* Largest package length AML can encode (PkgLength is at most 28 bits). */
#define AML_MAX_PKGLENGTH ((1u << 28) - 1)

void aml_init(struct aml *a, void *buf, size_t cap);
void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *p, size_t n);

/* Bytes of the PkgLength encoding for a package whose contents (after the PkgLength) take
 * `content` bytes: 1 to 4, or 0 when it is too large. */
unsigned aml_pkglength_size(size_t content);

/* Named objects. `path` is an ASL name: "\\_SB", "COM1", "\\_SB.V000", "^FOO"; each segment
 * has 1 to 4 characters from A-Z, 0-9, _ (not starting with a digit) and is padded with '_'. */
void aml_namestring(struct aml *a, const char *path);
size_t aml_scope(struct aml *a, const char *path);  /* Scope (path) { ... } */
size_t aml_device(struct aml *a, const char *path); /* Device (path) { ... } */
void aml_end(struct aml *a, size_t mark);           /* close the package opened at `mark` */
void aml_name(struct aml *a, const char *path);     /* Name (path, <next data object>) */

/* Data objects. */
void aml_integer(struct aml *a, uint64_t v); /* Zero, One, Ones or the smallest prefix */
void aml_string(struct aml *a, const char *s);
void aml_eisaid(struct aml *a, const char *id); /* EisaId ("PNP0501"): a compressed DWord */
void aml_buffer(struct aml *a, const void *data, size_t n);

/*
 * Resource descriptors, for a ResourceTemplate: build them in an aml of their own, finish
 * with aml_res_end() (the end tag's checksum covers everything in that aml), then put the
 * bytes in a Buffer with aml_buffer().
 */
void aml_res_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t size);
/* Extended Interrupt descriptor for one interrupt consumed by the device. */
void aml_res_interrupt(struct aml *a, bool edge, bool active_low, bool shared, uint32_t gsi);
/* I/O port descriptor with 16-bit decode at a fixed base (minimum = maximum). */
void aml_res_io(struct aml *a, uint16_t base, uint8_t len);
/* IRQNoFlags: one ISA IRQ (0..15), edge-triggered, active-high, exclusive. */
void aml_res_irq_noflags(struct aml *a, unsigned irq);
void aml_res_end(struct aml *a);

#endif
