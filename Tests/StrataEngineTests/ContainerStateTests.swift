import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataSystem

/// What a container leaves for later: every line of its log (across rotations, while followed),
/// the state of a foreground run, and its exit code and removal on a full disk.
extension RunTests {
    /// The lines of `text`, each a number, checked to be 1...n once each, in order; the first
    /// line that is not the one expected, or nil.
    func firstGap(_ text: String, upTo n: Int) -> String? {
        var expected = 1
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            guard Int(line) == expected else { return "line \(expected): got \"\(line.prefix(40))\"" }
            expected += 1
        }
        return expected == n + 1 ? nil : "ended after \(expected - 1) of \(n) lines"
    }

    @Test func followLosesNothingAcrossRotations() throws {
        let e = try Env()
        let n = 400_000
        // Small files: the log rotates about every 30,000 lines while `-f` follows it.
        #expect(try strata(e, ["run", "-d", "--name", "flood", "--log-max-size", "1m", RunTests.image, "sh", "-c",
                                "sleep 1; seq 1 \(n)"]).0 == 0)
        let out = e.t.sub("follow.out")
        let (rc, _, err) = try sh(["sh", "-c", "\"$0\" --root \"$1\" logs -f flood > \"$2\"", RunTests.binary, e.root, out])
        #expect(rc == 0, "\(err)")
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(firstGap(text, upTo: n) == nil, "\(firstGap(text, upTo: n) ?? "")")
        // --tail reads back from the end, across the rotated file.
        let (_, last, _) = try strata(e, ["logs", "--tail", "3", "flood"])
        #expect(last == "\(n - 2)\n\(n - 1)\n\(n)\n", "\(last)")
        // What is still on disk (two files), and its last lines but 100: from inside the rotated one.
        let kept = try strata(e, ["logs", "flood"]).1.split(separator: "\n")
        #expect(kept.count > 30000 && kept.last == "\(n)", "\(kept.count)")
        let (_, many, _) = try strata(e, ["logs", "--tail", "\(kept.count - 100)", "flood"])
        #expect(many.split(separator: "\n") == Array(kept.dropFirst(100)))
        #expect(try strata(e, ["logs", "--tail", "0", "flood"]).1.isEmpty)
        #expect(try strata(e, ["rm", "flood"]).0 == 0)
        try e.expectClean()
    }

    @Test func partialLineShowsWhileRunning() throws {
        let e = try Env()
        #expect(try strata(e, ["run", "-d", "--name", "prompt", RunTests.image, "sh", "-c",
                                "echo one; printf 'two '; sleep 1; printf 'halves\\nprompt> '; sleep 30"]).0 == 0)
        var shown = ""
        for _ in 0..<50 {
            shown = try strata(e, ["logs", "prompt"]).1
            if shown.hasSuffix("prompt> ") { break }
            usleep(100_000)
        }
        #expect(shown == "one\ntwo halves\nprompt> ", "\(shown)")
        #expect(try strata(e, ["logs", "--tail", "1", "prompt"]).1 == "prompt> ")
        #expect(try strata(e, ["logs", "--tail", "2", "prompt"]).1 == "two halves\nprompt> ")
        let stamped = try strata(e, ["logs", "-t", "prompt"]).1.split(separator: "\n")
        #expect(stamped.count == 3 && stamped[1].hasSuffix(" two halves") && stamped[1].hasPrefix("20")
                && stamped[1].split(separator: " ").count == 3, "\(stamped)")
        #expect(try strata(e, ["rm", "-f", "prompt"]).0 == 0)
        try e.expectClean()
    }

    @Test func foregroundRunIsRecorded() throws {
        let e = try Env()
        let (rc, out, _) = try strata(e, ["run", "--name", "fg", RunTests.image, "sh", "-c", "echo hi; exit 7"])
        #expect(rc == 7 && out == "hi\n")
        let (_, json, _) = try strata(e, ["ps", "-a", "--json"])
        let row = (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])?.first
        #expect(row?["state"] as? String == "exited" && row?["exitCode"] as? Int == 7, "\(json)")
        #expect(row?["startedAt"] is String && row?["finishedAt"] is String && (row?["command"] as? [String]) == ["sh", "-c", "echo hi; exit 7"])
        #expect(try strata(e, ["ps", "-a"]).1.contains("Exited (7)"))
        #expect(try strata(e, ["wait", "fg"]).1 == "7\n")
        #expect(try strata(e, ["inspect", "-f", "{{.State.ExitCode}} {{.State.Status}}", "fg"]).1 == "7 exited\n")
        // start runs the recorded command again, detached.
        #expect(try strata(e, ["start", "fg"]).0 == 0)
        #expect(try strata(e, ["wait", "fg"]).1 == "7\n")
        #expect(try strata(e, ["logs", "fg"]).1 == "hi\n")

        // While it runs: ps, exec and wait see it as they see a detached one.
        let pid = try spawn([RunTests.binary, "--root", e.root, "run", "--name", "live", RunTests.image, "sh", "-c",
                             "trap 'exit 3' TERM; while :; do sleep 0.1; done"])
        #expect(try e.waitUntilRunning() > 0)
        #expect(try strata(e, ["ps"]).1.contains("Up "))
        #expect(try strata(e, ["exec", "live", "echo", "inside"]).1 == "inside\n")
        #expect(try strata(e, ["stop", "live"]).0 == 0)
        #expect(reap(pid) == 3)
        #expect(try strata(e, ["wait", "live"]).1 == "3\n")
        #expect(try strata(e, ["rm", "fg", "live"]).0 == 0)
        try e.expectClean()
    }

    /// A store on a small tmpfs that the container fills: its exit code is recorded all the
    /// same, `rm -f` completes, and a removal cut short is finished by `rm -f` or `check --repair`.
    @Test func fullDiskKeepsExitCodesAndFinishesRemovals() throws {
        let t = TempDir("strata-full")
        defer { t.remove() }
        let disk = t.sub("disk")
        mkdir(disk, 0o755)
        #expect(try sh(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", disk]).0 == 0)
        defer { _ = try? sh(["umount", "-l", disk]) }
        let root = disk + "/store"
        func cli(_ args: [String]) throws -> (Int32, String, String) { try strataCLI(args, root: root) }
        #expect(try cli(["-q", "load", fixtures + "/oci-gzip"]).0 == 0)

        // Logs and writes until the disk is full, logs on, then exits 7.
        #expect(try cli(["run", "-d", "--name", "filler", RunTests.image, "sh", "-c",
                         "dd if=/dev/zero of=/fill bs=1M 2>/dev/null; seq 1 100000; echo done; exit 7"]).0 == 0)
        #expect(try cli(["wait", "filler"]).1 == "7\n")
        #expect(try cli(["ps", "-a"]).1.contains("Exited (7)"))
        let free = try FDHandle.open(disk, flags: .readOnly).freeBytes()
        #expect(free < 1 << 20, "the disk is full: \(free) bytes free")
        // A foreground run on the full disk cannot start (no room for its record): it says so.
        #expect(try cli(["run", RunTests.image, "true"]).0 != 0)
        #expect(try cli(["rm", "-f", "filler"]).0 == 0)
        #expect(try FDHandle.open(disk, flags: .readOnly).freeBytes() > 30 << 20)

        // Two containers, then the disk filled from outside; each removal cut short after its
        // mark (as a killed or failed `rm -f` leaves it): `check` reports both, `rm -f` finishes
        // one and `check --repair` the other.
        #expect(try cli(["run", "-d", "--name", "a", RunTests.image, "sleep", "60"]).0 == 0)
        #expect(try cli(["run", "-d", "--name", "b", RunTests.image, "sleep", "60"]).0 == 0)
        _ = try sh(["dd", "if=/dev/zero", "of=" + disk + "/ballast", "bs=1M"])
        for name in ["a", "b"] {
            let id = try cli(["inspect", "-f", "{{.Id}}", name]).1.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(FileManager.default.createFile(atPath: "\(root)/containers/\(id)/removing", contents: nil))
            _ = try cli(["kill", name])
            #expect(try cli(["wait", name]).1 == "137\n")
        }
        #expect(try cli(["rm", "-f", "a"]).0 == 0, "rm -f completes on the full disk")
        let (rcCheck, report, _) = try cli(["check"])
        #expect(rcCheck != 0 && report.contains("container b: its removal began and did not finish"), "\(report)")
        #expect(!report.contains("container a"), "rm -f finished a: \(report)")
        let (rcRepair, repaired, _) = try cli(["check", "--repair"])
        #expect(rcRepair == 0 && repaired.contains("finished removing container"), "\(repaired)")
        #expect(try cli(["ps", "-a", "-q"]).1.isEmpty)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: root + "/containers")) == [])
        removeFile(disk + "/ballast")
        #expect(try cli(["check"]).0 == 0)
    }
}
