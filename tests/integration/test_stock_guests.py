"""Stock third-party guests from Debian's packages, fetched by apt (never committed): what a
user boots that no one here wrote.

memtest86+ (fetch_memtest.sh: the package's 64-bit image) boots through the Linux boot
protocol: hearth's boot_params and e820 map, its own GDT, paging and IDT, the PIT and the
serial console, on which it draws its screen with ANSI sequences. It runs until stopped, in
the hardware and shadow engines and, without KVM, in the process engine."""
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EXIT_TIMEOUT, HEARTH, KVM, NO_KVM_REASON, run_hearth

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


def check_memtest_screen(r):
    screen = ANSI.sub(" ", r.out)
    assert r.code == EXIT_TIMEOUT, r.err + screen[-2000:]
    assert "Memtest86+ v" in screen, screen[-2000:]
    # The memory it found is hearth's e820 map for --mem 64, and it is testing it.
    assert re.search(r"Memory\s*:\s*64MB", screen), screen[-2000:]
    assert re.search(r"\[\S+ of 63\.6MB\]", screen), screen[-2000:]
    assert re.search(r"Errors:\s*0\b", screen), screen[-2000:]
    assert not re.search(r"Errors:\s*[1-9]", screen), screen[-2000:]
    return screen


def boot_memtest(memtest, engine, seconds):
    return run_hearth("--engine", engine, "--kernel", memtest, "--mem", "64",
                      "--cmdline", "console=ttyS0,115200 keyboard=none",
                      "--timeout", str(seconds), timeout=120)


def boot_memtest_until(memtest, engine, pattern, limit, *extra):
    """Run memtest86+ (with `extra` options) until its screen shows `pattern` (or `limit`
    seconds pass: a nested, emulated host is many times slower), then stop it with SIGTERM.
    Returns (exit code, screen, stderr)."""
    p = subprocess.Popen([str(HEARTH), "--engine", engine, "--kernel", str(memtest), "--mem",
                          "64", "--cmdline", "console=ttyS0,115200 keyboard=none",
                          "--timeout", str(limit), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, deadline = b"", time.monotonic() + limit + 30
    os.set_blocking(p.stdout.fileno(), False)
    while time.monotonic() < deadline and p.poll() is None:
        if not select.select([p.stdout], [], [], 0.5)[0]:
            continue
        out += p.stdout.read() or b""
        if re.search(pattern, ANSI.sub(" ", out.decode(errors="replace"))):
            p.send_signal(signal.SIGTERM)
            break
    try:
        rest, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, err = p.communicate()
    out += rest or b""
    return p.returncode, ANSI.sub(" ", out.decode(errors="replace")), err.decode(errors="replace")


def check_memtest_progress(memtest, engine):
    """memtest86+ in `engine` until its first test's progress line, then SIGTERM: its
    banner, the memory it found, no errors, and the stop the test asked for."""
    code, screen, err = boot_memtest_until(memtest, engine, r"\[\S+ of 63\.6MB\]", 300)
    assert "Memtest86+ v" in screen, err + screen[-2000:]
    assert re.search(r"Memory\s*:\s*64MB", screen), screen[-2000:]
    assert re.search(r"\[\S+ of 63\.6MB\]", screen), err + screen[-2000:]
    assert not re.search(r"Errors:\s*[1-9]", screen), screen[-2000:]
    assert "stopped by signal 15" in err, (code, err)  # by the test, once it had seen that


@pytest.mark.skipif(not KVM, reason=NO_KVM_REASON)
def test_memtest86plus_draws_its_screen_and_tests_memory(memtest):
    screen = check_memtest_screen(boot_memtest(memtest, "hardware", 12))
    # It gets through more than one test in the time (#0 address walk, #3 moving
    # inversions...).
    assert len(set(re.findall(r"#(\d+)\s+\[", screen))) >= 2, screen[-2000:]


@pytest.mark.skipif(not KVM, reason=NO_KVM_REASON)
def test_memtest86plus_runs_in_the_shadow_engine(memtest):
    """The shadow engine (its kernel at CPL3 on hearth's shadow page tables, privileged
    instructions trapped and emulated, as on a PVM host) runs it too: its own GDT (0x08 32-bit
    code, 0x10 64-bit), its page tables, page 0, the PIT, the serial console. Under the nested
    suite's emulated CPU it gets to its first test's progress line in about 30 s."""
    check_memtest_progress(memtest, "shadow")


@pytest.mark.skipif(KVM, reason="the process engine's run of memtest86+ is checked where there "
                    "is no /dev/kvm (`make test`); with KVM the hardware engine's is, and a "
                    "nested host's one emulated CPU makes memtest's PIT-polled calibration "
                    "take minutes here")
def test_memtest86plus_runs_without_kvm_in_the_process_engine(memtest):
    """Not Linux (its kernel_version string says Memtest86+), so the process engine takes
    it: its own page tables (stores to them emulated), page 0 (read with `cmp`, emulated),
    the PIT, the serial console. Slower than with KVM: it stays in its first test here."""
    check_memtest_progress(memtest, "process")


@pytest.mark.skipif(KVM, reason="the process engine's run of memtest86+ is checked where there "
                    "is no /dev/kvm (`make test`); a nested host's one emulated CPU makes "
                    "memtest's PIT-polled calibration take minutes")
def test_memtest86plus_tests_memory_with_two_cpus_in_the_process_engine(memtest):
    """With two CPUs it parks them between tests with cli; hlt and wakes them with NMIs, and
    it relocates itself, page tables included: each CPU loads the copy's when it gets there
    (before 2026-12-08 the first hung for good, then the second stopped the VM). Here it
    runs its tests on both CPUs at once."""
    code, screen, err = boot_memtest_until(memtest, "process", r"Using:\s*All Cores", 120,
                                           "--vcpus", "2")
    assert re.search(r"SMP:\s*2T", screen), err + screen[-2000:]
    assert re.search(r"Using:\s*All Cores", screen), err + screen[-2000:]
    assert not re.search(r"Errors:\s*[1-9]", screen), screen[-2000:]
    assert "stopped by signal 15" in err, (code, err)


@pytest.mark.skipif(KVM, reason="checks a host without /dev/kvm; this one has it")
def test_memtest86plus_is_not_taken_for_linux(memtest):
    r = run_hearth("--kernel", memtest, "--mem", "64", "--timeout", "3", timeout=60)
    assert r.code == EXIT_TIMEOUT, r.err
    assert "engine: process (--engine auto)" in r.err
