#!/usr/bin/env bash
# `strata cp` of the Debian minbase /usr (about 5,000 files, 180 MB) out of a stopped container
# and back into it, against the floor (`tar -c | tar -x` of the same tree on the same disk,
# two processes on two cores) and against `podman cp` of the same image's container.
#   bench/cp.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-3}
need time time
need podman podman
build_strata
debian_rootfs
root=$work/store-cp
rm -rf "$root" "$work/cp-out"
$strata --root "$root" -q import "$work/debian.tar" bench/debian:cp >/dev/null
$strata --root "$root" create --name cp bench/debian:cp true >/dev/null
merged=$($strata --root "$root" mount cp)
files=$(find "$merged/usr" | wc -l)
size=$(du -sm "$merged/usr" | cut -f1)
$strata --root "$root" umount cp >/dev/null

podroot=$work/podman-cp
# podman leaves its storage's overlay directory bind-mounted on itself.
clean_podman() {
  { grep -o " $podroot[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$podroot"
}
clean_podman
pod() { podman --root "$podroot/storage" --runroot "$podroot/run" --storage-driver overlay "$@"; }
pod import -q "$work/debian.tar" bench/debian:cp >/dev/null
pod create -q --name cp bench/debian:cp true >/dev/null

run() {  # label, command...: the median seconds of $runs runs, the output removed before each
  local label=$1; shift
  : > "$work/r"
  for _ in $(seq "$runs"); do
    rm -rf "$work/cp-out"; mkdir -p "$work/cp-out"; sync
    local s e
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    echo $(( (e - s) / 1000000 )) >> "$work/r"
  done
  local ms; ms=$(median < "$work/r")
  printf "%-34s %8s ms\n" "$label" "$ms"
  echo "$ms" > "$work/r.$label"
}

echo "== cp of /usr ($files entries, $size MB), median of $runs"
mnt=$($strata --root "$root" mount cp)
run floor-out bash -c "tar -C '$mnt/usr' -cf - . | tar -C '$work/cp-out' -xf -"
$strata --root "$root" umount cp >/dev/null
run strata-out "$strata" --root "$root" cp cp:/usr "$work/cp-out/usr"
run podman-out pod cp cp:/usr "$work/cp-out/usr"
# In: the tree copied above, into the container's / by its own name (podman cp renaming a
# directory with hardlinks in it fails: its links name the old name).
rm -rf "$work/cp-src"
mnt=$($strata --root "$root" mount cp); cp -a "$mnt/usr" "$work/cp-src"; $strata --root "$root" umount cp >/dev/null
strata_in() { "$strata" --root "$root" cp "$work/cp-src" "cp:/"; }
podman_in() { pod cp "$work/cp-src" "cp:/"; }
run strata-in strata_in
run podman-in podman_in
awk -v f="$(cat "$work/r.floor-out")" -v s="$(cat "$work/r.strata-out")" -v p="$(cat "$work/r.podman-out")" \
    -v si="$(cat "$work/r.strata-in")" -v pi="$(cat "$work/r.podman-in")" \
    'BEGIN { printf "strata out / floor %.2fx, strata out / podman %.2fx, strata in / podman %.2fx\n", s/f, s/p, si/pi }'
pod rm -f cp >/dev/null
clean_podman
rm -rf "$work/cp-out" "$work/cp-src"
