import FoundationEssentials
import StrataCore
import StrataSystem

/// Rootless networking as podman 4 does it: slirp4netns (Debian's `slirp4netns`) gives the
/// container's namespace a tap device with a user-mode TCP/IP stack behind it, connecting out
/// as the user. The host's loopback is out of reach (`--disable-host-loopback`); published
/// ports are its host forwards, added through its API socket.
public enum Slirp4netns {
    public static let paths = ["/usr/bin/slirp4netns", "/usr/local/bin/slirp4netns"]
    public static var installedPath: String? { HelperProgram.find(paths) }

    /// The addresses slirp4netns's defaults give (10.0.2.0/24): the container, the gateway (the
    /// host, which `--disable-host-loopback` keeps from its loopback) and the DNS forwarder.
    public static let address = IPv4Address(10 << 24 | 2 << 8 | 100)
    public static let gateway = IPv4Address(10 << 24 | 2 << 8 | 2)
    public static let dns = IPv4Address(10 << 24 | 2 << 8 | 3)

    /// Where the API socket of container `id`'s slirp4netns is (a runtime directory: a store
    /// path may be longer than a socket address holds).
    public static func socketPath(container id: String) throws -> String {
        let dir = UserNamespace.current.isRootless
            ? (ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] ?? "/tmp") + "/strata/slirp" : "/run/strata/slirp"
        try makeDirectories(dir, mode: 0o700, what: "slirp4netns's socket directory")
        return dir + "/" + id.prefix(16) + ".sock"
    }

    /// Starts it for the namespace at `namespace` (sandboxed and with its seccomp filter, as
    /// podman runs it); returns its pid once the tap device is up.
    public static func start(namespace: String, apiSocket: String, log: String) throws -> Int32 {
        guard let binary = installedPath else {
            throw StrataError(.unsupported, "rootless networking needs slirp4netns, which is not installed (apt-get install slirp4netns), or use --network none or host")
        }
        return try HelperProgram.startDaemon(binary, ["--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox",
                                                      "--enable-seccomp", "--ready-fd=3", "--api-socket", apiSocket,
                                                      "--netns-type=path", namespace, "tap0"], log: log, readyFD: true)
    }

    /// Adds a host forward for `port` (its host port already taken).
    public static func forward(_ port: PortMapping, apiSocket: String) throws {
        guard port.proto == "tcp" || port.proto == "udp" else {
            throw StrataError(.unsupported, "-p \(port.containerPort)/\(port.proto): slirp4netns forwards tcp and udp only")
        }
        struct Request: Encodable {
            struct Arguments: Encodable {
                var proto: String
                var host_addr: String
                var host_port: UInt16
                var guest_port: UInt16
            }
            var execute = "add_hostfwd"
            var arguments: Arguments
        }
        let request = Request(arguments: .init(proto: port.proto, host_addr: port.hostIP.isEmpty ? "0.0.0.0" : port.hostIP,
                                               host_port: port.hostPort, guest_port: port.containerPort))
        let answer = try UnixSocket.exchange(apiSocket, request: Array(try JSONEncoder().encode(request)))
        struct Answer: Decodable { struct E: Decodable { var desc: String? }; var error: E? }
        if let e = (try? JSONDecoder().decode(Answer.self, from: Data(answer)))?.error {
            throw StrataError(.system, "slirp4netns could not forward \(port.description): \(e.desc ?? "error")")
        }
    }

    /// Ends the slirp4netns of process `pid` started at `start` (clock ticks), if it still runs.
    public static func stop(pid: Int32, start: UInt64) {
        terminateProcess(pid, start: start, grace: 0.5)
    }
}
