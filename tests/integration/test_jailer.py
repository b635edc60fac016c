"""hearth-jailer: a jailed hearth boots the bundled guest through its API socket, and what the
jail promises is checked from outside (uid/gid, capabilities, root, namespaces, cgroups,
rlimits) and from inside (host paths are not reachable). Bad input is refused before anything
is created, or what was created is removed.

Needs root (CI runs as root). Test cgroups live under a parent these tests create and remove;
jails under a temporary chroot base. A sanitizer build of hearth cannot run in a jail (ASan
reads /proc/self/maps, and a jail has no /proc): those tests skip there, the bad-input ones
still run.
"""
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from api_client import UnixHTTPConnection
from conftest import BUILD, GUESTS, HEARTH, KVM

JAILER = BUILD / "hearth-jailer"
UID, GID = 64321, 64322
EXIT_USAGE, EXIT_SETUP = 247, 248
SAN = os.environ.get("HEARTH_SAN") == "1"
CG_V1 = Path("/sys/fs/cgroup")

if os.geteuid() != 0:
    pytest.skip("the jailer needs root", allow_module_level=True)

needs_unsanitized = pytest.mark.skipif(
    SAN, reason="a sanitizer build of hearth cannot run in a jail (no /proc for ASan)")


def v1_hierarchy(controller):
    for line in open("/proc/mounts"):
        dev, mnt, fstype, opts = line.split()[:4]
        if fstype == "cgroup" and controller in opts.split(","):
            return Path(mnt)
    return None


def v2_hierarchy():
    for line in open("/proc/mounts"):
        dev, mnt, fstype = line.split()[:3]
        if fstype == "cgroup2":
            return Path(mnt)
    return None


@pytest.fixture
def base(tmp_path):
    b = tmp_path / "jails"
    b.mkdir()
    return b


@pytest.fixture
def cg_parent(request):
    """A parent cgroup name, created in the v1 pids and cpu hierarchies and removed after."""
    name = f"hth-test-{os.getpid()}-{request.node.name[:20]}".replace("[", "-").replace("]", "")
    made = []
    for c in ("pids", "cpu"):
        h = v1_hierarchy(c)
        if h:
            (h / name).mkdir()
            made.append(h / name)
    yield name
    for d in made:
        for child in [c for c in d.iterdir() if c.is_dir()] + [d]:
            rmdir_cgroup(child)


def rmdir_cgroup(path):
    """Remove a test cgroup once it is empty: hearth's teardown process (vm.c) may outlive
    hearth by a few milliseconds."""
    deadline = time.monotonic() + 10
    while True:
        try:
            path.rmdir()
            return
        except OSError as e:
            if e.errno != 16 or time.monotonic() > deadline:  # EBUSY
                raise
            time.sleep(0.02)


class Jailed:
    """A jailer run that ends in a running hearth (found through its pid file)."""

    def __init__(self, base, jail_id, *flags, hearth_args=("--api-sock", "/api.sock")):
        self.root = base / "hearth" / jail_id / "root"
        self.args = [str(JAILER), "--id", jail_id, "--exec-file", str(HEARTH), "--uid",
                     str(UID), "--gid", str(GID), "--chroot-base-dir", str(base), *flags,
                     "--", *hearth_args]
        self.log = base / f"{jail_id}.log"
        with open(self.log, "wb") as log:
            self.jailer = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT)
        self.pid = None
        deadline = time.monotonic() + 10
        pidfile = self.root / "hearth.pid"
        # The socket file exists from bind(); connections work from listen(): wait for both.
        while not (self.pid and (self.root / "api.sock").exists() and self.accepting()):
            if self.pid is None and pidfile.exists() and pidfile.read_text().endswith("\n"):
                self.pid = int(pidfile.read_text())
            assert time.monotonic() < deadline, self.log.read_text()
            if self.jailer.poll() not in (None, 0):
                pytest.fail(f"jailer exited {self.jailer.returncode}: {self.log.read_text()}")
            time.sleep(0.01)

    def accepting(self):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(self.root / "api.sock"))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def request(self, method, path, body=None):
        c = UnixHTTPConnection(str(self.root / "api.sock"))
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, (json.loads(text) if text else None)

    def status(self):
        text = open(f"/proc/{self.pid}/status").read()
        return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)

    def stop(self):
        """SIGTERM to hearth; wait until it is gone (it is not always our child)."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.jailer.pid == self.pid:
            try:
                self.jailer.wait(10)
            except subprocess.TimeoutExpired:
                self.jailer.kill()
                self.jailer.wait()
            return
        deadline = time.monotonic() + 10
        while self.pid and os.path.exists(f"/proc/{self.pid}"):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
            time.sleep(0.02)
        if self.jailer.poll() is None:
            self.jailer.kill()
            self.jailer.wait()


def boot_in_jail(j, kernel, boot_args, state="Stopped"):
    """Boot a bundled guest in the jail (in a KVM engine, or without /dev/kvm in the process
    engine) through the API; its state once `state` is reached."""
    shutil.copy(GUESTS / f"{kernel}.elf", j.root / f"{kernel}.elf")
    assert j.request("PUT", "/boot-source", {"kernel_image_path": f"/{kernel}.elf",
                                             "boot_args": boot_args})[0] == 204
    status, body = j.request("PUT", "/actions", {"action_type": "InstanceStart"})
    assert status == 204, body
    deadline = time.monotonic() + 20
    while True:
        info = j.request("GET", "/")[1]
        if info["state"] == state:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.02)


def boot_hello(j, boot_args):
    return boot_in_jail(j, "hello", boot_args)


def guest_process(pid):
    """The process engine's guest process: the one child of hearth."""
    kids = []
    for t in os.listdir(f"/proc/{pid}/task"):
        kids += open(f"/proc/{pid}/task/{t}/children").read().split()
    assert len(kids) == 1, kids
    return int(kids[0])


def ns(pid, kind):
    return os.readlink(f"/proc/{pid}/{'ns/' + kind}")


@needs_unsanitized
def test_jailed_hearth_boots_the_guest_and_is_confined(base, cg_parent, tmp_path):
    netns = f"hthj{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    secret = tmp_path / "host-secret.img"
    secret.write_bytes(b"\0" * 4096)
    os.chmod(secret, 0o644)
    j = None
    try:
        j = Jailed(base, "vm-1", "--netns", f"/run/netns/{netns}", "--cgroup", "pids.max=64",
                   "--cgroup", "cpu.shares=512", "--parent-cgroup", cg_parent,
                   "--resource-limit", "fsize=1073741824", "--resource-limit", "no-file=256")
        # Without --new-pid-ns and --daemonize, hearth is the jailer's own process.
        assert j.pid == j.jailer.pid
        st = j.status()
        assert st["Uid"].split() == [str(UID)] * 4
        assert st["Gid"].split() == [str(GID)] * 4
        assert st["Groups"].strip() == ""
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[cap], 16) == 0, (cap, st[cap])
        assert st["NoNewPrivs"].strip() == "1"
        # Its root is the jail: the same directory, holding what the jailer put there.
        r, jr = os.stat(f"/proc/{j.pid}/root"), os.stat(j.root)
        assert (r.st_dev, r.st_ino) == (jr.st_dev, jr.st_ino)
        names = set(os.listdir(f"/proc/{j.pid}/root"))
        assert {"hearth", "hearth-api.so", "hearth.pid", "api.sock", "dev"} <= names
        assert names <= {"hearth", "hearth-api.so", "hearth.pid", "api.sock", "dev", "lib",
                         "lib64", "usr"}, names
        for dev in ("kvm",) * KVM + ("net/tun", "urandom"):
            s = os.stat(j.root / "dev" / dev)
            assert stat.S_ISCHR(s.st_mode) and stat.S_IMODE(s.st_mode) == 0o600
            assert (s.st_uid, s.st_gid) == (UID, GID)
        # /dev/kvm only where the host has one.
        assert sorted(os.listdir(j.root / "dev")) == ["kvm"] * KVM + ["net", "urandom"]
        sock = os.stat(j.root / "api.sock")
        assert stat.S_IMODE(sock.st_mode) == 0o600 and sock.st_uid == UID
        # Namespaces: its own mount namespace, the given network namespace, our pid namespace.
        assert ns(j.pid, "mnt") != ns(os.getpid(), "mnt")
        want_net = os.stat(f"/run/netns/{netns}")
        got_net = os.stat(f"/proc/{j.pid}/ns/net")
        assert (got_net.st_dev, got_net.st_ino) == (want_net.st_dev, want_net.st_ino)
        assert ns(j.pid, "pid") == ns(os.getpid(), "pid")
        # cgroups: member of <hierarchy>/<parent>/vm-1, with the values written.
        cgs = {}
        for line in open(f"/proc/{j.pid}/cgroup"):
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(","):
                cgs[c] = path
        assert cgs["pids"] == f"/{cg_parent}/vm-1"
        assert cgs["cpu"] == f"/{cg_parent}/vm-1"
        assert (v1_hierarchy("pids") / cg_parent / "vm-1" / "pids.max").read_text() == "64\n"
        assert (v1_hierarchy("cpu") / cg_parent / "vm-1" / "cpu.shares").read_text() == "512\n"
        # rlimits
        limits = open(f"/proc/{j.pid}/limits").read()
        assert [ln for ln in limits.splitlines() if ln.startswith("Max open files")][0].split()[3:5] == ["256", "256"]
        assert [ln for ln in limits.splitlines() if ln.startswith("Max file size")][0].split()[3:5] == ["1073741824", "1073741824"]
        # From inside: host paths are not there, however they are spelled.
        for path in (str(secret), f"/../../../..{secret}", str(GUESTS / "hello.elf")):
            code, body = j.request("PUT", "/drives/d0", {"drive_id": "d0", "path_on_host": path,
                                                          "is_root_device": False,
                                                          "is_read_only": True})
            assert code == 400, (path, body)
            assert "No such file" in body["fault_message"], body
        # And the guest boots, through the API, inside the jail.
        if KVM:
            info = boot_hello(j, "jailed hello")
            assert info["exit"]["status"] == 0, info
            assert info["id"] == "vm-1"
        else:
            # The process engine: the guest's own process is inside the jail like hearth.
            info = boot_in_jail(j, "testguest", "print=jailed halt", state="Running")
            assert info["engine"] == "process" and info["id"] == "vm-1"
            g = guest_process(j.pid)
            gst = open(f"/proc/{g}/status").read()
            gst = dict(ln.split(":", 1) for ln in gst.splitlines() if ":" in ln)
            assert gst["Uid"].split() == [str(UID)] * 4 and gst["Gid"].split() == [str(GID)] * 4
            for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(gst[cap], 16) == 0, (cap, gst[cap])
            assert gst["NoNewPrivs"].strip() == "1"
            for kind in ("mnt", "net", "pid", "ipc", "uts", "user"):
                assert ns(g, kind) == ns(j.pid, kind), kind
            assert open(f"/proc/{g}/cgroup").read() == open(f"/proc/{j.pid}/cgroup").read()
            for t in os.listdir(f"/proc/{g}/task"):
                assert "Seccomp:\t2" in open(f"/proc/{g}/task/{t}/status").read()
            # No descriptor but guest RAM and the queue-notify eventfds (from 6 on).
            fds = sorted(int(fd) for fd in os.listdir(f"/proc/{g}/fd"))
            assert fds == [3] + list(range(6, 6 + len(fds) - 1)), fds
            assert os.readlink(f"/proc/{g}/fd/3").startswith("/memfd:")
            for fd in fds[1:]:
                assert os.readlink(f"/proc/{g}/fd/{fd}") == "anon_inode:[eventfd]"
        # Every thread is filtered once a guest runs: a vCPU thread loads its filter as it
        # starts, before it runs guest code, which may be a moment after InstanceStart.
        deadline = time.monotonic() + 10
        for t in os.listdir(f"/proc/{j.pid}/task"):
            while True:
                text = open(f"/proc/{j.pid}/task/{t}/status").read()
                if "Seccomp:\t2" in text or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            assert "Seccomp:\t2" in text, text
    finally:
        if j:
            j.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)


@needs_unsanitized
def test_new_pid_ns_and_daemonize(base):
    j = Jailed(base, "vm-2", "--new-pid-ns", "--daemonize")
    try:
        # The jailer returns at once; hearth lives on as pid 1 of its own pid namespace.
        assert j.jailer.wait(10) == 0
        assert j.pid != j.jailer.pid
        assert ns(j.pid, "pid") != ns(os.getpid(), "pid")
        st = j.status()
        assert st["NSpid"].split()[-1] == "1"
        assert int(st["CapEff"], 16) == 0 and st["Uid"].split()[0] == str(UID)
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{j.pid}/fd/{fd}") == "/dev/null"
        assert os.getsid(j.pid) != os.getsid(0)
        info = boot_hello(j, "pid one")
        assert info["exit"]["status"] == 0, info
    finally:
        j.stop()


@needs_unsanitized
def test_cgroup_v2(base, request):
    h = v2_hierarchy()
    offered = (h / "cgroup.controllers").read_text().split() if h else []
    if "hugetlb" not in offered and "pids" not in offered:
        pytest.skip(f"the cgroup v2 hierarchy ({h}) offers neither pids nor hugetlb")
    parent = h / f"hth-test-{os.getpid()}"
    parent.mkdir()
    if "pids" in offered:
        setting, value = "pids.max", "33"
    else:
        setting, value = "hugetlb.2MB.max", "0"
    j = None
    try:
        j = Jailed(base, "vm-3", "--cgroup-version", "2", "--cgroup", f"{setting}={value}",
                   "--parent-cgroup", parent.name)
        lines = open(f"/proc/{j.pid}/cgroup").read().splitlines()
        assert f"0::/{parent.name}/vm-3" in lines, lines
        assert (parent / "vm-3" / setting).read_text().strip() == value
    finally:
        if j:
            j.stop()
        if (parent / "vm-3").exists():
            rmdir_cgroup(parent / "vm-3")
        rmdir_cgroup(parent)


def run_jailer(*args):
    return subprocess.run([str(JAILER), *map(str, args)], capture_output=True, text=True,
                          timeout=30)


def common(base, jail_id="bad-1"):
    return ["--id", jail_id, "--exec-file", HEARTH, "--uid", UID, "--gid", GID,
            "--chroot-base-dir", base]


@pytest.mark.parametrize("args, code, message", [
    (["--id", "a/b"], EXIT_USAGE, "--id 'a/b': 1 to 64 characters of [A-Za-z0-9-]"),
    (["--id", "x" * 65], EXIT_USAGE, "1 to 64 characters"),
    (["--uid", "0"], EXIT_USAGE, "--uid 0: hearth must not run as root"),
    (["--gid", "0"], EXIT_USAGE, "--gid 0: hearth must not run as root"),
    (["--uid", "-5"], EXIT_USAGE, "--uid '-5': a decimal id is expected"),
    (["--exec-file", "/nonexistent/hearth"], EXIT_SETUP,
     "--exec-file /nonexistent/hearth: No such file or directory"),
    (["--netns", "/run/netns/hearth-no-such-ns"], EXIT_SETUP,
     "--netns /run/netns/hearth-no-such-ns: No such file or directory"),
    (["--netns", "/etc/hostname"], EXIT_SETUP, "not a network namespace"),
    (["--cgroup", "nosuch.max=1"], EXIT_SETUP, "no cgroup v1 hierarchy has the nosuch controller"),
    (["--cgroup", "pids.max"], EXIT_USAGE, "expected FILE=VALUE"),
    (["--cgroup", "../pids.max=1"], EXIT_USAGE, "must be <controller>.<name>"),
    (["--cgroup", "pids/../x.max=1"], EXIT_USAGE, "has only [A-Za-z0-9_.]"),
    (["--parent-cgroup", "../escape"], EXIT_USAGE, "--parent-cgroup '../escape'"),
    (["--cgroup-version", "3"], EXIT_USAGE, "--cgroup-version '3': 1 or 2"),
    (["--resource-limit", "cpu=1"], EXIT_USAGE, "unknown resource"),
    (["--resource-limit", "no-file=abc"], EXIT_USAGE, "N must be a decimal number"),
    (["--chroot-base-dir", "relative"], EXIT_USAGE, "an absolute path"),
    (["--bogus"], EXIT_USAGE, "unknown flag '--bogus'"),
    (["--", "--id", "x"], EXIT_USAGE, "the jailer passes --id"),
])
def test_bad_input_is_refused_and_nothing_is_left(base, args, code, message):
    # Later flags win over common() except where a flag may not repeat: build the list so
    # that the case's own flag replaces the default one.
    argv = common(base)
    for flag in ("--id", "--uid", "--gid", "--exec-file", "--chroot-base-dir"):
        if flag in args[:1] and flag in argv:
            i = argv.index(flag)
            del argv[i:i + 2]
    if args and args[0] == "--":
        argv += args
    else:
        argv = args + argv
    r = run_jailer(*argv)
    assert r.returncode == code, r.stderr
    assert message in r.stderr, r.stderr
    assert r.stderr.startswith("hearth-jailer: ")
    assert list(base.iterdir()) in ([], [base / "hearth"]), list(base.rglob("*"))
    if (base / "hearth").exists():
        assert list((base / "hearth").iterdir()) == []


def test_exec_file_that_is_not_a_program(base, tmp_path):
    text = tmp_path / "hearth-script"
    text.write_text("#!/bin/sh\necho not an ELF\n")
    text.chmod(0o755)
    r = run_jailer("--id", "x", "--exec-file", text, "--uid", UID, "--gid", GID,
                   "--chroot-base-dir", base)
    assert r.returncode == EXIT_SETUP
    assert f"{text}: not an x86-64 ELF64 executable or library" in r.stderr
    text.chmod(0o644)
    r = run_jailer("--id", "x", "--exec-file", text, "--uid", UID, "--gid", GID,
                   "--chroot-base-dir", base)
    assert r.returncode == EXIT_SETUP
    assert f"--exec-file {text}: Permission denied" in r.stderr
    assert list(base.iterdir()) == []


def test_missing_required_flags():
    for missing in ("--id", "--exec-file", "--uid", "--gid"):
        argv = ["--id", "x", "--exec-file", str(HEARTH), "--uid", "5", "--gid", "5"]
        i = argv.index(missing)
        del argv[i:i + 2]
        r = run_jailer(*argv)
        assert r.returncode == EXIT_USAGE
        assert f"{missing} is required" in r.stderr


def test_existing_jail_directory_is_refused_and_kept(base):
    existing = base / "hearth" / "taken"
    (existing / "root").mkdir(parents=True)
    (existing / "root" / "keep").write_text("mine")
    r = run_jailer(*common(base, "taken"))
    assert r.returncode == EXIT_SETUP
    assert f"{existing} already exists" in r.stderr
    assert (existing / "root" / "keep").read_text() == "mine"


def test_unwritable_cgroup_value_removes_the_jail_and_the_cgroups(base, cg_parent):
    r = run_jailer(*common(base, "cg-bad"), "--cgroup", "pids.max=banana", "--parent-cgroup",
                   cg_parent)
    assert r.returncode == EXIT_SETUP, r.stderr
    assert "--cgroup pids.max=banana: cannot write" in r.stderr
    assert "removed what was created" in r.stderr
    assert not (base / "hearth" / "cg-bad").exists()
    assert not (v1_hierarchy("pids") / cg_parent / "cg-bad").exists()


def test_help():
    r = run_jailer("--help")
    assert r.returncode == 0
    for flag in ("--id", "--exec-file", "--uid", "--gid", "--chroot-base-dir", "--netns",
                 "--cgroup-version", "--cgroup", "--parent-cgroup", "--resource-limit",
                 "--daemonize", "--new-pid-ns", "247", "248", "249"):
        assert flag in r.stdout, flag
