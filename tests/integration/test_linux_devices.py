"""Linux with devices: Debian's cloud kernel mounts a virtio-blk disk and writes a file on it.

The test builds an initramfs in a temporary directory from Debian packages: the static
busybox of busybox-static (.ci/install-deps installs it) and the virtio modules of
linux-image-cloud-amd64, which fetch_debian_kernel.sh caches in .cache/debian-kernel/modules/
(the same package the bzImage comes from). In that kernel (6.1 cloud-amd64) ext4, jbd2,
mbcache, crc16 and crc32c are built in (modules.builtin); virtio_ring, virtio, virtio_mmio and
virtio_blk are modules, plain .ko files (a compressed .ko.xz/.ko.zst is decompressed).

/init loads the four modules, mounts /dev/vda (ext4, made on the host with mkfs.ext4), writes
a token from the command line to /hearth.txt, unmounts, and reboots with `reboot -f`: with
reboot=k the kernel pulses the i8042 reset line and hearth ends with status 0. The test then
reads the file from the image on the host with debugfs and checks the file system with e2fsck.

How the kernel finds the disk: Debian builds virtio_mmio without
CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so the virtio_mmio.device= entries hearth appends do
nothing ("unknown parameter 'device' ignored"); the device comes from hearth's ACPI DSDT
(LNRO0005), which this test therefore exercises. /init still hands those entries to insmod
(insmod, unlike modprobe, does not read /proc/cmdline) for kernels built with the option; there
the second probe of the same window fails with EBUSY, harmlessly.

Checked by hand under QEMU 7.2 (-M microvm, TCG, the same bzImage and an initramfs from
build_initramfs): the kernel loads the modules, finds vda through ACPI, /init writes the file,
the image reads back with debugfs and e2fsck -fn is clean (about 10 s; Linux needs
tsc_early_khz= there, since TCG gives it no TSC reference).

Linux must finish booting for this, which needs a host with EPT/NPT. On a "pvm" host (what
`hearth --version` calls one where KVM emulates guest CPL0: kvm_pvm, no VMX/SVM) the kernel
dies early (test_linux.py); there the boot test is skipped, before anything is fetched.
test_initramfs_is_well_formed runs everywhere: it builds the same archive around stand-in
modules and checks it with cpio and busybox sh -n.

By hand (for instance to boot it elsewhere):
    python3 tests/integration/test_linux_devices.py OUT.cpio [MODULES_DIR]
"""
import lzma
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import HEARTH, KVM, NO_KVM_REASON, host_mmu, run_hearth

FETCH = Path(__file__).resolve().with_name("fetch_debian_kernel.sh")
FETCH_NO_REGISTRY = 2  # fetch_debian_kernel.sh: apt cannot reach the package registry
BUSYBOX = Path("/bin/busybox")

# Load order: each after what it depends on (modinfo -F depends).
MODULES = ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk"]
MODULE_PATHS = {
    "virtio_ring": "kernel/drivers/virtio/virtio_ring",
    "virtio": "kernel/drivers/virtio/virtio",
    "virtio_mmio": "kernel/drivers/virtio/virtio_mmio",
    "virtio_blk": "kernel/drivers/block/virtio_blk",
}
# Must be built in, since the initramfs does not carry them.
BUILTIN = ["kernel/fs/ext4/ext4.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko"]

TOKEN_PARAM = "hearth_devtest"
FILE_NAME = "hearth.txt"
CMDLINE = "console=ttyS0 rdinit=/init reboot=k panic=-1"
MEM_MIB = 256
DISK_MIB = 64
TIMEOUT = 120  # s; a boot to the shell takes a few seconds with EPT/NPT

INIT = f"""#!/bin/sh
# hearth test_linux_devices: virtio modules, mount /dev/vda, write a file, reboot.
export PATH=/bin
/bin/busybox mount -t proc proc /proc
# --install needs /proc (it reads /proc/self/exe).
/bin/busybox --install -s /bin
say() {{ echo "hearth-init: $*"; }}
fail() {{ say "FAIL: $*"; dmesg | tail -n 30; reboot -f; }}
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs"
token=
mmio=
for t in $(cat /proc/cmdline); do
    case "$t" in
    {TOKEN_PARAM}=*) token="${{t#{TOKEN_PARAM}=}}" ;;
    virtio_mmio.device=*) mmio="$mmio device=${{t#virtio_mmio.device=}}" ;;
    esac
done
[ -n "$token" ] || fail "no {TOKEN_PARAM}= on the command line"
for m in {" ".join(MODULES)}; do
    if [ "$m" = virtio_mmio ]; then
        insmod /lib/modules/$m.ko $mmio || fail "insmod $m"
    else
        insmod /lib/modules/$m.ko || fail "insmod $m"
    fi
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || fail "no /dev/vda"
mount -t ext4 /dev/vda /mnt || fail "mount /dev/vda"
echo "$token" > /mnt/{FILE_NAME} || fail "write"
sync
umount /mnt || fail "umount"
say "wrote {FILE_NAME}"
reboot -f
"""


# ---- the initramfs ----------------------------------------------------------------------

class Newc:
    """A cpio archive in the "newc" format (the one the kernel unpacks), written directly, so
    that /dev/console can be a device node without root and every entry is owned by 0:0."""

    def __init__(self):
        self.data = bytearray()
        self.ino = 1

    def _entry(self, name, mode, body=b"", rdev=(0, 0)):
        name_b = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(body),
                  0, 0, rdev[0], rdev[1], len(name_b), 0]
        self.ino += 1
        self.data += b"070701" + b"".join(b"%08x" % f for f in fields) + name_b
        self.data += b"\0" * (-len(self.data) % 4)
        self.data += body
        self.data += b"\0" * (-len(self.data) % 4)

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, body, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, body)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self):
        self.ino = 0
        self._entry("TRAILER!!!", 0)
        return bytes(self.data)


def read_module(modules_dir, name):
    """The module's bytes; .ko.xz and .ko.zst are decompressed (the kernel's finit_module
    would take them only with CONFIG_MODULE_DECOMPRESS, busybox insmod not at all)."""
    base = Path(modules_dir) / MODULE_PATHS[name]
    for suffix, unpack in ((".ko", None), (".ko.xz", lzma.decompress),
                           (".ko.zst", lambda b: subprocess.run(
                               ["zstd", "-dcq"], input=b, capture_output=True,
                               check=True).stdout)):
        p = base.with_name(base.name + suffix)
        if p.is_file():
            body = p.read_bytes()
            return unpack(body) if unpack else body
    raise FileNotFoundError(f"{base}.ko(.xz|.zst) not in {modules_dir}")


def build_initramfs(out, modules_dir, busybox=BUSYBOX, init=INIT):
    """Write the initramfs (an uncompressed newc cpio) to `out`: /init, /bin/busybox with
    /bin/sh, /dev/console, the mount points, and /lib/modules/<name>.ko for MODULES."""
    busybox = Path(busybox)
    if not busybox.is_file():
        raise FileNotFoundError(f"{busybox} missing (Debian package busybox-static)")
    a = Newc()
    for d in ("bin", "dev", "lib", "lib/modules", "mnt", "proc", "sys"):
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.file("bin/busybox", busybox.read_bytes(), 0o755)
    a.symlink("bin/sh", "busybox")
    for m in MODULES:
        a.file(f"lib/modules/{m}.ko", read_module(modules_dir, m))
    a.file("init", init.encode(), 0o755)
    Path(out).write_bytes(a.finish())
    return Path(out)


# ---- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def linux_host():
    """Skips, first and fast, where Linux cannot boot."""
    assert HEARTH.exists(), f"{HEARTH} not built (make all)"
    if not KVM:
        pytest.skip(NO_KVM_REASON)
    mmu = host_mmu()
    if mmu == "pvm":
        pytest.skip("host mmu: pvm — KVM emulates guest CPL0 on this host (kvm_pvm, no "
                    "EPT/NPT), and Linux cannot finish booting here (it dies on an "
                    "instruction KVM cannot emulate, see test_linux.py); this test needs a "
                    "host with EPT or NPT")
    return mmu


@pytest.fixture(scope="module")
def kernel(linux_host):
    """(bzImage, modules dir) from fetch_debian_kernel.sh."""
    try:
        p = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{FETCH.name} did not finish in 900 s")
    if p.returncode == FETCH_NO_REGISTRY:
        why = (p.stderr.strip().splitlines() or ["no reason given"])[-1]
        pytest.skip(f"Debian's package registry cannot be reached: {why}")
    assert p.returncode == 0, f"{FETCH.name} failed ({p.returncode}):\n{p.stderr}"
    paths = dict(line.split(": ", 1) for line in p.stdout.splitlines() if ": " in line)
    modules = Path(paths["modules"])
    builtin = (modules / "modules.builtin").read_text().split()
    missing = [m for m in BUILTIN if m not in builtin]
    assert not missing, f"not built into this kernel (the initramfs does not carry them): {missing}"
    return Path(paths["bzImage"]), modules


def tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path, f"{name} not found (Debian package e2fsprogs)"
    return path


# ---- tests ------------------------------------------------------------------------------

def test_linux_mounts_virtio_blk_and_writes_a_file(kernel, tmp_path):
    bzimage, modules = kernel
    initrd = build_initramfs(tmp_path / "initramfs.cpio", modules)
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_MIB << 20)
    subprocess.run([tool("mkfs.ext4"), "-F", "-q", "-L", "hearth", str(disk)], check=True,
                   capture_output=True)
    token = uuid.uuid4().hex
    console = tmp_path / "console.txt"

    r = run_hearth("--mmu", "hardware", "--kernel", bzimage, "--initrd", initrd,
                   "--drive", disk, "--mem", MEM_MIB, "--console", console,
                   "--cmdline", f"{CMDLINE} {TOKEN_PARAM}={token}", "--timeout", TIMEOUT,
                   timeout=TIMEOUT + 60)
    out = console.read_text(errors="replace") if console.exists() else ""
    where = f"\nexit {r.code}\n--- stderr\n{r.err}\n--- console (tail)\n{out[-8000:]}"
    assert "hearth-init: FAIL" not in out, "/init failed" + where
    assert "hearth-init: wrote hearth.txt" in out, "/init did not get to the end" + where
    assert r.code == 0 and "reset" in r.err, "the guest did not end with a reset" + where

    cat = subprocess.run([tool("debugfs"), "-R", f"cat /{FILE_NAME}", str(disk)],
                         capture_output=True, text=True)
    assert cat.stdout == token + "\n", f"debugfs: {cat.stdout!r} {cat.stderr}" + where
    fsck = subprocess.run([tool("e2fsck"), "-fn", str(disk)], capture_output=True, text=True)
    assert fsck.returncode == 0, f"e2fsck -fn: {fsck.returncode}\n{fsck.stdout}" + where


def test_initramfs_is_well_formed(tmp_path):
    """The archive the boot test builds, with stand-in modules: cpio lists every entry with
    its type, and busybox's sh parses /init."""
    if not BUSYBOX.is_file():
        pytest.skip(f"{BUSYBOX} missing (busybox-static)")
    fake = tmp_path / "modules"
    for i, m in enumerate(MODULES):
        p = fake / (MODULE_PATHS[m] + (".ko.xz" if i == 0 else ".ko"))
        p.parent.mkdir(parents=True, exist_ok=True)
        body = b"\x7fELF" + m.encode()
        p.write_bytes(lzma.compress(body) if i == 0 else body)
    cpio = build_initramfs(tmp_path / "initramfs.cpio", fake)

    listing = subprocess.run(["cpio", "-itv", "--quiet"], stdin=open(cpio, "rb"),
                             capture_output=True, text=True, check=True).stdout
    entries = {line.split()[-1] if "->" not in line else line.split()[-3]: line[0]
               for line in listing.splitlines()}
    assert entries == {
        "bin": "d", "dev": "d", "lib": "d", "lib/modules": "d", "mnt": "d", "proc": "d",
        "sys": "d", "dev/console": "c", "bin/busybox": "-", "bin/sh": "l", "init": "-",
        **{f"lib/modules/{m}.ko": "-" for m in MODULES}}, listing
    ex = tmp_path / "x"
    ex.mkdir()
    # Unpacks (device nodes need root; the rest must come out as written).
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames",
                    "--nonmatching", "dev/console"], stdin=open(cpio, "rb"), cwd=ex,
                   check=True)
    assert (ex / "lib/modules/virtio_ring.ko").read_bytes() == b"\x7fELFvirtio_ring"
    assert (ex / "bin/busybox").read_bytes() == BUSYBOX.read_bytes()
    assert os.access(ex / "init", os.X_OK) and os.readlink(ex / "bin/sh") == "busybox"
    syntax = subprocess.run([str(BUSYBOX), "sh", "-n", str(ex / "init")], capture_output=True,
                            text=True)
    assert syntax.returncode == 0, syntax.stderr


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} OUT.cpio [MODULES_DIR]")
    mods = sys.argv[2] if len(sys.argv) == 3 else \
        Path(__file__).resolve().parents[2] / ".cache/debian-kernel/modules"
    print(build_initramfs(sys.argv[1], mods))
