import Foundation
import StrataCore

/// An OCI runtime-spec `config.json` (runtime-spec config.md, config-linux.md) for the same
/// container `strata run` would start: process, env, cwd, user, namespaces, mounts, limits,
/// capabilities, masked and read-only paths, and Docker's default seccomp profile resolved for
/// this machine and capability set. `runc run` takes it as it is.
public struct RuntimeSpec: Codable, Sendable {
    public var ociVersion = "1.0.2"
    public var process: Process
    public var root: Root
    public var hostname: String
    public var mounts: [Mount]
    public var linux: Linux

    /// The process runc starts.
    public struct Process: Codable, Sendable {
        public var terminal = false
        public var user: User
        public var args: [String]
        public var env: [String]
        public var cwd: String
        public var capabilities: Capabilities
        public var noNewPrivileges = true
    }
    /// Its uid, gid and groups.
    public struct User: Codable, Sendable {
        public var uid: UInt32
        public var gid: UInt32
        public var additionalGids: [UInt32]
    }
    /// Its capability sets.
    public struct Capabilities: Codable, Sendable {
        public var bounding: [String], effective: [String], permitted: [String]
    }
    /// The rootfs, relative to the bundle.
    public struct Root: Codable, Sendable {
        public var path = "rootfs"
        public var readonly: Bool
    }
    /// A mount in the container.
    public struct Mount: Codable, Sendable {
        public var destination: String
        public var type: String
        public var source: String
        public var options: [String]?
    }
    /// Linux specifics: namespaces, resources, masked and read-only paths, seccomp.
    public struct Linux: Codable, Sendable {
        public var namespaces: [Namespace]
        public var resources: Resources
        public var maskedPaths: [String]
        public var readonlyPaths: [String]
        public var seccomp: SeccompProfile
    }
    /// A namespace to create.
    public struct Namespace: Codable, Sendable { public var type: String }
    /// cgroup limits.
    public struct Resources: Codable, Sendable {
        public var memory: Memory?
        public var cpu: CPU?
        public var pids: Pids?
        public var devices: [Device]
    }
    /// Memory limit in bytes (swap the same: none extra).
    public struct Memory: Codable, Sendable { public var limit: Int64, swap: Int64 }
    /// CPU quota per period, in microseconds.
    public struct CPU: Codable, Sendable { public var quota: Int64, period: UInt64 }
    /// Process count limit.
    public struct Pids: Codable, Sendable { public var limit: Int64 }
    /// The device allowlist rule (deny all by default).
    public struct Device: Codable, Sendable { public var allow: Bool, access: String }

    /// The spec `run` would use, for runc: the same process, user, hostname, limits and security.
    public init(process spec: ProcessSpec, user: RootfsFiles.User, env: [String], hostname: String,
                limits: Limits, readOnly: Bool, hostNetwork: Bool) {
        let caps = CapabilitySet.dockerDefault.prefixedNames
        process = Process(user: User(uid: user.uid, gid: user.gid, additionalGids: user.groups), args: spec.args, env: env,
                          cwd: spec.cwd, capabilities: Capabilities(bounding: caps, effective: caps, permitted: caps))
        root = Root(readonly: readOnly)
        self.hostname = hostname
        mounts = [
            Mount(destination: "/proc", type: "proc", source: "proc"),
            Mount(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            Mount(destination: "/dev/pts", type: "devpts", source: "devpts",
                  options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
            Mount(destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            Mount(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
            Mount(destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
        ]
        var namespaces = ["pid", "ipc", "uts", "mount", "cgroup"].map(Namespace.init)
        if !hostNetwork { namespaces.append(Namespace(type: "network")) }
        let resources = Resources(memory: limits.memory.map { Memory(limit: $0, swap: $0) },
                                  cpu: limits.cpus.map { CPU(quota: Int64($0 * 100_000), period: 100_000) },
                                  pids: limits.pids.map(Pids.init), devices: [Device(allow: false, access: "rwm")])
        linux = Linux(namespaces: namespaces, resources: resources, maskedPaths: ProcfsPolicy.masked,
                      readonlyPaths: ProcfsPolicy.readOnly,
                      seccomp: RuntimeSpec.resolved(.dockerDefault, capabilities: .dockerDefault))
    }

    /// The JSON runc reads (sorted keys, slashes unescaped).
    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try e.encode(self)
    }

    /// A profile in the runtime spec's form (config-linux.md, "Seccomp"): Docker's rules with
    /// their capability, architecture and kernel conditions decided here, and the architectures
    /// of this machine.
    static func resolved(_ profile: SeccompProfile, capabilities: CapabilitySet,
                         machine: SeccompCompiler.Machine = .current) -> SeccompProfile {
        let native = ["amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "s390x": "SCMP_ARCH_S390X",
                      "riscv64": "SCMP_ARCH_RISCV64"][machine.arch]
        let arches = native.flatMap { n in profile.archMap?.first { $0.architecture == n }.map { [n] + ($0.subArchitectures ?? []) } }
        let rules = (profile.syscalls ?? []).filter { SeccompCompiler.applies($0, capabilities: capabilities, machine: machine) }.map {
            SeccompProfile.Rule(names: $0.allNames, action: $0.action, errnoRet: $0.errnoRet, args: $0.args)
        }
        return SeccompProfile(defaultAction: profile.defaultAction, defaultErrnoRet: profile.defaultErrnoRet,
                              architectures: arches, syscalls: rules)
    }
}
