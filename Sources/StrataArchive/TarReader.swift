import CArchive
import StrataCore
import StrataSystem

/// One tar entry's header, with names as bytes.
public struct TarEntry: Sendable {
    /// The type of a tar entry.
    public enum Kind: Sendable, Equatable {
        case regular, directory, symlink, hardlink, characterDevice, blockDevice, fifo, socket
    }
    /// The name as the tar holds it, byte for byte (PAX and GNU long names applied; never
    /// libarchive's decoded string, which is NFC-normalised).
    public var path: PathBytes
    public var kind: Kind
    /// Permission bits including setuid, setgid and sticky.
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: Int64
    public var mtime: FileTime
    public var atime: FileTime?
    /// Symlink target, or the hardlink's target name.
    public var linkTarget: PathBytes
    public var devMajor: UInt32
    public var devMinor: UInt32
    /// From SCHILY.xattr.* / LIBARCHIVE.xattr.* records, names as written (valid UTF-8 is
    /// required of them); a record with an empty value is "unset" and not listed.
    public var xattrs: [(name: String, value: [UInt8])]
    /// Sparse entries are stored as a map and holes: their payload bytes are not the file bytes.
    public var isSparse: Bool
    /// Stream offsets of the header start and of the payload start.
    public var headerOffset: Int64
    public var dataOffset: Int64
}

/// Reads tar entries (ustar, pax, GNU, v7 formats only) from an uncompressed stream.
///
/// libarchive converts names through the locale; the calling thread is switched to C.UTF-8 for
/// the lifetime of the reader (never the whole process), so UTF-8 PAX names arrive intact.
/// Use a reader on one thread only.
public final class TarReader {
    private let archive: OpaquePointer
    private let input: ArchiveInput
    private let tap: HeaderTap
    private var globals: RawTarHeader.Globals = [:]
    public let label: String
    /// Dropped after `archive` is freed (stored properties go after `deinit`'s body).
    private let locale = UTF8ThreadLocale()
    private var entry: OpaquePointer?

    /// Reads tar entries from `source` (uncompressed); `label` names the archive in errors.
    public init(_ source: any ChunkSource, label: String) throws {
        guard let a = archive_read_new() else { throw StrataError(.internalError, "archive_read_new failed") }
        archive = a
        tap = HeaderTap(source)
        input = ArchiveInput(tap)
        self.label = label
        archive_read_support_format_tar(a)
        archive_read_support_format_gnutar(a)
        if input.open(a) != ARCHIVE_OK {
            throw failure("cannot read tar stream")
        }
    }

    deinit {
        archive_read_free(archive)
    }

    private func failure(_ what: String, entryName: PathBytes? = nil) -> StrataError {
        if let e = input.error as? StrataError { return e }
        let at = entryName.map { " at entry \"\($0.display)\"" } ?? ""
        return StrataError(.invalidFormat, "\(label): \(what)\(at): \(archiveMessage(archive))", cause: input.error)
    }

    /// The next entry, or nil at the end of the archive.
    public func next() throws -> TarEntry? {
        var e: OpaquePointer?
        let r = archive_read_next_header(archive, &e)
        if r == ARCHIVE_EOF { return nil }
        if r < ARCHIVE_WARN || e == nil { throw failure("corrupt or truncated tar") }
        entry = e
        guard let e else { return nil }
        let headerOffset = archive_read_header_position(archive)
        let dataOffset = archive_filter_bytes(archive, 0)

        // Names and xattrs from the header's own bytes (libarchive would hand them NFC-normalised).
        guard let rawBytes = tap.bytes(from: headerOffset, to: dataOffset) else {
            throw StrataError(.invalidFormat, "\(label): the header of the entry at offset \(headerOffset) is over \(HeaderTap.limit) bytes")
        }
        let raw: RawTarHeader
        do { raw = try RawTarHeader.parse(rawBytes, globals: &globals) } catch let m as RawTarHeader.Malformed {
            throw StrataError(.invalidFormat, "\(label): entry at offset \(headerOffset): \(m.description)")
        }
        // (A hostile size cannot overflow the offset: the sum saturates.)
        let (end, overflow) = dataOffset.addingReportingOverflow(raw.storedSize)
        tap.consumed(until: overflow ? .max : end)
        let path = raw.path
        guard !path.isEmpty else {
            throw StrataError(.invalidFormat, "\(label): entry at offset \(headerOffset) has an empty name")
        }
        var linkTarget: PathBytes = []
        let kind: TarEntry.Kind
        if archive_entry_hardlink(e) != nil {
            kind = .hardlink
            linkTarget = raw.linkTarget
        } else {
            // libarchive AE_IF* values (equal to the S_IF* mode bits; the C macros are casts Swift cannot import).
            switch archive_entry_filetype(e) {
            case 0o100000: kind = .regular
            case 0o040000: kind = .directory
            case 0o120000:
                kind = .symlink
                linkTarget = raw.linkTarget
            case 0o020000: kind = .characterDevice
            case 0o060000: kind = .blockDevice
            case 0o010000: kind = .fifo
            case 0o140000: kind = .socket
            default:
                throw StrataError(.unsupported, "\(label): entry \"\(path.display)\" has an unknown file type")
            }
        }
        var xattrs: [(String, [UInt8])] = []
        for (name, value) in raw.xattrs {
            guard let n = String(validating: name, as: UTF8.self), !n.utf8.contains(0) else {
                throw StrataError(.unsupported, "\(label): entry \"\(path.display)\" has an xattr whose name is not UTF-8")
            }
            xattrs.append((n, value))
        }
        let size = archive_entry_size_is_set(e) != 0 ? archive_entry_size(e) : 0
        if size < 0 {
            throw StrataError(.invalidFormat, "\(label): entry \"\(path.display)\" has a negative size")
        }
        return TarEntry(
            path: path, kind: kind,
            mode: UInt32(archive_entry_perm(e)) & 0o7777,
            uid: UInt32(truncatingIfNeeded: archive_entry_uid(e)),
            gid: UInt32(truncatingIfNeeded: archive_entry_gid(e)),
            size: size,
            mtime: FileTime(seconds: Int64(archive_entry_mtime(e)), nanoseconds: Int(archive_entry_mtime_nsec(e))),
            atime: archive_entry_atime_is_set(e) != 0
                ? FileTime(seconds: Int64(archive_entry_atime(e)), nanoseconds: Int(archive_entry_atime_nsec(e))) : nil,
            linkTarget: linkTarget,
            devMajor: UInt32(archive_entry_rdevmajor(e)), devMinor: UInt32(archive_entry_rdevminor(e)),
            xattrs: xattrs,
            isSparse: archive_entry_sparse_count(e) > 0,
            headerOffset: headerOffset, dataOffset: dataOffset)
    }

    /// Reads the current entry's data as (offset-in-file, bytes) blocks; holes of sparse files
    /// show as gaps between offsets.
    public func readData(_ body: (Int64, UnsafeRawBufferPointer) throws -> Void) throws {
        while true {
            var buf: UnsafeRawPointer?
            var size = 0
            var offset: la_int64_t = 0
            let r = archive_read_data_block(archive, &buf, &size, &offset)
            if r == ARCHIVE_EOF { return }
            if r < ARCHIVE_WARN { throw failure("corrupt or truncated data", entryName: currentName) }
            if size > 0 { try body(offset, UnsafeRawBufferPointer(start: buf, count: size)) }
        }
    }

    private var currentName: PathBytes? {
        guard let entry, let c = archive_entry_pathname(entry) else { return nil }
        return cStringBytes(c)
    }
}
