import StrataArchive
// (Mode tests are spelled out here: with libarchive imported into this module, the `stat`
// helpers of StrataSystem are not found in whole-module builds.)
import StrataCore
import StrataSystem

/// What applying one layer tar produced.
public struct UnpackStats: Sendable {
    /// Sum of regular file sizes written (the layer's size, as Docker counts it).
    public var contentSize: Int64 = 0
    public var entries = 0
    /// Device nodes not made: rootless, a user namespace cannot make them (docs/rootless.md).
    /// Their headers stay in the journal, so the layer's tar is still rebuilt exact.
    public var skippedDevices: [PathBytes] = []
    /// `.wh..wh..opq` at the layer root: the layers below do not show (Decision 5).
    public var opaqueRoot = false
    /// Parents the tar did not list, made 0755 root here: their owner, mode and xattrs come
    /// from the nearest lower layer that has them, once the lower layers exist.
    public var implicitDirectories: [PathBytes] = []
    /// Whiteouts written on disk, by path: one in a directory that is opaque or that no lower
    /// layer has hides nothing, and overlayfs would list it; such are removed once the lower
    /// layers are known.
    public var whiteouts: [PathBytes] = []
}

/// Applies a layer tar to an empty directory, through directory file descriptors only, with
/// whiteouts in overlay form. Every tar is hostile: names are normalised and refused when they
/// leave the root, parents are resolved inside the root (openat2 RESOLVE_IN_ROOT), and final
/// components are never followed.
///
/// Decisions (docs/unpack-decisions.md) and where they are implemented:
/// 1. absolute symlink targets are stored verbatim; parents through a same-layer symlink are
///    resolved inside the root (`openParent`);
/// 2. `..`/absolute names refused, `./x` `x//y` normalised (`EntryPath`);
/// 3./4. an entry over an existing one replaces it (last wins); deferred times never follow a
///    symlink (`applyDeferredTimes`);
/// 5. a root opaque marker is recorded in `UnpackStats.opaqueRoot`;
/// 6. hardlinks only to files this layer already holds, else refused;
/// 7. content xattrs filtered by `Whiteout.isContentXattr`;
/// 8. chown before chmod; directory times after their children, deepest first;
/// 9. whiteouts hide lower layers only: a name this layer holds is never deleted by one.
public final class LayerUnpacker {
    private let root: Directory
    private let label: String
    private let recorder: JournalRecorder?
    public private(set) var stats = UnpackStats()

    /// Directory times to apply once all children exist, by normalised path.
    private var deferredTimes: [PathBytes: (atime: FileTime, mtime: FileTime)] = [:]
    /// Paths whose payload the journal points at; overwriting one makes the journal inexact.
    private var payloadPaths: Set<PathBytes> = []
    /// The last parent directory opened, reused while entries stay in one directory.
    private var cachedParent: (path: PathBytes, dir: Directory)?

    /// A plain copy may cross the mounts of the tree it lands in (a container's volumes); a
    /// layer stays on its own filesystem.
    private var resolveInRoot: Resolve { plain == nil ? [.inRoot, .noMagicLinks, .noXDev] : [.inRoot, .noMagicLinks] }

    /// How a tar of plain files (`cp`) is applied, rather than a layer: names starting with
    /// `.wh.` are files like any other, and the owner, set-id bits and devices as asked.
    public struct PlainCopy: Sendable {
        /// Every entry owned by this, instead of the tar's ids (nil: the tar's).
        public var owner: (uid: UInt32, gid: UInt32)?
        /// Setuid and setgid bits and `security.*` xattrs (file capabilities) are dropped (a file
        /// a container made, landing on the host).
        public var clearSetID = false
        /// Device nodes are skipped (and counted in `skippedDevices`).
        public var skipDevices = false
        /// A plain copy with the tar's owners, modes and devices.
        public init(owner: (uid: UInt32, gid: UInt32)? = nil, clearSetID: Bool = false, skipDevices: Bool = false) {
            self.owner = owner; self.clearSetID = clearSetID; self.skipDevices = skipDevices
        }
    }
    /// Set: the tar is plain files (see `PlainCopy`); nil: a layer.
    public var plain: PlainCopy?
    /// Device nodes a plain copy skipped.
    public private(set) var skippedDevices: [PathBytes] = []

    /// The user namespace the files are made in: rootless, owners must be mapped in it (with
    /// only the user's own id, every file is theirs) and devices cannot be made.
    private let userNamespace: UserNamespace
    /// Paths of devices not made, for hardlinks to them (skipped too).
    private var devicesNotMade: Set<PathBytes> = []

    /// Unpacks into `root`; `label` names the layer in errors; `recorder` journals the tar (nil: none).
    public init(root: Directory, label: String, recorder: JournalRecorder?, userNamespace: UserNamespace = .current) {
        self.root = root
        self.label = label
        self.recorder = recorder
        self.userNamespace = userNamespace
    }

    /// Rootless: a device (not a whiteout's 0/0, refused later) or a hardlink to one is not made.
    /// A layer's entry with a `.wh.` name anywhere in its path is left to the usual rules
    /// (a whiteout by its name, whatever its type; aufs metadata skipped; the rest refused).
    private func isDeviceNotMade(_ entry: TarEntry) -> Bool {
        if plain == nil {
            guard case .success(let comps) = EntryPath.components(entry.path),
                  !comps.contains(where: { $0.starts(with: Whiteout.prefix) }) else { return false }
        }
        switch entry.kind {
        case .blockDevice: return true
        case .characterDevice: return !(entry.devMajor == 0 && entry.devMinor == 0)
        case .hardlink:
            var target = entry.linkTarget[...]
            while target.first == UInt8(ascii: "/") { target = target.dropFirst() }
            guard case .success(let c) = EntryPath.components(Array(target)) else { return false }
            return devicesNotMade.contains(EntryPath.join(c))
        default: return false
        }
    }

    /// Rootless: the ids a file gets in this user namespace (a single-id mapping gives every
    /// file to the user, as podman does); an owner it does not map is refused, naming the fix.
    private func mappedOwner(_ entry: inout TarEntry) throws {
        if userNamespace.isSingleID { (entry.uid, entry.gid) = (0, 0); return }
        guard !userNamespace.maps(uid: entry.uid, gid: entry.gid) else { return }
        throw StrataError(.unsupported, """
            \(label): "\(entry.path.display)" belongs to \(entry.uid):\(entry.gid), which this user's namespace does not \
            map (uids \(userNamespace.uidRangeText)): give the user a larger range in /etc/subuid and /etc/subgid, \
            then end strata's pause process (pkill -u $USER strata-pause) so that the next command maps it
            """)
    }

    private func unsafe(_ entry: PathBytes, _ why: String) -> StrataError {
        StrataError(.unsafeEntry, "\(label): refused entry \"\(entry.display)\": \(why)")
    }

    /// Applies every entry of `reader`.
    public func apply(_ reader: TarReader) throws {
        while var entry = try reader.next() {
            if let plain {
                if plain.skipDevices && (entry.kind == .characterDevice || entry.kind == .blockDevice) {
                    skippedDevices.append(entry.path)
                    continue
                }
                if let owner = plain.owner { (entry.uid, entry.gid) = owner }
                if plain.clearSetID {
                    // File capabilities (security.capability) would make a copied binary
                    // privileged like a setuid one; no security.* label of the container's lands.
                    entry.mode &= ~0o6000
                    entry.xattrs.removeAll { $0.name.hasPrefix("security.") }
                }
            }
            stats.entries += 1
            try recorder?.entryStarted(at: entry.headerOffset)
            if userNamespace.isRootless {
                if isDeviceNotMade(entry) {
                    if case .success(let c) = EntryPath.components(entry.path), !c.isEmpty {
                        devicesNotMade.insert(EntryPath.join(c))
                        // What was at that name before is replaced, as by the device; the
                        // directories above it exist, as for any entry.
                        let parent = try openParent(Array(c.dropLast()), entry: entry.path)
                        if try parent.lstat(c.last!) != nil, plain == nil {
                            try parent.removeTree(c.last!)
                            cachedParent = nil
                        }
                    }
                    if plain == nil { stats.skippedDevices.append(entry.path) } else { skippedDevices.append(entry.path) }
                    continue
                }
                try mappedOwner(&entry)
                if !devicesNotMade.isEmpty, case .success(let c) = EntryPath.components(entry.path) {
                    // Under a device: refused as root refuses it (a device is no directory).
                    for i in 0..<max(0, c.count - 1) where devicesNotMade.contains(EntryPath.join(Array(c[0...i]))) {
                        throw unsafe(entry.path, "its parent \"\(EntryPath.join(Array(c[0...i])).display)\" is not a directory (a device)")
                    }
                    // A later entry of that name is made: links to it are links to a file again.
                    devicesNotMade.remove(EntryPath.join(c))
                }
            }
            try apply(entry, reader: reader)
        }
        try applyDeferredTimes()
    }

    private func apply(_ entry: TarEntry, reader: TarReader) throws {
        let comps: [PathBytes]
        switch EntryPath.components(entry.path) {
        case .success(let c): comps = c
        case .failure(.absolute): throw unsafe(entry.path, "absolute name")
        case .failure(.escapes): throw unsafe(entry.path, "the name leaves the layer root with \"..\"")
        }
        // Under aufs metadata (`.wh..wh.plnk/…`, left by aufs-era images): not content, skipped
        // as Docker does. Any other whiteout name can only be the final component.
        for c in comps.dropLast() where plain == nil && c.starts(with: Whiteout.prefix) {
            if Whiteout.meaning(of: c) == .aufsMeta { return }
            throw unsafe(entry.path, "a whiteout name used as a directory")
        }
        guard let last = comps.last else {
            // The root itself ("./"): only its metadata.
            guard entry.kind == .directory else { throw unsafe(entry.path, "it would replace the layer root") }
            try setMetadata(of: root, entry: entry)
            deferredTimes[[]] = (entry.atime ?? entry.mtime, entry.mtime)
            return
        }
        let parentPath = Array(comps.dropLast())
        let path = EntryPath.join(comps)

        if plain == nil, try applyMarker(entry, last: last, parentPath: parentPath, path: path) { return }

        let parent = try openParent(parentPath, entry: entry.path)
        // Most names are new: make the entry first (each kind's first syscall is exclusive) and
        // look at what is there only when the name turns out to be taken.
        if entry.kind != .socket {
            do {
                return try create(entry, name: last, path: path, in: parent, replacedWhiteout: false, reader: reader, exclusive: true)
            } catch is NameTaken {}
        }
        var replacedWhiteout = false
        if let existing = try parent.lstat(last) {
            if entry.kind == .directory && existing.kind == .directory {
                // A duplicate directory entry: keep the children, take the new metadata.
                switch parent.openDirectory(last, resolve: [.noSymlinks]) {
                case .success(let d):
                    try setMetadata(of: d, entry: entry)
                    deferredTimes[path] = (entry.atime ?? entry.mtime, entry.mtime)
                case .failure(let e):
                    throw StrataError(.system, "\(label): cannot open \"\(path.display)\"", cause: e)
                }
                return
            }
            replacedWhiteout = plain == nil && Whiteout.isOverlayWhiteout(existing)
            if !replacedWhiteout {
                // Last entry wins (Decision 4). What the journal pointed at is gone now.
                if existing.kind == .directory || payloadPaths.contains(path) {
                    recorder?.markInexact("entry \"\(path.display)\" replaces an earlier entry of the same layer")
                }
            }
            try parent.removeTree(last)
            deferredTimes[path] = nil
            cachedParent = nil
        }

        try create(entry, name: last, path: path, in: parent, replacedWhiteout: replacedWhiteout, reader: reader)
    }

    /// The first syscall of `create` found the name taken (EEXIST); nothing was made or read.
    private struct NameTaken: Error {}

    /// Runs the syscall that makes the entry's name; with `exclusive`, EEXIST becomes `NameTaken`.
    private func making<T>(_ exclusive: Bool, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as StrataError where exclusive && (e.cause as? Errno) == .EEXIST { throw NameTaken() }
    }

    /// Makes the entry's file, directory, link or device (the name is free, or with `exclusive`
    /// throws `NameTaken` before anything is done when it is not).
    private func create(_ entry: TarEntry, name last: PathBytes, path: PathBytes, in parent: Directory,
                        replacedWhiteout: Bool, reader: TarReader, exclusive: Bool = false) throws {
        switch entry.kind {
        case .regular:
            try writeRegular(entry, name: last, path: path, in: parent, reader: reader, exclusive: exclusive)
        case .directory:
            try making(exclusive) { try parent.mkdirOrThrow(last, mode: 0o700) }
            switch parent.openDirectory(last, resolve: [.noSymlinks]) {
            case .success(let d):
                try setMetadata(of: d, entry: entry)
                // A whiteout and a directory of the same name in one layer: the directory is new,
                // nothing of the lower one may show through it.
                if replacedWhiteout {
                    try setXattr(d.handle, Whiteout.overlayOpaqueXattr, Whiteout.overlayOpaqueValue, path: path)
                }
            case .failure(let e):
                throw StrataError(.system, "\(label): cannot open new directory \"\(path.display)\"", cause: e)
            }
            deferredTimes[path] = (entry.atime ?? entry.mtime, entry.mtime)
        case .symlink:
            try making(exclusive) { try parent.symlink(last, target: entry.linkTarget) }
            try parent.chown(last, uid: entry.uid, gid: entry.gid)
            try parent.setTimes(last, atime: entry.atime ?? entry.mtime, mtime: entry.mtime)
            cachedParent = nil
        case .hardlink:
            try link(entry, name: last, in: parent, exclusive: exclusive)
        case .characterDevice, .blockDevice, .fifo:
            if entry.kind == .characterDevice && entry.devMajor == 0 && entry.devMinor == 0 {
                throw unsafe(entry.path, "a 0/0 character device would be an overlay whiteout on disk")
            }
            let type: FileKind = entry.kind == .characterDevice ? .characterDevice : entry.kind == .blockDevice ? .blockDevice : .fifo
            try making(exclusive) { try parent.mknod(last, mode: type.modeBits | 0o600, major: entry.devMajor, minor: entry.devMinor) }
            try parent.chown(last, uid: entry.uid, gid: entry.gid)
            let f = try parent.openat2(last, flags: [.pathOnly, .noFollow], resolve: [.noSymlinks]).get()
            try chmodPath(f, mode: entry.mode, path: path)
            try parent.setTimes(last, atime: entry.atime ?? entry.mtime, mtime: entry.mtime)
        case .socket:
            // A socket cannot be recreated from a tar; GNU tar and Docker skip them too.
            return
        }
    }

    /// Whiteouts, opaque markers and aufs metadata: returns whether the entry was one (and is done).
    private func applyMarker(_ entry: TarEntry, last: PathBytes, parentPath: [PathBytes], path: PathBytes) throws -> Bool {
        switch Whiteout.meaning(of: last) {
        case .aufsMeta:
            return true
        case .invalid:
            throw unsafe(entry.path, "a whiteout that names no file or a parent directory")
        case .opaque:
            // The name decides, whatever the entry's type (Docker does the same).
            if parentIsNotDirectory(parentPath) { return true }
            let dir = try openParent(parentPath, entry: entry.path)
            try setXattr(dir.handle, Whiteout.overlayOpaqueXattr, Whiteout.overlayOpaqueValue, path: EntryPath.join(parentPath))
            if parentPath.isEmpty { stats.opaqueRoot = true }
            return true
        case .whiteout(let name):
            // Under a name this layer made a file (umoci writes `d` as a file, then `d/.wh.x`):
            // nothing below shows through a file, so it changes nothing.
            if parentIsNotDirectory(parentPath) { return true }
            let parent = try openParent(parentPath, entry: entry.path)
            if let st = try parent.lstat(name) {
                // This layer already holds the name: it hides the lower one by itself (Decision 9).
                // A directory must also stop the lower directory's content from showing through.
                if st.kind == .directory {
                    switch parent.openDirectory(name, resolve: [.noSymlinks]) {
                    case .success(let d): try setXattr(d.handle, Whiteout.overlayOpaqueXattr, Whiteout.overlayOpaqueValue, path: EntryPath.join(parentPath + [name]))
                    case .failure(let e): throw StrataError(.system, "\(label): cannot open \"\(path.display)\"", cause: e)
                    }
                }
                return true
            }
            try parent.mknod(name, mode: FileKind.characterDevice.modeBits | 0o000, major: 0, minor: 0)
            stats.whiteouts.append(EntryPath.join(parentPath + [name]))
            return true
        case .content:
            return false
        }
    }

    private func writeRegular(_ entry: TarEntry, name: PathBytes, path: PathBytes, in parent: Directory, reader: TarReader,
                              exclusive: Bool) throws {
        let f = try making(exclusive) { try parent.openFile(name, flags: [.writeOnly, .create, .exclusive], mode: 0o600) }
        if entry.isSparse {
            recorder?.markInexact("entry \"\(path.display)\" is a sparse file")
        } else {
            try recorder?.payload(at: entry.dataOffset, size: entry.size, path: path)
            if entry.size > 0 { payloadPaths.insert(path) }
        }
        var written: Int64 = 0
        try reader.readData { offset, block in
            try at(path) { try f.pwriteAll(block, at: offset) }
            written += Int64(block.count)
        }
        if entry.isSparse {
            try at(path) { try f.truncate(to: entry.size) }
        } else if written != entry.size {
            recorder?.markInexact("entry \"\(path.display)\" had \(written) of \(entry.size) payload bytes")
        }
        stats.contentSize += entry.size
        try setMetadata(of: f, entry: entry, path: path)
        try at(path) { try f.setTimes(atime: entry.atime ?? entry.mtime, mtime: entry.mtime) }
    }

    /// Whether `comps` resolves (inside the root) to something of this layer that is not a directory.
    private func parentIsNotDirectory(_ comps: [PathBytes]) -> Bool {
        guard !comps.isEmpty else { return false }
        if case .failure(let e) = root.openDirectory(EntryPath.join(comps), resolve: resolveInRoot, followFinal: true) {
            return e == .ENOTDIR
        }
        return false
    }

    private func link(_ entry: TarEntry, name: PathBytes, in parent: Directory, exclusive: Bool) throws {
        // An absolute target (kaniko writes `/usr/bin/perl`) is read from the layer root, as
        // Docker and umoci do; `..` out of the root is still refused.
        var target = entry.linkTarget[...]
        while target.first == UInt8(ascii: "/") { target = target.dropFirst() }
        let targetComps: [PathBytes]
        switch EntryPath.components(Array(target)) {
        case .success(let c) where !c.isEmpty: targetComps = c
        case .success: throw unsafe(entry.path, "a hardlink to the layer root")
        case .failure: throw unsafe(entry.path, "a hardlink to \"\(entry.linkTarget.display)\", outside the layer")
        }
        let targetParentPath = Array(targetComps.dropLast())
        let targetName = targetComps.last!
        let targetParent: Directory
        switch root.openDirectory(EntryPath.join(targetParentPath), resolve: resolveInRoot) {
        case .success(let d): targetParent = d
        case .failure:
            throw unsafe(entry.path, "hardlink target \"\(entry.linkTarget.display)\" is not in this layer (hardlinks into lower layers are not supported)")
        }
        guard let st = try targetParent.lstat(targetName) else {
            throw unsafe(entry.path, "hardlink target \"\(entry.linkTarget.display)\" is not in this layer (hardlinks into lower layers are not supported)")
        }
        if st.kind == .directory { throw unsafe(entry.path, "a hardlink to a directory") }
        if Whiteout.isOverlayWhiteout(st) {
            throw unsafe(entry.path, "a hardlink to a whiteout")
        }
        try making(exclusive) { try parent.link(name, to: targetName, in: targetParent) }
    }

    /// Opens the directory `comps` inside the root, creating missing ones (0755, root-owned,
    /// as tar does for parents it was not given).
    private func openParent(_ comps: [PathBytes], entry: PathBytes) throws -> Directory {
        if comps.isEmpty { return root }
        let path = EntryPath.join(comps)
        if let c = cachedParent, c.path == path { return c.dir }
        let dir: Directory
        switch root.openDirectory(path, resolve: resolveInRoot, followFinal: true) {
        case .success(let d):
            dir = d
        case .failure(let e) where e == .ENOENT:
            var current = root
            for i in 0..<comps.count {
                let prefix = EntryPath.join(Array(comps[0...i]))
                switch root.openDirectory(prefix, resolve: resolveInRoot, followFinal: true) {
                case .success(let d):
                    current = d
                case .failure(let e) where e == .ENOENT:
                    if case .failure(let e) = current.mkdir(comps[i], mode: 0o755) {
                        // EEXIST: the name is a symlink whose target does not exist in this layer.
                        // Creating what it points at would guess; refuse instead.
                        if e == .EEXIST { throw unsafe(entry, "its parent \"\(prefix.display)\" is a symlink to nothing in this layer") }
                        throw StrataError(.system, "\(label): cannot create parent of \"\(entry.display)\"", cause: e)
                    }
                    stats.implicitDirectories.append(prefix)
                    switch current.openDirectory(comps[i], resolve: [.noSymlinks]) {
                    case .success(let d): current = d
                    case .failure(let e): throw unsafe(entry, "cannot open its parent directory (\(e))")
                    }
                case .failure(let e):
                    throw unsafe(entry, "its parent \"\(prefix.display)\" is not a directory (\(e))")
                }
            }
            dir = current
        case .failure(let e):
            throw unsafe(entry, "its parent \"\(path.display)\" is not a directory (\(e))")
        }
        cachedParent = (path, dir)
        return dir
    }

    private func setMetadata(of dir: Directory, entry: TarEntry) throws {
        try setMetadata(of: dir.handle, entry: entry, path: entry.path)
    }

    /// Owner, then mode (chown clears setuid/setgid: Decision 8), then content xattrs.
    private func setMetadata(of f: FDHandle, entry: TarEntry, path: PathBytes) throws {
        try at(path) {
            try f.chown(uid: entry.uid, gid: entry.gid)
            try f.chmod(entry.mode)
            for (name, value) in entry.xattrs where Whiteout.isContentXattr(name) { try f.setXattr(name, value) }
        }
    }

    /// chmod through an O_PATH fd (devices and fifos must not be opened for I/O).
    private func chmodPath(_ f: FDHandle, mode: UInt32, path: PathBytes) throws {
        try at(path) { try f.chmodPathOnly(mode) }
    }

    private func setXattr(_ f: FDHandle, _ name: String, _ value: [UInt8], path: PathBytes) throws {
        try at(path) { try f.setXattr(name, value) }
    }

    /// Runs a call on the entry at `path`; its error names the layer and the entry.
    private func at(_ path: PathBytes, _ body: () throws -> Void) throws {
        do { try body() } catch let e as StrataError { throw e.context("\(label): \"\(path.display)\"") }
    }

    /// Directory times last, deepest first, never through a symlink: a later entry may have
    /// replaced a directory with a symlink (Decision 4).
    private func applyDeferredTimes() throws {
        let ordered = deferredTimes.keys.sorted { a, b in
            let da = a.lazy.filter { $0 == UInt8(ascii: "/") }.count, db = b.lazy.filter { $0 == UInt8(ascii: "/") }.count
            if a.isEmpty != b.isEmpty { return !a.isEmpty }
            return da > db
        }
        for path in ordered {
            guard let t = deferredTimes[path] else { continue }
            guard case .success(let d) = root.openDirectory(path, resolve: [.noSymlinks, .noXDev]) else { continue }
            try at(path) { try d.handle.setTimes(atime: t.atime, mtime: t.mtime) }
        }
    }
}
