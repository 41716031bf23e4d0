#!/usr/bin/env bash
# libFuzzer targets for the parsers of hostile input (docs/fuzzing.md).
#
#   scripts/fuzz.sh list                  the targets (Fuzz/Targets/*.swift)
#   scripts/fuzz.sh build [TARGET…]       build targets (all when none is named)
#   scripts/fuzz.sh TARGET SECONDS [-libFuzzer-option…]
#                                         build TARGET if needed and run it for SECONDS on its
#                                         seeds (Fuzz/corpus/TARGET, read only); what it finds
#                                         goes to .build-fuzz/corpus/TARGET, crashes to
#                                         .build-fuzz/crashes/TARGET (kept). Exits non-zero on a
#                                         crash, a hang or a sanitizer report.
#   scripts/fuzz.sh TARGET FILE…          run TARGET once on each FILE (to reproduce a crash)
#
# The package's modules are built into .build-fuzz with coverage instrumentation and
# AddressSanitizer (swift build --sanitize=fuzzer --sanitize=address); each target is then one
# Swift file compiled against them (@testable, so internal parsers can be called directly) and
# linked with all their objects and libFuzzer. One core: -workers=1 -jobs=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scratch=$root/.build-fuzz
out=$scratch/fuzz
targets() { (cd Fuzz/Targets && ls -- *.swift | sed 's/\.swift$//'); }

usage() { sed -n '2,17s/^# \{0,1\}//p' "$0" >&2; exit 2; }

# The modules, instrumented. StrataEngine depends on every library module of the package.
build_modules() {
  swift build --scratch-path "$scratch" --sanitize=fuzzer --sanitize=address --target StrataEngine >&2
}

# The search paths and Clang module maps SwiftPM compiled StrataEngine with (its imports are a
# superset of every target's), from the build description.
compile_flags() {
  python3 - "$scratch/debug.yaml" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
m = re.search(r'^  "C\.StrataEngine-[^"]*\.module":\n(?:    .*\n)*?    args: (\[.*\])$', text, re.M)
if not m:
    sys.exit("no StrataEngine module in " + sys.argv[1])
args, out, i = json.loads(m.group(1)), [], 0
while i < len(args):
    if args[i] in ("-I", "-Xcc", "-module-cache-path") and i + 1 < len(args):
        out += args[i:i + 2]; i += 2
    else:
        i += 1
print("\n".join(out))
PY
}

# Every object of the library modules and their dependencies: not the executables, tests or tools.
objects() {
  local dir
  dir=$(swift build --scratch-path "$scratch" --sanitize=fuzzer --sanitize=address --show-bin-path)
  find "$dir" -mindepth 2 -name '*.o' -path "$dir/*.build/*" \
    ! -path '*/strata.build/*' ! -path '*/strata-init.build/*' ! -path '*Tests.build/*' \
    ! -path '*/StrataTestSupport.build/*' ! -path '*/strataPackage*' ! -path '*-tool.build/*' | sort
}

build_target() {
  local t=$1 bin=$out/$1
  [ -f "Fuzz/Targets/$t.swift" ] || { echo "fuzz: no target $t (scripts/fuzz.sh list)" >&2; exit 2; }
  mkdir -p "$out"
  if [ -z "${modules_built:-}" ]; then build_modules; modules_built=1; fi
  local objs flags
  mapfile -t objs < <(objects)
  mapfile -t flags < <(compile_flags)
  # Relinked only when the target's file or a module object is newer than the binary.
  if [ -x "$bin" ] && [ -z "$(find "Fuzz/Targets/$t.swift" "${objs[@]}" -newer "$bin" -print -quit)" ]; then return; fi
  echo "fuzz: linking $t" >&2
  swiftc -sanitize=fuzzer,address -parse-as-library -module-name FuzzTarget -Onone -g \
    -target x86_64-unknown-linux-gnu -swift-version 6 "${flags[@]}" \
    "Fuzz/Targets/$t.swift" "${objs[@]}" -lsqlite3 -larchive -lseccomp -lz -o "$bin.tmp" \
    2> >(grep -v "Cannot export local symbol '__asan" >&2)
  mv "$bin.tmp" "$bin"
}

[ $# -ge 1 ] || usage
case $1 in
  list) targets; exit 0 ;;
  build)
    shift
    for t in ${@:-$(targets)}; do build_target "$t"; done
    exit 0 ;;
  -h|--help) usage ;;
esac

t=$1; shift
[ $# -ge 1 ] || usage
build_target "$t"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1}
# A Swift trap (a failed precondition, an overflow) is reported by libFuzzer: the Swift
# runtime's own backtracer reads the stack from another thread, which ASan takes for a
# stack-buffer-underflow and reports instead.
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}
if [ -f "$1" ]; then
  exec "$out/$t" "$@"
fi
seconds=$1; shift
corpus=$scratch/corpus/$t crashes=$scratch/crashes/$t logs=$scratch/logs
mkdir -p "$corpus" "$crashes" "$logs"
# The first directory is where libFuzzer writes what it finds; the committed seeds are only
# read. With -jobs=1 -workers=1 the fuzzing runs in one child process that logs to
# fuzz-0.log in the current directory (libFuzzer prints it when the job ends): kept as
# logs/TARGET.log. A crash, a
# timeout or a sanitizer report exits non-zero and leaves the input in $crashes.
log=$logs/$t.log
status=0
(cd "$logs" && rm -f fuzz-0.log &&
  "$out/$t" -workers=1 -jobs=1 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$crashes/" "$@" "$corpus" "$root/Fuzz/corpus/$t") || status=$?
mv "$logs/fuzz-0.log" "$log" 2>/dev/null || true
if [ "$status" -ne 0 ] || grep -q 'Test unit written' "$log"; then
  echo "fuzz: $t failed (exit $status); full log $log; inputs kept in $crashes:" >&2
  ls -t "$crashes" | head -5 >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
