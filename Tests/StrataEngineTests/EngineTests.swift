import Foundation
import StrataTestSupport
import Testing
import StrataEngine

/// The README's library example, as it is written there (part of `RunTests`, so that its
/// container's cgroups never overlap another run's checks).
extension RunTests {
    @Test func libraryExample() throws {
        let t = TempDir("strata-engine"); defer { t.remove() }
        let engine = try Engine(root: t.sub("store"))
        let images = try engine.store.load(path: fixtures + "/oci-gzip", options: LoadOptions())
        let id = try engine.store.createContainer(image: images[0].id.string, name: "demo")
        let rootfs = try engine.store.mountContainer(id)
        #expect(FileManager.default.fileExists(atPath: rootfs + "/bin/busybox"))
        try Data("x".utf8).write(to: URL(fileURLWithPath: rootfs + "/new"))
        #expect(try engine.store.diff(id).map(\.path).contains("/new"))
        try engine.store.unmountContainer(id)
        var options = Engine.RunOptions()
        options.remove = true
        #expect(try engine.run(image: RunTests.image, overrides: RunOverrides(command: ["true"]), options: options) == 0)
        #expect(try engine.run(image: RunTests.image, overrides: RunOverrides(command: ["sh", "-c", "exit 4"]), options: options) == 4)
        try engine.removeContainer("demo", force: true)
    }
}
