#!/usr/bin/env bash
# Installs what is missing, builds the fixtures and runs every test (root is needed for
# device nodes, ownership and xattrs in the unpack tests).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
fixtures/build.sh >/dev/null
swift build --build-tests
swift test --skip-build "$@"
