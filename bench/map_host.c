/*
 * The host side of the page-table benchmark (bench/shadow.sh). mapguest flips one PTE of a
 * scratch address between two pages, invlpg's it and reads it. Two host loops bracket that:
 *
 *   remap  what a Linux process pays for the same effect: mmap(MAP_FIXED | MAP_POPULATE)
 *          of page 0 or 1 of a memfd over the scratch address (the kernel rewrites the PTE
 *          and flushes the TLB entry), then a read that must see that page. One system
 *          call per loop.
 *   plain  the guest's loop on plain memory: store the "PTE" word, read the scratch word.
 *          No MMU work at all: the floor, what the loop costs without any trap.
 *
 *   map_host: remap loops=N ok cycles=C ns=T
 *   map_host: plain loops=N ok cycles=C ns=T
 *
 * Usage: map_host [LOOPS]   (default 20000)
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

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

static const uint64_t mark[2] = {0x5a5a000000000000ULL, 0xa5a5111111111111ULL};

static int remap_loop(uint64_t loops)
{
	long pg = sysconf(_SC_PAGESIZE);
	int fd = memfd_create("map_host", 0);
	volatile uint64_t *scratch;
	uint64_t t0, t1, n0, n1;

	if (fd < 0 || ftruncate(fd, 2 * pg) < 0) {
		perror("map_host: memfd");
		return 1;
	}
	for (int k = 0; k < 2; k++)
		if (pwrite(fd, &mark[k], sizeof(mark[k]), k * pg) != sizeof(mark[k])) {
			perror("map_host: pwrite");
			return 1;
		}
	scratch = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, 0);
	if (scratch == MAP_FAILED) {
		perror("map_host: mmap");
		return 1;
	}
	n0 = now_ns();
	t0 = rdtsc();
	for (uint64_t i = 0; i < loops; i++) {
		if (mmap((void *)scratch, pg, PROT_READ, MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd,
		         (off_t)(i & 1) * pg) == MAP_FAILED) {
			perror("map_host: mmap");
			return 1;
		}
		if (*scratch != mark[i & 1]) {
			fprintf(stderr, "map_host: FAIL loop %llu\n", (unsigned long long)i);
			return 1;
		}
	}
	t1 = rdtsc();
	n1 = now_ns();
	printf("map_host: remap loops=%llu ok cycles=%llu ns=%llu\n", (unsigned long long)loops,
	       (unsigned long long)(t1 - t0), (unsigned long long)(n1 - n0));
	return 0;
}

static int plain_loop(uint64_t loops)
{
	static uint64_t pages[2][512] __attribute__((aligned(4096)));
	volatile uint64_t pte = 0;
	uint64_t t0, t1, n0, n1;

	pages[0][0] = mark[0];
	pages[1][0] = mark[1];
	n0 = now_ns();
	t0 = rdtsc();
	for (uint64_t i = 0; i < loops; i++) {
		pte = (uint64_t)(uintptr_t)pages[i & 1] | 0x63;
		if (*(volatile uint64_t *)(uintptr_t)(pte & ~0xfffULL) != mark[i & 1]) {
			fprintf(stderr, "map_host: FAIL plain loop %llu\n", (unsigned long long)i);
			return 1;
		}
	}
	t1 = rdtsc();
	n1 = now_ns();
	printf("map_host: plain loops=%llu ok cycles=%llu ns=%llu\n", (unsigned long long)loops,
	       (unsigned long long)(t1 - t0), (unsigned long long)(n1 - n0));
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t loops = argc > 1 ? strtoull(argv[1], NULL, 0) : 20000;

	return remap_loop(loops) || plain_loop(loops);
}
