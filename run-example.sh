#!/usr/bin/env bash
# The main job on the built-in example: build strata, build the example images (without
# strata), load them into a fresh store, list the images and show the layer chain; then create
# a container, change it, commit the change as a new image, and run a command in that image;
# build an image from a two-stage Containerfile on it (again: all from the cache); serve it
# from a container on a network, by name and through a published port; then push that image to
# a registry started on loopback, pull it into a second store, run it, and build the same
# Containerfile there: the same image ID.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
swift build -c release
fixtures/build.sh >/dev/null
strata=.build/release/strata
export STRATA_ROOT=${STRATA_ROOT:-$(mktemp -d /tmp/strata-example.XXXXXX)}
echo "store: $STRATA_ROOT"
set -x
$strata load fixtures/out/docker-legacy.tar
$strata load fixtures/out/oci-shared
$strata import fixtures/out/rootfs.tar.gz example/rootfs --change 'CMD ["/bin/sh"]'
$strata images
$strata layers --tree
$strata history strata/busybox:legacy
id=$($strata create --name example strata/busybox:legacy | tail -1)
rootfs=$($strata mount example | tail -1)
echo "written in a container" > "$rootfs/etc/greeting"
rm "$rootfs/etc/motd" 2>/dev/null || true
$strata diff example
$strata commit example example/greeting:1 --message "add /etc/greeting"
$strata umount example
$strata rm example
$strata run --rm --memory 64m --pids-limit 64 example/greeting:1 sh -c 'cat /etc/greeting; echo "pid $$ on $(hostname)"; ls /'
$strata layers --tree
$strata check

# A build: two stages on the committed image; the second build takes every step from the cache.
set +x
context=$(mktemp -d /tmp/strata-build-context.XXXXXX)
mkdir -p "$context/site"
echo "built from a Containerfile" > "$context/site/index.html"
cat > "$context/Containerfile" <<'EOF'
FROM example/greeting:1 AS content
COPY site/ /www/
RUN cat /etc/greeting >> /www/index.html

FROM example/greeting:1
COPY --from=content /www /www
EXPOSE 80
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
EOF
set -x
built=$($strata build --network none -t example/site:1 "$context")
$strata build --network none -t example/site:1 "$context"
$strata run --rm example/site:1 cat /www/index.html
$strata history example/site:1

# Networks: a web server on a network of its own, found by name from another container there,
# and published on the host's loopback.
set +x
webport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
set -x
$strata network create example-net
$strata run -d --name web --network example-net -p "127.0.0.1:$webport:80" example/greeting:1 \
  sh -c 'mkdir -p /www && cat /etc/greeting > /www/index.html && exec httpd -f -p 80 -h /www'
$strata run --rm --network example-net example/greeting:1 \
  sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://web/ && exit 0; sleep 0.3; done; exit 1'
curl -fsS "http://127.0.0.1:$webport/"
$strata port web
$strata rm -f web
$strata network rm example-net

# A registry on loopback (Debian's docker-registry), stopped when the example ends.
set +x
registry_dir=$(mktemp -d /tmp/strata-registry.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$registry_dir/data" "$port" > "$registry_dir/config.yml"
docker-registry serve "$registry_dir/config.yml" 2>"$registry_dir/log" &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
set -x
$strata push example/greeting:1 "127.0.0.1:$port/example/greeting:1"
STRATA_ROOT="$STRATA_ROOT-pulled" $strata pull "127.0.0.1:$port/example/greeting:1"
STRATA_ROOT="$STRATA_ROOT-pulled" $strata run --rm "127.0.0.1:$port/example/greeting:1" cat /etc/greeting
STRATA_ROOT="$STRATA_ROOT-pulled" $strata layers --tree
# The same Containerfile and context in the second store (its base named as here): the same
# image, byte for byte.
STRATA_ROOT="$STRATA_ROOT-pulled" $strata tag "127.0.0.1:$port/example/greeting:1" example/greeting:1
rebuilt=$(STRATA_ROOT="$STRATA_ROOT-pulled" $strata build -q --network none "$context")
[ "$rebuilt" = "$built" ] || { echo "the second store built $rebuilt, not $built"; exit 1; }
echo "the same image ID in both stores: $built"
