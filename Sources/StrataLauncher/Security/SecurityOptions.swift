import StrataCore

/// What confines the container beyond its namespaces: capabilities, seccomp, and whether it is
/// privileged (every capability, no seccomp unless a profile is given, /sys and its cgroups
/// writable, nothing masked in /proc, every device allowed), as Docker's flags of the same names.
public struct SecurityOptions: Sendable, Equatable {
    public var privileged: Bool
    public var capAdd: [String]
    public var capDrop: [String]
    public var seccomp: SeccompChoice

    /// Options as `--privileged`, `--cap-add`, `--cap-drop` and `--security-opt seccomp=` give them.
    public init(privileged: Bool = false, capAdd: [String] = [], capDrop: [String] = [], seccomp: SeccompChoice = .default) {
        self.privileged = privileged; self.capAdd = capAdd; self.capDrop = capDrop; self.seccomp = seccomp
    }

    /// Docker's `--security-opt` values that strata knows: `seccomp=unconfined`,
    /// `seccomp=PROFILE.json`, and `no-new-privileges` (always on here).
    public mutating func apply(securityOpt: [String]) throws {
        for opt in securityOpt {
            let kv = opt.split(separator: "=", maxSplits: 1).map(String.init)
            let key = kv[0], value = kv.count > 1 ? kv[1] : ""
            switch key {
            case "seccomp" where value == "unconfined": seccomp = .unconfined
            case "seccomp" where !value.isEmpty: seccomp = .profile(try SeccompProfile.load(path: value), path: value)
            case "no-new-privileges" where value.isEmpty || value == "true": break
            default:
                throw StrataError(.invalidArgument, "invalid --security-opt \"\(opt)\": expected seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges")
            }
        }
    }

    /// What `resolve()` found, kept so that checking the flags early does not compile twice.
    public private(set) var resolved: Resolved?

    /// The capabilities and seccomp program a container gets, worked out once.
    public struct Resolved: Sendable, Equatable {
        public var capabilities: CapabilitySet
        /// The BPF program; nil for none.
        public var seccomp: [UInt8]?
    }

    /// Resolves the flags for this machine (a bad profile or capability throws) and keeps the result.
    @discardableResult
    public mutating func resolve() throws -> Resolved {
        if let resolved { return resolved }
        let (caps, program) = try compute()
        resolved = Resolved(capabilities: caps, seccomp: program)
        return resolved!
    }

    private func compute() throws -> (CapabilitySet, [UInt8]?) {
        let caps = try CapabilitySet.resolve(add: capAdd, drop: capDrop, privileged: privileged)
        switch seccomp {
        case .unconfined: return (caps, nil)
        case .default: return (caps, privileged ? nil : try SeccompCompiler.cachedCompile(.dockerDefault, capabilities: caps, builtIn: true))
        case .profile(let p, let path):
            do { return (caps, try SeccompCompiler.cachedCompile(p, capabilities: caps)) } catch let e as StrataError {
                throw e.context("seccomp profile \(path)")
            }
        }
    }
}
