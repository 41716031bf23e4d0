#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import StrataCore

/// Resource limits (`--ulimit`, the runtime spec's `process.rlimits`): Docker's names, the
/// spec's `RLIMIT_*` names and the kernel's numbers.
public enum Rlimits {
    /// Docker's `--ulimit` names and the resources they set.
    static let table: [(docker: String, spec: String, resource: Int32)] = [
        ("as", "RLIMIT_AS", 9), ("core", "RLIMIT_CORE", 4), ("cpu", "RLIMIT_CPU", 0), ("data", "RLIMIT_DATA", 2),
        ("fsize", "RLIMIT_FSIZE", 1), ("locks", "RLIMIT_LOCKS", 10), ("memlock", "RLIMIT_MEMLOCK", 8),
        ("msgqueue", "RLIMIT_MSGQUEUE", 12), ("nice", "RLIMIT_NICE", 13), ("nofile", "RLIMIT_NOFILE", 7),
        ("nproc", "RLIMIT_NPROC", 6), ("rss", "RLIMIT_RSS", 5), ("rtprio", "RLIMIT_RTPRIO", 14),
        ("rttime", "RLIMIT_RTTIME", 15), ("sigpending", "RLIMIT_SIGPENDING", 11), ("stack", "RLIMIT_STACK", 3),
    ]

    /// `NAME=SOFT[:HARD]` (a value alone sets both; -1 is unlimited), as Docker's `--ulimit`.
    public static func parse(_ s: String) throws -> RuntimeSpec.Rlimit {
        func bad(_ why: String) -> StrataError { StrataError(.invalidArgument, "invalid --ulimit \"\(s)\": \(why)") }
        let kv = s.split(separator: "=", maxSplits: 1).map(String.init)
        guard kv.count == 2, let entry = table.first(where: { $0.docker == kv[0] }) else {
            throw bad("expected NAME=SOFT[:HARD] with NAME one of \(table.map(\.docker).joined(separator: ", "))")
        }
        let values = kv[1].split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func value(_ v: String) throws -> UInt64 {
            if v == "-1" || v == "unlimited" { return UInt64.max }
            guard let n = UInt64(v) else { throw bad("\"\(v)\" is not a number") }
            return n
        }
        guard (1...2).contains(values.count) else { throw bad("expected SOFT or SOFT:HARD") }
        let soft = try value(values[0]), hard = try values.count == 2 ? value(values[1]) : soft
        return RuntimeSpec.Rlimit(type: entry.spec, hard: hard, soft: soft)
    }

    /// The kernel's form of a spec's limits; an unknown type is refused, naming it.
    static func kernel(_ limits: [RuntimeSpec.Rlimit]?) throws -> [strata_rlimit] {
        try (limits ?? []).map { l in
            guard let entry = table.first(where: { $0.spec == l.type }) else {
                throw StrataError(.invalidFormat, "the spec's rlimit \"\(l.type)\" is not one strata knows (\(table.map(\.spec).joined(separator: ", ")))")
            }
            return strata_rlimit(resource: entry.resource, soft: l.soft, hard: l.hard)
        }
    }
}

extension RuntimeSpec {
    /// The size of /dev/shm the spec asks for (its tmpfs's `size=` option), in bytes; nil for the default.
    var shmSize: UInt64? {
        guard let m = mounts.first(where: { $0.destination == "/dev/shm" }),
              let opt = m.options?.first(where: { $0.hasPrefix("size=") }) else { return nil }
        let v = opt.dropFirst(5)
        let units: [Character: UInt64] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30]
        if let last = v.last, let unit = units[Character(last.lowercased())], let n = UInt64(v.dropLast()) { return n * unit }
        return UInt64(v)
    }
}
