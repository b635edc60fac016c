/* C side of the boot path: check the start_info, run the guest, exit. */
#include "rt.h"

_Noreturn void rt_start(struct hvm_start_info *si);

_Noreturn void guest_halt(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

_Noreturn void guest_exit(int status)
{
	con_flush();
	outb(RT_PORT_GUEST_EXIT, (uint8_t)status);
	guest_halt();
}

_Noreturn void rt_start(struct hvm_start_info *si)
{
	if (!si || si->magic != HVM_START_MAGIC) {
		con_printf("rt: bad hvm_start_info at %p\n", (void *)si);
		guest_exit(RT_EXIT_BAD_BOOT);
	}
	guest_main(si);
	guest_exit(0);
}
