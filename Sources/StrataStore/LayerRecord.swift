#if canImport(Glibc)
import Glibc
#endif
import GRDB
import StrataArchive
import StrataCore
import StrataLayer
import StrataSystem

/// How a layer's tar is rebuilt: from its files and the tar-split journal (`exact`), or from
/// the raw tar kept where the journal cannot be exact (`raw`).
public enum JournalForm: String, Codable, Sendable {
    case exact, raw
}

/// A layer row.
public struct LayerRecord: Sendable {
    public var chainID: ChainID
    public var diffID: DiffID
    public var parent: ChainID?
    public var cacheID: String
    public var size: Int64
    public var tarSize: Int64
    public var blobDigest: String?
    public var compression: String?
    public var opaqueRoot: Bool
    public var journal: JournalForm
    public var journalNote: String?
    public var createdAt: String

    init(row: Row) throws {
        chainID = try ChainID(parsing: row["chain_id"])
        diffID = try DiffID(parsing: row["diff_id"])
        parent = try (row["parent"] as String?).map(ChainID.init(parsing:))
        cacheID = row["cache_id"]
        size = row["size"]
        tarSize = row["tar_size"]
        blobDigest = row["blob_digest"]
        compression = row["compression"]
        opaqueRoot = row["opaque_root"]
        journal = JournalForm(rawValue: row["journal"]) ?? .raw
        journalNote = row["journal_note"]
        createdAt = row["created_at"]
    }
}

extension Store {
    public func layer(_ chainID: ChainID) throws -> LayerRecord? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM layers WHERE chain_id = ?", arguments: [chainID.description]).map(LayerRecord.init(row:))
        }
    }

    public func allLayers() throws -> [LayerRecord] {
        try db.read { db in try Row.fetchAll(db, sql: "SELECT * FROM layers ORDER BY created_at, chain_id").map(LayerRecord.init(row:)) }
    }

    /// The layers of an image, bottom first.
    public func imageLayers(_ id: Digest) throws -> [LayerRecord] {
        try db.read { db in
            try Row.fetchAll(db, sql: """
                SELECT l.* FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id
                WHERE il.image_id = ? ORDER BY il.position
                """, arguments: [id.string]).map(LayerRecord.init(row:))
        }
    }

    /// The directory holding a layer's files.
    public func layerPath(_ layer: LayerRecord) -> String { "\(rootPath)/layers/\(layer.cacheID)/diff" }

    func layerDirectory(_ layer: LayerRecord) throws -> Directory {
        switch layersDir.openDirectory(Array("\(layer.cacheID)/diff".utf8), resolve: [.noSymlinks]) {
        case .success(let d): return d
        case .failure(let e):
            throw StrataError(.notFound, "layer \(layer.chainID): directory layers/\(layer.cacheID)/diff is missing; run `strata check`", cause: e)
        }
    }

    /// Streams a layer's original uncompressed tar: rebuilt from the files and the journal, or
    /// the raw tar kept where the journal cannot be exact. Returns its digest; callers compare it
    /// with the diffID (a mismatch means the layer's files were changed on disk).
    @discardableResult
    public func streamLayerTar(_ layer: LayerRecord, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> DiffID {
        let hasher = BackgroundDigester()
        defer { _ = hasher.finalize() }
        let label = "layer \(layer.chainID)"
        if layer.journal == .raw {
            let dir = try layersDir.openDirectory(Array(layer.cacheID.utf8), resolve: [.noSymlinks]).get()
            let f = try dir.openFile(Store.rawTarName, flags: O_RDONLY)
            let src = FileRangeSource(handle: f, offset: 0, length: Int64(try f.stat().st_size), label: label + " layer.tar")
            while true {
                let c = try src.nextChunk()
                if c.isEmpty { break }
                hasher.update(c)
                try sink(c)
            }
        } else {
            let dir = try layersDir.openDirectory(Array(layer.cacheID.utf8), resolve: [.noSymlinks]).get()
            let journal = try dir.openFile(Store.journalName, flags: O_RDONLY)
            try LayerRebuild.run(root: try layerDirectory(layer), journal: journal, label: label) { c in
                hasher.update(c)
                try sink(c)
            }
        }
        return DiffID(hasher.finalize())
    }
}
