#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import StrataCore
import StrataSystem

/// One rule of a container's device allowlist: a device type, major and minor (nil for any) and
/// the access it allows. cgroup v1 writes it to `devices.allow`; cgroup v2 compiles the list
/// into a BPF program attached to the container's cgroup (`devicefilter.c`).
public struct DeviceRule: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Character, Sendable { case all = "a", char = "c", block = "b" }
    /// What a process may do with the device: read, write, mknod.
    public struct Access: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        // The kernel's BPF_DEVCG_ACC_* values.
        public static let mknod = Access(rawValue: STRATA_DEV_MKNOD)
        public static let read = Access(rawValue: STRATA_DEV_READ)
        public static let write = Access(rawValue: STRATA_DEV_WRITE)
        public static let rwm: Access = [.read, .write, .mknod]

        /// Access from its letters (`rwm`, `r`, `m`…); nil for any other letter.
        public init?(letters: String) {
            var a: Access = []
            for c in letters {
                switch c {
                case "r": a.insert(.read)
                case "w": a.insert(.write)
                case "m": a.insert(.mknod)
                default: return nil
                }
            }
            self = a
        }

        /// The letters of the access, in the order `devices.allow` writes them.
        public var letters: String {
            (contains(.read) ? "r" : "") + (contains(.write) ? "w" : "") + (contains(.mknod) ? "m" : "")
        }
    }

    public var kind: Kind
    public var major: Int64?
    public var minor: Int64?
    public var access: Access

    /// A rule; nil major or minor matches any.
    public init(_ kind: Kind, _ major: Int64?, _ minor: Int64?, _ access: Access) {
        self.kind = kind; self.major = major; self.minor = minor; self.access = access
    }

    /// The rule as `devices.allow` takes it: `c 1:3 rwm`, `c *:* m`.
    public var description: String {
        let number = { (n: Int64?) in n.map(String.init) ?? "*" }
        return "\(kind.rawValue) \(number(major)):\(number(minor)) \(access.letters)"
    }

    /// What every container may use (Docker's default devices): making any device node (opening
    /// one is what counts), and the nodes of its own /dev: null, zero, full, random, urandom,
    /// tty, console, ptmx and its ptys. `--privileged` lifts the list; `/dev/net/tun` is not in it.
    public static let defaults: [DeviceRule] = [
        DeviceRule(.char, nil, nil, .mknod),
        DeviceRule(.block, nil, nil, .mknod),
        DeviceRule(.char, 1, 3, .rwm),   // null
        DeviceRule(.char, 1, 5, .rwm),   // zero
        DeviceRule(.char, 1, 7, .rwm),   // full
        DeviceRule(.char, 1, 8, .rwm),   // random
        DeviceRule(.char, 1, 9, .rwm),   // urandom
        DeviceRule(.char, 5, 0, .rwm),   // tty
        DeviceRule(.char, 5, 1, .rwm),   // console
        DeviceRule(.char, 5, 2, .rwm),   // ptmx
        DeviceRule(.char, 136, nil, .rwm),  // pts/N
    ]
}

/// The cgroup v2 form of the allowlist.
public enum DeviceFilter {
    /// The BPF instructions of `rules` (8 bytes each), as they would be loaded.
    public static func program(_ rules: [DeviceRule]) throws -> [UInt64] {
        let c = cRules(rules)
        var out = [UInt64](repeating: 0, count: strata_devicefilter_max_insns(c.count))
        var count = 0
        let rc = out.withUnsafeMutableBufferPointer { strata_devicefilter_build(c, c.count, $0.baseAddress, $0.count, &count) }
        guard rc == 0 else { throw StrataError(.invalidArgument, "cannot express the device rules \(rules) as a BPF program", cause: Errno(rc)) }
        return Array(out.prefix(count))
    }

    /// Loads the program of `rules` and attaches it to the cgroup directory `dir`: from then on,
    /// a process there opens or makes only the devices a rule allows.
    public static func attach(_ rules: [DeviceRule], to dir: String) throws {
        let c = cRules(rules)
        var log = [CChar](repeating: 0, count: 4096)
        var prog: Int32 = -1
        let rc = strata_devicefilter_load(c, c.count, &prog, &log, log.count)
        guard rc == 0 else {
            let verifier = String(cString: log).split(separator: "\n").suffix(3).joined(separator: "; ")
            throw StrataError(.system, "cannot load the device allowlist (a BPF program) for cgroup \(dir)"
                              + (rc == EPERM ? " (bpf needs CAP_SYS_ADMIN, and on kernels before 5.11 a large enough RLIMIT_MEMLOCK)" : "")
                              + (verifier.isEmpty ? "" : " (verifier: \(verifier))"), cause: Errno(rc))
        }
        defer { close(prog) }
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StrataError.errno(.system, "cannot open cgroup \(dir) to attach its device allowlist") }
        defer { close(fd) }
        let arc = strata_devicefilter_attach(fd, prog)
        guard arc == 0 else {
            throw StrataError(.system, "cannot attach the device allowlist (a BPF program) to cgroup \(dir)"
                              + (arc == EINVAL ? " (this kernel may lack CONFIG_CGROUP_BPF)" : ""), cause: Errno(arc))
        }
    }

    private static func cRules(_ rules: [DeviceRule]) -> [strata_device_rule] {
        rules.map { r in
            strata_device_rule(type: CChar(bitPattern: UInt8(r.kind.rawValue.asciiValue!)), major: r.major ?? -1,
                               minor: r.minor ?? -1, access: r.access.rawValue)
        }
    }
}
