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

    /// Runs the process to its end; its exit code (128+N for signal N; 126, 127 and 125 as `run`).
    public func run() throws -> Int32 {
        let tty = process.terminal ?? false
        let program = try Launcher.program(process.args, env: process.env, in: try RootfsFiles(rootfs: rootfs), volumeTargets: [])
        let security = try SpecSecurity(process, seccomp: seccomp)
        let groups = process.user.additionalGids ?? []
        let arena = CArena()
        var cfg = strata_exec()
        cfg.target = target
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
        var stdio = try ProcessStdio(plan: detached ? .discarded : .relayed, tty: tty, interactive: interactive)
        let childFDs = stdio.child
        let (pid, report, master) = try Launcher.cloneChild(tty: tty, what: "the exec process", cgroup: cgroup,
                                                            stdio: &stdio) { consoleFD, goFD, errFD in
            cfg.console_socket = consoleFD
            cfg.stdio = (childFDs[0], childFDs[1], childFDs[2])
            return withExtendedLifetime(arena) { strata_exec(&cfg, goFD, errFD) }
        }
        do { try Launcher.awaitExec(pid, report: report, program: program) } catch { stdio.closeAll(); throw error }
        if detached {
            // The intermediate process waits for the command on its own; it leaves no zombie of
            // ours (this process ends, and init reaps it), and holds nothing but /dev/null.
            stdio.closeAll()
            return 0
        }
        // Signals reach the process that waits for the command; its terminal or stdio pipes are
        // relayed as run's.
        return Launcher.supervise(pid, master: master, interactive: interactive, stdio: &stdio, onPid: { _ in })
    }
}
