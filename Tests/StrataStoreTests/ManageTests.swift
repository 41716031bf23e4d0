import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataEngine
@testable import StrataStore

/// history, inspect, tag, rmi, gc, check: the store's own view of what it holds.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct ManageTests {
    func loaded(_ t: TempDir, _ names: [String] = ["oci-shared"]) throws -> Store {
        let store = try Store(root: t.sub("store"))
        for n in names { _ = try store.load(path: fixtures + "/" + n, options: LoadOptions()) }
        return store
    }

    @Test func historyPairsEntriesWithLayers() throws {
        let t = TempDir(); defer { t.remove() }
        let store = try loaded(t)
        let expected = try Expected.load()
        let h = try store.history(try store.resolveImage("example.com/strata/busybox:a"))
        #expect(h.count == 4)
        #expect(h.filter(\.emptyLayer).count == 1 && h[1].emptyLayer && h[1].chainID == nil)
        #expect(h.compactMap(\.diffID) == expected.image_a.diff_ids)
        #expect(h[0].createdBy == "ADD busybox /" && h[0].size > 1_000_000)
    }

    @Test func layerChangesShowAddsChangesDeletesAndWaste() throws {
        let t = TempDir(); defer { t.remove() }
        let store = try loaded(t)
        let expected = try Expected.load()
        let chain = ChainID.chain(try expected.image_a.diff_ids.map(DiffID.init(parsing:)))
        let top = try #require(try store.layer(chain[2]))
        let changes = Dictionary(uniqueKeysWithValues: try store.layerChanges(top).map { ($0.path, $0) })
        #expect(changes["/var/olddir"]?.kind == "D" && changes["/var/olddir"]?.hidden == 4)
        #expect(changes["/opt/replaced"]?.kind == "C" && changes["/opt/replaced"]?.hidden == 4)
        #expect(changes["/opt/replaced/z"]?.kind == "A")
        #expect(changes["/etc/modeonly"]?.kind == "C" && changes["/etc/modeonly"]?.hidden == 21)
        #expect(changes["/etc/variant"]?.kind == "A" && changes["/etc/variant"]?.size == 10)
        let middle = try #require(try store.layer(chain[1]))
        let m = Dictionary(uniqueKeysWithValues: try store.layerChanges(middle).map { ($0.path, $0) })
        #expect(m["/etc/motd"]?.kind == "D" && m["/etc/motd"]?.hidden == 26)
        #expect(m["/usr/share/strata/hello.txt"]?.kind == "A")
    }

    @Test func rmiUntagsThenDeletesAndFreesLayers() throws {
        let t = TempDir(); defer { t.remove() }
        let store = try loaded(t)
        try store.tag("example.com/strata/busybox:b", "other")
        // A tag that is not the last only untags.
        var r = try store.removeImages(["other"], force: false)
        #expect(r.untagged == ["other:latest"] && r.deletedImages.isEmpty)
        // By ID with several tags: refused without -f.
        try store.tag("example.com/strata/busybox:b", "other")
        let b = try store.resolveImage("example.com/strata/busybox:b")
        #expect { try store.removeImages([String(b.hex.prefix(10))], force: false) } throws: { ($0 as? StrataError)?.code == .conflict }
        r = try store.removeImages([String(b.hex.prefix(10))], force: true)
        #expect(r.deletedImages == [b.string])
        // Only the layer b alone used is freed, at once, directory included.
        #expect(r.deletedLayers.count == 1)
        #expect(try store.layers().count == 3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.sub("store/layers")).count == 3)
        #expect(!exists(t.sub("store/blobs/sha256/" + b.hex)))
        r = try store.removeImages(["example.com/strata/busybox:a"], force: false)
        #expect(r.deletedLayers.count == 3)
        #expect(try store.layers().isEmpty && store.images().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.sub("store/layers")).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.sub("store/blobs/sha256")).isEmpty)
    }

    @Test func gcRemovesOrphans() throws {
        let t = TempDir(); defer { t.remove() }
        let store = try loaded(t)
        try Data("orphan".utf8).write(to: URL(fileURLWithPath: t.sub("store/blobs/sha256/" + String(repeating: "0", count: 64))))
        let r = try store.garbageCollect()
        #expect(r.deletedBlobs == ["sha256:" + String(repeating: "0", count: 64)])
        #expect(try store.images().count == 2)
        #expect(try store.check().isEmpty)
    }

    /// check rebuilds every tar: a file changed on disk is named, with its layer.
    @Test func checkFindsTamperedLayer() throws {
        let t = TempDir(); defer { t.remove() }
        let store = try loaded(t)
        #expect(try store.check().isEmpty)
        let expected = try Expected.load()
        let base = try #require(try store.layer(ChainID(parsing: expected.image_a.diff_ids[0])))
        try Data("changed!\n".utf8).write(to: URL(fileURLWithPath: store.layerPath(base) + "/etc/passwd"))
        let problems = try store.check()
        #expect(problems.count == 1)
        #expect(problems.first?.subject.hasPrefix("layer \(base.chainID.digest.short)") == true)
        #expect(problems.first?.repair == .brokenLayer(chainID: base.chainID.description, cacheID: base.cacheID))
        // save refuses to write a layer that no longer matches its diffID.
        #expect { try store.save(["example.com/strata/busybox:a"], to: t.sub("x.tar"), options: SaveOptions()) } throws: {
            ($0 as? StrataError)?.description.contains(base.chainID.description) ?? false
        }
        #expect(!exists(t.sub("x.tar")))
    }

    /// A layer whose journal cannot be exact (a duplicate entry overwrote a file) keeps its raw
    /// tar; check, inspect and save still give the original bytes.
    @Test func rawTarFallback() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.file("dup", "first")
        b.file("dup", "second")
        let tar = b.archive
        try Data(tar).write(to: URL(fileURLWithPath: t.sub("dup.tar")))
        let store = try Store(root: t.sub("store"))
        let image = try store.importRootfs(path: t.sub("dup.tar"), tag: "dup", changes: [], message: nil, options: LoadOptions())
        let layer = try #require(try store.allLayers().first)
        #expect(layer.journal == .raw && layer.journalNote?.contains("dup") == true)
        #expect(try store.check().isEmpty)
        var rebuilt: [UInt8] = []
        try store.streamLayerTar(layer) { rebuilt += $0 }
        #expect(rebuilt == tar)
        #expect(try store.inspectLayer(layer).record.journal == .raw)
        var o = SaveOptions()
        o.format = .ociDir
        try store.save(["dup"], to: t.sub("out"), options: o)
        let fresh = try Store(root: t.sub("fresh"))
        #expect(try fresh.load(path: t.sub("out"), options: LoadOptions()).first?.id == image.id)
    }

    /// Tars from other writers rebuild exactly: Go's archive/tar (umoci repack) and bsdtar.
    @Test func goAndBsdtarLayersRebuildExactly() throws {
        let t = TempDir(); defer { t.remove() }
        // umoci repack writes a new layer with Go's archive/tar.
        try sh(["skopeo", "--insecure-policy", "copy", "-q", "oci:\(fixtures)/oci-gzip:example.com/strata/busybox:gzip", "oci:\(t.path)/l:x"])
        try sh(["umoci", "unpack", "--image", "\(t.path)/l:x", t.sub("b")])
        try Data("added by umoci\n".utf8).write(to: URL(fileURLWithPath: t.sub("b/rootfs/etc/umoci.txt")))
        try FileManager.default.removeItem(atPath: t.sub("b/rootfs/etc/group"))
        try FileManager.default.createDirectory(atPath: t.sub("b/rootfs/usr/share/strata/ü-dir"), withIntermediateDirectories: true)
        let (rc, _, err) = try sh(["umoci", "repack", "--image", "\(t.path)/l:y", t.sub("b")])
        #expect(rc == 0, "\(err)")
        let store = try Store(root: t.sub("store"))
        _ = try store.load(path: t.sub("l"), options: LoadOptions())
        #expect(try store.allLayers().allSatisfy { $0.journal == .exact })
        #expect(try store.check().isEmpty)
        #expect(try store.allLayers().count == 4)
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/bsdtar") {
            let (rc2, _, _) = try sh(["bsdtar", "-C", t.sub("b/rootfs"), "-cf", t.sub("bsd.tar"), "."])
            #expect(rc2 == 0)
            _ = try store.importRootfs(path: t.sub("bsd.tar"), tag: "bsd", changes: [], message: nil, options: LoadOptions())
            #expect(try store.allLayers().allSatisfy { $0.journal == .exact })
            #expect(try store.check().isEmpty)
        }
    }
}
