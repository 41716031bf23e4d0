#!/usr/bin/env bash
# Containers: create (first and second container), mount and umount against chain depth (1 to
# 2,000 layers; past overlayfs's 500 the bottom is flattened), beside `runc --version`; and
# `strata commit` of 10,000 new files and of one 1 GB file on tmpfs against the floor (`tar -c |
# openssl dgst -sha256` of the upper dir; and with the `tar -x` strata's unpack corresponds to) and against
# `buildah commit` of the same change.
#   bench/mount-commit.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-10}
need time time
build_strata
root=$work/store-mount
rm -rf "$root"
img=$work/chains
mkdir -p "$img"
: > "$work/r"
for i in $(seq "$runs"); do s=$(date +%s%N); runc --version >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 )) >> "$work/r"; done
runc_ms=$(median < "$work/r" | awk '{print $1/1000}')
echo "== create, mount, umount (one strata process each), by chain depth; median of $runs"
echo "   past 499 layers the bottom ones are flattened into one cached layer: made by the first"
echo "   container's create, reused by the second's"
printf "%-7s %14s %14s %10s %10s %10s\n" layers "create 1st ms" "create 2nd ms" "mount ms" "umount ms" "runc ms"
for depth in 1 10 100 400 1000 2000; do
  if [ ! -d "$img/d$depth" ]; then
    for i in $(seq 0 $((depth - 1))); do
      mkdir -p "$img/t/$i"; echo "$i" > "$img/t/$i/f$i"
      tar -C "$img/t/$i" -cf "$img/t/$i.tar" "f$i"
    done
    python3 "$repo/fixtures/mkimages.py" --layout "$img/d$depth" none "chain:$depth" $(for i in $(seq 0 $((depth - 1))); do echo "$img/t/$i.tar"; done)
    rm -rf "$img/t"
  fi
  $strata --root "$root" -q load --max-layers 5000 "$img/d$depth" >/dev/null
  s=$(date +%s%N); id=$($strata --root "$root" create "chain:$depth" | tail -1); e=$(date +%s%N); first=$(( (e - s) / 1000 ))
  s=$(date +%s%N); id2=$($strata --root "$root" create "chain:$depth" | tail -1); e=$(date +%s%N); second=$(( (e - s) / 1000 ))
  : > "$work/m"; : > "$work/u"
  for i in $(seq "$runs"); do
    s=$(date +%s%N); $strata --root "$root" mount "$id" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 )) >> "$work/m"
    s=$(date +%s%N); $strata --root "$root" umount "$id"; e=$(date +%s%N); echo $(( (e - s) / 1000 )) >> "$work/u"
  done
  printf "%-7s %14.1f %14.1f %10.1f %10.1f %10.1f\n" "$depth" "$(echo "$first" | awk '{print $1/1000}')" "$(echo "$second" | awk '{print $1/1000}')" \
    "$(median < "$work/m" | awk '{print $1/1000}')" "$(median < "$work/u" | awk '{print $1/1000}')" "$runc_ms"
  $strata --root "$root" rm -f "$id" "$id2" >/dev/null
done
s=$(date +%s%N); $strata --root "$root" gc >/dev/null; e=$(date +%s%N)
echo "(gc removing the flattened layers: $(( (e - s) / 1000000 )) ms)"

# Commit on tmpfs, so that the disk's noise does not decide it: the store, the floor's output
# and buildah's storage all live there.
tmpfs=$work/tmpfs
mkdir -p "$tmpfs"; mountpoint -q "$tmpfs" || mount -t tmpfs -o size=8g tmpfs "$tmpfs"
trap 'umount -l "$tmpfs" 2>/dev/null || true' EXIT
croot=$tmpfs/store
"$repo/fixtures/build.sh" >/dev/null
$strata --root "$croot" -q load "$repo/fixtures/out/oci-gzip" >/dev/null

many_files() { mkdir -p "$1/data"; for d in $(seq 0 99); do mkdir -p "$1/data/$d"; for f in $(seq 0 99); do echo "file $d $f" > "$1/data/$d/$f"; done; done; }
one_gb() { mkdir -p "$1/data"; head -c 1G /dev/urandom > "$1/data/big"; }

for change in many_files one_gb; do
  echo "== commit of $change (tmpfs), median of 3"
  : > "$work/c.strata"; : > "$work/c.floor"; : > "$work/c.unpack"; : > "$work/c.buildah"
  for i in 1 2 3; do
    id=$($strata --root "$croot" create example.com/strata/busybox:gzip | tail -1)
    m=$($strata --root "$croot" mount "$id" | tail -1)
    $change "$m"
    upper=$croot/containers/$id/upper
    measure $strata --root "$croot" -q commit "$id" "bench/commit:$i" >> "$work/c.strata"
    # The floor: read the upper dir as a tar and hash it. And with the unpack strata also does
    # (the new layer becomes a layer directory of the store).
    measure bash -c "tar -C '$upper' -cf - . | openssl dgst -sha256 >/dev/null" >> "$work/c.floor"
    rm -rf "$tmpfs/floor-out"; mkdir -p "$tmpfs/floor-out"
    measure bash -c "tar -C '$upper' -cf - . | tee >(openssl dgst -sha256 >/dev/null) | tar -x -C '$tmpfs/floor-out'" >> "$work/c.unpack"
    rm -rf "$tmpfs/floor-out"
    $strata --root "$croot" rm -f "$id" >/dev/null
    $strata --root "$croot" -q rmi "bench/commit:$i" >/dev/null 2>&1
    if command -v buildah >/dev/null; then
      br=$tmpfs/buildah-root; rm -rf "$br" "$tmpfs/buildah-run"
      b="buildah --root $br --runroot $tmpfs/buildah-run --storage-driver overlay"
      c=$($b from -q "oci:$repo/fixtures/out/oci-gzip:example.com/strata/busybox:gzip" 2>/dev/null) || c=""
      if [ -n "$c" ]; then
        $change "$($b mount "$c")"
        measure $b commit -q "$c" "bench/commit:$i" >> "$work/c.buildah" || true
        $b rm "$c" >/dev/null 2>&1 || true
      fi
      rm -rf "$br" "$tmpfs/buildah-run"
    fi
  done
  s=$(awk '{print $1}' "$work/c.strata" | median)
  printf "%-22s %10s %10s %10s\n" tool seconds "strata is" "peak MiB"
  for t in strata floor unpack buildah; do
    [ -s "$work/c.$t" ] || continue
    m=$(awk '{print $1}' "$work/c.$t" | median)
    rss=$(awk '{print $2}' "$work/c.$t" | sort -n | tail -1)
    label=$t; [ $t = floor ] && label="tar|openssl sha256 (floor)"; [ $t = unpack ] && label="floor + tar -x"
    printf "%-22s %10s %10s %10s\n" "$label" "$m" "$(python3 -c "print('%.2fx' % ($s / $m) if $m > 0 else '-')")" "$((rss / 1024))"
  done
done
