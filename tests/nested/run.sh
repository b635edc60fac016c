#!/usr/bin/env bash
# Run one command inside L1: Debian's generic kernel under QEMU TCG with an emulated AMD SVM
# CPU (nested paging), which gives a real /dev/kvm where this machine has none. L1 sees the
# host's root read-only over virtio-9p under a tmpfs overlay (same paths, writable, nothing
# written back), runs the command as root in the checkout, streams its output here, and
# exits with its status. tests/nested/README.md has the whole story.
#
#   tests/nested/run.sh [OPTIONS] -- CMD [ARG...]
#
#   --npt=0|1            kvm_amd's npt parameter in L1: 1 nested paging (default), 0 KVM's
#                        own shadow paging
#   --timeout SEC        kill L1 and fail after SEC seconds in all (default 3000)
#   --boot-timeout SEC   ... or when the command has not started SEC seconds after QEMU did
#                        (default 300)
#   --stall-timeout SEC  ... or when L1's heartbeat (every 2 s) stops for SEC seconds even
#                        though L1 was sent interrupts to wake it: L1 froze (default 120)
#   --mem MIB            L1's RAM (default 2048)
#   --env NAME[=VALUE]   pass NAME into L1 (its value here, or VALUE); repeatable. Always
#                        passed when set: PATH HEARTH_BUILD HEARTH_SAN LANG LC_ALL CI
#   -C DIR               run the command in DIR (default: the checkout's root)
#
# Exit status: the command's own, or 125 when the harness itself failed (kernel fetch,
# initramfs, QEMU, a module, a mount, /dev/kvm, a kernel panic or soft lockup, a timeout,
# no exit status reported); "nested: harness failure: ..." on stderr then says what.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="$ROOT/.cache/nested"
HARNESS_FAILED=125
# Modules L1 loads (with their dependencies, unless built in): KVM, TAP and veth for the
# network tests, virtio-9p and overlayfs for the root.
MODULES="virtio_pci 9pnet_virtio 9p overlay kvm_amd tun veth"
# Bumped when the initramfs layout changes (it is part of the cache key).
INITRAMFS_FORMAT=1

say() { echo "nested: $*" >&2; }
fail() { # message: the harness failed; never a pass or a skip
	say "harness failure: $*"
	exit "$HARNESS_FAILED"
}

npt=1 timeout=3000 boot_timeout=300 stall_timeout=120 mem=2048 workdir=$ROOT
env_names=(PATH HEARTH_BUILD HEARTH_SAN LANG LC_ALL CI)
declare -A env_values=()
while [ $# -gt 0 ]; do
	case $1 in
	--npt=0 | --npt=1) npt=${1#--npt=} ;;
	--timeout) timeout=${2:?--timeout SEC}; shift ;;
	--boot-timeout) boot_timeout=${2:?--boot-timeout SEC}; shift ;;
	--stall-timeout) stall_timeout=${2:?--stall-timeout SEC}; shift ;;
	--mem) mem=${2:?--mem MIB}; shift ;;
	--env)
		v=${2:?--env NAME[=VALUE]}; shift
		env_names+=("${v%%=*}")
		[[ $v == *=* ]] && env_values[${v%%=*}]=${v#*=}
		;;
	-C) workdir=${2:?-C DIR}; shift ;;
	--) shift; break ;;
	*) echo "usage: $0 [--npt=0|1] [--timeout SEC] [--boot-timeout SEC] [--stall-timeout SEC]" \
		"[--mem MIB]" \
		"[--env NAME[=VALUE]]... [-C DIR] -- CMD [ARG...]" >&2; exit 2 ;;
	esac
	shift
done
[ $# -gt 0 ] || fail "no command given (usage: $0 [OPTIONS] -- CMD [ARG...])"
for n in "$timeout" "$boot_timeout" "$stall_timeout" "$mem"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || fail "'$n' is not a positive number"
done
workdir=$(cd "$workdir" && pwd) || fail "-C $workdir: no such directory"

QEMU=qemu-system-x86_64
BUSYBOX=/bin/busybox
for t in "$QEMU" cpio flock; do
	command -v "$t" >/dev/null || fail "$t not installed (make deps: qemu-system-x86, cpio)"
done
[ -x "$BUSYBOX" ] || fail "$BUSYBOX not installed (make deps: busybox-static)"

t_start=$(date +%s.%N)

# Everything of this run lives in $run: removed on any exit, with QEMU killed first.
run=$(mktemp -d "${TMPDIR:-/tmp}/hearth-nested.XXXXXX")
qpid='' wpid=''
cleanup() {
	local st=$?
	trap - EXIT INT TERM HUP
	# No QEMU outlives us: Ctrl-C, a timeout, any failure.
	for p in $qpid $wpid; do kill "$p" 2>/dev/null || true; done
	for p in $qpid $wpid; do wait "$p" 2>/dev/null || true; done
	rm -rf "$run" "$CACHE/.initramfs.$$.tmp"
	exit "$st"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
mkdir "$run/job" "$run/stage"

# --- L1's kernel: Debian's generic amd64 flavour (it has kvm-amd), cached in .cache/ -------
kinfo=$(HEARTH_KERNEL_FLAVOUR=amd64 "$ROOT/tests/integration/fetch_debian_kernel.sh") ||
	fail "fetching Debian's linux-image-amd64 failed (tests/integration/fetch_debian_kernel.sh)"
# QEMU boots the uncompressed vmlinux through its PVH entry (Debian's kernel has the note):
# that saves the bzImage's decompression, 3-4 s under TCG on every run.
kernel=$(sed -n 's/^vmlinux: //p' <<<"$kinfo")
kmods=$(sed -n 's/^modules: //p' <<<"$kinfo")
[ -s "$kernel" ] && [ -d "$kmods" ] || fail "fetch_debian_kernel.sh gave no vmlinux/modules"

# --- the initramfs: busybox, /init, the modules; cached by content --------------------------
mkdir -p "$CACHE"
key=$( {
	echo "$INITRAMFS_FORMAT $MODULES"
	cat "$kmods/../VERSION" "$HERE/init.sh"
	sha256sum <"$BUSYBOX"
} | sha256sum | cut -c1-16)
initrd="$CACHE/initramfs-$key.cpio"

decompress() { # module file -> stdout
	case $1 in
	*.ko) cat "$1" ;;
	*.ko.xz) xz -dc "$1" ;;
	*.ko.zst) zstd -dcq "$1" ;;
	*.ko.gz) gzip -dc "$1" ;;
	*) return 1 ;;
	esac
}

build_initramfs() { # -> $initrd
	local stage=$run/stage

	# The package has no modules.dep (depmod makes it at install): read each module's
	# "depends=" from its .modinfo strings and order the modules dependencies first.
	declare -A path=() builtin=() seen=()
	local f n
	while IFS= read -r f; do
		n=${f##*/}; n=${n%%.ko*}; path[${n//-/_}]=$f
	done < <(find "$kmods/kernel" -name '*.ko' -o -name '*.ko.*')
	while IFS= read -r f; do
		n=${f##*/}; n=${n%%.ko*}; builtin[${n//-/_}]=1
	done <"$kmods/modules.builtin"
	mkdir -p "$stage/lib/modules" "$stage/bin" "$stage/dev"
	add() {
		local m=${1//-/_} d
		[ -z "${seen[$m]:-}" ] || return 0
		seen[$m]=1
		[ -z "${builtin[$m]:-}" ] || return 0
		[ -n "${path[$m]:-}" ] || fail "module $m is neither in $kmods nor built in"
		decompress "${path[$m]}" >"$stage/lib/modules/$m.ko" || fail "cannot decompress ${path[$m]}"
		for d in $(tr '\0' '\n' <"$stage/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr , ' '); do
			add "$d"
		done
		echo "$m" >>"$stage/lib/modules/order"
	}
	for n in $MODULES; do add "$n"; done

	cp "$BUSYBOX" "$stage/bin/busybox"
	cp "$HERE/init.sh" "$stage/init"
	chmod 755 "$stage/init" "$stage/bin/busybox"
	# The kernel's built-in initramfs has /dev/console too; this is for the kernel's first
	# open of it, before /init mounts devtmpfs (only root can make the node).
	[ "$(id -u)" != 0 ] || mknod "$stage/dev/console" c 5 1
	# Uncompressed: under TCG unpacking is cheaper than decompressing.
	(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
		>"$CACHE/.initramfs.$$.tmp" || fail "cpio failed"
	mv "$CACHE/.initramfs.$$.tmp" "$initrd"
	say "built $initrd (modules: $(paste -sd" " "$stage/lib/modules/order"))"
}

if [ ! -s "$initrd" ]; then
	# One build at a time (two runs may start together); the loser finds the file made.
	exec 8>"$CACHE/.lock"
	flock -w 600 8 || fail "timed out waiting for $CACHE/.lock"
	if [ ! -s "$initrd" ]; then
		build_initramfs
		# Older initramfs (another kernel or init.sh) are not needed any more.
		find "$CACHE" -maxdepth 1 -name 'initramfs-*.cpio' ! -name "${initrd##*/}" -mmin +60 \
			-delete
	fi
	exec 8>&-
fi

# --- the job: a script L1 runs chrooted in the host's root -------------------------------

# TERM: the host's when our output is a terminal; "dumb" when it is a log, so that programs
# that check isatty (ttyS1 is a terminal in L1) do not colour it.
if [ -t 1 ]; then term=${TERM:-dumb}; else term=dumb; fi
{
	echo '#!/bin/bash'
	echo '# Made by tests/nested/run.sh; /init runs it in L1, chrooted into the host root.'
	echo 'for v in $(compgen -e); do unset "$v" 2>/dev/null; done'
	printf 'export HOME=/root USER=root LOGNAME=root TERM=%q\n' "$term"
	for n in "${env_names[@]}"; do
		if [ -n "${env_values[$n]+set}" ]; then
			printf 'export %s=%q\n' "$n" "${env_values[$n]}"
		elif [ -n "${!n+set}" ]; then
			printf 'export %s=%q\n' "$n" "${!n}"
		fi
	done
	printf 'cd %q || exit 125\n' "$workdir"
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$run/job/job.sh"

# --- L1 ---------------------------------------------------------------------------------
# ttyS0: the kernel console, to a file; ttyS1: the command's output, to our stdout.
# panic=-1 and -no-reboot: a panic (softlockup_panic=1, oops=panic) ends QEMU at once.
append="console=ttyS0 panic=-1 softlockup_panic=1 oops=panic printk.devkmsg=on kvm_amd.npt=$npt"
# shellcheck disable=SC2054 # the commas are QEMU's
qemu_args=(
	-nodefaults -no-user-config -display none -no-reboot
	-accel tcg,thread=multi -cpu qemu64,+svm,+npt,+fsgsbase,phys-bits=48 -m "$mem" -smp 1
	-kernel "$kernel" -initrd "$initrd" -append "$append"
	-chardev "file,id=con,path=$run/console.log" -serial chardev:con
	-chardev stdio,id=out,signal=off -serial chardev:out
	-fsdev local,id=hostroot,path=/,security_model=none,multidevs=remap,readonly=on
	-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
	-fsdev "local,id=job,path=$run/job,security_model=none"
	-device virtio-9p-pci,fsdev=job,mount_tag=job
	-qmp "unix:$run/qmp.sock,server=on,wait=off"
)
say "L1: $(sed 's/ .*//' "$kmods/../VERSION"), npt=$npt, $mem MiB; running in $workdir:$(printf ' %q' "$@")"
t_qemu=$(date +%s.%N)
"$QEMU" "${qemu_args[@]}" </dev/null 2>"$run/qemu.err" &
qpid=$!

# QEMU's monitor over QMP, for a look at L1 from outside (by hand too, while a run hangs):
# monitor "info registers" '{"execute": ...}' ... runs each monitor (HMP) command or QMP
# command (JSON) and prints its output.
monitor() {
	/usr/bin/python3 - "$run/qmp.sock" "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
def call(cmd, **args):
    f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
    f.flush()
    while True:  # skip events
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
json.loads(f.readline())  # the greeting
call("qmp_capabilities")
for c in sys.argv[2:]:
    if c.startswith("{"):
        q = json.loads(c)
        r = call(q["execute"], **q.get("arguments", {}))
    else:
        r = call("human-monitor-command", **{"command-line": c})
    print(f"(qemu) {c}\n{r.get('return', r)}")
PY
}

# The watchdog: the three timeouts, one-second resolution; it notes why it killed QEMU,
# after saving L1's CPU state (a hang shows where L1 was).
#
# A stall: under QEMU 7.2's TCG, L1 has been seen halted for good with its timer vector
# pending in the IRR (a lost wakeup; likely do_vmexit clearing another bit of the same
# interrupt_request word, not atomically, from the vCPU thread, while the main loop raises
# the timer's; README.md). Nothing is left armed to wake L1 then. Any new interrupt makes
# QEMU look at the IRR again, so when the heartbeat stops for NUDGE_AFTER seconds the
# watchdog sends a break to ttyS1 (an RX interrupt in L1; the NUL it reads goes nowhere),
# after saving the local APIC's state to stalls.txt.
NUDGE_AFTER=10
(
	set +e # nothing here may end the watchdog early
	elapsed=0 last_nudge=-$NUDGE_AFTER
	while kill -0 "$qpid" 2>/dev/null; do
		sleep 1
		elapsed=$((elapsed + 1))
		why=
		age=0
		beat=$(stat -c %Y "$run/job/alive" 2>/dev/null) && age=$(($(date +%s) - beat))
		if [ $elapsed -ge "$timeout" ]; then
			why="timed out after $timeout s (--timeout)"
		elif [ $elapsed -ge "$boot_timeout" ] && [ ! -e "$run/job/started" ]; then
			why="the command had not started $boot_timeout s after QEMU did (--boot-timeout)"
		elif [ $age -ge "$stall_timeout" ]; then
			why="L1 froze: no heartbeat for $stall_timeout s, at L1 uptime $(cat "$run/job/alive") s (--stall-timeout)"
		elif [ $age -ge $NUDGE_AFTER ] && [ $((elapsed - last_nudge)) -ge $NUDGE_AFTER ]; then
			last_nudge=$elapsed
			{
				echo "== $elapsed s after QEMU started: no heartbeat for $age s (L1 uptime $(cat "$run/job/alive") s)"
				monitor "info lapic" '{"execute": "chardev-send-break", "arguments": {"id": "out"}}'
			} >>"$run/stalls.txt" 2>&1
		fi
		if [ -n "$why" ]; then
			monitor "info registers" "info lapic" >"$run/monitor.txt" 2>&1 || true
			echo "$why" >"$run/timeout"
			kill "$qpid" 2>/dev/null
			exit 0
		fi
	done
) &
wpid=$!

qrc=0
wait "$qpid" || qrc=$?
qpid=
kill "$wpid" 2>/dev/null || true
wait "$wpid" 2>/dev/null || true
wpid=
t_end=$(date +%s.%N)

# The console log stays for a look after the run (the last run's, whichever that was).
cp "$run/console.log" "$CACHE/console-last.log" 2>/dev/null || true

show_console() {
	local lines=300
	echo "---- L1 kernel console (last $lines lines; all of it in $CACHE/console-last.log) ----" >&2
	tail -n "$lines" "$run/console.log" >&2 2>/dev/null || echo "(no console log)" >&2
	if [ -s "$run/stalls.txt" ]; then
		echo "---- stalls: L1's local APIC when its heartbeat stopped ----" >&2
		cat "$run/stalls.txt" >&2
	fi
	if [ -s "$run/monitor.txt" ]; then
		echo "---- L1's CPU when the watchdog stopped it (QEMU monitor) ----" >&2
		cat "$run/monitor.txt" >&2
	fi
	if [ -s "$run/qemu.err" ]; then
		echo "---- QEMU stderr ----" >&2
		cat "$run/qemu.err" >&2
	fi
	echo "---- end of L1 kernel console ----" >&2
}
harness_failed() {
	show_console
	fail "$*"
}

[ ! -s "$run/timeout" ] || harness_failed "$(cat "$run/timeout")"
[ ! -s "$run/job/error" ] || harness_failed "L1 setup: $(cat "$run/job/error")"
if [ ! -s "$run/job/status" ]; then
	why="QEMU exited with status $qrc"
	panic=$(grep -m1 -E 'Kernel panic|soft lockup|BUG:|Oops' "$run/console.log" 2>/dev/null || true)
	[ -z "$panic" ] || why="$why; L1 console: ${panic#*] }"
	harness_failed "L1 ended before reporting the command's exit status ($why)"
fi
read -r rc t_cmd_end <"$run/job/status"
read -r t_init t_cmd <"$run/job/started"
[[ $rc =~ ^[0-9]+$ ]] || harness_failed "malformed status '$(cat "$run/job/status")'"

# Stalls the watchdog woke L1 from: not a failure (L1 lost only time), but reported.
if [ -s "$run/stalls.txt" ]; then
	cp "$run/stalls.txt" "$CACHE/stalls-last.txt"
	say "L1 stalled $(grep -c '^== ' "$run/stalls.txt") time(s) and was sent an interrupt to" \
		"wake it (likely a lost wakeup in QEMU's TCG, README.md; states in $CACHE/stalls-last.txt):"
	grep -E '^== |^IRR' "$run/stalls.txt" >&2
fi

# Kernel trouble that did not end L1 (a WARN in KVM, an RCU stall): not a harness failure,
# but never silent.
trouble=$(grep -E 'WARNING:|BUG:|Oops|rcu.*stall|soft lockup|Call Trace' "$run/console.log" || true)
if [ -n "$trouble" ]; then
	say "L1's kernel log has warnings (whole log: $CACHE/console-last.log):"
	head -n 20 <<<"$trouble" >&2
fi
[ "$rc" = 0 ] || show_console

# Times: L1's uptime (its clock starts when the kernel does) and the host's wall clock.
awk -v s="$t_start" -v q="$t_qemu" -v e="$t_end" -v i="$t_init" -v c="$t_cmd" -v ce="$t_cmd_end" \
	-v rc="$rc" 'BEGIN {
	printf "nested: exit status %d; L1 init at %.1f s, command started at %.1f s and ran %.1f s;" \
		" harness overhead %.1f s (%.1f s before QEMU), total %.1f s\n",
		rc, i, c, ce - c, (e - s) - (ce - c), q - s, e - s }' >&2
exit "$rc"
