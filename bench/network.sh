#!/usr/bin/env bash
# Bridge networking beside podman's (the same netavark and aardvark-dns, rootful, runc), in one
# run on one machine:
#   run:        `run --rm IMAGE true` on the default bridge, against strata --network none and
#               podman on its default bridge; median of RUNS, interleaved;
#   throughput: a 256 MiB file from busybox httpd (on a tmpfs) through a port published on
#               127.0.0.1, fetched by curl; median of 5 MB/s each; strata's container also
#               straight at its address (no DNAT: the bridge's own limit);
#   rate:       `ab -n REQS -c 4` of a small page through the published port: requests/s.
#   bench/network.sh [runs] [reqs]     (defaults 10 and 3000)
source "$(dirname "$0")/common.sh"
export STRATA_NETWORK=bridge
runs=${1:-10}
reqs=${2:-3000}
build_strata
need curl curl
need ab apache2-utils
"$repo/fixtures/build.sh" >/dev/null
root=$work/store-network
S="$strata --root $root"
have_podman=0
P="podman --root $work/podman-root --runroot $work/podman-run --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"
cleanup() {
  set +e
  $S rm -f sweb >/dev/null 2>&1
  [ "$have_podman" = 1 ] && $P rm -f pweb >/dev/null 2>&1
}
trap cleanup EXIT
rm -rf "$root"
$S -q load "$repo/fixtures/out/oci-gzip" >/dev/null
if command -v podman >/dev/null && $P load -q -i "$repo/fixtures/out/oci-archive.tar" >/dev/null 2>&1; then have_podman=1; fi
image=example.com/strata/busybox:gzip pimage=example.com/strata/busybox:archive
ulimits="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
ns() { date +%s%N; }
pct() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.2f' % (a / b) if b else '-')" "$1" "$2"; }

# 1. run --rm true
: > "$work/n.bridge"; : > "$work/n.none"; : > "$work/n.podman"; : > "$work/n.podman-none"
$S run --rm "$image" true; $S run --rm --network none "$image" true
[ "$have_podman" = 1 ] && { $P run --runtime runc --rm $ulimits "$pimage" true >/dev/null 2>&1 || have_podman=0; }
for i in $(seq "$runs"); do
  s=$(ns); $S run --rm "$image" true; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/n.bridge"
  s=$(ns); $S run --rm --network none "$image" true; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/n.none"
  if [ "$have_podman" = 1 ]; then
    s=$(ns); $P run --runtime runc --rm $ulimits "$pimage" true >/dev/null 2>&1; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/n.podman"
    s=$(ns); $P run --runtime runc --rm --network none $ulimits "$pimage" true >/dev/null 2>&1; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/n.podman-none"
  fi
done
bridge=$(median < "$work/n.bridge")
echo "== run --rm busybox true, median of $runs (ms)"
printf "%-28s %8s %14s\n" "" ms "vs strata bridge"
for t in bridge none podman podman-none; do
  [ -s "$work/n.$t" ] || continue
  m=$(median < "$work/n.$t")
  label=$t; case $t in bridge) label="strata, default bridge";; none) label="strata, --network none";;
                        podman) label="podman, default bridge";; podman-none) label="podman, --network none";; esac
  printf "%-28s %8.1f %14s\n" "$label" "$(echo "$m / 1000" | bc -l)" "$(pct "$m" "$bridge")x"
done

# 2 and 3: a web server behind a published port.
serve='mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count=256 2>/dev/null && echo small > /www/small && exec httpd -f -p 80 -h /www'
sport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$S run -d --name sweb --tmpfs /www:size=300m -p "127.0.0.1:$sport:80" "$image" sh -c "$serve" >/dev/null
sip=$($S exec sweb sh -c "ip -o -4 addr show eth0 | awk '{print \$4}'" | cut -d/ -f1)
if [ "$have_podman" = 1 ]; then
  pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  $P run -d --runtime runc $ulimits --name pweb --tmpfs /www:size=300m -p "127.0.0.1:$pport:80" "$pimage" sh -c "$serve" >/dev/null
fi
wait_up() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
wait_up "http://127.0.0.1:$sport/small"
[ "$have_podman" = 1 ] && wait_up "http://127.0.0.1:$pport/small"
mbs() { curl -s -o /dev/null -w '%{speed_download}\n' "$1" | awk '{printf "%.0f\n", $1 / 1048576}'; }
: > "$work/t.s"; : > "$work/t.direct"; : > "$work/t.p"
for i in 1 2 3 4 5; do
  mbs "http://127.0.0.1:$sport/big" >> "$work/t.s"
  mbs "http://$sip/big" >> "$work/t.direct"
  [ "$have_podman" = 1 ] && mbs "http://127.0.0.1:$pport/big" >> "$work/t.p"
done
ts=$(median < "$work/t.s")
echo "== 256 MiB through the published port 127.0.0.1:P, median of 5 (MB/s)"
printf "%-36s %8s %12s\n" "" MB/s "vs strata"
printf "%-36s %8s %12s\n" "strata (DNAT)" "$ts" "1.00x"
printf "%-36s %8s %12s\n" "strata, the container's own address" "$(median < "$work/t.direct")" "$(pct "$(median < "$work/t.direct")" "$ts")x"
[ -s "$work/t.p" ] && printf "%-36s %8s %12s\n" "podman (DNAT)" "$(median < "$work/t.p")" "$(pct "$(median < "$work/t.p")" "$ts")x"

rate() { ab -q -n "$reqs" -c 4 "$1" 2>/dev/null | awk '/Requests per second/ {printf "%.0f\n", $4}'; }
echo "== connections: ab -n $reqs -c 4 of a small page (requests/s)"
rs=$(rate "http://127.0.0.1:$sport/small")
printf "%-36s %8s %12s\n" "strata (DNAT)" "$rs" "1.00x"
printf "%-36s %8s\n" "strata, the container's own address" "$(rate "http://$sip/small")"
if [ "$have_podman" = 1 ]; then rp=$(rate "http://127.0.0.1:$pport/small"); printf "%-36s %8s %12s\n" "podman (DNAT)" "$rp" "$(pct "$rp" "$rs")x"; fi
