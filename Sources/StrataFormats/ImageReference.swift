import StrataCore

/// A reference to an image in a registry, parsed as Docker parses one:
/// `[registry/]repository[:tag][@digest]`. The first component is a registry when it has a
/// `.` or a `:`, or is `localhost`; otherwise the registry is `docker.io`, where a one-component
/// repository lives under `library/` (`busybox` → `docker.io/library/busybox:latest`).
public struct ImageReference: Sendable, Equatable, CustomStringConvertible {
    /// Host and optional port (`docker.io`, `127.0.0.1:5000`).
    public var registry: String
    /// Path components joined by `/`, lowercase (`library/busybox`).
    public var repository: String
    /// Nil when only a digest is given.
    public var tag: String?
    public var digest: Digest?

    public static let dockerHub = "docker.io"

    /// Parses `text` by the grammar of Docker's reference package; a name without tag or
    /// digest gets `:latest`.
    public init(parsing text: String) throws {
        func bad(_ why: String) -> StrataError {
            StrataError(.invalidArgument, "invalid image reference \"\(text.prefix(120))\": \(why)")
        }
        guard !text.isEmpty else { throw bad("it is empty") }
        guard text.utf8.count <= 4096, text.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
            throw bad("only printable ASCII without spaces is allowed")
        }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            let d = String(rest[rest.index(after: at)...])
            guard let parsed = try? Digest(parsing: d) else { throw bad("the digest must be sha256: and 64 lowercase hex digits") }
            digest = parsed
            rest = rest[..<at]
        }
        // A tag follows the last ':' that comes after the last '/' (a port comes before it).
        let lastSlash = rest.lastIndex(of: "/")
        if let colon = rest.lastIndex(of: ":"), lastSlash.map({ colon > $0 }) ?? true {
            let t = String(rest[rest.index(after: colon)...])
            guard Reference.isBareTag(t) else {
                throw bad("the tag \"\(t.prefix(40))\" must be letters, digits, _ . - (up to 128, not starting with . or -)")
            }
            tag = t
            rest = rest[..<colon]
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !components.isEmpty, !components.contains(where: \.isEmpty) else { throw bad("a name component is empty") }
        let first = components[0]
        if components.count > 1 && (first.contains(".") || first.contains(":") || first == "localhost") {
            registry = first
            components.removeFirst()
            guard ImageReference.isHost(registry) else { throw bad("\"\(registry)\" is not a registry host[:port]") }
        } else {
            registry = ImageReference.dockerHub
        }
        if registry == ImageReference.dockerHub && components.count == 1 { components.insert("library", at: 0) }
        for c in components {
            if c != c.lowercased() { throw bad("repository names must be lowercase") }
            guard ImageReference.isPathComponent(c) else {
                throw bad("\"\(c)\" must be lowercase letters and digits, separated by one . or _, two _, or dashes")
            }
        }
        repository = components.joined(separator: "/")
        guard repository.utf8.count + registry.utf8.count < 256 else { throw bad("the name is longer than 255 characters") }
        if tag == nil && digest == nil { tag = "latest" }
    }

    /// `registry/repository` as a tag's name part.
    public var name: String { "\(registry)/\(repository)" }

    /// The full reference: `registry/repository[:tag][@digest]`.
    public var description: String {
        name + (tag.map { ":\($0)" } ?? "") + (digest.map { "@\($0)" } ?? "")
    }

    /// The tag or digest to ask the registry for.
    public var manifestReference: String { digest?.string ?? tag ?? "latest" }

    /// The names a user may type for this image, shortest first: `busybox:latest` and
    /// `library/busybox:latest` for Docker Hub's library, `x:1` for `localhost/x:1`.
    public var shortForms: [String] {
        guard let tag else { return [] }
        var out: [String] = []
        if registry == ImageReference.dockerHub {
            if repository.hasPrefix("library/") { out.append(String(repository.dropFirst(8)) + ":" + tag) }
            out.append(repository + ":" + tag)
        } else if registry == "localhost" {
            out.append(repository + ":" + tag)
        }
        return out
    }

    /// A registry as `login` takes it: `HOST[:PORT]`, with `https://` and a path dropped;
    /// Docker Hub's names (`docker.io`, `index.docker.io`, `registry-1.docker.io`) are `docker.io`.
    public static func registryHost(_ text: String) throws -> String {
        var h = Substring(text)
        for scheme in ["https://", "http://"] where h.hasPrefix(scheme) { h = h.dropFirst(scheme.count) }
        h = h.prefix { $0 != "/" }
        let host = String(h)
        guard isHost(host) else { throw StrataError(.invalidArgument, "invalid registry \"\(text.prefix(80))\": expected HOST[:PORT]") }
        return ["index.docker.io", "registry-1.docker.io"].contains(host) ? dockerHub : host
    }

    /// `[a-z0-9]+` runs separated by `.`, `_`, `__` or dashes.
    static func isPathComponent(_ c: String) -> Bool {
        let b = Array(c.utf8)
        guard let f = b.first, let l = b.last, isAlnum(f), isAlnum(l) else { return false }
        var i = 0
        while i < b.count {
            if isAlnum(b[i]) { i += 1; continue }
            var j = i
            while j < b.count && !isAlnum(b[j]) { j += 1 }
            let sep = b[i..<j]
            let ok = sep.elementsEqual([UInt8(ascii: ".")]) || sep.elementsEqual([UInt8(ascii: "_")])
                || sep.elementsEqual([UInt8(ascii: "_"), UInt8(ascii: "_")]) || sep.allSatisfy { $0 == UInt8(ascii: "-") }
            if !ok { return false }
            i = j
        }
        return true
    }

    private static func isAlnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }

    /// `host[:port]`: labels of letters, digits and dashes (or an IPv4 address), a numeric port.
    static func isHost(_ h: String) -> Bool {
        let parts = h.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let host = parts.first, !host.isEmpty else { return false }
        if parts.count == 2 { guard let p = Int(parts[1]), (1...65535).contains(p) else { return false } }
        return host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.first != "-" && label.last != "-"
                && label.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        }
    }
}
