import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataFormats
@testable import StrataEngine
@testable import StrataStore

/// Inputs that are not archives, archives that are far bigger than they look, images of too
/// many layers, blobs that are not files, stores from a newer strata: each is refused at once
/// with one line naming it, and the store is left as it was.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct InputBoundsTests {
    static let binary = strataBinary

    func strata(_ root: String, _ args: [String]) throws -> (Int32, String, String) {
        try strataCLI(args, root: root)
    }

    /// A small tmpfs in `t` (the caller unmounts it): a disk that fills.
    func smallDisk(in t: TempDir, size: String) throws -> String {
        let mnt = t.sub("small")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let mounted = try sh(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", mnt])
        try #require(mounted.0 == 0, "cannot mount a small tmpfs: \(mounted.2)")
        return mnt
    }

    /// The store holds nothing new and nothing is left in tmp/.
    func expectUntouched(_ root: String) throws {
        let (_, images, _) = try strata(root, ["images", "--json"])
        #expect(!images.contains("\"id\""), "\(images)")
        let tmp = (try? FileManager.default.contentsOfDirectory(atPath: root + "/tmp")) ?? []
        #expect(tmp.isEmpty, "tmp/ holds \(tmp)")
    }

    @Test func devicesAreNotArchives() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        for args in [["load", "/dev/zero"], ["load", "/dev/null"], ["import", "/dev/zero"]] {
            let (rc, _, err) = try strata(root, args)
            #expect(rc == 64 && err.contains("is a device") && err.split(separator: "\n").count == 1, "\(args): \(rc) \(err)")
        }
        let (rc, _, err) = try sh(["sh", "-c", "\(InputBoundsTests.binary) --root \(root) load - < /dev/zero"])
        #expect(rc == 64 && err.contains("standard input is a device"), "\(err)")
        try expectUntouched(root)
    }

    /// A 1.3 MB gzip of 300 MB of zeros stops once the spool passes four times
    /// --max-layer-size, from a file and from a pipe.
    @Test func compressedArchiveIsCapped() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        try sh(["sh", "-c", "head -c 300000000 /dev/zero | gzip -1 > \(t.sub("bomb.tar.gz"))"])
        let start = Date()
        let (rc, _, err) = try strata(root, ["load", "--max-layer-size", "10m", t.sub("bomb.tar.gz")])
        #expect(rc == 1 && err.contains("bomb.tar.gz") && err.contains("--max-archive-size"), "\(rc) \(err)")
        #expect(Date().timeIntervalSince(start) < 20)
        let (prc, _, perr) = try sh(["sh", "-c", "cat \(t.sub("bomb.tar.gz")) | \(InputBoundsTests.binary) --root \(root) load --max-archive-size 20m -"])
        #expect(prc == 1 && perr.contains("standard input") && perr.contains("21.0MB"), "\(prc) \(perr)")
        try expectUntouched(root)
    }

    /// An OCI layout of `count` one-file layers.
    static func deepLayout(_ dir: String, count: Int) throws {
        let layers = (0..<count).map { i -> [UInt8] in
            var b = TarBuilder()
            b.file("f\(i % 50)", "\(i)\n")
            return b.archive
        }
        try ImageLayout.write(dir, layers: layers, ref: "deep")
    }

    /// 1,001 layers are refused before any is opened; --max-layers lets them in.
    @Test func layerCountIsCapped() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        try InputBoundsTests.deepLayout(t.sub("deep"), count: 1001)
        let start = Date()
        let (rc, _, err) = try strata(root, ["load", t.sub("deep")])
        #expect(rc == 1 && err.contains("1001 layers") && err.contains("--max-layers"), "\(rc) \(err)")
        #expect(Date().timeIntervalSince(start) < 5)
        try expectUntouched(root)
        let (ok, _, okErr) = try strata(root, ["-q", "load", "--max-layers", "1001", t.sub("deep")])
        #expect(ok == 0, "\(okErr)")
    }

    /// A FIFO or a symlink where a blob should be: refused at once, never waited on or followed.
    @Test func blobsMustBeRegularFiles() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        let fifo = try OCIEditor(copying: fixtures + "/oci-gzip", to: t.sub("fifo"))
        let blob = fifo.blobPath(try fifo.layerDigest(0))
        unlink(blob)
        #expect(mkfifo(blob, 0o644) == 0)
        let (rc, _, err) = try sh(["timeout", "20", InputBoundsTests.binary, "--root", root, "load", t.sub("fifo")])
        #expect(rc == 1 && err.contains("not a regular file"), "\(rc) \(err)")

        let link = try OCIEditor(copying: fixtures + "/oci-gzip", to: t.sub("link"))
        let blob2 = link.blobPath(try link.layerDigest(0))
        try FileManager.default.moveItem(atPath: blob2, toPath: t.sub("elsewhere"))
        #expect(symlink(t.sub("elsewhere"), blob2) == 0)
        let (lrc, _, lerr) = try strata(root, ["load", t.sub("link")])
        #expect(lrc == 1 && lerr.contains("symlink, not a regular file"), "\(lrc) \(lerr)")
        try expectUntouched(root)
    }

    /// Errors of an empty file, an empty gzip and an empty pipe read the same on every run
    /// (no bytes of freed memory in them).
    @Test func emptyInputsGiveStableMessages() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        FileManager.default.createFile(atPath: t.sub("empty"), contents: Data())
        try sh(["sh", "-c", "gzip -c < /dev/null > \(t.sub("empty.gz")); printf x > \(t.sub("one"))"])
        for args in [["load", t.sub("empty")], ["load", t.sub("empty.gz")], ["load", t.sub("one")], ["load", "-"]] {
            let first = try strata(root, args), second = try strata(root, args)
            #expect(first.0 == 1 && first.2 == second.2, "\(args): \(first.2) / \(second.2)")
            #expect(first.2.utf8.allSatisfy { $0 == 0x0a || ($0 >= 0x20 && $0 < 0x7f) }, "\(args): \(first.2)")
        }
        #expect(try strata(root, ["load", t.sub("empty")]).2.contains("is empty"))
        try expectUntouched(root)
    }

    /// A store a newer strata wrote is refused and not written.
    @Test func newerStoreIsRefused() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        #expect(try strata(root, ["-q", "load", fixtures + "/oci-gzip"]).0 == 0)
        try sh(["python3", "-c", "import sqlite3; c = sqlite3.connect('\(root)/strata.db'); c.execute('pragma user_version = 9'); c.commit()"])
        let before = try Data(contentsOf: URL(fileURLWithPath: root + "/strata.db"))
        for args in [["images"], ["load", fixtures + "/oci-none"], ["gc"]] {
            let (rc, _, err) = try strata(root, args)
            #expect(rc == 71 && err.contains("newer strata") && err.contains("schema 9"), "\(args): \(rc) \(err)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: root + "/strata.db")) == before)
    }

    /// A database error shows SQLite's message, never the SQL statement.
    @Test func databaseErrorsHideTheStatement() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        #expect(try strata(root, ["-q", "load", fixtures + "/oci-gzip"]).0 == 0)
        try sh(["python3", "-c", """
            import sqlite3; c = sqlite3.connect('\(root)/strata.db')
            c.execute("create trigger refuse before insert on tags begin select raise(abort, 'UNIQUE constraint failed: tags.name'); end")
            c.commit()
            """])
        let (rc, _, err) = try strata(root, ["tag", "example.com/strata/busybox:gzip", "other:1"])
        #expect(rc == 71 && err.contains("UNIQUE constraint failed") && !err.contains("INSERT") && err.split(separator: "\n").count == 1, "\(err)")
    }

    /// A commit that fills the disk names the container and what it was writing; nothing is recorded.
    @Test func commitOnAFullDisk() throws {
        let t = TempDir(); defer { t.remove() }
        let mnt = try smallDisk(in: t, size: "24m")
        defer { _ = try? sh(["umount", "-l", mnt]) }
        let root = mnt + "/store"
        #expect(try strata(root, ["-q", "load", fixtures + "/oci-gzip"]).0 == 0)
        #expect(try strata(root, ["create", "--name", "full", "example.com/strata/busybox:gzip"]).0 == 0)
        let merged = try strata(root, ["mount", "full"]).1.split(separator: "\n").last.map(String.init) ?? ""
        try sh(["sh", "-c", "head -c 12000000 /dev/urandom > \(merged)/big"])
        let (rc, _, err) = try strata(root, ["commit", "full", "x:1"])
        #expect(rc == 71 && err.contains("container full") && err.contains("no space left") && err.contains(root), "\(rc) \(err)")
        #expect(err.split(separator: "\n").count == 1)
        #expect(!(try strata(root, ["images", "--json"]).1.contains("x:1")))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: root + "/tmp")) ?? []).isEmpty)
        try strata(root, ["rm", "-f", "full"])
    }

    /// A piped archive on a disk with little free space: a small one loads (the reserve scales
    /// with the free space), a bomb stops short of filling the disk and leaves nothing behind.
    @Test func pipedLoadOnANearlyFullDisk() throws {
        let t = TempDir(); defer { t.remove() }
        let mnt = try smallDisk(in: t, size: "96m")
        defer { _ = try? sh(["umount", "-l", mnt]) }
        let root = mnt + "/store"
        let archive = Array(try Data(contentsOf: URL(fileURLWithPath: fixtures + "/docker-legacy.tar")))
        let (rc, out, err) = try strataCLI(["load", "-"], root: root, stdin: archive)
        #expect(rc == 0 && out.contains("Loaded image"), "\(err)")
        // 200 MiB of zeros, gzipped: more than the disk holds once decompressed.
        let bomb = t.sub("bomb.gz")
        try sh(["sh", "-c", "head -c 209715200 /dev/zero | gzip -1 > \(bomb)"])
        let (brc, _, berr) = try sh(["sh", "-c", "'\(strataBinary)' --root '\(root)' load - < \(bomb)"])
        #expect(brc == 1 && berr.contains("all the room left"), "\(brc) \(berr)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: root + "/tmp")) ?? []).isEmpty)
        let free = try sh(["sh", "-c", "df -k --output=avail \(mnt) | tail -1"]).1.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect((Int(free) ?? 0) > 8 << 10, "free KiB: \(free)")
    }
}
