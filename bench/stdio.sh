#!/usr/bin/env bash
# Throughput of a container's stdio: `strata run --rm -i IMAGE cat` of a 1 GiB file into
# /dev/null (strata copies stdin into a pipe and the pipe out, with splice), against `runc run`
# of the same image's bundle, which hands its own stdin and stdout to the process (the file and
# /dev/null themselves: no copy at all, the physical floor), and `cat` on the host. Median of N
# runs, alternating. Also the same through a pipe on strata's side (`| cat >/dev/null`).
#   bench/stdio.sh [runs] [MiB]
source "$(dirname "$0")/common.sh"
runs=${1:-5}
mib=${2:-1024}
build_strata
"$repo/fixtures/build.sh" >/dev/null
root=$work/store-stdio
rm -rf "$root" "$work/bundle-stdio"
$strata --root "$root" -q load "$repo/fixtures/out/oci-gzip" >/dev/null
$strata --root "$root" bundle example.com/strata/busybox:gzip "$work/bundle-stdio" >/dev/null
python3 - "$work/bundle-stdio/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["process"]["args"] = ["cat"]; c["process"]["terminal"] = False
json.dump(c, open(sys.argv[1], "w"))
PY
data=$work/stdio-$mib.bin
[ -f "$data" ] && [ "$(stat -c %s "$data")" = $((mib << 20)) ] || head -c $((mib << 20)) /dev/urandom > "$data"
cat "$data" > /dev/null  # in the page cache for every contender
for t in strata strata-pipe runc host-cat; do : > "$work/s.$t"; done
ns() { date +%s%N; }
for i in $(seq "$runs"); do
  s=$(ns); $strata --root "$root" run --rm -i example.com/strata/busybox:gzip cat < "$data" > /dev/null; e=$(ns)
  echo $(( (e - s) / 1000 )) >> "$work/s.strata"
  s=$(ns); $strata --root "$root" run --rm -i example.com/strata/busybox:gzip cat < "$data" | cat > /dev/null; e=$(ns)
  echo $(( (e - s) / 1000 )) >> "$work/s.strata-pipe"
  s=$(ns); runc run -b "$work/bundle-stdio" "bench-stdio-$$-$i" < "$data" > /dev/null; e=$(ns)
  echo $(( (e - s) / 1000 )) >> "$work/s.runc"
  s=$(ns); cat < "$data" > /dev/null; e=$(ns)
  echo $(( (e - s) / 1000 )) >> "$work/s.host-cat"
done
base=$(median < "$work/s.strata")
printf "%-12s %10s %10s %10s\n" tool "ms" "MiB/s" "vs strata"
for t in strata strata-pipe runc host-cat; do
  m=$(median < "$work/s.$t")
  printf "%-12s %10.1f %10.0f %10s\n" "$t" "$(echo "$m / 1000" | bc -l)" "$(echo "$mib / ($m / 1000000)" | bc -l)" \
    "$(python3 -c "print('%.2fx' % ($m / $base))")"
done
