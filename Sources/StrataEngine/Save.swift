import FoundationEssentials
import StrataArchive
import StrataCore
import StrataFormats
import StrataSystem

/// The archive formats `save` writes.
public enum SaveFormat: String, Sendable, CaseIterable {
    case dockerArchive = "docker-archive"
    case ociArchive = "oci-archive"
    case ociDir = "oci-dir"
}

/// What `save` writes: the format, the layers' compression, where progress goes.
public struct SaveOptions: Sendable {
    public var format: SaveFormat = .dockerArchive
    /// Layers are written uncompressed by default, as Docker does.
    public var compression: Compression = .none
    public var progress: @Sendable (String) -> Void = { _ in }
    /// docker-archive, layers uncompressed.
    public init() {}
}

extension Store {
    /// Writes images to `output` (a file, `-` for standard output, or a directory for oci-dir).
    /// Layer tars are rebuilt byte-exact, so diffIDs and image IDs survive; common layers are
    /// written once. A file is written under a temporary name and renamed when complete.
    public func save(_ refs: [String], to output: String, options: SaveOptions) throws {
        struct Item { var id: Digest; var tags: [String] }
        var items: [Item] = []
        for ref in refs {
            let id = try resolveImage(ref)
            let normalized = try? Reference.normalize(ref)
            let tag = try normalized.flatMap { n in try metadata.read { try $0.imageID(tag: n) } == id.string ? n : nil }
            if let i = items.firstIndex(where: { $0.id == id }) {
                if let tag, !items[i].tags.contains(tag) { items[i].tags.append(tag) }
            } else {
                items.append(Item(id: id, tags: tag.map { [$0] } ?? []))
            }
        }

        switch options.format {
        case .ociDir:
            let sink = try DirectoryLayoutSink(path: output)
            try write(items.map { ($0.id, $0.tags) }, into: sink, options: options)
        case .dockerArchive, .ociArchive:
            if output == "-" {
                let out = BufferedOutput(try FDHandle.duplicating(1))
                let sink = try TarLayoutSink { try out.write($0) }
                try write(items.map { ($0.id, $0.tags) }, into: sink, options: options)
                try out.flush()
                return
            }
            let slash = output.lastIndex(of: "/")
            let dir = slash.map { String(output[..<$0]) } ?? "."
            let file = slash.map { String(output[output.index(after: $0)...]) } ?? output
            let tmpPath = (dir.isEmpty ? "" : dir) + "/.\(file).strata-\(Store.randomID().prefix(8))"
            let out = BufferedOutput(try FDHandle.open(tmpPath, flags: [.writeOnly, .create, .exclusive], mode: 0o644))
            do {
                let sink = try TarLayoutSink { try out.write($0) }
                try write(items.map { ($0.id, $0.tags) }, into: sink, options: options)
                try out.flush()
                try renamePath(tmpPath, to: output)
            } catch {
                removeFile(tmpPath)
                throw error
            }
        }
    }

    private func write(_ images: [(Digest, [String])], into sink: any LayoutSink, options: SaveOptions) throws {
        var exported: [ExportImage] = []
        /// diffID → the blob written for it.
        var written: [DiffID: ExportImage.Layer] = [:]
        let format: ArchiveFormat = options.format == .dockerArchive ? .dockerArchive : .ociLayout
        let start = Date()
        var total: Int64 = 0
        for (id, tags) in images {
            let configBytes = try blob(id)
            let layers = try imageLayers(id)
            var out: [ExportImage.Layer] = []
            for (i, layer) in layers.enumerated() {
                if let done = written[layer.diffID] { out.append(done); continue }
                let t0 = Date()
                let l = try writeLayer(layer, compression: options.compression, into: sink)
                let secs = Date().timeIntervalSince(t0)
                total += l.size
                options.progress("layer \(i + 1)/\(layers.count) \(layer.chainID.digest.short): wrote \(ByteCount.describe(l.size))"
                                 + " in \(String(format: "%.2f", secs))s" + (secs > 0 ? " (\(ByteCount.describe(Int64(Double(l.size) / secs)))/s)" : ""))
                written[layer.diffID] = l
                out.append(l)
            }
            let original = try metadata.read { try $0.image(id)?.manifestDigest }.map { try blob($0) }
            exported.append(ExportImage(configBytes: configBytes, configDigest: id, layers: out, tags: tags, originalManifest: original))
        }
        try LayoutWriter.finish(exported, format: format, into: sink)
        let secs = Date().timeIntervalSince(start)
        options.progress("saved \(exported.count) image\(exported.count == 1 ? "" : "s"), \(written.count) layer\(written.count == 1 ? "" : "s"), "
                         + "\(ByteCount.describe(total)) in \(String(format: "%.2f", secs))s")
    }

    /// Writes one layer blob into the sink. Uncompressed: streamed straight in (its digest is
    /// the diffID, its size known). Compressed: through an unnamed spool file in tmp/, since a
    /// tar member's size and a blob's name must be known before its bytes.
    private func writeLayer(_ layer: LayerRecord, compression: Compression, into sink: any LayoutSink) throws -> ExportImage.Layer {
        let mismatch = { (got: DiffID) in
            StrataError(.digestMismatch, "layer \(layer.chainID): its files rebuild to \(got), not diffID \(layer.diffID); the layer was changed on disk (see `strata check`)")
        }
        if compression == .none {
            var got: DiffID?
            try sink.addBlob(layer.diffID.digest, size: layer.tarSize) { w in got = try streamLayerTar(layer, to: w) }
            if let got, got != layer.diffID { throw mismatch(got) }
            return .init(digest: layer.diffID.digest, size: layer.tarSize, mediaType: compression.layerMediaType)
        }
        let spool = try spoolFile()
        var hasher = Digester()
        var size: Int64 = 0
        let writer = try CompressingWriter(compression) { c in
            hasher.update(c)
            size += Int64(c.count)
            try spool.writeAll(c)
        }
        let got = try streamLayerTar(layer) { try writer.write($0) }
        try writer.close()
        if got != layer.diffID { throw mismatch(got) }
        let digest = hasher.finalize()
        try sink.addBlob(digest, size: size) { w in
            let src = FileRangeSource(handle: spool, offset: 0, length: size, label: "spool")
            while true {
                let c = try src.nextChunk()
                if c.isEmpty { break }
                try w(c)
            }
        }
        return .init(digest: digest, size: size, mediaType: compression.layerMediaType)
    }
}

extension Compression {
    var layerMediaType: String {
        switch self {
        case .none: MediaType.ociLayer
        case .gzip: MediaType.ociLayerGzip
        case .zstd: MediaType.ociLayerZstd
        // Not OCI types: `save` offers none, gzip and zstd only.
        case .xz: "application/vnd.oci.image.layer.v1.tar+xz"
        case .bzip2: "application/vnd.oci.image.layer.v1.tar+bzip2"
        case .lz4: "application/vnd.oci.image.layer.v1.tar+lz4"
        }
    }
}
