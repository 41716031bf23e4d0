#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import StrataCore
import StrataSystem

/// The monitor of a detached container: a `strata` process of its own (the role conmon plays
/// for podman), started in a new session so that it outlives the command that started it.
/// It reports on a pipe (its fd 3) whether the container's process started.
package enum MonitorProcess {
    /// Starts `arguments` of this very executable (/proc/self/exe) detached: a new session,
    /// standard input, output and error on /dev/null, fd 3 the write end of a status pipe.
    /// Returns the read end; the monitor writes one line there and closes it.
    package static func spawn(arguments: [String]) throws -> FDHandle {
        var fds: [Int32] = [0, 0]
        guard strata_pipe_cloexec(&fds) == 0 else { throw StrataError.errno(.system, "cannot create the monitor's status pipe") }
        let reader = FDHandle(owning: fds[0])
        defer { close(fds[1]) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // A new session: no controlling terminal, no signals from the shell that ran strata.
        posix_spawnattr_setflags(&attr, Int16(0x80))  // POSIX_SPAWN_SETSID (glibc; GNU-only, not exported to Swift)
        let argv = ["strata"] + arguments
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attr, cArgs, environ)
        guard rc == 0 else { throw StrataError(.system, "cannot start the container monitor", cause: Errno(rc)) }
        return reader
    }

    /// In the monitor: the status pipe, if this process was started with one.
    package static var statusPipe: FDHandle? {
        fcntl(3, F_GETFD) >= 0 ? FDHandle(owning: 3) : nil
    }

    /// In the monitor: two new log pipes and /dev/null, which become the container's stdout,
    /// stderr and stdin at its clone.
    package static func outputPipes() throws -> LogPipes {
        var readers: [FDHandle] = [], writers: [FDHandle] = []
        for _ in 0..<2 {
            var fds: [Int32] = [0, 0]
            guard strata_pipe_cloexec(&fds) == 0 else { throw StrataError.errno(.system, "cannot create a log pipe") }
            readers.append(FDHandle(owning: fds[0]))
            writers.append(FDHandle(owning: fds[1]))
        }
        let null = try FDHandle.open("/dev/null", flags: .readOnly)
        return LogPipes(stdout: readers[0], stderr: readers[1], writers: writers, null: null)
    }

    /// Reads one line (up to its newline, or the end) from the status pipe.
    package static func readStatus(_ pipe: FDHandle) -> String {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !out.contains(0x0a) {
            let n = (try? buffer.withUnsafeMutableBytes { try pipe.read(into: $0) }) ?? 0
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
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
    /// The container's stdio: /dev/null, then the two write ends.
    package let plan: StdioPlan

    init(stdout: FDHandle, stderr: FDHandle, writers: [FDHandle], null: FDHandle) {
        self.stdout = stdout; self.stderr = stderr; self.writers = writers; self.null = null
        plan = .given(stdin: null.fd, stdout: writers[0].fd, stderr: writers[1].fd)
    }

    /// Closes the monitor's write ends (the container holds its own).
    package func release() { writers = nil }
}
