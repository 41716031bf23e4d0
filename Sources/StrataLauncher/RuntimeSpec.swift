import FoundationEssentials
import StrataCore
import StrataSystem

/// One container's OCI runtime spec (runtime-spec config.md, config-linux.md): every decision
/// about what it runs and how, made once by the engine and kept as `config.json` in the
/// container's folder. strata's launcher, its monitor and `bundle` read it; `runc run -b` takes
/// the same folder as a bundle. What the spec has no field for is in `annotations`
/// (`Annotation`). docs/container-spec.md says which field each flag lands in.
public struct RuntimeSpec: Codable, Sendable, Equatable {
    public var ociVersion = "1.0.2"
    public var process: Process
    public var root: Root
    public var hostname: String?
    /// The standard mounts (`standardMounts`, made by strata's launcher itself), then the
    /// /etc files and the volumes in the order they are mounted.
    public var mounts: [Mount]
    public var annotations: [String: String]?
    /// Programs run around the start (bridge networking lands here).
    public var hooks: Hooks?
    public var linux: Linux

    /// The process the container runs.
    public struct Process: Codable, Sendable, Equatable {
        public var terminal: Bool?
        public var user: User
        public var args: [String]
        /// Complete: the image's and the flags', `PATH`, `HOME`, `HOSTNAME` (and `TERM`).
        public var env: [String]
        public var cwd: String
        public var capabilities: Capabilities?
        public var noNewPrivileges: Bool?
        /// `--ulimit` lands here.
        public var rlimits: [Rlimit]?
        public init(terminal: Bool? = nil, user: User, args: [String], env: [String], cwd: String, capabilities: Capabilities? = nil,
                    noNewPrivileges: Bool? = nil, rlimits: [Rlimit]? = nil) {
            self.terminal = terminal; self.user = user; self.args = args; self.env = env; self.cwd = cwd
            self.capabilities = capabilities; self.noNewPrivileges = noNewPrivileges; self.rlimits = rlimits
        }
    }
    /// Its uid, gid and supplementary groups, resolved from the image's files.
    public struct User: Codable, Sendable, Equatable {
        public var uid: UInt32
        public var gid: UInt32
        public var additionalGids: [UInt32]?
        public init(uid: UInt32, gid: UInt32, additionalGids: [UInt32]? = nil) { self.uid = uid; self.gid = gid; self.additionalGids = additionalGids }
    }
    /// Its capability sets (`CAP_` names).
    public struct Capabilities: Codable, Sendable, Equatable {
        public var bounding: [String]?, effective: [String]?, permitted: [String]?
        public init(bounding: [String]?, effective: [String]?, permitted: [String]?) {
            self.bounding = bounding; self.effective = effective; self.permitted = permitted
        }
    }
    /// A resource limit of the process.
    public struct Rlimit: Codable, Sendable, Equatable {
        public var type: String, hard: UInt64, soft: UInt64
        public init(type: String, hard: UInt64, soft: UInt64) { self.type = type; self.hard = hard; self.soft = soft }
    }
    /// The rootfs: relative to the bundle (the container's folder), or absolute.
    public struct Root: Codable, Sendable, Equatable {
        public var path: String
        public var readonly: Bool?
        public init(path: String, readonly: Bool? = nil) { self.path = path; self.readonly = readonly }
    }
    /// A mount in the container.
    public struct Mount: Codable, Sendable, Equatable {
        public var destination: String
        public var type: String?
        public var source: String?
        public var options: [String]?
        public init(destination: String, type: String? = nil, source: String? = nil, options: [String]? = nil) {
            self.destination = destination; self.type = type; self.source = source; self.options = options
        }
    }
    /// Hooks by the point of the start they run at.
    public struct Hooks: Codable, Sendable, Equatable {
        public var createRuntime: [Hook]?, poststart: [Hook]?, poststop: [Hook]?
        public init(createRuntime: [Hook]? = nil, poststart: [Hook]? = nil, poststop: [Hook]? = nil) {
            self.createRuntime = createRuntime; self.poststart = poststart; self.poststop = poststop
        }
    }
    /// One hook: a program on the host.
    public struct Hook: Codable, Sendable, Equatable {
        public var path: String
        public var args: [String]?
        public var env: [String]?
        public var timeout: Int?
        public init(path: String, args: [String]? = nil, env: [String]? = nil, timeout: Int? = nil) {
            self.path = path; self.args = args; self.env = env; self.timeout = timeout
        }
    }
    /// Linux specifics.
    public struct Linux: Codable, Sendable, Equatable {
        /// The namespaces to make; one with a `path` is joined (`--network container:ID`).
        public var namespaces: [Namespace]
        /// Rootless id mappings land here.
        public var uidMappings: [IDMapping]?
        public var gidMappings: [IDMapping]?
        public var resources: Resources?
        public var maskedPaths: [String]?
        public var readonlyPaths: [String]?
        /// The seccomp filter in the spec's resolved form; nil for none (unconfined, privileged).
        public var seccomp: SeccompProfile?
        /// Device nodes made in the container (`--device`), below /dev.
        public var devices: [LinuxDevice]?
        public init(namespaces: [Namespace], uidMappings: [IDMapping]? = nil, gidMappings: [IDMapping]? = nil, resources: Resources? = nil,
                    maskedPaths: [String]? = nil, readonlyPaths: [String]? = nil, seccomp: SeccompProfile? = nil, devices: [LinuxDevice]? = nil) {
            self.namespaces = namespaces; self.uidMappings = uidMappings; self.gidMappings = gidMappings; self.resources = resources
            self.maskedPaths = maskedPaths; self.readonlyPaths = readonlyPaths; self.seccomp = seccomp; self.devices = devices
        }
    }
    /// A device node in the container (config-linux.md, "Devices").
    public struct LinuxDevice: Codable, Sendable, Equatable {
        public var path: String
        /// `c` or `b`.
        public var type: String
        public var major: Int64
        public var minor: Int64
        public var fileMode: UInt32?
        public var uid: UInt32?
        public var gid: UInt32?
        public init(path: String, type: String, major: Int64, minor: Int64, fileMode: UInt32?, uid: UInt32? = 0, gid: UInt32? = 0) {
            self.path = path; self.type = type; self.major = major; self.minor = minor; self.fileMode = fileMode; self.uid = uid; self.gid = gid
        }
    }
    /// A namespace to make or join.
    public struct Namespace: Codable, Sendable, Equatable {
        public var type: String
        public var path: String?
        public init(type: String, path: String? = nil) { self.type = type; self.path = path }
    }
    /// A range of ids in the container mapped to the host's.
    public struct IDMapping: Codable, Sendable, Equatable {
        public var containerID: UInt32, hostID: UInt32, size: UInt32
        public init(containerID: UInt32, hostID: UInt32, size: UInt32) { self.containerID = containerID; self.hostID = hostID; self.size = size }
    }
    /// cgroup limits and the device allowlist.
    public struct Resources: Codable, Sendable, Equatable {
        public var memory: Memory?
        public var cpu: CPU?
        public var pids: Pids?
        /// Deny all first, then the devices allowed; one rule allowing all under --privileged.
        public var devices: [Device]?
        public init(memory: Memory? = nil, cpu: CPU? = nil, pids: Pids? = nil, devices: [Device]? = nil) {
            self.memory = memory; self.cpu = cpu; self.pids = pids; self.devices = devices
        }
    }
    /// Memory limit in bytes (swap the same: none extra).
    public struct Memory: Codable, Sendable, Equatable {
        public var limit: Int64?, swap: Int64?
        public init(limit: Int64?, swap: Int64?) { self.limit = limit; self.swap = swap }
    }
    /// CPU quota per period, in microseconds.
    public struct CPU: Codable, Sendable, Equatable {
        public var quota: Int64?, period: UInt64?
        public init(quota: Int64?, period: UInt64?) { self.quota = quota; self.period = period }
    }
    /// Process count limit.
    public struct Pids: Codable, Sendable, Equatable {
        public var limit: Int64
        public init(limit: Int64) { self.limit = limit }
    }
    /// One device rule: type `a`, `c` or `b`, nil numbers for any, access `rwm`.
    public struct Device: Codable, Sendable, Equatable {
        public var allow: Bool
        public var type: String?
        public var major: Int64?
        public var minor: Int64?
        public var access: String?
        public init(allow: Bool, type: String? = nil, major: Int64? = nil, minor: Int64? = nil, access: String? = nil) {
            self.allow = allow; self.type = type; self.major = major; self.minor = minor; self.access = access
        }
    }

    /// strata's own facts, which the runtime spec has no field for.
    public enum Annotation {
        /// `open` (`run -di`) or `once` (`create -i`: the end of an attached client's input closes
        /// it): the container's stdin is a pipe its monitor holds for `attach`.
        public static let stdin = "io.strata.stdin"
        /// The user as it was asked for (`app`, `1000:1000`): `exec` resolves it again.
        public static let user = "io.strata.user"
        /// "true" when `HOME` in the environment came from the user's /etc/passwd entry (an
        /// `exec` as another user then gets that user's).
        public static let homeFromUser = "io.strata.home-from-user"
        /// "true": strata-init runs as pid 1 and starts the process (`--init`).
        public static let initProcess = "io.strata.init"
        /// "true": `--privileged` (/sys and the cgroup view writable).
        public static let privileged = "io.strata.privileged"
        /// "true": the container is removed when it exits (`--rm`).
        public static let remove = "io.strata.remove"
        /// Bytes at which a detached container's log is rotated.
        public static let logMaxSize = "io.strata.log-max-size"
        /// Rootless `--device`: "CONTAINER-PATH<tab>HOST-PATH" lines, the host nodes bound in.
        public static let deviceSources = "io.strata.device-sources"
        /// `io.strata.label.KEY`: the container's label KEY (`--label`), kept apart from strata's
        /// own annotations so that no label can pass for one of them.
        public static let labelPrefix = "io.strata.label."
        /// `--add-host`: "NAME ADDRESS" lines for /etc/hosts.
        public static let addHosts = "io.strata.add-hosts"
        /// `--dns`, `--dns-search`, `--dns-option`: one value per line for /etc/resolv.conf.
        public static let dns = "io.strata.dns"
        public static let dnsSearch = "io.strata.dns-search"
        public static let dnsOptions = "io.strata.dns-options"
        /// `--restart`: the policy (`always`, `unless-stopped`, `on-failure[:N]`).
        public static let restart = "io.strata.restart"
        /// `--stop-timeout`: seconds `stop` waits before SIGKILL when not given `-t`.
        public static let stopTimeout = "io.strata.stop-timeout"
        /// `--network` and the flags with it (JSON): the networks, addresses, aliases and
        /// published ports, set up at each start (docs/networking.md). Absent: `none`.
        public static let network = "io.strata.network"
        /// The signal `stop` sends first (the name podman and containerd use).
        public static let stopSignal = "org.opencontainers.image.stopSignal"
    }

    /// The mounts every container has, as runc's default spec lists them. strata's launcher
    /// makes these itself (launch.c: /proc, /dev with its nodes, /dev/pts, /dev/shm, /sys and
    /// the container's cgroup view); they are in the spec for other runtimes.
    public static let standardMounts = [
        Mount(destination: "/proc", type: "proc", source: "proc"),
        Mount(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount(destination: "/dev/pts", type: "devpts", source: "devpts",
              options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
        Mount(destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        Mount(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
        Mount(destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
        Mount(destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"]),
    ]

    /// Whether `m` is one of the mounts the launcher makes itself (`standardMounts`, whatever
    /// its options): the same destination, type and source.
    public static func isStandard(_ m: Mount) -> Bool {
        standardMounts.contains { $0.destination == m.destination && $0.type == m.type && $0.source == m.source }
    }

    /// The spec's name in a bundle.
    public static let fileName = "config.json"

    public init(process: Process, root: Root, hostname: String?, mounts: [Mount], annotations: [String: String]?, linux: Linux) {
        self.process = process; self.root = root; self.hostname = hostname; self.mounts = mounts
        self.annotations = annotations; self.linux = linux
    }

    /// An annotation's value, or nil.
    /// The container's own labels (`--label`), from their annotations.
    public var labels: [String: String] {
        var out: [String: String] = [:]
        for (k, v) in annotations ?? [:] where k.hasPrefix(Annotation.labelPrefix) { out[String(k.dropFirst(Annotation.labelPrefix.count))] = v }
        return out
    }

    public func annotation(_ key: String) -> String? { annotations?[key] }
    /// Whether an annotation is "true".
    public func flag(_ key: String) -> Bool { annotations?[key] == "true" }

    /// The JSON runc reads (sorted keys, slashes unescaped).
    public func json() throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try e.encode(self))
    }

    /// Writes `config.json` into `directory` (whole, then renamed into place).
    public func write(into directory: String) throws {
        try Directory.open(directory).writeFileAtomically(Array(RuntimeSpec.fileName.utf8), try json())
    }

    /// The spec in `directory`'s `config.json`; nil when there is none.
    public static func read(from directory: String) throws -> RuntimeSpec? {
        let path = directory + "/" + fileName
        guard let f = try? FDHandle.open(path, flags: [.readOnly, .noFollow]) else { return nil }
        let bytes = try f.readAll(limit: 4 << 20, label: path)
        do { return try JSONDecoder().decode(RuntimeSpec.self, from: Data(bytes)) } catch {
            throw StrataError(.invalidFormat, "\(path) is not a runtime spec strata can read: \(error); remove the container and run it again")
        }
    }

    /// Only the process's args of `directory`'s `config.json`, for `ps`. A spec strata wrote
    /// (sorted keys, so `"args"` opens `"process"`) gives them without parsing the rest, most of
    /// which is the seccomp profile; any other is decoded whole.
    public static func readArgs(from directory: String) throws -> [String]? {
        let path = directory + "/" + fileName
        guard let f = try? FDHandle.open(path, flags: [.readOnly, .noFollow]) else { return nil }
        let bytes = try f.readAll(limit: 4 << 20, label: path)
        if let array = argsArray(in: bytes), let args = try? JSONDecoder().decode([String].self, from: Data(array)) { return args }
        struct Args: Decodable { struct P: Decodable { var args: [String] }; var process: P }
        return try JSONDecoder().decode(Args.self, from: Data(bytes)).process.args
    }

    /// The bytes of the array after `"process" : { "args" :` (the top-level key: a quote
    /// inside a JSON string is escaped, so the pattern cannot come from a value), up to its
    /// closing bracket outside strings; nil when the layout is not that.
    static func argsArray(in bytes: [UInt8]) -> ArraySlice<UInt8>? {
        func find(_ pattern: [UInt8], from start: Int) -> Int? {
            guard bytes.count >= pattern.count, start <= bytes.count - pattern.count else { return nil }
            return (start...(bytes.count - pattern.count)).first { bytes[$0..<($0 + pattern.count)].elementsEqual(pattern) }
        }
        func skipSpace(_ i: Int) -> Int { var i = i; while i < bytes.count, [0x20, 0x0a, 0x0d, 0x09].contains(bytes[i]) { i += 1 }; return i }
        // `"process"` may also be an annotation's name (its value is then a string): the first
        // one followed by `: { "args" : [` is the top-level key.
        func arrayStart(after p: Int) -> Int? {
            var i = skipSpace(p + 9)
            for expected in Array(":{".utf8) {
                guard i < bytes.count, bytes[i] == expected else { return nil }
                i = skipSpace(i + 1)
            }
            let key = Array(#""args""#.utf8)
            guard i + key.count <= bytes.count, bytes[i..<(i + key.count)].elementsEqual(key) else { return nil }
            i = skipSpace(i + key.count)
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
            i = skipSpace(i + 1)
            return i < bytes.count && bytes[i] == UInt8(ascii: "[") ? i : nil
        }
        var from = 0
        var found: Int?
        while found == nil, let p = find(Array(#""process""#.utf8), from: from) {
            found = arrayStart(after: p)
            from = p + 1
        }
        guard let start = found else { return nil }
        var i = start
        var inString = false, escaped = false
        while i < bytes.count {
            let c = bytes[i]
            if inString {
                if escaped { escaped = false } else if c == UInt8(ascii: "\\") { escaped = true } else if c == UInt8(ascii: "\"") { inString = false }
            } else if c == UInt8(ascii: "\"") {
                inString = true
            } else if c == UInt8(ascii: "]") {
                return bytes[start...i]
            }
            i += 1
        }
        return nil
    }

    /// The rootfs's absolute path for a bundle in `bundle`.
    public func rootfs(bundle: String) -> String { root.path.hasPrefix("/") ? root.path : bundle + "/" + root.path }

    /// Whether the process gets its own network namespace (a new one: only loopback).
    public var newNetwork: Bool { linux.namespaces.contains { $0.type == "network" && $0.path == nil } }
    /// Whether the process runs in the host's network namespace (`--network host`).
    public var sharesHostNetwork: Bool { !linux.namespaces.contains { $0.type == "network" } }

    /// The limits of `linux.resources`.
    public var limits: Limits {
        let r = linux.resources
        var cpus: Double?
        if let q = r?.cpu?.quota, let p = r?.cpu?.period, p > 0, q > 0 { cpus = Double(q) / Double(p) }
        return Limits(memory: r?.memory?.limit, cpus: cpus, pids: r?.pids?.limit)
    }

    /// The device allowlist of `linux.resources.devices`; nil when every device is allowed.
    /// strata expresses two forms, the ones it writes: one rule allowing every device, or a
    /// rule denying every device followed by rules that allow; anything else is refused.
    public func deviceRules() throws -> [DeviceRule]? {
        let rules = linux.resources?.devices ?? []
        func every(_ d: Device) -> Bool { (d.type ?? "a") == "a" && d.major == nil && d.minor == nil && (d.access ?? "rwm") == "rwm" }
        let refuse = StrataError(.invalidFormat, "the device rules of config.json are not a form strata applies: one rule allowing every device, or one denying every device followed by rules that allow")
        if rules.count == 1, rules[0].allow, every(rules[0]) { return nil }
        guard let first = rules.first, !first.allow, every(first) else { throw refuse }
        return try rules.dropFirst().map { d in
            let type = d.type ?? "a"
            guard d.allow, type.count == 1, let kind = DeviceRule.Kind(rawValue: Character(type)),
                  let access = DeviceRule.Access(letters: d.access ?? "rwm"), !access.isEmpty else { throw refuse }
            return DeviceRule(kind, d.major, d.minor, access)
        }
    }

    /// The spec's form of `rules` (nil: every device).
    public static func devices(_ rules: [DeviceRule]?) -> [Device] {
        guard let rules else { return [Device(allow: true, access: "rwm")] }
        return [Device(allow: false, access: "rwm")] + rules.map {
            Device(allow: true, type: String($0.kind.rawValue), major: $0.major, minor: $0.minor, access: $0.access.letters)
        }
    }

    /// A profile in the runtime spec's form (config-linux.md, "Seccomp"): Docker's rules with
    /// their capability, architecture and kernel conditions decided here, and the architectures
    /// of this machine.
    public static func resolved(_ profile: SeccompProfile, capabilities: CapabilitySet,
                                machine: SeccompCompiler.Machine = .current) -> SeccompProfile {
        let native = ["amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "s390x": "SCMP_ARCH_S390X",
                      "riscv64": "SCMP_ARCH_RISCV64"][machine.arch]
        let arches = native.flatMap { n in profile.archMap?.first { $0.architecture == n }.map { [n] + ($0.subArchitectures ?? []) } }
        let rules = (profile.syscalls ?? []).filter { SeccompCompiler.applies($0, capabilities: capabilities, machine: machine) }.map {
            SeccompProfile.Rule(names: $0.allNames, action: $0.action, errnoRet: $0.errnoRet, args: $0.args)
        }
        // The profile's own list and the native entry of its archMap, as the compiler merges them.
        var all = profile.architectures ?? []
        for a in arches ?? [] where !all.contains(a) { all.append(a) }
        return SeccompProfile(defaultAction: profile.defaultAction, defaultErrnoRet: profile.defaultErrnoRet,
                              architectures: all.isEmpty ? nil : all, syscalls: rules)
    }
}
