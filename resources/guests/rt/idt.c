/* The 64-bit IDT: gates to the stubs in rt/idt_entry.S, and the C dispatcher. */
#include "idt.h"
#include "cpu.h"
#include "rt.h"

#define SEL_CODE64 0x08
#define GATE_INTR  0x8e /* present, DPL 0, 64-bit interrupt gate */

struct idt_gate {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
};

struct idt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

extern const char idt_stubs[];

static struct idt_gate idt[256] __attribute__((aligned(16)));
static trap_handler handlers[256];

static void set_gate(unsigned vector, unsigned dpl)
{
	uint64_t target = (uint64_t)(uintptr_t)(idt_stubs + 16 * vector);

	idt[vector] = (struct idt_gate){
	    .off0 = (uint16_t)target,
	    .sel = SEL_CODE64,
	    .type = (uint8_t)(GATE_INTR | (dpl & 3) << 5),
	    .off1 = (uint16_t)(target >> 16),
	    .off2 = (uint32_t)(target >> 32),
	};
}

void idt_load(void)
{
	struct idt_ptr p = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};

	__asm__ volatile("lidt %0" : : "m"(p));
}

void idt_init(void)
{
	for (unsigned v = 0; v < 256; v++)
		set_gate(v, 0);
	idt_load();
}

void idt_set(unsigned vector, trap_handler fn, unsigned dpl)
{
	handlers[vector & 255] = fn;
	set_gate(vector & 255, dpl);
}

void idt_dispatch(struct trap_frame *f);

void idt_dispatch(struct trap_frame *f)
{
	trap_handler fn = handlers[f->vector & 255];

	if (fn) {
		fn(f);
		return;
	}
	con_printf("rt: unexpected vector %u, error 0x%lx, at rip=0x%lx cs=0x%lx cr2=0x%lx\n",
	           (unsigned)f->vector, (unsigned long)f->error, (unsigned long)f->rip,
	           (unsigned long)f->cs, (unsigned long)read_cr2());
	guest_exit(RT_EXIT_TRAP);
}
