#include "rtc_cmos.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "snapshot/stream.h"

enum {
	SEC = 0,
	MIN = 2,
	HOUR = 4,
	WDAY = 6,
	MDAY = 7,
	MON = 8,
	YEAR = 9,
	REG_A = 0x0a,
	REG_B = 0x0b,
	REG_C = 0x0c,
	REG_D = 0x0d,
	CENTURY = 0x32
};

void rtc_cmos_init(struct rtc_cmos *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
}

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t reg(struct rtc_cmos *c, uint8_t r)
{
	struct timespec ts;
	struct tm tm;

	if (r <= YEAR || r == CENTURY) {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
	}
	switch (r) {
	case SEC:
		return bcd(tm.tm_sec);
	case MIN:
		return bcd(tm.tm_min);
	case HOUR:
		return bcd(tm.tm_hour);
	case WDAY:
		return bcd(tm.tm_wday + 1);
	case MDAY:
		return bcd(tm.tm_mday);
	case MON:
		return bcd(tm.tm_mon + 1);
	case YEAR:
		return bcd(tm.tm_year % 100);
	case CENTURY:
		return bcd(19 + tm.tm_year / 100);
	case REG_A:
		return 0x26; /* 32.768 kHz time base, 1024 Hz rate, no update in progress */
	case REG_B:
		return 0x02; /* 24-hour, BCD */
	case REG_C:
		return 0;
	case REG_D:
		return 0x80; /* battery good */
	default:
		return r < 1 ? 0 : c->ram[r & 0x7f];
	}
}

static void cmos_read(void *opaque, uint64_t off, uint8_t *data, uint32_t size)
{
	struct rtc_cmos *c = opaque;

	memset(data, 0, size);
	pthread_mutex_lock(&c->lock);
	data[0] = off == 0 ? c->index : reg(c, c->index);
	pthread_mutex_unlock(&c->lock);
}

/* The RAM bytes cmos_write stores; the others stay 0. */
static bool ram_writable(uint8_t index)
{
	return index > REG_D && index != CENTURY;
}

static void cmos_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	struct rtc_cmos *c = opaque;

	(void)size;
	pthread_mutex_lock(&c->lock);
	if (off == 0)
		c->index = data[0] & 0x7f; /* bit 7 is the NMI mask */
	else if (ram_writable(c->index))
		c->ram[c->index] = data[0];
	pthread_mutex_unlock(&c->lock);
}

const struct bus_ops rtc_cmos_bus_ops = {.read = cmos_read, .write = cmos_write};

#define TAG_CMOS SNAP_TAG('C', 'M', 'O', 'S')

int rtc_cmos_save(const struct rtc_cmos *c, struct snap_w *w)
{
	struct rtc_cmos *m = (struct rtc_cmos *)c; /* the lock only */
	size_t at;

	pthread_mutex_lock(&m->lock);
	at = snap_begin(w, TAG_CMOS);
	snap_u8(w, c->index);
	snap_bytes(w, c->ram, sizeof(c->ram));
	snap_end(w, at);
	pthread_mutex_unlock(&m->lock);
	return w->failed ? -1 : 0;
}

int rtc_cmos_restore(struct rtc_cmos *c, struct snap_r *r, struct error *err)
{
	uint8_t index, ram[sizeof(c->ram)];
	struct snap_r sec;

	if (snap_section(r, TAG_CMOS, &sec, err))
		return -1;
	if (!snap_get_u8(&sec, &index) || index > 0x7f) /* bit 7 (NMI mask) is not kept */
		return snap_bad(&sec, err, "index");
	if (!snap_get_bytes(&sec, ram, sizeof(ram)))
		return snap_bad(&sec, err, "RAM");
	for (unsigned i = 0; i < sizeof(ram); i++)
		if (ram[i] && !ram_writable((uint8_t)i))
			return snap_bad(&sec, err, "RAM (a clock register)");
	if (snap_section_done(&sec, err))
		return -1;
	pthread_mutex_lock(&c->lock);
	c->index = index;
	memcpy(c->ram, ram, sizeof(ram));
	pthread_mutex_unlock(&c->lock);
	return 0;
}
