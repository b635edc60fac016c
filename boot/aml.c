#include "aml.h"

#include <string.h>

/* Opcodes and prefixes (ACPI 6.3, 20.3). */
enum {
	AML_ZERO = 0x00,
	AML_ONE = 0x01,
	AML_NAME = 0x08,
	AML_BYTE_PREFIX = 0x0a,
	AML_WORD_PREFIX = 0x0b,
	AML_DWORD_PREFIX = 0x0c,
	AML_STRING_PREFIX = 0x0d,
	AML_QWORD_PREFIX = 0x0e,
	AML_SCOPE = 0x10,
	AML_BUFFER = 0x11,
	AML_DUAL_NAME_PREFIX = 0x2e,
	AML_MULTI_NAME_PREFIX = 0x2f,
	AML_EXT_PREFIX = 0x5b,
	AML_ROOT_CHAR = 0x5c,
	AML_PARENT_PREFIX = 0x5e,
	AML_ONES = 0xff,
	AML_EXT_DEVICE = 0x82, /* after AML_EXT_PREFIX */
};

/* Resource descriptor tags (ACPI 6.3, 6.4). */
enum {
	RES_IRQ_NOFLAGS = 0x22, /* small item 0x4, 2 bytes of data */
	RES_IO = 0x47,          /* small item 0x8, 7 bytes */
	RES_END = 0x79,         /* small item 0xf, 1 byte */
	RES_MEMORY32_FIXED = 0x86,
	RES_EXT_INTERRUPT = 0x89,
};

#define NAMESEG_LEN 4

void aml_init(struct aml *a, void *buf, size_t cap)
{
	a->buf = buf;
	a->cap = cap;
	a->len = 0;
	a->error = false;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->error || n > a->cap - a->len) {
		a->error = true;
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void put_le(struct aml *a, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(a, b, n);
}

unsigned aml_pkglength_size(size_t content)
{
	/* The encoded length counts the PkgLength bytes themselves. One byte holds 6 bits;
	 * longer forms hold 4 bits in the lead byte plus 8 per following byte. */
	if (content + 1 <= 0x3f)
		return 1;
	if (content + 2 <= 0xfff)
		return 2;
	if (content + 3 <= 0xfffff)
		return 3;
	if (content + 4 <= AML_MAX_PKGLENGTH)
		return 4;
	return 0;
}

void aml_end(struct aml *a, size_t mark)
{
	size_t content;
	unsigned n;
	size_t total;
	uint8_t enc[4];

	if (a->error)
		return;
	if (mark > a->len) {
		a->error = true;
		return;
	}
	content = a->len - mark;
	n = aml_pkglength_size(content);
	if (n == 0 || n > a->cap - a->len) {
		a->error = true;
		return;
	}
	total = content + n;
	if (n == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0f));
		for (unsigned i = 1; i < n; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	memmove(a->buf + mark + n, a->buf + mark, content);
	memcpy(a->buf + mark, enc, n);
	a->len += n;
}

static bool seg_char_ok(char c, bool first)
{
	if ((c >= 'A' && c <= 'Z') || c == '_')
		return true;
	return !first && c >= '0' && c <= '9';
}

void aml_namestring(struct aml *a, const char *path)
{
	uint8_t segs[255][NAMESEG_LEN];
	unsigned nsegs = 0;
	const char *p = path;

	if (*p == '\\') {
		aml_byte(a, AML_ROOT_CHAR);
		p++;
	} else {
		while (*p == '^') {
			aml_byte(a, AML_PARENT_PREFIX);
			p++;
		}
	}
	while (*p) {
		unsigned n = 0;

		if (nsegs == 255) {
			a->error = true;
			return;
		}
		while (*p && *p != '.') {
			if (n == NAMESEG_LEN || !seg_char_ok(*p, n == 0)) {
				a->error = true;
				return;
			}
			segs[nsegs][n++] = (uint8_t)*p++;
		}
		if (n == 0) {
			a->error = true; /* empty segment: "A..B" or a trailing dot */
			return;
		}
		while (n < NAMESEG_LEN)
			segs[nsegs][n++] = '_';
		nsegs++;
		if (*p == '.' && *++p == '\0') {
			a->error = true;
			return;
		}
	}
	if (nsegs == 0) {
		aml_byte(a, 0x00); /* NullName: only "\\" or "^" */
	} else if (nsegs == 1) {
		aml_bytes(a, segs[0], NAMESEG_LEN);
	} else if (nsegs == 2) {
		aml_byte(a, AML_DUAL_NAME_PREFIX);
		aml_bytes(a, segs, 2 * NAMESEG_LEN);
	} else {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, (uint8_t)nsegs);
		aml_bytes(a, segs, (size_t)nsegs * NAMESEG_LEN);
	}
}

size_t aml_scope(struct aml *a, const char *path)
{
	size_t mark;

	aml_byte(a, AML_SCOPE);
	mark = a->len;
	aml_namestring(a, path);
	return mark;
}

size_t aml_device(struct aml *a, const char *path)
{
	size_t mark;

	aml_byte(a, AML_EXT_PREFIX);
	aml_byte(a, AML_EXT_DEVICE);
	mark = a->len;
	aml_namestring(a, path);
	return mark;
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME);
	aml_namestring(a, path);
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO);
	} else if (v == 1) {
		aml_byte(a, AML_ONE);
	} else if (v == UINT64_MAX) {
		aml_byte(a, AML_ONES);
	} else if (v <= UINT8_MAX) {
		aml_byte(a, AML_BYTE_PREFIX);
		put_le(a, v, 1);
	} else if (v <= UINT16_MAX) {
		aml_byte(a, AML_WORD_PREFIX);
		put_le(a, v, 2);
	} else if (v <= UINT32_MAX) {
		aml_byte(a, AML_DWORD_PREFIX);
		put_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		put_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] > 0x7f) {
			a->error = true; /* AsciiCharList: 0x01..0x7f */
			return;
		}
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, n + 1);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;

	/* Three letters of 5 bits each ('A' = 1), then four hex digits, stored big-endian. */
	if (strlen(id) != 7) {
		a->error = true;
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			a->error = true;
			return;
		}
		v = (v << 5) | (uint32_t)(id[i] - 'A' + 1);
	}
	for (int i = 3; i < 7; i++) {
		int d = hex_digit(id[i]);

		if (d < 0) {
			a->error = true;
			return;
		}
		v = (v << 4) | (uint32_t)d;
	}
	aml_byte(a, AML_DWORD_PREFIX);
	aml_byte(a, (uint8_t)(v >> 24));
	aml_byte(a, (uint8_t)(v >> 16));
	aml_byte(a, (uint8_t)(v >> 8));
	aml_byte(a, (uint8_t)v);
}

void aml_buffer(struct aml *a, const void *data, size_t n)
{
	size_t mark;

	aml_byte(a, AML_BUFFER);
	mark = a->len;
	aml_integer(a, n);
	aml_bytes(a, data, n);
	aml_end(a, mark);
}

void aml_res_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t size)
{
	aml_byte(a, RES_MEMORY32_FIXED);
	put_le(a, 9, 2); /* data length */
	aml_byte(a, writable ? 1 : 0);
	put_le(a, base, 4);
	put_le(a, size, 4);
}

void aml_res_interrupt(struct aml *a, bool edge, bool active_low, bool shared, uint32_t gsi)
{
	uint8_t flags = 0x01; /* resource consumer */

	if (edge)
		flags |= 0x02;
	if (active_low)
		flags |= 0x04;
	if (shared)
		flags |= 0x08;
	aml_byte(a, RES_EXT_INTERRUPT);
	put_le(a, 6, 2); /* data length: flags, count, one interrupt, no resource source */
	aml_byte(a, flags);
	aml_byte(a, 1);
	put_le(a, gsi, 4);
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
	aml_byte(a, RES_IO);
	aml_byte(a, 1); /* decodes 16 address bits */
	put_le(a, base, 2);
	put_le(a, base, 2);
	aml_byte(a, 1); /* alignment */
	aml_byte(a, len);
}

void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
	if (irq > 15) {
		a->error = true;
		return;
	}
	aml_byte(a, RES_IRQ_NOFLAGS);
	put_le(a, 1u << irq, 2);
}

void aml_res_end(struct aml *a)
{
	uint8_t sum = RES_END;

	aml_byte(a, RES_END);
	if (a->error)
		return;
	for (size_t i = 0; i + 1 < a->len; i++)
		sum += a->buf[i];
	aml_byte(a, (uint8_t)-sum);
}
