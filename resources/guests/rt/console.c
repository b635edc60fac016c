/*
 * Console on COM1. Output collects in a buffer and leaves with one `rep outsb` (one VM exit)
 * when a write ends with a newline or the buffer fills. The UART status register is never
 * polled for output: hearth's (and QEMU's) UART accepts bytes at any rate.
 */
#include "rt.h"

#define CON_BUF_SIZE 512

/* Not zeroed at boot: only con_buf[0, con_len) is ever read. */
static char con_buf[CON_BUF_SIZE] __attribute__((section(".noinit")));
static size_t con_len;

void con_flush(void)
{
	if (con_len) {
		outsb(RT_PORT_COM1, con_buf, con_len);
		con_len = 0;
	}
}

void con_append_raw(const char *s, size_t n)
{
	if (n > CON_BUF_SIZE - con_len) {
		con_flush();
		if (n >= CON_BUF_SIZE) {
			outsb(RT_PORT_COM1, s, n);
			return;
		}
	}
	rt_copy(con_buf + con_len, s, n);
	con_len += n;
}

static void con_flush_line(void)
{
	if (con_len && con_buf[con_len - 1] == '\n')
		con_flush();
}

void con_write(const char *s, size_t n)
{
	con_append_raw(s, n);
	con_flush_line();
}

void con_put_u64(uint64_t v)
{
	char num[20], *p = num + sizeof(num);

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	con_append_raw(p, (size_t)(num + sizeof(num) - p));
}

void con_puts(const char *s)
{
	con_append_raw(s, rt_strnlen(s, (size_t)-1));
	con_append_raw("\n", 1);
	con_flush();
}

/* Format `v` right-aligned in `width` (at most 32) into the end of buf; return the start. */
static char *fmt_u64(char *end, uint64_t v, bool hex, bool neg, unsigned width, char pad)
{
	char *p = end;
	char *min_start;

	if (hex) {
		do {
			*--p = "0123456789abcdef"[v & 15];
			v >>= 4;
		} while (v);
	} else {
		do {
			*--p = (char)('0' + v % 10);
			v /= 10;
		} while (v);
	}
	if (width > 32)
		width = 32;
	min_start = end - width;
	if (pad == '0') {
		if (neg)
			min_start++;
		while (p > min_start)
			*--p = '0';
		if (neg)
			*--p = '-';
	} else {
		if (neg)
			*--p = '-';
		while (p > min_start)
			*--p = ' ';
	}
	return p;
}

void con_vprintf(const char *fmt, va_list ap)
{
	const char *end = fmt + rt_strnlen(fmt, (size_t)-1);
	char num[40];

	while (fmt < end) {
		const char *pct = rt_memchr(fmt, '%', (size_t)(end - fmt));
		char pad = ' ', conv;
		unsigned width = 0;
		int prec = -1, lng = 0;
		const char *s;
		size_t len;
		uint64_t v;
		bool neg = false;

		if (!pct) {
			con_append_raw(fmt, (size_t)(end - fmt));
			break;
		}
		if (pct > fmt)
			con_append_raw(fmt, (size_t)(pct - fmt));
		fmt = pct + 1;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (unsigned)(*fmt++ - '0');
		if (fmt[0] == '.' && fmt[1] == '*') {
			prec = va_arg(ap, int);
			fmt += 2;
		}
		for (; *fmt == 'l' || *fmt == 'z'; fmt++)
			lng = *fmt == 'z' ? 2 : lng + 1;
		if (fmt >= end)
			break;
		conv = *fmt++;
		switch (conv) {
		case 's':
			s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			len = rt_strnlen(s, prec >= 0 ? (size_t)prec : (size_t)-1);
			con_append_raw(s, len);
			continue;
		case 'c':
			num[0] = (char)va_arg(ap, int);
			con_append_raw(num, 1);
			continue;
		case 'd':
		case 'i': {
			int64_t sv = lng ? va_arg(ap, long) : va_arg(ap, int);
			neg = sv < 0;
			v = neg ? -(uint64_t)sv : (uint64_t)sv;
			break;
		}
		case 'u':
		case 'x':
			v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
			break;
		case 'p':
			v = (uintptr_t)va_arg(ap, void *);
			con_append_raw("0x", 2);
			conv = 'x';
			break;
		case '%':
			con_append_raw("%", 1);
			continue;
		default:
			num[0] = '%';
			num[1] = conv;
			con_append_raw(num, 2);
			continue;
		}
		s = fmt_u64(num + sizeof(num), v, conv == 'x', neg, width, pad);
		con_append_raw(s, (size_t)(num + sizeof(num) - s));
	}
	con_flush_line();
}

void con_printf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
}
