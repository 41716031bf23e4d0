import StrataArchive
import StrataCore
import StrataFormats
import StrataLayer
import StrataSystem

/// One thing `strata check` found wrong: what, what is wrong with it, and what to do.
public struct CheckProblem: Codable, Sendable, CustomStringConvertible {
    /// What can be mended, and how (`check --repair`).
    public enum Repair: Codable, Sendable, Equatable {
        /// The layer's files (in layers/CACHEID) differ from its tar, or are gone: move them
        /// away, drop its images.
        case brokenLayer(chainID: String, cacheID: String)
        /// A directory in layers/ no row names.
        case strayLayerDirectory(name: String)
        /// A blob whose bytes do not hash to its name.
        case corruptBlob(digest: String)
        /// An image whose config is gone or unreadable, or whose layers are not all there.
        case brokenImage(id: String)
        /// An image whose manifest blob is gone: the image stays, the manifest is forgotten.
        case missingManifest(imageID: String)
        /// A container whose directories are gone.
        case brokenContainer(id: String)
        /// A container whose removal began and did not finish: finish it.
        case halfRemovedContainer(id: String)
    }

    public var subject: String
    public var problem: String
    public var advice: String
    public var repair: Repair?

    /// A problem: what it is about, what is wrong, what to do, and how `--repair` mends it (if it can).
    public init(subject: String, problem: String, advice: String = "", repair: Repair? = nil) {
        self.subject = subject; self.problem = problem; self.advice = advice; self.repair = repair
    }

    public var description: String { advice.isEmpty ? "\(subject): \(problem)" : "\(subject): \(problem); \(advice)" }
}

/// What `check` looked at.
public struct CheckSummary: Codable, Sendable {
    public var layers = 0, images = 0, blobs = 0, containers = 0, volumes = 0
    /// Empty counts.
    public init() {}
}

extension Store {
    static let repairAdvice = "`strata check --repair` moves it out of the way; then load or pull the image again"

    /// Verifies the store: every layer rebuilds to its diffID and its directory holds exactly
    /// what its tar makes; every blob hashes to its name; every image has its config, manifest
    /// and layers; every container its directories; no layer directory is unknown; no mount is
    /// left. `progress` sees one `ok` line per layer.
    public func check(progress: (String) -> Void = { _ in }) throws -> [CheckProblem] {
        var summary = CheckSummary()
        return try check(summary: &summary, progress: progress)
    }

    /// Checks every layer, blob, image and container, filling `summary`; `progress` hears each layer checked.
    public func check(summary: inout CheckSummary, progress: (String) -> Void = { _ in }) throws -> [CheckProblem] {
        try check(summary: &summary, progress: progress) { _ in }
    }

    /// Checks, then mends what was found (see `repair`) while the store is still quiet: nothing
    /// another command does meanwhile is taken for a problem or undone.
    public func checkAndRepair(summary: inout CheckSummary, force: Bool,
                               progress: (String) -> Void = { _ in }) throws -> (found: [CheckProblem], report: RepairReport) {
        var report = RepairReport()
        let found = try check(summary: &summary, progress: progress) { problems in
            if !problems.isEmpty { report = try repair(problems, force: force) }
        }
        return (found, report)
    }

    /// The two halves of a check. The costly one (hashing every layer and blob) runs beside
    /// other commands and may see their work half-done; the second, under `quiesced` (no
    /// command between changing files and recording them), looks at names, rows, images and
    /// containers in one consistent view and keeps only the costly findings that still hold
    /// there. `quiet` runs inside it with the problems.
    private func check(summary: inout CheckSummary, progress: (String) -> Void,
                       quiet: ([CheckProblem]) throws -> Void) throws -> [CheckProblem] {
        let before = try allLayers()
        let layerProblems = try checkLayerContents(before, progress: progress)
        let hashed = try hashBlobs()
        return try quiesced {
            let layers = try allLayers()
            let byChain = Dictionary(uniqueKeysWithValues: layers.map { ($0.chainID.description, $0.cacheID) })
            // A layer removed or replaced since it was read is not a problem of this store.
            var problems = layerProblems.filter { p in
                guard case .brokenLayer(let c, let cacheID)? = p.repair else { return true }
                return byChain[c] == cacheID
            }
            problems += try checkLayerNames(layers)
            let blobs = try blobNames()
            let corrupt = hashed.filter { blobs.contains($0.key) && !blobHashes($0.key) }
            problems += corrupt.sorted { $0.key < $1.key }.map(\.value)
            problems += try checkImages(layers, present: blobs, corrupt: Set(corrupt.keys))
            problems += try checkContainers()
            let (volumeProblems, volumeCount) = try checkVolumes()
            problems += volumeProblems
            summary = CheckSummary()
            summary.volumes = volumeCount
            summary.layers = layers.count
            summary.blobs = blobs.count
            (summary.images, summary.containers) = try metadata.read { (try $0.imageCount(), try $0.containerCount()) }
            try quiet(problems)
            return problems
        }
    }

    /// Each layer's files against its tar (the costly part: every file is read).
    private func checkLayerContents(_ layers: [LayerRecord], progress: (String) -> Void) throws -> [CheckProblem] {
        var problems: [CheckProblem] = []
        let usedBy = try imagesByLayer()
        for layer in layers {
            if let why = try layerProblem(layer) {
                let users = usedBy[layer.chainID.description] ?? []
                let subject = "layer \(layer.chainID.digest.short)" + (users.isEmpty ? "" : " (\(users.sorted().joined(separator: ", ")))")
                problems.append(CheckProblem(subject: subject, problem: why, advice: Store.repairAdvice,
                                             repair: .brokenLayer(chainID: layer.chainID.description, cacheID: layer.cacheID)))
            } else {
                progress("layer \(layer.chainID): ok" + (layer.journal == .raw ? " (raw tar kept: \(layer.journalNote ?? "journal not exact"))" : ""))
            }
        }
        return problems
    }

    /// Each layer's parent is there; every directory in layers/ is named by a row.
    private func checkLayerNames(_ layers: [LayerRecord]) throws -> [CheckProblem] {
        var problems: [CheckProblem] = []
        let known = Set(layers.map(\.cacheID)).union(try metadata.read { try $0.flattenedLayers() }.map(\.cacheID))
        let chains = Set(layers.map(\.chainID))
        for layer in layers {
            if let p = layer.parent, !chains.contains(p) {
                problems.append(CheckProblem(subject: "layer \(layer.chainID.digest.short)", problem: "its parent layer \(p.digest.short) is not in the store",
                                             advice: Store.repairAdvice, repair: .brokenLayer(chainID: layer.chainID.description, cacheID: layer.cacheID)))
            }
        }
        for name in try layersDir.entries() where !known.contains(name.display) {
            problems.append(CheckProblem(subject: "directory layers/\(name.display)", problem: "no layer in the database names it",
                                         advice: "`strata check --repair` moves it out of the way", repair: .strayLayerDirectory(name: name.display)))
        }
        return problems
    }

    /// The digests of the blobs in blobs/.
    private func blobNames() throws -> Set<String> {
        Set(try blobsDir.entries().map { "sha256:" + $0.display })
    }

    /// Hashes every blob; those whose bytes do not match their names, with the problem. A blob
    /// removed while this runs is passed over.
    private func hashBlobs() throws -> [String: CheckProblem] {
        var corrupt: [String: CheckProblem] = [:]
        for name in try blobsDir.entries() {
            let digest = "sha256:" + name.display
            guard let got = blobDigest(digest), got.string != digest else { continue }
            corrupt[digest] = CheckProblem(subject: "blob \(digest.shortID)", problem: "its bytes hash to \(got.short), not to its name",
                                           advice: Store.repairAdvice, repair: .corruptBlob(digest: digest))
        }
        return corrupt
    }

    /// What a blob's bytes hash to; nil if it is gone.
    private func blobDigest(_ digest: String) -> Digest? {
        let name = Array(digest.dropFirst("sha256:".count).utf8)
        guard let f = try? blobsDir.openFile(name, flags: .readOnly), let st = try? f.stat() else { return nil }
        let h = HashingSource(FileRangeSource(handle: f, offset: 0, length: Int64(st.size), label: "blobs/sha256/\(name.display)"))
        guard (try? h.drain()) != nil else { return nil }
        return h.finalize()
    }

    /// Whether a blob still hashes to its name (a second look, in the quiet half).
    private func blobHashes(_ digest: String) -> Bool { blobDigest(digest)?.string == digest }

    /// Each image: config and manifest there, layers as the config lists them.
    private func checkImages(_ layers: [LayerRecord], present: Set<String>, corrupt: Set<String>) throws -> [CheckProblem] {
        var problems: [CheckProblem] = []
        let (images, tags) = try metadata.read { (try $0.images(), try $0.allTags()) }
        let byChain = Dictionary(uniqueKeysWithValues: layers.map { ($0.chainID.description, $0) })
        for image in images {
            let id = image.id.string
            let names = tags.filter { $0.imageID == id }.map(\.name)
            let subject = "image \(id.shortID)" + (names.isEmpty ? "" : " (\(names.sorted().joined(separator: ", ")))")
            if !present.contains(id) || corrupt.contains(id) {
                problems.append(CheckProblem(subject: subject, problem: "its config blob is \(corrupt.contains(id) ? "corrupt" : "missing")",
                                             advice: Store.repairAdvice, repair: .brokenImage(id: id)))
                continue
            }
            do {
                let config = try JSONDocument.decode(ImageConfig.self, from: try blob(try Digest(parsing: id)), what: "config")
                let chain = try metadata.read { try $0.chain(ofImage: image.id) }
                if let missing = chain.first(where: { byChain[$0] == nil }) {
                    problems.append(CheckProblem(subject: subject, problem: "its layer \(missing.shortID) is not in the store",
                                                 advice: Store.repairAdvice, repair: .brokenImage(id: id)))
                } else if chain.compactMap({ byChain[$0]?.diffID }) != config.rootfs.diff_ids {
                    problems.append(CheckProblem(subject: subject, problem: "its layers do not match the config's diff_ids",
                                                 advice: Store.repairAdvice, repair: .brokenImage(id: id)))
                }
            } catch let e as StrataError {
                problems.append(CheckProblem(subject: subject, problem: e.message, advice: Store.repairAdvice, repair: .brokenImage(id: id)))
            }
            if let m = image.manifestDigest?.string, !present.contains(m) {
                problems.append(CheckProblem(subject: subject, problem: "its manifest blob \(m.shortID) is missing",
                                             advice: "`strata check --repair` forgets it (save writes a new one)", repair: .missingManifest(imageID: id)))
            }
        }

        return problems
    }

    /// Each container's directories; mounts left under the store.
    private func checkContainers() throws -> [CheckProblem] {
        var problems: [CheckProblem] = []
        let rows = try metadata.read { try $0.containers() }
        for r in rows {
            let id = r.id, name = r.name
            let paths = containerPaths(id)
            if try removalWasCutShort(id) {
                problems.append(CheckProblem(subject: "container \(name)", problem: "its removal began and did not finish",
                                             advice: "`strata rm -f \(name)` or `strata check --repair` finishes it",
                                             repair: .halfRemovedContainer(id: id)))
                continue
            }
            let needed = driver.essentialDirectories(paths)
            if let gone = needed.first(where: { !pathExists($0) }) {
                problems.append(CheckProblem(subject: "container \(name)", problem: "\(gone) is gone",
                                             advice: "`strata check --repair --force` removes the container", repair: .brokenContainer(id: id)))
            }
        }
        let counted = Dictionary(uniqueKeysWithValues: rows.map { ($0.id, ($0.mountCount, $0.pid)) })
        let prefix = rootPath + "/containers/"
        for point in MountTable.mountPoints() where point.hasPrefix(prefix) && point.hasSuffix("/merged") {
            let id = String(point.dropFirst(prefix.count).dropLast("/merged".count))
            if let (count, pid) = counted[id] {
                let running = pid.map { isContainerProcess($0, id: id) } ?? false
                if count == 0 && !running {
                    problems.append(CheckProblem(subject: "container \(id.prefix(12))", problem: "mounted at \(point) though nothing uses it",
                                                 advice: "`strata umount -f \(id.prefix(12))` unmounts it"))
                }
            } else {
                problems.append(CheckProblem(subject: "mount \(point)", problem: "left by a container that no longer exists",
                                             advice: "`strata gc` unmounts it"))
            }
        }
        return problems
    }

    /// Each volume's record and contents; volumes a container's spec names that are gone.
    /// Nothing here is repaired: a volume holds a user's data, and only `volume rm` removes it.
    private func checkVolumes() throws -> ([CheckProblem], Int) {
        var problems: [CheckProblem] = []
        let (records, damaged) = try volumes()
        for name in damaged {
            problems.append(CheckProblem(subject: "volume \(name)", problem: "its volume.json is missing or damaged",
                                         advice: "its files are in \(rootPath)/volumes/\(name); `strata volume rm \(name)` removes it"))
        }
        for r in records where !pathExists(volumeDataPath(r.name)) {
            problems.append(CheckProblem(subject: "volume \(r.name)", problem: "its _data directory is gone",
                                         advice: "`strata volume rm \(r.name)` removes it"))
        }
        let present = Set(records.map(\.name) + damaged)
        for r in try metadata.read({ try $0.containers() }) {
            guard let spec = try? spec(r.id) else { continue }
            for m in spec.mounts where m.type == "bind" {
                guard let name = m.source.flatMap(volumeName(ofDataPath:)), !present.contains(name) else { continue }
                problems.append(CheckProblem(subject: "container \(r.name)", problem: "its volume \(name) (at \(m.destination)) is gone",
                                             advice: "`strata volume create \(name)` makes an empty one; or remove the container"))
            }
        }
        return (problems, records.count)
    }

    /// Why a layer's directory does not hold its tar, or nil.
    func layerProblem(_ layer: LayerRecord) throws -> String? {
        guard case .success(let dir) = layersDir.openDirectory(Array("\(layer.cacheID)/diff".utf8), resolve: [.noSymlinks]) else {
            return "its directory layers/\(layer.cacheID)/diff is gone"
        }
        do {
            let got = try streamLayerTar(layer) { _ in }
            if got != layer.diffID {
                return "its files rebuild to \(got.digest.short), not to its diffID: a file was changed on disk"
            }
            let label = "layer \(layer.chainID.digest.short)"
            let layerDir = try layersDir.openDirectory(Array(layer.cacheID.utf8), resolve: [.noSymlinks]).get()
            let shape: any ChunkSource
            if layer.journal == .raw {
                let f = try layerDir.openFile(Store.rawTarName, flags: .readOnly)
                shape = FileRangeSource(handle: f, offset: 0, length: Int64(try f.stat().size), label: label)
            } else {
                shape = try JournalShape(journal: try layerDir.openFile(Store.journalName, flags: .readOnly), label: label)
            }
            let differences = try LayerTree.differences(dir, expected: try LayerTree.expected(from: shape, label: label))
            if !differences.isEmpty { return differences.joined(separator: "; ") }
        } catch let e as StrataError {
            return e.message.replacingOccurrences(of: "layer \(layer.chainID): ", with: "")
        }
        return nil
    }

    /// Image names (tags, else short IDs) by the chainIDs of the layers they use.
    func imagesByLayer() throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        for use in try metadata.read({ try $0.imageLayerUses() }) {
            out[use.chainID, default: []].append(use.tag ?? use.imageID.shortID)
        }
        return out.mapValues { Array(Set($0)) }
    }

    /// What `check --repair` did.
    public struct RepairReport: Codable, Sendable {
        public var actions: [String] = []
        public var left: [String] = []
    }

    /// Mends what `check` found: broken layers are moved to ROOT/broken/ (never deleted; `gc`
    /// removes them) and the images that use them are removed, so the next load brings them
    /// back; images a container uses are untagged and kept with their containers (removed with
    /// `force`). A good layer is never removed, except as `gc` would: unused by any image.
    public func repair(_ problems: [CheckProblem], force: Bool) throws -> RepairReport {
        var report = RepairReport()
        var brokenImages: Set<String> = []
        var brokenLayers: [LayerRecord] = []
        for p in problems {
            switch p.repair {
            case .brokenLayer(let c, _)?:
                if let l = try layer(try ChainID(parsing: c)), !brokenLayers.contains(where: { $0.chainID == l.chainID }) {
                    brokenLayers.append(l)
                    let users = try metadata.read { try $0.images(usingLayer: c) }
                    brokenImages.formUnion(users)
                }
            case .brokenImage(let id)?: brokenImages.insert(id)
            case .corruptBlob(let d)?:
                try blobsDir.removeTree(Array(d.dropFirst(7).utf8))
                report.actions.append("removed corrupt blob \(d)")
                if let digest = try? Digest(parsing: d), try metadata.read({ try $0.image(digest) }) != nil { brokenImages.insert(d) }
                try metadata.write { try $0.forgetManifest(digest: d) }
            case .missingManifest(let id)?:
                try metadata.write { try $0.forgetManifest(ofImage: id) }
                report.actions.append("forgot the missing manifest of image \(id.shortID)")
            case .strayLayerDirectory(let name)?:
                let to = try moveAside(Array(name.utf8), in: layersDir, to: "broken")
                report.actions.append("moved stray directory layers/\(name) to \(to)")
            case .brokenContainer(let id)?:
                if force {
                    try removeContainer(id, force: true)
                    report.actions.append("removed container \(id.prefix(12)), whose directories were gone")
                } else {
                    report.left.append("container \(id.prefix(12)): its directories are gone; kept (`strata check --repair --force` removes it)")
                }
            case .halfRemovedContainer(let id)?:
                try removeContainer(id, force: true)
                report.actions.append("finished removing container \(id.prefix(12))")
            case nil: continue
            }
        }
        // The layers' files go out of the way first: from here on, nothing reads them.
        for l in brokenLayers where layersDir.openDirectory(Array(l.cacheID.utf8), resolve: [.noSymlinks]).isSuccess {
            let to = try moveAside(Array(l.cacheID.utf8), in: layersDir, to: "broken")
            report.actions.append("moved the files of layer \(l.chainID.digest.short) to \(to)")
        }
        try dropImages(brokenImages.sorted(), force: force, into: &report)
        try forget(brokenLayers, into: &report)
        return report
    }

    /// Removes the images on broken layers; an image a container uses is untagged and kept
    /// (its containers are removed with `force`).
    private func dropImages(_ ids: [String], force: Bool, into report: inout RepairReport) throws {
        for id in ids {
            let (tags, users) = try metadata.read { (try $0.tags(ofImage: id), try $0.containers(ofImage: id)) }
            if !users.isEmpty && !force {
                try metadata.write { try $0.removeTags(ofImage: id) }
                report.actions.append("untagged image \(id.shortID)" + (tags.isEmpty ? "" : " (\(tags.joined(separator: ", ")))"))
                report.left.append("image \(id.shortID) stays for container(s) \(users.map(\.name).joined(separator: ", ")) (`--force` removes them)")
                continue
            }
            for u in users {
                try removeContainer(u.id, force: true)
                report.actions.append("removed container \(u.name), which used image \(id.shortID)")
            }
            try metadata.write { try $0.deleteImage(id) }
            report.actions.append("removed image \(id.shortID)" + (tags.isEmpty ? "" : " (\(tags.joined(separator: ", ")))"))
        }
    }

    /// Forgets the broken layers no image uses any more, with the layers above them (they cannot
    /// be mounted without them); every other layer stays.
    private func forget(_ brokenLayers: [LayerRecord], into report: inout RepairReport) throws {
        let all = try allLayers()
        var doomed = Set(brokenLayers.map(\.chainID))
        var grew = true
        while grew {
            grew = false
            for l in all where !doomed.contains(l.chainID) && l.parent.map(doomed.contains) == true {
                doomed.insert(l.chainID)
                grew = true
            }
        }
        var removal = RemovalReport()
        try inflight { try removeLayerDirectories(try freeUnreferencedLayers(only: doomed), report: &removal) }
        let broken = Set(brokenLayers.map(\.chainID.description))
        for l in removal.deletedLayers {
            report.actions.append(broken.contains(l) ? "forgot broken layer \(l.shortID)"
                                                     : "forgot layer \(l.shortID), which lay on a broken one")
        }
        try removeUnreferencedBlobs(report: &removal)
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { return true } else { return false } }
}
