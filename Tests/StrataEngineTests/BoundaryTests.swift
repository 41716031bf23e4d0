import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataLauncher
@testable import StrataEngine
@testable import StrataStore
@testable import StrataSystem

/// The boundary where the host hands things to a container: stdio and the caller's terminal,
/// host-side walks of container-writable trees, ids, cgroups of other stores and hierarchies,
/// and what `exec` lets into the pid namespace. Part of `RunTests` (serialized, one store each).
extension RunTests {
    /// Runs `argv` from a shell on a new pseudo-terminal, as an interactive shell starts a program:
    /// the shell leads the session and the terminal is its controlling terminal (raw mode, so
    /// input pushed with TIOCSTI stays queued and nothing is echoed). Returns what the terminal
    /// showed, the exit code, and how many bytes sat pushed into the terminal's input queue once
    /// the program was gone while the shell still lived (which is when a real shell reads them).
    static func onControllingTerminal(_ argv: [String]) throws -> (output: String, code: Int32, pending: Int) {
        let script = """
        import os, sys, fcntl, termios, tty, struct, select, signal, re
        m, s = os.openpty()
        tty.setraw(s)
        pid = os.fork()
        if pid == 0:
            os.setsid()
            fcntl.ioctl(s, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(s, fd)
            os.close(m)
            os.execv("/bin/sh", ["sh", "-c", '"$@"; echo "exit $?"; sleep 10', "sh"] + sys.argv[1:])
        out = b""
        while not re.search(rb"exit [0-9]+\\r?\\n", out):
            r, _, _ = select.select([m], [], [], 30)
            if not r:
                break
            try:
                chunk = os.read(m, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        pending = struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\\0\\0\\0\\0"))[0]
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sys.stdout.write(out.decode(errors="replace").replace("\\r", ""))
        print("\\npending", pending)
        """
        let (_, out, err) = try sh(["python3", "-c", script] + argv)
        let lines = out.split(separator: "\n")
        let code = lines.last(where: { $0.hasPrefix("exit ") }).flatMap { Int32($0.dropFirst(5)) } ?? -1
        let pending = lines.last(where: { $0.hasPrefix("pending ") }).flatMap { Int($0.dropFirst(8)) } ?? -1
        return (out + err, code, pending)
    }

    /// A container started from an interactive shell cannot type into it: without -t its
    /// process is in a session of its own with pipes and /dev/null for stdio, so TIOCSTI on fds
    /// 0-2 and /dev/tty reaches no host terminal (run, run --init, exec; -t gives it a pty of
    /// its own devpts instead).
    @Test func containerCannotTypeIntoTheCallersTerminal() throws {
        let probe = try #require(RunTests.probe, "cc -static must build the probe")
        let e = try Env()
        for flags in [[String](), ["--init"], ["-t"]] {
            let r = try RunTests.onControllingTerminal([RunTests.binary, "--root", e.root, "run", "--rm"] + flags +
                                                       ["-v", probe + ":/probe:ro", RunTests.image, "/probe", "tty"])
            #expect(r.code == 0 && r.output.contains("escapes: 0") && !r.output.contains("ESCAPED"), "\(flags): \(r.output)")
            #expect(r.output.contains("tiocsti-fd-0: blocked") && r.output.contains("controlling-tty: blocked"), "\(flags): \(r.output)")
            #expect(r.pending == 0, "\(flags): \(r.pending) bytes were pushed into the caller's terminal")
        }
        #expect(try strataCLI(["run", "-d", "--name", "t", "-v", probe + ":/probe:ro",
                        RunTests.image, "sleep", "60"], root: e.root).0 == 0)
        let r = try RunTests.onControllingTerminal([RunTests.binary, "--root", e.root, "exec", "t", "/probe", "tty"])
        #expect(r.code == 0 && r.output.contains("escapes: 0"), "exec: \(r.output)")
        #expect(r.pending == 0, "exec: \(r.pending) bytes were pushed into the caller's terminal")
        #expect(try strataCLI(["rm", "-f", "t"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// stdin is /dev/null unless -i (a loop feeding strata keeps its input), stdout and stderr
    /// are pipes even when strata's own are files (the container cannot read back or truncate
    /// them); output still arrives whole and in order, exit codes pass through.
    @Test func stdioIsNeverStratas() throws {
        let e = try Env()
        let input = Array("line one\nline two\n".utf8)
        for flags in [[String](), ["--init"]] {
            let (rc, out, err) = try e.run(flags + [RunTests.image, "sh", "-c",
                                                    "cat; for f in 0 1 2; do readlink /proc/self/fd/$f; done; echo to-err >&2; exit 3"], stdin: input)
            #expect(rc == 3, "\(flags): \(err)")
            let lines = out.split(separator: "\n").map(String.init)
            #expect(lines.first == "/dev/null", "\(flags): without -i stdin is /dev/null: \(out)")
            #expect(lines.dropFirst().allSatisfy { $0.hasPrefix("pipe:") } && lines.count == 3, "\(flags): \(out)")
            #expect(err == "to-err\n", "\(flags): \(err)")
            let (irc, iout, _) = try e.run(flags + ["-i", RunTests.image, "cat"], stdin: input)
            #expect(irc == 0 && iout == "line one\nline two\n", "\(flags): \(iout)")
        }
        // A process that never reads a large stdin still gets its output out (no deadlock).
        let big = [UInt8](repeating: 0x61, count: 4 << 20)
        let (brc, bout, _) = try e.run(["-i", RunTests.image, "sh", "-c", "seq 1 100000 | tail -1"], stdin: big)
        #expect(brc == 0 && bout == "100000\n", "\(bout)")
        // exec: the same, through the exec helper.
        #expect(try strataCLI(["run", "-d", "--name", "s", RunTests.image, "sleep", "60"], root: e.root).0 == 0)
        let (xrc, xout, _) = try strataCLI(["exec", "s", "sh", "-c", "cat; for f in 0 1; do readlink /proc/self/fd/$f; done"], root: e.root, stdin: input)
        #expect(xrc == 0 && xout.hasPrefix("/dev/null\npipe:"), "\(xout)")
        let (yrc, yout, _) = try strataCLI(["exec", "-i", "s", "cat"], root: e.root, stdin: input)
        #expect(yrc == 0 && yout == "line one\nline two\n", "\(yout)")
        #expect(try strataCLI(["rm", "-f", "s"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// `export` and `commit` walk a tree the running container writes: a device node or FIFO
    /// renamed over a regular file between the walk and the open is never read as content (no
    /// zeros from /dev/zero in the tar, no hang on a FIFO); the command either sees the file or
    /// refuses, naming it.
    @Test func walkersNeverReadWhatTheContainerSwapsIn() throws {
        let e = try Env()
        let loop = """
            i=0; while [ $i -lt 200000 ]; do \
              head -c 65536 /dev/zero | tr '\\0' A > /r; mknod /c c 1 5; mkfifo /p; \
              mv -f /r /f; mv -f /c /f; mv -f /p /f; i=$((i+1)); \
            done
            """
        #expect(try strataCLI(["run", "-d", "--name", "swap", RunTests.image, "sh", "-c", loop], root: e.root).0 == 0)
        // Running: /f exists and keeps changing kind.
        for _ in 0..<100 where try strataCLI(["exec", "swap", "test", "-e", "/f"], root: e.root).0 != 0 { usleep(100_000) }
        var refused = 0, exported = 0, swappedKinds = 0
        for i in 0..<12 {
            let tar = e.t.sub("export-\(i).tar")
            let (rc, _, err) = try sh(["timeout", "60", RunTests.binary, "--root", e.root, "export", "-o", tar, "swap"])
            #expect(rc != 124, "export hung (a FIFO opened as a file?)")
            if rc != 0 { #expect(RunTests.refusedARacedFile(err), "\(err)"); refused += 1; continue }
            exported += 1
            let (_, listing, _) = try sh(["tar", "-tvf", tar, "f"])
            if listing.hasPrefix("-") {
                let (_, content, _) = try sh(["sh", "-c", "tar -xOf \(tar) f | tr -d A | wc -c"])
                #expect(content.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "export put other bytes than the file's into the tar: \(listing)")
            } else if listing.hasPrefix("c") || listing.hasPrefix("p") {
                swappedKinds += 1
            }
        }
        for i in 0..<6 {
            let (rc, out, err) = try sh(["timeout", "60", RunTests.binary, "--root", e.root, "commit", "swap", "swapped:\(i)"])
            #expect(rc != 124, "commit hung (a FIFO opened as a file?)")
            if rc != 0 { #expect(RunTests.refusedARacedFile(err), "\(err)"); continue }
            let image = out.trimmingCharacters(in: .whitespacesAndNewlines)
            let (_, other, _) = try strataCLI(["run", "--rm", image, "sh", "-c",
                                        "if [ -f /f ]; then tr -d A < /f | wc -c; else echo 0; fi"], root: e.root)
            #expect(other.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "commit put other bytes than the file's into the layer")
        }
        #expect(exported + refused == 12)
        #expect(refused + swappedKinds > 0, "the container's loop never swapped /f: the race was not tried")
        #expect(try strataCLI(["rm", "-f", "swap"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// The refusals a walk may give when the container changes a file under it: replaced by
    /// another kind of file, or truncated while read.
    static func refusedARacedFile(_ err: String) -> Bool {
        err.contains("was replaced while it was read") || err.contains("shrank while it was being")
    }

    /// Ids above 2³¹−1 are refused: 4294967295 is (uid_t)-1, which setresuid reads as "no
    /// change", and the process would stay root.
    @Test func idsOutOfRangeAreRefused() throws {
        let e = try Env()
        for user in ["4294967295", "2147483648", "0:4294967295"] {
            let (rc, out, err) = try e.run(["-u", user, RunTests.image, "id"])
            #expect(rc == 125 && out.isEmpty && err.contains("out of range"), "\(user): \(rc) \(out) \(err)")
        }
        let (rc, out, _) = try e.run(["-u", "2147483647", RunTests.image, "id", "-u"])
        #expect(rc == 0 && out == "2147483647\n")
    }

    /// The default process limit is podman's 2048; --pids-limit changes it, -1 lifts it.
    @Test func defaultPidsLimit() throws {
        let e = try Env()
        let file = cgroupLayout.map { if case .v2 = $0 { return "/sys/fs/cgroup/pids.max" } else { return "/sys/fs/cgroup/pids/pids.max" } } ?? ""
        #expect(try e.run([RunTests.image, "cat", file]).1 == "2048\n")
        #expect(try e.run(["--pids-limit", "100", RunTests.image, "cat", file]).1 == "100\n")
        #expect(try e.run(["--pids-limit", "-1", RunTests.image, "cat", file]).1 == "max\n")
    }

    /// On v1 the container joins every mounted hierarchy (freezer, blkio, cpuset, name=systemd, …),
    /// so none has the host's root as the container's cgroup-namespace root; with SYS_ADMIN a
    /// cgroup mount inside shows no release_agent.
    @Test func joinsEveryHierarchy() throws {
        let e = try Env()
        #expect(try strataCLI(["run", "-d", "--name", "h", RunTests.image, "sleep", "60"], root: e.root).0 == 0)
        let pid = try e.waitUntilRunning()
        let lines = (readString("/proc/\(pid)/cgroup") ?? "").split(separator: "\n")
        let parent = CgroupParent.forStore(root: e.root)
        #expect(!lines.isEmpty && lines.allSatisfy { $0.hasSuffix("/" + parent + "/") == false && $0.contains("/" + parent + "/") }, "\(lines)")
        #expect(try strataCLI(["rm", "-f", "h"], root: e.root).0 == 0)
        let (_, out, _) = try e.run(["--cap-add", "SYS_ADMIN", RunTests.image, "sh", "-c",
                                     "mkdir /c; for o in freezer blkio cpuset memory pids devices none,name=systemd; do " +
                                     "mount -t cgroup -o $o cgroup /c && { ls /c/release_agent 2>/dev/null && echo AGENT-$o; umount /c; }; done; echo done"])
        #expect(out.contains("done") && !out.contains("AGENT"), "\(out)")
    }

    /// Two stores on one host: `check` and `gc` in one never see or remove the other's
    /// container cgroups, running or left behind.
    @Test func storesDoNotTouchEachOther() throws {
        let a = try Env(), b = try Env()
        #expect(try strataCLI(["run", "-d", "--name", "x", RunTests.image, "sleep", "60"], root: a.root).0 == 0)
        let layout = try #require(cgroupLayout)
        let stray = Cgroup(layout: layout, id: String(repeating: "cd", count: 32), parent: CgroupParent.forStore(root: a.root))
        try stray.create(Limits())
        defer { stray.remove() }
        let (crc, cout, _) = try strataCLI(["check"], root: b.root)
        #expect(crc == 0 && !cout.contains("cgroup"), "\(cout)")
        #expect(try strataCLI(["gc"], root: b.root).0 == 0)
        #expect(stray.directories.allSatisfy { exists($0) }, "gc of another store removed this store's leftover")
        #expect(try strataCLI(["ps", "-q"], root: a.root).1.split(separator: "\n").count == 1)
        let (arc, aout, _) = try strataCLI(["check"], root: a.root)
        #expect(arc == 1 && aout.contains(stray.name), "\(aout)")
        #expect(try strataCLI(["rm", "-f", "x"], root: a.root).0 == 0)
        #expect(try strataCLI(["gc"], root: a.root).0 == 0)
        #expect(stray.directories.allSatisfy { !exists($0) })
        try a.expectClean()
        try b.expectClean()
    }

    /// With CAP_SYS_PTRACE a process in the container watches every process that enters its pid
    /// namespace while `exec` runs 40 times: none holds a capability the container lacks or runs
    /// without its seccomp filter (the exec helper drops both before it forks into the namespace).
    @Test func execEntersWithTheContainersPrivilegesOnly() throws {
        let probe = try #require(RunTests.probe, "cc -static must build the probe")
        let e = try Env()
        #expect(try strataCLI(["run", "-d", "--name", "w", "--cap-add", "SYS_PTRACE",
                        "-v", probe + ":/probe:ro", RunTests.image, "/probe", "watch", "25"], root: e.root).0 == 0)
        _ = try e.waitUntilRunning()
        for _ in 0..<40 {
            #expect(try strataCLI(["exec", "w", "true"], root: e.root).0 == 0)
        }
        #expect(try strataCLI(["wait", "w"], root: e.root).1 == "0\n")
        let (_, logs, _) = try strataCLI(["logs", "w"], root: e.root)
        #expect(logs.contains("escapes: 0") && !logs.contains("ESCAPED"), "\(logs)")
        #expect(try strataCLI(["rm", "-f", "w"], root: e.root).0 == 0)
        try e.expectClean()
    }
}
