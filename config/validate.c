/* The per-field validators (see validate.h). Pure functions: no allocation, no state. */
#include "validate.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define STR_(x) #x
#define STR(x)  STR_(x)

static bool id_char(char ch, bool dash)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || (dash && ch == '-');
}

static bool id_ok(const char *s, size_t max, bool dash)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!id_char(s[i], dash))
			return false;
	return true;
}

const char *validate_id(const char *s)
{
	if (id_ok(s, DRIVE_ID_MAX, false))
		return NULL;
	return "must be 1.." STR(DRIVE_ID_MAX) " characters from [A-Za-z0-9_]";
}

const char *validate_vm_id(const char *s)
{
	if (id_ok(s, VM_ID_MAX, true))
		return NULL;
	return "must be 1.." STR(VM_ID_MAX) " characters from [A-Za-z0-9_-]";
}

const char *validate_ifname(const char *s)
{
	size_t n = strlen(s);
	bool ok = n > 0 && n <= IFACE_NAME_MAX && strcmp(s, ".") && strcmp(s, "..");

	for (size_t i = 0; ok && i < n; i++)
		ok = !(s[i] == '/' || s[i] == ':' || s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r'));
	if (ok)
		return NULL;
	return "must be 1.." STR(IFACE_NAME_MAX) " bytes, without '/', ':' or whitespace, and not "
	                                         "'.' or '..'";
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

const char *validate_mac(const char *s, uint8_t mac[6])
{
	uint8_t b[6];

	for (int i = 0; i < 6; i++) {
		int hi = hex_digit(s[0]), lo = hi < 0 ? -1 : hex_digit(s[1]);

		if (lo < 0 || s[2] != (i < 5 ? ':' : '\0'))
			return "must be a MAC address like 06:00:ac:10:00:02";
		b[i] = (uint8_t)(hi << 4 | lo);
		s += 3;
	}
	if (b[0] & 1)
		return "must be a unicast address";
	if (mac)
		memcpy(mac, b, sizeof(b));
	return NULL;
}

const char *validate_vcpus(uint64_t n)
{
	if (n >= 1 && n <= VM_MAX_VCPUS)
		return NULL;
	return "must be between 1 and " STR(VM_MAX_VCPUS);
}

const char *validate_mem_mib(uint64_t mib)
{
	if (mib >= VM_MIN_MEM_MIB && mib <= VM_MAX_MEM_MIB)
		return NULL;
	return "must be between " STR(VM_MIN_MEM_MIB) " and " STR(VM_MAX_MEM_MIB) " MiB";
}

const char *validate_path(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return "must not be empty";
	if (n >= PATH_MAX)
		return "must be shorter than " STR(PATH_MAX) " bytes";
	return NULL;
}

const char *validate_uint_text(const char *s, uint64_t *out)
{
	const char *d = *s == '-' ? s + 1 : s;
	unsigned long long v;
	char *end;

	if (!*d)
		return VALIDATE_NOT_INTEGER;
	for (const char *p = d; *p; p++)
		if (*p < '0' || *p > '9')
			return VALIDATE_NOT_INTEGER;
	if (d != s) {
		*out = 0; /* below every range a count can have */
		return NULL;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	*out = errno == ERANGE ? UINT64_MAX : v;
	return NULL;
}
