/// Normalised names of archive entries, as byte components (names need not be UTF-8).
///
/// `./x`, `x//y` and `x/./y` all name `x/y`; `a/../b` that stays inside names `b`; a name
/// that is absolute or climbs out of the root with `..` is refused (docs/unpack-decisions.md, decision 2).
public enum EntryPath {
    /// Why an entry name is refused.
    public enum Failure: Error, Equatable {
        case absolute
        case escapes
    }

    /// The components of `name`, or a failure. The root itself (`.`, `./`) is `[]`.
    public static func components(_ name: [UInt8]) -> Result<[[UInt8]], Failure> {
        if name.first == UInt8(ascii: "/") { return .failure(.absolute) }
        var parts: [[UInt8]] = []
        for raw in name.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if raw.count == 1 && raw[raw.startIndex] == UInt8(ascii: ".") { continue }
            if raw.count == 2 && raw.allSatisfy({ $0 == UInt8(ascii: ".") }) {
                if parts.isEmpty { return .failure(.escapes) }
                parts.removeLast()
                continue
            }
            parts.append(Array(raw))
        }
        return .success(parts)
    }

    /// The normalised name joined with `/` (empty for the root).
    public static func normalized(_ name: [UInt8]) -> Result<[UInt8], Failure> {
        components(name).map { join($0) }
    }

    /// Joins name components with `/`.
    public static func join(_ parts: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for (i, p) in parts.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "/")) }
            out.append(contentsOf: p)
        }
        return out
    }
}
