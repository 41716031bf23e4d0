import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataEngine
@testable import StrataStore
@testable import StrataSystem

/// Several strata processes on one store, and processes killed at any moment.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct ConcurrencyTests {
    let binary = strataBinary

    /// Two loads of images that share layers, at the same time: both succeed, each layer once.
    @Test func concurrentLoadsShareLayers() throws {
        for round in 0..<6 {
            let t = TempDir(); defer { t.remove() }
            let root = t.sub("store")
            let a = try spawn([binary, "--root", root, "load", fixtures + "/oci-gzip"], stderr: t.sub("a.err"))
            let b = try spawn([binary, "--root", root, "load", fixtures + "/docker-shared-b.tar"], stderr: t.sub("b.err"))
            let c = try spawn([binary, "--root", root, "load", fixtures + "/docker-legacy.tar"], stderr: t.sub("c.err"))
            let codes = [reap(a), reap(b), reap(c)]
            #expect(codes == [0, 0, 0], "round \(round): \(codes) \(["a", "b", "c"].map { readString(t.sub($0 + ".err")) ?? "" })")
            let store = try Store(root: root)
            #expect(try store.layers().count == 4)
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/layers").count == 4)
            #expect(try store.images().count == 2)
            #expect(try store.check().isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/tmp").isEmpty)
        }
    }

    /// rmi and gc racing loads never remove a layer a load is about to reference.
    @Test func rmiAndGcRacingLoads() throws {
        for _ in 0..<4 {
            let t = TempDir(); defer { t.remove() }
            let root = t.sub("store")
            let store = try Store(root: root)
            _ = try store.load(path: fixtures + "/oci-gzip", options: LoadOptions())
            let load = try spawn([binary, "--root", root, "load", fixtures + "/docker-shared-b.tar"])
            let rmi = try spawn([binary, "--root", root, "rmi", "example.com/strata/busybox:gzip"])
            let gc = try spawn([binary, "--root", root, "gc"])
            #expect(reap(load) == 0)
            _ = reap(rmi)
            _ = reap(gc)
            let after = try Store(root: root)
            #expect(try after.check().isEmpty)
            let b = try after.resolveImage("strata/busybox:b")
            #expect(try after.imageLayers(b).count == 3)
        }
    }

    /// kill -9 of a load at a dozen moments: the next command works, check is clean, the image
    /// is fully there or absent, and loading again succeeds with nothing left in tmp/.
    @Test func killedLoadLeavesARepairableStore() throws {
        let t = TempDir(); defer { t.remove() }
        let big = t.sub("big")
        try sh(["python3", repoRoot + "/fixtures/mkimages.py", "--big", big, "4", "12"])
        // How long an undisturbed load takes here.
        let t0 = Date()
        #expect(reap(try spawn([binary, "--root", t.sub("timing"), "load", big])) == 0)
        let full = Date().timeIntervalSince(t0)
        for i in 0..<12 {
            let root = t.sub("store\(i)")
            let pid = try spawn([binary, "--root", root, "load", big])
            usleep(useconds_t(full * Double(i) / 12 * 1_000_000))
            kill(pid, SIGKILL)
            _ = reap(pid)
            let store = try Store(root: root)
            #expect(try store.check().isEmpty, "kill \(i)")
            let images = try store.images()
            #expect(images.isEmpty || images[0].diffIDs.count == 4, "kill \(i)")
            #expect(try store.layers().count == images.count * 4, "kill \(i): layers without their image")
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/tmp").isEmpty, "kill \(i)")
            let known = Set(try store.allLayers().map(\.cacheID))
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: root + "/layers")) == known, "kill \(i)")
            _ = try store.load(path: big, options: LoadOptions())
            #expect(try store.images().count == 1 && store.check().isEmpty)
        }
    }
}
