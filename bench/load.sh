#!/usr/bin/env bash
# strata load against the floor and the peers, alternating, warm page cache:
#   floor:      sha256 of the blob | gunzip | sha256 of the tar | tar -x, in one pipe
#   floor+sync: the same, then syncfs of the target (strata syncs each layer before recording it)
#   umoci:      umoci unpack of the same OCI layout
#   podman:     podman load of the same image (oci-archive) into a private store
# Inputs: a Debian minbase rootfs as one layer and as four layers, gzip and uncompressed.
#   bench/load.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-5}
need time time
need umoci umoci
build_strata
debian_rootfs
img=$work/images
mkdir -p "$img"
if [ ! -f "$img/multi.done" ]; then
  r=$work/rootfs
  tar --numeric-owner --xattrs -C "$r" -cf "$img/l1.tar" ./usr/lib
  tar --numeric-owner --xattrs -C "$r" --exclude=./usr/lib -cf "$img/l2.tar" ./usr
  tar --numeric-owner --xattrs -C "$r" -cf "$img/l3.tar" ./var ./etc
  tar --numeric-owner --xattrs -C "$r" --exclude=./usr --exclude=./var --exclude=./etc -cf "$img/l4.tar" .
  for c in gzip none; do
    rm -rf "$img/single-$c" "$img/multi-$c"
    python3 "$repo/fixtures/mkimages.py" --layout "$img/single-$c" $c bench/single:$c "$work/debian.tar"
    python3 "$repo/fixtures/mkimages.py" --layout "$img/multi-$c" $c bench/multi:$c "$img"/l[1-4].tar
    skopeo --insecure-policy copy -q "oci:$img/single-$c:bench/single:$c" "oci-archive:$img/single-$c.tar:bench/single:$c"
    skopeo --insecure-policy copy -q "oci:$img/multi-$c:bench/multi:$c" "oci-archive:$img/multi-$c.tar:bench/multi:$c"
  done
  touch "$img/multi.done"
fi
out=$work/out
have_podman=$(command -v podman >/dev/null && echo 1 || echo 0)

floor() { # layout, with-sync
  local layout=$1 sync=$2
  rm -rf "$out"; mkdir -p "$out"
  local blobs manifest
  manifest=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1]+"/index.json")); print(i["manifests"][0]["digest"][7:])' "$layout")
  blobs=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/blobs/sha256/"+sys.argv[2])); print(" ".join(l["digest"][7:] for l in m["layers"]))' "$layout" "$manifest")
  for b in $blobs; do
    mkdir -p "$out/$b"
    if [ "$(head -c2 "$layout/blobs/sha256/$b" | od -An -tx1 | tr -d ' ')" = "1f8b" ]; then
      tee >(openssl dgst -sha256 >/dev/null) < "$layout/blobs/sha256/$b" | gunzip | tee >(openssl dgst -sha256 >/dev/null) | tar -x --numeric-owner -C "$out/$b"
    else
      tee >(openssl dgst -sha256 >/dev/null) < "$layout/blobs/sha256/$b" | tar -x --numeric-owner -C "$out/$b"
    fi
  done
  [ "$sync" = 1 ] && sync -f "$out"
  return 0
}
export -f floor
export out

row() { printf "%-22s %-12s %8s %10s %8s\n" "$@"; }
for name in single-gzip single-none multi-gzip multi-none; do
  layout=$img/$name
  : > "$work/r.strata"; : > "$work/r.floor"; : > "$work/r.floorsync"; : > "$work/r.umoci"; : > "$work/r.podman"
  for i in $(seq "$runs"); do
    rm -rf "$work/st"
    measure $strata --root "$work/st" -q load "$layout" >> "$work/r.strata"
    measure bash -c "floor $layout 0" >> "$work/r.floor"
    measure bash -c "floor $layout 1" >> "$work/r.floorsync"
    rm -rf "$work/umoci-bundle"
    measure umoci unpack --image "$layout:bench/${name%%-*}:${name##*-}" "$work/umoci-bundle" >> "$work/r.umoci"
    if [ "$have_podman" = 1 ]; then
      rm -rf "$work/podman-root" "$work/podman-run"
      measure podman --root "$work/podman-root" --runroot "$work/podman-run" --storage-driver overlay load -q -i "$layout.tar" >> "$work/r.podman" || have_podman=0
    fi
  done
  echo "== $name ($runs runs, median seconds, peak RSS of the slowest-memory run)"
  s=$(awk '{print $1}' "$work/r.strata" | median)
  row tool seconds "vs strata" "peak MiB" ""
  for t in strata floor floorsync umoci podman; do
    [ -s "$work/r.$t" ] || continue
    m=$(awk '{print $1}' "$work/r.$t" | median)
    rss=$(awk '{print $2}' "$work/r.$t" | sort -n | tail -1)
    row "$t" "$m" "$(python3 -c "print('%.2fx' % ($m / $s))")" "$((rss / 1024))" ""
  done
done
