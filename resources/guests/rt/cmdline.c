/* The PVH command line and simple "word key=value" token parsing. */
#include "rt.h"

const char *rt_cmdline(const struct hvm_start_info *si)
{
	uint64_t pa = si->cmdline_paddr;

	/* Everything below 4 GiB is identity mapped; anything else is not reachable. */
	if (pa == 0 || pa >= (1ULL << 32) - RT_CMDLINE_MAX)
		return "";
	return (const char *)(uintptr_t)pa;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool rt_next_token(const char **pos, const char *end, struct token *tok)
{
	const char *p = *pos;

	while (p < end && is_space(*p))
		p++;
	if (p >= end || *p == '\0') {
		*pos = p;
		return false;
	}
	tok->s = p;
	while (p < end && *p != '\0' && !is_space(*p))
		p++;
	tok->len = (size_t)(p - tok->s);
	*pos = p;
	return true;
}

bool rt_token_is(const struct token *tok, const char *word)
{
	size_t n = rt_strnlen(word, (size_t)-1);

	return tok->len == n && memcmp(tok->s, word, n) == 0;
}

bool rt_token_value(const struct token *tok, const char *key, struct token *value)
{
	size_t n = rt_strnlen(key, (size_t)-1);

	if (tok->len <= n || tok->s[n] != '=' || memcmp(tok->s, key, n) != 0)
		return false;
	value->s = tok->s + n + 1;
	value->len = tok->len - n - 1;
	return true;
}

bool rt_parse_u64(const struct token *tok, uint64_t *out)
{
	const char *p = tok->s, *end = tok->s + tok->len;
	unsigned base = 10;
	uint64_t v = 0;

	if (tok->len > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	if (p == end)
		return false;
	for (; p < end; p++) {
		unsigned d;

		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			return false;
		if (v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	*out = v;
	return true;
}
