import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataSystem
@testable import StrataLauncher
@testable import StrataNetwork

/// Rootless strata (docs/rootless.md), run as unprivileged users this suite makes: one with a
/// range in /etc/subuid and /etc/subgid, one without. Each test has its own XDG_DATA_HOME and
/// XDG_RUNTIME_DIR (so its own store and pause process) and ends every process of the user.
/// Serialized: the users are shared.
@Suite(.serialized) struct RootlessTests {
    static let image = "strata/busybox:v25"

    /// A user made for the tests (kept between runs).
    struct User {
        let name: String
        let uid: UInt32
        let gid: UInt32

        /// `name`, made if missing; with `subordinate`, a range of 65,536 ids at `first`, else none.
        static func make(_ name: String, subordinate: Bool, first: Int) throws -> User {
            if getpwnam(name) == nil {
                let (rc, _, err) = try sh(["useradd", "-m", "-s", "/bin/sh", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name])
                guard rc == 0 else { throw StrataError(.system, "useradd \(name): \(err)") }
            }
            let listed = (readString("/etc/subuid") ?? "").split(separator: "\n").contains { $0.hasPrefix(name + ":") }
            if subordinate && !listed {
                let range = "\(first)-\(first + 65535)"
                #expect(try sh(["usermod", "--add-subuids", range, "--add-subgids", range, name]).0 == 0)
            } else if !subordinate && listed {
                for file in ["/etc/subuid", "/etc/subgid"] {
                    let kept = (readString(file) ?? "").split(separator: "\n").filter { !$0.hasPrefix(name + ":") }
                    try (kept.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
                }
            }
            let pw = try #require(getpwnam(name))
            return User(name: name, uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid)
        }
    }

    static let mapped = Result { try User.make("strata-rl", subordinate: true, first: 300000) }
    static let single = Result { try User.make("strata-rl1", subordinate: false, first: 0) }

    /// One test's rootless strata: the binaries where the user can run them, its data and
    /// runtime directories, and the root store it is compared with.
    final class Env {
        let user: User
        let t = TempDir("strata-rootless")
        var bin: String { t.sub("bin") }
        var data: String { t.sub("data") }
        var run: String { t.sub("run") }
        var store: String { data + "/strata" }
        /// A cgroup (v2, below /sys/fs/cgroup) every command starts in, or nil for the caller's.
        var cgroup: String?

        init(_ user: User) throws {
            self.user = user
            #expect(chmod(t.path, 0o755) == 0)
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: false)
            // Copied by another process: a write fd of ours could leak into a concurrent fork (ETXTBSY).
            let built = URL(fileURLWithPath: strataBinary).deletingLastPathComponent().path
            #expect(try sh(["cp", strataBinary, built + "/strata-monitor", built + "/strata-init", bin]).0 == 0)
            for d in [data, run] {
                try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: false)
                #expect(chown(d, user.uid, user.gid) == 0 && chmod(d, 0o700) == 0)
            }
            for f in ["docker-25.tar", "oci-archive.tar", "docker-skopeo.tar"] {
                #expect(try sh(["cp", fixtures + "/" + f, t.sub(f)]).0 == 0)
            }
        }

        /// strata as the user, with nothing of the caller's environment.
        @discardableResult
        func strata(_ args: [String], stdin: [UInt8]? = nil) throws -> (Int32, String, String) {
            try asUser([bin + "/strata"] + args, stdin: stdin)
        }

        /// Any program as the user (a shell, `cat`, …), in the same environment.
        @discardableResult
        func asUser(_ argv: [String], stdin: [UInt8]? = nil) throws -> (Int32, String, String) {
            let enter = cgroup.map { ["sh", "-c", "echo $$ > /sys/fs/cgroup/\($0)/cgroup.procs && exec \"$@\"", "sh"] } ?? []
            // STRATA_NETWORK passes through (the cgroup v2 VM sets none: its kernel has no tun module).
            let network = ProcessInfo.processInfo.environment["STRATA_NETWORK"].map { ["STRATA_NETWORK=" + $0] } ?? []
            return try sh(enter + ["setpriv", "--reuid", String(user.uid), "--regid", String(user.gid), "--clear-groups",
                                   "env", "-i"] + network + ["HOME=" + t.path, "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                                   "XDG_DATA_HOME=" + data, "XDG_RUNTIME_DIR=" + run] + argv, stdin: stdin)
        }

        /// The pause process of this test's namespace.
        var pausePid: Int32? { readString(run + "/strata/pause.pid").flatMap { $0.split(separator: " ").first.flatMap { Int32($0) } } }

        /// Ends every process of the user (the pause process, monitors, containers): their
        /// mounts go with the namespace. Then the files.
        func end() {
            _ = try? sh(["pkill", "-KILL", "-U", String(user.uid)])
            for _ in 0..<100 {
                if (try? sh(["pgrep", "-U", String(user.uid)]))?.0 != 0 { break }
                usleep(20_000)
            }
            t.remove()
        }
    }

    /// The owner of a file as the host sees it.
    static func hostOwner(_ path: String) -> (UInt32, UInt32)? {
        lstatPath(path).map { ($0.st_uid, $0.st_gid) }
    }

    /// A layer of files with owners other than root, a device and a hardlink to it, as an OCI
    /// layout over the busybox fixture's layers.
    static func ownersLayer() -> [UInt8] {
        var b = TarBuilder()
        _ = b.dir("home/", mode: 0o755)
        _ = b.dir("home/app/", mode: 0o750, uid: 1000, gid: 1000)
        _ = b.file("home/app/data", "kept\n", mode: 0o640, uid: 1000, gid: 1001)
        _ = b.file("home/app/setuid", "#!/bin/sh\n", mode: 0o4755, uid: 0, gid: 0)
        _ = b.device("home/app/null", major: 1, minor: 3)
        _ = b.hardlink("home/app/null-again", to: "home/app/null")
        // A device the layer then replaces with a file, linked after; one in a directory the
        // tar does not list.
        _ = b.device("home/app/mem", major: 1, minor: 1)
        _ = b.file("home/app/mem", "a file now\n")
        _ = b.hardlink("home/app/mem-link", to: "home/app/mem")
        _ = b.device("opt/devs/zero", major: 1, minor: 5)
        // A whiteout by its name, whatever its type: applied, not skipped as a device.
        _ = b.device("etc/.wh.motd", major: 1, minor: 3)
        return b.archive
    }
}

extension RootlessTests {
    /// Load as the user: the same image IDs and diffIDs as root's, the layer files owned by
    /// the user's mapped ids, devices not made (said once per layer), save byte-exact, check
    /// clean; the store and runtime directories 0700; `info` says how ids are mapped.
    @Test func sameImagesAsRoot() throws {
        let user = try Self.mapped.get()
        let e = try Env(user); defer { e.end() }
        let rootStore = TempDir("strata-rootless-root"); defer { rootStore.remove() }
        let owners = Self.ownersLayer()
        let fixtureLayers = try (0..<4).map { try Array(Data(contentsOf: URL(fileURLWithPath: fixtures + "/layer\($0).tar"))) }
        try ImageLayout.write(e.t.sub("owners"), layers: [fixtureLayers[0], owners], ref: "example.com/owners:1")
        #expect(try sh(["chmod", "-R", "a+rX", e.t.sub("owners")]).0 == 0)
        for f in ["docker-25.tar", "oci-archive.tar", "docker-skopeo.tar", "owners"] {
            let (rc, _, err) = try e.strata(["load", e.t.sub(f)])
            #expect(rc == 0, "\(f): \(err)")
            #expect(try strataCLI(["load", e.t.sub(f)], root: rootStore.path).0 == 0)
            if f == "owners" {
                #expect(err.contains("4 device nodes not made") && err.contains("home/app/null"), "\(err)")
            }
        }
        let listing = ["images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"]
        let mine = try e.strata(listing).1.split(separator: "\n").sorted()
        let roots = try strataCLI(listing, root: rootStore.path).1.split(separator: "\n").sorted()
        #expect(!mine.isEmpty && mine == roots, "\(mine) vs \(roots)")
        let layers = ["layers", "--json"]
        let diffIDs = { (s: String) in ((try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [[String: Any]] ?? []).compactMap { $0["diffID"] as? String }.sorted() }
        let rootDiffIDs = diffIDs(try strataCLI(layers, root: rootStore.path).1)
        let myDiffIDs = diffIDs(try e.strata(layers).1)
        #expect(rootDiffIDs.count == 4 && myDiffIDs == rootDiffIDs, "\(myDiffIDs) \(rootDiffIDs)")

        // Owners on disk: the image's ids through the user's mapping (0 → the user, N → first + N - 1).
        let layerDirs = (try? FileManager.default.contentsOfDirectory(atPath: e.store + "/layers")) ?? []
        let appDir = layerDirs.map { e.store + "/layers/" + $0 + "/diff/home/app" }.first { exists($0) }
        let app = try #require(appDir)
        #expect(Self.hostOwner(app)! == (300000 + 999, 300000 + 999))
        #expect(Self.hostOwner(app + "/data")! == (300000 + 999, 300000 + 1000))
        #expect(Self.hostOwner(app + "/setuid")! == (user.uid, user.gid))
        #expect(!exists(app + "/null") && !exists(app + "/null-again") && readString(app + "/mem-link") == "a file now\n")
        let ownersLayer = URL(fileURLWithPath: app).deletingLastPathComponent().deletingLastPathComponent().path
        #expect(isWhiteout(ownersLayer + "/etc/motd"), "the whiteout of etc/motd is on disk")

        // Byte-exact: the tar of each image as root writes it.
        for ref in [Self.image, "example.com/owners:1"] {
            let (rc, _, err) = try e.strata(["save", ref, "-o", e.run + "/saved.tar"])
            #expect(rc == 0, "\(err)")
            #expect(try strataCLI(["save", ref, "-o", rootStore.sub("saved.tar")], root: rootStore.path).0 == 0)
                let (mineSaved, rootSaved) = (try Data(contentsOf: URL(fileURLWithPath: e.run + "/saved.tar")), try Data(contentsOf: URL(fileURLWithPath: rootStore.sub("saved.tar"))))
            #expect(mineSaved == rootSaved, "\(ref)")
        }
        let (crc, cout, cerr) = try e.strata(["check"])
        #expect(crc == 0, "\(cout)\(cerr)")

        // The pause process shows nothing of the command that made it (`load PATH`).
        let cmdline = try #require(e.pausePid.flatMap { readString("/proc/\($0)/cmdline") })
        #expect(cmdline.hasPrefix("strata-pause") && !cmdline.contains("load"), "\(cmdline)")

        // Directories only the user reads.
        for dir in [e.store, e.run + "/strata"] {
            let st = try #require(lstatPath(dir))
            #expect(st.st_mode & 0o777 == 0o700 && st.st_uid == user.uid, "\(dir)")
        }
        let (_, info, _) = try e.strata(["info"])
        #expect(info.contains("Rootless: yes: uid \(user.uid), ids 0→\(user.uid), 1→300000+65536"), "\(info)")
        #expect(info.contains("Store: \(e.store)"))

        // A path under a device is refused as root refuses it (the device is not made rootless,
        // but it is still no directory).
        var under = TarBuilder()
        _ = under.device("x", major: 1, minor: 3)
        _ = under.file("x/g", "g")
        try ImageLayout.write(e.t.sub("under"), layers: [under.archive], ref: "example.com/under:1")
        #expect(try sh(["chmod", "-R", "a+rX", e.t.sub("under")]).0 == 0)
        let (urc, _, uerr) = try e.strata(["load", e.t.sub("under")])
        let (rurc, _, ruerr) = try strataCLI(["load", e.t.sub("under")], root: rootStore.path)
        #expect(urc == 1 && rurc == 1 && uerr.contains("is not a directory") && ruerr.contains("is not a directory"), "\(uerr) / \(ruerr)")

        // An owner the mapping lacks is refused, naming the file and the fix; nothing is kept.
        var far = TarBuilder()
        _ = far.file("far", "x", uid: 70000, gid: 70000)
        try ImageLayout.write(e.t.sub("far"), layers: [far.archive], ref: "example.com/far:1")
        #expect(try sh(["chmod", "-R", "a+rX", e.t.sub("far")]).0 == 0)
        let before = try e.strata(["layers", "-q"]).1
        let (frc, _, ferr) = try e.strata(["load", e.t.sub("far")])
        #expect(frc == 1 && ferr.contains("\"far\" belongs to 70000:70000") && ferr.contains("/etc/subuid"), "\(ferr)")
        #expect(try e.strata(["layers", "-q"]).1 == before)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: e.store + "/tmp")) ?? []).isEmpty)
    }

    /// Mount (seen through `strata unshare`), diff and commit as the user, on both drivers:
    /// the committed layer carries the ids the container gave its files, whiteouts and an
    /// opaque directory, and runs as committed.
    @Test(arguments: ["overlay", "fuse-overlayfs"]) func commitAsTheUser(_ driver: String) throws {
        let user = try Self.mapped.get()
        let e = try Env(user); defer { e.end() }
        #expect(try e.strata(["--driver", driver, "load", e.t.sub("docker-25.tar")]).0 == 0)
        #expect(try e.strata(["info"]).1.contains("Driver: \(driver)"))
        #expect(try e.strata(["create", "--name", "c", Self.image]).0 == 0)
        let script = """
            set -e; M=$(\(e.bin)/strata mount c); echo made > $M/etc/made; chown 1234:1235 $M/etc/made
            rm $M/bin/true; rm -rf $M/usr/share/strata; mkdir $M/usr/share/strata; echo only > $M/usr/share/strata/only
            grep -q " $M " /proc/self/mountinfo && echo MOUNTED
            """
        let (rc, out, err) = try e.strata(["unshare", "sh", "-c", script])
        #expect(rc == 0 && out.contains("MOUNTED"), "\(out)\(err)")
        #expect(try e.strata(["umount", "c"]).0 == 0)
        let (_, diff, _) = try e.strata(["diff", "c"])
        for line in ["A /etc/made", "D /bin/true", "A /usr/share/strata/only"] { #expect(diff.contains(line), "\(diff)") }
        #expect(try e.strata(["commit", "c", "made:1"]).0 == 0)
        let (src, _, serr) = try e.strata(["save", "made:1", "-o", e.run + "/made.tar"])
        #expect(src == 0, "\(serr)")
        let x = e.t.sub("x")
        try FileManager.default.createDirectory(atPath: x, withIntermediateDirectories: false)
        #expect(try sh(["tar", "-C", x, "-xf", e.run + "/made.tar"]).0 == 0)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: x + "/manifest.json"))) as? [[String: Any]]
        let top = try #require((manifest?.first?["Layers"] as? [String])?.last)
        let (_, listing, _) = try sh(["tar", "--numeric-owner", "-tvf", x + "/" + top])
        #expect(listing.contains("1234/1235") && listing.contains("etc/made"), "\(listing)")
        #expect(listing.contains("bin/.wh.true") && listing.contains("usr/share/strata/.wh..wh..opq"), "\(listing)")
        let (rrc, rout, rerr) = try e.strata(["run", "--rm", "made:1", "sh", "-c",
                                              "stat -c %u:%g /etc/made; ls /usr/share/strata; test -e /bin/true || echo gone"])
        #expect(rrc == 0 && rout == "1234:1235\nonly\ngone\n", "\(rout)\(rerr)")
    }

    /// A build as the user, on both drivers: RUN in the user's namespace (on its default
    /// network), COPY --chown, owners as the container sees them; and the same image ID as
    /// root's build of the same file in a store of root's.
    @Test(arguments: ["overlay", "fuse-overlayfs"]) func buildAsTheUser(_ driver: String) throws {
        let user = try Self.mapped.get()
        let e = try Env(user); defer { e.end() }
        #expect(try e.strata(["--driver", driver, "load", e.t.sub("docker-25.tar")]).0 == 0)
        let context = e.t.sub("context")
        try FileManager.default.createDirectory(atPath: context, withIntermediateDirectories: false)
        try "data\n".write(toFile: context + "/data.txt", atomically: false, encoding: .utf8)
        try """
            FROM \(Self.image)
            COPY --chown=1234:1235 data.txt /data.txt
            RUN mkdir /made && echo made > /made/f && chown 2000:2001 /made/f
            CMD ["sh", "-c", "stat -c %u:%g /data.txt /made/f; cat /data.txt"]
            """.write(toFile: context + "/Containerfile", atomically: false, encoding: .utf8)
        let (rc, out, err) = try e.strata(["build", "-q", "-t", "built:1", context])
        #expect(rc == 0, "\(err)")
        let (rrc, rout, rerr) = try e.strata(["run", "--rm", "built:1"])
        #expect(rrc == 0 && rout == "1234:1235\n2000:2001\ndata\n", "\(rout)\(rerr)")
        // Root's build of the same file and context: the same bytes, so the same ID.
        let rootStore = e.t.sub("root-store")
        #expect(try strataCLI(["-q", "load", e.t.sub("docker-25.tar")], root: rootStore).0 == 0)
        let (brc, rootID, berr) = try strataCLI(["build", "-q", "--network", "none", context], root: rootStore)
        #expect(brc == 0, "\(berr)")
        #expect(!out.isEmpty && out == rootID)
        _ = try strataCLI(["rmi", "-f", "built:1"], root: rootStore)
    }

    /// Containers as the user: run, run -d, exec, logs, stop, kill, rm, on both drivers. The
    /// container's root is the user on the host, its other users the user's subordinate ids.
    @Test(arguments: ["overlay", "fuse-overlayfs"]) func runsAsTheUser(_ driver: String) throws {
        let user = try Self.mapped.get()
        let e = try Env(user); defer { e.end() }
        #expect(try e.strata(["--driver", driver, "load", e.t.sub("docker-25.tar")]).0 == 0)
        // (`-h` of the container's command is not strata's --help.)
        let (rc, out, err) = try e.strata(["run", "--rm", Self.image, "sh", "-c", "id -u; cat /proc/self/uid_map; echo x > /dev/null && echo null-ok", "-h"])
        #expect(rc == 0 && out.hasPrefix("0\n") && out.contains("null-ok"), "\(out)\(err)")
        #expect(out.contains("\(user.uid)") && out.contains("300000"), "\(out)")
        // Said once: no delegated cgroup here (a hybrid host; the v2 VM has its own test).
        // (This host's cgroups are v1 or hybrid: nothing can be delegated.)
        if case .v2? = CgroupLayout.current() {} else {
            #expect(err.contains("no cgroup v2 subtree is delegated"), "\(err)")
        }
        #expect(try e.strata(["run", "--rm", Self.image, "true"]).2.isEmpty)
        // The seccomp program is compiled once, kept in the user's runtime directory.
        let programs = (try? FileManager.default.contentsOfDirectory(atPath: e.run + "/strata/seccomp")) ?? []
        #expect(programs.contains { $0.hasSuffix(".bpf") }, "\(programs)")
        for p in programs { #expect(lstatPath(e.run + "/strata/seccomp/" + p).map { $0.st_uid == user.uid && $0.st_mode & 0o077 == 0 } == true) }

        let (drc, did, derr) = try e.strata(["run", "-d", "--name", "d", "-u", "nobody", Self.image, "sh", "-c", "echo started; exec sleep 1000"])
        #expect(drc == 0 && did.count == 65, "\(derr)")
        let (_, ps, _) = try e.strata(["ps", "--format", "{{.Names}} {{.Status}}"])
        #expect(ps.hasPrefix("d Up"), "\(ps)")
        let (_, pidText, _) = try e.strata(["inspect", "-f", "{{.State.Pid}}", "d"])
        let pid = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        // On the host: the container's nobody (65534) is the user's subordinate id 300000 + 65533.
        let status = readString("/proc/\(pid)/status") ?? ""
        #expect(status.contains("Uid:\t\(300000 + 65533)\t"), "\(status)")
        let (erc, eout, eerr) = try e.strata(["exec", "d", "sh", "-c", "id -u; ps -o pid,comm | grep -c sleep"])
        #expect(erc == 0 && eout == "65534\n1\n", "\(eout)\(eerr)")
        #expect(try e.strata(["logs", "d"]).1 == "started\n")
        let started = Date()
        #expect(try e.strata(["stop", "-t", "1", "d"]).0 == 0)
        #expect(Date().timeIntervalSince(started) < 5 * timeScale)
        #expect(try e.strata(["ps", "-a", "--format", "{{.Names}} {{.Status}}"]).1.hasPrefix("d Exited (137)"))
        #expect(kill(pid, 0) != 0)
        #expect(try e.strata(["start", "d"]).0 == 0)
        #expect(try e.strata(["kill", "d"]).0 == 0)
        #expect(try e.strata(["wait", "d"]).1 == "137\n")
        #expect(try e.strata(["rm", "d"]).0 == 0)
        #expect(try e.strata(["ps", "-aq"]).1.isEmpty)
        // --device: the host's node bound in (written through, a node of the host's numbers).
        let (vrc, vout, verr) = try e.strata(["run", "--rm", "--device", "/dev/null:/dev/sub/mynull", "--device", "/dev/zero:/dev/myzero",
                                              Self.image, "sh", "-c", "echo x > /dev/sub/mynull && stat -c '%t,%T' /dev/sub/mynull && head -c 3 /dev/myzero | od -An -tx1"])
        #expect(vrc == 0 && vout == "1,3\n 00 00 00\n", "\(vout)\(verr)")
        // Limits need a cgroup: refused, saying why.
        let (lrc, _, lerr) = try e.strata(["run", "--rm", "--memory", "64m", Self.image, "true"])
        #expect(lrc == 125 && lerr.contains("no cgroup v2 subtree is delegated to this user"), "\(lerr)")
    }

    /// The boundary as the user, on both drivers: the escape probe finds nothing (run, and
    /// through exec), and what the user cannot write on the host, the container's root cannot
    /// either (a bind of /etc, the host's /sys with --network host).
    @Test(arguments: zip([[String](), ["--network", "host"], ["--init", "-u", "0"], [], ["--network", "host", "--init"]],
                         ["overlay", "overlay", "overlay", "fuse-overlayfs", "fuse-overlayfs"]))
    func escapeProbeAsTheUser(_ flags: [String], driver: String) throws {
        let user = try Self.mapped.get()
        let probe = try #require(RunTests.probe, "cc -static must build the probe")
        let e = try Env(user); defer { e.end() }
        #expect(try sh(["cp", probe, e.bin + "/probe"]).0 == 0)
        #expect(try e.strata(["--driver", driver, "load", e.t.sub("docker-25.tar")]).0 == 0)
        let canary = e.t.sub("secret")
        try Data("host secret\n".utf8).write(to: URL(fileURLWithPath: canary))
        #expect(chmod(canary, 0o600) == 0)
        let (rc, out, err) = try e.strata(["run", "--rm"] + flags + ["-v", e.bin + "/probe:/probe:ro", "-e", "CANARY=" + canary, Self.image, "/probe"])
        let escapes = out.split(separator: "\n").filter { $0.contains("ESCAPED") }
        #expect(rc == 0 && escapes.isEmpty && out.contains("escapes: 0"), "\(flags): \(escapes) \(err)")
        #expect(out.split(separator: "\n").filter { $0.contains(": blocked") }.count >= 40, "\(out)")
        for attempt in ["inherited-fd", "process-fds", "canary/proc/1/root", "chroot-breakout", "proc-self-exe-write",
                        "open_by_handle_at", "write /proc/sys/kernel/core_pattern", "keyctl"] {
            #expect(out.contains(attempt + ": blocked"), "\(flags): \(attempt) was not tried or not blocked")
        }
        // Through exec, into a running container.
        #expect(try e.strata(["run", "-d", "--name", "x"] + flags + ["-v", e.bin + "/probe:/probe:ro", Self.image, "sleep", "1000"]).0 == 0)
        let (xrc, xout, xerr) = try e.strata(["exec", "-e", "CANARY=" + canary, "x", "/probe"])
        #expect(xrc == 0 && xout.contains("escapes: 0") && !xout.contains("ESCAPED"), "exec \(flags): \(xout)\(xerr)")
        let script = "echo x > /host/etc/ESCAPED; echo x > /sys/kernel/ESCAPED; echo 1 > /proc/sys/kernel/ESCAPED; touch /host/etc/passwd; echo tried"
        let (_, sout, _) = try e.strata(["run", "--rm"] + flags + ["-v", "/etc:/host/etc", Self.image, "sh", "-c", script])
        #expect(sout.contains("tried"))
        #expect(!exists("/etc/ESCAPED") && !exists("/sys/kernel/ESCAPED") && !exists("/tmp/ESCAPED"))
    }

    /// The pause process's pid, used again by one of the user's containers (which run as the
    /// user, in the same user namespace, and may take the name strata-pause): the next command
    /// does not join the container's namespaces, it makes new ones.
    /// Rootless networking on slirp4netns (the default, as podman's): a published port answers
    /// on the host's loopback, the host's loopback services are out of the container's reach,
    /// and stop leaves no slirp4netns, namespace or state.
    @Test(.enabled(if: Slirp4netns.installedPath != nil, "needs slirp4netns")) func slirp4netnsAsTheUser() throws {
        let user = try Self.mapped.get()
        let e = try Env(user); defer { e.end() }
        #expect(try e.strata(["load", e.t.sub("docker-25.tar")]).0 == 0)
        // A service of the host's loopback the container must not reach.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        defer { close(listener) }
        var sa = sockaddr_in(); sa.sin_family = sa_family_t(AF_INET); sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(listen(listener, 8) == 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let hostPort = UInt16(bigEndian: sa.sin_port)
        let published = try HostPorts.probe(address: "127.0.0.1", port: 0, udp: false)
        let (rc, id, err) = try e.strata(["run", "-d", "--name", "web", "-p", "127.0.0.1:\(published):80", Self.image, "sh", "-c",
                                          "mkdir -p /www && echo rootless-web > /www/index.html && exec httpd -f -p 80 -h /www"])
        #expect(rc == 0, "\(err)")
        var body = ""
        for _ in 0..<50 where body.isEmpty {
            body = (try? sh(["curl", "-s", "--max-time", "2", "http://127.0.0.1:\(published)/"]))?.1 ?? ""
            if body.isEmpty { usleep(100_000) }
        }
        #expect(body == "rootless-web\n")
        #expect(try e.strata(["port", "web"]).1 == "80/tcp -> 127.0.0.1:\(published)\n")
        let (_, inside, _) = try e.strata(["exec", "web", "sh", "-c",
                                           "ip -o -4 addr show tap0 | awk '{print $4}'; timeout 3 wget -q -O- http://10.0.2.2:\(hostPort)/ || echo unreachable"])
        #expect(inside.hasPrefix("10.0.2.100/24\n") && inside.contains("unreachable"), "\(inside)")
        #expect(accept(listener, nil, nil) < 0, "the container reached the host's loopback")
        // No raw sockets there (slirp4netns would connect a hand-made frame for 127.0.0.1 to the
        // host's loopback), unless asked for by name.
        func netRaw(_ flags: [String]) throws -> Bool? {
            let (_, caps, _) = try e.strata(["run", "--rm"] + flags + [Self.image, "sh", "-c", "grep CapEff /proc/self/status"])
            return caps.split(separator: "\t").last.flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16) }.map { $0 & (1 << 13) != 0 }
        }
        #expect(try netRaw([]) == false)
        #expect(try netRaw(["--cap-add", "NET_RAW"]) == true)
        #expect(try netRaw(["--network", "none"]) == true)
        let slirp = try #require(try sh(["pgrep", "-U", String(user.uid), "-x", "slirp4netns"]).1.split(separator: "\n").first.flatMap { Int32($0) })
        #expect(try e.strata(["stop", "-t", "1", "web"]).0 == 0)
        #expect(kill(slirp, 0) != 0, "slirp4netns still runs")
        let (_, mounts, _) = try e.strata(["unshare", "cat", "/proc/self/mountinfo"])
        #expect(!mounts.contains(id.trimmingCharacters(in: .whitespacesAndNewlines) + "/netns"), "the namespace is still mounted")
        #expect(!FileManager.default.fileExists(atPath: e.store + "/containers/\(id.trimmingCharacters(in: .whitespacesAndNewlines))/network.json"))
        let (_, sockets, _) = try sh(["ls", e.run + "/strata/slirp"])
        #expect(sockets.isEmpty, "\(sockets)")
        // A bridge needs root, and says what to use instead.
        let (brc, _, berr) = try e.strata(["run", "--rm", "--network", "bridge", Self.image, "true"])
        #expect(brc == 125 && berr.contains("slirp4netns"), "\(berr)")
    }

    @Test func pausePidUsedAgainIsNotJoined() throws {
        let user = try Self.mapped.get()
        let e = try Env(user); defer { e.end() }
        #expect(try e.strata(["load", e.t.sub("docker-25.tar")]).0 == 0)
        let squat = "cp /bin/busybox /strata-pause; touch /only-in-the-container; exec -a sleep /strata-pause 1000"
        #expect(try e.strata(["run", "-d", "--name", "squat", Self.image, "sh", "-c", squat]).0 == 0)
        let (_, pidText, _) = try e.strata(["inspect", "-f", "{{.State.Pid}}", "squat"])
        let squatter = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        for _ in 0..<200 where readString("/proc/\(squatter)/comm") != "strata-pause\n" { usleep(10_000) }
        #expect(readString("/proc/\(squatter)/comm") == "strata-pause\n")
        // The pause process ends and its pid is the squatter's: the record as it would then read.
        let record = try #require(readString(e.run + "/strata/pause.pid")).split(separator: " ")
        let pause = try #require(e.pausePid)
        #expect(record.count == 4 && kill(pause, SIGKILL) == 0)
        for _ in 0..<200 where kill(pause, 0) == 0 { usleep(10_000) }
        try ("\(squatter) " + record.dropFirst().joined(separator: " ")).write(toFile: e.run + "/strata/pause.pid", atomically: true, encoding: .utf8)
        let (rc, out, err) = try e.strata(["unshare", "sh", "-c", "test -e /only-in-the-container && echo INSIDE || echo OUTSIDE"])
        #expect(rc == 0 && out == "OUTSIDE\n", "\(out)\(err)")
        #expect(e.pausePid != nil && e.pausePid != squatter && e.pausePid != pause)
    }

    /// Limits rootless: on cgroup v2, a subtree delegated to the user as systemd delegates
    /// `user@UID.service` (the directory and its cgroup.procs, cgroup.subtree_control and
    /// cgroup.threads theirs, controllers enabled, processes only in leaves) takes the
    /// containers' cgroups and their limits; they are removed after. On v1 (this host's hybrid
    /// layout) nothing is delegated: limits are refused, saying why.
    @Test func delegatedCgroupLimits() throws {
        let user = try Self.mapped.get()
        let e = try Env(user); defer { e.end() }
        #expect(try e.strata(["load", e.t.sub("docker-25.tar")]).0 == 0)
        guard case .v2? = CgroupLayout.current() else {
            let (rc, _, err) = try e.strata(["run", "--rm", "--memory", "64m", Self.image, "true"])
            #expect(rc == 125 && err.contains("no cgroup v2 subtree is delegated to this user"), "\(err)")
            return
        }
        let name = "strata-rootless-\(getpid())"
        let dir = "/sys/fs/cgroup/" + name
        try FileManager.default.createDirectory(atPath: dir + "/shell", withIntermediateDirectories: true)
        defer {
            _ = try? sh(["pkill", "-KILL", "-U", String(user.uid)])
            usleep(200_000)
            _ = try? sh(["sh", "-c", "find \(dir) -depth -type d -exec rmdir {} \\; 2>/dev/null"])
        }
        try "+memory +pids +cpu".write(toFile: dir + "/cgroup.subtree_control", atomically: false, encoding: .utf8)
        for path in [dir, dir + "/shell"] {
            for f in ["", "/cgroup.procs", "/cgroup.subtree_control", "/cgroup.threads"] {
                #expect(chown(path + f, user.uid, user.gid) == 0, "\(path + f)")
            }
        }
        e.cgroup = name + "/shell"
        #expect(try e.strata(["info"]).1.contains("Cgroups: v2"))
        let script = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; cat /proc/self/cgroup"
        let (rc, out, err) = try e.strata(["run", "--rm", "--memory", "64m", "--pids-limit", "50", Self.image, "sh", "-c", script])
        #expect(rc == 0 && out.hasPrefix("67108864\n50\n0::/\n"), "\(out)\(err)")
        #expect(!err.contains("no cgroup"), "\(err)")
        // Under the delegated subtree, and gone with the container.
        let (_, left, _) = try sh(["find", dir, "-mindepth", "1", "-type", "d"])
        #expect(left.split(separator: "\n").allSatisfy { $0.hasSuffix("/shell") || !$0.contains("/strata/") || $0.split(separator: "/").last?.count != 64 }, "\(left)")
        #expect(left.contains(dir + "/strata/"), "the store's cgroups are under the delegated one: \(left)")
    }

    /// Registries as the user: `login` stores the credentials 0600 in the user's runtime
    /// directory, `pull` over TLS with them gives root's image ID, and `push` sends it back.
    @Test func loginPullPushAsTheUser() throws {
        let user = try Self.mapped.get()
        let e = try Env(user); defer { e.end() }
        let registry = try TestRegistry(in: e.t.sub("registry"), tls: true, user: ("strata", "s3cret-pw"))
        defer { registry.stop() }
        let expected = try Expected.load()
        let ref = "\(registry.host)/strata/busybox:a"
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: ref)
        let certs = try #require(registry.certDirectory)
        #expect(try sh(["chmod", "-R", "a+rX", certs]).0 == 0)
        let (lrc, lout, lerr) = try e.strata(["login", "--cert-dir", certs, "-u", "strata", "--password-stdin", registry.host],
                                            stdin: Array("s3cret-pw\n".utf8))
        #expect(lrc == 0 && lout.contains("Login Succeeded"), "\(lerr)")
        let auth = try #require(lstatPath(e.run + "/strata/auth.json"))
        #expect(auth.st_mode & 0o777 == 0o600 && auth.st_uid == user.uid)
        let (prc, pout, perr) = try e.strata(["pull", "--cert-dir", certs, ref])
        #expect(prc == 0 && pout.contains(expected.image_a.id), "\(pout)\(perr)")
        let (src, _, serr) = try e.strata(["push", "--cert-dir", certs, ref, "\(registry.host)/strata/again:1"])
        #expect(src == 0, "\(serr)")
        let (rrc, rout, rerr) = try e.strata(["run", "--rm", ref, "cat", "/usr/share/strata/hello.txt"])
        #expect(rrc == 0 && !rout.isEmpty, "\(rerr)")
    }

    /// A user without a subordinate range: warned once, every file theirs, containers run as
    /// root of a one-id namespace; another user in the container is refused, saying why.
    @Test func singleIDMapping() throws {
        let user = try Self.single.get()
        let e = try Env(user); defer { e.end() }
        let (rc, _, err) = try e.strata(["load", e.t.sub("docker-25.tar")])
        #expect(rc == 0 && err.contains("no range for \(user.name) in /etc/subuid") && err.contains("usermod --add-subuids"), "\(err)")
        #expect(!(try e.strata(["images"]).2.contains("no range")), "the warning is said once")
        let (_, info, _) = try e.strata(["info"])
        #expect(info.contains("one id only"), "\(info)")
        let (rrc, rout, rerr) = try e.strata(["run", "--rm", Self.image, "sh", "-c", "id -u; stat -c %u /bin/busybox"])
        #expect(rrc == 0 && rout == "0\n0\n", "\(rout)\(rerr)")
        let (nrc, _, nerr) = try e.strata(["run", "--rm", "-u", "nobody", Self.image, "true"])
        #expect(nrc != 0 && !nerr.isEmpty)
        let (src, _, _) = try e.strata(["save", Self.image, "-o", e.run + "/s.tar"])
        #expect(src == 0)
        let rootStore = TempDir("strata-rootless-root"); defer { rootStore.remove() }
        #expect(try strataCLI(["load", e.t.sub("docker-25.tar")], root: rootStore.path).0 == 0)
        #expect(try strataCLI(["save", Self.image, "-o", rootStore.sub("s.tar")], root: rootStore.path).0 == 0)
        let (mineSaved, rootSaved) = (try Data(contentsOf: URL(fileURLWithPath: e.run + "/s.tar")), try Data(contentsOf: URL(fileURLWithPath: rootStore.sub("s.tar"))))
        #expect(mineSaved == rootSaved)
    }
}
