import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataTestSupport
import Testing
@testable import StrataArchive
@testable import StrataCore
@testable import StrataLayer
@testable import StrataSystem

/// Applying layer tars to a directory: overlay whiteouts, the nine decisions of docs/unpack-decisions.md, and
/// refusal of hostile entries. Needs root (devices, chown, trusted.* xattrs).
@Suite(.enabled(if: isRoot, "needs root")) struct UnpackTests {
    @Test func regularFilesDirsLinksDevicesAndMetadata() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.dir("etc", mode: 0o750, uid: 12, gid: 34)
        b.file("etc/passwd", "root\n", mode: 0o640, uid: 1, gid: 2)
        b.file("bin/suid", "x", mode: 0o4755, uid: 1000, gid: 1000)
        b.symlink("etc/abs", to: "/etc/passwd")
        b.hardlink("etc/passwd-link", to: "etc/passwd")
        b.device("dev/null", major: 1, minor: 3)
        b.device("dev/sda", kind: .block, major: 8, minor: 0, mode: 0o660)
        b.fifo("run/fifo")
        b.file("xattr", "x", pax: ["SCHILY.xattr.user.note": "v", "SCHILY.xattr.security.selinux": "ctx",
                                   "SCHILY.xattr.trusted.overlay.opaque": "y"])
        try unpack(b.archive, into: t.path)
        let d = t.sub("diff")
        let etc = try #require(lstatPath(d + "/etc"))
        #expect(etc.st_mode & 0o7777 == 0o750 && etc.st_uid == 12 && etc.st_gid == 34)
        #expect(readString(d + "/etc/passwd") == "root\n")
        // Decision 8: chown before chmod, so setuid survives.
        #expect(try #require(lstatPath(d + "/bin/suid")).st_mode & 0o7777 == 0o4755)
        // Decision 1: absolute symlink targets stored verbatim.
        #expect(try Directory.open(d + "/etc").readlink(Array("abs".utf8)) == Array("/etc/passwd".utf8))
        let p = try #require(lstatPath(d + "/etc/passwd")), l = try #require(lstatPath(d + "/etc/passwd-link"))
        #expect(p.st_ino == l.st_ino)
        let null = try #require(lstatPath(d + "/dev/null"))
        #expect(null.st_mode & S_IFMT == S_IFCHR && strata_major(null.st_rdev) == 1 && strata_minor(null.st_rdev) == 3)
        #expect(try #require(lstatPath(d + "/dev/sda")).st_mode & S_IFMT == S_IFBLK)
        #expect(try #require(lstatPath(d + "/run/fifo")).st_mode & S_IFMT == S_IFIFO)
        // Decision 7: content xattrs kept, selinux and overlay's own dropped.
        #expect(xattr(d + "/xattr", "user.note") == Array("v".utf8))
        #expect(xattr(d + "/xattr", "security.selinux") == nil)
        #expect(xattr(d + "/xattr", "trusted.overlay.opaque") == nil)
    }

    @Test func whiteoutsBecomeOverlayForm() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.whiteout("etc/motd")
        b.dir("opt/replaced")
        b.opaque("opt/replaced")
        b.file("opt/replaced/z", "z")
        b.file(".wh..wh.plnk")  // aufs internals are not content
        try unpack(b.archive, into: t.path)
        let d = t.sub("diff")
        #expect(isWhiteout(d + "/etc/motd"))
        #expect(xattr(d + "/opt/replaced", "trusted.overlay.opaque") == Array("y".utf8))
        #expect(readString(d + "/opt/replaced/z") == "z")
        #expect(!exists(d + "/.wh..wh.plnk"))
    }

    /// Decision 9: a whiteout hides lower layers only, never its own layer's entries, in either order.
    @Test func whiteoutNeverDeletesOwnLayer() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.file("a", "kept")
        b.whiteout("a")
        b.whiteout("b")
        b.file("b", "also kept")
        b.dir("c")
        b.file("c/x", "x")
        b.whiteout("c")
        b.whiteout("e")
        b.dir("e")
        try unpack(b.archive, into: t.path)
        let d = t.sub("diff")
        #expect(readString(d + "/a") == "kept")
        #expect(readString(d + "/b") == "also kept")
        #expect(readString(d + "/c/x") == "x")
        // A directory named by a whiteout of the same layer is new: nothing below shows through.
        #expect(xattr(d + "/c", "trusted.overlay.opaque") == Array("y".utf8))
        #expect(xattr(d + "/e", "trusted.overlay.opaque") == Array("y".utf8))
    }

    /// Decision 5: a root opaque marker is legal and recorded.
    @Test func rootOpaqueIsRecorded() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.opaque("")
        b.file("only", "x")
        let r = try unpack(b.archive, into: t.path)
        #expect(r.stats.opaqueRoot)
        #expect(readString(t.sub("diff/only")) == "x")
    }

    /// Decision 2: `./x`, `x//y`, `x/./y` and `a/../b` are normalised.
    @Test func namesAreNormalised() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.dir("./")
        b.file("./x", "1")
        b.file("y//z", "2")
        b.file("y/./w", "3")
        b.file("a/../b", "4")
        try unpack(b.archive, into: t.path)
        let d = t.sub("diff")
        #expect(readString(d + "/x") == "1" && readString(d + "/y/z") == "2" && readString(d + "/y/w") == "3")
        #expect(readString(d + "/b") == "4")
        #expect(!exists(d + "/a"))
    }

    /// Decision 1, same layer: an entry whose parent is a symlink is resolved inside the layer
    /// root (absolute and `..` targets included), never outside it.
    @Test func symlinkWriteThroughStaysInside() throws {
        let t = TempDir(); defer { t.remove() }
        let outside = TempDir("strata-canary"); defer { outside.remove() }
        var b = TarBuilder()
        b.dir("target")
        b.symlink("abs", to: "/target")
        b.file("abs/one", "1")
        b.symlink("rel", to: "../../../../../../target")
        b.file("rel/two", "2")
        b.symlink("out", to: outside.path)
        b.symlink("outrel", to: "../../../../../../..\(outside.path)")
        try unpack(b.archive, into: t.path)
        #expect(readString(t.sub("diff/target/one")) == "1")
        #expect(readString(t.sub("diff/target/two")) == "2")

        // A symlink to a directory that exists only outside: refused, nothing written outside.
        for link in ["out", "outrel"] {
            let t2 = TempDir(); defer { t2.remove() }
            var c = TarBuilder()
            c.symlink(link, to: link == "out" ? outside.path : "../../../../../../..\(outside.path)")
            c.file("\(link)/canary", "pwned")
            #expect { try unpack(c.archive, into: t2.path) } throws: { ($0 as? StrataError)?.code == .unsafeEntry }
            #expect(!exists(outside.sub("canary")))
        }
    }

    /// Decision 3/4: a directory replaces a symlink of the same layer; a later entry that turns a
    /// directory into a symlink does not let the directory's deferred times follow it.
    @Test func directoryReplacesSymlinkAndDuplicatesLastWins() throws {
        let t = TempDir(); defer { t.remove() }
        let outside = TempDir("strata-canary"); defer { outside.remove() }
        mkdir(outside.sub("target"), 0o755)
        let before = try #require(lstatPath(outside.sub("target")))
        var b = TarBuilder()
        b.symlink("lib", to: "usr/lib")
        b.dir("lib")
        b.file("lib/x", "x")
        b.dir("d", mode: 0o700)
        b.symlink("d", to: outside.sub("target"))
        b.file("dup", "first")
        b.file("dup", "second")
        try unpack(b.archive, into: t.path)
        let d = t.sub("diff")
        #expect(try #require(lstatPath(d + "/lib")).st_mode & S_IFMT == S_IFDIR)
        #expect(readString(d + "/lib/x") == "x")
        #expect(try #require(lstatPath(d + "/d")).st_mode & S_IFMT == S_IFLNK)
        let after = try #require(lstatPath(outside.sub("target")))
        #expect(after.st_mode == before.st_mode && after.st_mtim.tv_sec == before.st_mtim.tv_sec)
        #expect(readString(d + "/dup") == "second")
    }

    /// Directory times are applied after children (Decision 8).
    @Test func directoryTimesSurviveChildren() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.mtime = 1_600_000_000
        b.dir("a")
        b.mtime = 1_700_000_000
        b.file("a/b", "x")
        b.file("a/c", "y")
        try unpack(b.archive, into: t.path)
        #expect(try #require(lstatPath(t.sub("diff/a"))).st_mtim.tv_sec == 1_600_000_000)
    }

    /// UTF-8 PAX names arrive intact although the process runs in the C locale.
    @Test func utf8NamesSurvive() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.file("h\u{e9}llo-w\u{f6}rld.txt", "u")
        b.file("日本語/ファイル", "j")
        try unpack(b.archive, into: t.path)
        #expect(readString(t.sub("diff/h\u{e9}llo-w\u{f6}rld.txt")) == "u")
        #expect(readString(t.sub("diff/日本語/ファイル")) == "j")
    }

    static let hostile: [(String, TarBuilder)] = {
        func make(_ f: (inout TarBuilder) -> Void) -> TarBuilder { var b = TarBuilder(); f(&b); return b }
        return [
            ("dotdot", make { $0.file("../escape", "x") }),
            ("dotdot-deep", make { $0.file("a/../../escape", "x") }),
            ("absolute", make { $0.file("/etc/escape", "x") }),
            ("hardlink-out", make { $0.hardlink("l", to: "../../etc/passwd") }),
            ("hardlink-absolute", make { $0.hardlink("l", to: "/etc/passwd") }),
            ("hardlink-missing", make { $0.hardlink("l", to: "not-here") }),
            ("whiteout-outside", make { $0.file(".wh.../x") }),
            ("whiteout-dot", make { $0.file(".wh..") }),
            ("whiteout-dotdot", make { $0.file(".wh...") }),
            ("whiteout-bare", make { $0.file("d/.wh.") }),
            ("whiteout-escape", make { $0.file("../.wh.x") }),
            ("chardev-0-0", make { $0.device("dev/wh", major: 0, minor: 0) }),
            ("symlink-root", make { $0.symlink(".", to: "/") }),
        ]
    }()

    @Test(arguments: hostile.map(\.0))
    func hostileEntryIsRefused(_ name: String) throws {
        let t = TempDir(); defer { t.remove() }
        let b = UnpackTests.hostile.first { $0.0 == name }!.1
        #expect {
            try unpack(b.archive, into: t.path)
        } throws: { error in
            guard let e = error as? StrataError else { return false }
            return (e.code == .unsafeEntry) && e.message.contains("test.tar")
        }
    }

    @Test func truncatedTarIsRefused() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.file("big", String(repeating: "x", count: 5000))
        let cut = Array(b.bytes.prefix(2048))
        #expect(throws: StrataError.self) { try unpack(cut, into: t.path) }
    }

    @Test func truncatedGzipIsRefused() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.file("big", String(repeating: "xy", count: 50000))
        let gz = try gzip(b.archive)
        #expect(throws: StrataError.self) { try unpack(Array(gz.prefix(gz.count / 2)), into: t.path) }
    }

    /// A gzip bomb fails as soon as the uncompressed stream passes the limit.
    @Test func layerOverLimitFailsEarly() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.file("zeros", String(repeating: "\0", count: 4 << 20))
        let gz = try gzip(b.archive)
        #expect {
            try unpack(gz, into: t.path, maxSize: 1 << 20)
        } throws: { ($0 as? StrataError)?.code == .tooLarge }
        // It stopped early: the file never grew past the limit.
        #expect((lstatPath(t.sub("diff/zeros"))?.st_size ?? 0) <= 1 << 20)
    }
}

/// The tar-split journal: the rebuilt tar equals the original, byte for byte.
@Suite(.enabled(if: isRoot, "needs root")) struct JournalTests {
    @Test(arguments: ["layer0.tar", "layer1.tar", "layer2.tar", "layer3.tar"])
    func fixtureLayersRebuildExactly(_ name: String) throws {
        let t = TempDir(); defer { t.remove() }
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: fixtures + "/" + name)))
        let r = try unpack(original, into: t.path, chunk: 7777)
        #expect(r.journalInexactReason == nil)
        #expect(r.diffID.digest == Digest.of(original))
        let rebuilt = try rebuild(t.path)
        #expect(rebuilt.count == original.count)
        #expect(rebuilt == original)
    }

    /// Tars written by GNU tar (gnu and pax formats) and bsdtar-like writers.
    @Test(arguments: ["gnu", "pax", "ustar", "posix"])
    func gnuTarRebuildsExactly(_ format: String) throws {
        let src = TempDir(); defer { src.remove() }
        let t = TempDir(); defer { t.remove() }
        try FileManager.default.createDirectory(atPath: src.sub("a/b"), withIntermediateDirectories: true)
        try "hello".write(toFile: src.sub("a/b/f"), atomically: false, encoding: .utf8)
        try String(repeating: "z", count: 70000).write(toFile: src.sub("a/big"), atomically: false, encoding: .utf8)
        try "n".write(toFile: src.sub("a/" + String(repeating: "n", count: 150)), atomically: false, encoding: .utf8)
        link(src.sub("a/b/f"), src.sub("a/hard"))
        symlink("b/f", src.sub("a/sym"))
        let (rc, out, _) = try sh(["sh", "-c", "tar -C \(src.path) --format=\(format) -cf - a | base64 -w0"])
        #expect(rc == 0)
        let original = Array(Data(base64Encoded: out)!)
        try unpack(original, into: t.path, chunk: 1000)
        #expect(try rebuild(t.path) == original)
    }

    /// A file overwritten later in the same layer cannot come back from the files: flagged.
    @Test func duplicateFileMakesJournalInexact() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.file("dup", "first")
        b.file("dup", "second")
        let r = try unpack(b.archive, into: t.path)
        #expect(r.journalInexactReason != nil)
    }
}
