#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import StrataCore
import StrataSystem

/// Runs a process inside a running container (`exec`): in every namespace of its first
/// process, in its cgroups, as a user of its image, with the capabilities and seccomp filter
/// of the container's spec and no_new_privs.
public struct ExecLauncher {
    public var id: String
    /// The container's pid 1, as the host sees it.
    public var target: Int32
    /// Its start time as recorded when it started (`processStartTime`): the exec enters its
    /// namespaces only if the process at `target` still has it. nil: not checked.
    public var targetStart: UInt64?
    /// The container's root as the host reaches it, `/proc/PID/root` (for its `PATH`).
    public var rootfs: String
    /// The process: args, env, cwd, user, and the container's capabilities.
    public var process: RuntimeSpec.Process
    /// The container's seccomp filter (its spec's `linux.seccomp`).
    public var seccomp: SeccompProfile?
    /// Keep standard input flowing to the process.
    public var interactive = false
    /// Where the container's cgroups are (`CgroupParent.forStore`).
    public var cgroupParent: String
    /// `exec -d`: started, then left to run (stdio /dev/null); `run` returns 0 once it has started.
    public var detached = false

    /// An exec of `process` into container `id` whose first process is `target`.
    public init(id: String, target: Int32, rootfs: String, process: RuntimeSpec.Process, seccomp: SeccompProfile?,
                cgroupParent: String, interactive: Bool = false) {
        self.id = id; self.target = target; self.rootfs = rootfs; self.process = process; self.seccomp = seccomp
        self.cgroupParent = cgroupParent; self.interactive = interactive
    }

    /// Runs the process with /dev/null as its stdin and its stdout and stderr gathered (the
    /// first `limit` bytes), killing it after `timeout` seconds: its exit code, nil when it
    /// was killed for taking too long. For health checks: nothing of strata's stdio is used.
    public func runCaptured(timeout: Double, limit: Int) throws -> (exitCode: Int32?, output: [UInt8]) {
        let (readEnd, writeEnd) = try FDHandle.pipe()
        let null = try FDHandle.open("/dev/null", flags: .readOnly)
        var launched = try launch(.given(stdin: null.fd, stdout: writeEnd.fd, stderr: writeEnd.fd))
        launched.stdio.closeAll()
        _ = consume writeEnd
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonicSeconds() + timeout
        var timedOut = false
        while true {
            let left = deadline - monotonicSeconds()
            if left <= 0 { timedOut = true; break }
            guard readEnd.waitReadable(seconds: min(left, 1)) else { continue }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(readEnd.fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if output.count < limit { output += buffer[0..<min(n, limit - output.count)] }
        }
        // The waiting process dies with SIGKILL; the command follows it (its parent-death signal).
        if timedOut { kill(launched.pid, SIGKILL) }
        let code = waitForChild(launched.pid)
        return (timedOut ? nil : code, output)
    }

    /// Runs the process to its end; its exit code (128+N for signal N; 126, 127 and 125 as `run`).
    public func run() throws -> Int32 {
        var launched = try launch(detached ? .discarded : .relayed)
        if detached {
            // The intermediate process waits for the command on its own; it leaves no zombie of
            // ours (this process ends, and init reaps it), and holds nothing but /dev/null.
            launched.stdio.closeAll()
            return 0
        }
        // Signals reach the process that waits for the command; its terminal or stdio pipes are
        // relayed as run's.
        return Launcher.supervise(launched.pid, master: launched.master, interactive: interactive, stdio: &launched.stdio, onPid: { _ in })
    }

    /// Starts the process with `plan` for its stdio, once it has exec'd.
    private func launch(_ plan: StdioPlan) throws -> (pid: Int32, master: Int32, stdio: ProcessStdio) {
        let tty = process.terminal ?? false
        let program = try Launcher.program(process.args, env: process.env, in: try RootfsFiles(rootfs: rootfs), volumeTargets: [])
        let security = try SpecSecurity(process, seccomp: seccomp)
        let groups = process.user.additionalGids ?? []
        let arena = CArena()
        var cfg = strata_exec()
        cfg.target = target
        cfg.target_start = targetStart ?? 0
        cfg.path = arena.string(program)
        cfg.argv = UnsafePointer(arena.list(process.args))
        cfg.envp = UnsafePointer(arena.list(process.env))
        cfg.cwd = arena.string(process.cwd)
        cfg.uid = process.user.uid
        cfg.gid = process.user.gid
        cfg.groups = arena.copy(groups)
        cfg.ngroups = Int32(groups.count)
        cfg.capabilities = security.capabilities.mask
        cfg.no_new_privs = process.noNewPrivileges == true ? 1 : 0
        cfg.rlimits = arena.copy(security.rlimits)
        cfg.nrlimits = Int32(security.rlimits.count)
        if let bpf = security.seccomp {
            cfg.seccomp_filter = UnsafeRawPointer(arena.copy(bpf))
            cfg.seccomp_len = Int32(bpf.count / 8)
        }
        let cgroup = CgroupLayout.current().map { Cgroup(layout: $0, id: id, parent: cgroupParent) }
        var stdio = try ProcessStdio(plan: plan, tty: tty, interactive: interactive)
        let childFDs = stdio.child
        let (pid, report, master) = try Launcher.cloneChild(tty: tty, what: "the exec process", cgroup: cgroup,
                                                            stdio: &stdio) { consoleFD, goFD, errFD in
            cfg.console_socket = consoleFD
            cfg.stdio = (childFDs[0], childFDs[1], childFDs[2])
            return withExtendedLifetime(arena) { strata_exec(&cfg, goFD, errFD) }
        }
        do { try Launcher.awaitExec(pid, report: report, program: program) } catch { stdio.closeAll(); throw error }
        return (pid, master, stdio)
    }
}

/// Seconds on the monotonic clock (timeouts that a change of the wall clock does not move).
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
