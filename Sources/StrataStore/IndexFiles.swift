import FoundationEssentials
import StrataCore
import StrataFormats
import StrataSystem

/// The files the database is an index of (docs/store-layout.md, "The database is an index"):
/// everything `check --repair` needs to rebuild it lives beside the data it describes.
///
///     ROOT/layers/CACHEID/layer.json       the layer's row: chainID, diffID, parent, journal form…
///     ROOT/layers/CACHEID/flattened.json   a flattened layer's row: its top layer and depth
///     ROOT/containers/ID/container.json    the container's row: name, image, driver, created
///     ROOT/images.json                     images (config and manifest digests) with their tags,
///                                          and the generation the database had when written
///
/// The first three are written once, in staging, before the directory is renamed into place;
/// `images.json` after every change of images, tags, layers or containers.
package enum IndexFiles {
    package static let layerName: PathBytes = Array("layer.json".utf8)
    package static let flattenedName: PathBytes = Array("flattened.json".utf8)
    package static let containerName: PathBytes = Array("container.json".utf8)
    package static let imagesName: PathBytes = Array("images.json".utf8)
    /// More than this in one of these files is not ours.
    package static let limit = 256 << 20

    /// layer.json.
    package struct Layer: Codable, Equatable {
        package var chainID: String
        package var diffID: String
        package var parent: String?
        package var size: Int64
        package var tarSize: Int64
        package var blobDigest: String?
        package var compression: String?
        package var opaqueRoot: Bool
        package var journal: String
        package var journalNote: String?
        package var createdAt: String

        package init(_ l: LayerRecord) {
            chainID = l.chainID.description; diffID = l.diffID.description; parent = l.parent?.description
            size = l.size; tarSize = l.tarSize; blobDigest = l.blobDigest; compression = l.compression
            opaqueRoot = l.opaqueRoot; journal = l.journal.rawValue; journalNote = l.journalNote
            createdAt = Timestamp.string(l.createdAt)
        }

        /// The row, for the directory `cacheID`; throws on a value that does not parse.
        package func record(cacheID: String) throws -> LayerRecord {
            let chain = try ChainID(parsing: chainID), diff = try DiffID(parsing: diffID)
            guard ChainID.of(parent: try parent.map(ChainID.init(parsing:)), diffID: diff) == chain else {
                throw StrataError(.invalidFormat, "layers/\(cacheID)/layer.json: chainID \(chainID) is not that of its parent and diffID")
            }
            guard let form = JournalForm(rawValue: journal), let created = Timestamp.date(createdAt) else {
                throw StrataError(.invalidFormat, "layers/\(cacheID)/layer.json: journal form or creation time does not parse")
            }
            return LayerRecord(chainID: chain, diffID: diff, parent: try parent.map(ChainID.init(parsing:)), cacheID: cacheID,
                               size: size, tarSize: tarSize, blobDigest: blobDigest, compression: compression,
                               opaqueRoot: opaqueRoot, journal: form, journalNote: journalNote, createdAt: created)
        }
    }

    /// flattened.json.
    package struct Flattened: Codable, Equatable {
        package var topLayer: String
        package var layerCount: Int
        package var createdAt: String

        package init(topLayer: ChainID, layerCount: Int, createdAt: Date) {
            self.topLayer = topLayer.description; self.layerCount = layerCount; self.createdAt = Timestamp.string(createdAt)
        }
    }

    /// container.json.
    package struct Container: Codable, Equatable {
        package var id: String
        package var name: String
        package var image: String
        package var driver: String
        package var createdAt: String

        package init(_ c: ContainerRecord) {
            id = c.id; name = c.name; image = c.image.string; driver = c.driver; createdAt = Timestamp.string(c.createdAt)
        }
    }

    /// images.json.
    package struct Images: Codable, Equatable {
        /// First in the file: `generation(of:)` reads only the start.
        package var generation: Int64
        package var driver: String?
        package var images: [Image]

        package struct Image: Codable, Equatable {
            package var id: String
            package var manifest: String?
            package var loadedAt: String
            package var tags: [String]
            /// `registry/path@digest`, one per repository (absent in files of earlier stratas).
            package var repoDigests: [String]? = nil
        }
    }

    package static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var bytes = Array(try encoder.encode(value))
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// Writes `value` as `name` in `dir` (a new file: staging directories are fresh).
    package static func write<T: Encodable>(_ value: T, as name: PathBytes, in dir: Directory) throws {
        let f = try dir.openFile(name, flags: [.writeOnly, .create, .exclusive], mode: 0o600)
        try f.writeAll(try encode(value))
    }

    /// Reads `name` in `dir` as `T`; nil when there is no such file.
    package static func read<T: Decodable>(_ type: T.Type, _ name: PathBytes, in dir: Directory, what: String) throws -> T? {
        let bytes: [UInt8]
        do { bytes = try dir.readFile(name, limit: limit) } catch let e as StrataError where (e.cause as? Errno) == .ENOENT {
            return nil
        }
        return try JSONDocument.decode(T.self, from: bytes, what: what)
    }

    /// The generation images.json was written at, read from its first bytes; nil without the file.
    package static func generation(in root: Directory) throws -> Int64? {
        let f: FDHandle
        do { f = try root.openFile(imagesName, flags: .readOnly) } catch let e as StrataError where (e.cause as? Errno) == .ENOENT {
            return nil
        }
        var head = [UInt8](repeating: 0, count: 64)
        let n = try head.withUnsafeMutableBytes { try f.pread(into: $0, at: 0) }
        // Keys are sorted: `{"driver":"overlay","generation":N,…` fits in the first 64 bytes.
        let text = String(decoding: head[..<n], as: UTF8.self)
        guard let r = text.range(of: "\"generation\":") else {
            return try read(Images.self, imagesName, in: root, what: "images.json")?.generation
        }
        let digits = text[r.upperBound...].prefix { $0.isNumber }
        guard let g = Int64(digits) else {
            throw StrataError(.invalidFormat, "images.json: its generation does not parse")
        }
        return g
    }
}
