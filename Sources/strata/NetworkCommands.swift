import ArgumentParser
import FoundationEssentials
import StrataEngine
import StrataNetwork

// `network create|ls|inspect|rm|prune|connect|disconnect`, as Docker's: bridge networks on
// netavark (docs/networking.md); containers join them with `run --network NAME`.

struct NetworkGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "network", abstract: "Manage bridge networks: containers on one reach each other by name (run --network NAME).",
        subcommands: [NetworkCreate.self, NetworkLs.self, NetworkInspect.self, NetworkRm.self, NetworkPrune.self,
                      NetworkConnect.self, NetworkDisconnect.self])
}

struct NetworkCreate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a bridge network; prints its name.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Its IPv4 subnet, e.g. 10.90.0.0/24 (default: a free /24 of 10.89.0.0/16).") var subnet: String?
    @Option(name: .long, help: "Its gateway (default: the subnet's first address).") var gateway: String?
    @Flag(name: .long, help: "No route out and no published ports: its containers reach only each other.") var `internal` = false
    @Option(name: .customShort("d"), help: "The driver: bridge, the only one.") var driver = "bridge"
    @Option(name: .long, help: "A label: KEY=VALUE (repeatable).") var label: [String] = []
    @Argument(help: "Its name: letters, digits, _ . -.") var name: String
    func run() throws {
        try strata.run {
            guard driver == "bridge" else { throw StrataError(.unsupported, "network driver \"\(driver)\": strata has only bridge") }
            let subnet = try subnet.map { try IPv4Subnet(parsing: $0) }
            let gateway = try gateway.map { g -> IPv4Address in
                guard let a = IPv4Address(g) else { throw StrataError(.invalidArgument, "invalid --gateway \"\(g)\": an IPv4 address") }
                return a
            }
            let engine = try global.openEngine()
            print(try engine.networks.create(name: name, subnet: subnet, gateway: gateway, isInternal: `internal`,
                                             labels: try parseLabels(label)).name)
        }
    }
}

struct NetworkLs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List networks.", aliases: ["list"])
    @OptionGroup var global: GlobalOptions
    @Flag(name: .short, help: "Only the names.") var quiet = false
    @Option(name: .long, help: "A template per row: {{.Name}}, {{.ID}}, {{.Driver}}, {{.Subnet}}, {{.Labels}}; or json.") var format: String?
    func run() throws {
        try strata.run {
            let template = try format.map(RowTemplate.init)
            let engine = try global.openEngine()
            let list = try engine.networks.list()
            if quiet { for n in list { print(n.name) }; return }
            let rows = list.map { n -> [String: String] in
                ["Name": n.name, "ID": String(n.id.prefix(12)), "Driver": n.driver, "Subnet": n.subnet.description, "Scope": "local",
                 "Internal": String(n.isInternal),
                 "Labels": n.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")]
            }
            if let template {
                let out = try template.output(rows, headers: ["Name": "NAME", "ID": "NETWORK ID"]) { try Format.compactJSON($0) }
                if !out.isEmpty { print(out) }
                return
            }
            print(Format.table([["NETWORK ID", "NAME", "DRIVER", "SUBNET"]] + list.map { [String($0.id.prefix(12)), $0.name, $0.driver, $0.subnet.description] }))
        }
    }
}

struct NetworkInspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Show networks as a JSON array (Docker's keys).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Network names or IDs.") var names: [String]
    @Option(name: [.short, .long], help: "A template per network: {{.IPAM.Config}}, {{.Containers}}, …") var format: String?
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            let objects = try names.map { try NetworkInspect.object(try engine.networks.network($0), engine: engine) }
            if let format {
                for o in objects { print(try InspectTemplate.render(format, o)) }
                return
            }
            print(try InspectJSON.render(objects))
        }
    }

    /// A network with Docker's keys; `Containers` holds those set up on it now.
    static func object(_ n: Network, engine: Engine) throws -> [String: Any] {
        var containers: [String: Any] = [:]
        let states = engine.networks.containerStates()
        for c in try engine.containers(onNetwork: n.name) {
            guard let e = states[c.id]?.endpoints.first(where: { $0.networkID == n.id }) else { continue }
            containers[c.id] = ["Name": c.name, "MacAddress": e.mac ?? "", "IPv4Address": "\(e.ip)/\(e.prefix)", "IPv6Address": ""] as [String: Any]
        }
        return ["Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver, "EnableIPv6": false,
                "IPAM": ["Driver": "default", "Options": [String: Any](),
                         "Config": [["Subnet": n.subnet.description, "Gateway": n.gateway.description] as [String: Any]]] as [String: Any],
                "Internal": n.isInternal, "Attachable": true, "Containers": containers, "Options": [String: Any](),
                "Labels": n.labels as [String: Any],
                "Strata": ["interface": n.interface, "dnsEnabled": n.dnsEnabled] as [String: Any]]
    }
}

extension NetworkInspect {
    /// A container's `NetworkSettings` with Docker's keys: its first address, each network's
    /// endpoint, the published ports (while it runs) and its namespace.
    static func settings(_ engine: Engine, container id: String) throws -> [String: Any] {
        let spec = (try? engine.store.spec(id)) ?? nil
        let request = spec.map(Engine.networkRequest) ?? NetworkRequest(mode: .none)
        let state = try engine.networkState(id)
        var networks: [String: Any] = [:]
        for e in state?.endpoints ?? [] {
            networks[e.network] = ["NetworkID": e.networkID, "IPAddress": e.ip.description, "IPPrefixLen": e.prefix,
                                   "Gateway": e.gateway.description, "MacAddress": e.mac ?? "", "Aliases": e.aliases] as [String: Any]
        }
        var ports: [String: Any] = [:]
        for p in state?.ports ?? [] {
            let key = "\(p.containerPort)/\(p.proto)"
            ports[key] = ((ports[key] as? [Any]) ?? []) + [["HostIp": p.hostIP.isEmpty ? "0.0.0.0" : p.hostIP, "HostPort": String(p.hostPort)] as [String: Any]]
        }
        let first = state?.endpoints.first
        return ["NetworkMode": request.description, "IPAddress": first?.ip.description ?? "", "IPPrefixLen": first?.prefix ?? 0,
                "Gateway": first?.gateway.description ?? "", "MacAddress": first?.mac ?? "", "Networks": networks, "Ports": ports,
                "SandboxKey": state == nil ? "" : engine.store.containerPaths(id).root + "/" + ContainerNetworkState.namespaceFileName]
    }
}

struct NetworkRm: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove networks no container uses.", aliases: ["remove"])
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Network names or IDs.") var names: [String]
    @Flag(name: [.short, .long], help: "No error for a network that does not exist.") var force = false
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            try reportEach(names, eachResult(names) { name in
                do { _ = try engine.removeNetwork(name) } catch let e as StrataError where force && e.code == .notFound {}
            })
        }
    }
}

struct NetworkPrune: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prune", abstract: "Remove every network no container uses (the default one stays).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Do not ask first.") var force = false
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            guard force || confirm("This will remove all networks not used by at least one container.") else { return }
            let removed = try engine.pruneNetworks()
            if !removed.isEmpty { print("Deleted Networks:"); for n in removed { print(n) } }
        }
    }
}

struct NetworkConnect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "connect", abstract: "Connect a container to a network (at once if it runs).")
    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Its address on the network.") var ip: String?
    @Option(name: .long, help: "Another name for it on the network (repeatable).") var alias: [String] = []
    @Argument(help: "The network.") var network: String
    @Argument(help: "The container.") var container: String
    func run() throws {
        try strata.run {
            let address = try ip.map { try RunFlags.address($0) }
            try global.openEngine().connect(container, network: network, ip: address, aliases: alias)
        }
    }
}

struct NetworkDisconnect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "disconnect", abstract: "Disconnect a container from a network (at once if it runs).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Accepted for Docker's sake.") var force = false
    @Argument(help: "The network.") var network: String
    @Argument(help: "The container.") var container: String
    func run() throws {
        try strata.run { try global.openEngine().disconnect(container, network: network) }
    }
}

struct Port: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "port", abstract: "List a container's published ports, or the host address of one.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The container.", completion: NameCompletion.containers) var container: String
    @Argument(help: "PORT[/PROTO]: only this one.") var port: String?
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            let ports = try engine.networkState(container)?.ports ?? []
            if let port {
                guard let (number, proto) = PortMapping.exposed(port) else {
                    throw StrataError(.invalidArgument, "invalid port \"\(port)\": PORT or PORT/tcp|udp|sctp")
                }
                let matches = ports.filter { $0.containerPort == number && $0.proto == proto }
                guard !matches.isEmpty else { throw StrataError(.notFound, "no public port \(number)/\(proto) published for container \(container)") }
                for p in matches { print("\(p.hostIP.isEmpty ? "0.0.0.0" : p.hostIP):\(p.hostPort)") }
                return
            }
            for p in ports { print(p.description) }
        }
    }
}
