@preconcurrency import Crypto
import FoundationEssentials

/// A content digest: `sha256:` followed by 64 lowercase hex digits (OCI image-spec,
/// descriptor.md "Digests"). Only sha256 is accepted; a value of this type is always valid,
/// so a path built from `hex` cannot escape its directory.
public struct Digest: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public let hex: String

    public static let algorithm = "sha256"

    /// Parses `sha256:` followed by 64 lowercase hex digits.
    public init(parsing string: String) throws {
        // On the contiguous bytes: Character comparisons and UTF8View walks cost tens of
        // instructions a byte, and deep chains parse hundreds of digests per command.
        var s = string
        let hex: String? = s.withUTF8 { b in
            guard b.count == 71, b.starts(with: "sha256:".utf8), Digest.isLowerHex(UnsafeBufferPointer(rebasing: b[7...])) else { return nil }
            return String(decoding: UnsafeBufferPointer(rebasing: b[7...]), as: UTF8.self)
        }
        guard let hex else {
            throw StrataError(.invalidDigest, "invalid digest \"\(string.prefix(80))\": expected sha256:<64 lowercase hex>")
        }
        self.hex = hex
    }

    /// A SHA-256 digest from its 64 lowercase hex digits.
    public init(hex: String) throws {
        guard Digest.isHex64(hex) else {
            throw StrataError(.invalidDigest, "invalid sha256 hex \"\(hex.prefix(80))\"")
        }
        self.hex = hex
    }

    /// From a finished SHA-256 hash.
    public init(_ hash: SHA256.Digest) {
        var s = ""
        s.reserveCapacity(64)
        for byte in hash {
            s.append(Digest.hexDigits[Int(byte >> 4)])
            s.append(Digest.hexDigits[Int(byte & 0xf)])
        }
        self.hex = s
    }

    /// The digest of `bytes`.
    public static func of<D: DataProtocol>(_ bytes: D) -> Digest {
        Digest(SHA256.hash(data: bytes))
    }

    public var string: String { "sha256:" + hex }
    public var description: String { string }
    /// The first 12 hex digits, as Docker shows IDs.
    public var short: String { String(hex.prefix(12)) }

    public static func < (lhs: Digest, rhs: Digest) -> Bool { lhs.hex < rhs.hex }

    public init(from decoder: any Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: s)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(string)
    }

    private static let hexDigits: [Character] = Array("0123456789abcdef")

    static func isHex64(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { $0.count == 64 && isLowerHex($0) }
    }

    private static func isLowerHex(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        for b in bytes where !(b &- 0x30 < 10 || b &- 0x61 < 6) { return false }
        return true
    }
}

/// The digest of a layer's uncompressed tar stream (image config `rootfs.diff_ids`).
public struct DiffID: Hashable, Sendable, CustomStringConvertible, Codable {
    public let digest: Digest
    /// The diffID that `digest` is.
    public init(_ digest: Digest) { self.digest = digest }
    /// Parses a diffID (`sha256:` and 64 hex digits).
    public init(parsing s: String) throws { digest = try Digest(parsing: s) }
    public var description: String { digest.string }
    public init(from decoder: any Decoder) throws { digest = try Digest(from: decoder) }
    public func encode(to encoder: any Encoder) throws { try digest.encode(to: encoder) }
}

/// The identity of a layer in the store: its diffID together with all diffIDs below it.
///
/// chainID(L0) = diffID(L0); chainID(L0…Ln) = sha256(chainID(L0…Ln-1) + " " + diffID(Ln))
/// (OCI image-spec, config.md "Layer ChainID").
public struct ChainID: Hashable, Sendable, CustomStringConvertible, Codable {
    public let digest: Digest
    /// The chainID that `digest` is.
    public init(_ digest: Digest) { self.digest = digest }
    /// Parses a chainID (`sha256:` and 64 hex digits).
    public init(parsing s: String) throws { digest = try Digest(parsing: s) }
    public var description: String { digest.string }
    public init(from decoder: any Decoder) throws { digest = try Digest(from: decoder) }
    public func encode(to encoder: any Encoder) throws { try digest.encode(to: encoder) }

    /// The chainID of `diffID` stacked on `parent` (nil: the bottom layer).
    public static func of(parent: ChainID?, diffID: DiffID) -> ChainID {
        guard let parent else { return ChainID(diffID.digest) }
        return ChainID(Digest.of(Array((parent.digest.string + " " + diffID.digest.string).utf8)))
    }

    /// The chainIDs of every prefix of `diffIDs` (bottom first).
    public static func chain(_ diffIDs: [DiffID]) -> [ChainID] {
        var result: [ChainID] = []
        result.reserveCapacity(diffIDs.count)
        var parent: ChainID? = nil
        for d in diffIDs {
            let c = ChainID.of(parent: parent, diffID: d)
            result.append(c)
            parent = c
        }
        return result
    }
}

/// Incremental SHA-256 producing a `Digest`, for code that hashes streams.
public struct Digester: Sendable {
    private var hasher = SHA256()
    /// A new SHA-256 computation.
    public init() {}
    /// Hashes `bytes`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
    /// The digest of everything hashed.
    public func finalize() -> Digest { Digest(hasher.finalize()) }
}

extension String {
    /// The 12 hex digits an ID is shown by (`docker images` style), with or without `sha256:`.
    public var shortID: String {
        String((hasPrefix("sha256:") ? dropFirst(7) : Substring(self)).prefix(12))
    }
}

extension StrataError {
    /// A blob whose bytes hash to `actual`, not to the `expected` digest that names it.
    public static func blobDigestMismatch(_ label: String, expected: Digest, actual: Digest) -> StrataError {
        StrataError(.digestMismatch, "\(label): digest mismatch: the blob hashes to \(actual), but the manifest names \(expected)")
    }
}
