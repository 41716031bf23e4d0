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
    /// A process: argv, environment, working directory and user (`name`, `uid`, `uid:gid`).
    public init(args: [String], env: [String], cwd: String, user: String) {
        self.args = args; self.env = env; self.cwd = cwd; self.user = user
    }
}

/// A bind mount or tmpfs in the container.
public struct VolumeSpec: Sendable, Equatable {
    public var source: String?
    public var target: String
    public var readOnly: Bool
    public var tmpfs: Bool
    /// A volume from `source` (nil with `tmpfs`) at `target`.
    public init(source: String?, target: String, readOnly: Bool, tmpfs: Bool) {
        self.source = source; self.target = target; self.readOnly = readOnly; self.tmpfs = tmpfs
    }
}

/// Everything a launch needs: the rootfs, the process, namespaces, limits, volumes, security.
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
    /// Where the process's stdin, stdout and stderr come from (never strata's own).
    public var stdio: StdioPlan = .relayed
    /// Where the container's cgroups go in each hierarchy (`CgroupParent.forStore`).
    public var cgroupParent = "strata/default"
    /// A launch of `process` in `rootfs`; the rest as `run`'s flags give them.
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

    /// `env` with the default `PATH` and `user`'s `HOME` added where it has none.
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
    /// A failure with Docker's exit code for it (125 strata, 126 cannot run, 127 not found).
    public init(exitCode: Int32, message: String) { self.exitCode = exitCode; self.message = message }
}

/// Runs a process in a rootfs in new namespaces with cgroup limits, and waits for it.
// @unchecked: `onPid` is set before `run()` and not changed while it runs; `run()` calls it
// from the calling thread only.
public final class Launcher: @unchecked Sendable {
    public let spec: LaunchSpec
    /// Called with the pid once the process runs (for `ps`), and with nil when it is gone.
    public var onPid: (pid_t?) -> Void = { _ in }

    /// A launcher for `spec`.
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
                guard let h = try? FDHandle.open(source, flags: .pathOnly), let st = try? h.stat() else {
                    throw LaunchFailure(exitCode: 125, message: "volume source \(source) does not exist")
                }
                if FileKind(mode: st.st_mode) == .directory { try files.makeDirectory(v.target) } else { try files.makeFile(v.target) }
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
        if spec.hostNetwork, let f = try? FDHandle.open("/etc/resolv.conf", flags: .readOnly),
           let bytes = try? f.readAll(limit: 1 << 20, label: "/etc/resolv.conf") { resolv = String(decoding: bytes, as: UTF8.self) }
        let files = [("hostname", spec.hostname + "\n"), ("hosts", hosts), ("resolv.conf", resolv)]
        var out: [(String, String)] = []
        for (name, content) in files {
            let path = spec.stateDirectory + "/" + name
            let f = try FDHandle.open(path, flags: [.writeOnly, .create, .truncate], mode: 0o644)
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
        let initBinary = spec.initProcess ? try InitBinary.sealedCopy() : nil
        let binds = try writeNetworkFiles()
        let mountinfo = MountTable.text()  // read once: the layout and the container's view of it
        let layout = CgroupLayout.current(mountinfo: mountinfo)
        let cgroup = layout.map { Cgroup(layout: $0, id: spec.id, parent: spec.cgroupParent) }
        if spec.limits.asked && cgroup == nil {
            throw LaunchFailure(exitCode: 125, message: "limits were asked for, but no cgroup hierarchy is mounted here")
        }
        // Removed on every way out, a failed create included (some directories may exist).
        defer { cgroup?.remove() }
        // Until the process has joined, an empty cgroup of ours must not look like a leftover.
        let creating = layout.flatMap { CgroupCreationLock(layout: $0, exclusive: false, parent: spec.cgroupParent) }
        try cgroup?.create(spec.limits, allDevices: spec.security.privileged)

        // Everything the child reads is built now: nothing is allocated after the clone.
        let arena = CArena()
        var cfg = childConfig(program: program, user: user, env: env, resolved: resolved, binds: binds,
                              views: layout.map { $0.containerView(mountinfo: mountinfo ?? "") } ?? [], arena: arena)
        cfg.init_fd = initBinary?.fd ?? -1

        // The last moment a signal can still cancel the start (see SignalRelay).
        try SignalRelay.checkNotCancelled("container \(spec.id.prefix(12))")
        // Pseudo-terminal: the child opens it in its own devpts and sends us the master.
        var stdio = try ProcessStdio(plan: spec.stdio, tty: spec.tty, interactive: spec.interactive)
        let childFDs = stdio.child
        let (pid, report, master) = try Launcher.cloneChild(tty: spec.tty, what: "the container process", cgroup: cgroup,
                                                            stdio: &stdio) { consoleFD, goFD, errFD in
            cfg.console_socket = consoleFD
            cfg.stdio = (childFDs[0], childFDs[1], childFDs[2])
            // The child needs the read end of "go" across the clone (it reads before exec).
            return withExtendedLifetime(arena) { strata_launch(&cfg, goFD, errFD) }
        }
        creating?.release()  // the process has joined (cloneChild joins it): gc may look now
        do { try awaitExec(pid, report: report, program: program) } catch { stdio.closeAll(); throw error }
        return supervise(pid, master: master, stdio: &stdio)
    }

    /// The handshake around a clone: a console socket with a terminal, the "go" and error pipes.
    /// `clone` gets the console's child end, the read end of "go" and the write end of the error
    /// pipe, and returns the pid; the child takes `stdio`'s child ends as its 0, 1 and 2 (closed
    /// here after the clone). The child is put into `cgroup` (its cgroup namespace is made or
    /// joined after that), then let go. Returns the pid, the error pipe's read end and, with a
    /// terminal, the pty master the child sent (sized as our terminal; else -1).
    static func cloneChild(tty: Bool, what: String, cgroup: Cgroup?, stdio: inout ProcessStdio,
                           clone: (Int32, Int32, Int32) -> pid_t) throws -> (pid: pid_t, report: Int32, master: Int32) {
        var console: [Int32] = [-1, -1]
        if tty, strata_socketpair(&console) != 0 {
            stdio.closeAll()
            throw LaunchFailure(exitCode: 125, message: "cannot create the console socket: \(Errno.current)")
        }
        var goPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard strata_pipe_cloexec(&goPipe) == 0, strata_pipe_cloexec(&errPipe) == 0 else {
            stdio.closeAll()
            throw LaunchFailure(exitCode: 125, message: "cannot create pipes: \(Errno.current)")
        }
        let pid = clone(console[1], goPipe[0], errPipe[1])
        close(goPipe[0]); close(errPipe[1])
        if console[1] >= 0 { close(console[1]) }
        stdio.closeChildEnds()
        guard pid > 0 else {
            close(goPipe[1]); close(errPipe[0])
            if console[0] >= 0 { close(console[0]) }
            stdio.closeAll()
            throw LaunchFailure(exitCode: 125, message: "cannot clone \(what): \(Errno.current)")
        }
        do { try cgroup?.join(pid) } catch {
            kill(pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, 0)
            close(goPipe[1]); close(errPipe[0])
            if console[0] >= 0 { close(console[0]) }
            stdio.closeAll()
            throw error
        }
        var go: UInt8 = 1
        _ = write(goPipe[1], &go, 1)
        close(goPipe[1])
        var master: Int32 = -1
        if console[0] >= 0 {
            master = strata_recv_fd(console[0])
            close(console[0])
            var ws = winsize()
            if master >= 0, ioctl(0, UInt(TIOCGWINSZ), &ws) == 0 { _ = ioctl(master, UInt(TIOCSWINSZ), &ws) }
        }
        return (pid, errPipe[0], master)
    }

    /// The child's whole configuration, its strings and arrays in `arena`.
    private func childConfig(program: String, user: RootfsFiles.User, env: [String], resolved: SecurityOptions.Resolved,
                             binds: [(String, String)], views: [CgroupView], arena: CArena) -> strata_launch {
        let privileged = spec.security.privileged
        var cfg = strata_launch()
        cfg.rootfs = arena.string(spec.rootfs)
        cfg.path = arena.string(program)
        cfg.argv = UnsafePointer(arena.list(spec.process.args))
        cfg.envp = UnsafePointer(arena.list(env))
        cfg.init_argv = UnsafePointer(arena.list(["strata-init", program] + spec.process.args))
        cfg.cwd = arena.string(spec.process.cwd)
        cfg.hostname = arena.string(spec.hostname)
        cfg.uid = user.uid
        cfg.gid = user.gid
        cfg.groups = arena.copy(user.groups)
        cfg.ngroups = Int32(user.groups.count)
        cfg.new_net = spec.hostNetwork ? 0 : 1
        cfg.readonly_rootfs = spec.readOnly ? 1 : 0
        cfg.privileged = privileged ? 1 : 0
        cfg.capabilities = resolved.capabilities.mask
        let cgroupMounts = views.map { v in
            strata_cgroup_mount(name: v.name.map { arena.string($0) }, fstype: arena.string(v.fstype), data: v.data.map { arena.string($0) })
        }
        cfg.cgroup_mounts = arena.copy(cgroupMounts)
        cfg.ncgroup_mounts = Int32(cgroupMounts.count)
        if let program = resolved.seccomp {
            cfg.seccomp_filter = UnsafeRawPointer(arena.copy(program))
            cfg.seccomp_len = Int32(program.count / 8)
        }
        let mounts = spec.volumes.map { v in
            strata_mount(source: v.source.map { arena.string($0) }, target: arena.string(v.target),
                         readonly: v.readOnly ? 1 : 0, tmpfs: v.tmpfs ? 1 : 0)
        }
        cfg.mounts = arena.copy(mounts)
        cfg.nmounts = Int32(mounts.count)
        cfg.bind_files = arena.copy(binds.flatMap { [arena.string($0.0), arena.string($0.1)] as [UnsafePointer<CChar>?] })
        cfg.nbind_files = Int32(binds.count)
        let masked = privileged ? [] : ProcfsPolicy.masked, readOnly = privileged ? [] : ProcfsPolicy.readOnly
        cfg.masked_paths = arena.copy(masked.map { arena.string($0) as UnsafePointer<CChar>? })
        cfg.nmasked = Int32(masked.count)
        cfg.readonly_paths = arena.copy(readOnly.map { arena.string($0) as UnsafePointer<CChar>? })
        cfg.nreadonly = Int32(readOnly.count)
        return cfg
    }

    /// Waits for the exec (EOF on the close-on-exec error pipe) or the child's report of the
    /// step that failed.
    func awaitExec(_ pid: pid_t, report fd: Int32, program: String) throws {
        var report = [Int32](repeating: 0, count: 2)
        let n = read(fd, &report, 8)
        close(fd)
        guard n == 8 else { return }
        var st: Int32 = 0
        waitpid(pid, &st, 0)
        let e = Errno(report[1])
        if report[0] == Int32(ST_EXEC) {
            throw LaunchFailure(exitCode: e.rawValue == ENOENT ? 127 : 126, message: "cannot run \(program): \(e)")
        }
        let step = String(cString: strata_launch_step_name(report[0]))
        throw LaunchFailure(exitCode: 125, message: "container setup failed while \(step): \(e)")
    }

    /// Forwards signals to the container and relays its terminal, or copies its stdio pipes,
    /// until it exits; its exit code.
    func supervise(_ pid: pid_t, master: Int32, stdio: inout ProcessStdio) -> Int32 {
        // Signals to strata go to the process from here on (SignalRelay; installed at the start
        // of `run` and `exec`, here for whoever did not), what came before it included.
        SignalRelay.begin()
        SignalRelay.target(pid, master: master)
        defer { SignalRelay.target(0, master: -1) }  // reaped: its pid may belong to another process soon
        // Announced once signals are forwarded: whoever sees the pid can signal strata.
        onPid(pid)
        defer { onPid(nil) }
        var restore: termios?
        var output: DispatchSemaphore?
        if master >= 0 {
            restore = Terminal.makeRaw(0)
            output = Terminal.relay(master: master, interactive: spec.interactive)
        }
        stdio.pump(until: pid)
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

/// C memory for the child's configuration: strings and arrays (malloc'd, freed together) that
/// stay put until the arena goes, after the clone, so the child reads them without allocating.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { blocks.forEach { free($0) } }

    func string(_ s: String) -> UnsafePointer<CChar> {
        let p = strdup(s)!
        blocks.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    /// A NULL-terminated array of C strings (argv, envp).
    func list(_ xs: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let raw = malloc(MemoryLayout<UnsafeMutablePointer<CChar>?>.stride * (xs.count + 1))!
        blocks.append(raw)
        let out = raw.bindMemory(to: UnsafeMutablePointer<CChar>?.self, capacity: xs.count + 1)
        for (i, x) in xs.enumerated() { out[i] = UnsafeMutablePointer(mutating: string(x)) }
        out[xs.count] = nil
        return out
    }

    /// A copy of `xs` (nil when empty).
    func copy<T>(_ xs: [T]) -> UnsafePointer<T>? {
        guard !xs.isEmpty else { return nil }
        // Plain C data only (strings, numbers, C structs of pointers): nothing to deinitialize.
        let raw = malloc(MemoryLayout<T>.stride * xs.count)!
        blocks.append(raw)
        let out = raw.bindMemory(to: T.self, capacity: xs.count)
        out.initialize(from: xs, count: xs.count)
        return UnsafePointer(out)
    }
}
