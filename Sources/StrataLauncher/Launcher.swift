#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import CStrata
import Dispatch
import FoundationEssentials
import StrataCore
import StrataSystem

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

/// The security a spec asks for, ready for the kernel: the capability mask and the BPF program.
struct SpecSecurity {
    var capabilities: CapabilitySet
    /// The BPF program; nil for none.
    var seccomp: [UInt8]?
    /// `process.rlimits` in the kernel's numbers.
    var rlimits: [strata_rlimit]

    /// From the process's bounding set and `linux.seccomp` (compiled through the cache).
    init(_ process: RuntimeSpec.Process, seccomp profile: SeccompProfile?) throws {
        let caps = try CapabilitySet(specNames: process.capabilities?.bounding ?? [])
        capabilities = caps
        seccomp = try profile.map { try SeccompCompiler.cachedCompile($0, capabilities: caps) }
        rlimits = try Rlimits.kernel(process.rlimits)
    }
}

/// Runs a container's process as its runtime spec says, in new namespaces with cgroup limits,
/// and waits for it.
// @unchecked: `onPid` is set before `run()` and not changed while it runs; `run()` calls it
// from the calling thread only.
public final class Launcher: @unchecked Sendable {
    public let id: String
    /// The container's folder: the spec's rootfs and /etc files are relative to it.
    public let bundle: String
    public let spec: RuntimeSpec
    /// Where the process's stdin, stdout and stderr come from (never strata's own).
    public var stdio: StdioPlan = .relayed
    /// Keep standard input flowing to the process (`-i`).
    public var interactive = false
    /// Where the container's cgroups go in each hierarchy (`CgroupParent.forStore`).
    public var cgroupParent = "strata/default"
    /// The network namespace the process joins (a bridge network's, set up by the engine before
    /// the start; another container's); nil: as the spec says (a new one, or the host's).
    public var networkNamespace: FDHandle?
    /// Called with the pid once the process runs (for `ps`), and with nil when it is gone.
    public var onPid: (pid_t?) -> Void = { _ in }

    /// A launcher for container `id`, whose spec is `spec` in the folder `bundle`.
    public init(id: String, bundle: String, spec: RuntimeSpec) {
        self.id = id; self.bundle = bundle; self.spec = spec
    }

    var rootfs: String { spec.rootfs(bundle: bundle) }
    var tty: Bool { spec.process.terminal ?? false }

    /// The mounts this launcher makes from the spec: binds and tmpfs, in order. The standard
    /// ones (`RuntimeSpec.standardMounts`) it makes itself.
    var volumes: [RuntimeSpec.Mount] { spec.mounts.filter { !RuntimeSpec.isStandard($0) } }

    /// A tmpfs mount's data string from its spec options: the `mode=` and `size=` ones.
    static func tmpfsData(_ options: [String]) -> String {
        let data = options.filter { $0.hasPrefix("mode=") || $0.hasPrefix("size=") }
        return data.isEmpty ? "mode=1777" : data.joined(separator: ",")
    }

    /// Resolves everything that can fail before any process or cgroup exists: the program,
    /// the mount points and the working directory in the rootfs. Returns the program's path.
    func prepare() throws -> String {
        let files = try RootfsFiles(rootfs: rootfs)
        let targets = volumes.map(\.destination)
        let program = try Launcher.program(spec.process.args, env: spec.process.env, in: files, volumeTargets: targets)
        for v in volumes {
            if v.type == "tmpfs" {
                try files.makeDirectory(v.destination)
                continue
            }
            guard let source = v.source, let h = try? FDHandle.open(source, flags: .pathOnly), let st = try? h.stat() else {
                throw LaunchFailure(exitCode: 125, message: "volume source \(v.source ?? "(none)") does not exist")
            }
            if st.kind == .directory { try files.makeDirectory(v.destination) } else { try files.makeFile(v.destination) }
        }
        try files.makeDirectory(spec.process.cwd)
        return program
    }

    /// The program argv[0] names, found as the container would: a path as given, else on
    /// `PATH` of `env`, inside the rootfs. One inside a volume is not in the rootfs: the exec
    /// itself tells whether it runs. Throws with Docker's codes (127 not found, 126 not executable).
    static func program(_ args: [String], env: [String], in files: RootfsFiles, volumeTargets: [String]) throws -> String {
        guard let argv0 = args.first else {
            throw LaunchFailure(exitCode: 125, message: "no command: the image has no Entrypoint or Cmd; give one")
        }
        let pathVar = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? ""
        let inVolume = argv0.hasPrefix("/") && volumeTargets.contains { argv0 == $0 || argv0.hasPrefix($0 + "/") }
        switch inVolume ? .found(argv0) : files.program(argv0, path: pathVar) {
        case .found(let p): return p
        case .notFound: throw LaunchFailure(exitCode: 127, message: "\(argv0): executable file not found in the container's $PATH")
        case .notExecutable(let p): throw LaunchFailure(exitCode: 126, message: "\(p): permission denied (not an executable file)")
        }
    }

    /// Runs the process to its end; returns its exit code (128+N when killed by signal N).
    public func run() throws -> Int32 {
        var started = try start()
        defer { started.cgroup?.remove() }
        return Launcher.supervise(started.pid, master: started.master, interactive: interactive, stdio: &started.stdio, onPid: onPid)
    }

    /// Starts the process and leaves it to the caller, who waits for it (it is this process's
    /// child) and then releases its cgroups (`ContainerCgroups.release`). Returns its pid once
    /// it has exec'd. Without a terminal and with `stdio` given only.
    public func startDetached() throws -> pid_t {
        guard !tty, case .given = stdio else {
            throw StrataError(.invalidArgument, "a process left to another program has no terminal and its stdio given")
        }
        return try start().pid
    }

    /// As `startDetached`, with a terminal: the process and its pty's master, the caller's.
    public func startDetachedWithTerminal() throws -> (pid: pid_t, master: FDHandle) {
        guard tty else { throw StrataError(.invalidArgument, "startDetachedWithTerminal needs a spec with a terminal") }
        let started = try start()
        return (started.pid, FDHandle(owning: started.master))
    }

    /// What `start` leaves running: the process, its pty master (or -1), the stdio ends kept
    /// here, its cgroup (removed on every failure before the process runs).
    struct Started {
        let pid: pid_t
        let master: Int32
        var stdio: ProcessStdio
        let cgroup: Cgroup?
    }

    func start() throws -> Started {
        let program = try prepare()
        let security = try SpecSecurity(spec.process, seccomp: spec.linux.seccomp)
        let initBinary = spec.flag(RuntimeSpec.Annotation.initProcess) ? try InitBinary.sealedCopy() : nil
        // A network namespace the spec names by path is joined, or the start fails: never the
        // host's network in its place.
        if networkNamespace == nil, let path = spec.linux.namespaces.first(where: { $0.type == "network" })?.path {
            do { networkNamespace = try NetworkNamespaceFile.open(path) } catch {
                throw LaunchFailure(exitCode: 125, message: "cannot join the container's network namespace: \(error)")
            }
        }
        let mountinfo = MountTable.text()  // read once: the layout and the container's view of it
        let layout = CgroupLayout.current(mountinfo: mountinfo)
        let cgroup = layout.map { Cgroup(layout: $0, id: id, parent: cgroupParent) }
        let limits = spec.limits
        if limits.asked && cgroup == nil {
            throw LaunchFailure(exitCode: 125, message: "limits were asked for, but \(CgroupLayout.unavailableReason)")
        }
        let devices = try spec.deviceRules()
        // Removed on every way out before the process runs, a failed create included (some
        // directories may exist); after that, by whoever waits for the process.
        var running = false
        defer { if !running { cgroup?.remove() } }
        // Until the process has joined, an empty cgroup of ours must not look like a leftover.
        let creating = layout.flatMap { CgroupCreationLock(layout: $0, exclusive: false, parent: cgroupParent) }
        try cgroup?.create(limits, devices: devices)

        // Everything the child reads is built now: nothing is allocated after the clone.
        let arena = CArena()
        var cfg = childConfig(program: program, security: security,
                              views: layout.map { $0.containerView(mountinfo: mountinfo ?? "") } ?? [], arena: arena)
        cfg.init_fd = initBinary?.fd ?? -1

        // The last moment a signal can still cancel the start (see SignalRelay).
        try SignalRelay.checkNotCancelled("container \(id.prefix(12))")
        // Pseudo-terminal: the child opens it in its own devpts and sends us the master.
        var stdio = try ProcessStdio(plan: stdio, tty: tty, interactive: interactive)
        let childFDs = stdio.child
        let (pid, report, master) = try Launcher.cloneChild(tty: tty, what: "the container process", cgroup: cgroup,
                                                            stdio: &stdio) { consoleFD, goFD, errFD in
            cfg.console_socket = consoleFD
            cfg.stdio = (childFDs[0], childFDs[1], childFDs[2])
            // The child needs the read end of "go" across the clone (it reads before exec).
            return withExtendedLifetime(arena) { strata_launch(&cfg, goFD, errFD) }
        }
        creating?.release()  // the process has joined (cloneChild joins it): gc may look now
        do { try Launcher.awaitExec(pid, report: report, program: program) } catch { stdio.closeAll(); throw error }
        running = true
        return Started(pid: pid, master: master, stdio: stdio, cgroup: cgroup)
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
    private func childConfig(program: String, security: SpecSecurity, views: [CgroupView], arena: CArena) -> strata_launch {
        let privileged = spec.flag(RuntimeSpec.Annotation.privileged)
        let p = spec.process
        let groups = p.user.additionalGids ?? []
        var cfg = strata_launch()
        cfg.rootfs = arena.string(rootfs)
        cfg.path = arena.string(program)
        cfg.argv = UnsafePointer(arena.list(p.args))
        // With a terminal, `TERM` as Docker sets it when the spec has none (not kept in the
        // spec: an exec without a terminal, or a start under the monitor, has no terminal).
        let env = tty && !p.env.contains(where: { $0.hasPrefix("TERM=") }) ? p.env + ["TERM=xterm"] : p.env
        cfg.envp = UnsafePointer(arena.list(env))
        cfg.init_argv = UnsafePointer(arena.list(["strata-init", program] + p.args))
        cfg.cwd = arena.string(p.cwd)
        cfg.hostname = arena.string(spec.hostname ?? String(id.prefix(12)))
        cfg.uid = p.user.uid
        cfg.gid = p.user.gid
        cfg.groups = arena.copy(groups)
        cfg.ngroups = Int32(groups.count)
        cfg.new_net = spec.newNetwork && networkNamespace == nil ? 1 : 0
        cfg.net_fd = networkNamespace?.fd ?? -1
        cfg.readonly_rootfs = spec.root.readonly == true ? 1 : 0
        cfg.privileged = privileged ? 1 : 0
        cfg.capabilities = security.capabilities.mask
        cfg.no_new_privs = p.noNewPrivileges == true ? 1 : 0
        cfg.rlimits = arena.copy(security.rlimits)
        cfg.nrlimits = Int32(security.rlimits.count)
        cfg.shm_size = spec.shmSize ?? 0
        cfg.rootless = UserNamespace.current.isRootless ? 1 : 0
        // Rootless: each device's host node, to bind (docs/rootless.md).
        var sources: [String: String] = [:]
        if UserNamespace.current.isRootless {
            for line in (spec.annotation(RuntimeSpec.Annotation.deviceSources) ?? "").split(separator: "\n") {
                let parts = line.split(separator: "\t", maxSplits: 1).map(String.init)
                if parts.count == 2 { sources[parts[0]] = parts[1] }
            }
        }
        let devices = (spec.linux.devices ?? []).map { d in
            strata_device(path: arena.string(String(d.path.dropFirst("/dev/".count))),
                          host: sources[d.path].map { arena.string($0) },
                          mode: (d.type == "b" ? UInt32(S_IFBLK) : UInt32(S_IFCHR)) | ((d.fileMode ?? 0o666) & 0o777),
                          major: UInt32(d.major), minor: UInt32(d.minor))
        }
        cfg.devices = arena.copy(devices)
        cfg.ndevices = Int32(devices.count)
        let cgroupMounts = views.map { v in
            strata_cgroup_mount(name: v.name.map { arena.string($0) }, fstype: arena.string(v.fstype), data: v.data.map { arena.string($0) })
        }
        cfg.cgroup_mounts = arena.copy(cgroupMounts)
        cfg.ncgroup_mounts = Int32(cgroupMounts.count)
        if let program = security.seccomp {
            cfg.seccomp_filter = UnsafeRawPointer(arena.copy(program))
            cfg.seccomp_len = Int32(program.count / 8)
        }
        let mounts = volumes.map { v in
            strata_mount(source: v.type == "tmpfs" ? nil : v.source.map { arena.string($0) }, target: arena.string(v.destination),
                         readonly: v.options?.contains("ro") == true ? 1 : 0, tmpfs: v.type == "tmpfs" ? 1 : 0,
                         data: v.type == "tmpfs" ? arena.string(Launcher.tmpfsData(v.options ?? [])) : nil)
        }
        cfg.mounts = arena.copy(mounts)
        cfg.nmounts = Int32(mounts.count)
        let masked = spec.linux.maskedPaths ?? [], readOnly = spec.linux.readonlyPaths ?? []
        cfg.masked_paths = arena.copy(masked.map { arena.string($0) as UnsafePointer<CChar>? })
        cfg.nmasked = Int32(masked.count)
        cfg.readonly_paths = arena.copy(readOnly.map { arena.string($0) as UnsafePointer<CChar>? })
        cfg.nreadonly = Int32(readOnly.count)
        return cfg
    }

    /// Waits for the exec (EOF on the close-on-exec error pipe) or the child's report of the
    /// step that failed.
    static func awaitExec(_ pid: pid_t, report fd: Int32, program: String) throws {
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
    static func supervise(_ pid: pid_t, master: Int32, interactive: Bool, stdio: inout ProcessStdio, onPid: (pid_t?) -> Void) -> Int32 {
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
            output = Terminal.relay(master: master, interactive: interactive)
        }
        stdio.pump(until: pid)
        let code = waitForChild(pid)
        if var t = restore { tcsetattr(0, TCSANOW, &t) }
        if master >= 0 {
            // The last output: the relay ends when the pty reports the other side closed.
            _ = output?.wait(timeout: .now() + 2)
            close(master)
        }
        return code
    }
}

/// Waits for `pid`, a child of this process: its exit code, or 128+N when signal N killed it
/// (the shell's and Docker's convention).
func waitForChild(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status & 0x7f) != 0 ? 128 + (status & 0x7f) : (status >> 8) & 0xff
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
