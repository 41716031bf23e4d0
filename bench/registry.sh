#!/usr/bin/env bash
# Pull and push of the Debian minbase image (one gzip layer) over a registry on loopback:
# strata pull against `skopeo copy` + `umoci unpack` (and `podman pull` where installed);
# strata push against `skopeo copy` from an OCI layout (and `podman push`). Median of N runs,
# alternating, with peak memory. Then one pull each through a proxy that injects faults.
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
# podman in a storage of its own, emptied before each pull: a layer it already holds (from an
# earlier run, at another port) would be skipped, not pulled.
pod="podman --root $work/podman-root-reg --runroot $work/podman-run-reg --storage-driver overlay"
: > "$work/p.strata"; : > "$work/p.peer"; : > "$work/p.podman"
for i in $(seq "$runs"); do
  rm -rf "$work/pull-store" "$work/pull-oci" "$work/pull-bundle"
  measure $strata --root "$work/pull-store" -q pull "$ref" >> "$work/p.strata"
  measure sh -c "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/pull-oci:x && umoci unpack --image $work/pull-oci:x $work/pull-bundle" >> "$work/p.peer"
  if command -v podman >/dev/null; then
    $pod rmi -af >/dev/null 2>&1 || true
    measure $pod pull -q --tls-verify=false "$ref" >> "$work/p.podman"
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

echo "== pull through Tests/registry-fakes/fault_proxy.py in front of the same registry: 500 on every 4th request,"
echo "   the connection closed on every 9th, the first answer to each blob silent for 60 s (strata's stall limit: 5 s)"
proxy_dir=$work/proxy
for who in strata skopeo; do
  rm -rf "$proxy_dir" "$work/fault-store" "$work/fault-oci"; mkdir -p "$proxy_dir"
  python3 "$repo/Tests/registry-fakes/fault_proxy.py" "$proxy_dir/port" "${ref%%/*}" 500=4 close=9 stall=60 2>"$proxy_dir/log" &
  proxy_pid=$!
  for _ in $(seq 50); do [ -s "$proxy_dir/port" ] && break; sleep 0.1; done
  faulty=127.0.0.1:$(cat "$proxy_dir/port")/bench/debian:1
  if [ "$who" = strata ]; then
    r=$(STRATA_REGISTRY_STALL_SECONDS=5 measure $strata --root "$work/fault-store" -q pull "$faulty" 2>/dev/null) || r="failed"
  else
    r=$(measure skopeo copy -q --src-tls-verify=false "docker://$faulty" "oci:$work/fault-oci:x" 2>/dev/null) || r="failed"
  fi
  kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true
  printf "%-7s %s (%d faults, %d stalls injected)\n" "$who" "$([ "$r" = failed ] && echo failed || echo "${r%% *} s")" "$(grep -c '^fault' "$proxy_dir/log" || true)" "$(grep -c '^stall' "$proxy_dir/log" || true)"
done

echo "== push into a registry started fresh for each push (nothing to skip or mount), against the floor (gzip of the same tar)"
: > "$work/u.strata"; : > "$work/u.peer"; : > "$work/u.floor"; : > "$work/u.podman"
# podman pushes the image its pull above stored (uncompressed in its storage, as strata's).
havepodman=false
command -v podman >/dev/null && $pod image exists "$ref" 2>/dev/null && havepodman=true
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
  if $havepodman; then
    start_registry "$work/reg-q"; pid_q=$registry_pid; host_q=$registry_host
    measure $pod push -q --tls-verify=false "$ref" "docker://$host_q/bench/debian:1" >> "$work/u.podman"
    kill "$pid_q"; rm -rf "$work/reg-q"
  fi
done
s=$(awk '{print $1}' "$work/u.strata" | median); p=$(awk '{print $1}' "$work/u.peer" | median); f=$(awk '{print $1}' "$work/u.floor" | median)
printf "strata push (rebuilds, gzips, uploads)  %6.2f s  peak %6d KiB   strata/floor = %.2f\n" "$s" "$(awk '{print $2}' "$work/u.strata" | sort -n | tail -1)" \
  "$(echo "$s $f" | awk '{print $1/$2}')"
printf "gzip -c of the same tar (floor)         %6.2f s\n" "$f"
printf "skopeo copy (sends a gzip made before)  %6.2f s  peak %6d KiB   strata/skopeo = %.2f\n" "$p" "$(awk '{print $2}' "$work/u.peer" | sort -n | tail -1)" \
  "$(echo "$s $p" | awk '{print $1/$2}')"
if [ -s "$work/u.podman" ]; then
  q=$(awk '{print $1}' "$work/u.podman" | median)
  printf "podman push (from its storage)          %6.2f s  peak %6d KiB   strata/podman = %.2f\n" "$q" "$(awk '{print $2}' "$work/u.podman" | sort -n | tail -1)" \
    "$(echo "$s $q" | awk '{print $1/$2}')"
fi
echo "(skopeo uploads the layout's gzip blob as it is; strata rebuilds the tar from the store and gzips it on the way: its floor is gzip)"
