#!/usr/bin/env bash
# Detached containers: `run -d` + `stop` of 20 containers (all started, then all stopped),
# beside podman's where installed; and `exec true` into a running container against `runc exec`
# into a runc container of the same image's bundle, median of N, alternating, in one run.
#   bench/detached.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-20}
build_strata
"$repo/fixtures/build.sh" >/dev/null
root=$work/store-detached
rm -rf "$root" "$work/bundle-d"
$strata --root "$root" -q load "$repo/fixtures/out/oci-gzip" >/dev/null
image=example.com/strata/busybox:gzip
ns() { date +%s%N; }

echo "== run -d of 20 containers, then stop -t 0 of all 20 (ms for the 20)"
s=$(ns)
for i in $(seq 20); do $strata --root "$root" run -d --name "d$i" "$image" sleep 600 >/dev/null; done
e=$(ns); start_ms=$(( (e - s) / 1000000 ))
s=$(ns)
for i in $(seq 20); do $strata --root "$root" stop -t 0 "d$i" >/dev/null; done
e=$(ns); stop_ms=$(( (e - s) / 1000000 ))
for i in $(seq 20); do $strata --root "$root" rm "d$i" >/dev/null; done
printf "strata run -d x20  %6d ms  (%d ms each)\nstrata stop x20    %6d ms  (%d ms each)\n" "$start_ms" $((start_ms / 20)) "$stop_ms" $((stop_ms / 20))
if command -v podman >/dev/null; then
  # podman with its own store, cgroupfs, no events, runc; its default ulimits are above this
  # machine's hard limits.
  P="podman --root $work/podman-root-d --runroot $work/podman-run-d --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"
  if $P load -q -i "$repo/fixtures/out/oci-archive.tar" >/dev/null 2>&1; then
    s=$(ns)
    for i in $(seq 20); do
      $P run -d --runtime runc --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --name "p$i" \
        example.com/strata/busybox:archive sleep 600 >/dev/null
    done
    e=$(ns); pstart=$(( (e - s) / 1000000 ))
    s=$(ns)
    for i in $(seq 20); do $P stop -t 0 "p$i" >/dev/null 2>&1; done
    e=$(ns); pstop=$(( (e - s) / 1000000 ))
    for i in $(seq 20); do $P rm -f "p$i" >/dev/null 2>&1; done
    printf "podman run -d x20  %6d ms  (strata/podman = %.2f)\npodman stop x20    %6d ms  (strata/podman = %.2f)\n" \
      "$pstart" "$(echo "$start_ms $pstart" | awk '{print $1/$2}')" "$pstop" "$(echo "$stop_ms $pstop" | awk '{print $1/$2}')"
  fi
fi

echo "== exec true into a running container; $runs runs, alternating (ms)"
$strata --root "$root" run -d --name target "$image" sleep 600 >/dev/null
$strata --root "$root" bundle "$image" "$work/bundle-d" >/dev/null
python3 - "$work/bundle-d/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["process"]["args"] = ["sleep", "600"]; c["process"]["terminal"] = False
json.dump(c, open(sys.argv[1], "w"))
PY
runc delete -f bench-exec >/dev/null 2>&1 || true
runc run -d -b "$work/bundle-d" bench-exec >/dev/null 2>&1 </dev/null
: > "$work/x.strata"; : > "$work/x.runc"
for i in $(seq "$runs"); do
  s=$(ns); $strata --root "$root" exec target true; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/x.strata"
  s=$(ns); runc exec bench-exec true; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/x.runc"
done
runc delete -f bench-exec >/dev/null 2>&1 || true
$strata --root "$root" rm -f target >/dev/null
s=$(median < "$work/x.strata"); r=$(median < "$work/x.runc")
printf "strata exec true  %7.1f ms\nrunc exec true    %7.1f ms   strata/runc = %.2f\n" "$(echo "$s" | awk '{print $1/1000}')" \
  "$(echo "$r" | awk '{print $1/1000}')" "$(echo "$s $r" | awk '{print $1/$2}')"
command -v podman >/dev/null || echo "(podman is not installed here: no podman lines)"
