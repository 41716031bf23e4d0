import StrataCore
import StrataSystem

/// The members of an uncompressed tar file (a docker-archive or oci-archive), by normalised
/// name, so that each blob can be read in place with pread instead of being copied out.
public struct TarIndex: Sendable {
    /// One member of the archive: its type, where its data starts and how long it is.
    public struct Member: Sendable {
        public var name: PathBytes
        public var kind: TarEntry.Kind
        public var offset: Int64
        public var size: Int64
        public var linkTarget: PathBytes
    }

    public let label: String
    public private(set) var members: [PathBytes: Member] = [:]

    /// Scans `handle` (a seekable, uncompressed tar of `size` bytes). Reads headers only: the
    /// source is skippable, so libarchive jumps over member payloads instead of reading them.
    public init(handle: FDHandle, size: Int64, label: String) throws {
        self.label = label
        let reader = try TarReader(FileRangeSource(handle: handle, offset: 0, length: size, label: label), label: label)
        while let e = try reader.next() {
            guard case .success(let name) = EntryPath.normalized(e.path), !name.isEmpty else { continue }
            members[name] = Member(name: name, kind: e.kind, offset: e.dataOffset, size: e.size, linkTarget: e.linkTarget)
        }
    }

    /// The regular-file member at `name` (normalised; symlinks and hardlinks inside the
    /// archive followed a few times, never outside it).
    public func member(_ name: String) throws -> Member {
        guard case .success(var key) = EntryPath.normalized(Array(name.utf8)), !key.isEmpty else {
            throw StrataError(.invalidFormat, "\(label): member name \"\(name)\" points outside the archive")
        }
        for _ in 0..<8 {
            guard let m = members[key] else {
                throw StrataError(.notFound, "\(label): no member \"\(key.display)\" in the archive")
            }
            switch m.kind {
            case .regular:
                return m
            case .hardlink:
                guard case .success(let t) = EntryPath.normalized(m.linkTarget) else {
                    throw StrataError(.invalidFormat, "\(label): member \"\(key.display)\" links outside the archive")
                }
                key = t
            case .symlink:
                var parent = key.split(separator: UInt8(ascii: "/")).dropLast().map(Array.init)
                if m.linkTarget.first == UInt8(ascii: "/") { parent = [] }
                guard case .success(let t) = EntryPath.normalized(EntryPath.join(parent) + [UInt8(ascii: "/")] + m.linkTarget) else {
                    throw StrataError(.invalidFormat, "\(label): member \"\(key.display)\" links outside the archive")
                }
                key = t
            default:
                throw StrataError(.invalidFormat, "\(label): member \"\(key.display)\" is not a regular file")
            }
        }
        throw StrataError(.invalidFormat, "\(label): member \"\(name)\": too many links")
    }

    /// Whether the archive has a member of that (normalized) name.
    public func contains(_ name: String) -> Bool {
        guard case .success(let key) = EntryPath.normalized(Array(name.utf8)) else { return false }
        return members[key] != nil
    }
}
