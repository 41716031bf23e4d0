#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import CStrata
import Foundation
import StrataCore
import StrataSystem

/// What to run, resolved from the image config and the flags.
public struct ProcessSpec: Sendable {
    public var args: [String]
    public var env: [String]
    public var cwd: String
    public var user: String
    public init(args: [String], env: [String], cwd: String, user: String) {
        self.args = args; self.env = env; self.cwd = cwd; self.user = user
    }
}

public struct VolumeSpec: Sendable, Equatable {
    public var source: String?
    public var target: String
    public var readOnly: Bool
    public var tmpfs: Bool
    public init(source: String?, target: String, readOnly: Bool, tmpfs: Bool) {
        self.source = source; self.target = target; self.readOnly = readOnly; self.tmpfs = tmpfs
    }
}

/// What confines the container beyond its namespaces: capabilities, seccomp, and whether it is
/// privileged (every capability, no seccomp unless a profile is given, /sys and its cgroups
/// writable, nothing masked in /proc, every device allowed), as Docker's flags of the same names.
public struct SecurityOptions: Sendable, Equatable {
    public var privileged: Bool
    public var capAdd: [String]
    public var capDrop: [String]
    public var seccomp: SeccompChoice

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
        case .default: return (caps, privileged ? nil : try SeccompCompiler.cachedCompile(.dockerDefault, capabilities: caps))
        case .profile(let p, let path):
            do { return (caps, try SeccompCompiler.cachedCompile(p, capabilities: caps)) } catch let e as StrataError {
                throw e.context("seccomp profile \(path)")
            }
        }
    }
}

public struct LaunchSpec: Sendable {
    public var id: String
    public var rootfs: String
    /// The container's own folder: hostname, hosts, resolv.conf are written here.
    public var stateDirectory: String
    public var process: ProcessSpec
    public var hostname: String
    public var hostNetwork: Bool
    public var limits: Limits
    public var volumes: [VolumeSpec]
    public var readOnly: Bool
    public var tty: Bool
    public var interactive: Bool
    public var initProcess: Bool
    public var security: SecurityOptions
    public init(id: String, rootfs: String, stateDirectory: String, process: ProcessSpec, hostname: String,
                hostNetwork: Bool, limits: Limits, volumes: [VolumeSpec], readOnly: Bool, tty: Bool,
                interactive: Bool, initProcess: Bool, security: SecurityOptions = SecurityOptions()) {
        self.id = id; self.rootfs = rootfs; self.stateDirectory = stateDirectory; self.process = process
        self.hostname = hostname; self.hostNetwork = hostNetwork; self.limits = limits; self.volumes = volumes
        self.readOnly = readOnly; self.tty = tty; self.interactive = interactive; self.initProcess = initProcess
        self.security = security
    }
}

/// The environment a container process gets: the image's and the flags', plus a default `PATH`
/// and the user's `HOME` where they are missing, as Docker does.
public enum ProcessEnvironment {
    public static let defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    public static func completed(_ env: [String], user: RootfsFiles.User) -> [String] {
        var out = env
        if !out.contains(where: { $0.hasPrefix("PATH=") }) { out.append(defaultPath) }
        if !out.contains(where: { $0.hasPrefix("HOME=") }) { out.append("HOME=\(user.home)") }
        return out
    }
}

/// Paths runc masks and makes read-only (runc's default spec).
public enum ProcfsPolicy {
    public static let masked = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                                "/sys/firmware", "/sys/devices/virtual/powercap"]
    public static let readOnly = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
}

/// Why the process did not start, with the exit code Docker uses.
public struct LaunchFailure: Error, CustomStringConvertible {
    public var exitCode: Int32
    public var message: String
    public var description: String { message }
}

/// Runs a process in a rootfs in new namespaces with cgroup limits, and waits for it.
public final class Launcher: @unchecked Sendable {
    public let spec: LaunchSpec
    /// Called with the pid once the process runs (for `ps`), and with nil when it is gone.
    public var onPid: (pid_t?) -> Void = { _ in }

    public init(spec: LaunchSpec) { self.spec = spec }

    /// Resolves everything that can fail before any process or cgroup exists.
    func prepare() throws -> (path: String, user: RootfsFiles.User, env: [String]) {
        let files = try RootfsFiles(rootfs: spec.rootfs)
        let user = try files.user(spec.process.user)
        var env = ProcessEnvironment.completed(spec.process.env, user: user)
        if spec.tty && !env.contains(where: { $0.hasPrefix("TERM=") }) { env.append("TERM=xterm") }
        if !env.contains(where: { $0.hasPrefix("HOSTNAME=") }) { env.append("HOSTNAME=\(spec.hostname)") }
        guard let argv0 = spec.process.args.first else {
            throw LaunchFailure(exitCode: 125, message: "no command: the image has no Entrypoint or Cmd; give one")
        }
        let pathVar = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? ""
        let program: String
        // A program inside a volume is not in the rootfs: the exec itself tells whether it runs.
        let inVolume = argv0.hasPrefix("/") && spec.volumes.contains { argv0 == $0.target || argv0.hasPrefix($0.target + "/") }
        switch inVolume ? .found(argv0) : files.program(argv0, path: pathVar) {
        case .found(let p): program = p
        case .notFound: throw LaunchFailure(exitCode: 127, message: "\(argv0): executable file not found in the container's $PATH")
        case .notExecutable(let p): throw LaunchFailure(exitCode: 126, message: "\(p): permission denied (not an executable file)")
        }
        for v in spec.volumes {
            if let source = v.source {
                guard let h = try? FDHandle.open(source, flags: STRATA_O_PATH), let st = try? h.stat() else {
                    throw LaunchFailure(exitCode: 125, message: "volume source \(source) does not exist")
                }
                if (st.st_mode & S_IFMT) == S_IFDIR { try files.makeDirectory(v.target) } else { try files.makeFile(v.target) }
            } else {
                try files.makeDirectory(v.target)
            }
        }
        try files.makeDirectory(spec.process.cwd)
        return (program, user, env)
    }

    /// Writes /etc/hostname, /etc/hosts and /etc/resolv.conf into the container's folder.
    func writeNetworkFiles() throws -> [(String, String)] {
        let hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t\(spec.hostname)\n"
        var resolv = "nameserver 127.0.0.53\n"
        if spec.hostNetwork, let f = try? FDHandle.open("/etc/resolv.conf", flags: O_RDONLY),
           let bytes = try? f.readAll(limit: 1 << 20, label: "/etc/resolv.conf") { resolv = String(decoding: bytes, as: UTF8.self) }
        let files = [("hostname", spec.hostname + "\n"), ("hosts", hosts), ("resolv.conf", resolv)]
        var out: [(String, String)] = []
        for (name, content) in files {
            let path = spec.stateDirectory + "/" + name
            let f = try FDHandle.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
            try f.writeAll(Array(content.utf8))
            out.append((path, "/etc/" + name))
        }
        return out
    }

    /// Runs the process to its end; returns its exit code (128+N when killed by signal N).
    public func run() throws -> Int32 {
        let (program, user, env) = try prepare()
        var security = spec.security
        let resolved = try security.resolve()
        let capabilities = resolved.capabilities, seccomp = resolved.seccomp
        let initBinary = spec.initProcess ? try InitBinary.sealedCopy() : nil
        let binds = try writeNetworkFiles()
        let layout = CgroupLayout.current()
        let views = layout.map { $0.containerView(mountinfo: MountTable.text() ?? "") } ?? []
        let cgroup = layout.map { Cgroup(layout: $0, id: spec.id) }
        if (spec.limits.memory != nil || spec.limits.cpus != nil || spec.limits.pids != nil) && cgroup == nil {
            throw LaunchFailure(exitCode: 125, message: "limits were asked for, but no cgroup hierarchy is mounted here")
        }
        // Removed on every way out, a failed create included (some directories may exist).
        defer { cgroup?.remove() }
        // Until the process has joined, an empty cgroup of ours must not look like a leftover.
        var creating = layout.flatMap { CgroupCreationLock(layout: $0, exclusive: false) }
        try cgroup?.create(spec.limits, allDevices: spec.security.privileged)

        // Everything the child reads is built now: nothing is allocated after the clone.
        var cStrings: [UnsafeMutablePointer<CChar>] = []
        defer { cStrings.forEach { free($0) } }
        func c(_ s: String) -> UnsafeMutablePointer<CChar> { let p = strdup(s)!; cStrings.append(p); return p }
        func list(_ xs: [String]) -> [UnsafeMutablePointer<CChar>?] { xs.map { c($0) } + [nil] }
        let argv = list(spec.process.args), envp = list(env)
        let initArgv = list(["strata-init", program] + spec.process.args)
        let privileged = spec.security.privileged
        let masked: [UnsafePointer<CChar>?] = privileged ? [] : ProcfsPolicy.masked.map { UnsafePointer(c($0)) }
        let ro: [UnsafePointer<CChar>?] = privileged ? [] : ProcfsPolicy.readOnly.map { UnsafePointer(c($0)) }
        let cgroupMounts = views.map { v in
            strata_cgroup_mount(name: v.name.map { UnsafePointer(c($0)) }, fstype: UnsafePointer(c(v.fstype)),
                                data: v.data.map { UnsafePointer(c($0)) })
        }
        let filter = seccomp ?? []
        let bindFiles: [UnsafePointer<CChar>?] = binds.flatMap { [UnsafePointer(c($0.0)), UnsafePointer(c($0.1))] }
        let mounts = spec.volumes.map { v in
            strata_mount(source: v.source.map { UnsafePointer(c($0)) }, target: UnsafePointer(c(v.target)),
                         readonly: v.readOnly ? 1 : 0, tmpfs: v.tmpfs ? 1 : 0)
        }
        let groups = user.groups

        // Pseudo-terminal: the child opens it in its own devpts and sends us the master.
        var master: Int32 = -1
        var console: [Int32] = [-1, -1]
        if spec.tty {
            guard strata_socketpair(&console) == 0 else {
                throw LaunchFailure(exitCode: 125, message: "cannot create the console socket: \(Errno.current)")
            }
        }

        var goPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard strata_pipe_cloexec(&goPipe) == 0, strata_pipe_cloexec(&errPipe) == 0 else {
            throw LaunchFailure(exitCode: 125, message: "cannot create pipes: \(Errno.current)")
        }
        // The child needs the read end of "go" across the clone (it reads before exec).
        let pid: pid_t = argv.withUnsafeBufferPointer { a in envp.withUnsafeBufferPointer { e in
            masked.withUnsafeBufferPointer { mk in ro.withUnsafeBufferPointer { r in bindFiles.withUnsafeBufferPointer { bf in
                mounts.withUnsafeBufferPointer { mt in groups.withUnsafeBufferPointer { g in
                cgroupMounts.withUnsafeBufferPointer { cm in filter.withUnsafeBytes { bpf in initArgv.withUnsafeBufferPointer { ia in
                    var cfg = strata_launch()
                    cfg.rootfs = UnsafePointer(c(spec.rootfs))
                    cfg.path = UnsafePointer(c(program))
                    cfg.argv = UnsafePointer(a.baseAddress)
                    cfg.envp = UnsafePointer(e.baseAddress)
                    cfg.cwd = UnsafePointer(c(spec.process.cwd))
                    cfg.hostname = UnsafePointer(c(spec.hostname))
                    cfg.uid = user.uid
                    cfg.gid = user.gid
                    cfg.groups = g.baseAddress
                    cfg.ngroups = Int32(groups.count)
                    cfg.new_net = spec.hostNetwork ? 0 : 1
                    cfg.readonly_rootfs = spec.readOnly ? 1 : 0
                    cfg.init_fd = initBinary?.fd ?? -1
                    cfg.init_argv = UnsafePointer(ia.baseAddress)
                    cfg.privileged = privileged ? 1 : 0
                    cfg.console_socket = console[1]
                    cfg.capabilities = capabilities.mask
                    cfg.cgroup_mounts = cm.baseAddress
                    cfg.ncgroup_mounts = Int32(cgroupMounts.count)
                    cfg.seccomp_filter = seccomp == nil ? nil : bpf.baseAddress
                    cfg.seccomp_len = Int32(filter.count / 8)
                    cfg.mounts = mt.baseAddress
                    cfg.nmounts = Int32(mounts.count)
                    cfg.bind_files = bf.baseAddress
                    cfg.nbind_files = Int32(binds.count)
                    cfg.masked_paths = mk.baseAddress
                    cfg.nmasked = Int32(masked.count)
                    cfg.readonly_paths = r.baseAddress
                    cfg.nreadonly = Int32(ro.count)
                    return strata_launch(&cfg, goPipe[0], errPipe[1])
                } } } } }
            } } }
        } }
        close(goPipe[0]); close(errPipe[1])
        if console[1] >= 0 { close(console[1]) }
        guard pid > 0 else {
            close(goPipe[1]); close(errPipe[0])
            throw LaunchFailure(exitCode: 125, message: "cannot clone the container process: \(Errno.current)")
        }
        // Join the cgroups before the child unshares its cgroup namespace, then let it go.
        do { try cgroup?.join(pid) } catch {
            kill(pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, 0)
            throw error
        }
        creating = nil
        var go: UInt8 = 1
        _ = write(goPipe[1], &go, 1)
        close(goPipe[1])
        if console[0] >= 0 {
            master = strata_recv_fd(console[0])
            close(console[0])
            var ws = winsize()
            if master >= 0, ioctl(0, UInt(TIOCGWINSZ), &ws) == 0 { _ = ioctl(master, UInt(TIOCSWINSZ), &ws) }
        }
        var report = [Int32](repeating: 0, count: 2)
        let n = read(errPipe[0], &report, 8)
        close(errPipe[0])
        if n == 8 {
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            let e = Errno(report[1])
            if report[0] == Int32(ST_EXEC) {
                throw LaunchFailure(exitCode: e.rawValue == ENOENT ? 127 : 126, message: "cannot run \(program): \(e)")
            }
            let step = String(cString: strata_launch_step_name(report[0]))
            throw LaunchFailure(exitCode: 125, message: "container setup failed while \(step): \(e)")
        }
        // Forward signals to the container; relay the terminal.
        let forwarded = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH]
        var sources: [DispatchSourceSignal] = []
        for s in forwarded {
            signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler {
                if s == SIGWINCH, master >= 0 {
                    var ws = winsize()
                    if ioctl(0, UInt(TIOCGWINSZ), &ws) == 0 { _ = ioctl(master, UInt(TIOCSWINSZ), &ws) }
                    return
                }
                kill(pid, s)
            }
            src.resume()
            sources.append(src)
        }
        defer {
            sources.forEach { $0.cancel() }
            for s in forwarded { signal(s, SIG_DFL) }
        }
        // Announced once signals are forwarded: whoever sees the pid can signal strata.
        onPid(pid)
        defer { onPid(nil) }
        var restore: termios?
        var output: DispatchSemaphore?
        if master >= 0 {
            restore = Terminal.makeRaw(0)
            output = Terminal.relay(master: master, interactive: spec.interactive)
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if var t = restore { tcsetattr(0, TCSANOW, &t) }
        if master >= 0 {
            // The last output: the relay ends when the pty reports the other side closed.
            _ = output?.wait(timeout: .now() + 2)
            close(master)
        }
        let signaled = (status & 0x7f) != 0
        return signaled ? 128 + (status & 0x7f) : (status >> 8) & 0xff
    }
}

enum Terminal {
    /// Puts a terminal in raw mode; returns the settings to restore (nil when not a terminal).
    static func makeRaw(_ fd: Int32) -> termios? {
        guard isatty(fd) != 0 else { return nil }
        var t = termios()
        guard tcgetattr(fd, &t) == 0 else { return nil }
        let saved = t
        cfmakeraw(&t)
        tcsetattr(fd, TCSANOW, &t)
        return saved
    }

    /// Copies stdin → master (when interactive) and master → stdout on two threads; the
    /// semaphore is signalled when the output side is done.
    static func relay(master: Int32, interactive: Bool) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        if interactive {
            Thread.detachNewThread {
                var buf = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = read(0, &buf, buf.count)
                    if n <= 0 { break }
                    _ = buf.withUnsafeBytes { write(master, $0.baseAddress, n) }
                }
            }
        }
        Thread.detachNewThread {
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(master, &buf, buf.count)
                if n <= 0 { break }
                _ = buf.withUnsafeBytes { write(1, $0.baseAddress, n) }
            }
            done.signal()
        }
        return done
    }
}
