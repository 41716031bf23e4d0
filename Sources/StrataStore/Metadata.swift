import CStrata
import FoundationEssentials
import GRDB
import StrataCore
import StrataSystem
import Synchronization

/// The store's metadata in SQLite: every query the store makes is in this file, behind typed
/// records; the tables themselves are in `Schema`. Reads and writes run in transactions
/// (`read`, `write`); a GRDB error leaves as a `StrataError` that names the database, never SQL.
package struct Metadata: Sendable {
    private let pool: DatabaseQueue
    let path: String
    /// The store directory (images.json and ROOT/lock live there).
    let storeRoot: String

    /// Opens (creating and migrating) the database at `path`. The caller serializes opening
    /// between processes (two would both switch a new file to WAL and migrate it).
    init(path: String, storeRoot: String) throws {
        self.path = path
        self.storeRoot = storeRoot
        var config = Configuration()
        // Several strata processes share one store: wait for each other's write transactions.
        config.busyMode = .timeout(60)
        config.label = "strata"
        // WAL with synchronous=NORMAL: a commit survives the process dying (the crash model),
        // without an fsync per transaction; layers are synced by syncfs before they are recorded.
        config.prepareDatabase { db in
            // WAL (readers never wait for the writer, across processes), set here rather than
            // by GRDB's pool, whose set-up costs more than the rest of a short command's opening.
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // The WAL stays between commands (checkpoints happen as it grows, during writes).
            if let conn = db.sqliteConnection { _ = strata_sqlite_keep_wal(UnsafeMutableRawPointer(conn)) }
        }
        do {
            pool = try DatabaseQueue(path: path, configuration: config)
            let opened = pool
            Metadata.opened.withLock { $0.append(opened) }
            // One read transaction for both checks; opening an up-to-date store writes nothing.
            let upToDate = try pool.read { db in
                try Schema.checkNotNewer(db, root: storeRoot)
                return try Schema.migrator.hasCompletedMigrations(db)
            }
            if !upToDate {
                try Schema.migrator.migrate(pool)
            }
        } catch let e as DatabaseError {
            throw StrataError(.system, "cannot open the store database \(path)", cause: e)
        }
    }

    /// Whether SQLite cannot read the file (not a database, or corrupt).
    static func isUnreadable(_ e: StrataError) -> Bool {
        guard let cause = e.cause as? DatabaseError else { return false }
        return cause.resultCode == .SQLITE_CORRUPT || cause.resultCode == .SQLITE_NOTADB
    }

    /// The cause of an unreadable database found by strata itself.
    static let unreadable = DatabaseError(resultCode: .SQLITE_CORRUPT, message: "database disk image is malformed")

    /// SQLite's quick check of every page (for `check --repair`): throws when it finds damage.
    func quickCheck() throws {
        let verdict: [String]
        do { verdict = try pool.read { try String.fetchAll($0, sql: "PRAGMA quick_check") } } catch let e as DatabaseError {
            throw StrataError(.system, "cannot read the store database \(path)", cause: e)
        }
        guard verdict == ["ok"] else {
            throw StrataError(.system, "the store database \(path) is damaged: \(verdict.prefix(3).joined(separator: "; "))",
                              cause: DatabaseError(resultCode: .SQLITE_CORRUPT, message: verdict.first ?? "damaged"))
        }
    }

    /// SQLite's own words for why opening failed, without the statement.
    static func sqliteMessage(_ e: StrataError) -> String {
        guard let cause = e.cause as? DatabaseError else { return e.message }
        return cause.message ?? "SQLite error \(cause.resultCode.rawValue)"
    }

    /// Runs `body` in a read transaction: one consistent snapshot.
    package func read<T>(_ body: (MetadataTransaction) throws -> T) throws -> T {
        do { return try pool.read { try body(MetadataTransaction(db: $0)) } } catch let e as DatabaseError {
            throw failure("read", e)
        }
    }

    /// Runs `body` in a write transaction: all of it is recorded, or nothing. A transaction
    /// that changes layers, images, tags or containers raises the store's generation; once it
    /// is committed, images.json is brought up to it. The WAL is copied into strata.db as the
    /// command ends (`checkpointAfterWrites`).
    package func write<T>(_ body: (MetadataTransaction) throws -> T) throws -> T {
        let mark = ChangeMark()
        let result: T
        do {
            result = try pool.write { db in
                let r = try body(MetadataTransaction(db: db, mark: mark))
                if mark.changed {
                    try db.execute(sql: """
                        INSERT INTO meta (key, value) VALUES ('generation', '1')
                        ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1
                        """)
                }
                return r
            }
        } catch let e as DatabaseError {
            throw failure("write", e)
        }
        // Committed already: a file left behind is brought up to date by the next command.
        if mark.changed { try? syncImagesFile() }
        Metadata.written.withLock { $0.insert(ObjectIdentifier(pool)) }
        return result
    }

    /// The databases this process opened, and those it wrote to.
    private static let opened = Mutex<[DatabaseQueue]>([])
    private static let written = Mutex<Set<ObjectIdentifier>>([])

    /// Copies what the WAL holds into strata.db as far as no reader needs the old pages
    /// (SQLite's passive checkpoint: it never waits), for every database this process wrote
    /// to. Called once as a command ends (one sync, not one per transaction): so strata.db
    /// alone holds everything whenever no command runs.
    package static func checkpointAfterWrites() {
        let dirty = written.withLock { w in let d = w; w.removeAll(); return d }
        guard !dirty.isEmpty else { return }
        for pool in opened.withLock({ $0 }) where dirty.contains(ObjectIdentifier(pool)) {
            _ = try? pool.writeWithoutTransaction { try $0.checkpoint(.passive) }
        }
    }

    /// Writes images.json from the database unless the file is as new or newer. Serialized by
    /// byte 2 of ROOT/lock; a newer file is never overwritten (it is the evidence that the
    /// database lost something).
    func syncImagesFile() throws {
        let root = try Directory.open(storeRoot)
        let lock = try root.openFile(Array("lock".utf8), flags: [.readWrite], mode: 0o600)
        try lock.lockRange(2, exclusive: true, wait: true)
        defer { lock.unlockRange(2) }
        let doc = try read { try $0.imagesDocument() }
        if let current = try? IndexFiles.generation(in: root), current >= doc.generation { return }
        try root.writeFileAtomically(IndexFiles.imagesName, try IndexFiles.encode(doc))
    }

    /// SQLite's own message, never the statement (which `DatabaseError`'s description carries).
    private func failure(_ verb: String, _ e: DatabaseError) -> StrataError {
        // A damaged file keeps its SQLite code (without the statement): `check --repair` acts on it.
        let damaged = e.resultCode == .SQLITE_CORRUPT || e.resultCode == .SQLITE_NOTADB
        return StrataError(.system, "cannot \(verb) the store database \(path): \(e.message ?? "SQLite error \(e.resultCode.rawValue)"); run `strata check`",
                           cause: damaged ? DatabaseError(resultCode: e.resultCode, message: e.message) : nil)
    }
}

/// Whether a write transaction changed what images.json and the generation describe.
final class ChangeMark { var changed = false }

/// The queries, typed. Valid only inside the `read`/`write` closure that handed it out.
package struct MetadataTransaction {
    fileprivate let db: Database
    fileprivate let mark: ChangeMark

    fileprivate init(db: Database, mark: ChangeMark = ChangeMark()) { self.db = db; self.mark = mark }

    // MARK: layers

    /// The layer recorded under `chainID`.
    package func layer(_ chainID: ChainID) throws -> LayerRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM layers WHERE chain_id = ?", arguments: [chainID.description]).map(LayerRecord.init(row:))
    }

    /// Every layer, oldest first.
    package func layers() throws -> [LayerRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM layers ORDER BY created_at, chain_id").map(LayerRecord.init(row:))
    }

    /// At most `limit` layers whose chainID starts with `sha256:HEX`.
    package func layers(chainIDPrefix hex: String, limit: Int) throws -> [LayerRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM layers WHERE chain_id LIKE ? LIMIT ?", arguments: ["sha256:\(hex)%", limit])
            .map(LayerRecord.init(row:))
    }

    /// The layers of an image, bottom first.
    package func layers(ofImage id: Digest) throws -> [LayerRecord] {
        try Row.fetchAll(db, sql: """
            SELECT l.* FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id
            WHERE il.image_id = ? ORDER BY il.position
            """, arguments: [id.string]).map(LayerRecord.init(row:))
    }

    /// The layers of an image as a driver mounts them, bottom first: only what that takes, for
    /// `mount` and `run` of deep images.
    package func mountLayers(ofImage id: Digest) throws -> [MountLayerRecord] {
        // A cursor (one row reused) and columns by position: a deep chain is hundreds of rows per mount.
        let rows = try Row.fetchCursor(db, sql: """
            SELECT l.chain_id, l.cache_id, l.opaque_root, l.link_id FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id
            WHERE il.image_id = ? ORDER BY il.position
            """, arguments: [id.string])
        var out: [MountLayerRecord] = []
        while let row = try rows.next() {
            out.append(MountLayerRecord(chainID: try ChainID(parsing: row[0]), cacheID: row[1], opaqueRoot: row[2], linkID: row[3]))
        }
        return out
    }

    /// The chainIDs an image lists, bottom first (whether or not the layers are recorded).
    package func chain(ofImage id: Digest) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT chain_id FROM image_layers WHERE image_id = ? ORDER BY position", arguments: [id.string])
    }

    /// Layers no image uses.
    package func unreferencedLayers() throws -> [LayerRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM layers WHERE chain_id NOT IN (SELECT chain_id FROM image_layers)")
            .map(LayerRecord.init(row:))
    }

    /// The chainIDs of the layers whose parent is `chainID`.
    package func children(of chainID: ChainID) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT chain_id FROM layers WHERE parent = ? ORDER BY chain_id", arguments: [chainID.description])
    }

    /// The cache IDs (directory names under layers/) of every recorded layer.
    package func cacheIDs() throws -> Set<String> {
        Set(try String.fetchAll(db, sql: "SELECT cache_id FROM layers UNION ALL SELECT cache_id FROM flattened_layers"))
    }

    /// Records a layer; a layer already recorded (by another process, first) is kept as it is.
    package func insertLayer(_ l: LayerRecord) throws {
        mark.changed = true
        try db.execute(sql: """
            INSERT OR IGNORE INTO layers (chain_id, diff_id, parent, cache_id, size, tar_size, blob_digest,
                compression, opaque_root, journal, journal_note, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [l.chainID.description, l.diffID.description, l.parent?.description, l.cacheID, l.size, l.tarSize,
                             l.blobDigest, l.compression, l.opaqueRoot, l.journal.rawValue, l.journalNote,
                             Timestamp.string(l.createdAt)])
    }

    /// Points a recorded layer at new files (its old directory was lost); its link is made anew.
    package func replaceLayerFiles(_ l: LayerRecord) throws {
        mark.changed = true
        try db.execute(sql: """
            UPDATE layers SET cache_id = ?, size = ?, tar_size = ?, blob_digest = ?, compression = ?, opaque_root = ?,
                journal = ?, journal_note = ?, link_id = NULL WHERE chain_id = ?
            """, arguments: [l.cacheID, l.size, l.tarSize, l.blobDigest, l.compression, l.opaqueRoot, l.journal.rawValue,
                             l.journalNote, l.chainID.description])
    }

    /// Deletes a layer's row unless another layer's row names it as parent; whether it went.
    package func deleteLayerIfLeaf(_ chainID: ChainID) throws -> Bool {
        mark.changed = true
        try db.execute(sql: "DELETE FROM layers WHERE chain_id = ? AND NOT EXISTS (SELECT 1 FROM layers c WHERE c.parent = ?)",
                       arguments: [chainID.description, chainID.description])
        return db.changesCount > 0
    }

    /// Gives a layer the next free link ID if it has none; returns its link ID.
    package func assignLinkID(_ chainID: ChainID) throws -> Int64? {
        try db.execute(sql: "UPDATE layers SET link_id = (SELECT COALESCE(MAX(link_id), 0) + 1 FROM layers) WHERE chain_id = ? AND link_id IS NULL",
                       arguments: [chainID.description])
        return try Int64.fetchOne(db, sql: "SELECT link_id FROM layers WHERE chain_id = ?", arguments: [chainID.description])
    }

    // MARK: images

    /// The image recorded under `id`.
    package func image(_ id: Digest) throws -> ImageRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM images WHERE id = ?", arguments: [id.string]).map(ImageRecord.init(row:))
    }

    /// Every image, newest first.
    package func images() throws -> [ImageRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM images ORDER BY loaded_at DESC, id").map(ImageRecord.init(row:))
    }

    /// At most `limit` image IDs that start with `sha256:HEX`.
    package func imageIDs(prefix hex: String, limit: Int) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT id FROM images WHERE id LIKE ? LIMIT ?", arguments: ["sha256:\(hex)%", limit])
    }

    /// The IDs of the images whose chain includes a layer.
    package func images(usingLayer chainID: String) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT DISTINCT image_id FROM image_layers WHERE chain_id = ? ORDER BY image_id", arguments: [chainID])
    }

    /// Every (chainID, image ID, first tag) of the images' layer lists.
    package func imageLayerUses() throws -> [(chainID: String, imageID: String, tag: String?)] {
        try Row.fetchAll(db, sql: """
            SELECT il.chain_id, il.image_id, (SELECT MIN(name) FROM tags t WHERE t.image_id = il.image_id) AS tag
            FROM image_layers il
            """).map { ($0["chain_id"], $0["image_id"], $0["tag"]) }
    }

    /// The digests blobs/ must keep: every image's config and recorded manifest.
    package func referencedBlobs() throws -> Set<String> {
        var keep = Set(try String.fetchAll(db, sql: "SELECT id FROM images"))
        keep.formUnion(try String.fetchAll(db, sql: "SELECT manifest_digest FROM images WHERE manifest_digest IS NOT NULL"))
        return keep
    }

    /// Records an image and its layer list; an image already there keeps its row (and gains a
    /// manifest digest if it had none).
    package func insertImage(_ image: ImageRecord, chain: [ChainID]) throws {
        mark.changed = true
        try db.execute(sql: """
            INSERT INTO images (id, top_layer, manifest_digest, created, os, architecture, size, loaded_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET manifest_digest = COALESCE(images.manifest_digest, excluded.manifest_digest)
            """, arguments: [image.id.string, image.topLayer?.description, image.manifestDigest?.string, image.created,
                             image.os, image.architecture, image.size, Timestamp.string(image.loadedAt)])
        for (i, c) in chain.enumerated() {
            try db.execute(sql: "INSERT OR IGNORE INTO image_layers (image_id, position, chain_id) VALUES (?, ?, ?)",
                           arguments: [image.id.string, i, c.description])
        }
    }

    /// Deletes an image with its tags and layer list (its layers stay).
    package func deleteImage(_ id: String) throws {
        mark.changed = true
        try db.execute(sql: "DELETE FROM tags WHERE image_id = ?", arguments: [id])
        try db.execute(sql: "DELETE FROM image_layers WHERE image_id = ?", arguments: [id])
        try db.execute(sql: "DELETE FROM images WHERE id = ?", arguments: [id])
    }

    /// Forgets the manifest digest of image `id`, or of every image whose manifest is `digest`.
    package func forgetManifest(ofImage id: String? = nil, digest: String? = nil) throws {
        mark.changed = true
        if let id { try db.execute(sql: "UPDATE images SET manifest_digest = NULL WHERE id = ?", arguments: [id]) }
        if let digest { try db.execute(sql: "UPDATE images SET manifest_digest = NULL WHERE manifest_digest = ?", arguments: [digest]) }
    }

    /// How many images are recorded.
    package func imageCount() throws -> Int { try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM images") ?? 0 }

    // MARK: tags

    /// The tags that name image `id`, sorted.
    package func tags(ofImage id: String) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT name FROM tags WHERE image_id = ? ORDER BY name", arguments: [id])
    }

    /// Every (tag, image ID).
    package func allTags() throws -> [(name: String, imageID: String)] {
        try Row.fetchAll(db, sql: "SELECT name, image_id FROM tags").map { ($0["name"], $0["image_id"]) }
    }

    /// The image a (normalized) tag names.
    package func imageID(tag name: String) throws -> String? {
        try String.fetchOne(db, sql: "SELECT image_id FROM tags WHERE name = ?", arguments: [name])
    }

    /// Points tag `name` at image `id` (moving it if it named another).
    package func setTag(_ name: String, imageID id: String) throws {
        mark.changed = true
        try db.execute(sql: "INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)", arguments: [name, id])
    }

    /// Removes tag `name`.
    package func removeTag(_ name: String) throws {
        mark.changed = true
        try db.execute(sql: "DELETE FROM tags WHERE name = ?", arguments: [name])
    }

    /// Removes every tag of image `id`.
    package func removeTags(ofImage id: String) throws {
        mark.changed = true
        try db.execute(sql: "DELETE FROM tags WHERE image_id = ?", arguments: [id])
    }

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
            return IndexFiles.Images.Image(id: id, manifest: r["manifest_digest"], loadedAt: r["loaded_at"],
                                           tags: (tagsByImage[id] ?? []).sorted())
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
        for table in ["containers", "tags", "image_layers", "images", "layer_blobs", "blob_locations", "flattened_layers"] {
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
