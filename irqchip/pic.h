/*
 * Two cascaded 8259A PICs as in a PC: the slave's INT drives the master's IR2; the master's
 * INT goes to the CPU (LINT0 of the BSP's local APIC). Edge or level sensing per input comes
 * from the ELCR (ports 0x4d0/0x4d1). No locking: the owning chip set serializes every call.
 */
#ifndef HEARTH_IRQCHIP_PIC_H
#define HEARTH_IRQCHIP_PIC_H

#include <stdbool.h>
#include <stdint.h>

#define PIC_MASTER_PORT 0x20  /* and 0x21 */
#define PIC_SLAVE_PORT  0xa0  /* and 0xa1 */
#define PIC_ELCR_PORT   0x4d0 /* master; 0x4d1 slave */
#define PIC_CASCADE_IR  2

struct pic_chip {
	uint8_t irr, isr, imr;
	uint8_t lines;     /* input levels */
	uint8_t elcr;      /* 1 = level-sensitive input */
	uint8_t elcr_mask; /* inputs the ELCR can make level-sensitive */
	uint8_t base;      /* ICW2: vector of IR0 */
	uint8_t lowest;    /* the input with the lowest priority (rotation) */
	uint8_t icw;       /* next ICW expected on the data port: 2, 3, 4, or 0 (ready) */
	bool need_icw4, single, ltim;
	bool aeoi, rotate_aeoi, sfnm;
	bool special_mask, read_isr, poll;
};

struct pic {
	struct pic_chip chip[2]; /* master, slave */
};

void pic_init(struct pic *p);
/* Drive ISA IRQ `irq` (0..15; 2 is the cascade and is ignored) to `level`. */
void pic_set_irq(struct pic *p, unsigned irq, bool level);
/* The master's INT output: an interrupt waits for INTA. */
bool pic_output(const struct pic *p);
/* The vector INTA would return now (no side effects), or -1 without INT. */
int pic_peek(const struct pic *p);
/* The INTA cycles: the vector, the request moved to service (spurious IRQ 7/15 if none). */
uint8_t pic_inta(struct pic *p);
/* Ports: `chip` 0 master / 1 slave, `port` 0 (command) / 1 (data). */
uint8_t pic_read(struct pic *p, unsigned chip, unsigned port);
void pic_write(struct pic *p, unsigned chip, unsigned port, uint8_t val);
uint8_t pic_elcr_read(const struct pic *p, unsigned chip);
void pic_elcr_write(struct pic *p, unsigned chip, uint8_t val);
/* The slave's INT, the level on the master's IR2: a request the slave would raise now. */
bool pic_slave_int(const struct pic *p);

#endif
