import FoundationEssentials
import StrataCore
import StrataFormats

/// An image with its tags and layers, as `images` lists it.
public struct ImageView: Sendable {
    public var record: ImageRecord
    public var tags: [String]
    /// Bottom layer first.
    public var diffIDs: [DiffID]
    public var id: Digest { record.id }
}

/// A layer with the images that use it, as `layers` lists it.
public struct LayerView: Sendable {
    public var record: LayerRecord
    /// IDs of the images whose chain includes this layer.
    public var images: [Digest]
    public var chainID: ChainID { record.chainID }
    public var parent: ChainID? { record.parent }
}

extension Store {
    /// The tags a reference may be stored under, most literal first: as typed (`:latest`
    /// added), the full Docker form (`busybox` → `docker.io/library/busybox:latest`), its short
    /// forms, and podman's `localhost/` form of an unqualified name.
    static func tagCandidates(_ ref: String) -> [String] {
        var out: [String] = []
        if let n = try? Reference.normalize(ref) { out.append(n) }
        if let r = try? ImageReference(parsing: ref), r.tag != nil {
            let full = r.name + ":" + (r.tag ?? "latest")
            out += [full] + r.shortForms
            if r.registry == ImageReference.dockerHub, !ref.hasPrefix("docker.io/"), let n = out.first { out.append("localhost/" + n) }
        }
        var seen: Set<String> = []
        return out.filter { seen.insert($0).inserted }
    }

    /// Every image, newest first, with its tags and layers.
    /// The digest each repository knows image `id` by (Docker's RepoDigests): what a pull
    /// resolved there (an index's digest where the tag named one), what a push sent there.
    public func repoDigests(of id: Digest) throws -> [(repository: String, digest: String)] {
        try metadata.read { try $0.repoDigests(ofImage: id.string) }
    }

    public func images() throws -> [ImageView] {
        try metadata.read { tx in
            try tx.images().map { image in
                ImageView(record: image, tags: try tx.tags(ofImage: image.id.string),
                          diffIDs: try tx.layers(ofImage: image.id).map(\.diffID))
            }
        }
    }

    /// Every layer, oldest first, with the images that use it.
    public func layers() throws -> [LayerView] {
        try metadata.read { tx in
            try tx.layers().map { l in
                LayerView(record: l, images: try tx.images(usingLayer: l.chainID.description).map(Digest.init(parsing:)))
            }
        }
    }

    /// Resolves what a user typed to an image ID: a tag (`name` means `name:latest`), a full ID
    /// (`sha256:HEX` or `HEX`), or a unique prefix of an ID, as in Docker.
    public func resolveImage(_ ref: String) throws -> Digest {
        try metadata.read { tx in
            for name in Store.tagCandidates(ref) {
                if let id = try tx.imageID(tag: name) { return try Digest(parsing: id) }
            }
            var hex = ref
            if hex.hasPrefix("sha256:") { hex = String(hex.dropFirst(7)) }
            guard !hex.isEmpty, hex.count <= 64, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw StrataError(.notFound, "no image \"\(ref)\" in the store; `strata images` lists them")
            }
            let ids = try tx.imageIDs(prefix: hex, limit: 2)
            switch ids.count {
            case 0: throw StrataError(.notFound, "no image \"\(ref)\" in the store; `strata images` lists them")
            case 1: return try Digest(parsing: ids[0])
            default: throw StrataError(.invalidArgument, "\"\(ref)\" matches several images; give more of the ID")
            }
        }
    }
}
