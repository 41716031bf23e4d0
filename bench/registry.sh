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

echo "== push to a fresh repository each run (nothing to skip or mount)"
: > "$work/u.strata"; : > "$work/u.peer"
for i in $(seq "$runs"); do
  rm -rf "$work/push-store"
  $strata --root "$work/push-store" -q import "$work/debian.tar" bench/debian:1 >/dev/null
  measure $strata --root "$work/push-store" -q push bench/debian:1 "$registry_host/push-strata-$i/debian:1" >> "$work/u.strata"
  measure skopeo copy -q --dest-tls-verify=false "oci:$seed/layout" "docker://$registry_host/push-skopeo-$i/debian:1" >> "$work/u.peer"
done
s=$(awk '{print $1}' "$work/u.strata" | median); p=$(awk '{print $1}' "$work/u.peer" | median)
printf "strata push (compresses)    %6.2f s  peak %6d KiB\n" "$s" "$(awk '{print $2}' "$work/u.strata" | sort -n | tail -1)"
printf "skopeo copy (precompressed) %6.2f s  peak %6d KiB   strata/skopeo = %.2f\n" "$p" "$(awk '{print $2}' "$work/u.peer" | sort -n | tail -1)" \
  "$(echo "$s $p" | awk '{print $1/$2}')"
echo "(skopeo sends the layout's gzip blob as it is; strata rebuilds the tar and gzips it on the way)"
