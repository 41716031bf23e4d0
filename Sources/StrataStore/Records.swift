import FoundationEssentials
import StrataCore

/// How a layer's tar is rebuilt: from its files and the tar-split journal (`exact`), or from
/// the raw tar kept where the journal cannot be exact (`raw`).
public enum JournalForm: String, Codable, Sendable {
    case exact, raw
}

/// A layer as the store records it (table `layers`).
public struct LayerRecord: Sendable, Equatable {
    public var chainID: ChainID
    public var diffID: DiffID
    /// The layer below; nil for a bottom layer.
    public var parent: ChainID?
    /// The directory name under layers/ (storage identity, apart from the content identity).
    public var cacheID: String
    /// Bytes of regular files in the layer.
    public var size: Int64
    /// Bytes of the uncompressed tar.
    public var tarSize: Int64
    /// The compressed blob the layer was loaded from (`sha256:…`), if any.
    public var blobDigest: String?
    /// That blob's compression (`gzip`, `zstd`, …, `none`).
    public var compression: String?
    /// Whether the tar made its root directory opaque.
    public var opaqueRoot: Bool
    public var journal: JournalForm
    /// Why the journal could not be exact, where it is `raw`.
    public var journalNote: String?
    public var createdAt: Date

    /// A layer record of these values.
    public init(chainID: ChainID, diffID: DiffID, parent: ChainID?, cacheID: String, size: Int64, tarSize: Int64,
                blobDigest: String?, compression: String?, opaqueRoot: Bool, journal: JournalForm, journalNote: String?,
                createdAt: Date) {
        self.chainID = chainID; self.diffID = diffID; self.parent = parent; self.cacheID = cacheID; self.size = size
        self.tarSize = tarSize; self.blobDigest = blobDigest; self.compression = compression; self.opaqueRoot = opaqueRoot
        self.journal = journal; self.journalNote = journalNote; self.createdAt = createdAt
    }
}

/// An image as the store records it (table `images`; its layers and tags are rows of their own).
public struct ImageRecord: Sendable, Equatable {
    /// The config digest.
    public var id: Digest
    public var topLayer: ChainID?
    /// The manifest it was loaded with (kept so `save` can write it again), if any.
    public var manifestDigest: Digest?
    /// The config's `created`, as the config writes it (kept as text: it is the image's own value).
    public var created: String?
    public var os: String?
    public var architecture: String?
    /// Bytes of regular files in all its layers.
    public var size: Int64
    public var loadedAt: Date

    /// An image record of these values.
    public init(id: Digest, topLayer: ChainID?, manifestDigest: Digest?, created: String?, os: String?, architecture: String?,
                size: Int64, loadedAt: Date) {
        self.id = id; self.topLayer = topLayer; self.manifestDigest = manifestDigest; self.created = created; self.os = os
        self.architecture = architecture; self.size = size; self.loadedAt = loadedAt
    }
}

/// A container as the store records it (table `containers`).
public struct ContainerRecord: Sendable, Equatable {
    /// 64 hex digits.
    public var id: String
    public var name: String
    public var image: Digest
    /// The union driver its directories were made for.
    public var driver: String
    /// How many `mount`s hold its rootfs.
    public var mountCount: Int
    /// The pid of its process while it runs (checked against its cgroup before it is trusted).
    public var pid: Int32?
    public var createdAt: Date

    /// A container record of these values (not mounted, not running unless said).
    public init(id: String, name: String, image: Digest, driver: String, mountCount: Int = 0, pid: Int32? = nil, createdAt: Date) {
        self.id = id; self.name = name; self.image = image; self.driver = driver; self.mountCount = mountCount
        self.pid = pid; self.createdAt = createdAt
    }
}

/// A compressed form of a layer (a registry blob): its digest, size and media type.
public struct LayerBlobRecord: Sendable, Equatable {
    public var digest: Digest
    public var size: Int64
    public var mediaType: String
    /// A blob record of these values.
    public init(digest: Digest, size: Int64, mediaType: String) { self.digest = digest; self.size = size; self.mediaType = mediaType }
}

/// Layers flattened into one directory (table `flattened_layers`): the bottom of a chain too
/// deep for overlayfs, as one lower dir.
public struct FlattenedRecord: Sendable, Equatable {
    /// The chainID of the highest layer it holds: names the whole prefix of the chain.
    public var topLayer: ChainID
    public var cacheID: String
    public var layerCount: Int
    /// Its short link is ROOT/l/F followed by this in base 36.
    public var linkID: Int64
    public var createdAt: Date

    /// A flattened-layer record of these values.
    public init(topLayer: ChainID, cacheID: String, layerCount: Int, linkID: Int64, createdAt: Date) {
        self.topLayer = topLayer; self.cacheID = cacheID; self.layerCount = layerCount; self.linkID = linkID; self.createdAt = createdAt
    }

    /// The name of its short link under ROOT/l (upper case: never one of a layer's).
    public var link: String { "F" + String(linkID, radix: 36) }
}

/// A layer as a union driver needs it (a part of `LayerRecord`, read without the rest).
public struct MountLayerRecord: Sendable, Equatable {
    public var chainID: ChainID
    public var cacheID: String
    public var opaqueRoot: Bool
    /// Its short link's ID (ROOT/l), once it has one.
    public var linkID: Int64?
    /// A mount record of these values.
    public init(chainID: ChainID, cacheID: String, opaqueRoot: Bool, linkID: Int64?) {
        self.chainID = chainID; self.cacheID = cacheID; self.opaqueRoot = opaqueRoot; self.linkID = linkID
    }
}
