import FoundationEssentials
import StrataCore
import StrataSystem

/// A container's networks as set up (`containers/ID/network.json`): the netavark options of
/// each setup, kept for its teardown, and what they gave. Written before the setup runs, so a
/// strata killed in the middle leaves what `gc` needs to tear it down.
public struct ContainerNetworkState: Codable, Sendable {
    public var setups: [NetavarkOptions] = []
    public var endpoints: [Endpoint] = []
    /// The published ports, host ports taken.
    public var ports: [PortMapping] = []
    /// `--network slirp4netns`: its process ("PID START") and API socket.
    public var slirp: SlirpProcess?
    public init() {}

    public struct SlirpProcess: Codable, Sendable {
        public var pid: Int32
        public var start: UInt64
        public var apiSocket: String
        public init(pid: Int32, start: UInt64, apiSocket: String) { self.pid = pid; self.start = start; self.apiSocket = apiSocket }
    }

    /// The container on one network.
    public struct Endpoint: Codable, Sendable, Equatable {
        public var network: String
        public var networkID: String
        public var interface: String
        public var ip: IPv4Address
        public var prefix: Int
        public var gateway: IPv4Address
        public var mac: String?
        public var aliases: [String]
        public var dnsServers: [String]
        public init(network: String, networkID: String, interface: String, ip: IPv4Address, prefix: Int, gateway: IPv4Address,
                    mac: String?, aliases: [String], dnsServers: [String]) {
            self.network = network; self.networkID = networkID; self.interface = interface; self.ip = ip; self.prefix = prefix
            self.gateway = gateway; self.mac = mac; self.aliases = aliases; self.dnsServers = dnsServers
        }
    }

    public static let fileName = "network.json"
    public static let namespaceFileName = "netns"

    public static func read(containerDirectory dir: String) -> ContainerNetworkState? {
        guard let d = try? Directory.open(dir), let bytes = try? d.readFile(Array(fileName.utf8), limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(ContainerNetworkState.self, from: Data(bytes))
    }

    public func write(containerDirectory dir: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try Directory.open(dir).writeFileAtomically(Array(ContainerNetworkState.fileName.utf8), Array(try encoder.encode(self)))
    }
}

/// A store's networks: one file each in `ROOT/networks`, changed under `ROOT/networks/lock`,
/// with the subnets taken host-wide (`SubnetRegistry`).
public struct NetworkStore: Sendable {
    public let directory: String
    /// The store's containers' folders (each may hold a `network.json`).
    public let containersDirectory: String
    /// 8 hex digits that tell this store's bridges from every other store's.
    public let storeKey: String
    /// Where aardvark-dns keeps this store's files.
    public let runDirectory: String

    public init(storeRoot: String, storeKey: String) {
        directory = storeRoot + "/networks"
        containersDirectory = storeRoot + "/containers"
        self.storeKey = String(storeKey.prefix(8))
        runDirectory = "/run/strata/net-" + storeKey.prefix(12)
    }

    /// Runs `body` holding the store's network lock (every change of networks and every
    /// container's setup and teardown).
    public func locked<T>(_ body: () throws -> T) throws -> T {
        try makeDirectories(directory, mode: 0o700, what: "the networks directory")
        let lock = try FDHandle.open(directory + "/lock", flags: [.readWrite, .create, .noFollow], mode: 0o600)
        _ = try lock.flock(.exclusive)
        return try withExtendedLifetime(lock) { try body() }  // held until the body ends
    }

    static func fileName(_ name: String) -> PathBytes { Array((name + ".json").utf8) }

    /// The network named `name` (the default one is made the first time it is asked for).
    public func network(_ name: String) throws -> Network {
        if let n = try read(name) { return n }
        if name == Network.defaultName {
            return try locked { try read(name) ?? (try make(name: name, subnet: nil, gateway: nil, isInternal: false, dnsEnabled: false, labels: [:])) }
        }
        // A unique prefix of an ID, as Docker takes it.
        let matches = try list().filter { $0.id.hasPrefix(name) && name.count >= 3 }
        if matches.count == 1 { return matches[0] }
        throw StrataError(.notFound, "no network \(name) in this store (`strata network ls`; `strata network create \(name)` makes one)")
    }

    func read(_ name: String) throws -> Network? {
        guard (try? Network.checkName(name)) != nil, let dir = try? Directory.open(directory) else { return nil }
        let bytes: [UInt8]
        do { bytes = try dir.readFile(NetworkStore.fileName(name), limit: 1 << 20) } catch let e as StrataError
            where e.code == .notFound || (e.cause as? Errno) == .ENOENT {
            // Decided by this open's own errno: a look at the path afterwards could see the file
            // another command has just renamed into place, and fail a lookup that found nothing.
            return nil
        }
        do { return try JSONDecoder().decode(Network.self, from: Data(bytes)) } catch {
            throw StrataError(.storeDamaged, "network file \(directory)/\(name).json is damaged (\(error)); remove it and create the network again")
        }
    }

    /// Every network, by name.
    public func list() throws -> [Network] {
        guard let dir = try? Directory.open(directory) else { return [] }
        return try dir.entries().compactMap { e -> String? in
            let s = String(decoding: e, as: UTF8.self)
            return s.hasSuffix(".json") ? String(s.dropLast(5)) : nil
        }.compactMap { try read($0) }.sorted { $0.name < $1.name }
    }

    /// `network create`: a new network with `subnet` (else a free /24 of 10.89.0.0/16) and
    /// `gateway` (else its first address).
    public func create(name: String, subnet: IPv4Subnet?, gateway: IPv4Address?, isInternal: Bool, labels: [String: String]) throws -> Network {
        try Network.checkName(name)
        guard !Network.reservedNames.contains(name) else {
            throw StrataError(.invalidArgument, "network name \(name) is reserved (--network \(name) means something else); choose another")
        }
        return try locked {
            if try read(name) != nil { throw StrataError(.alreadyExists, "network \(name) exists; `strata network rm \(name)` first") }
            return try make(name: name, subnet: subnet, gateway: gateway, isInternal: isInternal, dnsEnabled: true, labels: labels)
        }
    }

    /// Makes the record (the caller holds the lock).
    func make(name: String, subnet: IPv4Subnet?, gateway: IPv4Address?, isInternal: Bool, dnsEnabled: Bool, labels: [String: String]) throws -> Network {
        let existing = try list()
        if let subnet, let other = existing.first(where: { $0.subnet.overlaps(subnet) }) {
            throw StrataError(.conflict, "subnet \(subnet) overlaps network \(other.name)'s \(other.subnet)")
        }
        if let gateway, subnet == nil {
            throw StrataError(.invalidArgument, "--gateway \(gateway) needs --subnet")
        }
        var index = 0
        let used = Set(existing.map(\.interface))
        while used.contains("sb\(storeKey)\(index)") { index += 1 }
        guard index < 10000 else { throw StrataError(.tooLarge, "this store has 10000 networks; remove some (`strata network prune`)") }
        let interface = "sb\(storeKey)\(index)"
        let id = (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 16).leftPadded(to: 16) }.joined()
        let chosen = try SubnetRegistry.take(subnet, owner: directory + "/" + name + ".json", avoiding: existing.map(\.subnet))
        let gw = gateway ?? chosen.firstHost
        guard chosen.isHost(gw) else { throw StrataError(.invalidArgument, "gateway \(gw) is not a host address of \(chosen)") }
        let network = Network(name: name, id: id, interface: interface, subnet: chosen, gateway: gw, isInternal: isInternal,
                              dnsEnabled: dnsEnabled, created: Timestamp.now(), labels: labels)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try Directory.open(directory).writeFileAtomically(NetworkStore.fileName(name), Array(try encoder.encode(network)))
        return network
    }

    /// `network rm`: the record and its subnet's claim (the caller has made sure no container uses it).
    public func remove(_ name: String) throws {
        try locked {
            guard let n = try read(name) else { throw StrataError(.notFound, "no network \(name) in this store") }
            let dir = try Directory.open(directory)
            switch dir.unlink(NetworkStore.fileName(n.name)) {
            case .success: break
            case .failure(let e): throw StrataError(.system, "cannot remove network file \(directory)/\(n.name).json: \(e)")
            }
            SubnetRegistry.release(n.subnet, owner: directory + "/" + n.name + ".json")
        }
    }

    /// Removes what aardvark-dns kept of a removed network (its file is named by the bridge, which
    /// a later network of this store may be given again).
    public func forgetDNS(of network: Network) {
        if let d = try? Directory.open(runDirectory + "/aardvark-dns") { _ = d.unlink(Array(network.interface.utf8)) }
    }

    /// Every container folder's network state, by container ID.
    public func containerStates() -> [String: ContainerNetworkState] {
        guard let dir = try? Directory.open(containersDirectory), let ids = try? dir.entries() else { return [:] }
        var out: [String: ContainerNetworkState] = [:]
        for e in ids {
            let id = String(decoding: e, as: UTF8.self)
            if let s = ContainerNetworkState.read(containerDirectory: containersDirectory + "/" + id) { out[id] = s }
        }
        return out
    }

    /// A free address of `network` (the caller holds the lock and has read `states`, the
    /// containers' `containerStates()`): `wanted` if no other container has it, else the first
    /// one after the gateway.
    public func allocate(on network: Network, wanted: IPv4Address?, except container: String,
                         states: [String: ContainerNetworkState]) throws -> IPv4Address {
        var used: Set<IPv4Address> = [network.gateway]
        for (id, state) in states where id != container {
            for e in state.endpoints where e.networkID == network.id { used.insert(e.ip) }
        }
        if let wanted {
            guard network.subnet.isHost(wanted) else {
                throw StrataError(.invalidArgument, "--ip \(wanted) is not a host address of network \(network.name) (\(network.subnet))")
            }
            guard !used.contains(wanted) else {
                throw StrataError(.conflict, "address \(wanted) of network \(network.name) is in use (\(wanted == network.gateway ? "its gateway" : "another container"))")
            }
            return wanted
        }
        var a = network.subnet.network.value + 1
        while a < network.subnet.broadcast.value {
            if !used.contains(IPv4Address(a)) { return IPv4Address(a) }
            a += 1
        }
        throw StrataError(.tooLarge, "network \(network.name) (\(network.subnet)) has no free address left")
    }
}

extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
