#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import StrataCore
import StrataSystem

/// Runs a process inside a running container (`exec`): in every namespace of its first
/// process, in its cgroups, as a user of its image, with the container's capabilities and
/// seccomp filter and no_new_privs.
public struct ExecLauncher {
    public var id: String
    /// The container's pid 1, as the host sees it.
    public var target: Int32
    /// The container's root as the host reaches it, `/proc/PID/root` (for its users and `PATH`).
    public var rootfs: String
    public var process: ProcessSpec
    public var security: SecurityOptions
    /// A pseudo-terminal from the container's devpts, relayed to this one.
    public var tty = false
    /// Keep standard input flowing to the terminal.
    public var interactive = false
    /// Where the container's cgroups are (`CgroupParent.forStore`).
    public var cgroupParent: String

    /// An exec of `process` into container `id` whose first process is `target`.
    public init(id: String, target: Int32, rootfs: String, process: ProcessSpec, security: SecurityOptions,
                cgroupParent: String, tty: Bool = false, interactive: Bool = false) {
        self.id = id; self.target = target; self.rootfs = rootfs; self.process = process; self.security = security
        self.cgroupParent = cgroupParent; self.tty = tty; self.interactive = interactive
    }

    /// Runs the process to its end; its exit code (128+N for signal N; 126, 127 and 125 as `run`).
    public func run() throws -> Int32 {
        let spec = LaunchSpec(id: id, rootfs: rootfs, stateDirectory: "/", process: process, hostname: "", hostNetwork: false,
                              limits: Limits(), volumes: [], readOnly: false, tty: tty, interactive: interactive, initProcess: false,
                              security: security)
        let launcher = Launcher(spec: spec)
        let (program, user, env) = try launcher.prepare()
        var security = self.security
        let resolved = try security.resolve()
        let arena = CArena()
        var cfg = strata_exec()
        cfg.target = target
        cfg.path = arena.string(program)
        cfg.argv = UnsafePointer(arena.list(process.args))
        cfg.envp = UnsafePointer(arena.list(env.filter { !$0.hasPrefix("HOSTNAME=") }))
        cfg.cwd = arena.string(process.cwd)
        cfg.uid = user.uid
        cfg.gid = user.gid
        cfg.groups = arena.copy(user.groups)
        cfg.ngroups = Int32(user.groups.count)
        cfg.capabilities = resolved.capabilities.mask
        if let bpf = resolved.seccomp {
            cfg.seccomp_filter = UnsafeRawPointer(arena.copy(bpf))
            cfg.seccomp_len = Int32(bpf.count / 8)
        }
        let cgroup = CgroupLayout.current().map { Cgroup(layout: $0, id: id, parent: cgroupParent) }
        var stdio = try ProcessStdio(plan: .relayed, tty: tty, interactive: interactive)
        let childFDs = stdio.child
        let (pid, report, master) = try Launcher.cloneChild(tty: tty, what: "the exec process", cgroup: cgroup,
                                                            stdio: &stdio) { consoleFD, goFD, errFD in
            cfg.console_socket = consoleFD
            cfg.stdio = (childFDs[0], childFDs[1], childFDs[2])
            return withExtendedLifetime(arena) { strata_exec(&cfg, goFD, errFD) }
        }
        do { try launcher.awaitExec(pid, report: report, program: program) } catch { stdio.closeAll(); throw error }
        // Signals reach the process that waits for the command; its terminal or stdio pipes are
        // relayed as run's.
        return launcher.supervise(pid, master: master, stdio: &stdio)
    }
}
