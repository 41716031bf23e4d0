import FoundationEssentials
import StrataArchive
import StrataCore
import StrataDrivers
import StrataFormats
import StrataLauncher
import StrataLayer
import StrataSystem

/// What a container is doing, as `ps` shows it.
public enum ContainerState: String, Codable, Sendable {
    case created, mounted, running, exited
}

/// A container with what it is doing, as `ps` lists it.
public struct ContainerView: Sendable {
    public var record: ContainerRecord
    public var imageTags: [String]
    public var state: ContainerState
    /// The pid of its process while it runs.
    public var pid: Int32?
    /// Bytes of regular files the container changed.
    public var sizeOfChanges: Int64
    /// How its last run went (nil before its first).
    public var run: RunState?
    /// The command it runs, where `run` recorded one.
    public var command: [String]?
    /// Running, with its processes frozen (`pause`).
    public var paused = false
    /// Its health, for a container with a health check that has started.
    public var health: HealthState?
}

/// One line of `strata diff`.
public struct ContainerChange: Codable, Sendable {
    public var kind: String
    /// The path as text: exact for names that are UTF-8; otherwise invalid bytes show as U+FFFD
    /// and `pathBase64` holds the bytes.
    public var path: String
    /// The path's bytes, base64, only when they are not valid UTF-8.
    public var pathBase64: String?

    /// A change of kind A, C or D at `path` (absolute, as bytes).
    public init(kind: String, path: PathBytes) {
        self.kind = kind
        self.path = path.display
        pathBase64 = String(validating: path, as: UTF8.self) == nil ? Base64.encode(path) : nil
    }
}

extension Store {
    // MARK: containers

    /// The image's layers for a driver, top first, each with its short link under ROOT/l.
    func lowerLayers(_ image: Digest) throws -> [LowerLayer] {
        var layers = try metadata.read { try $0.mountLayers(ofImage: image) }
        // Link IDs: the missing ones assigned in one transaction.
        let missing = layers.indices.filter { layers[$0].linkID == nil }
        if !missing.isEmpty {
            let linkDir = try ensureDirectory("l")
            try metadata.write { tx in
                for i in missing { layers[i].linkID = try tx.assignLinkID(layers[i].chainID) }
            }
            for i in missing {
                let link = Array(String(layers[i].linkID ?? 0, radix: 36).utf8)
                if try linkDir.lstat(link) == nil {
                    try linkDir.symlink(link, target: Store.linkTarget(cacheID: layers[i].cacheID))
                }
            }
        }
        return layers.reversed().map { l in
            LowerLayer(chainID: l.chainID, path: layerPath(cacheID: l.cacheID), link: String(l.linkID ?? 0, radix: 36),
                       opaqueRoot: l.opaqueRoot)
        }
    }

    /// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 bytes.
    /// Checked by hand: a regular expression costs the start-up of ICU's regex engine.
    static func checkContainerName(_ cname: String) throws {
        guard cname.utf8.count <= 128 else {
            throw StrataError(.invalidArgument, "invalid container name \"\(cname.prefix(40))…\" (\(cname.utf8.count) characters): at most 128")
        }
        func allowed(_ c: UInt8, first: Bool) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (!first && (c == 0x5f || c == 0x2e || c == 0x2d))
        }
        let bytes = Array(cname.utf8)
        guard let head = bytes.first, allowed(head, first: true), bytes.dropFirst().allSatisfy({ allowed($0, first: false) }) else {
            throw StrataError(.invalidArgument, "invalid container name \"\(cname)\": letters, digits, _ . - only, starting with a letter or digit")
        }
    }

    /// `rename`: the container's row and the index file beside its folder get the new name
    /// together (the row is put back if the file cannot be written).
    public func renameContainer(_ ref: String, to newName: String) throws {
        try Store.checkContainerName(newName)
        let c = try container(ref)
        guard c.name != newName else { return }
        try metadata.write { try $0.renameContainer(c.id, to: newName) }
        var renamed = c
        renamed.name = newName
        do {
            try Directory.open(containerPaths(c.id).root).writeFileAtomically(IndexFiles.containerName,
                                                                              try IndexFiles.encode(IndexFiles.Container(renamed)))
        } catch {
            try? metadata.write { try $0.renameContainer(c.id, to: c.name) }
            throw error
        }
        record(container: renamed, "rename", ["oldName": c.name])
    }

    /// Creates a container from an image: its own directories (upper and work, or a full copy),
    /// then its row. Prints nothing; returns the ID.
    public func createContainer(image ref: String, name: String?, initLayer: Bool = false) throws -> String {
        let image = try resolveImage(ref)
        let id = Store.randomID()
        let cname = try name ?? ContainerNames.fresh { n in try metadata.read { try $0.containerExists(name: n) } }
        try Store.checkContainerName(cname)
        if try metadata.read({ try $0.containerExists(name: cname) }) {
            throw StrataError(.alreadyExists, "a container named \"\(cname)\" exists")
        }
        // A lease on the flattened layer a deep chain mounts (if any) until the row is in.
        let locks = try LayerLocks(store: self)
        defer { locks.unlockAll() }
        let layers = try mountable(try lowerLayers(image), locks: locks)
        _ = try ensureDirectory("containers")
        let paths = containerPaths(id)
        let d = driver
        return try inflight { try createContainerInPlace(id: id, cname: cname, image: image, layers: layers, paths: paths, driver: d, initLayer: initLayer) }
    }

    private func createContainerInPlace(id: String, cname: String, image: Digest, layers lowers: [LowerLayer], paths: ContainerPaths,
                                        driver d: any UnionDriver, initLayer: Bool) throws -> String {
        var layers = lowers
        do {
            if initLayer {
                try makeInitLayer(paths, below: layers)
                layers.insert(initLowerLayer(paths), at: 0)
            }
            try d.create(paths, layers: layers)
            _ = try d.describe(paths, layers: layers)
            let record = ContainerRecord(id: id, name: cname, image: image, driver: d.name,
                                         createdAt: Timestamp.wholeSecondNow())
            // The row, beside the container's files (docs/store-layout.md).
            try IndexFiles.write(IndexFiles.Container(record), as: IndexFiles.containerName, in: try Directory.open(paths.root))
            try metadata.write { try $0.insertContainer(record) }
        } catch {
            try? Directory.open(rootPath + "/containers").removeTree(Array(id.utf8))
            if let e = error as? StrataError, e.code == .alreadyExists {
                throw StrataError(.alreadyExists, "a container named \"\(cname)\" exists")
            }
            throw error
        }
        return id
    }

    /// A container's lower layers: its init layer (if it has one), then the image's, top first
    /// (the bottom ones flattened into one when there are more than overlayfs stacks).
    func containerLowers(_ c: ContainerRecord) throws -> [LowerLayer] {
        let paths = containerPaths(c.id)
        var layers = try mountable(try lowerLayers(c.image))
        if pathExists(paths.root + "/init") { layers.insert(initLowerLayer(paths), at: 0) }
        return layers
    }

    /// A container by full ID, unique ID prefix, or name.
    public func container(_ ref: String) throws -> ContainerRecord {
        let rows = try metadata.read { try $0.containers(matching: ref) }
        let exact = rows.first { $0.name == ref || $0.id == ref } ?? (rows.count == 1 ? rows.first : nil)
        guard let r = exact else {
            if rows.count > 1 { throw StrataError(.invalidArgument, "\"\(ref)\" matches several containers; give more of the ID") }
            throw StrataError(.notFound, "no container \"\(ref)\"; `strata ps -a` lists them")
        }
        return r
    }

    /// Mounts a container's rootfs (idempotent and counted, as `podman mount` is); returns the path.
    public func mountContainer(_ ref: String) throws -> String {
        let c = try container(ref)
        let paths = containerPaths(c.id)
        let d = driver
        let description = try d.describe(paths, layers: try containerLowers(c))
        let lease = try LayerLocks(store: self)
        try lease.lock(key: c.id, exclusive: true)
        defer { lease.unlockAll() }
        // Mounted and counted in one change: `check` never sees a mount nothing counts.
        try changing {
            if case .none = description {} else if !MountTable.isMountPoint(description.target) {
                try d.mount(description)
            }
            try metadata.write { try $0.countMounts(c.id, delta: 1) }
        }
        return description.target
    }

    /// Drops one mount reference; unmounts when none is left (or at once with `force`).
    public func unmountContainer(_ ref: String, force: Bool = false) throws {
        let id = try container(ref).id
        let lease = try LayerLocks(store: self)
        try lease.lock(key: id, exclusive: true)
        defer { lease.unlockAll() }
        // The count as it is under the lease (another command may have changed it since).
        let c = try container(id)
        let left = force ? 0 : max(0, c.mountCount - 1)
        if left == 0 { try driver.unmount(containerPaths(c.id)) }
        try metadata.write { try $0.countMounts(c.id, count: left) }
    }

    /// Removes a container; a mounted or running one only with `force`.
    public func removeContainer(_ ref: String, force: Bool) throws {
        let c = try container(ref)
        let paths = containerPaths(c.id)
        let isMounted = MountTable.isMountPoint(paths.merged)
        let mounted = c.mountCount > 0 || isMounted
        let running = c.pid.map { isContainerProcess($0, id: c.id) } ?? false
        if running, !force {
            throw StrataError(.inUse, "container \(c.name) is running (pid \(c.pid ?? 0)); `strata stop \(c.name)` first, or rm -f")
        }
        if mounted && !force {
            throw StrataError(.inUse, "container \(c.name) is mounted; `strata umount \(c.name)` first, or rm -f")
        }
        if running, let pid = c.pid { sendSignal(pid, Signal.kill) }
        if isMounted {
            try Mounts.unmount(paths.merged, detach: true)
        }
        try finishRemoval(c.id)
    }

    /// Removes a container that nothing runs in or mounts any more, in an order that any step
    /// may fail in (a full disk) or be killed at and the next `rm -f` or `check --repair`
    /// finishes: the `removing` mark; the container's files (which gives back the room the
    /// database may need); its row; its directory.
    func finishRemoval(_ id: String) throws {
        let containers = try Directory.open(rootPath + "/containers")
        let name = Array(id.utf8)
        try inflight {
            if case .success(let dir) = containers.openDirectory(name, resolve: [.noSymlinks]) {
                let mark = Array(Engine.removingMarker.utf8)
                _ = try? dir.openFile(mark, flags: [.writeOnly, .create], mode: 0o600)
                for entry in try dir.entries() where entry != mark { try dir.removeTree(entry) }
            }
            try metadata.write { try $0.deleteContainer(id) }
            try containers.removeTree(name)
        }
    }

    /// Whether a removal of the container began and did not finish (its `removing` mark is there).
    public func isBeingRemoved(_ id: String) -> Bool {
        pathExists(containerPaths(id).root + "/" + Engine.removingMarker)
    }

    /// Whether a removal began and its command is gone (nobody holds the container's lease).
    func removalWasCutShort(_ id: String) throws -> Bool {
        guard isBeingRemoved(id) else { return false }
        let lease = try LayerLocks(store: self)
        defer { lease.unlockAll() }
        return try lease.tryExclusive(key: id)
    }

    /// The IDs of this store's containers.
    public func containerIDs() throws -> Set<String> {
        Set(try metadata.read { try $0.containers() }.map(\.id))
    }

    /// The containers, newest first: those running or mounted, or `all`.
    public func containers(all: Bool) throws -> [ContainerView] {
        // Read once for every container: the mount table, the tags, each process's cgroup.
        let mountPoints = MountTable.mountPoints()
        let (rows, tags) = try metadata.read { (try $0.containers(), try $0.allTags()) }
        var tagsByImage: [String: [String]] = [:]
        for t in tags { tagsByImage[t.imageID, default: []].append(t.name) }
        return rows.compactMap { r in
            let running = r.pid.map { isContainerProcess($0, id: r.id) } ?? false
            let mounted = driver.isMounted(containerPaths(r.id), recordedMounts: r.mountCount, mountPoints: mountPoints)
            // Without `all`, one that neither runs nor is mounted is passed over before its
            // changes are measured.
            guard all || running || mounted else { return nil }
            return view(r, running: running, mounted: mounted, tags: (tagsByImage[r.image.string] ?? []).sorted())
        }
    }

    /// One container with what it is doing (`inspect`).
    public func containerView(_ ref: String) throws -> ContainerView {
        let r = try container(ref)
        let running = r.pid.map { isContainerProcess($0, id: r.id) } ?? false
        let mounted = driver.isMounted(containerPaths(r.id), recordedMounts: r.mountCount, mountPoints: MountTable.mountPoints())
        return view(r, running: running, mounted: mounted, tags: try metadata.read { try $0.tags(ofImage: r.image.string) })
    }

    private func view(_ r: ContainerRecord, running: Bool, mounted: Bool, tags: [String]) -> ContainerView {
        let run = runState(r.id)
        // A monitor killed by SIGKILL writes no end: the cgroup tells that nothing runs.
        let exited = !running && run?.startedAt != nil
        let state: ContainerState = running ? .running : mounted ? .mounted : exited ? .exited : .created
        let paused = running && CgroupLayout.cached.map { Cgroup(layout: $0, id: r.id, parent: CgroupParent.forStore(root: rootPath)).isFrozen } == true
        return ContainerView(record: r, imageTags: tags, state: state, pid: running ? r.pid : nil,
                             sizeOfChanges: (try? sizeOfChanges(r.id)) ?? 0, run: run, command: command(r.id), paused: paused,
                             health: healthState(r.id))
    }

    /// Bytes of regular files a container changed: its upper dir as it is (overlay; no
    /// comparison with the layers needed), or the changed files of a vfs copy.
    func sizeOfChanges(_ id: String) throws -> Int64 {
        if let upper = driver.upperDirectory(containerPaths(id)) {
            return try Directory.open(upper).regularFileBytes()
        }
        return try changes(of: id).reduce(Int64(0)) { total, c in
            if case .entry(_, _, let st, _) = c.source, st.kind == .regular { return total.addingSaturating(Int64(st.size)) }
            return total
        }
    }

    /// What a container changed against its image, parents first.
    func changes(of id: String) throws -> [ChangedPath] {
        let c = try container(id)
        let paths = containerPaths(c.id)
        let layers = visibleLayers(try containerLowers(c))
        let view = MergedView(layers: try layers.map { try Directory.open($0.path) })
        if let upper = driver.upperDirectory(paths) {
            return try ChangeScanner.scanUpper(try Directory.open(upper), lower: view)
        }
        return try ChangeScanner.scanCopy(try Directory.open(paths.rootfs), lower: view)
    }

    /// `strata diff`: A, C and D lines as `docker diff` prints them; a deleted directory is one D.
    public func diff(_ ref: String) throws -> [ContainerChange] {
        try changes(of: try container(ref).id).map { ContainerChange(kind: $0.kind.rawValue, path: [UInt8(ascii: "/")] + $0.path) }
    }
}

extension Store {
    /// Records the pid of a running container (nil when it is gone).
    public func setPid(_ id: String, _ pid: Int32?) throws {
        // Beside it, the process's start time: what tells it from a later process of the same
        // pid where no cgroup does (rootless without a delegated cgroup).
        let file = Array(Store.processFileName.utf8)
        if let dir = try? Directory.open(containerPaths(id).root) {
            if let pid, let start = processStartTime(pid) {
                try? dir.writeFileAtomically(file, Array("\(pid) \(start)\n".utf8))
            } else if pid == nil {
                _ = dir.unlink(file)
            }
        }
        try metadata.write { try $0.setPid(id, pid) }
    }

    static let processFileName = "process"

    /// The image config of an image, parsed.
    public func imageConfig(_ id: Digest) throws -> ImageConfig {
        try JSONDocument.decode(ImageConfig.self, from: try blob(id), what: "config \(id)")
    }
}

extension Store {
    /// Writes the flattened rootfs of an image or a container (its image's layers, its init
    /// layer, its changes) into `rootfs`, a new directory.
    public func exportRootfs(of ref: String, to rootfs: String) throws -> (image: Digest, container: String?) {
        try createNewDirectory(rootfs)
        let target = try Directory.open(rootfs)
        if let c = try? container(ref) {
            let paths = containerPaths(c.id)
            var layers = visibleLayers(try containerLowers(c)).map(\.path).reversed().map { $0 }
            if let upper = driver.upperDirectory(paths) { layers.append(upper) } else { layers = [paths.rootfs] }
            for l in layers { try OverlayFormApplier().apply(layer: try Directory.open(l), onto: target) }
            return (c.image, c.id)
        }
        let image = try resolveImage(ref)
        for l in visibleLayers(try lowerLayers(image)).reversed() {
            try OverlayFormApplier().apply(layer: try Directory.open(l.path), onto: target)
        }
        return (image, nil)
    }
}

extension Store {
    /// Whether `pid` is still this container's process: a recorded pid can outlive a killed
    /// strata and be reused by an unrelated process, which must never be signalled. The
    /// container's processes are in its cgroup `strata/ID`.
    func isContainerProcess(_ pid: Int32, id: String) -> Bool {
        if CgroupLayout.cached != nil { return Store.inContainerCgroup(pid, id: id) }
        // No cgroup (rootless without a delegated one): the pid and its start time as recorded.
        guard let start = recordedStartTime(id, pid: pid) else { return false }
        return processStartTime(pid) == start
    }

    /// The start time recorded for the container's process `pid` when it started (nil when
    /// none is recorded for that pid).
    public func recordedStartTime(_ id: String, pid: Int32) -> UInt64? {
        guard pid > 0, let f = try? FDHandle.open(containerPaths(id).root + "/" + Store.processFileName, flags: [.readOnly, .noFollow]),
              let bytes = try? f.readAll(limit: 64, label: "process") else { return nil }
        let fields = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, Int32(fields[0]) == pid else { return nil }
        return UInt64(fields[1])
    }

    /// Whether `pid` is in the cgroup `…/ID` of a container.
    static func inContainerCgroup(_ pid: Int32, id: String) -> Bool {
        guard pid > 0, let f = try? FDHandle.open("/proc/\(pid)/cgroup", flags: .readOnly),
              let bytes = try? f.readAll(limit: 1 << 20, label: "cgroup") else { return false }
        // A byte search: String.contains goes through Foundation's locale-aware search.
        let needle = Array(("/" + id).utf8)
        guard bytes.count >= needle.count else { return false }
        return (0...(bytes.count - needle.count)).contains { i in bytes[i] == needle[0] && bytes[i..<(i + needle.count)].elementsEqual(needle) }
    }
}
