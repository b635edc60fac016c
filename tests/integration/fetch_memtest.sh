#!/usr/bin/env bash
# Fetch Debian's memtest86+ package into .cache/memtest86+/ (ignored, never committed) and
# print the path of its 64-bit image, memtest86+x64.bin: a stock third-party kernel that
# boots through the Linux boot protocol (a bzImage-style setup header, a 64-bit entry).
#
# Idempotent: when the image is there, nothing is fetched. Exit status: 0 ok (the path on
# stdout); 2 the package registry cannot be reached or there is no apt (the caller may skip);
# 1 anything else.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${HEARTH_MEMTEST_CACHE:-$ROOT/.cache/memtest86+}"
IMAGE="$CACHE/memtest86+x64.bin"
EXIT_NET=2

die() { echo "fetch_memtest: error: $*" >&2; exit 1; }

valid() { [ -s "$IMAGE" ] && [ "$(dd if="$IMAGE" bs=1 skip=514 count=4 2>/dev/null)" = HdrS ]; }

if valid; then echo "$IMAGE"; exit 0; fi
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    { echo "fetch_memtest: no apt-get/dpkg-deb here" >&2; exit "$EXIT_NET"; }
mkdir -p "$CACHE"
cd "$CACHE"
if command -v flock >/dev/null; then
    exec 9>"$CACHE/.lock"
    flock 9
fi
if valid; then echo "$IMAGE"; exit 0; fi
tmp="$(mktemp -d "$CACHE/fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
download() { (cd "$tmp" && apt-get download memtest86+ >/dev/null 2>&1); }
if ! download; then
    apt-get update >/dev/null 2>&1 ||
        { echo "fetch_memtest: apt-get update failed: no package registry" >&2; exit "$EXIT_NET"; }
    download || die "apt-get download memtest86+ failed"
fi
deb=("$tmp"/memtest86+_*.deb)
[ -f "${deb[0]}" ] || die "no memtest86+ package was downloaded"
dpkg-deb -x "${deb[0]}" "$tmp/x" || die "cannot unpack ${deb[0]}"
[ -s "$tmp/x/boot/memtest86+x64.bin" ] || die "the package has no boot/memtest86+x64.bin"
cp "$tmp/x/boot/memtest86+x64.bin" "$IMAGE.tmp"
mv "$IMAGE.tmp" "$IMAGE"
valid || die "$IMAGE has no Linux boot-protocol header"
echo "$IMAGE"
