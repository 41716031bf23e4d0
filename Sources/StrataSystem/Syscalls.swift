#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore

/// An errno value, carried as the cause of a `StrataError` at the syscall boundary.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    /// The error of an errno value.
    public init(_ rawValue: Int32) { self.rawValue = rawValue }
    public static var current: Errno { Errno(errno) }
    public var description: String { String(cString: strerror(rawValue)) }

    public static let ENOENT = Errno(Glibc.ENOENT)
    public static let EEXIST = Errno(Glibc.EEXIST)
    public static let ELOOP = Errno(Glibc.ELOOP)
    public static let ENXIO = Errno(Glibc.ENXIO)
    public static let ENOTDIR = Errno(Glibc.ENOTDIR)
    public static let EXDEV = Errno(Glibc.EXDEV)
    public static let ENOTEMPTY = Errno(Glibc.ENOTEMPTY)
    public static let EISDIR = Errno(Glibc.EISDIR)
    public static let EWOULDBLOCK = Errno(Glibc.EWOULDBLOCK)
    public static let ENOSYS = Errno(Glibc.ENOSYS)
    public static let EBUSY = Errno(Glibc.EBUSY)
    public static let EINVAL = Errno(Glibc.EINVAL)
    public static let EACCES = Errno(Glibc.EACCES)
    public static let EAGAIN = Errno(Glibc.EAGAIN)
    public static let EINTR = Errno(Glibc.EINTR)
    // The ways a connection fails, for the registry client's messages.
    public static let ECONNREFUSED = Errno(Glibc.ECONNREFUSED)
    public static let ECONNRESET = Errno(Glibc.ECONNRESET)
    public static let EPIPE = Errno(Glibc.EPIPE)
    public static let ETIMEDOUT = Errno(Glibc.ETIMEDOUT)
    public static let EHOSTUNREACH = Errno(Glibc.EHOSTUNREACH)
    public static let ENETUNREACH = Errno(Glibc.ENETUNREACH)
}

/// A path as the kernel sees it: bytes without NUL. Names in tars may be invalid UTF-8,
/// and `String` comparison would merge canonically equivalent names, so paths are bytes.
public typealias PathBytes = [UInt8]

extension Array where Element == UInt8 {
    /// A readable rendering for messages (invalid UTF-8 is replaced, never used as a path).
    public var display: String { String(decoding: self, as: UTF8.self) }
}

/// Calls `body` with a NUL-terminated copy of `path`.
@inline(__always)
public func withCPath<R>(_ path: PathBytes, _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
    var copy = path
    copy.append(0)
    return try copy.withUnsafeBufferPointer { buf in
        try buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) { try body($0) }
    }
}

/// Runs a syscall that returns -1 with errno on failure, retrying EINTR.
@inline(__always)
public func retryingEINTR<T: FixedWidthInteger>(_ call: () -> T) -> Result<T, Errno> {
    while true {
        let r = call()
        if r == -1 {
            let e = errno
            if e == EINTR { continue }
            return .failure(Errno(e))
        }
        return .success(r)
    }
}

/// An owned file descriptor, closed when the last reference goes away.
public final class FDHandle: Sendable {
    public let fd: Int32
    /// Takes ownership of `fd` (closed when the handle goes).
    public init(owning fd: Int32) { self.fd = fd }
    deinit { _ = Glibc.close(fd) }

    /// open(2) of an absolute or cwd-relative path.
    public static func open(_ path: String, flags: OpenFlags, mode: mode_t = 0o644) throws -> FDHandle {
        let r = retryingEINTR { Glibc.open(path, flags.rawValue | O_CLOEXEC, mode) }
        switch r {
        case .success(let fd): return FDHandle(owning: fd)
        case .failure(let e): throw StrataError(.system, "cannot open \(path)", cause: e)
        }
    }

    /// fstat(2).
    public func stat() throws -> FileStatus {
        var st = Glibc.stat()
        guard Glibc.fstat(fd, &st) == 0 else { throw StrataError.errno(.system, "fstat") }
        return FileStatus(st)
    }

    /// pread(2) until `count` bytes or end of file; returns the bytes read.
    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        let r = retryingEINTR { Glibc.pread(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
        switch r {
        case .success(let n): return n
        case .failure(let e): throw StrataError(.system, "read failed", cause: e)
        }
    }

    /// read(2), retrying EINTR.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let r = retryingEINTR { Glibc.read(fd, buffer.baseAddress, buffer.count) }
        switch r {
        case .success(let n): return n
        case .failure(let e): throw StrataError(.system, "read failed", cause: e)
        }
    }

    /// write(2) of every byte, retrying short writes and EINTR.
    public func writeAll(_ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let r = retryingEINTR { Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done) }
            switch r {
            case .success(let n): done += n
            case .failure(let e): throw StrataError(.system, "write failed", cause: e)
            }
        }
    }

    /// write(2) of every byte of `bytes`.
    public func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeAll($0) }
    }

    /// syncfs(2): flush the whole filesystem holding this fd (one call per layer, not per file).
    public func syncfs() throws {
        guard strata_syncfs(fd) == 0 else { throw StrataError.errno(.system, "syncfs") }
    }

    /// flock(2). Returns false when `nonBlocking` and the lock is held elsewhere.
    @discardableResult
    public func flock(_ lock: FileLock, nonBlocking: Bool = false) throws -> Bool {
        let op = lock.operation | (nonBlocking ? LOCK_NB : 0)
        let r = retryingEINTR { strata_flock(fd, op) }
        switch r {
        case .success: return true
        case .failure(let e) where e == .EWOULDBLOCK: return false
        case .failure(let e): throw StrataError(.system, "flock", cause: e)
        }
    }

    /// An open-file-description lock on the one byte at `offset` (F_OFD_SETLK/SETLKW): shared
    /// or exclusive; `wait` blocks until it is granted. Returns false when it is held
    /// elsewhere and `wait` is false. Released with `unlockRange`, or when the fd closes.
    @discardableResult
    public func lockRange(_ offset: Int64, exclusive: Bool, wait: Bool) throws -> Bool {
        while strata_ofd_lock(fd, offset, exclusive ? 2 : 1, wait ? 1 : 0) != 0 {
            let e = Errno.current
            if e == .EINTR { continue }
            if !wait && (e == .EAGAIN || e == .EACCES) { return false }
            throw StrataError(.system, "cannot lock byte \(offset)", cause: e)
        }
        return true
    }

    /// Releases the lock on the byte at `offset`.
    public func unlockRange(_ offset: Int64) { _ = strata_ofd_lock(fd, offset, 0, 0) }

    /// Writes every byte at `offset` (pwrite(2), retrying short writes and EINTR).
    public func pwriteAll(_ buffer: UnsafeRawBufferPointer, at offset: Int64) throws {
        var done = 0
        while done < buffer.count {
            let r = retryingEINTR { Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done)) }
            switch r {
            case .success(let n): done += n
            case .failure(let e): throw StrataError(.system, "write failed", cause: e)
            }
        }
    }

    /// ftruncate(2).
    public func truncate(to size: Int64) throws {
        guard Glibc.ftruncate(fd, off_t(size)) == 0 else { throw StrataError.errno(.system, "cannot set the size") }
    }

    /// fchown(2).
    public func chown(uid: UInt32, gid: UInt32) throws {
        guard Glibc.fchown(fd, uid, gid) == 0 else { throw StrataError.errno(.system, "cannot chown to \(uid):\(gid)") }
    }

    /// fchmod(2).
    public func chmod(_ mode: UInt32) throws {
        guard Glibc.fchmod(fd, mode) == 0 else { throw StrataError.errno(.system, "cannot chmod to \(String(mode, radix: 8))") }
    }

    /// futimens(2): access and modification times.
    public func setTimes(atime: FileTime, mtime: FileTime) throws {
        var times = [atime.timespec, mtime.timespec]
        guard Glibc.futimens(fd, &times) == 0 else { throw StrataError.errno(.system, "cannot set times") }
    }

    /// chmod(2) of what an O_PATH descriptor names, through /proc/self/fd (devices and fifos
    /// must not be opened for I/O; fchmod refuses O_PATH descriptors).
    public func chmodPathOnly(_ mode: UInt32) throws {
        guard Glibc.chmod("/proc/self/fd/\(fd)", mode) == 0 else {
            throw StrataError.errno(.system, "cannot chmod to \(String(mode, radix: 8))")
        }
    }

    /// fsetxattr(2).
    public func setXattr(_ name: String, _ value: [UInt8]) throws {
        guard strata_fsetxattr(fd, name, value, value.count, 0) == 0 else { throw StrataError.errno(.system, "cannot set xattr \(name)") }
    }

    /// fgetxattr(2) of a value of at most `limit` bytes; nil when the file has no such attribute.
    public func xattr(_ name: String, limit: Int = 65536) -> [UInt8]? {
        var value = [UInt8](repeating: 0, count: limit)
        let n = strata_fgetxattr(fd, name, &value, value.count)
        return n >= 0 ? Array(value[0..<n]) : nil
    }

    /// A second descriptor of the same open file.
    public func duplicate() throws -> FDHandle {
        let n = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard n >= 0 else { throw StrataError.errno(.system, "dup") }
        return FDHandle(owning: n)
    }

    /// Bytes free to unprivileged users on the filesystem holding this fd (fstatvfs(3)).
    public func freeBytes() throws -> Int64 {
        var sv = statvfs()
        guard fstatvfs(fd, &sv) == 0 else { throw StrataError.errno(.system, "fstatvfs") }
        return Int64(sv.f_bavail) * Int64(sv.f_frsize)
    }

    /// Whether this file is on a kernel's own filesystem (proc, sysfs, cgroup, devpts, mqueue,
    /// debugfs, tracefs, securityfs, bpf): views of the kernel, not files to copy.
    public var isKernelFilesystem: Bool {
        let type = strata_fs_type(fd)
        let kernel: Set<Int> = [0x9fa0, 0x6265_6572, 0x27e0eb, 0x6367_7270, 0x1cd1, 0x1980_0202, 0x6462_6720, 0x7472_6163, 0x7363_6673, 0xcafe_4a11]
        return kernel.contains(type)
    }

    /// This O_PATH descriptor's file opened for reading, only when it is a regular file (never
    /// a FIFO, socket or device: nothing of theirs is opened).
    public func reopenRegularFile() throws -> FDHandle {
        let st = try stat()
        guard st.kind == .regular else { throw StrataError(.invalidArgument, "not a regular file (a \(st.kind))") }
        switch retryingEINTR({ Glibc.open("/proc/self/fd/\(fd)", O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC) }) {
        case .success(let fd): return FDHandle(owning: fd)
        case .failure(let e): throw StrataError(.system, "cannot reopen a file to read it", cause: e)
        }
    }

    /// A new pipe, both ends close-on-exec.
    public static func pipe() throws -> (read: FDHandle, write: FDHandle) {
        var fds: [Int32] = [-1, -1]
        guard strata_pipe2_cloexec(&fds) == 0 else { throw StrataError.errno(.system, "cannot make a pipe") }
        return (FDHandle(owning: fds[0]), FDHandle(owning: fds[1]))
    }

    /// Copies up to `count` bytes from this file's offset to `target`'s (copy_file_range(2), in
    /// the kernel; read and write where the kernel cannot, as between an overlay and another
    /// filesystem); returns the bytes copied (0 at end of file).
    public func copyRange(to target: FDHandle, count: Int) throws -> Int {
        switch retryingEINTR({ strata_copy_file_range(fd, target.fd, count) }) {
        case .success(let n): return n
        case .failure(let e) where [EXDEV, EINVAL, ENOSYS, EOPNOTSUPP].contains(e.rawValue):
            var buffer = [UInt8](repeating: 0, count: min(count, 1 << 20))
            let n = try buffer.withUnsafeMutableBytes { try read(into: $0) }
            try buffer.withUnsafeBytes { try target.writeAll(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            return n
        case .failure(let e): throw StrataError(.system, "copy_file_range", cause: e)
        }
    }
}

extension StrataError {
    /// Whether the cause, at any depth, is ENOSPC or EDQUOT: the disk or the quota is full.
    public var isNoSpace: Bool {
        var cause: (any Error)? = self.cause
        while let c = cause {
            if let e = c as? StrataError { cause = e.cause; continue }
            guard let e = c as? Errno else { return false }
            return e.rawValue == ENOSPC || e.rawValue == EDQUOT
        }
        return false
    }
}

extension StrataError {
    /// The error of a syscall that just failed: errno is read first, before the message is built
    /// (building it may call into the C library, which may change errno).
    public static func errno(_ code: Code = .system, _ message: @autoclosure () -> String) -> StrataError {
        let e = Errno.current
        return StrataError(code, message(), cause: e)
    }
}

/// mkdir(2) of a path that may already exist (as a directory or anything else: the caller's
/// next open says which). Throws with the path and errno otherwise.
public func makeDirectory(_ path: String, mode: mode_t = 0o755, what: @autoclosure () -> String = "directory") throws {
    if Glibc.mkdir(path, mode) != 0 && errno != EEXIST {
        throw StrataError.errno(.system, "cannot create \(what()) \(path)")
    }
}

/// mkdir -p: `path` and the directories above it that are missing.
public func makeDirectories(_ path: String, mode: mode_t = 0o755, what: @autoclosure () -> String = "directory") throws {
    var current = path.hasPrefix("/") ? "" : "."
    for c in path.split(separator: "/") {
        current += "/" + c
        try makeDirectory(current, mode: mode, what: what())
    }
}

/// Waits up to `seconds` for process `pid` (any process, not only a child) to end, through a
/// pidfd: true when it ended (or was never there), false at the timeout, nil when this kernel
/// gives no pidfd (poll instead).
public func waitForProcessEnd(_ pid: pid_t, seconds: Double) -> Bool? {
    let ms = Int32(max(0, min(seconds, 86_400)) * 1000)
    switch strata_wait_process_end(pid, ms) {
    case 1: return true
    case 0: return false
    default: return nil
    }
}

/// Keeps an SQLite connection (its `sqlite3` pointer) from checkpointing and deleting its WAL
/// when it closes: a short command then opens and closes the store without an fsync.
/// Whether SQLite took the setting.
@discardableResult
public func keepSQLiteWAL(_ connection: OpaquePointer) -> Bool {
    strata_sqlite_keep_wal(UnsafeMutableRawPointer(connection)) == 0
}
