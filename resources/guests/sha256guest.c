/*
 * sha256guest: a compute benchmark. It fills a buffer of guest RAM at 16 MiB with the pattern
 * of rt/sha256.h, hashes it with SHA-256 (integer code) and prints
 *
 *   sha256guest: bytes=N digest=<64 hex digits> fill_cycles=F hash_cycles=H tsc_khz=K
 *
 * (cycles: TSC ticks, read with rdtsc around each phase; K from CPUID 0x40000010, 0 when
 * absent), then exits 0. Command line: bytes=N (default 64 MiB; any size the memory map
 * has RAM for at 16 MiB). bench/sha256_host.c runs the same code in a host process.
 * Exit status 10: the buffer is not RAM (give the guest more --mem); 98: a bad token.
 */
#include "cpu.h"
#include "rt.h"
#include "sha256.h"

#define BUF_ADDR      0x1000000ULL /* 16 MiB: above the image, below 128 MiB - 64 MiB */
#define DEFAULT_BYTES (64ULL << 20)

void guest_main(struct hvm_start_info *si)
{
	static const char hex[] = "0123456789abcdef";
	const char *pos = rt_cmdline(si), *end = pos + rt_strnlen(pos, RT_CMDLINE_MAX);
	uint64_t bytes = DEFAULT_BYTES, words, t0, t1, t2;
	uint64_t *buf = (uint64_t *)(uintptr_t)BUF_ADDR;
	struct token tok, val;
	uint8_t digest[32];
	char text[65];

	while (rt_next_token(&pos, end, &tok)) {
		if (rt_token_value(&tok, "bytes", &val)) {
			if (!rt_parse_u64(&val, &bytes) || bytes > (1ULL << 32)) {
				con_printf("sha256guest: bad token %.*s\n", (int)tok.len, tok.s);
				guest_exit(98);
			}
		}
	}
	words = (bytes + 7) / 8;
	if (!rt_in_ram(si, BUF_ADDR, words * 8)) {
		con_printf("sha256guest: FAIL %lu bytes at 0x%lx are not all RAM (more --mem?)\n",
		           (unsigned long)bytes, (unsigned long)BUF_ADDR);
		guest_exit(10);
	}
	t0 = rdtsc();
	sha256_bench_fill(buf, words);
	t1 = rdtsc();
	sha256(buf, bytes, digest);
	t2 = rdtsc();
	for (int i = 0; i < 32; i++) {
		text[2 * i] = hex[digest[i] >> 4];
		text[2 * i + 1] = hex[digest[i] & 15];
	}
	text[64] = 0;
	con_printf("sha256guest: bytes=%lu digest=%s fill_cycles=%lu hash_cycles=%lu tsc_khz=%u\n",
	           (unsigned long)bytes, text, (unsigned long)(t1 - t0), (unsigned long)(t2 - t1),
	           tsc_khz());
}
