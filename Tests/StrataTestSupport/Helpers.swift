import CStrata
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataArchive
import StrataCore
import StrataLayer
import StrataSystem

/// A temporary directory removed when the value goes away (`defer { tmp.remove() }`).
public struct TempDir: Sendable {
    public let path: String
    public init(_ prefix: String = "strata-test", inMemory: Bool = false) {
        let base = inMemory && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }
    public func remove() { try? FileManager.default.removeItem(atPath: path) }
    public func sub(_ name: String) -> String { path + "/" + name }
}

/// In-memory bytes as a ChunkSource, handed out in small chunks to exercise chunk boundaries.
public final class BytesSource: ChunkSource {
    private let bytes: [UInt8]
    private var offset = 0
    private let chunk: Int
    private var current: [UInt8] = []
    public init(_ bytes: [UInt8], chunk: Int = 4096) { self.bytes = bytes; self.chunk = chunk }
    public func nextChunk() throws -> UnsafeRawBufferPointer {
        let n = min(chunk, bytes.count - offset)
        current = Array(bytes[offset..<(offset + n)])
        offset += n
        return current.withUnsafeBytes { UnsafeRawBufferPointer(start: $0.baseAddress, count: n) }
    }
}

/// Unpacks `tar` into `dir/diff` with its journal at `dir/journal`.
@discardableResult
public func unpack(_ tar: [UInt8], into dir: String, maxSize: Int64 = 1 << 30, chunk: Int = 4096) throws -> LayerIngestResult {
    mkdir(dir, 0o755)
    mkdir(dir + "/diff", 0o755)
    let root = try Directory.open(dir + "/diff")
    let journal = try FDHandle.open(dir + "/journal", flags: [.writeOnly, .create, .truncate], mode: 0o600)
    return try LayerIngest.run(blob: BytesSource(tar, chunk: chunk), into: root, journal: journal, maxTarSize: maxSize, label: "test.tar")
}

/// Rebuilds the tar of an unpacked layer from `dir/diff` and `dir/journal`.
public func rebuild(_ dir: String) throws -> [UInt8] {
    let root = try Directory.open(dir + "/diff")
    let journal = try FDHandle.open(dir + "/journal", flags: .readOnly)
    var out: [UInt8] = []
    try LayerRebuild.run(root: root, journal: journal, label: "test") { out.append(contentsOf: $0) }
    return out
}

public func lstatPath(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

public func xattr(_ path: String, _ name: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 256)
    let n = strata_fgetxattr(fd, name, &buf, buf.count)
    return n < 0 ? nil : Array(buf[0..<n])
}

public func isWhiteout(_ path: String) -> Bool {
    guard let st = lstatPath(path) else { return false }
    return FileKind(mode: st.st_mode) == .characterDevice && st.st_rdev == 0
}

public func exists(_ path: String) -> Bool { lstatPath(path) != nil }

public func readString(_ path: String) -> String? {
    (try? String(contentsOfFile: path, encoding: .utf8))
}

public func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
    let t = TempDir("strata-gz"); defer { t.remove() }
    try Data(bytes).write(to: URL(fileURLWithPath: t.sub("x")))
    try sh(["gzip", "-n", t.sub("x")])
    return Array(try Data(contentsOf: URL(fileURLWithPath: t.sub("x.gz"))))
}

/// Runs a command, returning (exit code, stdout, stderr). posix_spawn and waitpid directly
/// (Foundation's Process is not safe to use from parallel tests on Linux); output goes through
/// temporary files, so no pipe can fill up.
@discardableResult
public func sh(_ argv: [String], env: [String: String] = [:], stdin: [UInt8]? = nil) throws -> (Int32, String, String) {
    let t = TempDir("strata-sh"); defer { t.remove() }
    _ = FileManager.default.createFile(atPath: t.sub("in"), contents: Data(stdin ?? []))
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, t.sub("in"), O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, t.sub("out"), O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, t.sub("err"), O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    var environment = ProcessInfo.processInfo.environment
    for (k, v) in env { environment[k] = v }
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, cEnv)
    guard rc == 0 else { throw StrataError(.system, "cannot run \(argv[0])", cause: Errno(rc)) }
    let code = reap(pid)
    return (code, (try? String(contentsOfFile: t.sub("out"), encoding: .utf8)) ?? "",
            (try? String(contentsOfFile: t.sub("err"), encoding: .utf8)) ?? "")
}

/// Runs the strata binary on the store at `root` (every test that drives the command line goes
/// through here): (exit code, stdout, stderr).
@discardableResult
public func strataCLI(_ args: [String], root: String, stdin: [UInt8]? = nil, env: [String: String] = [:]) throws -> (Int32, String, String) {
    try sh([strataBinary, "--root", root] + args, env: env, stdin: stdin)
}

/// The repository root (for fixtures and the built binary).
public let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

public let fixtures = repoRoot + "/fixtures/out"
public let isRoot = getuid() == 0

/// How much slower than this machine the tests may find the one they run on: bounds on how long
/// something takes are multiplied by it (`STRATA_TEST_TIME_SCALE`; the cgroup v2 VM job, which
/// emulates its CPU, sets 10).
public let timeScale: Double = ProcessInfo.processInfo.environment["STRATA_TEST_TIME_SCALE"].flatMap(Double.init) ?? 1

/// The strata binary the tests run: the debug build, or `STRATA_BINARY` (the sanitizer run
/// points it at its own build).
public let strataBinary = ProcessInfo.processInfo.environment["STRATA_BINARY"] ?? repoRoot + "/.build/debug/strata"

/// Runs `argv` on a new pseudo-terminal (CI has no terminal of its own), types `input` after a
/// second, and returns everything the terminal showed followed by a line "exit N".
public func onTerminal(_ argv: [String], typing input: String) throws -> (String, String) {
    let script = """
    import os, pty, sys, time
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.argv[2], sys.argv[2:])
    time.sleep(1.0)
    os.write(fd, sys.argv[1].encode())
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    print(out.decode(errors="replace"))
    print("exit", os.waitstatus_to_exitcode(status))
    """
    let (_, out, err) = try sh(["python3", "-c", script, input] + argv)
    return (out, err)
}
