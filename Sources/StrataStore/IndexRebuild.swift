import Dispatch
import FoundationEssentials
import StrataCore
import StrataFormats
import StrataSystem

/// What rebuilding the database from the store's files found and did.
public struct IndexRebuildReport: Codable, Sendable {
    public var layers = 0, flattened = 0, images = 0, tags = 0, containers = 0
    /// Files that could not be used, each with why; what they describe is left on disk for
    /// `check` to report.
    public var skipped: [String] = []
    public var seconds = 0.0
}

extension Store {
    /// The one line every command but `check` answers a damaged index with.
    static func damagedIndex(_ root: String, _ why: String) -> StrataError {
        StrataError(.storeDamaged, "the store at \(root) cannot be used: \(why); `strata check --repair` rebuilds its database from the store's files")
    }

    /// Whether the database describes the store's files; nil when it does, else why not. An
    /// existing store from before the files were written gets them here, once; an images.json
    /// behind the database is brought up to it. Runs while the store is being opened (byte 0
    /// of ROOT/lock held).
    func indexHealth() throws -> String? {
        // The file first: it is written after its generation is committed, so a database read
        // afterwards is at least as new unless it lost something (read the other way round,
        // a command committing in between would look like a loss).
        var fileGeneration: Int64?
        var fileDamaged = false
        do { fileGeneration = try IndexFiles.generation(in: root) } catch {
            fileDamaged = true
        }
        let (files, empty, generation) = try metadata.read { (try $0.setting("files"), try $0.isEmpty(), try $0.generation()) }
        if files == nil {
            // A database from before the index files, or one that never saw them: trusted only
            // where there are none (an older copy put back over a newer store must not be).
            if fileGeneration != nil || fileDamaged {
                return empty ? "its database is empty or missing, but the store holds layers, images or containers"
                             : "its database is older than the store's files (it has never recorded them)"
            }
            guard empty else {
                try writeIndexFiles()
                return nil
            }
            if hasEntries(layersDir) || hasEntries(rootPath + "/containers") {
                return "its database is empty or missing, but the store holds layers, images or containers"
            }
            try metadata.write { try $0.setSetting("files", "1") }
            return nil
        }
        if fileDamaged {
            // The database is whole: images.json is written again from it (the damaged one kept).
            _ = try? moveAside(IndexFiles.imagesName, in: root, to: "broken")
            try? metadata.syncImagesFile()
            return nil
        }
        if let fileGeneration, fileGeneration > generation {
            return "its database is behind the store's files (it is at generation \(generation), images.json at \(fileGeneration))"
        }
        if (fileGeneration ?? 0) < generation { try? metadata.syncImagesFile() }
        return nil
    }

    private func hasEntries(_ dir: Directory) -> Bool { ((try? dir.entries()) ?? []).isEmpty == false }
    private func hasEntries(_ path: String) -> Bool { (try? Directory.open(path)).map(hasEntries) ?? false }

    /// Writes layer.json, flattened.json and container.json for the rows of a store made before
    /// they existed, then images.json.
    private func writeIndexFiles() throws {
        let (layers, flattened, containers) = try metadata.read { (try $0.layers(), try $0.flattenedLayers(), try $0.containers()) }
        for l in layers {
            guard case .success(let dir) = layersDir.openDirectory(Array(l.cacheID.utf8), resolve: [.noSymlinks]) else { continue }
            try dir.writeFileAtomically(IndexFiles.layerName, try IndexFiles.encode(IndexFiles.Layer(l)))
        }
        for f in flattened {
            guard case .success(let dir) = layersDir.openDirectory(Array(f.cacheID.utf8), resolve: [.noSymlinks]) else { continue }
            try dir.writeFileAtomically(IndexFiles.flattenedName,
                                        try IndexFiles.encode(IndexFiles.Flattened(topLayer: f.topLayer, layerCount: f.layerCount, createdAt: f.createdAt)))
        }
        for c in containers {
            guard let dir = try? Directory.open(containerPaths(c.id).root) else { continue }
            try dir.writeFileAtomically(IndexFiles.containerName, try IndexFiles.encode(IndexFiles.Container(c)))
        }
        try metadata.write { tx in
            try tx.setSetting("files", "1")
            tx.markChanged()
        }
    }

    /// Rebuilds the database from the store's files (`check --repair` on a damaged index): the
    /// layers from their layer.json, the images and tags from images.json (or, without it,
    /// every config blob whose layers are all there, untagged), the containers from their
    /// container.json. No layer or container that can be used is moved; a layer directory or
    /// container the files do not describe well enough (no or a damaged record, a parent or
    /// image that is gone) is moved to ROOT/orphans/, which nothing empties, and reported.
    public func rebuildIndex() throws -> IndexRebuildReport {
        let started = DispatchTime.now().uptimeNanoseconds
        var report = IndexRebuildReport()
        try quiesced {
            // Another `check --repair` may have rebuilt it meanwhile.
            guard try indexHealth() != nil else { return }
            var orphans: [(dir: Directory, name: PathBytes, kind: String, why: String)] = []
            // Layers, in parent order. Only directories named as layers are (not `-removing`
            // leftovers); of two copies of one chainID, one with its files, then the older.
            var byChain: [ChainID: LayerRecord] = [:]
            var flattened: [(cacheID: String, file: IndexFiles.Flattened)] = []
            for name in try layersDir.entries().sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                guard name.count == 64, name.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
                      case .success(let dir) = layersDir.openDirectory(name, resolve: [.noSymlinks]) else { continue }
                do {
                    if let f = try IndexFiles.read(IndexFiles.Layer.self, IndexFiles.layerName, in: dir, what: "layers/\(name.display)/layer.json") {
                        let r = try f.record(cacheID: name.display)
                        let whole = (try? dir.lstat(Store.diffName)) != nil
                        if let other = byChain[r.chainID] {
                            let otherWhole = (try? layersDir.lstat(Array("\(other.cacheID)/diff".utf8))) != nil
                            if otherWhole && (!whole || other.createdAt <= r.createdAt) {
                                report.skipped.append("layers/\(name.display): a second copy of layer \(r.chainID.digest.short) (left for `gc`)")
                                continue
                            }
                            report.skipped.append("layers/\(other.cacheID): a second copy of layer \(r.chainID.digest.short) (left for `gc`)")
                        }
                        byChain[r.chainID] = r
                    } else if let f = try IndexFiles.read(IndexFiles.Flattened.self, IndexFiles.flattenedName, in: dir,
                                                          what: "layers/\(name.display)/flattened.json") {
                        flattened.append((name.display, f))
                    } else {
                        orphans.append((layersDir, name, "layers", "no layer.json"))
                    }
                } catch let e as StrataError {
                    orphans.append((layersDir, name, "layers", e.message))
                }
            }
            // Parents before children: from the bottom layers up, breadth first.
            var children: [ChainID: [LayerRecord]] = [:]
            for l in byChain.values { if let p = l.parent { children[p, default: []].append(l) } }
            var ordered = byChain.values.filter { $0.parent == nil }.sorted { $0.chainID.description < $1.chainID.description }
            var next = 0
            while next < ordered.count {
                ordered += (children[ordered[next].chainID] ?? []).sorted { $0.chainID.description < $1.chainID.description }
                next += 1
            }
            let placed = Set(ordered.map(\.chainID))
            for l in byChain.values where !placed.contains(l.chainID) {
                orphans.append((layersDir, Array(l.cacheID.utf8), "layers", "its parent layer \(l.parent?.digest.short ?? "") is not in the store"))
            }
            let links = shortLinks()

            // Images and tags.
            var doc: IndexFiles.Images?
            // Generations only go up: from the file's head even when the rest is damaged.
            let headGeneration: Int64 = (try? IndexFiles.generation(in: root)) ?? 0
            do { doc = try IndexFiles.read(IndexFiles.Images.self, IndexFiles.imagesName, in: root, what: "images.json") } catch let e as StrataError {
                let aside = (try? moveAside(IndexFiles.imagesName, in: root, to: "broken")) ?? "where it was"
                report.skipped.append("\(e.message) (kept in \(aside)); images are taken from their config blobs, untagged")
            }
            let entries = try doc?.images ?? imagesFromBlobs(having: placed)
            var images: [(ImageRecord, [ChainID], [String], [String])] = []
            for entry in entries {
                do {
                    let id = try Digest(parsing: entry.id)
                    let config = try JSONDocument.decode(ImageConfig.self, from: try blob(id), what: "config \(id.short)")
                    var chain: [ChainID] = []
                    for d in config.rootfs.diff_ids { chain.append(ChainID.of(parent: chain.last, diffID: d)) }
                    if let missing = chain.first(where: { !placed.contains($0) }) {
                        report.skipped.append("image \(id.short): its layer \(missing.digest.short) is not in the store")
                        continue
                    }
                    let manifest = try entry.manifest.map(Digest.init(parsing:)).flatMap { m in (try? blobsDir.lstat(Array(m.hex.utf8))) != nil ? m : nil }
                    let size = chain.reduce(Int64(0)) { $0 + (byChain[$1]?.size ?? 0) }
                    images.append((ImageRecord(id: id, topLayer: chain.last, manifestDigest: manifest, created: config.created, os: config.os,
                                               architecture: config.architecture, size: size, loadedAt: Timestamp.date(entry.loadedAt) ?? Date()),
                                   chain, entry.tags, entry.repoDigests ?? []))
                } catch let e as StrataError {
                    report.skipped.append("image \(entry.id.shortID): \(e.message)")
                }
            }
            let imageIDs = Set(images.map(\.0.id))

            // Containers.
            var containers: [ContainerRecord] = []
            if let dir = try? Directory.open(rootPath + "/containers") {
                var names: Set<String> = []
                for name in try dir.entries().sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                    guard case .success(let c) = dir.openDirectory(name, resolve: [.noSymlinks]) else { continue }
                    // A removal cut short: nothing to keep (the sweep finishes it).
                    if (try? c.lstat(Array("removing".utf8))) != nil {
                        report.skipped.append("containers/\(name.display): its removal had begun (left for `gc`)")
                        continue
                    }
                    do {
                        guard let f = try IndexFiles.read(IndexFiles.Container.self, IndexFiles.containerName, in: c,
                                                          what: "containers/\(name.display)/container.json") else {
                            orphans.append((dir, name, "containers", "no container.json"))
                            continue
                        }
                        let image = try Digest(parsing: f.image)
                        guard f.id == name.display, let created = Timestamp.date(f.createdAt) else {
                            orphans.append((dir, name, "containers", "its container.json names another container or time"))
                            continue
                        }
                        guard imageIDs.contains(image) else {
                            orphans.append((dir, name, "containers", "its image \(f.image.shortID) is not in the store"))
                            continue
                        }
                        guard names.insert(f.name).inserted else {
                            orphans.append((dir, name, "containers", "another container is named \(f.name)"))
                            continue
                        }
                        containers.append(ContainerRecord(id: f.id, name: f.name, image: image, driver: f.driver, createdAt: created))
                    } catch let e as StrataError {
                        orphans.append((dir, name, "containers", e.message))
                    }
                }
            }
            // What cannot be recorded is kept where nothing sweeps or collects it.
            for o in orphans {
                do {
                    let to = try moveAside(o.name, in: o.dir, to: "orphans/\(o.kind)")
                    report.skipped.append("\(o.kind)/\(o.name.display): \(o.why); moved to \(to), which strata never empties")
                } catch let e as StrataError {
                    report.skipped.append("\(o.kind)/\(o.name.display): \(o.why); could not be moved aside: \(e.message)")
                }
            }

            try metadata.write { tx in
                try tx.clearForRebuild()
                try tx.setSetting("files", "1")
                try tx.setSetting("generation", String(max(doc?.generation ?? 0, headGeneration)))
                if let driver = doc?.driver ?? containers.first?.driver { try tx.setSetting("driver", driver) }
                for l in ordered {
                    try tx.insertLayer(l)
                    if let id = links[l.cacheID] { try tx.setLinkID(l.chainID, id) }
                }
                for (cacheID, f) in flattened {
                    guard let top = try? ChainID(parsing: f.topLayer), placed.contains(top), let id = links[cacheID],
                          let created = Timestamp.date(f.createdAt) else {
                        report.skipped.append("layers/\(cacheID): a flattened layer whose top layer or link is gone (made again when needed)")
                        continue
                    }
                    try tx.insertFlattened(FlattenedRecord(topLayer: top, cacheID: cacheID, layerCount: f.layerCount, linkID: id, createdAt: created))
                    report.flattened += 1
                }
                for (image, chain, tags, repoDigests) in images {
                    try tx.insertImage(image, chain: chain)
                    for t in tags { try tx.setTag(t, imageID: image.id.string) }
                    for rd in repoDigests {
                        guard let at = rd.lastIndex(of: "@"), (try? Digest(parsing: String(rd[rd.index(after: at)...]))) != nil else { continue }
                        try tx.setRepoDigest(image.id.string, repository: String(rd[..<at]), digest: String(rd[rd.index(after: at)...]))
                    }
                    report.tags += tags.count
                }
                // How many `mount`s held a rootfs is not in any file: one if it is mounted.
                let mounts = MountTable.mountPoints()
                for c in containers {
                    try tx.insertContainer(c)
                    if mounts.contains(containerPaths(c.id).merged) { try tx.countMounts(c.id, count: 1) }
                }
            }
            report.layers = ordered.count
            report.images = images.count
            report.containers = containers.count
        }
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        indexProblem = nil
        return report
    }

    /// Link IDs by cache ID, from the short links under ROOT/l (`ID -> ../layers/CACHEID/diff`).
    private func shortLinks() -> [String: Int64] {
        guard let dir = try? Directory.open(rootPath + "/l"), let names = try? dir.entries() else { return [:] }
        var out: [String: Int64] = [:]
        for name in names {
            guard let target = try? dir.readlink(name) else { continue }
            let parts = target.split(separator: UInt8(ascii: "/"))
            guard parts.count == 4, parts[1].elementsEqual("layers".utf8) else { continue }
            let text = name.display
            let id = text.hasPrefix("F") ? Int64(text.dropFirst(), radix: 36) : Int64(text, radix: 36)
            if let id { out[String(decoding: parts[2], as: UTF8.self)] = id }
        }
        return out
    }

    /// Without images.json: every config blob whose layers are all in `layers`, untagged, with a
    /// manifest blob that names it.
    private func imagesFromBlobs(having layers: Set<ChainID>) throws -> [IndexFiles.Images.Image] {
        var configs: [String] = []
        var manifests: [String: String] = [:]
        for name in try blobsDir.entries() {
            guard let bytes = try? blobsDir.readFile(name, limit: 4 << 20) else { continue }
            let digest = "sha256:" + name.display
            if let m = try? JSONDocument.decode(Manifest.self, from: bytes, what: digest) {
                manifests[m.config.digest.string] = digest
            } else if let c = try? JSONDocument.decode(ImageConfig.self, from: bytes, what: digest), !c.rootfs.diff_ids.isEmpty {
                var chain: ChainID?
                for d in c.rootfs.diff_ids { chain = ChainID.of(parent: chain, diffID: d) }
                if let chain, layers.contains(chain) { configs.append(digest) }
            }
        }
        return configs.map { IndexFiles.Images.Image(id: $0, manifest: manifests[$0], loadedAt: Timestamp.now(), tags: []) }
    }
}
