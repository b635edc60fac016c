#!/usr/bin/env bash
# Process-engine benchmark: hearth --engine process (no /dev/kvm: the guest kernel runs as a
# seccomp-sandboxed host process, its page tables composed into the host's with mmap, its
# privileged instructions faulting and emulated) against QEMU TCG and plain host processes.
# It runs on a host without /dev/kvm, and compares side by side in one run:
#
# 1. Boot: hello.elf, process start -> exit, hearth (--console none) against QEMU
#    -M microvm -accel tcg booting the same PVH ELF (bench/boot.sh's machine, TCG instead of
#    KVM). One hyperfine run for both, with an empty C program as the host's floor for a
#    process start.
# 2. Compute: sha256guest hashes BYTES of guest RAM; bench/sha256_host.c runs the same code
#    (same header, same -O2 -mgeneral-regs-only) in a host process. TSC cycles per byte of
#    the hash phase.
# 3. Traps: mapguest's cr0reads=N (mov from CR0) and ioexits=N (out to port 0x80), cycles
#    per operation, against bench/trap_host.c: the same instruction faulting in a host
#    process whose SIGSEGV handler only steps RIP over it (the bare signal round trip), and
#    the futex hand-off the engine adds to it (trap_host's pingpong modes).
# 4. Page tables: mapguest's loop (flip a PTE, invlpg, read; cycles per loop) against a host
#    mmap(MAP_FIXED) remap of a memfd page (bench/map_host.c).
# 5. Memory outside guest RAM: private memory (USS) of hearth and its guest process while a
#    guest idles (testguest "halt"), guest RAM excluded (see the comments there).
#
#   bench/process.sh         # from anywhere; it runs in the repository root
#
# Environment: HEARTH (binary, default build/hearth), GUESTS (default build/guests), OUT
# (default build/bench), HEARTH_FLAGS (extra hearth flags, e.g. --no-seccomp), QEMU
# (binary), RUNS (hyperfine runs per boot command, default 50), WARMUP (default 5), REPS
# (runs of each other measurement, interleaved; medians are reported; default 5), BYTES
# (default 67108864), TRAPS (CR0 reads, port writes and host round trips, default 10000),
# LOOPS (page-table loops, default 5000), MEM_MIB (guest RAM, default 128).
#
# Output: OUT/process-boot.json (hyperfine), OUT/process.json (every run), a summary on
# stdout and in OUT/process.txt. Exits non-zero when a run fails (wrong exit status, no or
# wrong guest output, a digest that differs from the host's); the targets are reported, not
# enforced.
set -euo pipefail

cd "$(dirname "$0")/.."

export RUNS=${RUNS:-50}
export WARMUP=${WARMUP:-5}
export REPS=${REPS:-5}
export BYTES=${BYTES:-67108864}
export TRAPS=${TRAPS:-10000}
export LOOPS=${LOOPS:-5000}
export MEM_MIB=${MEM_MIB:-128}
export HEARTH=${HEARTH:-build/hearth}
export HEARTH_FLAGS=${HEARTH_FLAGS:-}
export GUESTS=${GUESTS:-build/guests}
export OUT=${OUT:-build/bench}
export QEMU=${QEMU:-qemu-system-x86_64}

die() {
	echo "bench/process.sh: $*" >&2
	exit 1
}

for tool in hyperfine python3 gcc "$QEMU"; do
	command -v "$tool" >/dev/null || die "$tool not found"
done

# Build: hearth (only the default binary, and the API module its counters step loads), the
# guests, and the host programs.
if [[ $HEARTH == build/hearth ]]; then
	make -s build/hearth build/hearth-api.so >&2
fi
[[ -x $HEARTH ]] || die "$HEARTH is not an executable"
make -s -C resources/guests OUT="$(realpath -m "$GUESTS")" >&2
mkdir -p "$OUT"
# The hash is built with the guest's code generation (general registers only, -O2).
gcc -std=gnu11 -O2 -mgeneral-regs-only -Wall -Wextra -Werror -Iresources/guests/rt \
	-o "$OUT/sha256_host" bench/sha256_host.c
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -o "$OUT/map_host" bench/map_host.c
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -o "$OUT/trap_host" bench/trap_host.c
# The floor of a process start on this host: a dynamically linked C program that returns 0.
printf 'int main(void)\n{\n\treturn 0;\n}\n' >"$OUT/empty.c"
gcc -O2 -o "$OUT/empty" "$OUT/empty.c"

exec python3 - <<'EOF'
import http.client, json, os, re, signal, socket, statistics, subprocess, sys, tempfile, time

env = os.environ
RUNS, WARMUP, REPS = int(env["RUNS"]), int(env["WARMUP"]), int(env["REPS"])
BYTES, TRAPS, LOOPS, MEM = int(env["BYTES"]), int(env["TRAPS"]), int(env["LOOPS"]), int(env["MEM_MIB"])
HEARTH, GUESTS, OUT, QEMU = env["HEARTH"], env["GUESTS"], env["OUT"], env["QEMU"]
FLAGS = env["HEARTH_FLAGS"].split()

# Targets (docs/BENCHMARKS.md), reported, not enforced.
T_BOOT_MS, T_BOOT_RATIO = 3.0, 25.0
T_COMPUTE = 0.97   # guest throughput / host throughput
T_TRAP = 1.5       # engine trap / bare SIGSEGV round trip
T_MAP = 3.0        # engine page-table loop / host mmap(MAP_FIXED) remap
T_MEM_KIB = 1024   # private memory outside guest RAM, hearth + its guest process

runs = []


def fail(msg):
    print(f"bench/process.sh: {msg}", file=sys.stderr)
    sys.exit(1)


def med(xs):
    return statistics.median(xs)


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def hearth(guest, cmdline, *extra):
    return [HEARTH, *FLAGS, "--engine", "process", "--kernel", f"{GUESTS}/{guest}.elf",
            "--cmdline", cmdline, *extra]


EXITS = re.compile(r"process engine: (\d+) exits \(([\d.]+) us in hearth each\)")


def run(kind, argv, pattern, ok=0):
    """Run argv, check its exit status and that stdout has the result line(s)."""
    t0 = time.monotonic_ns()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    wall = (time.monotonic_ns() - t0) / 1e9
    if p.returncode != ok:
        fail(f"{kind}: {' '.join(argv)} exited {p.returncode} (expected {ok})\n"
             f"{p.stdout[-2000:]}{p.stderr[-2000:]}")
    found = [m.groupdict() for m in re.finditer(pattern, p.stdout)]
    if not found:
        fail(f"{kind}: no result line in the output of {' '.join(argv)}:\n{p.stdout[-2000:]}")
    r = {"kind": kind, "argv": argv, "wall_s": wall, "results": found}
    m = EXITS.search(p.stderr)
    if m:
        r["exits"], r["us_in_hearth"] = int(m.group(1)), float(m.group(2))
    runs.append(r)
    return r, p


def interleaved(makers):
    """Run each measurement REPS times, round-robin, so that they share the machine's load."""
    out = {k: [] for k in makers}
    for i in range(REPS):
        for kind, make in makers.items():
            r, _ = make()
            out[kind].append(r)
            print(f"  {kind} run {i + 1}/{REPS}: {r['wall_s']:.2f} s", file=sys.stderr)
    return out


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api_get(path):
    c = UnixHTTP(path)
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        fail(f"GET / answered {r.status}: {body[:300]}")
    return json.loads(body)


def counters(guest, cmdline, mem=MEM):
    """The engine's counters (GET /) for one run of a guest: boot from a config file with the
    API on, wait until the guest stopped, read them, SIGTERM (hearth then exits with the
    guest's status)."""
    d = tempfile.mkdtemp(prefix="hearth-process-bench-")
    sock, cfg = f"{d}/api.sock", f"{d}/vm.json"
    with open(cfg, "w") as f:
        json.dump({"boot-source": {"kernel_image_path": f"{GUESTS}/{guest}.elf",
                                   "boot_args": cmdline},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": mem, "mmu": "process"}}, f)
    p = subprocess.Popen([HEARTH, *FLAGS, "--api-sock", sock, "--config-file", cfg,
                          "--console", f"{d}/console.txt"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        info = None
        while time.monotonic() < deadline:
            if p.poll() is not None:
                fail(f"counters: hearth ({guest} {cmdline}) exited {p.returncode}: {p.stderr.read()[-2000:]}")
            if os.path.exists(sock):
                try:
                    info = api_get(sock)
                except (ConnectionRefusedError, FileNotFoundError):
                    info = None
                if info and info.get("state") == "Stopped":
                    break
            time.sleep(0.05)
        else:
            fail(f"counters: {guest} {cmdline} did not stop")
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        if p.returncode != 0 or info.get("exit", {}).get("status") != 0:
            fail(f"counters: {guest} {cmdline}: exit {p.returncode}, {info.get('exit')}")
        return info.get("process", {})
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for n in os.listdir(d):
            os.unlink(f"{d}/{n}")
        os.rmdir(d)


print(f"bench/process.sh: boot {RUNS} runs per command, {REPS} runs of each other measurement",
      file=sys.stderr)
load_before = " ".join(open("/proc/loadavg").read().split()[:3])

# ---- 1. boot: hello, process start -> exit -------------------------------------------------
HELLO = f"{GUESTS}/hello.elf"
hearth_cmd = [HEARTH, *FLAGS, "--engine", "process", "--kernel", HELLO, "--console", "none",
              "--mem", str(MEM)]
# bench/boot.sh's machine with accel=tcg: no option ROMs, ACPI, RTC, PIT, PIC or second
# IOAPIC, no default devices; QEMU's default CPU model for TCG (qemu64; -cpu max is no faster).
qemu_args = ["-M", "microvm,accel=tcg,x-option-roms=off,acpi=off,rtc=off,pit=off,pic=off,"
             "ioapic2=off,isa-serial=on,auto-kernel-cmdline=off",
             "-smp", "1", "-m", str(MEM), "-nodefaults", "-no-user-config", "-nographic",
             "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", HELLO]
qemu_cmd = [QEMU, *qemu_args, "-serial", "file:/dev/null"]
# isa-debug-exit: QEMU exits with (status << 1) | 1, so the guest's status 0 is exit code 1.
QEMU_OK = 1
empty_cmd = [f"{OUT}/empty"]

# Both boot the guest and print its banner (once, console to a file).
con = f"{OUT}/process-hello-console.txt"
r, p = run("hello-check", [*hearth_cmd[:-4], "--console", con, "--mem", str(MEM), "--verbose"],
           r"(?P<x>)")
if not open(con).read().startswith("hello from hearth"):
    fail(f"hearth: no guest banner in {con}: {open(con).read()[:300]!r}")
hello_exits = r.get("exits")
qcon = f"{OUT}/process-qemu-console.txt"
p = subprocess.run([QEMU, *qemu_args, "-serial", f"file:{qcon}"], capture_output=True, text=True,
                   timeout=60)
if p.returncode != QEMU_OK:
    fail(f"QEMU exited with {p.returncode} (expected {QEMU_OK}): {p.stderr[-1000:]}")
if not open(qcon).read().startswith("hello from hearth"):
    fail(f"QEMU: no guest banner in {qcon}: {open(qcon).read()[:300]!r}")

# One hyperfine run for all three. -N: no intermediate shell. -i because QEMU's success is
# exit code 1; every run's exit code is checked below instead.
subprocess.run(["hyperfine", "-N", "-i", "--style", "basic", "--warmup", str(WARMUP),
                "--runs", str(RUNS), "--export-json", f"{OUT}/process-boot.json",
                "-n", "hearth", " ".join(hearth_cmd), "-n", "qemu-tcg", " ".join(qemu_cmd),
                "-n", "empty", " ".join(empty_cmd)],
               check=True, stdout=sys.stderr)
boot = {}
for res, ok in zip(json.load(open(f"{OUT}/process-boot.json"))["results"], (0, QEMU_OK, 0)):
    bad = [c for c in res["exit_codes"] if c != ok]
    if bad:
        fail(f"boot: {res['command']}: {len(bad)} run(s) exited with {sorted(set(bad))} (expected {ok})")
    t = sorted(x * 1000 for x in res["times"])
    boot[res["command"]] = {"median": med(t), "p90": t[min(len(t) - 1, int(0.9 * len(t)))],
                            "min": t[0], "max": t[-1], "mean": statistics.mean(t), "n": len(t)}
hb, qb, eb = boot["hearth"], boot["qemu-tcg"], boot["empty"]
boot_ratio = qb["median"] / hb["median"]

# ---- 2. compute ------------------------------------------------------------------------------
SHA = (r"bytes=(?P<bytes>\d+) digest=(?P<digest>[0-9a-f]{64}) fill_cycles=(?P<fill>\d+) "
       r"hash_cycles=(?P<hash>\d+)(?: hash_ns=(?P<ns>\d+))?")
sha_mem = max(MEM, 16 + -(-BYTES // 2**20) + 16)  # the guest's buffer is at 16 MiB
c = interleaved({
    "sha256 host": lambda: run("sha256-host", [f"{OUT}/sha256_host", str(BYTES)], SHA),
    "sha256 guest": lambda: run("sha256-guest", hearth("sha256guest", f"bytes={BYTES}", "--verbose",
                                                       "--mem", str(sha_mem)), SHA),
})
sha_host = [r["results"][0] for r in c["sha256 host"]]
sha_guest = [r["results"][0] for r in c["sha256 guest"]]
for g in sha_guest:
    if g["digest"] != sha_host[0]["digest"]:
        fail(f"sha256: guest digest {g['digest']} != host {sha_host[0]['digest']}")
# TSC rate from the host runs (cycles of the hash phase over its wall time).
tsc_hz = med([int(h["hash"]) / int(h["ns"]) * 1e9 for h in sha_host])
us = lambda cyc: cyc / tsc_hz * 1e6
host_cpb = med([int(h["hash"]) / BYTES for h in sha_host])
guest_cpb = med([int(g["hash"]) / BYTES for g in sha_guest])
host_fill = med([int(h["fill"]) / BYTES for h in sha_host])
guest_fill = med([int(g["fill"]) / BYTES for g in sha_guest])
compute = host_cpb / guest_cpb
sha_exits = med([r.get("exits", 0) for r in c["sha256 guest"]])

# ---- 3. traps -----------------------------------------------------------------------------------
TRAP = r"mapguest: (?P<what>cr0reads|ioexits)=(?P<n>\d+) cycles=(?P<cycles>\d+)"
HOSTTRAP = r"trap_host: (?P<mode>[a-z0-9-]+)=(?P<n>\d+) cycles=(?P<cycles>\d+) ns=(?P<ns>\d+)"
c = interleaved({
    "traps host": lambda: run("traps-host", [f"{OUT}/trap_host", str(TRAPS)], HOSTTRAP),
    "traps guest": lambda: run("traps-guest", hearth("mapguest", f"cr0reads={TRAPS} ioexits={TRAPS} loops=1",
                                                     "--verbose", "--mem", str(MEM)), TRAP),
})


def per_op(rs, key, name):
    return [int(x["cycles"]) / int(x["n"]) for r in rs for x in r["results"] if x[key] == name]


g_cr0, g_io = per_op(c["traps guest"], "what", "cr0reads"), per_op(c["traps guest"], "what", "ioexits")
host_modes = {}
for mode in ("cr0", "out", "hlt", "syscall", "pingpong", "pingpong-apart", "pingpong-same"):
    v = per_op(c["traps host"], "mode", mode)
    if v:
        host_modes[mode] = v
if "cr0" not in host_modes or "out" not in host_modes:
    fail("trap_host printed no cr0 or out line")
trap_cr0 = med(g_cr0) / med(host_modes["cr0"])
trap_io = med(g_io) / med(host_modes["out"])
trap_hearth_us = med([r["us_in_hearth"] for r in c["traps guest"] if "us_in_hearth" in r])

# ---- 4. page tables -----------------------------------------------------------------------------
MAP = r"mapguest: loops=(?P<loops>\d+) ok cycles=(?P<cycles>\d+)"
HOSTMAP = r"map_host: (?P<mode>remap|plain) loops=(?P<loops>\d+) ok cycles=(?P<cycles>\d+) ns=(?P<ns>\d+)"
c = interleaved({
    "map host": lambda: run("map-host", [f"{OUT}/map_host", str(LOOPS)], HOSTMAP),
    "map guest": lambda: run("map-guest", hearth("mapguest", f"loops={LOOPS}", "--verbose",
                                                 "--mem", str(MEM)), MAP),
})
remap_c = med([int(x["cycles"]) / int(x["loops"]) for r in c["map host"] for x in r["results"]
               if x["mode"] == "remap"])
remap_min = min([int(x["cycles"]) / int(x["loops"]) for r in c["map host"] for x in r["results"]
                 if x["mode"] == "remap"])
plain_c = med([int(x["cycles"]) / int(x["loops"]) for r in c["map host"] for x in r["results"]
               if x["mode"] == "plain"])
map_list = [int(r["results"][0]["cycles"]) / LOOPS for r in c["map guest"]]
map_c = med(map_list)
map_ratio = map_c / remap_c
print("  engine counters (GET /): mapguest, sha256guest", file=sys.stderr)
map_ctr = counters("mapguest", f"loops={LOOPS}")
sha_ctr = counters("sha256guest", f"bytes={BYTES}", sha_mem)

# ---- 5. memory outside guest RAM -----------------------------------------------------------------
# A guest that stays up (testguest "halt": prints "testguest: ready", then cli; hlt, which the
# engine turns into a sleep of hearth's vCPU thread), read while it idles.
#
# What counts: USS, the Private_Clean + Private_Dirty of /proc/PID/smaps_rollup, of hearth and
# of its guest process (hearth's only child; the guest kernel runs in it), minus guest RAM.
# Guest RAM is the memfd "hearth-guest-ram", mapped MAP_SHARED by hearth (all of it, one
# mapping, split where its madvise differs) and, page by page, by the guest process at the
# guest's virtual addresses. It is shmem, but smaps does not file it under Shared_* as such:
# a page is "Private" when one process maps it and "Shared" when more than one does (the
# page's map count), whatever backs it. So a guest page that only the guest process mapped,
# or that only hearth touched (loading the kernel, writing the boot structures), is in that
# process's Private_* and in its USS, and a page both map is Shared_* in both. The rollup
# cannot tell guest RAM from the rest, so guest RAM comes out by name: the Private_* of every
# mapping of that memfd, from /proc/PID/smaps, in each process. (Shmem_PmdMapped is 0: the
# memfd is 4 KiB pages.)
#
# The other memfd the two share, hearth's shared records with the stub ("hearth-stub-shared"),
# is memory outside guest RAM that only this microVM uses, but with both mapping it, its
# pages are Shared_* in both and not in either USS. It is counted once: the sum of its Pss
# over the two processes (each page mapped by both is half in each Pss).
#
# Not counted (reported beside it): the kernel's page tables of the two processes (VmPTE),
# which are not in smaps, and shared library pages (in memory once for every process).
def smaps(pid):
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if m:
                cur = {"name": m.group(4), "start": int(m.group(1), 16), "end": int(m.group(2), 16)}
                maps.append(cur)
                continue
            k, _, v = line.partition(":")
            v = v.split()
            if len(v) == 2 and v[1] == "kB":
                cur[k] = int(v[0])
    return maps


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.split()
            if len(v) == 2 and v[1] == "kB":
                out[k] = int(v[0])
    return out


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime


priv = lambda m: m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
shared = lambda m: m.get("Shared_Clean", 0) + m.get("Shared_Dirty", 0)
is_ram = lambda m: "memfd:hearth-guest-ram" in m["name"]
is_pair = lambda m: m["name"].startswith("/memfd:hearth-") and not is_ram(m)

hcon = f"{OUT}/process-idle-console.txt"
if os.path.exists(hcon):
    os.unlink(hcon)
hp = subprocess.Popen(hearth("testguest", "halt", "--console", hcon, "--timeout", "3", "--mem", str(MEM)),
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
try:
    for _ in range(250):
        if os.path.exists(hcon) and "testguest: ready" in open(hcon).read():
            break
        if hp.poll() is not None:
            break
        time.sleep(0.02)
    if hp.poll() is not None or "testguest: ready" not in open(hcon).read():
        fail(f"the idle guest did not come up ({hcon}); hearth: {hp.poll()}")
    time.sleep(0.2)
    kids = []
    for t in os.listdir(f"/proc/{hp.pid}/task"):
        kids += open(f"/proc/{hp.pid}/task/{t}/children").read().split()
    if len(kids) != 1:
        fail(f"hearth {hp.pid} has {len(kids)} children ({kids}), expected one guest process")
    gp = int(kids[0])
    t0 = (cpu_ticks(hp.pid), cpu_ticks(gp))
    time.sleep(0.5)
    t1 = (cpu_ticks(hp.pid), cpu_ticks(gp))
    idle_cpu_ms = [(b - a) * 1000 / os.sysconf("SC_CLK_TCK") / 0.5 for a, b in zip(t0, t1)]
    mem = {}
    for who, pid in (("hearth", hp.pid), ("guest", gp)):
        maps, roll = smaps(pid), rollup(pid)
        ram, pair = [m for m in maps if is_ram(m)], [m for m in maps if is_pair(m)]
        uss = roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0)
        if abs(uss - sum(priv(m) for m in maps)) > 64:  # the two reads are not atomic
            fail(f"{who}: smaps_rollup Private {uss} KiB != sum over smaps {sum(priv(m) for m in maps)} KiB")
        mem[who] = {
            "pid": pid, "uss": uss, "rss": roll.get("Rss", 0),
            "ram_private": sum(priv(m) for m in ram), "ram_shared": sum(shared(m) for m in ram),
            "ram_mappings": len(ram), "pair_private": sum(priv(m) for m in pair),
            "pair_pss": sum(m.get("Pss", 0) for m in pair), "vmpte": status_kib(pid, "VmPTE"),
            "mappings": len(maps),
        }
        mem[who]["outside"] = uss - mem[who]["ram_private"] - mem[who]["pair_private"]
        # The largest private mappings outside guest RAM, for the report.
        by = {}
        for m in maps:
            if not is_ram(m) and not is_pair(m) and priv(m):
                n = m["name"].rsplit("/", 1)[-1] or "[anon]"
                by[n] = by.get(n, 0) + priv(m)
        mem[who]["top"] = sorted(by.items(), key=lambda kv: -kv[1])[:6]
    # Guest RAM the memfd holds (pages touched by hearth or the guest), from its st_blocks.
    ram_kib = None
    for fd in os.listdir(f"/proc/{hp.pid}/fd"):
        try:
            if os.readlink(f"/proc/{hp.pid}/fd/{fd}").startswith("/memfd:hearth-guest-ram"):
                ram_kib = os.stat(f"/proc/{hp.pid}/fd/{fd}").st_blocks * 512 // 1024
        except OSError:
            pass
    rc = hp.wait(timeout=10)
    if rc != 245:
        fail(f"hearth (idle testguest) exited with {rc} (expected 245, --timeout)")
finally:
    if hp.poll() is None:
        hp.kill()
        hp.wait()
pair_kib = mem["hearth"]["pair_pss"] + mem["guest"]["pair_pss"]
outside_kib = mem["hearth"]["outside"] + mem["guest"]["outside"] + pair_kib
load_after = " ".join(open("/proc/loadavg").read().split()[:3])

# ---- report ----------------------------------------------------------------------------------------
met = lambda ok: "met" if ok else "NOT met"
cpu = sh("grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-").strip()
L = []
w = L.append
w(f"date:       {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
w(f"host:       {cpu}, {os.cpu_count()} CPUs (nproc {sh('nproc')}), kernel {sh('uname -r')}, "
  f"/dev/kvm {'present' if os.path.exists('/dev/kvm') else 'absent'}")
w(f"hearth:     {' '.join([HEARTH, *FLAGS])}; host mmu: {sh(f'{HEARTH} --version | sed -n s/^host.mmu:.//p')}")
w(f"qemu:       {sh(f'{QEMU} --version | head -1')}; {sh('hyperfine --version')}")
w(f"load avg:   {load_before} (before)  {load_after} (after)")
w(f"TSC:        {tsc_hz / 1e9:.3f} GHz (host sha256 hash cycles / CLOCK_MONOTONIC); nothing pinned")
w("")
w(f"1. Boot: hello.elf, process start -> exit ({RUNS} runs each, 1 vCPU, {MEM} MiB; ms)")
w(f"  hearth: {' '.join(hearth_cmd)}")
w(f"  qemu:   {' '.join(qemu_cmd)}")
w(f"  {'':<30}{'median':>8}{'p90':>8}{'min':>8}{'max':>8}")
for name, s in (("hearth --engine process", hb), ("QEMU microvm, TCG", qb),
                ("empty C program (floor)", eb)):
    w(f"  {name:<30}{s['median']:8.2f}{s['p90']:8.2f}{s['min']:8.2f}{s['max']:8.2f}")
w(f"  ratio QEMU TCG / hearth (medians): {boot_ratio:.1f}x; hearth above the floor: "
  f"{hb['median'] - eb['median']:.2f} ms; guest exits: {hello_exits}")
w("")
w(f"2. Compute: SHA-256 of {BYTES} bytes (hash phase; TSC cycles per byte; medians of {REPS})")
w(f"  host process:   {host_cpb:7.3f} c/B  ({tsc_hz / host_cpb / 2**20:7.1f} MiB/s)   fill {host_fill:.2f} c/B")
w(f"  process engine: {guest_cpb:7.3f} c/B  ({tsc_hz / guest_cpb / 2**20:7.1f} MiB/s)   fill {guest_fill:.2f} c/B")
cpb_runs = lambda rs: ", ".join("%.2f" % (int(x["hash"]) / BYTES) for x in rs)
best = lambda rs: min(int(x["hash"]) for x in rs)
w(f"  guest / host throughput: {compute * 100:.1f} % (fastest runs: "
  f"{best(sha_host) / best(sha_guest) * 100:.1f} %); runs: guest {cpb_runs(sha_guest)}, "
  f"host {cpb_runs(sha_host)} c/B")
w(f"  guest exits per run: {sha_exits:.0f}; counters: {sha_ctr}")
w("")
w(f"3. Traps: cycles per operation ({TRAPS} each; medians of {REPS}, then every run)")
fmt = lambda v: f"{med(v):9.0f} ({us(med(v)):6.2f} us)  runs: " + ", ".join(f"{x:.0f}" for x in v)
w(f"  engine, mov from CR0:         {fmt(g_cr0)}")
w(f"  engine, out to port 0x80:     {fmt(g_io)}")
labels = {"cr0": "host, mov from CR0 + SIGSEGV", "out": "host, out + SIGSEGV",
          "hlt": "host, hlt + SIGSEGV", "syscall": "host, getppid(2)",
          "pingpong": "host, futex hand-off x2", "pingpong-apart": "  ... on two pinned CPUs",
          "pingpong-same": "  ... on one pinned CPU"}
for mode, v in host_modes.items():
    w(f"  {labels[mode] + ':':<30}{fmt(v)}")
w(f"  engine / bare SIGSEGV round trip: CR0 {trap_cr0:.2f}x, port {trap_io:.2f}x; "
  f"hearth's own share: {trap_hearth_us:.2f} us per exit")
w(f"  fastest runs only: CR0 {min(g_cr0) / min(host_modes['cr0']):.2f}x, "
  f"port {min(g_io) / min(host_modes['out']):.2f}x")
if "pingpong" in host_modes:
    fl = med(host_modes["cr0"]) + med(host_modes["pingpong"])
    w(f"  the engine's floor, SIGSEGV round trip + hand-off: {fl:.0f} ({us(fl):.2f} us); "
      f"engine CR0 / floor: {med(g_cr0) / fl:.2f}x")
w("")
w(f"4. Page tables: flip a PTE, invlpg, read; {LOOPS} loops (cycles per loop; medians of {REPS})")
w(f"  host, mmap(MAP_FIXED) remap:  {remap_c:10.0f} ({us(remap_c):7.2f} us)")
w(f"  host, plain memory loop:      {plain_c:10.1f} ({us(plain_c):7.4f} us)")
w(f"  process engine:               {map_c:10.0f} ({us(map_c):7.2f} us)  runs: "
  + ", ".join(f"{x:.0f}" for x in map_list))
w(f"  engine / host remap: {map_ratio:.1f}x (fastest runs: {min(map_list) / remap_min:.1f}x); per loop: " + ", ".join(
    f"{k} {v / LOOPS:.2f}" for k, v in map_ctr.items() if k != "guest_pid"))
w("")
w("5. Memory outside guest RAM, testguest idling (KiB)")
w(f"  {'':<16}{'USS':>7}{'- guest RAM':>12}{'- shared rec.':>14}{'= outside':>10}{'Rss':>7}{'VmPTE':>7}")
for who in ("hearth", "guest"):
    m = mem[who]
    w(f"  {who + ' process':<16}{m['uss']:7d}{m['ram_private']:12d}{m['pair_private']:14d}"
      f"{m['outside']:10d}{m['rss']:7d}{m['vmpte']:7d}")
w(f"  shared records (memfd, both map it; Pss summed): {pair_kib} KiB")
w(f"  total outside guest RAM: {outside_kib} KiB ({outside_kib / 1024:.2f} MiB)")
w(f"  guest RAM held by the memfd: {ram_kib} KiB; as smaps shows it: hearth private "
  f"{mem['hearth']['ram_private']} / shared {mem['hearth']['ram_shared']}, guest process private "
  f"{mem['guest']['ram_private']} / shared {mem['guest']['ram_shared']} "
  f"({mem['guest']['ram_mappings']} mappings)")
w(f"  largest private outside guest RAM: hearth " + ", ".join(f"{n} {k}" for n, k in mem["hearth"]["top"])
  + "; guest process " + ", ".join(f"{n} {k}" for n, k in mem["guest"]["top"]))
w(f"  CPU while idle: hearth {idle_cpu_ms[0]:.0f} ms/s, guest process {idle_cpu_ms[1]:.0f} ms/s")
w("")
w("targets (reported, not enforced):")
tl = lambda label, result, ok: w(f"  {label:<52}{result:<12}{ok}")
tl(f"hello median <= {T_BOOT_MS:g} ms", f"{hb['median']:.2f} ms", met(hb["median"] <= T_BOOT_MS))
tl(f">= {T_BOOT_RATIO:g}x faster than QEMU TCG", f"{boot_ratio:.1f}x", met(boot_ratio >= T_BOOT_RATIO))
tl(f"compute >= {T_COMPUTE * 100:g} % of the host process", f"{compute * 100:.1f} %",
   met(compute >= T_COMPUTE))
tl(f"trap <= {T_TRAP:g}x the bare SIGSEGV round trip: CR0", f"{trap_cr0:.2f}x", met(trap_cr0 <= T_TRAP))
tl(f"trap <= {T_TRAP:g}x the bare SIGSEGV round trip: port", f"{trap_io:.2f}x", met(trap_io <= T_TRAP))
tl(f"page-table loop <= {T_MAP:g}x a host mmap remap", f"{map_ratio:.1f}x", met(map_ratio <= T_MAP))
tl(f"private memory outside guest RAM <= {T_MEM_KIB // 1024} MiB", f"{outside_kib / 1024:.2f} MiB",
   met(outside_kib <= T_MEM_KIB))

text = "\n".join(L)
print(text)
with open(f"{OUT}/process.txt", "w") as f:
    f.write(text + "\n")
with open(f"{OUT}/process.json", "w") as f:
    json.dump({"tsc_hz": tsc_hz, "boot": boot, "memory": mem, "map_counters": map_ctr,
               "sha256_counters": sha_ctr, "runs": runs}, f, indent=1)
EOF
