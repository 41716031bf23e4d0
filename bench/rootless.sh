#!/usr/bin/env bash
# Rootless strata beside root strata and rootless podman, on one machine in one run:
#   run:    `run --rm strata/busybox:v25 true` (no network: rootless strata's default,
#           STRATA_NETWORK=none for root's, podman's --network none), median of RUNS, the three
#           interleaved;
#   load:   the busybox docker-archive (fixtures/out/docker-25.tar) into an empty store each
#           time (strata load / podman load -i), median of N;
#   commit: `commit` alone of a stopped container in which 1,000 small files were written
#           (strata: through `strata mount`, inside `strata unshare` when rootless; podman: by
#           the container's own command), median of N.
# Rootless strata and podman run as a user made for this (strata-bench, with a subordinate
# id range), through setpriv and a clean environment; root strata uses a private --root.
# Podman (installed if missing) uses the kernel's overlay, as rootless strata does here, and
# cgroupfs; where it cannot run rootless, the script says why and prints strata's figures.
# Everything lives in one temporary directory, removed at the end with the user's processes.
#   bench/rootless.sh [runs] [n]        (defaults 20 and 7; STRATA=/path/to/strata for
#                                        another build; default .build/release, else .build/debug)
set -euo pipefail
export STRATA_NETWORK=none
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
runs=${1:-20}
n=${2:-7}
[ "$(id -u)" = 0 ] || { echo "run as root (it makes a user and a root store)" >&2; exit 1; }

need() { command -v "$1" >/dev/null || apt-get install -y -qq "$2" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq "$2" >/dev/null; }; }
ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
need setpriv util-linux
need newuidmap uidmap
need fuse-overlayfs fuse-overlayfs
need python3 python3-minimal

# The binaries, copied where the bench user can read them (the build tree may change meanwhile).
src=${STRATA:-$repo/.build/release/strata}
if [ -z "${STRATA:-}" ] && [ ! -x "$src" ]; then src=$repo/.build/debug/strata; fi
[ -x "$src" ] || { echo "no strata binary at $src (build it, or set STRATA)" >&2; exit 1; }
srcdir=$(dirname "$src")

T=$(mktemp -d /var/tmp/strata-rootless.XXXXXX)
chmod 755 "$T"
user=${STRATA_BENCH_USER:-strata-bench}
made_user=0
cleanup() {
  set +e
  if [ -n "${uid:-}" ]; then pkill -KILL -U "$uid" 2>/dev/null; sleep 0.3; fi
  [ -d "$T/rootstore" ] && "$T/bin/strata" --root "$T/rootstore" rm -f $("$T/bin/strata" --root "$T/rootstore" ps -aq 2>/dev/null) >/dev/null 2>&1
  findmnt -rn -o TARGET | grep "^$T/" | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$T"
  [ "$made_user" = 1 ] && userdel -r "$user" >/dev/null 2>&1
}
trap cleanup EXIT

mkdir -p "$T/bin"
cp "$src" "$srcdir/strata-monitor" "$srcdir/strata-init" "$T/bin/"
chmod 755 "$T/bin" "$T/bin"/*
B=$T/bin/strata
archive=$repo/fixtures/out/docker-25.tar
if [ ! -f "$archive" ]; then
  need skopeo skopeo; need zstd zstd; [ -x /bin/busybox ] || need busybox busybox-static
  "$repo/fixtures/build.sh" "$T/fixtures" >/dev/null
  archive=$T/fixtures/docker-25.tar
fi
cp "$archive" "$T/busybox.tar"; chmod 644 "$T/busybox.tar"
archive=$T/busybox.tar
image=strata/busybox:v25
[ -e /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ] && chmod 666 /dev/fuse

# The bench user and its subordinate ids.
if ! id "$user" >/dev/null 2>&1; then useradd -m -s /bin/sh "$user"; made_user=1; fi
uid=$(id -u "$user"); gid=$(id -g "$user")
# (useradd usually gives a new user a range; else 65,536 ids from 500000, or past every range
# already given, so that no two users share ids.)
if ! grep -q "^$user:" /etc/subuid 2>/dev/null || ! grep -q "^$user:" /etc/subgid 2>/dev/null; then
  first=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: 'BEGIN {m = 500000} $2 + $3 > m {m = $2 + $3} END {print m}')
  grep -q "^$user:" /etc/subuid 2>/dev/null || usermod --add-subuids "$first-$((first + 65535))" "$user"
  grep -q "^$user:" /etc/subgid 2>/dev/null || usermod --add-subgids "$first-$((first + 65535))" "$user"
fi
install -d -m 700 -o "$uid" -g "$gid" "$T/home" "$T/data" "$T/run" "$T/loads"
# As the bench user, in a clean environment; the store is $XDG_DATA_HOME/strata (podman's,
# $XDG_DATA_HOME/containers); DATA= overrides XDG_DATA_HOME (a fresh store for load).
U() { setpriv --reuid "$uid" --regid "$gid" --clear-groups env -i HOME="$T/home" PATH=/usr/bin:/bin \
        XDG_DATA_HOME="${DATA:-$T/data}" XDG_RUNTIME_DIR="$T/run" "$@"; }
SR() { U "$B" "$@"; }                                     # rootless strata
S0() { env -i STRATA_NETWORK=none HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin "$B" --root "${ROOTSTORE:-$T/rootstore}" "$@"; }  # root strata
# Rootless podman on the kernel's overlay (as rootless strata here), else its default driver;
# its default runtime, else runc (crun refuses hybrid cgroup hierarchies).
pdriver=(--storage-driver overlay); pruntime=()
P() { U podman "${pdriver[@]}" --cgroup-manager cgroupfs --events-backend none "${pruntime[@]}" "$@"; }

# Every command's standard error is kept, per tool, and shown (deduplicated) at the end.
: > "$T/err.sr"; : > "$T/err.s0"; : > "$T/err.p"
# Runs a command, prints its wall time in microseconds; its stderr goes to $T/err.TAG.
timed() { local tag=$1 s e; shift; s=$(ns); "$@" >/dev/null 2>>"$T/err.$tag" || { echo "FAILED: $*" >&2; tail -5 "$T/err.$tag" >&2; return 1; }; e=$(ns); echo $(( (e - s) / 1000 )); }
quiet() { local tag=$1; shift; "$@" 2>>"$T/err.$tag"; }
# A podman step failed midway: its figures so far are dropped, strata's go on.
podman_failed() { have_podman=0; why_podman="podman $1 failed: $(tail -3 "$T/err.p" | tr '\n' ' ')"; : > "$T/run.p"; : > "$T/load.p"; : > "$T/commit.p"; }

# podman: installed if missing; if it cannot run rootless here, say why and go on without it.
have_podman=1; why_podman=""
if ! command -v podman >/dev/null; then
  apt-get install -y -qq podman >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq podman >/dev/null 2>&1; } \
    || { have_podman=0; why_podman="apt-get install podman failed"; }
fi
if [ "$have_podman" = 1 ] && ! P info >/dev/null 2>"$T/podman-info.err"; then
  pdriver=()
  if ! P info >/dev/null 2>>"$T/podman-info.err"; then
    have_podman=0; why_podman="podman info as $user failed: $(tail -3 "$T/podman-info.err" | tr '\n' ' ')"
  fi
fi

# The stores: the image loaded once into each (the run and commit stores).
quiet sr SR -q load "$archive" >/dev/null
quiet s0 S0 -q load "$archive" >/dev/null
pimage=$image
if [ "$have_podman" = 1 ]; then
  if out=$(P load -q -i "$archive" 2>>"$T/err.p"); then
    pimage=$(echo "$out" | awk '/Loaded image/ {print $NF}' | tail -1); pimage=${pimage:-$image}
  else
    have_podman=0; why_podman="podman load failed: $(tail -3 "$T/err.p" | tr '\n' ' ')"
  fi
fi
if [ "$have_podman" = 1 ] && ! P run --rm --network none "$pimage" true >/dev/null 2>"$T/podman-run.err"; then
  pruntime=(--runtime runc)
  if ! P run --rm --network none "$pimage" true >/dev/null 2>>"$T/podman-run.err"; then
    have_podman=0; why_podman="rootless podman run failed: $(tail -3 "$T/podman-run.err" | tr '\n' ' ')"
  else
    echo "(podman's default runtime failed here, so runc: $(head -1 "$T/podman-run.err"))"
  fi
fi

echo "strata: $src ($(case $src in *debug*) echo debug build ;; *) echo release build ;; esac)); kernel $(uname -r); $(nproc) cores"
sinfo() { sed -n 's/^Driver: \([^ ]*\).*/driver \1/p; s/^Cgroups: \(.\{1,40\}\).*/cgroups \1/p; s/^Rootless: /rootless: /p' | paste -sd ';' | sed 's/;/; /g'; }
echo "strata rootless: $(SR info 2>/dev/null | sinfo)"
echo "strata root:     $(S0 info 2>/dev/null | sinfo)"
if [ "$have_podman" = 1 ]; then
  echo "podman rootless: $(podman --version | awk '{print $3}'), $(P info --format 'driver {{.Store.GraphDriverName}}; runtime {{.Host.OCIRuntime.Name}}; cgroups {{.Host.CgroupsVersion}} ({{.Host.CgroupManager}})' 2>/dev/null); image $pimage"
else
  echo "podman rootless: not measured: $why_podman"
fi

# 1. run --rm IMAGE true, interleaved, after two warm-up runs each.
: > "$T/run.sr"; : > "$T/run.s0"; : > "$T/run.p"
for i in 1 2; do
  quiet sr SR run --rm "$image" true >/dev/null; quiet s0 S0 run --rm "$image" true >/dev/null
  if [ "$have_podman" = 1 ]; then quiet p P run --rm --network none "$pimage" true >/dev/null || true; fi
done
for i in $(seq "$runs"); do
  timed sr SR run --rm "$image" true >> "$T/run.sr"
  timed s0 S0 run --rm "$image" true >> "$T/run.s0"
  if [ "$have_podman" = 1 ]; then timed p P run --rm --network none "$pimage" true >> "$T/run.p" || podman_failed run; fi
done

# 2. load into an empty store, each run a new one.
: > "$T/load.sr"; : > "$T/load.s0"; : > "$T/load.p"
for i in $(seq "$n"); do
  d=$T/loads/$i; install -d -m 700 -o "$uid" -g "$gid" "$d" "$d/data" "$d/proot" "$d/prun"
  DATA=$d/data timed sr SR -q load "$archive" >> "$T/load.sr"
  ROOTSTORE=$d/root timed s0 S0 -q load "$archive" >> "$T/load.s0"
  if [ "$have_podman" = 1 ]; then timed p P --root "$d/proot" --runroot "$d/prun" load -q -i "$archive" >> "$T/load.p" || podman_failed load; fi
  rm -rf "$d"
done

# 3. commit of 1,000 small files (10 directories of 100) written into a stopped container.
writer='d=0; while [ $d -lt 10 ]; do mkdir -p "$R/data/$d"; f=0; while [ $f -lt 100 ]; do echo "file $d $f" > "$R/data/$d/$f"; f=$((f + 1)); done; d=$((d + 1)); done'
: > "$T/commit.sr"; : > "$T/commit.s0"; : > "$T/commit.p"
for i in $(seq "$n"); do
  quiet sr SR create --name "rl$i" "$image" >/dev/null
  quiet sr SR unshare sh -c 'R=$("$0" mount "$1" | tail -1); [ -d "$R" ] && [ "$R" != / ] || exit 1; '"$writer"'; "$0" umount "$1"' "$B" "rl$i"
  timed sr SR -q commit "rl$i" "bench/rootless:$i" >> "$T/commit.sr"
  quiet sr SR rm -f "rl$i" >/dev/null; quiet sr SR -q rmi "bench/rootless:$i" >/dev/null

  quiet s0 S0 create --name "r$i" "$image" >/dev/null
  m=$(S0 mount "r$i" 2>>"$T/err.s0" | tail -1)
  [ -d "$m" ] && [ "$m" != / ] || { echo "strata mount r$i gave no directory: $m" >&2; exit 1; }
  R=$m sh -c "$writer"; quiet s0 S0 umount "r$i"
  timed s0 S0 -q commit "r$i" "bench/root:$i" >> "$T/commit.s0"
  quiet s0 S0 rm -f "r$i" >/dev/null; quiet s0 S0 -q rmi "bench/root:$i" >/dev/null

  if [ "$have_podman" = 1 ]; then
    quiet p P run --name "p$i" --network none "$pimage" sh -c "R=; $writer" >/dev/null || podman_failed "run (writing the files)"
  fi
  if [ "$have_podman" = 1 ]; then
    timed p P commit -q "p$i" "bench/podman:$i" >> "$T/commit.p" || podman_failed commit
    quiet p P rm -f "p$i" >/dev/null; quiet p P rmi "bench/podman:$i" >/dev/null
  fi
done

# The table: medians in ms, and the ratios.
ms() { median < "$1" | awk '{ if ($1 == "-") print "-"; else printf "%.1f", $1 / 1000 }'; }
ratio() { [ "$1" = - ] || [ "$2" = - ] && { echo -; return; }; python3 -c "print('%.2fx' % ($1 / $2))"; }
echo
printf "%-34s %14s %12s %16s %9s %11s\n" "median ms" "strata rootl." "strata root" "podman rootl." "rl/root" "rl/podman"
for t in run load commit; do
  case $t in
    run) label="run --rm busybox true (of $runs)" ;;
    load) label="load docker-archive (of $n)" ;;
    commit) label="commit 1,000 files (of $n)" ;;
  esac
  a=$(ms "$T/$t.sr"); b=$(ms "$T/$t.s0"); c=$(ms "$T/$t.p")
  printf "%-34s %14s %12s %16s %9s %11s\n" "$label" "$a" "$b" "$c" "$(ratio "$a" "$b")" "$(ratio "$a" "$c")"
done
spread() { [ -s "$1" ] && sort -n "$1" | awk 'NR == 1 {a = $1} {b = $1} END {printf "%.0f-%.0f", a / 1000, b / 1000}' || echo -; }
for t in run load commit; do
  printf "%-34s %14s %12s %16s\n" "  min-max ms, $t" "$(spread "$T/$t.sr")" "$(spread "$T/$t.s0")" "$(spread "$T/$t.p")"
done
echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
[ "$have_podman" = 1 ] || echo "(podman not measured: $why_podman)"
for tag in sr s0 p; do
  [ -s "$T/err.$tag" ] || continue
  case $tag in sr) name="strata rootless" ;; s0) name="strata root" ;; p) name="podman rootless" ;; esac
  echo "-- stderr of $name ($(wc -l < "$T/err.$tag") lines; distinct ones, at most 10):"
  sed -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]+[+-][0-9]{4} //; s/^time="[^"]*" //' "$T/err.$tag" | sort | uniq -c | sort -rn | head -10
done
