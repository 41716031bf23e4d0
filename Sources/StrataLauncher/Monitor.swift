#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import StrataCore
import StrataSystem

/// The program that watches a detached container: a `strata` process of its own (the role
/// conmon plays for podman), started in a new session so that it outlives the command that
/// started it. Which program, with which arguments, is the engine's parameter: the command line
/// names itself; a program using the library names a strata binary.
public struct MonitorCommand: Sendable {
    /// The executable.
    public var executable: String
    /// Its argv after argv[0], for the container with this ID.
    public var arguments: @Sendable (String) -> [String]
    /// The argv after argv[0] of `executable` that cleans up after a container has ended
    /// (unmount or remove, cgroups), run by strata-monitor at its end; nil: the monitor stays
    /// the whole program while the container runs.
    public var cleanupArguments: (@Sendable (String) -> [String])?
    /// The argv after argv[0] of `executable` that starts a container again after its restart
    /// policy's delay (`--restart`); nil: no restarts.
    public var restartArguments: (@Sendable (String) -> [String])?
    /// The argv after argv[0] of `executable` that runs a container's health check once
    /// (`healthcheck run ID`), which strata-monitor starts every interval; nil: no checks.
    public var healthArguments: (@Sendable (String) -> [String])?

    public init(executable: String, arguments: @escaping @Sendable (String) -> [String],
                cleanupArguments: (@Sendable (String) -> [String])? = nil,
                restartArguments: (@Sendable (String) -> [String])? = nil, healthArguments: (@Sendable (String) -> [String])? = nil) {
        self.executable = executable; self.arguments = arguments; self.cleanupArguments = cleanupArguments
        self.restartArguments = restartArguments; self.healthArguments = healthArguments
    }

    /// `strata --root ROOT --driver DRIVER container-monitor ID` (and `container-cleanup ID`) of
    /// the strata binary at `executable`, an absolute path.
    public static func strata(_ executable: String, root: String, driver: String) -> MonitorCommand {
        MonitorCommand(executable: executable, arguments: { ["--root", root, "--driver", driver, "container-monitor", $0] },
                       cleanupArguments: { ["--root", root, "--driver", driver, "container-cleanup", $0] },
                       restartArguments: { ["--root", root, "--driver", driver, "container-restart", $0] },
                       healthArguments: { ["--root", root, "--driver", driver, "-q", "healthcheck", "run", $0] })
    }
}

/// strata-monitor, the small C program (Sources/strata-monitor) that takes over a detached
/// container's monitor once the container runs: it holds the log pipes, writes the log,
/// forwards signals, records the exit and then runs the cleanup command.
package enum SmallMonitor {
    /// Where it is, next to strata or in a libexec directory; nil when it is not installed.
    package static var binary: String? {
        HelperBinary.candidates("strata-monitor").first { access($0, X_OK) == 0 }
    }

    /// Replaces this process with strata-monitor watching `pid` (a child of this process),
    /// reading `stdout` and `stderr` into the log at `log`. Returns only when the exec failed.
    /// With `health`, it also runs that command (a health check) every `every` seconds while
    /// the container runs, one at a time.
    /// `io` is how the container's stdio reaches the monitor: its two output pipes, or its
    /// terminal's master; and the write end of its stdin pipe (`-i` without `-t`).
    package static func exec(_ binary: String, pid: Int32, io: MonitoredIO, log: String, maxSize: Int64,
                             stateDirectory: String, startedAt: String, health: (every: Double, command: [String])? = nil,
                             cleanup: [String]) -> Errno {
        // These ends cross the exec; every other fd of strata is close-on-exec.
        let crossing = io.descriptors
        for fd in crossing { _ = fcntl(fd, F_SETFD, 0) }
        let healthArgs = health.map { ["--health", String(max(1, Int(($0.every * 1000).rounded())))] + $0.command + ["--"] } ?? []
        var options = ["--attach"]
        if case .terminal = io.output { options.append("--tty") }
        if let stdin = io.stdin { options += ["--stdin", String(stdin.fd)] }
        if io.stdinOnce { options.append("--stdin-once") }
        let argv = [binary, String(pid)] + io.outputArguments + [log, String(maxSize), stateDirectory, startedAt]
            + options + healthArgs + cleanup
        let cArgs = argv.map { strdup($0) } + [nil]
        execv(binary, cArgs)
        let e = Errno.current
        cArgs.forEach { free($0) }
        for fd in crossing { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return e
    }

    /// A detached container's stdio as its monitor holds it.
    package struct MonitoredIO {
        package enum Output { case pipes(stdout: FDHandle, stderr: FDHandle), terminal(master: FDHandle) }
        package var output: Output
        /// The write end of its stdin pipe (`-i` without a terminal).
        package var stdin: FDHandle?
        /// The end of an attached client's input closes the container's stdin (`create -i`).
        package var stdinOnce = false

        package init(output: Output, stdin: FDHandle? = nil, stdinOnce: Bool = false) {
            self.output = output; self.stdin = stdin; self.stdinOnce = stdinOnce
        }

        var descriptors: [Int32] {
            switch output {
            case .pipes(let o, let e): return [o.fd, e.fd] + (stdin.map { [$0.fd] } ?? [])
            case .terminal(let m): return [m.fd]
            }
        }
        var outputArguments: [String] {
            switch output {
            case .pipes(let o, let e): return [String(o.fd), String(e.fd)]
            case .terminal(let m): return [String(m.fd), "-1"]
            }
        }
    }

    /// Waits for `pid`, a child of this process: its exit code (128+N for signal N).
    package static func waitForChild(_ pid: Int32) -> Int32 { StrataLauncher.waitForChild(pid) }
}

/// What a monitor tells the command that started it, as one line on its status pipe (fd 3):
/// `started PID`, or `failed CODE MESSAGE`. Written and read here only.
package enum MonitorStatus: Equatable {
    case started(pid: Int32)
    case failed(code: Int32, message: String)

    var line: String {
        switch self {
        case .started(let pid): return "started \(pid)\n"
        case .failed(let code, let message): return "failed \(code) \(message.replacingNewlines())\n"
        }
    }

    /// The status a line says; a line that is neither is a failure naming it.
    init(line: String) {
        let text = line.hasSuffix("\n") ? String(line.dropLast()) : line
        if text.hasPrefix("started "), let pid = Int32(text.dropFirst(8)) { self = .started(pid: pid); return }
        if text.hasPrefix("failed ") {
            let rest = text.dropFirst(7)
            if let code = Int32(rest.prefix { $0 != " " }) {
                self = .failed(code: code, message: String(rest.drop { $0 != " " }.dropFirst()))
                return
            }
        }
        self = .failed(code: 125, message: "the monitor ended without starting the container" + (text.isEmpty ? "" : ": \(text)"))
    }
}

extension String {
    fileprivate func replacingNewlines() -> String { split(separator: "\n", omittingEmptySubsequences: false).joined(separator: " ") }
}

/// The monitor's end of its status pipe: one status is written, then it is closed.
package final class MonitorStatusPipe {
    private var handle: FDHandle?
    init(_ handle: FDHandle) { self.handle = handle }

    /// Tells the starter how the start went; only the first status is sent.
    package func report(_ status: MonitorStatus) {
        try? handle?.writeAll(Array(status.line.utf8))
        handle = nil
    }
}

/// Starting a monitor, and its side of the status pipe.
package enum MonitorProcess {
    /// Starts `command` for container `id` detached: a new session, standard input, output and
    /// error on /dev/null, fd 3 the write end of a status pipe. Returns the read end.
    package static func spawn(_ command: MonitorCommand, id: String) throws -> FDHandle {
        var fds: [Int32] = [0, 0]
        guard strata_pipe_cloexec(&fds) == 0 else { throw StrataError.errno(.system, "cannot create the monitor's status pipe") }
        let reader = FDHandle(owning: fds[0])
        defer { close(fds[1]) }
        try spawnDetached(command.executable, arguments: command.arguments(id), statusPipe: fds[1])
        return reader
    }

    /// Starts `executable` with `arguments` detached (a new session, stdio on /dev/null), with
    /// `statusPipe` as its fd 3 when given; does not wait for it.
    package static func spawnDetached(_ executable: String, arguments: [String], statusPipe: Int32? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        if let statusPipe { posix_spawn_file_actions_adddup2(&actions, statusPipe, 3) }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // A new session: no controlling terminal, no signals from the shell that ran strata.
        posix_spawnattr_setflags(&attr, Int16(0x80))  // POSIX_SPAWN_SETSID (glibc; GNU-only, not exported to Swift)
        let argv = ["strata"] + arguments
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attr, cArgs, environ)
        guard rc == 0 else { throw StrataError(.system, "cannot start \(executable) \(arguments.suffix(2).joined(separator: " "))", cause: Errno(rc)) }
    }

    /// Waits for the monitor's one status line.
    package static func awaitStatus(_ pipe: FDHandle) -> MonitorStatus {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !out.contains(0x0a) {
            let n = (try? buffer.withUnsafeMutableBytes { try pipe.read(into: $0) }) ?? 0
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return MonitorStatus(line: String(decoding: out, as: UTF8.self))
    }

    /// In the monitor: the status pipe it was started with (fd 3), taken once; nil without one.
    package static func statusPipe() -> MonitorStatusPipe? {
        fcntl(3, F_GETFD) >= 0 ? MonitorStatusPipe(FDHandle(owning: 3)) : nil
    }

    /// In the monitor: two new log pipes and /dev/null (or, with `stdin`, a third pipe), which
    /// become the container's stdout, stderr and stdin at its clone.
    package static func outputPipes(stdin: Bool = false) throws -> LogPipes {
        var readers: [FDHandle] = [], writers: [FDHandle] = []
        for _ in 0..<(stdin ? 3 : 2) {
            var fds: [Int32] = [0, 0]
            guard strata_pipe_cloexec(&fds) == 0 else { throw StrataError.errno(.system, "cannot create a log pipe") }
            readers.append(FDHandle(owning: fds[0]))
            writers.append(FDHandle(owning: fds[1]))
        }
        let null = try FDHandle.open("/dev/null", flags: .readOnly)
        if stdin {
            // The container reads the third pipe's read end; the monitor keeps its write end.
            return LogPipes(stdout: readers[0], stderr: readers[1], writers: [writers[0], writers[1], readers[2]], null: null,
                            stdinWriter: writers[2])
        }
        return LogPipes(stdout: readers[0], stderr: readers[1], writers: writers, null: null)
    }

    /// Sends `signal` to `pid`; false when there is no such process.
    @discardableResult
    package static func signal(_ pid: Int32, _ signal: Int32) -> Bool { kill(pid, signal) == 0 }

    /// A signal's number from its name (`TERM`, `SIGTERM`, `15`), as `--stop-signal` and `kill -s` take it.
    package static func signalNumber(_ name: String) throws -> Int32 {
        let table: [String: Int32] = ["HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "KILL": SIGKILL, "USR1": SIGUSR1,
                                      "USR2": SIGUSR2, "TERM": SIGTERM, "STOP": SIGSTOP, "CONT": SIGCONT, "WINCH": SIGWINCH,
                                      "ALRM": SIGALRM, "PIPE": SIGPIPE]
        if let n = Int32(name), n > 0, n < 65 { return n }
        var key = name.uppercased()
        if key.hasPrefix("SIG") { key = String(key.dropFirst(3)) }
        guard let n = table[key] else {
            throw StrataError(.invalidArgument, "unknown signal \"\(name)\": a name (TERM, KILL, HUP, INT, USR1, …) or a number")
        }
        return n
    }
}

/// The monitor's log pipes: it reads the ends it keeps; the container gets the write ends (and
/// /dev/null as stdin) at its clone, and the monitor lets go of its own write ends once the
/// container runs, so that the pipes end when the container's processes are gone.
// @unchecked: `writers` is changed only by `release()`, on the monitor's main thread.
package final class LogPipes: @unchecked Sendable {
    package let stdout: FDHandle
    package let stderr: FDHandle
    private var writers: [FDHandle]?
    private let null: FDHandle
    /// The container's stdio: /dev/null (or the stdin pipe's read end), then the two write ends.
    package let plan: StdioPlan
    /// The stdin pipe's write end, the monitor's (`-i`).
    package let stdinWriter: FDHandle?

    init(stdout: FDHandle, stderr: FDHandle, writers: [FDHandle], null: FDHandle, stdinWriter: FDHandle? = nil) {
        self.stdout = stdout; self.stderr = stderr; self.writers = writers; self.null = null; self.stdinWriter = stdinWriter
        plan = .given(stdin: writers.count > 2 ? writers[2].fd : null.fd, stdout: writers[0].fd, stderr: writers[1].fd)
    }

    /// Closes the monitor's write ends (the container holds its own).
    package func release() { writers = nil }
}
