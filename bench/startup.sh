#!/usr/bin/env bash
# The fixed cost of a command: `strata --version` and `strata images` on an empty store, beside
# `runc --version` (the goal), a static Swift "hello" (the floor of any Swift binary here) and
# /bin/true (the floor of any exec), each the mean of N runs under `perf stat`, in one run.
#   bench/startup.sh [runs]
source "$(dirname "$0")/common.sh"
runs=${1:-200}
need perf linux-perf
build_strata
bin=$work/strata-stripped
strip -o "$bin" "$strata"
root=$work/store-empty
rm -rf "$root"; "$bin" --root "$root" images >/dev/null
hello=$work/hello
if [ ! -x "$hello" ]; then
  echo 'print("hello")' > "$work/hello.swift"
  swiftc -O -static-stdlib "$work/hello.swift" -o "$hello" 2>/dev/null && strip "$hello"
fi
mean_ms() { perf stat -r "$runs" "$@" 2>&1 >/dev/null | awk '/elapsed/ {printf "%.2f", $1 * 1000}'; }
echo "strata binary (stripped): $(( $(stat -c %s "$bin") / 1048576 )) MiB; mean of $runs runs each"
printf "%-34s %8s %10s\n" command ms "vs runc"
r=$(mean_ms runc --version)
for c in "strata --version" "strata images (empty store)" "runc --version" "swift hello (static)" "/bin/true"; do
  case $c in
    "strata --version") m=$(mean_ms "$bin" --version) ;;
    "strata images (empty store)") m=$(mean_ms "$bin" --root "$root" images) ;;
    "runc --version") m=$r ;;
    "swift hello (static)") m=$(mean_ms "$hello") ;;
    "/bin/true") m=$(mean_ms /bin/true) ;;
  esac
  printf "%-34s %8s %10s\n" "$c" "$m" "$(python3 -c "print('%.2fx' % ($m / $r))")"
done
