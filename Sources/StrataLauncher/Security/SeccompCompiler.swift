#if canImport(Glibc)
import Glibc
#endif
import CSeccomp
import CStrata
import StrataCore
import StrataSystem
import FoundationEssentials

/// Compiles a seccomp profile for this machine and a capability set into the classic BPF
/// program the kernel loads (`struct sock_filter[]`), with libseccomp. Done in the parent before
/// the clone: the child only hands the bytes to `seccomp(2)`.
public enum SeccompCompiler {
    /// Where compiled programs are kept between runs: per boot (the kernel cannot change under
    /// it), root's only; rootless, in the user's runtime directory (0700, docs/rootless.md).
    /// Compiling Docker's profile takes libseccomp about 13 ms, more than the rest of a
    /// container start.
    public static let cacheDirectory: String? = {
        guard UserNamespace.current.isRootless else { return "/run/strata/seccomp" }
        guard let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") else { return nil }
        return runtime + "/strata/seccomp"
    }()

    /// `compile`, through a cache keyed by everything the program depends on: the profile, the
    /// capabilities, the machine, and libseccomp's version. A cache that cannot be used is skipped.
    public static func cachedCompile(_ profile: SeccompProfile, capabilities: CapabilitySet,
                                     cacheDirectory: String? = cacheDirectory) throws -> [UInt8] {
        let machine = Machine.current
        guard let dir = cacheDirectory, let key = cacheKey(profile, capabilities: capabilities, machine: machine) else {
            return try compile(profile, capabilities: capabilities, machine: machine)
        }
        let path = dir + "/" + key + ".bpf"
        if let f = try? FDHandle.open(path, flags: [.readOnly, .noFollow]), let st = try? f.stat(),
           st.uid == 0, (st.mode & 0o022) == 0, let bytes = try? f.readAll(limit: 1 << 20, label: path),
           !bytes.isEmpty, bytes.count % 8 == 0 {
            return bytes
        }
        let program = try compile(profile, capabilities: capabilities, machine: machine)
        // Written whole under a unique name, then renamed: a reader never sees a partial program.
        let parent = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)])
        if parent.isEmpty || mkdir(parent, 0o700) == 0 || errno == EEXIST, mkdir(dir, 0o700) == 0 || errno == EEXIST {
            let tmp = path + ".\(getpid())"
            if let f = try? FDHandle.open(tmp, flags: [.writeOnly, .create, .exclusive, .noFollow], mode: 0o600) {
                if (try? f.writeAll(program)) != nil { rename(tmp, path) } else { unlink(tmp) }
            }
        }
        return program
    }

    static func cacheKey(_ profile: SeccompProfile, capabilities: CapabilitySet, machine: Machine) -> String? {
        guard let v = seccomp_version() else { return nil }
        var d = Digester()
        profile.fingerprint(into: &d)
        let tail = "|\(capabilities.mask)|\(machine.arch)|\(machine.kernel.0).\(machine.kernel.1)|\(v.pointee.major).\(v.pointee.minor).\(v.pointee.micro)"
        Array(tail.utf8).withUnsafeBytes { d.update($0) }
        return d.finalize().hex
    }

    /// The BPF program: 8 bytes per instruction.
    public static func compile(_ profile: SeccompProfile, capabilities: CapabilitySet,
                               machine: Machine = .current) throws -> [UInt8] {
        guard let defaultAction = action(profile.defaultAction, errno: profile.defaultErrnoRet) else {
            throw StrataError(.invalidArgument, "seccomp profile: unknown defaultAction \"\(profile.defaultAction)\"")
        }
        guard let ctx = seccomp_init(defaultAction) else {
            throw StrataError(.system, "seccomp: libseccomp cannot create a filter")
        }
        defer { seccomp_release(ctx) }

        // Architectures: the profile's list, or the native one and its sub-architectures.
        var arches = profile.architectures ?? []
        if let native = profile.archMap?.first(where: { libseccompArch($0.architecture) == seccomp_arch_native() }) {
            arches += [native.architecture] + (native.subArchitectures ?? [])
        }
        for name in arches {
            let arch = libseccompArch(name)
            guard arch != 0 else { throw StrataError(.invalidArgument, "seccomp profile: unknown architecture \"\(name)\"") }
            let rc = seccomp_arch_add(ctx, arch)
            guard rc == 0 || rc == -EEXIST else {
                throw StrataError(.system, "seccomp: cannot add architecture \(name)", cause: Errno(-rc))
            }
        }

        for rule in profile.syscalls ?? [] where applies(rule, capabilities: capabilities, machine: machine) {
            guard let act = action(rule.action, errno: rule.errnoRet) else {
                throw StrataError(.invalidArgument, "seccomp profile: unknown action \"\(rule.action)\" for \(rule.allNames.joined(separator: ", "))")
            }
            if act == defaultAction { continue }
            let args = try (rule.args ?? []).map { try comparison($0, rule: rule) }
            // Two comparisons of the same argument cannot be combined in one rule: each gets its own.
            let indices = args.map(\.arg)
            let groups = Set(indices).count == indices.count ? [args] : args.map { [$0] }
            for name in rule.allNames {
                let nr = seccomp_syscall_resolve_name(name)
                if nr == __NR_SCMP_ERROR { continue }  // not a syscall of this architecture
                for group in groups {
                    let rc = group.withUnsafeBufferPointer {
                        seccomp_rule_add_array(ctx, act, nr, UInt32($0.count), $0.baseAddress)
                    }
                    guard rc == 0 else {
                        throw StrataError(.invalidArgument, "seccomp profile: cannot add the rule for \(name)", cause: Errno(-rc))
                    }
                }
            }
        }

        // libseccomp writes the program to an fd: a memfd, read back whole.
        let fd = strata_memfd("strata-seccomp")
        guard fd >= 0 else { throw StrataError.errno(.system, "seccomp: cannot create a memfd") }
        let handle = FDHandle(owning: fd)
        let rc = seccomp_export_bpf(ctx, fd)
        guard rc == 0 else { throw StrataError(.system, "seccomp: cannot export the filter", cause: Errno(-rc)) }
        _ = lseek(fd, 0, SEEK_SET)
        let program = try handle.readAll(limit: 1 << 20, label: "seccomp filter")
        guard !program.isEmpty, program.count % 8 == 0, program.count / 8 <= 4096 else {
            throw StrataError(.invalidArgument, "seccomp: the profile compiles to \(program.count / 8) instructions; the kernel takes at most 4096")
        }
        return program
    }

    /// What a rule's conditions are checked against.
    public struct Machine: Sendable {
        /// Go's name for the architecture (amd64, arm64, …), as profiles spell it.
        public var arch: String
        public var kernel: (Int, Int)

        public static var current: Machine {
            var u = utsname()
            uname(&u)
            let machine = withUnsafeBytes(of: u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            let goArch = ["x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm", "s390x": "s390x",
                          "ppc64le": "ppc64le", "riscv64": "riscv64"][machine] ?? machine
            return Machine(arch: goArch, kernel: version(release) ?? (0, 0))
        }
    }

    static func version(_ s: String) -> (Int, Int)? {
        let parts = s.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : nil
    }

    static func applies(_ rule: SeccompProfile.Rule, capabilities: CapabilitySet, machine: Machine) -> Bool {
        if let inc = rule.includes {
            if let caps = inc.caps, !caps.allSatisfy({ capabilities.contains($0) }) { return false }
            if let arches = inc.arches, !arches.contains(machine.arch) { return false }
            if let min = inc.minKernel.flatMap(version), machine.kernel < min { return false }
        }
        if let exc = rule.excludes {
            if let caps = exc.caps, caps.contains(where: { capabilities.contains($0) }) { return false }
            if let arches = exc.arches, arches.contains(machine.arch) { return false }
            if let min = exc.minKernel.flatMap(version), machine.kernel >= min { return false }
        }
        return true
    }

    /// libseccomp's action value for a Docker action name.
    static func action(_ name: String, errno: UInt32?) -> UInt32? {
        let err = (errno ?? UInt32(EPERM)) & 0xffff
        switch name {
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return 0
        case "SCMP_ACT_KILL_PROCESS": return 0x8000_0000
        case "SCMP_ACT_TRAP": return 0x0003_0000
        case "SCMP_ACT_ERRNO": return 0x0005_0000 | err
        case "SCMP_ACT_TRACE": return 0x7ff0_0000 | err
        case "SCMP_ACT_LOG": return 0x7ffc_0000
        case "SCMP_ACT_ALLOW": return 0x7fff_0000
        default: return nil
        }
    }

    static func libseccompArch(_ name: String) -> UInt32 {
        var n = name
        if n.hasPrefix("SCMP_ARCH_") { n.removeFirst(10) }
        return seccomp_arch_resolve_name(n.lowercased())
    }

    static func comparison(_ a: SeccompProfile.Arg, rule: SeccompProfile.Rule) throws -> scmp_arg_cmp {
        let ops: [String: scmp_compare] = [
            "SCMP_CMP_NE": SCMP_CMP_NE, "SCMP_CMP_LT": SCMP_CMP_LT, "SCMP_CMP_LE": SCMP_CMP_LE,
            "SCMP_CMP_EQ": SCMP_CMP_EQ, "SCMP_CMP_GE": SCMP_CMP_GE, "SCMP_CMP_GT": SCMP_CMP_GT,
            "SCMP_CMP_MASKED_EQ": SCMP_CMP_MASKED_EQ,
        ]
        guard let op = ops[a.op], a.index < 6 else {
            throw StrataError(.invalidArgument, "seccomp profile: bad argument comparison (index \(a.index), op \"\(a.op)\") for \(rule.allNames.joined(separator: ", "))")
        }
        return scmp_arg_cmp(arg: a.index, op: op, datum_a: a.value, datum_b: a.valueTwo ?? 0)
    }
}
