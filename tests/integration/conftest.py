"""Shared fixtures: paths to the built hearth and guests, and a runner."""
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("HEARTH_BUILD", ROOT / "build"))
HEARTH = BUILD / "hearth"
GUESTS = BUILD / "guests"

# Exit statuses (vmm/exit_codes.h, hearth --help).
EXIT_USAGE = 240
EXIT_BAD_IMAGE = 241
EXIT_VMM_ERROR = 242
EXIT_TRIPLE_FAULT = 243
EXIT_KVM_ERROR = 244
EXIT_TIMEOUT = 245


def _kvm_usable():
    """Whether this process can open /dev/kvm read-write, and if not, why."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
        return True, ""
    except OSError as e:
        return False, f"/dev/kvm: {e.strerror}"


KVM, _KVM_WHY = _kvm_usable()
NO_KVM_REASON = (f"needs /dev/kvm, which this host lacks ({_KVM_WHY}); "
                 "`make test-nested` runs it under QEMU with a nested SVM CPU")
# A test that boots a guest in a KVM engine: skipped, with the reason, only without /dev/kvm.
needs_kvm = pytest.mark.skipif(not KVM, reason=NO_KVM_REASON)
# The engines that boot guests; a test that takes the `hearth` fixture runs once in each.
# The process engine needs no KVM: it runs on every host.
ENGINES = [pytest.param("hardware", marks=needs_kvm), pytest.param("shadow", marks=needs_kvm),
           "process"]


def fake_linux_kernel(path):
    """A bzImage that loads (a valid boot-protocol 2.12 header, a 64-bit entry) but whose code
    is all zeroes: for what hearth decides about a Linux kernel before it runs one."""
    import struct
    img = bytearray(8192)
    img[0x1f1] = 1                                   # setup_sects: 1 + the boot sector
    struct.pack_into("<H", img, 0x1fe, 0xaa55)       # boot_flag
    img[0x200:0x202] = bytes([0xeb, 0x6a])           # the jump: header up to 0x26c
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", img, 0x206, 0x020c)       # boot protocol 2.12
    img[0x211] = 1                                   # loadflags: LOADED_HIGH
    struct.pack_into("<H", img, 0x236, 1)            # xloadflags: XLF_KERNEL_64
    struct.pack_into("<Q", img, 0x258, 0x1000000)    # pref_address
    struct.pack_into("<I", img, 0x260, 0x100000)     # init_size
    path.write_bytes(bytes(img))
    return path


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_hearth(*args, timeout=60, input=None, env=None):
    """Run hearth with `args`; return exit code, stdout and stderr as text."""
    p = subprocess.run(
        [str(HEARTH), *map(str, args)],
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env,
    )
    return Run(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))


@pytest.fixture(scope="session", params=ENGINES)
def hearth(request):
    """A runner for the bundled guests, once per execution engine: every such test runs in
    both modes and must give the same results."""
    assert HEARTH.exists(), f"{HEARTH} not built (make all)"

    def run(*args, **kw):
        return run_hearth("--mmu", request.param, *args, **kw)

    run.mmu = request.param
    return run


@pytest.fixture(scope="session")
def cli():
    """hearth with no engine chosen: for what it refuses before any guest runs, on any host."""
    assert HEARTH.exists(), f"{HEARTH} not built (make all)"
    return run_hearth


@pytest.fixture(scope="session")
def guest():
    def path(name):
        p = GUESTS / f"{name}.elf"
        assert p.exists(), f"{p} not built (make guests)"
        return p

    return path


def host_mmu():
    """The host MMU as hearth reports it (first word after 'host mmu:')."""
    out = subprocess.run([str(HEARTH), "--version"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("host mmu:"):
            return line.split()[2]
    return "unknown"
