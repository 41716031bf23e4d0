import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing

/// Containers that keep running: `run -d` under a monitor, `ps`, `logs`, `stop`, `kill`,
/// `start`, `restart`, `wait`, `rm`; each test ends with nothing left (mounts, cgroups, monitors).
extension RunTests {
    static let trap = "trap 'echo got TERM; exit 7' TERM; echo ready; echo oops >&2; while :; do sleep 0.1; done"

    func strata(_ e: Env, _ args: [String]) throws -> (Int32, String, String) {
        try strataCLI(args, root: e.root)
    }

    func monitors(_ e: Env) -> [String] {
        // strata's own monitor until the container runs, then strata-monitor in its place.
        ((try? sh(["pgrep", "-f", "container-monitor|strata-monitor"]).1) ?? "").split(separator: "\n").map(String.init).filter { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").contains(e.root)
        }
    }

    @Test func detachedLifecycle() throws {
        let e = try Env()
        let t0 = Date()
        let (rc, out, err) = try strata(e, ["run", "-d", "--name", "web", RunTests.image, "sh", "-c", RunTests.trap])
        #expect(rc == 0, "\(err)")
        #expect(Date().timeIntervalSince(t0) < 1 * timeScale, "run -d returns once the process runs")
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines).count == 64)
        #expect(monitors(e).count == 1)

        let (_, table, _) = try strata(e, ["ps"])
        #expect(table.contains("CONTAINER ID") && table.contains("Up ") && table.contains("web"), "\(table)")
        let (_, ids, _) = try strata(e, ["ps", "-q"])
        #expect(ids.split(separator: "\n") == [Substring(out.prefix(12))])
        let (_, stdout, stderr) = try strata(e, ["logs", "web"])
        #expect(stdout == "ready\n" && stderr == "oops\n", "\(stdout) | \(stderr)")
        let (_, stamped, _) = try strata(e, ["logs", "-t", "web"])
        #expect(stamped.hasSuffix(" ready\n") && stamped.hasPrefix("20"), "\(stamped)")
        #expect(try strata(e, ["logs", "--tail", "0", "web"]).1.isEmpty)

        let (rc2, _, err2) = try strata(e, ["rm", "web"])
        #expect(rc2 == 3 && err2.contains("strata stop web"), "\(err2)")

        // stop: the TERM reaches the trap, whose exit code `wait` and `ps` report.
        #expect(try strata(e, ["stop", "web"]).0 == 0)
        #expect(try strata(e, ["wait", "web"]).1 == "7\n")
        let (_, json, _) = try strata(e, ["ps", "-a", "--json"])
        let list = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]]
        #expect(list?.first?["state"] as? String == "exited" && list?.first?["exitCode"] as? Int == 7, "\(json)")
        #expect(list?.first?["finishedAt"] is String && (list?.first?["command"] as? [String])?.first == "sh")
        #expect(try strata(e, ["ps", "-a"]).1.contains("Exited (7)"))
        #expect(try strata(e, ["logs", "web"]).1 == "ready\ngot TERM\n")
        #expect(monitors(e).isEmpty)
        let inspect = (try JSONSerialization.jsonObject(with: Data(try strata(e, ["inspect", "web"]).1.utf8)) as? [[String: Any]])?.first
        let state = inspect?["State"] as? [String: Any]
        #expect(inspect?["Name"] as? String == "/web" && state?["ExitCode"] as? Int == 7 && state?["Status"] as? String == "exited")
        #expect(try strata(e, ["inspect", "-f", "{{.State.ExitCode}} {{.Strata.name}}", "web"]).1 == "7 web\n")

        // start runs it again with what was recorded; kill sends a signal; restart.
        #expect(try strata(e, ["start", "web"]).0 == 0)
        #expect(try strata(e, ["ps"]).1.contains("Up "))
        #expect(try strata(e, ["kill", "-s", "KILL", "web"]).0 == 0)
        #expect(try strata(e, ["wait", "web"]).1 == "137\n")
        #expect(try strata(e, ["restart", "-t", "1", "web"]).0 == 0)
        #expect(try strata(e, ["ps"]).1.contains("Up "))
        #expect(try strata(e, ["rm", "-f", "web"]).0 == 0)
        #expect(monitors(e).isEmpty)
        try e.expectClean()
    }

    /// Each start writes /etc/hostname and /etc/hosts afresh (what the container wrote there does
    /// not outlive its run), and a container an earlier strata made (run.json, no config.json)
    /// still shows its command and stops.
    @Test func startsAfreshAndOldContainersStop() throws {
        let e = try Env()
        #expect(try strataCLI(["run", "-d", "--name", "w", RunTests.image, "sleep", "60"], root: e.root).0 == 0)
        #expect(try strataCLI(["exec", "w", "sh", "-c", "echo 192.0.2.1 planted >> /etc/hosts; echo planted > /etc/hostname"], root: e.root).0 == 0)
        #expect(try strataCLI(["stop", "-t", "1", "w"], root: e.root).0 == 0)
        #expect(try strataCLI(["start", "w"], root: e.root).0 == 0)
        let (_, files, _) = try strataCLI(["exec", "w", "cat", "/etc/hosts", "/etc/hostname"], root: e.root)
        #expect(!files.contains("planted") && files.contains("localhost"), "\(files)")
        // As an earlier strata left it: run.json with the command, no config.json.
        let id = try strataCLI(["ps", "-q", "--no-trunc"], root: e.root).1.trimmingCharacters(in: .whitespacesAndNewlines)
        let folder = e.root + "/containers/" + id
        try Data(#"{"args":["sleep","60"],"env":[],"cwd":"/","user":""}"#.utf8).write(to: URL(fileURLWithPath: folder + "/run.json"))
        try FileManager.default.removeItem(atPath: folder + "/config.json")
        #expect(try strataCLI(["ps"], root: e.root).1.contains("\"sleep 60\""))
        let (rc, _, err) = try strataCLI(["stop", "-t", "1", "w"], root: e.root)
        #expect(rc == 0, "\(err)")
        #expect(try strataCLI(["ps", "-q"], root: e.root).1.isEmpty)
        let (src, _, serr) = try strataCLI(["start", "w"], root: e.root)
        #expect(src != 0 && serr.contains("earlier strata"), "\(serr)")
        #expect(try strataCLI(["rm", "-f", "w"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// While a detached container runs, its monitor is strata-monitor (the small C program),
    /// not the strata binary: one thread, a couple of MB at most; it still logs, records the
    /// exit and cleans up (the container unmounted once `wait` returns).
    @Test func monitorIsTheSmallProgram() throws {
        let e = try Env()
        #expect(try strataCLI(["run", "-d", "--name", "small", RunTests.image, "sh", "-c", "trap 'exit 6' TERM; echo up; while :; do sleep 0.1; done"], root: e.root).0 == 0)
        let id = try strataCLI(["ps", "-q", "--no-trunc"], root: e.root).1.trimmingCharacters(in: .whitespacesAndNewlines)
        let state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: e.root + "/containers/\(id)/state.json"))) as? [String: Any]
        let monitor = try #require(state?["monitorPid"] as? Int)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(monitor)/exe")) ?? ""
        #expect(exe.hasSuffix("/strata-monitor"), "\(exe)")
        let status = (try? String(contentsOfFile: "/proc/\(monitor)/status", encoding: .utf8)) ?? ""
        let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        #expect(rss > 0 && rss < 4096, "VmRSS \(rss) kB")
        #expect(status.contains("Threads:\t1\n"))
        #expect(try strataCLI(["kill", "-s", "TERM", "small"], root: e.root).0 == 0)
        #expect(try strataCLI(["wait", "small"], root: e.root).1 == "6\n")
        #expect(try strataCLI(["logs", "small"], root: e.root).1 == "up\n")
        let (_, ps, _) = try strataCLI(["ps", "-a", "--json"], root: e.root)
        #expect(ps.contains("\"exited\"") && ps.contains("\"mountCount\" : 0"), "\(ps)")
        #expect(try strataCLI(["rm", "small"], root: e.root).0 == 0)
        try e.expectClean()
    }

    /// `stop` of several containers runs one grace period for all (Docker stops them in
    /// parallel): ten that ignore SIGTERM stop with `-t 1` in about a second, not ten; a name
    /// that does not exist fails alone.
    @Test func stopsManyAtOnce() throws {
        let e = try Env()
        let names = (0..<10).map { "m\($0)" }
        for n in names {
            #expect(try strataCLI(["run", "-d", "--name", n, RunTests.image, "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], root: e.root).0 == 0)
        }
        let start = Date()
        let (rc, out, err) = try strataCLI(["stop", "-t", "1"] + names + ["no-such"], root: e.root)
        let took = Date().timeIntervalSince(start)
        #expect(rc == 2 && err.contains("no-such") && out.split(separator: "\n").map(String.init) == names, "\(out)\(err)")
        #expect(took < 5, "stop of ten took \(took) s")
        #expect(try strataCLI(["ps", "-q"], root: e.root).1.isEmpty)
        let (_, json, _) = try strataCLI(["ps", "-a", "--json"], root: e.root)
        let codes = ((try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [[String: Any]] ?? []).compactMap { $0["exitCode"] as? Int }
        #expect(codes == Array(repeating: 137, count: 10), "\(json)")
        #expect(try strataCLI(["rm"] + names, root: e.root).0 == 0)
        try e.expectClean()
    }

    @Test func stopSignalAndGracePeriod() throws {
        let e = try Env()
        // A process that ignores TERM: killed after the grace period.
        #expect(try strata(e, ["run", "-d", "--name", "stubborn", RunTests.image, "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]).0 == 0)
        let t0 = Date()
        #expect(try strata(e, ["stop", "-t", "1", "stubborn"]).0 == 0)
        let took = Date().timeIntervalSince(t0)
        #expect(took >= 1 && took < 5, "\(took)")
        #expect(try strata(e, ["wait", "stubborn"]).1 == "137\n")
        // --stop-signal: the one `stop` sends.
        #expect(try strata(e, ["run", "-d", "--name", "usr1", "--stop-signal", "USR1", RunTests.image, "sh", "-c",
                                "trap 'exit 3' USR1; while :; do sleep 0.1; done"]).0 == 0)
        #expect(try strata(e, ["stop", "usr1"]).0 == 0)
        #expect(try strata(e, ["wait", "usr1"]).1 == "3\n")
        // The image's own StopSignal (set here by a commit's STOPSIGNAL change).
        #expect(try strata(e, ["create", "--name", "base", RunTests.image]).0 == 0)
        #expect(try strata(e, ["commit", "base", "example.com/strata/sig:1", "-c", "STOPSIGNAL USR2"]).0 == 0)
        #expect(try strata(e, ["rm", "base"]).0 == 0)
        #expect(try strata(e, ["run", "-d", "--name", "usr2", "example.com/strata/sig:1", "sh", "-c",
                                "trap 'exit 4' USR2; while :; do sleep 0.1; done"]).0 == 0)
        #expect(try strata(e, ["stop", "usr2"]).0 == 0)
        #expect(try strata(e, ["wait", "usr2"]).1 == "4\n")
        #expect(try strata(e, ["rm", "stubborn", "usr1", "usr2"]).0 == 0)
        #expect(try strata(e, ["rmi", "example.com/strata/sig:1"]).0 == 0)
        try e.expectClean()
    }

    @Test func followAndRemoveOnExit() throws {
        let e = try Env()
        #expect(try strata(e, ["run", "-d", "--name", "ticker", RunTests.image, "sh", "-c",
                                "for i in 1 2 3; do echo tick $i; sleep 0.3; done"]).0 == 0)
        // -f follows new lines until the container ends.
        let (rc, out, _) = try strata(e, ["logs", "-f", "ticker"])
        #expect(rc == 0 && out == "tick 1\ntick 2\ntick 3\n", "\(out)")
        #expect(try strata(e, ["rm", "ticker"]).0 == 0)
        // --rm: the monitor removes the container once it has ended.
        let (rc2, id, _) = try strata(e, ["run", "-d", "--rm", RunTests.image, "true"])
        #expect(rc2 == 0)
        for _ in 0..<50 {
            guard try strata(e, ["ps", "-a", "-q"]).1.contains(id.prefix(12)) else { break }
            usleep(100_000)
        }
        try e.expectClean()
        // A command that cannot start: the launcher's error and code, nothing left.
        let (rc3, _, err3) = try strata(e, ["run", "-d", RunTests.image, "/no/such/program"])
        #expect(rc3 == 127 && err3.contains("no/such/program"), "\(err3)")
        try e.expectClean()
    }

    @Test func killedMonitorLeavesNothingUnremovable() throws {
        let e = try Env()
        #expect(try strata(e, ["run", "-d", "--name", "orphan", RunTests.image, "sleep", "30"]).0 == 0)
        for pid in monitors(e) { kill(pid_t(pid) ?? 0, SIGKILL) }
        usleep(200_000)
        // The cgroup tells what still runs.
        #expect(try strata(e, ["ps"]).1.contains("Up "))
        #expect(try strata(e, ["rm", "-f", "orphan"]).0 == 0)
        try e.expectClean()
    }
}

extension RunTests {
    /// exec sees what the container sees: its hostname, its pid 1, its cgroup limit, its
    /// capabilities and seccomp filter; fds 0-2 only; users from the image; exit codes as run.
    @Test func execJoinsTheContainer() throws {
        let e = try Env()
        #expect(try strata(e, ["run", "-d", "--name", "box", "--hostname", "boxy", "--memory", "64m", "--security-opt", "no-new-privileges", RunTests.image, "sleep", "60"]).0 == 0)
        let script = "hostname; tr '\\0' ' ' < /proc/1/cmdline; echo; echo me=$$; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; grep -E 'CapEff|NoNewPrivs|Seccomp:' /proc/self/status; ls /proc/self/fd | tr '\\n' ' '"
        let (rc, out, err) = try strata(e, ["exec", "box", "sh", "-c", script])
        #expect(rc == 0, "\(err)")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.first == "boxy" && lines.dropFirst().first == "sleep 60 " && lines.contains("me=2"), "\(out)")
        #expect(lines.contains("67108864") || lines.contains("67108864\n"), "\(out)")
        #expect(out.contains("CapEff:\t00000000a80425fb") && out.contains("NoNewPrivs:\t1") && out.contains("Seccomp:\t2"), "\(out)")
        #expect(lines.last == "0 1 2 3 ", "fds 0-2 and ls's own: \(out)")
        #expect(try strata(e, ["exec", "-u", "1000", "-e", "X=y", "-w", "/tmp", "box", "sh", "-c", "id -u; echo $X; pwd"]).1 == "1000\ny\n/tmp\n")
        #expect(try strata(e, ["exec", "box", "sh", "-c", "exit 5"]).0 == 5)
        #expect(try strata(e, ["exec", "box", "/no/such"]).0 == 127)
        // A container that does not run cannot be joined.
        #expect(try strata(e, ["stop", "-t", "0", "box"]).0 == 0)
        let (rc2, _, err2) = try strata(e, ["exec", "box", "true"])
        #expect(rc2 == 125 && err2.contains("not running"), "\(err2)")
        #expect(try strata(e, ["rm", "box"]).0 == 0)
        try e.expectClean()
    }
}

extension RunTests {
    /// A foreground run whose container is removed under it says so, with 137.
    @Test func foregroundRunRemovedUnderIt() throws {
        let e = try Env()
        let pid = try spawn([RunTests.binary, "--root", e.root, "run", "--name", "fg", RunTests.image, "sleep", "30"], stderr: e.t.sub("fg.err"))
        #expect(try e.waitUntilRunning() > 0)
        #expect(try strata(e, ["rm", "-f", "fg"]).0 == 0)
        #expect(reap(pid) == 137)
        let err = (try? String(contentsOfFile: e.t.sub("fg.err"), encoding: .utf8)) ?? ""
        #expect(err.contains("was removed while it ran"), "\(err)")
        try e.expectClean()
    }
}

extension RunTests {
    /// `exec -it` through a pty of the container's own devpts, driven from a terminal here.
    @Test func execThroughATerminal() throws {
        let e = try Env()
        #expect(try strata(e, ["run", "-d", "--name", "tty", RunTests.image, "sleep", "60"]).0 == 0)
        let (out, err) = try onTerminal([RunTests.binary, "--root", e.root, "exec", "-i", "-t", "tty", "sh"],
                                        typing: "tty; echo marker-$((6*7)); exit 5\n")
        #expect(out.contains("marker-42"), "\(out) \(err)")
        #expect(out.contains("/dev/pts/0"), "a terminal of the container's own devpts: \(out)")
        #expect(out.contains("exit 5"))
        #expect(try strata(e, ["rm", "-f", "tty"]).0 == 0)
        try e.expectClean()
    }
}
