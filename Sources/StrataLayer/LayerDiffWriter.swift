import CArchive
import CStrata
import StrataCore
import StrataSystem

/// One entry of a layer diff to write.
public enum DiffTarEntry {
    /// A file, directory, symlink, device or fifo taken from `directory`/`name`. An `opaque`
    /// directory is followed by `.wh..wh..opq`, so its own mode and owner survive (umoci's way).
    case entry(path: PathBytes, directory: Directory, name: PathBytes, stat: stat, opaque: Bool)
    /// `dir/.wh.NAME`: deletes `path` from the layers below.
    case whiteout(path: PathBytes, stat: stat?)
}

/// Writes a layer tar (PAX) from a container's changes, deterministically: the same entries with
/// the same metadata give the same bytes, hence the same diffID. Names are bytes; uname/gname,
/// atime and ctime are left out; hardlinks within the diff stay hardlinks; devices and fifos
/// are kept; content xattrs only (never overlay's own).
public final class LayerDiffWriter {
    private let archive: OpaquePointer
    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private var error: (any Error)?
    private var links: [UInt64: PathBytes] = [:]
    private var previousLocale: UnsafeMutableRawPointer?
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)

    /// Writes a layer tar (PAX, OCI whiteouts) to `sink`.
    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let a = archive_write_new() else { throw StrataError(.internalError, "archive_write_new failed") }
        archive = a
        self.sink = sink
        previousLocale = strata_use_utf8_locale()
        archive_write_set_format_pax(a)
        archive_write_set_bytes_per_block(a, 0)
        let r = archive_write_open2(a, Unmanaged.passUnretained(self).toOpaque(), nil, { _, client, buf, len in
            let w = Unmanaged<LayerDiffWriter>.fromOpaque(client!).takeUnretainedValue()
            do { try w.sink(UnsafeRawBufferPointer(start: buf, count: len)); return len } catch { w.error = error; return -1 }
        }, nil, nil)
        guard r == ARCHIVE_OK else { throw StrataError(.system, "cannot start the layer tar") }
    }

    deinit {
        archive_write_free(archive)
        strata_restore_locale(previousLocale)
    }

    private func fail(_ what: String) -> StrataError {
        if let e = error as? StrataError { return e }
        let msg = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
        return StrataError(.system, "\(what): \(msg)", cause: error)
    }

    private func header(_ e: OpaquePointer, _ path: PathBytes) throws {
        withCPath(path) { archive_entry_copy_pathname(e, $0) }
        guard archive_write_header(archive, e) >= ARCHIVE_WARN else { throw fail("cannot write entry \(path.display)") }
    }

    /// Writes `entries` in order (parents first), hardlinks as links.
    public func write(_ entries: [DiffTarEntry]) throws {
        for entry in entries {
            switch entry {
            case .whiteout(let path, let st):
                var comps = path.split(separator: UInt8(ascii: "/")).map(Array.init)
                let last = comps.removeLast()
                let name = EntryPath.join(comps + [Array(".wh.".utf8) + last])
                try marker(name, uid: st?.st_uid ?? 0, gid: st?.st_gid ?? 0, mtime: st?.st_mtim)
            case .entry(let path, let dir, let name, let st, let opaque):
                try writeEntry(path, dir, name, st)
                if opaque {
                    try marker(path + Array("/.wh..wh..opq".utf8), uid: st.st_uid, gid: st.st_gid, mtime: st.st_mtim)
                }
            }
        }
    }

    private func marker(_ path: PathBytes, uid: uid_t, gid: gid_t, mtime: timespec?) throws {
        guard let e = archive_entry_new() else { throw StrataError(.internalError, "archive_entry_new failed") }
        defer { archive_entry_free(e) }
        archive_entry_set_filetype(e, 0o100000)
        archive_entry_set_perm(e, 0o644)
        archive_entry_set_uid(e, la_int64_t(uid))
        archive_entry_set_gid(e, la_int64_t(gid))
        archive_entry_set_size(e, 0)
        archive_entry_set_mtime(e, time_t(mtime?.tv_sec ?? 0), mtime?.tv_nsec ?? 0)
        try header(e, path)
    }

    private func writeEntry(_ path: PathBytes, _ dir: Directory, _ name: PathBytes, _ st: stat) throws {
        guard let e = archive_entry_new() else { throw StrataError(.internalError, "archive_entry_new failed") }
        defer { archive_entry_free(e) }
        archive_entry_set_perm(e, UInt32(st.st_mode & 0o7777))
        archive_entry_set_uid(e, la_int64_t(st.st_uid))
        archive_entry_set_gid(e, la_int64_t(st.st_gid))
        archive_entry_set_mtime(e, time_t(st.st_mtim.tv_sec), st.st_mtim.tv_nsec)
        let type = FileKind(mode: st.st_mode)
        var content: FDHandle?
        switch type {
        case .directory:
            archive_entry_set_filetype(e, 0o040000)
        case .regular:
            let key = UInt64(st.st_dev) << 40 ^ UInt64(st.st_ino)
            if st.st_nlink > 1, let first = links[key] {
                archive_entry_set_filetype(e, 0o100000)
                withCPath(first) { archive_entry_copy_hardlink(e, $0) }
                archive_entry_set_size(e, 0)
                try header(e, path)
                return
            }
            if st.st_nlink > 1 { links[key] = path }
            archive_entry_set_filetype(e, 0o100000)
            archive_entry_set_size(e, la_int64_t(st.st_size))
            content = try dir.openWalked(name, as: st)
        case .symlink:
            archive_entry_set_filetype(e, 0o120000)
            withCPath(try dir.readlink(name)) { archive_entry_copy_symlink(e, $0) }
        case .characterDevice, .blockDevice:
            archive_entry_set_filetype(e, type == .characterDevice ? 0o020000 : 0o060000)
            archive_entry_set_rdevmajor(e, dev_t(strata_major(st.st_rdev)))
            archive_entry_set_rdevminor(e, dev_t(strata_minor(st.st_rdev)))
        case .fifo:
            archive_entry_set_filetype(e, 0o010000)
        default:
            return  // sockets are not layer content
        }
        if type == .directory || type == .regular {
            let h: FDHandle
            if let content { h = content } else { h = try dir.openWalked(name, as: st) }
            for (k, v) in Xattrs.list(h.fd) where Whiteout.isContentXattr(k) {
                v.withUnsafeBytes { archive_entry_xattr_add_entry(e, k, $0.baseAddress, $0.count) }
            }
        }
        try header(e, path)
        guard let content else { return }
        var offset: Int64 = 0
        while offset < Int64(st.st_size) {
            let want = Int(min(Int64(buffer.count), Int64(st.st_size) - offset))
            let n = try buffer.withUnsafeMutableBytes { b in
                try content.pread(into: UnsafeMutableRawBufferPointer(rebasing: b[0..<want]), at: offset)
            }
            if n == 0 { throw StrataError(.conflict, "\(path.display) shrank while it was being read (something in the container is writing it); try again with the container stopped") }
            let w = buffer.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, n) }
            guard w == n else { throw fail("cannot write \(path.display)") }
            offset += Int64(n)
        }
    }

    /// Writes the end-of-archive blocks.
    public func close() throws {
        guard archive_write_close(archive) == ARCHIVE_OK else { throw fail("cannot finish the layer tar") }
    }
}
