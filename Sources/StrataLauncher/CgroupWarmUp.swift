#if canImport(Glibc)
import Glibc
#endif
import StrataCore
import StrataSystem
import Synchronization

/// Hides the kernel's grace period behind the work before a launch.
///
/// Every write to a `cgroup.procs` takes the kernel's global threadgroup lock for writing, and
/// the first such write after a quiet spell waits for a whole RCU grace period (8–15 ms on a
/// small VM) before it moves anything; writes that follow within about one more grace period
/// are fast (microseconds). `run`, `start` and `exec` call `begin()` before they open the store
/// and mount: a thread of ours writes this process's own pid into the cgroup it is already in
/// (the kernel leaves a task whose cgroup does not change where it is), and pays the grace
/// period while the caller works. By the time the container's process is moved into its
/// cgroups, the lock is warm. Failures are ignored: the real join reports its own.
package enum CgroupWarmUp {
    private static let begun = Mutex(false)

    /// Starts the warm-up on a detached thread, once per process; returns at once.
    package static func begin() {
        guard begun.withLock({ (b: inout Bool) -> Bool in defer { b = true }; return !b }) else { return }
        DetachedThread.start { CgroupWarmUp.rejoinOwnCgroup() }
    }

    /// Writes our pid into our own cgroup's `cgroup.procs` in one hierarchy of this machine.
    static func rejoinOwnCgroup() {
        guard let layout = CgroupLayout.current(), let file = ownProcsFile(layout: layout, selfCgroup: selfCgroupText()),
              let f = try? FDHandle.open(file, flags: .writeOnly) else { return }
        try? f.writeAll(Array(String(getpid()).utf8))
    }

    /// The `cgroup.procs` of the cgroup this process is in: on v2 the unified line (`0::PATH`),
    /// on v1 the line of a controller hierarchy the layout mounts.
    static func ownProcsFile(layout: CgroupLayout, selfCgroup: String) -> String? {
        for line in selfCgroup.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[2].hasPrefix("/") else { continue }
            let path = parts[2] == "/" ? "" : String(parts[2])
            switch layout {
            case .v2(let root):
                if parts[0] == "0" { return root + path + "/cgroup.procs" }
            case .v1(let mounts):
                for controller in parts[1].split(separator: ",") {
                    if let mount = mounts[String(controller)] { return mount + path + "/cgroup.procs" }
                }
            }
        }
        return nil
    }

    private static func selfCgroupText() -> String {
        let bytes = (try? FDHandle.open("/proc/self/cgroup", flags: .readOnly))
            .flatMap { try? $0.readAll(limit: 1 << 16, label: "/proc/self/cgroup") } ?? []
        return String(decoding: bytes, as: UTF8.self)
    }
}
