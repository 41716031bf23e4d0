import StrataLauncher
import StrataStore

/// Cgroups a container left behind: its strata was killed, or it failed half-way. A cgroup
/// is a leftover when nothing runs in it (looked at under the lock every `run` holds while it
/// makes its cgroups and joins them, so a container that is starting is never one).
package enum ContainerLeftovers {
    /// Removes the leftovers of the store whose cgroups are under `parent`; returns the
    /// directories removed.
    package static func removeCgroups(parent: String) -> [String] {
        ContainerCgroups.withLeftovers(parent: parent) { entries in
            var removed: [String] = []
            for e in entries {
                let left = Set(ContainerCgroups.release(id: e.id, parent: parent))
                removed += e.cgroup.directories.filter { !left.contains($0) }
            }
            return removed
        }
    }

    /// One problem per leftover cgroup of the store whose parent is `parent` (a populated cgroup
    /// is a running container).
    package static func problems(parent: String) -> [CheckProblem] {
        ContainerCgroups.withLeftovers(parent: parent) { entries in
            entries.map {
                CheckProblem(subject: "cgroup \($0.cgroup.name)", problem: "left behind by a container that no longer runs; `strata gc` removes it")
            }
        }
    }
}

extension Engine {
    /// `gc`: what the store's garbage collection removes, and the cgroups its containers left.
    public func garbageCollect() throws -> RemovalReport {
        var r = try store.garbageCollect()
        r.removedCgroups = ContainerLeftovers.removeCgroups(parent: cgroupParent)
        r.removedNetworks = try removeNetworkLeftovers()
        return r
    }

    /// `check`: the store's problems and the cgroups its containers left.
    public func check(summary: inout CheckSummary, progress: (String) -> Void = { _ in }) throws -> [CheckProblem] {
        try store.check(summary: &summary, progress: progress) + ContainerLeftovers.problems(parent: cgroupParent) + networkProblems()
    }

    /// One problem per container whose network is still set up though it does not run.
    func networkProblems() throws -> [CheckProblem] {
        try networkLeftovers().map {
            CheckProblem(subject: "container \($0.prefix(12))", problem: "its network (namespace, interfaces, firewall rules) is set up but it does not run",
                         advice: "`strata gc` tears it down")
        }
    }

    /// `check --repair`: mends what the store's check finds (in the same quiet view) and removes
    /// leftover cgroups; the problems found, with what was done.
    public func checkAndRepair(summary: inout CheckSummary, force: Bool,
                               progress: (String) -> Void = { _ in }) throws -> (found: [CheckProblem], report: Store.RepairReport) {
        let (found, report) = try store.checkAndRepair(summary: &summary, force: force, progress: progress)
        let leftovers = ContainerLeftovers.problems(parent: cgroupParent)
        if !leftovers.isEmpty { _ = ContainerLeftovers.removeCgroups(parent: cgroupParent) }
        let networks = try networkProblems()
        if !networks.isEmpty { _ = try removeNetworkLeftovers() }
        return (found + leftovers + networks, report)
    }
}
