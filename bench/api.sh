#!/usr/bin/env bash
# Control-plane benchmark: the REST API on its unix socket.
#
#   bench/api.sh                 # from anywhere; it runs in the repository root
#   UPDATE_DOCS=1 bench/api.sh   # also replace the generated block in docs/BENCHMARKS.md
#
# 1. Process start -> API socket ready: wall time from posix_spawn, and the process's CPU
#    time at listen() (read in-process by an LD_PRELOAD shim, bench/api_mark.c: Firecracker's
#    own method for its "8 CPU ms to API socket" spec), at the first accepted connect() and
#    at the first answered GET /. A baseline process that only binds and listens gives the
#    floor of exec + dynamic loading on this host.
# 2. GET / latency over REQUESTS requests on one keep-alive connection, then REQUESTS
#    requests with a new connection each (connect, send, read the reply, close).
# 3. InstanceStart -> first guest console byte on hearth's stdout (a pipe), for each engine
#    in MODES: PUT /boot-source (build/guests/hello.elf), PUT /machine-config with "mmu",
#    then PUT /actions InstanceStart; also -> the 204, -> the first full line, and -> GET /
#    reporting "Stopped".
#
# Environment: HEARTH (binary, default build/hearth; hearth-api.so must sit next to it),
# RUNS (processes per start/boot series, default 50), REQUESTS (default 10000), MODES
# (default "shadow hardware"), OUT (default build/bench), UPDATE_DOCS (1: write the section).
#
# Output: raw results in OUT/api-*.txt, the table on stdout and in OUT/api.md. Exits
# non-zero when a run fails (a wrong status, a missing reply, a wrong banner).
set -euo pipefail

cd "$(dirname "$0")/.."

RUNS=${RUNS:-50}
REQUESTS=${REQUESTS:-10000}
MODES=${MODES:-shadow hardware}
OUT=${OUT:-build/bench}
HELLO=build/guests/hello.elf
DOC=docs/BENCHMARKS.md

die() {
	echo "bench/api.sh: $*" >&2
	exit 1
}

for tool in gcc python3; do
	command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is not usable"
mkdir -p "$OUT"

# Build. Other builds may replace build/hearth while this runs: the binaries are copied
# first and the copies measured (hearth loads hearth-api.so from its own directory).
if [[ -z ${HEARTH:-} ]]; then
	make build/hearth build/hearth-api.so guests >&2
	HEARTH=build/hearth
fi
[[ -x $HEARTH && -f $(dirname "$HEARTH")/hearth-api.so ]] ||
	die "$HEARTH or $(dirname "$HEARTH")/hearth-api.so missing"
[[ -f $HELLO ]] || die "$HELLO missing (make guests)"
BIN=$OUT/api-bin
mkdir -p "$BIN"
cp "$HEARTH" "$BIN/hearth"
cp "$(dirname "$HEARTH")/hearth-api.so" "$BIN/hearth-api.so"
cp "$HELLO" "$BIN/hello.elf"
CFLAGS="-std=gnu11 -O2 -g -Wall -Wextra -Werror"
# shellcheck disable=SC2086
gcc $CFLAGS -o "$OUT/api_client" bench/api_client.c
# shellcheck disable=SC2086
gcc $CFLAGS -fPIC -shared -o "$OUT/api_mark.so" bench/api_mark.c -ldl

CLIENT=$(realpath "$OUT/api_client")
SHIM=$(realpath "$OUT/api_mark.so")
HBIN=$(realpath "$BIN/hearth")
KERNEL=$(realpath "$BIN/hello.elf")
API_BENCH_DIR=$(mktemp -d /tmp/hearth-api-bench.XXXXXX)
export API_BENCH_DIR
API_BENCH_LOG=$(realpath "$OUT")/api-hearth-stderr.txt
export API_BENCH_LOG
trap 'rm -rf "$API_BENCH_DIR"' EXIT

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
START_S=$(date +%s)

run() { # name, then the client's arguments
	local name=$1
	shift
	echo "== $name" >&2
	"$CLIENT" "$@" >"$OUT/api-$name.txt" || die "$name failed (see $API_BENCH_LOG)"
}

# A few untimed starts first: page cache, dentries.
"$CLIENT" start "$HBIN" 3 >/dev/null
API_BENCH_PRELOAD=$SHIM run start-baseline-mark start baseline "$RUNS"
run start-baseline start baseline "$RUNS"
API_BENCH_PRELOAD=$SHIM run start-hearth-mark start "$HBIN" "$RUNS"
run start-hearth start "$HBIN" "$RUNS"
run get get "$HBIN" "$REQUESTS"
for mode in $MODES; do
	run "boot-$mode" boot "$HBIN" "$RUNS" "$KERNEL" "$mode"
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START_S))
HOST_MMU=$("$HBIN" --version | sed -n 's/^host mmu: //p')
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	REV="$REV + uncommitted changes"
fi

export OUT DATE RUNS REQUESTS MODES LOAD_BEFORE LOAD_AFTER ELAPSED HOST_MMU CPU_MODEL REV
python3 - <<'EOF'
import os, textwrap

out = os.environ["OUT"]
env = os.environ

def load(name):
    res, kv = {}, {}
    for line in open(f"{out}/api-{name}.txt"):
        f = line.split()
        if f[0] == "RESULT":
            res[f[1]] = {k: float(v) for k, v in (x.split("=") for x in f[2:])}
        elif f[0] == "KV":
            kv[f[1]] = float(f[2])
    return res, kv

bm, _ = load("start-baseline-mark")
b, _ = load("start-baseline")
hm, hmkv = load("start-hearth-mark")
h, hkv = load("start-hearth")
g, gkv = load("get")
modes = env["MODES"].split()
boots = {m: load(f"boot-{m}")[0] for m in modes}

def ms(v):
    return f"{v / 1000:.2f}"

def row_ms(label, r):
    return (f"| {label} | {int(r['n'])} | {ms(r['p50'])} | {ms(r['p90'])} | {ms(r['min'])} "
            f"| {ms(r['max'])} |")

def row_us(label, r):
    return (f"| {label} | {int(r['n'])} | {r['p50']:.0f} | {r['p90']:.0f} | {r['p99']:.0f} "
            f"| {r['min']:.0f} | {r['max']:.0f} |")

shim_cost = bm["start_cpu_lifetime_us"]["p50"] - b["start_cpu_lifetime_us"]["p50"]
cpu_listen = hm["start_cpu_listen_us"]["p50"]
cpu_listen_p90 = hm["start_cpu_listen_us"]["p90"]
fc_spec = 8000.0

L = []
L.append("<!-- bench/api.sh:begin: generated, UPDATE_DOCS=1 bench/api.sh rewrites it -->")
L.append(f"- **Date:** {env['DATE']}. hearth built from the tree at `{env['REV']}`.")
L.append(f"- **Host:** {os.cpu_count()} vCPU(s) (\"{env['CPU_MODEL']}\"), kernel "
         f"{os.uname().release}; host mmu: {env['HOST_MMU']}. Load average "
         f"{env['LOAD_BEFORE']} before, {env['LOAD_AFTER']} after ({env['ELAPSED']} s).")
L.append(f"- **Method:** `bench/api.sh` (client: `bench/api_client.c`), {env['RUNS']} processes "
         f"per start and boot series, {env['REQUESTS']} requests per GET series. Wall times "
         "are CLOCK_MONOTONIC from just before `posix_spawn`. \"CPU at listen()\" is the "
         "process CPU clock (every thread, from the exec on) read in-process right after "
         "`listen()` by an LD_PRELOAD shim (`bench/api_mark.c`): Firecracker's own method. "
         f"Loading the shim costs about {shim_cost:.0f} µs of CPU (difference of the baseline's "
         "median whole-life CPU with and without it), included in those numbers. "
         "\"CPU at first `GET /` answered\" is the child's CPU clock read by the client "
         "once the reply is in, without the shim (by then hearth's threads are asleep; a read "
         "while the child runs undercounts on this kernel, so the client's read at "
         "`connect()` is in the raw output only). The baseline is a C program that only "
         "binds and listens (libc only).")
L.append("")
L.append("**Start: process start → API socket ready** (ms)")
L.append("")
L.append("| | n | median | p90 | min | max |")
L.append("|---|---|---|---|---|---|")
L.append(row_ms("hearth: CPU at `listen()` (in-process)", hm["start_cpu_listen_us"]))
L.append(row_ms("hearth: wall to `listen()`", hm["start_wall_listen_us"]))
L.append(row_ms("hearth: wall to first accepted `connect()`", h["start_wall_connect_us"]))
L.append(row_ms("hearth: wall to first `GET /` answered", h["start_wall_first_reply_us"]))
L.append(row_ms("hearth: CPU at first `GET /` answered", h["start_cpu_first_reply_us"]))
L.append(row_ms("hearth: CPU, whole life (start, one GET, SIGTERM, exit)",
                h["start_cpu_lifetime_us"]))
L.append(row_ms("↳ CPU before `dlopen(hearth-api.so)` (exec, ld.so, libc, libcjson, "
                "shim, `main`)", hm["start_cpu_before_dlopen_us"]))
L.append(row_ms("↳ CPU in `dlopen(hearth-api.so)` (libmicrohttpd, GnuTLS and its 8 "
                "libraries)", hm["start_cpu_dlopen_api_us"]))
L.append(row_ms("↳ CPU from `dlopen` to `listen()`", hm["start_cpu_dlopen_to_listen_us"]))
L.append(row_ms("baseline: CPU at `listen()` (in-process)", bm["start_cpu_listen_us"]))
L.append(row_ms("baseline: wall to first accepted `connect()`", b["start_wall_connect_us"]))
dropped = int(hkv.get("start_cpu_reply_dropped", 0))
if dropped:
    L.append("")
    L.append(f"{dropped} read(s) of the child's CPU clock after the first reply returned less "
             "than 0.5 ms and were dropped (an accounting artefact: exec alone costs more).")
L.append("")
verdict = "met" if cpu_listen <= fc_spec else "not met"
L.append(f"Firecracker's spec, ≤ 8 CPU ms to API socket: hearth median {ms(cpu_listen)} ms, "
         f"p90 {ms(cpu_listen_p90)} ms: **{verdict}** ({fc_spec / cpu_listen:.1f}× under "
         "the limit at the median).")
L.append("")
L.append(f"**`GET /` latency** (µs, one client, requests back to back; the reply is "
         f"{int(gkv['get_body_bytes'])} bytes of JSON)")
L.append("")
L.append("| | n | p50 | p90 | p99 | min | max | req/s | hearth CPU/req | context switches/req "
         "| page faults/req |")
L.append("|---|---|---|---|---|---|---|---|---|---|---|")
for key, label in (("keepalive", "keep-alive connection"),
                   ("newconn", "new connection per request")):
    r = g[f"get_{key}_us"]
    L.append(row_us(label, r)[:-1] + f"| {gkv[f'get_{key}_rate_per_s']:.0f} "
             f"| {gkv[f'get_{key}_server_cpu_us_per_req']:.0f} µs "
             f"| {gkv[f'get_{key}_server_ctxsw_per_req']:.1f} "
             f"| {gkv[f'get_{key}_server_faults_per_req']:.1f} |")
L.append("")
L.append("**InstanceStart → guest console** (ms; `hello.elf`, 1 vCPU, 128 MiB; from sending "
         "`PUT /actions` to each event)")
L.append("")
L.append("| engine | event | n | median | p90 | min | max |")
L.append("|---|---|---|---|---|---|---|")
for m in modes:
    r = boots[m]
    for key, label in (("reply", "204 reply"), ("first_byte", "first console byte"),
                       ("first_line", "first full line"),
                       ("stopped", "`GET /` says Stopped")):
        x = r[f"boot_{m}_{key}_us"]
        L.append(f"| {m} | {label} | {int(x['n'])} | {ms(x['p50'])} | {ms(x['p90'])} "
                 f"| {ms(x['min'])} | {ms(x['max'])} |")
L.append("<!-- bench/api.sh:end -->")

def wrap(line):
    # Markdown bullets and sentences at the width of the rest of the file; tables as they are.
    if line.startswith(("|", "<!--")) or len(line) <= 92:
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(line, width=92, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)

text = "\n".join(wrap(x) for x in L) + "\n"
open(f"{out}/api.md", "w").write(text)
print(text)
EOF

if [[ ${UPDATE_DOCS:-0} == 1 ]]; then
	python3 - "$OUT/api.md" "$DOC" <<'EOF'
import sys
gen, doc = sys.argv[1], sys.argv[2]
new = open(gen).read()
text = open(doc).read()
begin, end = "<!-- bench/api.sh:begin", "<!-- bench/api.sh:end -->"
if begin in text and end in text:
    a = text.index(begin)
    b = text.index(end) + len(end) + 1
    text = text[:a] + new + text[b:]
else:
    text = text.rstrip("\n") + "\n\n## Control plane (API)\n\n" + new
open(doc, "w").write(text)
print(f"bench/api.sh: updated {doc}", file=sys.stderr)
EOF
fi
