#!/usr/bin/env bash
# Writes the manual pages (one per command) into OUTDIR (default: man/) from the debug build's
# description of its commands and docs/man-examples.md. Needs no static or release build.
#   scripts/man.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-man}
bin=${STRATA_BINARY:-.build/debug/strata}
[ -x "$bin" ] || swift build --product strata >&2
mkdir -p "$out"
rm -f "$out"/strata*.1
help=$(mktemp)
trap 'rm -f "$help"' EXIT
"$bin" --experimental-dump-help > "$help"
python3 scripts/man.py "$help" docs/man-examples.md "$out"
