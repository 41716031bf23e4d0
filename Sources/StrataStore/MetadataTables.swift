import FoundationEssentials
import GRDB
import StrataCore
import StrataSystem

/// The queries of registry blobs, settings, flattened layers, containers and the index files
/// (the rest of `MetadataTransaction` is in Metadata.swift; no SQL lives anywhere else).
extension MetadataTransaction {
    // MARK: registry blobs

    /// The compressed forms of a layer known to exist somewhere.
    package func layerBlobs(_ chainID: ChainID) throws -> [LayerBlobRecord] {
        try Row.fetchAll(db, sql: "SELECT digest, size, media_type FROM layer_blobs WHERE chain_id = ? ORDER BY digest",
                         arguments: [chainID.description]).map { r in
            LayerBlobRecord(digest: try Digest(parsing: r["digest"]), size: r["size"], mediaType: r["media_type"])
        }
    }

    /// Records a compressed form of a layer, and that `registry/repository` has it.
    package func recordLayerBlob(_ chainID: ChainID, _ blob: LayerBlobRecord, registry: String, repository: String) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO layer_blobs (chain_id, digest, size, media_type) VALUES (?, ?, ?, ?)",
                       arguments: [chainID.description, blob.digest.string, blob.size, blob.mediaType])
        try db.execute(sql: "INSERT OR IGNORE INTO blob_locations (digest, registry, repository) VALUES (?, ?, ?)",
                       arguments: [blob.digest.string, registry, repository])
    }

    /// The repositories of `registry` where `digest` was seen.
    package func repositories(having digest: Digest, registry: String) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT repository FROM blob_locations WHERE digest = ? AND registry = ? ORDER BY repository",
                            arguments: [digest.string, registry])
    }

    /// Every (registry, repository) where `digest` was seen.
    package func locations(of digest: Digest) throws -> [(registry: String, repository: String)] {
        try Row.fetchAll(db, sql: "SELECT registry, repository FROM blob_locations WHERE digest = ? ORDER BY registry, repository",
                         arguments: [digest.string]).map { ($0["registry"], $0["repository"]) }
    }

    // MARK: store settings

    /// A store setting (`driver`).
    package func setting(_ key: String) throws -> String? {
        try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key])
    }

    /// Records a setting unless one is recorded already.
    package func settle(_ key: String, _ value: String) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", arguments: [key, value])
    }

    // MARK: flattened layers

    /// The flattened layer whose highest layer is `top`.
    package func flattened(_ top: ChainID) throws -> FlattenedRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM flattened_layers WHERE top_layer = ?", arguments: [top.description]).map(FlattenedRecord.init(row:))
    }

    /// Every flattened layer.
    package func flattenedLayers() throws -> [FlattenedRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM flattened_layers ORDER BY created_at").map(FlattenedRecord.init(row:))
    }

    /// Records a flattened layer with the next free link ID, unless one of that top layer is
    /// recorded already; returns the one recorded (the first wins).
    package func insertFlattened(top: ChainID, cacheID: String, layerCount: Int, createdAt: Date) throws -> FlattenedRecord? {
        try db.execute(sql: """
            INSERT OR IGNORE INTO flattened_layers (top_layer, cache_id, layer_count, link_id, created_at)
            VALUES (?, ?, ?, (SELECT COALESCE(MAX(link_id), 0) + 1 FROM flattened_layers), ?)
            """, arguments: [top.description, cacheID, layerCount, Timestamp.string(createdAt)])
        return try flattened(top)
    }

    /// Whether a container's image has `top` in its chain (and may so mount that flattened layer).
    package func flattenedInUse(_ top: ChainID) throws -> Bool {
        try Bool.fetchOne(db, sql: """
            SELECT 1 FROM containers c JOIN image_layers il ON il.image_id = c.image_id WHERE il.chain_id = ? LIMIT 1
            """, arguments: [top.description]) == true
    }

    /// Removes a flattened layer's row.
    package func deleteFlattened(_ top: ChainID) throws {
        try db.execute(sql: "DELETE FROM flattened_layers WHERE top_layer = ?", arguments: [top.description])
    }

    // MARK: containers

    /// Every container, newest first.
    package func containers() throws -> [ContainerRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM containers ORDER BY created_at DESC, id").map(ContainerRecord.init(row:))
    }

    /// Containers whose name or ID is `ref`, or (hex, 3 characters or more) whose ID starts with it; at most two.
    package func containers(matching ref: String) throws -> [ContainerRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM containers WHERE name = ? OR id = ? OR id LIKE ? LIMIT 2",
                         arguments: [ref, ref, ref.count >= 3 && ref.allSatisfy(\.isHexDigit) ? ref + "%" : "-"])
            .map(ContainerRecord.init(row:))
    }

    /// The containers made from image `id`.
    package func containers(ofImage id: String) throws -> [ContainerRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM containers WHERE image_id = ? ORDER BY name", arguments: [id]).map(ContainerRecord.init(row:))
    }

    /// Whether a container has this name.
    package func containerExists(name: String) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM containers WHERE name = ?", arguments: [name]) == true
    }

    /// How many containers are recorded.
    package func containerCount() throws -> Int { try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM containers") ?? 0 }

    /// Records a new container; its name must be free.
    package func insertContainer(_ c: ContainerRecord) throws {
        mark.changed = true
        do {
            try db.execute(sql: "INSERT INTO containers (id, name, image_id, driver, created_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [c.id, c.name, c.image.string, c.driver, Timestamp.string(c.createdAt)])
        } catch let e as DatabaseError where e.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw StrataError(.alreadyExists, "a container named \"\(c.name)\" exists")
        }
    }

    /// Gives a container another name; the new one must be free.
    package func renameContainer(_ id: String, to name: String) throws {
        mark.changed = true
        do {
            try db.execute(sql: "UPDATE containers SET name = ? WHERE id = ?", arguments: [name, id])
        } catch let e as DatabaseError where e.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw StrataError(.alreadyExists, "a container named \"\(name)\" exists")
        }
    }

    /// Removes a container's row.
    package func deleteContainer(_ id: String) throws {
        mark.changed = true
        try db.execute(sql: "DELETE FROM containers WHERE id = ?", arguments: [id])
    }

    /// Adds `delta` mounts to a container's count, or sets it to `count`.
    package func countMounts(_ id: String, delta: Int? = nil, count: Int? = nil) throws {
        if let delta { try db.execute(sql: "UPDATE containers SET mount_count = mount_count + ? WHERE id = ?", arguments: [delta, id]) }
        if let count { try db.execute(sql: "UPDATE containers SET mount_count = ? WHERE id = ?", arguments: [count, id]) }
    }

    /// Records the pid of a running container (nil when it is gone).
    package func setPid(_ id: String, _ pid: Int32?) throws {
        try db.execute(sql: "UPDATE containers SET pid = ? WHERE id = ?", arguments: [pid.map { Int($0) }, id])
    }

    // MARK: the index files

    /// Counts this transaction as a change (images.json is written after it).
    func markChanged() { mark.changed = true }

    /// The store's generation: raised by every change of layers, images, tags or containers.
    package func generation() throws -> Int64 {
        Int64(try setting("generation") ?? "0") ?? 0
    }

    /// What images.json holds for this state of the database.
    func imagesDocument() throws -> IndexFiles.Images {
        var tagsByImage: [String: [String]] = [:]
        for (name, id) in try allTags() { tagsByImage[id, default: []].append(name) }
        let images = try Row.fetchAll(db, sql: "SELECT id, manifest_digest, loaded_at FROM images ORDER BY loaded_at, id").map { r in
            let id: String = r["id"]
            let digests = try repoDigests(ofImage: id).map { "\($0.repository)@\($0.digest)" }
            return IndexFiles.Images.Image(id: id, manifest: r["manifest_digest"], loadedAt: r["loaded_at"],
                                           tags: (tagsByImage[id] ?? []).sorted(), repoDigests: digests.isEmpty ? nil : digests)
        }
        return IndexFiles.Images(generation: try generation(), driver: try setting("driver"), images: images)
    }

    /// Whether any layer, image or container is recorded.
    package func isEmpty() throws -> Bool {
        try Bool.fetchOne(db, sql: """
            SELECT NOT EXISTS (SELECT 1 FROM layers) AND NOT EXISTS (SELECT 1 FROM images) AND NOT EXISTS (SELECT 1 FROM containers)
            """) ?? true
    }

    /// Forgets every row (the first step of a rebuild from the files, in the same transaction).
    func clearForRebuild() throws {
        mark.changed = true
        for table in ["containers", "tags", "repo_digests", "image_layers", "images", "layer_blobs", "blob_locations", "flattened_layers"] {
            try db.execute(sql: "DELETE FROM \(table)")
        }
        // Children before parents: the parent column references the row.
        try db.execute(sql: "PRAGMA defer_foreign_keys = ON")
        try db.execute(sql: "DELETE FROM layers")
        try db.execute(sql: "DELETE FROM meta WHERE key = 'generation'")
    }

    /// Sets a setting, replacing what was there.
    func setSetting(_ key: String, _ value: String) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", arguments: [key, value])
    }

    /// Gives a layer the link ID its short link under ROOT/l already has.
    func setLinkID(_ chainID: ChainID, _ id: Int64) throws {
        try db.execute(sql: "UPDATE layers SET link_id = ? WHERE chain_id = ?", arguments: [id, chainID.description])
    }

    /// Records a flattened layer as it was (link ID included).
    func insertFlattened(_ f: FlattenedRecord) throws {
        try db.execute(sql: """
            INSERT OR IGNORE INTO flattened_layers (top_layer, cache_id, layer_count, link_id, created_at) VALUES (?, ?, ?, ?, ?)
            """, arguments: [f.topLayer.description, f.cacheID, f.layerCount, f.linkID, Timestamp.string(f.createdAt)])
    }
}
