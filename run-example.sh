#!/usr/bin/env bash
# The main job on the built-in example: build strata, build the example images (without
# strata), load them into a fresh store, list the images and show the layer chain; then create
# a container, change it, commit the change as a new image, and run a command in that image.
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
id=$($strata create strata/busybox:legacy --name example | tail -1)
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
