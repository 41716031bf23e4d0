#!/usr/bin/env bash
# Containers: mount+umount time against chain depth (1, 10, 100, 400 layers), and `strata
# commit` of an upper dir with 10,000 changed files against the floor (tar -c of the upper
# piped through sha256sum into tar -x) and against `buildah commit` of the same change.
#   bench/mount-commit.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-10}
need time time
build_strata
root=$work/store-mount
rm -rf "$root"
img=$work/chains
mkdir -p "$img"
echo "== mount + umount (one 'strata mount' and one 'strata umount' process each), median of $runs"
printf "%-8s %12s %12s\n" layers "mount ms" "umount ms"
for depth in 1 10 100 400; do
  if [ ! -d "$img/d$depth" ]; then
    for i in $(seq 0 $((depth - 1))); do
      mkdir -p "$img/t/$i"; echo "$i" > "$img/t/$i/f$i"
      tar -C "$img/t/$i" -cf "$img/t/$i.tar" "f$i"
    done
    python3 "$repo/fixtures/mkimages.py" --layout "$img/d$depth" none "chain:$depth" $(for i in $(seq 0 $((depth - 1))); do echo "$img/t/$i.tar"; done)
    rm -rf "$img/t"
  fi
  $strata --root "$root" -q load "$img/d$depth" >/dev/null
  id=$($strata --root "$root" create "chain:$depth" | tail -1)
  : > "$work/m"; : > "$work/u"
  for i in $(seq "$runs"); do
    s=$(date +%s%N); $strata --root "$root" mount "$id" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 )) >> "$work/m"
    s=$(date +%s%N); $strata --root "$root" umount "$id"; e=$(date +%s%N); echo $(( (e - s) / 1000 )) >> "$work/u"
  done
  printf "%-8s %12.1f %12.1f\n" "$depth" "$(median < "$work/m" | awk '{print $1/1000}')" "$(median < "$work/u" | awk '{print $1/1000}')"
  $strata --root "$root" rm -f "$id" >/dev/null
done
s=$(date +%s%N); $strata --root "$root" images >/dev/null; e=$(date +%s%N)
echo "(a strata process that only lists images: $(( (e - s) / 1000000 )) ms)"

echo "== commit of 10,000 changed files, median of 3"
"$repo/fixtures/build.sh" >/dev/null
$strata --root "$root" -q load "$repo/fixtures/out/oci-gzip" >/dev/null
: > "$work/c.strata"; : > "$work/c.floor"; : > "$work/c.buildah"
for i in 1 2 3; do
  id=$($strata --root "$root" create example.com/strata/busybox:gzip | tail -1)
  m=$($strata --root "$root" mount "$id" | tail -1)
  mkdir -p "$m/data"
  for d in $(seq 0 99); do mkdir -p "$m/data/$d"; for f in $(seq 0 99); do echo "file $d $f" > "$m/data/$d/$f"; done; done
  upper=$root/containers/$id/upper
  # strata syncs the new layer before recording it (syncfs): start every tool with nothing
  # else dirty, so that no one pays for another's writes.
  sync
  measure $strata --root "$root" -q commit "$id" "bench/commit:$i" | awk '{print $1, $2}' >> "$work/c.strata"
  rm -rf "$work/floor-out"; mkdir -p "$work/floor-out"; sync
  measure bash -c "tar -C '$upper' -cf - . | tee >(sha256sum >/dev/null) | tar -x -C '$work/floor-out'" >> "$work/c.floor"
  $strata --root "$root" rm -f "$id" >/dev/null
  if command -v buildah >/dev/null; then
    br=$work/buildah-root; rm -rf "$br" "$work/buildah-run"
    b="buildah --root $br --runroot $work/buildah-run --storage-driver overlay"
    c=$($b from -q "oci:$repo/fixtures/out/oci-gzip:example.com/strata/busybox:gzip" 2>/dev/null) || c=""
    if [ -n "$c" ]; then
      bm=$($b mount "$c")
      mkdir -p "$bm/data"
      for d in $(seq 0 99); do mkdir -p "$bm/data/$d"; for f in $(seq 0 99); do echo "file $d $f" > "$bm/data/$d/$f"; done; done
      sync
      measure $b commit -q "$c" "bench/commit:$i" >> "$work/c.buildah" || true
      $b rm "$c" >/dev/null 2>&1 || true
    fi
  fi
done
s=$(awk '{print $1}' "$work/c.strata" | median)
printf "%-10s %10s %10s %10s\n" tool seconds "vs strata" "peak MiB"
for t in strata floor buildah; do
  [ -s "$work/c.$t" ] || continue
  m=$(awk '{print $1}' "$work/c.$t" | median)
  rss=$(awk '{print $2}' "$work/c.$t" | sort -n | tail -1)
  printf "%-10s %10s %10s %10s\n" "$t" "$m" "$(python3 -c "print('%.2fx' % ($m / $s))")" "$((rss / 1024))"
done
