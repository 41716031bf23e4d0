// (Mode tests are spelled out here: with libarchive imported into this module, the `stat`
// helpers of StrataSystem are not found in whole-module builds.)
import StrataCore
import StrataSystem

/// Applies a layer directory in overlay form onto a plain directory, as a union mount would show
/// it: whiteouts delete, opaque directories are emptied first, everything else is copied with
/// owners, modes, times, devices, xattrs (never overlay's own) and the layer's hardlink groups.
/// All through directory fds; nothing is followed.
public struct OverlayFormApplier {
    /// Regular files become hardlinks to the layer's own (falling back to a copy where the
    /// filesystem refuses): for a target that is itself read-only forever, a flattened layer.
    public var linkRegularFiles = false

    /// An applier; with `linkRegularFiles`, one that links rather than copies file contents.
    public init(linkRegularFiles: Bool = false) { self.linkRegularFiles = linkRegularFiles }

    /// Copies `layer` onto `target`, whiteouts removing what they name and opaque directories replacing theirs.
    public func apply(layer: Directory, onto target: Directory) throws {
        var links: [UInt64: (Directory, PathBytes)] = [:]
        try applyDir(layer, target, &links)
    }

    private func key(_ st: FileStatus) -> UInt64 { UInt64(st.device) << 40 ^ UInt64(st.inode) }

    private func applyDir(_ src: Directory, _ dst: Directory, _ links: inout [UInt64: (Directory, PathBytes)]) throws {
        let srcIsOpaque = Whiteout.isOpaque(src)
        for name in try src.entries().sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let st = try src.lstat(name) else { continue }
            if Whiteout.isFuseOverlayMarker(name, st, inOpaqueDirectory: srcIsOpaque) { continue }
            let existing = try dst.lstat(name)
            if Whiteout.isOverlayWhiteout(st) {
                try dst.removeTree(name)
                continue
            }
            if st.kind == .directory {
                let sub = try src.openDirectory(name, resolve: [.noSymlinks]).get()
                if let existing, existing.kind != .directory { try dst.removeTree(name) }
                if existing == nil || FileKind(mode: existing!.mode) != .directory { try dst.mkdirOrThrow(name, mode: 0o700) }
                let dsub = try dst.openDirectory(name, resolve: [.noSymlinks]).get()
                if Whiteout.isOpaque(sub) {
                    for child in try dsub.entries() { try dsub.removeTree(child) }
                }
                try applyDir(sub, dsub, &links)
                try copyMetadata(from: sub.handle, to: dsub.handle, st)
                continue
            }
            if existing != nil { try dst.removeTree(name) }
            if linkRegularFiles, st.kind == .regular, (try? dst.link(name, to: name, in: src)) != nil {
                continue
            }
            if st.kind == .regular && st.links > 1, let (d, n) = links[key(st)] {
                try dst.link(name, to: n, in: d)
                continue
            }
            switch st.kind {
            case .regular:
                let from = try src.openWalked(name, as: st)
                let to = try dst.openFile(name, flags: [.writeOnly, .create, .exclusive], mode: 0o600)
                try copyContent(from, to, size: Int64(st.size))
                try copyMetadata(from: from, to: to, st)
                if st.links > 1 { links[key(st)] = (dst, name) }
            case .symlink:
                try dst.symlink(name, target: try src.readlink(name))
                try dst.chown(name, uid: st.uid, gid: st.gid)
                try dst.setTimes(name, atime: st.accessTime, mtime: st.modificationTime)
            default:
                try dst.mknod(name, mode: st.kind.modeBits | 0o600, major: deviceNumbers(st.rdev).major,
                              minor: deviceNumbers(st.rdev).minor)
                try dst.chown(name, uid: st.uid, gid: st.gid)
                let f = try dst.openat2(name, flags: [.pathOnly, .noFollow], resolve: [.noSymlinks]).get()
                try f.chmodPathOnly(st.mode & 0o7777)
                try dst.setTimes(name, atime: st.accessTime, mtime: st.modificationTime)
            }
        }
    }

    private func copyContent(_ from: FDHandle, _ to: FDHandle, size: Int64) throws {
        var left = size
        while left > 0 {
            let n = try from.copyRange(to: to, count: Int(min(left, 1 << 30)))
            if n == 0 { break }
            left -= Int64(n)
        }
    }

    /// Owner, then mode (chown clears setuid), xattrs other than overlay's, then times.
    private func copyMetadata(from: FDHandle, to: FDHandle, _ st: FileStatus) throws {
        try to.chown(uid: st.uid, gid: st.gid)
        try to.chmod(st.mode & 0o7777)
        for (name, value) in Xattrs.list(from.fd) where !name.hasPrefix("trusted.overlay.") && !name.hasPrefix("user.overlay.") && !name.hasPrefix("user.fuseoverlayfs.") {
            try? to.setXattr(name, value)
        }
        try to.setTimes(atime: st.accessTime, mtime: st.modificationTime)
    }
}

