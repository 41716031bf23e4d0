import Dispatch
import FoundationEssentials
import Synchronization
import StrataArchive
import StrataCore
import StrataFormats
import StrataLayer
import StrataSystem

/// How much a load may take in, and what it tags.
public struct LoadOptions: Sendable {
    public var platform: Platform = .host
    /// Added to every loaded image (normalised, `:latest` when no tag).
    public var extraTags: [String] = []
    /// Uncompressed bytes one layer may have; fail as soon as it is passed.
    public var maxLayerSize: Int64 = 32 << 30
    /// Bytes an archive may take when it has to be spooled into tmp/ (it is compressed, or
    /// comes from a pipe); nil: four times `maxLayerSize`. Never past the free space of the
    /// store's filesystem less a reserve.
    public var maxArchiveSize: Int64?
    /// Layers one image may have (the overlay driver's own depth limit is separate).
    public var maxLayers = ImageArchiveReader.defaultMaxLayers
    public var progress: @Sendable (LayerEvent) -> Void = { _ in }
    /// Layers fetched and unpacked at once; nil: one per processor.
    public var parallelLayers: Int?
    /// The defaults (see each property).
    public init() {}
}

/// An image a load recorded: its ID, its tags, and how many layers were new.
public struct LoadedImage: Sendable {
    public var id: Digest
    public var tags: [String]
    public var layersUnpacked: Int
    public var layersExisting: Int
}

/// A layer blob to ingest, wherever it comes from (an archive member, a registry): its size,
/// the digests it must have, and how to read it (again, for the rare layer whose raw tar is kept).
struct LayerBlob: Sendable {
    var size: Int64
    var label: String
    var digest: Digest?
    var diffID: DiffID
    var open: @Sendable () throws -> any ChunkSource

    init(size: Int64, label: String, digest: Digest?, diffID: DiffID, open: @escaping @Sendable () throws -> any ChunkSource) {
        self.size = size; self.label = label; self.digest = digest; self.diffID = diffID; self.open = open
    }

    init(_ layer: LayerToLoad) {
        let blob = layer.blob
        self.init(size: blob.size, label: blob.label, digest: layer.blobDigest, diffID: layer.diffID, open: { blob.source() })
    }
}

/// One distinct layer of a load: where it comes from, where it goes in its chain, and whether
/// this load creates it (else it is stored already, and only its blob is checked, where
/// `verifyStored` says so: an archive's bytes always are, a registry's are not fetched at all).
struct LoadJob: Sendable {
    var layer: LayerBlob
    var chainID: ChainID
    var parent: ChainID?
    var index: Int
    var count: Int
    var label: String
    var create = false
    var verifyStored = true
}

/// An image whose config and layers are verified, ready to be recorded.
struct PreparedImage {
    var configBytes: [UInt8]
    var configDigest: Digest
    var config: ImageConfig
    var manifestBytes: [UInt8]?
    var manifestDigest: Digest?
    var chain: [ChainID]
    var tags: [String]
}

extension Store {
    /// Loads every image of an archive: a docker-archive or oci-archive tar (optionally
    /// compressed), an OCI layout directory, or `-` for standard input.
    public func load(path: String, options: LoadOptions) throws -> [LoadedImage] {
        let contents = try openArchive(path, limit: options.maxArchiveSize ?? options.maxLayerSize.multipliedReportingOverflow(by: 4).partialValue)
        let reader = try ImageArchiveReader(contents: contents, platform: options.platform, maxLayers: options.maxLayers)
        let found = try reader.images()
        let extra = try options.extraTags.map(Reference.userTag)

        // The plan: each distinct layer once, in the order the images list them.
        var jobs: [LoadJob] = []
        var seen: Set<ChainID> = []
        var prepared: [PreparedImage] = []
        for image in found {
            let chain = ChainID.chain(image.config.rootfs.diff_ids)
            for (i, layer) in image.layers.enumerated() where seen.insert(chain[i]).inserted {
                jobs.append(LoadJob(layer: LayerBlob(layer), chainID: chain[i], parent: i == 0 ? nil : chain[i - 1], index: i,
                                    count: chain.count, label: "\(layer.blob.label) (layer \(i + 1) of image \(image.configDigest.short))"))
            }
            prepared.append(PreparedImage(configBytes: image.configBytes, configDigest: image.configDigest,
                                          config: image.config, manifestBytes: image.manifestBytes,
                                          manifestDigest: image.manifestDigest, chain: chain,
                                          tags: Array(Set(image.tags + extra)).sorted()))
        }

        let loaded = try ingest(jobs, prepared, options: options)
        for image in loaded {
            record(StoreEvent(type: "image", action: "load", id: image.id.string, attributes: image.tags.first.map { ["name": $0] } ?? [:]))
        }
        return loaded
    }

    /// Leases the layers, stages the missing ones in parallel (each in its single pass), settles
    /// them against their lowers and records everything in one transaction.
    func ingest(_ plan: [LoadJob], _ prepared: [PreparedImage], options: LoadOptions) throws -> [LoadedImage] {
        var jobs = plan
        let locks = try LayerLocks(store: self)
        defer { locks.unlockAll() }
        try takeLeases(&jobs, locks)
        options.progress(.planned(layers: jobs.count, bytes: jobs.filter(\.create).reduce(0) { $0 + $1.layer.size }))
        let staged = try stageAll(jobs, options: options)
        do { try settle(order: jobs.map(\.chainID), staged: staged) } catch {
            for s in staged.values { discard(s) }
            throw error
        }
        var list = jobs.compactMap { staged[$0.chainID] }
        try record(prepared, staged: &list)
        return prepared.map { image in
            let created = image.chain.filter { staged[$0] != nil }.count
            return LoadedImage(id: image.configDigest, tags: image.tags, layersUnpacked: created,
                               layersExisting: image.chain.count - created)
        }
    }

    /// Leases, in a global order: shared to reuse a layer, exclusive to create one. A layer
    /// another load is creating is waited for, then reused. Marks the jobs that create.
    private func takeLeases(_ jobs: inout [LoadJob], _ locks: LayerLocks) throws {
        for i in jobs.indices.sorted(by: { LayerLocks.offset(jobs[$0].chainID) < LayerLocks.offset(jobs[$1].chainID) }) {
            try locks.lock(jobs[i].chainID, exclusive: false)
            if try hasLayer(jobs[i].chainID) { continue }
            // Let go before asking for the exclusive lease: two loads upgrading the same shared
            // lease would wait for each other forever.
            locks.unlock(jobs[i].chainID)
            try locks.lock(jobs[i].chainID, exclusive: true)
            if try hasLayer(jobs[i].chainID) {
                try locks.lock(jobs[i].chainID, exclusive: false)
                continue
            }
            jobs[i].create = true
        }

    }

    /// The layers of one load unpack in parallel, each into its own directory, each in its
    /// single pass; layers already stored only have their blob checked. On a failure every
    /// staged layer is removed.
    private func stageAll(_ plan: [LoadJob], options: LoadOptions) throws -> [ChainID: StagedLayer] {
        struct Progress {
            var next = 0
            var staged: [ChainID: StagedLayer] = [:]
            var failure: (any Error)?
        }
        let state = Mutex(Progress())
        let workers = max(1, min(plan.count, options.parallelLayers ?? ProcessInfo.processInfo.activeProcessorCount))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let taken: LoadJob? = state.withLock { p in
                    guard p.failure == nil, p.next < plan.count else { return nil }
                    p.next += 1
                    return plan[p.next - 1]
                }
                guard let job = taken else { return }
                do {
                    if job.create {
                        options.progress(.started(index: job.index, count: job.count, chainID: job.chainID, bytes: job.layer.size))
                        let t0 = Date()
                        let total = job.layer.size, chainID = job.chainID
                        let source = ProgressSource(try job.layer.open()) {
                            options.progress(.reading(chainID: chainID, bytes: $0, total: total))
                        }
                        let s = try stageLayer(
                            source: source, reopen: job.layer.open, parent: job.parent,
                            expectedDiffID: job.layer.diffID, expectedBlobDigest: job.layer.digest,
                            maxLayerSize: options.maxLayerSize, label: job.label)
                        state.withLock { $0.staged[job.chainID] = s }
                        options.progress(.unpacked(index: job.index, count: job.count, chainID: job.chainID,
                                                   tarBytes: s.result.tarSize, seconds: Date().timeIntervalSince(t0)))
                    } else if job.verifyStored {
                        // Not unpacked again, but the archive's bytes are still checked: a load
                        // never succeeds on an archive with a corrupt blob.
                        try verifyBlob(job.layer, chainID: job.chainID, label: job.label)
                        options.progress(.exists(index: job.index, count: job.count, chainID: job.chainID))
                    } else {
                        options.progress(.exists(index: job.index, count: job.count, chainID: job.chainID))
                    }
                } catch {
                    state.withLock { p in if p.failure == nil { p.failure = error } }
                }
            }
        }
        let (staged, failure) = state.withLock { ($0.staged, $0.failure) }
        if let failure {
            for s in staged.values { discard(s) }
            throw failure
        }
        return staged
    }

    /// Imports a plain rootfs tar (any compression) as a one-layer image, like `docker import`.
    public func importRootfs(path: String, tag: String?, changes: [String], message: String?,
                             options: LoadOptions) throws -> LoadedImage {
        let input = try openInput(path, decompressOuter: false, limit: options.maxArchiveSize ?? options.maxLayerSize)
        var config = ImageConfig.Config()
        for change in changes { try ConfigChange.apply(change, to: &config) }
        let label = path == "-" ? "standard input" : path
        let s = try stageLayer(source: input.source(), reopen: { input.source() }, parent: nil,
                               expectedDiffID: nil, expectedBlobDigest: nil,
                               maxLayerSize: options.maxLayerSize, label: label)
        let chainID = s.chainID
        do { try settle(s, lowers: []) } catch { discard(s); throw error }
        let created = Timestamp.now()
        var doc = ConfigEditor(platform: Platform(architecture: Platform.host.architecture, os: "linux", variant: Platform.host.variant),
                               created: created)
        let name = path == "-" ? "-" : String(path.split(separator: "/").last ?? "")
        doc.appendLayer(s.result.diffID, history: .init(created: created, createdBy: "strata import \(name)", comment: message))
        try doc.merge(config)
        let bytes = try doc.bytes()
        let digest = Digest.of(bytes)
        let parsed = try JSONDocument.decode(ImageConfig.self, from: bytes, what: "generated config")
        let tags = try (tag.map { [$0] } ?? []).map(Reference.userTag) + options.extraTags.map(Reference.userTag)
        let existed = try hasLayer(chainID)
        var list = [s]
        try record([PreparedImage(configBytes: bytes, configDigest: digest, config: parsed, manifestBytes: nil,
                                  manifestDigest: nil, chain: [chainID], tags: tags)], staged: &list)
        record(StoreEvent(type: "image", action: "import", id: digest.string, attributes: tags.first.map { ["name": $0] } ?? [:]))
        return LoadedImage(id: digest, tags: tags, layersUnpacked: existed ? 0 : 1, layersExisting: existed ? 1 : 0)
    }

    /// Writes blobs, renames staged layers into place and records everything in one transaction.
    /// Either the images are all there afterwards, or none is and nothing stays on disk.
    func record(_ images: [PreparedImage], staged: inout [StagedLayer]) throws {
        try inflight { try recordInPlace(images, staged: &staged) }
    }

    private func recordInPlace(_ images: [PreparedImage], staged: inout [StagedLayer]) throws {
        do {
            for image in images {
                try putBlob(image.configBytes, digest: image.configDigest)
                if let m = image.manifestBytes, let d = image.manifestDigest { try putBlob(m, digest: d) }
            }
            for i in staged.indices { try moveIntoPlace(&staged[i]) }
            let now = Date()
            let list = staged
            var replaced: [String] = []
            let losers: [StagedLayer] = try metadata.write { tx in
                var losers: [StagedLayer] = []
                for s in list {
                    let record = s.record
                    // A row left without its files takes the new ones.
                    if let old = try tx.layer(s.chainID)?.cacheID, old != s.cacheID,
                       !self.layersDir.openDirectory(Array("\(old)/diff".utf8), resolve: [.noSymlinks]).isSuccess {
                        try tx.replaceLayerFiles(record)
                        replaced.append(old)
                    }
                    try tx.insertLayer(record)
                    // Another process recorded the same layer first: keep theirs (docs/store-layout.md, "Two identities per layer").
                    if try tx.layer(s.chainID)?.cacheID != s.cacheID { losers.append(s) }
                }
                for image in images {
                    var size: Int64 = 0
                    for c in image.chain {
                        guard let l = try tx.layer(c) else {
                            throw StrataError(.conflict, "layer \(c) was removed while image \(image.configDigest.short) was loading; load it again")
                        }
                        size += l.size
                    }
                    try tx.insertImage(ImageRecord(id: image.configDigest, topLayer: image.chain.last, manifestDigest: image.manifestDigest,
                                                   created: image.config.created, os: image.config.os,
                                                   architecture: image.config.architecture, size: size, loadedAt: now),
                                       chain: image.chain)
                    for t in image.tags { try tx.setTag(t, imageID: image.configDigest.string) }
                }
                return losers
            }
            for s in losers { discard(s) }
            // What was left of a layer whose files were lost (its journal, say) goes.
            for old in replaced { try? layersDir.removeTree(Array(old.utf8)) }
        } catch {
            for s in staged { discard(s) }
            throw error
        }
    }

    /// Checks a layer blob that need not be unpacked. When the manifest names the very blob the
    /// store unpacked this layer from, hashing the blob is enough; otherwise it is decompressed
    /// and its diffID checked too.
    func verifyBlob(_ layer: LayerBlob, chainID: ChainID, label: String) throws {
        let compressed = HashingSource(try layer.open())
        let tar = HashingSource(try Decompressor(compressed, label: label))
        let known = try self.layer(chainID)?.blobDigest
        let hashOnly = layer.digest != nil && known == layer.digest?.string
        if hashOnly { try compressed.drain() } else { try tar.drain(); try compressed.drain() }
        let blobDigest = compressed.finalize()
        if let expected = layer.digest, blobDigest != expected {
            throw StrataError.blobDigestMismatch(label, expected: expected, actual: blobDigest)
        }
        if !hashOnly {
            let actual = DiffID(tar.finalize())
            guard actual == layer.diffID else {
                throw StrataError(.digestMismatch, "\(label): uncompressed layer hashes to \(actual), but the image config says diffID \(layer.diffID)")
            }
        }
    }

    /// Whether the layer is stored with its files. A row whose directory is gone (moved away by
    /// `check --repair`, or lost) does not count: the layer is unpacked again.
    func hasLayer(_ chainID: ChainID) throws -> Bool {
        guard let cacheID = try layer(chainID)?.cacheID else { return false }
        return layersDir.openDirectory(Array("\(cacheID)/diff".utf8), resolve: [.noSymlinks]).isSuccess
    }
}

/// A seekable input file.
struct InputFile {
    let handle: FDHandle
    let size: Int64
    let label: String
    func source() -> FileRangeSource { FileRangeSource(handle: handle, offset: 0, length: size, label: label) }
}
