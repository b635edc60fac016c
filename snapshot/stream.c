/* The snapshot state file's encoding (stream.h). */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Header: magic (8), version (4), flags (4, zero), payload length (8). Trailer: CRC64 (8)
 * over header and payload. */
#define HEADER_LEN 24
#define CRC_LEN    8
/* A state file is small (registers, device state): anything larger is not one. */
#define MAX_PAYLOAD (64u << 20)

/* ---- writing ---------------------------------------------------------------------------- */

void snap_w_init(struct snap_w *w)
{
	*w = (struct snap_w){0};
}

void snap_w_free(struct snap_w *w)
{
	free(w->buf);
	*w = (struct snap_w){0};
}

static uint8_t *room(struct snap_w *w, size_t n)
{
	if (w->failed)
		return NULL;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		uint8_t *b;

		while (cap < w->len + n)
			cap *= 2;
		b = realloc(w->buf, cap);
		if (!b) {
			w->failed = true;
			return NULL;
		}
		w->buf = b;
		w->cap = cap;
	}
	w->len += n;
	return w->buf + w->len - n;
}

static void put_le(struct snap_w *w, uint64_t v, unsigned n)
{
	uint8_t *p = room(w, n);

	for (unsigned i = 0; p && i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void snap_u8(struct snap_w *w, uint8_t v)
{
	put_le(w, v, 1);
}

void snap_u16(struct snap_w *w, uint16_t v)
{
	put_le(w, v, 2);
}

void snap_u32(struct snap_w *w, uint32_t v)
{
	put_le(w, v, 4);
}

void snap_u64(struct snap_w *w, uint64_t v)
{
	put_le(w, v, 8);
}

void snap_bool(struct snap_w *w, bool v)
{
	put_le(w, v ? 1 : 0, 1);
}

void snap_bytes(struct snap_w *w, const void *p, size_t n)
{
	uint8_t *d = room(w, n);

	if (d && n)
		memcpy(d, p, n);
}

size_t snap_begin(struct snap_w *w, uint32_t tag)
{
	size_t at = w->len;

	snap_u32(w, tag);
	snap_u64(w, 0); /* the length, once known */
	return at;
}

void snap_end(struct snap_w *w, size_t at)
{
	uint64_t n = w->len - at - 12;

	if (w->failed)
		return;
	for (unsigned i = 0; i < 8; i++)
		w->buf[at + 4 + i] = (uint8_t)(n >> (8 * i));
}

/* ---- reading ---------------------------------------------------------------------------- */

void snap_r_init(struct snap_r *r, const void *p, size_t len)
{
	*r = (struct snap_r){.p = p, .len = len};
}

size_t snap_left(const struct snap_r *r)
{
	return r->len - r->off;
}

static bool get_le(struct snap_r *r, uint64_t *v, unsigned n)
{
	uint64_t x = 0;

	if (snap_left(r) < n)
		return false;
	for (unsigned i = 0; i < n; i++)
		x |= (uint64_t)r->p[r->off + i] << (8 * i);
	r->off += n;
	*v = x;
	return true;
}

bool snap_get_u8(struct snap_r *r, uint8_t *v)
{
	uint64_t x;

	if (!get_le(r, &x, 1))
		return false;
	*v = (uint8_t)x;
	return true;
}

bool snap_get_u16(struct snap_r *r, uint16_t *v)
{
	uint64_t x;

	if (!get_le(r, &x, 2))
		return false;
	*v = (uint16_t)x;
	return true;
}

bool snap_get_u32(struct snap_r *r, uint32_t *v)
{
	uint64_t x;

	if (!get_le(r, &x, 4))
		return false;
	*v = (uint32_t)x;
	return true;
}

bool snap_get_u64(struct snap_r *r, uint64_t *v)
{
	return get_le(r, v, 8);
}

bool snap_get_bool(struct snap_r *r, bool *v)
{
	uint64_t x;

	if (snap_left(r) < 1 || r->p[r->off] > 1)
		return false;
	get_le(r, &x, 1);
	*v = x != 0;
	return true;
}

bool snap_get_bytes(struct snap_r *r, void *p, size_t n)
{
	if (snap_left(r) < n)
		return false;
	if (n)
		memcpy(p, r->p + r->off, n);
	r->off += n;
	return true;
}

static void tag_name(uint32_t tag, char out[5])
{
	for (int i = 0; i < 4; i++) {
		char c = (char)(tag >> (8 * i));

		out[i] = c >= 0x20 && c < 0x7f ? c : '?';
	}
	out[4] = 0;
}

int snap_section(struct snap_r *r, uint32_t tag, struct snap_r *sec, struct error *err)
{
	char want[5], got[5];
	uint32_t t;
	uint64_t n;
	size_t start = r->off;

	tag_name(tag, want);
	if (!snap_get_u32(r, &t) || !snap_get_u64(r, &n)) {
		r->off = start;
		return err_set(err, "snapshot: section %s missing (the state file ends early)",
		               want);
	}
	if (t != tag) {
		r->off = start;
		tag_name(t, got);
		return err_set(err, "snapshot: section %s expected, found %s", want, got);
	}
	if (n > snap_left(r)) {
		r->off = start;
		return err_set(
		    err, "snapshot: section %s is %llu bytes long, but only %zu bytes are left",
		    want, (unsigned long long)n, snap_left(r));
	}
	snap_r_init(sec, r->p + r->off, (size_t)n);
	sec->tag = tag;
	r->off += (size_t)n;
	return 0;
}

int snap_section_done(const struct snap_r *sec, struct error *err)
{
	char name[5];

	if (!snap_left(sec))
		return 0;
	tag_name(sec->tag, name);
	return err_set(err, "snapshot: section %s has %zu bytes more than this version reads", name,
	               snap_left(sec));
}

int snap_bad(const struct snap_r *sec, struct error *err, const char *field)
{
	char name[5];

	tag_name(sec->tag, name);
	return err_set(err, "snapshot: section %s: bad or missing %s", name, field);
}

/* ---- CRC-64/XZ -------------------------------------------------------------------------- */

uint64_t snap_crc64(uint64_t crc, const void *p, size_t n)
{
	static uint64_t table[256];
	static bool ready;
	const uint8_t *b = p;

	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		for (unsigned i = 0; i < 256; i++) {
			uint64_t c = i;

			for (int k = 0; k < 8; k++)
				c = (c & 1) ? (c >> 1) ^ 0xc96c5795d7870f42ULL : c >> 1;
			table[i] = c;
		}
		__atomic_store_n(&ready, true, __ATOMIC_RELEASE);
	}
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- the file --------------------------------------------------------------------------- */

static void le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rd_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t k = write(fd, b, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

int snap_write_file(const char *path, const struct snap_w *payload, struct error *err)
{
	uint8_t hdr[HEADER_LEN], tail[CRC_LEN];
	uint64_t crc;
	int fd;

	if (payload->failed)
		return err_set(err, "snapshot: out of memory while saving the state");
	memcpy(hdr, SNAP_MAGIC, 8);
	le(hdr + 8, SNAP_VERSION, 4);
	le(hdr + 12, 0, 4);
	le(hdr + 16, payload->len, 8);
	crc = snap_crc64(0, hdr, sizeof(hdr));
	crc = snap_crc64(crc, payload->buf, payload->len);
	le(tail, crc, 8);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, "snapshot_path '%s': %s", path, strerror(errno));
	if (write_all(fd, hdr, sizeof(hdr)) || write_all(fd, payload->buf, payload->len) ||
	    write_all(fd, tail, sizeof(tail)) || fsync(fd)) {
		int e = errno;

		close(fd);
		return err_set(err, "snapshot_path '%s': cannot write: %s", path, strerror(e));
	}
	close(fd);
	return 0;
}

int snap_read_file(const char *path, uint8_t **payload, size_t *len, struct error *err)
{
	uint8_t hdr[HEADER_LEN], tail[CRC_LEN], *buf = NULL;
	struct stat st;
	uint64_t n, crc;
	uint32_t version;
	ssize_t k;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*payload = NULL;
	*len = 0;
	if (fd < 0)
		return err_set(err, "snapshot_path '%s': %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, "snapshot_path '%s': not a regular file", path);
	}
	if (st.st_size < HEADER_LEN + CRC_LEN || pread(fd, hdr, sizeof(hdr), 0) != sizeof(hdr)) {
		close(fd);
		return err_set(err,
		               "snapshot_path '%s': not a hearth snapshot (too short: %lld bytes)",
		               path, (long long)st.st_size);
	}
	if (memcmp(hdr, SNAP_MAGIC, 8)) {
		close(fd);
		return err_set(err, "snapshot_path '%s': not a hearth snapshot (bad magic)", path);
	}
	version = (uint32_t)rd_le(hdr + 8, 4);
	if (version != SNAP_VERSION) {
		close(fd);
		return err_set(err,
		               "snapshot_path '%s': state file version %u, but this hearth reads "
		               "version %u only",
		               path, version, SNAP_VERSION);
	}
	n = rd_le(hdr + 16, 8);
	if (rd_le(hdr + 12, 4) != 0 || n > MAX_PAYLOAD ||
	    (uint64_t)st.st_size != HEADER_LEN + n + CRC_LEN) {
		close(fd);
		return err_set(
		    err,
		    "snapshot_path '%s': truncated or damaged (header says %llu bytes of "
		    "state, the file has %lld bytes)",
		    path, (unsigned long long)n, (long long)st.st_size);
	}
	buf = malloc(n ? n : 1);
	if (!buf) {
		close(fd);
		return err_set(err, "snapshot: out of memory");
	}
	k = pread(fd, buf, n, HEADER_LEN);
	if (k != (ssize_t)n || pread(fd, tail, sizeof(tail), HEADER_LEN + (off_t)n) != CRC_LEN) {
		close(fd);
		free(buf);
		return err_set(err, "snapshot_path '%s': cannot read it", path);
	}
	close(fd);
	crc = snap_crc64(snap_crc64(0, hdr, sizeof(hdr)), buf, n);
	if (crc != rd_le(tail, 8)) {
		free(buf);
		return err_set(err, "snapshot_path '%s': damaged (checksum mismatch)", path);
	}
	*payload = buf;
	*len = n;
	return 0;
}
