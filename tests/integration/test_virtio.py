"""virtio-mmio devices with the bundled devguest: bytes on disk, read-only images,
bad requests, virtio-console output, feature negotiation."""
import hashlib
import os

import pytest

from conftest import EXIT_BAD_IMAGE, EXIT_USAGE

SECTOR = 512
PATTERN_BYTES = 64 * 1024


def pattern(nbytes=PATTERN_BYTES):
    """devguest's blk-pattern: byte i of sector s = (s*31 + i*7 + 0x5a) & 0xff."""
    out = bytearray(nbytes)
    for s in range(nbytes // SECTOR):
        base = s * 31 + 0x5A
        for i in range(SECTOR):
            out[s * SECTOR + i] = (base + i * 7) & 0xFF
    return bytes(out)


def image(tmp_path, name, size, fill=b"\0"):
    p = tmp_path / name
    p.write_bytes(fill * size if len(fill) == 1 else fill)
    return p


def devguest(hearth, guest, cmdline, *args, **kw):
    return hearth("--kernel", guest("devguest"), "--cmdline", cmdline, *args, **kw)


def test_pattern_written_flushed_and_read_back_lands_in_the_file(hearth, guest, tmp_path):
    img = image(tmp_path, "disk.img", 1 << 20)
    r = devguest(hearth, guest, "blk-pattern=0", "--drive", img)
    assert r.code == 0, r.out + r.err
    assert "devguest: blk 0 pattern ok" in r.out
    data = img.read_bytes()
    assert data[:PATTERN_BYTES] == pattern()
    assert data[PATTERN_BYTES:] == b"\0" * (len(data) - PATTERN_BYTES)


def test_read_only_image_refuses_writes_and_is_unchanged(hearth, guest, tmp_path):
    content = os.urandom(256 * 1024)
    img = image(tmp_path, "ro.img", 0, content)
    before = hashlib.sha256(img.read_bytes()).hexdigest()
    r = devguest(hearth, guest, "blk-ro=0", "--drive", f"{img},ro")
    assert r.code == 0, r.out + r.err
    assert "devguest: blk 0 ro ok" in r.out
    assert f"devguest: blk 0 sector0 {content[:16].hex()}" in r.out
    assert hashlib.sha256(img.read_bytes()).hexdigest() == before


def test_pattern_on_a_read_only_drive_fails_in_the_guest(hearth, guest, tmp_path):
    img = image(tmp_path, "ro.img", 1 << 20)
    r = devguest(hearth, guest, "blk-pattern=0", "--drive", f"{img},ro")
    assert r.code == 10, r.out + r.err
    assert img.read_bytes() == b"\0" * (1 << 20)


def test_bad_requests_get_the_right_status(hearth, guest, tmp_path):
    img = image(tmp_path, "disk.img", 1 << 20)
    r = devguest(hearth, guest, "blk-badreq=0", "--drive", img)
    assert r.code == 0, r.out + r.err
    assert "devguest: blk 0 badreq ok" in r.out


def test_drive_id_and_capacity(hearth, guest, tmp_path):
    img = image(tmp_path, "disk.img", 3 * 1024 * 1024 + 100)  # not a multiple of 512
    r = devguest(hearth, guest, "blk-id=0 blk-size=0", "--drive", f"{img},id=rootfs_1")
    assert r.code == 0, r.out + r.err
    assert "devguest: blk 0 id rootfs_1" in r.out
    assert f"devguest: blk 0 capacity {(3 * 1024 * 1024) // SECTOR}" in r.out
    assert "rounded down" in r.err or "multiple of 512" in r.err


def test_several_drives_at_once(hearth, guest, tmp_path):
    a = image(tmp_path, "a.img", 1 << 20)
    b = image(tmp_path, "b.img", 0, os.urandom(1 << 20))
    before_b = b.read_bytes()
    c = image(tmp_path, "c.img", 2 << 20)
    r = devguest(hearth, guest, "blk-pattern=0 blk-ro=1 blk-pattern=2 blk-id=2",
                 "--drive", a, "--drive", f"{b},ro", "--drive", f"{c},id=third")
    assert r.code == 0, r.out + r.err
    assert a.read_bytes()[:PATTERN_BYTES] == pattern()
    assert c.read_bytes()[:PATTERN_BYTES] == pattern()
    assert b.read_bytes() == before_b
    assert "devguest: blk 2 id third" in r.out


def test_virtio_console_output(hearth, guest):
    r = devguest(hearth, guest, "vcon=hello-through-virtio", "--virtio-console")
    assert r.code == 0, r.out + r.err
    assert "hello-through-virtio\n" in r.out
    assert "devguest: vcon sent" in r.out
    # The virtio-console line comes before the UART line that follows it.
    assert r.out.index("hello-through-virtio") < r.out.index("devguest: vcon sent")


def test_virtio_console_beside_drives(hearth, guest, tmp_path):
    img = image(tmp_path, "disk.img", 1 << 20)
    r = devguest(hearth, guest, "blk-pattern=0 vcon=both-work", "--drive", img,
                 "--virtio-console")
    assert r.code == 0, r.out + r.err
    assert "both-work\n" in r.out
    assert img.read_bytes()[:PATTERN_BYTES] == pattern()


def test_driver_refusing_version_1_gets_features_ok_cleared(hearth, guest, tmp_path):
    img = image(tmp_path, "disk.img", 1 << 20)
    r = devguest(hearth, guest, "refuse-v1 blk-pattern=0", "--drive", img)
    assert r.code == 0, r.out + r.err
    assert "devguest: refuse-v1 ok" in r.out
    assert "devguest: blk 0 pattern ok" in r.out


def test_devices_are_announced_on_the_command_line(hearth, guest, tmp_path):
    img = image(tmp_path, "disk.img", 1 << 20)
    r = devguest(hearth, guest, "list", "--drive", img, "--virtio-console")
    assert r.code == 0, r.out + r.err
    assert "virtio 0 id 2 at 0xc0000000" in r.out
    assert "virtio 1 id 3 at 0xc0001000" in r.out


@pytest.mark.parametrize("spec,needle", [
    ("{tmp}/missing.img", "missing.img"),
    ("{tmp}", "Is a directory"),
    ("{tmp}/disk.img,bogus", "unknown option 'bogus'"),
    ("{tmp}/disk.img,id=bad-id!", "id 'bad-id!' must be 1..64 characters from [A-Za-z0-9_]"),
])
def test_bad_drives_get_clear_errors(cli, guest, tmp_path, spec, needle):
    image(tmp_path, "disk.img", 1 << 20)
    r = devguest(cli, guest, "exit=0", "--drive", spec.format(tmp=tmp_path))
    assert r.code in (EXIT_USAGE, EXIT_BAD_IMAGE), r.err
    assert needle in r.err


def test_duplicate_drive_ids_are_refused(cli, guest, tmp_path):
    img = image(tmp_path, "disk.img", 1 << 20)
    r = devguest(cli, guest, "exit=0", "--drive", f"{img},id=a", "--drive", f"{img},id=a")
    assert r.code == EXIT_USAGE
    assert "used twice" in r.err
