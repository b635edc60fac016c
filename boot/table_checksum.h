/* The checksum firmware tables carry (ACPI, MP): the byte that makes all bytes sum to 0. */
#ifndef HEARTH_TABLE_CHECKSUM_H
#define HEARTH_TABLE_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

static inline uint8_t table_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return (uint8_t)-sum;
}

#endif
