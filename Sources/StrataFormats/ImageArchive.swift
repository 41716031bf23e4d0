import StrataCore
import StrataSystem

/// One layer of an image to load: where its blob is and what it must hash to.
public struct LayerToLoad: Sendable {
    public var blob: BlobRef
    /// The blob digest the manifest names (OCI layouts, content-addressed paths); nil where the
    /// format names none (legacy docker-archive): the diffID check then covers the bytes.
    public var blobDigest: Digest?
    public var mediaType: String?
    /// From the config's rootfs.diff_ids: what the uncompressed tar must hash to.
    public var diffID: DiffID
}

/// An image found in an archive, with its config verified and parsed.
public struct ImageToLoad: Sendable {
    public var configBytes: [UInt8]
    public var configDigest: Digest
    public var config: ImageConfig
    public var manifestBytes: [UInt8]?
    public var manifestDigest: Digest?
    public var layers: [LayerToLoad]
    /// Full references (`name:tag`) to tag the image with.
    public var tags: [String]
}

/// The kinds of image archive strata reads, detected from the content.
public enum ArchiveFormat: String, Sendable {
    case dockerArchive = "docker-archive"
    case ociLayout = "oci"
    /// skopeo's `dir:` transport (and `podman save --format docker-dir|oci-dir`): `version`,
    /// `manifest.json` (one image manifest, or a list with `HEX.manifest.json` beside it) and
    /// blobs named by their hex digest.
    case directory = "dir"
}

/// Reads the images an archive holds: docker-archive (legacy `ID/layer.tar`, skopeo's
/// `<hex>.tar`, Docker 25+'s OCI layout inside), an OCI layout (directory or tar) or skopeo's
/// `dir:` directory.
public struct ImageArchiveReader {
    public let contents: any ArchiveContents
    public let format: ArchiveFormat
    public let platform: Platform
    /// Layers one image may have: refused before any of them is opened.
    public let maxLayers: Int

    public static let defaultMaxLayers = 1000

    /// Reads the manifests of an archive or layout; `platform` chooses from an index; more than `maxLayers` layers is refused.
    public init(contents: any ArchiveContents, platform: Platform, maxLayers: Int = defaultMaxLayers) throws {
        self.contents = contents
        self.platform = platform
        self.maxLayers = maxLayers
        if ImageArchiveReader.isDirectoryTransport(contents) {
            format = .directory
        } else if contents.exists("manifest.json") {
            format = .dockerArchive
        } else if contents.exists("index.json") {
            format = .ociLayout
        } else {
            throw StrataError(.invalidFormat,
                              "\(contents.label) is not an image archive (no manifest.json or index.json); for a plain rootfs tar use `strata import`")
        }
    }

    /// The images to load, each with its config, layers and tags.
    public func images() throws -> [ImageToLoad] {
        switch format {
        case .dockerArchive: return try dockerImages()
        case .ociLayout: return try ociImages()
        case .directory: return try directoryImages()
        }
    }

    /// Where a blob a validated digest names is: `blobs/sha256/HEX` in OCI layouts, `HEX` in a `dir:` directory.
    private func blob(_ digest: Digest) throws -> BlobRef {
        guard format == .directory else { return try contents.blob(digest) }
        do {
            return try contents.open(digest.hex)
        } catch let e as StrataError where e.code == .notFound {
            throw StrataError(.notFound, "\(contents.label): blob \(digest) is missing from the directory")
        }
    }

    // MARK: skopeo dir:

    /// A `version` file that says "Directory Transport Version: …", and a manifest.
    static func isDirectoryTransport(_ contents: any ArchiveContents) -> Bool {
        guard contents.exists("manifest.json"), let v = try? contents.open("version").readAll(limit: 256) else { return false }
        return v.starts(with: Array("Directory Transport Version:".utf8))
    }

    private func directoryImages() throws -> [ImageToLoad] {
        let ref = try contents.open("manifest.json")
        let bytes = try ref.readAll(limit: JSONLimits.manifest)
        let kind = try JSONDocument.decode(MediaTypeOnly.self, from: bytes, what: ref.label)
        guard kind.manifests != nil || MediaType.isIndex(kind.mediaType) else {
            return [try image(manifest: bytes, digest: Digest.of(bytes), tags: [])]
        }
        // `skopeo copy --all`: a list, each instance's manifest in HEX.manifest.json.
        let index = try JSONDocument.decode(Index.self, from: bytes, what: ref.label)
        for desc in index.manifests where desc.platform.map(platform.matches) ?? true && MediaType.isManifest(desc.mediaType) {
            let mref = try contents.open(desc.digest.hex + ".manifest.json")
            let mbytes = try mref.readAll(limit: JSONLimits.manifest)
            guard Digest.of(mbytes) == desc.digest else {
                throw StrataError(.digestMismatch, "\(mref.label): content hashes to \(Digest.of(mbytes)), not \(desc.digest)")
            }
            return [try image(manifest: mbytes, digest: desc.digest, tags: [])]
        }
        throw StrataError(.notFound, "\(contents.label): no image for platform \(platform) in manifest.json; choose another with --platform")
    }

    // MARK: docker-archive

    private func dockerImages() throws -> [ImageToLoad] {
        let mref = try contents.open("manifest.json")
        let entries = try JSONDocument.decode([DockerArchiveEntry].self, from: try mref.readAll(limit: JSONLimits.manifest),
                                              what: "\(contents.label): manifest.json")
        guard !entries.isEmpty else { throw StrataError(.invalidFormat, "\(contents.label): manifest.json lists no image") }
        return try entries.map { entry in
            try checkLayerCount(entry.Layers.count, what: "\(contents.label): manifest.json")
            let cref = try contents.open(entry.Config)
            let bytes = try cref.readAll(limit: JSONLimits.config)
            let digest = Digest.of(bytes)
            // A content-addressed config name must match its bytes.
            if let named = ImageArchiveReader.digestNamed(by: entry.Config), named != digest {
                throw StrataError(.digestMismatch, "\(cref.label): config hashes to \(digest), but its name says \(named)")
            }
            let config = try JSONDocument.decode(ImageConfig.self, from: bytes, what: cref.label)
            guard config.rootfs.diff_ids.count == entry.Layers.count else {
                throw StrataError(.invalidFormat,
                                  "\(contents.label): manifest.json lists \(entry.Layers.count) layers but config \(digest) has \(config.rootfs.diff_ids.count) diff_ids")
            }
            let layers = try zip(entry.Layers, config.rootfs.diff_ids).map { path, diffID in
                LayerToLoad(blob: try contents.open(path), blobDigest: ImageArchiveReader.blobDigestNamed(by: path),
                            mediaType: nil, diffID: diffID)
            }
            return ImageToLoad(configBytes: bytes, configDigest: digest, config: config, manifestBytes: nil,
                               manifestDigest: nil, layers: layers, tags: try (entry.RepoTags ?? []).map(Reference.normalize))
        }
    }

    private func checkLayerCount(_ n: Int, what: String) throws {
        guard n <= maxLayers else {
            throw StrataError(.tooLarge, "\(what) lists \(n) layers, over the limit of \(maxLayers); raise it with --max-layers if the image is real")
        }
    }

    /// `blobs/sha256/HEX` names its content; so does skopeo's `HEX.json` config name.
    static func digestNamed(by path: String) -> Digest? {
        if let d = blobDigestNamed(by: path) { return d }
        let last = path.split(separator: "/").last.map(String.init) ?? path
        if last.hasSuffix(".json") { return try? Digest(hex: String(last.dropLast(5))) }
        return nil
    }

    /// Only `blobs/sha256/HEX` names a layer blob's own digest (skopeo's `HEX.tar` is a diffID).
    static func blobDigestNamed(by path: String) -> Digest? {
        let parts = path.split(separator: "/").map(String.init).filter { $0 != "." }
        guard parts.count == 3, parts[0] == "blobs", parts[1] == "sha256" else { return nil }
        return try? Digest(hex: parts[2])
    }

    // MARK: OCI layout

    private func ociImages() throws -> [ImageToLoad] {
        let iref = try contents.open("index.json")
        let index = try JSONDocument.decode(Index.self, from: try iref.readAll(limit: JSONLimits.manifest), what: iref.label)
        var result: [ImageToLoad] = []
        for top in index.manifests {
            let tags = Reference.tags(fromAnnotations: top.annotations)
            guard let manifestDesc = try select(top, depth: 0) else { continue }
            result.append(try ociImage(manifestDesc, tags: tags))
        }
        guard !result.isEmpty else {
            throw StrataError(.notFound, "\(contents.label): no image for platform \(platform) in index.json; choose another with --platform")
        }
        return result
    }

    /// The manifest for our platform reachable from `desc` (which may be a nested index).
    private func select(_ desc: Descriptor, depth: Int) throws -> Descriptor? {
        guard depth < 4 else { throw StrataError(.invalidFormat, "\(contents.label): indexes nested too deeply") }
        if let p = desc.platform, !platform.matches(p) { return nil }
        if MediaType.isIndex(desc.mediaType) {
            let bytes = try readVerified(desc, limit: JSONLimits.manifest)
            let index = try JSONDocument.decode(Index.self, from: bytes, what: "\(contents.label): index \(desc.digest)")
            for d in index.manifests {
                if let m = try select(d, depth: depth + 1) { return m }
            }
            return nil
        }
        return desc
    }

    private func ociImage(_ desc: Descriptor, tags: [String]) throws -> ImageToLoad {
        try image(manifest: try readVerified(desc, limit: JSONLimits.manifest), digest: desc.digest, tags: tags)
    }

    /// The image a verified manifest (`bytes`, of `digest`) describes.
    private func image(manifest bytes: [UInt8], digest: Digest, tags: [String]) throws -> ImageToLoad {
        let what = "\(contents.label): manifest \(digest)"
        let manifest = try JSONDocument.decode(Manifest.self, from: bytes, what: what)
        try checkLayerCount(manifest.layers.count, what: what)
        let configBytes = try readVerified(manifest.config, limit: JSONLimits.config)
        let config = try JSONDocument.decode(ImageConfig.self, from: configBytes, what: "\(contents.label): config \(manifest.config.digest)")
        guard config.rootfs.diff_ids.count == manifest.layers.count else {
            throw StrataError(.invalidFormat,
                              "\(what) lists \(manifest.layers.count) layers but config \(manifest.config.digest) has \(config.rootfs.diff_ids.count) diff_ids")
        }
        let layers = try zip(manifest.layers, config.rootfs.diff_ids).map { d, diffID -> LayerToLoad in
            try d.checkSize(limit: Int64.max / 2, label: what)
            if let t = d.mediaType, !MediaType.isLayer(t) {
                throw StrataError(.unsupported, "\(what): layer \(d.digest) has media type \(t), which is not an image layer")
            }
            let blob = try self.blob(d.digest)
            guard blob.size == d.size else {
                throw StrataError(.sizeMismatch, "\(blob.label): layer blob is \(blob.size) bytes, the manifest says \(d.size)")
            }
            return LayerToLoad(blob: blob, blobDigest: d.digest, mediaType: d.mediaType, diffID: diffID)
        }
        return ImageToLoad(configBytes: configBytes, configDigest: manifest.config.digest, config: config,
                           manifestBytes: bytes, manifestDigest: digest, layers: layers, tags: tags)
    }

    /// A small blob, checked against its descriptor's size and digest.
    private func readVerified(_ desc: Descriptor, limit: Int) throws -> [UInt8] {
        try desc.checkSize(limit: Int64(limit), label: contents.label)
        let ref = try blob(desc.digest)
        guard ref.size == desc.size else {
            throw StrataError(.sizeMismatch, "\(ref.label): \(ref.size) bytes, the descriptor says \(desc.size)")
        }
        let bytes = try ref.readAll(limit: limit)
        let actual = Digest.of(bytes)
        guard actual == desc.digest else {
            throw StrataError(.digestMismatch, "\(ref.label): content hashes to \(actual), not \(desc.digest)")
        }
        return bytes
    }
}

/// Just enough of a manifest to tell an image manifest from a list.
private struct MediaTypeOnly: Decodable {
    var mediaType: String?
    var manifests: [Descriptor]?
}
