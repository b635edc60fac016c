/*
 * blk_host: the host-side baseline of bench/blk.sh. It does to a file what
 * resources/guests/blkbench.c does to its virtio-blk disk, with the same request sizes, the
 * same stamps and the same random offsets:
 *
 *   seqwrite  pwrite the region [0, size) in requests of `bs` bytes, then fdatasync
 *   seqread   pread the same region in the same requests, checking the stamps
 *   randread  `rand` preads of 4 KiB at offsets from the same LCG, checking the stamps
 *
 * Plain buffered I/O, one request at a time: the image lives in tmpfs, which has no O_DIRECT
 * (open fails with EINVAL), and hearth's virtio-blk does the same preadv/pwritev on the
 * same kind of file descriptor. What the guest adds on top of this is the virtio round trip.
 *
 *   blk_host FILE MIB BS_KIB RAND SEED      (MIB 0: the whole file, rounded down to 4 KiB)
 *
 * Output, one line each (ns from CLOCK_MONOTONIC):
 *   blkhost: disk bytes=B region=R bs=S rand=N
 *   blkhost: phase=seqwrite bytes=B reqs=N ns=T kibps=V
 *   blkhost: phase=seqread bytes=B reqs=N ns=T kibps=V
 *   blkhost: phase=randread bytes=B reqs=N ns=T iops=V
 * Exit status 1 on any error (a message on stderr), 2 on a stamp mismatch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK     4096u
#define BUF_BYTES (1024u * 1024)

static uint64_t seed;

/* The same stamp and LCG as blkbench.c. */
static uint64_t stamp(uint64_t n)
{
	return n * 0x9e3779b97f4a7c15ULL ^ seed;
}

static uint64_t lcg_next(uint64_t *x)
{
	*x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
	return *x >> 33;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "blk_host: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t number(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end) {
		fprintf(stderr, "blk_host: bad %s: %s\n", what, s);
		exit(1);
	}
	return v;
}

static void io(int fd, int write, uint8_t *buf, uint32_t len, uint64_t off)
{
	ssize_t r = write ? pwrite(fd, buf, len, (off_t)off) : pread(fd, buf, len, (off_t)off);

	if (r != (ssize_t)len) {
		if (r >= 0)
			errno = EIO;
		die(write ? "pwrite" : "pread");
	}
}

static void check(const uint8_t *buf, uint64_t off, uint32_t len)
{
	for (uint32_t i = 0; i < len; i += BLOCK) {
		uint64_t n = (off + i) / BLOCK, got;

		memcpy(&got, buf + i, sizeof(got));
		if (got != stamp(n)) {
			fprintf(stderr,
			        "blk_host: block %" PRIu64 " reads 0x%" PRIx64
			        ", expected 0x%" PRIx64 "\n",
			        n, got, stamp(n));
			exit(2);
		}
	}
}

static void report(const char *phase, uint64_t bytes, uint64_t reqs, uint64_t ns, int iops)
{
	if (!ns)
		ns = 1;
	if (iops)
		printf("blkhost: phase=%s bytes=%" PRIu64 " reqs=%" PRIu64 " ns=%" PRIu64
		       " iops=%" PRIu64 "\n",
		       phase, bytes, reqs, ns, reqs * 1000000000 / ns);
	else
		printf("blkhost: phase=%s bytes=%" PRIu64 " reqs=%" PRIu64 " ns=%" PRIu64
		       " kibps=%" PRIu64 "\n",
		       phase, bytes, reqs, ns, bytes / 1024 * 1000000000 / ns);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	uint64_t mib, bs, nrand, region, disk, t0, reqs;
	struct stat st;
	uint8_t *buf;
	int fd;

	if (argc != 6) {
		fprintf(stderr, "usage: blk_host FILE MIB BS_KIB RAND SEED\n");
		return 1;
	}
	mib = number(argv[2], "MIB");
	bs = number(argv[3], "BS_KIB") * 1024;
	nrand = number(argv[4], "RAND");
	seed = number(argv[5], "SEED");
	if (bs == 0 || bs % BLOCK || bs > BUF_BYTES || mib > (1ULL << 40)) {
		fprintf(stderr, "blk_host: BS_KIB must be a multiple of 4 up to %u\n",
		        BUF_BYTES / 1024);
		return 1;
	}
	fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st))
		die(argv[1]);
	disk = (uint64_t)st.st_size;
	region = mib ? mib << 20 : disk / BLOCK * BLOCK;
	if (region == 0 || region > disk) {
		fprintf(stderr, "blk_host: region of %" PRIu64 " bytes, file of %" PRIu64 "\n",
		        region, disk);
		return 1;
	}
	if (posix_memalign((void **)&buf, 4096, BUF_BYTES))
		die("posix_memalign");
	memset(buf, 0, BUF_BYTES);
	printf("blkhost: disk bytes=%" PRIu64 " region=%" PRIu64 " bs=%" PRIu64 " rand=%" PRIu64
	       "\n",
	       disk, region, bs, nrand);

	reqs = 0;
	t0 = now_ns();
	for (uint64_t off = 0; off < region; off += bs, reqs++) {
		uint32_t len = (uint32_t)(region - off < bs ? region - off : bs);

		for (uint32_t i = 0; i < len; i += BLOCK) {
			uint64_t s = stamp((off + i) / BLOCK);

			memcpy(buf + i, &s, sizeof(s));
		}
		io(fd, 1, buf, len, off);
	}
	if (fdatasync(fd))
		die("fdatasync");
	report("seqwrite", region, reqs, now_ns() - t0, 0);

	reqs = 0;
	t0 = now_ns();
	for (uint64_t off = 0; off < region; off += bs, reqs++) {
		uint32_t len = (uint32_t)(region - off < bs ? region - off : bs);

		io(fd, 0, buf, len, off);
		check(buf, off, len);
	}
	report("seqread", region, reqs, now_ns() - t0, 0);

	if (nrand) {
		uint64_t x = seed, blocks = region / BLOCK;

		t0 = now_ns();
		for (uint64_t i = 0; i < nrand; i++) {
			uint64_t off = lcg_next(&x) % blocks * BLOCK;

			io(fd, 0, buf, BLOCK, off);
			check(buf, off, BLOCK);
		}
		report("randread", nrand * BLOCK, nrand, now_ns() - t0, 1);
	}
	free(buf);
	close(fd);
	return 0;
}
