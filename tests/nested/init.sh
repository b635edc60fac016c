#!/bin/busybox sh
# /init of L1, the VM that tests/nested/run.sh boots (it is copied into the initramfs there).
#
# Loads the modules listed in /lib/modules/order, mounts the host's root (virtio-9p, tag
# "hostroot", read-only) under a tmpfs overlay at /newroot, mounts the job share (virtio-9p,
# tag "job", writable), checks /dev/kvm, then runs /job/job.sh chrooted into /newroot with its
# output on ttyS1 (the host streams it), writes the command's exit status to /job/status and
# powers off. The kernel console is ttyS0. Any setup failure is written to /job/error (when
# the share is there) and ends L1: the host reports it as a harness failure, never a pass.
# PID 1 stays here, in the initramfs, for the whole run (chroot, not switch_root), so it is
# always this script that reports and powers off.

/bin/busybox mkdir -p /bin /proc /sys /dev
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
read -r t_init _ </proc/uptime

OUT=/dev/ttyS1
# Raw: no "\n" -> "\r\n", no echo, no signals from the line; setting it also waits for the
# output already queued to be sent (busybox stty uses TCSADRAIN), which the end relies on.
stty -F "$OUT" raw -echo 2>/dev/null || OUT=/dev/console
# Held open for the whole run: an open port has its receive interrupt enabled, which the
# host uses to wake a stalled L1 (run.sh, "nudge").
exec 3<>"$OUT"

say() { # on the command's channel and in the kernel log
	echo "nested: $*" >"$OUT"
	echo "nested: $*" >/dev/kmsg
}
fail() {
	say "L1 setup failed: $*"
	[ -f /job/job.sh ] && echo "$*" >/job/error
	sync
	poweroff -f
	exit 1 # not reached; PID 1 exiting would panic the kernel, which also ends QEMU
}

# Module parameters from the kernel command line ("kvm_amd.npt=0"): insmod, unlike modprobe,
# does not read them from there.
cmdline=$(cat /proc/cmdline)
while read -r mod; do
	args=
	for w in $cmdline; do
		case $w in "$mod".*=*) args="$args ${w#"$mod".}" ;; esac
	done
	# shellcheck disable=SC2086 # one word per parameter
	insmod "/lib/modules/$mod.ko" $args || fail "insmod $mod$args"
done </lib/modules/order

mkdir -p /job /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L job /job || fail "mount the job share (9p tag job)"
[ -f /job/job.sh ] || fail "no job.sh on the job share"
# A heartbeat for the host. QEMU 7.2's TCG can lose L1's timer interrupt (README.md) and
# leave L1 halted with nothing to wake it, which nothing inside L1 can see; the host
# watches this file, wakes L1 with an interrupt when it stops changing, and fails the run
# when that does not help.
(while :; do
	cut -d' ' -f1 /proc/uptime >/job/alive.tmp && mv /job/alive.tmp /job/alive
	sleep 2
done) &

# The host's root, read-only; cache=loose: its files do not change under a run, and without
# a page cache every read (python imports, shared libraries) is a round trip to QEMU.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /lower ||
	fail "mount the host's root (9p tag hostroot)"
mount -t tmpfs -o mode=755 rw /rw && mkdir -p /rw/upper /rw/work || fail "tmpfs for the overlay"
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
	fail "overlay on the host's root"

# The host's layout (cgroup v1 controllers under a tmpfs, cgroup2 at unified): the jailer
# tests expect it.
R=/newroot
mnt() { # type source dir options
	mkdir -p "$3" && mount -t "$1" -o "$4" "$2" "$3" || fail "mount -t $1 -o $4 $2 $3"
}
mnt proc proc $R/proc rw
mnt sysfs sysfs $R/sys rw
mnt devtmpfs devtmpfs $R/dev rw
mnt devpts devpts $R/dev/pts rw,mode=620,ptmxmode=666
mnt tmpfs tmpfs $R/dev/shm rw
mnt tmpfs tmpfs $R/tmp rw,mode=1777
mnt tmpfs tmpfs $R/run rw,mode=755
mnt tmpfs tmpfs $R/sys/fs/cgroup rw,mode=755
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
	mnt cgroup cgroup $R/sys/fs/cgroup/$c rw,$c
done
mnt cgroup cgroup $R/sys/fs/cgroup/systemd rw,none,name=systemd
mnt cgroup2 cgroup2 $R/sys/fs/cgroup/unified rw
ip link set lo up || fail "ip link set lo up"
hostname nested

[ -c /dev/kvm ] || fail "no /dev/kvm (kvm_amd loaded: $([ -d /sys/module/kvm_amd ] && echo yes || echo no))"
{ [ -c /dev/kvm ] && : <>/dev/kvm; } 2>/dev/null || fail "/dev/kvm cannot be opened"
npt=$(cat /sys/module/kvm_amd/parameters/npt)
mem=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
read -r t_cmd _ </proc/uptime
say "L1 $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPU, $mem MiB, /dev/kvm ok," \
	"kvm_amd npt=$npt; init at ${t_init} s, command at ${t_cmd} s"

mkdir -p $R/run/nested && cp /job/job.sh $R/run/nested/job.sh || fail "copy job.sh"
echo "$t_init $t_cmd" >/job/started
chroot $R /bin/bash /run/nested/job.sh <$R/dev/null >"$OUT" 2>&1
rc=$?
stty -F "$OUT" raw -echo 2>/dev/null # drain what the command wrote before powering off
read -r t_end _ </proc/uptime
echo "$rc $t_end" >/job/status.tmp && mv /job/status.tmp /job/status
sync
poweroff -f
