import StrataCore

/// An IPv4 address, as a number (network order read as a big-endian integer).
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var value: UInt32
    public init(_ value: UInt32) { self.value = value }

    /// Dotted quad, e.g. 10.89.0.2; nil if it is not one.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isASCII), let n = UInt32(p), n <= 255 else { return nil }
            guard p.count == 1 || p.first != "0" else { return nil }
            v = v << 8 | n
        }
        value = v
    }

    public var description: String { "\(value >> 24).\(value >> 16 & 255).\(value >> 8 & 255).\(value & 255)" }
    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let a = IPv4Address(text) else { throw StrataError(.invalidFormat, "\"\(text.prefix(40))\" is not an IPv4 address") }
        self = a
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// An IPv4 subnet: its network address and prefix length (10.89.0.0/24).
public struct IPv4Subnet: Hashable, Sendable, CustomStringConvertible, Codable {
    public var network: IPv4Address
    public var prefix: Int

    public init(network: IPv4Address, prefix: Int) {
        self.prefix = prefix
        self.network = IPv4Address(network.value & IPv4Subnet.mask(prefix))
    }

    /// `A.B.C.D/N`; the host bits must be zero.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = IPv4Address(String(parts[0])), let n = Int(parts[1]), (8...30).contains(n) else {
            throw StrataError(.invalidArgument, "invalid subnet \"\(text.prefix(60))\": an IPv4 subnet A.B.C.D/N with N from 8 to 30 (IPv6 networks are not supported)")
        }
        guard a.value & ~IPv4Subnet.mask(n) == 0 else {
            throw StrataError(.invalidArgument, "invalid subnet \(text): host bits are set (\(IPv4Subnet(network: a, prefix: n)) is the network)")
        }
        self.init(network: a, prefix: n)
    }

    static func mask(_ prefix: Int) -> UInt32 { prefix == 0 ? 0 : ~UInt32(0) << UInt32(32 - prefix) }
    public var mask: UInt32 { IPv4Subnet.mask(prefix) }
    public var broadcast: IPv4Address { IPv4Address(network.value | ~mask) }
    /// The first address for hosts (the default gateway).
    public var firstHost: IPv4Address { IPv4Address(network.value + 1) }
    public func contains(_ a: IPv4Address) -> Bool { a.value & mask == network.value }
    /// An address hosts may have: not the network's or the broadcast address.
    public func isHost(_ a: IPv4Address) -> Bool { contains(a) && a != network && a != broadcast }
    public func overlaps(_ other: IPv4Subnet) -> Bool {
        let m = IPv4Subnet.mask(min(prefix, other.prefix))
        return network.value & m == other.network.value & m
    }
    public var description: String { "\(network)/\(prefix)" }

    public init(from decoder: any Decoder) throws {
        self = try IPv4Subnet(parsing: try decoder.singleValueContainer().decode(String.self))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
