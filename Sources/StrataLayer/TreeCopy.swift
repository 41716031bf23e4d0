#if canImport(Glibc)
import Glibc
#endif
import CStrata
// (Mode tests are spelled out here: with libarchive imported into this module, the `stat`
// helpers of StrataSystem are not found in whole-module builds.)
import StrataCore
import StrataSystem

/// Applies a layer directory in overlay form onto a plain directory, as a union mount would show
/// it: whiteouts delete, opaque directories are emptied first, everything else is copied with
/// owners, modes, times, devices, xattrs (never overlay's own) and the layer's hardlink groups.
/// All through directory fds; nothing is followed.
public struct OverlayFormApplier {
    public init() {}

    public func apply(layer: Directory, onto target: Directory) throws {
        var links: [UInt64: (Directory, PathBytes)] = [:]
        try applyDir(layer, target, &links)
    }

    private func key(_ st: Glibc.stat) -> UInt64 { UInt64(st.st_dev) << 40 ^ UInt64(st.st_ino) }

    private func applyDir(_ src: Directory, _ dst: Directory, _ links: inout [UInt64: (Directory, PathBytes)]) throws {
        for name in try src.entries().sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let st = try src.lstat(name) else { continue }
            let existing = try dst.lstat(name)
            if Whiteout.isOverlayWhiteout(st) {
                try dst.removeTree(name)
                continue
            }
            if ((st.st_mode & S_IFMT) == S_IFDIR) {
                let sub = try src.openDirectory(name, resolve: [.noSymlinks]).get()
                if let existing, !((existing.st_mode & S_IFMT) == S_IFDIR) { try dst.removeTree(name) }
                if existing == nil || (existing!.st_mode & S_IFMT) != S_IFDIR { try dst.mkdirOrThrow(name, mode: 0o700) }
                let dsub = try dst.openDirectory(name, resolve: [.noSymlinks]).get()
                if Whiteout.isOpaque(sub.fd) {
                    for child in try dsub.entries() { try dsub.removeTree(child) }
                }
                try applyDir(sub, dsub, &links)
                try copyMetadata(from: sub.fd, to: dsub.fd, st)
                continue
            }
            if existing != nil { try dst.removeTree(name) }
            if ((st.st_mode & S_IFMT) == S_IFREG) && st.st_nlink > 1, let (d, n) = links[key(st)] {
                try dst.link(name, to: n, in: d)
                continue
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                let from = try src.openFile(name, flags: O_RDONLY)
                let to = try dst.openFile(name, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
                try copyContent(from.fd, to.fd, size: Int64(st.st_size))
                try copyMetadata(from: from.fd, to: to.fd, st)
                if st.st_nlink > 1 { links[key(st)] = (dst, name) }
            case S_IFLNK:
                try dst.symlink(name, target: try src.readlink(name))
                try dst.chown(name, uid: st.st_uid, gid: st.st_gid)
                try dst.setTimes(name, atime: st.st_atim, mtime: st.st_mtim)
            default:
                try dst.mknod(name, mode: st.st_mode & S_IFMT | 0o600, major: strata_major(st.st_rdev), minor: strata_minor(st.st_rdev))
                try dst.chown(name, uid: st.st_uid, gid: st.st_gid)
                let f = try dst.openat2(name, flags: STRATA_O_PATH | O_NOFOLLOW, resolve: [.noSymlinks]).get()
                guard chmod("/proc/self/fd/\(f.fd)", st.st_mode & 0o7777) == 0 else {
                    throw StrataError.errno(.system, "cannot chmod \(name.display)")
                }
                try dst.setTimes(name, atime: st.st_atim, mtime: st.st_mtim)
            }
        }
    }

    private func copyContent(_ from: Int32, _ to: Int32, size: Int64) throws {
        var left = size
        while left > 0 {
            let n = strata_copy_file_range(from, to, Int(min(left, 1 << 30)))
            if n < 0 {
                if errno == EINTR { continue }
                throw StrataError.errno(.system, "copy failed")
            }
            if n == 0 { break }
            left -= Int64(n)
        }
    }

    /// Owner, then mode (chown clears setuid), xattrs other than overlay's, then times.
    private func copyMetadata(from: Int32, to: Int32, _ st: Glibc.stat) throws {
        guard fchown(to, st.st_uid, st.st_gid) == 0, fchmod(to, st.st_mode & 0o7777) == 0 else {
            throw StrataError.errno(.system, "cannot set owner or mode")
        }
        for (name, value) in Xattrs.list(from) where !name.hasPrefix("trusted.overlay.") {
            _ = value.withUnsafeBytes { strata_fsetxattr(to, name, $0.baseAddress, $0.count, 0) }
        }
        var times = [st.st_atim, st.st_mtim]
        guard futimens(to, &times) == 0 else { throw StrataError.errno(.system, "cannot set times") }
    }
}

