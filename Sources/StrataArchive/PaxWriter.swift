import CArchive
import StrataCore
import StrataSystem

/// One member of a tar that `PaxWriter` writes: names as bytes, owners by number, one time.
public struct PaxHeader {
    /// What the member is.
    public enum Kind: Equatable {
        case regular(size: Int64)
        /// A hard link to an earlier member.
        case hardlink(target: PathBytes)
        case directory
        case symlink(target: PathBytes)
        case characterDevice(major: UInt32, minor: UInt32)
        case blockDevice(major: UInt32, minor: UInt32)
        case fifo
    }
    public var path: PathBytes
    public var kind: Kind
    /// Permission bits with setuid, setgid and sticky.
    public var permissions: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: FileTime
    /// Extended attributes, written as SCHILY.xattr records.
    public var xattrs: [(name: String, value: [UInt8])]

    public init(path: PathBytes, kind: Kind, permissions: UInt32, uid: UInt32, gid: UInt32, mtime: FileTime,
                xattrs: [(name: String, value: [UInt8])] = []) {
        self.path = path; self.kind = kind; self.permissions = permissions; self.uid = uid; self.gid = gid
        self.mtime = mtime; self.xattrs = xattrs
    }
}

/// Writes a PAX tar member by member, deterministically: the same headers and contents give
/// the same bytes (no uname/gname, atime or ctime; names as bytes, through the C.UTF-8 locale).
/// Layer diffs (`LayerDiffWriter`) are written with it.
public final class PaxWriter {
    private let archive: OpaquePointer
    private let output: ArchiveOutput
    /// Dropped after `archive` is freed.
    private let locale = UTF8ThreadLocale()
    private var current: (path: PathBytes, left: Int64)?

    /// A writer into `sink`.
    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        output = ArchiveOutput(sink)
        archive = try output.tarWriter(restricted: false)
    }

    deinit { archive_write_free(archive) }

    private func fail(_ what: String) -> StrataError {
        if let e = output.error as? StrataError { return e }
        return StrataError(.system, "\(what): \(archiveMessage(archive))", cause: output.error)
    }

    /// Writes a member's header; a regular file's `size` bytes must follow through `write`.
    public func begin(_ h: PaxHeader) throws {
        if let c = current, c.left > 0 { throw StrataError(.sizeMismatch, "\(c.path.display): \(c.left) bytes of its content not written") }
        guard let e = archive_entry_new() else { throw StrataError(.internalError, "archive_entry_new failed") }
        defer { archive_entry_free(e) }
        archive_entry_set_perm(e, h.permissions & 0o7777)
        archive_entry_set_uid(e, la_int64_t(h.uid))
        archive_entry_set_gid(e, la_int64_t(h.gid))
        archive_entry_set_mtime(e, .init(h.mtime.seconds), h.mtime.nanoseconds)
        var size: Int64 = 0
        switch h.kind {
        case .regular(let s):
            archive_entry_set_filetype(e, 0o100000)
            size = s
        case .hardlink(let target):
            archive_entry_set_filetype(e, 0o100000)
            withCPath(target) { archive_entry_copy_hardlink(e, $0) }
        case .directory:
            archive_entry_set_filetype(e, 0o040000)
        case .symlink(let target):
            archive_entry_set_filetype(e, 0o120000)
            withCPath(target) { archive_entry_copy_symlink(e, $0) }
        case .characterDevice(let major, let minor), .blockDevice(let major, let minor):
            archive_entry_set_filetype(e, h.kind == .characterDevice(major: major, minor: minor) ? 0o020000 : 0o060000)
            archive_entry_set_rdevmajor(e, .init(major))
            archive_entry_set_rdevminor(e, .init(minor))
        case .fifo:
            archive_entry_set_filetype(e, 0o010000)
        }
        archive_entry_set_size(e, la_int64_t(size))
        for (k, v) in h.xattrs {
            v.withUnsafeBytes { archive_entry_xattr_add_entry(e, k, $0.baseAddress, $0.count) }
        }
        withCPath(h.path) { archive_entry_copy_pathname(e, $0) }
        guard archive_write_header(archive, e) >= ARCHIVE_WARN else { throw fail("cannot write entry \(h.path.display)") }
        current = (h.path, size)
    }

    /// Writes content of the current member (no more than its header announced).
    public func write(_ chunk: UnsafeRawBufferPointer) throws {
        guard let c = current, Int64(chunk.count) <= c.left else {
            throw StrataError(.sizeMismatch, "\(current?.path.display ?? "tar"): more content than its header announced")
        }
        let n = archive_write_data(archive, chunk.baseAddress, chunk.count)
        guard n == chunk.count else { throw fail("cannot write \(c.path.display)") }
        current?.left -= Int64(n)
    }

    /// Writes the end-of-archive blocks.
    public func close() throws {
        if let c = current, c.left > 0 { throw StrataError(.sizeMismatch, "\(c.path.display): \(c.left) bytes of its content not written") }
        guard archive_write_close(archive) == ARCHIVE_OK else { throw fail("cannot finish the tar") }
    }
}
