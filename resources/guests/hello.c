/*
 * hello: the guest `make run` boots. Prints one line and exits with status 0:
 * hello from hearth: <mem> MiB RAM (<n> map entries), <cpus> CPU(s), cmdline "<cmdline>"
 */
#include "rt.h"

void guest_main(struct hvm_start_info *si)
{
	rt_print_banner("hello from hearth: ", si);
}
