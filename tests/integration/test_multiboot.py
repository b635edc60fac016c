"""Multiboot (v1) kernels: mbguest as a 32-bit ELF (the form QEMU wants), a 64-bit ELF, a 64-bit
ELF with load addresses in its header, a raw binary loaded by those addresses, and a 64-bit ELF
whose 32-bit code runs on a GDT of its own and far-jumps to 64-bit code through the same
selector (0x08) once a second GDT makes it 64-bit, as QEMU's own x86_64 test kernels do. The guest
prints what it was handed and exits 0 only for a well-formed hand-over."""
import re

import pytest

from conftest import EXIT_BAD_IMAGE, GUESTS

FORMS = ["mbguest.elf", "mbguest64.elf", "mbguest_kludge.elf", "mbguest.bin",
         "mbguest_samesel.elf"]


def mmap_of(out):
    return [(int(a, 16), int(b, 16), int(t)) for a, b, t in
            re.findall(r"multiboot: mmap \[0x([0-9a-f]+), 0x([0-9a-f]+)\) type (\d+)", out)]


@pytest.mark.parametrize("form", FORMS)
def test_multiboot_kernel_gets_the_loader_magic_memory_and_command_line(hearth, form):
    image = GUESTS / form
    r = hearth("--kernel", image, "--cmdline", "app=1 -- x", "--mem", "64")
    assert r.code == 0, r.out + r.err
    assert 'multiboot: magic 0x2badb002 flags 0x245 loader "hearth"' in r.out
    assert "multiboot: mem_lower 639 KiB mem_upper 64512 KiB" in r.out
    # The BIOS data area agrees (Xen puts its trampoline below the EBDA it names there).
    assert "multiboot: bda com1 0x3f8 equipment 0x200 base 639 KiB ebda 0x9fc0" in r.out
    assert mmap_of(r.out) == [(0, 0x9fc00, 1), (0x9fc00, 0x100000, 2), (0x100000, 64 << 20, 1)]
    # The kernel's file name first, as GRUB and QEMU pass it (not the host's path).
    assert f'multiboot: cmdline "{form} app=1 -- x"' in r.out
    assert "multiboot: module" not in r.out
    assert r.out.rstrip().endswith("multiboot: done")


def test_multiboot_kernel_gets_the_initrd_as_a_module(hearth, tmp_path):
    rd = tmp_path / "rd"
    rd.write_bytes(b"MODULE01" + bytes(5000))
    r = hearth("--kernel", GUESTS / "mbguest.elf", "--initrd", rd, "--mem", "64")
    assert r.code == 0, r.out + r.err
    m = re.search(r'multiboot: module \[0x([0-9a-f]+), 0x([0-9a-f]+)\) "initrd" begins '
                  r'"MODULE01"', r.out)
    assert m, r.out
    start, end = int(m.group(1), 16), int(m.group(2), 16)
    assert end - start == 5008 and start % 4096 == 0 and end <= 64 << 20
    assert "flags 0x24d" in r.out  # memory, command line, modules, map, loader name
    assert 'multiboot: cmdline "mbguest.elf"' in r.out  # no arguments


def test_multiboot_over_256_mib_reports_the_upper_memory(hearth):
    r = hearth("--kernel", GUESTS / "mbguest.elf", "--mem", "3072")
    assert r.code == 0, r.out + r.err
    assert f"mem_upper {(3072 - 1) * 1024} KiB" in r.out


@pytest.mark.parametrize("args,needle", [
    (["--boot", "pvh"], "no PVH entry note"),
    (["--boot", "linux"], "32-bit ELF has no Linux 64-bit entry"),
])
def test_a_32_bit_multiboot_elf_has_no_other_entry(cli, args, needle):
    r = cli("--kernel", GUESTS / "mbguest.elf", *args)
    assert r.code == EXIT_BAD_IMAGE, r.err
    assert needle in r.err


def with_flags(tmp_path, name, extra):
    """mbguest.bin with `extra` header flags (the checksum fixed up)."""
    raw = bytearray((GUESTS / "mbguest.bin").read_bytes())
    at = raw.find(bytes.fromhex("02b0ad1b"))
    flags = int.from_bytes(raw[at + 4:at + 8], "little") | extra
    raw[at + 4:at + 8] = flags.to_bytes(4, "little")
    raw[at + 8:at + 12] = ((-(0x1badb002 + flags)) & 0xffffffff).to_bytes(4, "little")
    p = tmp_path / name
    p.write_bytes(bytes(raw))
    return p


def test_a_video_mode_request_boots_with_a_warning(hearth, tmp_path):
    """Flag 2 asks for a video mode, which hearth cannot give; QEMU boots such kernels with
    a warning, and so does hearth (many print to the serial port anyway)."""
    r = hearth("--kernel", with_flags(tmp_path, "video.bin", 4), "--mem", "64")
    assert r.code == 0, r.out + r.err
    assert "video mode" in r.err and "multiboot: done" in r.out


def test_bad_multiboot_images_get_a_clear_error(cli, guest, tmp_path):
    # The PVH guests have no Multiboot header.
    r = cli("--kernel", guest("hello"), "--boot", "multiboot")
    assert r.code == EXIT_BAD_IMAGE and "no Multiboot header" in r.err, r.err
    # A requirement hearth does not know (flag 7 of the 16 required ones).
    r = cli("--kernel", with_flags(tmp_path, "flag7.bin", 0x80))
    assert r.code == EXIT_BAD_IMAGE and "flags 0x0080" in r.err, r.err
    p = tmp_path / "cut.bin"
    # The raw binary cut short of its own load addresses.
    p.write_bytes((GUESTS / "mbguest.bin").read_bytes()[:4096])
    r = cli("--kernel", p)
    assert r.code == EXIT_BAD_IMAGE and "beyond the end of the file" in r.err, r.err
