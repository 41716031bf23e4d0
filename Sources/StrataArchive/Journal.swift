import CArchive
import StrataCore
import StrataSystem

/// The tar-split journal: what it takes, next to the unpacked files, to rebuild a layer's
/// uncompressed tar byte-exact (and so keep its diffID).
///
/// The decompressed tar stream is cut into two kinds of spans: payloads of regular files
/// (their bytes are the file on disk) and everything else (headers, PAX records, padding, the
/// end-of-archive blocks, trailing bytes), kept verbatim. The journal is a sequence of records,
/// zstd-compressed on disk:
///
///     0x01 varint(len) bytes            raw span
///     0x02 varint(size) varint(n) path  payload of `size` bytes from the file at `path` (n bytes)
public enum JournalRecord: Equatable {
    case raw([UInt8])
    case file(size: Int64, path: PathBytes)
}

/// Cuts the decompressed tar stream into journal records while it streams past.
///
/// Every chunk the tar reader pulls is `observe`d (with its stream offset); when an entry's
/// payload is known to land in a file, `payload(at:size:path:)` marks that span. Bytes of a
/// payload span are never buffered, so memory stays at the tar reader's read-ahead.
public final class JournalRecorder {
    /// Non-payload bytes not yet written as a raw record.
    private var pending = ByteWindow()
    /// Bytes below this offset belong to a payload already recorded.
    private var discardUntil: Int64 = 0
    private let sink: (JournalRecord) throws -> Void
    /// Set when the journal cannot describe the stream (sparse entries, a payload overwritten
    /// later in the same layer, a huge non-file payload); the caller then keeps the raw tar.
    public private(set) var inexactReason: String?
    /// Bound on buffered non-payload bytes (e.g. a hostile hardlink entry carrying data).
    private let pendingLimit = 16 << 20

    /// Records a journal, handing each record to `sink`.
    public init(sink: @escaping (JournalRecord) throws -> Void) { self.sink = sink }

    /// Notes that the journal cannot rebuild the tar exactly, and why (the first reason is kept).
    public func markInexact(_ reason: String) {
        if inexactReason == nil { inexactReason = reason }
        pending = ByteWindow()
    }

    /// Called with every chunk of the decompressed stream, in order.
    public func observe(_ chunk: UnsafeRawBufferPointer, at offset: Int64) throws {
        guard inexactReason == nil else { return }
        var start = 0
        if offset < discardUntil {
            start = Int(min(Int64(chunk.count), discardUntil - offset))
        }
        if start == chunk.count { return }
        if pending.isEmpty { pending.reset(at: offset + Int64(start)) }
        pending.append(contentsOf: chunk[start...])
        if pending.count > pendingLimit {
            markInexact("more than \(pendingLimit) bytes of tar metadata in a row")
        }
    }

    /// A new entry's header starts at `headerOffset`: everything buffered before it is settled
    /// (raw), so it can be written out now instead of waiting for the next payload. Without this,
    /// a layer of many empty files would buffer all of its headers.
    public func entryStarted(at headerOffset: Int64) throws {
        guard inexactReason == nil, pending.count >= 1 << 16, headerOffset > pending.base else { return }
        let until = min(headerOffset, pending.end)
        try sink(.raw(pending.bytes(from: pending.base, to: until)))
        pending.drop(until: until)
    }

    /// The span [dataOffset, dataOffset+size) is the payload of the file now at `path`.
    public func payload(at dataOffset: Int64, size: Int64, path: PathBytes) throws {
        guard inexactReason == nil, size > 0 else { return }
        let end = dataOffset + size
        // The header of this entry was observed before the reader returned it, so the payload
        // starts inside (or right after) the buffered bytes; anything else means the reader's
        // offsets do not describe the stream and the journal would be wrong.
        guard dataOffset >= pending.base, dataOffset <= pending.end else {
            markInexact("payload offset \(dataOffset) outside the buffered stream")
            return
        }
        if dataOffset > pending.base { try sink(.raw(pending.bytes(from: pending.base, to: dataOffset))) }
        try sink(.file(size: size, path: path))
        // Drop the payload bytes already buffered; future ones are skipped in `observe`.
        if pending.end > end {
            pending.drop(until: end)
        } else {
            pending.reset(at: end)
        }
        discardUntil = end
    }

    /// After the whole stream was observed: the remaining bytes are one raw record.
    public func finish() throws {
        guard inexactReason == nil else { return }
        if !pending.isEmpty { try sink(.raw(pending.bytes(from: pending.base, to: pending.end))) }
        pending = ByteWindow()
    }
}

/// Writes journal records to a file, zstd-compressed through libarchive.
public final class JournalWriter {
    private let archive: OpaquePointer
    private var buffer: [UInt8] = []
    private var closed = false

    /// Writes to `handle` (a new, empty file).
    public init(handle: FDHandle) throws {
        guard let a = archive_write_new() else { throw StrataError(.internalError, "archive_write_new failed") }
        archive = a
        archive_write_add_filter_zstd(a)
        archive_write_set_format_raw(a)
        archive_write_set_bytes_in_last_block(a, 1)
        guard archive_write_open_fd(a, handle.fd) == ARCHIVE_OK else {
            throw StrataError(.system, "cannot open journal for writing: \(archiveMessage(a))")
        }
        let entry = archive_entry_new()
        archive_entry_set_pathname(entry, "journal")
        archive_entry_set_filetype(entry, 0o100000)
        archive_entry_set_perm(entry, 0o644)
        defer { archive_entry_free(entry) }
        guard archive_write_header(a, entry) == ARCHIVE_OK else {
            throw StrataError(.system, "cannot start journal: \(archiveMessage(a))")
        }
        self.handle = handle
    }
    private let handle: FDHandle

    deinit { archive_write_free(archive) }

    /// Appends one record (a header or padding span, or a payload reference).
    public func append(_ record: JournalRecord) throws {
        switch record {
        case .raw(let bytes):
            buffer.append(1)
            appendVarint(UInt64(bytes.count))
            buffer.append(contentsOf: bytes)
        case .file(let size, let path):
            buffer.append(2)
            appendVarint(UInt64(size))
            appendVarint(UInt64(path.count))
            buffer.append(contentsOf: path)
        }
        if buffer.count >= 1 << 16 { try flush() }
    }

    private func appendVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            buffer.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        buffer.append(UInt8(v))
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        let n = buffer.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, $0.count) }
        guard n == buffer.count else {
            throw StrataError(.system, "cannot write journal: \(archiveMessage(archive))")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes and ends the journal file.
    public func close() throws {
        guard !closed else { return }
        closed = true
        try flush()
        guard archive_write_close(archive) == ARCHIVE_OK else {
            throw StrataError(.system, "cannot finish journal: \(archiveMessage(archive))")
        }
    }
}

/// Reads journal records back from a journal file.
public final class JournalReader {
    private let source: Decompressor
    private var chunk = UnsafeRawBufferPointer(start: nil, count: 0)
    private var index = 0
    private let label: String

    /// Reads the journal in `handle`; `label` names it in errors.
    public init(handle: FDHandle, label: String) throws {
        let size = try handle.stat().size
        self.label = label
        source = try Decompressor(FileRangeSource(handle: handle, offset: 0, length: Int64(size), label: label, bufferSize: 1 << 16),
                                  label: label)
    }

    private func byte() throws -> UInt8? {
        while index >= chunk.count {
            chunk = try source.nextChunk()
            index = 0
            if chunk.isEmpty { return nil }
        }
        defer { index += 1 }
        return chunk[index]
    }

    private func requireByte() throws -> UInt8 {
        guard let b = try byte() else { throw StrataError(.invalidFormat, "\(label): journal truncated") }
        return b
    }

    private func varint() throws -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try requireByte()
            v |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
            if shift > 63 { throw StrataError(.invalidFormat, "\(label): journal varint overflow") }
        }
    }

    private func bytes(_ n: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(n)
        while out.count < n {
            if index >= chunk.count {
                chunk = try source.nextChunk()
                index = 0
                if chunk.isEmpty { throw StrataError(.invalidFormat, "\(label): journal truncated") }
            }
            let take = min(n - out.count, chunk.count - index)
            out.append(contentsOf: chunk[index..<(index + take)])
            index += take
        }
        return out
    }

    public func next() throws -> JournalRecord? {
        guard let tag = try byte() else { return nil }
        switch tag {
        case 1:
            let n = try varint()
            guard n < 1 << 30 else { throw StrataError(.invalidFormat, "\(label): journal record too large") }
            return .raw(try bytes(Int(n)))
        case 2:
            let size = try varint()
            let n = try varint()
            guard n < 1 << 16, size < UInt64(Int64.max) else { throw StrataError(.invalidFormat, "\(label): bad journal record") }
            return .file(size: Int64(size), path: try bytes(Int(n)))
        default:
            throw StrataError(.invalidFormat, "\(label): unknown journal record \(tag)")
        }
    }
}
