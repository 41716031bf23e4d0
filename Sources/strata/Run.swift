import ArgumentParser
import FoundationEssentials
import StrataCore
import StrataFormats
import StrataLauncher
import StrataNetwork
import StrataEngine
import StrataSystem
import StrataStore

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run",
        abstract: "Run a command in a new container from an image.",
        discussion: """
            Exit code: the command's; 128+N when it was killed by signal N; 127 when the command \
            is not found, 126 when it cannot be run, 125 when strata itself fails.
            """,
        // As Docker's: under run, -h is --hostname; help is --help.
        helpNames: [.long])

    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: RunFlags
    @Flag(name: [.short, .long], help: "Run in the background under a monitor; print the container ID.") var detach = false
    @Argument(help: "Image: tag, ID or unique ID prefix.", completion: NameCompletion.images) var image: String
    @Argument(parsing: .captureForPassthrough, help: "Command and arguments.") var command: [String] = []

    func run() throws {
        try runsAProcess {
            let options = try flags.runOptions()
            let overrides = try flags.overrides(command: command)
            let engine = try global.openEngine()
            if CgroupLayout.cached == nil { CgroupLayout.warnOnceWithoutCgroups() }
            try flags.ensureImage(image, in: engine.store, quiet: global.quiet)
            if detach {
                print(try engine.runDetached(image: image, overrides: overrides, options: options))
                return 0
            }
            return try engine.run(image: image, overrides: overrides, options: options)
        }
    }
}

/// The flags `run` and `create` share: everything that goes into the container's spec, and
/// whether to pull the image first.
struct RunFlags: ParsableArguments {
    @Flag(name: .long, help: "Remove the container when it exits.") var rm = false
    @Option(name: .long, help: "A name for the container (default: adjective_surname).") var name: String?
    @Option(name: [.short, .long], help: "Hostname (default: the short container ID).") var hostname: String?
    // .unconditional: `--memory -1` is a bad value (one clear line), not a missing one.
    @Option(name: [.short, .long], parsing: .unconditional, help: "Memory limit, e.g. 64m (also limits memory+swap).") var memory: String?
    @Option(name: .long, parsing: .unconditional, help: "CPU quota in CPUs, e.g. 0.5.") var cpus: String?
    @Option(name: .long, parsing: .unconditional, help: "Maximum number of processes.") var pidsLimit: String?
    @Option(name: .long, help: "bridge (the default network; the default as root), NAME (a network of `strata network create`), slirp4netns (user-mode networking; the default rootless), none (only lo), host, or container:NAME|ID (STRATA_NETWORK sets the default).") var network: String?
    @Option(name: .long, help: "The container's IPv4 address on its network.") var ip: String?
    @Option(name: .long, help: "Another name for the container on its network (repeatable).") var networkAlias: [String] = []
    @Option(name: [.short, .customLong("publish")], help: "Publish a port: [[IP:][HOST]:]CONTAINER[/udp] (a free host port when none is given).") var publish: [String] = []
    @Flag(name: [.customShort("P"), .customLong("publish-all")], help: "Publish every port the image exposes, each on a free host port.") var publishAll = false
    @Option(name: [.short, .customLong("env")], help: "Set an environment variable K=V (or K to take it from here).") var env: [String] = []
    @Option(name: [.short, .customLong("workdir")], help: "Working directory inside the container.") var workdir: String?
    @Option(name: [.short, .long], help: "USER[:GROUP], names or IDs from the image's own files.") var user: String?
    @Option(name: .long, help: "Override the image's entrypoint.") var entrypoint: String?
    @Flag(name: .long, help: "Run a small init as pid 1 that reaps and forwards signals.") var `init` = false
    @Option(name: [.short, .customLong("volume")], help: "/HOST:/PATH[:ro] binds a host path; NAME:/PATH[:ro,nocopy] mounts a volume (made if missing); /PATH an anonymous volume.") var volume: [String] = []
    @Option(name: .long, help: "type=bind|volume|tmpfs,source=…,target=…[,readonly][,volume-nocopy][,tmpfs-size=…][,tmpfs-mode=…]") var mount: [String] = []
    @Option(name: .long, help: "Mount the volumes and binds of another container: NAME[:ro|rw].") var volumesFrom: [String] = []
    @Option(name: .long, help: "Mount a tmpfs at PATH[:size=…,mode=…].") var tmpfs: [String] = []
    @Option(name: .long, help: "A host device in the container: HOST[:CONTAINER][:rwm] (below /dev).") var device: [String] = []
    @Option(name: .long, help: "A health check: a shell command run in the container (exit 0: healthy).") var healthCmd: String?
    @Option(name: .long, help: "Time between health checks, e.g. 30s, 1m30s (default 30s).") var healthInterval: String?
    @Option(name: .long, help: "Time a health check may take (default 30s).") var healthTimeout: String?
    @Option(name: .long, help: "Failures in a row that make the container unhealthy (default 3).") var healthRetries: Int?
    @Option(name: .long, help: "Time after the start when failures do not count (default 0s).") var healthStartPeriod: String?
    @Flag(name: .long, help: "No health check, not even the image's.") var noHealthcheck = false
    @Flag(name: .long, help: "Mount the rootfs read-only.") var readOnly = false
    @Flag(name: [.short, .long], help: "Keep standard input open.") var interactive = false
    @Flag(name: .long, help: "Every capability, no seccomp, /sys and cgroups writable, nothing masked in /proc, every device allowed.") var privileged = false
    @Option(name: .long, help: "Add a capability to Docker's default set (NET_ADMIN, SYS_PTRACE, …, or ALL).") var capAdd: [String] = []
    @Option(name: .long, help: "Drop a capability from the set (or ALL).") var capDrop: [String] = []
    @Option(name: .long, help: "seccomp=unconfined, seccomp=PROFILE.json (Docker's format) or no-new-privileges.") var securityOpt: [String] = []
    @Flag(name: [.short, .long], help: "Allocate a pseudo-terminal.") var tty = false
    @Option(name: .long, help: "The signal `strata stop` sends first (default: the image's StopSignal, else TERM).") var stopSignal: String?
    @Option(name: .long, help: "Rotate a detached container's log at this size (one old file is kept).") var logMaxSize: String = "10m"
    @Option(name: [.short, .long], help: "Set a label on the container: KEY=VALUE (or KEY, empty).") var label: [String] = []
    @Option(name: .long, help: "Read environment variables from a file: KEY=VALUE lines (KEY alone takes it from here; # comments).") var envFile: [String] = []
    @Option(name: .long, help: "Add a line to /etc/hosts: NAME:ADDRESS.") var addHost: [String] = []
    @Option(name: .long, help: "A nameserver for /etc/resolv.conf (replaces the default ones).") var dns: [String] = []
    @Option(name: .long, help: "A search domain for /etc/resolv.conf.") var dnsSearch: [String] = []
    @Option(name: .long, help: "An option for /etc/resolv.conf (ndots:2, …).") var dnsOption: [String] = []
    @Option(name: .long, help: "A resource limit: NAME=SOFT[:HARD] (nofile, nproc, core, stack, …; -1 unlimited).") var ulimit: [String] = []
    @Option(name: .long, help: "Another group for the process: a name from the image's /etc/group, or an id.") var groupAdd: [String] = []
    @Option(name: .long, help: "Size of /dev/shm, e.g. 256m (default 64m).") var shmSize: String?
    @Option(name: .long, help: "Seconds `stop` waits before SIGKILL (default 10; -1: for ever).") var stopTimeout: Int?
    @Option(name: .long, help: "Write the container's ID to this new file.") var cidfile: String?
    @Option(name: .long, help: "no, always, unless-stopped or on-failure[:N]: start it again when it ends (Docker's backoff).") var restart: String = "no"
    @Option(name: .long, help: "Platform to pull (os/arch[/variant]) when the image is pulled.") var platform: String?
    @Option(name: .long, help: "Pull the image first: missing (when the store has no such image), always, or never.") var pull: String = "missing"
    @OptionGroup var registry: RegistryFlags

    /// The limits as the flags give them; their ranges are the engine's to check.
    func limits() throws -> Limits {
        var l = Limits()
        if let memory { l.memory = try ByteSize.parse(memory, what: "--memory") }
        if let cpus {
            guard let v = Double(cpus), v.isFinite else { throw StrataError(.invalidArgument, "invalid --cpus \"\(cpus)\": a number of CPUs, e.g. 0.5") }
            l.cpus = v
        }
        if let pidsLimit {
            // Docker's -1 means no limit.
            guard let v = Int64(pidsLimit) else {
                throw StrataError(.invalidArgument, "invalid --pids-limit \"\(pidsLimit)\": a number from 1 to 4194304, or -1 for no limit")
            }
            l.pids = v == -1 ? nil : v
        }
        return l
    }

    /// `-v`, `--mount` and `--tmpfs` as Docker reads them.
    func volumes() throws -> [VolumeSpec] {
        try volume.map(MountFlags.volume) + mount.map(MountFlags.mount) + tmpfs.map(MountFlags.tmpfs)
    }

    /// The engine's options from the flags (their policy is `RunOptions.validate`'s).
    func runOptions() throws -> Engine.RunOptions {
        guard ["missing", "always", "never"].contains(pull) else {
            throw StrataError(.invalidArgument, "invalid --pull \"\(pull)\": missing, always or never")
        }
        var options = Engine.RunOptions()
        options.limits = try limits()
        options.volumes = try volumes()
        options.security = SecurityOptions(privileged: privileged, capAdd: capAdd, capDrop: capDrop)
        try options.security.apply(securityOpt: securityOpt)
        options.name = name
        options.hostname = hostname
        options.network = try networkRequest()
        options.readOnly = readOnly
        options.tty = tty
        options.interactive = interactive
        options.initProcess = `init`
        options.remove = rm
        options.stopSignal = stopSignal
        options.logMaxSize = try ByteSize.parse(logMaxSize, what: "--log-max-size")
        options.names.extraHosts = try addHost.map(NameSettings.host(parsing:))
        options.names.dns = dns
        options.names.dnsSearch = dnsSearch
        options.names.dnsOptions = dnsOption
        options.rlimits = try ulimit.map(Rlimits.parse)
        options.groupAdd = groupAdd
        options.shmSize = try shmSize.map { try ByteSize.parse($0, what: "--shm-size") }
        options.stopTimeout = stopTimeout
        options.cidFile = cidfile
        options.restart = try RestartPolicy(parsing: restart)
        options.labels = try parseLabels(label)
        options.volumesFrom = volumesFrom
        options.devices = try device.map(DeviceMapping.init(parsing:))
        options.health.command = healthCmd
        options.health.interval = try healthInterval.map { try GoDuration.seconds($0, what: "--health-interval") }
        options.health.timeout = try healthTimeout.map { try GoDuration.seconds($0, what: "--health-timeout") }
        options.health.startPeriod = try healthStartPeriod.map { try GoDuration.seconds($0, what: "--health-start-period") }
        options.health.retries = healthRetries
        options.health.disabled = noHealthcheck
        return options
    }

    /// The network when `--network` is not given: STRATA_NETWORK, else podman's defaults
    /// (bridge as root, slirp4netns rootless, none where slirp4netns is missing).
    static var defaultNetwork: String {
        let environment = ProcessInfo.processInfo.environment["STRATA_NETWORK"].flatMap { $0.isEmpty ? nil : $0 }
        let rootlessDefault = Slirp4netns.installedPath == nil ? "none" : "slirp4netns"
        return environment ?? (UserNamespace.current.isRootless ? rootlessDefault : "bridge")
    }

    /// `--network` (else STRATA_NETWORK, else podman's defaults: bridge as root, slirp4netns
    /// rootless, none where slirp4netns is missing), with `--ip`, `--network-alias`, `-p` and `-P`.
    func networkRequest() throws -> NetworkRequest {
        let mode = network ?? RunFlags.defaultNetwork
        var request = try NetworkRequest(parsing: mode)
        let ports = try publish.map(PortMapping.init(parsing:))
        if request.mode == .slirp4netns {
            if ip != nil || !networkAlias.isEmpty { throw StrataError(.invalidArgument, "--ip and --network-alias need a bridge network (--network \(mode))") }
            request.ports = ports
            request.publishAll = publishAll
            return request
        }
        if request.mode != .bridge {
            if !ports.isEmpty || publishAll {
                guard request.mode == .host else {
                    throw StrataError(.invalidArgument, "published ports (-p, -P) need a bridge network; --network \(mode) has none")
                }
                printErr("strata: published ports are ignored with --network host (the container uses the host's ports)")
            }
            if ip != nil || !networkAlias.isEmpty {
                throw StrataError(.invalidArgument, "--ip and --network-alias need a bridge network (--network \(mode))")
            }
            return request
        }
        if let ip { request.networks[0].ip = try RunFlags.address(ip) }
        request.networks[0].aliases = networkAlias
        request.ports = ports
        request.publishAll = publishAll
        return request
    }

    /// An IPv4 address from a flag.
    static func address(_ text: String) throws -> IPv4Address {
        guard let a = IPv4Address(text) else { throw StrataError(.invalidArgument, "invalid address \"\(text.prefix(60))\": an IPv4 address (A.B.C.D)") }
        return a
    }

    func overrides(command: [String]) throws -> RunOverrides {
        RunOverrides(entrypoint: entrypoint, command: command, env: try envFile.flatMap(RunFlags.readEnvFile) + env, workdir: workdir, user: user)
    }

    /// Docker's `--env-file`: one `KEY=VALUE` (or `KEY`, taken from here) per line; blank lines
    /// and lines starting with `#` are skipped; no quotes or escapes are read.
    static func readEnvFile(_ path: String) throws -> [String] {
        let bytes = try FDHandle.open(path, flags: .readOnly).readAll(limit: 1 << 20, label: "--env-file \(path)")
        var out: [String] = []
        for (n, raw) in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.hasSuffix("\r") ? String(raw.dropLast()) : String(raw)
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let key = String(trimmed.prefix { $0 != "=" })
            guard !key.isEmpty, !key.contains(where: { $0 == " " || $0 == "\t" }) else {
                throw StrataError(.invalidArgument, "--env-file \(path), line \(n + 1): \"\(line.prefix(60))\" is not KEY=VALUE")
            }
            out.append(String(trimmed))
        }
        return out
    }

    /// `--pull`: with `missing` (the default) an image the store cannot name is pulled first, as
    /// Docker does (with `pull`'s progress on stderr); `always` pulls every time; `never` leaves
    /// the store as it is.
    func ensureImage(_ ref: String, in store: Store, quiet: Bool) throws {
        switch pull {
        case "never": return
        case "missing":
            do { _ = try store.resolveImage(ref); return } catch let e as StrataError where e.code == .notFound {
                if !quiet { printErr("Unable to find image '\(ref)' in the store; pulling it") }
            }
        default: break
        }
        var options = PullOptions()
        options.registry = try registry.options()
        if let platform { options.load.platform = try Platform(parsing: platform) }
        let progress = LoadProgress(quiet: quiet)
        options.load.progress = progress.handler
        do {
            defer { progress.finish() }
            let pulled = try store.pull(ref, options: options)
            if !quiet { printErr("Digest: \(pulled.manifestDigest)") }
        }
    }
}

/// Runs what starts a process in a container (`run`, `exec`) and exits as Docker does: the
/// process's code; the launcher's (125, 126, 127) when it could not start; 125 for strata's errors.
func runsAProcess(_ body: () throws -> Int32) throws -> Never {
    CgroupWarmUp.begin()  // before the store opens: see CgroupWarmUp
    let code: Int32
    do {
        code = try body()
    } catch let e as LaunchFailure {
        printErr("strata: \(e.message)")
        throw ExitCode(e.exitCode)
    } catch let e as StrataError {
        printErr("strata: \(e)")
        throw ExitCode(125)
    }
    throw ExitCode(code)
}
