/* CMOS RTC at ports 0x70/0x71: the host's UTC time in BCD, 24-hour mode; other registers 0.
 * Guests that probe the RTC must not read 0xff here (docs/HOST_FACTS.md, Guests). */
#ifndef HEARTH_RTC_CMOS_H
#define HEARTH_RTC_CMOS_H

#include <pthread.h>
#include <stdint.h>

#include "vmm/bus.h"

struct snap_w;
struct snap_r;
struct error;

struct rtc_cmos {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[128]; /* guest-written registers outside the clock */
};

void rtc_cmos_init(struct rtc_cmos *c);
/* Snapshots (snapshot/stream.h): the index register and the guest-written RAM, as section
 * CMOS. The clock registers are not state: they read the host's time, as a real RTC shows the
 * time after a suspend. Restore validates every byte; on a bad one (-1, err set) nothing
 * changes. */
int rtc_cmos_save(const struct rtc_cmos *c, struct snap_w *w);
int rtc_cmos_restore(struct rtc_cmos *c, struct snap_r *r, struct error *err);
extern const struct bus_ops rtc_cmos_bus_ops;

#endif
