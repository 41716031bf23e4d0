#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import StrataCore

/// Where a container process's stdin, stdout and stderr come from. Never strata's own: those
/// may be the caller's terminal (a process holding it could push input into the caller's shell
/// with TIOCSTI) or a host file (readable and truncatable through /proc/self/fd).
public enum StdioPlan: Sendable {
    /// Pipes that strata copies while it waits: its stdin into the process with `-i` (else the
    /// process reads /dev/null), the process's stdout and stderr out to its own.
    case relayed
    /// As `relayed`, but both stdout and stderr go to strata's stderr (a build step's output:
    /// strata's stdout carries the built image's ID).
    case relayedToStderr
    /// These fds (the caller's; duplicated for the child) become 0, 1 and 2: the monitor's log
    /// pipes and /dev/null.
    case given(stdin: Int32, stdout: Int32, stderr: Int32)
    /// /dev/null as 0, 1 and 2 (`exec -d`: nothing waits for the process or reads its output).
    case discarded
}

/// The three fds a process gets as 0, 1 and 2 at its clone, and, when relayed, the ends strata
/// keeps and copies. All are close-on-exec and above 2, so the child can place them safely.
struct ProcessStdio {
    /// Become the child's 0, 1 and 2; closed here once the child has its copies.
    private(set) var child: [Int32] = [-1, -1, -1]
    /// strata's ends: the stdin pipe's write end (-1 unless interactive), the stdout and stderr
    /// pipes' read ends.
    private var kept: [Int32] = [-1, -1, -1]
    private var relayed = false
    /// Where the process's stdout is copied to.
    private var outputFD: Int32 = 1

    /// The fds for `plan`. With a terminal the child's are /dev/null (the pty replaces them).
    init(plan: StdioPlan, tty: Bool, interactive: Bool) throws {
        do {
            if tty {
                for i in 0..<3 { child[i] = try ProcessStdio.devNull() }
                return
            }
            switch plan {
            case .given(let stdin, let stdout, let stderr):
                for (i, fd) in [stdin, stdout, stderr].enumerated() {
                    let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
                    guard copy >= 0 else { throw StrataError.errno(.system, "cannot duplicate fd \(fd) for the container's stdio") }
                    child[i] = copy
                }
            case .discarded:
                for i in 0..<3 { child[i] = try ProcessStdio.devNull() }
            case .relayed, .relayedToStderr:
                relayed = true
                if case .relayedToStderr = plan { outputFD = 2 }
                if interactive {
                    let (r, w) = try ProcessStdio.pipe("stdin")
                    child[0] = r; kept[0] = w
                } else {
                    child[0] = try ProcessStdio.devNull()
                }
                for i in 1...2 {
                    let (r, w) = try ProcessStdio.pipe(i == 1 ? "stdout" : "stderr")
                    child[i] = w; kept[i] = r
                }
            }
        } catch {
            closeAll()
            throw error
        }
    }

    /// After the clone: the child holds its own copies.
    mutating func closeChildEnds() {
        for i in 0..<3 where child[i] >= 0 { close(child[i]); child[i] = -1 }
    }

    /// On a failed start: everything.
    mutating func closeAll() {
        closeChildEnds()
        for i in 0..<3 where kept[i] >= 0 { close(kept[i]); kept[i] = -1 }
    }

    /// Copies between strata's stdio and the process's pipes until `pid` has ended and its
    /// output is drained (nothing to do unless relayed). Closes strata's ends.
    mutating func pump(until pid: pid_t) {
        guard relayed else { return }
        var p = strata_stdio_pump(in_src: kept[0] >= 0 ? 0 : -1, in_dst: kept[0], out_src: kept[1], out_dst: outputFD,
                                  err_src: kept[2], err_dst: 2, pid: pid)
        strata_stdio_pump(&p)
        kept = [-1, -1, -1]
    }

    private static func devNull() throws -> Int32 {
        let fd = strata_fd_above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC))
        guard fd >= 0 else { throw StrataError.errno(.system, "cannot open /dev/null for the container's stdin") }
        return fd
    }

    private static func pipe(_ what: String) throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard strata_pipe_cloexec(&fds) == 0 else { throw StrataError.errno(.system, "cannot create the container's \(what) pipe") }
        let r = strata_fd_above_stdio(fds[0]), w = strata_fd_above_stdio(fds[1])
        guard r >= 0, w >= 0 else {
            if r >= 0 { close(r) }
            if w >= 0 { close(w) }
            throw StrataError.errno(.system, "cannot create the container's \(what) pipe")
        }
        return (r, w)
    }
}
