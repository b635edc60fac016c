/*
 * The host side of the compute benchmark (bench/shadow.sh): the SHA-256 code and fill
 * pattern of sha256guest (resources/guests/rt/sha256.h), compiled with the guest's code
 * generation flags (-O2 -mgeneral-regs-only), over an anonymous mapping (MADV_HUGEPAGE, as
 * hearth maps guest RAM) in a plain process. Prints the same fields as the guest:
 *
 *   sha256_host: bytes=N digest=<hex> fill_cycles=F hash_cycles=H hash_ns=T
 *
 * Usage: sha256_host [BYTES]   (default 64 MiB)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "sha256.h"

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	uint64_t bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : 64ULL << 20;
	size_t words = (bytes + 7) / 8, len = words ? words * 8 : 8;
	uint64_t t0, t1, t2, n0, n1;
	uint8_t digest[32];
	uint64_t *buf;

	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		perror("sha256_host: mmap");
		return 1;
	}
	madvise(buf, len, MADV_HUGEPAGE);
	t0 = rdtsc();
	sha256_bench_fill(buf, words);
	t1 = rdtsc();
	n0 = now_ns();
	sha256(buf, bytes, digest);
	n1 = now_ns();
	t2 = rdtsc();
	printf("sha256_host: bytes=%llu digest=", (unsigned long long)bytes);
	for (int i = 0; i < 32; i++)
		printf("%02x", digest[i]);
	printf(" fill_cycles=%llu hash_cycles=%llu hash_ns=%llu\n", (unsigned long long)(t1 - t0),
	       (unsigned long long)(t2 - t1), (unsigned long long)(n1 - n0));
	return 0;
}
