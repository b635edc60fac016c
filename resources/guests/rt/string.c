/*
 * String helpers built on x86 string instructions: each is one (rep-prefixed) instruction
 * plus a little setup, which matters when KVM emulates the guest one instruction at a time.
 * gcc may emit calls to memcpy/memset/memmove/memcmp even in freestanding code, so they
 * exist under their standard names.
 */
#include "rt.h"

void *memcpy(void *dst, const void *src, size_t n)
{
	rt_copy(dst, src, n);
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d <= s || d >= s + n)
		return memcpy(dst, src, n);
	/* Overlapping with dst above src: copy backwards. */
	d += n - 1;
	s += n - 1;
	__asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;
	bool equal;

	if (n == 0)
		return 0;
	__asm__ volatile("repe cmpsb" : "+S"(p), "+D"(q), "+c"(n), "=@ccz"(equal) : : "memory");
	if (equal)
		return 0;
	return p[-1] - q[-1];
}

size_t rt_strnlen(const char *s, size_t max)
{
	const char *p = s;
	size_t left = max;
	bool found;

	if (max == 0)
		return 0;
	__asm__ volatile("repne scasb" : "+D"(p), "+c"(left), "=@ccz"(found) : "a"(0) : "memory");
	return found ? (size_t)(p - s) - 1 : max;
}

const char *rt_memchr(const char *s, int c, size_t n)
{
	const char *p = s;
	bool found;

	if (n == 0)
		return NULL;
	__asm__ volatile("repne scasb" : "+D"(p), "+c"(n), "=@ccz"(found) : "a"(c) : "memory");
	return found ? p - 1 : NULL;
}
