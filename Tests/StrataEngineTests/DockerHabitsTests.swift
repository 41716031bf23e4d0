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
        for (typed, says) in [("update", "a Docker command strata does not have yet"), ("swarm", "a Docker command strata does not have yet"),
                              ("stpo", "did you mean 'stop'?"), ("imagez", "did you mean 'images'?")] {
            let (rc, _, err) = try strata(e, [typed])
            #expect(rc == 64 && err.contains(says), "\(typed): \(err)")
        }
        for far in ["xyz", "frobnicate", "qqqq"] {
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

    /// `create IMAGE CMD…` takes `run`'s flags and writes the spec; `start -a` runs it, shows this
    /// run's output and exits with its code; `--rm` removes it after.
    @Test func createTakesRunsFlagsAndStartAttaches() throws {
        let e = try RunTests.Env()
        let (rc, out, err) = try strata(e, ["create", "--name", "made", "-e", "X=y", "-u", "nobody", "-h", "hh", Self.image,
                                            "sh", "-c", "echo $X; id -u; hostname; echo oops >&2"])
        #expect(rc == 0 && out.count == 65, "\(out)\(err)")
        #expect(try strata(e, ["ps", "-a", "--format", "{{.Names}} {{.State}}"]).1 == "made created\n")
        let (src, sout, serr) = try strata(e, ["start", "-a", "made"])
        #expect(src == 0 && sout == "y\n65534\nhh\n" && serr == "oops\n", "\(sout)\(serr)")
        // Again: this run's output only, not the last one's too.
        let (src2, sout2, _) = try strata(e, ["start", "-a", "made"])
        #expect(src2 == 0 && sout2 == "y\n65534\nhh\n", "\(sout2)")
        #expect(try strata(e, ["create", "--name", "three", "--rm", Self.image, "sh", "-c", "exit 3"]).0 == 0)
        #expect(try strata(e, ["start", "-a", "three"]).0 == 3)
        #expect(try strata(e, ["ps", "-a", "--format", "{{.Names}}"]).1 == "made\n")
        // Bad flags are refused before anything is made.
        #expect(try strata(e, ["create", "--memory", "lots", Self.image]).0 == 64)
        #expect(try strata(e, ["ps", "-a", "-q"]).1.split(separator: "\n").count == 1)
        #expect(try strata(e, ["rm", "-f", "made"]).0 == 0)
        try e.expectClean()
    }

    /// `run` and `create` of an image the store does not have pull it first (`--pull missing`);
    /// `--pull never` refuses; `--pull always` pulls again.
    @Test func runPullsAMissingImage() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let ref = "\(registry.host)/strata/busybox:a"
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: ref)
        let root = t.sub("store")
        let (rc, out, err) = try strataCLI(["run", "--rm", ref, "echo", "hi"], root: root)
        #expect(rc == 0 && out == "hi\n" && err.contains("Unable to find image") && err.contains("Digest: sha256:"), "\(out)\(err)")
        let (rc2, _, err2) = try strataCLI(["run", "--rm", ref, "true"], root: root)
        #expect(rc2 == 0 && !err2.contains("Unable to find"), "\(err2)")
        let other = "\(registry.host)/strata/other:1"
        let (rc3, _, err3) = try strataCLI(["run", "--rm", "--pull", "never", other, "true"], root: root)
        #expect(rc3 == 125 && err3.contains("no image"), "\(err3)")
        let (rc4, _, err4) = try strataCLI(["create", "--pull", "always", ref], root: root)
        #expect(rc4 == 0 && err4.contains("Digest: sha256:"), "\(err4)")
        let (rc5, _, err5) = try strataCLI(["run", "--rm", "--pull", "sometimes", ref, "true"], root: root)
        #expect(rc5 == 125 && err5.contains("--pull"), "\(err5)")
    }

    /// `inspect -f` as Docker users write it: range, index, join, upper/lower, len, if/else,
    /// pipes; an unknown field is an error; Author, Comment, DockerVersion, Parent are there.
    @Test func inspectTemplatesAndImageFields() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["create", "--name", "c", Self.image]).0 == 0)
        #expect(try strata(e, ["commit", "-a", "Ada <ada@example.com>", "-m", "a note", "-c", "LABEL team=core",
                               "-c", "LABEL tier=db", "c", "made:1"]).0 == 0)
        #expect(try strata(e, ["tag", "made:1", "made:2"]).0 == 0)
        func f(_ format: String, _ name: String = "made:1") throws -> (Int32, String, String) {
            try strata(e, ["inspect", "--type", "image", "-f", format, name])
        }
        #expect(try f("{{range .RepoTags}}<{{.}}>{{end}}").1 == "<made:1><made:2>\n")
        #expect(try f("{{index .Config.Labels \"team\"}} {{.Config.Labels.tier}} {{.Config.Labels.nope}}").1 == "core db <no value>\n")
        #expect(try f("{{join .RepoTags \", \"}}|{{upper .Os}}|{{.Architecture | lower}}|{{len .RootFS.Layers}}").1 == "made:1, made:2|LINUX|amd64|4\n")
        #expect(try f("{{.Author}}/{{.Comment}}/{{json .Parent}}/{{if .Config.Labels}}labelled{{else}}bare{{end}}").1
                == "Ada <ada@example.com>/a note/\"\"/labelled\n")
        #expect(try f("{{range .Config.Env}}{{println .}}{{end}}").1.hasPrefix("PATH="))
        #expect(try f("{{range .Nothing}}x{{else}}none{{end}}").0 == 64)
        let (rc, _, err) = try f("{{.NoSuchField}}")
        #expect(rc == 64 && err.contains("NoSuchField"), "\(err)")
        #expect(try f("{{range .RepoTags}}").0 == 64)
        #expect(try f("{{frobnicate .Id}}").0 == 64)
        let (_, state, _) = try strata(e, ["inspect", "-f", "{{.State.Running}} {{.State.Status}}", "c"])
        #expect(state == "false created\n", "\(state)")
    }

    /// `ps --filter` and `images --filter` with Docker's keys; `image prune` asks, then removes
    /// dangling images (`-a`: every image no container uses).
    @Test func filtersAndPrune() throws {
        let e = try RunTests.Env()
        // A second apart: creation times are kept to the second.
        #expect(try strata(e, ["run", "--name", "ok", "--label", "tier=web", Self.image, "true"]).0 == 0)
        sleep(1)
        #expect(try strata(e, ["run", "--name", "bad", Self.image, "sh", "-c", "exit 3"]).0 == 3)
        sleep(1)
        #expect(try strata(e, ["create", "--name", "fresh", Self.image]).0 == 0)
        func ps(_ args: String...) throws -> [String] {
            try strata(e, ["ps", "--format", "{{.Names}}"] + args).1.split(separator: "\n").map(String.init).sorted()
        }
        #expect(try ps("--filter", "status=exited") == ["bad", "ok"])
        #expect(try ps("-a", "--filter", "exited=3") == ["bad"])
        #expect(try ps("-a", "-f", "name=fre") == ["fresh"])
        #expect(try ps("-a", "-f", "label=tier=web") == ["ok"])
        #expect(try ps("-a", "-f", "label=tier") == ["ok"])
        #expect(try ps("-a", "-f", "status=created") == ["fresh"])
        #expect(try ps("-a", "-f", "before=fresh") == ["bad", "ok"])
        #expect(try ps("-a", "-f", "since=ok") == ["bad", "fresh"])
        #expect(try ps("-a", "-f", "ancestor=" + Self.image) == ["bad", "fresh", "ok"])
        #expect(try ps("-a", "-f", "status=exited", "-f", "status=created") == ["bad", "fresh", "ok"])
        #expect(try ps("-a", "-f", "status=exited", "-f", "name=ok") == ["ok"])
        // `table` in --format: a header row, the columns aligned.
        let (_, table, _) = try strata(e, ["ps", "-a", "-f", "name=ok", "--format", "table {{.Names}}\\t{{.Status}}\\t{{.ID}}"])
        let tableLines = table.split(separator: "\n").map(String.init)
        #expect(tableLines.count == 2 && tableLines[0].hasPrefix("NAMES   STATUS") && tableLines[0].hasSuffix("CONTAINER ID")
                && tableLines[1].hasPrefix("ok      Exited (0)"), "\(table)")
        #expect(try strata(e, ["images", "--format", "table {{.Repository}}:{{.Tag}}\\t{{.ID}}"]).1.hasPrefix("REPOSITORY:TAG"))
        #expect(try strata(e, ["ps", "-f", "bogus=1"]).0 == 64)
        #expect(try strata(e, ["ps", "-f", "status=sleeping"]).0 == 64)

        // An untagged (dangling) image and a tagged one no container uses.
        #expect(try strata(e, ["commit", "ok"]).0 == 0)
        #expect(try strata(e, ["commit", "bad", "spare:1"]).0 == 0)
        func images(_ args: String...) throws -> [String] {
            try strata(e, ["images", "--format", "{{.Repository}}:{{.Tag}}"] + args).1.split(separator: "\n").map(String.init).sorted()
        }
        #expect(try images("-f", "dangling=true") == ["<none>:<none>"])
        #expect(try images("-f", "dangling=false") == [Self.image, "spare:1"])
        #expect(try images("-f", "reference=example.com/strata/*") == [Self.image])
        #expect(try images("-f", "reference=example.com/strata/busybox:g*") == [Self.image])
        #expect(try images("-f", "reference=spare") == ["spare:1"])
        #expect(try images("-f", "since=" + Self.image).count == 2)
        #expect(try strata(e, ["images", "-f", "dangling=maybe"]).0 == 64)

        // prune asks first: no answer, nothing removed.
        let (rc, out, err) = try strataCLI(["image", "prune"], root: e.root, stdin: Array("n\n".utf8))
        #expect(rc == 0 && out.isEmpty && err.contains("Are you sure"), "\(out)\(err)")
        #expect(try images().count == 3)
        let (rc2, out2, _) = try strataCLI(["image", "prune"], root: e.root, stdin: Array("y\n".utf8))
        #expect(rc2 == 0 && out2.contains("1 images"), "\(out2)")
        #expect(try images() == [Self.image, "spare:1"])
        // -a: every image no container uses; the containers' own stays.
        #expect(try strata(e, ["image", "prune", "-a", "-f"]).1.contains("1 images"))
        #expect(try images() == [Self.image])
        #expect(try strata(e, ["rm", "ok", "bad", "fresh"]).0 == 0)
    }

    /// `--env-file`, `--add-host`, `--dns*`, `--ulimit` (run and exec), `--group-add`,
    /// `--shm-size`, `--stop-timeout`, `--cidfile`, as Docker's.
    @Test func runFlagsAsDocker() throws {
        let e = try RunTests.Env()
        let envFile = e.t.sub("env")
        try Data("A=1\n# a comment\n\n  B=two words\n".utf8).write(to: URL(fileURLWithPath: envFile))
        let (rc, out, err) = try e.run(["--env-file", envFile, "-e", "C=3", Self.image, "sh", "-c", "echo \"$A/$B/$C\""])
        #expect(rc == 0 && out == "1/two words/3\n", "\(out)\(err)")

        let (rc2, out2, err2) = try e.run(["--add-host", "db:10.1.2.3", "--add-host", "v6:[fd00::1]", "--dns", "10.9.9.9",
                                           "--dns-search", "example.com", "--dns-option", "ndots:2", Self.image,
                                           "sh", "-c", "grep -wE 'db|v6' /etc/hosts; cat /etc/resolv.conf"])
        #expect(rc2 == 0 && out2 == "10.1.2.3\tdb\nfd00::1\tv6\nnameserver 10.9.9.9\nsearch example.com\noptions ndots:2\n", "\(out2)\(err2)")

        let (rc3, out3, err3) = try e.run(["--ulimit", "nofile=100:200", "--ulimit", "core=0", Self.image, "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"])
        #expect(rc3 == 0 && out3 == "100\n200\n0\n", "\(out3)\(err3)")
        let (_, out4, _) = try e.run(["-u", "nobody", "--group-add", "1234", Self.image, "id", "-G"])
        #expect(out4.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.contains("1234"), "\(out4)")
        let (_, out5, _) = try e.run(["--shm-size", "8m", Self.image, "sh", "-c", "df -k /dev/shm | tail -1"])
        #expect(out5.split(separator: " ").contains("8192"), "\(out5)")
        for bad in [["--ulimit", "bogus=1"], ["--ulimit", "nofile=20:10"], ["--add-host", "nocolon"], ["--dns", "not-an-ip"],
                    ["--shm-size", "1"], ["--group-add", "nosuchgroup"]] {
            let (brc, _, berr) = try strata(e, ["run", "--rm"] + bad + [Self.image, "true"])
            #expect(brc == 125 && berr.hasPrefix("strata: "), "\(bad): \(berr)")
        }
        #expect(try strata(e, ["ps", "-a", "-q"]).1.isEmpty)

        // The stop timeout is the container's own; exec gets its limits too.
        #expect(try strata(e, ["run", "-d", "--name", "st", "--stop-timeout", "1", "--ulimit", "nofile=123",
                               Self.image, "sh", "-c", "trap '' TERM; sleep 60"]).0 == 0)
        #expect(try strata(e, ["exec", "st", "sh", "-c", "ulimit -n"]).1 == "123\n")
        let start = Date()
        #expect(try strata(e, ["stop", "st"]).0 == 0)
        #expect(Date().timeIntervalSince(start) < 6 * timeScale)

        let cid = e.t.sub("cid")
        #expect(try strata(e, ["run", "--rm", "--cidfile", cid, Self.image, "true"]).0 == 0)
        #expect(readString(cid)?.count == 64)
        let (crc, _, cerr) = try strata(e, ["run", "--rm", "--cidfile", cid, Self.image, "true"])
        #expect(crc == 125 && cerr.contains("exists"), "\(cerr)")
        #expect(try strata(e, ["rm", "st"]).0 == 0)
    }

    /// `pause`/`unpause` (the freezer: ps shows it, a paused container still stops), `top`,
    /// `stats --no-stream`, `rename`.
    @Test func pauseTopStatsRename() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["run", "-d", "--name", "busy", "--memory", "64m", Self.image, "sh", "-c",
                               "while :; do echo tick >> /tmp/ticks; sleep 0.1; done"]).0 == 0)
        // top: the shell and its sleep, as the host's kernel lists them.
        let (trc, top, terr) = try strata(e, ["top", "busy"])
        #expect(trc == 0 && top.hasPrefix("UID") && top.contains("while :; do"), "\(top)\(terr)")
        let (src, stats, serr) = try strata(e, ["stats", "--no-stream", "--json", "busy"])
        #expect(src == 0, "\(serr)")
        let rows = try JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [[String: Any]]
        #expect(rows?.first?["name"] as? String == "busy" && rows?.first?["memoryLimit"] as? Int == 64 << 20, "\(stats)")
        #expect((rows?.first?["pids"] as? Int ?? 0) >= 1 && (rows?.first?["memoryBytes"] as? Int ?? 0) > 0, "\(stats)")
        #expect(try strata(e, ["stats", "--no-stream"]).1.contains("MEM USAGE / LIMIT"))

        // pause: nothing runs; ps says so; unpause: it goes on.
        #expect(try strata(e, ["pause", "busy"]).0 == 0)
        #expect(try strata(e, ["ps", "--format", "{{.State}} {{.Status}}"]).1.hasPrefix("paused Up"))
        #expect(try strata(e, ["ps", "-f", "status=paused", "-q"]).1.count == 13)
        #expect(try strata(e, ["pause", "busy"]).0 == 3)
        let (_, m, _) = try strata(e, ["mount", "busy"])
        let ticks = (m.split(separator: "\n").last.map(String.init) ?? "") + "/tmp/ticks"
        let frozen = readString(ticks)
        sleep(1)
        #expect(readString(ticks) == frozen, "it ran while paused")
        #expect(try strata(e, ["unpause", "busy"]).0 == 0)
        var resumed = false
        for _ in 0..<Int(50 * timeScale) where !resumed { usleep(100_000); resumed = readString(ticks) != frozen }
        #expect(resumed, "it did not go on after unpause")
        #expect(try strata(e, ["unpause", "busy"]).0 == 3)
        #expect(try strata(e, ["umount", "busy"]).0 == 0)

        // rename: the new name finds it, the old does not; a taken or bad name is refused.
        #expect(try strata(e, ["create", "--name", "other", Self.image]).0 == 0)
        #expect(try strata(e, ["rename", "busy", "worker"]).0 == 0)
        #expect(try strata(e, ["ps", "--format", "{{.Names}}"]).1 == "worker\n")
        #expect(try strata(e, ["top", "busy"]).0 == 2)
        #expect(try strata(e, ["rename", "worker", "other"]).0 == 3)
        #expect(try strata(e, ["rename", "worker", "bad name"]).0 == 64)

        // A paused container still stops (and rm -f removes one).
        #expect(try strata(e, ["pause", "worker"]).0 == 0)
        let start = Date()
        #expect(try strata(e, ["stop", "-t", "1", "worker"]).0 == 0)
        #expect(Date().timeIntervalSince(start) < 8 * timeScale)
        #expect(try strata(e, ["top", "worker"]).0 == 3)
        #expect(try strata(e, ["start", "worker"]).0 == 0)
        #expect(try strata(e, ["pause", "worker"]).0 == 0)
        #expect(try strata(e, ["rm", "-f", "worker", "other"]).0 == 0)
        try e.expectClean()
    }

    /// `exec -d`: the command starts in the running container and strata returns at once.
    @Test func execDetached() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["run", "-d", "--name", "box", Self.image, "sleep", "60"]).0 == 0)
        let start = Date()
        let (rc, out, err) = try strata(e, ["exec", "-d", "box", "sh", "-c", "sleep 1; echo done > /tmp/x"])
        #expect(rc == 0 && out.isEmpty, "\(out)\(err)")
        #expect(Date().timeIntervalSince(start) < 1 * timeScale + 0.5)
        var seen = ""
        for _ in 0..<Int(50 * timeScale) where seen != "done\n" {
            usleep(100_000)
            seen = try strata(e, ["exec", "box", "sh", "-c", "cat /tmp/x 2>/dev/null || true"]).1
        }
        #expect(seen == "done\n")
        #expect(try strata(e, ["exec", "-d", "-t", "box", "true"]).0 == 125)
        #expect(try strata(e, ["exec", "-d", "box", "/no/such"]).0 == 127)
        #expect(try strata(e, ["rm", "-f", "box"]).0 == 0)
        try e.expectClean()
    }

    /// `--restart`: on-failure:N restarts N times after non-zero exits; always restarts until
    /// `stop`, which also holds one between two runs; `start` clears the stop.
    @Test func restartPolicies() throws {
        let e = try RunTests.Env()
        func count(_ name: String) throws -> Int { Int(try strata(e, ["inspect", "-f", "{{.RestartCount}}", name]).1.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1 }
        func waitFor(_ what: () throws -> Bool) throws -> Bool {
            for _ in 0..<Int(100 * timeScale) { if try what() { return true }; usleep(100_000) }
            return false
        }
        #expect(try strata(e, ["run", "-d", "--name", "r", "--restart", "on-failure:2", Self.image, "sh", "-c", "date >> /tmp/runs; exit 3"]).0 == 0)
        #expect(try waitFor { try count("r") == 2 && strata(e, ["ps", "-a", "-f", "name=r", "--format", "{{.State}}"]).1 == "exited\n" })
        usleep(UInt32(1_000_000 * timeScale))
        #expect(try count("r") == 2)
        let m = try strata(e, ["mount", "r"]).1.split(separator: "\n").last.map(String.init) ?? ""
        #expect(readString(m + "/tmp/runs")?.split(separator: "\n").count == 3)
        #expect(try strata(e, ["umount", "r"]).0 == 0)
        // on-failure does not restart a clean exit.
        #expect(try strata(e, ["run", "-d", "--name", "ok", "--restart", "on-failure", Self.image, "true"]).0 == 0)
        #expect(try strata(e, ["wait", "ok"]).1 == "0\n")
        usleep(UInt32(500_000 * timeScale))
        #expect(try count("ok") == 0)
        // always: restarts until stop.
        #expect(try strata(e, ["run", "-d", "--name", "a", "--restart", "always", Self.image, "sh", "-c", "sleep 0.2"]).0 == 0)
        #expect(try waitFor { try count("a") >= 2 })
        #expect(try strata(e, ["stop", "-t", "1", "a"]).0 == 0)
        let stopped = try count("a")
        usleep(UInt32(1_500_000 * timeScale))
        #expect(try count("a") == stopped)
        #expect(try strata(e, ["ps", "-a", "-f", "name=a", "--format", "{{.Names}} {{.State}}"]).1 == "a exited\n")
        // Refused: an unknown policy, and with --rm.
        #expect(try strata(e, ["run", "-d", "--restart", "sometimes", Self.image, "true"]).0 == 125)
        #expect(try strata(e, ["run", "-d", "--rm", "--restart", "always", Self.image, "true"]).0 == 125)
        #expect(try strata(e, ["rm", "-f", "r", "ok", "a"]).0 == 0)
        try e.expectClean()
    }

    /// Shell completion offers the store's container and image names where a command takes them
    /// (what the generated scripts ask through `---completion`); a store that is not there is not made.
    @Test func completionsOfferNames() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["create", "--name", "web1", Self.image]).0 == 0)
        #expect(try strata(e, ["create", "--name", "db1", Self.image]).0 == 0)
        let complete = { (args: [String], env: [String: String]) in try sh([strataBinary, "---completion"] + args, env: env) }
        #expect(try complete(["rm", "--", "positional@0", "0", "1", "w"], ["STRATA_ROOT": e.root]).1 == "web1\n")
        let (_, all, _) = try complete(["stop", "--", "positional@0", "2", "0", "stop", "--root", e.root, ""], [:])
        #expect(all.split(separator: "\n").contains("db1") && all.split(separator: "\n").contains("web1"), "\(all)")
        #expect(try complete(["run", "--", "positional@0", "0", "0", ""], ["STRATA_ROOT": e.root]).1 == Self.image + "\n")
        let missing = e.t.sub("no-store")
        #expect(try complete(["rm", "--", "positional@0", "0", "0", ""], ["STRATA_ROOT": missing]).1.isEmpty)
        #expect(!exists(missing))
        #expect(try sh([strataBinary, "--generate-completion-script", "bash"]).1.contains("---completion"))
        #expect(try strata(e, ["rm", "web1", "db1"]).0 == 0)
    }
    /// `--device HOST[:CONTAINER][:PERMS]`: the node is made in the container's /dev and its
    /// cgroup allows it with those permissions only; without it the same node is refused.
    @Test func deviceFlag() throws {
        let e = try RunTests.Env()
        // A node of its own for the loop driver's 7:0 (not one of the default devices).
        let node = e.t.sub("loopnode")
        #expect(try sh(["mknod", "-m", "600", node, "b", "7", "0"]).0 == 0)
        let (rc, out, err) = try strata(e, ["run", "--rm", "--device", node + ":/dev/sub/disk:r", Self.image, "sh", "-c",
                                            "stat -c '%t:%T %F' /dev/sub/disk; head -c 1 /dev/sub/disk >/dev/null && echo read; (: > /dev/sub/disk) 2>/dev/null || echo nowrite"])
        #expect(rc == 0 && out == "7:0 block special file\nread\nnowrite\n", "\(out)\(err)")
        let (_, out2, _) = try strata(e, ["run", "--rm", Self.image, "sh", "-c", "mknod /dev/d b 7 0; head -c 1 /dev/d >/dev/null 2>&1 || echo denied"])
        #expect(out2 == "denied\n")
        for bad in ["/etc/passwd", "/dev/null:/dev/tty", "/dev/null:/etc/null", "/dev/null:/dev/x:rwz", "/no/such/device"] {
            let (brc, _, berr) = try strata(e, ["run", "--rm", "--device", bad, Self.image, "true"])
            #expect(brc == 125 && berr.contains("--device"), "\(bad): \(berr)")
        }
        try e.expectClean()
    }
    /// The image's HEALTHCHECK (or --health-cmd) run by the monitor: starting, then healthy,
    /// unhealthy after `retries` failures in a row, failures in the start period not counted,
    /// a check past its timeout a failure; shown by ps and inspect; --no-healthcheck turns it off.
    @Test func healthChecks() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["create", "--name", "base", Self.image]).0 == 0)
        let (crc, _, cerr) = try strata(e, ["commit", "--change", "HEALTHCHECK --interval=300ms --retries=2 CMD cat /tmp/ok", "base", "checked:1"])
        #expect(crc == 0, "\(cerr)")
        func health(_ name: String) throws -> String { try strata(e, ["inspect", "-f", "{{.State.Health.Status}}", name]).1 }
        func waitFor(_ name: String, _ status: String) throws -> Bool {
            for _ in 0..<100 { if try health(name) == status + "\n" { return true }; usleep(100_000) }
            return false
        }
        #expect(try strata(e, ["run", "-d", "--name", "h", "checked:1", "sh", "-c", "sleep 1; echo yes > /tmp/ok; sleep 60"]).0 == 0)
        #expect(try health("h") == "starting\n")
        #expect(try waitFor("h", "healthy"))
        #expect(try strata(e, ["ps", "--format", "{{.Names}} {{.Status}}", "--filter", "name=h"]).1.contains("(healthy)"))
        #expect(try strata(e, ["exec", "h", "rm", "/tmp/ok"]).0 == 0)
        #expect(try waitFor("h", "unhealthy"))
        let (hrc, hout, _) = try strata(e, ["healthcheck", "run", "h"])
        #expect(hrc == 1 && hout == "unhealthy\n")
        let log = try strata(e, ["inspect", "-f", "{{range .State.Health.Log}}{{.ExitCode}} {{end}}", "h"]).1
        #expect(log.hasSuffix("1 1 \n") && log.contains("0 "), "\(log)")
        // --health-cmd over the image's; a check past its timeout fails; the start period holds failures back.
        #expect(try strata(e, ["run", "-d", "--name", "slow", "--health-cmd", "sleep 5", "--health-timeout", "200ms", "--health-interval", "200ms",
                               "--health-retries", "1", "checked:1", "sleep", "60"]).0 == 0)
        #expect(try waitFor("slow", "unhealthy"))
        #expect(try strata(e, ["inspect", "-f", "{{range .State.Health.Log}}{{.ExitCode}} {{.Output}};{{end}}", "slow"]).1
                    .hasPrefix("-1 Health check exceeded timeout"))
        #expect(try strata(e, ["run", "-d", "--name", "patient", "--health-cmd", "false", "--health-interval", "200ms", "--health-retries", "1",
                               "--health-start-period", "30s", "checked:1", "sleep", "60"]).0 == 0)
        usleep(1_200_000)
        #expect(try health("patient") == "starting\n")
        #expect(try strata(e, ["run", "-d", "--name", "none", "--no-healthcheck", "checked:1", "sleep", "60"]).0 == 0)
        #expect(try strata(e, ["healthcheck", "run", "none"]).0 == 2)
        #expect(try strata(e, ["run", "--rm", "--no-healthcheck", "--health-cmd", "true", "checked:1", "true"]).0 == 125)
        #expect(try strata(e, ["rm", "-f", "h", "slow", "patient", "none", "base"]).0 == 0)
        try e.expectClean()
    }
    /// `run -dit` and `attach` through a terminal: what is typed reaches the shell, ctrl-p
    /// ctrl-q detaches and leaves it running, `exit 7` ends it and attach exits 7; `create -i`
    /// with `start -ai` takes piped input to its end; `--detach-keys` as Docker's.
    @Test func attachAndDetachKeys() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["run", "-dit", "--name", "shell", Self.image, "sh"]).0 == 0)
        // A terminal for attach: python's pty, typing one line at a time.
        let driver = e.t.sub("terminal-driver.py")
        try """
            import os, pty, sys, time, select
            keys = [k.encode().decode("unicode_escape").encode("latin-1") for k in sys.argv[1].split("|")]
            pid, fd = pty.fork()
            if pid == 0:
                os.execv(sys.argv[2], sys.argv[2:])
            out = b""
            time.sleep(0.5)
            for k in keys:
                os.write(fd, k); time.sleep(0.4)
            end = time.time() + 10
            code = None
            while time.time() < end and code is None:
                if select.select([fd], [], [], 0.1)[0]:
                    try: out += os.read(fd, 4096)
                    except OSError: pass
                p, st = os.waitpid(pid, os.WNOHANG)
                if p: code = os.waitstatus_to_exitcode(st)
            sys.stdout.write(out.decode("utf-8", "replace") + "\\nEXIT %s\\n" % code)
            """.write(toFile: driver, atomically: false, encoding: .utf8)
        func attach(_ keys: String, _ extra: [String] = []) throws -> String {
            let (_, out, err) = try sh(["python3", driver, keys, strataBinary, "--root", e.root, "attach"] + extra + ["shell"])
            return out + err
        }
        let first = try attach("echo hi-$((40+2))\\r|\\x10\\x11")
        #expect(first.contains("hi-42") && first.hasSuffix("EXIT 0\n"), "\(first)")
        #expect(try strata(e, ["ps", "--format", "{{.Names}} {{.State}}"]).1 == "shell running\n")
        // Other detach keys; the default pair then passes through as typed.
        let second = try attach("echo two\\r|\\x18|x", ["--detach-keys", "ctrl-x,x"])
        #expect(second.contains("two") && second.hasSuffix("EXIT 0\n"), "\(second)")
        let last = try attach("exit 7\\r")
        #expect(last.hasSuffix("EXIT 7\n"), "\(last)")
        #expect(try strata(e, ["ps", "-a", "--format", "{{.Status}}"]).1.hasPrefix("Exited (7)"))
        // create -i, start -ai: piped input to its end, the output from the start.
        #expect(try strata(e, ["create", "-i", "--name", "cat", Self.image, "sh", "-c", "echo first; cat; exit 3"]).0 == 0)
        let (rc, out, err) = try sh(["bash", "-c", "printf 'one\\ntwo\\n' | '\(strataBinary)' --root '\(e.root)' start -ai cat"])
        #expect(rc == 3 && out == "first\none\ntwo\n", "\(rc) \(out) \(err)")
        #expect(try strata(e, ["attach", "--detach-keys", "ctrl-1", "cat"]).0 == 64)
        #expect(try strata(e, ["attach", "cat"]).0 == 3)  // not running
        #expect(try strata(e, ["rm", "-f", "shell", "cat"]).0 == 0)
        try e.expectClean()
    }
    /// `events`: what happened, in order, as Docker names it; past ones with --since/--until,
    /// new ones followed as they come; filters by type, event and container.
    @Test func eventsRecordWhatHappened() throws {
        let e = try RunTests.Env()
        let follower = e.t.sub("followed")
        // Following: started before anything happens, stopped by its --until.
        let (frc, _, ferr) = try sh(["bash", "-c", "('\(strataBinary)' --root '\(e.root)' events --until $(($(date +%s) + 4)) --filter type=container " +
                                     "--format '{{.Action}} {{.Actor.Attributes.name}}' > '\(follower)' &) ; sleep 0.5; " +
                                     "'\(strataBinary)' --root '\(e.root)' run -d --name ev \(Self.image) sleep 30 >/dev/null && " +
                                     "'\(strataBinary)' --root '\(e.root)' stop -t 0 ev >/dev/null && " +
                                     "'\(strataBinary)' --root '\(e.root)' rm ev >/dev/null && " +
                                     "'\(strataBinary)' --root '\(e.root)' tag \(Self.image) evtag:1 && " +
                                     "'\(strataBinary)' --root '\(e.root)' volume create evvol >/dev/null; sleep 4.5"])
        #expect(frc == 0, "\(ferr)")
        let followed = (try? String(contentsOfFile: follower, encoding: .utf8)) ?? ""
        #expect(followed == "create ev\nstart ev\nstop ev\ndie ev\ndestroy ev\n", "\(followed)")
        // Past events, every type, in order.
        let (rc, out, err) = try strata(e, ["events", "--since", "1m", "--until", "0s", "--format", "{{.Type}} {{.Action}}"])
        #expect(rc == 0, "\(err)")
        #expect(out.hasPrefix("image load\n") && out.contains("image tag\nvolume create\n"), "\(out)")
        let died = try strata(e, ["events", "--since", "1m", "--until", "0s", "--filter", "event=die", "--filter", "container=ev",
                                  "--format", "{{json .Actor.Attributes}}"]).1
        #expect(died.contains("\"exitCode\":\"137\"") || died.contains("\"exitCode\":\"143\""), "\(died)")
        #expect(try strata(e, ["events", "--filter", "colour=red"]).0 == 64)
    }
}
