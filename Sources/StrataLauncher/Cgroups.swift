#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import StrataCore
import StrataSystem
import CStrata

/// Resource limits for a container.
public struct Limits: Sendable, Equatable {
    /// Bytes of memory (and memory+swap); nil for none.
    public var memory: Int64?
    /// CPUs, e.g. 0.5; nil for none.
    public var cpus: Double?
    /// Processes (and threads); nil for none. 2048 unless `--pids-limit` says otherwise, as podman.
    public var pids: Int64?
    /// The process limit a container gets unless told otherwise (podman's default): a fork bomb
    /// in one container does not take the host's pid space.
    public static let defaultPids: Int64 = 2048
    /// Limits as `--memory`, `--cpus` and `--pids-limit` give them; nil is no limit.
    public init(memory: Int64? = nil, cpus: Double? = nil, pids: Int64? = Limits.defaultPids) {
        self.memory = memory; self.cpus = cpus; self.pids = pids
    }

    /// Whether a limit beyond the defaults was asked for (those need a cgroup hierarchy; the
    /// default process limit applies where there is one).
    public var asked: Bool { memory != nil || cpus != nil || (pids != nil && pids != Limits.defaultPids) }
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

    /// The key of a hybrid host's unified (v2) hierarchy among the v1 mounts.
    static let unifiedKey = "unified"

    /// Decides from mountinfo text; `controllers(of:)` reads a v2 root's cgroup.controllers.
    /// On v1 every mounted hierarchy is taken (freezer, blkio, cpuset, name=systemd, … and a
    /// hybrid host's unified one), not only the ones limits use: a container is joined to each,
    /// so that no hierarchy's cgroup-namespace root is the host's (a v1 hierarchy whose root a
    /// container can mount is a `release_agent` away from host root).
    public static func detect(mountinfo: String, controllers: (String) -> Set<String>) -> CgroupLayout? {
        var v1: [String: String] = [:]
        var v2: String?
        for entry in MountTable.entries(mountinfo) {
            switch entry.fsType {
            case "cgroup2": v2 = entry.mountPoint
            case "cgroup":
                // Keyed by each controller (and name=…) the hierarchy carries.
                for opt in entry.superOptions where opt != "rw" && opt != "ro" { v1[opt] = entry.mountPoint }
            default: break
            }
        }
        if let v2, Set(wanted).isSubset(of: controllers(v2)) { return .v2(root: v2) }
        if !v1.isEmpty {
            if let v2 { v1[unifiedKey] = v2 }
            return .v1(mounts: v1)
        }
        if let v2 { return .v2(root: v2) }
        return nil
    }

    /// Why there is no layout, for messages: rootless without a delegated cgroup, or none mounted.
    public static var unavailableReason: String {
        UserNamespace.current.isRootless
            ? "no cgroup v2 subtree is delegated to this user (rootless; docs/rootless.md says how to get one)"
            : "no cgroup hierarchy is mounted here"
    }

    /// Rootless without cgroups: says once (per boot, a mark in the runtime directory) that
    /// containers run without limits.
    public static func warnOnceWithoutCgroups() {
        guard UserNamespace.current.isRootless, let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"],
              runtime.hasPrefix("/") else { return }
        let mark = runtime + "/strata/no-cgroups-said"
        guard (try? FDHandle.open(mark, flags: [.writeOnly, .create, .exclusive, .noFollow], mode: 0o600)) != nil else { return }
        writeStandardError("strata: warning: \(unavailableReason): containers run without limits (--memory, --cpus and --pids-limit cannot be set)\n")
    }

    /// This machine's layout, read once per process (it does not change while a command runs):
    /// for what looks at many containers' cgroups, such as `ps` asking which are paused.
    public static let cached: CgroupLayout? = current()

    /// This machine's layout, from `mountinfo` (read from /proc/self/mountinfo unless given).
    public static func current(mountinfo: String? = MountTable.text()) -> CgroupLayout? {
        guard let mountinfo else { return nil }
        let layout = detect(mountinfo: mountinfo, controllers: controllers(of:))
        // Rootless: only a cgroup v2 subtree delegated to the user (docs/rootless.md).
        if UserNamespace.current.isRootless {
            guard case .v2(let root) = layout, RootlessCgroup.delegated(root: root) != nil else { return nil }
        }
        return layout
    }

    /// The controllers a v2 cgroup offers its children (its `cgroup.controllers`).
    static func controllers(of dir: String) -> Set<String> {
        Set(Cgroup.readText(dir + "/cgroup.controllers").split(whereSeparator: \.isWhitespace).map(String.init))
    }
}

/// A cgroup hierarchy as the container sees it at /sys/fs/cgroup.
public struct CgroupView: Equatable, Sendable {
    /// The directory under /sys/fs/cgroup (v1), nil for the v2 hierarchy at /sys/fs/cgroup itself.
    public var name: String?
    public var fstype: String
    /// v1: the hierarchy's controllers as mounted on the host (`cpu,cpuacct`).
    public var data: String?
}

extension CgroupLayout {
    /// The hierarchies the container is joined to, to be mounted in its cgroup namespace (where
    /// its own cgroup is the root): a container sees its own cgroups and nothing of the host's.
    public func containerView(mountinfo: String) -> [CgroupView] {
        switch self {
        case .v2: return [CgroupView(name: nil, fstype: "cgroup2", data: nil)]
        case .v1(let mounts):
            var options: [String: String] = [:]
            for entry in MountTable.entries(mountinfo) where entry.fsType == "cgroup" {
                // The hierarchy is named by its controllers; a release agent is the host's business.
                options[entry.mountPoint] = entry.superOptions.filter {
                    $0 != "rw" && $0 != "ro" && !$0.hasPrefix("release_agent=")
                }.joined(separator: ",")
            }
            let unified = mounts[CgroupLayout.unifiedKey]
            return Set(mounts.values).sorted().compactMap { point in
                guard let name = point.split(separator: "/").last else { return nil }
                if point == unified { return CgroupView(name: String(name), fstype: "cgroup2", data: nil) }
                guard let data = options[point] else { return nil }
                return CgroupView(name: String(name), fstype: "cgroup", data: data)
            }
        }
    }
}

/// Where one store's container cgroups live in each hierarchy: `strata/KEY`, KEY from the
/// store's own path, so that stores on one host never see (or clean up) each other's.
public enum CgroupParent {
    /// The parent for the store at `root`: `strata/` and 12 hex digits of the SHA-256 of its
    /// real path.
    public static func forStore(root: String) -> String {
        let real = realpath(root, nil).map { p in defer { free(p) }; return String(cString: p) } ?? root
        let key = "strata/" + Digest.of(Array(real.utf8)).hex.prefix(12)
        // Rootless: below the subtree delegated to the user.
        if UserNamespace.current.isRootless, case .v2(let cgroupRoot)? = CgroupLayout.cached,
           let delegated = RootlessCgroup.delegated(root: cgroupRoot) {
            return delegated + "/" + key
        }
        return key
    }
}

/// The cgroup v2 subtree a user may make cgroups in (systemd's `user@UID.service`, or one an
/// administrator made and gave them): the highest cgroup above this process's own that the
/// user can write, that holds no process itself and offers memory, cpu and pids. Limits and
/// the container's own cgroup need one; without it rootless containers run without limits.
public enum RootlessCgroup {
    /// Its path below the v2 root `root`, or nil.
    public static func delegated(root: String) -> String? {
        let own = Cgroup.readText("/proc/self/cgroup").split(separator: "\n")
            .first { $0.hasPrefix("0::/") }.map { String($0.dropFirst(4)) } ?? ""
        var parts = own.split(separator: "/").map(String.init)
        var best: String?
        while !parts.isEmpty {
            let rel = parts.joined(separator: "/")
            let dir = root + "/" + rel
            guard access(dir, W_OK) == 0, access(dir + "/cgroup.procs", W_OK) == 0,
                  access(dir + "/cgroup.subtree_control", W_OK) == 0 else { break }
            if Cgroup.readText(dir + "/cgroup.procs").allSatisfy(\.isWhitespace),
               Set(CgroupLayout.wanted).isSubset(of: CgroupLayout.controllers(of: dir)) {
                best = rel
            }
            parts.removeLast()
        }
        return best
    }
}

/// One container's cgroup(s): `PARENT/ID` in each hierarchy used.
public struct Cgroup: Sendable {
    public let layout: CgroupLayout
    public let name: String

    /// The cgroups of container `id` in `layout`, under `parent` (`CgroupParent.forStore`).
    public init(layout: CgroupLayout, id: String, parent: String) {
        self.layout = layout
        self.name = parent + "/" + id
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
        do { f = try FDHandle.open(path, flags: [.writeOnly, .truncate]) } catch let e as StrataError {
            throw StrataError(.system, "cannot open cgroup file \(path)", cause: e.cause)
        }
        do { try f.writeAll(Array(value.utf8)) } catch let e as StrataError {
            throw StrataError(.system, "cannot write \(value) to \(path)", cause: e.cause)
        }
    }

    /// A small cgroup file's text; empty when it cannot be read.
    static func readText(_ path: String) -> String {
        (try? FDHandle.open(path, flags: .readOnly)).flatMap { try? $0.readAll(limit: 1 << 16, label: path) }
            .map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// Creates the cgroup and sets the limits. v1: `memory.limit_in_bytes` and, where the
    /// kernel accounts swap, `memory.memsw.limit_in_bytes` to the same value (no swap beyond the
    /// limit); never kmem. v2: memory.max, memory.swap.max 0, cpu.max, pids.max.
    /// The device allowlist `devices` (nil: every device, --privileged): v1 `devices.allow`,
    /// v2 a BPF program attached to the cgroup before any process joins it.
    public func create(_ limits: Limits, devices: [DeviceRule]? = DeviceRule.defaults) throws {
        let period = 100_000
        switch layout {
        case .v2(let root):
            let dir = root + "/" + name
            // Controllers must be enabled in every parent's subtree_control, in one write: the
            // kernel refuses memory (EBUSY) in a cgroup that holds processes (the top of the
            // hierarchy excepted) but would take cpu and pids alone, which makes that cgroup a
            // thread root no process can then join below. A controller the parent lacks
            // (ENOENT) fails the whole write: then those it has are enabled.
            var refused: [(parent: String, cause: Errno)] = []
            let enable = { (parent: String, controllers: [String]) -> Errno? in
                do { try write(parent, "cgroup.subtree_control", controllers.map { "+" + $0 }.joined(separator: " ")); return nil }
                catch let e as StrataError { return (e.cause as? Errno) ?? Errno(EINVAL) }
                catch { return Errno(EINVAL) }
            }
            var parent = root
            for part in name.split(separator: "/") {
                if var cause = enable(parent, CgroupLayout.wanted) {
                    if cause == .ENOENT {
                        let available = CgroupLayout.wanted.filter(CgroupLayout.controllers(of: parent).contains)
                        if !available.isEmpty, let again = enable(parent, available) { cause = again }
                    }
                    refused.append((parent, cause))
                }
                parent += "/" + part
                try makeDirectory(parent, what: "cgroup")
            }
            // Rootless, the device filter cannot be attached (BPF takes the host's CAP_SYS_ADMIN);
            // nor can the container make a device (docs/rootless.md).
            if let devices, !UserNamespace.current.isRootless { try DeviceFilter.attach(devices, to: dir) }
            // A limit whose file is missing: say which parent refused its controller, and why.
            let limit = { (file: String, value: String) throws in
                if access(dir + "/" + file, F_OK) != 0, let first = refused.first {
                    let why = first.cause == .EBUSY
                        ? "\(first.parent) holds processes, and the kernel enables controllers only below a cgroup without processes (the top of the host's hierarchy excepted); move the processes of \(first.parent)/cgroup.procs (this shell's too) into a child cgroup, e.g. \(first.parent)/init.scope, as systemd does, and run strata from there"
                        : "the kernel refused to enable it in \(first.parent)/cgroup.subtree_control"
                    throw StrataError(.system, "cannot set \(file) of cgroup \(dir): its controller is not enabled there: \(why)", cause: first.cause)
                }
                try write(dir, file, value)
            }
            if let m = limits.memory {
                try limit("memory.max", String(m))
                try? write(dir, "memory.swap.max", "0")
            }
            if let c = limits.cpus { try limit("cpu.max", "\(Int((c * Double(period)).rounded())) \(period)") }
            if let p = limits.pids { try limit("pids.max", String(p)) }
        case .v1(let mounts):
            for dir in directories { try makeDirectories(dir, what: "cgroup") }
            if let mnt = mounts["cpuset"] { try inheritCPUSet(mnt) }
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
                try write(dir, "cpu.cfs_quota_us", String(Int((c * Double(period)).rounded())))
            }
            if let p = limits.pids, let mnt = mounts["pids"] {
                try write(mnt + "/" + name, "pids.max", String(p))
            }
            if let mnt = mounts["devices"], let devices {
                // The device allowlist: deny all, then what a container's /dev holds.
                let dir = mnt + "/" + name
                try write(dir, "devices.deny", "a")
                for rule in devices { try write(dir, "devices.allow", rule.description) }
            }
        }
    }

    /// A new v1 cpuset cgroup has no CPUs or memory nodes (joining it fails with ENOSPC) unless
    /// its parent clones them: each level gets its parent's, as Docker does.
    private func inheritCPUSet(_ mount: String) throws {
        var dir = mount
        for part in name.split(separator: "/") {
            let parent = dir
            dir += "/" + part
            for file in ["cpuset.cpus", "cpuset.mems"] where Cgroup.readText(dir + "/" + file).allSatisfy(\.isWhitespace) {
                try write(dir, file, Cgroup.readText(parent + "/" + file).trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
    }

    /// Moves a process into the cgroup (every hierarchy).
    public func join(_ pid: pid_t) throws {
        for dir in directories { try write(dir, "cgroup.procs", String(pid)) }
    }

    /// Removes the cgroup with every cgroup a privileged container made under it, deepest first.
    /// Whatever still runs there (a container whose strata was killed) is killed first. Retries
    /// briefly while the kernel finishes tearing processes down. Returns the directories it
    /// could not remove.
    @discardableResult
    public func remove() -> [String] {
        var left: [String] = []
        // A paused container's processes die of SIGKILL only once thawed (cgroup v1).
        if isFrozen { try? setFrozen(false) }
        for dir in directories {
            let tree = Cgroup.subtree(dir)
            if tree.isEmpty { continue }
            for d in tree { Cgroup.killAll(d) }
            for d in tree.reversed() {
                var gone = false
                for _ in 0..<200 {
                    if rmdir(d) == 0 || errno == ENOENT { gone = true; break }
                    if errno != EBUSY { break }
                    Cgroup.killAll(d)
                    usleep(5_000)
                }
                if !gone { left.append(d) }
            }
        }
        return left
    }

    /// Whether any process is in the cgroup (any hierarchy, any sub-cgroup).
    public var isPopulated: Bool {
        directories.contains { dir in Cgroup.subtree(dir).contains { !Cgroup.pids($0).isEmpty } }
    }

    /// `dir` and every cgroup below it, parents before children; empty when `dir` is gone.
    static func subtree(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out = [dir]
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard e.pointee.d_type == UInt8(DT_DIR), name != ".", name != ".." else { continue }
            out += subtree(dir + "/" + name)
        }
        return out
    }

    static func pids(_ dir: String) -> [pid_t] {
        guard let f = try? FDHandle.open(dir + "/cgroup.procs", flags: .readOnly),
              let bytes = try? f.readAll(limit: 16 << 20, label: "cgroup.procs") else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { pid_t($0) }
    }

    /// SIGKILL to every process of one cgroup (v2: cgroup.kill where the kernel has it).
    static func killAll(_ dir: String) {
        if let f = try? FDHandle.open(dir + "/cgroup.kill", flags: .writeOnly), (try? f.writeAll(Array("1".utf8))) != nil { return }
        for pid in pids(dir) where pid > 0 { kill(pid, SIGKILL) }
    }
}

/// Held while a container's cgroups are made and its process joined (shared), and while
/// leftovers are looked for (exclusive): an empty cgroup seen under the exclusive lock is not a
/// container that is about to start. A flock on the store's parent directory (`strata/KEY`) in
/// the first hierarchy.
public final class CgroupCreationLock {
    private var fd: Int32

    /// Takes the lock, shared or exclusive; nil when there is no cgroup hierarchy to lock.
    public init?(layout: CgroupLayout, exclusive: Bool, parent: String) {
        let root: String
        switch layout {
        case .v2(let r): root = r
        case .v1(let mounts): guard let first = Set(mounts.values).sorted().first else { return nil }; root = first
        }
        var dir = root
        for part in parent.split(separator: "/") {
            dir += "/" + part
            if mkdir(dir, 0o755) != 0 && errno != EEXIST { return nil }
        }
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        while strata_flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0 && errno == EINTR {}
    }

    /// Lets go of the lock now (the deinit would at the end of the holder's scope).
    public func release() {
        if fd >= 0 { close(fd); fd = -1 }
    }

    deinit { release() }
}

/// What `pause`, `unpause`, `top` and `stats` read and write of a container's cgroups.
extension Cgroup {
    /// The directory of `controller`'s hierarchy (v2: the one directory); nil when not mounted.
    func directory(for controller: String) -> String? {
        switch layout {
        case .v2(let root): return root + "/" + name
        case .v1(let mounts): return mounts[controller].map { $0 + "/" + name }
        }
    }

    /// Freezes (`pause`) or thaws (`unpause`) every process of the container: v2 `cgroup.freeze`,
    /// v1 the freezer hierarchy's `freezer.state`. Returns once the kernel says it is done.
    public func setFrozen(_ frozen: Bool) throws {
        guard let dir = directory(for: "freezer") else {
            throw StrataError(.unsupported, "this host mounts no freezer cgroup hierarchy: a container cannot be paused here")
        }
        switch layout {
        case .v2: try write(dir, "cgroup.freeze", frozen ? "1" : "0")
        case .v1: try write(dir, "freezer.state", frozen ? "FROZEN" : "THAWED")
        }
        // v1 passes through FREEZING; v2 reports the end in cgroup.events.
        for _ in 0..<200 where isFrozen != frozen { usleep(5_000) }
        guard isFrozen == frozen else {
            throw StrataError(.system, "the container's processes did not \(frozen ? "freeze" : "thaw") within a second (\(dir))")
        }
    }

    /// Whether the container's processes are frozen (paused).
    public var isFrozen: Bool {
        guard let dir = directory(for: "freezer") else { return false }
        switch layout {
        case .v2: return Cgroup.readText(dir + "/cgroup.events").split(separator: "\n").contains("frozen 1")
        case .v1: return Cgroup.readText(dir + "/freezer.state").hasPrefix("FROZEN")
        }
    }

    /// Every process of the container, in its cgroup and the ones below it.
    public var processes: [pid_t] {
        guard let dir = directory(for: "pids") ?? directories.first else { return [] }
        return Cgroup.subtree(dir).flatMap(Cgroup.pids)
    }

    /// What the container uses, as the cgroups count it.
    public struct Usage: Sendable, Equatable {
        /// Bytes of memory charged (page cache included, as the kernel counts it).
        public var memory: Int64
        /// The memory limit in bytes; nil for none.
        public var memoryLimit: Int64?
        /// CPU time of all its processes, in nanoseconds.
        public var cpuNanoseconds: Int64
        public var pids: Int64
    }

    public var usage: Usage {
        func number(_ path: String?) -> Int64? {
            path.flatMap { Int64(Cgroup.readText($0).trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        switch layout {
        case .v2(let root):
            let dir = root + "/" + name
            let cpu = Cgroup.readText(dir + "/cpu.stat").split(separator: "\n").first { $0.hasPrefix("usage_usec ") }
                .flatMap { Int64($0.dropFirst("usage_usec ".count)) } ?? 0
            return Usage(memory: number(dir + "/memory.current") ?? 0, memoryLimit: number(dir + "/memory.max"),
                         cpuNanoseconds: cpu * 1000, pids: number(dir + "/pids.current") ?? 0)
        case .v1:
            // An unlimited v1 limit reads as a huge page-rounded number.
            let limit = number(directory(for: "memory").map { $0 + "/memory.limit_in_bytes" }).flatMap { $0 >= 1 << 62 ? nil : $0 }
            return Usage(memory: number(directory(for: "memory").map { $0 + "/memory.usage_in_bytes" }) ?? 0, memoryLimit: limit,
                         cpuNanoseconds: number(directory(for: "cpuacct").map { $0 + "/cpuacct.usage" }) ?? 0,
                         pids: number(directory(for: "pids").map { $0 + "/pids.current" }) ?? 0)
        }
    }
}
