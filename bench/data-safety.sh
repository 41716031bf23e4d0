#!/usr/bin/env bash
# Data safety under load, and what rebuilding the database costs:
#   1. `check --repair` racing loads and pulls, round after round: a load or pull that exits 0
#      must leave its image (losses must be 0);
#   2. `check` racing a mixed workload: every check must be clean (false problems must be 0);
#   3. a store of 1,000 layers with its database deleted: the rebuild (`check --repair`) against
#      the floor of reading the files it reads (every layer.json, images.json).
#
#   bench/data-safety.sh [rounds] [seconds]     (defaults 200, 60)
source "$(dirname "$0")/common.sh"
rounds=${1:-200}
seconds=${2:-60}
need docker-registry docker-registry
need skopeo skopeo
build_strata
fixtures=$repo/fixtures/out
[ -d "$fixtures/oci-gzip" ] || (cd "$repo" && fixtures/build.sh >/dev/null)
dir=$work/data-safety
rm -rf "$dir"; mkdir -p "$dir"
s() { "$strata" --root "$dir/store" "$@"; }

start_registry "$dir/registry"
trap 'kill $registry_pid 2>/dev/null || true' EXIT
skopeo copy -q --dest-tls-verify=false "oci:$fixtures/oci-gzip" "docker://$registry_host/bench/busybox:1"

echo "== 1. check --repair beside loads and pulls: $rounds rounds"
losses=0 failures=0 repairs_failed=0
for i in $(seq 1 "$rounds"); do
  s rmi -f round:a round:b >/dev/null 2>&1 || true
  s -q load "$fixtures/docker-25.tar" --tag round:a >/dev/null 2>"$dir/load.err" & load=$!
  s -q pull --tls-verify=false "$registry_host/bench/busybox:1" >/dev/null 2>"$dir/pull.err" && s tag "$registry_host/bench/busybox:1" round:b & pull=$!
  sleep "0.0$((i % 8))"
  s check --repair >/dev/null 2>&1 || repairs_failed=$((repairs_failed + 1))
  wait $load && l=0 || l=$?
  wait $pull && p=0 || p=$?
  [ $l -eq 0 ] && { s inspect --type image round:a >/dev/null 2>&1 || losses=$((losses + 1)); }
  [ $p -eq 0 ] && { s inspect --type image round:b >/dev/null 2>&1 || losses=$((losses + 1)); }
  [ $l -ne 0 ] || [ $p -ne 0 ] && failures=$((failures + 1))
  s rmi -f "$registry_host/bench/busybox:1" >/dev/null 2>&1 || true
done
echo "rounds $rounds, images lost after a load or pull exited 0: $losses, rounds with a failed load or pull: $failures, failed repairs: $repairs_failed"
s check >/dev/null && echo "final check: clean"

echo "== 2. check beside a mixed workload for ${seconds}s"
stop=$dir/stop; rm -f "$stop"
worker() {
  local w=$1 src=$2
  while [ ! -e "$stop" ]; do
    s -q load "$src" --tag "w$w:a" >/dev/null 2>&1
    s tag "w$w:a" "w$w:b" >/dev/null 2>&1
    s create --name "c$w" "w$w:b" >/dev/null 2>&1
    s mount "c$w" >/dev/null 2>&1
    s rm -f "c$w" >/dev/null 2>&1
    s rmi -f "w$w:a" "w$w:b" >/dev/null 2>&1
  done
}
worker 0 "$fixtures/oci-gzip" & w0=$!
worker 1 "$fixtures/oci-zstd" & w1=$!
worker 2 "$fixtures/docker-25.tar" & w2=$!
checks=0 false=0
end=$((SECONDS + seconds))
while [ $SECONDS -lt $end ]; do
  s check >"$dir/check.out" 2>&1 || { false=$((false + 1)); grep problem "$dir/check.out" | head -3; }
  checks=$((checks + 1))
done
touch "$stop"; wait $w0 $w1 $w2
echo "checks $checks, checks that reported a problem: $false"

echo "== 3. rebuild of a store of 1,000 layers"
python3 - "$dir/deep" <<'EOF'
import hashlib, io, json, os, sys, tarfile
out = sys.argv[1]; os.makedirs(out + "/blobs/sha256", exist_ok=True)
def put(b):
    d = hashlib.sha256(b).hexdigest(); open(f"{out}/blobs/sha256/{d}", "wb").write(b); return d, len(b)
layers = []
for i in range(1000):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = f"layer {i}\n".encode(); info = tarfile.TarInfo(f"f{i}"); info.size = len(data); info.mtime = 0
        t.addfile(info, io.BytesIO(data))
    layers.append(put(buf.getvalue()))
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d, _ in layers]}}).encode()
cd, cs = put(cfg)
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cd, "size": cs},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + d, "size": n} for d, n in layers]}).encode()
md, ms = put(m)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + md,
           "size": ms, "annotations": {"org.opencontainers.image.ref.name": "deep:1000"}}]}, open(out + "/index.json", "w"))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
EOF
rm -rf "$dir/store"
s -q load --max-layers 1000 "$dir/deep" >/dev/null
s images > "$dir/before.txt"; s layers > "$dir/layers-before.txt"
for i in 1 2 3; do
  rm -f "$dir/store"/strata.db*
  drop_caches
  floor=$(measure sh -c "cat '$dir/store'/layers/*/layer.json '$dir/store/images.json' >/dev/null" | cut -d' ' -f1)
  drop_caches
  out=$(s check --repair 2>&1 | grep 'rebuilt the database')
  rebuild=$(echo "$out" | sed -E 's/.* in ([0-9.]+) s$/\1/')
  echo "rebuild $rebuild s (reading the files it reads, cold: $floor s)"
done
s images | diff -q - "$dir/before.txt" && s layers | diff -q - "$dir/layers-before.txt" && echo "same images and layers after the rebuild"
