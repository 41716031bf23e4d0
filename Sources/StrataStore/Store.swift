#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GRDB
import Logging
import StrataCore
import StrataSystem

/// The store directory (DESIGN.md "Store on disk"):
///
///     ROOT/strata.db             SQLite (WAL): layers, images, image_layers, tags
///     ROOT/lock                  flock: shared by every running command, exclusive for the start-up sweep
///     ROOT/layers/CACHEID/diff   unpacked layer (an overlay lower dir)
///     ROOT/layers/CACHEID/tar-split.zst   journal to rebuild the layer tar byte-exact
///     ROOT/layers/CACHEID/layer.tar       the raw tar, only where the journal cannot be exact
///     ROOT/blobs/sha256/HEX      configs and manifests, as the verified bytes
///     ROOT/tmp/                  staging on the same filesystem; emptied by the sweep
///                                and per-layer leases (byte-range locks, `LayerLocks`)
///
/// Layers are identified by chainID and stored under a random cache ID (STYLE.md example 8):
/// content identity apart from storage identity.
public final class Store: @unchecked Sendable {
    public let rootPath: String
    let root: Directory
    let layersDir: Directory
    let blobsDir: Directory
    let tmpDir: Directory
    let db: DatabasePool
    let logger: Logger
    private let lock: FDHandle

    public static let defaultRoot = "/var/lib/strata"

    public init(root rootPath: String, logger: Logger = Logger(label: "strata")) throws {
        self.rootPath = rootPath
        self.logger = logger
        for sub in ["", "/layers", "/blobs", "/blobs/sha256", "/tmp"] {
            let p = rootPath + sub
            if Glibc.mkdir(p, 0o700) != 0 && errno != EEXIST {
                throw StrataError(.system, "cannot create store directory \(p)", cause: Errno.current)
            }
        }
        root = try Directory.open(rootPath)
        layersDir = try Directory.open(rootPath + "/layers")
        blobsDir = try Directory.open(rootPath + "/blobs/sha256")
        tmpDir = try Directory.open(rootPath + "/tmp")
        lock = try root.openFile(Array("lock".utf8), flags: O_RDWR | O_CREAT, mode: 0o600)

        var config = Configuration()
        // Several strata processes share one store: wait for each other's write transactions.
        config.busyMode = .timeout(60)
        config.label = "strata"
        do {
            db = try DatabasePool(path: rootPath + "/strata.db", configuration: config)
            try Schema.migrator.migrate(db)
        } catch let e as DatabaseError {
            throw StrataError(.system, "cannot open the store database \(rootPath)/strata.db", cause: e)
        }

        // No other strata process runs on this store when the exclusive lock is free: what
        // is in tmp/ and every layer directory the database does not know were left by a killed
        // run. Otherwise leave them: they may be another process's work in progress.
        if try lock.flock(LOCK_EX, nonBlocking: true) {
            try sweep()
        }
        try lock.flock(LOCK_SH)
    }

    /// Takes the store lock exclusively if no other strata process holds it.
    func lockExclusiveNow() throws -> Bool { try lock.flock(LOCK_EX, nonBlocking: true) }
    /// Back to the shared lock every running command holds.
    func relock() throws { try lock.flock(LOCK_SH) }

    /// Removes what a killed run left: staging in tmp/ and layer directories without a row.
    func sweep() throws {
        for name in try tmpDir.entries() {
            logger.debug("sweep: removing tmp/\(name.display)")
            try tmpDir.removeTree(name)
        }
        let known = Set(try db.read { db in try String.fetchAll(db, sql: "SELECT cache_id FROM layers") })
        for name in try layersDir.entries() where !known.contains(name.display) {
            logger.info("sweep: removing unrecorded layer directory layers/\(name.display)")
            try layersDir.removeTree(name)
        }
    }

    /// A new random ID for a layer directory or staging area.
    static func randomID() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(format: "%016llx", g.next() as UInt64) }.joined()
    }

    /// Writes a verified JSON document (config, manifest) to blobs/ under its digest.
    /// Idempotent: an existing blob of that digest is left alone.
    func putBlob(_ bytes: [UInt8], digest: Digest) throws {
        let name = Array(digest.hex.utf8)
        if try blobsDir.lstat(name) != nil { return }
        let tmpName = Array("blob-\(Store.randomID())".utf8)
        let f = try tmpDir.openFile(tmpName, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        try f.writeAll(bytes)
        try tmpDir.rename(tmpName, to: name, in: blobsDir)
    }

    /// The bytes of a blob kept in the store, checked against their digest.
    public func blob(_ digest: Digest) throws -> [UInt8] {
        let bytes: [UInt8]
        do {
            bytes = try blobsDir.readFile(Array(digest.hex.utf8), limit: 64 << 20)
        } catch let e as StrataError where (e.cause as? Errno) == .ENOENT {
            throw StrataError(.notFound, "blob \(digest) is missing from the store at \(rootPath); run `strata check`")
        }
        guard Digest.of(bytes) == digest else {
            throw StrataError(.digestMismatch, "blob \(digest) in the store at \(rootPath) is corrupt; run `strata check`")
        }
        return bytes
    }
}
