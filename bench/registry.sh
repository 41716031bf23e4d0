#!/usr/bin/env bash
# Pull and push of the Debian minbase image (one gzip layer) over a registry on loopback:
# strata pull against `skopeo copy` + `umoci unpack` (and `podman pull` where installed);
# strata push against `skopeo copy` from an OCI layout (and `podman push`). Median of N runs,
# alternating, with peak memory.
#   bench/registry.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-3}
need time time
need docker-registry docker-registry
build_strata
debian_rootfs
seed=$work/registry-seed
rm -rf "$seed"
$strata --root "$seed/store" -q import "$work/debian.tar" bench/debian:1 >/dev/null
$strata --root "$seed/store" -q save bench/debian:1 --format oci-dir --compress gzip -o "$seed/layout"
start_registry "$work/registry"
trap 'kill $registry_pid 2>/dev/null || true' EXIT
skopeo copy -q --dest-tls-verify=false "oci:$seed/layout" "docker://$registry_host/bench/debian:1"
ref=$registry_host/bench/debian:1
echo "== pull $ref ($(du -sh "$seed/layout/blobs" | cut -f1) compressed); $runs runs, alternating"
: > "$work/p.strata"; : > "$work/p.peer"; : > "$work/p.podman"
for i in $(seq "$runs"); do
  rm -rf "$work/pull-store" "$work/pull-oci" "$work/pull-bundle"
  measure $strata --root "$work/pull-store" -q pull "$ref" >> "$work/p.strata"
  measure sh -c "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/pull-oci:x && umoci unpack --image $work/pull-oci:x $work/pull-bundle" >> "$work/p.peer"
  if command -v podman >/dev/null; then
    podman rmi -f "$ref" >/dev/null 2>&1 || true
    measure podman pull -q --tls-verify=false "$ref" >> "$work/p.podman"
  fi
done
s=$(awk '{print $1}' "$work/p.strata" | median); p=$(awk '{print $1}' "$work/p.peer" | median)
printf "strata pull                 %6.2f s  peak %6d KiB\n" "$s" "$(awk '{print $2}' "$work/p.strata" | sort -n | tail -1)"
printf "skopeo copy + umoci unpack  %6.2f s  peak %6d KiB   strata/peer = %.2f\n" "$p" "$(awk '{print $2}' "$work/p.peer" | sort -n | tail -1)" \
  "$(echo "$s $p" | awk '{print $1/$2}')"
if [ -s "$work/p.podman" ]; then
  q=$(awk '{print $1}' "$work/p.podman" | median)
  printf "podman pull                 %6.2f s   strata/podman = %.2f\n" "$q" "$(echo "$s $q" | awk '{print $1/$2}')"
fi

echo "== push into a registry started fresh for each push (nothing to skip or mount), against the floor (gzip of the same tar)"
: > "$work/u.strata"; : > "$work/u.peer"; : > "$work/u.floor"
for i in $(seq "$runs"); do
  rm -rf "$work/push-store" "$work/reg-s" "$work/reg-p"
  $strata --root "$work/push-store" -q import "$work/debian.tar" bench/debian:1 >/dev/null
  start_registry "$work/reg-s"; pid_s=$registry_pid; host_s=$registry_host
  measure $strata --root "$work/push-store" -q push bench/debian:1 "$host_s/bench/debian:1" >> "$work/u.strata"
  kill "$pid_s"
  start_registry "$work/reg-p"; pid_p=$registry_pid; host_p=$registry_host
  measure skopeo copy -q --dest-tls-verify=false "oci:$seed/layout" "docker://$host_p/bench/debian:1" >> "$work/u.peer"
  kill "$pid_p"
  measure sh -c "gzip -c $work/debian.tar > /dev/null" >> "$work/u.floor"
done
s=$(awk '{print $1}' "$work/u.strata" | median); p=$(awk '{print $1}' "$work/u.peer" | median); f=$(awk '{print $1}' "$work/u.floor" | median)
printf "strata push (rebuilds, gzips, uploads)  %6.2f s  peak %6d KiB   strata/floor = %.2f\n" "$s" "$(awk '{print $2}' "$work/u.strata" | sort -n | tail -1)" \
  "$(echo "$s $f" | awk '{print $1/$2}')"
printf "gzip -c of the same tar (floor)         %6.2f s\n" "$f"
printf "skopeo copy (sends a gzip made before)  %6.2f s  peak %6d KiB   strata/skopeo = %.2f\n" "$p" "$(awk '{print $2}' "$work/u.peer" | sort -n | tail -1)" \
  "$(echo "$s $p" | awk '{print $1/$2}')"
echo "(skopeo uploads the layout's gzip blob as it is; strata rebuilds the tar from the store and gzips it on the way: its floor is gzip)"
