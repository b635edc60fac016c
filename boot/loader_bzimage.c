/*
 * bzImage loader, per the Linux x86 boot protocol (Documentation/arch/x86/boot.rst).
 *
 * hearth boots bzImages only through the 64-bit entry point: the protected-mode kernel (the
 * file after the real-mode setup sectors) is copied to LAYOUT_KERNEL_START (1 MiB) and entered
 * at 1 MiB + 0x200 in long mode with %rsi pointing at boot_params. The real-mode setup code is
 * never run; only its setup header is kept (struct kernel_image.setup_header) so boot_setup()
 * can copy it into boot_params as the protocol requires.
 */
#include "boot.h"
#include "vmm/layout.h"

#include <asm/bootparam.h>
#include <inttypes.h>
#include <string.h>

#define SETUP_HEADER_OFFSET 0x1f1  /* struct setup_header in the file and in boot_params */
#define SETUP_JUMP_OFFSET   0x200  /* the 2-byte short jump; its second byte sizes the header */
#define BOOT_FLAG_MAGIC     0xAA55 /* setup_header.boot_flag */
#define HDRS_MAGIC          0x53726448u /* setup_header.header: "HdrS" */
#define ENTRY64_OFFSET      0x200       /* 64-bit entry, relative to the protected-mode kernel */
#define SECTOR              512

_Static_assert(sizeof(struct setup_header) <= sizeof(((struct kernel_image *)0)->setup_header),
               "kernel_image.setup_header too small for struct setup_header");
_Static_assert(offsetof(struct boot_params, hdr) == SETUP_HEADER_OFFSET, "boot_params layout");

static uint64_t mib_round_up(uint64_t v)
{
	return (v + MIB - 1) / MIB;
}

/*
 * Whether a bzImage is Linux (which maps itself in the upper half and has a user mode: only
 * KVM's hardware engine runs it) or another kernel using Linux's boot protocol (memtest86+).
 * Linux's kernel_version string, at 0x200 + kernel_version in the setup code, starts with
 * its release ("6.1.0-..."); anything without a readable string counts as Linux.
 */
static bool is_linux(const uint8_t *img, uint64_t setup_size, uint16_t kernel_version)
{
	uint64_t at = 0x200ULL + kernel_version;

	if (!kernel_version || at >= setup_size)
		return true;
	return img[at] >= '0' && img[at] <= '9';
}

int bzimage_load(const struct guest_memory *gm, const uint8_t *img, size_t len,
                 enum boot_protocol want, struct kernel_image *out, struct error *err)
{
	uint64_t setup_size, kbytes, runtime, runtime_end, end, hdr_end, hdr_len;
	unsigned major, minor, setup_sects;
	struct setup_header hdr;

	memset(out, 0, sizeof(*out));
	if (want != BOOT_PROTO_AUTO && want != BOOT_PROTO_LINUX64 && want != BOOT_PROTO_PVH &&
	    want != BOOT_PROTO_MULTIBOOT)
		return err_set(err, "unknown boot protocol %d", (int)want);
	if (len < SETUP_HEADER_OFFSET + sizeof(hdr))
		return err_set(err, "bzImage truncated: %zu bytes, the setup header ends at 0x%zx",
		               len, SETUP_HEADER_OFFSET + sizeof(hdr));
	memcpy(&hdr, img + SETUP_HEADER_OFFSET, sizeof(hdr));
	if (hdr.boot_flag != BOOT_FLAG_MAGIC || hdr.header != HDRS_MAGIC)
		return err_set(
		    err, "not a bzImage (bad magic: boot_flag 0x%04x, header 0x%08" PRIx32 ")",
		    hdr.boot_flag, hdr.header);
	if (want == BOOT_PROTO_PVH)
		return err_set(err, "bzImage has no PVH entry; use the ELF vmlinux");
	if (want == BOOT_PROTO_MULTIBOOT)
		return err_set(err, "bzImage has no Multiboot entry");

	major = hdr.version >> 8;
	minor = hdr.version & 0xff;
	if (hdr.version < 0x0206)
		return err_set(err, "bzImage boot protocol %u.%02u too old, need 2.06", major,
		               minor);
	if (!(hdr.loadflags & LOADED_HIGH))
		return err_set(err, "bzImage cannot be loaded at 1 MiB (LOADED_HIGH is clear in "
		                    "loadflags): not a bzImage");
	if (hdr.version < 0x020c || !(hdr.xloadflags & XLF_KERNEL_64))
		return err_set(
		    err,
		    "bzImage has no 64-bit entry point (boot protocol %u.%02u, xloadflags "
		    "0x%x; need 2.12 with XLF_KERNEL_64)",
		    major, minor, hdr.xloadflags);

	/* The setup header ends at 0x202 + the byte at 0x201 (the jump's displacement). */
	hdr_end = SETUP_JUMP_OFFSET + 2 + img[SETUP_JUMP_OFFSET + 1];
	hdr_len = hdr_end - SETUP_HEADER_OFFSET;
	if (hdr_len > sizeof(hdr))
		hdr_len = sizeof(hdr);
	if (hdr_len < offsetof(struct setup_header, init_size) + sizeof(hdr.init_size))
		return err_set(err,
		               "bzImage setup header is only %" PRIu64
		               " bytes, too short for boot protocol %u.%02u",
		               hdr_len, major, minor);

	setup_sects = hdr.setup_sects ? hdr.setup_sects : 4;
	setup_size = (uint64_t)(setup_sects + 1) * SECTOR;
	if (setup_size >= len)
		return err_set(
		    err,
		    "bzImage protected-mode kernel is empty: the setup code takes %" PRIu64
		    " bytes (setup_sects %u) of a %zu-byte file",
		    setup_size, setup_sects, len);
	kbytes = len - setup_size;
	if (kbytes <= ENTRY64_OFFSET)
		return err_set(err,
		               "bzImage protected-mode kernel is only %" PRIu64
		               " bytes, too small to hold the 64-bit entry at offset 0x%x",
		               kbytes, ENTRY64_OFFSET);

	/*
	 * Where the kernel runs (and decompresses): a relocatable kernel moves itself to the load
	 * address rounded up to kernel_alignment, but never below pref_address (its
	 * LOAD_PHYSICAL_ADDR); a non-relocatable one runs at pref_address. It then needs init_size
	 * bytes from there before it reads the memory map, so all of that must be RAM and must not
	 * hold the initrd.
	 */
	runtime = LAYOUT_KERNEL_START;
	if (hdr.relocatable_kernel) {
		uint32_t a = hdr.kernel_alignment;

		if (a == 0 || (a & (a - 1)))
			return err_set(
			    err, "bzImage kernel_alignment 0x%" PRIx32 " is not a power of two", a);
		runtime = (runtime + a - 1) & ~((uint64_t)a - 1);
	}
	if (hdr.pref_address > runtime)
		runtime = hdr.pref_address;
	if (__builtin_add_overflow(runtime, (uint64_t)hdr.init_size, &runtime_end))
		return err_set(err, "bzImage pref_address 0x%" PRIx64 " is out of range",
		               (uint64_t)hdr.pref_address);
	end = LAYOUT_KERNEL_START + kbytes;
	if (runtime_end > end)
		end = runtime_end;
	if (!gm_range_ok(gm, LAYOUT_KERNEL_START, end - LAYOUT_KERNEL_START))
		return err_set(err,
		               "bzImage kernel needs %" PRIu64 " MiB of RAM up to 0x%" PRIx64
		               " (%" PRIu64 " bytes at 0x%llx, init_size 0x%" PRIx32
		               " at 0x%" PRIx64 ") but low RAM ends at 0x%" PRIx64,
		               mib_round_up(end), end, kbytes, LAYOUT_KERNEL_START, hdr.init_size,
		               runtime, gm->low_size);

	if (gm_load(gm, LAYOUT_KERNEL_START, img + setup_size, kbytes))
		return err_set(err, "bzImage kernel does not fit in guest RAM");

	out->format = KERNEL_BZIMAGE;
	out->linux_kernel = is_linux(img, setup_size, hdr.kernel_version);
	out->proto = BOOT_PROTO_LINUX64;
	out->entry = LAYOUT_KERNEL_START + ENTRY64_OFFSET;
	out->load_start = LAYOUT_KERNEL_START;
	out->load_end = end;
	/* cmdline_size (protocol >= 2.06) excludes the NUL; cmdline_max includes it. */
	out->cmdline_max = hdr.cmdline_size == UINT32_MAX ? UINT32_MAX : hdr.cmdline_size + 1;
	out->initrd_addr_max = hdr.initrd_addr_max;
	memcpy(out->setup_header, img + SETUP_HEADER_OFFSET, hdr_len);
	out->setup_header_len = hdr_len;
	return 0;
}
