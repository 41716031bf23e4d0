import StrataCore

/// What `inspect IMAGE` shows: the store's facts and the config as stored.
public struct ImageDetails: Sendable {
    public var record: ImageRecord
    public var tags: [String]
    /// Bottom first.
    public var layers: [LayerRecord]
    /// The config blob, as the verified bytes.
    public var config: [UInt8]
    /// `registry/path@digest`: the digest each repository knows it by (pulled or pushed there).
    public var repoDigests: [String] = []
}

/// What `inspect LAYER` shows.
public struct LayerDetails: Sendable {
    public var record: LayerRecord
    public var children: [String]
    /// IDs of the images that use it.
    public var images: [String]
    /// The directory holding its files.
    public var path: String
}

extension Store {
    /// An image's record, tags, layers and config.
    public func inspectImage(_ id: Digest) throws -> ImageDetails {
        let config = try blob(id)
        return try metadata.read { tx in
            guard let record = try tx.image(id) else { throw StrataError(.notFound, "no image \(id)") }
            return ImageDetails(record: record, tags: try tx.tags(ofImage: id.string), layers: try tx.layers(ofImage: id), config: config,
                                repoDigests: try tx.repoDigests(ofImage: id.string).map { "\($0.repository)@\($0.digest)" })
        }
    }

    /// A layer's record, its children and the images that use it.
    public func inspectLayer(_ l: LayerRecord) throws -> LayerDetails {
        try metadata.read { tx in
            LayerDetails(record: l, children: try tx.children(of: l.chainID), images: try tx.images(usingLayer: l.chainID.description),
                         path: layerPath(l))
        }
    }
}
