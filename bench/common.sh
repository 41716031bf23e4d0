# Shared by the bench scripts: a debootstrap'd Debian minbase rootfs and timing helpers.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}
mkdir -p "$work"
# Benchmarks measure the release build with the Swift runtime linked statically (as a shipped
# binary would be): a dynamic Foundation costs about 5 ms of start-up on every command.
strata=$repo/.build-static/release/strata

need() { command -v "$1" >/dev/null || { apt-get install -y -qq "$2" >/dev/null; }; }

build_strata() { (cd "$repo" && swift build -c release --static-swift-stdlib --scratch-path .build-static >/dev/null); }

# The Debian 12 minbase rootfs (about 210 MB, 6,800 files), made once.
debian_rootfs() {
  if [ ! -f "$work/rootfs/etc/debian_version" ]; then
    need debootstrap debootstrap
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1
  fi
  if [ ! -f "$work/debian.tar" ]; then
    tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$work/debian.tar" .
  fi
}

# Runs a command, prints "seconds max-rss-KiB".
measure() {
  /usr/bin/time -f "%e %M" -o "$work/.time" "$@" >/dev/null 2>"$work/.err" || { cat "$work/.err" >&2; return 1; }
  cat "$work/.time"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
