#if canImport(Glibc)
import Glibc
#endif
import StrataCore

/// One line of a user namespace's uid_map or gid_map: `count` ids from `inside` are the host's
/// from `outside`.
public struct IDMapping: Sendable, Equatable, Codable {
    public var inside: UInt32
    public var outside: UInt32
    public var count: UInt32
    public init(inside: UInt32, outside: UInt32, count: UInt32) {
        self.inside = inside; self.outside = outside; self.count = count
    }
}

/// The user namespace this process runs in (docs/rootless.md). A user who is not root runs
/// strata in one of their own, entered before main: there they are root over their own files and
/// their subordinate ids, and over nothing else of the host.
public struct UserNamespace: Sendable, Equatable {
    public var uidMap: [IDMapping]
    public var gidMap: [IDMapping]

    /// This process's, read once.
    public static let current = UserNamespace(uidMap: readMap("/proc/self/uid_map"), gidMap: readMap("/proc/self/gid_map"))

    public init(uidMap: [IDMapping], gidMap: [IDMapping]) {
        self.uidMap = uidMap; self.gidMap = gidMap
    }

    /// The host's own namespace (every id maps to itself), where root is the host's root.
    public var isInitial: Bool {
        uidMap.isEmpty || uidMap == [IDMapping(inside: 0, outside: 0, count: UInt32.max)]
    }

    /// strata runs rootless: in a user namespace, where trusted.* xattrs, device nodes and
    /// cgroups of the host are out of reach.
    public var isRootless: Bool { !isInitial }

    /// The host uid and gid that root here is (the user who ran strata).
    public var hostUser: (uid: UInt32, gid: UInt32)? {
        guard let u = uidMap.first(where: { $0.inside == 0 }), let g = gidMap.first(where: { $0.inside == 0 }) else { return nil }
        return (u.outside, g.outside)
    }

    /// Only the user's own id is mapped (no /etc/subuid range): other owners cannot be set.
    public var isSingleID: Bool { uidMap.count == 1 && uidMap[0].count == 1 }

    /// Whether `uid` (and `gid`) exist here: a file can be given that owner.
    public func maps(uid: UInt32, gid: UInt32) -> Bool {
        Self.contains(uidMap, uid) && Self.contains(gidMap, gid)
    }

    /// The uid ranges mapped, for messages (`0-65536`).
    public var uidRangeText: String {
        uidMap.map { "\($0.inside)-\(UInt64($0.inside) + UInt64($0.count) - 1)" }.joined(separator: ",")
    }

    static func contains(_ map: [IDMapping], _ id: UInt32) -> Bool {
        map.contains { id >= $0.inside && UInt64(id) < UInt64($0.inside) + UInt64($0.count) }
    }

    /// Parses a uid_map or gid_map: lines of three numbers.
    public static func parseMap(_ text: String) -> [IDMapping] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count == 3, let a = UInt32(f[0]), let b = UInt32(f[1]), let c = UInt32(f[2]) else { return nil }
            return IDMapping(inside: a, outside: b, count: c)
        }
    }

    static func readMap(_ path: String) -> [IDMapping] {
        guard let f = try? FDHandle.open(path, flags: [.readOnly]), let bytes = try? f.readAll(limit: 1 << 16, label: path) else { return [] }
        return parseMap(String(decoding: bytes, as: UTF8.self))
    }
}

/// The home directory of a host user, from the host's password database (nil if unknown).
public func homeDirectory(ofHostUser uid: UInt32) -> String? {
    guard let pw = getpwuid(uid), let dir = pw.pointee.pw_dir else { return nil }
    let home = String(cString: dir)
    return home.hasPrefix("/") && home != "/" ? home : nil
}

/// Replaces this process with `argv[0]` (looked up in PATH) and its arguments; returns only on
/// failure, with why.
public func replaceProcess(_ argv: [String]) -> Errno {
    let cArgs = argv.map { strdup($0) } + [nil]
    execvp(argv[0], cArgs)
    return Errno.current
}

/// When process `pid` started (clock ticks after boot, field 22 of /proc/PID/stat): with the
/// pid, it names one process, never a later one that got the same pid.
public func processStartTime(_ pid: Int32) -> UInt64? {
    guard let f = try? FDHandle.open("/proc/\(pid)/stat", flags: [.readOnly]),
          let bytes = try? f.readAll(limit: 4096, label: "stat"),
          let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
    // After "(comm)": state is field 3, starttime field 22.
    let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "))
    guard fields.count > 19 else { return nil }
    return UInt64(String(decoding: fields[19], as: UTF8.self))
}

/// Ends process `pid` if it is still the one that started at `start`: SIGTERM, then SIGKILL
/// after `grace` seconds; reaped when it is this process's child.
public func terminateProcess(_ pid: Int32, start: UInt64, grace: Double) {
    func gone() -> Bool {
        var st: Int32 = 0
        if waitpid(pid, &st, WNOHANG) == pid { return true }
        guard processStartTime(pid) == start else { return true }
        // A zombie another process has yet to reap is gone too.
        guard let f = try? FDHandle.open("/proc/\(pid)/stat", flags: [.readOnly]),
              let bytes = try? f.readAll(limit: 4096, label: "stat"), let close = bytes.lastIndex(of: UInt8(ascii: ")")),
              bytes.count > close + 2 else { return true }
        return bytes[close + 2] == UInt8(ascii: "Z")
    }
    guard !gone() else { return }
    kill(pid, SIGTERM)
    var waited = 0.0
    while waited < grace {
        if gone() { return }
        usleep(10_000); waited += 0.01
    }
    kill(pid, SIGKILL)
    for _ in 0..<100 where !gone() { usleep(10_000) }
}
