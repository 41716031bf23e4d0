@preconcurrency import Crypto
import StrataCore
import StrataSystem

/// A pull-based byte stream handing out chunks. A chunk stays valid until the next call;
/// an empty chunk means end of stream. Every stage of ingest (file → hash → decompress →
/// hash → tar) is one of these, so each byte is touched once per stage, never stored whole.
public protocol ChunkSource: AnyObject {
    func nextChunk() throws -> UnsafeRawBufferPointer
}

extension ChunkSource {
    /// Reads and discards the rest of the stream (so digests cover every byte); returns the count.
    @discardableResult
    public func drain() throws -> Int64 {
        var n: Int64 = 0
        while true {
            let c = try nextChunk()
            if c.isEmpty { return n }
            n += Int64(c.count)
        }
    }
}

/// A source that can jump forward without reading (libarchive then skips file payloads it
/// does not need, e.g. while indexing an image archive's members).
public protocol SkippableSource: ChunkSource {
    /// Skips up to `count` bytes; returns how many were skipped.
    func skip(_ count: Int64) -> Int64
}

/// A byte range of a file, read with pread: a blob inside an uncompressed tar read in place,
/// or a whole blob file.
public final class FileRangeSource: SkippableSource {
    private let handle: FDHandle
    private var offset: Int64
    private let end: Int64
    private let buffer: UnsafeMutableRawBufferPointer
    private let label: String

    /// Reads `length` bytes of `handle` from `offset`, `bufferSize` at a time; `label` names it in errors.
    public init(handle: FDHandle, offset: Int64, length: Int64, label: String, bufferSize: Int = 1 << 20) {
        self.handle = handle
        self.offset = offset
        self.end = offset + length
        self.label = label
        self.buffer = .allocate(byteCount: bufferSize, alignment: 16)
    }
    deinit { buffer.deallocate() }

    public func nextChunk() throws -> UnsafeRawBufferPointer {
        let want = Int(min(Int64(buffer.count), end - offset))
        if want <= 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
        let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want])
        let n: Int
        do { n = try handle.pread(into: slice, at: offset) } catch let e as StrataError {
            throw StrataError(.system, "cannot read \(label)", cause: e.cause)
        }
        if n == 0 {
            throw StrataError(.invalidFormat, "\(label) is truncated: \(end - offset) bytes missing")
        }
        offset += Int64(n)
        return UnsafeRawBufferPointer(rebasing: buffer[0..<n])
    }

    /// Skips up to `count` bytes without reading them; returns how many were skipped.
    public func skip(_ count: Int64) -> Int64 {
        let n = max(0, min(count, end - offset))
        offset += n
        return n
    }
}

/// A sequential stream (a pipe) read to its end.
public final class StreamSource: ChunkSource {
    private let handle: FDHandle
    private let buffer: UnsafeMutableRawBufferPointer
    /// Reads `handle` to its end (a pipe or a file), `bufferSize` at a time.
    public init(handle: FDHandle, bufferSize: Int = 1 << 20) {
        self.handle = handle
        self.buffer = .allocate(byteCount: bufferSize, alignment: 16)
    }
    deinit { buffer.deallocate() }
    public func nextChunk() throws -> UnsafeRawBufferPointer {
        let n = try handle.read(into: buffer)
        return UnsafeRawBufferPointer(rebasing: buffer[0..<n])
    }
}

/// Passes chunks through while hashing them with SHA-256 and counting them; optionally
/// fails as soon as more than `limit` bytes went through (decompression bombs).
public final class HashingSource: ChunkSource {
    private let upstream: any ChunkSource
    private var hasher = SHA256()
    public private(set) var count: Int64 = 0
    private let limit: Int64?
    private let limitMessage: String
    /// Sees every chunk after it was hashed (the tar-split journal taps here).
    public var observer: ((UnsafeRawBufferPointer, Int64) throws -> Void)?
    /// Off: bytes pass and are counted, not hashed (another hasher sees the same bytes).
    public var hashing = true

    /// Hashes what passes through; `limit` caps the bytes, failing with `limitMessage` beyond it.
    public init(_ upstream: any ChunkSource, limit: Int64? = nil, limitMessage: String = "") {
        self.upstream = upstream
        self.limit = limit
        self.limitMessage = limitMessage
    }

    public func nextChunk() throws -> UnsafeRawBufferPointer {
        let c = try upstream.nextChunk()
        if c.isEmpty { return c }
        if hashing { hasher.update(bufferPointer: c) }
        let at = count
        count += Int64(c.count)
        if let limit, count > limit {
            throw StrataError(.tooLarge, limitMessage)
        }
        try observer?(c, at)
        return c
    }

    /// The digest of everything read so far (call after draining).
    public func finalize() -> StrataCore.Digest { StrataCore.Digest(hasher.finalize()) }
}
