#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore

/// Runs a helper program of the host (netavark, its DNS server) to its end: its input from
/// bytes, its output and errors into memory. It holds nothing of strata's: every fd but 0-2 is
/// closed in it, and 0-2 are memfds, not pipes, so a daemon it leaves behind (aardvark-dns)
/// keeps no pipe of strata's open and nothing waits for one.
public enum HelperProgram {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: [UInt8]
        public var stderr: [UInt8]
        /// stderr (else stdout) as one line for a message.
        public var message: String {
            let text = String(decoding: stderr.isEmpty ? stdout : stderr, as: UTF8.self)
            return text.split(separator: "\n").last.map(String.init) ?? "exit status \(status)"
        }
    }

    /// Runs `path` with `arguments` (argv[0] is the path) and `environment` (nil: this
    /// process's); waits for it.
    public static func run(_ path: String, _ arguments: [String], input: [UInt8] = [], environment: [String]? = nil) throws -> Output {
        let files = try (0..<3).map { i -> FDHandle in
            let fd = strata_memfd("strata-helper-\(i)")
            guard fd >= 0 else { throw StrataError.errno(.system, "cannot run \(path): no memfd") }
            return FDHandle(owning: fd)
        }
        try files[0].writeAll(input)
        guard lseek(files[0].fd, 0, SEEK_SET) == 0 else { throw StrataError.errno(.system, "cannot run \(path): seek") }
        let pid = try withExtendedLifetime(files) { try spawn(path, arguments, fds: files.map(\.fd), environment: environment, newSession: false) }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 {
            guard errno == EINTR else { throw StrataError.errno(.system, "waiting for \(path)") }
        }
        let status = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
        func contents(_ f: FDHandle) -> [UInt8] {
            (try? f.stat()).map { s in
                var bytes = [UInt8](repeating: 0, count: Int(min(s.size, 1 << 20)))
                let n = bytes.withUnsafeMutableBytes { (try? f.pread(into: $0, at: 0)) ?? 0 }
                return Array(bytes.prefix(n))
            } ?? []
        }
        return Output(status: status, stdout: contents(files[1]), stderr: contents(files[2]))
    }

    /// Starts `path` as a daemon that outlives this process (its own session; stdin from
    /// /dev/null, stdout and stderr appended to `log`; every other fd closed but the write end
    /// of a pipe at fd 3 when `readyFD`), and waits until it writes a byte there (ready) or
    /// closes it (failed: the end of `log` says why). Returns its pid.
    public static func startDaemon(_ path: String, _ arguments: [String], log: String, readyFD: Bool) throws -> pid_t {
        let logFile = try FDHandle.open(log, flags: [.writeOnly, .create, .append, .noFollow], mode: 0o600)
        let null = try FDHandle.open("/dev/null", flags: .readOnly)
        var ends: [Int32] = [-1, -1]
        guard strata_pipe2_cloexec(&ends) == 0 else { throw StrataError.errno(.system, "cannot make a pipe") }
        let readEnd = FDHandle(owning: ends[0])
        let pid: pid_t
        do {
            defer { close(ends[1]) }  // after the spawn only the daemon holds it: EOF means it ended unready
            pid = try withExtendedLifetime((null, logFile)) {
                try spawn(path, arguments, fds: [null.fd, logFile.fd, logFile.fd] + (readyFD ? [ends[1]] : []), environment: nil, newSession: true)
            }
        }
        guard readyFD else { return pid }
        var byte: UInt8 = 0
        guard withUnsafeMutableBytes(of: &byte, { (try? readEnd.read(into: $0)) ?? 0 }) == 1 else {
            var st: Int32 = 0
            waitpid(pid, &st, WNOHANG)
            let tail = (try? FDHandle.open(log, flags: .readOnly).readAll(limit: 1 << 20, label: log)).map {
                String(decoding: $0, as: UTF8.self).split(separator: "\n").suffix(2).joined(separator: "; ")
            } ?? ""
            throw StrataError(.system, "\(path) did not start\(tail.isEmpty ? "" : ": " + tail)")
        }
        return pid
    }

    /// posix_spawn of `path` where `fds[i]` becomes the child's fd i and every other fd is
    /// closed; default signal dispositions and an empty mask, whatever this process blocks;
    /// with `newSession`, a session of its own.
    private static func spawn(_ path: String, _ arguments: [String], fds: [Int32], environment: [String]?, newSession: Bool) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (i, fd) in fds.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, Int32(i)) }
        guard strata_spawn_closefrom(&actions, Int32(fds.count)) == 0 else { throw StrataError.errno(.system, "cannot run \(path)") }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all); sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setsigmask(&attr, &none)
        let setsid: Int32 = 0x80  // POSIX_SPAWN_SETSID (glibc 2.26), hidden from Swift's Glibc module
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (newSession ? setsid : 0)))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup($0) } + [nil] }
        defer { envp?.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = envp.map { e in posix_spawn(&pid, path, &actions, &attr, argv, e) } ?? posix_spawn(&pid, path, &actions, &attr, argv, environ)
        guard rc == 0 else { throw StrataError(.system, "cannot run \(path): \(Errno(rc))") }
        return pid
    }

    /// The first of `candidates` that is an executable file.
    public static func find(_ candidates: [String]) -> String? {
        candidates.first { access($0, X_OK) == 0 }
    }
}
