"""A hostile guest (resources/guests/hostileguest.c) in every engine: the host's system calls
made as the guest's own, jumps into hearth's stub with crafted registers, writes over the
stub's slot, a loop with interrupts off. Nothing may happen on the host (no file, no signal,
no socket), hearth stays responsive, and the VM ends as hardware would have ended it, or,
where the guest broke hearth's own code in its process (the process engine), with one clear
line."""
import os
import re
import signal
import subprocess
import time

import pytest

from api_client import Api
from conftest import ENGINES, EXIT_TIMEOUT, EXIT_VMM_ERROR, GUESTS, HEARTH, run_hearth

EXIT_EXCEPTION = 3  # hostileguest: an exception it did not ask for


@pytest.fixture
def victim():
    """A host process the guest tries to kill."""
    p = subprocess.Popen(["sleep", "600"])
    yield p
    p.kill()
    p.wait()


def children(pid):
    kids = []
    for t in os.listdir(f"/proc/{pid}/task"):
        kids += [int(k) for k in open(f"/proc/{pid}/task/{t}/children").read().split()]
    return kids


def test_host_system_calls_stay_in_the_guest(hearth, guest, tmp_path, victim):
    target = tmp_path / "created-by-guest"
    r = hearth("--kernel", guest("hostileguest"), "--cmdline",
               f"path={target} pid={victim.pid} hostcalls", timeout=30)
    assert r.code == 0, r.err
    # As on hardware: syscall with EFER.SCE clear is #UD, int $0x80 reaches the guest's IDT.
    assert "hostileguest: hostcalls ud=4 int80=4" in r.out, r.out
    assert not target.exists()
    assert victim.poll() is None, "the guest killed a host process"


def test_guest_process_has_nothing_but_guest_ram(guest, tmp_path, victim):
    """The process engine: after the host calls, the guest's process holds no new
    descriptor (no socket, no file) and is filtered on every thread."""
    target = tmp_path / "created-by-guest"
    console = tmp_path / "console"
    p = subprocess.Popen([str(HEARTH), "--engine", "process", "--kernel",
                          str(guest("hostileguest")), "--cmdline",
                          f"path={target} pid={victim.pid} hostcalls halt", "--console",
                          str(console), "--timeout", "30"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (console.exists() and b"hostcalls ud=4" in console.read_bytes()):
            assert time.monotonic() < deadline and p.poll() is None, p.stderr.read()
            time.sleep(0.01)
        (g,) = children(p.pid)
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{g}/fd"))
        # guest RAM, and the queue-notify eventfds from 6 on (the stub signals them)
        assert fds == [3] + list(range(6, 6 + len(fds) - 1)), fds
        assert os.readlink(f"/proc/{g}/fd/3").startswith("/memfd:hearth-guest-ram")
        for fd in fds[1:]:
            assert os.readlink(f"/proc/{g}/fd/{fd}") == "anon_inode:[eventfd]"
        for t in os.listdir(f"/proc/{g}/task"):
            assert "Seccomp:\t2" in open(f"/proc/{g}/task/{t}/status").read()
        assert not target.exists() and victim.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) is not None


@pytest.mark.parametrize("how", ["socket", "kill", "mmap", "write", "entry"])
def test_jumps_into_the_stub_end_the_vm_and_nothing_else(hearth, guest, victim, how):
    r = hearth("--kernel", guest("hostileguest"), "--cmdline",
               f"pid={victim.pid} stubjump={how}", timeout=30)
    if hearth.mmu == "process":
        # hearth's code runs in the guest process there: the jump gets as far as the
        # guest process's filter, and the VM ends with one line naming the slot.
        assert r.code == EXIT_VMM_ERROR, (r.out, r.err)
        assert "in the slot hearth reserves" in r.err, r.err
    else:
        # Nothing is mapped there: a #PF, delivered to the guest.
        assert r.code == EXIT_EXCEPTION, (r.out, r.err)
        assert "hostileguest: #PF cr2=0x7e00000" in r.out, r.out
    assert victim.poll() is None


@pytest.mark.parametrize("what", ["shared", "stacks", "code"])
def test_writes_over_the_slot_hurt_only_the_guest(hearth, guest, victim, what):
    r = hearth("--kernel", guest("hostileguest"), "--cmdline",
               f"scribble={what} hostcalls pid={victim.pid}", timeout=30)
    if hearth.mmu != "process" or what == "code":
        # Not mapped, or mapped read-only: a #PF, as hardware gives for an unmapped page.
        assert r.code == EXIT_EXCEPTION, (r.out, r.err)
        assert "hostileguest: #PF cr2=0x7e00" in r.out, r.out
    else:
        # The guest broke hearth's records or stacks in its own process: the VM ends.
        assert r.code == EXIT_VMM_ERROR, (r.out, r.err)
        lines = [ln for ln in r.err.splitlines() if "process engine:" in ln]
        assert len(lines) == 1, r.err
    assert victim.poll() is None


def test_forged_fast_notify_entries_hurt_only_the_guest(guest, tmp_path, victim):
    """The process engine's stub signals a queue notify it has learned without an exit
    (stub.h: struct stub_fast_notify). The table is in the guest's reach: garbage, forged
    fields, wild queue numbers and entries for other instructions must neither reach the
    host nor break the device: every request after each completes."""
    sector0 = bytes(range(256)) * 2
    img = tmp_path / "disk.img"
    img.write_bytes(sector0 + b"\0" * ((1 << 20) - 512))
    target = tmp_path / "created-by-guest"
    r = run_hearth("--engine", "process", "--verbose", "--kernel", guest("hostileguest"),
                   "--drive", img, "--cmdline",
                   f"path={target} pid={victim.pid} notify hostcalls", timeout=60)
    assert r.code == 0, (r.out, r.err)
    m = re.search(r"hostileguest: notify ok fast=(\d+) forged=(\d+) refused=(\d+)", r.out)
    assert m, r.out
    # the stub signalled learned notifies (and the one forged entry that names a notify
    # eventfd), and refused the one that names guest RAM
    assert int(m[1]) >= 4 and m[2] == "1" and m[3] == "1", r.out
    fast = re.search(r"process engine: \d+ exits .*, (\d+) queue notifies", r.err)
    assert fast and int(fast[1]) == int(m[1]), r.err
    assert "hostileguest: hostcalls ud=4 int80=4" in r.out
    assert img.read_bytes()[:512] == sector0
    assert not target.exists() and victim.poll() is None


@pytest.mark.parametrize("mmu", ENGINES)
def test_a_loop_with_interrupts_off_pauses_resumes_and_stops(tmp_path, mmu):
    api = Api(tmp_path)
    try:
        assert api.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                           "mmu": mmu})[0] == 204
        assert api.put("/boot-source", {"kernel_image_path": str(GUESTS / "testguest.elf"),
                                        "boot_args": "print=spinning spin"})[0] == 204
        assert api.put("/actions", {"action_type": "InstanceStart"})[0] == 204
        api.wait_stdout("testguest: spinning")
        for _ in range(3):
            assert api.patch("/vm", {"state": "Paused"})[0] == 204
            assert api.get("/")[1]["state"] == "Paused"
            assert api.patch("/vm", {"state": "Resumed"})[0] == 204
            assert api.get("/")[1]["state"] == "Running"
        api.proc.send_signal(signal.SIGTERM)
        assert api.proc.wait(10) is not None
    finally:
        api.stop()


@pytest.mark.parametrize("mmu", ENGINES)
def test_a_loop_with_interrupts_off_ends_at_the_timeout(guest, mmu):
    t0 = time.monotonic()
    r = run_hearth("--engine", mmu, "--kernel", guest("testguest"), "--cmdline", "spin",
                   "--timeout", "1", timeout=30)
    assert r.code == EXIT_TIMEOUT, r.err
    assert time.monotonic() - t0 < 10
