#!/usr/bin/env bash
# Fetch Debian's linux-image-cloud-amd64 into .cache/debian-kernel/ (ignored, never committed)
# and lay out the two images the Linux integration tests boot:
#
#   .cache/debian-kernel/bzImage   the package's /boot/vmlinuz-* as shipped
#   .cache/debian-kernel/vmlinux   the uncompressed ELF vmlinux, extracted from the bzImage here
#   .cache/debian-kernel/modules/  the package's /lib/modules/<version>/ (modules.builtin and
#                                  kernel/**/*.ko): what an initramfs needs
#
# HEARTH_KERNEL_FLAVOUR picks another flavour of the package: "cloud-amd64" (the default, what
# the integration tests boot) or "amd64" (the generic kernel, which has kvm-amd and the other
# modules the nested harness, tests/nested/, needs). A flavour other than the default is cached
# in .cache/debian-kernel-<flavour>/ so the two never mix.
#
# Idempotent: when the images and the modules are already there and valid, nothing is fetched.
# Prints the paths (one per line, as "bzImage: PATH", "vmlinux: PATH" and "modules: PATH") on
# success.
#
# Exit status: 0 ok; 2 the package registry cannot be reached (apt-get update fails) or this
# machine has no apt at all: the caller may skip; 1 anything else (a missing or malformed
# package, an extraction failure...): a real failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FLAVOUR="${HEARTH_KERNEL_FLAVOUR:-cloud-amd64}"
case "$FLAVOUR" in
    cloud-amd64) DEFAULT_CACHE="$ROOT/.cache/debian-kernel" ;;
    amd64) DEFAULT_CACHE="$ROOT/.cache/debian-kernel-$FLAVOUR" ;;
    *) echo "fetch_debian_kernel: error: HEARTH_KERNEL_FLAVOUR=$FLAVOUR:" \
            "expected cloud-amd64 or amd64" >&2; exit 1 ;;
esac
CACHE="${HEARTH_KERNEL_CACHE:-$DEFAULT_CACHE}"
META=linux-image-$FLAVOUR
EXIT_NET=2

die() { echo "fetch_debian_kernel: error: $*" >&2; exit 1; }
die_net() { echo "fetch_debian_kernel: apt/network failure: $*" >&2; exit "$EXIT_NET"; }
log() { echo "fetch_debian_kernel: $*" >&2; }

mkdir -p "$CACHE"
cd "$CACHE"
# One fetch at a time per cache (two test runs may start together).
if command -v flock >/dev/null; then
    exec 9>"$CACHE/.lock"
    flock 9
fi

# --- extractor: bzImage -> ELF vmlinux ---------------------------------------------------
# The setup header (Documentation/arch/x86/boot.rst) says where the compressed kernel is:
# setup_sects at 0x1f1 (0 means 4) gives the size of the real-mode part, and
# payload_offset/payload_length at 0x248/0x24c locate the payload within the protected-mode
# part that follows it. The kernel build appends the uncompressed size (le32) to the payload;
# it is stripped before decompressing and checked against the result.
extract_vmlinux() { # bzImage out
    python3 - "$1" "$2" <<'PY'
import os, shutil, struct, subprocess, sys

src, dst = sys.argv[1], sys.argv[2]
img = open(src, "rb").read()

def fail(msg):
    sys.exit(f"extract-vmlinux: {src}: {msg}")

if len(img) < 0x250 or img[0x202:0x206] != b"HdrS":
    fail("no x86 boot setup header (HdrS)")
version = struct.unpack_from("<H", img, 0x206)[0]
if version < 0x208:
    fail(f"boot protocol {version >> 8}.{version & 0xff} has no payload fields (needs 2.08)")
setup_sects = img[0x1f1] or 4
pm_start = (setup_sects + 1) * 512
payload_offset, payload_length = struct.unpack_from("<II", img, 0x248)
start = pm_start + payload_offset
end = start + payload_length
if payload_length < 8 or end > len(img):
    fail(f"payload [{start:#x}, {end:#x}) lies outside the {len(img)}-byte image")
payload = img[start:end]

# (name, magic, command that decompresses stdin to stdout)
formats = [
    ("gzip", b"\x1f\x8b", ["gzip", "-dc"]),
    ("xz", b"\xfd7zXZ\x00", ["xz", "-dc", "--single-stream"]),
    ("zstd", b"\x28\xb5\x2f\xfd", ["zstd", "-dcq"]),
    ("lz4", b"\x02\x21\x4c\x18", ["lz4", "-dcq"]),
    ("bzip2", b"BZh", ["bzip2", "-dc"]),
    ("lzo", b"\x89LZO", ["lzop", "-dc"]),
    ("lzma", b"\x5d\x00\x00", ["xz", "-dc", "--format=lzma"]),
]
for name, magic, cmd in formats:
    if payload.startswith(magic):
        break
else:
    fail(f"unknown compression, payload starts with {payload[:8].hex()}")
if shutil.which(cmd[0]) is None:
    fail(f"payload is {name}-compressed but '{cmd[0]}' is not installed")

size = struct.unpack_from("<I", payload, len(payload) - 4)[0]
p = subprocess.run(cmd, input=payload[:-4], capture_output=True)
out = p.stdout
if p.returncode != 0 or not out:
    # Some tools refuse a stream cut exactly at its end less the size word; try it whole.
    p = subprocess.run(cmd, input=payload, capture_output=True)
    out = p.stdout
if not out:
    fail(f"{' '.join(cmd)} failed: {p.stderr.decode(errors='replace').strip()}")
if len(out) != size:
    fail(f"decompressed {len(out)} bytes, the image says {size}")
if out[:4] != b"\x7fELF" or out[4] != 2 or struct.unpack_from("<H", out, 18)[0] != 0x3e:
    fail("decompressed payload is not an x86-64 ELF")
with open(dst + ".tmp", "wb") as f:
    f.write(out)
os.replace(dst + ".tmp", dst)
print(f"extract-vmlinux: {name} payload at {start:#x}+{payload_length:#x}"
      f" -> {len(out)} bytes ELF64", file=sys.stderr)
PY
}

valid_elf() { # path
    [ -s "$1" ] && [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]
}
valid_bzimage() { # path
    [ -s "$1" ] && [ "$(dd if="$1" bs=1 skip=514 count=4 2>/dev/null)" = HdrS ]
}

done_paths() {
    echo "bzImage: $CACHE/bzImage"
    echo "vmlinux: $CACHE/vmlinux"
    echo "modules: $CACHE/modules"
    [ -s "$CACHE/VERSION" ] && echo "package: $(cat "$CACHE/VERSION")"
    exit 0
}

if valid_bzimage bzImage && valid_elf vmlinux && [ -s modules/modules.builtin ]; then
    done_paths
fi

# --- fetch ------------------------------------------------------------------------------
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || die_net "apt-get/dpkg-deb not available on this machine"

# "apt-get update --error-on=any" is the registry reachability check (plain "apt-get update"
# exits 0 when it cannot fetch anything). A step that fails after an update that could not
# reach the registry is a network failure (exit 2); after a good update, a real failure (exit 1).
update() { # -> 0 when the registry answered
    log "apt-get update"
    apt-get update -qq --error-on=any >&2
}
fail_after_update() { # updated-ok? message
    if [ "$1" = 0 ]; then die "$2"; fi
    die_net "$2 (and apt-get update could not reach the package registry)"
}

# apt-get download needs the package lists; update them only when they do not know the package.
if ! apt-cache show "$META" >/dev/null 2>&1; then
    st=0; update || st=$?
    apt-cache show "$META" >/dev/null 2>&1 \
        || fail_after_update "$st" "no package $META in the apt sources"
fi

# The metapackage has no kernel in it; it depends on the real linux-image-<abi>-<flavour>.
rm -f ./*.deb
download() { # pkg[=version]
    apt-get download -q "$1" >&2 && return 0
    # Stale lists (a version gone from the mirror) or no network: refresh once and retry.
    local st=0
    update || st=$?
    apt-get download -q "$1" >&2 || fail_after_update "$st" "apt-get download $1 failed"
}
download "$META"
meta_deb=$(ls ${META}_*.deb 2>/dev/null | head -n1)
[ -n "$meta_deb" ] || die "apt-get download $META produced no .deb"
depends=$(dpkg-deb -f "$meta_deb" Depends)
# e.g. "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)". The ABI part has no letters, so
# "-amd64" does not also match "-cloud-amd64".
dep=$(printf '%s\n' "$depends" | tr ',|' '\n\n' | sed 's/^ *//' \
    | grep -E "^linux-image-[0-9][0-9.-]*-$FLAVOUR( |\$)" | head -n1) \
    || die "$meta_deb has no linux-image-*-$FLAVOUR dependency (Depends: $depends)"
pkg=${dep%% *}
ver=$(printf '%s\n' "$dep" | sed -n 's/.*(= *\([^)]*\)).*/\1/p')
log "$META depends on $pkg${ver:+ (= $ver)}"
download "$pkg${ver:+=$ver}"
deb=$(ls "${pkg}"_*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || die "apt-get download $pkg produced no .deb"

rm -rf root
mkdir root
dpkg-deb -x "$deb" root || die "dpkg-deb -x $deb failed"
vmlinuz=$(ls root/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || die "$deb has no /boot/vmlinuz-*"
cp "$vmlinuz" bzImage.tmp
valid_bzimage bzImage.tmp || die "$vmlinuz is not a bzImage (no HdrS)"
mv bzImage.tmp bzImage
extract_vmlinux bzImage vmlinux || die "could not extract vmlinux from $vmlinuz"
valid_elf vmlinux || die "extracted vmlinux is not an ELF"
moddir=
for d in root/lib/modules/*/ root/usr/lib/modules/*/; do
    if [ -s "$d/modules.builtin" ]; then moddir=$d; break; fi
done
[ -n "$moddir" ] || die "$deb has no /lib/modules/*/modules.builtin"
rm -rf modules
mv "$moddir" modules
echo "$pkg $(dpkg-deb -f "$deb" Version) ${vmlinuz#root}" > VERSION
rm -rf root ./*.deb
done_paths
