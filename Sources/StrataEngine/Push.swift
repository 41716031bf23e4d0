import FoundationEssentials
import StrataArchive
import StrataCore
import StrataFormats
import StrataRegistry
import StrataStore

/// How `push` sends an image.
public struct PushOptions: Sendable {
    public var registry = RegistryOptions()
    /// How layers the registry does not have are compressed on the way. Nil: an image pushed
    /// as it was pulled is sent with the manifest it was pulled with (its blobs reused,
    /// mounted, or copied from where they were pulled); any other gzip.
    public var compression: Compression?
    /// One line per layer: what happened to it.
    public var progress: @Sendable (String) -> Void = { _ in }
    /// The defaults: TLS verified, stored credentials, gzip.
    public init() {}
}

/// What a push did.
public struct PushedImage: Sendable {
    public var reference: ImageReference
    public var manifestDigest: Digest
    public var uploaded = 0
    /// Already in the repository (HEAD), or mounted from another repository of the registry.
    public var reused = 0
}

extension Store {
    /// Pushes image `ref` to `destination` (default: `ref` itself). A layer the repository has
    /// (a blob strata pulled or pushed, found with HEAD) is not sent; one in another repository
    /// of the registry is mounted; any other is rebuilt from the store, compressed on the fly and
    /// uploaded in chunks with its digest computed while streaming. The compressed digest is
    /// recorded, so a second push names the same bytes and the same manifest.
    public func push(_ ref: String, to destination: String?, options: PushOptions) throws -> PushedImage {
        let id = try resolveImage(ref)
        let target = try ImageReference(parsing: destination ?? ref)
        guard target.digest == nil else { throw StrataError(.invalidArgument, "push to a tag, not to a digest (\(target))") }
        let client = try RegistryClient(registry: target.registry, options: options.registry)
        let configBytes = try blob(id)
        let layers = try imageLayers(id)
        if options.compression == nil,
           let pushed = try pushAsPulled(id, configBytes: configBytes, layers: layers, client: client, target: target, options: options) {
            return pushed
        }
        let compression = options.compression ?? .gzip
        var result = PushedImage(reference: target, manifestDigest: id)
        var descriptors: [Descriptor] = []
        for (i, layer) in layers.enumerated() {
            let label = "layer \(i + 1)/\(layers.count) \(layer.chainID.digest.short)"
            if let (blob, how) = try reusableBlob(layer, client: client, target: target, compression: compression) {
                options.progress("\(label): \(how)")
                // The media type names the compression; Docker's and OCI's names for the same bytes differ.
                descriptors.append(Descriptor(mediaType: compression.layerMediaType, digest: blob.digest, size: blob.size))
                result.reused += 1
                continue
            }
            let blob = try upload(layer, client: client, target: target, compression: compression)
            options.progress("\(label): pushed \(ByteCount.describe(blob.size))")
            descriptors.append(Descriptor(mediaType: blob.mediaType, digest: blob.digest, size: blob.size))
            result.uploaded += 1
        }
        if try client.blobSize(repository: target.repository, digest: id) == nil {
            _ = try client.uploadBlob(repository: target.repository) { write in try configBytes.withUnsafeBytes { try write($0) } }
        }
        let manifest = Manifest(schemaVersion: 2, mediaType: MediaType.ociManifest,
                                config: Descriptor(mediaType: MediaType.ociConfig, digest: id, size: Int64(configBytes.count)),
                                layers: descriptors)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let bytes = Array(try encoder.encode(manifest))
        result.manifestDigest = try client.putManifest(repository: target.repository, reference: target.tag ?? "latest",
                                                       bytes: bytes, mediaType: MediaType.ociManifest)
        try metadata.write { try $0.setRepoDigest(id.string, repository: target.name, digest: result.manifestDigest.string) }
        record(StoreEvent(type: "image", action: "push", id: id.string, attributes: ["name": target.description]))
        return result
    }

    /// Sends image `id` with the manifest it was pulled (or loaded) with, byte for byte, so
    /// that a mirror keeps its digest: each blob that manifest names is in the repository
    /// already, mounted from another repository of the registry, or copied from a registry it
    /// was pulled from. Nil (nothing recorded, the manifest sent by no one) when one of them
    /// cannot be had that way: the caller then rebuilds the layers and writes a new manifest.
    private func pushAsPulled(_ id: Digest, configBytes: [UInt8], layers: [LayerRecord], client: RegistryClient,
                              target: ImageReference, options: PushOptions) throws -> PushedImage? {
        guard let record = try metadata.read({ try $0.image(id) }), let manifestDigest = record.manifestDigest,
              let bytes = try? blob(manifestDigest),
              let manifest = try? JSONDocument.decode(Manifest.self, from: bytes, what: "manifest \(manifestDigest)"),
              manifest.config.digest == id, manifest.layers.count == layers.count,
              let mediaType = manifest.mediaType ?? (manifest.schemaVersion == 2 ? MediaType.ociManifest : nil),
              [MediaType.ociManifest, MediaType.dockerManifest].contains(mediaType) else { return nil }
        var result = PushedImage(reference: target, manifestDigest: manifestDigest)
        for (i, (d, layer)) in zip(manifest.layers, layers).enumerated() {
            let label = "layer \(i + 1)/\(layers.count) \(d.digest.short)"
            let blob = LayerBlobRecord(digest: d.digest, size: d.size, mediaType: d.mediaType ?? MediaType.ociLayerGzip)
            if let size = try client.blobSize(repository: target.repository, digest: d.digest), size == d.size {
                options.progress("\(label): exists")
                result.reused += 1
            } else if let source = try metadata.read({ try $0.repositories(having: d.digest, registry: target.registry) })
                        .first(where: { $0 != target.repository }),
                      try client.mountBlob(repository: target.repository, digest: d.digest, from: source) {
                options.progress("\(label): mounted from \(source)")
                result.reused += 1
            } else if try copyBlob(d, to: client, target: target, options: options) {
                options.progress("\(label): copied \(ByteCount.describe(d.size)) as pulled")
                result.uploaded += 1
            } else {
                options.progress("\(label): not in \(target.registry), and no registry it was pulled from answers: the layers are compressed again (a new manifest)")
                return nil
            }
            try remember(layer, blob, target)
        }
        if try client.blobSize(repository: target.repository, digest: id) == nil {
            _ = try client.uploadBlob(repository: target.repository) { write in try configBytes.withUnsafeBytes { try write($0) } }
        }
        result.manifestDigest = try client.putManifest(repository: target.repository, reference: target.tag ?? "latest",
                                                       bytes: bytes, mediaType: mediaType)
        try metadata.write { try $0.setRepoDigest(id.string, repository: target.name, digest: result.manifestDigest.string) }
        self.record(StoreEvent(type: "image", action: "push", id: id.string, attributes: ["name": target.description]))
        return result
    }

    /// Streams blob `d` from a registry it was pulled from into the target repository; false
    /// when no such registry answers with it. The upload's digest is checked against `d`.
    private func copyBlob(_ d: Descriptor, to client: RegistryClient, target: ImageReference, options: PushOptions) throws -> Bool {
        for (registry, repository) in try metadata.read({ try $0.locations(of: d.digest) }) where registry != target.registry {
            guard let source = try? RegistryClient(registry: registry, options: options.registry),
                  (try? source.blobSize(repository: repository, digest: d.digest)) == d.size else { continue }
            let stream = source.blobStream(repository: repository, digest: d.digest, size: d.size, label: "blob \(d.digest.short) from \(registry)")
            let (digest, size) = try client.uploadBlob(repository: target.repository) { write in
                while true {
                    let chunk = try stream.nextChunk()
                    if chunk.isEmpty { break }
                    try write(chunk)
                }
            }
            guard digest == d.digest, size == d.size else {
                throw StrataError(.digestMismatch, "blob \(d.digest) copied from \(registry)/\(repository) arrived as \(digest) (\(size) bytes)")
            }
            return true
        }
        return false
    }

    /// A compressed form of `layer` the registry has already, or can mount: in this repository
    /// (HEAD), else from another repository of the same registry where it was seen.
    private func reusableBlob(_ layer: LayerRecord, client: RegistryClient, target: ImageReference,
                              compression: Compression) throws -> (LayerBlobRecord, String)? {
        let known = try metadata.read { try $0.layerBlobs(layer.chainID) }.filter { $0.mediaType.hasSuffix(compression.mediaTypeSuffix) }
        for blob in known {
            if let size = try client.blobSize(repository: target.repository, digest: blob.digest), size == blob.size {
                try remember(layer, blob, target)
                return (blob, "exists")
            }
        }
        for blob in known {
            let sources = try metadata.read { try $0.repositories(having: blob.digest, registry: target.registry) }
            for source in sources where source != target.repository {
                if try client.mountBlob(repository: target.repository, digest: blob.digest, from: source) {
                    try remember(layer, blob, target)
                    return (blob, "mounted from \(source)")
                }
            }
        }
        return nil
    }

    /// Rebuilds the layer's tar from the store, compresses it and uploads it in one stream.
    private func upload(_ layer: LayerRecord, client: RegistryClient, target: ImageReference,
                        compression: Compression) throws -> LayerBlobRecord {
        var rebuilt: DiffID?
        let (digest, size) = try client.uploadBlob(repository: target.repository) { write in
            if compression == .none {
                rebuilt = try streamLayerTar(layer, to: write)
            } else {
                rebuilt = try withoutActuallyEscaping(write) { sink in
                    // gzip on every core (blocks as members of one stream); other
                    // compressions through libarchive's own filter.
                    if compression == .gzip {
                        let writer = ParallelGzipWriter(sink: sink)
                        let got = try streamLayerTar(layer) { try writer.write($0) }
                        try writer.close()
                        return got
                    }
                    let writer = try CompressingWriter(compression, sink: sink)
                    let got = try streamLayerTar(layer) { try writer.write($0) }
                    try writer.close()
                    return got
                }
            }
        }
        guard rebuilt == layer.diffID else {
            throw StrataError(.digestMismatch, "layer \(layer.chainID): its files rebuild to \(rebuilt?.description ?? "nothing"), not diffID \(layer.diffID); the layer was changed on disk (see `strata check`)")
        }
        let blob = LayerBlobRecord(digest: digest, size: size, mediaType: compression.layerMediaType)
        try remember(layer, blob, target)
        return blob
    }

    private func remember(_ layer: LayerRecord, _ blob: LayerBlobRecord, _ target: ImageReference) throws {
        try metadata.write { try $0.recordLayerBlob(layer.chainID, blob, registry: target.registry, repository: target.repository) }
    }
}

extension Compression {
    /// How a layer media type of this compression ends (`.tar`, `+gzip`, `+zstd`, …).
    var mediaTypeSuffix: String {
        switch self {
        case .none: ".tar"
        case .gzip: "gzip"
        default: "+" + rawValue
        }
    }
}
