import FoundationEssentials
import StrataCore

/// A bridge network of a store (`network create`): the record in `ROOT/networks/NAME.json`.
/// The file is the record; the bridge, its rules and its DNS server exist on the host only
/// while a container is attached (netavark makes them with the first and removes them with
/// the last).
public struct Network: Codable, Sendable, Equatable {
    public var name: String
    /// 64 hex digits, random.
    public var id: String
    public var driver = "bridge"
    /// The bridge's interface name on the host: `sb`, 8 hex digits of the store's key and a
    /// number, unique on the host (two stores never share a bridge).
    public var interface: String
    public var subnet: IPv4Subnet
    public var gateway: IPv4Address
    /// No route out and no published ports; the containers on it reach each other only.
    public var isInternal: Bool
    /// Containers resolve each other's names and aliases (aardvark-dns on the gateway). Docker's
    /// default bridge has none; user networks have it.
    public var dnsEnabled: Bool
    public var created: String
    public var labels: [String: String]

    enum CodingKeys: String, CodingKey {
        case name, id, driver, interface, subnet, gateway, isInternal = "internal", dnsEnabled, created, labels
    }

    public init(name: String, id: String, interface: String, subnet: IPv4Subnet, gateway: IPv4Address, isInternal: Bool,
                dnsEnabled: Bool, created: String, labels: [String: String]) {
        self.name = name; self.id = id; self.interface = interface; self.subnet = subnet; self.gateway = gateway
        self.isInternal = isInternal; self.dnsEnabled = dnsEnabled; self.created = created; self.labels = labels
    }

    /// The network `run` uses when none is named (Docker's `bridge`: no names).
    public static let defaultName = "bridge"
    /// Names `--network` gives another meaning.
    public static let reservedNames: Set<String> = ["bridge", "host", "none", "default", "private", "slirp4netns", "pasta"]

    /// Docker's rule for names: a letter or digit first, then letters, digits, `_`, `.`, `-`.
    public static func checkName(_ name: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= 64 && name.utf8.first.map { isAlnum($0) } == true
            && name.utf8.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
        guard ok else {
            throw StrataError(.invalidArgument, "invalid network name \"\(name.prefix(80))\": up to 64 letters, digits, _ . and -, starting with a letter or digit")
        }
    }

    static func isAlnum(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }
}

/// What a container asks of the network (`run --network`, `--ip`, `--network-alias`, `-p`,
/// `-P`), kept in its spec and carried out at each start.
public struct NetworkRequest: Codable, Sendable, Equatable {
    public enum Mode: String, Codable, Sendable { case none, host, bridge, container, slirp4netns }
    public var mode: Mode
    /// bridge: the networks, the first one's gateway the default route.
    public var networks: [Attachment] = []
    /// container: the container whose network namespace is joined.
    public var container: String?
    public var ports: [PortMapping] = []
    /// `-P`: every port the image exposes, each on a free host port.
    public var publishAll = false
    /// The image's EXPOSE (for `-P`), as `80/tcp`.
    public var exposed: [String] = []

    public init(mode: Mode) { self.mode = mode }

    /// One network of a container, with its own address and names on it.
    public struct Attachment: Codable, Sendable, Equatable {
        public var network: String
        /// `--ip`: else the first free one.
        public var ip: IPv4Address?
        /// `--network-alias`: names on this network besides the container's name.
        public var aliases: [String] = []
        public init(network: String, ip: IPv4Address? = nil, aliases: [String] = []) {
            self.network = network; self.ip = ip; self.aliases = aliases
        }
    }

    /// `--network` as Docker reads it: none, host, bridge (the default network), NAME, or
    /// container:NAME|ID.
    public init(parsing text: String) throws {
        switch text {
        case "none": self.init(mode: .none)
        case "host": self.init(mode: .host)
        case "", "default": self.init(mode: .bridge); networks = [Attachment(network: Network.defaultName)]
        case "slirp4netns": self.init(mode: .slirp4netns)
        default:
            if text.hasPrefix("slirp4netns:") {
                throw StrataError(.unsupported, "invalid --network \(text): slirp4netns takes no options here")
            }
            if text.hasPrefix("container:") {
                let ref = String(text.dropFirst("container:".count))
                guard !ref.isEmpty else { throw StrataError(.invalidArgument, "invalid --network \(text): container:NAME or container:ID") }
                self.init(mode: .container)
                container = ref
            } else {
                if text != Network.defaultName { try Network.checkName(text) }
                self.init(mode: .bridge)
                networks = [Attachment(network: text)]
            }
        }
    }

    /// A byte of a DNS name or hostname: letters, digits, `.`, `-`, `_` (nothing that could end
    /// a line of /etc/hosts or aardvark-dns's files).
    public static func isNameByte(_ c: UInt8) -> Bool {
        Network.isAlnum(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
    }

    /// `--network-alias`: DNS names (1 to 253 bytes of letters, digits, `.`, `-`, `_`).
    public static func checkAlias(_ aliases: [String]) throws {
        for a in aliases where a.isEmpty || a.utf8.count > 253 || !a.utf8.allSatisfy(isNameByte) || a.hasPrefix("-") || a.hasPrefix(".") {
            throw StrataError(.invalidArgument, "invalid network alias \(String(a.prefix(80)).debugDescription): a DNS name of letters, digits, . - and _")
        }
    }

    /// How `inspect` and `ps` name it: none, host, container:ID, or the networks.
    public var description: String {
        switch mode {
        case .none, .host, .slirp4netns: mode.rawValue
        case .container: "container:\(container ?? "")"
        case .bridge: networks.map(\.network).joined(separator: ",")
        }
    }
}
