import StrataCore

/// What confines the container beyond its namespaces: capabilities, seccomp, and whether it is
/// privileged (every capability, no seccomp unless a profile is given, /sys and its cgroups
/// writable, nothing masked in /proc, every device allowed), as Docker's flags of the same names.
public struct SecurityOptions: Sendable, Equatable {
    public var privileged: Bool
    public var capAdd: [String]
    public var capDrop: [String]
    public var seccomp: SeccompChoice
    /// `--security-opt no-new-privileges`: setuid and file capabilities no longer raise what a
    /// process may do. Off by default, as in Docker and podman (so `su`, `sudo` and `ping` work).
    public var noNewPrivileges: Bool

    /// Options as `--privileged`, `--cap-add`, `--cap-drop` and `--security-opt` give them.
    public init(privileged: Bool = false, capAdd: [String] = [], capDrop: [String] = [], seccomp: SeccompChoice = .default,
                noNewPrivileges: Bool = false) {
        self.privileged = privileged; self.capAdd = capAdd; self.capDrop = capDrop; self.seccomp = seccomp
        self.noNewPrivileges = noNewPrivileges
    }

    /// Docker's `--security-opt` values that strata knows: `seccomp=unconfined`,
    /// `seccomp=PROFILE.json`, and `no-new-privileges[=true|false]`.
    public mutating func apply(securityOpt: [String]) throws {
        for opt in securityOpt {
            let kv = opt.split(separator: "=", maxSplits: 1).map(String.init)
            let key = kv[0], value = kv.count > 1 ? kv[1] : ""
            switch key {
            case "seccomp" where value == "unconfined": seccomp = .unconfined
            case "seccomp" where !value.isEmpty: seccomp = .profile(try SeccompProfile.load(path: value), path: value)
            case "no-new-privileges" where value.isEmpty || value == "true": noNewPrivileges = true
            case "no-new-privileges" where value == "false": noNewPrivileges = false
            default:
                throw StrataError(.invalidArgument, "invalid --security-opt \"\(opt)\": expected seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges")
            }
        }
    }

    /// The capabilities and the seccomp filter a container gets: what its spec holds.
    public struct Resolved: Sendable, Equatable {
        public var capabilities: CapabilitySet
        /// The filter in the runtime spec's form; nil for none (unconfined, or privileged).
        public var seccomp: SeccompProfile?
    }

    /// Resolves the flags for this machine: the capability set by Docker's rule, the profile's
    /// conditions decided for it. A bad capability or profile throws; a profile is compiled
    /// once here (into the cache the launcher reads), so one libseccomp refuses is refused
    /// before anything exists.
    public func resolve() throws -> Resolved {
        let caps = try CapabilitySet.resolve(add: capAdd, drop: capDrop, privileged: privileged)
        let profile: SeccompProfile?
        switch seccomp {
        case .unconfined: profile = nil
        case .default: profile = privileged ? nil : RuntimeSpec.resolved(.dockerDefault, capabilities: caps)
        case .profile(let p, _): profile = RuntimeSpec.resolved(p, capabilities: caps)
        }
        if let profile {
            do { _ = try SeccompCompiler.cachedCompile(profile, capabilities: caps) } catch let e as StrataError {
                if case .profile(_, let path) = seccomp { throw e.context("seccomp profile \(path)") }
                throw e
            }
        }
        return Resolved(capabilities: caps, seccomp: profile)
    }

}
