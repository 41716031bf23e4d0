import FoundationEssentials
import StrataCore
import StrataLauncher
import StrataNetwork
import StrataStore
import StrataSystem

/// What /etc/hosts and /etc/resolv.conf say of a container's network.
enum EtcNetwork {
    case none, host
    /// On a bridge: its address; the DNS servers and search domains of a network with names
    /// (empty: the host's nameservers).
    case bridge(ip: IPv4Address, dns: [String], search: [String])
}

extension Engine {
    static let noRootlessBridge = StrataError(.unsupported, "bridge networks need root (netavark makes bridges and firewall rules on the host); rootless, use --network slirp4netns, none or host")

    /// This store's networks (docs/networking.md).
    public var networks: NetworkStore {
        let real = (try? canonicalPath(store.rootPath)) ?? store.rootPath
        return NetworkStore(storeRoot: store.rootPath, storeKey: Digest.of(Array(real.utf8)).hex)
    }

    /// The network a container's spec asks for (none when it says nothing).
    public static func networkRequest(_ spec: RuntimeSpec) -> NetworkRequest {
        if spec.sharesHostNetwork { return NetworkRequest(mode: .host) }
        guard let text = spec.annotation(RuntimeSpec.Annotation.network),
              let r = try? JSONDecoder().decode(NetworkRequest.self, from: Data(text.utf8)) else { return NetworkRequest(mode: .none) }
        return r
    }

    /// What a container has of its networks now (nil: nothing set up).
    public func networkState(_ ref: String) throws -> ContainerNetworkState? {
        ContainerNetworkState.read(containerDirectory: store.containerPaths(try store.container(ref).id).root)
    }

    /// Sets up the container's network before its process starts: on a bridge, its namespace
    /// (kept as a file in its folder), addresses, ports and names through netavark, and its
    /// /etc/hosts and /etc/resolv.conf; with `container:`, the other container's namespace.
    /// Returns the namespace for the launcher to join (nil: none or the host's). What a
    /// failure leaves is torn down before it is thrown.
    func attachNetwork(_ id: String, spec: RuntimeSpec) throws -> FDHandle? {
        let request = Engine.networkRequest(spec)
        let dir = store.containerPaths(id).root
        let hostname = spec.hostname ?? String(id.prefix(12))
        let names = NameSettings(annotations: spec.annotations ?? [:])
        switch request.mode {
        case .none, .host:
            return nil
        case .container:
            return try joinContainerNetwork(request.container ?? "", into: dir, for: id)
        case .slirp4netns:
            return try attachSlirp(id, request: request, hostname: hostname, names: names)
        case .bridge:
            break
        }
        guard !UserNamespace.current.isRootless else { throw Engine.noRootlessBridge }
        let netavark = try Netavark.installed(configDirectory: networks.runDirectory)
        // Resolved before the lock: the default network is made on first use, under it.
        let attached = try request.networks.map { ($0, try networks.network($0.network)) }
        let record = try store.container(id)
        do {
            try networks.locked {
                tearDownLocked(id, netavark: netavark)
                let namespace = dir + "/" + ContainerNetworkState.namespaceFileName
                try NetworkNamespaceFile.make(at: namespace)
                var state = ContainerNetworkState()
                let others = networks.containerStates()  // read once: addresses and ports in use
                state.ports = try publishedPorts(request, network: attached.first?.1, container: id, states: others)
                for (i, (attachment, network)) in attached.enumerated() {
                    let ip = try networks.allocate(on: network, wanted: attachment.ip, except: id, states: others)
                    try setUpLocked(id, name: record.name, on: network, ip: ip, aliases: attachment.aliases, interface: "eth\(i)",
                                    ports: i == 0 ? state.ports : [], state: &state, netavark: netavark)
                }
            }
        } catch {
            detachNetwork(id)
            throw error
        }
        guard let state = ContainerNetworkState.read(containerDirectory: dir), let first = state.endpoints.first else {
            detachNetwork(id)
            throw StrataError(.internalError, "container \(id.prefix(12)): its network state was not written")
        }
        let dns = state.endpoints.flatMap(\.dnsServers)
        try ContainerSpecBuilder.writeEtcFiles(hostname: hostname, network: .bridge(ip: first.ip, dns: dns, search: dns.isEmpty ? [] : ["dns.podman"]),
                                               names: names, into: dir)
        return try NetworkNamespaceFile.open(dir + "/" + ContainerNetworkState.namespaceFileName)
    }

    /// `--network slirp4netns`: the namespace, slirp4netns for it (its pid kept for the
    /// teardown), its host forwards, and the /etc files for its fixed addresses.
    private func attachSlirp(_ id: String, request: NetworkRequest, hostname: String, names: NameSettings) throws -> FDHandle {
        let dir = store.containerPaths(id).root
        let namespace = dir + "/" + ContainerNetworkState.namespaceFileName
        do {
            try networks.locked {
                tearDownLocked(id, netavark: nil)
                try NetworkNamespaceFile.make(at: namespace)
                var state = ContainerNetworkState()
                state.ports = try publishedPorts(request, network: nil, container: id, states: networks.containerStates(), slirp: true)
                try state.write(containerDirectory: dir)
                let socket = try Slirp4netns.socketPath(container: id)
                let pid = try Slirp4netns.start(namespace: namespace, apiSocket: socket, log: dir + "/slirp4netns.log")
                state.slirp = .init(pid: pid, start: processStartTime(pid) ?? 0, apiSocket: socket)
                state.endpoints = [ContainerNetworkState.Endpoint(network: "slirp4netns", networkID: "", interface: "tap0", ip: Slirp4netns.address,
                                                                  prefix: 24, gateway: Slirp4netns.gateway, mac: nil, aliases: [],
                                                                  dnsServers: [Slirp4netns.dns.description])]
                try state.write(containerDirectory: dir)
                for p in state.ports { try Slirp4netns.forward(p, apiSocket: socket) }
            }
        } catch {
            detachNetwork(id)
            throw error
        }
        try ContainerSpecBuilder.writeEtcFiles(hostname: hostname, network: .bridge(ip: Slirp4netns.address, dns: [Slirp4netns.dns.description], search: []),
                                               names: names, into: dir)
        return try NetworkNamespaceFile.open(namespace)
    }

    /// One network set up in container `id`'s namespace (the caller holds the network lock):
    /// the options and the endpoint recorded in `state` first (a strata killed in the setup
    /// leaves what its teardown needs), then netavark's setup, then what it gave.
    private func setUpLocked(_ id: String, name: String, on network: Network, ip: IPv4Address, aliases: [String], interface: String,
                             ports: [PortMapping], state: inout ContainerNetworkState, netavark: Netavark) throws {
        let dir = store.containerPaths(id).root
        let options = NetavarkOptions(containerID: id, containerName: name, network: network, ip: ip,
                                      aliases: [name, String(id.prefix(12))] + aliases, interface: interface, ports: ports)
        state.setups.append(options)
        state.endpoints.append(ContainerNetworkState.Endpoint(network: network.name, networkID: network.id, interface: interface, ip: ip,
                                                             prefix: network.subnet.prefix, gateway: network.gateway, mac: nil,
                                                             aliases: aliases, dnsServers: []))
        try state.write(containerDirectory: dir)
        let status = try netavark.setup(namespace: dir + "/" + ContainerNetworkState.namespaceFileName, options: options)[network.interface]
        state.endpoints[state.endpoints.count - 1].mac = status?.interfaces?[interface]?.macAddress
        state.endpoints[state.endpoints.count - 1].dnsServers = status?.dnsServerIPs ?? []
        try state.write(containerDirectory: dir)
    }

    /// `--network container:REF`: the running container's namespace (checked to be its own
    /// process's after it is opened) and its /etc/hosts and /etc/resolv.conf.
    private func joinContainerNetwork(_ ref: String, into dir: String, for id: String) throws -> FDHandle {
        let target = try store.container(ref)
        guard target.id != id else { throw StrataError(.invalidArgument, "--network container:\(ref) names this container itself") }
        guard let pid = target.pid, isRunning(target) else {
            throw StrataError(.conflict, "--network container:\(ref): container \(target.name) is not running; start it first")
        }
        let start = store.recordedStartTime(target.id, pid: pid)
        let fd = try FDHandle.open("/proc/\(pid)/ns/net", flags: .readOnly)
        // The pid may have been used again between the look and the open.
        guard store.isContainerProcess(pid, id: target.id), start == nil || store.recordedStartTime(target.id, pid: pid) == start else {
            throw StrataError(.conflict, "--network container:\(ref): container \(target.name) ended while it was joined")
        }
        let from = try Directory.open(store.containerPaths(target.id).root)
        let to = try Directory.open(dir)
        for name in ["hosts", "resolv.conf"] {
            let bytes = try from.readFile(Array(name.utf8), limit: 1 << 20)
            let f = try to.openFile(Array(name.utf8), flags: [.writeOnly, .create, .truncate, .noFollow], mode: 0o644)
            try f.writeAll(bytes)
        }
        return fd
    }

    /// The published ports with host ports taken: `-p` as given (the port must be free on the
    /// host and in this store), `-p CTR` and `-P` on free ones. None on an internal network.
    private func publishedPorts(_ request: NetworkRequest, network: Network?, container: String,
                                states: [String: ContainerNetworkState], slirp: Bool = false) throws -> [PortMapping] {
        var wanted = request.ports
        if request.publishAll {
            for e in request.exposed {
                guard let (port, proto) = PortMapping.exposed(e) else { continue }
                if !wanted.contains(where: { $0.containerPort == port && $0.proto == proto }) {
                    wanted.append(PortMapping(hostPort: 0, containerPort: port, proto: proto))
                }
            }
        }
        guard slirp || (network.map { !$0.isInternal } ?? false) else { return [] }
        var taken = Set<String>()
        for (id, state) in states where id != container {
            for p in state.ports { taken.insert("\(p.hostPort)/\(p.proto)") }
        }
        var out: [PortMapping] = []
        for var p in wanted {
            if p.hostPort != 0, taken.contains("\(p.hostPort)/\(p.proto)") {
                throw StrataError(.inUse, "host port \(p.hostPort)/\(p.proto) is published by another container of this store; choose another")
            }
            // The host's own listeners: a forward would hide them from other machines.
            var port = try HostPorts.probe(address: p.hostIP, port: p.hostPort, udp: p.proto == "udp")
            while taken.contains("\(port)/\(p.proto)") { port = try HostPorts.probe(address: p.hostIP, port: 0, udp: p.proto == "udp") }
            p.hostPort = port
            taken.insert("\(port)/\(p.proto)")
            out.append(p)
        }
        return out
    }

    /// Tears down what `attachNetwork` set up, on every way out (exit, stop, rm -f, a failed
    /// start, gc after a kill -9): netavark's teardown with the options kept, then the
    /// namespace unmounted. Nothing to do is no error; failures are logged.
    func detachNetwork(_ id: String) {
        let dir = store.containerPaths(id).root
        guard pathExists(dir + "/" + ContainerNetworkState.fileName) || pathExists(dir + "/" + ContainerNetworkState.namespaceFileName) else { return }
        let netavark = UserNamespace.current.isRootless ? nil : try? Netavark.installed(configDirectory: networks.runDirectory)
        do { try networks.locked { tearDownLocked(id, netavark: netavark) } } catch {
            store.logger.warning("container \(id.prefix(12)): cannot tear down its network: \(error)")
        }
    }

    /// The teardown itself (the caller holds the network lock).
    private func tearDownLocked(_ id: String, netavark: Netavark?) {
        let dir = store.containerPaths(id).root
        let namespace = dir + "/" + ContainerNetworkState.namespaceFileName
        let state = ContainerNetworkState.read(containerDirectory: dir)
        if let slirp = state?.slirp {
            Slirp4netns.stop(pid: slirp.pid, start: slirp.start)
            _ = removeFile(slirp.apiSocket)
        }
        if let state, let netavark, NetworkNamespaceFile.exists(at: namespace) {
            for options in state.setups.reversed() {
                do { try netavark.teardown(namespace: namespace, options: options) } catch {
                    store.logger.warning("container \(id.prefix(12)): \(error)")
                }
            }
        }
        if let d = try? Directory.open(dir) { _ = d.unlink(Array(ContainerNetworkState.fileName.utf8)) }
        do { try NetworkNamespaceFile.remove(at: namespace) } catch {
            store.logger.warning("container \(id.prefix(12)): \(error)")
        }
    }

    /// Tears down the networks of containers that no longer run; their IDs. Each is looked at
    /// again while its lease is held, so a start that began meanwhile is left alone.
    func removeNetworkLeftovers() throws -> [String] {
        let lease = try LayerLocks(store: store)
        defer { lease.unlockAll() }
        var removed: [String] = []
        for id in try networkLeftovers() {
            guard try lease.tryExclusive(key: id) else { continue }
            defer { lease.unlockAll() }
            guard let c = try? store.container(id), !isRunning(c) else { continue }
            detachNetwork(id)
            removed.append(String(id.prefix(12)))
        }
        return removed
    }

    /// Containers with a network set up that do not run (their strata or monitor was killed):
    /// their IDs. A container being started or removed (its lease held) is not one.
    func networkLeftovers() throws -> [String] {
        let lease = try LayerLocks(store: store)
        defer { lease.unlockAll() }
        var out: [String] = []
        for c in try store.containers(all: true) {
            let dir = store.containerPaths(c.record.id).root
            guard pathExists(dir + "/" + ContainerNetworkState.fileName) || pathExists(dir + "/" + ContainerNetworkState.namespaceFileName),
                  !isRunning(c.record) else { continue }
            guard try lease.tryExclusive(key: c.record.id) else { continue }
            lease.unlockAll()
            out.append(c.record.id)
        }
        return out
    }
}

extension Engine {
    /// The containers whose spec names network `name` (running or not).
    public func containers(onNetwork name: String) throws -> [ContainerRecord] {
        try store.containers(all: true).map(\.record).filter { c in
            guard let spec = try? store.spec(c.id) else { return false }
            return Engine.networkRequest(spec).networks.contains { $0.network == name }
        }
    }

    /// `network rm`: refused while a container names it (`rm` it, or `network disconnect`).
    public func removeNetwork(_ ref: String) throws -> String {
        let n = try networks.network(ref)
        let users = try containers(onNetwork: n.name)
        guard users.isEmpty else {
            throw StrataError(.inUse, "network \(n.name) is used by container\(users.count > 1 ? "s" : "") \(users.map(\.name).joined(separator: ", ")); remove \(users.count > 1 ? "them" : "it") or `strata network disconnect \(n.name) CONTAINER` first")
        }
        try networks.remove(n.name)
        networks.forgetDNS(of: n)
        return n.name
    }

    /// `network prune`: every network no container names, but the default one; their names.
    public func pruneNetworks() throws -> [String] {
        var removed: [String] = []
        for n in try networks.list() where n.name != Network.defaultName {
            if try containers(onNetwork: n.name).isEmpty {
                try networks.remove(n.name)
                networks.forgetDNS(of: n)
                removed.append(n.name)
            }
        }
        return removed
    }

    /// `network connect`: adds the network to the container's spec and, if it runs, sets it up
    /// in its namespace now (the next interface, `eth1`, …).
    public func connect(_ ref: String, network networkRef: String, ip: IPv4Address?, aliases: [String]) throws {
        let c = try store.container(ref)
        let network = try networks.network(networkRef)
        guard var spec = try store.spec(c.id) else { throw StrataError(.unsupported, "container \(c.name) has no spec to add a network to") }
        var request = Engine.networkRequest(spec)
        guard request.mode == .bridge else {
            throw StrataError(.conflict, "container \(c.name) runs with --network \(request.description): only a container on bridge networks can be connected to another")
        }
        guard !request.networks.contains(where: { $0.network == network.name }) else {
            throw StrataError(.alreadyExists, "container \(c.name) is already on network \(network.name)")
        }
        try NetworkRequest.checkAlias(aliases)
        let attachment = NetworkRequest.Attachment(network: network.name, ip: ip, aliases: aliases)
        if isRunning(c) {
            let netavark = try Netavark.installed(configDirectory: networks.runDirectory)
            let dir = store.containerPaths(c.id).root
            try networks.locked {
                guard var state = ContainerNetworkState.read(containerDirectory: dir) else {
                    throw StrataError(.conflict, "container \(c.name) has no network set up")
                }
                let address = try networks.allocate(on: network, wanted: ip, except: c.id, states: networks.containerStates())
                let used = Set(state.endpoints.map(\.interface))
                var n = 0
                while used.contains("eth\(n)") { n += 1 }
                try setUpLocked(c.id, name: c.name, on: network, ip: address, aliases: aliases, interface: "eth\(n)", ports: [],
                                state: &state, netavark: netavark)
            }
        }
        request.networks.append(attachment)
        try Engine.setNetworkRequest(request, in: &spec)
        try spec.write(into: store.containerPaths(c.id).root)
    }

    /// `network disconnect`: removes the network from the container's spec and, if it runs,
    /// tears it down in its namespace now.
    public func disconnect(_ ref: String, network networkRef: String) throws {
        let c = try store.container(ref)
        let network = try networks.network(networkRef)
        guard var spec = try store.spec(c.id) else { throw StrataError(.unsupported, "container \(c.name) has no spec") }
        var request = Engine.networkRequest(spec)
        guard let index = request.networks.firstIndex(where: { $0.network == network.name }) else {
            throw StrataError(.notFound, "container \(c.name) is not on network \(network.name)")
        }
        if isRunning(c) {
            let netavark = try Netavark.installed(configDirectory: networks.runDirectory)
            let dir = store.containerPaths(c.id).root
            try networks.locked {
                guard var state = ContainerNetworkState.read(containerDirectory: dir),
                      let i = state.setups.firstIndex(where: { $0.networkInfo[network.interface] != nil }) else { return }
                try netavark.teardown(namespace: dir + "/" + ContainerNetworkState.namespaceFileName, options: state.setups[i])
                state.setups.remove(at: i)
                state.endpoints.removeAll { $0.networkID == network.id }
                if i == 0 { state.ports = [] }
                try state.write(containerDirectory: dir)
            }
        }
        request.networks.remove(at: index)
        if request.networks.isEmpty { request = NetworkRequest(mode: .none) }
        try Engine.setNetworkRequest(request, in: &spec)
        try spec.write(into: store.containerPaths(c.id).root)
    }

    static func setNetworkRequest(_ request: NetworkRequest, in spec: inout RuntimeSpec) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var annotations = spec.annotations ?? [:]
        annotations[RuntimeSpec.Annotation.network] = String(decoding: try encoder.encode(request), as: UTF8.self)
        spec.annotations = annotations
        if request.mode == .none, let i = spec.linux.namespaces.firstIndex(where: { $0.type == "network" }) {
            spec.linux.namespaces[i].path = nil
        }
    }
}
