#!/usr/bin/env bash
# Block-device benchmark: what a guest sees of hearth's virtio-blk, beside the same I/O done
# by a host process on the same file, in one run.
#
#   bench/blk.sh             # from anywhere; it runs in the repository root
#
# One raw image in tmpfs (/dev/shm). On it, in turn:
#   - bench/blk_host.c (built here): pwrite/pread on the image itself, buffered (tmpfs has no
#     O_DIRECT), one request at a time;
#   - build/guests/blkbench.elf under hearth with the image as --drive: the same requests
#     through virtio-blk with the runtime's polling driver (one request in flight).
# Phases: sequential write of the region (BS_KIB requests, then a flush / fdatasync),
# sequential read of it, RAND random 4 KiB reads (the same offsets on both sides). Every 4 KiB
# block carries a stamp that the reads check.
#
# Modes: the guest runs with `--mmu auto` (REPS times, MIB MiB, RAND reads), and with
# `--mmu hardware` on a smaller region (HW_REPS times, HW_MIB MiB, HW_RAND reads), and once
# more with `--mmu auto` and the guest's `noirq` token (no InterruptStatus read and ACK after
# each request: what the runtime driver's two extra exits cost). Each guest
# run is paired with a host run of the same size; medians are reported. On a host where KVM
# emulates guest ring 0 (pvm, see `hearth --version`), auto means shadow mode: the guest's
# code runs natively at CPL3; in hardware mode KVM emulates every guest instruction.
#
# Environment: HEARTH (default build/hearth), OUT (default build/bench), SHM (a tmpfs
# directory, default /dev/shm), MIB (default 256), BS_KIB (64), RAND (20000), REPS (3),
# HW_MIB (16), HW_RAND (1000), HW_REPS (3), MEM_MIB (guest RAM, 128), TIMEOUT (per guest
# run, s, 600), NOIRQ (1: also run the auto-mode guest with `noirq`, default 1).
#
# Output: OUT/blk.txt (the table), OUT/blk.md (the same as markdown, for docs/BENCHMARKS.md),
# OUT/blk.json, and every run's raw lines in OUT/blk-*.txt. Exits non-zero when a run fails,
# a stamp does not match, or the guest's clock disagrees with the host's wall clock.
set -euo pipefail

cd "$(dirname "$0")/.."

HEARTH=${HEARTH:-build/hearth}
OUT=${OUT:-build/bench}
SHM=${SHM:-/dev/shm}
MIB=${MIB:-256}
BS_KIB=${BS_KIB:-64}
RAND=${RAND:-20000}
REPS=${REPS:-3}
HW_MIB=${HW_MIB:-16}
HW_RAND=${HW_RAND:-1000}
HW_REPS=${HW_REPS:-3}
MEM_MIB=${MEM_MIB:-128}
TIMEOUT=${TIMEOUT:-600}
NOIRQ=${NOIRQ:-1}
GUEST=build/guests/blkbench.elf
HOSTBIN=$OUT/blk_host

die() {
	echo "bench/blk.sh: $*" >&2
	exit 1
}

command -v python3 >/dev/null || die "python3 not found"
[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is not usable"
mkdir -p "$OUT"
# Only what this benchmark needs: hearth, the bench guest, the host program.
[[ -x $HEARTH ]] || make "$HEARTH" >&2
make -s -C resources/guests OUT="$PWD/build/guests" "$PWD/$GUEST" >&2
${CC:-cc} -std=gnu11 -O2 -Wall -Wextra -Werror -o "$HOSTBIN" bench/blk_host.c

[[ $(stat -f -c %T "$SHM") == tmpfs ]] || die "$SHM is not a tmpfs"
DIR=$(mktemp -d "$SHM/hearth-blk.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
IMG=$DIR/disk.img
SIZE_MIB=$((MIB > HW_MIB ? MIB : HW_MIB))
# Every page of the image exists before the first timed run: fallocate, then one untimed
# host pass that writes it all (a tmpfs write into a hole allocates; an overwrite does not).
fallocate -l "${SIZE_MIB}M" "$IMG"
"$HOSTBIN" "$IMG" 0 1024 0 99 >/dev/null

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
host_run() { # name mib rand seed
	"$HOSTBIN" "$IMG" "$2" "$BS_KIB" "$3" "$4" >"$OUT/blk-$1.txt" || die "blk_host failed ($1)"
}
guest_run() { # name mmu mib rand seed [extra tokens]
	local name=$1 rc=0 t0 t1
	rm -f "$OUT/blk-$name.txt"
	t0=$(date +%s%N)
	"$HEARTH" --mmu "$2" --kernel "$GUEST" --drive "$IMG" --mem "$MEM_MIB" \
		--cmdline "mib=$3 bs=$BS_KIB rand=$4 seed=$5${6:+ $6}" --console "$OUT/blk-$name.txt" \
		--timeout "$TIMEOUT" 2>"$OUT/blk-$name.stderr" || rc=$?
	t1=$(date +%s%N)
	[[ $rc == 0 ]] || die "hearth exited with $rc ($name): $(tail -n 3 "$OUT/blk-$name.txt" \
		"$OUT/blk-$name.stderr" 2>/dev/null)"
	grep -q '^blkbench: done' "$OUT/blk-$name.txt" || die "$name: no 'blkbench: done'"
	echo "wall_ns=$((t1 - t0))" >>"$OUT/blk-$name.stderr"
}
for ((r = 1; r <= REPS; r++)); do
	echo "bench/blk.sh: auto, run $r of $REPS ($MIB MiB, $RAND random reads)" >&2
	host_run "host-auto-$r" "$MIB" "$RAND" "$r"
	guest_run "guest-auto-$r" auto "$MIB" "$RAND" "$r"
	if [[ $NOIRQ == 1 ]]; then
		host_run "host-noirq-$r" "$MIB" "$RAND" "$r"
		guest_run "guest-noirq-$r" auto "$MIB" "$RAND" "$r" noirq
	fi
done
for ((r = 1; r <= HW_REPS; r++)); do
	echo "bench/blk.sh: hardware, run $r of $HW_REPS ($HW_MIB MiB, $HW_RAND random reads)" >&2
	host_run "host-hardware-$r" "$HW_MIB" "$HW_RAND" "$r"
	guest_run "guest-hardware-$r" hardware "$HW_MIB" "$HW_RAND" "$r"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

HEARTH=$HEARTH python3 - "$OUT" "$REPS" "$HW_REPS" "$BS_KIB" "$MEM_MIB" "$LOAD_BEFORE" \
	"$LOAD_AFTER" "$((NOIRQ == 1 ? REPS : 0))" >"$OUT/blk.tmp" <<'EOF'
import json, os, re, statistics, subprocess, sys, time

out, reps, hw_reps, bs_kib, mem, load0, load1, noirq_reps = sys.argv[1:]
reps, hw_reps, noirq_reps = int(reps), int(hw_reps), int(noirq_reps)
PHASES = ("seqwrite", "seqread", "randread")
LINE = re.compile(r"^blk(?:bench|host): phase=(\w+) bytes=(\d+) reqs=(\d+) (?:cycles=\d+ )?"
                  r"ns=(\d+)(?: wait_ns=(\d+) ack_ns=(\d+))?")

def fail(msg):
    sys.exit(f"bench/blk.sh: {msg}")

def parse(name):
    text = open(f"{out}/blk-{name}.txt").read()
    res = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            res[m.group(1)] = {"bytes": int(m.group(2)), "reqs": int(m.group(3)),
                               "ns": int(m.group(4)), "wait_ns": int(m.group(5) or 0),
                               "ack_ns": int(m.group(6) or 0)}
    if set(res) != set(PHASES):
        fail(f"{name}: phases {sorted(res)} in {out}/blk-{name}.txt")
    if name.startswith("guest"):
        tsc = re.search(r"blkbench: tsc khz=(\d+) source=(\w+) pit_khz=(\d+) pit_err_ppm=(\d+)",
                        text)
        err = open(f"{out}/blk-{name}.stderr").read()
        engine = re.search(r"engine: (\w+)", err)
        wall = int(re.search(r"wall_ns=(\d+)", err).group(1))
        res["tsc"] = {"khz": int(tsc.group(1)), "source": tsc.group(2),
                      "pit_khz": int(tsc.group(3)), "pit_err_ppm": int(tsc.group(4))}
        res["engine"] = engine.group(1) if engine else "?"
        res["wall_ns"] = wall
        # The guest's clock against the host's: its phases cannot take longer than the
        # whole hearth process did (a wrong TSC frequency would show here).
        busy = sum(res[p]["ns"] for p in PHASES)
        if busy > wall:
            fail(f"{name}: the guest timed {busy / 1e6:.1f} ms of I/O inside a "
                 f"{wall / 1e6:.1f} ms run: its TSC frequency ({res['tsc']}) is wrong")
    return res

def rate(p, r):
    """MiB/s for the sequential phases, IOPS for random reads."""
    s = r["ns"] / 1e9
    return r["reqs"] / s if p == "randread" else r["bytes"] / 2**20 / s

modes = {}
for mode, n in (("auto", reps), ("noirq", noirq_reps), ("hardware", hw_reps)):
    if n == 0:
        continue
    guests = [parse(f"guest-{mode}-{i}") for i in range(1, n + 1)]
    hosts = [parse(f"host-{mode}-{i}") for i in range(1, n + 1)]
    engines = {g["engine"] for g in guests}
    row = {"mmu": "hardware" if mode == "hardware" else "auto",
           "engine": "/".join(sorted(engines)), "runs": n,
           "region_mib": guests[0]["seqread"]["bytes"] / 2**20,
           "rand": guests[0]["randread"]["reqs"], "tsc": guests[0]["tsc"], "phases": {}}
    for p in PHASES:
        g = statistics.median(rate(p, x[p]) for x in guests)
        h = statistics.median(rate(p, x[p]) for x in hosts)
        g_all = [rate(p, x[p]) for x in guests]
        per_req = lambda key: statistics.median(x[p][key] / x[p]["reqs"] / 1e3 for x in guests)
        row["phases"][p] = {"guest": g, "host": h, "ratio": g / h,
                            "guest_min": min(g_all), "guest_max": max(g_all),
                            "guest_us_per_req": per_req("ns"),
                            "wait_us_per_req": per_req("wait_ns"),
                            "ack_us_per_req": per_req("ack_ns"),
                            "host_us_per_req": statistics.median(
                                x[p]["ns"] / x[p]["reqs"] / 1e3 for x in hosts)}
    modes[mode] = row

def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

cpu = sh("grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-").strip()
mmu = sh(f"{os.environ['HEARTH']} --version | sed -n 's/^host mmu: //p'")
# The TSC frequencies the guest used, side by side: CPUID (hardware mode: KVM's own value)
# and the PIT calibration (every run).
tsc_notes = []
for mode, row in modes.items():
    t = row["tsc"]
    tsc_notes.append(f"{mode}: {t['khz']} kHz from {t['source']}, PIT {t['pit_khz']} kHz "
                     f"(+-{t['pit_err_ppm']} ppm)")
if "hardware" in modes and modes["hardware"]["tsc"]["source"] == "cpuid":
    ref = modes["hardware"]["tsc"]["khz"]
    for mode, row in modes.items():
        d = (row["tsc"]["pit_khz"] - ref) / ref * 1e6
        tsc_notes.append(f"{mode}: PIT vs KVM's TSC kHz: {d:+.0f} ppm")

units = {"seqwrite": "MiB/s", "seqread": "MiB/s", "randread": "IOPS"}
names = {"seqwrite": "sequential write", "seqread": "sequential read",
         "randread": "random 4 KiB read"}
L = [f"date:       {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
     f"kernel:     {sh('uname -r')}",
     f"cpu:        {cpu} ({sh('nproc')} CPUs)",
     f"host mmu:   {mmu}",
     f"loadavg:    {load0} (before)  {load1} (after)",
     f"requests:   {bs_kib} KiB sequential, 4 KiB random; one in flight; image in tmpfs",
     "tsc:        " + "; ".join(tsc_notes), ""]
L.append(f"{'mode (engine)':<22}{'phase':<19}{'guest':>10}{'host':>11}{'guest/host':>11}"
         f"  {'us/request:':<11}{'guest':>7}{'wait':>7}{'ack':>7}{'host':>7}")
for mode, row in modes.items():
    label = f"{mode} ({row['engine']})" if mode != "noirq" else f"auto+noirq ({row['engine']})"
    for p in PHASES:
        x = row["phases"][p]
        L.append(f"{label:<22}{names[p]:<19}{x['guest']:>10.1f}{x['host']:>11.1f}"
                 f"{x['ratio'] * 100:>10.2f}%  {'':<11}{x['guest_us_per_req']:>7.1f}"
                 f"{x['wait_us_per_req']:>7.1f}{x['ack_us_per_req']:>7.1f}"
                 f"{x['host_us_per_req']:>7.2f}")
        label = ""
    L.append(f"{'':<22}({row['runs']} runs, {row['region_mib']:g} MiB, {row['rand']} random "
             f"reads; medians; MiB/s and IOPS)")
L.append("wait: QueueNotify until the used entry shows; ack: InterruptStatus read + ACK write "
         "(two exits); noirq: the guest sets VRING_AVAIL_F_NO_INTERRUPT and skips the ack")
print("\n".join(L))

M = ["| mode (engine) | region | phase | guest | host | guest/host | µs/request: guest (wait + ack) | host |",
     "|---|---|---|---|---|---|---|---|"]
for mode, row in modes.items():
    for p in PHASES:
        x = row["phases"][p]
        M.append(f"| `--mmu {row['mmu']}` ({row['engine']}{', noirq' if mode == 'noirq' else ''})"
                 f" | {row['region_mib']:g} MiB"
                 f"{', ' + str(row['rand']) + ' reads' if p == 'randread' else ''} | "
                 f"{names[p]} | {x['guest']:.1f} {units[p]} | {x['host']:.1f} {units[p]} | "
                 f"{x['ratio'] * 100:.2f}% | {x['guest_us_per_req']:.0f} ("
                 f"{x['wait_us_per_req']:.0f} + {x['ack_us_per_req']:.0f}) | "
                 f"{x['host_us_per_req']:.2f} |")
open(f"{out}/blk.md", "w").write("\n".join(M) + "\n")
json.dump({"modes": modes, "load": [load0, load1], "host_mmu": mmu},
          open(f"{out}/blk.json", "w"), indent=1)
EOF
mv "$OUT/blk.tmp" "$OUT/blk.txt"
cat "$OUT/blk.txt"
