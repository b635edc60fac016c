"""Snapshots (docs/SNAPSHOTS.md): PUT /snapshot/create of a paused VM, PUT /snapshot/load in a
fresh hearth, in every engine this host has. Round trips keep the guest's state (no tick lost
or repeated, disk writes go on, the console works); bad state and memory files are refused
with a 400 and leave the process as it was; diff snapshots hold only what changed."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from api_client import Api
from conftest import ENGINES, EXIT_USAGE, EXIT_VMM_ERROR, GUESTS, ROOT, run_hearth

MERGE = ROOT / "tools" / "snapshot-merge"


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


class Vm:
    """A hearth with its API in its own directory."""

    def __init__(self, tmp_path, name, *args):
        self.dir = tmp_path / name
        self.dir.mkdir()
        self.api = Api(self.dir, *args)

    def boot(self, engine, kernel, args, drives=(), mem=64, dirty=False, vcpus=1):
        a = self.api
        assert a.put("/machine-config", {"vcpu_count": vcpus, "mem_size_mib": mem, "mmu": engine,
                                         "track_dirty_pages": dirty})[0] == 204
        for i, d in enumerate(drives):
            assert a.put(f"/drives/d{i}", {"drive_id": f"d{i}", "path_on_host": str(d),
                                           "is_root_device": False,
                                           "is_read_only": False})[0] == 204
        assert a.put("/boot-source", {"kernel_image_path": str(GUESTS / f"{kernel}.elf"),
                                      "boot_args": args})[0] == 204
        status, body = a.put("/actions", {"action_type": "InstanceStart"})
        assert status == 204, body

    def snapshot(self, state, mem, kind="Full"):
        assert self.api.patch("/vm", {"state": "Paused"})[0] == 204
        status, body = self.api.put("/snapshot/create", {"snapshot_path": str(state),
                                                         "mem_file_path": str(mem),
                                                         "snapshot_type": kind})
        assert status == 204, body

    def load(self, state, mem, resume=True, **extra):
        return self.api.put("/snapshot/load", {
            "snapshot_path": str(state),
            "mem_backend": {"backend_type": "File", "backend_path": str(mem)},
            "resume_vm": resume, **extra})

    def stop(self):
        return self.api.stop()


def ticks(text):
    return [int(t) for t in re.findall(r"testguest: tick (\d+)", text)]


@pytest.mark.parametrize("vcpus", [1, 2])
def test_ticks_continue_with_none_lost_or_repeated(tmp_path, engine, vcpus):
    a = Vm(tmp_path, "a")
    a.boot(engine, "testguest", "ticks=30", vcpus=vcpus)
    a.api.wait_stdout("testguest: tick 5")
    a.snapshot(tmp_path / "s.state", tmp_path / "s.mem")
    before = ticks(a.api.stdout())
    info = a.api.get("/")[1]
    assert info["state"] == "Paused"
    a.stop()
    b = Vm(tmp_path, "b")
    try:
        status, body = b.load(tmp_path / "s.state", tmp_path / "s.mem")
        assert status == 204, body
        b.api.wait_stdout("testguest: tick 30", timeout=30)
        info = b.api.wait_state("Stopped")
        assert info["exit"]["status"] == 0 and info["engine"] == engine
        after = ticks(b.api.stdout())
        assert before + after == list(range(1, 31)), (before, after)
        cfg = b.api.get("/vm/config")[1]
        assert cfg["machine-config"]["mem_size_mib"] == 64
        assert cfg["boot-source"]["boot_args"] == "ticks=30"
    finally:
        b.stop()


def rounds(text):
    return [int(t) for t in re.findall(r"smpguest: round (\d+) ok", text)]


@pytest.mark.parametrize("roots", ["shared", "ownroot"])
@pytest.mark.parametrize("vcpus", [2, 4])
def test_running_application_processors_go_on_after_restore(tmp_path, engine, vcpus, roots):
    # smpguest's APs are up and answering IPIs, round after round, when the VM is paused and
    # snapshotted; restored in a fresh hearth, every AP answers the rest of the rounds. With
    # `ownroot` each AP runs on a root of its own (in the process engine, aliases of the
    # BSP's, which the restored VM, starting with nothing mapped, must take again).
    if engine == "shadow":
        pytest.skip("the shadow engine parks application processors")
    a = Vm(tmp_path, "a")
    a.boot(engine, "smpguest", "rounds=40" + (" ownroot" if roots == "ownroot" else ""),
           vcpus=vcpus)
    a.api.wait_stdout("smpguest: round 5 ok", timeout=30)
    a.snapshot(tmp_path / "s.state", tmp_path / "s.mem")
    before = rounds(a.api.stdout())
    assert f"smpguest: {vcpus} cpus up" in a.api.stdout()
    a.stop()
    b = Vm(tmp_path, "b")
    try:
        status, body = b.load(tmp_path / "s.state", tmp_path / "s.mem")
        assert status == 204, body
        b.api.wait_stdout("smpguest: ipi ping-pong ok", timeout=60)
        info = b.api.wait_state("Stopped")
        assert info["exit"]["status"] == 0, (b.api.stdout(), b.api.stderr())
        after = rounds(b.api.stdout())
        assert before + after == list(range(1, 41)), (before, after)
        assert f"smpguest: ipi ping-pong ok (40 rounds with {vcpus - 1} aps)" in b.api.stdout()
    finally:
        b.stop()


def test_load_paused_then_resume(tmp_path, engine):
    a = Vm(tmp_path, "a")
    a.boot(engine, "testguest", "ticks=8")
    a.api.wait_stdout("testguest: tick 2")
    a.snapshot(tmp_path / "s.state", tmp_path / "s.mem")
    a.stop()
    b = Vm(tmp_path, "b")
    try:
        assert b.load(tmp_path / "s.state", tmp_path / "s.mem", resume=False)[0] == 204
        assert b.api.get("/")[1]["state"] == "Paused"
        out = b.api.stdout()
        time.sleep(0.3)
        assert b.api.stdout() == out, "a restored VM ran while paused"
        assert b.api.patch("/vm", {"state": "Resumed"})[0] == 204
        b.api.wait_stdout("testguest: tick 8")
        # Only a fresh hearth loads: a second load is refused.
        status, body = b.load(tmp_path / "s.state", tmp_path / "s.mem")
        assert status == 400 and "fresh" in body["fault_message"]
    finally:
        b.stop()


def seq_sector(s):
    return bytes((s * 29 + i * 3 + 0x11) & 0xff for i in range(512))


def test_disk_writes_go_on_after_restore(tmp_path, engine):
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * (1 << 20))
    a = Vm(tmp_path, "a")
    a.boot(engine, "devguest", "blk-seq=0", drives=[disk])
    a.api.wait_stdout("devguest: blk 0 seq 8")
    a.snapshot(tmp_path / "s.state", tmp_path / "s.mem")
    a.stop()
    b = Vm(tmp_path, "b")
    try:
        status, body = b.load(tmp_path / "s.state", tmp_path / "s.mem")
        assert status == 204, body
        b.api.wait_stdout("devguest: blk 0 seq done", timeout=60)
        assert b.api.wait_state("Stopped")["exit"]["status"] == 0
    finally:
        b.stop()
    data = disk.read_bytes()
    for s in range(64):
        assert data[s * 512:(s + 1) * 512] == seq_sector(s), f"sector {s}"
    assert data[64 * 512:] == b"\0" * (len(data) - 64 * 512)


def test_cli_and_config_file_restore(tmp_path, engine):
    a = Vm(tmp_path, "a")
    a.boot(engine, "testguest", "ticks=6 exit=7")
    a.api.wait_stdout("testguest: tick 2")
    a.snapshot(tmp_path / "s.state", tmp_path / "s.mem")
    a.stop()
    r = run_hearth("--snapshot-load", tmp_path / "s.state", "--snapshot-mem", tmp_path / "s.mem",
                   timeout=60)
    assert r.code == 7, r.err
    assert ticks(r.out) == [3, 4, 5, 6], r.out
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({"snapshot-load": {
        "snapshot_path": str(tmp_path / "s.state"), "mem_file_path": str(tmp_path / "s.mem"),
        "resume_vm": True}}))
    r = run_hearth("--config-file", cfg, "--no-api", timeout=60)
    assert r.code == 7, r.err
    assert ticks(r.out) == [3, 4, 5, 6], r.out


def test_bad_snapshots_are_refused_and_change_nothing(tmp_path):
    a = Vm(tmp_path, "a")
    a.boot("process", "testguest", "ticks=4")
    a.api.wait_stdout("testguest: tick 1")
    state, mem = tmp_path / "s.state", tmp_path / "s.mem"
    a.snapshot(state, mem)
    a.stop()
    good = state.read_bytes()
    cases = []
    p = tmp_path / "truncated"
    p.write_bytes(good[:len(good) // 2])
    cases.append((p, mem, "truncated or damaged"))
    p = tmp_path / "flipped"
    b = bytearray(good)
    b[len(b) // 2] ^= 0x40
    p.write_bytes(bytes(b))
    cases.append((p, mem, "checksum"))
    p = tmp_path / "version"
    b = bytearray(good)
    b[8] = 99
    p.write_bytes(bytes(b))
    cases.append((p, mem, "version 99"))
    cases.append((tmp_path / "missing", mem, "No such file"))
    cases.append((mem, mem, "not a hearth snapshot"))
    short = tmp_path / "short.mem"
    short.write_bytes(b"\0" * 4096)
    cases.append((state, short, "not this snapshot's memory"))
    vm = Vm(tmp_path, "b")
    try:
        for st, me, needle in cases:
            status, body = vm.load(st, me)
            assert status == 400, (st, body)
            assert needle in body["fault_message"], (needle, body)
            assert vm.api.get("/")[1]["state"] == "Not started"
            assert vm.api.proc.poll() is None
        # The process is as it was: the good snapshot loads and runs.
        assert vm.load(state, mem)[0] == 204
        vm.api.wait_stdout("testguest: tick 4")
    finally:
        vm.stop()


def test_snapshot_needs_a_paused_vm_and_a_diff_needs_tracking(tmp_path):
    a = Vm(tmp_path, "a")
    try:
        a.boot("process", "testguest", "ticks=1000")
        a.api.wait_stdout("testguest: tick 1")
        status, body = a.api.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s"),
                                                      "mem_file_path": str(tmp_path / "m")})
        assert status == 400 and "Paused" in body["fault_message"]
        assert a.api.patch("/vm", {"state": "Paused"})[0] == 204
        status, body = a.api.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s"),
                                                      "mem_file_path": str(tmp_path / "m"),
                                                      "snapshot_type": "Diff"})
        assert status == 400 and "track_dirty_pages" in body["fault_message"]
        status, body = a.api.put("/snapshot/create", {
            "snapshot_path": str(tmp_path / "no" / "s"), "mem_file_path": str(tmp_path / "m")})
        assert status == 400 and "No such file" in body["fault_message"]
        assert a.api.patch("/vm", {"state": "Resumed"})[0] == 204
        assert a.api.get("/")[1]["state"] == "Running"
    finally:
        a.stop()


def allocated(path):
    return os.stat(path).st_blocks * 512


def test_diff_snapshot_is_small_and_merges_into_the_full_state(tmp_path, engine):
    a = Vm(tmp_path, "a")
    try:
        a.boot(engine, "testguest", "ticks=1000", mem=128, dirty=True)
        a.api.wait_stdout("testguest: tick 2")
        a.snapshot(tmp_path / "base.state", tmp_path / "base.mem")
        assert a.api.patch("/vm", {"state": "Resumed"})[0] == 204
        n = len(ticks(a.api.stdout()))
        a.api.wait_stdout(f"testguest: tick {n + 2}")
        a.snapshot(tmp_path / "d.state", tmp_path / "d.mem", "Diff")
        # the same moment, whole (the VM stayed paused)
        status, body = a.api.put("/snapshot/create", {
            "snapshot_path": str(tmp_path / "f.state"),
            "mem_file_path": str(tmp_path / "f.mem")})
        assert status == 204, body
    finally:
        a.stop()
    # The diff holds the pages written since the base: the guest's stack and console buffer,
    # and in the hardware engine its three page-table pages too, which KVM's dirty log counts
    # as written once the CPU walks them (nested paging treats guest page-table reads as
    # writes: AMD NPT, Intel EPT with A/D bits).
    slack = 3 * 4096 if engine == "hardware" else 0
    assert (allocated(tmp_path / "d.mem") - slack) * 4 < allocated(tmp_path / "f.mem"), \
        (allocated(tmp_path / "d.mem"), allocated(tmp_path / "f.mem"))
    merged = tmp_path / "merged.mem"
    shutil.copyfile(tmp_path / "base.mem", merged)
    subprocess.run([str(MERGE), str(merged), str(tmp_path / "d.mem")], check=True)
    assert merged.read_bytes() == (tmp_path / "f.mem").read_bytes()
    b = Vm(tmp_path, "b")
    try:
        assert b.load(tmp_path / "d.state", merged)[0] == 204
        b.api.wait_stdout(f"testguest: tick {n + 5}")
    finally:
        b.stop()


def private_kib(pid):
    """Private memory of a process and its children (the process engine's guest process)."""
    pids = [pid]
    for t in os.listdir(f"/proc/{pid}/task"):
        pids += [int(k) for k in open(f"/proc/{pid}/task/{t}/children").read().split()]
    total = 0
    for p in pids:
        for line in open(f"/proc/{p}/smaps_rollup"):
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def test_ten_clones_of_one_snapshot(tmp_path, engine):
    a = Vm(tmp_path, "a")
    a.boot(engine, "testguest", "print=warm halt", mem=256)
    a.api.wait_stdout("testguest: warm")
    a.snapshot(tmp_path / "s.state", tmp_path / "s.mem")
    a.stop()
    clones = []
    try:
        for i in range(10):
            v = Vm(tmp_path, f"c{i}")
            clones.append(v)
            status, body = v.load(tmp_path / "s.state", tmp_path / "s.mem")
            assert status == 204, body
        for v in clones:
            assert v.api.get("/")[1]["state"] == "Running"
        # A clone's own memory is what it changed (KVM engines: the memory file is mapped
        # private, pages come from the shared page cache) or the snapshot's data pages (the
        # process engine copies them into its guest RAM): far below its 256 MiB of RAM.
        data_kib = allocated(tmp_path / "s.mem") // 1024
        for v in clones:
            kib = private_kib(v.api.proc.pid)
            assert kib < 16 * 1024 + data_kib, (kib, data_kib)
    finally:
        for v in clones:
            v.stop()


def test_cli_refuses_mixed_snapshot_and_boot_flags(cli, tmp_path):
    r = cli("--snapshot-load", tmp_path / "s", "--snapshot-mem", tmp_path / "m", "--kernel",
            GUESTS / "hello.elf")
    assert r.code == EXIT_USAGE and "--snapshot-load" in r.err
    r = cli("--snapshot-load", tmp_path / "s")
    assert r.code == EXIT_USAGE and "--snapshot-mem" in r.err
    r = cli("--snapshot-load", tmp_path / "s", "--snapshot-mem", tmp_path / "m")
    assert r.code == EXIT_VMM_ERROR and "No such file" in r.err
