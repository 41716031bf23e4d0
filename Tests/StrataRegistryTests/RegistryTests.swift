import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataRegistry

/// Debian's docker-registry (distribution 2.8) on 127.0.0.1, started for each test: images
/// copied in by skopeo are pulled by strata and compared with `load` of the same archive.
@Suite(.serialized, .enabled(if: isRoot && FileManager.default.fileExists(atPath: "/usr/bin/docker-registry"), "needs root and docker-registry"))
struct RegistryTests {
    let binary = strataBinary

    func strata(_ args: [String], root: String) throws -> (Int32, String, String) { try strataCLI(args, root: root) }

    @Test func pullMatchesLoad() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let expected = try Expected.load()
        let ref = "\(registry.host)/strata/busybox:a"
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: ref)

        let (rc, out, err) = try strata(["pull", ref], root: t.sub("pulled"))
        #expect(rc == 0, "\(err)")
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == expected.image_a.id)
        #expect(err.contains("unpacked") && err.contains("Digest: sha256:"))
        let (_, loadedOut, _) = try strata(["load", fixtures + "/oci-archive.tar"], root: t.sub("loaded"))
        #expect(loadedOut.contains("Loaded"))
        // The same layers as a load of the archive (chainIDs, sizes, images), and a clean check.
        // (Listed in the order they were made: a pull makes them three at once, so the lists
        // are compared by chainID.)
        func layers(_ root: String) throws -> [NSDictionary] {
            let json = try strata(["layers", "--json"], root: root).1
            let list = (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [NSDictionary]) ?? []
            return list.sorted { ($0["chainID"] as? String ?? "") < ($1["chainID"] as? String ?? "") }
        }
        let pulledLayers = try layers(t.sub("pulled")), loadedLayers = try layers(t.sub("loaded"))
        #expect(pulledLayers.count == 3 && pulledLayers == loadedLayers, "\(pulledLayers) \(loadedLayers)")
        #expect(try strata(["check"], root: t.sub("pulled")).0 == 0)
        let (_, images, _) = try strata(["images", "--json"], root: t.sub("pulled"))
        #expect(images.contains("\"\(ref)\""))
        // The manifest digest it was pulled with is kept, and shown.
        let (_, table, _) = try strata(["images", "--digests"], root: t.sub("pulled"))
        #expect(table.contains(try registry.digest(of: ref)), "\(table)")

        // Again: every layer is in the store by chainID, so none is downloaded.
        let (rc2, _, err2) = try strata(["pull", ref], root: t.sub("pulled"))
        #expect(rc2 == 0 && !err2.contains("unpacked") && err2.contains("exists"), "\(err2)")

        // By digest, into a new store: the same image.
        let digest = try registry.digest(of: ref)
        let (rc3, out3, err3) = try strata(["pull", "\(registry.host)/strata/busybox@\(digest)"], root: t.sub("bydigest"))
        #expect(rc3 == 0, "\(err3)")
        #expect(out3.contains(expected.image_a.id))
    }

    @Test func multiPlatformIndex() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let expected = try Expected.load()
        let ref = "\(registry.host)/strata/multi:1"
        try registry.push(archive: "oci:\(fixtures)/oci-multiplatform", as: ref, all: true)
        let (rc, out, err) = try strata(["pull", "--platform", expected.other_platform.platform, ref], root: t.path)
        #expect(rc == 0, "\(err)")
        #expect(out.contains(expected.other_platform.id))
        let (rc2, _, err2) = try strata(["pull", "--platform", "linux/s390x", ref], root: t.path)
        #expect(rc2 == 2 && err2.contains("no image for platform linux/s390x"), "\(err2)")
    }

    @Test func errorsLeaveTheStoreAsItWas() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let ref = "\(registry.host)/strata/busybox:a"
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: ref)
        let root = t.sub("store")
        #expect(try strata(["images"], root: root).0 == 0)

        let (rc, _, err) = try strata(["pull", "\(registry.host)/strata/nothing:here"], root: root)
        #expect(rc == 2 && err.contains("has no manifest"), "\(err)")
        let (rc2, _, err2) = try strata(["pull", "\(registry.host)/strata/busybox:nosuchtag"], root: root)
        #expect(rc2 == 2 && err2.contains("has no manifest"), "\(err2)")
        let (rc3, _, err3) = try strata(["pull", "\(registry.host)/Strata/x"], root: root)
        #expect(rc3 == 64 && err3.contains("lowercase"), "\(err3)")

        // A layer blob changed in the registry's storage: refused, naming the digest; nothing kept.
        let layer = try registry.largestBlob()
        let before = try sh(["sh", "-c", "cd \(root) && find . -path ./tmp -prune -o -print | sort"]).1
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: layer.path)))
        bytes[bytes.count / 2] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: layer.path))
        let (rc4, _, err4) = try strata(["pull", ref], root: root)
        #expect(rc4 == 1 && err4.contains(layer.digest), "\(err4)")
        let after = try sh(["sh", "-c", "cd \(root) && find . -path ./tmp -prune -o -print | sort"]).1
        #expect(before == after)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/tmp").isEmpty)
    }

    @Test func tlsAndBasicAuth() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"), tls: true, user: ("strata", "s3cret-pw"))
        defer { registry.stop() }
        let expected = try Expected.load()
        let ref = "\(registry.host)/strata/busybox:a"
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: ref)
        let certs = registry.certDirectory!

        // No CA: the certificate is not trusted.
        let (rc0, _, err0) = try strata(["pull", "--creds", "strata:s3cret-pw", ref], root: t.sub("s0"))
        #expect(rc0 != 0 && !err0.contains("s3cret-pw"), "\(err0)")
        // Wrong password: refused with a message that does not repeat it.
        let (rc1, _, err1) = try strata(["pull", "--cert-dir", certs, "--creds", "strata:wrong-pw", ref], root: t.sub("s1"))
        #expect(rc1 == 3 && err1.contains("refused") && !err1.contains("wrong-pw"), "\(err1)")
        // Right: pulled over TLS with Basic auth.
        let (rc2, out2, err2) = try strata(["pull", "--cert-dir", certs, "--creds", "strata:s3cret-pw", ref], root: t.sub("s2"))
        #expect(rc2 == 0 && out2.contains(expected.image_a.id), "\(err2)")

        // login stores the credentials (0600) and pull finds them; logout forgets them.
        let auth = t.sub("auth.json")
        let (rc3, out3, err3) = try sh([binary, "login", "--cert-dir", certs, "--authfile", auth, "-u", "strata", "--password-stdin", registry.host],
                                       stdin: Array("s3cret-pw\n".utf8))
        #expect(rc3 == 0 && out3.contains("Login Succeeded"), "\(err3)")
        var st = stat()
        #expect(stat(auth, &st) == 0 && st.st_mode & 0o777 == 0o600)
        let (rc4, _, err4) = try strataCLI(["pull", "--cert-dir", certs, ref], root: t.sub("s3"), env: ["REGISTRY_AUTH_FILE": auth])
        #expect(rc4 == 0, "\(err4)")
        let (rc5, _, _) = try sh([binary, "logout", "--authfile", auth, registry.host])
        #expect(rc5 == 0)
        let (rc6, _, err6) = try strataCLI(["pull", "--cert-dir", certs, ref], root: t.sub("s4"), env: ["REGISTRY_AUTH_FILE": auth])
        #expect(rc6 != 0 && err6.contains("login"), "\(err6)")
    }
}

extension RegistryTests {
    /// A pulled image is found by the names Docker users type: `strata run busybox` finds
    /// `docker.io/library/busybox:latest`; `x` finds podman's `localhost/x:latest`.
    @Test func shortNamesFindFullOnes() throws {
        let t = TempDir(); defer { t.remove() }
        #expect(try strata(["load", fixtures + "/oci-archive.tar"], root: t.path).0 == 0)
        #expect(try strata(["tag", "example.com/strata/busybox:archive", "docker.io/library/bb:1"], root: t.path).0 == 0)
        #expect(try strata(["tag", "example.com/strata/busybox:archive", "localhost/lx"], root: t.path).0 == 0)
        for name in ["bb:1", "library/bb:1", "docker.io/library/bb:1", "lx", "localhost/lx:latest"] {
            let (rc, _, err) = try strata(["history", name], root: t.path)
            #expect(rc == 0, "\(name): \(err)")
        }
        let (rc, _, err) = try strata(["rmi", "bb:1"], root: t.path)
        #expect(rc == 0, "\(err)")
        let (_, images, _) = try strata(["images", "--json"], root: t.path)
        #expect(!images.contains("docker.io/library/bb:1") && images.contains("localhost/lx:latest"))
    }
}

extension RegistryTests {
    /// push → skopeo reads the same diffIDs, umoci unpacks the same tree; a second push sends
    /// nothing and gives the same manifest; a push to another repository mounts the layers.
    @Test func pushRoundTrip() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let expected = try Expected.load()
        let root = t.sub("store")
        #expect(try strata(["load", fixtures + "/oci-archive.tar"], root: root).0 == 0)
        let ref = "\(registry.host)/pushed/busybox:1"
        let (rc, out, err) = try strata(["push", "example.com/strata/busybox:archive", ref], root: root)
        #expect(rc == 0, "\(err)")
        #expect(err.components(separatedBy: ": pushed").count - 1 == 3, "\(err)")
        let digest = out.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try registry.digest(of: ref) == digest)

        let (irc, inspect, ierr) = try sh(["skopeo", "inspect", "--tls-verify=false", "--config", "docker://" + ref])
        #expect(irc == 0, "\(ierr)")
        let config = try JSONSerialization.jsonObject(with: Data(inspect.utf8)) as? [String: Any]
        #expect((config?["rootfs"] as? [String: Any])?["diff_ids"] as? [String] == expected.image_a.diff_ids)

        // umoci unpacks what skopeo copies out: the same files as strata's own export.
        let (crc, _, cerr) = try sh(["skopeo", "copy", "-q", "--src-tls-verify=false", "docker://" + ref, "oci:\(t.sub("oci")):x"])
        #expect(crc == 0, "\(cerr)")
        let (urc, _, uerr) = try sh(["umoci", "unpack", "--image", t.sub("oci") + ":x", t.sub("bundle")])
        #expect(urc == 0, "\(uerr)")
        let (brc, _, berr) = try strata(["bundle", "example.com/strata/busybox:archive", t.sub("ours")], root: root)
        #expect(brc == 0, "\(berr)")
        let differences = TreeListing.diff(try TreeListing.list(t.sub("bundle/rootfs")), try TreeListing.list(t.sub("ours/rootfs")))
        #expect(differences.isEmpty, "\(differences.prefix(5))")

        // Again: every blob is there; the same bytes, so the same manifest.
        let (rc2, out2, err2) = try strata(["push", "example.com/strata/busybox:archive", ref], root: root)
        #expect(rc2 == 0 && out2 == out && err2.contains("3 reused") && !err2.contains(": pushed"), "\(err2)")

        // Another repository of the same registry: the layers are mounted, not sent.
        let other = "\(registry.host)/elsewhere/busybox:1"
        let (rc3, out3, err3) = try strata(["push", "example.com/strata/busybox:archive", other], root: root)
        #expect(rc3 == 0 && out3 == out && err3.components(separatedBy: "mounted from pushed/busybox").count - 1 == 3, "\(err3)")

        // A pulled image pushed elsewhere in the registry mounts the blobs it was pulled as.
        let pulledRoot = t.sub("pulled")
        #expect(try strata(["pull", ref], root: pulledRoot).0 == 0)
        let (rc4, _, err4) = try strata(["push", ref, "\(registry.host)/third/busybox:1"], root: pulledRoot)
        #expect(rc4 == 0 && err4.contains("mounted from pushed/busybox"), "\(err4)")
    }

    /// A pulled image pushed on goes with the manifest bytes it was pulled with: a Docker
    /// v2s2 image stays v2s2 with its digest, in another repository (blobs mounted) and in
    /// another registry (blobs copied from where they were pulled). RepoDigests and
    /// `images --digests` name, per repository, what a pull resolved (an index's digest) and
    /// what a push sent.
    @Test func pushKeepsThePulledManifest() throws {
        let t = TempDir(); defer { t.remove() }
        let a = try TestRegistry(in: t.sub("a")); defer { a.stop() }
        let b = try TestRegistry(in: t.sub("b")); defer { b.stop() }
        let source = "\(a.host)/src/img:1"
        let (crc, _, cerr) = try sh(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--format", "v2s2",
                                     "oci-archive:\(fixtures)/oci-archive.tar", "docker://" + source])
        #expect(crc == 0, "\(cerr)")
        let digest = try a.digest(of: source)
        let root = t.sub("store")
        #expect(try strata(["pull", source], root: root).0 == 0)
        let mediaType = { (ref: String) throws -> String? in
            let raw = try sh(["skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + ref]).1
            return (try JSONSerialization.jsonObject(with: Data(raw.utf8)) as? [String: Any])?["mediaType"] as? String
        }
        #expect(try mediaType(source) == "application/vnd.docker.distribution.manifest.v2+json")
        // Same registry: mounted, same bytes.
        let mirror = "\(a.host)/mirror/img:1"
        let (rc, out, err) = try strata(["push", source, mirror], root: root)
        #expect(rc == 0 && out == digest + "\n" && err.contains("mounted from src/img"), "\(out)\(err)")
        #expect(try a.digest(of: mirror) == digest && mediaType(mirror) == "application/vnd.docker.distribution.manifest.v2+json")
        // Another registry: each blob copied as it was pulled.
        let elsewhere = "\(b.host)/copy/img:1"
        let (rc2, out2, err2) = try strata(["push", source, elsewhere], root: root)
        #expect(rc2 == 0 && out2 == digest + "\n" && err2.contains("copied"), "\(out2)\(err2)")
        #expect(try b.digest(of: elsewhere) == digest)
        // Asked for a compression: the layers are compressed again, a new (OCI) manifest.
        let (rc3, out3, err3) = try strata(["push", "--compress", "zstd", source, "\(b.host)/zstd/img:1"], root: root)
        #expect(rc3 == 0 && out3 != out && !out3.isEmpty, "\(err3)")
        // Per repository: the digest each one knows it by.
        let (_, inspect, _) = try strata(["inspect", "-f", "{{json .RepoDigests}}", source], root: root)
        for repo in ["\(a.host)/src/img", "\(a.host)/mirror/img", "\(b.host)/copy/img"] {
            #expect(inspect.contains("\(repo)@\(digest)"), "\(repo): \(inspect)")
        }
        #expect(inspect.contains("\(b.host)/zstd/img@\(out3.trimmingCharacters(in: .whitespacesAndNewlines))"), "\(inspect)")

        // A tag naming an index: the index's digest is what the repository knows the image by.
        let multi = "\(a.host)/strata/multi:1"
        try a.push(archive: "oci:\(fixtures)/oci-multiplatform", as: multi, all: true)
        let raw = try sh(["bash", "-c", "skopeo inspect --raw --tls-verify=false docker://\(multi) | sha256sum | cut -d' ' -f1"]).1
        let indexDigest = "sha256:" + raw.trimmingCharacters(in: .whitespacesAndNewlines)
        let (prc, _, perr) = try strata(["pull", multi], root: root)
        #expect(prc == 0 && perr.contains("Digest: \(indexDigest)"), "\(perr)")
        let (_, table, _) = try strata(["images", "--digests", "\(a.host)/strata/multi"], root: root)
        #expect(table.contains(indexDigest), "\(table)")
        // And it survives a rebuild of the database from the store's files.
        try FileManager.default.removeItem(atPath: root + "/strata.db")
        #expect(try strata(["check", "--repair"], root: root).0 == 0)
        #expect(try strata(["images", "--digests", "\(a.host)/strata/multi"], root: root).1.contains(indexDigest))
    }
}

/// A misbehaving registry (Tests/registry-fakes/fake_registry.py) on a free port.
struct FakeRegistry {
    let host: String
    let pid: pid_t

    init(_ args: [String], in dir: String) throws {
        let portFile = dir + "/port"
        pid = try spawn(["python3", repoRoot + "/Tests/registry-fakes/fake_registry.py", portFile] + args, stderr: dir + "/fake.log")
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: portFile) || ((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "").isEmpty {
            usleep(50_000)
        }
        host = "127.0.0.1:" + ((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "")
    }

    func stop() { kill(pid, SIGKILL); _ = reap(pid) }
}

extension RegistryTests {
    /// Token auth (the Bearer challenge and the token service, with credentials), and answers
    /// that never end or are too big: capped, with an error that says so.
    @Test func bearerTokensAndCappedAnswers() throws {
        let t = TempDir(); defer { t.remove() }
        let fake = try FakeRegistry(["bearer"], in: t.path)
        defer { fake.stop() }
        let root = t.sub("store")
        let (rc, _, err) = try strata(["pull", "--creds", "u:p", "\(fake.host)/x:huge"], root: root)
        #expect(rc == 1 && err.contains("is over 4.19MB"), "\(err)")
        let (rc2, _, err2) = try strata(["pull", "--creds", "u:p", "\(fake.host)/x:endless"], root: root)
        #expect(rc2 == 1 && err2.contains("is over"), "\(err2)")
        let (rc3, _, err3) = try strata(["pull", "--creds", "u:wrong", "\(fake.host)/x:huge"], root: root)
        #expect(rc3 == 3 && err3.contains("refused the credentials") && !err3.contains("wrong"), "\(err3)")
        let (rc4, _, err4) = try strata(["pull", "--creds", "u:p", "\(fake.host)/x:none"], root: root)
        #expect(rc4 == 2, "\(err4)")
    }

    /// Credentials go to a token service only over https, or over plain http to the registry's own
    /// origin; a realm on another host over plain http gets none (the pull says why), and a realm
    /// of another scheme (a host Unix socket) is refused outright.
    @Test func credentialsStayOffPlainHTTPElsewhere() throws {
        let t = TempDir(); defer { t.remove() }
        // localhost is another origin than 127.0.0.1, though it reaches the same fake.
        let other = try FakeRegistry(["bearer", "http://localhost:{port}/token"], in: t.path)
        defer { other.stop() }
        let (rc, _, err) = try strata(["pull", "--creds", "u:p", "\(other.host)/x:huge"], root: t.sub("store"))
        #expect(rc != 0 && err.contains("over plain http on another host"), "\(err)")
        let log = readString(t.path + "/fake.log") ?? ""
        #expect(!log.contains("auth /token"), "the credentials reached the token service: \(log)")
        let u = TempDir(); defer { u.remove() }
        let unix = try FakeRegistry(["bearer", "http+unix://%2Frun%2Fsecret.sock/token"], in: u.path)
        defer { unix.stop() }
        let (rc2, _, err2) = try strata(["pull", "--creds", "u:p", "\(unix.host)/x:huge"], root: u.sub("store"))
        #expect(rc2 != 0 && err2.contains("over https (or http) only"), "\(err2)")
        let (rc3, _, err3) = try strata(["pull", "\(unix.host)/x:huge"], root: u.sub("store"))
        #expect(rc3 != 0 && err3.contains("over https (or http) only"), "\(err3)")
        // The registry's own origin over plain http still gets them (the test above pulls so).
        #expect(try RegistryClient.mayReceiveCredentials(realm: "http://127.0.0.1:5000/token", registryBase: "http://127.0.0.1:5000",
                                                         registry: "127.0.0.1:5000", hasCredentials: true))
        #expect(try RegistryClient.mayReceiveCredentials(realm: "https://auth.example/token", registryBase: "http://127.0.0.1:5000",
                                                         registry: "127.0.0.1:5000", hasCredentials: true))
        #expect(try !RegistryClient.mayReceiveCredentials(realm: "http://other:80/token", registryBase: "http://127.0.0.1:5000",
                                                          registry: "127.0.0.1:5000", hasCredentials: false))
    }

    /// A connection dropped in the middle of a layer: the pull resumes it with a Range request
    /// and ends with the same image as an undisturbed one.
    @Test func droppedConnectionsResume() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let expected = try Expected.load()
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: "\(registry.host)/strata/busybox:a")
        let proxy = try FakeRegistry(["proxy", registry.host], in: t.path)
        defer { proxy.stop() }
        let (rc, out, err) = try strata(["pull", "\(proxy.host)/strata/busybox:a"], root: t.sub("store"))
        #expect(rc == 0, "\(err)")
        #expect(out.contains(expected.image_a.id))
        #expect(try strata(["check"], root: t.sub("store")).0 == 0)
        // It did drop, and the pull did resume where it stopped.
        let log = (try? String(contentsOfFile: t.sub("fake.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("cut /v2/strata/busybox/blobs/") && log.contains("range bytes="), "\(log)")
    }
}

extension RegistryTests {
    /// A registry that dies in the middle of a pull: a clear error after the retries, the store
    /// as it was, and the next pull (from a registry that works) completes.
    @Test func registryDyingMidPull() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let expected = try Expected.load()
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: "\(registry.host)/strata/busybox:a")
        let dying = try FakeRegistry(["die", registry.host], in: t.path)
        defer { dying.stop() }
        let root = t.sub("store")
        #expect(try strata(["images"], root: root).0 == 0)
        let (rc, _, err) = try strata(["pull", "\(dying.host)/strata/busybox:a"], root: root)
        #expect(rc == 71 && err.contains("closed before the response") && err.contains("giving up"), "\(err)")
        #expect(!err.contains("HTTPClientError"), "\(err)")
        // The layer is named once, not once per layer of wrapping.
        #expect(err.components(separatedBy: "strata/busybox@").count == 2, "\(err)")
        for list in ["images", "layers"] {
            let json = try strata([list, "--json"], root: root).1
            #expect((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [Any])?.isEmpty == true, "\(list): \(json)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/tmp").isEmpty)
        let (rc2, out2, err2) = try strata(["pull", "\(registry.host)/strata/busybox:a"], root: root)
        #expect(rc2 == 0 && out2.contains(expected.image_a.id), "\(err2)")
    }
}
