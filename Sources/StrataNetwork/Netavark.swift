import FoundationEssentials
import StrataCore
import StrataSystem

/// netavark's input: a container's networks, as podman 4.3 writes it (docs/networking.md). The
/// same JSON sets up and tears down, so a container keeps the one it was set up with.
public struct NetavarkOptions: Codable, Sendable, Equatable {
    public var containerID: String
    public var containerName: String
    public var portMappings: [Port]?
    public var networks: [String: PerNetwork]
    public var networkInfo: [String: Info]

    enum CodingKeys: String, CodingKey {
        case containerID = "container_id", containerName = "container_name", portMappings = "port_mappings"
        case networks, networkInfo = "network_info"
    }

    public struct Port: Codable, Sendable, Equatable {
        public var hostIP: String
        public var containerPort: UInt16
        public var hostPort: UInt16
        public var range: UInt16 = 1
        public var proto: String
        enum CodingKeys: String, CodingKey {
            case hostIP = "host_ip", containerPort = "container_port", hostPort = "host_port", range, proto = "protocol"
        }
    }

    public struct PerNetwork: Codable, Sendable, Equatable {
        public var staticIPs: [String]
        public var aliases: [String]
        public var interfaceName: String
        enum CodingKeys: String, CodingKey { case staticIPs = "static_ips", aliases, interfaceName = "interface_name" }
    }

    public struct Info: Codable, Sendable, Equatable {
        public var name: String
        public var id: String
        public var driver: String
        public var networkInterface: String
        public var subnets: [Subnet]
        public var ipv6Enabled: Bool
        public var `internal`: Bool
        public var dnsEnabled: Bool
        enum CodingKeys: String, CodingKey {
            case name, id, driver, networkInterface = "network_interface", subnets, ipv6Enabled = "ipv6_enabled"
            case `internal`, dnsEnabled = "dns_enabled"
        }
    }

    public struct Subnet: Codable, Sendable, Equatable {
        public var subnet: String
        public var gateway: String
    }

    /// The options for one network of a container: its address, names and interface there,
    /// and (for the first) the published ports. netavark's name for the network is its bridge's
    /// interface name, unique on the host, so two stores' networks of one name never meet in
    /// its rules or its DNS server.
    public init(containerID: String, containerName: String, network: Network, ip: IPv4Address, aliases: [String],
                interface: String, ports: [PortMapping]) {
        self.containerID = containerID
        self.containerName = containerName
        let key = network.interface
        networks = [key: PerNetwork(staticIPs: [ip.description], aliases: aliases, interfaceName: interface)]
        networkInfo = [key: Info(name: key, id: network.id, driver: "bridge", networkInterface: network.interface,
                                 subnets: [Subnet(subnet: network.subnet.description, gateway: network.gateway.description)],
                                 ipv6Enabled: false, internal: network.isInternal, dnsEnabled: network.dnsEnabled)]
        portMappings = ports.isEmpty ? nil : ports.map {
            Port(hostIP: $0.hostIP, containerPort: $0.containerPort, hostPort: $0.hostPort, proto: $0.proto)
        }
    }
}

/// What `setup` says of one network: the container's interfaces and the DNS servers.
public struct NetavarkStatus: Codable, Sendable {
    public var interfaces: [String: Interface]?
    public var dnsServerIPs: [String]?
    public var dnsSearchDomains: [String]?
    enum CodingKeys: String, CodingKey { case interfaces, dnsServerIPs = "dns_server_ips", dnsSearchDomains = "dns_search_domains" }
    public struct Interface: Codable, Sendable {
        public var macAddress: String?
        public var subnets: [Address]?
        enum CodingKeys: String, CodingKey { case macAddress = "mac_address", subnets }
    }
    public struct Address: Codable, Sendable {
        public var ipnet: String
        public var gateway: String?
    }
}

/// netavark and aardvark-dns, the programs podman's networks run on (Debian's `netavark` and
/// `aardvark-dns`): found where the packages put them, called with a JSON description, their
/// calls serialised host-wide.
public struct Netavark: Sendable {
    public var binary: String
    public var aardvark: String?
    /// aardvark-dns's files and lock (a tmpfs: gone at boot, as the networks' state is).
    public var configDirectory: String

    static let netavarkPaths = ["/usr/libexec/podman/netavark", "/usr/lib/podman/netavark",
                                "/usr/local/libexec/podman/netavark", "/usr/local/lib/podman/netavark"]
    static let aardvarkPaths = ["/usr/libexec/podman/aardvark-dns", "/usr/lib/podman/aardvark-dns",
                                "/usr/local/libexec/podman/aardvark-dns", "/usr/local/lib/podman/aardvark-dns"]

    /// Where netavark is installed, if it is.
    public static var installedPath: String? { HelperProgram.find(netavarkPaths) }

    /// The installed netavark, with aardvark-dns if there is one; `configDirectory` is the
    /// store's own.
    public static func installed(configDirectory: String) throws -> Netavark {
        guard let binary = HelperProgram.find(netavarkPaths) else {
            throw StrataError(.unsupported, "bridge networks need netavark, which is not installed (apt-get install netavark aardvark-dns), or use --network none or host")
        }
        return Netavark(binary: binary, aardvark: HelperProgram.find(aardvarkPaths), configDirectory: configDirectory)
    }

    /// The lock every call holds: netavark locks only aardvark's files, and two calls that
    /// add the same bridge or chain at once fail.
    static let lockPath = "/run/strata/netavark.lock"

    func call(_ verb: String, namespace: String, options: NetavarkOptions, then: () throws -> Void = {}) throws -> HelperProgram.Output {
        try makeDirectories(configDirectory, mode: 0o700, what: "netavark's directory")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let input = Array(try encoder.encode(options))
        let lock = try FDHandle.open(Netavark.lockPath, flags: [.readWrite, .create, .noFollow], mode: 0o600)
        _ = try lock.flock(.exclusive)
        var args = ["--config", configDirectory, "--rootless=false"]
        if let aardvark { args.append("--aardvark-binary=\(aardvark)") }
        // RUST_LOG unset: netavark's log lines would be taken for its error.
        let env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        // The lock is held to the end: the handle must outlive the call and `then`.
        return try withExtendedLifetime(lock) {
            let out = try HelperProgram.run(binary, args + [verb, namespace], input: input, environment: env)
            try then()
            return out
        }
    }

    /// Sets up `options`' networks in the namespace at `namespace`; their status, by netavark's
    /// network name.
    public func setup(namespace: String, options: NetavarkOptions) throws -> [String: NetavarkStatus] {
        var guarded: (any Error)?
        let out = try call("setup", namespace: namespace, options: options) {
            for (bridge, info) in options.networkInfo {
                do { try BridgeGuard.protect(bridge: bridge, subnet: info.subnets.first?.subnet ?? "0.0.0.0/32") } catch { guarded = error }
            }
        }
        if let guarded {
            if out.status == 0 { try? teardown(namespace: namespace, options: options) }
            throw guarded
        }
        guard out.status == 0 else {
            throw StrataError(.system, "netavark could not set up the network of container \(options.containerName): \(Netavark.errorText(out))")
        }
        do {
            return try JSONDecoder().decode([String: NetavarkStatus].self, from: Data(out.stdout))
        } catch {
            throw StrataError(.invalidFormat, "netavark's answer to setup is not what it should be: \(String(decoding: out.stdout.prefix(200), as: UTF8.self))")
        }
    }

    /// Tears down what `setup` made with the same `options`.
    public func teardown(namespace: String, options: NetavarkOptions) throws {
        let out = try call("teardown", namespace: namespace, options: options) {
            BridgeGuard.sweep()
        }
        guard out.status == 0 else {
            throw StrataError(.system, "netavark could not tear down the network of container \(options.containerName): \(Netavark.errorText(out))")
        }
    }

    /// netavark's `{"error": "…"}`, or its last line.
    static func errorText(_ out: HelperProgram.Output) -> String {
        struct E: Decodable { var error: String }
        for stream in [out.stdout, out.stderr] {
            for line in String(decoding: stream, as: UTF8.self).split(separator: "\n") {
                if let e = try? JSONDecoder().decode(E.self, from: Data(line.utf8)) { return e.error }
            }
        }
        return out.message
    }
}
