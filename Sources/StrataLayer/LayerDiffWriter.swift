import StrataArchive
import StrataCore
import StrataSystem

/// One entry of a layer diff to write.
public enum DiffTarEntry {
    /// A file, directory, symlink, device or fifo taken from `directory`/`name`. An `opaque`
    /// directory is followed by `.wh..wh..opq`, so its own mode and owner survive (umoci's way).
    case entry(path: PathBytes, directory: Directory, name: PathBytes, stat: FileStatus, opaque: Bool)
    /// `dir/.wh.NAME`: deletes `path` from the layers below.
    case whiteout(path: PathBytes, stat: FileStatus?)
}

/// Writes a layer tar (PAX) from a container's changes, deterministically: the same entries with
/// the same metadata give the same bytes, hence the same diffID. Names are bytes; uname/gname,
/// atime and ctime are left out; hardlinks within the diff stay hardlinks; devices and fifos
/// are kept; content xattrs only (never overlay's own).
public final class LayerDiffWriter {
    private let tar: PaxWriter
    private var links: [UInt64: PathBytes] = [:]
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    /// Changes each header before it is written (a build's owners, modes and clamped times).
    public var rewrite: ((inout PaxHeader) -> Void)?

    /// Writes a layer tar (PAX, OCI whiteouts) to `sink`.
    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        tar = try PaxWriter(sink: sink)
    }

    /// Writes `entries` in order (parents first), hardlinks as links.
    public func write(_ entries: [DiffTarEntry]) throws {
        for entry in entries {
            switch entry {
            case .whiteout(let path, let st):
                var comps = path.split(separator: UInt8(ascii: "/")).map(Array.init)
                let last = comps.removeLast()
                let name = EntryPath.join(comps + [Array(".wh.".utf8) + last])
                try marker(name, uid: st?.uid ?? 0, gid: st?.gid ?? 0, mtime: st?.modificationTime)
            case .entry(let path, let dir, let name, let st, let opaque):
                try writeEntry(path, dir, name, st)
                if opaque {
                    try marker(path + Array("/.wh..wh..opq".utf8), uid: st.uid, gid: st.gid, mtime: st.modificationTime)
                }
            }
        }
    }

    private func marker(_ path: PathBytes, uid: UInt32, gid: UInt32, mtime: FileTime?) throws {
        try begin(PaxHeader(path: path, kind: .regular(size: 0), permissions: 0o644, uid: uid, gid: gid,
                            mtime: mtime ?? FileTime(seconds: 0)))
    }

    private func begin(_ header: PaxHeader) throws {
        var h = header
        rewrite?(&h)
        try tar.begin(h)
    }

    /// A rewrite that sets every time later than `epoch` to `epoch` (SOURCE_DATE_EPOCH's
    /// clamp): a layer made today and one made next year from the same files are the same bytes.
    public static func clampingTimes(to epoch: Int64) -> (inout PaxHeader) -> Void {
        { h in if h.mtime.seconds > epoch || (h.mtime.seconds == epoch && h.mtime.nanoseconds > 0) { h.mtime = FileTime(seconds: epoch) } }
    }

    private func writeEntry(_ path: PathBytes, _ dir: Directory, _ name: PathBytes, _ st: FileStatus) throws {
        var header = PaxHeader(path: path, kind: .directory, permissions: st.permissions, uid: st.uid, gid: st.gid,
                               mtime: st.modificationTime)
        var content: FDHandle?
        switch st.kind {
        case .directory:
            header.kind = .directory
        case .regular:
            let key = st.device << 40 ^ st.inode
            if st.links > 1, let first = links[key] {
                header.kind = .hardlink(target: first)
                try begin(header)
                return
            }
            if st.links > 1 { links[key] = path }
            header.kind = .regular(size: st.size)
            content = try dir.openWalked(name, as: st)
        case .symlink:
            header.kind = .symlink(target: try dir.readlink(name))
        case .characterDevice:
            header.kind = .characterDevice(major: st.deviceNumbers.major, minor: st.deviceNumbers.minor)
        case .blockDevice:
            header.kind = .blockDevice(major: st.deviceNumbers.major, minor: st.deviceNumbers.minor)
        case .fifo:
            header.kind = .fifo
        default:
            return  // sockets are not layer content
        }
        if st.kind == .directory || st.kind == .regular {
            let h: FDHandle
            if let content { h = content } else { h = try dir.openWalked(name, as: st) }
            // Sorted: the kernel lists them in the order they were set, which a copy may not keep.
            header.xattrs = Xattrs.list(h.fd).filter { Whiteout.isContentXattr($0.0) }.sorted { $0.0 < $1.0 }.map { (name: $0.0, value: $0.1) }
        }
        try begin(header)
        guard let content else { return }
        var offset: Int64 = 0
        while offset < st.size {
            let want = Int(min(Int64(buffer.count), st.size - offset))
            let n = try buffer.withUnsafeMutableBytes { b in
                try content.pread(into: UnsafeMutableRawBufferPointer(rebasing: b[0..<want]), at: offset)
            }
            if n == 0 { throw StrataError(.conflict, "\(path.display) shrank while it was being read (something in the container is writing it); try again with the container stopped") }
            try buffer.withUnsafeBytes { try tar.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            offset += Int64(n)
        }
    }

    /// Writes the end-of-archive blocks.
    public func close() throws { try tar.close() }
}
