"""The Firecracker-compatible REST API through a real unix socket."""
import json
import os
import socket
import stat
import threading
import time

import pytest

from api_client import Api, UnixHTTPConnection
from conftest import EXIT_VMM_ERROR, GUESTS, HEARTH, KVM, fake_linux_kernel, run_hearth


@pytest.fixture
def api(tmp_path):
    a = Api(tmp_path)
    yield a
    a.stop()


def boot(api, args="", kernel="testguest", **extra):
    assert api.put("/boot-source", {"kernel_image_path": str(GUESTS / f"{kernel}.elf"),
                                    "boot_args": args, **extra})[0] == 204
    return api.put("/actions", {"action_type": "InstanceStart"})


def test_get_root_before_boot(api):
    status, info = api.get("/")
    assert status == 200
    assert info["state"] == "Not started"
    assert info["app_name"] == "hearth"
    assert info["id"] == "anonymous-instance"
    assert "vmm_version" in info and "host_mmu" in info
    # The host as it is, KVM or not: the API works either way.
    if KVM:
        assert info["kvm"] == "available" and "kvm_detail" not in info
    else:
        assert info["kvm"] in ("absent", "no-access", "unusable")
        assert "/dev/kvm" in info["kvm_detail"]
        assert info["host_mmu"].startswith("none")


def test_version(api):
    status, v = api.get("/version")
    assert status == 200 and v["firecracker_version"]


def test_socket_is_private(api):
    assert stat.S_IMODE(os.stat(api.sock).st_mode) == 0o600


def test_machine_config_put_get_patch(api):
    assert api.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 256})[0] == 204
    status, mc = api.get("/machine-config")
    assert status == 200
    assert (mc["vcpu_count"], mc["mem_size_mib"], mc["smt"]) == (2, 256, False)
    assert api.patch("/machine-config", {"mem_size_mib": 64})[0] == 204
    _, mc = api.get("/machine-config")
    assert (mc["vcpu_count"], mc["mem_size_mib"]) == (2, 64)
    assert api.patch("/machine-config", {"mmu": "hardware"})[0] == 204
    assert api.get("/machine-config")[1]["mmu"] == "hardware"


def test_full_boot_through_the_api(api, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * (1 << 20))
    assert api.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 64})[0] == 204
    assert api.put("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": str(disk),
                                      "is_root_device": False,
                                      "is_read_only": False})[0] == 204
    status, body = boot(api, "banner print=booted-by-api")
    assert status == 204, body
    api.wait_stdout("testguest: booted-by-api")
    assert "2 CPU(s)" in api.stdout()
    assert "63 MiB RAM" in api.stdout()
    info = api.wait_state("Stopped")
    assert info["exit"] == {"reason": "guest-exit", "status": 0,
                            "detail": "guest exited with status 0"}
    _, cfg = api.get("/vm/config")
    assert cfg["drives"][0]["path_on_host"] == str(disk)
    assert cfg["machine-config"]["vcpu_count"] == 2
    # Configuration calls are refused once started, and change nothing.
    status, body = api.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128})
    assert status == 400 and "fault_message" in body
    assert api.get("/machine-config")[1]["vcpu_count"] == 2


def test_pause_and_resume_are_seen_by_the_guest(api):
    assert boot(api, "ticks=1000")[0] == 204
    api.wait_stdout("testguest: tick 3")
    assert api.patch("/vm", {"state": "Paused"})[0] == 204
    assert api.get("/")[1]["state"] == "Paused"
    frozen = api.stdout()
    time.sleep(0.6)
    assert api.stdout() == frozen, "the guest ran while paused"
    assert api.patch("/vm", {"state": "Resumed"})[0] == 204
    assert api.get("/")[1]["state"] == "Running"
    deadline = time.monotonic() + 10
    while api.stdout() == frozen:
        assert time.monotonic() < deadline, "the guest did not resume"
        time.sleep(0.02)


def test_send_ctrl_alt_del_reaches_the_guest(api):
    assert boot(api, "cad")[0] == 204
    api.wait_stdout("testguest: ready")
    assert api.put("/actions", {"action_type": "SendCtrlAltDel"})[0] == 204
    api.wait_stdout("testguest: ctrl-alt-del")
    info = api.wait_state("Stopped")
    assert info["exit"]["reason"] == "reset"


def test_patch_drive_swaps_the_medium(api, tmp_path):
    a = tmp_path / "a.img"
    b = tmp_path / "b.img"
    a.write_bytes(b"\0" * (1 << 20))
    b.write_bytes(b"\0" * (3 << 20))
    assert api.put("/drives/d0", {"drive_id": "d0", "path_on_host": str(a),
                                  "is_root_device": False, "is_read_only": False})[0] == 204
    status, body = api.patch("/drives/d0", {"drive_id": "d0", "path_on_host": str(b)})
    assert status == 400 and "before" in body["fault_message"]
    assert boot(api, "ticks=1000", kernel="testguest")[0] == 204
    api.wait_state("Running")
    assert api.patch("/drives/d0", {"drive_id": "d0", "path_on_host": str(b)})[0] == 204
    assert api.get("/vm/config")[1]["drives"][0]["path_on_host"] == str(b)
    status, body = api.patch("/drives/d0", {"drive_id": "d0",
                                            "path_on_host": str(tmp_path / "nope")})
    assert status == 400 and "nope" in body["fault_message"]
    assert api.get("/vm/config")[1]["drives"][0]["path_on_host"] == str(b)


def test_logger_and_metrics(api, tmp_path):
    log = tmp_path / "log"
    met = tmp_path / "metrics"
    assert api.put("/logger", {"log_path": str(log), "level": "Info",
                               "show_level": True})[0] == 204
    assert api.put("/metrics", {"metrics_path": str(met)})[0] == 204
    assert boot(api, "print=x")[0] == 204
    api.wait_state("Stopped")
    assert api.put("/actions", {"action_type": "FlushMetrics"})[0] == 204
    lines = [json.loads(line) for line in met.read_text().splitlines()]
    assert lines, "no metrics line"
    last = lines[-1]
    assert last["api_server"]["requests"] >= 4
    assert last["vcpu"]["exit_io"] > 0
    assert last["uart"]["write_bytes"] > 0
    text = log.read_text()
    assert "[anonymous-instance:" in text and "guest exited with status 0" in text
    assert "[Info]" in text


def test_flush_metrics_without_metrics_is_refused(api):
    status, body = api.put("/actions", {"action_type": "FlushMetrics"})
    assert status == 400 and "metrics" in body["fault_message"]


def test_instance_start_without_boot_source_is_refused(api):
    status, body = api.put("/actions", {"action_type": "InstanceStart"})
    assert status == 400 and "boot source" in body["fault_message"]
    assert api.get("/")[1]["state"] == "Not started"


def test_failed_instance_start_leaves_a_usable_vmm(api, tmp_path):
    bad = tmp_path / "bad.elf"
    bad.write_bytes(b"\x7fELF" + b"\0" * 100)
    assert api.put("/boot-source", {"kernel_image_path": str(bad)})[0] == 204
    status, body = api.put("/actions", {"action_type": "InstanceStart"})
    assert status == 400 and "kernel" in body["fault_message"]
    assert api.get("/")[1]["state"] == "Not started"
    status, body = boot(api, "print=second-try")
    assert status == 204, body
    api.wait_stdout("testguest: second-try")


BAD = [
    ("PUT", "/boot-source", "{not json", "JSON"),
    ("PUT", "/boot-source", '{"kernel_image_path": 5}', "kernel_image_path"),
    ("PUT", "/boot-source", '{"boot_args": "x"}', "kernel_image_path"),
    ("PUT", "/boot-source", '{"kernel_image_path": "/nonexistent/k"}', "/nonexistent/k"),
    ("PUT", "/boot-source", '{"kernel_image_path": "/bin/true", "bogus": 1}', "bogus"),
    ("PUT", "/machine-config", '{"vcpu_count": "2", "mem_size_mib": 128}', "vcpu_count"),
    ("PUT", "/machine-config", '{"vcpu_count": 0, "mem_size_mib": 128}', "vcpu_count"),
    ("PUT", "/machine-config", '{"vcpu_count": 1.5, "mem_size_mib": 128}', "vcpu_count"),
    ("PUT", "/machine-config", '{"vcpu_count": 1}', "mem_size_mib"),
    ("PUT", "/machine-config", '{"vcpu_count": 1, "mem_size_mib": 128, "smt": true}', "smt"),
    ("PATCH", "/machine-config", '{"mmu": "magic"}', "mmu"),
    ("PUT", "/drives/a", '{"drive_id": "b", "path_on_host": "/dev/null", '
                         '"is_root_device": false}', "drive_id"),
    ("PUT", "/drives/bad-id", '{"drive_id": "bad-id", "path_on_host": "/x", '
                              '"is_root_device": false}',
     "drive_id 'bad-id' in the path must be 1..64 characters from [A-Za-z0-9_]"),
    ("PUT", "/network-interfaces/eth0", '{"iface_id": "eth0", "host_dev_name": "tap0", '
                                        '"guest_mac": "01:00:5e:00:00:01"}',
     "guest_mac '01:00:5e:00:00:01' must be a unicast address"),
    ("PUT", "/network-interfaces/eth0", '{"iface_id": "eth0", "host_dev_name": "a/b"}',
     "host_dev_name 'a/b' must be 1..15 bytes"),
    ("PUT", "/drives/a", '{"drive_id": "a", "path_on_host": "/nonexistent/img", '
                         '"is_root_device": false}', "/nonexistent/img"),
    ("PUT", "/actions", '{"action_type": "Explode"}', "action_type"),
    ("PATCH", "/vm", '{"state": "Paused"}', "not running"),
    ("PUT", "/vm", '{"state": "Paused"}', "PUT"),
    ("DELETE", "/", None, "DELETE"),
    ("GET", "/no/such/path", None, "/no/such/path"),
    ("PUT", "/snapshot/create", '{}', "missing required field 'snapshot_path'"),
    ("PUT", "/snapshot/create", '{"snapshot_path": "/tmp/s", "mem_file_path": "/tmp/m"}',
     "must be Paused"),
    ("PUT", "/snapshot/load", '{"snapshot_path": "/tmp/s", "mem_backend": '
                              '{"backend_type": "Uffd", "backend_path": "/x"}}', "Uffd"),
    ("PUT", "/balloon", '{}', "not implemented"),
    ("PUT", "/boot-source", "[]", "object"),
    ("PUT", "/boot-source", "", "body"),
    # Firecracker answers these with 400 too
    ("GET", "/", "{}", "GET request cannot have a body"),
    ("GET", "/machine-config", '{"vcpu_count": 2}', "GET request cannot have a body"),
    ("GET", "/machine-config%00", None, "NUL"),
    ("PUT", "/machine-config%00x", '{"vcpu_count": 2, "mem_size_mib": 64}', "NUL"),
    ("GET", "/?x=%00", None, "NUL"),
]


@pytest.mark.parametrize("method,path,body,needle", BAD)
def test_bad_requests_change_nothing(api, method, path, body, needle):
    before = api.get("/vm/config")[1]
    status, reply = api.request(method, path, raw=body)
    assert status == 400, reply
    assert needle.lower() in reply["fault_message"].lower(), reply
    assert api.get("/vm/config")[1] == before
    assert api.get("/")[1]["state"] == "Not started"


@pytest.mark.parametrize("line", [b"GET /machine-config\0 HTTP/1.1",
                                  b"GET /\0/version HTTP/1.1",
                                  b"PUT /machine-config\0abc HTTP/1.1"])
def test_raw_nul_in_the_path_is_refused(api, line):
    before = api.get("/vm/config")[1]
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(api.sock)
    body = b'{"vcpu_count": 2, "mem_size_mib": 64}' if line.startswith(b"PUT") else b""
    s.sendall(line + b"\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    s.close()
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b"NUL" in reply
    assert api.get("/vm/config")[1] == before


@pytest.mark.skipif(KVM, reason="checks a host without /dev/kvm; this one has it")
def test_instance_start_without_kvm_is_a_clear_400_and_the_vmm_stays(api, tmp_path):
    # A KVM engine asked for, or a Linux kernel (which only KVM runs): refused, and the VMM
    # stays unstarted and configurable.
    assert api.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 64,
                                       "mmu": "hardware"})[0] == 204
    for _ in range(2):  # and again: the failure left a clean, unstarted VMM
        status, body = boot(api, "print=x")
        assert status == 400, body
        msg = body["fault_message"]
        assert "/dev/kvm" in msg and "InstanceStart" in msg and "\n" not in msg
        info = api.get("/")[1]
        assert info["state"] == "Not started" and info["kvm"] == "absent"
    assert api.get("/machine-config")[1]["vcpu_count"] == 2
    assert api.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64})[0] == 204
    linux = fake_linux_kernel(tmp_path / "bzImage")
    assert api.put("/boot-source", {"kernel_image_path": str(linux)})[0] == 204
    status, body = api.put("/actions", {"action_type": "InstanceStart"})
    assert status == 400, body
    assert "Linux kernel" in body["fault_message"] and "/dev/kvm" in body["fault_message"]
    assert api.get("/")[1]["state"] == "Not started"
    # auto: the process engine runs the unikernel.
    status, body = boot(api, "print=after")
    assert status == 204, body
    assert api.get("/")[1]["engine"] == "process"
    api.wait_stdout("testguest: after")


@pytest.mark.skipif(KVM, reason="checks a host without /dev/kvm; this one has it")
def test_config_file_without_kvm_exits_with_the_documented_status(tmp_path):
    f = tmp_path / "vm.json"
    cfg = {"boot-source": {"kernel_image_path": str(GUESTS / "hello.elf")},
           "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "mmu": "hardware"}}
    f.write_text(json.dumps(cfg))
    r = run_hearth("--config-file", f, "--no-api", timeout=30)
    assert r.code == EXIT_VMM_ERROR, r.err
    assert "/dev/kvm" in r.err
    # auto: the process engine
    cfg["machine-config"]["mmu"] = "auto"
    f.write_text(json.dumps(cfg))
    r = run_hearth("--config-file", f, "--no-api", timeout=30)
    assert r.code == 0, r.err
    assert "hello from hearth" in r.out and "engine: process" in r.err


def test_oversized_body_is_refused(api):
    body = json.dumps({"kernel_image_path": "x" * 60000})
    status, reply = api.request("PUT", "/boot-source", raw=body)
    assert status in (400, 413)
    assert api.get("/")[0] == 200


def test_garbage_and_disconnecting_clients_do_not_hurt(api):
    for junk in [b"garbage\r\n\r\n", b"\x00\xff" * 100, b"PUT /boot-source HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"]:
        s = socket.socket(socket.AF_UNIX)
        s.connect(api.sock)
        s.sendall(junk)
        s.close()
    assert api.get("/")[0] == 200


def test_silent_client_does_not_block_others(api):
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(api.sock)
    silent.sendall(b"GET / HTTP/1.1\r\n")  # never finishes its headers
    t0 = time.monotonic()
    for _ in range(20):
        assert api.get("/")[0] == 200
    assert time.monotonic() - t0 < 5
    silent.close()


def test_concurrent_clients(api):
    errors = []

    def worker():
        try:
            for _ in range(50):
                status, info = api.get("/")
                if status != 200 or info["state"] != "Not started":
                    errors.append((status, info))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_live_socket_is_never_stolen(api, tmp_path):
    r = run_hearth("--api-sock", api.sock, timeout=10)
    assert r.code != 0
    assert "in use" in r.err
    assert api.get("/")[0] == 200


def test_stale_socket_is_replaced(tmp_path):
    path = tmp_path / "api.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # a socket file nobody listens on
    a = Api(tmp_path)
    try:
        assert a.get("/")[0] == 200
    finally:
        a.stop()


def test_config_file_boots_without_api(tmp_path):
    cfg = {
        "boot-source": {"kernel_image_path": str(GUESTS / "testguest.elf"),
                        "boot_args": "banner exit=7"},
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 96},
    }
    f = tmp_path / "vm.json"
    f.write_text(json.dumps(cfg))
    r = run_hearth("--config-file", f, "--no-api", timeout=30)
    assert r.code == 7, r.err
    assert "95 MiB RAM" in r.out and "2 CPU(s)" in r.out


@pytest.mark.parametrize("cfg,needle", [
    ({"machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}, "boot"),
    ({"boot-source": {"kernel_image_path": 3}}, "kernel_image_path"),
    ({"boot-source": {"kernel_image_path": "/x"}, "bogus-section": {}}, "bogus-section"),
    ({"boot-source": {"kernel_image_path": "/x"},
      "machine-config": {"vcpu_count": "two", "mem_size_mib": 64}}, "vcpu_count"),
    ({"boot-source": {"kernel_image_path": "/x"},
      "machine-config": {"vcpu_count": 1, "mem_size_mib": 2}},
     "machine-config.mem_size_mib must be between 4 and 1048576 MiB"),
    ({"boot-source": {"kernel_image_path": "/x"},
      "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                              "guest_mac": "01:00:5e:00:00:01"}]},
     "network-interfaces[0].guest_mac '01:00:5e:00:00:01' must be a unicast address"),
])
def test_bad_config_files_name_the_field(tmp_path, cfg, needle):
    f = tmp_path / "vm.json"
    f.write_text(json.dumps(cfg))
    r = run_hearth("--config-file", f, "--no-api", timeout=30)
    assert r.code == 240, r.err
    assert needle in r.err


def test_boot_timer(tmp_path):
    r = run_hearth("--kernel", GUESTS / "testguest.elf", "--cmdline", "boottimer",
                   "--boot-timer", timeout=30)
    assert r.code == 0, r.err
    assert "Guest-boot-time =" in r.err
