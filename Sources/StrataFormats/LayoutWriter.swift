import FoundationEssentials
import StrataArchive
import StrataCore
import StrataSystem

/// Where an exported image layout goes: a tar stream or a directory. Blobs are written once
/// each, however many images share them.
public protocol LayoutSink: AnyObject {
    /// Adds `blobs/sha256/HEX` of exactly `size` bytes, produced by `body`. Idempotent per digest.
    func addBlob(_ digest: Digest, size: Int64, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws
    func addFile(_ path: String, bytes: [UInt8]) throws
    func hasBlob(_ digest: Digest) -> Bool
    func finish() throws
}

/// A layout written as an uncompressed tar (oci-archive, docker-archive).
public final class TarLayoutSink: LayoutSink {
    private let tar: TarFileWriter
    private var blobs: Set<Digest> = []
    private var startedBlobs = false

    /// Writes the layout as a tar to `sink`.
    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        tar = try TarFileWriter(sink: sink)
    }

    public func hasBlob(_ digest: Digest) -> Bool { blobs.contains(digest) }

    public func addBlob(_ digest: Digest, size: Int64, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        guard !blobs.contains(digest) else { return }
        if !startedBlobs {
            try tar.addDirectory("blobs")
            try tar.addDirectory("blobs/sha256")
            startedBlobs = true
        }
        try tar.addFile("blobs/sha256/" + digest.hex, size: size, body)
        blobs.insert(digest)
    }

    public func addFile(_ path: String, bytes: [UInt8]) throws { try tar.addFile(path, bytes: bytes) }
    public func finish() throws { try tar.close() }
}

/// A layout written as a directory (oci-dir). The directory must be new or empty.
public final class DirectoryLayoutSink: LayoutSink {
    private let root: Directory
    private let blobsDir: Directory
    private var blobs: Set<Digest> = []

    /// Writes the layout into the directory `path` (made if missing).
    public init(path: String) throws {
        try makeDirectory(path)
        root = try Directory.open(path)
        guard try root.entries().isEmpty else {
            throw StrataError(.alreadyExists, "\(path) is not empty; save an OCI layout into a new or empty directory")
        }
        try root.mkdirOrThrow(Array("blobs".utf8), mode: 0o755)
        let b = try root.openDirectory(Array("blobs".utf8), resolve: [.noSymlinks]).get()
        try b.mkdirOrThrow(Array("sha256".utf8), mode: 0o755)
        blobsDir = try b.openDirectory(Array("sha256".utf8), resolve: [.noSymlinks]).get()
    }

    public func hasBlob(_ digest: Digest) -> Bool { blobs.contains(digest) }

    public func addBlob(_ digest: Digest, size: Int64, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        guard !blobs.contains(digest) else { return }
        let tmp = Array(".\(digest.hex).partial".utf8)
        let f = try blobsDir.openFile(tmp, flags: [.writeOnly, .create, .truncate], mode: 0o644)
        var written: Int64 = 0
        try body { chunk in
            written += Int64(chunk.count)
            try f.writeAll(chunk)
        }
        guard written == size else { throw StrataError(.sizeMismatch, "blob \(digest): \(written) bytes written, \(size) expected") }
        try blobsDir.rename(tmp, to: Array(digest.hex.utf8), in: blobsDir)
        blobs.insert(digest)
    }

    public func addFile(_ path: String, bytes: [UInt8]) throws {
        try root.writeFileAtomically(Array(path.utf8), bytes)
    }

    public func finish() throws {}
}

/// One image to write into a layout.
public struct ExportImage {
    /// A layer blob as the manifest names it.
    public struct Layer {
        public var digest: Digest
        public var size: Int64
        public var mediaType: String
        /// A layer blob of `digest`, `size` bytes, of `mediaType`.
        public init(digest: Digest, size: Int64, mediaType: String) {
            self.digest = digest; self.size = size; self.mediaType = mediaType
        }
    }
    public var configBytes: [UInt8]
    public var configDigest: Digest
    public var layers: [Layer]
    public var tags: [String]
    /// The manifest the image was loaded with, reused verbatim when it describes exactly these
    /// blobs (so its digest survives the round trip).
    public var originalManifest: [UInt8]?

    /// An image to write: its config, its layer blobs, its tags, and the manifest it came with (kept when still right).
    public init(configBytes: [UInt8], configDigest: Digest, layers: [Layer], tags: [String], originalManifest: [UInt8]?) {
        self.configBytes = configBytes; self.configDigest = configDigest; self.layers = layers
        self.tags = tags; self.originalManifest = originalManifest
    }
}

/// Writes the JSON documents of an OCI layout (and, for docker-archive, Docker 25's
/// `manifest.json` next to it) once the layer blobs are in the sink.
public enum LayoutWriter {
    /// Writes the configs, manifests and index (or docker-archive's manifest.json) for `images` into `sink`.
    public static func finish(_ images: [ExportImage], format: ArchiveFormat, into sink: any LayoutSink) throws {
        var indexEntries: [String] = []
        var dockerEntries: [String] = []
        for image in images {
            try sink.addBlob(image.configDigest, size: Int64(image.configBytes.count)) { w in
                try image.configBytes.withUnsafeBytes { try w($0) }
            }
            let manifest = reusableManifest(image) ?? generatedManifest(image)
            let mdigest = Digest.of(manifest)
            try sink.addBlob(mdigest, size: Int64(manifest.count)) { w in try manifest.withUnsafeBytes { try w($0) } }
            let descriptor = { (annotations: String) in
                "{\"mediaType\":\"\(MediaType.ociManifest)\",\"digest\":\"\(mdigest)\",\"size\":\(manifest.count)\(annotations)}"
            }
            if image.tags.isEmpty {
                indexEntries.append(descriptor(""))
            }
            for tag in image.tags {
                let bare = tag.split(separator: ":").last.map(String.init) ?? tag
                indexEntries.append(descriptor(",\"annotations\":{\"io.containerd.image.name\":\(json(tag)),\"org.opencontainers.image.ref.name\":\(json(format == .dockerArchive ? bare : tag))}"))
            }
            let layers = image.layers.map { json("blobs/sha256/" + $0.digest.hex) }.joined(separator: ",")
            let tags = image.tags.map(json).joined(separator: ",")
            dockerEntries.append("{\"Config\":\(json("blobs/sha256/" + image.configDigest.hex)),\"RepoTags\":[\(tags)],\"Layers\":[\(layers)]}")
        }
        try sink.addFile("oci-layout", bytes: Array("{\"imageLayoutVersion\":\"1.0.0\"}".utf8))
        let index = "{\"schemaVersion\":2,\"mediaType\":\"\(MediaType.ociIndex)\",\"manifests\":[\(indexEntries.joined(separator: ","))]}"
        try sink.addFile("index.json", bytes: Array(index.utf8))
        if format == .dockerArchive {
            try sink.addFile("manifest.json", bytes: Array("[\(dockerEntries.joined(separator: ","))]".utf8))
        }
        try sink.finish()
    }

    /// The original manifest when its config and layer descriptors are exactly what is written.
    static func reusableManifest(_ image: ExportImage) -> [UInt8]? {
        guard let bytes = image.originalManifest,
              let m = try? JSONDocument.decode(Manifest.self, from: bytes, what: "manifest"),
              MediaType.isManifest(m.mediaType) || m.mediaType == nil,
              m.config.digest == image.configDigest, m.layers.count == image.layers.count else { return nil }
        for (d, l) in zip(m.layers, image.layers) where d.digest != l.digest || d.size != l.size || d.mediaType != l.mediaType {
            return nil
        }
        return bytes
    }

    static func generatedManifest(_ image: ExportImage) -> [UInt8] {
        let layers = image.layers.map {
            "{\"mediaType\":\(json($0.mediaType)),\"digest\":\"\($0.digest)\",\"size\":\($0.size)}"
        }.joined(separator: ",")
        let s = "{\"schemaVersion\":2,\"mediaType\":\"\(MediaType.ociManifest)\",\"config\":{\"mediaType\":\"\(MediaType.ociConfig)\",\"digest\":\"\(image.configDigest)\",\"size\":\(image.configBytes.count)},\"layers\":[\(layers)]}"
        return Array(s.utf8)
    }

    /// A JSON string literal (RFC 8259 section 7 escaping; `/` left alone as Go writes it).
    static func json(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
