import Foundation
import StrataCore
import StrataStore
import StrataSystem
import StrataTestSupport
import Testing

/// The metadata repository on its own: records go in and come back as they were, the
/// repository's rules hold, times survive as RFC 3339 text. No root needed (vfs store).
@Suite struct MetadataTests {
    private func layer(_ n: UInt8, parent: ChainID?, at time: Date) -> LayerRecord {
        let diffID = DiffID(Digest.of([n]))
        let chain = parent.map { _ in ChainID.chain([DiffID(Digest.of([n - 1])), diffID]).last! } ?? ChainID.chain([diffID])[0]
        return LayerRecord(chainID: chain, diffID: diffID, parent: parent, cacheID: "cache\(n)", size: Int64(n) * 10,
                           tarSize: Int64(n) * 20, blobDigest: Digest.of([n, n]).string, compression: "gzip", opaqueRoot: n == 2,
                           journal: n == 2 ? .raw : .exact, journalNote: n == 2 ? "sparse entry" : nil, createdAt: time)
    }

    @Test func recordsComeBackAsTheyWent() throws {
        let t = TempDir()
        defer { t.remove() }
        let store = try Store(root: t.sub("store"), driver: "vfs")
        let time = Date(timeIntervalSince1970: 1_700_000_000)
        let bottom = layer(1, parent: nil, at: time)
        let top = layer(2, parent: bottom.chainID, at: time.addingTimeInterval(1))
        let imageID = Digest.of(Array("config".utf8))
        let image = ImageRecord(id: imageID, topLayer: top.chainID, manifestDigest: Digest.of(Array("manifest".utf8)),
                                created: "2024-05-01T10:00:00.123456789Z", os: "linux", architecture: "amd64", size: 30, loadedAt: time)
        let container = ContainerRecord(id: String(repeating: "ab", count: 32), name: "web", image: imageID, driver: "vfs",
                                        createdAt: time)
        try store.metadata.write { tx in
            try tx.insertLayer(bottom)
            try tx.insertLayer(top)
            try tx.insertImage(image, chain: [bottom.chainID, top.chainID])
            try tx.setTag("example.com/a:1", imageID: imageID.string)
            try tx.insertContainer(container)
            try tx.setPid(container.id, 4242)
        }
        try store.metadata.read { (tx: MetadataTransaction) throws -> Void in
            #expect(try tx.layer(bottom.chainID) == bottom)
            #expect(try tx.layer(top.chainID) == top)
            #expect(try tx.layers(ofImage: imageID) == [bottom, top])
            #expect(try tx.image(imageID) == image)
            #expect(try tx.tags(ofImage: imageID.string) == ["example.com/a:1"])
            #expect(try tx.imageID(tag: "example.com/a:1") == imageID.string)
            var running = container
            running.pid = 4242
            #expect(try tx.containers(matching: "web") == [running])
            #expect(try tx.containers(matching: "abab") == [running])
            #expect(try tx.containers(matching: "ab").isEmpty, "a prefix needs three characters")
            #expect(try tx.referencedBlobs() == [imageID.string, image.manifestDigest!.string])
        }
    }

    @Test func repositoryRules() throws {
        let t = TempDir()
        defer { t.remove() }
        let store = try Store(root: t.sub("store"), driver: "vfs")
        let bottom = layer(1, parent: nil, at: Date())
        let top = layer(2, parent: bottom.chainID, at: Date())
        try store.metadata.write { tx in
            try tx.insertLayer(bottom)
            try tx.insertLayer(top)
            // The first record of a layer wins: a second insert (another process's copy) is ignored.
            var other = top
            other.cacheID = "elsewhere"
            try tx.insertLayer(other)
        }
        #expect(try store.layer(top.chainID)?.cacheID == "cache2")
        // A parent stays while a child names it.
        #expect(try store.metadata.write { try $0.deleteLayerIfLeaf(bottom.chainID) } == false)
        #expect(try store.metadata.write { try $0.deleteLayerIfLeaf(top.chainID) && $0.deleteLayerIfLeaf(bottom.chainID) })
        // Link IDs are handed out once per layer, in order.
        try store.metadata.write { tx in try tx.insertLayer(bottom); try tx.insertLayer(top) }
        let links = try store.metadata.write { tx in
            [try tx.assignLinkID(bottom.chainID), try tx.assignLinkID(top.chainID), try tx.assignLinkID(bottom.chainID)]
        }
        #expect(links == [1, 2, 1])
        // A taken container name is refused with its own error, and nothing is recorded.
        let c = ContainerRecord(id: String(repeating: "1", count: 64), name: "dup", image: Digest.of([1]), driver: "vfs", createdAt: Date())
        try store.metadata.write { tx in
            try tx.insertImage(ImageRecord(id: c.image, topLayer: nil, manifestDigest: nil, created: nil, os: nil, architecture: nil,
                                           size: 0, loadedAt: Date()), chain: [])
            try tx.insertContainer(c)
        }
        var again = c
        again.id = String(repeating: "2", count: 64)
        #expect(throws: StrataError.self) { try store.metadata.write { try $0.insertContainer(again) } }
        #expect(try store.metadata.read { try $0.containerCount() } == 1)
        // Settings are recorded once.
        try store.metadata.write { tx in try tx.settle("k", "first"); try tx.settle("k", "second") }
        #expect(try store.metadata.read { try $0.setting("k") } == "first")
    }

    @Test func timestamps() {
        let d = Date(timeIntervalSince1970: 1_714_557_600)
        #expect(Timestamp.string(d) == "2024-05-01T10:00:00Z")
        #expect(Timestamp.date("2024-05-01T10:00:00Z") == d)
        #expect(Timestamp.date("2024-05-01T12:00:00+02:00") == d)
        #expect(Timestamp.date("2024-05-01T05:30:00-04:30") == d)
        #expect(Timestamp.date("2024-05-01T10:00:00.5Z") == d.addingTimeInterval(0.5))
        #expect(Timestamp.string(Timestamp.date("1999-12-31T23:59:59Z")!) == "1999-12-31T23:59:59Z")
        for bad in ["", "2024-05-01", "2024-13-01T10:00:00Z", "2024-05-01T10:00:00", "2024-05-01T10:00:00Zjunk", "2024-05-01T10:00:00+0200"] {
            #expect(Timestamp.date(bad) == nil, "\(bad)")
        }
    }
}
