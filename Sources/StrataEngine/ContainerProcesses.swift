import FoundationEssentials
import StrataCore
import StrataLauncher
import StrataStore
import StrataSystem

/// A process of a running container, as `top` lists it (read from the host's /proc: what the
/// kernel says, nothing the container wrote).
public struct ContainerProcess: Sendable, Equatable {
    public var pid: Int32
    public var ppid: Int32
    public var uid: UInt32
    /// The process's state letter (R, S, D, T, Z…).
    public var state: String
    /// User plus system CPU time, in clock ticks.
    public var cpuTicks: Int64
    /// Its command line, or `[comm]` for a kernel-named one without.
    public var command: String
}

extension Engine {
    /// The cgroups of a running container, for what reads or freezes its processes.
    private func runningCgroup(_ ref: String, for what: String) throws -> (ContainerRecord, Cgroup) {
        let c = try store.container(ref)
        guard isRunning(c) else { throw StrataError(.conflict, "container \(c.name) is not running (\(what) needs a running container)") }
        guard let layout = CgroupLayout.current() else { throw StrataError(.unsupported, "\(what) needs the container's cgroup, but \(CgroupLayout.unavailableReason)") }
        return (c, Cgroup(layout: layout, id: c.id, parent: cgroupParent))
    }

    /// `pause`: freezes every process of the container (the cgroup freezer).
    public func pause(_ ref: String) throws {
        let (c, cg) = try runningCgroup(ref, for: "pause")
        guard !cg.isFrozen else { throw StrataError(.conflict, "container \(c.name) is already paused") }
        try cg.setFrozen(true)
        store.record(container: c, "pause")
    }

    /// `unpause`: thaws them.
    public func unpause(_ ref: String) throws {
        let (c, cg) = try runningCgroup(ref, for: "unpause")
        guard cg.isFrozen else { throw StrataError(.conflict, "container \(c.name) is not paused") }
        try cg.setFrozen(false)
        store.record(container: c, "unpause")
    }

    /// Thaws a paused container so that a stop signal or SIGKILL reaches it (a frozen
    /// process on cgroup v1 dies only once thawed), as Docker does before it stops one.
    func thawIfPaused(_ id: String) {
        // The layout read once per command: `stop` of many containers asks for each.
        guard let layout = CgroupLayout.cached else { return }
        let cg = Cgroup(layout: layout, id: id, parent: cgroupParent)
        if cg.isFrozen { try? cg.setFrozen(false) }
    }

    /// `top`: the container's processes, by pid.
    public func processes(_ ref: String) throws -> [ContainerProcess] {
        let (_, cg) = try runningCgroup(ref, for: "top")
        return cg.processes.sorted().compactMap(ContainerProcess.read)
    }

    /// `stats`: what the container's cgroups count now.
    public func usage(_ ref: String) throws -> Cgroup.Usage {
        try runningCgroup(ref, for: "stats").1.usage
    }
}

extension ContainerProcess {
    /// From /proc/PID/stat, status and cmdline; nil when the process is gone.
    static func read(_ pid: Int32) -> ContainerProcess? {
        func file(_ name: String) -> String? {
            (try? FDHandle.open("/proc/\(pid)/\(name)", flags: .readOnly)).flatMap { try? $0.readAll(limit: 1 << 16, label: name) }
                .map { String(decoding: $0, as: UTF8.self) }
        }
        // stat: "pid (comm) state ppid …": comm may hold spaces and parentheses, so the fields
        // are counted from the last ')'.
        guard let stat = file("stat"), let close = stat.lastIndex(of: ")"), let open = stat.firstIndex(of: "(") else { return nil }
        let comm = String(stat[stat.index(after: open)..<close])
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let ppid = Int32(fields[1]) else { return nil }
        let ticks = (Int64(fields[11]) ?? 0) + (Int64(fields[12]) ?? 0)
        let uid = file("status")?.split(separator: "\n").first { $0.hasPrefix("Uid:") }?
            .split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { UInt32($0) } ?? 0
        let argv = (file("cmdline") ?? "").split(separator: "\0").joined(separator: " ")
        return ContainerProcess(pid: pid, ppid: ppid, uid: uid, state: String(fields[0]), cpuTicks: ticks,
                                command: argv.isEmpty ? "[\(comm)]" : argv)
    }
}
