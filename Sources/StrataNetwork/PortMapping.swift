import StrataCore

/// A published port (`-p`): a host address and port forwarded to a port of the container.
public struct PortMapping: Codable, Sendable, Equatable, Hashable {
    /// The host address it listens on; "" for every address.
    public var hostIP: String
    /// 0 until a free one is taken at the start (`-p 80`, `-P`).
    public var hostPort: UInt16
    public var containerPort: UInt16
    /// tcp, udp or sctp.
    public var proto: String

    public init(hostIP: String = "", hostPort: UInt16, containerPort: UInt16, proto: String = "tcp") {
        self.hostIP = hostIP; self.hostPort = hostPort; self.containerPort = containerPort; self.proto = proto
    }

    /// `-p` as Docker reads it: `[[IP:][HOST]:]CTR[/PROTO]` (`80`, `8080:80`, `127.0.0.1:8080:80`,
    /// `127.0.0.1::80`, `53:53/udp`).
    public init(parsing text: String) throws {
        func bad(_ why: String) -> StrataError {
            StrataError(.invalidArgument, "invalid -p \"\(text.prefix(80))\": \(why) ([[IP:][HOST]:]CONTAINER[/tcp|udp|sctp], e.g. 127.0.0.1:8080:80)")
        }
        var rest = Substring(text)
        var proto = "tcp"
        if let slash = rest.lastIndex(of: "/") {
            proto = String(rest[rest.index(after: slash)...]).lowercased()
            rest = rest[..<slash]
            guard ["tcp", "udp", "sctp"].contains(proto) else { throw bad("unknown protocol \(proto)") }
        }
        var parts = rest.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (1...3).contains(parts.count) else { throw bad("too many parts (IPv6 host addresses are not supported)") }
        func port(_ s: String, what: String) throws -> UInt16 {
            guard let n = UInt16(s), n > 0 else { throw bad("\(what) \"\(s)\" is not a port from 1 to 65535") }
            return n
        }
        let container = try port(parts.removeLast(), what: "the container port")
        var host: UInt16 = 0
        if let h = parts.popLast(), !h.isEmpty { host = try port(h, what: "the host port") }
        let ip = parts.popLast() ?? ""
        if !ip.isEmpty, IPv4Address(ip) == nil { throw bad("\(ip) is not an IPv4 address") }
        self.init(hostIP: ip == "0.0.0.0" ? "" : ip, hostPort: host, containerPort: container, proto: proto)
    }

    /// `80/tcp` (the image's EXPOSE form; a bare number is tcp).
    public static func exposed(_ text: String) -> (port: UInt16, proto: String)? {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let p = parts.first.flatMap({ UInt16($0) }), p > 0 else { return nil }
        let proto = parts.count == 2 ? parts[1].lowercased() : "tcp"
        return ["tcp", "udp", "sctp"].contains(proto) ? (p, proto) : nil
    }

    /// As `port` prints it: `80/tcp -> 127.0.0.1:8080`.
    public var description: String {
        "\(containerPort)/\(proto) -> \(hostIP.isEmpty ? "0.0.0.0" : hostIP):\(hostPort)"
    }
}
