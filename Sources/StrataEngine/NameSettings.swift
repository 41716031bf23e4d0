import StrataCore
import StrataLauncher

/// What a container's /etc/hosts and /etc/resolv.conf hold besides the defaults, as Docker's
/// `--add-host NAME:ADDRESS`, `--dns ADDRESS`, `--dns-search DOMAIN` and `--dns-option OPT` give
/// it. Kept in the spec's annotations, so that every start writes the files the same way.
public struct NameSettings: Sendable, Equatable {
    public struct Host: Sendable, Equatable {
        public var name: String
        public var address: String
        public init(name: String, address: String) { self.name = name; self.address = address }
    }
    public var extraHosts: [Host] = []
    public var dns: [String] = []
    public var dnsSearch: [String] = []
    public var dnsOptions: [String] = []

    public init() {}

    /// `NAME:ADDRESS` (an IPv6 address keeps its colons: the name ends at the first).
    public static func host(parsing s: String) throws -> Host {
        guard let colon = s.firstIndex(of: ":"), colon != s.startIndex, s.index(after: colon) != s.endIndex else {
            throw StrataError(.invalidArgument, "invalid --add-host \"\(s)\": expected NAME:ADDRESS")
        }
        var address = String(s[s.index(after: colon)...])
        if address.hasPrefix("["), address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
        return Host(name: String(s[..<colon]), address: address)
    }

    /// Names and addresses as the files can hold them: no blanks or line breaks, addresses
    /// that are IPv4 or IPv6 literals.
    func validate() throws {
        func isAddress(_ a: String) -> Bool {
            let v4 = a.split(separator: ".", omittingEmptySubsequences: false)
            if v4.count == 4, v4.allSatisfy({ UInt8($0) != nil && !$0.isEmpty }) { return true }
            return a.contains(":") && a.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." } && a.count <= 45
        }
        func isWord(_ s: String) -> Bool { !s.isEmpty && s.count <= 253 && s.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7f && $0 != "#" } }
        for h in extraHosts {
            guard isWord(h.name), isAddress(h.address) else {
                throw StrataError(.invalidArgument, "invalid --add-host \"\(h.name):\(h.address)\": a host name and an IPv4 or IPv6 address")
            }
        }
        for d in dns where !isAddress(d) { throw StrataError(.invalidArgument, "invalid --dns \"\(d)\": an IPv4 or IPv6 address") }
        for d in dnsSearch + dnsOptions where !isWord(d) {
            throw StrataError(.invalidArgument, "invalid --dns-search or --dns-option \"\(d)\": one word, no blanks")
        }
    }

    func annotate(_ a: inout [String: String]) {
        if !extraHosts.isEmpty { a[RuntimeSpec.Annotation.addHosts] = extraHosts.map { "\($0.name) \($0.address)" }.joined(separator: "\n") }
        if !dns.isEmpty { a[RuntimeSpec.Annotation.dns] = dns.joined(separator: "\n") }
        if !dnsSearch.isEmpty { a[RuntimeSpec.Annotation.dnsSearch] = dnsSearch.joined(separator: "\n") }
        if !dnsOptions.isEmpty { a[RuntimeSpec.Annotation.dnsOptions] = dnsOptions.joined(separator: "\n") }
    }

    init(annotations a: [String: String]) {
        func lines(_ key: String) -> [String] { a[key]?.split(separator: "\n").map(String.init) ?? [] }
        extraHosts = lines(RuntimeSpec.Annotation.addHosts).compactMap { l in
            let parts = l.split(separator: " ", maxSplits: 1).map(String.init)
            return parts.count == 2 ? Host(name: parts[0], address: parts[1]) : nil
        }
        dns = lines(RuntimeSpec.Annotation.dns)
        dnsSearch = lines(RuntimeSpec.Annotation.dnsSearch)
        dnsOptions = lines(RuntimeSpec.Annotation.dnsOptions)
    }

    /// resolv.conf from `base`, as Docker makes it: given nameservers, search domains or options
    /// replace the base's lines of that kind; the rest of the base stays.
    func resolvConf(from base: String) -> String {
        guard !(dns.isEmpty && dnsSearch.isEmpty && dnsOptions.isEmpty) else { return base }
        var out: [String] = []
        for line in base.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let word = line.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
            if (!dns.isEmpty && word == "nameserver") || (!dnsSearch.isEmpty && (word == "search" || word == "domain"))
                || (!dnsOptions.isEmpty && word == "options") { continue }
            out.append(line)
        }
        while out.last == "" { out.removeLast() }
        out += dns.map { "nameserver \($0)" }
        if !dnsSearch.isEmpty { out.append("search " + dnsSearch.joined(separator: " ")) }
        if !dnsOptions.isEmpty { out.append("options " + dnsOptions.joined(separator: " ")) }
        return out.joined(separator: "\n") + "\n"
    }
}
