/* CMOS RTC at ports 0x70/0x71: the host's UTC time in BCD, 24-hour mode; other registers 0.
 * Guests that probe the RTC must not read 0xff here (docs/HOST_FACTS.md, Guests). */
#ifndef HEARTH_RTC_CMOS_H
#define HEARTH_RTC_CMOS_H

#include <pthread.h>
#include <stdint.h>

#include "vmm/bus.h"

struct rtc_cmos {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[128]; /* guest-written registers outside the clock */
};

void rtc_cmos_init(struct rtc_cmos *c);
extern const struct bus_ops rtc_cmos_bus_ops;

#endif
