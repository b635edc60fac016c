#!/usr/bin/env bash
# Network benchmark: UDP echo round trip (p50/p99) and throughput between the host side of a
# TAP and the bundled netguest behind hearth's virtio-net, once per execution engine, beside
# the same traffic over a veth pair between two namespaces (a userspace echo server), in one
# run. Everything lives in namespaces created here and removed at the end.
#
#   bench/net.sh             # as root, from anywhere; it runs in the repository root
#
# Environment: COUNT (round trips, default 2000), RTT_SIZE (bytes, default 64), SIZE
# (throughput datagram bytes, default 1400), SECONDS (per throughput run, default 5),
# WINDOW (datagrams in flight, default 8), ENGINES (default "shadow hardware"),
# HEARTH_BUILD (default build), OUT (default build/bench).
#
# Output: a table on stdout and in OUT/net.txt, the numbers in OUT/net.json.
set -euo pipefail

cd "$(dirname "$0")/.."

[[ $(id -u) == 0 ]] || { echo "bench/net.sh: run as root (namespaces, TAPs)" >&2; exit 1; }
command -v ip >/dev/null || { echo "bench/net.sh: ip (iproute2) not found" >&2; exit 1; }
BUILD=${HEARTH_BUILD:-build}
if [[ ! -x $BUILD/hearth || ! -f $BUILD/guests/netguest.elf ]]; then
	make BUILD="$BUILD" all >&2
fi
exec /usr/bin/python3 bench/net.py
