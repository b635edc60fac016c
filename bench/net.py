#!/usr/bin/env python3
"""UDP echo through hearth's virtio-net (TAP) next to the same echo over a veth pair.

Run through bench/net.sh (root, from the repository root). For each execution engine, hearth
runs the bundled netguest in a namespace with a TAP; the client, in the same namespace,
measures the round trip of single datagrams (p50, p99) and the echo throughput with a window
of datagrams in flight. The reference is the same client against a userspace echo server
(Python) in a second namespace, across a veth pair. Namespaces and processes are removed at
the end, also on failure or Ctrl-C.
"""
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from netns import NetGuest, NetNs  # noqa: E402

BUILD = Path(os.environ.get("HEARTH_BUILD", ROOT / "build"))
HEARTH = Path(os.environ.get("HEARTH", BUILD / "hearth"))
GUESTS = BUILD / "guests"
COUNT = int(os.environ.get("COUNT", 2000))          # round-trip samples per setup
RTT_SIZE = int(os.environ.get("RTT_SIZE", 64))      # payload bytes for the round trips
SIZE = int(os.environ.get("SIZE", 1400))            # payload bytes for the throughput run
SECONDS = float(os.environ.get("SECONDS", 5))       # throughput run per setup
WINDOW = int(os.environ.get("WINDOW", 8))           # datagrams in flight
ENGINES = os.environ.get("ENGINES", "shadow hardware").split()
OUT = Path(os.environ.get("OUT", BUILD / "bench"))

ECHO_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(("0.0.0.0", 7))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(d, a)
"""


def rtt(sock, count, size):
    payload = os.urandom(size)
    samples = []
    sock.settimeout(1.0)
    lost = 0
    for _ in range(count):
        t0 = time.perf_counter_ns()
        sock.send(payload)
        try:
            while sock.recv(65535) != payload:
                pass
        except socket.timeout:
            lost += 1
            continue
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return {
        "p50_us": statistics.median(samples),
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "min_us": samples[0],
        "rtt_lost": lost,
    }


def throughput(sock, size, seconds, window):
    payload = os.urandom(size)
    sock.settimeout(0.2)
    sent = echoed = bad = timeouts = 0
    inflight = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        while inflight < window:
            sock.send(payload)
            sent += 1
            inflight += 1
        try:
            data = sock.recv(65535)
        except socket.timeout:
            timeouts += 1
            inflight = 0  # lost on the way: refill the window
            continue
        inflight -= 1
        echoed += 1
        if data != payload:
            bad += 1
    elapsed = time.perf_counter() - t0
    sock.settimeout(0.3)
    late = 0
    try:  # drain what is still in flight
        while True:
            sock.recv(65535)
            late += 1
    except socket.timeout:
        pass
    assert bad == 0, f"{bad} echoed datagrams differ"
    return {
        "datagrams_per_s": echoed / elapsed,
        "mib_per_s": echoed * size / elapsed / (1 << 20),
        "sent": sent,
        "echoed": echoed,
        "lost": sent - echoed - late,
        "timeouts": timeouts,
    }


def measure(sock, addr):
    sock.connect((addr, 7))
    # Warm up: ARP, caches.
    sock.settimeout(5)
    for _ in range(20):
        sock.send(b"warm")
        sock.recv(65535)
    r = rtt(sock, COUNT, RTT_SIZE)
    r.update(throughput(sock, SIZE, SECONDS, WINDOW))
    return r


def bench_hearth(engine, tmp):
    ns = NetNs()
    vm = None
    try:
        ns.add_tap("tap0", "10.77.0.1/24")
        vm = NetGuest(HEARTH, GUESTS, ns, tmp, "ip=10.77.0.2", ["tap0"], ["--mmu", engine],
                      name=f"bench-{engine}")
        vm.wait_ready()
        first = vm.stderr().splitlines()[0] if vm.stderr() else ""
        s = ns.socket()
        cpu0 = vm.vmm_cpu_seconds()
        t0 = time.perf_counter()
        r = measure(s, "10.77.0.2")
        r["vmm_thread_cpu_share"] = (vm.vmm_cpu_seconds() - cpu0) / (time.perf_counter() - t0)
        r["hearth_status_line"] = first
        s.close()
        return r
    finally:
        if vm:
            vm.stop()
        ns.delete()


def bench_veth():
    a, b = NetNs(), NetNs()
    server = None
    try:
        subprocess.run(["ip", "link", "add", "hthva", "netns", a.name, "type", "veth", "peer",
                        "name", "hthvb", "netns", b.name], check=True)
        a.ip("addr", "add", "10.79.0.1/24", "dev", "hthva")
        b.ip("addr", "add", "10.79.0.2/24", "dev", "hthvb")
        a.ip("link", "set", "hthva", "up")
        b.ip("link", "set", "hthvb", "up")
        server = subprocess.Popen(b.exec_args(sys.executable, "-c", ECHO_SERVER))
        s = a.socket()
        deadline = time.monotonic() + 10
        s.settimeout(0.2)
        while True:  # wait for the server
            s.sendto(b"ping", ("10.79.0.2", 7))
            try:
                s.recv(100)
                break
            except socket.timeout:
                assert time.monotonic() < deadline, "echo server did not answer"
        r = measure(s, "10.79.0.2")
        s.close()
        return r
    finally:
        if server:
            server.kill()
            server.wait()
        a.delete()
        b.delete()


def main():
    if os.geteuid() != 0:
        sys.exit("bench/net.sh: needs root (namespaces, TAPs)")
    for p in (HEARTH, GUESTS / "netguest.elf"):
        if not p.exists():
            sys.exit(f"bench/net.sh: {p} not built (make all)")
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    for engine in ENGINES:
        results[f"hearth {engine}"] = bench_hearth(engine, OUT)
    results["veth + python echo"] = bench_veth()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": f"{platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}",
        "count": COUNT, "rtt_size": RTT_SIZE, "size": SIZE, "seconds": SECONDS,
        "window": WINDOW,
    }
    lines = [
        f"UDP echo, {meta['date']}, {meta['host']}",
        f"round trip: {COUNT} x {RTT_SIZE}-byte datagrams, one at a time; throughput: "
        f"{SIZE}-byte datagrams, {WINDOW} in flight, {SECONDS:g} s",
        "",
        f"{'setup':<22} {'p50 us':>8} {'p99 us':>8} {'min us':>8} {'dgram/s':>9} "
        f"{'MiB/s':>7} {'lost':>5} {'VMM thread':>10}",
    ]
    for name, r in results.items():
        share = r.get("vmm_thread_cpu_share")
        lines.append(
            f"{name:<22} {r['p50_us']:>8.1f} {r['p99_us']:>8.1f} {r['min_us']:>8.1f} "
            f"{r['datagrams_per_s']:>9.0f} {r['mib_per_s']:>7.2f} {r['rtt_lost'] + r['lost']:>5} "
            f"{'' if share is None else f'{share * 100:.0f}% CPU':>10}")
    for name, r in results.items():
        if "hearth_status_line" in r:
            lines.append(f"{name}: {r['hearth_status_line']}")
    text = "\n".join(lines)
    print(text)
    (OUT / "net.txt").write_text(text + "\n")
    (OUT / "net.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
