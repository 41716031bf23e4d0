import StrataCore

/// Image references as users type them: `name[:tag]`, where a name without a tag means
/// `:latest` (as in Docker). No registry defaults are added.
public enum Reference {
    /// Characters a reference may have, its tag included.
    public static let maxLength = 512

    /// `name` → `name:latest`; `host:5000/name` keeps its port; `name@sha256:…` is kept.
    /// The result is at most `maxLength` characters (the limit counts the `:latest` added), so
    /// that it normalizes to itself.
    public static func normalize(_ ref: String) throws -> String {
        guard !ref.isEmpty, ref.count <= maxLength,
              ref.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
            throw StrataError(.invalidArgument, "invalid image reference \"\(ref.prefix(80))\"")
        }
        if ref.contains("@") { return ref }
        let lastComponent = ref.split(separator: "/", omittingEmptySubsequences: false).last ?? Substring(ref)
        if lastComponent.contains(":") { return ref }
        let full = ref + ":latest"
        guard full.utf8.count <= maxLength else {
            throw StrataError(.invalidArgument,
                              "invalid image reference \"\(ref.prefix(80))…\": \(full.utf8.count) characters with the :latest tag, over the limit of \(maxLength)")
        }
        return full
    }

    /// A name a user gives an image (`tag`, `commit`, `import`, `load --tag`), checked by the grammar
    /// `pull` uses (ImageReference: lowercase repository components, a tag of letters, digits and
    /// `_ . -`, a registry host[:port]) and normalized as `normalize` does. A digest is refused, as
    /// Docker refuses it: a tag names a manifest the store may make, not one it was given.
    public static func userTag(_ ref: String) throws -> String {
        let parsed = try ImageReference(parsing: ref)
        guard parsed.digest == nil else {
            throw StrataError(.invalidArgument, "invalid tag \"\(ref.prefix(120))\": a tag cannot name a digest; give NAME[:TAG]")
        }
        return try normalize(ref)
    }

    /// Whether `s` is a tag alone (no name): `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    public static func isBareTag(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, s.count <= 128 else { return false }
        let word: (Unicode.Scalar) -> Bool = { ($0.properties.isASCIIHexDigit || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_") }
        return word(first) && s.unicodeScalars.allSatisfy { word($0) || $0 == "." || $0 == "-" }
    }

    /// Tags from an OCI index entry: containerd's `io.containerd.image.name` (a full name), or
    /// `org.opencontainers.image.ref.name` when that is a full reference. A ref.name that is only
    /// a tag leaves the image untagged.
    public static func tags(fromAnnotations a: [String: String]?) -> [String] {
        guard let a else { return [] }
        if let full = a["io.containerd.image.name"], let n = try? normalize(full) { return [n] }
        if let ref = a["org.opencontainers.image.ref.name"], !isBareTag(ref), let n = try? normalize(ref) { return [n] }
        return []
    }
}
