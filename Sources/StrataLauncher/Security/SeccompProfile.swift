import FoundationEssentials
import StrataCore
import StrataSystem

/// A seccomp profile in Docker's JSON format (`docker run --security-opt seccomp=FILE`): a
/// default action, the architectures it covers, and rules that apply an action to named
/// syscalls, optionally only when argument comparisons hold, and only for some capability sets,
/// architectures or kernels.
public struct SeccompProfile: Codable, Sendable, Equatable {
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    public var architectures: [String]?
    public var archMap: [ArchMap]?
    public var syscalls: [Rule]?

    /// An architecture and its sub-architectures.
    public struct ArchMap: Codable, Sendable, Equatable {
        public var architecture: String
        public var subArchitectures: [String]?
    }

    /// A rule: syscalls, the action, its argument conditions and when it applies.
    public struct Rule: Codable, Sendable, Equatable {
        public var names: [String]?
        /// The older single-name form.
        public var name: String?
        public var action: String
        public var errnoRet: UInt32?
        public var args: [Arg]?
        public var includes: Filter?
        public var excludes: Filter?
        public var comment: String?

        /// A rule for `names` with `action` (allow by default).
        public init(names: [String], action: String = "SCMP_ACT_ALLOW", errnoRet: UInt32? = nil, args: [Arg]? = nil,
                    includes: Filter? = nil, excludes: Filter? = nil) {
            self.names = names; self.action = action; self.errnoRet = errnoRet; self.args = args
            self.includes = includes; self.excludes = excludes
        }

        var allNames: [String] { (names ?? []) + (name.map { [$0] } ?? []) }
    }

    /// A condition on one syscall argument.
    public struct Arg: Codable, Sendable, Equatable {
        public var index: UInt32
        public var value: UInt64
        public var valueTwo: UInt64?
        public var op: String
        /// Argument `index` compared with `value` (and `valueTwo` for masked equality) by `op`.
        public init(index: UInt32, value: UInt64, valueTwo: UInt64? = nil, op: String) {
            self.index = index; self.value = value; self.valueTwo = valueTwo; self.op = op
        }
    }

    /// When a rule applies: every listed capability held (includes) or any held (excludes), the
    /// machine's architecture (Go names: amd64, arm64, s390x, …) listed, the kernel at least
    /// `minKernel`.
    public struct Filter: Codable, Sendable, Equatable {
        public var caps: [String]?
        public var arches: [String]?
        public var minKernel: String?
        /// Applies with these capabilities, on these architectures, from this kernel on.
        public init(caps: [String]? = nil, arches: [String]? = nil, minKernel: String? = nil) {
            self.caps = caps; self.arches = arches; self.minKernel = minKernel
        }
    }

    /// A profile as Docker's JSON writes it.
    public init(defaultAction: String, defaultErrnoRet: UInt32? = nil, architectures: [String]? = nil,
                archMap: [ArchMap]? = nil, syscalls: [Rule]) {
        self.defaultAction = defaultAction; self.defaultErrnoRet = defaultErrnoRet
        self.architectures = architectures; self.archMap = archMap; self.syscalls = syscalls
    }

    /// Reads a profile file; errors name the file and what is wrong in it.
    public static func load(path: String) throws -> SeccompProfile {
        let h: FDHandle
        do { h = try FDHandle.open(path, flags: [.readOnly, .nonBlocking]) } catch let e as StrataError {
            throw StrataError(.notFound, "cannot read seccomp profile \(path)", cause: e.cause)
        }
        return try decode(try h.readAll(limit: 4 << 20, label: "seccomp profile \(path)"), path: path)
    }

    /// A profile from the JSON bytes of the file at `path` (named in the error).
    static func decode(_ bytes: [UInt8], path: String) throws -> SeccompProfile {
        do {
            return try JSONDecoder().decode(SeccompProfile.self, from: Data(bytes))
        } catch {
            throw StrataError(.invalidArgument, "seccomp profile \(path) is not a Docker seccomp profile: \(error)")
        }
    }
}

/// How a container is confined by seccomp.
public enum SeccompChoice: Sendable, Equatable {
    /// Docker's default profile (not applied with --privileged).
    case `default`
    case unconfined
    case profile(SeccompProfile, path: String)
}

extension SeccompProfile {
    /// Feeds every field that decides the program into `d`, each with its length, in a fixed
    /// order: two profiles that compile alike give the same bytes. Microseconds, where encoding
    /// Docker's profile to JSON to hash it took milliseconds of every start.
    func fingerprint(into d: inout Digester) {
        func add(_ s: String?) {
            let bytes = Array((s ?? "\u{0}").utf8)
            withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { d.update($0) }
            bytes.withUnsafeBytes { d.update($0) }
        }
        func add(_ list: [String]?) { add(list.map { "\($0.count)" }); list?.forEach { add($0) } }
        func add(_ n: UInt64?) { add(n.map { String($0) }) }
        add(defaultAction); add(defaultErrnoRet.map(UInt64.init)); add(architectures)
        add(archMap.map { "\($0.count)" })
        for m in archMap ?? [] { add(m.architecture); add(m.subArchitectures) }
        add(syscalls.map { "\($0.count)" })
        for r in syscalls ?? [] {
            add(r.names); add(r.name); add(r.action); add(r.errnoRet.map(UInt64.init))
            add(r.args.map { "\($0.count)" })
            for a in r.args ?? [] { add(UInt64(a.index)); add(a.value); add(a.valueTwo); add(a.op) }
            for f in [r.includes, r.excludes] { add(f == nil ? nil : "f"); add(f?.caps); add(f?.arches); add(f?.minKernel) }
        }
    }
}
