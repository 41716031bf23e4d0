import FoundationEssentials
import StrataCore
import StrataFormats
import StrataRegistry
import StrataStore

/// What `pull` does besides loading: which registry settings to use.
public struct PullOptions: Sendable {
    public var registry = RegistryOptions()
    public var load = LoadOptions()
    /// The defaults: TLS verified, stored credentials, three layers at once.
    public init() { load.parallelLayers = 3 }
}

/// An image a pull recorded.
public struct PulledImage: Sendable {
    public var image: LoadedImage
    /// The full reference it was pulled by (`docker.io/library/busybox:latest`).
    public var reference: ImageReference
    /// The digest of the image manifest (for one platform).
    public var manifestDigest: Digest
    /// The digest the reference resolved to (the index's, where it named one).
    public var resolvedDigest: Digest
}

extension Store {
    /// Pulls `ref` from its registry: the manifest for the platform, the config, and every layer
    /// not in the store by chainID, each streamed straight into the ingest pipeline (digest,
    /// decompress, diffID, journal, unpack in one pass). Nothing is recorded before every digest
    /// is verified; a failure leaves the store as it was.
    public func pull(_ ref: String, options: PullOptions) throws -> PulledImage {
        let reference = try ImageReference(parsing: ref)
        let client = try RegistryClient(registry: reference.registry, options: options.registry)
        let remote = try client.resolve(reference, platform: options.load.platform, maxLayers: options.load.maxLayers)
        let chain = ChainID.chain(remote.config.rootfs.diff_ids)
        var jobs: [LoadJob] = []
        var seen: Set<ChainID> = []
        for (i, layer) in remote.layers.enumerated() where seen.insert(chain[i]).inserted {
            let d = layer.descriptor
            let label = "\(reference.name)@\(d.digest.short) (layer \(i + 1) of \(remote.layers.count))"
            let repository = reference.repository
            let blob = LayerBlob(size: d.size, label: label, digest: d.digest, diffID: layer.diffID) {
                client.blobStream(repository: repository, digest: d.digest, size: d.size, label: label)
            }
            jobs.append(LoadJob(layer: blob, chainID: chain[i], parent: i == 0 ? nil : chain[i - 1], index: i,
                                count: chain.count, label: label, verifyStored: false))
        }
        var tags = reference.tag.map { _ in [reference.name + ":" + (reference.tag ?? "latest")] } ?? []
        tags += try options.load.extraTags.map(Reference.userTag)
        let prepared = PreparedImage(configBytes: remote.configBytes, configDigest: remote.configDigest, config: remote.config,
                                     manifestBytes: remote.manifestBytes, manifestDigest: remote.manifestDigest, chain: chain,
                                     tags: Array(Set(tags)).sorted())
        let loaded = try ingest(jobs, [prepared], options: options.load)
        // Where these blobs live: a later push to this registry reuses or mounts them; and
        // the digest this repository knows the image by.
        try metadata.write { tx in
            try tx.setRepoDigest(loaded[0].id.string, repository: reference.name, digest: remote.resolvedDigest.string)
            for (i, layer) in remote.layers.enumerated() {
                let d = layer.descriptor
                try tx.recordLayerBlob(chain[i], LayerBlobRecord(digest: d.digest, size: d.size, mediaType: d.mediaType ?? MediaType.ociLayerGzip),
                                       registry: reference.registry, repository: reference.repository)
            }
        }
        record(StoreEvent(type: "image", action: "pull", id: loaded[0].id.string, attributes: ["name": reference.description]))
        return PulledImage(image: loaded[0], reference: reference, manifestDigest: remote.manifestDigest, resolvedDigest: remote.resolvedDigest)
    }
}
