/*
 * The boot GDT hearth writes at LAYOUT_BOOT_GDT (vmm/boot_setup.c) and the vCPU code loads.
 *
 *   index  selector  descriptor            use
 *   0      0x00      0                     null
 *   1      0x08      0x00af9b000000ffff    64-bit code (L=1), flat, execute/read
 *   2      0x10      0x00cf93000000ffff    data, 4 GiB flat, read/write (32- and 64-bit)
 *   3      0x18      0x00cf9b000000ffff    32-bit code (D=1), 4 GiB flat, execute/read
 *
 * Linux 64-bit entry: CS = CODE64, DS/ES/SS = DATA. PVH: CS = CODE32, DS/ES/SS = DATA.
 * (Documentation/arch/x86/boot.rst names __BOOT_CS 0x10 / __BOOT_DS 0x18; the kernel's
 * 64-bit entry loads its own GDT before using any selector, so the values do not matter to
 * it, only that the descriptors are flat and of the right kind. PVH leaves the selector
 * values unspecified.)
 */
#ifndef HEARTH_BOOT_GDT_H
#define HEARTH_BOOT_GDT_H

#define BOOT_GDT_NULL_DESC   0x0000000000000000ULL
#define BOOT_GDT_CODE64_DESC 0x00af9b000000ffffULL
#define BOOT_GDT_DATA_DESC   0x00cf93000000ffffULL
#define BOOT_GDT_CODE32_DESC 0x00cf9b000000ffffULL

#define BOOT_GDT_SEL_CODE64 0x08
#define BOOT_GDT_SEL_DATA   0x10
#define BOOT_GDT_SEL_CODE32 0x18

#define BOOT_GDT_ENTRIES 4
#define BOOT_GDT_SIZE    (BOOT_GDT_ENTRIES * 8) /* bytes; the GDTR limit is BOOT_GDT_SIZE - 1 */

#endif
