"""A hostile guest (resources/guests/hostileguest.c) in every engine: the host's system calls
made as the guest's own, jumps into hearth's stub with crafted registers, writes over the
stub's slot, a loop with interrupts off. Nothing may happen on the host (no file, no signal,
no socket), hearth stays responsive, and the VM ends as hardware would have ended it, or,
where the guest broke hearth's own code in its process (the process engine), with one clear
line."""
import os
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
        assert os.listdir(f"/proc/{g}/fd") == ["3"]
        assert os.readlink(f"/proc/{g}/fd/3").startswith("/memfd:hearth-guest-ram")
        for t in os.listdir(f"/proc/{g}/task"):
            assert "Seccomp:\t2" in open(f"/proc/{g}/task/{t}/status").read()
        assert not target.exists() and victim.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) is not None


@pytest.mark.parametrize("how", ["socket", "kill", "mmap", "entry"])
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
