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

    /// The engine as a library program uses it, without the command line: a load, a run whose
    /// change is committed, the committed image run again, a detached run under a monitor the
    /// program names, and the run policy applied to a library caller too.
    @Test func engineAsALibrary() throws {
        let t = TempDir("strata-engine-lib"); defer { t.remove() }
        let root = t.sub("store")
        let store = try Store(root: root)
        let engine = Engine(store: store, monitor: .strata(strataBinary, root: root, driver: store.driverName))
        _ = try engine.store.load(path: fixtures + "/oci-gzip", options: LoadOptions())
        var options = Engine.RunOptions()
        options.name = "maker"
        let made = try engine.run(image: RunTests.image, overrides: RunOverrides(command: ["sh", "-c", "echo made > /etc/made-here"]),
                                  options: options)
        #expect(made == 0)
        #expect(try engine.store.diff("maker").map(\.path).contains("/etc/made-here"))
        let image = try engine.store.commit("maker", tag: "library:committed", message: nil, author: nil, changes: ["CMD [\"cat\", \"/etc/made-here\"]"])
        #expect(try engine.store.resolveImage("library:committed") == image)
        // The committed image carries the change and the new Cmd; its spec is in the container's folder.
        options.name = "reader"
        #expect(try engine.run(image: "library:committed", overrides: RunOverrides(command: ["sh", "-c", "test \"$(cat /etc/made-here)\" = made"]),
                               options: options) == 0)
        let spec = try #require(try engine.store.spec(try engine.store.container("reader").id))
        #expect(spec.process.args == ["sh", "-c", "test \"$(cat /etc/made-here)\" = made"])
        #expect(spec.linux.seccomp != nil && spec.process.noNewPrivileges != true)  // as Docker: off unless asked
        // Detached: the monitor is the strata binary this program named.
        options.name = "bg"
        let id = try engine.runDetached(image: "library:committed", overrides: RunOverrides(), options: options)
        #expect(try engine.wait(id) == 0)
        #expect((try String(contentsOfFile: engine.store.logPath(id), encoding: .utf8)).contains("made"))
        // Without a monitor, a detached run is refused before anything is made.
        let foreground = Engine(store: engine.store)
        #expect(throws: StrataError.self) { try foreground.runDetached(image: RunTests.image, overrides: RunOverrides(), options: Engine.RunOptions()) }
        // The run policy holds for a library caller: too little memory, a relative volume.
        var bad = Engine.RunOptions()
        bad.limits.memory = 1 << 20
        #expect { try engine.run(image: RunTests.image, overrides: RunOverrides(command: ["true"]), options: bad) } throws: {
            "\($0)".contains("the minimum is 6m")
        }
        bad = Engine.RunOptions()
        bad.volumes = [VolumeSpec(source: "relative", target: "/x", readOnly: false, tmpfs: false)]
        #expect(throws: StrataError.self) { try engine.run(image: RunTests.image, overrides: RunOverrides(command: ["true"]), options: bad) }
        #expect(try engine.store.containers(all: true).map(\.record.name).sorted() == ["bg", "maker", "reader"])
        for name in ["bg", "maker", "reader"] { try engine.removeContainer(name, force: true) }
    }
}
