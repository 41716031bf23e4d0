#if canImport(Glibc)
import Glibc
#endif
import Foundation
import StrataCore
import StrataSystem

/// Resource limits for a container.
public struct Limits: Sendable, Equatable {
    /// Bytes of memory (and memory+swap); nil for none.
    public var memory: Int64?
    /// CPUs, e.g. 0.5; nil for none.
    public var cpus: Double?
    public var pids: Int64?
    public init(memory: Int64? = nil, cpus: Double? = nil, pids: Int64? = nil) {
        self.memory = memory; self.cpus = cpus; self.pids = pids
    }
}

/// The cgroup hierarchies of this machine, found in /proc/self/mountinfo (never assumed):
/// cgroup v2 when the unified hierarchy carries the controllers we need, else v1 controller
/// mounts. Paths are taken as they come, so tests can point it at a fake tree.
public enum CgroupLayout: Equatable, Sendable {
    /// The unified hierarchy's mount point.
    case v2(root: String)
    /// controller → mount point (cpu and cpuacct may share one).
    case v1(mounts: [String: String])

    static let wanted = ["memory", "cpu", "pids"]

    /// Decides from mountinfo text; `controllers(of:)` reads a v2 root's cgroup.controllers.
    public static func detect(mountinfo: String, controllers: (String) -> Set<String>) -> CgroupLayout? {
        var v1: [String: String] = [:]
        var v2: String?
        for line in mountinfo.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let point = String(left[4])
            switch right[0] {
            case "cgroup2": v2 = point
            case "cgroup":
                // cpuacct: joined for accounting only (usage is read there).
                for opt in right[2].split(separator: ",") where wanted.contains(String(opt)) || opt == "devices" || opt == "cpuacct" {
                    v1[String(opt)] = point
                }
            default: break
            }
        }
        if let v2, Set(wanted).isSubset(of: controllers(v2)) { return .v2(root: v2) }
        if !v1.isEmpty { return .v1(mounts: v1) }
        if let v2 { return .v2(root: v2) }
        return nil
    }

    /// This machine's layout.
    public static func current() -> CgroupLayout? {
        guard let mountinfo = MountTable.text() else { return nil }
        return detect(mountinfo: mountinfo) { root in
            let text = (try? FDHandle.open(root + "/cgroup.controllers", flags: O_RDONLY))
                .flatMap { try? $0.readAll(limit: 1 << 16, label: "cgroup.controllers") }
                .map { String(decoding: $0, as: UTF8.self) } ?? ""
            return Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        }
    }
}

/// One container's cgroup(s): `strata/ID` in each hierarchy used.
public struct Cgroup: Sendable {
    public let layout: CgroupLayout
    public let name: String

    public init(layout: CgroupLayout, id: String) {
        self.layout = layout
        self.name = "strata/" + id
    }

    /// The directories this cgroup consists of.
    public var directories: [String] {
        switch layout {
        case .v2(let root): return [root + "/" + name]
        case .v1(let mounts): return Array(Set(mounts.values)).sorted().map { $0 + "/" + name }
        }
    }

    private func write(_ dir: String, _ file: String, _ value: String) throws {
        let path = dir + "/" + file
        let f: FDHandle
        do { f = try FDHandle.open(path, flags: O_WRONLY | O_TRUNC) } catch let e as StrataError {
            throw StrataError(.system, "cannot open cgroup file \(path)", cause: e.cause)
        }
        do { try f.writeAll(Array(value.utf8)) } catch let e as StrataError {
            throw StrataError(.system, "cannot write \(value) to \(path)", cause: e.cause)
        }
    }

    private func mkdirs(_ path: String) throws {
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            if Glibc.mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw StrataError(.system, "cannot create cgroup \(current)", cause: Errno.current)
            }
        }
    }

    /// Creates the cgroup and sets the limits. v1: `memory.limit_in_bytes` and, where the
    /// kernel accounts swap, `memory.memsw.limit_in_bytes` to the same value (no swap beyond the
    /// limit); never kmem. v2: memory.max, memory.swap.max 0, cpu.max, pids.max.
    public func create(_ limits: Limits) throws {
        let period = 100_000
        switch layout {
        case .v2(let root):
            let dir = root + "/" + name
            // Controllers must be enabled in every parent's subtree_control.
            var parent = root
            for part in name.split(separator: "/") {
                try? write(parent, "cgroup.subtree_control", "+memory +cpu +pids")
                parent += "/" + part
                if Glibc.mkdir(parent, 0o755) != 0 && errno != EEXIST {
                    throw StrataError(.system, "cannot create cgroup \(parent)", cause: Errno.current)
                }
            }
            if let m = limits.memory {
                try write(dir, "memory.max", String(m))
                try? write(dir, "memory.swap.max", "0")
            }
            if let c = limits.cpus { try write(dir, "cpu.max", "\(Int(c * Double(period))) \(period)") }
            if let p = limits.pids { try write(dir, "pids.max", String(p)) }
        case .v1(let mounts):
            for dir in directories { try mkdirs(dir) }
            if let m = limits.memory, let mnt = mounts["memory"] {
                let dir = mnt + "/" + name
                try write(dir, "memory.limit_in_bytes", String(m))
                if access(dir + "/memory.memsw.limit_in_bytes", F_OK) == 0 {
                    try write(dir, "memory.memsw.limit_in_bytes", String(m))
                }
            }
            if let c = limits.cpus, let mnt = mounts["cpu"] {
                let dir = mnt + "/" + name
                try write(dir, "cpu.cfs_period_us", String(period))
                try write(dir, "cpu.cfs_quota_us", String(Int(c * Double(period))))
            }
            if let p = limits.pids, let mnt = mounts["pids"] {
                try write(mnt + "/" + name, "pids.max", String(p))
            }
            if let mnt = mounts["devices"] {
                // The device allowlist: deny all, then what a container's /dev holds.
                let dir = mnt + "/" + name
                try write(dir, "devices.deny", "a")
                for rule in ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                             "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm"] {
                    try write(dir, "devices.allow", rule)
                }
            }
        }
    }

    /// Moves a process into the cgroup (every hierarchy).
    public func join(_ pid: pid_t) throws {
        for dir in directories { try write(dir, "cgroup.procs", String(pid)) }
    }

    /// Removes the cgroup; its processes must be gone. Retries briefly while the kernel
    /// finishes tearing them down.
    public func remove() {
        for dir in directories {
            for _ in 0..<100 {
                if rmdir(dir) == 0 || errno == ENOENT { break }
                usleep(10_000)
            }
        }
    }
}
