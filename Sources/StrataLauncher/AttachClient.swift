#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore
import StrataSystem

/// `attach`'s end of a detached container's monitor (strata-monitor's attach socket, see its
/// header): the container's output to this process's stdout and stderr, this process's input
/// to the container, the window size with a terminal, until the container ends or the detach
/// keys are typed.
public struct AttachClient {
    /// How the session ended.
    public enum Ending: Sendable, Equatable { case containerEnded, detached }

    /// The keys that detach (Docker's `--detach-keys`: `ctrl-p,ctrl-q` by default).
    public var detachKeys: [UInt8]
    /// Send this process's stdin to the container.
    public var stdin = true
    /// Ask for what the container wrote since its start first (`start -a`: nothing is lost
    /// between the start and the attach).
    public var replay = false
    /// The container has a terminal: this one goes raw while attached, and its size follows.
    public var tty = false

    /// Docker's default detach keys, ctrl-p then ctrl-q.
    public static let defaultDetachKeys: [UInt8] = [0x10, 0x11]

    /// A client detaching on `detachKeys`.
    public init(detachKeys: [UInt8] = AttachClient.defaultDetachKeys) { self.detachKeys = detachKeys }

    /// Docker's `--detach-keys` form: comma-separated `ctrl-X` (a letter, `@`, `[`, `\`, `]`,
    /// `^`, `_`) or single characters.
    public static func parseKeys(_ text: String) throws -> [UInt8] {
        var keys: [UInt8] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            let bad = StrataError(.invalidArgument, "invalid --detach-keys \"\(text)\": ctrl-<letter>, ctrl-@, ctrl-[ … or single characters, separated by commas")
            if part.hasPrefix("ctrl-") {
                let rest = Array(part.dropFirst(5).utf8)
                guard rest.count == 1 else { throw bad }
                let c = rest[0]
                switch c {
                case UInt8(ascii: "a")...UInt8(ascii: "z"): keys.append(c - UInt8(ascii: "a") + 1)
                case UInt8(ascii: "@"): keys.append(0)
                case UInt8(ascii: "[")...UInt8(ascii: "_"): keys.append(c - UInt8(ascii: "@"))
                default: throw bad
                }
            } else {
                let bytes = Array(part.utf8)
                guard bytes.count == 1 else { throw bad }
                keys.append(bytes[0])
            }
        }
        guard !keys.isEmpty else { throw StrataError(.invalidArgument, "invalid --detach-keys: empty") }
        return keys
    }

    /// Connects to the socket in the container's folder `directory`; runs the session.
    public func run(directory: String) throws -> Ending {
        let sock = try AttachClient.connect(directory)
        if replay { _ = send(sock.fd, [UInt8(ascii: "r")]) }
        let saved = tty && stdin ? Terminal.makeRaw(0) : nil
        defer { if var s = saved { tcsetattr(0, TCSANOW, &s) } }
        if tty { sendWindowSize(sock.fd) }
        var inputOpen = stdin
        var matched = 0
        var lastRows: (UInt16, UInt16)?
        var buffer = [UInt8](repeating: 0, count: 1 + 65536)
        while true {
            var fds = [pollfd(fd: sock.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: inputOpen ? 0 : -1, events: Int16(POLLIN), revents: 0)]
            let r = poll(&fds, 2, tty ? 250 : -1)
            if r < 0 && errno != EINTR { throw StrataError.errno(.system, "attach: poll") }
            if tty, let size = AttachClient.windowSize(), size != lastRows.map({ ($0.0, $0.1) }) ?? (0, 0) {
                lastRows = size
                sendWindowSize(sock.fd)
            }
            if fds[0].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { recv(sock.fd, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return .containerEnded }
                let target: Int32 = buffer[0] == UInt8(ascii: "E") ? 2 : 1
                buffer.withUnsafeBytes { b in
                    var off = 1
                    while off < n {
                        let w = write(target, b.baseAddress! + off, n - off)
                        if w <= 0 { if errno == EINTR { continue }; break }
                        off += w
                    }
                }
            }
            if inputOpen && fds[1].revents != 0 {
                var input = [UInt8](repeating: 0, count: 4096)
                let n = read(0, &input, input.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    inputOpen = false
                    _ = send(sock.fd, [UInt8(ascii: "e")])
                    continue
                }
                // The detach keys, typed in a row (across reads), are not sent; a partial match
                // that breaks off is sent as it was typed.
                var out: [UInt8] = []
                for byte in input[0..<n] {
                    if byte == detachKeys[matched] {
                        matched += 1
                        if matched == detachKeys.count {
                            if !out.isEmpty { _ = send(sock.fd, [UInt8(ascii: "i")] + out) }
                            return .detached
                        }
                        continue
                    }
                    out += detachKeys[0..<matched]
                    matched = 0
                    if byte == detachKeys[0] { matched = 1 } else { out.append(byte) }
                }
                if !out.isEmpty { _ = send(sock.fd, [UInt8(ascii: "i")] + out) }
            }
        }
    }

    private func send(_ fd: Int32, _ message: [UInt8]) -> Bool {
        message.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == message.count
    }

    private func sendWindowSize(_ fd: Int32) {
        guard let (rows, cols) = AttachClient.windowSize() else { return }
        var msg: [UInt8] = [UInt8(ascii: "w")]
        withUnsafeBytes(of: rows.littleEndian) { msg += $0 }
        withUnsafeBytes(of: cols.littleEndian) { msg += $0 }
        _ = send(fd, msg)
    }

    static func windowSize() -> (UInt16, UInt16)? {
        var ws = winsize()
        guard isatty(0) != 0, strata_get_winsize(0, &ws) == 0 else { return nil }
        return (ws.ws_row, ws.ws_col)
    }

    /// The monitor's socket in `directory`, reached through /proc/self/fd (a long store path
    /// would not fit in a socket address).
    static func connect(_ directory: String) throws -> FDHandle {
        let dir = try FDHandle.open(directory, flags: [.pathOnly, .directory])
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StrataError.errno(.system, "attach: socket") }
        let sock = FDHandle(owning: fd)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array("/proc/self/fd/\(dir.fd)/attach.sock".utf8) + [0]
        withUnsafeMutableBytes(of: &addr.sun_path) { p in p.copyBytes(from: path.prefix(p.count)) }
        // A monitor that has just started the container makes its socket a moment later.
        var r: Int32 = -1
        for _ in 0..<100 {
            r = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard r != 0, errno == ENOENT || errno == ECONNREFUSED else { break }
            usleep(20_000)
        }
        guard r == 0 else {
            throw StrataError(.conflict, "cannot attach: the container's monitor does not answer (it is not running, or was started without strata-monitor)",
                              cause: Errno.current)
        }
        return sock
    }
}
