import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataEngine
@testable import StrataStore

/// A table of crafted archives. Each hostile one gives one clear error naming the archive and
/// leaves the store exactly as it was, and the canary outside the store survives; each legal
/// oddity of real images loads.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct HostileCorpusTests {
    enum Input: Sendable {
        /// A layer tar put on top of the fixture's first two layers (config updated to match).
        case layer(@Sendable (String) -> [UInt8])
        /// Any change to the fixture layout.
        case edit(@Sendable (OCIEditor, String) throws -> Void)
    }
    enum Outcome: Sendable { case refused(StrataError.Code), loads }

    static func tar(_ f: @escaping @Sendable (inout TarBuilder, String) -> Void) -> Input {
        .layer { canary in var b = TarBuilder(); f(&b, canary); return b.archive }
    }

    static let corpus: [(String, Input, Outcome)] = [
        ("dotdot name", tar { b, _ in b.file("../escape", "x") }, .refused(.unsafeEntry)),
        ("dotdot deep", tar { b, _ in b.file("a/b/../../../escape", "x") }, .refused(.unsafeEntry)),
        ("absolute name", tar { b, _ in b.file("/etc/escape", "x") }, .refused(.unsafeEntry)),
        ("hardlink out", tar { b, _ in b.hardlink("l", to: "../../../canary/file") }, .refused(.unsafeEntry)),
        ("hardlink absolute", tar { b, c in b.hardlink("l", to: c + "/file") }, .refused(.unsafeEntry)),
        ("hardlink to missing", tar { b, _ in b.hardlink("l", to: "nothing") }, .refused(.unsafeEntry)),
        ("hardlink to a lower layer", tar { b, _ in b.hardlink("l", to: "etc/passwd") }, .refused(.unsafeEntry)),
        ("hardlink through symlink out", tar { b, c in b.symlink("s", to: c); b.hardlink("l", to: "s/file") }, .refused(.unsafeEntry)),
        ("whiteout outside", tar { b, _ in b.file(".wh.../x") }, .refused(.unsafeEntry)),
        ("whiteout of parent", tar { b, _ in b.file("d/.wh..") }, .refused(.unsafeEntry)),
        ("whiteout of grandparent", tar { b, _ in b.file("d/.wh...") }, .refused(.unsafeEntry)),
        ("bare whiteout", tar { b, _ in b.file("d/.wh.") }, .refused(.unsafeEntry)),
        ("whiteout escaping", tar { b, _ in b.file("../.wh.x") }, .refused(.unsafeEntry)),
        // The name decides, whatever the entry's type, as in Docker (a whiteout stored as a hardlink).
        ("whiteout as hardlink", tar { b, _ in b.file("a", "x"); b.hardlink(".wh.a", to: "a") }, .loads),
        ("0/0 character device", tar { b, _ in b.device("dev/wh", major: 0, minor: 0) }, .refused(.unsafeEntry)),
        ("symlink named .", tar { b, _ in b.symlink(".", to: "/") }, .refused(.unsafeEntry)),
        ("symlink out, written through", tar { b, c in b.symlink("s", to: c); b.file("s/file", "pwned") }, .refused(.unsafeEntry)),
        ("relative symlink out, written through", tar { b, c in
            b.symlink("s", to: "../../../../../../../../.." + c); b.file("s/file", "pwned")
        }, .refused(.unsafeEntry)),
        ("dir turned symlink, then entries and fix-ups through it", tar { b, c in
            b.dir("d", mode: 0o700); b.file("d/inner", "x"); b.symlink("d", to: c); b.file("d/file", "pwned")
        }, .refused(.unsafeEntry)),
        ("directory 10,000 deep", .layer { _ in
            var b = TarBuilder()
            b.file(Array(repeating: "d", count: 10_000).joined(separator: "/") + "/f", "deep")
            return b.archive
        }, .refused(.unsafeEntry)),
        ("truncated tar", .layer { _ in
            var b = TarBuilder(); b.file("big", String(repeating: "x", count: 5000)); return Array(b.bytes.prefix(2048))
        }, .refused(.invalidFormat)),
        ("tar header garbage", .layer { _ in
            var b = TarBuilder(); b.file("a", "x"); var bytes = b.archive; for i in 100..<160 { bytes[i] = 0xff }; return bytes
        }, .refused(.invalidFormat)),
        ("truncated gzip", .layer { _ in
            var b = TarBuilder(); b.file("big", String(repeating: "xy", count: 50_000))
            let gz = (try? gzip(b.archive)) ?? []; return Array(gz.prefix(gz.count / 2))
        }, .refused(.invalidFormat)),
        ("gzip bomb", .layer { _ in
            var b = TarBuilder(); b.file("zeros", String(repeating: "\0", count: 3 << 20)); return (try? gzip(b.archive)) ?? []
        }, .refused(.tooLarge)),
        ("zstd frame declaring a 2 GiB window", .layer { _ in
            var b = TarBuilder(); b.file("a", "x")
            let t = TempDir(); defer { t.remove() }
            try? Data(b.archive).write(to: URL(fileURLWithPath: t.sub("l.tar")))
            _ = try? sh(["zstd", "-q", "--no-content-size", t.sub("l.tar"), "-o", t.sub("l.zst")])
            var z = Array((try? Data(contentsOf: URL(fileURLWithPath: t.sub("l.zst")))) ?? Data())
            // Frame header descriptor without single-segment: byte 5 is the window descriptor.
            if z.count > 6 { z[5] = 21 << 3 }
            return z
        }, .refused(.invalidFormat)),
        ("manifest pointing outside the archive", .edit { ed, _ in
            var m = try ed.manifest
            var layers = m["layers"] as! [[String: Any]]
            layers[0]["digest"] = "sha256:" + String(repeating: "a", count: 64)
            m["layers"] = layers
            try ed.setManifest(m)
            try FileManager.default.createSymbolicLink(atPath: ed.blobPath("sha256:" + String(repeating: "a", count: 64)),
                                                       withDestinationPath: "/etc/passwd")
        }, .refused(.invalidFormat)),  // a symlink is not a blob: refused as such, not "missing"
        ("deeply nested JSON", .edit { ed, _ in
            var c = try ed.config
            c["deep"] = "PLACEHOLDER"
            let bytes = try JSONSerialization.data(withJSONObject: c, options: [.sortedKeys])
            let nested = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
            let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\"PLACEHOLDER\"", with: nested)
            let d = try ed.writeBlob(Array(text.utf8))
            var m = try ed.manifest
            m["config"] = ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": text.utf8.count]
            try ed.setManifest(m)
        }, .refused(.invalidFormat)),
        ("negative size", .edit { ed, _ in
            var m = try ed.manifest
            var layers = m["layers"] as! [[String: Any]]
            layers[1]["size"] = -1
            m["layers"] = layers
            try ed.setManifest(m)
        }, .refused(.invalidFormat)),
        ("huge size", .edit { ed, _ in
            var m = try ed.manifest
            var layers = m["layers"] as! [[String: Any]]
            layers[1]["size"] = Int64.max
            m["layers"] = layers
            try ed.setManifest(m)
        }, .refused(.tooLarge)),
        ("huge config size", .edit { ed, _ in
            var m = try ed.manifest
            var config = m["config"] as! [String: Any]
            config["size"] = 1 << 40
            m["config"] = config
            try ed.setManifest(m)
        }, .refused(.tooLarge)),
        ("index naming itself", .edit { ed, _ in
            // An index whose manifest entry points at an index that points at itself.
            let inner = "{\"schemaVersion\":2,\"manifests\":[]}"
            let d = try ed.writeBlob(Array(inner.utf8))
            let idx = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"\(d)\",\"size\":\(inner.utf8.count)}]}"
            try Data(idx.utf8).write(to: URL(fileURLWithPath: ed.path + "/index.json"))
        }, .refused(.notFound)),
        // Legal oddities of real images.
        ("absolute symlink", tar { b, _ in b.symlink("etc/localtime", to: "/usr/share/zoneinfo/UTC") }, .loads),
        ("duplicate entries", tar { b, _ in b.file("dup", "1"); b.file("dup", "2"); b.dir("d"); b.dir("d", mode: 0o700) }, .loads),
        ("root opaque marker", tar { b, _ in b.opaque(""); b.file("only", "x") }, .loads),
        ("look-alike opaque name", tar { b, _ in b.file("d/.wh..wh..opqX"); b.file("d/x", "x") }, .loads),
        ("hardlink to a symlink", tar { b, _ in b.symlink("s", to: "target"); b.hardlink("h", to: "s") }, .loads),
        ("dot entries", tar { b, _ in b.dir("./"); b.file("./a//b", "x"); b.file("c/./d/../e", "y") }, .loads),
    ]

    @Test(arguments: corpus.map(\.0))
    func corpusCase(_ name: String) throws {
        let (_, input, outcome) = HostileCorpusTests.corpus.first { $0.0 == name }!
        let t = TempDir(); defer { t.remove() }
        let canary = t.sub("canary")
        try FileManager.default.createDirectory(atPath: canary, withIntermediateDirectories: true)
        try Data("canary".utf8).write(to: URL(fileURLWithPath: canary + "/file"))

        let store = try Store(root: t.sub("store"))
        _ = try store.load(path: fixtures + "/docker-shared-b.tar", options: LoadOptions())
        let before = try snapshot(store)

        let ed = try OCIEditor(copying: fixtures + "/oci-none", to: t.sub("image"))
        switch input {
        case .layer(let make):
            let bytes = make(canary)
            try ed.setLayer(2, bytes)
            // Legal layers here are uncompressed: their diffID is their digest, and the config
            // names it so they load; the compressed hostile ones fail before the diffID check.
            let diffID = Digest.of(bytes).string
            var c = try ed.config
            var rootfs = c["rootfs"] as! [String: Any]
            var ids = rootfs["diff_ids"] as! [String]
            ids[2] = diffID
            rootfs["diff_ids"] = ids
            c["rootfs"] = rootfs
            try ed.setConfig(c)
        case .edit(let f):
            try f(ed, canary)
        }

        var options = LoadOptions()
        options.maxLayerSize = 2 << 20
        switch outcome {
        case .refused(let code):
            #expect {
                try store.load(path: ed.path, options: options)
            } throws: { error in
                guard let e = error as? StrataError else { Issue.record("not a StrataError: \(error)"); return false }
                if e.code != code || !e.description.contains(ed.path) { Issue.record("got \(e.code): \(e)") }
                return e.code == code && e.description.contains(ed.path)
            }
            #expect(try snapshot(store) == before)
        case .loads:
            let loaded = try store.load(path: ed.path, options: options)
            #expect(loaded.count == 1)
            #expect(try store.check().isEmpty)
        }
        #expect(readString(canary + "/file") == "canary")
        #expect(try FileManager.default.contentsOfDirectory(atPath: canary) == ["file"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.sub("store/tmp")).isEmpty)
    }

    /// Many empty files: time grows roughly linearly with their number, and the journal stays
    /// exact (20 MB of headers without a payload between them are written out as they pass, not
    /// buffered until a limit makes the journal give up).
    @Test func manyEmptyFilesScaleLinearly() throws {
        func timed(_ n: Int) throws -> Double {
            var b = TarBuilder()
            for i in 0..<n { b.file("d\(i % 100)/f\(i)") }
            let tar = b.archive
            // On tmpfs: this measures strata's own scaling, not the disk's inode allocator (ext4
            // slows down badly after mass deletes, which the test suite does plenty of).
            let t = TempDir(inMemory: true); defer { t.remove() }
            let t0 = Date()
            let r = try unpack(tar, into: t.path, chunk: 1 << 20)
            let elapsed = Date().timeIntervalSince(t0)
            #expect(r.journalInexactReason == nil)
            #expect(try rebuild(t.path) == tar)
            return elapsed
        }
        let small = try timed(10_000)
        let large = try timed(40_000)
        #expect(large < small * 4 * 3, "10k files: \(small)s, 40k files: \(large)s")
    }
}
