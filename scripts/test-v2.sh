#!/usr/bin/env bash
# test-v2.sh — the root tests that depend on cgroups, run on a pure cgroup v2 hierarchy in a
# throw-away VM (scripts/v2vm.sh), with the test binary already built here
# (`swift build --build-tests`; run-tests.sh runs this after the host's tests).
#
# Covered: limits (memory with the OOM kill, pids and their default, a fork bomb, CPU quota),
# each store's cgroups apart from another's, run -d / exec /
# stop / logs, nothing left behind, the read-only cgroup view, the escape probe (0 escapes,
# no block device opened), the device allowlist (a BPF program on v2) and the cgroup code
# itself, and rootless limits in a cgroup subtree delegated to a user. Fails when a test fails, when one of them is skipped, when fewer ran than expected
# or when the VM does not run them (a message says why).
#
# Environment: STRATA_V2VM_TIMEOUT (seconds, default 900); see scripts/v2vm.sh for the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
tests=$repo/.build/debug/strataPackageTests.xctest
fail() { echo "test-v2: $*" >&2; exit 1; }
[ -x "$tests" ] || fail "no test binary $tests (swift build --build-tests first)"
[ -x .build/debug/strata ] || fail "no .build/debug/strata (swift build --build-tests first)"
[ -d fixtures/out/oci-gzip ] || fail "no fixtures (fixtures/build.sh first)"

# The RunTests that involve cgroups (the rest of the suite runs on the host only: an emulated
# CPU makes each container start take a second or two, and the job must fit in 10 minutes).
run_tests='isolation|memoryLimitKills|pidsLimit|forkBombIsContained|cpuQuota'
run_tests+='|blockDeviceOfTheHostIsRefused|escapeProbeFindsNothing|reportedAttacksFail|nothingLeftBehind'
run_tests+='|escapeProbeThroughExec|detachedLifecycle|followAndRemoveOnExit|killedMonitorLeavesNothingUnremovable|execJoinsTheContainer'
run_tests+='|defaultPidsLimit|storesDoNotTouchEachOther|engineAsALibrary'
# pause/unpause (cgroup.freeze), top and stats (memory.current, cpu.stat, pids.current) and
# --device on v2.
filters=(--filter 'CgroupTests' --filter 'DeviceRuleTests' --filter 'CgroupV2Tests' --filter "RunTests/($run_tests)\\("
         --filter 'DockerHabitsTests/(pauseTopStatsRename|deviceFlag)' --filter 'RootlessTests/delegatedCgroupLimits'
         --filter 'BuildTests/theCacheAndWhatInvalidatesIt')
# Tests (a parameterised one counts once) that must have run: 16 RunTests, 4 CgroupTests,
# 2 DeviceRuleTests, 3 CgroupV2Tests, 2 DockerHabitsTests (--device goes through v2's BPF
# device filter), 1 RootlessTests (limits in a cgroup subtree delegated to a user), 1
# BuildTests (RUN steps in v2 cgroups).
expected=29

log=$(mktemp /tmp/strata-test-v2.XXXXXX)
trap 'rm -f "$log"' EXIT
# In the VM: the hierarchy must be what this job is for, then the tests.
inner=$(cat <<EOF
set -e
if grep -q ' cgroup ' /proc/mounts || [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
    echo "test-v2: the VM's cgroups are not a pure v2 hierarchy:"; grep cgroup /proc/mounts; exit 3
fi
for c in memory cpu pids; do grep -qw \$c /sys/fs/cgroup/cgroup.subtree_control || { echo "test-v2: controller \$c is not enabled"; exit 3; }; done
echo "test-v2: cgroup v2 with \$(cat /sys/fs/cgroup/cgroup.subtree_control), kernel \$(uname -r), in \$(cat /proc/self/cgroup)"
export NO_COLOR=1
# The VM's initramfs holds the modules that reach the host's root, not bridge, veth or
# nf_tables: its containers run without a network, as they did before bridges existed.
export STRATA_NETWORK=none
# Bounds on how long things take: ten times this machine's under an emulated CPU.
[ "\$STRATA_V2VM" = tcg ] && export STRATA_TEST_TIME_SCALE=\${STRATA_TEST_TIME_SCALE:-10}
exec $(printf '%q ' "$tests" --testing-library swift-testing "${filters[@]}")
EOF
)
start=$(date +%s)
set +e
scripts/v2vm.sh -t "${STRATA_V2VM_TIMEOUT:-900}" -- bash -c "$inner" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
took=$(($(date +%s) - start))
[ "$status" = 125 ] && fail "the cgroup v2 VM did not run the tests (see above); this job cannot be skipped"
summary=$(grep -E '^. Test run with [0-9]+ tests?' "$log" | tail -1 || true)
ran=$(sed -nE 's/^. Test run with ([0-9]+) tests?.*/\1/p' <<<"$summary")
skipped=$(grep -E '^. (Test|Suite) .* skipped' "$log" || true)
[ "$status" = 0 ] || fail "tests failed in the cgroup v2 VM (exit $status, ${took}s): ${summary:-no summary}"
[ -z "$skipped" ] || fail "tests were skipped in the cgroup v2 VM:"$'\n'"$skipped"
[ -n "$ran" ] && [ "$ran" -ge "$expected" ] || fail "only ${ran:-0} tests ran in the cgroup v2 VM, $expected expected: ${summary:-no summary}"
echo "test-v2: $ran tests passed on cgroup v2 in ${took}s"
