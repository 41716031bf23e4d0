import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataSystem

/// `strata cp` with Docker's rules, and tried as an attacker in the container would: symlinks
/// to host paths, a directory swapped for a symlink while the copy runs, a hostile tar on
/// standard input, set-id files and devices. Part of the `RunTests` suite (the escape suite).
extension RunTests {
    func cp(_ e: Env, _ args: [String], stdin: [UInt8]? = nil) throws -> (Int32, String, String) {
        try strataCLI(["cp"] + args, root: e.root, stdin: stdin)
    }

    func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    /// Docker's rules for where a copy lands, both ways, on a stopped container; owners as
    /// Docker sets them (root in the container, the caller on the host; -a keeps them).
    @Test func cpFollowsDockersRules() throws {
        let e = try Env()
        let host = TempDir("strata-cp"); defer { host.remove() }
        try FileManager.default.createDirectory(atPath: host.sub("src/sub"), withIntermediateDirectories: true)
        try "a\n".write(toFile: host.sub("src/a"), atomically: false, encoding: .utf8)
        try "b\n".write(toFile: host.sub("src/sub/b"), atomically: false, encoding: .utf8)
        #expect(chown(host.sub("src/a"), 1234, 4321) == 0)
        #expect(try strataCLI(["run", "--name", "c", RunTests.image, "sh", "-c", "mkdir /dir && echo x > /dir/x && chown 7:8 /dir/x"], root: e.root).0 == 0)
        // In: into an existing directory by name; to a new name; the contents of a directory.
        #expect(try cp(e, [host.sub("src"), "c:/dir"]).0 == 0)
        #expect(try cp(e, [host.sub("src/a"), "c:/dir/renamed"]).0 == 0)
        #expect(try cp(e, [host.sub("src") + "/.", "c:/contents"]).0 == 0)
        #expect(try cp(e, ["-a", host.sub("src/a"), "c:/kept"]).0 == 0)
        // Out: what landed, copied back to the host.
        #expect(try cp(e, ["c:/dir", host.sub("out")]).0 == 0)
        #expect(read(host.sub("out/x")) == "x\n" && read(host.sub("out/src/a")) == "a\n" && read(host.sub("out/src/sub/b")) == "b\n")
        #expect(read(host.sub("out/renamed")) == "a\n")
        #expect(try cp(e, ["c:/contents/.", host.sub("out")]).0 == 0)   // existing directory: contents merged in
        #expect(read(host.sub("out/a")) == "a\n" && read(host.sub("out/sub/b")) == "b\n")
        // Owners: in without -a root, with -a the source's; out without -a the caller, with -a the container's.
        let (_, owners, _) = try sh(["bash", "-c", "'\(strataBinary)' --root '\(e.root)' cp c:/ - | tar -tv --numeric-owner | grep -E ' (dir/src/a|kept|dir/x)$' | awk '{print $2, $6}'"])
        #expect(owners.contains("0/0 dir/src/a") && owners.contains("1234/4321 kept") && owners.contains("7/8 dir/x"), "\(owners)")
        var st = stat()
        #expect(lstat(host.sub("out/x"), &st) == 0 && st.st_uid == 0 && st.st_gid == 0)
        #expect(try cp(e, ["-a", "c:/dir/x", host.sub("x-kept")]).0 == 0)
        #expect(lstat(host.sub("x-kept"), &st) == 0 && st.st_uid == 7 && st.st_gid == 8)
        // Tars on stdio: out to stdout, in from stdin (into an existing directory).
        let (trc, tar, _) = try sh(["bash", "-c", "'\(strataBinary)' --root '\(e.root)' cp c:/dir/src - | tar -t | sort"])
        #expect(trc == 0 && tar == "src/\nsrc/a\nsrc/sub/\nsrc/sub/b\n", "\(tar)")
        let (src, _, _) = try sh(["bash", "-c", "cd '\(host.path)' && tar -c src/sub | '\(strataBinary)' --root '\(e.root)' cp - c:/contents"])
        #expect(src == 0)
        #expect(try cp(e, ["c:/contents/src/sub/b", host.sub("from-stdin")]).0 == 0 && read(host.sub("from-stdin")) == "b\n")
        // Errors: a missing source, a missing destination directory, a directory over a file, two containers.
        for (args, code) in [(["c:/nothing", host.sub("n")], Int32(2)), ([host.sub("src/a"), "c:/no/such/dir/"], 2),
                             ([host.sub("src"), "c:/dir/renamed"], 64), (["c:/dir", "c:/other"], 64), ([host.sub("src"), host.sub("x")], 64)] {
            let (rc, _, err) = try cp(e, args)
            #expect(rc == code && err.hasPrefix("strata: "), "\(args): \(rc) \(err)")
        }
        #expect(try strataCLI(["rm", "c"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// A running container: the copy sees what its process sees, its volumes and /etc files
    /// included, and what is copied in is there for it at once.
    @Test func cpIntoAndOutOfARunningContainer() throws {
        let e = try Env()
        let host = TempDir("strata-cp-run"); defer { host.remove() }
        try "payload\n".write(toFile: host.sub("f"), atomically: false, encoding: .utf8)
        #expect(try strataCLI(["run", "-d", "--name", "r", "-v", "data:/data", "--hostname", "boxname", RunTests.image, "sh", "-c",
                               "echo inside > /data/v; while [ ! -f /data/f ]; do sleep 0.1; done; cat /data/f > /data/seen; sleep 60"],
                              root: e.root).0 == 0)
        #expect(try waitFor { FileManager.default.fileExists(atPath: e.root + "/volumes/data/_data/v") })
        #expect(try cp(e, [host.sub("f"), "r:/data/"]).0 == 0)
        #expect(try waitFor { read(e.root + "/volumes/data/_data/seen") == "payload\n" })
        #expect(try cp(e, ["r:/etc/hostname", host.sub("hn")]).0 == 0 && read(host.sub("hn")) == "boxname\n")
        #expect(try cp(e, ["r:/data/v", host.sub("v")]).0 == 0 && read(host.sub("v")) == "inside\n")
        // The kernel's filesystems (/proc, /sys, /dev/pts) are not copied out of a whole tree.
        #expect(try cp(e, ["r:/", host.sub("whole")]).0 == 0)
        #expect(read(host.sub("whole/etc/hostname")) == "boxname\n")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: host.sub("whole/proc")))?.isEmpty == true)
        #expect(try strataCLI(["rm", "-f", "r"], root: e.root).0 == 0)
        #expect(try strataCLI(["volume", "rm", "data"], root: e.root).0 == 0)
        try e.expectClean()
    }

    func waitFor(_ condition: () -> Bool) throws -> Bool {
        for _ in 0..<100 { if condition() { return true }; usleep(100_000) }
        return false
    }

    /// Symlinks the container made, to `/` and to host paths, are resolved inside its root both
    /// ways; a file it made setuid lands on the host without the bit, its devices not at all.
    @Test func cpEscapeThroughSymlinksSetIDAndDevices() throws {
        let e = try Env()
        let canary = TempDir("strata-cp-canary"); defer { canary.remove() }
        try "host secret\n".write(toFile: canary.sub("secret"), atomically: false, encoding: .utf8)
        let host = TempDir("strata-cp-out"); defer { host.remove() }
        try "planted\n".write(toFile: host.sub("plant"), atomically: false, encoding: .utf8)
        let script = "ln -s / /rootlink; ln -s \(canary.path) /hostlink; mkdir -p \(canary.path); echo container > \(canary.sub("secret")); " +
            "cp /bin/busybox /suid; chmod 4755 /suid; mknod /disk b 8 0; ln -s \(canary.sub("secret")) /filelink; sleep 60"
        #expect(try strataCLI(["run", "-d", "--name", "evil", RunTests.image, "sh", "-c", script], root: e.root).0 == 0)
        #expect(try waitFor { (try? strataCLI(["exec", "evil", "cat", "/filelink"], root: e.root).0) == 0 })
        for path in ["evil:/hostlink/secret", "evil:/rootlink\(canary.sub("secret"))", "evil:/rootlink/../../..\(canary.sub("secret"))"] {
            let (rc, _, err) = try cp(e, [path, host.sub("got")])
            #expect(rc == 0 && read(host.sub("got")) == "container\n", "\(path): \(err)")
        }
        // -L follows the link inside the container; without it the link itself is copied.
        #expect(try cp(e, ["-L", "evil:/filelink", host.sub("followed")]).0 == 0 && read(host.sub("followed")) == "container\n")
        #expect(try cp(e, ["evil:/filelink", host.sub("link")]).0 == 0)
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: host.sub("link"))) == canary.sub("secret"))
        // In through the links: lands in the container, never in the host's canary directory.
        #expect(try cp(e, [host.sub("plant"), "evil:/hostlink/"]).0 == 0)
        #expect(try cp(e, [host.sub("plant"), "evil:/rootlink/tmp/"]).0 == 0)
        #expect(!FileManager.default.fileExists(atPath: canary.sub("plant")))
        #expect(read(canary.sub("secret")) == "host secret\n")
        #expect(try strataCLI(["exec", "evil", "cat", canary.sub("plant"), "/tmp/plant"], root: e.root).1 == "planted\nplanted\n")
        // set-id and devices.
        let (src, _, serr) = try cp(e, ["evil:/suid", host.sub("suid")])
        var st = stat()
        #expect(src == 0 && lstat(host.sub("suid"), &st) == 0 && st.st_mode & 0o6000 == 0 && st.st_mode & 0o777 == 0o755, "\(serr)")
        let (drc, _, derr) = try cp(e, ["evil:/disk", host.sub("disk")])
        #expect(drc == 0 && derr.contains("not copied") && !FileManager.default.fileExists(atPath: host.sub("disk")), "\(derr)")
        #expect(try strataCLI(["rm", "-f", "evil"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// The container swaps a directory for a symlink to a host path while copies run, both
    /// ways: no copy ever reads the host's file or writes into the host's directory.
    @Test func cpEscapeByRacingRenames() throws {
        let e = try Env()
        let canary = TempDir("strata-cp-race"); defer { canary.remove() }
        try "host secret\n".write(toFile: canary.sub("secret"), atomically: false, encoding: .utf8)
        let host = TempDir("strata-cp-race-out"); defer { host.remove() }
        try "planted\n".write(toFile: host.sub("plant"), atomically: false, encoding: .utf8)
        let script = "mkdir -p /race /tmp; echo container > /race/secret; ln -s \(canary.path) /tmp/swap; " +
            "while true; do mv /race /tmp/real; mv /tmp/swap /race; mv /race /tmp/swap; mv /tmp/real /race; done"
        #expect(try strataCLI(["run", "-d", "--name", "racer", RunTests.image, "sh", "-c", script], root: e.root).0 == 0)
        usleep(300_000)
        var copied = 0
        for i in 0..<60 {
            let out = host.sub("got\(i)")
            if try cp(e, ["racer:/race/secret", out]).0 == 0 {
                copied += 1
                #expect(read(out) != "host secret\n", "copy \(i) read the host's file")
            }
            _ = try cp(e, [host.sub("plant"), "racer:/race/"])
        }
        #expect(!FileManager.default.fileExists(atPath: canary.sub("plant")), "a copy in wrote into the host's directory")
        #expect(read(canary.sub("secret")) == "host secret\n")
        #expect(copied > 0, "no copy out went through while the container raced")
        #expect(try strataCLI(["rm", "-f", "racer"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// A hostile tar on standard input (`cp - CTR:DIR`): names that leave the directory are
    /// refused, a symlink it makes is never a way out; the container's `.wh.` names and odd
    /// names come back out as the plain files they are.
    @Test func cpEscapeWithAHostileTar() throws {
        let e = try Env()
        let canary = TempDir("strata-cp-tar"); defer { canary.remove() }
        try "host secret\n".write(toFile: canary.sub("secret"), atomically: false, encoding: .utf8)
        #expect(try strataCLI(["create", "--name", "t", RunTests.image], root: e.root).0 == 0)
        let py = """
            import io, sys, tarfile
            kind = sys.argv[1]
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
                def add(name, data=b"x", **kw):
                    i = tarfile.TarInfo(name); i.size = len(data)
                    for k, v in kw.items(): setattr(i, k, v)
                    t.addfile(i, io.BytesIO(data) if i.type == tarfile.REGTYPE else None)
                if kind == "dotdot": add("../../../../../../..\(canary.sub("dotdot"))")
                if kind == "absolute": add("\(canary.sub("absolute"))")
                if kind == "symlink":
                    add("out", type=tarfile.SYMTYPE, linkname="\(canary.path)", size=0, data=b"")
                    add("out/through", b"escaped\\n")
                if kind == "plain":
                    add(".wh.secret", b"plain\\n"); add(".wh..wh..opq", b"plain\\n"); add("line\\nbreak", b"plain\\n")
            sys.stdout.buffer.write(buf.getvalue())
            """
        let script = host(py)
        for kind in ["dotdot", "absolute", "symlink", "plain"] {
            let (rc, _, err) = try sh(["bash", "-c", "python3 '\(script)' \(kind) | '\(strataBinary)' --root '\(e.root)' cp - t:/tmp"])
            // A file through the tar's own symlink is refused too (the link leads nowhere inside).
            if kind != "plain" { #expect(rc == 1 && err.contains("refused"), "\(kind): \(err)") }
            if kind == "plain" { #expect(rc == 0, "\(kind): \(err)") }
        }
        #expect((try? FileManager.default.contentsOfDirectory(atPath: canary.path)) == ["secret"])
        #expect(read(canary.sub("secret")) == "host secret\n")
        let (rc, list, _) = try sh(["bash", "-c", "'\(strataBinary)' --root '\(e.root)' cp t:/tmp - | tar -t"])
        #expect(rc == 0 && list.contains("tmp/.wh.secret") && list.contains("tmp/.wh..wh..opq") && list.contains("tmp/line\\nbreak"), "\(list)")  // GNU tar escapes the newline
        #expect(list.contains("tmp/out/through") == false, "\(list)")
        let out = TempDir("strata-cp-tar-out"); defer { out.remove() }
        #expect(try cp(e, ["t:/tmp/.", out.path]).0 == 0)
        #expect(read(out.sub(".wh.secret")) == "plain\n" && read(out.sub("line\nbreak")) == "plain\n")
        #expect(try strataCLI(["rm", "t"], root: e.root).0 == 0)
    }

    /// A script file for `python3`, in a directory removed with the process.
    func host(_ script: String) -> String {
        let path = NSTemporaryDirectory() + "strata-cp-\(getpid())-\(UUID().uuidString).py"
        try? script.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }
}

extension RunTests {
    /// File capabilities are privilege as setuid is: `cp` out without -a drops them (and every
    /// security.* xattr), with -a keeps them.
    @Test func cpDropsFileCapabilitiesWithoutArchive() throws {
        let e = try Env()
        let host = TempDir("strata-cp-caps"); defer { host.remove() }
        try "#!/bin/sh\n".write(toFile: host.sub("tool"), atomically: false, encoding: .utf8)
        // cap_setuid+ep, as setcap writes it (VFS_CAP_REVISION_2).
        let set = "import os; os.setxattr('\(host.sub("tool"))', 'security.capability', bytes([1,0,0,2, 0x80,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,0]))"
        #expect(try sh(["python3", "-c", set]).0 == 0)
        #expect(try strataCLI(["create", "--name", "caps", RunTests.image], root: e.root).0 == 0)
        #expect(try cp(e, ["-a", host.sub("tool"), "caps:/tool"]).0 == 0)
        let get = { (path: String) throws -> String in
            try sh(["python3", "-c", "import os\ntry: print(os.getxattr('\(path)', 'security.capability').hex())\nexcept OSError: print('none')"]).1
        }
        #expect(try cp(e, ["-a", "caps:/tool", host.sub("kept")]).0 == 0)
        #expect(try get(host.sub("kept")) == "0100000280000000000000000000000000000000\n")
        #expect(try cp(e, ["caps:/tool", host.sub("plain")]).0 == 0)
        #expect(try get(host.sub("plain")) == "none\n")
        #expect(try strataCLI(["rm", "caps"], root: e.root).0 == 0)
    }

    /// A FIFO or a device node where `exec` looks for its program, or in place of /etc/passwd
    /// for `exec -u`, is never opened by the host-side command: it fails at once instead of
    /// hanging (a FIFO) or running a driver outside the container's device cgroup.
    @Test func execNeverOpensFifosOrDevicesTheContainerPlanted() throws {
        let e = try Env()
        #expect(try strataCLI(["run", "-d", "--name", "planted", "--health-cmd", "true", "--health-interval", "300ms", RunTests.image, "sh", "-c",
                               "mkfifo /bin/fifo; mknod /bin/kmsg c 1 11; chmod 755 /bin/fifo /bin/kmsg; sleep 60"],
                              root: e.root).0 == 0)
        usleep(500_000)
        for (program, code) in [("fifo", Int32(126)), ("kmsg", Int32(126))] {
            let start = Date()
            let (rc, _, err) = try sh(["timeout", "10", strataBinary, "--root", e.root, "exec", "planted", program])
            #expect(rc == code && Date().timeIntervalSince(start) < 5, "\(program): \(rc) \(err)")
        }
        #expect(try strataCLI(["exec", "planted", "sh", "-c", "rm /etc/passwd; mkfifo /etc/passwd"], root: e.root).0 == 0)
        let start = Date()
        let (rc, _, err) = try sh(["timeout", "10", strataBinary, "--root", e.root, "exec", "-u", "nobody", "planted", "id"])
        #expect(rc != 124 && Date().timeIntervalSince(start) < 5, "\(rc) \(err)")
        // The health check goes on (the monitor's `healthcheck run` is not stuck either).
        let (hrc, hout, _) = try sh(["timeout", "10", strataBinary, "--root", e.root, "healthcheck", "run", "planted"])
        #expect(hrc == 0 && hout == "healthy\n", "\(hrc) \(hout)")
        #expect(try strataCLI(["rm", "-f", "planted"], root: e.root).0 == 0)
        try e.expectClean()
    }
}

extension RunTests {
    /// A tree whose sizes add up past Int64 (a file as large as tmpfs allows, linked twice):
    /// counted as Int64.max, not a crash of ps, df or volume prune.
    @Test func sizeOfAHostileTreeDoesNotTrap() throws {
        let t = TempDir("strata-huge"); defer { t.remove() }
        #expect(try sh(["mount", "-t", "tmpfs", "tmpfs", t.path]).0 == 0)
        defer { _ = try? sh(["umount", t.path]) }
        #expect(try sh(["bash", "-c", "truncate -s 9223372036854775807 '\(t.sub("huge"))' && ln '\(t.sub("huge"))' '\(t.sub("again"))'"]).0 == 0)
        #expect(try Directory.open(t.path).regularFileBytes() == Int64.max)
    }
}
