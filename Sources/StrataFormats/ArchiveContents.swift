import StrataArchive
import StrataCore
import StrataSystem

/// A file inside an image archive: a byte range of an open file, read in place.
public struct BlobRef: Sendable {
    public let handle: FDHandle
    public let offset: Int64
    public let size: Int64
    /// "ARCHIVE:PATH", for messages.
    public let label: String

    /// The member's bytes as a stream.
    public func source() -> FileRangeSource {
        FileRangeSource(handle: handle, offset: offset, length: size, label: label)
    }

    /// The whole file, refused over `limit` bytes (JSON documents).
    public func readAll(limit: Int) throws -> [UInt8] {
        guard size <= Int64(limit) else {
            throw StrataError(.tooLarge, "\(label) is \(size) bytes, over the \(limit)-byte limit for JSON documents")
        }
        var out = [UInt8](repeating: 0, count: Int(size))
        var done = 0
        while done < out.count {
            let n = try out.withUnsafeMutableBytes { b in
                try handle.pread(into: UnsafeMutableRawBufferPointer(rebasing: b[done...]), at: offset + Int64(done))
            }
            if n == 0 { throw StrataError(.invalidFormat, "\(label) is truncated") }
            done += n
        }
        return out
    }
}

/// The files of an image archive, by their path inside it.
public protocol ArchiveContents: Sendable {
    var label: String { get }
    func open(_ path: String) throws -> BlobRef
    func exists(_ path: String) -> Bool
}

extension ArchiveContents {
    /// The blob a validated digest names in an OCI layout (never a path from the input itself).
    public func blob(_ digest: Digest) throws -> BlobRef {
        do {
            return try open("blobs/sha256/" + digest.hex)
        } catch let e as StrataError where e.code == .notFound {
            throw StrataError(.notFound, "\(label): blob \(digest) is missing from the archive")
        }
    }
}

/// An uncompressed tar (docker-archive or oci-archive) read in place.
public final class TarContents: ArchiveContents, Sendable {
    public let label: String
    private let handle: FDHandle
    private let index: TarIndex

    /// Indexes the tar in `handle` (`size` bytes) without reading the members' data.
    public init(handle: FDHandle, size: Int64, label: String) throws {
        self.label = label
        self.handle = handle
        index = try TarIndex(handle: handle, size: size, label: label)
    }

    public func open(_ path: String) throws -> BlobRef {
        let m = try index.member(path)
        return BlobRef(handle: handle, offset: m.offset, size: m.size, label: "\(label):\(path)")
    }

    public func exists(_ path: String) -> Bool { index.contains(path) }
}

/// An OCI layout directory. Paths are resolved inside it; nothing outside can be named.
public final class DirectoryContents: ArchiveContents, Sendable {
    public let label: String
    private let root: Directory

    /// The contents of the layout directory at `path`.
    public init(path: String) throws {
        label = path
        root = try Directory.open(path)
    }

    public func open(_ path: String) throws -> BlobRef {
        guard case .success(let name) = EntryPath.normalized(Array(path.utf8)), !name.isEmpty else {
            throw StrataError(.invalidFormat, "\(label): \"\(path)\" points outside the image layout")
        }
        // O_NONBLOCK: a FIFO planted as a blob must not hang the load; O_NOFOLLOW: a symlink is
        // not a blob (it is refused, never followed).
        switch root.openat2(name, flags: [.readOnly, .nonBlocking, .noFollow], resolve: [.inRoot, .noMagicLinks]) {
        case .success(let h):
            let st = try h.stat()
            guard st.kind == .regular else {
                throw StrataError(.invalidFormat, "\(label)/\(path) is not a regular file")
            }
            return BlobRef(handle: h, offset: 0, size: Int64(st.size), label: "\(label)/\(path)")
        case .failure(let e) where e == .ELOOP:
            throw StrataError(.invalidFormat, "\(label)/\(path) is a symlink, not a regular file")
        case .failure(let e) where e == .ENOENT:
            throw StrataError(.notFound, "\(label): no file \"\(path)\"")
        case .failure(let e):
            throw StrataError(.system, "\(label): cannot open \"\(path)\"", cause: e)
        }
    }

    public func exists(_ path: String) -> Bool { (try? open(path)) != nil }
}
