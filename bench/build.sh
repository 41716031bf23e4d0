#!/usr/bin/env bash
# `strata build` of a realistic Containerfile (Debian minbase from the local bench image, RUN
# and COPY steps over a context of 2,000 files) against `buildah bud --layers` of the same file
# and context, in one run, alternating: cold (a fresh store holding only the base image), cached
# (the same build again) and with one COPY source changed (the steps from that COPY on run).
# Both on overlay on the same disk, RUN without a network, buildah with its default isolation
# (runc). Also whether each tool's two cold builds gave the same image ID.
#   bench/build.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-3}
need time time
need buildah buildah
build_strata
debian_rootfs
base=$work/build-base
if [ ! -f "$base/index.json" ]; then
  rm -rf "$base"
  python3 "$repo/fixtures/mkimages.py" --layout "$base" none bench/debian:12 "$work/debian.tar" >/dev/null
fi

ctx=$work/build-context
rm -rf "$ctx"; mkdir -p "$ctx/src"
for d in $(seq 0 19); do
  mkdir -p "$ctx/src/m$d"
  for f in $(seq 0 99); do
    printf 'module %d file %d\n%s\n' "$d" "$f" "$(head -c 1500 /dev/urandom | base64 -w 76)" > "$ctx/src/m$d/f$f.txt"
  done
done
echo '{"name": "bench", "level": 3}' > "$ctx/config.json"
printf '*.log\n.git\n' > "$ctx/.dockerignore"
cat > "$ctx/Containerfile" <<'EOF'
FROM bench/debian:12
ENV APP_HOME=/srv/app LANG=C.UTF-8
RUN useradd -m -u 1000 app && mkdir -p /srv/app
WORKDIR /srv/app
COPY src/ ./src/
RUN find src -type f | sort | xargs sha256sum > manifest.txt && tar -czf src.tgz src
COPY config.json ./
RUN chown -R app:app /srv/app
USER app
CMD ["sh", "-c", "wc -l /srv/app/manifest.txt"]
EOF

sroot=$work/build-strata
broot=$work/build-buildah
B="buildah --root $broot/root --runroot $broot/run --storage-driver overlay"
fresh_strata() { rm -rf "$sroot"; $strata --root "$sroot" -q load "$base" >/dev/null; }
fresh_buildah() {
  $B rm --all >/dev/null 2>&1 || true; $B rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$broot"; $B pull -q "oci:$base:bench/debian:12" >/dev/null; $B tag "$($B images -q | head -1)" bench/debian:12
}
s_build="$strata --root $sroot build -q --network none -t bench/app $ctx"
b_build="$B bud --layers --pull-never --network none -q -t bench/app $ctx"

for f in cold cached changed; do : > "$work/b.strata.$f"; : > "$work/b.buildah.$f"; done
: > "$work/b.ids"
cp "$ctx/src/m7/f7.txt" "$work/b.f7"
# Each measurement starts with the disk clean (sync): a tool's syncfs must not pay for what the
# other one wrote before it.
timed() { sync; measure bash -c "$1"; }
for i in $(seq "$runs"); do
  cp "$work/b.f7" "$ctx/src/m7/f7.txt"  # the same context for every cold build
  fresh_strata; fresh_buildah
  drop_caches
  timed "$s_build" >> "$work/b.strata.cold"
  echo "strata $($strata --root "$sroot" images -q --no-trunc bench/app)" >> "$work/b.ids"
  drop_caches
  timed "$b_build" >> "$work/b.buildah.cold"
  echo "buildah $($B images -q --no-trunc bench/app)" >> "$work/b.ids"
  timed "$s_build" >> "$work/b.strata.cached"
  timed "$b_build" >> "$work/b.buildah.cached"
  echo "changed" >> "$ctx/src/m7/f7.txt"
  timed "$s_build" >> "$work/b.strata.changed"
  timed "$b_build" >> "$work/b.buildah.changed"
done
fresh_buildah >/dev/null 2>&1; $B rmi --all --force >/dev/null 2>&1 || true

echo "== build of a Debian minbase image: 4 RUN, 2 COPY (2,000 files, 3 MB); median of $runs, seconds"
printf "%-32s %10s %10s %16s\n" case strata buildah "strata/buildah"
for f in cold cached changed; do
  s=$(awk '{print $1}' "$work/b.strata.$f" | median); b=$(awk '{print $1}' "$work/b.buildah.$f" | median)
  label=$f; [ "$f" = changed ] && label="one COPY source changed"
  printf "%-32s %10.2f %10.2f %16.2f\n" "$label" "$s" "$b" "$(echo "$s $b" | awk '{print $1/$2}')"
done
echo "== image IDs of the cold builds (fresh stores, the same context, minutes apart)"
for t in strata buildah; do
  n=$(grep "^$t " "$work/b.ids" | sort -u | wc -l)
  echo "$t: $n distinct ID(s) in $runs cold builds"
done
