import CStrata
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataCore
import StrataDrivers
import StrataLauncher
import StrataStore
import StrataEngine
import StrataSystem

/// Starts a process without waiting; output is discarded, or stderr kept in `stderr`.
public func spawn(_ argv: [String], stderr: String = "/dev/null") throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    // As a shell starts a program: nothing blocked, default actions (the test runner's threads
    // block signals, and a mask is inherited).
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var none = sigset_t(), all = sigset_t()
    sigemptyset(&none); sigfillset(&all)
    posix_spawnattr_setsigmask(&attr, &none)
    posix_spawnattr_setsigdefault(&attr, &all)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { cArgs.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, argv[0], &actions, &attr, cArgs, environ)
    guard rc == 0 else { throw StrataError(.system, "cannot run \(argv[0])", cause: Errno(rc)) }
    return pid
}

/// Waits for a process; its exit code, or 128+N when killed by signal N.
public func reap(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return exitCode(waitStatus: status)
}

/// The exit code a wait status says: the process's code, or 128+N when signal N killed it (the
/// shell's and Docker's convention). The one decoder of wait statuses in the tests.
public func exitCode(waitStatus status: Int32) -> Int32 {
    (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

public let overlayWorks: Bool = {
    let t = TempDir("strata-probe"); defer { t.remove() }
    return OverlayDriver.probe(scratch: t.sub("p")) == nil
}()

public let cgroupLayout = CgroupLayout.current()

public struct Expected: Decodable {
    public struct Image: Decodable { public let id: String; public let diff_ids: [String] }
    public let image_a: Image
    public let image_b: Image
    public let rootfs_diff_id: String
    public struct Other: Decodable { public let platform: String; public let id: String }
    public let other_platform: Other
    public static func load() throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/expected.json")))
    }
}

/// Everything a user can observe of a store: images, layers, and the files (SQLite's -wal and
/// -shm aside), to show that a refused load leaves the store exactly as it was.
public func snapshot(_ store: Store) throws -> String {
    var s = "\(try store.images())\n\(try store.layers())"
    let fm = FileManager.default
    for p in (fm.subpaths(atPath: store.rootPath) ?? []).sorted() where !p.hasSuffix("-wal") && !p.hasSuffix("-shm") {
        s += "\n" + p
        if let st = lstatPath(store.rootPath + "/" + p), FileKind(mode: st.st_mode) == .regular, !p.hasSuffix(".db") { s += " \(st.st_size)" }
    }
    return s
}

public func strata_mount_bind_for_tests(_ source: String, _ target: String) -> Int32 {
    strata_mount(source, target, nil, strata_ms_bind(), nil)
}
