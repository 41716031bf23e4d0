#if canImport(Glibc)
import Glibc
#endif
import StrataCore

/// Ports of the host's IPv4 stack.
public enum HostPorts {
    /// Binds `port` (0: any) of `address` ("" for every address) for `udp` or TCP and lets it
    /// go; the port bound. Fails when something of the host listens there.
    public static func probe(address: String, port: UInt16, udp: Bool) throws -> UInt16 {
        let s = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw StrataError.errno(.system, "cannot make a socket") }
        defer { close(s) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        if !address.isEmpty {
            guard inet_pton(AF_INET, address, &sa.sin_addr) == 1 else {
                throw StrataError(.invalidArgument, "\(address) is not an IPv4 address of this host")
            }
        }
        let r = withUnsafePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else {
            let e = Errno.current
            let where_ = "\(address.isEmpty ? "0.0.0.0" : address):\(port)/\(udp ? "udp" : "tcp")"
            if e.rawValue == EADDRINUSE { throw StrataError(.inUse, "port \(where_) is in use on this host; choose another host port") }
            if e.rawValue == EADDRNOTAVAIL { throw StrataError(.invalidArgument, "\(address) is not an address of this host (-p \(where_))") }
            throw StrataError(.system, "cannot bind \(where_): \(e)")
        }
        var out = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &out) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) }
        }
        return UInt16(bigEndian: out.sin_port)
    }
}
