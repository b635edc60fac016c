"""The process engine (docs/PROCESS_ENGINE.md): what is its own. The bundled guests run in it
through the `hearth` fixture like in every engine; here are its limits and its sandbox."""
import os
import re
import resource
import signal
import subprocess
import time

import pytest

from api_client import Api
from conftest import EXIT_VMM_ERROR, GUESTS, HEARTH, run_hearth


def test_guest_ram_beyond_the_file_size_limit_is_a_clear_error(guest):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    p = subprocess.run([str(HEARTH), "--engine", "process", "--mem", "64", "--kernel",
                        guest("hello")], capture_output=True, text=True, timeout=30,
                       preexec_fn=limit)
    assert p.returncode == EXIT_VMM_ERROR, p.stderr
    assert "RLIMIT_FSIZE" in p.stderr and "64 MiB" in p.stderr, p.stderr


def test_a_guest_process_that_cannot_start_is_a_clear_error(guest):
    # The guest process needs its descriptors at fixed numbers up to 64: with fewer allowed,
    # neither the stub's execve nor its fallback (a copy of hearth) can start. hearth must end
    # with one error that says so, and no guest code runs.
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    p = subprocess.run([str(HEARTH), "--engine", "process", "--verbose", "--kernel",
                        guest("hello")], capture_output=True, text=True, timeout=30,
                       preexec_fn=limit)
    assert p.returncode == EXIT_VMM_ERROR, p.stderr
    assert "the guest process ended while it started" in p.stderr, p.stderr
    assert "starts as a copy of hearth" in p.stderr, p.stderr
    assert "hello from hearth" not in p.stdout


STATS = re.compile(
    r"process engine mmu: cache: (?P<hits>\d+) hits, (?P<misses>\d+) misses, (?P<fills>\d+) "
    r"fills, (?P<evictions>\d+) evictions, (?P<invalidations>\d+) invalidations, "
    r"(?P<flushes>\d+) flushes; (?P<ptwrites>\d+) page-table writes")


NOTIFY_EXITS = re.compile(r"process engine: (?P<exits>\d+) exits \([\d.]+ us in hearth each\), "
                          r"(?P<fast>\d+) queue notifies signalled by the guest process itself, "
                          r"(?P<trapped>\d+) trapped")
EMULATED = re.compile(r"(\d+) emulated accesses")


def test_counters_at_exit(guest):
    # Two roots back and forth: the second visit to a root is a cache hit, mapped again in
    # one reply; the remap's PTE stores are emulated and invalidate what they change.
    r = run_hearth("--engine", "process", "--verbose", "--kernel", guest("mmuguest"),
                   "--cmdline", "roots remap pf", timeout=30)
    assert r.code == 0, r.err
    m = STATS.search(r.err)
    assert m, r.err
    s = {k: int(v) for k, v in m.groupdict().items()}
    assert s["hits"] > 0 and s["misses"] >= 2 and s["fills"] > 0
    assert s["ptwrites"] >= 3 and s["invalidations"] > 0
    assert re.search(r"process engine: \d+ exits", r.err)


def test_get_root_shows_the_engine_and_its_counters(tmp_path):
    api = Api(tmp_path)
    try:
        assert api.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                           "mmu": "process"})[0] == 204
        assert api.put("/boot-source", {"kernel_image_path": str(GUESTS / "testguest.elf"),
                                        "boot_args": "print=up halt"})[0] == 204
        assert api.put("/actions", {"action_type": "InstanceStart"})[0] == 204
        api.wait_stdout("testguest: up")
        info = api.get("/")[1]
        assert info["engine"] == "process" and info["state"] == "Running"
        p = info["process"]
        assert p["fills"] > 0 and p["cache_misses"] >= 1 and p["guest_pid"] > 0
        assert p["traps"] > 0
        assert api.get("/vm/config")[1]["machine-config"]["mmu"] == "process"
    finally:
        api.stop()


def _memfd_noexec():
    try:
        with open("/proc/sys/vm/memfd_noexec") as f:
            return f.read().strip()
    except OSError:
        return None


def test_guest_process_starts_where_memfds_may_not_be_executed(guest, tmp_path):
    # hearth executes its stub from a memfd; where the host forbids that
    # (vm.memfd_noexec = 2), the guest process starts as a copy of hearth instead.
    old = _memfd_noexec()
    if old is None or os.geteuid() != 0:
        pytest.skip("needs vm.memfd_noexec (Linux 6.3+) and root to change it")
    normal = run_hearth("--engine", "process", "--verbose", "--kernel", guest("hello"),
                        timeout=30)
    assert normal.code == 0 and "hello from hearth" in normal.out, normal.err
    assert "execve of the stub failed" not in normal.err
    try:
        with open("/proc/sys/vm/memfd_noexec", "w") as f:
            f.write("2")
    except OSError as e:
        pytest.skip(f"vm.memfd_noexec cannot be changed here: {e}")
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (1 << 20))
    try:
        r = run_hearth("--engine", "process", "--verbose", "--kernel", guest("hello"),
                       timeout=30)
        # the copy of hearth keeps the notify eventfds too: the stub signals them
        b = run_hearth("--engine", "process", "--verbose", "--kernel", guest("blkbench"),
                       "--drive", img, "--cmdline", "mib=1 bs=64 rand=50 noirq", timeout=30)
    finally:
        with open("/proc/sys/vm/memfd_noexec", "w") as f:
            f.write(old)
    assert r.code == 0 and "hello from hearth" in r.out, r.err
    assert "execve of the stub failed" in r.err and "a copy of hearth" in r.err, r.err
    assert b.code == 0 and "blkbench: done" in b.out, (b.out, b.err)
    assert "a copy of hearth" in b.err, b.err
    m = NOTIFY_EXITS.search(b.err)
    assert m and int(m["fast"]) >= 50 and int(m["trapped"]) <= 2, b.err




def test_guests_run_where_the_first_64_kib_cannot_be_mapped(guest):
    """vm.mmap_min_addr = 65536, Debian's and Ubuntu's default: no page below 64 KiB can be
    mapped by the guest process (it holds no capability that passes the limit, even when
    hearth is root), and the boot structures are there. hearth emulates the guest's accesses
    there, as on page 0."""
    path = "/proc/sys/vm/mmap_min_addr"
    try:
        with open(path) as f:
            old = f.read().strip()
    except OSError:
        pytest.skip("no vm.mmap_min_addr")
    if os.geteuid() != 0:
        pytest.skip("needs root to change vm.mmap_min_addr")
    try:
        with open(path, "w") as f:
            f.write("65536")
    except OSError as e:
        pytest.skip(f"vm.mmap_min_addr cannot be changed here: {e}")
    try:
        hello = run_hearth("--engine", "process", "--verbose", "--kernel", guest("hello"),
                           timeout=30)
        mmu = run_hearth("--engine", "process", "--kernel", guest("mmuguest"), timeout=60)
        smp = run_hearth("--engine", "process", "--kernel", guest("smpguest"), "--vcpus", "2",
                         "--cmdline", "classic page0=2000", "--timeout", "60", timeout=90)
        hostile = run_hearth("--engine", "process", "--kernel", guest("hostileguest"),
                             "--cmdline", "hostcalls", timeout=30)
        # the Linux 64-bit entry's stack (0x8ff0) moves above the limit: 0x9fbf0
        stack = run_hearth("--engine", "process", "--kernel", guest("stackguest"), timeout=30)
    finally:
        with open(path, "w") as f:
            f.write(old)
    assert hello.code == 0 and "hello from hearth: 127 MiB RAM" in hello.out, hello.err
    # its start info, memory map and command line (0x7000, 0x8000) are read by emulation
    m = EMULATED.search(hello.err)
    assert m and int(m[1]) >= 3, hello.err
    assert mmu.code == 0 and "mmuguest: avx" in mmu.out, (mmu.out, mmu.err)
    assert smp.code == 0 and "smpguest: 2 cpus up (apic ids 0 1)" in smp.out, (smp.out,
                                                                                  smp.err)
    assert hostile.code == 0, hostile.err
    assert "hostileguest: hostcalls with EFER.SCE entered=4 rax=-38" in hostile.out
    assert stack.code == 0x9f, stack.err


def test_queue_notifies_are_signalled_by_the_guest_process_without_exits(guest, tmp_path):
    # blkbench, noirq: each request is one QueueNotify store by the same instruction and no
    # other device access. The first store traps and hearth emulates it; the stub signals
    # every later one itself (the ioeventfd of this engine), with no exit.
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (1 << 20))
    seed = 7
    r = run_hearth("--engine", "process", "--verbose", "--kernel", guest("blkbench"),
                   "--drive", img, "--cmdline", f"mib=1 bs=4 rand=600 seed={seed} noirq",
                   timeout=60)
    assert r.code == 0 and "blkbench: done" in r.out, (r.out, r.err)
    # the stamps came back (the guest checks them) and are on disk
    data = img.read_bytes()
    for block in range(len(data) // 4096):
        want = (block * 0x9e3779b97f4a7c15 ^ seed) & (2**64 - 1)
        assert int.from_bytes(data[block * 4096:block * 4096 + 8], "little") == want, block
    reqs = sum(int(n) for n in re.findall(r"phase=\w+ bytes=\d+ reqs=(\d+)", r.out))
    assert reqs == 256 + 256 + 600, r.out
    m = NOTIFY_EXITS.search(r.err)
    assert m, r.err
    fast, trapped, exits = int(m["fast"]), int(m["trapped"]), int(m["exits"])
    emulated = int(EMULATED.search(r.err)[1])
    # one notify per request and one for the flush: the first by each instruction that
    # notifies traps (hearth emulates it and teaches the stub; there are two: blkbench's
    # requests and, where the compiler inlined the runtime's register write, the flush's),
    # the stub signals all the others with no exit
    assert fast + trapped == reqs + 1, r.err
    assert 1 <= trapped <= 2, r.err
    # so the exits are the others only: those of the driver's set-up, its polling reads of
    # Status and the PIT calibration, each an emulated device access or port I/O
    assert exits >= emulated and emulated < reqs, r.err


def test_queue_notifies_in_get_root(tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (1 << 20))
    api = Api(tmp_path)
    try:
        assert api.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                           "mmu": "process"})[0] == 204
        assert api.put("/boot-source", {"kernel_image_path": str(GUESTS / "devguest.elf"),
                                        "boot_args": "blk-seq=0"})[0] == 204
        assert api.put("/drives/d0", {"drive_id": "d0", "path_on_host": str(img),
                                      "is_root_device": False,
                                      "is_read_only": False})[0] == 204
        assert api.put("/actions", {"action_type": "InstanceStart"})[0] == 204
        # blk-seq: a write and a flush per sector, ~20 ms apart: the VM runs meanwhile
        api.wait_stdout("devguest: blk 0 seq 5")
        p = api.get("/")[1]["process"]
        # all but the first notify (of the 12 or more so far) signalled by the guest process
        assert p["fast_notifies"] >= 11 and 1 <= p["trapped_notifies"] <= 2, p
    finally:
        api.stop()


def _cpus_by_apic_id():
    """{initial APIC ID: CPU} from /proc/cpuinfo."""
    out, cpu = {}, None
    for line in open("/proc/cpuinfo"):
        key, _, val = line.partition(":")
        if key.strip() == "processor":
            cpu = int(val)
        elif key.strip() == "apicid" and cpu is not None:
            out.setdefault(int(val), cpu)
    return out


def test_each_guest_thread_runs_on_the_cpu_with_its_apic_id(tmp_path):
    # cpuid is not trapped in this engine: a guest reads the APIC ID of the host CPU its
    # thread is on (on hosts whose user-mode cpuid reports the kernel's APIC IDs). hearth
    # pins vCPU k's guest thread where the APIC ID is k, and its own thread elsewhere.
    by_apic = _cpus_by_apic_id()
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2 or not all(by_apic.get(k) in allowed for k in (0, 1)):
        pytest.skip("needs two allowed CPUs with APIC IDs 0 and 1")
    console = tmp_path / "console"
    p = subprocess.Popen([str(HEARTH), "--engine", "process", "--vcpus", "2", "--kernel",
                          str(GUESTS / "testguest.elf"), "--cmdline", "halt", "--console",
                          str(console), "--timeout", "30"],
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (console.exists() and b"testguest: ready" in console.read_bytes()):
            assert time.monotonic() < deadline, "the guest did not start"
            time.sleep(0.01)
        kids = [int(k) for t in os.listdir(f"/proc/{p.pid}/task")
                for k in open(f"/proc/{p.pid}/task/{t}/children").read().split()]
        assert len(kids) == 1, kids
        guest_tids = sorted(int(t) for t in os.listdir(f"/proc/{kids[0]}/task"))
        assert guest_tids[0] == kids[0] and len(guest_tids) == 2, guest_tids
        # vCPU 0 is the guest process's first thread, vCPU 1 the one it starts next.
        for vcpu, tid in enumerate(guest_tids):
            assert os.sched_getaffinity(tid) == {by_apic[vcpu]}, (vcpu, tid)
        vcpu_threads = [int(t) for t in os.listdir(f"/proc/{p.pid}/task")
                        if open(f"/proc/{p.pid}/task/{t}/comm").read().startswith("hearth-vcpu")]
        assert len(vcpu_threads) == 2
        for tid in vcpu_threads:
            vcpu = int(open(f"/proc/{p.pid}/task/{tid}/comm").read().strip()[len("hearth-vcpu"):])
            assert os.sched_getaffinity(tid) != {by_apic[vcpu]}, (vcpu, tid)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


def test_kvmclock_for_guests_that_find_kvm(guest):
    # On a KVM guest without nested virtualization (no /dev/kvm), the guest's cpuid reaches
    # the outer KVM and finds kvmclock: hearth writes its records. 20M TSC cycles apart, the
    # clock advances by 20M ticks at the TSC's rate (0.1 to 10 GHz: 2 ms to 200 ms).
    before = time.time()
    r = run_hearth("--engine", "process", "--kernel", guest("testguest"), "--cmdline",
                   "kvmclock", timeout=30)
    after = time.time()
    assert r.code == 0, r.out + r.err
    m = re.search(r"kvmclock version=(\d+) flags=(\d+) t1=(\d+) t2=(\d+) wall=(\d+)", r.out)
    assert m, r.out
    version, flags, t1, t2, wall = map(int, m.groups())
    assert version > 0 and version % 2 == 0
    assert flags & 1  # PVCLOCK_TSC_STABLE_BIT: the TSC is the host's
    assert 0 < t1 < t2 < (after - before) * 1e9
    assert 2e6 <= t2 - t1 <= 2e8
    assert before - 2 <= wall <= after + 1  # the VM's start, in seconds since the epoch
