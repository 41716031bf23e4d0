import FoundationEssentials
import GRDB
import StrataCore
import StrataSystem
import Synchronization

/// The store's metadata in SQLite: every query the store makes is in this file and
/// MetadataTables.swift, behind typed records; the tables themselves are in `Schema`. Reads and writes run in transactions
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
            if let conn = db.sqliteConnection { keepSQLiteWAL(conn) }
        }
        do {
            pool = try DatabaseQueue(path: path, configuration: config)
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
        let written = pool
        Metadata.written.withLock { $0[ObjectIdentifier(written)] = written }
        return result
    }

    /// The databases this process wrote to since their last checkpoint.
    private static let written = Mutex<[ObjectIdentifier: DatabaseQueue]>([:])

    /// Copies what the WAL holds into strata.db as far as no reader needs the old pages
    /// (SQLite's passive checkpoint: it never waits), for every database this process wrote
    /// to. Called once as a command ends (one sync, not one per transaction), and as a store
    /// is let go of (`checkpointIfWritten`): so strata.db alone holds everything whenever no
    /// command runs.
    package static func checkpointAfterWrites() {
        let dirty = written.withLock { w in let d = w; w.removeAll(); return d }
        for pool in dirty.values { checkpoint(pool) }
    }

    /// The same for this database alone, if this process wrote to it since its last checkpoint.
    func checkpointIfWritten() {
        if Metadata.written.withLock({ $0.removeValue(forKey: ObjectIdentifier(pool)) }) != nil { Metadata.checkpoint(pool) }
    }

    private static func checkpoint(_ pool: DatabaseQueue) {
        _ = try? pool.writeWithoutTransaction { try $0.checkpoint(.passive) }
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
    /// (Internal, not private: the queries are split over Metadata*.swift, and only there.)
    let db: Database
    let mark: ChangeMark

    init(db: Database, mark: ChangeMark = ChangeMark()) { self.db = db; self.mark = mark }

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
        try db.execute(sql: "DELETE FROM repo_digests WHERE image_id = ?", arguments: [id])
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

    // MARK: repository digests

    /// Records that `repository` (registry/path) knows image `id` by `digest`.
    package func setRepoDigest(_ id: String, repository: String, digest: String) throws {
        mark.changed = true
        try db.execute(sql: "INSERT OR REPLACE INTO repo_digests (image_id, repository, digest) VALUES (?, ?, ?)",
                       arguments: [id, repository, digest])
    }

    /// The (repository, digest) pairs of image `id`, by repository.
    package func repoDigests(ofImage id: String) throws -> [(repository: String, digest: String)] {
        try Row.fetchAll(db, sql: "SELECT repository, digest FROM repo_digests WHERE image_id = ? ORDER BY repository",
                         arguments: [id]).map { ($0["repository"], $0["digest"]) }
    }

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

}
