#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore

/// What `lstat`/`fstat` report, as Swift values (the C library's layout stays in this module).
public struct FileStatus: Sendable, Equatable {
    /// Type bits and permissions (`st_mode`).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    /// Bytes: of a regular file's content, of a symlink's target.
    public var size: Int64
    /// The filesystem's device and the inode: together, the file's identity.
    public var device: UInt64
    public var inode: UInt64
    /// Hard links to the inode.
    public var links: UInt64
    /// The device a device node stands for (`st_rdev`).
    public var rdev: UInt64
    public var accessTime: FileTime
    public var modificationTime: FileTime
    public var changeTime: FileTime

    /// The file's kind, from the mode's type bits.
    public var kind: FileKind { FileKind(mode: mode) }
    /// The permission bits (with setuid, setgid and sticky).
    public var permissions: UInt32 { mode & 0o7777 }
    /// The major and minor numbers of `rdev`.
    public var deviceNumbers: (major: UInt32, minor: UInt32) { StrataSystem.deviceNumbers(rdev) }

    init(_ st: Glibc.stat) {
        mode = st.st_mode; uid = st.st_uid; gid = st.st_gid; size = Int64(st.st_size)
        device = UInt64(st.st_dev); inode = UInt64(st.st_ino); links = UInt64(st.st_nlink); rdev = UInt64(st.st_rdev)
        accessTime = FileTime(st.st_atim); modificationTime = FileTime(st.st_mtim); changeTime = FileTime(st.st_ctim)
    }
}

extension FileTime {
    init(_ ts: timespec) { self.init(seconds: Int64(ts.tv_sec), nanoseconds: ts.tv_nsec) }
    var timespec: Glibc.timespec { Glibc.timespec(tv_sec: time_t(seconds), tv_nsec: nanoseconds) }
}

/// The type of a file, from the top bits of its mode. (Made from `st_mode` rather than from
/// the stat value: modules that import libarchive see a `stat` type of their own.)
public enum FileKind: Sendable, Equatable {
    case regular, directory, symlink, characterDevice, blockDevice, fifo, socket, unknown

    /// The kind that `mode`'s type bits say.
    public init(mode: UInt32) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symlink
        case S_IFCHR: self = .characterDevice
        case S_IFBLK: self = .blockDevice
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        default: self = .unknown
        }
    }

    /// The mode's type bits for this kind (for mknod).
    public var modeBits: UInt32 {
        switch self {
        case .regular: S_IFREG
        case .directory: S_IFDIR
        case .symlink: S_IFLNK
        case .characterDevice: S_IFCHR
        case .blockDevice: S_IFBLK
        case .fifo: S_IFIFO
        case .socket: S_IFSOCK
        case .unknown: 0
        }
    }
}

/// Major and minor number of a device number (`st_rdev`).
public func deviceNumbers(_ rdev: UInt64) -> (major: UInt32, minor: UInt32) { (strata_major(dev_t(rdev)), strata_minor(dev_t(rdev))) }

/// open(2) flags. `O_CLOEXEC` is always added by the calls that open.
public struct OpenFlags: OptionSet, Sendable {
    public let rawValue: Int32
    /// Flags from their `O_*` bits.
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// O_RDONLY is 0: the empty set reads.
    public static let readOnly = OpenFlags([])
    public static let writeOnly = OpenFlags(rawValue: O_WRONLY)
    public static let readWrite = OpenFlags(rawValue: O_RDWR)
    public static let create = OpenFlags(rawValue: O_CREAT)
    public static let exclusive = OpenFlags(rawValue: O_EXCL)
    public static let truncate = OpenFlags(rawValue: O_TRUNC)
    public static let append = OpenFlags(rawValue: O_APPEND)
    public static let noFollow = OpenFlags(rawValue: O_NOFOLLOW)
    public static let nonBlocking = OpenFlags(rawValue: O_NONBLOCK)
    public static let directory = OpenFlags(rawValue: O_DIRECTORY)
    public static let pathOnly = OpenFlags(rawValue: STRATA_O_PATH)
    /// An unnamed file in the given directory (O_TMPFILE).
    public static let temporaryFile = OpenFlags(rawValue: STRATA_O_TMPFILE)
}

/// flock(2) operations.
public enum FileLock: Sendable {
    case shared, exclusive, unlock
    var operation: Int32 {
        switch self {
        case .shared: LOCK_SH
        case .exclusive: LOCK_EX
        case .unlock: LOCK_UN
        }
    }
}

/// Whether `path` exists (access F_OK; a dangling symlink does not).
public func pathExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// Whether this process may write `path`.
public func isWritable(_ path: String) -> Bool { access(path, W_OK) == 0 }
/// Whether this process may open `path` for reading and writing.
public func isReadableAndWritable(_ path: String) -> Bool { access(path, R_OK | W_OK) == 0 }

/// The canonical absolute path (realpath(3)).
public func canonicalPath(_ path: String) throws -> String {
    guard let resolved = realpath(path, nil) else { throw StrataError.errno(.system, "cannot resolve \(path)") }
    defer { free(resolved) }
    return String(cString: resolved)
}

/// Whether fd `fd` is a terminal.
public func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

/// Sends `signal` to process `pid`; whether it was delivered.
@discardableResult
public func sendSignal(_ pid: Int32, _ signal: Int32) -> Bool { kill(pid, signal) == 0 }

/// Signal numbers the callers name.
public enum Signal {
    public static let kill: Int32 = SIGKILL
    public static let term: Int32 = SIGTERM
}

extension FDHandle {
    /// A descriptor of its own for standard input, output or error (0, 1, 2).
    public static func duplicating(_ fd: Int32) throws -> FDHandle {
        let n = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard n >= 0 else { throw StrataError.errno(.system, "cannot duplicate descriptor \(fd)") }
        return FDHandle(owning: n)
    }
}

/// rename(2) of a path to another on the same filesystem (replacing what is there).
public func renamePath(_ from: String, to: String) throws {
    guard rename(from, to) == 0 else { throw StrataError.errno(.system, "cannot rename \(from) to \(to)") }
}

/// unlink(2); whether it went.
@discardableResult
public func removeFile(_ path: String) -> Bool { unlink(path) == 0 }

/// mkdir(2) of a directory that must not exist yet.
public func createNewDirectory(_ path: String, mode: UInt32 = 0o755) throws {
    guard mkdir(path, mode) == 0 else { throw StrataError.errno(.alreadyExists, "cannot create \(path)") }
}

/// Opens /dev/null onto whichever of fds 0, 1 and 2 is closed: strata started with one closed
/// would otherwise hand that number to the next file it opens (a lock, a layer file), and what
/// is meant for its stdin, stdout or stderr (a container's output) would land there.
/// Sets the file mode creation mask to 022 (Docker's daemon's and runc's): what strata makes
/// (layer directories, a container's tree and /etc files, a build's layers) has the modes its
/// code asks for, whatever the umask of the shell that started it.
public func useDefaultUmask() { umask(0o022) }

public func ensureStandardDescriptors() {
    for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) < 0 {
        let null = Glibc.open("/dev/null", O_RDWR)
        if null >= 0 && null != fd { dup2(null, fd); close(null) }
    }
}

/// Raises the soft limit on open files to the hard limit (deep layer trees are walked with
/// one descriptor per level).
public func raiseOpenFileLimit() {
    var limit = rlimit()
    if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}

/// Writes to standard error, unbuffered (messages and progress lines).
public func writeStandardError(_ s: String) {
    var bytes = Array(s.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        done += n
    }
}

/// Writes bytes to standard output, unbuffered (log lines that are not text are kept as they are).
public func writeStandardOutput(_ bytes: [UInt8]) {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(1, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        done += n
    }
}

/// Whether this process runs as root (effective uid 0).
public var isRootUser: Bool { geteuid() == 0 }
/// The effective user and group of this process.
public var callerIDs: (uid: UInt32, gid: UInt32) { (geteuid(), getegid()) }

/// Which file a path names now (device and inode, from lstat(2)); nil when nothing is there.
public func fileIdentity(_ path: String) -> FileIdentity? {
    var st = Glibc.stat()
    return lstat(path, &st) == 0 ? FileIdentity(FileStatus(st)) : nil
}

/// A file's device and inode: the same for every name and descriptor of it.
public struct FileIdentity: Equatable, Sendable {
    public let device: UInt64
    public let inode: UInt64
    public init(_ st: FileStatus) { device = st.device; inode = st.inode }
}

extension FDHandle {
    /// The identity of the open file.
    public func identity() throws -> FileIdentity { FileIdentity(try stat()) }

    /// Waits up to `seconds` for data (or the end) to read; false when none came in time.
    public func waitReadable(seconds: Double) -> Bool {
        while true {
            let r = strata_wait_readable(fd, Int32(seconds * 1000))
            if r < 0 && errno == EINTR { continue }
            return r != 0
        }
    }
}

extension Directory {
    /// Swaps what two names in this directory point to, atomically (renameat2 RENAME_EXCHANGE).
    public func exchange(_ a: PathBytes, _ b: PathBytes) throws {
        let r = withCPath(a) { ca in withCPath(b) { cb in retryingEINTR { strata_exchange_names(fd, ca, cb) } } }
        if case .failure(let e) = r { throw StrataError(.system, "cannot exchange \(a.display) and \(b.display) in \(label)", cause: e) }
    }

    /// Renames `name` to `newName` in `newDir` unless something has that name (renameat2
    /// RENAME_NOREPLACE); false when it has.
    public func renameNoReplace(_ name: PathBytes, to newName: PathBytes, in newDir: Directory) throws -> Bool {
        let r = withCPath(name) { a in withCPath(newName) { b in retryingEINTR { strata_rename_noreplace(fd, a, newDir.fd, b) } } }
        switch r {
        case .success: return true
        case .failure(let e) where e == .EEXIST: return false
        case .failure(let e): throw StrataError(.system, "cannot rename \(name.display) in \(label) to \(newName.display)", cause: e)
        }
    }
}
