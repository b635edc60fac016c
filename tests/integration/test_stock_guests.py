"""Stock third-party guests from Debian's packages, fetched by apt (never committed): what a
user boots that no one here wrote.

memtest86+ (fetch_memtest.sh: the package's 64-bit image) boots through the Linux boot
protocol: hearth's boot_params and e820 map, its own GDT, paging and IDT, the PIT and the
serial console, on which it draws its screen with ANSI sequences. It runs until stopped."""
import re
import subprocess
from pathlib import Path

import pytest

from conftest import EXIT_TIMEOUT, EXIT_USAGE, EXIT_VMM_ERROR, KVM, NO_KVM_REASON, run_hearth

FETCH = Path(__file__).resolve().with_name("fetch_memtest.sh")
FETCH_NO_REGISTRY = 2
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="session")
def memtest():
    p = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, timeout=600)
    if p.returncode == FETCH_NO_REGISTRY:
        pytest.skip(f"Debian's package registry cannot be reached: {p.stderr.strip()}")
    assert p.returncode == 0, f"{FETCH.name} failed ({p.returncode}):\n{p.stderr}"
    return Path(p.stdout.strip())


@pytest.mark.skipif(not KVM, reason=NO_KVM_REASON)
def test_memtest86plus_draws_its_screen_and_tests_memory(memtest):
    r = run_hearth("--engine", "hardware", "--kernel", memtest, "--mem", "64",
                   "--cmdline", "console=ttyS0,115200 keyboard=none", "--timeout", "12",
                   timeout=120)
    screen = ANSI.sub(" ", r.out)
    assert r.code == EXIT_TIMEOUT, r.err + screen[-2000:]
    assert "Memtest86+ v" in screen, screen[-2000:]
    # The memory it found is hearth's e820 map for --mem 64, and it is testing it.
    assert re.search(r"Memory\s*:\s*64MB", screen), screen[-2000:]
    assert re.search(r"\[\S+ of 63\.6MB\]", screen), screen[-2000:]
    # It gets through more than one test in the time (#0 address walk, #3 moving
    # inversions...), and finds no errors.
    assert len(set(re.findall(r"#(\d+)\s+\[", screen))) >= 2, screen[-2000:]
    assert re.search(r"Errors:\s*0\b", screen), screen[-2000:]
    assert not re.search(r"Errors:\s*[1-9]", screen), screen[-2000:]


@pytest.mark.skipif(KVM, reason="checks a host without /dev/kvm; this one has it")
def test_memtest86plus_without_kvm_gets_a_clear_refusal(memtest):
    r = run_hearth("--kernel", memtest, "--mem", "64", "--timeout", "5", timeout=60)
    assert r.code == EXIT_VMM_ERROR, r.err
    assert "bzImage" in r.err and "/dev/kvm" in r.err
    r = run_hearth("--engine", "process", "--kernel", memtest, "--timeout", "5", timeout=60)
    assert r.code == EXIT_USAGE and "needs KVM" in r.err, r.err
