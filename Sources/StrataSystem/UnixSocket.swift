#if canImport(Glibc)
import Glibc
#endif
import StrataCore

/// A request over a stream unix socket (a helper's API, e.g. slirp4netns's): `request` sent,
/// the peer's answer read until it closes or `limit` bytes.
public enum UnixSocket {
    public static func exchange(_ path: String, request: [UInt8], limit: Int = 1 << 16) throws -> [UInt8] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StrataError.errno(.system, "cannot make a socket") }
        let sock = FDHandle(owning: fd)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw StrataError(.invalidArgument, "socket path \(path) is too long")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in p.copyBytes(from: bytes + [0]) }
        let r = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard r == 0 else { throw StrataError.errno(.system, "cannot connect to \(path)") }
        try sock.writeAll(request)
        _ = shutdown(fd, Int32(SHUT_WR))
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = try buffer.withUnsafeMutableBytes { try sock.read(into: $0) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return out
    }
}
