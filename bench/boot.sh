#!/usr/bin/env bash
# Boot benchmark: process start -> exit of hearth and of QEMU -M microvm booting the same
# tiny PVH guest (build/guests/hello.elf prints one line and exits through port 0xf4).
#
#   bench/boot.sh            # from anywhere; it runs in the repository root
#
# Environment: HEARTH (binary, default build/hearth), RUNS (hyperfine runs per command,
# default 50), WARMUP (default 5), RSS_RUNS (runs for peak RSS, default 5), MEM_MIB (guest
# RAM, default 128), OUT (output directory, default build/bench), QEMU (binary).
#
# Output: the hyperfine JSON (OUT/boot.json, OUT/boot-prepare.json), a summary on stdout
# and in OUT/boot.txt. Exits non-zero when a run fails or the guest output is wrong; the
# targets are reported, not enforced.
set -euo pipefail

cd "$(dirname "$0")/.."

RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
RSS_RUNS=${RSS_RUNS:-5}
MEM_MIB=${MEM_MIB:-128}
OUT=${OUT:-build/bench}

HEARTH=${HEARTH:-build/hearth}
HELLO=build/guests/hello.elf
TESTGUEST=build/guests/testguest.elf
QEMU=${QEMU:-qemu-system-x86_64}

# Targets (docs/BENCHMARKS.md).
TARGET_MEDIAN_MS=5
TARGET_RATIO=8
TARGET_OUTSIDE_KIB=2048

die() {
	echo "bench/boot.sh: $*" >&2
	exit 1
}

for tool in hyperfine python3 /usr/bin/time "$QEMU"; do
	command -v "$tool" >/dev/null || die "$tool not found"
done
if [[ ! -x $HEARTH || ! -f $HELLO || ! -f $TESTGUEST ]]; then
	make all >&2
fi
[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is not usable"
mkdir -p "$OUT"

# The commands. hearth discards the console (--console none); QEMU keeps its UART and
# writes the guest output to /dev/null. QEMU: the fewest devices that still boot the guest
# through PVH: no option ROMs, ACPI, RTC, PIT, PIC or second IOAPIC, no default devices.
# Each of acpi=off, pit=off, pic=off and rtc=off removes a few ms; kernel-irqchip=off
# would be faster but aborts on this host (QEMU asserts on setting a KVM MSR).
# -cpu: docs/HOST_FACTS.md (plain "host" fails on MSR 0x10a under kvm_pvm).
HEARTH_CMD="$HEARTH --kernel $HELLO --console none --mem $MEM_MIB"
QEMU_ARGS="-M microvm,accel=kvm,x-option-roms=off,acpi=off,rtc=off,pit=off,pic=off"
QEMU_ARGS+=",ioapic2=off,isa-serial=on,auto-kernel-cmdline=off"
QEMU_ARGS+=" -cpu host,-arch-capabilities,-pdpe1gb,-cx16 -smp 1 -m $MEM_MIB"
QEMU_ARGS+=" -nodefaults -no-user-config -nographic"
QEMU_ARGS+=" -device isa-debug-exit,iobase=0xf4,iosize=0x04"
QEMU_ARGS+=" -kernel $HELLO"
QEMU_CMD="$QEMU $QEMU_ARGS -serial file:/dev/null"
# isa-debug-exit: QEMU exits with (status << 1) | 1, so the guest's status 0 is exit code 1.
QEMU_OK_STATUS=1

# 1. Both boot the guest and print its banner (once, console to a file).
check_banner() { # name file
	grep -q '^hello from hearth' "$2" || die "$1: no guest banner in $2: $(head -c 300 "$2")"
}
rc=0
$HEARTH --kernel "$HELLO" --console "$OUT/hearth-console.txt" --mem "$MEM_MIB" 2>/dev/null || rc=$?
[[ $rc == 0 ]] || die "hearth exited with $rc"
check_banner hearth "$OUT/hearth-console.txt"
rc=0
# shellcheck disable=SC2086
$QEMU $QEMU_ARGS -serial "file:$OUT/qemu-console.txt" || rc=$?
[[ $rc == "$QEMU_OK_STATUS" ]] || die "QEMU exited with $rc (expected $QEMU_OK_STATUS)"
check_banner QEMU "$OUT/qemu-console.txt"

# 2. One hyperfine run for both. -N: no intermediate shell. -i because QEMU's success is
# exit code 1; every run's exit code is checked below instead.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
hyperfine -N -i --style basic --warmup "$WARMUP" --runs "$RUNS" \
	--export-json "$OUT/boot.json" \
	-n hearth "$HEARTH_CMD" -n qemu-microvm "$QEMU_CMD" >&2

# 3. hearth once more with a pause before every run (its KVM teardown runs detached after
# exit; this shows whether back-to-back runs disturb each other).
hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" --prepare 'sleep 0.02' \
	--export-json "$OUT/boot-prepare.json" -n "hearth (prepare: sleep 0.02)" "$HEARTH_CMD" >&2
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# 4. Peak RSS (getrusage ru_maxrss via GNU time), the largest of RSS_RUNS runs.
peak_rss() { # ok-status command...
	local ok=$1 max=0 v rc
	shift
	for ((i = 0; i < RSS_RUNS; i++)); do
		rc=0
		/usr/bin/time -q -f %M -o "$OUT/rss.txt" "$@" >/dev/null 2>&1 || rc=$?
		[[ $rc == "$ok" ]] || die "$1 exited with $rc (expected $ok) under /usr/bin/time"
		v=$(tail -n1 "$OUT/rss.txt")
		((v > max)) && max=$v
	done
	echo "$max"
}
# shellcheck disable=SC2086
HEARTH_RSS=$(peak_rss 0 $HEARTH_CMD)
# shellcheck disable=SC2086
QEMU_RSS=$(peak_rss "$QEMU_OK_STATUS" $QEMU_CMD)

# 5. Memory outside guest RAM: a guest that stays up (testguest "halt": prints "testguest:
# ready", then cli; hlt), /proc/PID/smaps read while it runs; the sum of Rss over every
# mapping except guest RAM, the anonymous mapping (possibly split in adjacent parts) whose
# size is exactly the guest's RAM. Prints "outside-RAM guest-RAM total", in KiB.
outside_ram() { # pid console-file breakdown-file
	local pid=$1 con=$2 breakdown=$3
	for ((i = 0; i < 100; i++)); do
		grep -q 'testguest: ready' "$con" 2>/dev/null && break
		sleep 0.02
	done
	grep -q 'testguest: ready' "$con" 2>/dev/null ||
		die "the guest of PID $pid did not come up ($con)"
	sleep 0.2
	python3 - "$pid" "$MEM_MIB" "$breakdown" <<'EOF'
import collections, re, sys
pid, mem_kib, breakdown = sys.argv[1], int(sys.argv[2]) * 1024, sys.argv[3]
maps, cur = [], None
with open(f"/proc/{pid}/smaps") as f:
    for line in f:
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$", line)
        if m:
            cur = {"name": m.group(3), "size": 0, "rss": 0, "priv": 0,
                   "start": int(m.group(1), 16), "end": int(m.group(2), 16)}
            maps.append(cur)
        elif line.startswith("Size:"):
            cur["size"] = int(line.split()[1])
        elif line.startswith("Rss:"):
            cur["rss"] = int(line.split()[1])
        elif line.startswith(("Private_Clean:", "Private_Dirty:")):
            cur["priv"] += int(line.split()[1])
# Guest RAM: adjacent anonymous mappings that add up to its size (one mapping, which the
# kernel splits where hearth's madvise differs: small pages below 2 MiB, huge above).
ram = None
for i in range(len(maps)):
    run, size = [], 0
    for m in maps[i:]:
        if m["name"] != "" or (run and m["start"] != run[-1]["end"]):
            break
        run.append(m)
        size += m["size"]
        if size >= mem_kib:
            break
    if size == mem_kib:
        ram = run
        break
if ram is None:
    sys.exit(f"no anonymous mapping (or adjacent run of them) of {mem_kib} KiB")
in_ram = {id(m) for m in ram}
ram_rss = sum(m["rss"] for m in ram)
total = sum(m["rss"] for m in maps)
# Private memory (USS) outside guest RAM: what one more microVM costs; shared library pages
# (libc above all) are in every process's Rss but in memory once.
private = sum(m["priv"] for m in maps if id(m) not in in_ram)
print(total - ram_rss, ram_rss, total, private)
# Rss outside guest RAM by file (or [anon], [heap], ...), largest first.
by = collections.Counter()
for m in maps:
    if id(m) not in in_ram:
        by[m["name"].rsplit("/", 1)[-1] or "[anon]"] += m["rss"]
with open(breakdown, "w") as f:
    for name, kib in by.most_common():
        if kib:
            print(f"{kib:7d} KiB  {name}", file=f)
EOF
}
rm -f "$OUT/hearth-halt.txt" "$OUT/qemu-halt.txt"
$HEARTH --kernel "$TESTGUEST" --cmdline halt --timeout 2 --console "$OUT/hearth-halt.txt" \
	--mem "$MEM_MIB" 2>/dev/null &
HPID=$!
H_OUT=$(outside_ram "$HPID" "$OUT/hearth-halt.txt" "$OUT/hearth-outside-ram.txt")
rc=0
wait "$HPID" || rc=$?
[[ $rc == 245 ]] || die "hearth testguest run exited with $rc (expected 245, --timeout)"
# The same QEMU machine, running testguest; it halts forever, so it is stopped by its PID.
# shellcheck disable=SC2086
$QEMU ${QEMU_ARGS/$HELLO/$TESTGUEST} -append halt -serial "file:$OUT/qemu-halt.txt" &
QPID=$!
Q_OUT=$(outside_ram "$QPID" "$OUT/qemu-halt.txt" "$OUT/qemu-outside-ram.txt") || {
	kill "$QPID"
	exit 1
}
kill "$QPID"
wait "$QPID" || true
read -r OUTSIDE_KIB RAM_RSS_KIB TOTAL_RSS_KIB PRIVATE_KIB <<<"$H_OUT"
read -r Q_OUTSIDE_KIB _ _ Q_PRIVATE_KIB <<<"$Q_OUT"

# 6. Report.
HEARTH=$HEARTH HEARTH_CMD=$HEARTH_CMD QEMU_CMD=$QEMU_CMD python3 - "$OUT" "$HEARTH_RSS" "$QEMU_RSS" "$OUTSIDE_KIB" "$RAM_RSS_KIB" "$TOTAL_RSS_KIB" \
	"$TARGET_MEDIAN_MS" "$TARGET_RATIO" "$TARGET_OUTSIDE_KIB" "$QEMU_OK_STATUS" \
	"$LOAD_BEFORE" "$LOAD_AFTER" "$MEM_MIB" "$Q_OUTSIDE_KIB" "$PRIVATE_KIB" "$Q_PRIVATE_KIB" \
	>"$OUT/boot.tmp" <<'EOF'
import json, os, subprocess, sys, time
(out, h_rss, q_rss, outside, ram_rss, total_rss, t_med, t_ratio, t_out, q_ok, load0, load1,
 mem, q_outside, private, q_private) = sys.argv[1:]
private, q_private = int(private), int(q_private)
q_outside = int(q_outside)
h_rss, q_rss, outside, ram_rss, total_rss = map(int, (h_rss, q_rss, outside, ram_rss, total_rss))
t_med, t_ratio, t_out, q_ok = float(t_med), float(t_ratio), int(t_out), int(q_ok)

def pct(ts, p):
    ts = sorted(ts)
    k = (len(ts) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(ts) - 1)
    return ts[lo] + (ts[hi] - ts[lo]) * (k - lo)

def stats(r):
    ts = [t * 1e3 for t in r["times"]]
    return {"median": pct(ts, 0.5), "p90": pct(ts, 0.9), "min": min(ts), "max": max(ts),
            "mean": sum(ts) / len(ts), "n": len(ts),
            "slow": sum(1 for t in ts if t > 2 * min(ts))}

main = json.load(open(f"{out}/boot.json"))["results"]
prep = json.load(open(f"{out}/boot-prepare.json"))["results"][0]
h, q = main
bad = [(r["command"], c) for r, ok in ((h, 0), (q, q_ok), (prep, 0))
       for c in r.get("exit_codes", []) if c != ok]
if bad:
    sys.exit(f"failed runs (command, exit code): {bad[:5]}")
hs, qs, ps = stats(h), stats(q), stats(prep)
ratio = qs["median"] / hs["median"]

def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

cpu = sh("grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-").strip()
mmu = sh(f"{os.environ['HEARTH']} --version | sed -n 's/^host mmu: //p'")
met = lambda ok: "met" if ok else "NOT met"
L = []
L.append(f"date:       {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
L.append(f"kernel:     {sh('uname -r')}")
L.append(f"cpu:        {cpu} ({sh('nproc')} CPUs)")
L.append(f"host mmu:   {mmu}")
L.append(f"qemu:       {sh('qemu-system-x86_64 --version | head -1')}")
L.append(f"hyperfine:  {sh('hyperfine --version')}")
L.append(f"loadavg:    {load0} (before)  {load1} (after)")
L.append("")
L.append(f"Boot: hello, process start -> exit ({hs['n']} runs each, 1 vCPU, {mem} MiB)")
L.append(f"  hearth: {os.environ['HEARTH_CMD']}")
L.append(f"  qemu:   {os.environ['QEMU_CMD']}")
L.append("")
L.append(f"{'ms':<32}{'median':>8}{'p90':>8}{'min':>8}{'max':>8}{'slow':>7}  {'peak RSS':>9}")
for name, s, rss in (("hearth", hs, h_rss), ("qemu microvm", qs, q_rss),
                     ("hearth, --prepare 'sleep 0.02'", ps, None)):
    r = f"{rss / 1024:.1f} MiB" if rss else ""
    L.append(f"{name:<32}{s['median']:8.2f}{s['p90']:8.2f}{s['min']:8.2f}{s['max']:8.2f}"
             f"{s['slow']:>4}/{s['n']:<2}  {r:>9}")
L.append("  slow: runs that took more than twice the fastest run")
L.append("")
L.append(f"ratio qemu/hearth (medians): {ratio:.1f}x")
L.append(f"hearth memory outside guest RAM: {outside} KiB ({outside / 1024:.2f} MiB); "
         f"guest RAM Rss {ram_rss} KiB, total Rss {total_rss} KiB")
L.append(f"qemu memory outside guest RAM:   {q_outside} KiB ({q_outside / 1024:.2f} MiB)")
L.append(f"private memory (USS) outside guest RAM: hearth {private} KiB "
         f"({private / 1024:.2f} MiB), qemu {q_private} KiB ({q_private / 1024:.2f} MiB)")
top = open(f"{out}/hearth-outside-ram.txt").read().splitlines()[:8]
L.append("hearth outside guest RAM, largest (Rss): " + ", ".join(
    " ".join(t.split()[::2][::-1]) + " KiB" for t in top))
if hs["p90"] > 1.5 * hs["median"]:
    L.append(f"note: hearth p90 is {hs['p90'] / hs['median']:.1f}x its median")
L.append("")
L.append("targets:")
L.append(f"  hello median <= {t_med:g} ms:           {hs['median']:.2f} ms  "
         f"{met(hs['median'] <= t_med)}")
L.append(f"  >= {t_ratio:g}x faster than QEMU microvm:  {ratio:.1f}x  {met(ratio >= t_ratio)}")
L.append(f"  memory outside guest RAM <= {t_out // 1024} MiB (private, USS): "
         f"{private / 1024:.2f} MiB  {met(private <= t_out)}  (Rss incl. shared libraries: "
         f"{outside / 1024:.2f} MiB)")
print("\n".join(L))
json.dump({"hearth": hs, "qemu": qs, "hearth_prepare": ps, "ratio": ratio,
           "hearth_peak_rss_kib": h_rss, "qemu_peak_rss_kib": q_rss,
           "hearth_outside_ram_kib": outside, "qemu_outside_ram_kib": q_outside},
          open(f"{out}/boot-summary.json", "w"), indent=1)
EOF
mv "$OUT/boot.tmp" "$OUT/boot.txt"
cat "$OUT/boot.txt"
