"""Boot the bundled guests with the real binary and check what they print and how they end."""
import os
import re
import struct
import subprocess
import time

import pytest

from conftest import (EXIT_BAD_IMAGE, EXIT_KVM_ERROR, EXIT_TIMEOUT, EXIT_TRIPLE_FAULT,
                      EXIT_USAGE, EXIT_VMM_ERROR, HEARTH, KVM, fake_linux_kernel, host_mmu)

BANNER = re.compile(r'(\d+) MiB RAM \((\d+) map entries\), (\S+) CPU\(s\), cmdline "([^"]*)"')


def banner(text):
    m = BANNER.search(text)
    assert m, f"no banner in {text!r}"
    return int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)


def test_hello_boots_and_prints_its_banner(hearth, guest):
    r = hearth("--kernel", guest("hello"), "--cmdline", "hi there")
    assert r.code == 0, r.err
    assert "hello from hearth:" in r.out
    mem, entries, cpus, cmdline = banner(r.out)
#RAM in the map : [0, 0x9fc00) and[1 MiB, 128 MiB) : 127.6 MiB, printed as 127.
    assert (mem, entries, cpus, cmdline) == (127, 3, "1", "hi there")
    assert "guest exited with status 0" in r.err
    assert "host mmu:" in r.err


def _min_va_above_boot_stack():
    try:
        with open("/proc/sys/vm/mmap_min_addr") as f:
            return int(f.read()) > 0x8000
    except OSError:
        return True


def test_the_linux_64_bit_entry_runs_on_the_stack_it_is_given(hearth, guest):
    """stackguest pushes, calls and returns on hearth's boot stack and exits with its page:
    0x8ff0 as Firecracker sets it, or 0x9fbf0 in the process engine where the host cannot
    map the page at 0x8000."""
    r = hearth("--kernel", guest("stackguest"))
    moved = hearth.mmu == "process" and _min_va_above_boot_stack()
    assert r.code == (0x9f if moved else 0x8), r.err


@pytest.mark.parametrize("mem,expect_mem,expect_entries", [(16, 15, 3), (512, 511, 3),
                                                           (3072, 3071, 3), (4096, 4095, 4)])
def test_memory_size_reaches_the_guest(hearth, guest, mem, expect_mem, expect_entries):
    r = hearth("--kernel", guest("hello"), "--mem", mem)
    assert r.code == 0, r.err
    got_mem, entries, _, _ = banner(r.out)
    assert (got_mem, entries) == (expect_mem, expect_entries)


def test_two_vcpus_show_in_the_guest(hearth, guest):
    r = hearth("--kernel", guest("hello"), "--vcpus", "2")
    assert r.code == 0, r.err
    assert banner(r.out)[2] == "2"


def test_command_line_reaches_the_guest_verbatim(hearth, guest):
    line = "console=ttyS0 a=b x.y=z-1 quiet " + "k" * 500
    r = hearth("--kernel", guest("hello"), "--cmdline", line)
    assert r.code == 0, r.err
    assert banner(r.out)[3] == line


def test_command_line_over_the_limit_is_refused(cli, guest):
    r = cli("--kernel", guest("hello"), "--cmdline", "x" * 2048)
    assert r.code == EXIT_BAD_IMAGE
    assert "command line" in r.err and "2048" in r.err


@pytest.mark.parametrize("status,expect", [(0, 0), (1, 1), (7, 7), (42, 42), (239, 239),
                                           (240, 239), (255, 239)])
def test_guest_exit_status_propagates(hearth, guest, status, expect):
    r = hearth("--kernel", guest("testguest"), "--cmdline", f"print=before exit={status}")
    assert r.code == expect, r.err
    assert "testguest: before" in r.out
    assert f"guest exited with status {status}" in r.err


def test_actions_after_exit_do_not_run(hearth, guest):
    r = hearth("--kernel", guest("testguest"), "--cmdline", "exit=3 print=after")
    assert r.code == 3
    assert "after" not in r.out


def test_i8042_reset_ends_the_vm_with_status_0(hearth, guest):
    r = hearth("--kernel", guest("testguest"), "--cmdline", "reset")
    assert r.code == 0, r.err
    assert "reset" in r.err


def test_acpi_reset_register_ends_the_vm_with_status_0(hearth, guest):
#The FADT's reset register (port 0xcf9), as an OS that resets through ACPI finds it.
    r = hearth("--kernel", guest("testguest"), "--cmdline", "acpireset")
    assert r.code == 0, (r.code, r.out, r.err)
    assert "reset the VM (port 0xcf9)" in r.err


def test_triple_fault_is_reported_with_rip(hearth, guest):
    r = hearth("--kernel", guest("testguest"), "--cmdline", "triple")
    assert r.code == EXIT_TRIPLE_FAULT, r.err
    assert re.search(r"triple fault on vCPU 0 at rip=0x[0-9a-f]+", r.err)


def test_int3_at_cpl0(hearth, guest):
    """int3 with an empty IDT: a triple fault on hardware; on hosts that emulate guest CPL0
    (PVM) in hardware mode, KVM cannot emulate int3 and hearth reports the emulation failure
    with a hint. In shadow mode the guest's int3 runs natively at CPL3 and, with no IDT,
    triple-faults as on hardware."""
    r = hearth("--kernel", guest("testguest"), "--cmdline", "int3")
    if host_mmu() == "pvm" and "engine: hardware" in r.err:
        assert r.code == EXIT_KVM_ERROR, r.err
        assert "emulation failure" in r.err
        assert re.search(r"rip=0x[0-9a-f]+ \(cpl 0\)", r.err)
        assert "bytes: cc" in r.err
        assert "hint:" in r.err
    else:
        assert r.code == EXIT_TRIPLE_FAULT, r.err


@pytest.mark.parametrize("action", ["spin", "halt"])
def test_timeout_stops_a_guest_that_never_ends(hearth, guest, action):
    t0 = time.monotonic()
    r = hearth("--kernel", guest("testguest"), "--cmdline", action, "--timeout", "0.5",
               timeout=30)
    assert r.code == EXIT_TIMEOUT, r.err
    assert "timeout" in r.err
    assert time.monotonic() - t0 < 20


def test_serial_input_reaches_the_guest(hearth, guest):
    r = hearth("--kernel", guest("testguest"), "--cmdline", "echo", "--timeout", "30",
               input=b"hello-input q")
    assert r.code == 0, r.err
    assert "hello-input " in r.out
    assert "testguest: echo done" in r.out


def test_long_serial_input_is_not_lost(hearth, guest):
    data = (b"0123456789abcdefghijklmnop" * 120) + b"q"  # no q before the end
    r = hearth("--kernel", guest("testguest"), "--cmdline", "echo", "--timeout", "60",
               input=data)
    assert r.code == 0, r.err
    assert data[:-1].decode() in r.out


def test_unknown_ports_read_all_ones_and_cmos_reads_bcd(hearth, guest):
    r = hearth("--kernel", guest("testguest"),
               "--cmdline", "readport=0x1234 readport=0x2f8 readport=0x71")
    assert r.code == 0, r.err
    assert "port 0x1234 = 0xff" in r.out
    assert "port 0x02f8 = 0xff" in r.out
    m = re.search(r"port 0x0071 = 0x([0-9a-f]{2})", r.out)
    assert m and m.group(1) != "ff"


def test_console_to_file(hearth, guest, tmp_path):
    f = tmp_path / "console.log"
    r = hearth("--kernel", guest("hello"), "--console", f)
    assert r.code == 0, r.err
    assert r.out == ""
    assert "hello from hearth:" in f.read_text()


def test_console_none(hearth, guest):
    r = hearth("--kernel", guest("hello"), "--console", "none")
    assert r.code == 0, r.err
    assert r.out == ""


def test_console_on_a_terminal_is_restored_at_exit(hearth, guest):
    """stdin a terminal: hearth puts it in raw mode and restores it at exit, from the filtered
    VMM thread (glibc's tcsetattr is TCSETS then TCGETS)."""
    import pty
    import termios

    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        p = subprocess.run([str(HEARTH), "--mmu", hearth.mmu, "--kernel",
                            str(guest("testguest")), "--cmdline", "print=on-a-tty exit=3"],
                           stdin=slave, capture_output=True, timeout=60)
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 3, err
        assert "seccomp" not in err
        assert b"testguest: on-a-tty" in p.stdout
        assert termios.tcgetattr(slave) == before, "the terminal was not restored"
    finally:
        os.close(master)
        os.close(slave)


def test_closed_stdout_does_not_stop_the_vmm(guest):
    p = subprocess.Popen([str(HEARTH), "--kernel", str(guest("testguest")), "--cmdline",
                          "banner banner exit=5"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 5, err


def test_version_and_help():
    out = subprocess.run([str(HEARTH), "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert re.match(r"hearth \d+\.\d+\.\d+\nhost mmu: \S+", out.stdout)
#The host as it is : KVM's presence, and why not when it is missing.
    if KVM:
        assert "\nkvm: available\n" in out.stdout
    else:
        assert re.search(r"\nkvm: (absent|no-access|unusable) \(/dev/kvm", out.stdout), out.stdout
        assert "host mmu: none" in out.stdout
    out = subprocess.run([str(HEARTH), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ["--kernel", "--initrd", "--cmdline", "--mem", "--vcpus", "--console", "--mmu",
                 "--timeout", "--api-sock", "--config-file", "--no-api", "--id", "--version"]:
        assert flag in out.stdout
    for code in ["240", "241", "242", "243", "244", "245"]:
        assert code in out.stdout


@pytest.mark.parametrize("args,needle", [
    ([], "--kernel PATH is required"),
    (["--kernel"], "needs a value"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--kernel", ""], "--kernel '' must not be empty"),
    (["--mem", "abc"], "--mem 'abc' must be an integer"),
    (["--mem", "0"], "--mem '0' must be between 4 and 1048576 MiB"),
    (["--mem", "-5"], "--mem '-5' must be between 4 and 1048576 MiB"),
    (["--mem", "99999999999999999999"], "must be between 4 and 1048576 MiB"),
    (["--vcpus", "0"], "--vcpus '0' must be between 1 and 32"),
    (["--vcpus", "33"], "--vcpus '33' must be between 1 and 32"),
    (["--vcpus", "1x"], "--vcpus '1x' must be an integer"),
    (["--timeout", "-1"], "--timeout '-1'"),
    (["--timeout", "nan"], "--timeout 'nan'"),
    (["--console", ""], "--console"),
    (["--mmu", "fast"], "--mmu 'fast'"),
    (["--boot", "efi"], "--boot 'efi'"),
    (["--id", "bad id!"], "--id 'bad id!' must be 1..64 characters from [A-Za-z0-9_-]"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_bad_flags_get_a_clear_error(cli, guest, args, needle):
    full = args if args == [] or args[0] == "--kernel" else ["--kernel", guest("hello"), *args]
    r = cli(*full)
    assert r.code == EXIT_USAGE, r.err
    assert needle in r.err
    assert "error:" in r.err


def _elf_with(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind,needle", [
    ("missing", "No such file"),
    ("empty", "not an ELF, bzImage or Multiboot"),
    ("garbage", "bad magic"),
    ("truncated", "truncated"),
    ("phoff", "program header"),
    ("directory", "kernel"),
])
def test_bad_images_get_a_clear_error(cli, guest, tmp_path, kind, needle):
    hello = guest("hello").read_bytes()
    p = tmp_path / "kernel"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "garbage":
        p.write_bytes(os.urandom(4096).replace(b"\x7fELF", b"xxxx"))
    elif kind == "truncated":
        p.write_bytes(hello[:40])
    elif kind == "phoff":
        p.write_bytes(hello[:0x20] + struct.pack("<Q", 1 << 40) + hello[0x28:])
    elif kind == "directory":
        p = tmp_path
    r = cli("--kernel", p)
    assert r.code == EXIT_BAD_IMAGE, r.err
    assert needle.lower() in r.err.lower()


def test_missing_initrd_is_a_bad_image(cli, guest, tmp_path):
    r = cli("--kernel", guest("hello"), "--initrd", tmp_path / "nope")
    assert r.code == EXIT_BAD_IMAGE
    assert "nope" in r.err


def test_initrd_too_big_for_ram(cli, guest, tmp_path):
    rd = tmp_path / "rd"
    with open(rd, "wb") as f:
        f.truncate(64 << 20)
    r = cli("--kernel", guest("hello"), "--initrd", rd, "--mem", "32")
    assert r.code == EXIT_BAD_IMAGE
    assert "initrd" in r.err


def test_initrd_is_accepted(hearth, guest, tmp_path):
    rd = tmp_path / "rd"
    rd.write_bytes(os.urandom(1 << 20))
    r = hearth("--kernel", guest("hello"), "--initrd", rd)
    assert r.code == 0, r.err


def test_cpuid_apic_id_is_the_vcpus_own(hearth, guest):
    """docs/HOST_FACTS.md, Guests: guests index per-CPU data by the APIC ID cpuid reports."""
    if hearth.mmu == "process":
        pytest.skip("the process engine: cpuid runs natively in user mode (no CPUID "
                    "faulting), so the guest sees the APIC ID of its thread's host CPU; "
                    "test_process.py checks the placement that makes it the vCPU's "
                    "(docs/PROCESS_ENGINE.md, What a guest sees)")
    r = hearth("--kernel", guest("testguest"), "--cmdline", "cpuid")
    assert r.code == 0, r.err
    m = re.search(r"cpuid apic=(\d+) count=(\d+) hv=(\d)", r.out)
    assert m, r.out
    assert m.group(1) == "0"
    assert m.group(3) == "1"


def cpu_has(flag):
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return flag in line.split()
    return False


def test_read_modify_write_on_a_device_register_and_on_page_0(hearth, guest):
    """`orl`/`andl` on the local APIC's SVR (what `*reg |= bit` on a volatile register
    compiles to) and cmp/add/inc/xor on page 0: in the process engine both reach hearth's
    emulator (MMIO is never mapped, and a host process cannot map page 0), which must give
    the CPU's results and flags."""
    r = hearth("--kernel", guest("testguest"), "--cmdline", "rmw")
    assert r.code == 0, r.out + r.err
    assert "testguest: rmw svr 0xff -> 0x1ff -> 0xff page0 eq=1 12 13 2" in r.out, r.out


def test_string_moves_and_atomics_on_page_0_and_a_device_register(hearth, guest):
    """rep stos/movs, lods, xchg, lock xadd, lock cmpxchg (both outcomes) and lock or on
    page 0, strings that cross its end in both directions, and lods/movs/stos/xchg/xadd/
    cmpxchg on the local APIC: compiled memset/memcpy and atomics do this; and repne scasb
    (strlen), repe cmpsb (memcmp), scasq and a backwards scan on page 0. In the process
    engine they reach hearth's emulator, which must give what the CPU gives (the other
    engines run them natively or in KVM's emulator, and must print the same)."""
    r = hearth("--kernel", guest("testguest"), "--cmdline", "strops")
    assert r.code == 0, r.out + r.err
    assert ("testguest: strops page0 1 9 13 1,0 20 276 11440 apic 1 10,20,30,40"
            in r.out), r.out
    assert ("testguest: strops compare len=6 left=2 zf=0 cf=0 eq=1 back=1 at=0"
            in r.out), r.out


@pytest.mark.skipif(not cpu_has("fsgsbase"),
                    reason="this host's kernel does not manage FSGSBASE (no fsgsbase in "
                    "/proc/cpuinfo): a process's own wrfsbase is not kept here")
def test_a_guests_own_wrfsbase_and_wrgsbase_show_in_the_msrs(hearth, guest):
    """A kernel that sets its FS and GS bases with wrfsbase/wrgsbase (as OSv and Hermit do
    where the CPU has them) reads the same through MSR_FS_BASE and MSR_GS_BASE, and an MSR
    write shows in rdfsbase. In the process engine those instructions run natively in the
    guest process: the stub reports the thread's bases at every exit."""
    r = hearth("--kernel", guest("testguest"), "--cmdline", "fsgsbase")
    assert r.code == 0, r.out + r.err
    assert "testguest: fsgsbase msr fs=123000 gs=456000 rdfsbase=789000" in r.out, r.out


@pytest.mark.parametrize("action,survives", [
    ("loadss=0x10", True), ("farjump=0x08", True),
    # Beyond the guest's 3-entry GDT: where the shadow engine keeps its monitor's DPL0
    # descriptors (0xfd80 its code, 0xfd88 its data). Loading one would have given the
    # guest a real CPL0 on AMD hosts; every engine must fault instead (no IDT: a triple
    # fault, as on hardware).
    ("loadss=0xfd88", False), ("farjump=0xfd80", False), ("loadss=0x18", False),
])
def test_selectors_beyond_the_guests_gdt_fault(hearth, guest, action, survives):
    r = hearth("--kernel", guest("testguest"), "--cmdline", f"{action} print=after")
    if survives:
        assert r.code == 0, r.out + r.err
        assert "survived" in r.out and "testguest: after" in r.out
    else:
        assert r.code == EXIT_TRIPLE_FAULT, r.out + r.err
        assert "survived" not in r.out and "testguest: after" not in r.out


def test_a_new_gdt_then_a_far_jump_through_memory(hearth, guest):
    """lgdt of a table in which the running CS's selector is 32-bit code, then ljmp *mem to
    its 64-bit code, data selectors, and back with lretq: CS stays what it was loaded as
    until the jump (memtest86+ and other kernels reload CS this way)."""
    r = hearth("--kernel", guest("testguest"), "--cmdline", "newgdt print=after")
    assert r.code == 0, r.out + r.err
    assert "testguest: newgdt ok\ntestguest: after" in r.out


def test_sgdt_shows_the_guests_own_gdt(hearth, guest):
    if hearth.mmu == "shadow" and not cpu_has("umip"):
        pytest.skip("this CPU has no UMIP: the shadow engine cannot trap sgdt at CPL3, so the "
                    "guest sees the monitor's GDT (docs/SHADOW_MMU.md)")
    if hearth.mmu == "process":
        pytest.skip("the process engine: sgdt in user mode is answered by the host (its GDT, "
                    "or the host kernel's UMIP stand-in), never by hearth "
                    "(docs/PROCESS_ENGINE.md, What a guest sees)")
    r = hearth("--kernel", guest("testguest"), "--cmdline", "sgdt")
    assert r.code == 0, r.err
    m = re.search(r"gdtr base=0x([0-9a-f]+) limit=0x([0-9a-f]+)", r.out)
    assert m, r.out
    base, limit = int(m.group(1), 16), int(m.group(2), 16)
    assert base < 0x40000000 and limit < 0x100, (hex(base), hex(limit))


@pytest.mark.skipif(KVM, reason="checks a host without /dev/kvm; this one has it")
def test_without_kvm_a_boot_fails_with_one_clear_line(cli, guest, tmp_path):
    # A KVM engine asked for by name
    for engine in ("hardware", "shadow"):
        r = cli("--engine", engine, "--kernel", guest("hello"))
        assert r.code == EXIT_VMM_ERROR, r.err
        lines = [l for l in r.err.splitlines() if "error:" in l]
        assert len(lines) == 1, r.err
        assert "/dev/kvm" in lines[0] and "cannot run a guest" in lines[0]
        assert r.out == ""
    # A Linux kernel (only KVM runs one): says why and what would run it
    linux = fake_linux_kernel(tmp_path / "bzImage")
    r = cli("--kernel", linux)
    assert r.code == EXIT_VMM_ERROR, r.err
    lines = [l for l in r.err.splitlines() if "error:" in l]
    assert len(lines) == 1, r.err
    assert "Linux kernel" in lines[0] and "/dev/kvm" in lines[0] and "upper half" in lines[0]
    r = cli("--engine", "process", "--kernel", linux)
    assert r.code == EXIT_USAGE, r.err
    assert "--engine process" in r.err and "Linux kernel" in r.err
    # auto: the process engine runs the unikernel
    r = cli("--kernel", guest("hello"))
    assert r.code == 0, r.err
    assert "hello from hearth" in r.out and "engine: process" in r.err


@pytest.mark.skipif(KVM, reason="checks a host without /dev/kvm; this one has it")
def test_without_kvm_a_bad_image_is_still_a_bad_image(cli, tmp_path):
    p = tmp_path / "k"
    p.write_bytes(b"\x7fELF" + b"\0" * 60)
    r = cli("--kernel", p)
    assert r.code == EXIT_BAD_IMAGE, r.err
    assert "/dev/kvm" not in r.err
