import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataFormats
import CStrata
@testable import StrataSystem

/// What the peers write loads as they load it, names are bytes, and nothing is lost on the way
/// through load, mount, diff, commit and save. Real tars built here; overlay and vfs where a
/// mount is involved.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct FidelityTests {
    static let drivers = overlayWorks ? ["overlay", "vfs"] : ["vfs"]

    /// A store of one driver, run through the CLI.
    struct Env {
        let t = TempDir("strata-fidelity")
        let driver: String
        var root: String { t.sub("store") }
        func strata(_ args: [String]) throws -> (Int32, String, String) {
            try strataCLI(["--driver", driver] + args, root: root)
        }
        func ok(_ args: [String]) throws -> String {
            let (rc, out, err) = try strata(args)
            #expect(rc == 0, "\(args): \(err)")
            return out
        }
        func load(_ layers: [[UInt8]], ref: String, config: [String: Any] = [:]) throws {
            let dir = t.sub("layout-" + ref.replacingOccurrences(of: ":", with: "-"))
            try ImageLayout.write(dir, layers: layers, ref: ref, config: config)
            _ = try ok(["-q", "load", dir])
        }
        /// Creates and mounts a container; returns its merged rootfs.
        func mount(_ image: String, name: String) throws -> String {
            _ = try ok(["create", "--name", name, image])
            return try ok(["mount", name]).split(separator: "\n").last.map(String.init) ?? ""
        }
        func remove() { _ = try? strata(["rm", "-f", "c"]); t.remove() }
    }

    static func names(_ dir: String) throws -> Set<PathBytes> { Set(try Directory.open(dir).entries()) }

    /// Member names of a tar, as bytes, read by Python's tarfile (an independent reader).
    static func tarNames(_ path: String) throws -> [PathBytes] {
        let (rc, out, err) = try sh(["python3", "-c", """
            import sys, tarfile
            for m in tarfile.open(sys.argv[1], encoding='utf-8', errors='surrogateescape'):
                print(m.name.encode('utf-8', 'surrogateescape').hex())
            """, path])
        #expect(rc == 0, "\(err)")
        return out.split(separator: "\n").map { h in
            stride(from: 0, to: h.count, by: 2).map { UInt8(h.dropFirst($0).prefix(2), radix: 16)! }
        }
    }

    /// The layer tars of a saved oci-dir image, in order.
    static func savedLayers(_ dir: String) throws -> [String] {
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/index.json"))) as! [String: Any]
        let md = ((index["manifests"] as! [[String: Any]])[0]["digest"] as! String).dropFirst(7)
        let m = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/blobs/sha256/" + md))) as! [String: Any]
        return (m["layers"] as! [[String: Any]]).map { dir + "/blobs/sha256/" + ($0["digest"] as! String).dropFirst(7) }
    }

    // MARK: 1, 15: names are bytes

    /// Five canonically equivalent spellings of Ạ̊, NFC and NFD café, a Latin-1 byte, an emoji;
    /// a whiteout of the NFD café that leaves its NFC twin.
    @Test(arguments: drivers) func namesAreBytes(_ driver: String) throws {
        let e = Env(driver: driver); defer { e.remove() }
        let five = ["A\u{0323}\u{030A}", "A\u{030A}\u{0323}", "\u{00C5}\u{0323}", "\u{1EA0}\u{030A}", "\u{212B}\u{0323}"]
        var names: [PathBytes] = (five + ["caf\u{E9}", "cafe\u{301}", "\u{1F600}"]).map { Array($0.utf8) }
        names.append([0x6C, 0x61, 0x74, 0xE9])  // "lat" + Latin-1 é
        #expect(Set(names).count == 9)
        var base = TarBuilder()
        base.dir("d")
        for (i, n) in names.enumerated() { base.entry(Array("d/".utf8) + n, .file, data: Array("\(i)".utf8), mode: 0o644) }
        var top = TarBuilder()
        top.file("d/.wh.cafe\u{301}")
        try e.load([base.archive, top.archive], ref: "names:1")

        let merged = try e.mount("names:1", name: "c")
        let nfd = Array("cafe\u{301}".utf8)
        #expect(try FidelityTests.names(merged + "/d") == Set(names).subtracting([nfd]))
        #expect(readString(merged + "/d/caf\u{E9}") == "5")

        // Changes: NFD and NFC twins added, one spelling of five deleted, a non-UTF-8 name added.
        let d = try Directory.open(merged + "/d")
        for n in ["new-e\u{301}", "new-\u{E9}"] { _ = try d.openFile(Array(n.utf8), flags: [.writeOnly, .create], mode: 0o644) }
        _ = try d.openFile([0x62, 0x61, 0x64, 0xFF], flags: [.writeOnly, .create], mode: 0o644)
        _ = d.unlink(Array(five[4].utf8))

        let diff = try JSONSerialization.jsonObject(with: Data(try e.ok(["diff", "c", "--json"]).utf8)) as! [[String: Any]]
        let paths = diff.map { Array(($0["path"] as! String).utf8) }
        #expect(paths.contains(Array("/d/new-e\u{301}".utf8)) && paths.contains(Array("/d/new-\u{E9}".utf8)), "\(diff)")
        #expect(diff.contains { $0["kind"] as? String == "D" && Array(($0["path"] as! String).utf8) == Array("/d/\(five[4])".utf8) })
        let raw = diff.compactMap { $0["pathBase64"] as? String }.compactMap { Base64.decode(Array($0.utf8)) }
        #expect(raw == [Array("/d/bad".utf8) + [0xFF]], "\(diff)")

        _ = try e.ok(["commit", "c", "names:2"])
        _ = try e.ok(["-q", "save", "names:2", "--format", "oci-dir", "-o", e.t.sub("saved2")])
        let committed = try FidelityTests.tarNames(try FidelityTests.savedLayers(e.t.sub("saved2")).last!)
        for n: PathBytes in [Array("d/new-e\u{301}".utf8), Array("d/new-\u{E9}".utf8), Array("d/bad".utf8) + [0xFF],
                             Array("d/.wh.\(five[4])".utf8)] {
            #expect(committed.contains(n), "\(n.display) not in \(committed.map(\.display))")
        }

        // The loaded layers come back byte-exact; the store is clean.
        _ = try e.ok(["-q", "save", "names:1", "--format", "oci-dir", "-o", e.t.sub("saved1")])
        let saved = try FidelityTests.savedLayers(e.t.sub("saved1")).map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
        #expect(saved == [base.archive, top.archive])
        #expect(try e.strata(["check"]).0 == 0)
        _ = try e.strata(["umount", "-f", "c"])
    }

    // MARK: 2: reserved names

    @Test func commitRefusesReservedNames() throws {
        let e = Env(driver: FidelityTests.drivers[0]); defer { e.remove() }
        var b = TarBuilder()
        b.dir("etc"); b.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
        try e.load([b.archive], ref: "base:1")
        let merged = try e.mount("base:1", name: "c")
        let before = try e.ok(["images", "--json"])
        for name in [".wh.passwd", ".wh..wh..opq"] {
            FileManager.default.createFile(atPath: merged + "/etc/" + name, contents: Data())
            let (rc, _, err) = try e.strata(["commit", "c", "bad:1"])
            #expect(rc == 1 && err.contains("/etc/" + name) && err.contains("reserve"), "\(rc) \(err)")
            #expect(try e.ok(["images", "--json"]) == before)
            unlink(merged + "/etc/" + name)
        }
        _ = try e.strata(["umount", "-f", "c"])
    }

    // MARK: 3: duplicate keys

    @Test func duplicateJSONKeysAreRefused() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder(); b.file("a", "x")
        let layer = b.archive
        let diff = Digest.of(layer).string
        let configs = [
            #"{"architecture":"\#(Platform.host.architecture)","os":"linux","rootfs":{"type":"layers","diff_ids":["\#(diff)"],"diff_ids":["\#(diff)"]}}"#,
            #"{"architecture":"\#(Platform.host.architecture)","os":"linux","config":{"Cmd":["a"]},"config":{"Cmd":["b"]},"rootfs":{"type":"layers","diff_ids":["\#(diff)"]}}"#,
            #"{"architecture":"\#(Platform.host.architecture)","os":"linux","config":{"Labels":{"k":"1","\u006b":"2"}},"rootfs":{"type":"layers","diff_ids":["\#(diff)"]}}"#,
        ]
        for (i, c) in configs.enumerated() {
            let dir = t.sub("dup\(i)")
            try ImageLayout.write(dir, layers: [layer], rawConfig: Array(c.utf8))
            let (rc, _, err) = try strataCLI(["load", dir], root: t.sub("store"))
            #expect(rc == 1 && err.contains("appears twice") && err.contains("config"), "\(i): \(rc) \(err)")
        }
        let dir = t.sub("dupmanifest")
        try ImageLayout.write(dir, layers: [layer], rawManifest: { cd, cn in
            Array(#"{"schemaVersion":2,"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(cd)","size":\#(cn)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(diff)","size":\#(layer.count)}]}"#.utf8)
        })
        let (rc, _, err) = try strataCLI(["load", dir], root: t.sub("store"))
        #expect(rc == 1 && err.contains("\"schemaVersion\" appears twice") && err.contains("manifest"), "\(err)")
        #expect(!(try strataCLI(["images", "--json"], root: t.sub("store")).1.contains("\"id\"")))
    }

    // MARK: 4-7, 11, 13: what the peers write

    @Test func peerQuirksLoad() throws {
        let e = Env(driver: FidelityTests.drivers[0]); defer { e.remove() }
        var base = TarBuilder()
        base.dir("d"); base.file("d/inner", "lower"); base.dir("usr"); base.dir("usr/bin")
        var top = TarBuilder()
        top.file("d", "now a file")                              // umoci: the directory became a file …
        top.file("d/.wh.inner")                                  // … and its child is whited out under it
        top.file("usr/bin/perl", "#!perl")
        top.hardlink("usr/bin/perl5", to: "/usr/bin/perl")       // kaniko: absolute hardlink target
        top.entry(Array(".wh..wh.plnk/12.34".utf8), .file, data: Array("aufs".utf8), mode: 0o644)  // aufs metadata
        top.file(".wh..wh.aufs")
        top.entry(Array("x".utf8), .file, data: Array("x".utf8), mode: 0o644,
                  rawPax: [(Array("SCHILY.xattr.user.empty".utf8), []), (Array("SCHILY.xattr.user.kept".utf8), Array("v".utf8)),
                           (Array("SCHILY.xattr.user.containers.override_stat".utf8), Array("0:0:0644".utf8))])
        try e.load([base.archive, top.archive], ref: "quirks:1")
        let merged = try e.mount("quirks:1", name: "c")
        #expect(readString(merged + "/d") == "now a file")
        var a = stat(), b = stat()
        #expect(lstat(merged + "/usr/bin/perl", &a) == 0 && lstat(merged + "/usr/bin/perl5", &b) == 0 && a.st_ino == b.st_ino)
        #expect(!exists(merged + "/.wh..wh.plnk") && !exists(merged + "/.wh..wh.aufs"))
        #expect(xattr(merged + "/x", "user.kept") == Array("v".utf8))
        #expect(xattr(merged + "/x", "user.empty") == nil, "an empty PAX xattr record unsets")
        #expect(xattr(merged + "/x", "user.containers.override_stat") == nil)
        _ = try e.ok(["-q", "save", "quirks:1", "--format", "oci-dir", "-o", e.t.sub("saved")])
        let saved = try FidelityTests.savedLayers(e.t.sub("saved")).map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
        #expect(saved == [base.archive, top.archive], "save stays byte-exact")
        #expect(try e.strata(["check"]).0 == 0)

        // Committed, user.containers.* stays behind.
        let f = merged + "/committed"
        FileManager.default.createFile(atPath: f, contents: Data("c".utf8))
        let fd = open(f, O_RDWR)
        #expect(strata_fsetxattr(fd, "user.containers.override_stat", "0:0:0600", 8, 0) == 0 && strata_fsetxattr(fd, "user.mine", "m", 1, 0) == 0)
        close(fd)
        _ = try e.ok(["commit", "c", "quirks:2"])
        let merged2 = try e.mount("quirks:2", name: "c2")
        #expect(xattr(merged2 + "/committed", "user.mine") == Array("m".utf8))
        #expect(xattr(merged2 + "/committed", "user.containers.override_stat") == nil)
        _ = try e.strata(["umount", "-f", "c"]); _ = try e.strata(["rm", "-f", "c2"])
    }

    // MARK: 8, 9: parents and whiteouts against the lower layers

    @Test(arguments: drivers) func settledAgainstLowerLayers(_ driver: String) throws {
        let e = Env(driver: driver); defer { e.remove() }
        var base = TarBuilder()
        base.dir("tmp", mode: 0o1777); base.dir("root", mode: 0o700); base.dir("etc", mode: 0o750, gid: 42)
        base.dir("d"); base.file("d/a", "a"); base.file("d/b", "b")
        var top = TarBuilder()
        top.file("tmp/foo", "f"); top.file("root/x", "x"); top.file("etc/y", "y"); top.file("new/z", "z")  // no parents listed
        top.opaque("d"); top.file("d/.wh.a")                      // a whiteout in a directory made opaque
        top.file("nowhere/.wh.gone")                             // a whiteout in a directory no lower layer has
        try e.load([base.archive, top.archive], ref: "parents:1")
        let merged = try e.mount("parents:1", name: "c")
        func mode(_ p: String) -> (mode_t, uid_t, gid_t)? { lstatPath(merged + p).map { ($0.st_mode & 0o7777, $0.st_uid, $0.st_gid) } }
        #expect(mode("/tmp")! == (0o1777, 0, 0))
        #expect(mode("/root")! == (0o700, 0, 0))
        #expect(mode("/etc")! == (0o750, 0, 42))
        #expect(mode("/new")! == (0o755, 0, 0))
        #expect(try FidelityTests.names(merged + "/d").isEmpty, "opaque d shows nothing of the lower d")
        #expect(try FidelityTests.names(merged + "/nowhere").isEmpty, "no whiteout device listed")
        let (_, ls, _) = try sh(["ls", "-la", merged + "/d", merged + "/nowhere"])
        #expect(!ls.contains("c?????????") && !ls.split(separator: "\n").contains { $0.hasPrefix("c") }, "\(ls)")
        #expect(try e.strata(["check"]).0 == 0)
        _ = try e.strata(["umount", "-f", "c"])
    }

    // MARK: 10: bzip2 and lz4

    @Test func bzip2AndLz4() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        var b = TarBuilder(); b.file("hello", "bz")
        try Data(b.archive).write(to: URL(fileURLWithPath: t.sub("rootfs.tar")))
        for (tool, ext) in [("bzip2", "bz2"), ("lz4", "lz4")] {
            let (rc, _, err) = try sh(["sh", "-c", "\(tool) -c \(t.sub("rootfs.tar")) > \(t.sub("rootfs.tar." + ext))"])
            #expect(rc == 0, "\(tool): \(err)")
            let (irc, _, ierr) = try strataCLI(["-q", "import", t.sub("rootfs.tar." + ext), "imported:\(ext)"], root: root)
            #expect(irc == 0, "\(ext): \(ierr)")
            // A layer blob so compressed, and an outer archive so compressed.
            let layer = Array(try Data(contentsOf: URL(fileURLWithPath: t.sub("rootfs.tar." + ext))))
            try ImageLayout.write(t.sub("layout-" + ext), layers: [layer], diffIDs: [Digest.of(b.archive).string], ref: "example.com/layer:\(ext)")
            #expect(try strataCLI(["-q", "load", t.sub("layout-" + ext)], root: root).0 == 0)
            try sh(["sh", "-c", "tar -C \(t.sub("layout-" + ext)) -cf - . | \(tool) -c > \(t.sub("outer." + ext))"])
            let (orc, _, oerr) = try strataCLI(["-q", "load", t.sub("outer." + ext), "--tag", "outer:\(ext)"], root: root)
            #expect(orc == 0, "\(ext): \(oerr)")
        }
        let (_, images, _) = try strataCLI(["images"], root: root)
        for name in ["imported", "example.com/layer", "outer"] { #expect(images.components(separatedBy: name).count == 3, "\(name): \(images)") }
    }

    // MARK: 12: mount points in the init layer

    @Test(.enabled(if: overlayWorks && cgroupLayout != nil)) func mountPointsNeverShowInDiff() throws {
        let e = Env(driver: "overlay"); defer { e.remove() }
        let busybox = Array(try Data(contentsOf: URL(fileURLWithPath: "/bin/busybox")))
        var b = TarBuilder()
        b.dir("bin"); b.entry(Array("bin/busybox".utf8), .file, data: busybox, mode: 0o755); b.symlink("bin/sh", to: "busybox")
        try e.load([b.archive], ref: "bare:1")
        let (rc, _, err) = try e.strata(["run", "--name", "bare", "bare:1", "/bin/busybox", "true"])
        #expect(rc == 0, "\(err)")
        let diff = try e.ok(["diff", "bare"])
        #expect(!diff.contains("/proc") && !diff.contains("/dev") && !diff.contains("/sys"), "\(diff)")
        _ = try e.strata(["rm", "-f", "bare"])

        var s = TarBuilder()
        s.dir("bin"); s.entry(Array("bin/busybox".utf8), .file, data: busybox, mode: 0o755); s.symlink("proc", to: "/tmp")
        try e.load([s.archive], ref: "symproc:1")
        let (src, _, serr) = try e.strata(["run", "--rm", "symproc:1", "/bin/busybox", "true"])
        #expect(src == 125 && serr.contains("/proc") && serr.contains("symlink"), "\(src) \(serr)")
        #expect(!(try e.ok(["ps", "-a"]).contains("symproc")))
    }

    // MARK: 14: history stays aligned

    @Test func commitKeepsHistoryAligned() throws {
        let e = Env(driver: FidelityTests.drivers[0]); defer { e.remove() }
        var l0 = TarBuilder(); l0.file("a", "a")
        var l1 = TarBuilder(); l1.file("b", "b")
        try e.load([l0.archive, l1.archive], ref: "short:1",
                   config: ["history": [["created": "2024-01-01T00:00:00Z", "created_by": "only one"]]])
        _ = try e.mount("short:1", name: "c")
        _ = try e.ok(["commit", "c", "short:2"])
        let id = try e.ok(["inspect", "short:2"])
        let docs = try #require(try JSONSerialization.jsonObject(with: Data(id.utf8)) as? [[String: Any]])
        let doc = try #require((docs.first?["Strata"] as? [String: Any]))
        let config = (doc["config"] as? [String: Any]) ?? doc
        let history = (config["history"] as? [[String: Any]]) ?? []
        let rootfs = (config["rootfs"] as? [String: Any])?["diff_ids"] as? [String] ?? []
        #expect(rootfs.count == 3)
        #expect(history.filter { $0["empty_layer"] as? Bool != true }.count == 3, "\(history)")
        #expect((history.last?["created_by"] as? String)?.contains("strata commit") == true)
        _ = try e.strata(["umount", "-f", "c"])
    }

    // MARK: sparse files in every encoding the peers write

    /// GNU tar's old sparse headers, PAX sparse 0.0, 0.1 and 1.0, and bsdtar's PAX: each a layer
    /// with a file of one hole and one of 2,000 data regions. They load with their contents,
    /// their holes read as zeros, and save gives back the same tars.
    @Test func sparseFilesInEveryEncoding() throws {
        let e = Env(driver: FidelityTests.drivers[0]); defer { e.remove() }
        let writers: [(String, [String])] = [
            ("gnu", ["tar", "--format=gnu", "-S"]),
            ("pax00", ["tar", "--format=posix", "--sparse-version=0.0", "-S"]),
            ("pax01", ["tar", "--format=posix", "--sparse-version=0.1", "-S"]),
            ("pax10", ["tar", "--format=posix", "--sparse-version=1.0", "-S"]),
            ("bsd", ["bsdtar", "--format=pax"]),
        ]
        var layers: [[UInt8]] = []
        for (name, argv) in writers {
            let dir = e.t.sub("src/" + name)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let (rc, _, err) = try sh(["python3", "-c", """
                import sys
                with open(sys.argv[1] + '/many', 'wb') as f:
                    for i in range(2000):
                        f.seek(i * 8192); f.write(bytes([65 + i % 26]) * 4096)
                    f.truncate(2000 * 8192 + 12345)
                with open(sys.argv[1] + '/one', 'wb') as f:
                    f.write(b'head'); f.seek(1 << 20); f.write(b'tail')
                """, dir])
            #expect(rc == 0, "\(err)")
            let tar = e.t.sub(name + ".tar")
            let made = try sh(argv + ["-cf", tar, "-C", e.t.sub("src"), name])
            #expect(made.0 == 0, "\(name): \(made.2)")
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: tar)))
            // The writer really made sparse entries (Python's tarfile reads them independently).
            let check = try sh(["python3", "-c", "import sys, tarfile; print(all(m.issparse() for m in tarfile.open(sys.argv[1]) if m.isfile()))", tar])
            #expect(check.1.hasPrefix("True"), "\(name) wrote no sparse entry")
            layers.append(bytes)
        }
        try e.load(layers, ref: "sparse:1")
        let merged = try e.mount("sparse:1", name: "c")
        for (name, _) in writers {
            for file in ["one", "many"] {
                let same = try sh(["cmp", e.t.sub("src/\(name)/\(file)"), merged + "/\(name)/\(file)"])
                #expect(same.0 == 0, "\(name)/\(file): \(same.1)\(same.2)")
            }
        }
        _ = try e.ok(["-q", "save", "sparse:1", "--format", "oci-dir", "-o", e.t.sub("saved")])
        // Blobs are named by their digests: the same names are the same bytes.
        let saved = try FidelityTests.savedLayers(e.t.sub("saved")).map { String($0.split(separator: "/").last ?? "") }
        #expect(saved == layers.map { Digest.of($0).hex }, "save stays byte-exact")
        let sums = try sh(["sha256sum"] + FidelityTests.savedLayers(e.t.sub("saved")))
        #expect(sums.1.split(separator: "\n").map { String($0.prefix(64)) } == saved, "\(sums.1)\(sums.2)")
        #expect(try e.strata(["check"]).0 == 0)
        _ = try e.strata(["umount", "-f", "c"])
    }
}
