#!/usr/bin/env bash
# v2vm.sh — runs a command as root in a throw-away VM whose /sys/fs/cgroup is a pure cgroup v2
# hierarchy, and exits with the command's status.
#
#   scripts/v2vm.sh [-C DIR] [-t SECONDS] [-m MIB] [-c CPUS] [--disk MIB] [--] COMMAND [ARG...]
#   (--disk: the size of the /tmp disk, a sparse file here; default 4096)
#
# The VM runs a stock Debian kernel (the linux-image package is downloaded and unpacked, never
# installed) under qemu with a busybox initramfs. It sees this machine's root read-only over
# virtio-9p, with a fresh ext4 scratch disk (/dev/vda) on /tmp (tmpfs of this kernel has no
# user.* xattrs, which a store needs) and fresh tmpfs on /var/tmp, /run and /root.
# cgroup v1 is switched off (cgroup_no_v1=all); cgroup2 is mounted on /sys/fs/cgroup with every
# controller enabled at the root, and the command runs in a leaf cgroup (test.scope), as a login
# shell of a systemd host would: a cgroup holding processes cannot enable controllers below it.
#
# The command runs in DIR (default: the current directory; shared read-only at its own path,
# wherever it is, so write to /tmp), with STRATA_V2VM set to the accelerator (kvm or tcg). Its output comes here as it runs. Exit status: the
# command's, or 125 with a message when the VM did not run it (no qemu, no kernel, boot
# failure, timeout).
#
# Environment: STRATA_V2VM_CACHE (kernel and initramfs, default /var/tmp/strata-v2vm),
# STRATA_V2VM_ACCEL (kvm or tcg; default kvm only where /dev/kvm is writable and the CPU shows
# vmx/svm: a paravirtual /dev/kvm cannot run a stock kernel).
set -euo pipefail

fail() { echo "v2vm: $*" >&2; exit 125; }
say() { echo "v2vm: $*" >&2; }
[ "$(id -u)" = 0 ] || fail "needs root (qemu's 9p export of / and the packages it installs)"

dir=$PWD timeout=900 mem=2048 cpus=$(nproc) disk=4096
while [ $# -gt 0 ]; do
    case $1 in
        -C) dir=$2; shift 2 ;;
        -t) timeout=$2; shift 2 ;;
        -m) mem=$2; shift 2 ;;
        -c) cpus=$2; shift 2 ;;
        --disk) disk=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        -*) fail "unknown option $1" ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || fail "no command (see --help)"
dir=$(realpath "$dir")
[ "$cpus" -gt 4 ] && cpus=4
cache=${STRATA_V2VM_CACHE:-/var/tmp/strata-v2vm}
mkdir -p "$cache"
started=$(date +%s.%N)
elapsed() { awk -v a="$(date +%s.%N)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }

# -- What the host needs: qemu, a static busybox for the initramfs. -----------------------------
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    say "installing $*"
    if ! apt-get install -y -qq --no-install-recommends "$@" >"$cache/apt.log" 2>&1; then
        apt-get update -qq >>"$cache/apt.log" 2>&1 &&
            apt-get install -y -qq --no-install-recommends "$@" >>"$cache/apt.log" 2>&1 ||
            { tail -15 "$cache/apt.log" >&2; fail "apt-get install $* failed"; }
    fi
}
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
# busybox-static's /bin/busybox (Debian's other busybox is linked dynamically: useless alone).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
busybox=/bin/busybox
"$busybox" --list | grep -qx switch_root || fail "$busybox has no switch_root"

# -- The kernel: Debian's linux-image for this release, unpacked into the cache. ----------------
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
if [ ! -e "$cache/kernel/.unpacked" ]; then
    pkg=$(kernel_pkg)
    [ -n "$pkg" ] || { apt-get update -qq >"$cache/apt.log" 2>&1 || true; pkg=$(kernel_pkg); }
    [ -n "$pkg" ] || fail "apt knows no linux-image-amd64 (is a Debian mirror configured?)"
    say "downloading $pkg"
    rm -rf "$cache/kernel" "$cache/download"
    mkdir -p "$cache/download"
    (cd "$cache/download" && apt-get download -qq "$pkg" >"$cache/download.log" 2>&1) ||
        { tail -5 "$cache/download.log" >&2; fail "apt-get download $pkg failed"; }
    dpkg-deb -x "$cache"/download/*.deb "$cache/kernel"
    rm -rf "$cache/download"
    touch "$cache/kernel/.unpacked"
fi
vmlinuz=$(ls "$cache"/kernel/boot/vmlinuz-* 2>/dev/null | head -1)
[ -n "$vmlinuz" ] || fail "no vmlinuz in $cache/kernel (remove it to download again)"
kver=${vmlinuz##*/vmlinuz-}

# -- The initramfs: busybox, the modules that reach the host's root, and /init. -----------------
initrd=$cache/initrd-$kver.img
if [ ! -e "$initrd" ] || [ "$initrd" -ot "$0" ]; then
    say "making the initramfs for $kver"
    mods=$cache/kernel/lib/modules/$kver
    [ -e "$mods/modules.dep" ] || "$busybox" depmod -b "$cache/kernel" "$kver"
    tree=$(mktemp -d "$cache/initramfs.XXXXXX")
    mkdir -p "$tree"/{bin,dev,proc,sys,root,etc} "$tree/lib/modules/$kver"
    cp "$busybox" "$tree/bin/busybox"
    # Each wanted module with what it depends on (modules.dep lists both, relative paths).
    wanted="virtio_pci virtio_blk 9pnet_virtio 9p overlay loop crc32c_generic crc32c_intel ext4"
    for m in $wanted; do
        pattern="/${m//_/[-_]}\\.ko(\\.[a-z]+)?:"
        grep -E "$pattern" "$mods/modules.dep" | tr -d ':' | tr ' ' '\n' | grep . || true
    done | sort -u | while read -r f; do
        mkdir -p "$tree/lib/modules/$kver/$(dirname "$f")"
        cp "$mods/$f" "$tree/lib/modules/$kver/$f"
    done
    cp "$mods"/modules.{dep,builtin,alias,order} "$tree/lib/modules/$kver/" 2>/dev/null || true
    echo "$wanted" >"$tree/etc/modules"
    cat >"$tree/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
halt() { echo "v2vm init: $*"; sync; poweroff -f; }
for m in $(cat /etc/modules); do modprobe "$m" 2>/dev/null; done
p9=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$p9,ro,cache=loose" hostroot /root || halt "cannot mount the host's root over 9p"
mount -t ext4 /dev/vda /root/tmp || halt "cannot mount the scratch disk on /tmp"
for d in var/tmp run root; do mount -t tmpfs -o mode=0755 tmpfs "/root/$d" || halt "cannot mount a tmpfs on /$d"; done
chmod 1777 /root/tmp /root/var/tmp
mkdir -p /root/run/v2vm
mount -t 9p -o "$p9" v2vmctl /root/run/v2vm || halt "cannot mount the control share"
for d in proc sys dev; do mount --move "/$d" "/root/$d"; done
exec switch_root /root /bin/sh /run/v2vm/stage2
INIT
    chmod 755 "$tree/init"
    (cd "$tree" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    rm -rf "$tree"
fi

accel=${STRATA_V2VM_ACCEL:-}
if [ -z "$accel" ]; then
    if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then accel=kvm; else accel=tcg; fi
fi
case $accel in
    kvm) accel_args=(-accel kvm -cpu host) ;;
    tcg) accel_args=(-accel tcg,thread=multi -cpu max) ;;
    *) fail "STRATA_V2VM_ACCEL must be kvm or tcg, not $accel" ;;
esac

# -- This run: the control share (stage 2, the command, its output and status) and a disk. ------
state=$(mktemp -d /tmp/strata-v2vm.XXXXXX)
qemu_pid=""
cleanup() { [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null; rm -rf "$state"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
printf '%q ' "$@" >"$state/command"
truncate -s "${disk}M" "$state/disk.img"
mkfs.ext4 -q -F -L v2vm-tmp "$state/disk.img" || fail "cannot make the scratch disk (mkfs.ext4)"
cat >"$state/stage2" <<STAGE2
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb STRATA_V2VM=$accel
ctl=/run/v2vm
{
    mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || echo "v2vm: cannot mount cgroup2"
    for c in \$(cat /sys/fs/cgroup/cgroup.controllers); do echo "+\$c" >/sys/fs/cgroup/cgroup.subtree_control; done
    mkdir /sys/fs/cgroup/test.scope && echo \$\$ >/sys/fs/cgroup/test.scope/cgroup.procs || echo "v2vm: cannot make the leaf cgroup"
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
    mount -t tmpfs -o mode=1777 tmpfs /dev/shm
    hostname v2vm
    ip link set lo up 2>/dev/null || busybox ip link set lo up
    # The command's directory, at its own path: it may lie under /tmp, /var/tmp, /run or /root,
    # which the VM has fresh (a clone made in /tmp would be hidden by the scratch disk).
    mkdir -p $(printf '%q' "$dir") && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose v2vmwork $(printf '%q' "$dir") ||
        echo "v2vm: cannot mount the work directory $(printf '%q' "$dir")"
} >>\$ctl/output 2>&1
date +%s.%N >\$ctl/booted
cd $(printf '%q' "$dir") && bash \$ctl/command </dev/null >>\$ctl/output 2>&1
echo \$? >\$ctl/status
sync
/bin/busybox poweroff -f
STAGE2
: >"$state/output"

say "booting $kver ($accel, $cpus CPUs, $mem MiB; ready after $(elapsed "$started") s)"
boot=$(date +%s.%N)
timeout -k 10 "$timeout" qemu-system-x86_64 -nodefaults -no-user-config -machine pc "${accel_args[@]}" \
    -smp "$cpus" -m "$mem" -display none -no-reboot -nic none \
    -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init cgroup_no_v1=all mitigations=off" \
    -serial "file:$state/console" -device virtio-rng-pci \
    -fsdev "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap" \
    -device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
    -fsdev "local,id=ctl,path=$state,security_model=none" \
    -device virtio-9p-pci,fsdev=ctl,mount_tag=v2vmctl \
    -fsdev "local,id=work,path=$dir,security_model=none,readonly=on,multidevs=remap" \
    -device virtio-9p-pci,fsdev=work,mount_tag=v2vmwork \
    -drive "file=$state/disk.img,if=virtio,format=raw" \
    </dev/null >"$state/qemu.log" 2>&1 &
qemu_pid=$!
tail -n +1 -s 0.5 -f --pid="$qemu_pid" "$state/output" &
tail_pid=$!
booted=""
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ -z "$booted" ] && [ -e "$state/booted" ]; then booted=$(elapsed "$boot"); say "booted in $booted s"; fi
    sleep 0.5
done
set +e; wait "$qemu_pid"; qemu_status=$?; set -e
qemu_pid=""
wait "$tail_pid" 2>/dev/null || true
say "the VM ran $(elapsed "$boot") s (boot ${booted:-?} s)"
if [ ! -s "$state/status" ]; then
    [ "$qemu_status" = 124 ] && say "timed out after $timeout s"
    say "qemu exit $qemu_status; qemu log and console tail:"
    tail -5 "$state/qemu.log" >&2
    tail -25 "$state/console" >&2
    fail "the VM did not run the command to its end"
fi
exit "$(cat "$state/status")"
