import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataEngine
@testable import StrataNetwork
@testable import StrataSystem

/// Bridge networks on netavark (docs/networking.md): names, published ports, the modes, and
/// nothing left after any way out (veths, bridges, firewall rules, namespaces), checked with
/// `ip`, `iptables-save` and the mount table. Traffic goes only to 127.0.0.1 and to the
/// containers these tests start.
@Suite(.serialized, .enabled(if: isRoot && overlayWorks && Netavark.installedPath != nil, "needs root, overlayfs and netavark"))
struct NetworkTests {
    static let image = RunTests.image

    final class Env {
        let t = TempDir("strata-net")
        var root: String { t.sub("store") }
        init() throws {
            let (rc, _, err) = try strataCLI(["-q", "load", fixtures + "/oci-gzip"], root: root)
            guard rc == 0 else { throw StrataError(.internalError, err) }
        }
        @discardableResult
        func strata(_ args: [String]) throws -> (Int32, String, String) { try strataCLI(args, root: root) }
        func ok(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
            let (rc, out, err) = try strata(args)
            #expect(rc == 0, "strata \(args.joined(separator: " ")): \(err)", sourceLocation: sourceLocation)
            return out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        /// The bridges of this store's networks (by `network inspect`).
        func bridges() throws -> [String] {
            try ok(["network", "ls", "-q"]).split(separator: "\n").map { name in
                try ok(["network", "inspect", "-f", "{{.Strata.interface}}", String(name)])
            }
        }
        func subnets() throws -> [String] {
            try ok(["network", "ls", "--format", "{{.Subnet}}"]).split(separator: "\n").map(String.init)
        }
        /// Nothing of this store's networks on the host: no bridge, no veth on one, no
        /// firewall rule naming a subnet, no namespace file mounted.
        func expectNothingLeft(_ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            for b in try bridges() {
                let (rc, out, _) = try sh(["ip", "-o", "link", "show", b])
                #expect(rc != 0, "\(what): bridge \(b) is still there: \(out)", sourceLocation: sourceLocation)
                let (_, ports, _) = try sh(["ip", "-o", "link", "show", "master", b])
                #expect(ports.isEmpty, "\(what): veths left on \(b): \(ports)", sourceLocation: sourceLocation)
            }
            let (_, rules, _) = try sh(["iptables-save"])
            for s in try subnets() + bridges() {
                let left = rules.split(separator: "\n").filter { $0.contains(s) }
                #expect(left.isEmpty, "\(what): firewall rules for \(s) left: \(left)", sourceLocation: sourceLocation)
            }
            let netns = MountTable.mountPoints().filter { $0.hasPrefix(t.path) && $0.hasSuffix("/netns") }
            #expect(netns.isEmpty, "\(what): namespaces left: \(netns)", sourceLocation: sourceLocation)
            let files = (try? FileManager.default.contentsOfDirectory(atPath: root + "/containers"))?.filter {
                exists(root + "/containers/\($0)/netns") || exists(root + "/containers/\($0)/network.json")
            } ?? []
            #expect(files.isEmpty, "\(what): network state left in \(files)", sourceLocation: sourceLocation)
        }
        /// Waits until `url` answers (10 s); its body.
        func fetch(_ url: String) throws -> String? {
            for _ in 0..<Int(50 * timeScale) {
                let (rc, out, _) = try sh(["curl", "-s", "--max-time", "2", url])
                if rc == 0 { return out }
                usleep(200_000)
            }
            return nil
        }
        deinit {
            _ = try? strataCLI(["rm", "-f"] + ((try? strataCLI(["ps", "-aq"], root: root).1.split(separator: "\n").map(String.init)) ?? []), root: root)
            _ = try? strataCLI(["gc"], root: root)
            t.remove()
        }
    }

    /// A web server in a container: busybox httpd serving `body` on port 80.
    static func server(_ body: String) -> [String] {
        [image, "sh", "-c", "mkdir -p /www && echo \(body) > /www/index.html && exec httpd -f -p 80 -h /www"]
    }

    /// A free TCP port of the host's loopback.
    static func freePort() throws -> UInt16 { try HostPorts.probe(address: "127.0.0.1", port: 0, udp: false) }

    @Test func twoContainersTalkByName() throws {
        let e = try Env()
        #expect(try e.ok(["network", "create", "--subnet", "10.89.250.0/24", "appnet"]) == "appnet")
        let web = try e.ok(["run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www", "--ip", "10.89.250.7"] + NetworkTests.server("by-name"))
        #expect(web.count == 64)
        let (rc, out, err) = try e.strata(["run", "--rm", "--network", "appnet", NetworkTests.image, "sh", "-c",
                                           "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://web/ && wget -q -O- http://www/ && break; sleep 0.5; done; cat /etc/resolv.conf; grep -c . /etc/hosts"])
        #expect(rc == 0 && out.hasPrefix("by-name\nby-name\n"), "\(out) \(err)")
        #expect(out.contains("search dns.podman\nnameserver 10.89.250.1\n"), "\(out)")
        // The address asked for, in the container and in `inspect`.
        #expect(try e.ok(["exec", "web", "sh", "-c", "ip -o -4 addr show eth0"]).contains("inet 10.89.250.7/24"))
        let inspect = try e.ok(["network", "inspect", "appnet"])
        #expect(inspect.contains("\"IPv4Address\" : \"10.89.250.7/24\"") && inspect.contains("\"Name\" : \"web\""), "\(inspect)")
        #expect(try e.ok(["exec", "web", "cat", "/etc/hosts"]).hasSuffix("10.89.250.7\t\(web.prefix(12))"))
        #expect(try e.ok(["inspect", "-f", "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.NetworkMode}}", "web"]) == "10.89.250.7 appnet")
        // A container of another network cannot reach it (netavark alone would forward it).
        let (_, other, _) = try e.strata(["run", "--rm", NetworkTests.image, "sh", "-c", "timeout 3 wget -q -O- http://10.89.250.7/ || echo unreachable"])
        #expect(other.contains("unreachable") && !other.contains("by-name"), "\(other)")
        // Names that would add lines to aardvark-dns's files or /etc/hosts are refused.
        for bad in [["--network", "appnet", "--network-alias", "x\n10.89.250.9 evil"], ["--hostname", "h\n6.6.6.6 evil"]] {
            let (brc, _, berr) = try e.strata(["run", "--rm"] + bad + [NetworkTests.image, "true"])
            #expect(brc == 125 && berr.split(separator: "\n").count == 1, "\(bad): \(berr)")
        }
        #expect(try e.strata(["network", "connect", "--alias", "a b", "appnet", "web"]).0 != 0)
        // In use: not removed; then gone with the container.
        #expect(try e.strata(["network", "rm", "appnet"]).0 == 3)
        _ = try e.ok(["rm", "-f", "web"])
        try e.expectNothingLeft("rm -f")
        #expect(try e.ok(["network", "rm", "appnet"]) == "appnet")
        #expect(try e.ok(["network", "ls", "-q"]) == "bridge")
        // system prune takes the networks no container uses, as Docker's.
        _ = try e.ok(["network", "create", "spare"])
        #expect(try e.ok(["system", "prune", "-f"]).contains("Deleted Networks:\nspare"))
    }

    @Test func publishedPorts() throws {
        let e = try Env()
        let port = try NetworkTests.freePort()
        _ = try e.ok(["run", "-d", "--name", "pub", "-p", "127.0.0.1:\(port):80", "-p", "80"] + NetworkTests.server("published"))
        #expect(try e.fetch("http://127.0.0.1:\(port)/") == "published\n")
        #expect(try e.ok(["port", "pub", "80"]).split(separator: "\n").first == "127.0.0.1:\(port)")
        #expect(try e.ok(["inspect", "-f", "{{json .NetworkSettings.Ports}}", "pub"]).contains("\"HostPort\":\"\(port)\""))
        // -p 80: a free port on every address.
        let all = try e.ok(["port", "pub"]).split(separator: "\n").map(String.init)
        #expect(all.count == 2 && all[0] == "80/tcp -> 127.0.0.1:\(port)", "\(all)")
        let random = try #require(all.last?.split(separator: ":").last.flatMap { UInt16($0) })
        let viaRandom = try e.fetch("http://127.0.0.1:\(random)/")
        #expect(random != port && viaRandom == "published\n")
        // The port is taken: another container cannot publish it.
        let (rc, _, err) = try e.strata(["run", "--rm", "-p", "127.0.0.1:\(port):80", NetworkTests.image, "true"])
        #expect(rc == 125 && err.contains("\(port)"), "\(err)")
        // -P: the image's EXPOSE, each on a free port.
        _ = try e.ok(["commit", "--change", "EXPOSE 80", "--change", "EXPOSE 8080/tcp", "pub", "exposing:1"])
        _ = try e.ok(["run", "-d", "--name", "all", "-P", "exposing:1", "sh", "-c", "mkdir -p /www && echo exposed > /www/index.html && exec httpd -f -p 80 -h /www"])
        let published = try e.ok(["port", "all"]).split(separator: "\n").map(String.init)
        #expect(published.count == 2 && published.contains { $0.hasPrefix("80/tcp -> 0.0.0.0:") } && published.contains { $0.hasPrefix("8080/tcp -> 0.0.0.0:") }, "\(published)")
        let p80 = try #require(published.first { $0.hasPrefix("80/tcp") }?.split(separator: ":").last.map(String.init))
        #expect(try e.fetch("http://127.0.0.1:\(p80)/") == "exposed\n")
        _ = try e.ok(["stop", "-t", "1", "pub", "all"])
        try e.expectNothingLeft("stop")
        let (refused, _, _) = try sh(["curl", "-s", "--max-time", "2", "http://127.0.0.1:\(port)/"])
        #expect(refused != 0, "the published port still answers after stop")
    }

    @Test func modes() throws {
        let e = try Env()
        _ = try e.ok(["run", "-d", "--name", "first"] + NetworkTests.server("shared"))
        let ip = try e.ok(["exec", "first", "sh", "-c", "ip -o -4 addr show eth0 | awk '{print $4}'"])
        #expect(ip.hasPrefix("10.89."), "\(ip)")
        // container:ID: the same interfaces and loopback.
        let (rc, out, err) = try e.strata(["run", "--rm", "--network", "container:first", NetworkTests.image, "sh", "-c",
                                           "ip -o -4 addr show eth0 | awk '{print $4}'; for i in 1 2 3 4 5; do wget -q -O- http://127.0.0.1/ 2>/dev/null && break; sleep 0.5; done"])
        #expect(rc == 0 && out == "\(ip)\nshared\n", "\(out) \(err)")
        // none: only lo; host: the host's interfaces.
        let none = try e.ok(["run", "--rm", "--network", "none", NetworkTests.image, "ls", "/sys/class/net"])
        #expect(none == "lo")
        // (Other tests' bridges come and go meanwhile: the interface of the host's default route
        // is the one looked for.)
        var uplink = "lo"
        for line in (readString("/proc/net/route") ?? "").split(separator: "\n").dropFirst() {
            let cols: [Substring] = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            if cols.count > 1, cols[1] == "00000000" { uplink = String(cols[0]); break }
        }
        let host = try e.ok(["run", "--rm", "--network", "host", NetworkTests.image, "ls", "/sys/class/net"])
        #expect(host.split(separator: "\n").contains(Substring(uplink)) && uplink != "lo", "\(host) \(uplink)")
        // The default network has no names: the host's nameservers, not a DNS server of strata's.
        let resolv = try e.ok(["run", "--rm", NetworkTests.image, "cat", "/etc/resolv.conf"])
        #expect(!resolv.contains("dns.podman") && !resolv.contains("nameserver 127."), "\(resolv)")
        // exec joins it; a detached container keeps it across its monitor's life.
        #expect(try e.ok(["exec", "first", "sh", "-c", "ip -o -4 addr show eth0 | awk '{print $4}'"]) == ip)
        // connect and disconnect while it runs.
        _ = try e.ok(["network", "create", "second"])
        _ = try e.ok(["network", "connect", "second", "first"])
        #expect(try e.ok(["exec", "first", "ls", "/sys/class/net"]).split(separator: "\n").sorted() == ["eth0", "eth1", "lo"])
        _ = try e.ok(["network", "disconnect", "second", "first"])
        #expect(try e.ok(["exec", "first", "ls", "/sys/class/net"]).split(separator: "\n").sorted() == ["eth0", "lo"])
        #expect(try e.strata(["run", "--rm", "--network", "container:nothere", NetworkTests.image, "true"]).0 == 125)
        _ = try e.ok(["rm", "-f", "first"])
        try e.expectNothingLeft("rm -f")
        #expect(try e.ok(["network", "prune", "-f"]).contains("second"))
    }

    /// The boundary on a bridge: the escape probe finds nothing, frames addressed to the
    /// host's 127.0.0.1 through the gateway never arrive (while frames to the gateway do: the
    /// attack is well made), and the container's own routes and links are its own.
    @Test func boundaryOnABridge() throws {
        let probe = try #require(RunTests.probe, "cc -static must build the probe")
        let e = try Env()
        // The host listens on every address, so a frame that got through would be seen.
        let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(s) }
        var sa = sockaddr_in(); sa.sin_family = sa_family_t(AF_INET)
        let bound = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(bound == 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        let udpPort = UInt16(bigEndian: sa.sin_port)
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // A published port makes netavark set route_localnet on the bridge.
        let published = try NetworkTests.freePort()
        let (rc, out, err) = try e.strata(["run", "--rm", "-p", "127.0.0.1:\(published):80", "-e", "PROBE_LOCALNET_PORT=\(udpPort)",
                                           "-v", probe + ":/probe:ro", NetworkTests.image, "/probe"])
        #expect(rc == 0 && out.contains("escapes: 0") && out.contains("localnet-udp: sent"), "\(out) \(err)")
        var received: [String] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let n = recv(s, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received.append(String(decoding: buffer[0..<n], as: UTF8.self))
        }
        #expect(received.contains("CONTROL"), "the control frames did not arrive: \(received)")
        #expect(!received.contains("LOCALNET"), "a container reached the host's 127.0.0.1 through the bridge")
        #expect(!received.contains("SPOOFED"), "a frame from a spoofed loopback source reached a host service")
        #expect(!received.contains("PORTPATH"), "a frame through a bridge port's own stack reached a host service")
        // No IPv6 on the bridge (Router Advertisements of a container would route the host's
        // IPv6 through it) nor on the container's eth0; lo keeps ::1.
        _ = try e.ok(["run", "-d", "--name", "v6", NetworkTests.image, "sleep", "100"])
        let bridge = try e.ok(["network", "inspect", "-f", "{{.Strata.interface}}", "bridge"])
        #expect(readString("/proc/sys/net/ipv6/conf/\(bridge)/disable_ipv6")?.hasPrefix("1") == true)
        let v6 = try e.ok(["exec", "v6", "sh", "-c", "ip -o -6 addr show eth0 | wc -l; ip -o -6 addr show lo | grep -c ::1"])
        #expect(v6 == "0\n1", "\(v6)")
        _ = try e.ok(["rm", "-f", "v6"])
        // Routes and links it changes are its namespace's, even with NET_ADMIN.
        let changed = try e.ok(["run", "--rm", "--cap-add", "NET_ADMIN", NetworkTests.image, "sh", "-c",
                                "ip route add 10.123.0.0/16 dev eth0 && ip link add dummy0 type dummy 2>/dev/null; ip route | grep -c 10.123"])
        #expect(changed == "1")
        let (_, after, _) = try sh(["ip", "-4", "route"])
        #expect(!after.contains("10.123."), "\(after)")
        // Without NET_ADMIN, not even its own.
        let (denied, _, _) = try e.strata(["run", "--rm", NetworkTests.image, "ip", "route", "add", "10.124.0.0/16", "dev", "eth0"])
        #expect(denied != 0)
        try e.expectNothingLeft("the probe's runs")
    }

    /// Every way out tears the network down: exit, stop, a failed start, kill -9 of strata and
    /// of the monitor (then `check` names it and `gc` removes it), rm -f.
    @Test func tornDownOnEveryWayOut() throws {
        let e = try Env()
        _ = try e.ok(["network", "create", "ways"])
        let net = ["--network", "ways"]
        // exit (and --rm)
        #expect(try e.ok(["run", "--rm"] + net + [NetworkTests.image, "true"]) == "")
        try e.expectNothingLeft("exit")
        _ = try e.ok(["run"] + net + ["--name", "kept", NetworkTests.image, "true"])
        try e.expectNothingLeft("exit of a kept container")
        _ = try e.ok(["start", "kept"])
        #expect(try e.ok(["wait", "kept"]) == "0")
        try e.expectNothingLeft("start and exit")
        // a failed start
        #expect(try e.strata(["run", "--rm"] + net + [NetworkTests.image, "/no/such/program"]).0 == 127)
        try e.expectNothingLeft("failed start")
        #expect(try e.strata(["run", "-d"] + net + [NetworkTests.image, "/no/such/program"]).0 == 127)
        try e.expectNothingLeft("failed detached start")
        // stop
        _ = try e.ok(["run", "-d", "--name", "s"] + net + [NetworkTests.image, "sleep", "100"])
        _ = try e.ok(["stop", "-t", "1", "s"])
        try e.expectNothingLeft("stop")
        // kill -9 of the foreground strata: the container dies with its pid namespace's init
        // only when killed too; gc then tears down what is left.
        let fg = try spawn([strataBinary, "--root", e.root, "run", "--name", "fg"] + net + [NetworkTests.image, "sleep", "100"])
        var ran = false
        for _ in 0..<100 where !ran { ran = (try e.ok(["ps", "-q"])).count > 0; if !ran { usleep(100_000) } }
        #expect(ran)
        kill(fg, SIGKILL); var st: Int32 = 0; waitpid(fg, &st, 0)
        _ = try e.strata(["kill", "fg"])
        for _ in 0..<50 where !(try e.ok(["ps", "-q"])).isEmpty { usleep(100_000) }
        let (checkRC, checkOut, _) = try e.strata(["check"])
        #expect(checkRC == 1 && checkOut.contains("network"), "\(checkOut)")
        #expect(try e.ok(["gc"]).contains("1 container networks"))
        try e.expectNothingLeft("kill -9 of strata, then gc")
        // kill -9 of the monitor, then of the container: gc.
        _ = try e.ok(["run", "-d", "--name", "m"] + net + [NetworkTests.image, "sleep", "100"])
        let (_, pids, _) = try sh(["pgrep", "-f", "strata-monitor"])
        let pidOfM = try e.ok(["inspect", "-f", "{{.State.Pid}}", "m"])
        var monitorKilled = false
        for p in pids.split(separator: "\n") {
            let (_, children, _) = try sh(["pgrep", "-P", String(p)])
            if children.split(separator: "\n").contains(Substring(pidOfM)) { monitorKilled = kill(pid_t(p)!, SIGKILL) == 0 }
        }
        #expect(monitorKilled, "no strata-monitor of container m was found")
        kill(pid_t(pidOfM)!, SIGKILL)
        for _ in 0..<50 where !(try e.ok(["ps", "-q"])).isEmpty { usleep(100_000) }
        let (monitorCheckRC, monitorCheck, _) = try e.strata(["check"])
        #expect(monitorCheckRC == 1 && monitorCheck.contains("network"), "\(monitorCheck)")
        _ = try e.ok(["gc"])
        try e.expectNothingLeft("kill -9 of the monitor, then gc")
        // rm -f of a running one
        _ = try e.ok(["run", "-d", "--name", "r"] + net + [NetworkTests.image, "sleep", "100"])
        _ = try e.ok(["rm", "-f", "r", "kept", "m", "fg"])
        try e.expectNothingLeft("rm -f")
        let (_, check, _) = try e.strata(["check"])
        #expect(!check.contains("network"), "\(check)")
    }
}
