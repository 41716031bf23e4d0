import FoundationEssentials
import StrataCore
import StrataFormats
import StrataLauncher
import StrataSystem

/// `--device HOST[:CONTAINER][:PERMISSIONS]`: a host device node made in the container's /dev,
/// and allowed in its device cgroup with PERMISSIONS (`rwm` by default).
public struct DeviceMapping: Sendable, Equatable {
    public var hostPath: String
    public var containerPath: String
    public var access: String
    /// A mapping of `hostPath` to `containerPath` with `access` (letters of rwm).
    public init(hostPath: String, containerPath: String? = nil, access: String = "rwm") {
        self.hostPath = hostPath; self.containerPath = containerPath ?? hostPath; self.access = access
    }

    /// Docker's form: `HOST`, `HOST:CONTAINER`, `HOST:PERMS`, `HOST:CONTAINER:PERMS`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func isAccess(_ s: String) -> Bool { !s.isEmpty && DeviceRule.Access(letters: s) != nil }
        switch parts.count {
        case 1: self.init(hostPath: parts[0])
        case 2 where isAccess(parts[1]): self.init(hostPath: parts[0], access: parts[1])
        case 2: self.init(hostPath: parts[0], containerPath: parts[1])
        case 3: self.init(hostPath: parts[0], containerPath: parts[1], access: parts[2])
        default: throw StrataError(.invalidArgument, "invalid --device \"\(text)\": HOST[:CONTAINER][:rwm]")
        }
    }

    /// The container's own /dev entries, which a device may not replace.
    static let reserved: Set<String> = ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx",
                                        "fd", "stdin", "stdout", "stderr"]

    /// The host node's type, numbers and mode; throws unless it is a device and the paths and
    /// access are ones strata makes.
    func resolve() throws -> RuntimeSpec.LinuxDevice {
        let what = "--device \(hostPath)"
        guard hostPath.hasPrefix("/") else { throw StrataError(.invalidArgument, "invalid \(what): the host path is absolute") }
        guard !hostPath.contains("\n"), !hostPath.contains("\t") else {
            throw StrataError(.invalidArgument, "invalid \(what): a tab or a line break in the host path")
        }
        guard let st = try? FDHandle.open(hostPath, flags: .pathOnly).stat() else {
            throw StrataError(.notFound, "invalid \(what): no such device on this host")
        }
        guard st.kind == .characterDevice || st.kind == .blockDevice else {
            throw StrataError(.invalidArgument, "invalid \(what): not a character or block device")
        }
        let inside = containerPath.split(separator: "/").map(String.init)
        guard containerPath.hasPrefix("/dev/"), inside.count >= 2, inside[0] == "dev",
              !inside.contains(".."), !inside.contains("."), !DeviceMapping.reserved.contains(inside[1]) else {
            throw StrataError(.invalidArgument, "invalid \(what): the container path \(containerPath) must be below /dev and none of its own entries (null, tty, pts, shm, …)")
        }
        guard !access.isEmpty, DeviceRule.Access(letters: access) != nil else {
            throw StrataError(.invalidArgument, "invalid \(what): permissions \(access) are letters of rwm")
        }
        let (major, minor) = st.deviceNumbers
        return RuntimeSpec.LinuxDevice(path: "/" + inside.joined(separator: "/"), type: st.kind == .blockDevice ? "b" : "c",
                                       major: Int64(major), minor: Int64(minor), fileMode: st.mode & 0o777)
    }
}

/// A mount in the container: a bind of a host path (`-v /HOST:/CTR`, `--mount type=bind`), a
/// volume of the store (`-v NAME:/CTR`, anonymous `-v /CTR`, `--mount type=volume`) or a tmpfs
/// (`--tmpfs`, `--mount type=tmpfs`).
public struct VolumeSpec: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case bind, volume, tmpfs }
    public var kind: Kind
    /// A bind's host path; a volume's name (nil: an anonymous volume); nil for tmpfs.
    public var source: String?
    public var target: String
    public var readOnly: Bool
    /// A volume made empty is not given the image's files at its target (`nocopy`).
    public var noCopy: Bool
    /// A tmpfs's `size=` and `mode=` options.
    public var tmpfsOptions: [String]
    public var tmpfs: Bool { kind == .tmpfs }

    /// A mount of `kind` from `source` at `target`.
    public init(kind: Kind, source: String?, target: String, readOnly: Bool = false, noCopy: Bool = false, tmpfsOptions: [String] = []) {
        self.kind = kind; self.source = source; self.target = target; self.readOnly = readOnly; self.noCopy = noCopy
        self.tmpfsOptions = tmpfsOptions
    }

    /// A bind from `source` (nil with `tmpfs`) at `target`, or a tmpfs.
    public init(source: String?, target: String, readOnly: Bool, tmpfs: Bool) {
        self.init(kind: tmpfs ? .tmpfs : .bind, source: source, target: target, readOnly: readOnly)
    }

    /// Whether two container paths name the same place (`/data` and `/data/`).
    static func samePath(_ a: String, _ b: String) -> Bool {
        a.split(separator: "/").filter { $0 != "." } == b.split(separator: "/").filter { $0 != "." }
    }

    /// `--volumes-from CONTAINER[:ro|rw]`: the container and the mode to give its mounts
    /// (nil: each as it is there).
    static func parseVolumesFrom(_ text: String) throws -> (container: String, mode: String?) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard !parts[0].isEmpty, parts.count == 1 || (parts.count == 2 && ["ro", "rw"].contains(parts[1])) else {
            throw StrataError(.invalidArgument, "invalid --volumes-from \"\(text)\": CONTAINER[:ro|rw]")
        }
        return (parts[0], parts.count == 2 ? parts[1] : nil)
    }
}

extension Engine {
    /// How `run` starts a container, beyond its image and process.
    public struct RunOptions: Sendable {
        public var name: String?
        public var hostname: String?
        /// `--network`, `--ip`, `--network-alias`, `-p`, `-P`: none (only lo) unless asked.
        public var network = NetworkRequest(mode: .none)
        public var limits = Limits()
        public var volumes: [VolumeSpec] = []
        /// `--volumes-from`: containers whose volumes and binds this one mounts too (NAME[:ro|rw]).
        public var volumesFrom: [String] = []
        /// `--device`: host devices made in the container and allowed in its device cgroup.
        public var devices: [DeviceMapping] = []
        /// `--health-*`, `--no-healthcheck`: the health check instead of the image's.
        public var health = HealthFlags()
        public var readOnly = false
        public var tty = false
        public var interactive = false
        /// With `interactive`: the end of an attached client's input closes the container's
        /// stdin (`create -i`, Docker's StdinOnce); `run -di` keeps it open.
        public var stdinOnce = false
        public var initProcess = false
        public var security = SecurityOptions()
        /// Remove the container when it exits.
        public var remove = false
        /// The signal `stop` sends first (default: the image's StopSignal, else SIGTERM).
        public var stopSignal: String?
        /// The size at which a detached container's log is rotated (one old file is kept).
        public var logMaxSize: Int64 = 10 << 20
        /// `--label KEY=VALUE`: the container's labels (`ps --filter label=`).
        public var labels: [String: String] = [:]
        /// `--add-host`, `--dns`, `--dns-search`, `--dns-option`: what /etc/hosts and
        /// /etc/resolv.conf hold besides the defaults.
        public var names = NameSettings()
        /// `--ulimit`: resource limits (RLIMIT_* names, as the runtime spec writes them).
        public var rlimits: [RuntimeSpec.Rlimit] = []
        /// `--group-add`: more groups for the process (names from the image's /etc/group, or ids).
        public var groupAdd: [String] = []
        /// `--shm-size`: the size of /dev/shm in bytes (default 64 MiB, as Docker's).
        public var shmSize: Int64?
        /// `--stop-timeout`: seconds `stop` waits before SIGKILL when not told (default 10).
        public var stopTimeout: Int?
        /// `--cidfile`: a new file the container's ID is written to once it exists.
        public var cidFile: String?
        /// `--restart`: what happens when the container ends (detached containers).
        public var restart: RestartPolicy = .no
        /// A build's RUN step: the image's volumes are not made (a step's changes there are
        /// part of its layer) and the output goes to stderr.
        package var buildStep = false
        /// Docker's defaults: a new name, the image's process, no limits, the default seccomp profile.
        public init() {}

        /// Docker's rules for these options, checked before anything is made (a library caller
        /// gets the same as the command line): the limits' ranges, the volumes, the hostname,
        /// the stop signal, the capabilities and seccomp profile (resolved here).
        public func validate() throws -> SecurityOptions.Resolved {
            if let m = limits.memory, m < 6 << 20 {
                throw StrataError(.invalidArgument, "invalid memory limit (--memory) of \(m) bytes: the minimum is 6m")
            }
            if let c = limits.cpus {
                let available = ProcessInfo.processInfo.activeProcessorCount
                guard c >= 0.01, c <= Double(available) else {
                    throw StrataError(.invalidArgument, "invalid CPU quota (--cpus) \(c): from 0.01 to \(available), the CPUs this machine has")
                }
            }
            // The kernel takes pids.max up to 2^22 (PID_MAX_LIMIT).
            if let p = limits.pids, p < 1 || p > 1 << 22 {
                throw StrataError(.invalidArgument, "invalid process limit (--pids-limit) \(p): from 1 to 4194304, or -1 for none")
            }
            if let hostname, hostname.isEmpty || hostname.utf8.count > 64
                || !hostname.utf8.allSatisfy({ NetworkRequest.isNameByte($0) }) {
                throw StrataError(.invalidArgument, "invalid --hostname \(String(hostname.prefix(80)).debugDescription): 1 to 64 letters, digits, and . - _")
            }
            var targets: [String] = []
            for v in volumes {
                let parts = v.target.split(separator: "/").filter { $0 != "." }
                guard v.target.hasPrefix("/"), !parts.isEmpty, !parts.contains("..") else {
                    throw StrataError(.invalidArgument, "invalid volume target \"\(v.target)\": an absolute path other than /, without ..")
                }
                guard !targets.contains(where: { VolumeSpec.samePath($0, v.target) }) else {
                    throw StrataError(.invalidArgument, "duplicate mount point \(v.target): one volume, bind or tmpfs per path")
                }
                targets.append(v.target)
                switch v.kind {
                case .tmpfs:
                    // /dev is the launcher's own tmpfs (RuntimeSpec.isStandard).
                    guard parts != ["dev"] else { throw StrataError(.invalidArgument, "invalid tmpfs at \(v.target): a container's /dev is strata's") }
                case .volume:
                    if let name = v.source { try Store.checkVolumeName(name) }
                case .bind:
                    guard let source = v.source, source.hasPrefix("/") else {
                        throw StrataError(.invalidArgument, "invalid volume source \"\(v.source ?? "")\": an absolute path on this host (-v /HOST:/CONTAINER[:ro])")
                    }
                    guard pathExists(source) else { throw StrataError(.notFound, "volume source \(source) does not exist") }
                }
            }
            for from in volumesFrom { _ = try VolumeSpec.parseVolumesFrom(from) }
            let devicePaths = try devices.map { try $0.resolve().path }
            if let twice = devicePaths.first(where: { p in devicePaths.filter { $0 == p }.count > 1 }) {
                throw StrataError(.invalidArgument, "invalid --device: two devices at \(twice)")
            }
            if let stopSignal { _ = try MonitorProcess.signalNumber(stopSignal) }
            try names.validate()
            if restart != .no && remove {
                throw StrataError(.invalidArgument, "conflicting options: --restart \(restart.text) and --rm (a container that restarts is not removed at its end)")
            }
            if let cidFile, pathExists(cidFile) {
                throw StrataError(.alreadyExists, "the container ID file \(cidFile) exists: another container may be using it; remove it first")
            }
            if let shmSize, shmSize < 1 << 12 || shmSize > 1 << 40 {
                throw StrataError(.invalidArgument, "invalid --shm-size of \(shmSize) bytes: from 4k to 1t")
            }
            if let stopTimeout, stopTimeout < -1 {
                throw StrataError(.invalidArgument, "invalid --stop-timeout \(stopTimeout): seconds, or -1 to wait for ever")
            }
            for r in rlimits where r.soft > r.hard {
                throw StrataError(.invalidArgument, "invalid --ulimit for \(r.type): the soft limit \(r.soft) is above the hard limit \(r.hard)")
            }
            guard logMaxSize > 0 else { throw StrataError(.invalidArgument, "invalid log size \(logMaxSize): more than 0 bytes") }
            for a in network.networks { try NetworkRequest.checkAlias(a.aliases) }
            var security = self.security
            // slirp4netns connects to whatever a frame names, the host's 127.0.0.1 included: a
            // container there gets no raw sockets unless asked for by name (podman's default set
            // has no NET_RAW either).
            if network.mode == .slirp4netns, !security.privileged,
               !security.capAdd.contains(where: { ["NET_RAW", "CAP_NET_RAW", "ALL"].contains($0.uppercased()) }) {
                security.capDrop.append("NET_RAW")
            }
            return try security.resolve()
        }
    }
}

/// Makes a container's one runtime spec from its process (the image config merged with the
/// caller's overrides, `RunPlan`) and the run options: every decision about the container, in
/// the form runc reads too.
struct ContainerSpecBuilder {
    var process: ProcessSpec
    var options: Engine.RunOptions
    var security: SecurityOptions.Resolved
    /// The image config's StopSignal.
    var imageStopSignal: String?
    /// The image config's HEALTHCHECK.
    var imageHealthcheck: ImageConfig.Healthcheck? = nil

    /// The `PATH` a process gets when neither the image nor the flags set one (Docker's).
    static let defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The spec for container `id` whose rootfs is `rootfs` (users resolved from its files) in
    /// the bundle `bundle`. With `etcFiles`, /etc/hostname, /etc/hosts and /etc/resolv.conf
    /// are written into the bundle and bound over the init layer's.
    func spec(id: String, rootfs: String, bundle: String, etcFiles: Bool) throws -> RuntimeSpec {
        let files = try RootfsFiles(rootfs: rootfs)
        var user = try files.user(process.user)
        for g in options.groupAdd {
            let id = try files.groupID(g)
            if !user.groups.contains(id) { user.groups.append(id) }
        }
        let hostname = options.hostname ?? String(id.prefix(12))
        var env = process.env
        if !env.contains(where: { $0.hasPrefix("PATH=") }) { env.append(ContainerSpecBuilder.defaultPath) }
        let homeFromUser = !env.contains(where: { $0.hasPrefix("HOME=") })
        if homeFromUser { env.append("HOME=\(user.home)") }
        if !env.contains(where: { $0.hasPrefix("HOSTNAME=") }) { env.append("HOSTNAME=\(hostname)") }

        let privileged = options.security.privileged
        let caps = security.capabilities.prefixedNames
        let specProcess = RuntimeSpec.Process(
            terminal: options.tty, user: RuntimeSpec.User(uid: user.uid, gid: user.gid, additionalGids: user.groups),
            args: process.args, env: env, cwd: process.cwd,
            capabilities: RuntimeSpec.Capabilities(bounding: caps, effective: caps, permitted: caps),
            noNewPrivileges: options.security.noNewPrivileges, rlimits: options.rlimits.isEmpty ? nil : options.rlimits)

        var mounts = RuntimeSpec.standardMounts
        if privileged {
            // /sys and the cgroup view writable, as the launcher makes them under --privileged.
            for i in mounts.indices where ["sysfs", "cgroup"].contains(mounts[i].type ?? "") {
                mounts[i].options = mounts[i].options?.filter { $0 != "ro" }
            }
        }
        if let shm = options.shmSize, let i = mounts.firstIndex(where: { $0.destination == "/dev/shm" }) {
            mounts[i].options = (mounts[i].options ?? []).filter { !$0.hasPrefix("size=") } + ["size=\(shm)"]
        }
        for v in options.volumes {
            if v.tmpfs {
                let mode = v.tmpfsOptions.contains { $0.hasPrefix("mode=") } ? [] : ["mode=1777"]
                mounts.append(RuntimeSpec.Mount(destination: v.target, type: "tmpfs", source: "tmpfs",
                                                options: ["nosuid", "nodev"] + mode + v.tmpfsOptions + (v.readOnly ? ["ro"] : [])))
            } else {
                mounts.append(RuntimeSpec.Mount(destination: v.target, type: "bind", source: v.source,
                                                options: ["rbind", "rprivate", v.readOnly ? "ro" : "rw"]))
            }
        }

        if etcFiles {
            // Over the volumes (a volume at /etc still shows them), unless one is mounted at that very path.
            for name in try ContainerSpecBuilder.writeEtcFiles(hostname: hostname, network: options.network.mode == .host ? .host : .none,
                                                               names: options.names, into: bundle)
            where !options.volumes.contains(where: { VolumeSpec.samePath($0.target, "/etc/" + name) }) {
                mounts.append(RuntimeSpec.Mount(destination: "/etc/" + name, type: "bind", source: bundle + "/" + name,
                                                options: ["rbind", "rprivate"]))
            }
        }
        var namespaces = ["pid", "ipc", "uts", "mount", "cgroup"].map { RuntimeSpec.Namespace(type: $0) }
        switch options.network.mode {
        case .host: break
        // The namespace kept as a file in the container's folder, set up before each start.
        case .bridge, .slirp4netns:
            namespaces.append(RuntimeSpec.Namespace(type: "network", path: bundle + "/" + ContainerNetworkState.namespaceFileName))
        case .none, .container: namespaces.append(RuntimeSpec.Namespace(type: "network"))
        }
        let l = options.limits
        let devices = try options.devices.map { m in (m, try m.resolve()) }
        let deviceRules = privileged ? nil : DeviceRule.defaults + devices.compactMap { m, d in
            DeviceRule.Access(letters: m.access).map { DeviceRule(d.type == "b" ? .block : .char, d.major, d.minor, $0) }
        }
        let resources = RuntimeSpec.Resources(
            memory: l.memory.map { RuntimeSpec.Memory(limit: $0, swap: $0) },
            cpu: l.cpus.map { RuntimeSpec.CPU(quota: Int64(($0 * 100_000).rounded()), period: 100_000) },
            pids: l.pids.map { RuntimeSpec.Pids(limit: $0) },
            devices: RuntimeSpec.devices(deviceRules))
        let linux = RuntimeSpec.Linux(namespaces: namespaces, resources: resources,
                                      maskedPaths: privileged ? [] : ProcfsPolicy.masked,
                                      readonlyPaths: privileged ? [] : ProcfsPolicy.readOnly, seccomp: security.seccomp,
                                      devices: devices.isEmpty ? nil : devices.map(\.1))

        var annotations = [RuntimeSpec.Annotation.user: process.user,
                           RuntimeSpec.Annotation.logMaxSize: String(options.logMaxSize)]
        if homeFromUser { annotations[RuntimeSpec.Annotation.homeFromUser] = "true" }
        if options.initProcess { annotations[RuntimeSpec.Annotation.initProcess] = "true" }
        if privileged { annotations[RuntimeSpec.Annotation.privileged] = "true" }
        if options.remove { annotations[RuntimeSpec.Annotation.remove] = "true" }
        // Rootless, a device is the host's node bound in (a user namespace cannot make one).
        if UserNamespace.current.isRootless, !devices.isEmpty {
            annotations[RuntimeSpec.Annotation.deviceSources] = devices.map { "\($0.1.path)\t\($0.0.hostPath)" }.joined(separator: "\n")
        }
        if options.interactive { annotations[RuntimeSpec.Annotation.stdin] = options.stdinOnce ? "once" : "open" }
        for (k, v) in options.labels { annotations[RuntimeSpec.Annotation.labelPrefix + k] = v }
        options.names.annotate(&annotations)
        if options.network.mode != .none {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            annotations[RuntimeSpec.Annotation.network] = String(decoding: try encoder.encode(options.network), as: UTF8.self)
        }
        if let t = options.stopTimeout { annotations[RuntimeSpec.Annotation.stopTimeout] = String(t) }
        if options.restart != .no { annotations[RuntimeSpec.Annotation.restart] = options.restart.text }
        if let signal = options.stopSignal ?? imageStopSignal { annotations[RuntimeSpec.Annotation.stopSignal] = signal }
        if let health = try HealthSettings.resolve(image: imageHealthcheck, flags: options.health) {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            annotations[HealthSettings.annotation] = String(decoding: try encoder.encode(health), as: UTF8.self)
        }

        let rootPath = rootfs.hasPrefix(bundle + "/") ? String(rootfs.dropFirst(bundle.count + 1)) : rootfs
        return RuntimeSpec(process: specProcess, root: RuntimeSpec.Root(path: rootPath, readonly: options.readOnly),
                           hostname: hostname, mounts: mounts, annotations: annotations, linux: linux)
    }

    /// Writes /etc/hostname, /etc/hosts and /etc/resolv.conf as the container sees them into
    /// its folder `bundle`, as Docker writes them: with the host's network, the host's
    /// resolv.conf; on a bridge, its address in /etc/hosts and, where the network has names, its
    /// DNS server (else the host's nameservers that are not on its loopback). `names` adds hosts
    /// and replaces nameservers, search domains and options as Docker's flags do. Their names.
    @discardableResult
    static func writeEtcFiles(hostname: String, network: EtcNetwork, names: NameSettings, into bundle: String) throws -> [String] {
        var hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        var resolv = "nameserver 127.0.0.53\n"
        func hostResolvConf() -> String? {
            guard let f = try? FDHandle.open("/etc/resolv.conf", flags: .readOnly),
                  let bytes = try? f.readAll(limit: 1 << 20, label: "/etc/resolv.conf") else { return nil }
            return String(decoding: bytes, as: UTF8.self)
        }
        switch network {
        case .none, .host:
            hosts += "127.0.1.1\t\(hostname)\n"
            if case .host = network, let host = hostResolvConf() { resolv = host }
        case .bridge(let ip, let dnsServers, let search):
            hosts += "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
            hosts += "\(ip)\t\(hostname)\n"
            if !dnsServers.isEmpty {
                resolv = (search.isEmpty ? "" : "search " + search.joined(separator: " ") + "\n") + dnsServers.map { "nameserver \($0)\n" }.joined()
            } else {
                // The host's, but nameservers on its loopback (unreachable from here); Docker's fallback.
                let lines = (hostResolvConf() ?? "").split(separator: "\n").map(String.init).filter { line in
                    let w = line.split(separator: " ", omittingEmptySubsequences: true)
                    return !(w.first == "nameserver" && w.count > 1 && (w[1].hasPrefix("127.") || w[1] == "::1"))
                }
                resolv = lines.joined(separator: "\n") + "\n"
                if !lines.contains(where: { $0.hasPrefix("nameserver") }) { resolv += "nameserver 8.8.8.8\nnameserver 8.8.4.4\n" }
            }
        }
        for h in names.extraHosts { hosts += "\(h.address)\t\(h.name)\n" }
        resolv = names.resolvConf(from: resolv)
        let dir = try Directory.open(bundle)
        let files = [("hostname", hostname + "\n"), ("hosts", hosts), ("resolv.conf", resolv)]
        for (name, content) in files {
            // In place (the container's bind mounts hold these inodes), never through a link.
            let f = try dir.openFile(Array(name.utf8), flags: [.writeOnly, .create, .truncate, .noFollow], mode: 0o644)
            try f.writeAll(Array(content.utf8))
        }
        return files.map(\.0)
    }
}
