#!/usr/bin/env bash
# The tar-split journal's size against the unpacked layer, and the time of `strata save`
# against `tar -c` of the same tree, alternating, on the fixtures and a Debian minbase rootfs.
#   bench/journal-and-save.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-5}
need time time
build_strata
debian_rootfs
"$repo/fixtures/build.sh" >/dev/null
root=$work/store-save
rm -rf "$root"
$strata --root "$root" -q load "$repo/fixtures/out/oci-shared" >/dev/null
$strata --root "$root" -q import "$work/debian.tar" bench/debian >/dev/null

echo "== journal size (tar-split.zst) against the layer's unpacked size"
printf "%-14s %12s %12s %10s %8s\n" layer unpacked tar journal ratio
$strata --root "$root" layers --json | python3 -c '
import json, os, subprocess, sys
root = sys.argv[1]
for l in json.load(sys.stdin):
    info = json.loads(subprocess.run([sys.argv[2], "--root", root, "inspect", "--type", "layer", l["chainID"]],
                                     capture_output=True, check=True).stdout)[0]["Strata"]
    d = os.path.dirname(info["path"])
    du = int(subprocess.run(["du", "-sb", info["path"]], capture_output=True, text=True).stdout.split()[0])
    j = os.path.getsize(d + "/tar-split.zst")
    print("%-14s %12d %12d %10d %7.3f%%" % (l["chainID"][7:19], du, info["tarSize"], j, 100.0 * j / du))
' "$root" "$strata"

echo "== save (docker-archive, uncompressed) against tar -c of the same tree; $runs runs, alternating, warm cache"
diff=$($strata --root "$root" inspect -f '{{.Id}}' --type layer "$($strata --root "$root" inspect -f '{{json .Strata.layers}}' bench/debian | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["chainID"])')")
path=$($strata --root "$root" inspect -f '{{.Strata.path}}' --type layer "$diff")
out=${STRATA_BENCH_OUT:-/dev/shm/strata-save-out}
mkdir -p "$out"
: > "$work/t.strata"; : > "$work/t.tar"
for i in $(seq "$runs"); do
  rm -f "$out/s.tar" "$out/t.tar"
  measure $strata --root "$root" -q save bench/debian -o "$out/s.tar" | awk '{print $1}' >> "$work/t.strata"
  measure tar --numeric-owner --xattrs -C "$path" -cf "$out/t.tar" . | awk '{print $1}' >> "$work/t.tar"
done
s=$(median < "$work/t.strata"); t=$(median < "$work/t.tar")
echo "strata save: ${s}s   tar -c: ${t}s   ratio: $(python3 -c "print('%.2f' % ($s / $t if $t > 0 else 0))")x"
ls -l "$out/s.tar" "$out/t.tar" | awk '{print $5, $9}'
