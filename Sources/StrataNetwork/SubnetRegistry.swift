import FoundationEssentials
import StrataCore
import StrataSystem

/// The subnets strata's networks hold on this host. Stores do not know of each other, and a
/// bridge exists only while a container is attached, so each network's subnet is claimed in
/// `/run/strata/subnets` (one file per subnet naming the network file that holds it) under a
/// host-wide lock, besides every route of the host. A claim whose network file is gone (a
/// store removed) is free again.
public enum SubnetRegistry {
    static var directory: String {
        guard UserNamespace.current.isRootless else { return "/run/strata/subnets" }
        return (ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] ?? "/tmp") + "/strata/subnets"
    }
    /// Where a subnet is taken from when none is asked for: /24s of 10.89.0.0/16, as podman's.
    static let pool = IPv4Subnet(network: IPv4Address(10 << 24 | 89 << 16), prefix: 16)

    static func entryName(_ s: IPv4Subnet) -> String { "\(s.network)-\(s.prefix)" }

    /// Claims `wanted`, or the first free /24 of the pool, for the network file `owner`;
    /// `avoiding` are the store's own networks' subnets.
    static func take(_ wanted: IPv4Subnet?, owner: String, avoiding: [IPv4Subnet]) throws -> IPv4Subnet {
        try makeDirectories(directory, mode: 0o700, what: "the subnet claims directory")
        let lock = try FDHandle.open(directory + "/lock", flags: [.readWrite, .create, .noFollow], mode: 0o600)
        _ = try lock.flock(.exclusive)
        let taken = avoiding + claims(except: owner) + hostRoutes()
        func free(_ s: IPv4Subnet) -> IPv4Subnet? { taken.first { $0.overlaps(s) } }
        let chosen: IPv4Subnet
        if let wanted {
            if let other = free(wanted) {
                throw StrataError(.conflict, "subnet \(wanted) overlaps \(other), which this host or another network uses; choose another --subnet")
            }
            chosen = wanted
        } else {
            var found: IPv4Subnet?
            for i in 0..<256 {
                let s = IPv4Subnet(network: IPv4Address(pool.network.value | UInt32(i) << 8), prefix: 24)
                if free(s) == nil { found = s; break }
            }
            guard let found else {
                throw StrataError(.tooLarge, "no free /24 left in \(pool) for a new network; give one with --subnet, or remove networks")
            }
            chosen = found
        }
        let dir = try Directory.open(directory)
        try dir.writeFileAtomically(Array(entryName(chosen).utf8), Array((owner + "\n" + chosen.description + "\n").utf8))
        withExtendedLifetime(lock) {}  // held until the claim is written
        return chosen
    }

    /// Gives up the claim of `owner` on `subnet`.
    static func release(_ subnet: IPv4Subnet, owner: String) {
        guard let dir = try? Directory.open(directory),
              let bytes = try? dir.readFile(Array(entryName(subnet).utf8), limit: 8192),
              String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.map(String.init) == owner else { return }
        _ = dir.unlink(Array(entryName(subnet).utf8))
    }

    /// The subnets other networks hold: their claim files whose network file still names them.
    static func claims(except owner: String) -> [IPv4Subnet] {
        guard let dir = try? Directory.open(directory), let entries = try? dir.entries() else { return [] }
        var out: [IPv4Subnet] = []
        for e in entries {
            guard let bytes = try? dir.readFile(e, limit: 8192) else { continue }
            let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
            guard lines.count >= 2, lines[0] != owner, let s = try? IPv4Subnet(parsing: lines[1]) else { continue }
            // Live while the network file exists and still holds this subnet; and for a minute
            // after it is made, before which its network file may not be written yet.
            let age = (try? dir.lstat(e))??.modificationTime.seconds.distance(to: Int64(Date().timeIntervalSince1970)) ?? 0
            if age < 60 {
                out.append(s)
            } else if let f = try? FDHandle.open(lines[0], flags: [.readOnly, .noFollow]),
               let text = try? f.readAll(limit: 1 << 20, label: lines[0]),
               String(decoding: text, as: UTF8.self).contains("\"\(s.description)\"") {
                out.append(s)
            } else {
                _ = dir.unlink(e)
            }
        }
        return out
    }

    /// The destinations of the host's IPv4 routes (every interface's own subnet among them),
    /// but the default route.
    public static func hostRoutes() -> [IPv4Subnet] {
        guard let f = try? FDHandle.open("/proc/net/route", flags: .readOnly),
              let bytes = try? f.readAll(limit: 4 << 20, label: "/proc/net/route") else { return [] }
        var out: [IPv4Subnet] = []
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n").dropFirst() {
            let cols = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard cols.count >= 8, let dest = UInt32(cols[1], radix: 16), let mask = UInt32(cols[7], radix: 16), mask != 0 else { continue }
            // Little-endian in the file.
            let d = dest.byteSwapped, m = mask.byteSwapped
            out.append(IPv4Subnet(network: IPv4Address(d), prefix: m.nonzeroBitCount))
        }
        return out
    }
}
