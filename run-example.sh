#!/usr/bin/env bash
# The main job on the built-in example: build strata, build the example images (without
# strata), load them into a fresh store, list the images and show the layer chain.
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
$strata layers
