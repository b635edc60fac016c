/*
 * An 8254 PIT at 1193182 Hz (ports 0x40..0x43) and the port 0x61 bits that belong to it:
 * channel 2's gate (bit 0), the speaker enable (bit 1, stored), OUT2 (bit 5). Counts and OUT
 * levels are computed from the clock; channel 0's OUT rising edges reach IRQ 0 when the owner
 * calls pit_update (at pit_next_deadline, or on any PIT port access). No locking: the owning
 * chip set serializes every call.
 *
 * Simplifications: BCD counting is accepted but counts in binary (the BCD bit is kept for the
 * status byte); a count is loaded the moment it is written, not on the next CLK edge (838 ns).
 */
#ifndef HEARTH_IRQCHIP_PIT_H
#define HEARTH_IRQCHIP_PIT_H

#include <stdbool.h>
#include <stdint.h>

#include "irqchip/clock.h"

#define PIT_HZ      1193182u
#define PIT_PORT    0x40 /* ..0x43 */
#define PIT_PORT_61 0x61

struct pit_channel {
	uint32_t count; /* programmed count, 1..65536 */
	uint32_t n;     /* count in the counting element */
	uint8_t mode;   /* 0..5 */
	uint8_t ctrl;   /* control word bits 5..0 (RW, M2..M0, BCD) for the status byte */
	uint8_t rw;     /* 1 LSB, 2 MSB, 3 LSB then MSB; 0 before any control word */
	bool loaded;    /* a count was written since the control word */
	bool triggered; /* modes 1 and 5: a gate rising edge started the count */
	bool gate;
	bool counting;       /* ticks advance from `since` */
	uint64_t base_ticks; /* ticks counted before `since` */
	uint64_t since;      /* ns at which counting (re)started */
	uint64_t edges;      /* OUT rising edges already signalled on IRQ 0 */
	bool write_msb;      /* RW 3: the next write is the MSB */
	uint8_t write_lsb;
	bool read_msb; /* RW 3: the next read is the MSB */
	bool count_latched, latch_msb;
	uint16_t latch;
	bool status_latched;
	uint8_t status;
	bool null_count;
};

struct pit {
	struct pit_channel ch[3];
	uint8_t port61; /* bits 0..3 as written */
	bool out0;      /* the level last driven on IRQ 0 */
	const struct irqchip_clock *clock;
	void (*irq0)(void *opaque, bool level);
	void *opaque;
};

void pit_init(struct pit *p, const struct irqchip_clock *clock,
              void (*irq0)(void *opaque, bool level), void *opaque);
/* `port` is 0..3 (0x40 + port). */
uint8_t pit_read(struct pit *p, unsigned port);
void pit_write(struct pit *p, unsigned port, uint8_t val);
uint8_t pit_port61_read(struct pit *p);
void pit_port61_write(struct pit *p, uint8_t val);
/* Signal channel 0's OUT edges up to now on IRQ 0. */
void pit_update(struct pit *p);
/* When channel 0's OUT next rises (ns; UINT64_MAX: never without reprogramming). */
uint64_t pit_next_deadline(const struct pit *p);

#endif
