#if canImport(Glibc)
import Glibc
#endif
import StrataCore
import StrataSystem

/// A set of Linux capabilities, as a bit mask by capability number.
public struct CapabilitySet: Equatable, Sendable {
    public var mask: UInt64

    /// A set from its bit mask (bit N is capability N).
    public init(mask: UInt64) { self.mask = mask }

    /// Every capability this process holds (its permitted set, from /proc/self/status): what a
    /// privileged container gets. Root in a restricted sandbox may lack some of the kernel's.
    public static var all: CapabilitySet {
        guard let f = try? FDHandle.open("/proc/self/status", flags: .readOnly),
              let bytes = try? f.readAll(limit: 1 << 16, label: "/proc/self/status") else { return CapabilitySet(mask: 0) }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("CapPrm:") {
            let hex = line.dropFirst(7).filter { !$0.isWhitespace }
            return CapabilitySet(mask: UInt64(hex, radix: 16) ?? 0)
        }
        return CapabilitySet(mask: 0)
    }

    /// Docker's default set (moby oci/caps/defaults.go).
    public static let dockerDefault = CapabilitySet(names: [
        "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE",
        "NET_RAW", "SYS_CHROOT", "MKNOD", "AUDIT_WRITE", "SETFCAP",
    ])

    /// The kernel's names, by number (linux/capability.h), without the CAP_ prefix.
    public static let names = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE",
    ]

    init(names: [String]) {
        mask = names.reduce(0) { m, n in m | (Self.names.firstIndex(of: n).map { UInt64(1) << UInt64($0) } ?? 0) }
    }

    /// The number of a capability named as Docker accepts it: `NET_ADMIN`, `CAP_NET_ADMIN`,
    /// any case. Nil for a name the kernel does not have.
    public static func number(_ name: String) -> Int? {
        var n = name.uppercased()
        if n.hasPrefix("CAP_") { n.removeFirst(4) }
        return names.firstIndex(of: n)
    }

    /// The set of a runtime spec's names (`CAP_CHOWN`, …); a name the kernel lacks throws.
    public init(specNames: [String]) throws {
        mask = 0
        for name in specNames {
            guard let n = Self.number(name) else {
                throw StrataError(.invalidFormat, "capability \"\(name)\" in config.json: no such capability on this kernel")
            }
            mask |= UInt64(1) << UInt64(n)
        }
    }

    /// Whether the set holds `name` (`CAP_` prefix optional).
    public func contains(_ name: String) -> Bool {
        guard let n = Self.number(name) else { return false }
        return mask & (UInt64(1) << UInt64(n)) != 0
    }

    /// The names in the set, `CAP_` prefixed (OCI and seccomp profiles spell them so).
    public var prefixedNames: [String] {
        Self.names.enumerated().filter { mask & (UInt64(1) << UInt64($0.offset)) != 0 }.map { "CAP_" + $0.element }
    }

    /// Docker's rule for `--cap-add` and `--cap-drop`: start from the default set, drop what
    /// is dropped (`ALL` drops everything), then add what is added (`ALL` adds everything).
    public static func resolve(add: [String], drop: [String], privileged: Bool) throws -> CapabilitySet {
        if privileged { return .all }
        var set = CapabilitySet.dockerDefault
        func bits(_ list: [String], flag: String) throws -> UInt64? {
            var m: UInt64 = 0
            for name in list {
                if name.uppercased() == "ALL" { return nil }
                guard let n = number(name) else {
                    throw StrataError(.invalidArgument, "invalid \(flag) \"\(name)\": no such capability (e.g. NET_ADMIN, SYS_PTRACE, ALL)")
                }
                m |= UInt64(1) << UInt64(n)
            }
            return m
        }
        let dropped = try bits(drop, flag: "--cap-drop")
        let added = try bits(add, flag: "--cap-add")
        if let dropped { set.mask &= ~dropped } else { set.mask = 0 }
        let held = CapabilitySet.all
        if let added {
            let missing = CapabilitySet(mask: added & ~held.mask)
            guard missing.mask == 0 else {
                throw StrataError(.invalidArgument, "cannot add \(missing.prefixedNames.joined(separator: ", ")): strata itself does not hold it here")
            }
            set.mask |= added
        } else {
            set = held
        }
        return CapabilitySet(mask: set.mask & held.mask)
    }
}
