import CStrata
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import StrataArchive
@testable import StrataCore
@testable import StrataLayer
@testable import StrataSystem

/// A temporary directory removed when the value goes away (`defer { tmp.remove() }`).
struct TempDir {
    let path: String
    init(_ prefix: String = "strata-test") {
        var template = Array((NSTemporaryDirectory() + "/\(prefix).XXXXXX").utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
    func sub(_ name: String) -> String { path + "/" + name }
}

/// In-memory bytes as a ChunkSource, handed out in small chunks to exercise chunk boundaries.
final class BytesSource: ChunkSource {
    private let bytes: [UInt8]
    private var offset = 0
    private let chunk: Int
    private var current: [UInt8] = []
    init(_ bytes: [UInt8], chunk: Int = 4096) { self.bytes = bytes; self.chunk = chunk }
    func nextChunk() throws -> UnsafeRawBufferPointer {
        let n = min(chunk, bytes.count - offset)
        current = Array(bytes[offset..<(offset + n)])
        offset += n
        return current.withUnsafeBytes { UnsafeRawBufferPointer(start: $0.baseAddress, count: n) }
    }
}

/// Unpacks `tar` into `dir/diff` with its journal at `dir/journal`.
@discardableResult
func unpack(_ tar: [UInt8], into dir: String, maxSize: Int64 = 1 << 30, chunk: Int = 4096) throws -> LayerIngestResult {
    mkdir(dir, 0o755)
    mkdir(dir + "/diff", 0o755)
    let root = try Directory.open(dir + "/diff")
    let journal = try FDHandle.open(dir + "/journal", flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
    return try LayerIngest.run(blob: BytesSource(tar, chunk: chunk), into: root, journal: journal, maxTarSize: maxSize, label: "test.tar")
}

/// Rebuilds the tar of an unpacked layer from `dir/diff` and `dir/journal`.
func rebuild(_ dir: String) throws -> [UInt8] {
    let root = try Directory.open(dir + "/diff")
    let journal = try FDHandle.open(dir + "/journal", flags: O_RDONLY)
    var out: [UInt8] = []
    try LayerRebuild.run(root: root, journal: journal, label: "test") { out.append(contentsOf: $0) }
    return out
}

func lstatPath(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

func xattr(_ path: String, _ name: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 256)
    let n = strata_fgetxattr(fd, name, &buf, buf.count)
    return n < 0 ? nil : Array(buf[0..<n])
}

func isWhiteout(_ path: String) -> Bool {
    guard let st = lstatPath(path) else { return false }
    return (st.st_mode & S_IFMT) == S_IFCHR && st.st_rdev == 0
}

func exists(_ path: String) -> Bool { lstatPath(path) != nil }

func readString(_ path: String) -> String? {
    (try? String(contentsOfFile: path, encoding: .utf8))
}

func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
    try pipeThrough(["gzip", "-c", "-n"], bytes)
}

func pipeThrough(_ argv: [String], _ input: [UInt8]) throws -> [UInt8] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    let inPipe = Pipe(), outPipe = Pipe()
    p.standardInput = inPipe
    p.standardOutput = outPipe
    try p.run()
    let writer = Thread { inPipe.fileHandleForWriting.write(Data(input)); try? inPipe.fileHandleForWriting.close() }
    writer.start()
    let out = outPipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Array(out)
}

/// Runs a command, returning (exit code, stdout, stderr).
@discardableResult
func sh(_ argv: [String], env: [String: String] = [:], stdin: [UInt8]? = nil) throws -> (Int32, String, String) {
    // A child that exits before reading all of its input must not kill the test process.
    signal(SIGPIPE, SIG_IGN)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    p.environment = e
    let outPipe = Pipe(), errPipe = Pipe()
    p.standardOutput = outPipe
    p.standardError = errPipe
    let inPipe = Pipe()
    if stdin != nil { p.standardInput = inPipe }
    try p.run()
    if let stdin {
        let writer = Thread { inPipe.fileHandleForWriting.write(Data(stdin)); try? inPipe.fileHandleForWriting.close() }
        writer.start()
    }
    var outData = Data(), errData = Data()
    let g = DispatchGroup()
    g.enter()
    DispatchQueue.global().async { errData = errPipe.fileHandleForReading.readDataToEndOfFile(); g.leave() }
    outData = outPipe.fileHandleForReading.readDataToEndOfFile()
    g.wait()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// The repository root (for fixtures and the built binary).
let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<4 { url.deleteLastPathComponent() }
    return url.path
}()

let fixtures = repoRoot + "/fixtures/out"
let isRoot = getuid() == 0
