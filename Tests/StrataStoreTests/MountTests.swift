import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataDrivers
@testable import StrataEngine
@testable import StrataStore
@testable import StrataSystem

/// Containers on both drivers: the merged rootfs equals umoci's unpack of the same image;
/// changes, commit, create again; faults. Real mounts, as root.
@Suite(.serialized, .enabled(if: isRoot && overlayWorks, "needs root and overlayfs"))
struct MountTests {
    static let sources = ["oci-none", "oci-gzip", "oci-zstd", "oci-archive.tar", "docker-legacy.tar", "docker-skopeo.tar", "docker-25.tar"]
    static let cases = ["overlay", "vfs"].flatMap { d in sources.map { "\(d) \($0)" } }

    /// The merged tree of a fresh container equals `umoci unpack` of the image (its gzip twin).
    @Test(arguments: cases)
    func mergedTreeMatchesUmoci(_ c: String) throws {
        let parts = c.split(separator: " ").map(String.init)
        let t = TempDir(); defer { t.remove() }
        let store = try Store(root: t.sub("store"), driver: parts[0])
        let image = try store.load(path: fixtures + "/" + parts[1], options: LoadOptions())[0].id
        let id = try store.createContainer(image: image.string, name: nil)
        let path = try store.mountContainer(id)
        defer { try? store.removeContainer(id, force: true) }
        let tree = try TreeListing.list(path)
        let d = TreeListing.diff(RoundTripTests.reference, tree)
        #expect(d.isEmpty, "\(d.prefix(10))")
    }

    /// Changes in a container, commit, create from the new image: exactly the changed tree, on
    /// both drivers; `save` of it is accepted by umoci with the same result.
    @Test(arguments: ["overlay", "vfs"])
    func changesCommitAndCreateAgain(_ driver: String) throws {
        let t = TempDir(); defer { t.remove() }
        let store = try Store(root: t.sub("store"), driver: driver)
        _ = try store.load(path: fixtures + "/oci-gzip", options: LoadOptions())
        let c1 = try store.createContainer(image: "example.com/strata/busybox:gzip", name: "one")
        let m = try store.mountContainer(c1)
        defer { try? store.removeContainer("one", force: true) }
        // add, modify, delete, delete a directory, rm -rf d && mkdir d, chmod, a new hardlink
        try Data("new\n".utf8).write(to: URL(fileURLWithPath: m + "/etc/newfile"))
        try Data("modified\n".utf8).write(to: URL(fileURLWithPath: m + "/etc/group"))
        unlink(m + "/etc/passwd")
        try sh(["rm", "-rf", m + "/opt/replaced"])
        try sh(["rm", "-rf", m + "/usr/share/strata"])
        mkdir(m + "/usr/share/strata", 0o750)
        try Data("only\n".utf8).write(to: URL(fileURLWithPath: m + "/usr/share/strata/only"))
        chmod(m + "/etc/modeonly", 0o640)
        link(m + "/etc/newfile", m + "/etc/newfile-link")
        mkdir(m + "/data", 0o700)
        chown(m + "/data", 1000, 1000)
        symlink("/etc/newfile", m + "/data/abs-link")
        let expected = try TreeListing.list(m)

        let diff = try store.diff("one")
        let byPath = Dictionary(diff.map { ($0.path, $0.kind) }, uniquingKeysWith: { a, _ in a })
        #expect(byPath["/etc/newfile"] == "A" && byPath["/etc/group"] == "C" && byPath["/etc/passwd"] == "D")
        #expect(byPath["/opt/replaced"] == "D" && !byPath.keys.contains("/opt/replaced/z"))

        let image = try store.commit("one", tag: "ex/committed", message: "changes", author: "tests", changes: ["CMD [\"/bin/true\"]"])
        #expect(try store.history(image).last?.comment == "changes")
        #expect(try store.check().isEmpty)
        let c2 = try store.createContainer(image: "ex/committed", name: "two")
        let m2 = try store.mountContainer(c2)
        defer { try? store.removeContainer("two", force: true) }
        let again = try TreeListing.list(m2)
        let d = TreeListing.diff(expected, again)
        #expect(d.isEmpty, "\(d.prefix(10))")

        // The same upper tree gives the same diffID: commit again, same layer.
        let image2 = try store.commit("one", tag: nil, message: "changes", author: "tests", changes: ["CMD [\"/bin/true\"]"])
        #expect(try store.imageLayers(image2).last?.diffID == store.imageLayers(image).last?.diffID)

        var o = SaveOptions()
        o.format = .ociArchive
        try store.save(["ex/committed"], to: t.sub("c.tar"), options: o)
        let (rc, _, err) = try sh(["skopeo", "--insecure-policy", "copy", "-q", "oci-archive:\(t.sub("c.tar"))", "oci:\(t.path)/l:x"])
        #expect(rc == 0, "\(err)")
        let (rc2, _, err2) = try sh(["umoci", "unpack", "--image", "\(t.path)/l:x", t.sub("bundle")])
        #expect(rc2 == 0, "\(err2)")
        let d2 = TreeListing.diff(expected, try TreeListing.list(t.sub("bundle/rootfs")))
        #expect(d2.isEmpty, "\(d2.prefix(10))")
    }

    /// Deep chains mount in both overlay forms: lowerdir+ and short links in one page.
    @Test(arguments: [128, 500])
    func deepChains(_ depth: Int) throws {
        let t = TempDir(); defer { t.remove() }
        var tars: [String] = []
        for i in 0..<depth {
            var b = TarBuilder()
            b.file("f\(i)", "\(i)")
            if i == depth - 1 { b.file("f0", "top") }
            let p = t.sub("l\(i).tar")
            try Data(b.archive).write(to: URL(fileURLWithPath: p))
            tars.append(p)
        }
        try sh(["python3", repoRoot + "/fixtures/mkimages.py", "--layout", t.sub("deep"), "none", "deep:1"] + tars)
        for form in ["lowerdirplus", "shortlinks"] {
            let root = t.sub("store-\(form)")
            let env = ["STRATA_OVERLAY_MOUNT_FORM": form]
            #expect(try strataCLI(["--driver", "overlay", "-q", "load", t.sub("deep")], root: root, env: env).0 == 0)
            let (rc, out, err) = try strataCLI(["create", "deep:1"], root: root, env: env)
            #expect(rc == 0, "\(err)")
            let id = out.split(separator: "\n").last.map(String.init) ?? ""
            let (rc2, out2, err2) = try strataCLI(["mount", id], root: root, env: env)
            #expect(rc2 == 0, "\(form): \(err2)")
            let path = out2.split(separator: "\n").last.map(String.init) ?? ""
            #expect(readString(path + "/f0") == "top")
            #expect(readString(path + "/f\(depth / 2)") == "\(depth / 2)")
            // Every layer's file (beside what a container's init layer adds: /etc, /dev, /proc, /sys).
            #expect((try? FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasPrefix("f") }.count) == depth)
            #expect(try strataCLI(["rm", "-f", id], root: root, env: env).0 == 0)
            #expect(!MountTable.isMountPoint(path))
        }
    }

    /// Mount description as a value: computed without privileges; a root opaque layer cuts it.
    @Test func mountDescriptionIsAValue() throws {
        let c = ContainerPaths(root: "/s/containers/abc")
        let l = { (n: Int, opaque: Bool) in
            LowerLayer(chainID: try! ChainID(parsing: "sha256:" + String(repeating: String(n), count: 64)),
                       path: "/s/layers/\(n)/diff", link: String(n, radix: 36), opaqueRoot: opaque)
        }
        let layers = [l(3, false), l(2, true), l(1, false)]
        let plus = try OverlayDriver(linkDirectory: "/s/l", useLowerdirPlus: true).describe(c, layers: layers)
        #expect(plus == .overlay(lowers: ["/s/layers/3/diff", "/s/layers/2/diff"], upper: c.upper, work: c.work, target: c.merged))
        let short = try OverlayDriver(linkDirectory: "/s/l", useLowerdirPlus: false).describe(c, layers: layers)
        guard case .overlayShortLinks(let dir, let options, _) = short else { Issue.record("\(short)"); return }
        #expect(dir == "/s/l" && options.hasPrefix("lowerdir=3:2,upperdir=/s/containers/abc/upper"))
        #expect(try VfsDriver().describe(c, layers: layers) == .none(rootfs: c.rootfs))
    }

    @Test func faults() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        let orphan = root + "/containers/" + String(repeating: "e", count: 64)
        var path = ""
        // The first store's lock is let go at the end of this scope, as when a process exits.
        try {
            let store = try Store(root: root, driver: "overlay")
            _ = try store.load(path: fixtures + "/oci-gzip", options: LoadOptions())
            let id = try store.createContainer(image: "example.com/strata/busybox:gzip", name: "f")
            path = try store.mountContainer("f")
            #expect(try store.mountContainer("f") == path)  // idempotent, counted
            #expect { try store.removeContainer("f", force: false) } throws: { ($0 as? StrataError)?.code == .inUse }
            #expect { try store.commit("nope", tag: nil, message: nil, author: nil, changes: []) } throws: { ($0 as? StrataError)?.code == .notFound }
            #expect { try Store(root: root, driver: "vfs") } throws: { ($0 as? StrataError)?.code == .conflict }
            // rmi refuses an image a container uses; -f untags it and the container keeps working.
            #expect { try store.removeImages(["example.com/strata/busybox:gzip"], force: false) } throws: { ($0 as? StrataError)?.code == .inUse }
            _ = try store.removeImages(["example.com/strata/busybox:gzip"], force: true)
            #expect(try store.images().first?.tags.isEmpty == true)
            try store.unmountContainer("f")
            #expect(MountTable.isMountPoint(path))  // one mount reference left
            try store.unmountContainer("f")
            #expect(!MountTable.isMountPoint(path))
            #expect(try store.mountContainer(id) == path)
            // A run killed inside `create`: a mounted container directory without a row, and the
            // in-flight marker it leaves in tmp/.
            try FileManager.default.createDirectory(atPath: orphan + "/merged", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: root + "/tmp/inflight-killed", contents: nil)
            #expect(strata_mount_bind_for_tests(path, orphan + "/merged") == 0)
            try store.removeContainer("f", force: true)
            #expect(!MountTable.isMountPoint(path))
        }()
        // The next start cleans it up.
        _ = try Store(root: root)
        #expect(!exists(orphan))
        #expect(!MountTable.mountPoints().contains { $0.hasPrefix(t.path) })
    }
}
