import StrataArchive
import StrataCore
import StrataLayer
import StrataSystem

extension Store {
    /// The layer recorded under `chainID`, if any.
    public func layer(_ chainID: ChainID) throws -> LayerRecord? { try metadata.read { try $0.layer(chainID) } }

    /// Every layer, oldest first.
    public func allLayers() throws -> [LayerRecord] { try metadata.read { try $0.layers() } }

    /// The layers of an image, bottom first.
    public func imageLayers(_ id: Digest) throws -> [LayerRecord] { try metadata.read { try $0.layers(ofImage: id) } }

    /// The directory holding a layer's files.
    public func layerPath(_ layer: LayerRecord) -> String { layerPath(cacheID: layer.cacheID) }

    /// ROOT/layers/CACHEID/diff: a layer's (or a flattened layer's) files.
    public func layerPath(cacheID: String) -> String { "\(rootPath)/layers/\(cacheID)/diff" }

    /// What a short link in ROOT/l points at: the same directory, relative to ROOT/l.
    public static func linkTarget(cacheID: String) -> PathBytes { Array("../layers/\(cacheID)/diff".utf8) }

    /// The directory of a layer's files (layers/CACHEID/diff), opened without following links.
    package func layerDirectory(_ layer: LayerRecord) throws -> Directory {
        switch layersDir.openDirectory(Array("\(layer.cacheID)/diff".utf8), resolve: [.noSymlinks]) {
        case .success(let d): return d
        case .failure(let e):
            throw StrataError(.notFound, "layer \(layer.chainID): directory layers/\(layer.cacheID)/diff is missing; run `strata check`", cause: e)
        }
    }

    /// Streams a layer's original uncompressed tar: rebuilt from the files and the journal, or
    /// the raw tar kept where the journal cannot be exact. Returns its digest; callers compare it
    /// with the diffID (a mismatch means the layer's files were changed on disk).
    @discardableResult
    public func streamLayerTar(_ layer: LayerRecord, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> DiffID {
        let hasher = BackgroundDigester()
        defer { _ = hasher.finalize() }
        let label = "layer \(layer.chainID)"
        if layer.journal == .raw {
            let dir = try layersDir.openDirectory(Array(layer.cacheID.utf8), resolve: [.noSymlinks]).get()
            let f = try dir.openFile(Store.rawTarName, flags: .readOnly)
            let src = FileRangeSource(handle: f, offset: 0, length: Int64(try f.stat().size), label: label + " layer.tar")
            while true {
                let c = try src.nextChunk()
                if c.isEmpty { break }
                hasher.update(c)
                try sink(c)
            }
        } else {
            let dir = try layersDir.openDirectory(Array(layer.cacheID.utf8), resolve: [.noSymlinks]).get()
            let journal = try dir.openFile(Store.journalName, flags: .readOnly)
            try LayerRebuild.run(root: try layerDirectory(layer), journal: journal, label: label) { c in
                hasher.update(c)
                try sink(c)
            }
        }
        return DiffID(hasher.finalize())
    }
}
