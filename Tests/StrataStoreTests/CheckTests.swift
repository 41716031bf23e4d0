import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataEngine
@testable import StrataStore

/// `check` finds each kind of damage once, in one line that says what to do; `check --repair`
/// mends it so that the next load brings the image back; a second check is clean.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct CheckTests {
    /// A store with the two images of oci-shared (four layers, a shared base).
    struct Env: Sendable {
        let t = TempDir("strata-check")
        var root: String { t.sub("store") }
        func strata(_ args: [String]) throws -> (Int32, String, String) { try strataCLI(args, root: root) }
        init() throws {
            let (rc, _, err) = try strataCLI(["-q", "load", fixtures + "/oci-shared"], root: t.sub("store"))
            guard rc == 0 else { throw StrataError(.internalError, err) }
        }
        var store: Store { get throws { try Store(root: root) } }
        /// A layer's directory: the base (used by both images) or the top of image a.
        func layerDir(top: Bool) throws -> String {
            let s = try store
            let layers = try s.layers()
            let l = top ? layers.first { $0.images.count == 1 && $0.parent != nil }! : layers.first { $0.parent == nil }!
            return s.layerPath(try #require(try s.layer(l.chainID)))
        }
    }

    static let damages: [(String, @Sendable (Env) throws -> Void, String)] = [
        ("flip a byte", { e in
            let f = try e.layerDir(top: false) + "/bin/busybox"
            let h = try #require(FileHandle(forUpdatingAtPath: f)); h.seek(toFileOffset: 1000); h.write(Data([0x42])); h.closeFile()
        }, "rebuild to"),
        ("truncate a file", { e in let f = try e.layerDir(top: false) + "/bin/busybox"; #expect(truncate(f, 100) == 0) }, "shorter"),
        ("delete a file", { e in let f = try e.layerDir(top: false) + "/etc/passwd"; #expect(unlink(f) == 0) }, "missing"),
        ("delete an empty directory", { e in
            let d = try e.layerDir(top: false)
            let empty = try FileManager.default.subpathsOfDirectory(atPath: d).first {
                var isDir: ObjCBool = false
                return FileManager.default.fileExists(atPath: d + "/" + $0, isDirectory: &isDir) && isDir.boolValue
                    && ((try? FileManager.default.contentsOfDirectory(atPath: d + "/" + $0)) ?? ["x"]).isEmpty
            }
            let victim = d + "/" + (try #require(empty))
            #expect(rmdir(victim) == 0)
        }, "is missing"),
        ("add a file", { e in try Data("x".utf8).write(to: URL(fileURLWithPath: try e.layerDir(top: true) + "/added")) }, "added on disk"),
        ("remove a diff directory", { e in try FileManager.default.removeItem(atPath: try e.layerDir(top: true)) }, "is gone"),
        ("remove a blob", { e in
            let blobs = try FileManager.default.contentsOfDirectory(atPath: e.root + "/blobs/sha256")
            let a = try e.strata(["images", "--json", "--no-trunc"]).1
            let config = try #require(blobs.first { a.contains($0) })
            try FileManager.default.removeItem(atPath: e.root + "/blobs/sha256/" + config)
        }, "blob"),
        ("corrupt a blob", { e in
            let blobs = try FileManager.default.contentsOfDirectory(atPath: e.root + "/blobs/sha256")
            try Data("{}".utf8).write(to: URL(fileURLWithPath: e.root + "/blobs/sha256/" + blobs[0]))
        }, "hash to"),
        ("remove a database row", { e in
            let top = try e.layerDir(top: true)
            let cache = URL(fileURLWithPath: top).deletingLastPathComponent().lastPathComponent
            try sh(["python3", "-c", "import sqlite3; c = sqlite3.connect('\(e.root)/strata.db'); c.execute(\"delete from layers where cache_id = '\(cache)'\"); c.commit()"])
        }, "no layer in the database names it"),
        ("leave a stray layer directory", { e in
            try FileManager.default.createDirectory(atPath: e.root + "/layers/stray/diff", withIntermediateDirectories: true)
        }, "layers/stray"),
    ]

    @Test func cleanStoreIsClean() throws {
        let e = try Env(); defer { e.t.remove() }
        let (rc, out, err) = try e.strata(["check"])
        #expect(rc == 0 && out == "store is consistent: checked 4 layers, 2 images, 4 blobs, 0 containers, 0 volumes\n" && err.isEmpty, "\(out) \(err)")
        let (_, verbose, _) = try e.strata(["check", "--verbose"])
        #expect(verbose.split(separator: "\n").filter { $0.hasSuffix(": ok") }.count == 4)
    }

    @Test(arguments: 0..<damages.count) func damageIsFoundAndRepaired(_ i: Int) throws {
        let (name, damage, expected) = CheckTests.damages[i]
        let e = try Env(); defer { e.t.remove() }
        try damage(e)
        let (rc, out, err) = try e.strata(["check"])
        let lines = out.split(separator: "\n").map(String.init)
        #expect(rc == 1 && err.isEmpty, "\(name): \(rc) \(err)")
        #expect(lines.contains { $0.hasPrefix("problem: ") && $0.contains(expected) }, "\(name): \(out)")
        #expect(!lines.contains { $0.hasSuffix(": ok") }, "\(name): ok lines without --verbose")
        #expect(lines.last?.contains("problem") == true, "\(name): a summary line: \(out)")
        // Each problem named once, with what to do, never "run `strata check`" from inside check.
        #expect(lines.filter { $0.hasPrefix("problem: ") }.allSatisfy { !$0.contains("run `strata check`") && $0.contains("`strata ") }, "\(out)")
        let (jrc, json, _) = try e.strata(["check", "--json"])
        let doc = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect(jrc == 1 && ((doc?["problems"] as? [[String: Any]])?.isEmpty == false), "\(json)")

        let (rrc, rout, rerr) = try e.strata(["check", "--repair"])
        #expect(rrc == 0 && rout.contains("repaired: ") && rout.hasSuffix("store is consistent: checked " + (rout.components(separatedBy: "checked ").last ?? "")), "\(name): \(rout) \(rerr)")
        #expect(try e.strata(["check"]).0 == 0, "\(name): second check")
        // The next load brings everything back, and the store is whole again.
        let (lrc, _, lerr) = try e.strata(["-q", "load", fixtures + "/oci-shared"])
        #expect(lrc == 0, "\(name): \(lerr)")
        let (crc, cout, _) = try e.strata(["check"])
        #expect(crc == 0 && cout.contains("4 layers, 2 images, 4 blobs"), "\(name): \(cout)")
        _ = try e.strata(["gc"])
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: e.root + "/broken")) ?? []).isEmpty, "gc empties broken/")
    }

    /// A container on a broken layer: reported and kept by --repair, removed with --force.
    @Test func containersOnBrokenLayers() throws {
        let e = try Env(); defer { e.t.remove() }
        #expect(try e.strata(["create", "--name", "user", "example.com/strata/busybox:a"]).0 == 0)
        try Data("x".utf8).write(to: URL(fileURLWithPath: try e.layerDir(top: true) + "/added"))
        let (_, out, _) = try e.strata(["check", "--repair"])
        #expect(out.contains("left: image") && out.contains("user"), "\(out)")
        #expect(try e.strata(["ps", "-a"]).1.contains("user"))
        let (frc, fout, _) = try e.strata(["check", "--repair", "--force"])
        #expect(fout.contains("removed container user"), "\(fout)")
        let after = try e.strata(["ps", "-a"]).1
        #expect(frc == 0 && !after.contains("user"))
        #expect(try e.strata(["-q", "load", fixtures + "/oci-shared"]).0 == 0)
        #expect(try e.strata(["check"]).0 == 0)
    }

    /// A layer whose row is there but whose files are gone is unpacked again by load, not "exists".
    @Test func loadRestoresALayerWithoutFiles() throws {
        let e = try Env(); defer { e.t.remove() }
        let top = try e.layerDir(top: true)
        try FileManager.default.removeItem(atPath: top)
        let (rc, _, err) = try e.strata(["load", fixtures + "/oci-shared"])
        #expect(rc == 0 && err.contains("unpacked"), "\(err)")
        #expect(try e.strata(["check"]).0 == 0)
    }
}
