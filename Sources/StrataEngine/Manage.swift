import FoundationEssentials
import StrataCore
import StrataFormats
import StrataSystem

/// One line of `strata history`.
public struct HistoryEntry: Codable, Sendable {
    public var created: String?
    public var createdBy: String?
    public var comment: String?
    public var emptyLayer: Bool
    /// The layer this entry made (nil for empty layers).
    public var chainID: String?
    public var diffID: String?
    public var size: Int64
}

/// What `rmi` and `gc` removed.
public struct RemovalReport: Codable, Sendable {
    public var untagged: [String] = []
    /// Cgroup directories of containers that are gone (filled in by the caller that knows cgroups).
    public var removedCgroups: [String] = []
    /// Containers whose network (namespace, veths, rules) was torn down because they no longer run.
    public var removedNetworks: [String] = []
    public var deletedImages: [String] = []
    public var deletedLayers: [String] = []
    /// Flattened layers (of chains deeper than overlayfs stacks) no container used, by top layer.
    public var deletedFlattened: [String] = []
    public var deletedBlobs: [String] = []
    public var bytesFreed: Int64 = 0
}

extension Store {
    /// The image's history, bottom first, each non-empty entry paired with its layer.
    public func history(_ id: Digest) throws -> [HistoryEntry] {
        let config = try JSONDocument.decode(ImageConfig.self, from: try blob(id), what: "config \(id)")
        let layers = try imageLayers(id)
        var entries: [HistoryEntry] = []
        var next = 0
        for h in config.history ?? [] {
            let empty = h.empty_layer ?? false
            var e = HistoryEntry(created: h.created, createdBy: h.created_by, comment: h.comment, emptyLayer: empty, size: 0)
            if !empty, next < layers.count {
                e.chainID = layers[next].chainID.description
                e.diffID = layers[next].diffID.description
                e.size = layers[next].size
                next += 1
            }
            entries.append(e)
        }
        // Layers the history does not mention (some tools write none).
        while next < layers.count {
            entries.append(HistoryEntry(created: nil, createdBy: nil, comment: nil, emptyLayer: false,
                                        chainID: layers[next].chainID.description, diffID: layers[next].diffID.description,
                                        size: layers[next].size))
            next += 1
        }
        return entries
    }

    /// Resolves a layer by full chainID or a unique prefix of it (with or without `sha256:`).
    public func resolveLayer(_ ref: String) throws -> LayerRecord {
        var hex = ref
        if hex.hasPrefix("sha256:") { hex = String(hex.dropFirst(7)) }
        guard !hex.isEmpty, hex.count <= 64, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
            throw StrataError(.notFound, "no layer \"\(ref)\" in the store; `strata layers` lists them")
        }
        let rows = try metadata.read { try $0.layers(chainIDPrefix: hex, limit: 2) }
        switch rows.count {
        case 0: throw StrataError(.notFound, "no layer \"\(ref)\" in the store; `strata layers` lists them")
        case 1: return rows[0]
        default: throw StrataError(.invalidArgument, "\"\(ref)\" matches several layers; give more of the chainID")
        }
    }

    /// Adds tag `target` (normalised) to the image `source` names; moves it if it named another.
    public func tag(_ source: String, _ target: String) throws {
        let id = try resolveImage(source)
        let name = try Reference.userTag(target)
        try metadata.write { try $0.setTag(name, imageID: id.string) }
        record(StoreEvent(type: "image", action: "tag", id: id.string, attributes: ["name": name]))
    }

    /// Removes images as `docker rmi` does: a tag that is not the image's last only untags;
    /// an ID (or the last tag) deletes the image, refused when it has several tags unless
    /// `force`. Layers no remaining image uses are freed at once.
    public func removeImages(_ refs: [String], force: Bool) throws -> RemovalReport {
        var report = RemovalReport()
        // Resolve first: the database is not re-entered from inside the write transaction.
        let targets: [(id: String, tag: String?)] = try refs.map { ref in
            let found: (String, String)? = try metadata.read { tx in
                for name in Store.tagCandidates(ref) { if let id = try tx.imageID(tag: name) { return (id, name) } }
                return nil
            }
            if let (id, name) = found { return (id, name) }
            return (try resolveImage(ref).string, nil)
        }
        try metadata.write { tx in
            for (id, tag) in targets {
                let byTag = tag != nil
                let normalized = tag
                let tags = try tx.tags(ofImage: id)
                if byTag, let normalized, tags.count > 1 {
                    try tx.removeTag(normalized)
                    report.untagged.append(normalized)
                    continue
                }
                if !byTag && tags.count > 1 && !force {
                    throw StrataError(.conflict, "image \(id.shortID) has several tags (\(tags.joined(separator: ", "))); remove them by name or use -f")
                }
                let users = try tx.containers(ofImage: id).map(\.name)
                if !users.isEmpty {
                    guard force else {
                        throw StrataError(.inUse, "image \(id.shortID) is used by container(s) \(users.joined(separator: ", ")); remove them first, or -f to untag it")
                    }
                    // As Docker: -f untags, and the image stays for the containers that use it.
                    report.untagged += tags
                    try tx.removeTags(ofImage: id)
                    continue
                }
                report.untagged += tags
                try tx.deleteImage(id)
                report.deletedImages.append(id)
            }
        }
        for name in report.untagged { record(StoreEvent(type: "image", action: "untag", id: "", attributes: ["name": name])) }
        for id in report.deletedImages { record(StoreEvent(type: "image", action: "delete", id: id)) }
        try freeUnused(into: &report)
        return report
    }

    /// Frees, at once, layers no image uses and blobs no image names (blobs only while no other
    /// strata runs): what `rmi` leaves behind and the first half of `gc`.
    func freeUnused(into report: inout RemovalReport) throws {
        try freeUnusedFlattened(into: &report)
        try inflight {
            try removeLayerDirectories(try freeUnreferencedLayers(), report: &report)
        }
        try removeUnreferencedBlobs(report: &report)
    }

    /// Removes blobs (configs, manifests) no image names any more. Only while no other strata
    /// process runs: a running load writes its blobs before it records its image.
    func removeUnreferencedBlobs(report: inout RemovalReport) throws {
        guard try lockExclusiveNow() else { return }
        defer { try? relock() }
        let referenced = try metadata.read { try $0.referencedBlobs() }
        for name in try blobsDir.entries() {
            let s = "sha256:" + name.display
            if referenced.contains(s) { continue }
            if let st = try blobsDir.lstat(name) { report.bytesFreed += Int64(st.size) }
            try blobsDir.removeTree(name)
            report.deletedBlobs.append(s)
        }
    }

    /// Layers no image uses, top-most first (children before their parents).
    func unreferencedLayers(_ tx: MetadataTransaction) throws -> [LayerRecord] {
        let layers = try tx.unreferencedLayers()
        let byChain = Dictionary(uniqueKeysWithValues: layers.map { ($0.chainID, $0) })
        // Depth order: a layer is deleted before its parent (the parent column references it).
        var depth: [ChainID: Int] = [:]
        func d(_ l: LayerRecord) -> Int {
            if let v = depth[l.chainID] { return v }
            let v = (l.parent.flatMap { byChain[$0] }.map(d) ?? 0) + 1
            depth[l.chainID] = v
            return v
        }
        for l in layers { _ = d(l) }
        return layers.sorted { depth[$0.chainID]! > depth[$1.chainID]! }
    }

    /// Deletes the rows of layers no image uses and no running load holds (their lease is
    /// taken without waiting; a busy layer is left for a later `gc`). Children go before their
    /// parents; a layer that still has a child row stays. Returns the layers deleted.
    func freeUnreferencedLayers(only: Set<ChainID>? = nil) throws -> [LayerRecord] {
        let candidates = try metadata.read { try unreferencedLayers($0) }.filter { only?.contains($0.chainID) ?? true }
        guard !candidates.isEmpty else { return [] }
        let locks = try LayerLocks(store: self)
        defer { locks.unlockAll() }
        let free = try candidates.filter { try locks.tryExclusive($0.chainID) }
        return try metadata.write { tx in
            let still = Set(try unreferencedLayers(tx).map(\.chainID))
            var deleted: [LayerRecord] = []
            for l in free where still.contains(l.chainID) {
                if try tx.deleteLayerIfLeaf(l.chainID) { deleted.append(l) }
            }
            return deleted
        }
    }

    /// Removes layer directories whose rows are gone: renamed to `*-removing` first, so a crash
    /// midway leaves a recognisable orphan that the next start sweeps (docs/store-layout.md).
    func removeLayerDirectories(_ layers: [LayerRecord], report: inout RemovalReport) throws {
        // (The rows are already gone: a kill here leaves directories the next start sweeps;
        // the `-removing` rename makes them recognisable meanwhile.)
        for l in layers {
            let name = Array(l.cacheID.utf8)
            let removing = Array("\(l.cacheID)-removing".utf8)
            if (try? layersDir.rename(name, to: removing, in: layersDir)) != nil {
                try layersDir.removeTree(removing)
            }
            report.deletedLayers.append(l.chainID.description)
            report.bytesFreed += l.size
        }
    }

    /// Removes what nothing references: layers no image uses, blobs no image names, layer
    /// directories and staging the database does not know (when no other strata runs).
    public func garbageCollect() throws -> RemovalReport {
        var report = RemovalReport()
        try freeUnused(into: &report)
        if try lockExclusiveNow() {
            defer { try? relock() }
            try sweep()
        }
        // What `check --repair` moved out of the way.
        if case .success(let broken) = root.openDirectory(Array("broken".utf8), resolve: [.noSymlinks]) {
            for name in try broken.entries() { try broken.removeTree(name) }
        }
        return report
    }
}
