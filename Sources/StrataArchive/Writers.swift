import CArchive
@preconcurrency import Crypto
import StrataCore
import StrataSystem

/// Bridges libarchive's write callback to a Swift sink.
final class ArchiveOutput {
    let sink: (UnsafeRawBufferPointer) throws -> Void
    var error: (any Error)?
    init(_ sink: @escaping (UnsafeRawBufferPointer) throws -> Void) { self.sink = sink }

    /// A libarchive writer of a PAX tar (`restricted`: PAX headers only where ustar cannot
    /// say it) into this output, unblocked: each piece goes straight to the sink instead of
    /// through 10 KiB copies.
    func tarWriter(restricted: Bool) throws -> OpaquePointer {
        guard let a = archive_write_new() else { throw StrataError(.internalError, "archive_write_new failed") }
        _ = restricted ? archive_write_set_format_pax_restricted(a) : archive_write_set_format_pax(a)
        archive_write_set_bytes_per_block(a, 0)
        guard open(a) == ARCHIVE_OK else {
            defer { archive_write_free(a) }
            throw StrataError(.system, "cannot start the tar: \(archiveMessage(a))")
        }
        return a
    }

    func open(_ a: OpaquePointer) -> Int32 {
        archive_write_open2(a, Unmanaged.passUnretained(self).toOpaque(), nil, { _, client, buffer, length in
            let out = Unmanaged<ArchiveOutput>.fromOpaque(client!).takeUnretainedValue()
            do {
                try out.sink(UnsafeRawBufferPointer(start: buffer, count: length))
                return length
            } catch {
                out.error = error
                return -1
            }
        }, nil, nil)
    }
}

/// Compresses a stream (gzip or zstd) into a sink, deterministically: no timestamp or name in
/// the gzip header, so the same tar always gives the same blob digest.
public final class CompressingWriter {
    private let archive: OpaquePointer
    private let output: ArchiveOutput
    private var closed = false

    /// Compresses what is written with `compression`, handing the output to `sink`.
    public init(_ compression: Compression, sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let a = archive_write_new() else { throw StrataError(.internalError, "archive_write_new failed") }
        archive = a
        output = ArchiveOutput(sink)
        switch compression {
        case .gzip:
            archive_write_add_filter_gzip(a)
            archive_write_set_filter_option(a, "gzip", "timestamp", nil)
        case .zstd: archive_write_add_filter_zstd(a)
        case .xz: archive_write_add_filter_xz(a)
        case .bzip2: archive_write_add_filter_bzip2(a)
        case .lz4: archive_write_add_filter_lz4(a)
        case .none: break
        }
        archive_write_set_format_raw(a)
        archive_write_set_bytes_per_block(a, 0)
        guard output.open(a) == ARCHIVE_OK else { throw StrataError(.system, "cannot start compressor: \(archiveMessage(a))") }
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, "layer")
        archive_entry_set_filetype(entry, 0o100000)
        guard archive_write_header(a, entry) == ARCHIVE_OK else {
            throw StrataError(.system, "cannot start compressor: \(archiveMessage(a))")
        }
    }

    deinit { archive_write_free(archive) }

    /// Compresses `chunk`.
    public func write(_ chunk: UnsafeRawBufferPointer) throws {
        guard !chunk.isEmpty else { return }
        let n = archive_write_data(archive, chunk.baseAddress, chunk.count)
        guard n == chunk.count else { throw output.error ?? StrataError(.system, "compression failed: \(archiveMessage(archive))") }
    }

    /// Ends the stream (writes the compressor's trailer).
    public func close() throws {
        guard !closed else { return }
        closed = true
        guard archive_write_close(archive) == ARCHIVE_OK else {
            throw output.error ?? StrataError(.system, "compression failed: \(archiveMessage(archive))")
        }
    }
}

/// Writes an uncompressed tar of plain files (the outer archive of `save`): PAX where needed,
/// every member root-owned with mode 0644 and mtime 0, so the same images give the same bytes.
public final class TarFileWriter {
    private let archive: OpaquePointer
    private let output: ArchiveOutput
    private var closed = false

    /// Writes a PAX tar to `sink`.
    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        output = ArchiveOutput(sink)
        archive = try output.tarWriter(restricted: true)
    }

    deinit { archive_write_free(archive) }

    private func header(_ path: String, size: Int64, directory: Bool) throws {
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, path)
        archive_entry_set_filetype(entry, directory ? 0o040000 : 0o100000)
        archive_entry_set_perm(entry, directory ? 0o755 : 0o644)
        archive_entry_set_size(entry, directory ? 0 : size)
        archive_entry_set_mtime(entry, 0, 0)
        guard archive_write_header(archive, entry) == ARCHIVE_OK else {
            throw output.error ?? StrataError(.system, "cannot write tar header for \(path): \(archiveMessage(archive))")
        }
    }

    /// Adds a directory entry.
    public func addDirectory(_ path: String) throws { try header(path, size: 0, directory: true) }

    /// Adds a member of exactly `size` bytes, produced by `body` through the given writer.
    public func addFile(_ path: String, size: Int64, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        try header(path, size: size, directory: false)
        var written: Int64 = 0
        try body { chunk in
            guard !chunk.isEmpty else { return }
            written += Int64(chunk.count)
            guard written <= size else { throw StrataError(.sizeMismatch, "\(path): more than the \(size) bytes announced") }
            let n = archive_write_data(self.archive, chunk.baseAddress, chunk.count)
            guard n == chunk.count else {
                throw self.output.error ?? StrataError(.system, "cannot write \(path): \(archiveMessage(self.archive))")
            }
        }
        guard written == size else {
            throw StrataError(.sizeMismatch, "\(path): \(written) bytes written, \(size) announced")
        }
    }

    /// Adds a regular file with `bytes` as its content.
    public func addFile(_ path: String, bytes: [UInt8]) throws {
        try addFile(path, size: Int64(bytes.count)) { write in try bytes.withUnsafeBytes { try write($0) } }
    }

    /// Writes the end-of-archive blocks.
    public func close() throws {
        guard !closed else { return }
        closed = true
        guard archive_write_close(archive) == ARCHIVE_OK else {
            throw output.error ?? StrataError(.system, "cannot finish tar: \(archiveMessage(archive))")
        }
    }
}
