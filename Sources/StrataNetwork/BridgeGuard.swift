import StrataCore
import StrataSystem

/// The firewall rules strata adds to netavark's, per bridge, while the bridge exists:
///
/// - **Isolation** (filter `STRATA-ISOLATION-1/2`, first in FORWARD, as Docker's
///   `DOCKER-ISOLATION-STAGE-1/2`): nothing is forwarded from one strata bridge to another, so a
///   container sees only its own networks' containers. netavark 1.4 accepts everything that
///   leaves a network's subnet, another network's included.
/// - **Localnet and spoofing** (raw `STRATA-LOCALNET`, first in PREROUTING): a packet that
///   arrives on a bridge for 127.0.0.0/8, or from any address outside the bridge's subnet
///   (127.0.0.2 among them, which a host service would take for a local peer), is dropped. netavark sets `route_localnet` on a bridge with published
///   ports (so that 127.0.0.1:P reaches a container); without this rule a container with
///   CAP_NET_RAW could send frames to the gateway's MAC addressed to 127.0.0.1 and reach the
///   host's loopback services. Replies to a published port arrive addressed to the gateway
///   (netavark masquerades them), so they are not caught.
/// - **The bridge's ports**: a frame for a reserved group address reaches a port's own stack;
///   IPv6 is off on each port and IPv4 coming in on one is dropped (`-i PORT -j DROP`).
/// - **No IPv6 on the bridge**: the networks are IPv4, and a bridge with IPv6 on would take
///   Router Advertisements from a container (with NET_RAW) and route the host's IPv6 through
///   it, or deliver v4-mapped loopback sources to the host's services. `disable_ipv6` is set on
///   the bridge (the containers' namespaces have it for every interface but lo, from the start).
///
/// Called with netavark's host-wide lock held: chains shared by every store change under it.
/// Each change is one `iptables-restore --noflush` batch, after one `iptables-save`: a start and
/// an end each pay two iptables calls, not one per rule and chain.
enum BridgeGuard {
    static let localnet = "STRATA-LOCALNET", isolation1 = "STRATA-ISOLATION-1", isolation2 = "STRATA-ISOLATION-2"
    static let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]

    static func tool(_ name: String) -> String? { HelperProgram.find(["/usr/sbin/" + name, "/sbin/" + name, "/usr/bin/" + name]) }

    /// The raw and filter tables as `iptables-save` prints them: per table, its lines.
    static func saved() throws -> [String: [String]] {
        guard let save = tool("iptables-save") else {
            throw StrataError(.unsupported, "iptables is not installed: strata cannot isolate network bridges (apt-get install iptables)")
        }
        var tables: [String: [String]] = [:]
        for table in ["raw", "filter"] {
            let out = try HelperProgram.run(save, ["-t", table], environment: environment)
            guard out.status == 0 else { throw StrataError(.system, "iptables-save -t \(table) failed: \(out.message)") }
            tables[table] = String(decoding: out.stdout, as: UTF8.self).split(separator: "\n").map(String.init)
        }
        return tables
    }

    static func restore(_ script: String) throws {
        guard let restore = tool("iptables-restore") else { throw StrataError(.unsupported, "iptables-restore is not installed (apt-get install iptables)") }
        let out = try HelperProgram.run(restore, ["-w", "--noflush"], input: Array(script.utf8), environment: environment)
        guard out.status == 0 else { throw StrataError(.system, "cannot change strata's firewall rules: \(out.message)") }
    }

    /// The rules of `bridge`, per table, as `-A` lines.
    static func rules(_ bridge: String, subnet: String) -> [String: [String]] {
        ["raw": ["-A \(localnet) -i \(bridge) -d 127.0.0.0/8 -j DROP", "-A \(localnet) -i \(bridge) ! -s \(subnet) -j DROP"],
         "filter": ["-A \(isolation1) -i \(bridge) ! -o \(bridge) -j \(isolation2)", "-A \(isolation2) -o \(bridge) -j DROP"]]
    }

    /// Whether a saved `-A` line is `rule` (iptables-save orders the matches its own way: the
    /// same words, in any order).
    static func same(_ line: String, _ rule: String) -> Bool {
        line.split(separator: " ").sorted() == rule.split(separator: " ").sorted()
    }

    /// The interfaces a saved `-A STRATA-…` line names (`-i X`, `-o X`).
    static func interfaces(_ line: String) -> [String] {
        let words = line.split(separator: " ").map(String.init)
        return words.indices.dropLast().filter { ["-i", "-o"].contains(words[$0]) }.map { words[$0 + 1] }
    }

    /// Turns IPv6 off on `bridge` and adds its rules (and the chains and their jumps, the first time).
    static func protect(bridge: String, subnet: String) throws {
        let sysctl = "/proc/sys/net/ipv6/conf/\(bridge)/disable_ipv6"
        if pathExists(sysctl) {
            do { try FDHandle.open(sysctl, flags: .writeOnly).writeAll(Array("1\n".utf8)) } catch {
                throw StrataError(.system, "cannot turn IPv6 off on bridge \(bridge) (\(sysctl)): \(error)")
            }
        }
        // The bridge's ports (the host's ends of the veths): the bridge hands a frame for a
        // reserved group address (01:80:c2:00:00:0X) to the port's own stack instead of
        // forwarding it, past every rule on the bridge. Nothing legitimate reaches the host
        // there: IPv6 is turned off on each port and IPv4 that comes in on one is dropped.
        let ports = ((try? Directory.open("/sys/class/net/\(bridge)/brif").entries()) ?? []).map { String(decoding: $0, as: UTF8.self) }
        for port in ports where pathExists("/proc/sys/net/ipv6/conf/\(port)/disable_ipv6") {
            try? FDHandle.open("/proc/sys/net/ipv6/conf/\(port)/disable_ipv6", flags: .writeOnly).writeAll(Array("1\n".utf8))
        }
        let tables = try saved()
        var wanted = rules(bridge, subnet: subnet)
        wanted["raw", default: []] += ports.map { p in "-A \(localnet) -i \(p) -j DROP" }
        if wanted.allSatisfy({ table, lines in lines.allSatisfy { line in (tables[table] ?? []).contains { same($0, line) } } }) { return }
        var script = ""
        for (table, chains, hook) in [("raw", [localnet], ("PREROUTING", localnet)), ("filter", [isolation2, isolation1], ("FORWARD", isolation1))] {
            let lines = tables[table] ?? []
            script += "*\(table)\n"
            for c in chains where !lines.contains(where: { $0.hasPrefix(":\(c) ") }) { script += ":\(c) - [0:0]\n" }
            if !lines.contains("-A \(hook.0) -j \(hook.1)") { script += "-I \(hook.0) 1 -j \(hook.1)\n" }
            for r in wanted[table] ?? [] where !lines.contains(where: { same($0, r) }) { script += r + "\n" }
            script += "COMMIT\n"
        }
        try restore(script)
    }

    /// Removes the rules that name an interface the host no longer has: `bridge`'s once it is
    /// gone (netavark removed it with its last container), a container's veth port once its
    /// teardown removed it. A chain goes with its jump when no rule is left in it.
    static func sweep() {
        guard let tables = try? saved() else { return }
        var script = ""
        for (table, order, hook) in [("raw", [localnet], ("PREROUTING", localnet)), ("filter", [isolation1, isolation2], ("FORWARD", isolation1))] {
            let lines = tables[table] ?? []
            let gone = lines.filter { $0.hasPrefix("-A STRATA-") && interfaces($0).contains { !pathExists("/sys/class/net/" + $0) } }
            guard !gone.isEmpty else { continue }
            var block = gone.map { "-D" + $0.dropFirst(2) + "\n" }.joined()
            for chain in order {
                let left = lines.filter { $0.hasPrefix("-A \(chain) ") && !gone.contains($0) }
                guard left.isEmpty else { continue }
                if chain == hook.1 { block += lines.filter { $0 == "-A \(hook.0) -j \(chain)" }.map { "-D" + $0.dropFirst(2) + "\n" }.joined() }
                // ISOLATION-2 is referenced by ISOLATION-1's rules: it goes only after them.
                if chain == isolation2, !lines.filter({ $0.hasPrefix("-A \(isolation1) ") && !gone.contains($0) }).isEmpty { continue }
                block += "-X \(chain)\n"
            }
            script += "*\(table)\n" + block + "COMMIT\n"
        }
        if !script.isEmpty { try? restore(script) }
    }
}
