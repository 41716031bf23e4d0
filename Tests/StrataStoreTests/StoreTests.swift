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

@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct StoreLoadTests {
    static let formats = ["oci-none", "oci-gzip", "oci-zstd", "oci-archive.tar", "oci-archive-zstd.tar",
                          "docker-legacy.tar", "docker-skopeo.tar", "docker-25.tar"]

    @Test(arguments: formats)
    func everyFormatGivesTheSameImage(_ name: String) throws {
        let t = TempDir(); defer { t.remove() }
        let expected = try Expected.load()
        let store = try Store(root: t.path)
        let loaded = try store.load(path: fixtures + "/" + name, options: LoadOptions())
        #expect(loaded.count == 1)
        #expect(loaded[0].id.string == expected.image_a.id)
        #expect(loaded[0].layersUnpacked == 3)
        let images = try store.images()
        #expect(images.map(\.id.string) == [expected.image_a.id])
        #expect(images[0].diffIDs.map(\.description) == expected.image_a.diff_ids)
        let layers = try store.layers()
        #expect(layers.count == 3)
        #expect(layers.allSatisfy { $0.record.journal == .exact && $0.images.map(\.string) == [expected.image_a.id] })
        let chain = ChainID.chain(try expected.image_a.diff_ids.map(DiffID.init(parsing:)))
        #expect(Set(layers.map(\.chainID)) == Set(chain))
        let byChain = Dictionary(uniqueKeysWithValues: layers.map { ($0.chainID, $0) })
        #expect(byChain[chain[0]]?.parent == nil)
        #expect(byChain[chain[2]]?.parent == chain[1])
        #expect(try store.resolveImage(String(expected.image_a.id.dropFirst(7).prefix(8))).string == expected.image_a.id)
        // Nothing left in tmp.
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.sub("tmp")).isEmpty)
    }

    @Test func tagsFromEachFormat() throws {
        let t = TempDir(); defer { t.remove() }
        let store = try Store(root: t.path)
        #expect(try store.load(path: fixtures + "/docker-legacy.tar", options: LoadOptions())[0].tags == ["strata/busybox:legacy"])
        #expect(try store.load(path: fixtures + "/oci-gzip", options: LoadOptions())[0].tags == ["example.com/strata/busybox:gzip"])
        var o = LoadOptions()
        o.extraTags = ["mine"]
        #expect(try store.load(path: fixtures + "/docker-25.tar", options: o)[0].tags == ["mine:latest", "strata/busybox:v25"])
        #expect(try store.resolveImage("mine").string == (try Expected.load()).image_a.id)
    }

    /// An OCI ref.name that is only a tag leaves the image untagged.
    @Test func bareRefNameLeavesImageUntagged() throws {
        let t = TempDir(); defer { t.remove() }
        let ed = try OCIEditor(copying: fixtures + "/oci-none", to: t.sub("layout"))
        var idx = try ed.index
        var list = idx["manifests"] as! [[String: Any]]
        list[0]["annotations"] = ["org.opencontainers.image.ref.name": "v1.0"]
        idx["manifests"] = list
        try JSONSerialization.data(withJSONObject: idx).write(to: URL(fileURLWithPath: ed.path + "/index.json"))
        let store = try Store(root: t.sub("store"))
        let loaded = try store.load(path: ed.path, options: LoadOptions())
        #expect(loaded[0].tags.isEmpty)
        #expect(try store.images()[0].tags.isEmpty)
    }

    /// Two images sharing base layers keep those layers once; the second load says "exists".
    @Test func sharedLayersAreStoredOnce() throws {
        let t = TempDir(); defer { t.remove() }
        let expected = try Expected.load()
        let store = try Store(root: t.path)
        let both = try store.load(path: fixtures + "/oci-shared", options: LoadOptions())
        #expect(Set(both.map(\.id.string)) == [expected.image_a.id, expected.image_b.id])
        #expect(try store.layers().count == 4)
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.sub("layers")).count == 4)
        let again = try store.load(path: fixtures + "/docker-shared-b.tar", options: LoadOptions())
        #expect(again[0].layersUnpacked == 0 && again[0].layersExisting == 3)
        let base = try store.layers().first { $0.parent == nil }!
        #expect(base.images.count == 2)
    }

    /// A nested multi-platform index: the host platform by default, another with --platform.
    @Test func platformSelection() throws {
        let t = TempDir(); defer { t.remove() }
        let expected = try Expected.load()
        let store = try Store(root: t.path)
        let host = try store.load(path: fixtures + "/oci-multiplatform", options: LoadOptions())
        #expect(host.map(\.id.string) == [expected.image_a.id])
        var o = LoadOptions()
        o.platform = try Platform(parsing: expected.other_platform.platform)
        let other = try store.load(path: fixtures + "/oci-multiplatform", options: o)
        #expect(other.map(\.id.string) == [expected.other_platform.id])
        #expect(try store.layers().count == 3)
        o.platform = try Platform(parsing: "linux/s390x")
        #expect { try store.load(path: fixtures + "/oci-multiplatform", options: o) } throws: {
            ($0 as? StrataError)?.code == .notFound
        }
    }

    /// Decision 1, cross-layer form: a lower layer's symlink to outside does not redirect an
    /// upper layer's entries: each layer unpacks into its own directory, where the name is a
    /// real directory that hides the symlink in the merged view.
    @Test func crossLayerSymlinkDoesNotRedirect() throws {
        let t = TempDir(); defer { t.remove() }
        let outside = TempDir("strata-canary"); defer { outside.remove() }
        var lower = TarBuilder()
        lower.symlink("lib", to: outside.path)
        var upper = TarBuilder()
        upper.file("lib/canary", "pwned")
        let ed = try OCIEditor(copying: fixtures + "/oci-none", to: t.sub("layout"))
        try ed.setLayer(1, lower.archive)
        try ed.setLayer(2, upper.archive)
        var c = try ed.config
        var rootfs = c["rootfs"] as! [String: Any]
        var ids = rootfs["diff_ids"] as! [String]
        ids[1] = Digest.of(lower.archive).string
        ids[2] = Digest.of(upper.archive).string
        rootfs["diff_ids"] = ids
        c["rootfs"] = rootfs
        try ed.setConfig(c)
        let store = try Store(root: t.sub("store"))
        _ = try store.load(path: ed.path, options: LoadOptions())
        #expect(!exists(outside.sub("canary")))
        let layerDirs = try FileManager.default.contentsOfDirectory(atPath: t.sub("store/layers"))
        let holder = layerDirs.filter { exists(t.sub("store/layers/\($0)/diff/lib/canary")) }
        #expect(holder.count == 1)
        #expect(try #require(lstatPath(t.sub("store/layers/\(holder[0])/diff/lib"))).st_mode & S_IFMT == S_IFDIR)
    }

    @Test func importRootfs() throws {
        let t = TempDir(); defer { t.remove() }
        let expected = try Expected.load()
        let store = try Store(root: t.path)
        let image = try store.importRootfs(path: fixtures + "/rootfs.tar.gz", tag: "example/rootfs",
                                           changes: ["CMD [\"/bin/sh\"]", "ENV A=1 B=\"two words\"", "WORKDIR /tmp"],
                                           message: "imported", options: LoadOptions())
        #expect(image.tags == ["example/rootfs:latest"])
        let summary = try store.images()[0]
        #expect(summary.diffIDs.map(\.description) == [expected.rootfs_diff_id])
        let config = try JSONDocument.decode(ImageConfig.self, from: try store.blob(image.id), what: "config")
        #expect(config.config?.Cmd == ["/bin/sh"])
        #expect(config.config?.Env == ["A=1", "B=two words"])
        #expect(config.config?.WorkingDir == "/tmp")
        #expect(config.os == "linux")
    }

    /// A killed run's staging and unrecorded layer directories are swept on the next start.
    @Test func sweepRemovesLeftovers() throws {
        let t = TempDir(); defer { t.remove() }
        _ = try Store(root: t.path)
        mkdir(t.sub("tmp/stage-left"), 0o700)
        mkdir(t.sub("layers/deadbeef"), 0o700)
        mkdir(t.sub("layers/deadbeef/diff"), 0o700)
        _ = try Store(root: t.path)
        #expect(!exists(t.sub("tmp/stage-left")))
        #expect(!exists(t.sub("layers/deadbeef")))
    }
}

/// Bad input: one clear error naming the archive and the entry, layer or digest; the store is
/// left exactly as it was.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct BadInputTests {
    typealias Breaker = @Sendable (OCIEditor) throws -> Void

    static let cases: [(String, StrataError.Code, String, Breaker)] = [
        ("layer blob digest mismatch", .digestMismatch, "digest mismatch: the blob hashes to", { ed in
            let p = ed.blobPath(try ed.layerDigest(1))
            var b = Array(try Data(contentsOf: URL(fileURLWithPath: p)))
            b[600] ^= 0xff
            try Data(b).write(to: URL(fileURLWithPath: p))
        }),
        ("layer size mismatch", .sizeMismatch, "the manifest says", { ed in
            var m = try ed.manifest
            var layers = m["layers"] as! [[String: Any]]
            layers[1]["size"] = (layers[1]["size"] as! Int) + 1
            m["layers"] = layers
            try ed.setManifest(m)
        }),
        ("wrong diffID", .digestMismatch, "diffID", { ed in
            var c = try ed.config
            var rootfs = c["rootfs"] as! [String: Any]
            var ids = rootfs["diff_ids"] as! [String]
            ids[2] = "sha256:" + String(repeating: "0", count: 64)
            rootfs["diff_ids"] = ids
            c["rootfs"] = rootfs
            try ed.setConfig(c)
        }),
        ("missing blob", .notFound, "is missing", { ed in
            try FileManager.default.removeItem(atPath: ed.blobPath(try ed.layerDigest(2)))
        }),
        ("invalid JSON index", .invalidFormat, "index.json", { ed in
            try Data("{\"manifests\": [".utf8).write(to: URL(fileURLWithPath: ed.path + "/index.json"))
        }),
        ("invalid JSON config", .invalidFormat, "config", { ed in
            let d = try ed.writeBlob(Array("{\"rootfs\": nope}".utf8))
            var m = try ed.manifest
            m["config"] = ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": 16]
            try ed.setManifest(m)
        }),
        ("config over the JSON cap", .tooLarge, "limit", { ed in
            var c = try ed.config
            c["padding"] = String(repeating: "x", count: 9 << 20)
            try ed.setConfig(c)
        }),
        ("invalid digest in manifest", .invalidDigest, "invalid digest", { ed in
            var m = try ed.manifest
            var layers = m["layers"] as! [[String: Any]]
            layers[0]["digest"] = "sha256:../../../../etc/passwd"
            m["layers"] = layers
            try ed.setManifest(m)
        }),
        ("negative size", .invalidFormat, "negative size", { ed in
            var m = try ed.manifest
            var layers = m["layers"] as! [[String: Any]]
            layers[0]["size"] = -5
            m["layers"] = layers
            try ed.setManifest(m)
        }),
        ("truncated layer tar", .invalidFormat, "truncated", { ed in
            // Layer 3 is not in the store yet: it is unpacked, and the tar reader sees the cut.
            var b = TarBuilder()
            b.file("big", String(repeating: "x", count: 5000))
            try ed.setLayer(2, Array(b.bytes.prefix(2048)))
        }),
        ("layer already stored but its bytes differ", .digestMismatch, "diffID", { ed in
            let p = ed.blobPath(try ed.layerDigest(0))
            let b = Array(try Data(contentsOf: URL(fileURLWithPath: p)))
            try ed.setLayer(0, Array(b.prefix(b.count / 2)))
        }),
        ("truncated gzip layer", .invalidFormat, "layer", { ed in
            let p = ed.blobPath(try ed.layerDigest(0))
            let gz = try gzip(Array(try Data(contentsOf: URL(fileURLWithPath: p))))
            try ed.setLayer(0, Array(gz.prefix(gz.count / 2)))
        }),
        ("unsafe entry in a layer", .unsafeEntry, "../escape", { ed in
            var b = TarBuilder()
            b.file("ok", "fine")
            b.file("../escape", "x")
            try ed.setLayer(2, b.archive)
        }),
        ("0/0 character device", .unsafeEntry, "dev/wh", { ed in
            var b = TarBuilder()
            b.device("dev/wh", major: 0, minor: 0)
            try ed.setLayer(2, b.archive)
        }),
    ]

    @Test(arguments: cases.map(\.0))
    func refusedAndStoreUnchanged(_ name: String) throws {
        let (_, code, fragment, breaker) = BadInputTests.cases.first { $0.0 == name }!
        let t = TempDir(); defer { t.remove() }
        let store = try Store(root: t.sub("store"))
        _ = try store.load(path: fixtures + "/docker-shared-b.tar", options: LoadOptions())
        let before = try snapshot(store)
        let ed = try OCIEditor(copying: fixtures + "/oci-none", to: t.sub("bad"))
        try breaker(ed)
        #expect {
            try store.load(path: ed.path, options: LoadOptions())
        } throws: { error in
            guard let e = error as? StrataError else { Issue.record("not a StrataError: \(error)"); return false }
            let ok = e.code == code && e.description.contains(fragment) && e.description.contains(ed.path)
            if !ok { Issue.record("got \(e.code): \(e)") }
            return ok
        }
        #expect(try snapshot(store) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.sub("store/tmp")).isEmpty)
    }

    @Test func layerOverMaxSizeIsRefused() throws {
        let t = TempDir(); defer { t.remove() }
        let store = try Store(root: t.sub("store"))
        let before = try snapshot(store)
        var o = LoadOptions()
        o.maxLayerSize = 1 << 20
        #expect { try store.load(path: fixtures + "/oci-gzip", options: o) } throws: { ($0 as? StrataError)?.code == .tooLarge }
        #expect(try snapshot(store) == before)
    }

    @Test func dockerArchiveLayerPathOutside() throws {
        let t = TempDir(); defer { t.remove() }
        let work = t.sub("d")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try sh(["tar", "-xf", fixtures + "/docker-legacy.tar", "-C", work])
        var m = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: work + "/manifest.json"))) as! [[String: Any]]
        var layers = m[0]["Layers"] as! [String]
        layers[0] = "../../etc/passwd"
        m[0]["Layers"] = layers
        try JSONSerialization.data(withJSONObject: m).write(to: URL(fileURLWithPath: work + "/manifest.json"))
        try sh(["tar", "-cf", t.sub("bad.tar"), "-C", work, "."])
        let store = try Store(root: t.sub("store"))
        #expect { try store.load(path: t.sub("bad.tar"), options: LoadOptions()) } throws: {
            ($0 as? StrataError)?.description.contains("outside the archive") ?? false
        }
        #expect(try store.images().isEmpty)
    }
}
