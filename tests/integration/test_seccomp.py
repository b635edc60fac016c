"""Per-thread seccomp filters, seen from outside the process.

Every thread of a running hearth must be filtered (Seccomp: 2 in /proc/PID/task/*/status),
in both engines and with the API thread. A forbidden system call on each kind of thread must
end the process with the documented report and EXIT_SECCOMP; that call is made on purpose
only by the test-only build (build/hearth-seccomp-test, HEARTH_SECCOMP_TEST=<kind>), never by
the normal build, whatever its environment.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from api_client import Api
from conftest import BUILD, ENGINES, GUESTS, HEARTH

EXIT_SECCOMP = 246
SECCOMP_TEST = BUILD / "hearth-seccomp-test"


def thread_status(pid):
    """{tid: (name, seccomp mode)} for every thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = open(f"/proc/{pid}/task/{tid}/status").read()
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        out[int(tid)] = (fields["Name"].strip(), int(fields["Seccomp"]))
    return out


def wait_for(pred, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("mmu", ENGINES)
def test_every_thread_of_a_running_vm_is_filtered(tmp_path, mmu):
    # testguest halts for good (cli; hlt): the vCPU stays alive, the VM keeps running.
    console = tmp_path / "console"
    p = subprocess.Popen([str(HEARTH), "--mmu", mmu, "--kernel", str(GUESTS / "testguest.elf"),
                          "--cmdline", "halt", "--console", str(console), "--timeout", "30"],
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: console.exists() and b"testguest: ready" in console.read_bytes(),
                 "the guest")
        threads = thread_status(p.pid)
        names = sorted(n for n, _ in threads.values())
        assert any(n.startswith("hearth-vcpu") for n in names), names
        assert all(mode == 2 for _, mode in threads.values()), threads
        if mmu == "process":
            # The guest's own process: every thread filtered, from its first instruction.
            kids = [int(k) for t in os.listdir(f"/proc/{p.pid}/task")
                    for k in open(f"/proc/{p.pid}/task/{t}/children").read().split()]
            assert len(kids) == 1, kids
            guest = thread_status(kids[0])
            assert guest and all(mode == 2 for _, mode in guest.values()), guest
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


@pytest.fixture
def running_api(tmp_path):
    """hearth with its API, running testguest, which halts for good."""
    api = Api(tmp_path)
    try:
        api.put("/boot-source", {"kernel_image_path": str(GUESTS / "testguest.elf"),
                                 "boot_args": "halt"})
        assert api.put("/actions", {"action_type": "InstanceStart"})[0] == 204
        api.wait_stdout("testguest: ready")
        yield api
    finally:
        api.stop()


def test_every_thread_with_the_api_is_filtered(running_api):
    threads = thread_status(running_api.proc.pid)
    assert len(threads) >= 3, threads  # VMM, API, vCPU
    assert all(mode == 2 for _, mode in threads.values()), threads
    # A client still gets answers through the filtered API thread.
    assert running_api.get("/")[1]["state"] == "Running"


def test_stop_and_continue_does_not_kill_a_filtered_hearth(running_api):
    # A stopped and continued poll() comes back as restart_syscall, on every thread.
    for _ in range(3):
        os.kill(running_api.proc.pid, signal.SIGSTOP)
        time.sleep(0.05)
        os.kill(running_api.proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    assert running_api.proc.poll() is None, running_api.stderr()
    assert running_api.get("/")[1]["state"] == "Running"


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("seccomp") / "vm.json"
    cfg.write_text(json.dumps({"boot-source": {"kernel_image_path": str(GUESTS / "hello.elf")}}))
    return cfg


# The VMM and vCPU threads load their filters when a guest starts; the API thread's is on
# before the socket accepts anything, guest or not.
@pytest.mark.parametrize("kind", ["vmm", "api", "vcpu"])
def test_forbidden_call_kills_with_the_report(tmp_path, config_file, kind):
    assert SECCOMP_TEST.exists(), f"{SECCOMP_TEST} not built (make {SECCOMP_TEST})"
    boot = [] if kind == "api" else ["--config-file", str(config_file)]
    p = subprocess.run([str(SECCOMP_TEST), "--api-sock", str(tmp_path / "api.sock"), *boot],
                       env={**os.environ, "HEARTH_SECCOMP_TEST": kind},
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert p.returncode == EXIT_SECCOMP, p.stderr
    assert f"hearth: seccomp: thread {kind} made forbidden system call 41 (socket)" in p.stderr
    assert p.stderr.count("hearth: seccomp:") == 1, p.stderr


def test_normal_build_has_no_test_path_on_the_api_thread(tmp_path):
    api = Api(tmp_path, env={"HEARTH_SECCOMP_TEST": "api"})
    try:
        for _ in range(3):
            assert api.get("/")[0] == 200
        assert api.proc.poll() is None
    finally:
        api.stop()


def test_normal_build_has_no_test_path(tmp_path, config_file):
    # The same environment on the normal build: the guest runs and hearth answers.
    api = Api(tmp_path, "--config-file", config_file, env={"HEARTH_SECCOMP_TEST": "vcpu"})
    try:
        api.wait_stdout("hello from hearth")
        assert api.wait_state("Stopped")["exit"]["status"] == 0
        assert api.proc.poll() is None
    finally:
        api.stop()
