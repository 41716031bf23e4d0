#!/usr/bin/env bash
# `strata run --rm IMAGE true`, median of N, against `runc run` of the same image's bundle and
# `podman run --runtime runc --rm` of the same image (private store), in one run, alternating.
# Also strata with --init (strata-init copied into a sealed memfd) and without seccomp, to show
# what each costs.
# podman gets explicit nofile/nproc ulimits: its defaults are above this machine's hard limits.
#   bench/run.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-20}
build_strata
"$repo/fixtures/build.sh" >/dev/null
root=$work/store-run
rm -rf "$root" "$work/bundle"
$strata --root "$root" -q load "$repo/fixtures/out/oci-gzip" >/dev/null
$strata --root "$root" bundle example.com/strata/busybox:gzip "$work/bundle" >/dev/null
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["process"]["args"] = ["true"]; json.dump(c, open(sys.argv[1], "w"))
PY
have_podman=0
if command -v podman >/dev/null; then
  P="podman --root $work/podman-root --runroot $work/podman-run --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"
  $P load -q -i "$repo/fixtures/out/oci-archive.tar" >/dev/null 2>&1 && have_podman=1
fi
: > "$work/r.strata"; : > "$work/r.runc"; : > "$work/r.podman"; : > "$work/r.strata-init"; : > "$work/r.unconfined"
ns() { date +%s%N; }
for i in $(seq "$runs"); do
  s=$(ns); $strata --root "$root" run --rm example.com/strata/busybox:gzip true; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/r.strata"
  s=$(ns); $strata --root "$root" run --rm --init example.com/strata/busybox:gzip true; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/r.strata-init"
  s=$(ns); $strata --root "$root" run --rm --security-opt seccomp=unconfined example.com/strata/busybox:gzip true; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/r.unconfined"
  s=$(ns); runc run -b "$work/bundle" "bench-$$-$i" >/dev/null; e=$(ns); echo $(( (e - s) / 1000 )) >> "$work/r.runc"
  if [ "$have_podman" = 1 ]; then
    s=$(ns); $P run --runtime runc --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 example.com/strata/busybox:archive true >/dev/null 2>&1 || have_podman=0; e=$(ns)
    [ "$have_podman" = 1 ] && echo $(( (e - s) / 1000 )) >> "$work/r.podman"
  fi
done
s=$(median < "$work/r.strata")
printf "%-12s %10s %10s\n" tool "ms" "vs strata"
for t in strata strata-init unconfined runc podman; do
  [ -s "$work/r.$t" ] || continue
  m=$(median < "$work/r.$t")
  printf "%-12s %10.1f %10s\n" "$t" "$(echo "$m / 1000" | bc -l)" "$(python3 -c "print('%.2fx' % ($m / $s))")"
done
