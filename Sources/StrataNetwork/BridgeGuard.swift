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
/// - **No IPv6 on the bridge**: the networks are IPv4, and a bridge with IPv6 on would take
///   Router Advertisements from a container (with NET_RAW) and route the host's IPv6 through
///   it, or deliver v4-mapped loopback sources to the host's services. `disable_ipv6` is set on
///   the bridge (the containers' namespaces have it for every interface but lo, from the start).
///
/// Called with netavark's host-wide lock held: chains shared by every store change under it.
enum BridgeGuard {
    static let localnet = "STRATA-LOCALNET", isolation1 = "STRATA-ISOLATION-1", isolation2 = "STRATA-ISOLATION-2"

    static func iptables(_ args: [String]) -> HelperProgram.Output? {
        guard let binary = HelperProgram.find(["/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"]) else { return nil }
        return try? HelperProgram.run(binary, ["-w"] + args, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
    }

    static func succeeds(_ args: [String]) -> Bool { iptables(args)?.status == 0 }

    static func rules(_ bridge: String, subnet: String) -> [[String]] {
        [["-t", "raw", localnet, "-i", bridge, "-d", "127.0.0.0/8", "-j", "DROP"],
         ["-t", "raw", localnet, "-i", bridge, "!", "-s", subnet, "-j", "DROP"],
         ["-t", "filter", isolation1, "-i", bridge, "!", "-o", bridge, "-j", isolation2],
         ["-t", "filter", isolation2, "-o", bridge, "-j", "DROP"]]
    }

    /// Turns IPv6 off on `bridge` and adds its rules (and the chains, the first time).
    static func protect(bridge: String, subnet: String) throws {
        let sysctl = "/proc/sys/net/ipv6/conf/\(bridge)/disable_ipv6"
        if pathExists(sysctl) {
            do { try FDHandle.open(sysctl, flags: .writeOnly).writeAll(Array("1\n".utf8)) } catch {
                throw StrataError(.system, "cannot turn IPv6 off on bridge \(bridge) (\(sysctl)): \(error)")
            }
        }
        if rules(bridge, subnet: subnet).allSatisfy({ succeeds(["-t", $0[1], "-C"] + $0.dropFirst(2)) }) { return }
        guard iptables(["-t", "raw", "-S", "PREROUTING"]) != nil else {
            throw StrataError(.unsupported, "iptables is not installed: strata cannot isolate network bridges (apt-get install iptables)")
        }
        for (table, chain, hook) in [("raw", localnet, "PREROUTING"), ("filter", isolation2, nil), ("filter", isolation1, "FORWARD")] {
            _ = iptables(["-t", table, "-N", chain])  // fails when it exists
            if let hook, !succeeds(["-t", table, "-C", hook, "-j", chain]) {
                guard succeeds(["-t", table, "-I", hook, "1", "-j", chain]) else {
                    throw StrataError(.system, "cannot add the jump to \(chain) in the \(table) table's \(hook): \(iptables(["-t", table, "-I", hook, "1", "-j", chain])?.message ?? "")")
                }
            }
        }
        for r in rules(bridge, subnet: subnet) where !succeeds(["-t", r[1], "-C"] + r.dropFirst(2)) {
            let out = iptables(["-t", r[1], "-A"] + r.dropFirst(2))
            guard out?.status == 0 else {
                throw StrataError(.system, "cannot add the firewall rule \(r.dropFirst(2).joined(separator: " ")): \(out?.message ?? "iptables failed")")
            }
        }
    }

    /// Removes the rules of `bridge` once it is gone (netavark removed it with its last
    /// container), and the chains when no bridge is left.
    static func release(bridge: String, subnet: String) {
        guard !pathExists("/sys/class/net/" + bridge) else { return }
        for r in rules(bridge, subnet: subnet) {
            while succeeds(["-t", r[1], "-D"] + r.dropFirst(2)) {}
        }
        // A chain with no rule left goes, with its jump (the first one still referenced by
        // another stays: iptables refuses to delete it).
        for (table, chain, hook) in [("filter", isolation1, "FORWARD"), ("filter", isolation2, nil), ("raw", localnet, "PREROUTING")] {
            guard let listing = iptables(["-t", table, "-S", chain]), listing.status == 0,
                  String(decoding: listing.stdout, as: UTF8.self).split(separator: "\n").count <= 1 else { continue }
            if let hook { while succeeds(["-t", table, "-D", hook, "-j", chain]) {} }
            _ = iptables(["-t", table, "-X", chain])
        }
    }
}
