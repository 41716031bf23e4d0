import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore

/// The database is an index of the store's files: lost, emptied, damaged or rolled back, it is
/// refused with one line naming `check --repair`, which gives back the same images, tags,
/// layers and containers without moving a good layer.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct IndexRebuildTests {
    struct Env {
        let t = TempDir("strata-index")
        var root: String { t.sub("store") }
        func strata(_ args: [String]) throws -> (Int32, String, String) { try strataCLI(args, root: root) }
        func ok(_ args: [String]) throws -> String {
            let (rc, out, err) = try strata(args)
            #expect(rc == 0, "\(args): \(err)")
            return out
        }
        /// What a user sees of the store.
        func views() throws -> [String] {
            try [["images", "--digests", "--no-trunc"], ["layers", "--json"], ["ps", "-a", "--json"], ["history", "mine:1"]].map { try ok($0) }
        }
        func db(_ sql: String) throws {
            let (rc, _, err) = try sh(["python3", "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()",
                                       root + "/strata.db", sql])
            #expect(rc == 0, "\(err)")
        }
        func remove() { _ = try? strata(["rm", "-f", "c1", "c2"]); t.remove() }
    }

    /// Two fixtures, extra tags, two containers (one mounted).
    static func populated() throws -> Env {
        let e = Env()
        _ = try e.ok(["-q", "load", fixtures + "/oci-shared"])
        _ = try e.ok(["-q", "load", fixtures + "/docker-25.tar"])
        _ = try e.ok(["tag", "example.com/strata/busybox:a", "mine:1"])
        _ = try e.ok(["create", "--name", "c1", "mine:1"])
        _ = try e.ok(["create", "--name", "c2", "example.com/strata/busybox:b"])
        _ = try e.ok(["mount", "c2"])
        return e
    }

    static let damages: [(String, @Sendable (Env) throws -> Void)] = [
        ("delete the database and its WAL", { e in
            for s in ["", "-wal", "-shm"] { unlink(e.root + "/strata.db" + s) }
        }),
        ("truncate the database", { e in #expect(truncate(e.root + "/strata.db", 0) == 0) }),
        ("truncate the database, delete the WAL", { e in
            #expect(truncate(e.root + "/strata.db", 0) == 0)
            for s in ["-wal", "-shm"] { unlink(e.root + "/strata.db" + s) }
        }),
        ("overwrite the database's header, delete the WAL", { e in
            let h = try #require(FileHandle(forUpdatingAtPath: e.root + "/strata.db"))
            h.write(Data(repeating: 0x5a, count: 100)); h.closeFile()
            for s in ["-wal", "-shm"] { unlink(e.root + "/strata.db" + s) }
        }),
    ]

    @Test(arguments: 0..<damages.count) func rebuiltFromFiles(_ which: Int) throws {
        let (what, damage) = IndexRebuildTests.damages[which]
        let e = try IndexRebuildTests.populated(); defer { e.remove() }
        let before = try e.views()
        let layerDirs = try FileManager.default.contentsOfDirectory(atPath: e.root + "/layers").sorted()
        try damage(e)
        // Refused, in one line that says what to do; nothing is swept or created meanwhile.
        let (rc, out, err) = try e.strata(["images"])
        #expect(rc == 74 && out.isEmpty, "\(what): images exited \(rc): \(out)")
        #expect(err.split(separator: "\n").count == 1 && err.contains("strata check --repair"), "\(what): \(err)")
        #expect(try e.strata(["-q", "load", fixtures + "/oci-zstd"]).0 == 74, "\(what): a load must be refused")
        #expect(try e.strata(["check"]).0 == 1)
        let repair = try e.strata(["check", "--repair"])
        #expect(repair.0 == 0 && repair.1.contains("rebuilt the database"), "\(what): \(repair.1)\(repair.2)")
        #expect(try e.views() == before, "\(what): the store reads differently after the rebuild")
        #expect(try FileManager.default.contentsOfDirectory(atPath: e.root + "/layers").sorted() == layerDirs, "\(what): a layer directory moved")
        let broken = (try? FileManager.default.contentsOfDirectory(atPath: e.root + "/broken")) ?? []
        #expect(broken.allSatisfy { $0.hasPrefix("strata.db.") }, "\(what): \(broken)")
        #expect(try e.strata(["check"]).0 == 0)
        // And the store works on: gc frees nothing that is used, a container starts.
        _ = try e.ok(["gc"])
        #expect(try e.views() == before)
        _ = try e.ok(["mount", "c1"])
        _ = try e.ok(["umount", "c1"])
    }

    /// A database rolled back to an older copy (behind images.json) is refused, and the
    /// rebuild brings back what was recorded after the copy.
    @Test func databaseBehindItsFiles() throws {
        let e = try IndexRebuildTests.populated(); defer { e.remove() }
        _ = try e.ok(["images"])
        let old = e.t.sub("old.db")
        #expect(try sh(["cp", e.root + "/strata.db", old]).0 == 0)  // whole: the WAL is checkpointed
        _ = try e.ok(["-q", "load", fixtures + "/oci-zstd", "--tag", "later:1"])
        _ = try e.ok(["tag", "mine:1", "mine:2"])
        let before = try e.views()
        for s in ["", "-wal", "-shm"] { unlink(e.root + "/strata.db" + s) }
        #expect(try sh(["cp", old, e.root + "/strata.db"]).0 == 0)
        let (rc, _, err) = try e.strata(["images"])
        #expect(rc == 74 && err.contains("behind"), "\(err)")
        #expect(try e.strata(["check", "--repair"]).0 == 0)
        #expect(try e.views() == before)
        #expect(try e.ok(["images"]).contains("later"))
    }

    /// strata.db alone is complete whenever no command runs: a copy of it without the WAL
    /// opens with everything.
    @Test func databaseFileAloneIsComplete() throws {
        let e = try IndexRebuildTests.populated(); defer { e.remove() }
        let before = try e.views()
        for s in ["-wal", "-shm"] { unlink(e.root + "/strata.db" + s) }
        #expect(try e.views() == before)
    }

    /// A store written before the index files existed gets them when it is next opened, and
    /// can then be rebuilt like any other.
    @Test func olderStoreGetsItsFiles() throws {
        let e = try IndexRebuildTests.populated(); defer { e.remove() }
        let before = try e.views()
        #expect(try sh(["sh", "-c", "rm -f \"$1\"/images.json \"$1\"/layers/*/layer.json \"$1\"/containers/*/container.json", "-", e.root]).0 == 0)
        try e.db("DELETE FROM meta WHERE key IN ('files', 'generation');")
        #expect(try e.views() == before)
        #expect(FileManager.default.fileExists(atPath: e.root + "/images.json"))
        for s in ["", "-wal", "-shm"] { unlink(e.root + "/strata.db" + s) }
        #expect(try e.strata(["check", "--repair"]).0 == 0)
        #expect(try e.views() == before)
    }

    /// A copy of a database from before the index files, put back over a store that has them,
    /// is refused before anything is swept.
    @Test func olderDatabaseBackOverNewerFiles() throws {
        let e = try IndexRebuildTests.populated(); defer { e.remove() }
        try e.db("DELETE FROM meta WHERE key IN ('files', 'generation');")
        let old = e.t.sub("old.db")
        #expect(try sh(["cp", e.root + "/strata.db", old]).0 == 0)
        #expect(try e.strata(["images"]).0 == 74, "a database that never recorded the files is not trusted over them")
        #expect(try sh(["cp", old, e.root + "/strata.db"]).0 == 0)
        let layers = try FileManager.default.contentsOfDirectory(atPath: e.root + "/layers").sorted()
        #expect(try e.strata(["gc"]).0 == 74)
        #expect(try FileManager.default.contentsOfDirectory(atPath: e.root + "/layers").sorted() == layers)
        #expect(try e.strata(["check", "--repair"]).0 == 0)
        #expect(try e.ok(["images"]).contains("mine"))
    }

    /// Plain `check` reports an unreadable database and changes nothing; what a rebuild cannot
    /// record (a damaged layer.json, and the container on it) is moved to orphans/, which gc
    /// leaves alone, and the rest comes back.
    @Test func whatCannotBeRecordedIsKept() throws {
        let e = try IndexRebuildTests.populated(); defer { e.remove() }
        // Image b's top layer (first of its lower dirs) and container c2 on it.
        let lower = try e.ok(["inspect", "example.com/strata/busybox:b", "-f", "{{json .GraphDriver}}"])
        let top = try #require(lower.split(separator: "\"").first { $0.hasPrefix(e.root + "/layers/") }?
            .split(separator: ":").first.map { String($0.dropLast("/diff".count)) })
        let c2 = try e.ok(["inspect", "c2", "-f", "{{.Id}}"]).trimmingCharacters(in: .whitespacesAndNewlines)
        let h = try #require(FileHandle(forUpdatingAtPath: e.root + "/strata.db"))
        h.write(Data(repeating: 0x5a, count: 100)); h.closeFile()
        for s in ["-wal", "-shm"] { unlink(e.root + "/strata.db" + s) }
        let listing = try sh(["sh", "-c", "cd \"$1\" && find . | sort", "-", e.root]).1
        let (rc, out, _) = try e.strata(["check"])
        #expect(rc == 1 && out.contains("strata check --repair"), "\(out)")
        #expect(try sh(["sh", "-c", "cd \"$1\" && find . | sort", "-", e.root]).1 == listing, "plain check changed the store")

        try Data("{not json".utf8).write(to: URL(fileURLWithPath: top + "/layer.json"))
        let (rrc, rout, rerr) = try e.strata(["check", "--repair"])
        #expect(rrc == 0, "\(rout)\(rerr)")
        #expect(rout.contains("orphans"), "\(rout)")
        _ = try e.ok(["gc"])
        let cacheID = String(top.split(separator: "/").last ?? "")
        #expect(FileManager.default.fileExists(atPath: e.root + "/orphans/layers/" + cacheID + "/diff"))
        #expect(FileManager.default.fileExists(atPath: e.root + "/orphans/containers/" + c2))
        let images = try e.ok(["images"])
        #expect(images.contains("mine") && !images.contains(" b "), "\(images)")
        #expect(try e.ok(["ps", "-a"]).contains("c1"))
        _ = try? sh(["umount", "-l", e.root + "/orphans/containers/" + c2 + "/merged"])
    }
}
