import StrataArchive
import StrataCore
import StrataSystem

/// The digests and facts of one layer blob streamed into a directory.
public struct LayerIngestResult: Sendable {
    /// sha256 of the bytes as stored (compressed).
    public var blobDigest: Digest
    public var blobSize: Int64
    /// sha256 of the uncompressed tar stream.
    public var diffID: DiffID
    public var tarSize: Int64
    public var compression: Compression
    public var stats: UnpackStats
    /// Why the journal cannot rebuild the tar byte-exact, if it cannot.
    public var journalInexactReason: String?
}

/// One pass over a layer blob: hash the compressed bytes (blob digest) → decompress → hash the
/// tar bytes (diffID), cut them into the tar-split journal → unpack the entries. Nothing is
/// read twice and nothing is held whole in memory.
public enum LayerIngest {
    /// - Parameters:
    ///   - blob: the compressed (or plain) layer bytes, exactly the blob.
    ///   - root: an empty directory that receives the layer's files.
    ///   - journal: a new file that receives the tar-split journal.
    ///   - maxTarSize: fail as soon as the uncompressed stream passes this many bytes.
    ///   - expectedBlobDigest: the digest that names the blob. When the blob fails to
    ///     decompress or parse, the rest of it is hashed: bytes that are not the named blob
    ///     are reported as a digest mismatch, not as the damage they did to the tar.
    public static func run(blob: any ChunkSource, into root: Directory, journal: FDHandle,
                           maxTarSize: Int64, label: String, expectedBlobDigest: Digest? = nil) throws -> LayerIngestResult {
        let compressed = HashingSource(blob)
        do {
            return try run(compressed, into: root, journal: journal, maxTarSize: maxTarSize, label: label)
        } catch {
            guard let expected = expectedBlobDigest, Self.mayBeDamage(error), (try? compressed.drain()) != nil else { throw error }
            let actual = compressed.finalize()
            if actual != expected { throw StrataError.blobDigestMismatch(label, expected: expected, actual: actual) }
            throw error
        }
    }

    /// Errors the content of a blob can cause (not the source failing, nor the disk).
    private static func mayBeDamage(_ error: any Error) -> Bool {
        guard let e = error as? StrataError else { return false }
        return ![.system, .internalError, .digestMismatch, .sizeMismatch, .conflict, .inUse].contains(e.code)
    }

    private static func run(_ compressed: HashingSource, into root: Directory, journal: FDHandle,
                            maxTarSize: Int64, label: String) throws -> LayerIngestResult {
        let decompressor = try Decompressor(compressed, label: label)
        // An uncompressed blob is the tar itself: its digest is the diffID, hashed once (by
        // the blob's hasher, which sees every byte even when the tar fails to parse).
        let plain = decompressor.compression == .none
        let tar = HashingSource(decompressor, limit: maxTarSize,
                                limitMessage: "\(label): the uncompressed layer is over the --max-layer-size limit of \(maxTarSize) bytes")
        let writer = try JournalWriter(handle: journal)
        let recorder = JournalRecorder { try writer.append($0) }
        if plain { tar.hashing = false }
        tar.observer = { chunk, offset in try recorder.observe(chunk, at: offset) }

        let unpacker = LayerUnpacker(root: root, label: label, recorder: recorder)
        do {
            let reader = try TarReader(tar, label: label)
            try unpacker.apply(reader)
        }
        // Trailing zero blocks and any bytes after the end-of-archive marker are part of the
        // diffID and of the blob digest: read both streams to their very end.
        try tar.drain()
        try compressed.drain()
        try recorder.finish()
        try writer.close()
        let diffID = DiffID(plain ? compressed.finalize() : tar.finalize())
        return LayerIngestResult(
            blobDigest: plain ? diffID.digest : compressed.finalize(), blobSize: compressed.count,
            diffID: diffID, tarSize: tar.count,
            compression: decompressor.compression, stats: unpacker.stats,
            journalInexactReason: recorder.inexactReason)
    }
}

/// Rebuilds a layer's tar stream from its unpacked directory and its journal.
public enum LayerRebuild {
    /// Streams the rebuilt tar to `sink`, chunk by chunk.
    public static func run(root: Directory, journal: FDHandle, label: String,
                           sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let reader = try JournalReader(handle: journal, label: label + " journal")
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while let record = try reader.next() {
            switch record {
            case .raw(let bytes):
                try bytes.withUnsafeBytes { try sink($0) }
            case .file(let size, let path):
                let f: FDHandle
                switch root.openat2(path, flags: [.readOnly, .noFollow], resolve: [.inRoot, .noMagicLinks, .noXDev]) {
                case .success(let h): f = h
                case .failure(let e):
                    throw StrataError(.notFound, "\(label): file \"\(path.display)\" named by the journal is missing", cause: e)
                }
                var offset: Int64 = 0
                while offset < size {
                    let want = Int(min(Int64(buffer.count), size - offset))
                    let n = try buffer.withUnsafeMutableBytes { b in
                        try f.pread(into: UnsafeMutableRawBufferPointer(rebasing: b[0..<want]), at: offset)
                    }
                    if n == 0 {
                        throw StrataError(.sizeMismatch, "\(label): file \"\(path.display)\" is shorter than the \(size) bytes the journal expects")
                    }
                    try buffer.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    offset += Int64(n)
                }
            }
        }
    }
}
