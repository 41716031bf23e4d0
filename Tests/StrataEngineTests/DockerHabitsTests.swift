import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing

/// What a Docker user types in a first hour, checked against what Docker documents for it.
@Suite(.serialized, .enabled(if: isRoot && overlayWorks && cgroupLayout != nil, "needs root, overlayfs and cgroups"))
struct DockerHabitsTests {
    static let image = RunTests.image

    func strata(_ e: RunTests.Env, _ args: [String]) throws -> (Int32, String, String) { try strataCLI(args, root: e.root) }

    /// `tag` checks the new name by the grammar `pull` uses: what it accepts, podman can load.
    @Test func tagIsCheckedAsPullChecksIt() throws {
        let e = try RunTests.Env()
        let before = try strata(e, ["images", "--format", "{{.Repository}}:{{.Tag}}"]).1
        for bad in ["UPPER:case", "foo:bar:baz", "foo:", "foo@sha256:" + String(repeating: "0", count: 64), "a//b", "x/Y"] {
            let (rc, _, err) = try strata(e, ["tag", Self.image, bad])
            #expect(rc == 64 && err.contains("invalid"), "\(bad): \(err)")
        }
        #expect(try strata(e, ["images", "--format", "{{.Repository}}:{{.Tag}}"]).1 == before)
        for good in ["lower", "localhost:5000/a/b:v1.2-rc_3", "x.io/deep/er/name:t"] {
            let (rc, _, err) = try strata(e, ["tag", Self.image, good])
            #expect(rc == 0, "\(good): \(err)")
        }
        // commit and import take the same rule.
        #expect(try strata(e, ["create", "--name", "c1", Self.image]).0 == 0)
        #expect(try strata(e, ["commit", "c1", "Bad:Name"]).0 == 64)
    }

    /// `docker save IMAGE | gzip`: without -o the archive goes to standard output when that is not a terminal.
    @Test func saveWritesToAPipe() throws {
        let e = try RunTests.Env()
        let (rc, out, err) = try sh(["bash", "-c", "set -o pipefail; '\(strataBinary)' --root '\(e.root)' -q save \(Self.image) | tar -t"])
        #expect(rc == 0, "\(err)")
        #expect(out.split(separator: "\n").contains("manifest.json"), "\(out)")
        // And the archive loads back as the same image.
        let archive = e.t.sub("saved.tar")
        #expect(try sh(["bash", "-c", "'\(strataBinary)' --root '\(e.root)' -q save \(Self.image) > '\(archive)'"]).0 == 0)
        let id = try strata(e, ["images", "-q", "--no-trunc", Self.image]).1
        let (lrc, _, lerr) = try strataCLI(["-q", "load", archive], root: e.t.sub("other"))
        #expect(lrc == 0, "\(lerr)")
        #expect(try strataCLI(["images", "-q", "--no-trunc"], root: e.t.sub("other")).1 == id)
    }

    /// `rmi a b c` and `rm a b c` try every name, report each failure and exit with the first one's code.
    @Test func removalTriesEveryName() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["tag", Self.image, "second:one"]).0 == 0)
        let (rc, out, err) = try strata(e, ["rmi", "no-such-image", "second:one", "other-missing"])
        #expect(rc == 2, "\(err)")
        #expect(out.contains("Untagged: second:one"), "\(out)")
        #expect(err.contains("no-such-image") && err.contains("other-missing"), "\(err)")
        #expect(try strata(e, ["create", "--name", "keep", Self.image]).0 == 0)
        let (rrc, rout, rerr) = try strata(e, ["rm", "missing-one", "keep"])
        #expect(rrc == 2 && rout == "keep\n" && rerr.contains("missing-one"), "\(rout)\(rerr)")
    }

    /// `stop -t0` as Docker takes it: the timeout attached to the flag.
    @Test func stopTakesAnAttachedTimeout() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["run", "-d", "--name", "sleeper", Self.image, "sh", "-c", "trap '' TERM; sleep 60"]).0 == 0)
        let start = Date()
        let (rc, out, err) = try strata(e, ["stop", "-t0", "sleeper"])
        #expect(rc == 0 && out == "sleeper\n", "\(out)\(err)")
        #expect(Date().timeIntervalSince(start) < 5 * timeScale)
        #expect(try strata(e, ["ps", "-a", "--format", "{{.State}}"]).1 == "exited\n")
        // A container command's own attached value is left alone.
        #expect(try strata(e, ["run", "--rm", Self.image, "head", "-n1", "/etc/passwd"]).1.hasPrefix("root:"))
    }

    /// An unknown command is named for what it is; a suggestion only for a slip of the keyboard.
    @Test func unknownCommandsAreNamedOrNear() throws {
        let e = try RunTests.Env()
        for (typed, says) in [("top", "a Docker command strata does not have yet"), ("cp", "a Docker command strata does not have yet"),
                              ("stpo", "did you mean 'stop'?"), ("imagez", "did you mean 'images'?")] {
            let (rc, _, err) = try strata(e, [typed])
            #expect(rc == 64 && err.contains(says), "\(typed): \(err)")
        }
        for far in ["xyz", "remame", "pase"] {
            let (rc, _, err) = try strata(e, [far])
            #expect(rc == 64 && !err.contains("did you mean"), "\(far): \(err)")
        }
    }

    /// A container without --name gets a name as Docker's: adjective_surname.
    @Test func containerNamesAreAdjectiveSurname() throws {
        let e = try RunTests.Env()
        for _ in 0..<3 { #expect(try strata(e, ["create", Self.image]).0 == 0) }
        let names = try strata(e, ["ps", "-a", "--format", "{{.Names}}"]).1.split(separator: "\n").map(String.init)
        #expect(names.count == 3 && Set(names).count == 3, "\(names)")
        for n in names { #expect(n.wholeMatch(of: /[a-z]+_[a-z]+[0-9]?/) != nil, "\(n)") }
    }

    /// Under run, `-h` is the hostname, as in Docker; `--help` is the help.
    @Test func runDashHIsTheHostname() throws {
        let e = try RunTests.Env()
        let (rc, out, err) = try e.run(["-h", "myhost", Self.image, "hostname"])
        #expect(rc == 0 && out == "myhost\n", "\(out)\(err)")
        #expect(try strata(e, ["run", "--help"]).1.contains("--hostname"))
    }

    /// no_new_privs only when asked (`--security-opt no-new-privileges`), with the seccomp filter
    /// on either way, for a non-root user too; /dev/mqueue is the container's own mqueue.
    @Test func noNewPrivilegesOnlyWhenAsked() throws {
        let e = try RunTests.Env()
        let script = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; grep -c ' /dev/mqueue mqueue ' /proc/mounts"
        let (rc, out, err) = try e.run([Self.image, "sh", "-c", script])
        #expect(rc == 0 && out == "NoNewPrivs:\t0\nSeccomp:\t2\n1\n", "\(out)\(err)")
        let (rc2, out2, err2) = try e.run(["-u", "nobody", "--security-opt", "no-new-privileges", Self.image, "sh", "-c", script])
        #expect(rc2 == 0 && out2 == "NoNewPrivs:\t1\nSeccomp:\t2\n1\n", "\(out2)\(err2)")
        let (rc3, out3, err3) = try e.run(["-u", "nobody", Self.image, "sh", "-c", script + "; id -u"])
        #expect(rc3 == 0 && out3 == "NoNewPrivs:\t0\nSeccomp:\t2\n1\n65534\n", "\(out3)\(err3)")
        // The filter still binds a process that may gain privileges: a syscall the profile denies is denied.
        let (_, out4, _) = try e.run([Self.image, "sh", "-c", "unshare -U true 2>/dev/null && echo UNSHARED || echo DENIED"])
        #expect(out4 == "DENIED\n", "\(out4)")
    }

    /// `-u USER:GROUP` runs with that group alone; `-u USER` with the user's supplementary groups too.
    @Test func explicitGroupHasNoSupplementaryGroups() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["run", "--name", "g", Self.image, "sh", "-c", "echo extra:x:1234:nobody >> /etc/group"]).0 == 0)
        #expect(try strata(e, ["commit", "g", "groups:1"]).0 == 0)
        let (_, implicit, _) = try strata(e, ["run", "--rm", "-u", "nobody", "groups:1", "id", "-G"])
        #expect(implicit.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.contains("1234"), "\(implicit)")
        let (_, explicit, _) = try strata(e, ["run", "--rm", "-u", "nobody:0", "groups:1", "id", "-G"])
        #expect(explicit == "0\n", "\(explicit)")
    }
}
