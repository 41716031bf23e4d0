#!/usr/bin/env bash
# The whole test suite under AddressSanitizer: strata and the tests built with
# -sanitize=address into .build-asan, the tests pointed at that strata. Run on demand; a report
# from ASan fails the run. strata-init is linked static, which ASan cannot be: the normal
# build's copy is put next to the sanitized strata.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
fixtures/build.sh >/dev/null
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1}
swift build --product strata-init
asan=(--sanitize=address --scratch-path .build-asan)
swift build "${asan[@]}" --product strata
swift build "${asan[@]}" --product strataPackageTests
cp .build/debug/strata-init .build-asan/debug/strata-init
STRATA_BINARY=$PWD/.build-asan/debug/strata swift test --skip-build "${asan[@]}" "$@"
