"""virtio-net over TAP devices, with the bundled netguest.

Each test builds its own network on this machine: a namespace with TAPs (ip tuntap) and an
address on the host end; hearth runs inside the namespace, the guest answers ARP, ping and
UDP echo. The namespace, the TAPs and hearth are removed when the test ends, pass or fail.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from api_client import Api
from conftest import ENGINES, EXIT_USAGE, EXIT_VMM_ERROR, GUESTS, HEARTH, run_hearth
from netns import NetGuest, NetNs, Pinger, sweep_stale

MTU = 1500
UDP_MAX = MTU - 20 - 8  # IPv4 and UDP headers

if os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or not shutil.which("ip"):
    pytest.skip("needs root, /dev/net/tun and ip (iproute2)", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def no_stale_namespaces():
    sweep_stale()


@pytest.fixture
def netns():
    """A fresh namespace; everything started in it is stopped before it is deleted."""
    ns = NetNs()
    ns.cleanups = []
    yield ns
    for fn in reversed(ns.cleanups):
        try:
            fn()
        except Exception:
            pass
    ns.delete()
    assert not os.path.exists(f"/run/netns/{ns.name}")


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


def start(ns, tmp_path, cmdline, nets, extra=(), name="vm"):
    vm = NetGuest(HEARTH, GUESTS, ns, tmp_path, cmdline, nets, extra, name)
    ns.cleanups.append(vm.stop)
    vm.wait_ready()
    return vm


def udp(ns, timeout=3.0):
    s = ns.socket()
    s.settimeout(timeout)
    s.bind(("0.0.0.0", 0))
    return s


def echo(sock, addr, data, port=7):
    """Send one datagram; return the reply from addr:port (other datagrams are skipped)."""
    sock.sendto(data, (addr, port))
    deadline = time.monotonic() + sock.gettimeout()
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        reply, src = sock.recvfrom(65535)
        if src == (addr, port):
            return reply


def command(sock, addr, text):
    return echo(sock, addr, text.encode(), port=9).decode()


def check_echo_sizes(sock, addr, sizes):
    for n in sizes:
        data = os.urandom(n)
        reply = echo(sock, addr, data)
        assert len(reply) == n, f"{n}-byte datagram came back with {len(reply)} bytes"
        assert reply == data, f"{n}-byte datagram came back changed"


def nic_line(vm, k):
    m = re.search(rf"netguest: nic {k} mac (\S+) mtu (\d+) ip (\S+) buf (\d+) mrg (\d) csum (\d)",
                  vm.stdout())
    assert m, vm.stdout()
    return {"mac": m[1], "mtu": int(m[2]), "ip": m[3], "buf": int(m[4]), "mrg": m[5] == "1",
            "csum": m[6] == "1"}


# ---- traffic ---------------------------------------------------------------------------


def test_ping(netns, tmp_path, engine):
    netns.add_tap("tap0", "10.77.0.1/24")
    vm = start(netns, tmp_path, "ip=10.77.0.2", ["tap0"], ["--mmu", engine])
    pinger = Pinger(netns)
    try:
        rtts = [pinger.ping("10.77.0.2", timeout=5) for _ in range(3)]
    finally:
        pinger.close()
    assert None not in rtts, f"ping lost: {rtts}\n{vm.stderr()}"
    # The guest answered ARP from the MAC it was given: random, locally administered.
    neigh = netns.ip("neigh", "show", "10.77.0.2", "dev", "tap0").stdout
    assert nic_line(vm, 0)["mac"] in neigh
    assert nic_line(vm, 0)["mac"].startswith("02:")
    assert vm.proc.poll() is None


def test_udp_echo_every_size_up_to_the_mtu(netns, tmp_path, engine):
    netns.add_tap("tap0", "10.77.0.1/24")
    vm = start(netns, tmp_path, "ip=10.77.0.2", ["tap0"], ["--mmu", engine])
    assert nic_line(vm, 0)["mtu"] == MTU
    s = udp(netns)
    check_echo_sizes(s, "10.77.0.2", range(1, UDP_MAX + 1))
    # One byte more does not fit the MTU: the host fragments it, the guest ignores fragments.
    s.sendto(b"x" * (UDP_MAX + 1), ("10.77.0.2", 7))
    with pytest.raises(socket.timeout):
        s.settimeout(0.5)
        s.recvfrom(65535)


def test_notifies_are_signalled_by_the_process_engines_guest_process(netns, tmp_path):
    # The process engine: the stub signals the receive-refill and transmit notifies it has
    # learned itself, without an exit (docs/PROCESS_ENGINE.md, "Queue notifies").
    netns.add_tap("tap0", "10.77.0.1/24")
    vm = start(netns, tmp_path, "ip=10.77.0.2", ["tap0"], ["--engine", "process", "--verbose"])
    s = udp(netns)
    check_echo_sizes(s, "10.77.0.2", [64] * 100)
    vm.stop()
    m = re.search(r"(\d+) queue notifies signalled by the guest process itself, (\d+) trapped",
                  vm.stderr())
    assert m, vm.stderr()
    # each echo is at least the reply's transmit notify: the first by each instruction
    # traps (hearth teaches the stub the driver's notify instruction), the stub signals the
    # others, whichever queue they name
    assert int(m[1]) >= 100 - 2 and 1 <= int(m[2]) <= 2, vm.stderr()


@pytest.mark.parametrize("features", ["csum", "mrg", "csum mrg rxbuf=256", "mrg rxbuf=128"])
def test_udp_echo_with_offloads_and_merged_buffers(netns, tmp_path, features):
    """Partial checksums both ways (CSUM, GUEST_CSUM mirrored with TUNSETOFFLOAD), and frames
    spread over several small receive buffers (MRG_RXBUF, num_buffers)."""
    netns.add_tap("tap0", "10.77.0.1/24")
    vm = start(netns, tmp_path, f"ip=10.77.0.2 {features}", ["tap0"])
    nic = nic_line(vm, 0)
    assert nic["csum"] == ("csum" in features) and nic["mrg"] == ("mrg" in features)
    s = udp(netns)
    check_echo_sizes(s, "10.77.0.2", [1, 2, 3, 64, 255, 256, 700, 1000, 1400, UDP_MAX - 1,
                                      UDP_MAX])
    pinger = Pinger(netns)
    try:
        assert pinger.ping("10.77.0.2", os.urandom(1200), timeout=5) is not None
    finally:
        pinger.close()


def test_mtu_follows_the_tap_and_jumbo_datagrams_echo(netns, tmp_path):
    netns.add_tap("tap0", "10.77.0.1/24", mtu=9000)
    vm = start(netns, tmp_path, "ip=10.77.0.2", ["tap0"])
    assert nic_line(vm, 0)["mtu"] == 9000
    s = udp(netns)
    check_echo_sizes(s, "10.77.0.2", [1, 1473, 4000, 8971, 9000 - 28])


def test_configured_mac(netns, tmp_path):
    netns.add_tap("tap0", "10.77.0.1/24")
    vm = start(netns, tmp_path, "ip=10.77.0.2", ["tap0,mac=06:00:AC:10:00:02"])
    assert nic_line(vm, 0)["mac"] == "06:00:ac:10:00:02"
    s = udp(netns)
    check_echo_sizes(s, "10.77.0.2", [10])
    assert "06:00:ac:10:00:02" in netns.ip("neigh", "show", "dev", "tap0").stdout


def test_two_nics_in_one_guest(netns, tmp_path):
    netns.add_tap("tap0", "10.77.0.1/24")
    netns.add_tap("tap1", "10.78.0.1/24")
    vm = start(netns, tmp_path, "ip0=10.77.0.2 ip1=10.78.0.2", ["tap0", "tap1,id=second"])
    assert nic_line(vm, 0)["mac"] != nic_line(vm, 1)["mac"]
    s = udp(netns)
    for _ in range(3):
        check_echo_sizes(s, "10.77.0.2", [100, UDP_MAX])
        check_echo_sizes(s, "10.78.0.2", [100, UDP_MAX])
    pinger = Pinger(netns)
    try:
        assert pinger.ping("10.77.0.2", timeout=5) is not None
        assert pinger.ping("10.78.0.2", timeout=5) is not None
    finally:
        pinger.close()
    assert "ok nic0 rx" in command(s, "10.78.0.2", "stats")


# ---- failures and counters (through the API: PUT /metrics, FlushMetrics) ------------------


def api_vm(netns, tmp_path, cmdline, nets):
    """hearth in the namespace, configured through its API with PUT /network-interfaces."""
    api = Api(tmp_path, prefix=netns.exec_args())
    netns.cleanups.append(api.stop)
    assert api.put("/boot-source", {"kernel_image_path": str(GUESTS / "netguest.elf"),
                                    "boot_args": cmdline})[0] == 204
    for iface, tap in nets:
        status, body = api.put(f"/network-interfaces/{iface}",
                               {"iface_id": iface, "host_dev_name": tap})
        assert status == 204, body
    api.metrics = tmp_path / "metrics"
    assert api.put("/metrics", {"metrics_path": str(api.metrics)})[0] == 204
    assert api.put("/actions", {"action_type": "InstanceStart"})[0] == 204
    api.wait_stdout("netguest: ready")
    return api


def flush_metrics(api):
    assert api.put("/actions", {"action_type": "FlushMetrics"})[0] == 204
    return json.loads(api.metrics.read_text().splitlines()[-1])


def vmm_cpu(api):
    with open(f"/proc/{api.proc.pid}/task/{api.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("features, fits", [
    ("rxbuf=256", 256 - 12 - 14 - 28),          # no MRG_RXBUF: a frame must fit one buffer
    ("mrg rxbuf=64", 16 * 64 - 12 - 14 - 28),  # MRG_RXBUF: all 16 buffers are too small
])
def test_frame_larger_than_the_guest_buffers_is_dropped_and_counted(netns, tmp_path, features,
                                                                     fits):
    netns.add_tap("tap0", "10.77.0.1/24")
    api = api_vm(netns, tmp_path, f"ip=10.77.0.2 {features}", [("eth0", "tap0")])
    s = udp(netns, timeout=1.0)
    check_echo_sizes(s, "10.77.0.2", [1, 100, fits])
    before = flush_metrics(api)
    assert before["net"]["rx_dropped_too_big"] == 0
    for _ in range(3):
        s.sendto(os.urandom(fits + 1), ("10.77.0.2", 7))
        with pytest.raises(socket.timeout):
            s.recvfrom(65535)
    m = flush_metrics(api)
    assert m["net"]["rx_dropped_too_big"] == 3
    assert m["net_eth0"]["rx_dropped_too_big"] == 3
    assert m["net"]["rx_packets_count"] > before["net"]["rx_packets_count"] - 1
    # Smaller datagrams still go through, and the drop was logged once, not per frame.
    s.settimeout(3)
    check_echo_sizes(s, "10.77.0.2", [1, 200])
    assert api.stderr().count("does not fit the guest's receive buffers") == 1
    m = flush_metrics(api)
    assert m["net"]["tx_packets_count"] >= 5 and m["net"]["rx_bytes_count"] > 0


def test_tap_removed_while_the_vm_runs(netns, tmp_path):
    netns.add_tap("tap0", "10.77.0.1/24")
    netns.add_tap("tap1", "10.78.0.1/24")
    api = api_vm(netns, tmp_path, "ip0=10.77.0.2 ip1=10.78.0.2",
                 [("eth0", "tap0"), ("eth1", "tap1")])
    s = udp(netns)
    check_echo_sizes(s, "10.78.0.2", [100])
    netns.ip("link", "del", "tap1")
    time.sleep(0.3)
    # The VM runs on: the other NIC answers, the UART works, the VMM thread is idle.
    cpu0 = vmm_cpu(api)
    check_echo_sizes(s, "10.77.0.2", [1, 1000, UDP_MAX])
    assert command(s, "10.77.0.2", "tx 1 5") == "ok tx 1 5"  # frames out of the dead TAP
    assert command(s, "10.77.0.2", "tx 1 5") == "ok tx 1 5"
    api.wait_stdout("netguest: tx 1 5")
    time.sleep(1.0)
    assert vmm_cpu(api) - cpu0 < 0.5, "the VMM thread spins on the dead TAP"
    assert api.get("/")[1]["state"] == "Running"
    m = flush_metrics(api)
    assert m["net_eth1"]["tap_failures"] == 1
    assert m["net_eth1"]["tx_fails"] == 10
    assert m["net_eth0"]["tx_fails"] == 0 and m["net_eth0"]["tap_failures"] == 0
    # Counted per frame, logged once per kind.
    err = api.stderr()
    assert err.count("(TAP tap1)") == 2, err
    assert err.count("the TAP is no longer polled") == 1
    assert err.count("write: File descriptor in bad state") == 1
    assert api.patch("/network-interfaces/eth1", {"iface_id": "eth1"})[0] == 204


def test_guest_that_stops_receiving_stalls_nothing_else(netns, tmp_path):
    netns.add_tap("tap0", "10.77.0.1/24")
    netns.add_tap("tap1", "10.78.0.1/24")
    api = api_vm(netns, tmp_path, "ip0=10.77.0.2 ip1=10.78.0.2",
                 [("eth0", "tap0"), ("eth1", "tap1")])
    s = udp(netns)
    flood = udp(netns)
    check_echo_sizes(flood, "10.78.0.2", [10])  # ARP resolved while the guest still answers
    assert command(s, "10.77.0.2", "stall 1") == "ok stall 1"
    cpu0 = vmm_cpu(api)
    flood.setblocking(False)
    for i in range(700):  # more than the guest's ring (16) and the TAP's queue (500)
        try:
            flood.sendto(b"%d" % i, ("10.78.0.2", 7))
        except BlockingIOError:
            time.sleep(0.001)
    time.sleep(0.5)
    # NIC 0 and the UART are unaffected; the device waits for buffers without spinning.
    check_echo_sizes(s, "10.77.0.2", [10, UDP_MAX])
    assert vmm_cpu(api) - cpu0 < 0.5
    m = flush_metrics(api)
    assert m["net_eth1"]["no_rx_avail_buffer"] >= 1
    assert m["net_eth1"]["rx_fails"] == 0
    # Resumed: the guest takes its buffered frames, the device reads the TAP again.
    assert command(s, "10.77.0.2", "resume 1") == "ok resume 1"
    fresh = os.urandom(300)
    flood.settimeout(10)
    flood.sendto(fresh, ("10.78.0.2", 7))
    old = 0
    while flood.recvfrom(65535)[0] != fresh:  # the frames that waited come back first
        old += 1
    assert old >= 16


# ---- configuration -------------------------------------------------------------------------


def test_missing_tap_is_a_clear_error(netns, guest):
    p = subprocess.run(netns.exec_args(HEARTH, "--kernel", guest("netguest"), "--net",
                                       "nosuchtap"), capture_output=True, text=True, timeout=30)
    assert p.returncode == EXIT_VMM_ERROR, p.stderr
    assert "nosuchtap" in p.stderr and "no such network interface" in p.stderr
    assert "ip tuntap add" in p.stderr


@pytest.mark.parametrize("arg, message", [
    ("", "--net: expected TAP"),
    ("tap0,mac=zz:00:00:00:00:00", "mac 'zz:00:00:00:00:00' must be a MAC address like"),
    ("tap0,mac=01:00:00:00:00:01", "mac '01:00:00:00:00:01' must be a unicast address"),
    ("tap0,id=a-b", "--net: id 'a-b' must be 1..64 characters from [A-Za-z0-9_]"),
    ("tap0,speed=10", "unknown option 'speed=10'"),
    ("a/b", "TAP name 'a/b' must be 1..15 bytes"),
    ("sixteen_chars_xx", "TAP name 'sixteen_chars_xx' must be 1..15 bytes"),
])
def test_net_flag_errors(guest, arg, message):
    r = run_hearth("--kernel", guest("netguest"), "--net", arg)
    assert r.code == EXIT_USAGE and message in r.err, r.err


def test_net_flag_duplicates_and_limit(guest):
    r = run_hearth("--kernel", guest("netguest"), "--net", "tap0", "--net", "tap0")
    assert r.code == EXIT_USAGE and "TAP 'tap0' is used twice" in r.err
    r = run_hearth("--kernel", guest("netguest"), "--net", "a,id=x", "--net", "b,id=x")
    assert r.code == EXIT_USAGE and "id 'x' is used twice" in r.err
    r = run_hearth("--kernel", guest("netguest"), *sum([["--net", f"t{i}"] for i in range(5)],
                                                       []))
    assert r.code == EXIT_USAGE and "at most 4" in r.err
    assert "--net TAP" in run_hearth("--help").out


def test_config_file_with_network_interfaces(netns, tmp_path):
    netns.add_tap("tap0", "10.77.0.1/24")
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({
        "boot-source": {"kernel_image_path": str(GUESTS / "netguest.elf"),
                        "boot_args": "ip=10.77.0.2"},
        "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                                "guest_mac": "06:00:0a:4d:00:02"}],
    }))
    out = open(tmp_path / "out", "wb+")
    p = subprocess.Popen(netns.exec_args(HEARTH, "--config-file", cfg, "--no-api"),
                         stdout=out, stderr=subprocess.STDOUT)

    def stop():
        p.terminate()
        p.wait(10)
        out.close()

    netns.cleanups.append(stop)
    deadline = time.monotonic() + 30
    while "netguest: ready" not in (tmp_path / "out").read_text():
        assert p.poll() is None and time.monotonic() < deadline, (tmp_path / "out").read_text()
        time.sleep(0.02)
    assert "mac 06:00:0a:4d:00:02" in (tmp_path / "out").read_text()
    check_echo_sizes(udp(netns), "10.77.0.2", [5, 1000])


def test_api_network_interfaces(netns, tmp_path):
    netns.add_tap("tap0", "10.77.0.1/24")
    api = Api(tmp_path, prefix=netns.exec_args())
    netns.cleanups.append(api.stop)
    status, body = api.put("/network-interfaces/eth0",
                           {"iface_id": "eth0", "host_dev_name": "nosuchtap"})
    assert status == 400 and "no such network interface" in body["fault_message"]
    assert api.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0",
                                                "guest_mac": "06:00:00:00:00:01"})[0] == 204
    status, body = api.put("/network-interfaces/eth1",
                           {"iface_id": "eth1", "host_dev_name": "tap0"})
    assert status == 400 and "already used" in body["fault_message"]
    status, body = api.patch("/network-interfaces/eth0", {"iface_id": "eth0"})
    assert status == 400 and "before InstanceStart" in body["fault_message"]
    cfg = api.get("/vm/config")[1]
    assert cfg["network-interfaces"] == [{"iface_id": "eth0", "host_dev_name": "tap0",
                                          "guest_mac": "06:00:00:00:00:01"}]
    assert api.put("/boot-source", {"kernel_image_path": str(GUESTS / "netguest.elf"),
                                    "boot_args": "ip=10.77.0.2"})[0] == 204
    assert api.put("/actions", {"action_type": "InstanceStart"})[0] == 204
    api.wait_stdout("netguest: ready")
    assert "mac 06:00:00:00:00:01" in api.stdout()
    check_echo_sizes(udp(netns), "10.77.0.2", [33])
    assert api.patch("/network-interfaces/eth0", {"iface_id": "eth0"})[0] == 204
    status, body = api.patch("/network-interfaces/nope", {"iface_id": "nope"})
    assert status == 400 and "does not exist" in body["fault_message"]
    status, _ = api.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"})
    assert status == 400


# ---- snapshots --------------------------------------------------------------------------


def test_snapshot_restores_the_nic_onto_a_new_tap(netns, tmp_path, engine):
    """docs/SNAPSHOTS.md: a restored NIC on another TAP (network_overrides) answers ping and
    echoes, with the MAC the guest had."""
    netns.add_tap("tap0", "10.77.0.1/24")
    (tmp_path / "a").mkdir()
    a = Api(tmp_path / "a", prefix=netns.exec_args())
    netns.cleanups.append(a.stop)
    assert a.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                     "mmu": engine})[0] == 204
    assert a.put("/boot-source", {"kernel_image_path": str(GUESTS / "netguest.elf"),
                                  "boot_args": "ip=10.77.0.2"})[0] == 204
    assert a.put("/network-interfaces/eth0", {"iface_id": "eth0",
                                              "host_dev_name": "tap0"})[0] == 204
    assert a.put("/actions", {"action_type": "InstanceStart"})[0] == 204
    a.wait_stdout("netguest: ready")
    mac = re.search(r"mac (\S+)", a.stdout())[1]
    check_echo_sizes(udp(netns), "10.77.0.2", [100])
    assert a.patch("/vm", {"state": "Paused"})[0] == 204
    status, body = a.put("/snapshot/create", {"snapshot_path": str(tmp_path / "s.state"),
                                              "mem_file_path": str(tmp_path / "s.mem")})
    assert status == 204, body
    a.stop()
    netns.ip("link", "del", "tap0")
    netns.add_tap("tap9", "10.77.0.1/24")
    (tmp_path / "b").mkdir()
    b = Api(tmp_path / "b", prefix=netns.exec_args())
    netns.cleanups.append(b.stop)
    status, body = b.put("/snapshot/load", {
        "snapshot_path": str(tmp_path / "s.state"),
        "mem_backend": {"backend_type": "File", "backend_path": str(tmp_path / "s.mem")},
        "resume_vm": True,
        "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap9"}]})
    assert status == 204, body
    assert b.get("/vm/config")[1]["network-interfaces"][0]["host_dev_name"] == "tap9"
    pinger = Pinger(netns)
    try:
        rtts = [pinger.ping("10.77.0.2", timeout=5) for _ in range(3)]
    finally:
        pinger.close()
    assert None not in rtts, f"ping lost after restore: {rtts}\n{b.stderr()}"
    check_echo_sizes(udp(netns), "10.77.0.2", [1, 1000, UDP_MAX])
    assert mac in netns.ip("neigh", "show", "10.77.0.2", "dev", "tap9").stdout
    # An override for an interface the snapshot does not have is refused.
    (tmp_path / "c").mkdir()
    c = Api(tmp_path / "c", prefix=netns.exec_args())
    netns.cleanups.append(c.stop)
    status, body = c.put("/snapshot/load", {
        "snapshot_path": str(tmp_path / "s.state"), "mem_file_path": str(tmp_path / "s.mem"),
        "network_overrides": [{"iface_id": "eth7", "host_dev_name": "tap9"}]})
    assert status == 400 and "no network interface 'eth7'" in body["fault_message"]
