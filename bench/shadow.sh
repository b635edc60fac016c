#!/usr/bin/env bash
# Shadow-mode benchmark: the shadow engine against the hardware engine and a host process.
#
#   bench/shadow.sh          # from anywhere; it runs in the repository root
#
# Compute: sha256guest hashes BYTES of guest RAM (64 MiB) in shadow mode, HW_BYTES (64 KiB)
# in hardware mode (on a pvm host KVM emulates guest CPL0 code at ~1-2 M instructions/s:
# 64 MiB would take hours), and bench/sha256_host.c hashes BYTES in a host process with the
# same code. Results are compared per byte (TSC cycles per byte of the hash phase).
# Page tables: mapguest flips a PTE, invlpg's and reads, LOOPS times, in both engines;
# bench/map_host.c does the same effect with mmap(MAP_FIXED) in a process, and the bare
# loop on plain memory. A third guest run times single traps: CR0 reads (one trap to hearth
# each in shadow mode) and port writes (a plain VM exit in both engines).
#
# Environment: RUNS (runs per measurement, default 5; medians are reported), BYTES (default
# 67108864), HW_BYTES (default 65536), LOOPS (default 20000), TRAPS (CR0 reads and port
# writes, default 20000), TRACE_LOOPS (loops of the traced run that splits traps by vector,
# default 200), HEARTH (binary, default build/hearth), HEARTH_FLAGS (extra hearth flags,
# e.g. --no-seccomp), GUESTS (default build/guests), OUT (default build/bench).
#
# Output: OUT/shadow.json (every run) and a summary on stdout and in OUT/shadow.txt. Exits
# non-zero when a run fails or a digest differs from the host's; the targets are reported,
# not enforced.
set -euo pipefail

cd "$(dirname "$0")/.."

export RUNS=${RUNS:-5}
export BYTES=${BYTES:-67108864}
export HW_BYTES=${HW_BYTES:-65536}
export LOOPS=${LOOPS:-20000}
export TRAPS=${TRAPS:-20000}
export TRACE_LOOPS=${TRACE_LOOPS:-200}
export HEARTH=${HEARTH:-build/hearth}
export HEARTH_FLAGS=${HEARTH_FLAGS:-}
export GUESTS=${GUESTS:-build/guests}
export OUT=${OUT:-build/bench}

die() {
	echo "bench/shadow.sh: $*" >&2
	exit 1
}

command -v python3 >/dev/null || die "python3 not found"
[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is not usable"

# Build: hearth (only the default binary), the guests, and the host programs.
if [[ $HEARTH == build/hearth ]]; then
	make -s build/hearth >&2
fi
make -s -C resources/guests OUT="$(realpath -m "$GUESTS")" >&2
mkdir -p "$OUT"
# The hash is built with the guest's code generation (general registers only, -O2).
gcc -std=gnu11 -O2 -mgeneral-regs-only -Wall -Wextra -Werror -Iresources/guests/rt \
	-o "$OUT/sha256_host" bench/sha256_host.c
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -o "$OUT/map_host" bench/map_host.c

exec python3 - <<'EOF'
import json, os, re, shutil, statistics, subprocess, sys, time

env = os.environ
RUNS, BYTES, HW_BYTES = int(env["RUNS"]), int(env["BYTES"]), int(env["HW_BYTES"])
LOOPS, TRAPS, TRACE_LOOPS = int(env["LOOPS"]), int(env["TRAPS"]), int(env["TRACE_LOOPS"])
HEARTH, GUESTS, OUT = env["HEARTH"], env["GUESTS"], env["OUT"]
FLAGS = env["HEARTH_FLAGS"].split()

STATS = re.compile(r"shadow: (\d+) traps \(([\d.]+) us in hearth each\), cache: (\d+) hits, "
                   r"(\d+) misses, (\d+) fills, (\d+) evictions, (\d+) invalidations, "
                   r"(\d+) epochs, (\d+) pool reloads, (\d+) page-table writes")
STAT_KEYS = ["traps", "us_in_hearth", "hits", "misses", "fills", "evictions", "invalidations",
             "epochs", "reloads", "pt_writes"]
runs = []


def fail(msg):
    print(f"bench/shadow.sh: {msg}", file=sys.stderr)
    sys.exit(1)


def run(kind, argv, pattern, extra_env=None):
    t0 = time.monotonic_ns()
    p = subprocess.run(argv, capture_output=True, text=True,
                       env={**env, **(extra_env or {})}, timeout=3600)
    wall = (time.monotonic_ns() - t0) / 1e9
    if p.returncode != 0:
        fail(f"{kind}: {' '.join(argv)} exited {p.returncode}\n{p.stdout}{p.stderr[-2000:]}")
    fields = {}
    for m in re.finditer(pattern, p.stdout):
        fields.update({k: v if k in ("digest", "what", "mode", "hello") else int(v)
                       for k, v in m.groupdict().items()})
    if not fields:
        fail(f"{kind}: no result line in\n{p.stdout}")
    m = STATS.search(p.stderr)
    if m:
        fields["stats"] = {k: float(v) if k == "us_in_hearth" else int(v)
                           for k, v in zip(STAT_KEYS, m.groups())}
    r = {"kind": kind, "argv": argv, "wall_s": wall, **fields}
    runs.append(r)
    return r, p


def hearth(mmu, guest, cmdline):
    return [HEARTH, *FLAGS, "--mmu", mmu, "--verbose", "--kernel", f"{GUESTS}/{guest}.elf",
            "--cmdline", cmdline, "--timeout", "3000"]


SHA = r"bytes=(?P<bytes>\d+) digest=(?P<digest>[0-9a-f]{64}) fill_cycles=(?P<fill>\d+) hash_cycles=(?P<hash>\d+)"
MAP = r"mapguest: loops=(?P<loops>\d+) ok cycles=(?P<cycles>\d+)"
TRAP = r"mapguest: (?P<what>cr0reads|ioexits)=(?P<n>\d+) cycles=(?P<cycles>\d+)"
HOSTMAP = r"map_host: (?P<mode>remap|plain) loops=(?P<loops>\d+) ok cycles=(?P<cycles>\d+) ns=(?P<ns>\d+)"


def interleaved(makers, n=RUNS):
    """Run each measurement n times, round-robin, so that they share the machine's load."""
    out = {k: [] for k in makers}
    for i in range(n):
        for kind, make in makers.items():
            r, p = make()
            out[kind].append((r, p))
            print(f"  {kind} run {i + 1}/{n}: {r['wall_s']:.2f} s", file=sys.stderr)
    return out


def med(xs):
    return statistics.median(xs)


print(f"bench/shadow.sh: {RUNS} runs per measurement", file=sys.stderr)
load_before = open("/proc/loadavg").read().split()[:3]
# The shadow engine pins its vCPU thread to a host CPU; the host programs run on the same one.
_, p = run("pin-probe", hearth("shadow", "hello", ""), r"(?P<hello>hello) from hearth")
m = re.search(r"vCPU 0 runs on host CPU (\d+)", p.stderr)
PIN = ["taskset", "-c", m.group(1)] if m and shutil.which("taskset") else []
# ---- compute ----
host_small, _ = run("sha256-host-small", [*PIN, f"{OUT}/sha256_host", str(HW_BYTES)], SHA)
c = interleaved({
    "sha256 host": lambda: run("sha256-host", [*PIN, f"{OUT}/sha256_host", str(BYTES)], SHA),
    "sha256 shadow": lambda: run("sha256-shadow", hearth("shadow", "sha256guest", f"bytes={BYTES}"), SHA),
    "sha256 hardware": lambda: run("sha256-hardware", hearth("hardware", "sha256guest", f"bytes={HW_BYTES}"), SHA),
})
host, sh, hw = c["sha256 host"], c["sha256 shadow"], c["sha256 hardware"]
for r, _ in sh:
    if r["digest"] != host[0][0]["digest"]:
        fail(f"shadow digest {r['digest']} != host {host[0][0]['digest']}")
for r, _ in hw:
    if r["digest"] != host_small["digest"]:
        fail(f"hardware digest {r['digest']} != host {host_small['digest']}")
# TSC rate from the host run (cycles of the hash phase over its wall time).
tsc_hz = med([r["hash"] / int(re.search(r"hash_ns=(\d+)", p.stdout).group(1)) * 1e9
              for r, p in host])
cpb = lambda rs: med([r["hash"] / r["bytes"] for r, _ in rs])
host_cpb, sh_cpb, hw_cpb = cpb(host), cpb(sh), cpb(hw)
sh_fill = med([r["fill"] / r["bytes"] for r, _ in sh])
host_fill = med([r["fill"] / r["bytes"] for r, _ in host])

# ---- page tables ----
c = interleaved({
    "map host": lambda: run("map-host", [*PIN, f"{OUT}/map_host", str(LOOPS)], HOSTMAP),
    "map shadow": lambda: run("map-shadow", hearth("shadow", "mapguest", f"loops={LOOPS}"), MAP),
    "map hardware": lambda: run("map-hardware", hearth("hardware", "mapguest", f"loops={LOOPS}"), MAP),
})
hmap, map_sh, map_hw = c["map host"], c["map shadow"], c["map hardware"]


def trap_run(mmu):
    def go():
        argv = hearth(mmu, "mapguest", f"cr0reads={TRAPS} ioexits={TRAPS} loops=1")
        r, p = run(f"traps-{mmu}", argv, MAP)
        for m in re.finditer(TRAP, p.stdout):
            r[m.group("what")] = int(m.group("cycles")) / int(m.group("n"))
        return r, p
    return go


c = interleaved({"traps shadow": trap_run("shadow"), "traps hardware": trap_run("hardware")})
tr_sh, tr_hw = c["traps shadow"], c["traps hardware"]

# One traced run: the traps of a loop, by vector.
_, p = run("map-shadow-trace", hearth("shadow", "mapguest", f"loops={TRACE_LOOPS}"), MAP,
           {"HEARTH_SHADOW_TRACE": "1"})
by_vec = {}
for m in re.finditer(r"^shadow: trap (\d+) err (\S+)", p.stderr, re.M):
    key = f"vector {m.group(1)}" + (f" err {m.group(2)}" if m.group(1) == "14" else "")
    by_vec[key] = by_vec.get(key, 0) + 1

# map_host prints a remap line and a plain line.
remap_c = med([int(m.group("cycles")) / int(m.group("loops"))
               for _, p in hmap for m in re.finditer(HOSTMAP, p.stdout) if m.group("mode") == "remap"])
plain_c = med([int(m.group("cycles")) / int(m.group("loops"))
               for _, p in hmap for m in re.finditer(HOSTMAP, p.stdout) if m.group("mode") == "plain"])
msh_c = med([r["cycles"] / r["loops"] for r, _ in map_sh])
mhw_c = med([r["cycles"] / r["loops"] for r, _ in map_hw])
sh_stats = [r["stats"] for r, _ in map_sh if "stats" in r]
traps_per_loop = med([s["traps"] / LOOPS for s in sh_stats]) if sh_stats else None

us = lambda c: c / tsc_hz * 1e6
lines = []
w = lines.append
w(f"TSC: {tsc_hz / 1e9:.3f} GHz (host process: hash cycles / wall time); medians of {RUNS} runs, "
  f"interleaved; host programs pinned with {' '.join(PIN) or '(no pinning)'}")
w(f"load average before: {' '.join(load_before)}, after: "
  f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
w("")
w("Compute: SHA-256 (hash phase, TSC cycles per byte)")
w(f"  host process, {BYTES} B:   {host_cpb:10.2f} c/B  ({tsc_hz / host_cpb / 2**20:.1f} MiB/s)")
w(f"  shadow, {BYTES} B:         {sh_cpb:10.2f} c/B  ({tsc_hz / sh_cpb / 2**20:.1f} MiB/s)")
w(f"  hardware, {HW_BYTES} B (scaled per byte): {hw_cpb:10.1f} c/B  ({tsc_hz / hw_cpb / 2**10:.2f} KiB/s)")
w(f"  shadow / host throughput:  {host_cpb / sh_cpb * 100:.1f} %   (target >= 90 %: {'met' if host_cpb / sh_cpb >= 0.9 else 'not met'})")
w(f"  shadow / hardware:         {hw_cpb / sh_cpb:,.0f} x   (target >= 100 x: {'met' if hw_cpb / sh_cpb >= 100 else 'not met'})")
w(f"  fill phase (first touch of the buffer): shadow {sh_fill:.2f} c/B, host {host_fill:.2f} c/B")
w(f"  wall time per run: host {med([r['wall_s'] for r, _ in host]):.2f} s, shadow {med([r['wall_s'] for r, _ in sh]):.2f} s, hardware {med([r['wall_s'] for r, _ in hw]):.2f} s")
s0 = sh[0][0].get("stats")
if s0:
    w(f"  shadow counters (one run): {s0}")
w("")
w(f"Page tables: flip a PTE, invlpg, read; {LOOPS} loops (cycles per loop)")
w(f"  host, mmap(MAP_FIXED) remap:  {remap_c:12.0f}  ({us(remap_c):8.2f} us)")
w(f"  host, plain memory loop:      {plain_c:12.1f}  ({us(plain_c):8.4f} us)")
w(f"  hardware engine:              {mhw_c:12.0f}  ({us(mhw_c):8.2f} us)")
w(f"  shadow engine:                {msh_c:12.0f}  ({us(msh_c):8.2f} us)")
w(f"  shadow / hardware speed:      {mhw_c / msh_c:.3f} x ({msh_c / mhw_c:.1f} x slower);  "
  f"shadow / host remap speed: {remap_c / msh_c:.4f} x")
if sh_stats:
    s = sh_stats[len(sh_stats) // 2]
    w(f"  shadow traps per loop: {traps_per_loop:.2f}; traps per second: {s['traps'] / (msh_c * LOOPS / tsc_hz):,.0f}; "
      f"mean cost per trap (all in): {us(msh_c / traps_per_loop):.1f} us, of which in hearth: {s['us_in_hearth']:.2f} us")
    w(f"  shadow counters (median run): {s}")
w(f"  traps of one loop, by vector ({TRACE_LOOPS}-loop traced run): " +
  ", ".join(f"{k}: {v / TRACE_LOOPS:.2f}" for k, v in sorted(by_vec.items())))
w("")
w("Single traps (cycles each)")
for mmu, rs in (("shadow", tr_sh), ("hardware", tr_hw)):
    c = med([r["cr0reads"] for r, _ in rs])
    i = med([r["ioexits"] for r, _ in rs])
    w(f"  {mmu:8s}: mov from CR0 {c:10.0f} ({us(c):7.2f} us);  port write (VM exit to hearth) {i:10.0f} ({us(i):7.2f} us)")
st = [r["stats"] for r, _ in tr_sh if "stats" in r]
if st:
    w(f"  shadow: {st[0]['us_in_hearth']:.2f} us of each trap are spent in hearth (its counter)")

text = "\n".join(lines)
print(text)
with open(f"{OUT}/shadow.txt", "w") as f:
    f.write(text + "\n")
with open(f"{OUT}/shadow.json", "w") as f:
    json.dump({"tsc_hz": tsc_hz, "by_vector": by_vec, "runs": runs}, f, indent=1)
EOF
