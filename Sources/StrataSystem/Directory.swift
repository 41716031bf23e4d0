#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore

/// How `openat2` may resolve a path below a directory.
public struct Resolve: OptionSet, Sendable {
    public let rawValue: UInt64
    /// Flags from their `RESOLVE_*` bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// Treat the directory as `/`: `..` and absolute symlinks stay inside it.
    public static let inRoot = Resolve(rawValue: UInt64(STRATA_RESOLVE_IN_ROOT))
    /// Refuse any symlink on the way.
    public static let noSymlinks = Resolve(rawValue: UInt64(STRATA_RESOLVE_NO_SYMLINKS))
    public static let noMagicLinks = Resolve(rawValue: UInt64(STRATA_RESOLVE_NO_MAGICLINKS))
    public static let noXDev = Resolve(rawValue: UInt64(STRATA_RESOLVE_NO_XDEV))
}

/// An open directory; every operation is relative to it and never follows a final symlink,
/// so a tree under construction cannot redirect a write elsewhere (docs/code-patterns.md).
public final class Directory: Sendable {
    public let handle: FDHandle
    /// What this directory is, for messages.
    public let label: String
    public var fd: Int32 { handle.fd }

    /// A directory of `handle`; `label` is its path, for messages.
    public init(handle: FDHandle, label: String) {
        self.handle = handle
        self.label = label
    }

    /// Opens a directory by absolute path (store directories, never layer content).
    public static func open(_ path: String) throws -> Directory {
        let h = try FDHandle.open(path, flags: [.readOnly, .directory])
        return Directory(handle: h, label: path)
    }

    func fail(_ what: String, _ name: PathBytes, _ e: Errno) -> StrataError {
        StrataError(.system, "\(what) \(label)/\(name.display)", cause: e)
    }

    /// openat2(2) of `path` below this directory with the given resolution rules.
    public func openat2(_ path: PathBytes, flags: OpenFlags, mode: mode_t = 0, resolve: Resolve) -> Result<FDHandle, Errno> {
        let p = path.isEmpty ? Array(".".utf8) : path
        let r = withCPath(p) { cp in
            retryingEINTR { strata_openat2(fd, cp, UInt64(UInt32(bitPattern: flags.rawValue | O_CLOEXEC)), UInt64(mode), resolve.rawValue) }
        }
        return r.map { FDHandle(owning: $0) }
    }

    /// Opens the subdirectory `path` (resolved with `resolve`), as a `Directory`. A final
    /// symlink is refused unless `followFinal` (then it is resolved by the same rules).
    public func openDirectory(_ path: PathBytes, resolve: Resolve, followFinal: Bool = false) -> Result<Directory, Errno> {
        openat2(path, flags: followFinal ? [.directory] : [.directory, .noFollow], resolve: resolve)
            .map { Directory(handle: $0, label: label + "/" + path.display) }
    }

    /// A subdirectory met during a walk: a name that stopped being a directory since it was
    /// listed (swapped for a symlink by someone else) is an error naming the path.
    public func walkInto(_ name: PathBytes) throws -> Directory {
        switch openDirectory(name, resolve: [.noSymlinks]) {
        case .success(let d): return d
        case .failure(let e) where e == .ELOOP || e == .ENOTDIR || e == .ENOENT:
            throw StrataError(.conflict, "\(label)/\(name.display) stopped being a directory while it was read (it was replaced, e.g. by a symlink); try again with the container stopped", cause: e)
        case .failure(let e):
            throw fail("cannot open directory", name, e)
        }
    }

    /// Opens `name` (a regular file or a directory) for reading as the walk saw it (`walked`,
    /// from `lstat`), in a tree a container may change under us: pinned with O_PATH|O_NOFOLLOW
    /// (no symlink followed, no device's or FIFO's open run, nothing that blocks), then the pinned
    /// fd must be the same kind of file with the same device and inode, or this names the entry
    /// and refuses; only then is that inode opened for reading, through /proc/self/fd. Content is
    /// only ever read through the fd this returns, so a device node or FIFO renamed over a file
    /// between the walk and the open is never opened, let alone read as the file's content.
    public func openWalked(_ name: PathBytes, as walked: FileStatus) throws -> FDHandle {
        let kind = walked.kind
        // O_PATH first: no driver's open runs (a device node swapped in is never opened, not
        // even to be closed again: opening /dev/watchdog arms it), then the check, then the
        // real open through the pinned inode.
        let pinned: FDHandle
        do { pinned = try openFile(name, flags: [.pathOnly]) } catch let e as StrataError {
            if let c = e.cause as? Errno, c == .ELOOP || c == .ENOENT || c == .ENOTDIR || c == .ENXIO {
                throw StrataError(.conflict, "\(label)/\(name.display) was replaced while it was read (something in the container is changing it); try again with the container stopped", cause: c)
            }
            throw e
        }
        let now = try pinned.stat()
        guard now.kind == kind, now.device == walked.device, now.inode == walked.inode else {
            throw StrataError(.conflict, "\(label)/\(name.display) was replaced while it was read (it is now \(now.kind)), not the \(kind) the walk found); try again with the container stopped")
        }
        guard kind == .regular || kind == .directory else {
            throw StrataError(.invalidArgument, "\(label)/\(name.display) is a \(kind): only files and directories are opened to be read")
        }
        let flags = O_RDONLY | O_NOCTTY | O_CLOEXEC | (kind == .directory ? O_DIRECTORY : 0)
        let r = retryingEINTR { Glibc.open("/proc/self/fd/\(pinned.fd)", flags) }
        switch r {
        case .success(let fd): return FDHandle(owning: fd)
        case .failure(let e): throw fail("cannot open", name, e)
        }
    }

    /// openat(2) of a single name with O_NOFOLLOW.
    public func openFile(_ name: PathBytes, flags: OpenFlags, mode: mode_t = 0o600) throws -> FDHandle {
        let r = withCPath(name) { cp in retryingEINTR { Glibc.openat(fd, cp, flags.rawValue | O_CLOEXEC | O_NOFOLLOW, mode) } }
        switch r {
        case .success(let f): return FDHandle(owning: f)
        case .failure(let e): throw fail("cannot open", name, e)
        }
    }

    /// fstatat(2) without following a final symlink; nil when the name does not exist.
    public func lstat(_ name: PathBytes) throws -> FileStatus? {
        var st = Glibc.stat()
        let r = withCPath(name) { Glibc.fstatat(fd, $0, &st, AT_SYMLINK_NOFOLLOW) }
        if r == 0 { return FileStatus(st) }
        let e = Errno.current
        if e == .ENOENT { return nil }
        throw fail("cannot stat", name, e)
    }

    /// mkdirat(2) of one name.
    public func mkdir(_ name: PathBytes, mode: mode_t) -> Result<Void, Errno> {
        withCPath(name) { cp in retryingEINTR { Glibc.mkdirat(fd, cp, mode) } }.map { _ in () }
    }

    /// mkdirat(2) of one name; an existing name is an error.
    public func mkdirOrThrow(_ name: PathBytes, mode: mode_t) throws {
        if case .failure(let e) = mkdir(name, mode: mode) { throw fail("cannot create directory", name, e) }
    }

    /// mknodat(2): a device or fifo of `mode` (type bits and permissions).
    public func mknod(_ name: PathBytes, mode: mode_t, major: UInt32, minor: UInt32) throws {
        let r = withCPath(name) { cp in retryingEINTR { strata_mknodat(fd, cp, mode, major, minor) } }
        if case .failure(let e) = r { throw fail("cannot create node", name, e) }
    }

    /// symlinkat(2): `name` pointing at `target`.
    public func symlink(_ name: PathBytes, target: PathBytes) throws {
        let r = withCPath(target) { ct in withCPath(name) { cn in retryingEINTR { Glibc.symlinkat(ct, fd, cn) } } }
        if case .failure(let e) = r { throw fail("cannot create symlink", name, e) }
    }

    /// linkat(2) without following a symlink target: `name` here becomes another name of
    /// `target` in `targetDir`.
    public func link(_ name: PathBytes, to target: PathBytes, in targetDir: Directory) throws {
        let r = withCPath(target) { ct in withCPath(name) { cn in retryingEINTR { Glibc.linkat(targetDir.fd, ct, fd, cn, 0) } } }
        if case .failure(let e) = r { throw fail("cannot create hardlink", name, e) }
    }

    /// readlinkat(2): the target of symlink `name`.
    public func readlink(_ name: PathBytes) throws -> PathBytes {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = withCPath(name) { cn in
            buf.withUnsafeMutableBufferPointer { b in
                b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { Glibc.readlinkat(fd, cn, $0, b.count) }
            }
        }
        if n < 0 { throw fail("cannot read symlink", name, Errno.current) }
        return Array(buf[0..<n])
    }

    /// unlinkat(2); `directory` removes an empty directory.
    public func unlink(_ name: PathBytes, directory: Bool = false) -> Result<Void, Errno> {
        withCPath(name) { cn in retryingEINTR { Glibc.unlinkat(fd, cn, directory ? AT_REMOVEDIR : 0) } }.map { _ in () }
    }

    /// Removes `name` whatever it is, recursively for directories, without following symlinks.
    /// Idempotent: a missing name is not an error. Holds two directory fds at most, whatever
    /// the depth (a hostile tar can nest thousands of directories): it descends into one
    /// non-empty subdirectory at a time and climbs back with `..` of the tree it is removing.
    public func removeTree(_ name: PathBytes) throws {
        guard let st = try lstat(name) else { return }
        guard st.kind == .directory else {
            if case .failure(let e) = unlink(name), e != .ENOENT { throw fail("cannot remove", name, e) }
            return
        }
        guard case .success(var current) = openDirectory(name, resolve: [.noSymlinks, .noXDev]) else {
            if case .failure(let e) = unlink(name, directory: true), e != .ENOENT { throw fail("cannot remove", name, e) }
            return
        }
        var depth = 1
        let dotdot: PathBytes = [0x2e, 0x2e]
        while depth > 0 {
            var descend: PathBytes?
            for child in try current.entries() {
                guard let cst = try current.lstat(child) else { continue }
                if cst.kind == .directory {
                    switch current.unlink(child, directory: true) {
                    case .success: continue
                    case .failure(let e) where e == .ENOTEMPTY || e == Errno(EEXIST):
                        if descend == nil { descend = child }
                    case .failure(let e) where e == .ENOENT: continue
                    case .failure(let e): throw current.fail("cannot remove", child, e)
                    }
                } else if case .failure(let e) = current.unlink(child), e != .ENOENT {
                    throw current.fail("cannot remove", child, e)
                }
            }
            if let d = descend {
                switch current.openDirectory(d, resolve: [.noSymlinks, .noXDev]) {
                case .success(let sub): current = sub; depth += 1
                case .failure(let e): throw current.fail("cannot open for removal", d, e)
                }
                continue
            }
            // Empty now: climb to the parent, which removes it on its next pass.
            depth -= 1
            if depth == 0 { break }
            switch current.openDirectory(dotdot, resolve: [.noXDev]) {
            case .success(let up): current = up
            case .failure(let e): throw current.fail("cannot climb while removing", dotdot, e)
            }
        }
        if case .failure(let e) = unlink(name, directory: true), e != .ENOENT { throw fail("cannot remove", name, e) }
    }

    /// Bytes of the regular files below this directory (symlinks not followed). Neither
    /// recursion nor an fd per level: a tree a container made may be thousands deep. Paths
    /// past PATH_MAX are not counted.
    public func regularFileBytes() throws -> Int64 {
        var total: Int64 = 0
        var pending: [PathBytes] = [[]]
        while let rel = pending.popLast() {
            let dir: Directory
            if rel.isEmpty {
                dir = self
            } else {
                guard case .success(let d) = openDirectory(rel, resolve: [.noSymlinks, .noXDev]) else { continue }
                dir = d
            }
            for name in try dir.entries() {
                guard let st = try dir.lstat(name) else { continue }
                if st.kind == .regular {
                    // Saturating: a container can make a 16 TiB sparse file and link it a million times.
                    total = total.addingSaturating(st.size)
                } else if st.kind == .directory {
                    pending.append(rel.isEmpty ? name : rel + [UInt8(ascii: "/")] + name)
                }
            }
        }
        return total
    }

    /// Names in this directory, without `.` and `..`, as bytes.
    public func entries() throws -> [PathBytes] {
        let dupfd = Glibc.openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dupfd >= 0, let dir = fdopendir(dupfd) else {
            throw StrataError.errno(.system, "cannot list \(label)")
        }
        defer { closedir(dir) }
        var names: [PathBytes] = []
        while let ent = readdir(dir) {
            let name: PathBytes = withUnsafeBytes(of: &ent.pointee.d_name) { raw in
                let len = strnlen(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
                return Array(raw[0..<len])
            }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            names.append(name)
        }
        return names
    }

    /// renameat(2) of `name` to `newName` in `newDir` (the same filesystem).
    public func rename(_ name: PathBytes, to newName: PathBytes, in newDir: Directory) throws {
        let r = withCPath(name) { a in withCPath(newName) { b in retryingEINTR { Glibc.renameat(fd, a, newDir.fd, b) } } }
        if case .failure(let e) = r { throw fail("cannot rename", name, e) }
    }

    /// fchownat(2) without following a symlink.
    public func chown(_ name: PathBytes, uid: uid_t, gid: gid_t) throws {
        let r = withCPath(name) { cn in retryingEINTR { Glibc.fchownat(fd, cn, uid, gid, AT_SYMLINK_NOFOLLOW) } }
        if case .failure(let e) = r { throw fail("cannot chown", name, e) }
    }

    /// utimensat(2) without following a symlink.
    public func setTimes(_ name: PathBytes, atime: FileTime, mtime: FileTime) throws {
        var times = [atime.timespec, mtime.timespec]
        let r = withCPath(name) { cn in retryingEINTR { Glibc.utimensat(fd, cn, &times, AT_SYMLINK_NOFOLLOW) } }
        if case .failure(let e) = r { throw fail("cannot set times of", name, e) }
    }

    /// Writes a small file (metadata, not layer content) atomically: temp name, then rename.
    public func writeFileAtomically(_ name: PathBytes, _ bytes: [UInt8]) throws {
        let tmp = name + Array(".tmp".utf8)
        _ = unlink(tmp)
        let f = try openFile(tmp, flags: [.writeOnly, .create, .exclusive], mode: 0o644)
        try f.writeAll(bytes)
        try rename(tmp, to: name, in: self)
    }

    /// Reads a whole small file, refusing more than `limit` bytes.
    public func readFile(_ name: PathBytes, limit: Int) throws -> [UInt8] {
        let f = try openFile(name, flags: .readOnly)
        return try f.readAll(limit: limit, label: "\(label)/\(name.display)")
    }
}

extension FDHandle {
    /// Reads to end of file; throws `.tooLarge` past `limit` bytes.
    public func readAll(limit: Int, label: String) throws -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try read(into: $0) }
            if n == 0 { break }
            if out.count + n > limit {
                throw StrataError(.tooLarge, "\(label) is over the \(limit)-byte limit")
            }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }
}

