# Shared by the bench scripts: a debootstrap'd Debian minbase rootfs and timing helpers.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}
mkdir -p "$work"
# Benchmarks measure the release build with the Swift runtime linked statically (as a shipped
# binary would be): a dynamic Foundation costs about 5 ms of start-up on every command.
# STRATA_BENCH_BINARY names another build to measure (it is then not built here).
strata=${STRATA_BENCH_BINARY:-$repo/.build-static/release/strata}

# Containers run without a network (podman's --network none in the comparisons) unless a
# script says otherwise: bench/network.sh measures the bridge.
export STRATA_NETWORK=${STRATA_NETWORK:-none}

need() { command -v "$1" >/dev/null || { apt-get install -y -qq "$2" >/dev/null; }; }

build_strata() {
  [ -n "${STRATA_BENCH_BINARY:-}" ] && return 0
  (cd "$repo" && swift build -c release --static-swift-stdlib --scratch-path .build-static >/dev/null)
}

# The Debian mirror this machine's apt uses (deb822 .sources or the one-line format).
debian_mirror() {
  local m
  m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v security | head -1)
  [ -n "$m" ] || m=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}

# The Debian 12 minbase rootfs (about 210 MB, 6,800 files), made once.
debian_rootfs() {
  if [ ! -f "$work/rootfs/etc/debian_version" ]; then
    need debootstrap debootstrap
    debootstrap --variant=minbase bookworm "$work/rootfs" "$(debian_mirror)" >"$work/debootstrap.log" 2>&1
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

# Starts docker-registry on a free loopback port with its storage in $1; sets registry_pid and
# registry_host.
start_registry() {
  local dir=$1 port
  mkdir -p "$dir/data"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$dir/data" "$port" > "$dir/config.yml"
  docker-registry serve "$dir/config.yml" 2>"$dir/log" &
  registry_pid=$!
  registry_host=127.0.0.1:$port
  for _ in $(seq 50); do curl -fs "http://$registry_host/v2/" >/dev/null && return 0; sleep 0.1; done
  echo "docker-registry did not start" >&2; return 1
}
