import FoundationEssentials
import StrataArchive
import StrataCore
import StrataFormats
import StrataRegistry
import StrataStore

/// How `push` sends an image.
public struct PushOptions: Sendable {
    public var registry = RegistryOptions()
    /// How layers the registry does not have are compressed on the way.
    public var compression: Compression = .gzip
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
        var result = PushedImage(reference: target, manifestDigest: id)
        var descriptors: [Descriptor] = []
        for (i, layer) in layers.enumerated() {
            let label = "layer \(i + 1)/\(layers.count) \(layer.chainID.digest.short)"
            if let (blob, how) = try reusableBlob(layer, client: client, target: target, compression: options.compression) {
                options.progress("\(label): \(how)")
                // The media type names the compression; Docker's and OCI's names for the same bytes differ.
                descriptors.append(Descriptor(mediaType: options.compression.layerMediaType, digest: blob.digest, size: blob.size))
                result.reused += 1
                continue
            }
            let blob = try upload(layer, client: client, target: target, compression: options.compression)
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
        return result
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
