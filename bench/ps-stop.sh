#!/usr/bin/env bash
# `ps` as containers pile up (0, 20, 50, 100 running; median of 15), and `stop -t 1` of 20
# and of 100 containers that ignore SIGTERM, in one command each; beside podman's (private
# store, runc, cgroupfs) where installed, in the same run.
#   bench/ps-stop.sh
source "$(dirname "$0")/common.sh"
build_strata
"$repo/fixtures/build.sh" >/dev/null
root=$work/store-ps
rm -rf "$root"
S="$strata --root $root"
$S -q load "$repo/fixtures/out/oci-gzip" >/dev/null
image=example.com/strata/busybox:gzip
have_podman=0
if command -v podman >/dev/null; then
  P="podman --root $work/podman-root-ps --runroot $work/podman-run-ps --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"
  $P load -q -i "$repo/fixtures/out/oci-archive.tar" >/dev/null 2>&1 && have_podman=1
  $P rm -af -t 0 >/dev/null 2>&1 || true
fi
pimage=example.com/strata/busybox:archive
ignore="trap '' TERM; while :; do sleep 1; done"
ns() { date +%s%N; }
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_ms() { local s e; s=$(ns); "$@" >/dev/null 2>&1; e=$(ns); echo $(( (e - s) / 1000 )); }

echo "== ps (ms, median of 15)"
printf "%-8s %10s %10s %10s\n" running strata podman "ratio"
n=0
for want in 0 20 50 100; do
  while [ $n -lt $want ]; do
    n=$((n + 1))
    $S run -d --name "p$n" "$image" sh -c "$ignore" >/dev/null
    [ "$have_podman" = 1 ] && $P run -d --runtime runc --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --name "p$n" "$pimage" sh -c "$ignore" >/dev/null
  done
  s=$(for i in $(seq 15); do time_ms $S ps; done | med)
  p=-
  [ "$have_podman" = 1 ] && p=$(for i in $(seq 15); do time_ms $P ps; done | med)
  printf "%-8s %10.1f %10s %10s\n" "$want" "$(echo "$s / 1000" | bc -l)" "$([ "$p" = - ] && echo - || printf %.1f "$(echo "$p / 1000" | bc -l)")" \
    "$([ "$p" = - ] && echo - || printf %.2fx "$(echo "$s / $p" | bc -l)")"
done

# What each running container's monitor costs (100 running): strata-monitor against conmon.
mem() {  # pids -> "avg RSS kB, avg PSS kB, total PSS MB"
  local n=0 rss=0 pss=0 p
  for p in "$@"; do
    [ -r "/proc/$p/smaps_rollup" ] || continue
    rss=$((rss + $(awk '/^Rss:/{print $2}' "/proc/$p/smaps_rollup"))); pss=$((pss + $(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup"))); n=$((n + 1))
  done
  [ $n -gt 0 ] && printf "%3d monitors: RSS %5d kB, PSS %5d kB each; %5.1f MB PSS in all" $n $((rss / n)) $((pss / n)) "$(echo "$pss / 1024" | bc -l)"
}
echo "== monitors of 100 running containers"
echo "strata  $(mem $(pgrep -f "strata-monitor .*$root"))"
[ "$have_podman" = 1 ] && echo "podman  $(mem $(pgrep -f "conmon .*$work/podman-run-ps"))"

echo "== stop -t 1 of containers that ignore SIGTERM, one command (s)"
for count in 20 100; do
  names=$(seq -f "p%g" 1 $count)
  # Running again (ps left 100 running; the 20 case stops the first 20 of them).
  for c in $names; do $S start "$c" >/dev/null 2>&1 || true; done
  s=$(ns); $S stop -t 1 $names >/dev/null; e=$(ns)
  line=$(printf "%-4s strata %6.2f" "$count" "$(echo "($e - $s) / 1000000000" | bc -l)")
  if [ "$have_podman" = 1 ]; then
    for c in $names; do $P start "$c" >/dev/null 2>&1 || true; done
    s=$(ns); $P stop -t 1 $names >/dev/null 2>&1; e=$(ns)
    line+=$(printf "   podman %6.2f" "$(echo "($e - $s) / 1000000000" | bc -l)")
  fi
  echo "$line"
done
$S rm -f $(seq -f "p%g" 1 100) >/dev/null
[ "$have_podman" = 1 ] && $P rm -af -t 0 >/dev/null 2>&1 || true
