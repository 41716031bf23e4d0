import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataDrivers
@testable import StrataEngine
@testable import StrataStore

/// Chains deeper than overlayfs stacks (500 lower dirs): the bottom layers are flattened into
/// one cached directory, shared and collected; the merged tree is the one the vfs driver
/// (every layer applied in turn) makes.
@Suite(.serialized, .enabled(if: isRoot && overlayWorks, "needs root and overlayfs"))
struct DeepChainTests {
    /// Flattened counts: whole blocks of 256 from the bottom, leaving room for the flattened
    /// layer and an init layer within 500.
    @Test func flattenCounts() {
        #expect(Store.flattenCount(visible: 1) == 0)
        #expect(Store.flattenCount(visible: 499) == 0)
        #expect(Store.flattenCount(visible: 500) == 256)
        #expect(Store.flattenCount(visible: 754) == 256)
        #expect(Store.flattenCount(visible: 755) == 512)
        #expect(Store.flattenCount(visible: 1000) == 512)
        #expect(Store.flattenCount(visible: 2000) == 1536)
        for n in stride(from: 400, through: 5000, by: 7) {
            let p = Store.flattenCount(visible: n)
            #expect(n - p + (p > 0 ? 1 : 0) + 1 <= OverlayDriver.maxLowerLayers, "\(n) layers")
        }
    }

    /// `count` layers: the first with a directory, a hardlink pair and files the later ones
    /// delete or hide; each later one adds /n/fI; some delete, replace and make directories
    /// opaque on both sides of the flattened prefix (the bottom 256).
    static func deepLayers(_ count: Int) -> [[UInt8]] {
        var base = TarBuilder()
        base.dir("a/"); base.file("a/x", "x"); base.dir("keep/"); base.file("keep/old", "old"); base.file("gone", "gone")
        base.file("hl1", "pair"); base.hardlink("hl2", to: "hl1"); base.dir("n/", mode: 0o750, uid: 7, gid: 8)
        var layers = [base.bytes]
        for i in 1..<count {
            var t = TarBuilder()
            t.file("n/f\(i)", "\(i)\n", mode: 0o640, uid: i % 5)
            switch i {
            case 100: t.whiteout("gone")
            case 200: t.dir("a/"); t.opaque("a"); t.file("a/y", "y")
            case 300: t.file("n/f5", "five again")
            case 400: t.whiteout("n/f10"); t.whiteout("hl1")
            case 500: t.dir("keep/"); t.opaque("keep"); t.file("keep/new", "new")
            default: break
            }
            layers.append(t.bytes)
        }
        return layers
    }

    @Test func deepChainMountsLikeTheVfsCopy() throws {
        let t = TempDir(); defer { t.remove() }
        let layers = DeepChainTests.deepLayers(700)
        var top = TarBuilder()
        top.file("top", "top")
        try ImageLayout.write(t.sub("deep"), layers: layers, ref: "deep:700")
        try ImageLayout.write(t.sub("deeper"), layers: layers + [top.bytes], ref: "deep:701")

        let reference = try Store(root: t.sub("vfs"), driver: "vfs")
        _ = try reference.load(path: t.sub("deep"), options: LoadOptions())
        let r = try reference.createContainer(image: "deep:700", name: "ref")
        let expected = try TreeListing.list(try reference.mountContainer(r))
        #expect(expected["gone"] == nil && expected["a/x"] == nil && expected["a/y"] != nil && expected["n/f10"] == nil)
        #expect(expected["keep/old"] == nil && expected["hl2"] != nil && expected.count > 700)

        let store = try Store(root: t.sub("store"), driver: "overlay")
        _ = try store.load(path: t.sub("deep"), options: LoadOptions())
        _ = try store.load(path: t.sub("deeper"), options: LoadOptions())
        let c1 = try store.createContainer(image: "deep:700", name: "one")
        let merged = try store.mountContainer(c1)
        let d = TreeListing.diff(expected, try TreeListing.list(merged))
        #expect(d.isEmpty, "\(d.prefix(10))")
        let flat = try store.metadata.read { try $0.flattenedLayers() }
        #expect(flat.count == 1 && flat.first?.layerCount == 256)

        // A second container, and one of an image on top of the same chain, share it.
        let c2 = try store.createContainer(image: "deep:700", name: "two", initLayer: true)
        let c3 = try store.createContainer(image: "deep:701", name: "three")
        #expect(try TreeListing.list(try store.mountContainer(c3))["top"] != nil)
        #expect(try store.metadata.read { try $0.flattenedLayers() } == flat)

        // Changes commit as one new layer on the 700 (not a copy of the flattened ones).
        try Data("changed\n".utf8).write(to: URL(fileURLWithPath: merged + "/n/f600"))
        #expect(try store.diff("one").map { "\($0.kind) \($0.path)" } == ["C /n", "C /n/f600"])
        let committed = try store.commit("one", tag: "deep:committed", message: "", author: "", changes: [])
        #expect(try store.imageLayers(committed).count == 701)

        // gc keeps it while a container uses it; removes it with the last, and the store checks clean.
        #expect(try store.garbageCollect().deletedFlattened.isEmpty)
        for c in [c1, c2, c3] { try store.removeContainer(c, force: true) }
        let report = try store.garbageCollect()
        #expect(report.deletedFlattened == [flat[0].topLayer.description])
        #expect(!exists(store.flattenedPath(flat[0])) && !exists(t.sub("store/l/") + flat[0].link))
        #expect(try store.check().isEmpty)

        // Made again by the next container, as it was.
        let c4 = try store.createContainer(image: "deep:committed", name: "four")
        let again = try TreeListing.list(try store.mountContainer(c4))
        #expect(again["n/f600"] != nil && again.count == expected.count)
        try store.removeContainer(c4, force: true)
        try reference.removeContainer(r, force: true)
    }
}
