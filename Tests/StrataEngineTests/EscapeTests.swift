import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Synchronization
import Testing
@testable import StrataCore
@testable import StrataLauncher
@testable import StrataEngine
@testable import StrataStore
@testable import StrataSystem

/// The container boundary, tried as an attacker in the container would (root in the container,
/// with and without --init, --network host and -u 0). Part of the `RunTests` suite, so that no
/// other run's cgroups appear while it checks that none are left.
extension RunTests {
    /// The escape probe (Tests/escape-probe/probe.c), built static once per test process.
    static let probe: String? = {
        let out = NSTemporaryDirectory() + "strata-escape-probe-\(getpid())"
        let (rc, _, _) = (try? sh(["cc", "-static", "-O1", "-o", out, repoRoot + "/Tests/escape-probe/probe.c"])) ?? (1, "", "")
        return rc == 0 ? out : nil
    }()

    /// The probe's writes into the container's own cgroup view, which must fail: v1 the memory
    /// hierarchy's directory, v2 the unified hierarchy's root.
    static var cgroupAttempts: [String] {
        if case .v2? = cgroupLayout {
            return ["write /sys/fs/cgroup/cgroup.procs", "mkdir /sys/fs/cgroup/X"]
        }
        return ["write /sys/fs/cgroup/memory/cgroup.procs", "mkdir /sys/fs/cgroup/memory/probe-escape"]
    }

    /// Without --network: on the default bridge (as root).
    static let variants: [[String]] = [[], ["--init"], ["--network", "host"], ["--network", "none"], ["-u", "0"], ["--init", "--network", "host", "-u", "0"]]
    /// The probe also runs with a terminal and with the capabilities that widen the attack
    /// surface most (with SYS_ADMIN mounts are allowed: it then tries release_agent instead).
    static let probeVariants: [[String]] = variants + [["-t"], ["--init", "-t"], ["--cap-add", "SYS_ADMIN"],
                                                       ["--cap-add", "SYS_PTRACE"], ["--init", "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE"]]

    /// Every attempt of the probe is blocked: inherited fds (3…1023, every process), /proc/1/fd,
    /// /proc/1/root and chroot tricks against a host canary, /proc/self/exe, open_by_handle_at,
    /// mount and unshare, block devices, /proc/sys and /sys writes, cgroup writes, keyctl, bpf,
    /// perf_event_open and more.
    @Test(arguments: probeVariants) func escapeProbeFindsNothing(_ flags: [String]) throws {
        let probe = try #require(RunTests.probe, "cc -static must build the probe")
        let e = try Env()
        let canary = TempDir("strata-canary"); defer { canary.remove() }
        try Data("host secret\n".utf8).write(to: URL(fileURLWithPath: canary.sub("secret")))
        let sysAdmin = flags.contains("SYS_ADMIN")
        let (rc, raw, err) = try e.run(flags + (sysAdmin ? ["-e", "PROBE_SYS_ADMIN=1"] : []) +
                                       ["-e", "CANARY=" + canary.sub("secret"), "-v", probe + ":/probe:ro", RunTests.image, "/probe"])
        let out = raw.replacingOccurrences(of: "\r\n", with: "\n")  // a terminal's line ends (-t)
        let escapes = out.split(separator: "\n").filter { $0.contains("ESCAPED") }
        #expect(rc == 0 && escapes.isEmpty, "\(flags): \(escapes.joined(separator: "\n")) \(err)")
        #expect(out.contains("escapes: 0"))
        let blocked = out.split(separator: "\n").filter { $0.contains(": blocked") }.count
        #expect(blocked >= 50, "\(flags): only \(blocked) attempts ran:\n\(out)")
        let mountAttempts = sysAdmin ? ["release_agent freezer", "release_agent memory", "release_agent none,name=systemd"]
                                     : ["mount-tmpfs", "unshare-user-mount"]
        for attempt in ["inherited-fd", "process-fds", "proc1-fd-write", "canary/proc/1/root", "chroot-breakout",
                        "proc-self-exe-write", "open_by_handle_at", "block-device", "tiocsti-fd-0", "controlling-tty", "session",
                        "write /proc/sys/kernel/core_pattern", "keyctl", "io_uring"] + mountAttempts + RunTests.cgroupAttempts +
                        (sysAdmin ? [] : ["bpf", "perf_event_open"]) {
            #expect(out.contains(attempt + ": blocked"), "\(flags): \(attempt) was not tried or not blocked")
        }
        // Every block device of the host was made and none opened (the device allowlist).
        let blockLine = out.split(separator: "\n").first { $0.hasPrefix("block-devices opened: ") } ?? ""
        #expect(blockLine.hasPrefix("block-devices opened: 0 of ") && !blockLine.hasSuffix(" of 0"), "\(flags): \(blockLine)")
        #expect(!exists("/tmp/ESCAPED") && !exists(e.t.sub("ESCAPED")) && !exists(e.root + "/tmp/ESCAPED"))
    }

    /// The commands of the report, verbatim: pid 1's fds lead nowhere, and the cgroup tree
    /// cannot be written (the container stays under its limits).
    @Test(arguments: variants) func reportedAttacksFail(_ flags: [String]) throws {
        let e = try Env()
        // The memory and pids files of the container's own cgroups: v1 one directory per
        // hierarchy, v2 the root of the unified one.
        let (memory, pids) = if case .v2? = cgroupLayout { ("/sys/fs/cgroup", "/sys/fs/cgroup") }
                             else { ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids") }
        let script = """
            ls /proc/1/fd; echo --; head -2 /proc/1/fd/3/../../etc/shadow; echo x > /proc/1/fd/3/../../tmp/ESCAPED; \
            echo $$ > \(memory)/cgroup.procs && echo MOVED; mkdir \(memory)/X && echo MADE; \
            unshare -Urm true && echo UNSHARED; cat \(pids)/pids.max
            """
        let (_, out, _) = try e.run(flags + ["--pids-limit", "50", RunTests.image, "sh", "-c", script])
        let fds = out.split(separator: "\n").prefix { Int($0) != nil }
        #expect(fds.allSatisfy { Int($0)! <= 2 }, "\(flags): pid 1 holds \(fds)")
        #expect(!out.contains("MOVED") && !out.contains("MADE") && !out.contains("UNSHARED"), "\(flags): \(out)")
        #expect(out.contains("50\n"), "\(flags): the container sees its own pids limit: \(out)")
        let hostShadow = (readString("/etc/shadow") ?? "").split(separator: "\n").first.map(String.init) ?? "root:"
        #expect(!out.contains(hostShadow))
        #expect(!exists("/tmp/ESCAPED") && !exists(e.t.sub("ESCAPED")) && !exists(e.root + "/tmp/ESCAPED"))
    }

    /// A container may make a node of a host disk (CAP_MKNOD is in the default set) but not open
    /// it: the device allowlist (v1 devices.allow, v2 a BPF program on the container's cgroup)
    /// refuses with EPERM. --privileged lifts the list.
    @Test func blockDeviceOfTheHostIsRefused() throws {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/dev/block")) ?? []).sorted()
        let disk = try #require(names.first { !$0.hasPrefix("7:") } ?? names.first, "no block device on this machine")
        let mm = disk.split(separator: ":").joined(separator: " ")
        let e = try Env()
        let (rc, out, err) = try e.run([RunTests.image, "sh", "-c", "mknod /tmp/d b \(mm) && echo MADE && head -c1 /tmp/d > /dev/null && echo READ"])
        #expect(rc != 0 && out == "MADE\n" && err.contains("Operation not permitted"), "\(disk): \(rc) \(out) \(err)")
        let (prc, pout, perr) = try e.run(["--privileged", RunTests.image, "sh", "-c", "mknod /tmp/d b \(mm) && head -c1 /tmp/d > /dev/null; echo done"])
        #expect(prc == 0 && pout == "done\n" && !perr.contains("Operation not permitted"), "\(disk): \(pout) \(perr)")
    }

    /// --init: pid 1 is strata-init from a sealed memfd, holding fds 0-2 only; the command is its child.
    @Test func initIsItsOwnProgram() throws {
        let e = try Env()
        let (rc, out, err) = try e.run(["--init", RunTests.image, "sh", "-c",
                                        "readlink /proc/1/exe; ls /proc/1/fd | tr '\\n' ' '; echo; echo pid=$$; grep NoNewPrivs /proc/1/status"])
        #expect(rc == 0, "\(err)")
        #expect(out.contains("memfd:strata-init"), "\(out)")
        #expect(out.contains("\n0 1 2 \n"), "\(out)")
        #expect(out.contains("pid=2"))
        let (rc9, _, err9) = try e.run(["--init", RunTests.image, "sh", "-c", "exit 9"])
        #expect(rc9 == 9, "\(err9)")
    }

    /// --privileged, --cap-add, --cap-drop and --security-opt do what Docker's do.
    @Test func securityOptions() throws {
        let e = try Env()
        let (p, pout, perr) = try e.run(["--privileged", RunTests.image, "sh", "-c",
                                         "mkdir -p /m && mount -t tmpfs x /m && echo MOUNTED; unshare -Urm true && echo UNSHARED; grep Seccomp: /proc/self/status"])
        #expect(p == 0 && pout.contains("MOUNTED") && pout.contains("UNSHARED") && pout.contains("Seccomp:\t0"), "\(pout) \(perr)")
        let (_, aout, _) = try e.run(["--cap-add", "SYS_ADMIN", RunTests.image, "sh", "-c",
                                      "mkdir -p /m && mount -t tmpfs x /m && echo MOUNTED; grep Seccomp: /proc/self/status"])
        #expect(aout.contains("MOUNTED") && aout.contains("Seccomp:\t2"), "\(aout)")
        let (_, dout, _) = try e.run(["--cap-drop", "chown", RunTests.image, "sh", "-c", "chown 5 /tmp && echo CHOWNED; echo done"])
        #expect(!dout.contains("CHOWNED") && dout.contains("done"))
        let (_, uout, _) = try e.run(["--security-opt", "seccomp=unconfined", RunTests.image, "sh", "-c", "unshare -Ur true && echo UNSHARED"])
        #expect(uout.contains("UNSHARED"))

        // A profile of our own, in Docker's format: everything allowed but mkdir, which gets EACCES.
        let t = TempDir("strata-seccomp"); defer { t.remove() }
        let profile = #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#
        try Data(profile.utf8).write(to: URL(fileURLWithPath: t.sub("p.json")))
        let (_, mout, merr) = try e.run(["--security-opt", "seccomp=" + t.sub("p.json"), RunTests.image, "sh", "-c", "mkdir /x || echo REFUSED"])
        #expect(mout.contains("REFUSED") && merr.contains("Permission denied"), "\(mout) \(merr)")

        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: t.sub("bad.json")))
        for bad in [["--security-opt", "seccomp=" + t.sub("bad.json")], ["--security-opt", "seccomp=" + t.sub("missing.json")],
                    ["--security-opt", "apparmor=x"], ["--cap-add", "NOT_A_CAP"]] {
            let (rc, _, err) = try e.run(bad + [RunTests.image, "true"])
            #expect(rc == 125 && err.split(separator: "\n").count == 1, "\(bad): \(rc) \(err)")
        }
    }

    /// A run that fails to start leaves no container and no cgroup; a container whose strata
    /// was killed is removed with its cgroups by `rm -f`; an empty cgroup left behind is
    /// reported by `check` and removed by `gc`, while a running container's is left alone.
    @Test func nothingLeftBehind() throws {
        let e = try Env()
        // Fails after its cgroups and process exist: a profile that refuses exec.
        let t = TempDir("strata-noexec"); defer { t.remove() }
        try Data(#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["execve", "execveat"], "action": "SCMP_ACT_ERRNO"}]}"#.utf8)
            .write(to: URL(fileURLWithPath: t.sub("noexec.json")))
        let (rc, _, err) = try strataCLI(["run", "--security-opt", "seccomp=" + t.sub("noexec.json"), RunTests.image, "true"], root: e.root)
        #expect(rc == 126 && err.contains("Operation not permitted"), "\(rc) \(err)")
        try e.expectClean()

        let pid = try spawn([RunTests.binary, "--root", e.root, "run", "--name", "orphan", RunTests.image, "sleep", "60"])
        let inner = try e.waitUntilRunning()
        #expect(inner > 0)
        kill(pid, SIGKILL)
        _ = reap(pid)
        let (rmrc, _, rmerr) = try strataCLI(["rm", "-f", "orphan"], root: e.root)
        #expect(rmrc == 0, "\(rmerr)")
        // Gone, or a zombie waiting for whoever inherited it.
        let state = readString("/proc/\(inner)/stat")?.split(separator: " ").dropFirst(2).first
        #expect(state == nil || state == "Z", "the container's process survived rm -f: \(state ?? "")")
        try e.expectClean()

        // A cgroup of a container that is gone: found by check, removed by gc; a running
        // container's is left alone.
        let running = try spawn([RunTests.binary, "--root", e.root, "run", "--rm", "--name", "busy", RunTests.image, "sleep", "60"])
        let busy = try e.waitUntilRunning()
        defer { kill(busy, SIGKILL); _ = reap(running) }
        #expect(busy > 0)
        let layout = try #require(cgroupLayout)
        let stray = Cgroup(layout: layout, id: String(repeating: "ab", count: 32), parent: CgroupParent.forStore(root: e.root))
        try stray.create(Limits())
        defer { stray.remove() }
        let id = stray.name
        let (crc, cout, _) = try strataCLI(["check"], root: e.root)
        #expect(crc == 1 && cout.contains(id), "\(cout)")
        let (grc, gout, _) = try strataCLI(["gc"], root: e.root)
        #expect(grc == 0 && gout.contains("cgroups"))
        #expect(stray.directories.allSatisfy { !exists($0) })
        #expect(kill(busy, 0) == 0, "gc touched a running container")
    }
}

extension RunTests {
    /// The same probe, entering through `exec` into a container run with -d: a joined process
    /// gets the same boundary (fds, capabilities, seccomp, masks, cgroups) as the container's own.
    @Test(arguments: [[String](), ["--init", "--network", "host"]]) func escapeProbeThroughExec(_ flags: [String]) throws {
        let probe = try #require(RunTests.probe, "cc -static must build the probe")
        let e = try Env()
        let canary = TempDir("strata-canary"); defer { canary.remove() }
        try Data("host secret\n".utf8).write(to: URL(fileURLWithPath: canary.sub("secret")))
        let (rc0, _, err0) = try strataCLI(["run", "-d", "--name", "target"] + flags +
                                           ["-e", "CANARY=" + canary.sub("secret"), "-v", probe + ":/probe:ro", RunTests.image, "sleep", "60"],
                                           root: e.root)
        #expect(rc0 == 0, "\(err0)")
        let (rc, out, err) = try strataCLI(["exec", "target", "/probe"], root: e.root)
        let escapes = out.split(separator: "\n").filter { $0.contains("ESCAPED") }
        #expect(rc == 0 && escapes.isEmpty, "\(flags): \(escapes.joined(separator: "\n")) \(err)")
        #expect(out.contains("escapes: 0"))
        let blocked = out.split(separator: "\n").filter { $0.contains(": blocked") }.count
        #expect(blocked >= 50, "\(flags): only \(blocked) attempts ran:\n\(out)")
        #expect(!exists("/tmp/ESCAPED") && !exists(e.t.sub("ESCAPED")) && !exists(e.root + "/tmp/ESCAPED"))
        #expect(try strataCLI(["rm", "-f", "target"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// exec enters the namespaces of the process recorded when the container started, never
    /// those of a later process of that pid: the start time is checked after they are opened.
    @Test func execChecksTheProcessIsTheContainers() throws {
        let e = try Env()
        #expect(try strataCLI(["run", "-d", "--name", "target", RunTests.image, "sleep", "60"], root: e.root).0 == 0)
        let id = try strataCLI(["inspect", "-f", "{{.Id}}", "target"], root: e.root).1.trimmingCharacters(in: .whitespacesAndNewlines)
        let file = e.root + "/containers/\(id)/process"
        let recorded = try #require(readString(file)).split(separator: " ").map(String.init)
        #expect(recorded.count == 2)
        // As if the pid had been used again by a process started later.
        try "\(recorded[0]) \((UInt64(recorded[1].trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) + 1)\n".write(toFile: file, atomically: true, encoding: .utf8)
        let (rc, out, err) = try strataCLI(["exec", "target", "echo", "INSIDE"], root: e.root)
        #expect(rc != 0 && !out.contains("INSIDE") && err.contains("No such process"), "\(out)\(err)")
        try recorded.joined(separator: " ").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try strataCLI(["exec", "target", "echo", "INSIDE"], root: e.root).1 == "INSIDE\n")
        #expect(try strataCLI(["rm", "-f", "target"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// Twenty containers started and stopped at once: each runs, each stops, nothing is left.
    @Test func twentyAtOnce() throws {
        let e = try Env()
        let names = (1...20).map { "c\($0)" }
        let root = e.root
        let results = Mutex<[Int32]>([])
        DispatchQueue.concurrentPerform(iterations: names.count) { i in
            let rc = (try? strataCLI(["run", "-d", "--name", names[i], RunTests.image, "sleep", "60"], root: root).0) ?? -1
            results.withLock { $0.append(rc) }
        }
        #expect(results.withLock { $0 } == Array(repeating: 0, count: 20))
        let (_, ids, _) = try strataCLI(["ps", "-q"], root: e.root)
        #expect(ids.split(separator: "\n").count == 20, "\(ids)")
        let stops = Mutex<[Int32]>([])
        DispatchQueue.concurrentPerform(iterations: names.count) { i in
            let rc = (try? strataCLI(["stop", "-t", "1", names[i]], root: root).0) ?? -1
            stops.withLock { $0.append(rc) }
        }
        #expect(stops.withLock { $0 } == Array(repeating: 0, count: 20))
        #expect(try strataCLI(["ps", "-q"], root: e.root).1.isEmpty)
        #expect(try strataCLI(["rm"] + names, root: e.root).0 == 0)
        try e.expectClean()
    }
}
