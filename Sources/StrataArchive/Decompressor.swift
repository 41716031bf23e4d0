import CArchive
import StrataCore

/// The compression of a stream, detected from its first bytes (never trusted from a media type).
/// bzip2 and lz4 are read (`docker import` takes bzip2) but never written into images.
public enum Compression: String, Sendable, Codable {
    case none, gzip, zstd, xz, bzip2, lz4
}

/// Bridges a `ChunkSource` into a libarchive read callback. The Swift error a source throws
/// is kept, so the caller sees it rather than libarchive's generic "read error".
final class ArchiveInput {
    let source: any ChunkSource
    var error: (any Error)?
    init(_ source: any ChunkSource) { self.source = source }

    /// Opens `archive` reading from this input. The input must outlive the archive.
    func open(_ archive: OpaquePointer) -> Int32 {
        archive_read_set_callback_data(archive, Unmanaged.passUnretained(self).toOpaque())
        archive_read_set_read_callback(archive) { _, client, bufferOut in
            let input = Unmanaged<ArchiveInput>.fromOpaque(client!).takeUnretainedValue()
            do {
                let chunk = try input.source.nextChunk()
                bufferOut?.pointee = chunk.baseAddress
                return chunk.count
            } catch {
                input.error = error
                return -1
            }
        }
        if source is any SkippableSource {
            archive_read_set_skip_callback(archive) { _, client, request in
                let input = Unmanaged<ArchiveInput>.fromOpaque(client!).takeUnretainedValue()
                return (input.source as! any SkippableSource).skip(request)
            }
        }
        return archive_read_open1(archive)
    }
}

/// The message of the last libarchive error on `a`.
func archiveMessage(_ a: OpaquePointer?) -> String {
    guard let a, let s = archive_error_string(a) else { return "unknown libarchive error" }
    return String(cString: s)
}

/// Decompresses a stream whose compression (none, gzip, zstd, xz, bzip2, lz4) is detected from its bytes.
/// Only these filters are enabled: never `_all`, which would let hostile bytes pick readers or
/// filters that run external programs.
public final class Decompressor: ChunkSource {
    private let archive: OpaquePointer
    private let input: ArchiveInput
    private let label: String
    private var finished = false
    public let compression: Compression

    /// Decompresses `upstream` (gzip, zstd, xz, bzip2, lz4 or none, told by its magic bytes).
    public init(_ upstream: any ChunkSource, label: String) throws {
        guard let a = archive_read_new() else { throw StrataError(.internalError, "archive_read_new failed") }
        archive = a
        input = ArchiveInput(upstream)
        self.label = label
        archive_read_support_filter_gzip(a)
        archive_read_support_filter_zstd(a)
        archive_read_support_filter_xz(a)
        archive_read_support_filter_bzip2(a)
        archive_read_support_filter_lz4(a)
        archive_read_support_format_raw(a)
        if input.open(a) != ARCHIVE_OK {
            // The message lives in the archive: read it before the archive is freed.
            let msg = archiveMessage(a)
            let e = input.error
            archive_read_free(a)
            if let e = e as? StrataError { throw e.message.hasPrefix(label) ? e : e.context(label) }
            throw StrataError(.invalidFormat, "\(label): cannot read compressed stream: \(msg)", cause: e)
        }
        var entry: OpaquePointer?
        let r = archive_read_next_header(a, &entry)
        if r == ARCHIVE_EOF {
            finished = true
        } else if r != ARCHIVE_OK {
            let msg = archiveMessage(a)
            let e = input.error
            archive_read_free(a)
            if let e = e as? StrataError { throw e.message.hasPrefix(label) ? e : e.context(label) }
            throw StrataError(.invalidFormat, "\(label): cannot read compressed stream: \(msg)", cause: e)
        }
        switch archive_filter_code(a, 0) {
        case ARCHIVE_FILTER_GZIP: compression = .gzip
        case ARCHIVE_FILTER_ZSTD: compression = .zstd
        case ARCHIVE_FILTER_XZ: compression = .xz
        case ARCHIVE_FILTER_BZIP2: compression = .bzip2
        case ARCHIVE_FILTER_LZ4: compression = .lz4
        default: compression = .none
        }
    }

    deinit { archive_read_free(archive) }

    public func nextChunk() throws -> UnsafeRawBufferPointer {
        if finished { return UnsafeRawBufferPointer(start: nil, count: 0) }
        var buf: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        let r = archive_read_data_block(archive, &buf, &size, &offset)
        if r == ARCHIVE_EOF {
            finished = true
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        if r != ARCHIVE_OK {
            if let e = input.error as? StrataError { throw e }
            throw StrataError(.invalidFormat,
                              "\(label): corrupt or truncated \(compression.rawValue) stream: \(archiveMessage(archive))",
                              cause: input.error)
        }
        return UnsafeRawBufferPointer(start: buf, count: size)
    }
}
