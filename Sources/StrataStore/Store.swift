import FoundationEssentials
import Logging
import Synchronization
import StrataCore
import StrataDrivers
import StrataSystem

/// The store directory (docs/store-layout.md):
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
/// Layers are identified by chainID and stored under a random cache ID (docs/store-layout.md):
/// content identity apart from storage identity.
// @unchecked: `driverName` and `driver` are set once, in `init`, and only read afterwards;
// everything else is immutable or synchronised by SQLite and the file locks.
public final class Store: @unchecked Sendable {
    public let rootPath: String
    package let root: Directory
    package let layersDir: Directory
    package let blobsDir: Directory
    package let tmpDir: Directory
    /// The store's records (SQLite).
    package let metadata: Metadata
    package let logger: Logger
    private let lock: FDHandle
    /// Byte 1 of ROOT/lock, on an open file description of its own: shared while a command
    /// changes what is on disk apart from the database (`inflight`), exclusive while `check`
    /// takes its view of the store (`quiesced`).
    private let changeLock: FDHandle
    private let changeState = Mutex(ChangeState())
    private struct ChangeState { var shared = 0; var exclusive = false }
    static let changeByte: Int64 = 1
    /// The union driver this store uses ("overlay", "fuse-overlayfs" or "vfs"), recorded when it was created.
    public private(set) var driverName = "overlay"
    /// That driver, probed once (the kernel's mount API) when the store is opened.
    public private(set) var driver: any UnionDriver = VfsDriver()
    /// Why the database does not describe the store's files (lost, damaged, behind them), for
    /// a store opened `forRepair`; nil when it does. Any other opening refuses such a store.
    public package(set) var indexProblem: String?

    /// `/var/lib/strata`; rootless, `$XDG_DATA_HOME/strata` or `~/.local/share/strata`, as
    /// podman's (docs/rootless.md).
    public static var defaultRoot: String {
        guard UserNamespace.current.isRootless else { return "/var/lib/strata" }
        let env = ProcessInfo.processInfo.environment
        if let data = env["XDG_DATA_HOME"], data.hasPrefix("/") { return data + "/strata" }
        // HOME as the user's; in the namespace, the password entry of uid 0 is the host root's.
        if let home = env["HOME"], home.hasPrefix("/"), home != "/" { return home + "/.local/share/strata" }
        if let uid = UserNamespace.current.hostUser?.uid, let home = homeDirectory(ofHostUser: uid) {
            return home + "/.local/share/strata"
        }
        return "/nonexistent/.local/share/strata"
    }

    /// Opens (creating if needed) the store at `rootPath`. `driver` chooses the union driver of
    /// a new store (default: overlay if a scratch overlay mounts here, else vfs); for an existing
    /// store it must match the recorded one. `overlayShortLinks` mounts overlays in the form
    /// kernels without `lowerdir+` get (short links under ROOT/l), wherever it runs.
    ///
    /// A store whose database is missing, damaged or behind its files (docs/store-layout.md,
    /// "The database is an index") is refused with one line naming `strata check --repair`;
    /// `forRepair` opens it anyway (a database SQLite cannot read is moved to ROOT/broken/ and
    /// a new one started), with the reason in `indexProblem`, for `rebuildIndex`.
    public init(root requestedRoot: String, driver: String? = nil, overlayShortLinks: Bool = false,
                logger: Logger = Logger(label: "strata"), forRepair: Bool = false) throws {
        self.logger = logger
        try makeDirectories(requestedRoot, mode: 0o700, what: "store directory")
        // The canonical path: mount points are compared with /proc/self/mountinfo's.
        let rootPath = try canonicalPath(requestedRoot)
        self.rootPath = rootPath
        for sub in ["", "/layers", "/blobs", "/blobs/sha256", "/tmp"] {
            let p = rootPath + sub
            try makeDirectory(p, mode: 0o700, what: "store directory")
        }
        root = try Directory.open(rootPath)
        layersDir = try Directory.open(rootPath + "/layers")
        blobsDir = try Directory.open(rootPath + "/blobs/sha256")
        tmpDir = try Directory.open(rootPath + "/tmp")
        let lockFile = try root.openFile(Array("lock".utf8), flags: [.readWrite, .create], mode: 0o600)
        lock = lockFile
        changeLock = try root.openFile(Array("lock".utf8), flags: [.readWrite], mode: 0o600)

        // Two processes opening a new store would both switch it to WAL and apply the
        // migrations (the migrator checks, then applies): byte 0 of ROOT/lock serializes the
        // opening, for the few milliseconds it takes.
        do { try lockFile.lockRange(0, exclusive: true, wait: true) } catch let e as StrataError {
            throw e.context("cannot lock \(rootPath)/lock")
        }
        defer { lockFile.unlockRange(0) }
        let dbPath = rootPath + "/strata.db"
        var opened: Metadata
        do {
            // A WAL without its database would be replayed into a new, partial one.
            if !pathExists(dbPath) && pathExists(dbPath + "-wal") {
                throw StrataError(.system, "\(dbPath) is missing while its WAL is there", cause: Metadata.unreadable)
            }
            opened = try Metadata(path: dbPath, storeRoot: rootPath)
            if forRepair { try opened.quickCheck() }
        } catch let e as StrataError where Metadata.isUnreadable(e) {
            guard forRepair else { throw Store.damagedIndex(rootPath, "its database \(dbPath) cannot be read (\(Metadata.sqliteMessage(e)))") }
            let aside = try Store.setAsideDatabase(rootPath)
            logger.warning("the database could not be read; moved it to \(aside) and started a new one")
            opened = try Metadata(path: dbPath, storeRoot: rootPath)
            indexProblem = "its database could not be read (moved to \(aside))"
        }
        metadata = opened
        if indexProblem == nil {
            do { indexProblem = try indexHealth() } catch let e as StrataError where Metadata.isUnreadable(e) {
                throw Store.damagedIndex(rootPath, "its database \(dbPath) cannot be read (\(Metadata.sqliteMessage(e)))")
            }
        }
        if let why = indexProblem, !forRepair { throw Store.damagedIndex(rootPath, why) }

        // No other strata process runs on this store when the exclusive lock is free: what
        // is in tmp/ and every layer directory the database does not know were left by a killed
        // run. Otherwise leave them: they may be another process's work in progress.
        // Something to repair only when a run was killed: it leaves staging or an in-flight
        // marker in tmp/ (see `inflight`). An empty tmp/ costs one directory read, not a scan.
        // (Never while the database does not describe the files: it would take them all for
        // strays. Such a store is opened only to be rebuilt, then opened again: nothing is
        // settled either.) The driver first: the sweep asks it what a mount is.
        if indexProblem == nil {
            driverName = try settleDriver(requested: driver)
            self.driver = makeDriver(driverName, forceShortLinks: overlayShortLinks)
            if try lock.flock(.exclusive, nonBlocking: true), try !tmpDir.entries().isEmpty {
                try sweep()
            }
        }
        try lock.flock(.shared)
    }

    deinit { metadata.checkpointIfWritten() }

    /// Takes the store lock exclusively if no other strata process holds it.
    package func lockExclusiveNow() throws -> Bool { try lock.flock(.exclusive, nonBlocking: true) }
    /// Back to the shared lock every running command holds.
    package func relock() throws { try lock.flock(.shared) }

    /// An unnamed file in tmp/ (O_TMPFILE): whatever is written there vanishes with the process,
    /// so a killed run leaves nothing behind.
    package func spoolFile() throws -> FDHandle {
        do { return try tmpDir.openFile(Array(".".utf8), flags: [.temporaryFile, .readWrite], mode: 0o600) } catch let e as StrataError {
            throw e.context("cannot create a spool file in \(rootPath)/tmp")
        }
    }

    /// Runs `body` with a marker in tmp/: if the process dies inside, the next start sees it
    /// and sweeps orphaned layer and container directories (between a rename and a database
    /// commit, or a database delete and a directory removal). Meanwhile the change lock is held
    /// shared, so `check` never sees the files and the database half-way between two states.
    package func inflight<T>(_ body: () throws -> T) throws -> T {
        try changing {
            let name = Array("inflight-\(Store.randomID().prefix(16))".utf8)
            _ = try tmpDir.openFile(name, flags: [.writeOnly, .create, .exclusive], mode: 0o600)
            defer { _ = tmpDir.unlink(name) }
            return try body()
        }
    }

    /// Runs `body` holding the change lock shared (nested calls and calls under `quiesced` take
    /// nothing more).
    package func changing<T>(_ body: () throws -> T) throws -> T {
        try changeState.withLock { state in
            if !state.exclusive && state.shared == 0 {
                try changeLock.lockRange(Store.changeByte, exclusive: false, wait: true)
            }
            state.shared += 1
        }
        defer {
            changeState.withLock { state in
                state.shared -= 1
                if !state.exclusive && state.shared == 0 { changeLock.unlockRange(Store.changeByte) }
            }
        }
        return try body()
    }

    /// Runs `body` while no command is between changing files and recording the change: the
    /// database and the directories it names agree throughout (`check` and `check --repair`
    /// look and mend inside). Waits for the changes under way to finish; new ones wait until
    /// it returns.
    package func quiesced<T>(_ body: () throws -> T) throws -> T {
        let outer = try changeState.withLock { state -> Bool in
            if state.exclusive { return false }
            guard state.shared == 0 else {
                throw StrataError(.internalError, "a change to the store at \(rootPath) is under way in this process; check cannot run inside it")
            }
            try changeLock.lockRange(Store.changeByte, exclusive: true, wait: true)
            state.exclusive = true
            return true
        }
        defer {
            if outer {
                changeState.withLock { state in
                    state.exclusive = false
                    changeLock.unlockRange(Store.changeByte)
                }
            }
        }
        return try body()
    }

    /// Removes what a killed run left: staging in tmp/ and layer directories without a row.
    package func sweep() throws {
        for name in try tmpDir.entries() {
            logger.debug("sweep: removing tmp/\(name.display)")
            try tmpDir.removeTree(name)
        }
        let known = try metadata.read { try $0.cacheIDs() }
        for name in try layersDir.entries() where !known.contains(name.display) {
            logger.info("sweep: removing unrecorded layer directory layers/\(name.display)")
            try layersDir.removeTree(name)
        }
        try sweepContainers()
    }

    /// Mounts a killed run left: a container directory without a row is unmounted and removed;
    /// a row that counts mounts that are gone is reset.
    package func sweepContainers() throws {
        guard case .success(let dir) = root.openDirectory(Array("containers".utf8), resolve: [.noSymlinks]) else { return }
        let rows = try metadata.read { try $0.containers() }
        let known = Set(rows.map(\.id))
        let mounts = MountTable.mountPoints()
        for name in try dir.entries() where !known.contains(name.display) {
            let merged = rootPath + "/containers/" + name.display + "/merged"
            if mounts.contains(merged) { try? Mounts.unmount(merged, detach: true) }
            logger.info("sweep: removing unrecorded container directory containers/\(name.display)")
            try dir.removeTree(name)
        }
        for r in rows where r.mountCount > 0 && driver.mountsAreKernelMounts {
            if !driver.isMounted(containerPaths(r.id), recordedMounts: r.mountCount, mountPoints: mounts) {
                try metadata.write { try $0.countMounts(r.id, count: 0) }
            }
        }
    }

    /// Moves strata.db and its -wal and -shm to ROOT/broken/ (kept, never deleted here);
    /// returns where the database went.
    static func setAsideDatabase(_ root: String) throws -> String {
        try makeDirectories(root + "/broken", mode: 0o700, what: "store directory")
        let dir = try Directory.open(root), broken = try Directory.open(root + "/broken")
        let target = "strata.db.\(Timestamp.now().filter { $0.isNumber })-\(randomID().prefix(6))"
        // The WAL first: a database left without it is one the next opening refuses, never one
        // that a stray WAL is replayed into.
        for suffix in ["-wal", "-shm", ""] where try dir.lstat(Array("strata.db\(suffix)".utf8)) != nil {
            try dir.rename(Array("strata.db\(suffix)".utf8), to: Array((target + suffix).utf8), in: broken)
        }
        return "\(root)/broken/\(target)"
    }

    /// Moves `name` in `dir` to ROOT/`sub`/ (made if missing), as `name`, or `name.2`, `name.3`…
    /// when taken; returns where it went. Kept there: `gc` empties only `broken/`.
    @discardableResult
    package func moveAside(_ name: PathBytes, in dir: Directory, to sub: String) throws -> String {
        let path = "\(rootPath)/\(sub)"
        try makeDirectories(path, mode: 0o700, what: "store directory")
        let target = try Directory.open(path)
        var newName = name
        var n = 1
        while try target.lstat(newName) != nil { n += 1; newName = name + Array(".\(n)".utf8) }
        try dir.rename(name, to: newName, in: target)
        return "\(path)/\(newName.display)"
    }

    /// A new random ID for a layer directory or staging area.
    package static func randomID() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(format: "%016llx", g.next() as UInt64) }.joined()
    }

    /// Writes a verified JSON document (config, manifest) to blobs/ under its digest.
    /// Idempotent: an existing blob of that digest is left alone.
    package func putBlob(_ bytes: [UInt8], digest: Digest) throws {
        let name = Array(digest.hex.utf8)
        if try blobsDir.lstat(name) != nil { return }
        let tmpName = Array("blob-\(Store.randomID())".utf8)
        let f = try tmpDir.openFile(tmpName, flags: [.writeOnly, .create, .exclusive], mode: 0o644)
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
