"""Network namespaces, TAPs and the bundled netguest for the virtio-net tests and bench/net.sh.

Everything is built on this machine only, under unique names, and removed again: a test runs
hearth inside its own namespace (ip netns exec), next to the TAPs it created there, so no
address or route touches the host's namespace. Sockets for the host side of the traffic are
made inside the namespace by a short-lived thread that enters it (setns applies to the
calling thread only), so the test process itself never changes namespace.
"""
import ctypes
import itertools
import os
import re
import socket
import struct
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()


def ip(*args, ns=None, check=True):
    cmd = ["ip"] + (["-n", ns] if ns else []) + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


class NetNs:
    """A network namespace named hth<pid>x<n>; delete() removes it and all it holds."""

    def __init__(self):
        self.name = f"hth{os.getpid()}x{next(_counter)}"
        ip("netns", "add", self.name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args, check=True):
        return ip(*args, ns=self.name, check=check)

    def exec_args(self, *cmd):
        """A command line that runs `cmd` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *map(str, cmd)]

    def sysctl(self, key, value):
        subprocess.run(self.exec_args("sysctl", "-qw", f"{key}={value}"), check=True)

    def add_tap(self, name, addr, mtu=None):
        """A persistent TAP with `addr` (CIDR) on it, up, IPv6 off (no multicast chatter)."""
        self.ip("tuntap", "add", "dev", name, "mode", "tap")
        self.sysctl(f"net.ipv6.conf.{name}.disable_ipv6", 1)
        if mtu:
            self.ip("link", "set", name, "mtu", mtu)
        self.ip("addr", "add", addr, "dev", name)
        self.ip("link", "set", name, "up")

    def socket(self, family=socket.AF_INET, type=socket.SOCK_DGRAM, proto=0):
        """A socket that lives in the namespace."""
        out = {}

        def make():
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns {self.name}: {os.strerror(e)}")
                out["sock"] = socket.socket(family, type, proto)
            except BaseException as e:  # handed to the caller's thread
                out["error"] = e
            finally:
                os.close(fd)

        t = threading.Thread(target=make)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["sock"]

    def delete(self):
        ip("netns", "del", self.name, check=False)


def sweep_stale():
    """Delete namespaces left by runs that were killed before their cleanup (hth<pid>x<n>
    whose process is gone)."""
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        m = re.fullmatch(r"hth(\d+)x\d+", name)
        if m and not os.path.exists(f"/proc/{m[1]}"):
            ip("netns", "del", name, check=False)


def inet_csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Pinger:
    """ICMP echo from inside a namespace (a raw socket: no ping binary needed)."""

    def __init__(self, ns):
        self.sock = ns.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0

    def ping(self, addr, payload=None, timeout=2.0):
        """One echo request; returns the round trip in seconds, or None on timeout. The reply
        must carry the same payload and a valid checksum."""
        payload = os.urandom(56) if payload is None else payload
        self.seq = (self.seq + 1) & 0xFFFF
        head = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        pkt = struct.pack("!BBHHH", 8, 0, inet_csum(head + payload), self.ident,
                          self.seq) + payload
        t0 = time.perf_counter()
        self.sock.sendto(pkt, (addr, 0))
        deadline = t0 + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, (src, _) = self.sock.recvfrom(65535)
            except socket.timeout:
                return None
            icmp = data[(data[0] & 15) * 4:]
            typ, _, _, ident, seq = struct.unpack("!BBHHH", icmp[:8])
            if src == addr and typ == 0 and ident == self.ident and seq == self.seq:
                assert icmp[8:] == payload, "echo reply payload differs"
                assert inet_csum(icmp) == 0, "echo reply checksum is wrong"
                return time.perf_counter() - t0

    def close(self):
        self.sock.close()


class NetGuest:
    """hearth running netguest inside a namespace; stop() ends it (also from finalizers)."""

    def __init__(self, hearth, guests, ns, tmp, cmdline, nets, extra=(), name="vm"):
        self.out_path = tmp / f"{name}.out"
        self.err_path = tmp / f"{name}.err"
        args = [hearth, "--kernel", guests / "netguest.elf", "--cmdline", cmdline]
        for n in nets:
            args += ["--net", n]
        args += list(extra)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(ns.exec_args(*args), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while "netguest: ready" not in self.stdout():
            if self.proc.poll() is not None:
                raise AssertionError(f"hearth exited with {self.proc.returncode}:\n"
                                     f"{self.stdout()}\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"netguest not ready:\n{self.stdout()}\n{self.stderr()}")
            time.sleep(0.02)

    def vmm_cpu_seconds(self):
        """CPU time of hearth's main thread (the VMM thread: event loop and devices)."""
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
