import FoundationEssentials
import StrataCore
import StrataDrivers
import StrataLayer
import StrataSystem

/// Any depth: overlayfs stacks at most 500 lower dirs. A chain deeper than that mounts with its
/// bottom layers flattened into one directory, made once and shared by every container of every
/// image whose chain starts the same way (docs/store-layout.md, "Any depth").
extension Store {
    /// Layers are flattened in whole blocks counted from the bottom: two images that share
    /// the lower part of their chains flatten the same prefix, so they share one directory.
    static let flattenBlock = 256

    /// How many of `visible` layers (top first) to flatten so that the rest, one flattened
    /// layer and a container's init layer fit in `limit`: 0 when they fit as they are.
    static func flattenCount(visible: Int, limit: Int = OverlayDriver.maxLowerLayers, block: Int = flattenBlock) -> Int {
        let room = limit - 1                // the init layer's place
        guard visible > room else { return 0 }
        let need = visible - room + 1       // these go, one flattened layer comes
        return min(visible, (need + block - 1) / block * block)
    }

    /// The lower layers a driver mounts for an image's `layers` (top first): the same layers
    /// when they fit; else the visible ones with the bottom ones replaced by their flattened
    /// layer, made here the first time. `locks` gets a shared lease on the flattened layer's
    /// top layer, which `gc` respects: hold it until the container using it is recorded.
    func mountable(_ layers: [LowerLayer], locks: LayerLocks? = nil) throws -> [LowerLayer] {
        // Only a driver with a layer limit mounts layers as they are (vfs copies them anyway).
        guard driver.maxLowerLayers != nil else { return layers }
        let visible = visibleLayers(layers)
        let count = Store.flattenCount(visible: visible.count)
        guard count > 0 else { return layers }
        let prefix = Array(visible.suffix(count))
        try locks?.lock(prefix[0].chainID, exclusive: false)
        let flat = try metadata.read({ try $0.flattened(prefix[0].chainID) }).flatMap { pathExists(flattenedPath($0)) ? $0 : nil }
            ?? (try makeFlattened(prefix))
        try ensureFlattenedLink(flat)
        return Array(visible.prefix(visible.count - count))
            + [LowerLayer(chainID: flat.topLayer, path: flattenedPath(flat), link: flat.link, opaqueRoot: false)]
    }

    /// ROOT/layers/CACHEID/diff of a flattened layer.
    func flattenedPath(_ f: FlattenedRecord) -> String { layerPath(cacheID: f.cacheID) }

    /// Applies `prefix` (top first) bottom first into a staging directory, regular files as
    /// hardlinks to the layers' own (layers never change), renames it into layers/ and records
    /// it. Two containers racing to make the same one: the first recorded wins, the other's goes.
    private func makeFlattened(_ prefix: [LowerLayer]) throws -> FlattenedRecord {
        let top = prefix[0].chainID
        let cacheID = Store.randomID()
        let stage = Array("flatten-\(cacheID)".utf8)
        logger.info("flattening the bottom \(prefix.count) layers up to \(top.digest.short) into one (overlayfs stacks at most \(OverlayDriver.maxLowerLayers))")
        return try inflight {
            try tmpDir.mkdirOrThrow(stage, mode: 0o700)
            let staged = try tmpDir.openDirectory(stage, resolve: [.noSymlinks]).get()
            try staged.mkdirOrThrow(Array("diff".utf8), mode: 0o755)
            let target = try staged.openDirectory(Array("diff".utf8), resolve: [.noSymlinks]).get()
            let applier = OverlayFormApplier(linkRegularFiles: true)
            do {
                for layer in prefix.reversed() { try applier.apply(layer: try Directory.open(layer.path), onto: target) }
            } catch let e as StrataError {
                try? tmpDir.removeTree(stage)
                throw e.context("cannot flatten the bottom \(prefix.count) layers of the chain up to \(top.digest.short)")
            }
            let createdAt = Timestamp.wholeSecondNow()
            try IndexFiles.write(IndexFiles.Flattened(topLayer: top, layerCount: prefix.count, createdAt: createdAt),
                                 as: IndexFiles.flattenedName, in: staged)
            try tmpDir.rename(stage, to: Array(cacheID.utf8), in: layersDir)
            let recorded = try metadata.write { tx in
                // A row whose directory is gone (moved away by `check --repair`) gives way.
                if let old = try tx.flattened(top), !pathExists(flattenedPath(old)) { try tx.deleteFlattened(top) }
                return try tx.insertFlattened(top: top, cacheID: cacheID, layerCount: prefix.count, createdAt: createdAt)
            }
            guard let recorded else { throw StrataError(.system, "the flattened layer of \(top.digest.short) was not recorded") }
            if recorded.cacheID != cacheID { try layersDir.removeTree(Array(cacheID.utf8)) }
            return recorded
        }
    }

    /// ROOT/l/F…: the short link the page-limited mount(2) form names the layer by.
    private func ensureFlattenedLink(_ f: FlattenedRecord) throws {
        let linkDir = try ensureDirectory("l")
        let name = Array(f.link.utf8), target = Store.linkTarget(cacheID: f.cacheID)
        if (try? linkDir.readlink(name)) == target { return }
        // Missing, or left by a flattened layer of the same link ID that is gone.
        _ = linkDir.unlink(name)
        try? linkDir.symlink(name, target: target)
    }

    /// Removes flattened layers no container's image has in its chain and no container being
    /// created holds (its lease is taken without waiting). They are a cache: the next
    /// container that needs one makes it again.
    func freeUnusedFlattened(into report: inout RemovalReport) throws {
        let rows = try metadata.read { try $0.flattenedLayers() }
        guard !rows.isEmpty else { return }
        let locks = try LayerLocks(store: self)
        defer { locks.unlockAll() }
        let free = try rows.filter { try locks.tryExclusive($0.topLayer) }
        let gone = try inflight {
            let gone = try metadata.write { tx in
                try free.filter { !(try tx.flattenedInUse($0.topLayer)) }.map { try tx.deleteFlattened($0.topLayer); return $0 }
            }
            for f in gone {
                if case .success(let links) = root.openDirectory(Array("l".utf8), resolve: [.noSymlinks]) {
                    _ = links.unlink(Array(f.link.utf8))
                }
                let removing = Array("\(f.cacheID)-removing".utf8)
                if (try? layersDir.rename(Array(f.cacheID.utf8), to: removing, in: layersDir)) != nil {
                    try layersDir.removeTree(removing)
                }
            }
            return gone
        }
        report.deletedFlattened += gone.map(\.topLayer.description)
    }
}
