import StrataLauncher
import StrataStore

/// Cgroups a container left behind: its strata was killed, or it failed half-way. A cgroup
/// is a leftover when nothing runs in it (looked at under the lock every `run` holds while it
/// makes its cgroups and joins them, so a container that is starting is never one).
public enum ContainerLeftovers {
    /// Removes the leftovers of the store whose cgroups are under `parent`; returns the
    /// directories removed.
    public static func removeCgroups(parent: String) -> [String] {
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
    public static func problems(parent: String) -> [CheckProblem] {
        ContainerCgroups.withLeftovers(parent: parent) { entries in
            entries.map {
                CheckProblem(subject: "cgroup \($0.cgroup.name)", problem: "left behind by a container that no longer runs; `strata gc` removes it")
            }
        }
    }
}
