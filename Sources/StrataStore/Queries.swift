import Foundation
import GRDB
import StrataCore
import StrataFormats

/// An image as `strata images --json` shows it (a documented contract: see README).
public struct ImageSummary: Codable, Sendable {
    public var id: String
    public var tags: [String]
    /// Bottom layer first.
    public var diffIDs: [String]
    public var size: Int64
    // Absent values are written as `null`, not left out: the keys are a contract.
    @NullCoded public var created: String?
    @NullCoded public var os: String?
    @NullCoded public var architecture: String?
}

/// A layer as `strata layers --json` shows it (a documented contract: see README).
public struct LayerSummary: Codable, Sendable {
    public var chainID: String
    public var diffID: String
    /// `null` for a bottom layer (the keys are a contract).
    @NullCoded public var parent: String?
    public var size: Int64
    /// IDs of the images whose chain includes this layer.
    public var images: [String]
    public var journal: String
    public var opaqueRoot: Bool
}

extension Store {
    public func images() throws -> [ImageSummary] {
        try db.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT id, size, created, os, architecture FROM images ORDER BY loaded_at DESC, id")
            return try rows.map { row in
                let id: String = row["id"]
                let tags = try String.fetchAll(db, sql: "SELECT name FROM tags WHERE image_id = ? ORDER BY name", arguments: [id])
                let diffIDs = try String.fetchAll(db, sql: """
                    SELECT l.diff_id FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id
                    WHERE il.image_id = ? ORDER BY il.position
                    """, arguments: [id])
                return ImageSummary(id: id, tags: tags, diffIDs: diffIDs, size: row["size"], created: row["created"],
                                    os: row["os"], architecture: row["architecture"])
            }
        }
    }

    public func layers() throws -> [LayerSummary] {
        try db.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT chain_id, diff_id, parent, size, journal, opaque_root FROM layers ORDER BY created_at, chain_id")
            return try rows.map { row in
                let chainID: String = row["chain_id"]
                let images = try String.fetchAll(db, sql: "SELECT DISTINCT image_id FROM image_layers WHERE chain_id = ? ORDER BY image_id",
                                                 arguments: [chainID])
                return LayerSummary(chainID: chainID, diffID: row["diff_id"], parent: row["parent"], size: row["size"],
                                    images: images, journal: row["journal"], opaqueRoot: row["opaque_root"])
            }
        }
    }

    /// Resolves what a user typed to an image ID: a tag (`name` means `name:latest`), a full ID
    /// (`sha256:HEX` or `HEX`), or a unique prefix of an ID, as in Docker.
    public func resolveImage(_ ref: String) throws -> Digest {
        try db.read { db in
            if let normalized = try? Reference.normalize(ref),
               let id = try String.fetchOne(db, sql: "SELECT image_id FROM tags WHERE name = ?", arguments: [normalized]) {
                return try Digest(parsing: id)
            }
            var hex = ref
            if hex.hasPrefix("sha256:") { hex = String(hex.dropFirst(7)) }
            guard !hex.isEmpty, hex.count <= 64, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw StrataError(.notFound, "no image \"\(ref)\" in the store; `strata images` lists them")
            }
            let ids = try String.fetchAll(db, sql: "SELECT id FROM images WHERE id LIKE ? LIMIT 2", arguments: ["sha256:\(hex)%"])
            switch ids.count {
            case 0: throw StrataError(.notFound, "no image \"\(ref)\" in the store; `strata images` lists them")
            case 1: return try Digest(parsing: ids[0])
            default: throw StrataError(.invalidArgument, "\"\(ref)\" matches several images; give more of the ID")
            }
        }
    }
}
