#include "rtc_cmos.h"

#include <string.h>
#include <time.h>

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

static void cmos_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	struct rtc_cmos *c = opaque;

	(void)size;
	pthread_mutex_lock(&c->lock);
	if (off == 0)
		c->index = data[0] & 0x7f; /* bit 7 is the NMI mask */
	else if (c->index > REG_D && c->index != CENTURY)
		c->ram[c->index] = data[0];
	pthread_mutex_unlock(&c->lock);
}

const struct bus_ops rtc_cmos_bus_ops = {.read = cmos_read, .write = cmos_write};
