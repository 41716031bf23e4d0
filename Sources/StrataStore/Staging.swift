import Dispatch
import FoundationEssentials
import StrataArchive
import StrataCore
import StrataLayer
import StrataSystem

/// A layer unpacked in ROOT/tmp, verified, waiting to be renamed into ROOT/layers.
package struct StagedLayer: Sendable {
    package let cacheID: String
    package let chainID: ChainID
    package let parent: ChainID?
    package let result: LayerIngestResult
    /// When it was staged (whole seconds: what the row and layer.json both say).
    package let createdAt: Date
    /// Where it is now: tmp/<cacheID> until `moveIntoPlace`, then layers/<cacheID>.
    package var placed = false

    /// The row that records it (also written to its layer.json).
    package var record: LayerRecord {
        LayerRecord(chainID: chainID, diffID: result.diffID, parent: parent, cacheID: cacheID, size: result.stats.contentSize,
                    tarSize: result.tarSize, blobDigest: result.blobDigest.string, compression: result.compression.rawValue,
                    opaqueRoot: result.stats.opaqueRoot, journal: result.journalInexactReason == nil ? .exact : .raw,
                    journalNote: result.journalInexactReason, createdAt: createdAt)
    }
}

/// What happened to each layer during a load, for progress output.
public enum LayerEvent: Sendable {
    /// Before any layer: how many there are, and the blob bytes of those to read.
    case planned(layers: Int, bytes: Int64)
    case exists(index: Int, count: Int, chainID: ChainID)
    case started(index: Int, count: Int, chainID: ChainID, bytes: Int64)
    case unpacked(index: Int, count: Int, chainID: ChainID, tarBytes: Int64, seconds: Double)
    /// Compressed bytes of the blob read so far (at most about ten times a second per layer).
    case reading(chainID: ChainID, bytes: Int64, total: Int64)
}

/// Passes a blob through, reporting how much of it was read, at most every 100 ms.
package final class ProgressSource: ChunkSource {
    private let upstream: any ChunkSource
    private let report: (Int64) -> Void
    private var count: Int64 = 0
    private var last = DispatchTime.now().uptimeNanoseconds
    /// Passes `upstream` through, calling `report` with the bytes read so far.
    package init(_ upstream: any ChunkSource, report: @escaping (Int64) -> Void) {
        self.upstream = upstream
        self.report = report
    }
    package func nextChunk() throws -> UnsafeRawBufferPointer {
        let c = try upstream.nextChunk()
        count += Int64(c.count)
        let now = DispatchTime.now().uptimeNanoseconds
        if now - last > 100_000_000 || c.isEmpty {
            last = now
            report(count)
        }
        return c
    }
}

extension Store {
    package static let journalName: PathBytes = Array("tar-split.zst".utf8)
    package static let rawTarName: PathBytes = Array("layer.tar".utf8)
    package static let diffName: PathBytes = Array("diff".utf8)

    /// Streams one layer blob into a new staging directory, in one pass, and checks the diffID
    /// (and the blob digest where the source names one). On any failure the staging directory
    /// is removed and the store is as it was.
    package func stageLayer(source: any ChunkSource, reopen: () throws -> any ChunkSource, parent: ChainID?,
                    expectedDiffID: DiffID?, expectedBlobDigest: Digest?, maxLayerSize: Int64,
                    label: String) throws -> StagedLayer {
        let cacheID = Store.randomID()
        let name = Array(cacheID.utf8)
        try tmpDir.mkdirOrThrow(name, mode: 0o700)
        var keep = false
        defer { if !keep { try? tmpDir.removeTree(name) } }

        guard case .success(let stage) = tmpDir.openDirectory(name, resolve: [.noSymlinks]) else {
            throw StrataError(.system, "cannot open staging directory tmp/\(cacheID)")
        }
        try stage.mkdirOrThrow(Store.diffName, mode: 0o755)
        guard case .success(let diff) = stage.openDirectory(Store.diffName, resolve: [.noSymlinks]) else {
            throw StrataError(.system, "cannot open staging directory tmp/\(cacheID)/diff")
        }
        let journal = try stage.openFile(Store.journalName, flags: [.writeOnly, .create, .exclusive], mode: 0o600)
        let result = try LayerIngest.run(blob: source, into: diff, journal: journal, maxTarSize: maxLayerSize, label: label,
                                         expectedBlobDigest: expectedBlobDigest)

        if let expectedBlobDigest, expectedBlobDigest != result.blobDigest {
            throw StrataError.blobDigestMismatch(label, expected: expectedBlobDigest, actual: result.blobDigest)
        }
        if let expectedDiffID, expectedDiffID != result.diffID {
            throw StrataError(.digestMismatch, "\(label): uncompressed layer hashes to \(result.diffID), but the image config says diffID \(expectedDiffID)")
        }
        let devices = result.stats.skippedDevices
        if !devices.isEmpty {
            let names = devices.prefix(3).map(\.display).joined(separator: ", ") + (devices.count > 3 ? ", …" : "")
            logger.warning("\(label): \(devices.count) device node\(devices.count == 1 ? "" : "s") not made (a user namespace cannot make devices; the layer's tar keeps them): \(names)")
        }
        if let reason = result.journalInexactReason {
            // The journal cannot rebuild this tar: keep the tar itself (a second read of the blob,
            // only for such layers), and check that it is the same stream.
            logger.notice("\(label): keeping the raw layer tar: \(reason)")
            let out = try stage.openFile(Store.rawTarName, flags: [.writeOnly, .create, .exclusive], mode: 0o600)
            let tar = HashingSource(try Decompressor(try reopen(), label: label))
            while true {
                let c = try tar.nextChunk()
                if c.isEmpty { break }
                try out.writeAll(c)
            }
            guard DiffID(tar.finalize()) == result.diffID else {
                throw StrataError(.digestMismatch, "\(label): the blob changed while it was being read")
            }
        }
        let staged = StagedLayer(cacheID: cacheID, chainID: ChainID.of(parent: parent, diffID: result.diffID),
                                 parent: parent, result: result,
                                 createdAt: Timestamp.wholeSecondNow())
        // The row the database will hold, beside the files it describes (docs/store-layout.md).
        try IndexFiles.write(IndexFiles.Layer(staged.record), as: IndexFiles.layerName, in: stage)
        // One syncfs per layer (not an fsync per file) before the database can name it.
        try stage.handle.syncfs()
        keep = true
        return staged
    }

    /// Renames a staged layer from tmp/ into layers/.
    package func moveIntoPlace(_ layer: inout StagedLayer) throws {
        let name = Array(layer.cacheID.utf8)
        try tmpDir.rename(name, to: name, in: layersDir)
        layer.placed = true
    }

    /// Removes a staged layer wherever it is (after a failure, or when another process
    /// recorded the same chainID first).
    package func discard(_ layer: StagedLayer) {
        let name = Array(layer.cacheID.utf8)
        try? (layer.placed ? layersDir : tmpDir).removeTree(name)
    }
}
