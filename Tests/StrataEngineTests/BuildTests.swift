import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataEngine
@testable import StrataSystem

/// `strata build`: a multi-stage Containerfile with every instruction, built through real
/// containers; the cache; the same image ID from fresh stores on different days; the same tree
/// as buildah's; the saved image run by podman; the push to a real registry.
@Suite(.serialized, .enabled(if: isRoot && overlayWorks && cgroupLayout != nil, "needs root, overlayfs and cgroups"))
struct BuildTests {
    static let base = "example.com/strata/busybox:gzip"

    /// A store with the busybox image and a context directory.
    final class Env {
        let t = TempDir("strata-build")
        var root: String { t.sub("store") }
        var context: String { t.sub("ctx") }
        init(store name: String = "store") throws {
            try FileManager.default.createDirectory(atPath: t.sub("ctx"), withIntermediateDirectories: true)
            try load(into: t.sub(name))
        }
        func load(into root: String) throws {
            let (rc, _, err) = try strataCLI(["-q", "load", fixtures + "/oci-gzip"], root: root)
            guard rc == 0 else { throw StrataError(.internalError, err) }
        }
        func write(_ path: String, _ text: String, mode: Int = 0o644) throws {
            let full = context + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: false, encoding: .utf8)
            chmod(full, mode_t(mode))
        }
        /// `build --json` in `root`: (exit code, the parsed result, stderr).
        func build(_ args: [String], root: String? = nil, env: [String: String] = [:]) throws -> (Int32, [String: Any], String) {
            let (rc, out, err) = try strataCLI(["build", "--network", "none", "--json"] + args + [context], root: root ?? self.root, env: env)
            let json = (try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any] ?? [:]
            return (rc, json, err)
        }
        func cli(_ args: [String], root: String? = nil) throws -> (Int32, String, String) {
            try strataCLI(args, root: root ?? self.root)
        }
        /// A build started in the background and sent SIGINT half a second after its progress
        /// shows `step`; its exit code.
        func interruptedBuild(tag: String, once step: String) throws -> Int32 {
            let log = t.sub("interrupted-\(tag).err")
            let pid = try spawn([strataBinary, "--root", root, "build", "--network", "none", "-t", tag, context], stderr: log)
            var running = false
            for _ in 0..<100 where !running {
                usleep(100_000)
                running = (try? String(contentsOfFile: log, encoding: .utf8))?.contains(step) == true
            }
            usleep(500_000)
            kill(pid, SIGINT)
            return reap(pid)
        }

        /// No container, mount or leftover of the build in the store.
        func expectClean(_ root: String? = nil) throws {
            let store = root ?? self.root
            #expect(!MountTable.mountPoints().contains { $0.hasPrefix(store) }, "mounts left")
            let (_, ps, _) = try strataCLI(["ps", "-a", "-q"], root: store)
            #expect(ps.isEmpty, "containers left: \(ps)")
            let tmp = (try? FileManager.default.contentsOfDirectory(atPath: store + "/tmp")) ?? []
            #expect(tmp.isEmpty, "staging left: \(tmp)")
        }
        deinit { t.remove() }
    }

    static func steps(_ json: [String: Any]) -> [[String: Any]] { json["steps"] as? [[String: Any]] ?? [] }
    /// The layer steps' cache results, in order.
    static func cached(_ json: [String: Any]) -> [Bool] { steps(json).compactMap { $0["cached"] as? Bool } }

    static let multiStage = #"""
        # syntax=docker/dockerfile:1
        # A comment before anything; the directive above is kept as BuildKit does.
        ARG BASE=example.com/strata/busybox:gzip
        FROM ${BASE} AS build
        ARG GREETING=hello
        ENV APP=/app \
            MODE="two words"
        WORKDIR $APP
        COPY --chown=1000:1000 --chmod=0640 src/ ./src/
        COPY data.tar ./plain.tar
        ADD data.tar ./unpacked/
        RUN echo "$GREETING from $MODE" > greeting.txt \
        # a comment inside a continued line is dropped
         && mkdir -p /out && cp greeting.txt /out/ && ls src > /out/listing \
         && cat unpacked/inside.txt > /out/inside.txt
        RUN ["/bin/sh", "-c", "echo exec-form > /out/exec.txt"]
        SHELL ["/bin/sh", "-ec"]
        RUN echo "shell $0" > /out/shell.txt && mkdir /out/u && chown 1000 /out/u
        USER 1000:1000
        RUN id -u > /out/u/uid.txt

        FROM scratch AS assets
        COPY --from=build /out/ /out/
        COPY static/ /static/

        FROM example.com/strata/busybox:gzip
        LABEL org.example.title="build test" version=1
        EXPOSE 8080 53/udp
        VOLUME /data
        STOPSIGNAL SIGINT
        HEALTHCHECK --interval=5s --timeout=3s CMD test -f /srv/greeting.txt
        ONBUILD RUN echo triggered > /tmp/onbuild.txt
        COPY --from=assets /out /srv
        COPY --from=assets /static/ /srv/static/
        WORKDIR /srv
        USER 1000
        ENTRYPOINT ["/bin/sh", "-c"]
        CMD ["cat /srv/greeting.txt /srv/exec.txt /srv/shell.txt /srv/inside.txt /srv/listing && ls /srv/static"]
        """#

    /// The context of `multiStage`: sources, a tar for ADD, static files, a .dockerignore.
    static func makeContext(_ env: Env) throws {
        try env.write("Containerfile", multiStage)
        try env.write("src/a.txt", "a\n")
        try env.write("src/b.txt", "b\n")
        try env.write("src/secret.key", "must not be copied\n")
        try env.write(".dockerignore", "# keys stay out\n**/*.key\nnotes/\n")
        try env.write("notes/todo", "ignored\n")
        try env.write("static/index.html", "<p>hi</p>\n")
        try env.write("archive/inside.txt", "from the tar\n")
        let (rc, _, err) = try sh(["tar", "-C", env.context + "/archive", "-cf", env.context + "/data.tar", "inside.txt"])
        #expect(rc == 0, "\(err)")
    }

    static let expectedOutput = "hello from two words\nexec-form\nshell /bin/sh\nfrom the tar\na.txt\nb.txt\nindex.html\n"

    @Test func everyInstructionInAMultiStageBuild() throws {
        let env = try Env()
        try BuildTests.makeContext(env)
        let (rc, json, err) = try env.build(["-t", "built:1"])
        #expect(rc == 0, "\(err)")
        let id = try #require(json["id"] as? String)
        #expect(json["tags"] as? [String] == ["localhost/built:1"] || (json["tags"] as? [String])?.first?.hasSuffix("built:1") == true)
        #expect(!BuildTests.cached(json).contains(true), "a first build in a fresh store has nothing cached")
        try env.expectClean()

        // The image runs as built, as user 1000 in /srv.
        let (rrc, out, rerr) = try env.cli(["run", "--rm", "--network", "none", "built:1"])
        #expect(rrc == 0, "\(rerr)")
        #expect(out == BuildTests.expectedOutput)
        let (_, who, _) = try env.cli(["run", "--rm", "--network", "none", "built:1", "id -u; pwd; cat /srv/u/uid.txt"])
        #expect(who == "1000\n/srv\n1000\n")

        // The config carries what the metadata instructions said.
        let (irc, inspect, _) = try env.cli(["inspect", "built:1"])
        #expect(irc == 0)
        let doc = try #require((try JSONSerialization.jsonObject(with: Data(inspect.utf8)) as? [[String: Any]])?.first)
        let cfg = try #require(doc["Config"] as? [String: Any])
        // The base image's label stays beside the new ones.
        #expect((cfg["Labels"] as? [String: String]) == ["org.example.title": "build test", "version": "1", "org.strata.fixture": "yes"])
        #expect(Set((cfg["ExposedPorts"] as? [String: Any])?.keys.map { $0 } ?? []) == ["8080/tcp", "53/udp"])
        #expect((cfg["Volumes"] as? [String: Any])?.keys.first == "/data")
        #expect(cfg["StopSignal"] as? String == "SIGINT")
        #expect(cfg["User"] as? String == "1000")
        #expect(cfg["WorkingDir"] as? String == "/srv")
        #expect(cfg["Entrypoint"] as? [String] == ["/bin/sh", "-c"])
        #expect(cfg["OnBuild"] as? [String] == ["RUN echo triggered > /tmp/onbuild.txt"])
        let health = try #require(cfg["Healthcheck"] as? [String: Any])
        #expect(health["Test"] as? [String] == ["CMD-SHELL", "test -f /srv/greeting.txt"])
        #expect(health["Interval"] as? Int == 5_000_000_000)
        #expect(doc["Created"] as? String == "1970-01-01T00:00:00Z")

        // The first stage's files: owners and modes from --chown/--chmod, .dockerignore honoured,
        // COPY of a tar keeps it a file, ADD unpacks it.
        let (brc, bjson, berr) = try env.build(["--target", "build", "-t", "stage:build"])
        #expect(brc == 0, "\(berr)")
        #expect(BuildTests.cached(bjson).allSatisfy { $0 }, "the build stage was built before: \(bjson)")
        let (src, listing, lerr) = try env.cli(["run", "--rm", "--network", "none", "-u", "0", "stage:build",
                                                "sh", "-c", "stat -c '%n %u:%g %a' src src/*; ls /app; tar -tf plain.tar; ls notes 2>&1 || true"])
        #expect(src == 0, "\(lerr)")
        #expect(listing.contains("src/a.txt 1000:1000 640"), "\(listing)")
        #expect(listing.contains("src/b.txt 1000:1000 640"), "\(listing)")
        #expect(!listing.contains("secret.key"), "\(listing)")
        #expect(listing.contains("plain.tar") && listing.contains("unpacked") && listing.contains("inside.txt"), "\(listing)")

        // A child build runs the ONBUILD trigger and does not pass it on.
        try env.write("child/Containerfile", "FROM built:1\nUSER 0\nRUN test -f /tmp/onbuild.txt && echo ok\n")
        let (crc, _, cerr) = try strataCLI(["build", "--network", "none", "-q", "-t", "child", env.context + "/child"], root: env.root)
        #expect(crc == 0, "\(cerr)")
        let (_, childCfg, _) = try env.cli(["inspect", "-f", "{{json .Config.OnBuild}}", "child"])
        #expect(!childCfg.contains("onbuild"), "\(childCfg)")
        let (_, childOut, _) = try env.cli(["run", "--rm", "--network", "none", "child", "cat /tmp/onbuild.txt"])
        #expect(childOut == "triggered\n")

        // Intermediate images are the cache: hidden from `images`, shown with -a.
        let (_, shown, _) = try env.cli(["images", "-q"])
        let (_, all, _) = try env.cli(["images", "-a", "-q"])
        #expect(all.split(separator: "\n").count > shown.split(separator: "\n").count)
        #expect(id.hasPrefix("sha256:"))
        try env.expectClean()
    }

    @Test func podmanRunsTheSavedImageAsStrataDoes() throws {
        let env = try Env()
        try BuildTests.makeContext(env)
        let archive = env.t.sub("built.tar")
        let (rc, json, err) = try env.build(["-t", "example.com/built:2", "--output", "type=docker-archive,dest=\(archive)"])
        #expect(rc == 0, "\(err)")
        #expect(json["id"] is String)
        let (_, ours, _) = try env.cli(["run", "--rm", "--network", "none", "example.com/built:2"])
        #expect(ours == BuildTests.expectedOutput)
        let podman = ["podman", "--root", env.t.sub("podman"), "--runroot", env.t.sub("podman-run"), "--storage-driver", "vfs",
                      "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
        let (lrc, _, lerr) = try sh(podman + ["load", "-i", archive])
        #expect(lrc == 0, "\(lerr)")
        // (Limits this machine's hard ones allow: podman's defaults are above them.)
        let (prc, theirs, perr) = try sh(podman + ["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "example.com/built:2"])
        #expect(prc == 0, "\(perr)")
        #expect(theirs == ours)
        _ = try? sh(podman + ["system", "reset", "-f"])
        // An oci-dir output holds the same image (its config digest is the ID).
        let (orc, ojson, oerr) = try env.build(["--output", "type=oci-dir,dest=\(env.t.sub("oci"))"])
        #expect(orc == 0, "\(oerr)")
        #expect(ojson["id"] as? String == json["id"] as? String)
        let index = try String(contentsOfFile: env.t.sub("oci") + "/index.json", encoding: .utf8)
        #expect(index.contains("manifest"))
    }

    @Test func theCacheAndWhatInvalidatesIt() throws {
        let env = try Env()
        try env.write("Containerfile", """
            FROM example.com/strata/busybox:gzip
            RUN echo one > /one
            COPY first.txt /first.txt
            RUN cat /first.txt > /copy-of-first
            COPY second.txt /second.txt
            CMD ["cat", "/copy-of-first"]
            """)
        try env.write("first.txt", "first\n")
        try env.write("second.txt", "second\n")
        let (rc1, j1, e1) = try env.build(["-t", "c:1"])
        #expect(rc1 == 0, "\(e1)")
        #expect(BuildTests.cached(j1) == [false, false, false, false])
        // Unchanged: every step from the cache, nothing run, the same image.
        let (rc2, j2, e2) = try env.build(["-t", "c:2"])
        #expect(rc2 == 0, "\(e2)")
        #expect(BuildTests.cached(j2) == [true, true, true, true])
        #expect(j2["id"] as? String == j1["id"] as? String)
        // A touched file with the same content is the same content (times are clamped).
        utime(env.context + "/first.txt", nil)
        let (_, j3, _) = try env.build([])
        #expect(BuildTests.cached(j3) == [true, true, true, true])
        // A changed COPY source: that step and every one after it run again.
        try env.write("first.txt", "changed\n")
        let (rc4, j4, e4) = try env.build(["-t", "c:3"])
        #expect(rc4 == 0, "\(e4)")
        #expect(BuildTests.cached(j4) == [true, false, false, false])
        #expect(j4["id"] as? String != j1["id"] as? String)
        let (_, out, _) = try env.cli(["run", "--rm", "--network", "none", "c:3"])
        #expect(out == "changed\n")
        // --no-cache runs everything and, being reproducible, makes the same image.
        let (rc5, j5, e5) = try env.build(["--no-cache"])
        #expect(rc5 == 0, "\(e5)")
        #expect(BuildTests.cached(j5) == [false, false, false, false])
        #expect(j5["id"] as? String == j4["id"] as? String)
        try env.expectClean()
    }

    @Test func theSameImageIDFromFreshStoresOnDifferentDays() throws {
        let env = try Env()
        try BuildTests.makeContext(env)
        let (rc1, j1, e1) = try env.build([])
        #expect(rc1 == 0, "\(e1)")
        // Another store, a second later, the context's files touched: the same bytes.
        sleep(1)
        for f in ["src/a.txt", "static/index.html", "data.tar", "Containerfile"] { utime(env.context + "/" + f, nil) }
        try env.load(into: env.t.sub("other"))
        let (rc2, j2, e2) = try env.build([], root: env.t.sub("other"))
        #expect(rc2 == 0, "\(e2)")
        #expect(j1["id"] as? String != nil && j1["id"] as? String == j2["id"] as? String)
        // SOURCE_DATE_EPOCH (or --timestamp) sets the time written: both ways the same image.
        let (_, j3, _) = try env.build([], env: ["SOURCE_DATE_EPOCH": "1700000000"])
        let (_, j4, _) = try env.build(["--timestamp", "1700000000"], root: env.t.sub("other"))
        #expect(j3["id"] as? String != j1["id"] as? String)
        #expect(j3["id"] as? String == j4["id"] as? String)
        let (_, created, _) = try env.cli(["inspect", "-f", "{{.Created}}", try #require(j3["id"] as? String)])
        #expect(created.trimmingCharacters(in: .whitespacesAndNewlines) == "2023-11-14T22:13:20Z")

        // commit --timestamp: the same change committed at different times is the same image.
        var ids: [String] = []
        for name in ["x", "y"] {
            let (crc, _, cerr) = try env.cli(["run", "--network", "none", "--name", name, BuildTests.base, "sh", "-c", "echo same > /f"])
            #expect(crc == 0, "\(cerr)")
            sleep(1)
            let (mrc, id, merr) = try env.cli(["commit", "--timestamp", "1700000000", name])
            #expect(mrc == 0, "\(merr)")
            ids.append(id)
            _ = try env.cli(["rm", name])
        }
        #expect(ids[0] == ids[1])
        try env.expectClean()
        try env.expectClean(env.t.sub("other"))
    }

    @Test func theSameTreeAsBuildah() throws {
        let env = try Env()
        try env.write("Containerfile", """
            FROM example.com/strata/busybox:gzip
            WORKDIR /app
            COPY src/ ./src/
            COPY --chown=1000:1000 --chmod=0750 tool.sh /usr/local/bin/tool
            ADD data.tar /unpacked/
            RUN mkdir -p /var/lib/thing && echo made > /var/lib/thing/state && chmod 0600 /var/lib/thing/state \\
             && rm -rf /etc/motd /usr/share/udhcpc && ln -s /app/src/a.txt /app/link
            ENV PATH=/usr/local/bin:$PATH
            CMD ["tool"]
            """)
        try env.write("src/a.txt", "a\n")
        try env.write("src/sub/b.txt", "b\n", mode: 0o600)
        try env.write("tool.sh", "#!/bin/sh\necho tool\n", mode: 0o755)
        try env.write("archive/inside.txt", "from the tar\n")
        _ = try sh(["tar", "-C", env.context + "/archive", "--owner=7", "--group=8", "-cf", env.context + "/data.tar", "inside.txt"])
        let (rc, json, err) = try env.build(["-t", "tree:1"])
        #expect(rc == 0, "\(err)")
        let id = try #require(json["id"] as? String)

        let buildah = ["buildah", "--root", env.t.sub("buildah"), "--runroot", env.t.sub("buildah-run"), "--storage-driver", "vfs"]
        defer { _ = try? sh(buildah + ["rm", "--all"]); _ = try? sh(["umount", "-R", env.t.sub("buildah")]) }
        let (prc, pulled, perr) = try sh(buildah + ["pull", "-q", "oci:\(fixtures)/oci-gzip"])
        #expect(prc == 0, "\(perr)")
        _ = try sh(buildah + ["tag", pulled.trimmingCharacters(in: .whitespacesAndNewlines), BuildTests.base])
        let (brc, _, berr) = try sh(buildah + ["bud", "--pull-never", "--isolation", "chroot", "-t", "tree:1",
                                               "-f", env.context + "/Containerfile", env.context])
        #expect(brc == 0, "\(berr)")
        let (frc, ctr, ferr) = try sh(buildah + ["from", "--pull-never", "tree:1"])
        #expect(frc == 0, "\(ferr)")
        let (mrc, theirs, merr) = try sh(buildah + ["mount", ctr.trimmingCharacters(in: .whitespacesAndNewlines)])
        #expect(mrc == 0, "\(merr)")

        let ours = env.t.sub("ours")
        let (erc, _, eerr) = try env.cli(["bundle", id, ours])
        #expect(erc == 0, "\(eerr)")
        // What a runtime puts in a tree for a RUN (buildah's mount points) is not the image's.
        let runtimeFiles: Set<String> = ["etc/hosts", "etc/resolv.conf", "etc/hostname", "run/.containerenv", "proc", "sys", "dev", "run"]
        let a = try TreeListing.list(ours + "/rootfs", ignoring: runtimeFiles)
        let b = try TreeListing.list(theirs.trimmingCharacters(in: .whitespacesAndNewlines), ignoring: runtimeFiles)
        let differences = TreeListing.diff(a, b)
        #expect(differences.isEmpty, "strata | buildah:\n\(differences.joined(separator: "\n"))")
        #expect(a["app/src/sub/b.txt"]?.hasPrefix("600 0:0 file") == true, "\(a["app/src/sub/b.txt"] ?? "absent")")
        #expect(a["usr/local/bin/tool"]?.hasPrefix("750 1000:1000 file") == true, "\(a["usr/local/bin/tool"] ?? "absent")")
        #expect(a["unpacked/inside.txt"]?.hasPrefix("644 7:8 file") == true, "\(a["unpacked/inside.txt"] ?? "absent")")
        #expect(a["etc/motd"] == nil && a["var/lib/thing/state"]?.hasPrefix("600 0:0") == true)
    }

    @Test func errorsNameTheFileAndLineAndLeaveNothing() throws {
        let env = try Env()
        try env.write("Containerfile", "FROM example.com/strata/busybox:gzip\nRUN echo fine\nRUN exit 3\n")
        let (rc, _, err) = try env.build([])
        #expect(rc == 1, "\(err)")
        #expect(err.contains("Containerfile:3: RUN"), "\(err)")
        #expect(err.contains("exit code 3"), "\(err)")
        try env.expectClean()
        try env.write("Containerfile", "FROM example.com/strata/busybox:gzip\nFROB the knob\n")
        let (rc2, _, err2) = try env.build([])
        #expect(rc2 != 0 && err2.contains("Containerfile:2: FROB") && err2.contains("unknown instruction"), "\(err2)")
        try env.write("Containerfile", "FROM example.com/strata/busybox:gzip\nCOPY missing.txt /\n")
        let (rc3, _, err3) = try env.build([])
        #expect(rc3 == 2 && err3.contains("Containerfile:2: COPY") && err3.contains("missing.txt"), "\(err3)")
        // A symlink in the context never leads out of it.
        try FileManager.default.createSymbolicLink(atPath: env.context + "/escape", withDestinationPath: "/etc")
        try env.write("Containerfile", "FROM example.com/strata/busybox:gzip\nCOPY escape/passwd /stolen\n")
        let (rc4, _, err4) = try env.build([])
        #expect(rc4 == 2, "\(err4)")
        try env.write("Containerfile", "FROM scratch\nRUN true\n")
        let (rc5, _, err5) = try env.build([])
        #expect(rc5 != 0 && err5.contains("Containerfile:2: RUN"), "\(err5)")
        try env.expectClean()

        // Ctrl-C during a RUN ends the step's command (pid 1 of a container ignores SIGINT
        // unless it is strata-init) and with it the build: no image, nothing left.
        try env.write("Containerfile", "FROM example.com/strata/busybox:gzip\nRUN sleep 30\nRUN echo never\n")
        let started = Date()
        #expect(try env.interruptedBuild(tag: "cancelled", once: "RUN sleep 30") == 1)
        #expect(Date().timeIntervalSince(started) < 20 * timeScale, "the build went on after Ctrl-C")
        let (_, cancelledImage, _) = try env.cli(["images", "-q", "cancelled"])
        #expect(cancelledImage.isEmpty)
        try env.expectClean()
    }

    /// What an attacker's review of builds found, each shut and kept shut.
    @Test func hostileFilesAndImages() throws {
        let env = try Env()
        func build(_ file: String, _ args: [String] = [], umask mask: String = "022") throws -> (Int32, String, String) {
            try env.write("Containerfile", file)
            return try sh(["sh", "-c", "umask \(mask); exec \"$@\"", "sh", strataBinary, "--root", env.root, "build", "-q",
                           "--network", "none"] + args + [env.context])
        }
        // A step cannot widen the build's network (nor can a base image's ONBUILD).
        let (h, _, herr) = try build("FROM \(BuildTests.base)\nRUN --network=host true\n")
        #expect(h != 0 && herr.contains("--network host"), "\(herr)")

        // A bare KEY in a base image's Env is never filled from strata's environment.
        let edited = try OCIEditor(copying: fixtures + "/oci-gzip", to: env.t.sub("bare-env"))
        var config = try edited.config
        var inner = config["config"] as? [String: Any] ?? [:]
        inner["Env"] = ["PATH=/bin:/usr/bin", "STRATA_TEST_SECRET"]
        config["config"] = inner
        try edited.setConfig(config)
        #expect(try env.cli(["load", "--tag", "bare:1", edited.path]).0 == 0)
        try env.write("Containerfile", "FROM bare:1\nRUN echo \"[$STRATA_TEST_SECRET]\" > /leak\n")
        let (lrc, _, lerr) = try strataCLI(["build", "-q", "--network", "none", "-t", "leak:1", env.context], root: env.root,
                                                env: ["STRATA_TEST_SECRET": "hunter2"])
        #expect(lrc == 0, "\(lerr)")
        let (_, leak, _) = try env.cli(["run", "--rm", "--network", "none", "leak:1", "cat", "/leak"])
        #expect(leak == "[]\n")

        // --output of the image's files: no setuid program, no device node, the caller's.
        try env.write("tool", "#!/bin/sh\n", mode: 0o755)
        let out = env.t.sub("files")
        let (orc, _, oerr) = try build("FROM \(BuildTests.base)\nCOPY --chmod=4755 tool /tool\nRUN mknod /disk b 7 0\n", ["--output", out])
        #expect(orc == 0, "\(oerr)")
        #expect(lstatPath(out + "/tool").map { $0.st_mode & 0o7777 } == 0o755)
        #expect(lstatPath(out + "/disk") == nil && lstatPath(out + "/bin/busybox") != nil)

        // The umask of the shell that runs strata is not in the image.
        let file = "FROM \(BuildTests.base)\nRUN mkdir /made && echo x > /made/f\n"
        let (_, a, _) = try build(file, ["--no-cache"], umask: "022")
        let (_, b, _) = try build(file, ["--no-cache"], umask: "077")
        #expect(!a.isEmpty && a == b)

        // --chown through an ARG, and ARG values that join the same way, are other keys.
        try env.write("f", "f\n")
        let chown = "FROM \(BuildTests.base)\nARG OWNER\nCOPY --chown=${OWNER} f /f\n"
        _ = try build(chown, ["--build-arg", "OWNER=1000"])
        let (_, second, _) = try build(chown, ["--build-arg", "OWNER=2000", "-t", "owner:2"])
        #expect(!second.isEmpty)
        let (_, owner, _) = try env.cli(["run", "--rm", "--network", "none", "owner:2", "stat", "-c", "%u", "/f"])
        #expect(owner == "2000\n")
        let args = "FROM \(BuildTests.base)\nARG A\nARG B\nRUN echo \"[$A][$B]\" > /out\n"
        let (_, one, _) = try build(args, ["--build-arg", "A=x B=y", "--build-arg", "B="])
        let (_, two, _) = try build(args, ["--build-arg", "A=x", "--build-arg", "B=y"])
        #expect(!one.isEmpty && one != two)

        // A symlink to a file .dockerignore excludes does not bring it in.
        try env.write(".dockerignore", "secret.env\n")
        try env.write("secret.env", "TOKEN=1\n")
        try FileManager.default.createSymbolicLink(atPath: env.context + "/innocent", withDestinationPath: "secret.env")
        let (src, _, serr) = try build("FROM \(BuildTests.base)\nCOPY innocent /t\n")
        #expect(src == 2 && serr.contains("innocent"), "\(serr)")

        // Nor does a symlink whose target steps back (`..`) out of another symlink's directory:
        // `x/..` is x's target's parent, as the kernel resolves it, not the context's root.
        try FileManager.default.createDirectory(atPath: env.context + "/d/e", withIntermediateDirectories: true)
        try env.write("d/s/key", "SECRET\n")
        try env.write("s/key", "decoy\n")
        try FileManager.default.createSymbolicLink(atPath: env.context + "/x", withDestinationPath: "d/e")
        try FileManager.default.createSymbolicLink(atPath: env.context + "/a", withDestinationPath: "x/../s")
        try env.write(".dockerignore", "secret.env\nd/s\n")
        let (drc, _, derr) = try build("FROM \(BuildTests.base)\nCOPY a/key /k\n")
        #expect(drc == 2, "\(derr)")
        // A NUL in a source is refused (an open would stop at it, the ignore check would not).
        try env.write("secret", "s\n")
        try env.write(".dockerignore", "secret\n")
        let (nrc, _, nerr) = try build("FROM \(BuildTests.base)\nCOPY [\"secret\\u0000x\", \"/x\"]\n")
        #expect(nrc == 64 && nerr.contains("NUL"), "\(nerr)")

        // `.wh.` names from the context are refused in a scratch stage too.
        try env.write(".wh.etc", "x\n")
        let (wrc, _, werr) = try build("FROM scratch\nCOPY .wh.etc /\n")
        #expect(wrc != 0 && werr.contains(".wh."), "\(werr)")

        // Input that used to trap: errors, each naming its line.
        for (text, what) in [("EXPOSE -", "EXPOSE"), ("HEALTHCHECK --interval=9999999999999h CMD true", "HEALTHCHECK"),
                             ("ONBUILD ONBUILD RUN true", "ONBUILD")] {
            let (rc, _, err) = try build("FROM \(BuildTests.base)\n\(text)\n")
            #expect(rc != 0 && err.contains(":2:") && err.contains(what), "\(text): \(err)")
        }
        let (trc, _, terr) = try build("FROM \(BuildTests.base)\n", ["--timestamp", "9223372036854775807"])
        #expect(trc == 64 && terr.contains("--timestamp"), "\(terr)")
        let nested = String(repeating: "${a:-", count: 200) + "x" + String(repeating: "}", count: 200)
        let (xrc, _, xerr) = try build("FROM \(BuildTests.base)\nENV A=\(nested)\n")
        #expect(xrc != 0 && xerr.contains("nested"), "\(xerr)")
        let (orc2, _, oerr2) = try build("FROM \(BuildTests.base)\nONBUILD ONBUILD\u{0C}RUN true\n")
        #expect(orc2 != 0 && oerr2.contains("ONBUILD"), "\(oerr2)")
        let long = String(repeating: "a", count: 3000)
        let started0 = Date()
        let (crc, _, cerr) = try build("FROM \(BuildTests.base)\nARG A=\(long)\nENV B=${A//*z/y}\n")
        #expect(crc != 0 && cerr.contains("pattern substitution") && Date().timeIntervalSince(started0) < 10 * timeScale, "\(cerr)")
        // The time written is in every step's key: another --timestamp is another image.
        let (_, t1, _) = try build("FROM \(BuildTests.base)\nRUN echo hi > /f\n", ["--timestamp", "100"])
        let (_, t2, _) = try build("FROM \(BuildTests.base)\nRUN echo hi > /f\n", ["--timestamp", "2000000000"])
        #expect(!t1.isEmpty && t1 != t2)

        // A step's process that catches the signal does not keep the build going.
        try env.write("Containerfile", "FROM \(BuildTests.base)\nRUN trap 'echo caught' INT TERM; for i in $(seq 100); do sleep 0.1; done\n")
        #expect(try env.interruptedBuild(tag: "trapped", once: "RUN trap") == 1)
        #expect(try env.cli(["images", "-q", "trapped"]).1.isEmpty)
        try env.expectClean()
    }

    @Test func pushesToARegistry() throws {
        let env = try Env()
        let registry = try TestRegistry(in: env.t.sub("registry"))
        defer { registry.stop() }
        try env.write("Containerfile", "FROM example.com/strata/busybox:gzip\nCOPY hello.txt /\nCMD [\"cat\", \"/hello.txt\"]\n")
        try env.write("hello.txt", "pushed\n")
        let ref = "\(registry.host)/strata/built:1"
        let (rc, json, err) = try env.build(["-t", ref, "--push", "--tls-verify=false"])
        #expect(rc == 0, "\(err)")
        // Another store pulls it: the same image ID, and it runs.
        let (prc, pulled, perr) = try strataCLI(["pull", "--tls-verify=false", ref], root: env.t.sub("other"))
        #expect(prc == 0, "\(perr)")
        #expect(pulled.trimmingCharacters(in: .whitespacesAndNewlines) == json["id"] as? String)
        let (_, out, _) = try strataCLI(["run", "--rm", "--network", "none", ref], root: env.t.sub("other"))
        #expect(out == "pushed\n")
    }
}
