import Foundation
import GRDB
import StrataCore

extension Store {
    /// `strata inspect IMAGE`: the store's facts and the config as stored, as JSON bytes.
    public func inspectImage(_ id: Digest) throws -> [UInt8] {
        let config = try JSONSerialization.jsonObject(with: Data(try blob(id)))
        let row = try db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM images WHERE id = ?", arguments: [id.string]) }
        guard let row else { throw StrataError(.notFound, "no image \(id)") }
        let tags = try db.read { db in try String.fetchAll(db, sql: "SELECT name FROM tags WHERE image_id = ? ORDER BY name", arguments: [id.string]) }
        let layers = try imageLayers(id).map { l -> [String: Any] in
            ["chainID": l.chainID.description, "diffID": l.diffID.description, "size": l.size, "journal": l.journal.rawValue]
        }
        let doc: [String: Any] = [
            "id": id.string, "tags": tags, "size": row["size"] as Int64,
            "created": (row["created"] as String?) ?? NSNull(), "os": (row["os"] as String?) ?? NSNull(),
            "architecture": (row["architecture"] as String?) ?? NSNull(),
            "manifestDigest": (row["manifest_digest"] as String?) ?? NSNull(),
            "loadedAt": row["loaded_at"] as String, "layers": layers, "config": config,
        ]
        return Array(try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]))
    }

    /// `strata inspect LAYER`, as JSON bytes.
    public func inspectLayer(_ l: LayerRecord) throws -> [UInt8] {
        let (images, children) = try db.read { db in
            (try String.fetchAll(db, sql: "SELECT DISTINCT image_id FROM image_layers WHERE chain_id = ? ORDER BY image_id", arguments: [l.chainID.description]),
             try String.fetchAll(db, sql: "SELECT chain_id FROM layers WHERE parent = ? ORDER BY chain_id", arguments: [l.chainID.description]))
        }
        let doc: [String: Any] = [
            "chainID": l.chainID.description, "diffID": l.diffID.description,
            "parent": l.parent?.description ?? NSNull(), "children": children, "images": images,
            "cacheID": l.cacheID, "path": layerPath(l), "size": l.size, "tarSize": l.tarSize,
            "blobDigest": l.blobDigest ?? NSNull(), "compression": l.compression ?? NSNull(),
            "journal": l.journal.rawValue, "journalNote": l.journalNote ?? NSNull(), "opaqueRoot": l.opaqueRoot,
            "createdAt": l.createdAt,
        ]
        return Array(try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]))
    }
}
