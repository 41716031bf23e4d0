import FoundationEssentials
import NIOHTTP1
import StrataArchive
import StrataCore
import StrataFormats

/// An image in a registry, resolved for one platform: its manifest and config fetched and
/// verified, its layers described (their blobs are streamed later).
public struct RemoteImage: Sendable {
    public var reference: ImageReference
    public var manifestBytes: [UInt8]
    public var manifestDigest: Digest
    /// The digest the reference resolved to first: the index's where the tag names one, else
    /// the manifest's (what `docker images --digests` shows).
    public var resolvedDigest: Digest
    public var configBytes: [UInt8]
    public var configDigest: Digest
    public var config: ImageConfig
    /// Bottom first, each with the diffID the config gives it.
    public var layers: [(descriptor: Descriptor, diffID: DiffID)]
}

extension RegistryClient {
    static let manifestTypes = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest,
                                "application/vnd.docker.distribution.manifest.v1+prettyjws", "application/vnd.docker.distribution.manifest.v1+json"]

    /// The manifest (or index) `reference` names in `repository`: its bytes, media type and digest,
    /// the digest checked against a digest reference and the registry's `Docker-Content-Digest`.
    public func manifest(repository: String, reference: String) throws -> (bytes: [UInt8], mediaType: String?, digest: Digest) {
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: Self.manifestTypes.joined(separator: ", "))
        let reply = try send(.GET, "/v2/\(repository)/manifests/\(reference)", headers: headers,
                             scope: "repository:\(repository):pull", limit: JSONLimits.manifest)
        let named = repository + (reference.hasPrefix("sha256:") ? "@" : ":") + reference
        guard reply.status == .ok else { throw failure(reply, what: "manifest \(named)") }
        let digest = Digest.of(reply.body)
        let what = "registry \(registry): manifest \(named)"
        if let expected = try? Digest(parsing: reference), expected != digest {
            throw StrataError(.digestMismatch, "\(what): digest mismatch: the bytes received hash to \(digest), not to the digest asked for")
        }
        if let header = reply.headers["Docker-Content-Digest"].first, let named = try? Digest(parsing: header), named != digest {
            throw StrataError(.digestMismatch, "\(what): digest mismatch: the bytes received hash to \(digest), but the registry names them \(named)")
        }
        struct Probe: Decodable { var schemaVersion: Int?; var mediaType: String? }
        let probe = try? JSONDecoder().decode(Probe.self, from: Data(reply.body))
        let mediaType = probe?.mediaType ?? reply.headers["Content-Type"].first?.split(separator: ";").first.map(String.init)
        if probe?.schemaVersion == 1 || mediaType?.contains("distribution.manifest.v1") == true {
            throw StrataError(.unsupported, "\(what) is a Docker schema 1 manifest, which is deprecated and not read; push the image again with a current client")
        }
        return (reply.body, mediaType, digest)
    }

    /// A blob read whole (configs), up to `limit` bytes, checked against its digest.
    public func blob(repository: String, digest: Digest, limit: Int) throws -> [UInt8] {
        let reply = try send(.GET, "/v2/\(repository)/blobs/\(digest)", scope: "repository:\(repository):pull", limit: limit)
        guard reply.status == .ok else { throw failure(reply, what: "blob \(digest) in \(repository)") }
        let actual = Digest.of(reply.body)
        guard actual == digest else {
            throw StrataError(.digestMismatch, "registry \(registry): blob \(digest) in \(repository): digest mismatch: the bytes received hash to \(actual)")
        }
        return reply.body
    }

    /// A layer blob as a stream (see `BlobStream`).
    public func blobStream(repository: String, digest: Digest, size: Int64, label: String) -> any ChunkSource {
        BlobStream(client: self, repository: repository, digest: digest, size: size, label: label)
    }

    /// Resolves `ref` to one image for `platform`: follows an index (nested up to four deep),
    /// fetches and verifies the manifest and the config, checks the layer list against the
    /// config's diff_ids.
    public func resolve(_ ref: ImageReference, platform: Platform, maxLayers: Int) throws -> RemoteImage {
        var (bytes, mediaType, digest) = try manifest(repository: ref.repository, reference: ref.manifestReference)
        let resolved = digest
        var depth = 0
        while MediaType.isIndex(mediaType) {
            depth += 1
            guard depth <= 4 else { throw StrataError(.invalidFormat, "registry \(registry): \(ref) has indexes nested too deeply") }
            let index = try JSONDocument.decode(Index.self, from: bytes, what: "registry \(registry): index \(digest)")
            guard let chosen = index.manifests.first(where: { d in d.platform.map(platform.matches) ?? false })
                    ?? (index.manifests.count == 1 && index.manifests[0].platform == nil ? index.manifests[0] : nil) else {
                let offered = index.manifests.compactMap { $0.platform?.description }.joined(separator: ", ")
                throw StrataError(.notFound, "\(ref) has no image for platform \(platform) (it has: \(offered)); choose one with --platform")
            }
            (bytes, mediaType, digest) = try manifest(repository: ref.repository, reference: chosen.digest.string)
            guard digest == chosen.digest else {
                throw StrataError(.digestMismatch, "registry \(registry): manifest \(chosen.digest): digest mismatch: the bytes received hash to \(digest)")
            }
        }
        let what = "registry \(registry): manifest \(digest) of \(ref)"
        let manifest = try JSONDocument.decode(Manifest.self, from: bytes, what: what)
        guard manifest.layers.count <= maxLayers else {
            throw StrataError(.tooLarge, "\(what) lists \(manifest.layers.count) layers, over the limit of \(maxLayers); raise it with --max-layers if the image is real")
        }
        try manifest.config.checkSize(limit: Int64(JSONLimits.config), label: what)
        let configBytes = try blob(repository: ref.repository, digest: manifest.config.digest, limit: JSONLimits.config)
        let config = try JSONDocument.decode(ImageConfig.self, from: configBytes, what: "registry \(registry): config \(manifest.config.digest)")
        guard config.rootfs.diff_ids.count == manifest.layers.count else {
            throw StrataError(.invalidFormat, "\(what) lists \(manifest.layers.count) layers but its config has \(config.rootfs.diff_ids.count) diff_ids")
        }
        for d in manifest.layers {
            try d.checkSize(limit: Int64.max / 2, label: what)
            if let t = d.mediaType, !MediaType.isLayer(t) {
                throw StrataError(.unsupported, "\(what): layer \(d.digest) has media type \(t), which is not an image layer")
            }
        }
        return RemoteImage(reference: ref, manifestBytes: bytes, manifestDigest: digest, resolvedDigest: resolved, configBytes: configBytes,
                           configDigest: manifest.config.digest, config: config,
                           layers: Array(zip(manifest.layers, config.rootfs.diff_ids)))
    }
}
