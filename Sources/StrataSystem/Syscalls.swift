#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore

/// An errno value, carried as the cause of a `StrataError` at the syscall boundary.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }
    public static var current: Errno { Errno(errno) }
    public var description: String { String(cString: strerror(rawValue)) }

    public static let ENOENT = Errno(Glibc.ENOENT)
    public static let EEXIST = Errno(Glibc.EEXIST)
    public static let ELOOP = Errno(Glibc.ELOOP)
    public static let ENOTDIR = Errno(Glibc.ENOTDIR)
    public static let EXDEV = Errno(Glibc.EXDEV)
    public static let ENOTEMPTY = Errno(Glibc.ENOTEMPTY)
    public static let EISDIR = Errno(Glibc.EISDIR)
    public static let EWOULDBLOCK = Errno(Glibc.EWOULDBLOCK)
    public static let ENOSYS = Errno(Glibc.ENOSYS)
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
    public init(owning fd: Int32) { self.fd = fd }
    deinit { _ = Glibc.close(fd) }

    /// open(2) of an absolute or cwd-relative path.
    public static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) throws -> FDHandle {
        let r = retryingEINTR { Glibc.open(path, flags | O_CLOEXEC, mode) }
        switch r {
        case .success(let fd): return FDHandle(owning: fd)
        case .failure(let e): throw StrataError(.system, "cannot open \(path)", cause: e)
        }
    }

    /// fstat(2).
    public func stat() throws -> Glibc.stat {
        var st = Glibc.stat()
        guard Glibc.fstat(fd, &st) == 0 else { throw StrataError.errno(.system, "fstat") }
        return st
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

    public func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeAll($0) }
    }

    /// syncfs(2): flush the whole filesystem holding this fd (one call per layer, not per file).
    public func syncfs() throws {
        guard strata_syncfs(fd) == 0 else { throw StrataError.errno(.system, "syncfs") }
    }

    /// flock(2). Returns false when `nonBlocking` and the lock is held elsewhere.
    @discardableResult
    public func flock(_ operation: Int32, nonBlocking: Bool = false) throws -> Bool {
        let op = operation | (nonBlocking ? LOCK_NB : 0)
        let r = retryingEINTR { strata_flock(fd, op) }
        switch r {
        case .success: return true
        case .failure(let e) where e == .EWOULDBLOCK: return false
        case .failure(let e): throw StrataError(.system, "flock", cause: e)
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
