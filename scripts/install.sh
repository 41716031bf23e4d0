#!/usr/bin/env bash
# Installs strata: a release build with the Swift runtime linked in statically, stripped, into
# PREFIX/bin (default /usr/local), with strata-init (pid 1 for --init) into
# PREFIX/libexec/strata. The binary needs nothing from the Swift toolchain at run time; it links
# libarchive, libseccomp and SQLite from the system (Debian: libarchive13, libseccomp2,
# libsqlite3-0).
#   scripts/install.sh [PREFIX]
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
command -v swift >/dev/null || export PATH=/opt/swift/usr/bin:$PATH
scripts/setup.sh
swift build -c release --static-swift-stdlib --scratch-path .build-static --product strata >/dev/null
swift build -c release --static-swift-stdlib --scratch-path .build-static --product strata-init >/dev/null
install -d "$prefix/bin" "$prefix/libexec/strata"
install -m 0755 -s .build-static/release/strata "$prefix/bin/strata"
install -m 0755 -s .build-static/release/strata-init "$prefix/libexec/strata/strata-init"
size=$(stat -c %s "$prefix/bin/strata")
echo "installed $prefix/bin/strata ($((size / 1024 / 1024)) MiB, stripped) and $prefix/libexec/strata/strata-init"
"$prefix/bin/strata" --help >/dev/null
ldd "$prefix/bin/strata" | grep -q libswift && { echo "strata still links the Swift runtime dynamically" >&2; exit 1; } || true
