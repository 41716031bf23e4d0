import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing

/// The `strata` binary as users run it: output shapes, exit codes, standard input.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct CLITests {
    let binary = strataBinary

    func strata(_ args: [String], root: String, stdin: [UInt8]? = nil) throws -> (Int32, String, String) {
        try strataCLI(args, root: root, stdin: stdin)
    }

    @Test func loadListAndJSONContract() throws {
        let t = TempDir(); defer { t.remove() }
        let expected = try Expected.load()
        let (rc, out, err) = try strata(["load", fixtures + "/oci-shared"], root: t.path)
        #expect(rc == 0, "\(err)")
        #expect(out.contains("Loaded image: example.com/strata/busybox:a"))
        #expect(err.contains("unpacked"))
        let (rc2, _, err2) = try strata(["load", fixtures + "/docker-shared-b.tar"], root: t.path)
        #expect(rc2 == 0)
        #expect(err2.components(separatedBy: ": exists").count - 1 == 3)

        let (_, json, _) = try strata(["images", "--json"], root: t.path)
        let images = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [[String: Any]]
        #expect(images.count == 2)
        let a = try #require(images.first { ($0["id"] as? String) == expected.image_a.id })
        #expect(a["tags"] as? [String] == ["example.com/strata/busybox:a"])
        #expect(a["diffIDs"] as? [String] == expected.image_a.diff_ids)
        #expect((a["size"] as? Int ?? 0) > 1_000_000)
        #expect((a["created"] as? String) == "2023-11-14T22:13:20Z")

        let (_, ljson, _) = try strata(["layers", "--json"], root: t.path)
        let layers = try JSONSerialization.jsonObject(with: Data(ljson.utf8)) as! [[String: Any]]
        #expect(layers.count == 4)
        let base = try #require(layers.first { $0["parent"] is NSNull })
        #expect(base["chainID"] as? String == expected.image_a.diff_ids[0])
        #expect((base["images"] as? [String])?.count == 2)
        for l in layers { for k in ["chainID", "diffID", "parent", "size", "images"] { #expect(l[k] != nil, "\(k)") } }

        let (_, table, _) = try strata(["images"], root: t.path)
        #expect(table.contains("REPOSITORY") && table.contains(String(expected.image_a.id.dropFirst(7).prefix(12))))
    }

    @Test func loadFromStandardInput() throws {
        let t = TempDir(); defer { t.remove() }
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: fixtures + "/docker-legacy.tar")))
        let (rc, out, err) = try strata(["load", "-", "--tag", "piped"], root: t.path, stdin: bytes)
        #expect(rc == 0, "\(err)")
        #expect(out.contains("Loaded image: piped:latest"))
        // Compressed archives are accepted too, from a pipe or a file.
        let gz = try gzip(bytes)
        let (rc2, _, err2) = try strata(["load", "-"], root: t.path + "2", stdin: gz)
        #expect(rc2 == 0, "\(err2)")
        try? FileManager.default.removeItem(atPath: t.path + "2")
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.sub("tmp")).isEmpty)
    }

    @Test func importFromStandardInputWithChanges() throws {
        let t = TempDir(); defer { t.remove() }
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: fixtures + "/rootfs.tar.gz")))
        let (rc, out, err) = try strata(["import", "-", "example/rootfs:1", "--change", "CMD [\"/bin/sh\"]"], root: t.path, stdin: bytes)
        #expect(rc == 0, "\(err)")
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("sha256:"))
        let (_, json, _) = try strata(["images", "--json"], root: t.path)
        #expect(json.contains("example/rootfs:1"))
    }

    @Test func exitCodesMeanSomething() throws {
        let t = TempDir(); defer { t.remove() }
        let (rc1, _, err1) = try strata(["load", t.sub("missing.tar")], root: t.path)
        #expect(rc1 == 2 && err1.contains("missing.tar"))
        try Data("not a tar at all, just text".utf8).write(to: URL(fileURLWithPath: t.sub("junk.tar")))
        let (rc2, _, err2) = try strata(["load", t.sub("junk.tar")], root: t.path)
        #expect(rc2 == 1 && err2.contains("junk.tar"), "\(err2)")
        let (rc3, _, _) = try strata(["load", fixtures + "/oci-gzip", "--max-layer-size", "abc"], root: t.path)
        #expect(rc3 == 64)
        let (rc4, _, err4) = try strata(["load", fixtures + "/oci-gzip", "--max-layer-size", "1m"], root: t.path)
        #expect(rc4 == 1 && err4.contains("max-layer-size"))
        let (rc5, _, err5) = try strata(["load", fixtures + "/oci-gzip", "--platform", "linux/s390x"], root: t.path)
        #expect(rc5 == 2 && err5.contains("linux/s390x"))
        // A rootfs tar given to load says what to use instead.
        let (rc6, _, err6) = try strata(["load", fixtures + "/layer0.tar"], root: t.path)
        #expect(rc6 == 1 && err6.contains("strata import"))
    }

    /// The process locale stays C: the UTF-8 locale is per thread, inside the tar reader.
    @Test func processLocaleUntouched() throws {
        let t = TempDir(); defer { t.remove() }
        var b = TarBuilder()
        b.file("caf\u{e9}", "x")
        try unpack(b.archive, into: t.path)
        #expect(String(cString: setlocale(LC_ALL, nil)) == "C")
        #expect(exists(t.sub("diff/caf\u{e9}")))
    }

    /// One manual page per command (strata-run(1), strata-volume-ls(1), …), each with its
    /// examples, generated from the debug binary's own description of its flags: the pages
    /// in man/ are what the generator makes now, and groff reads them without a warning.
    @Test func manualPagesAreCurrent() throws {
        let t = TempDir("strata-man"); defer { t.remove() }
        let (rc, out, err) = try sh(["bash", repoRoot + "/scripts/man.sh", t.path], env: ["STRATA_BINARY": strataBinary])
        #expect(rc == 0, "\(out)\(err)")
        let made = try FileManager.default.contentsOfDirectory(atPath: t.path).sorted()
        let kept = try FileManager.default.contentsOfDirectory(atPath: repoRoot + "/man").sorted()
        #expect(made == kept, "scripts/man.sh makes other pages than man/ holds: run it and commit man/")
        for name in ["strata.1", "strata-run.1", "strata-cp.1", "strata-volume-ls.1", "strata-image-ls.1", "strata-attach.1"] {
            #expect(made.contains(name), "\(name)")
        }
        for name in made {
            let page = try String(contentsOfFile: t.sub(name), encoding: .utf8)
            #expect(page == (try? String(contentsOfFile: repoRoot + "/man/" + name, encoding: .utf8)), "man/\(name) is not current: run scripts/man.sh")
            #expect(page.contains(".SH EXAMPLES\n") && page.contains(".SH SYNOPSIS\n"), "\(name)")
        }
        let (grc, _, warnings) = try sh(["bash", "-c", "groff -man -Tutf8 -ww -z '\(t.path)'/*.1 2>&1 >/dev/null | grep -v 'cannot adjust line'; true"])
        #expect(grc == 0 && warnings.isEmpty, "\(warnings)")
        let (_, runPage, _) = try sh(["bash", "-c", "groff -man -Tutf8 '\(t.sub("strata-run.1"))' | col -b"])
        #expect(runPage.contains("--volumes-from") && runPage.contains("strata run --rm busybox echo hello"), "\(runPage.prefix(400))")
    }
}

extension CLITests {
    /// Docker habits: -q lists IDs, unknown commands name the nearest one, --version, load
    /// from a pipe without `-` and with -i, the REPOSITORY[:TAG] filter, Docker's size syntax,
    /// and `run`'s 125 for flags it cannot take.
    @Test func dockerHabits() throws {
        let t = TempDir(); defer { t.remove() }
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: fixtures + "/docker-legacy.tar")))
        #expect(try strata(["load"], root: t.path, stdin: bytes).1.contains("Loaded image: strata/busybox:legacy"))
        #expect(try strata(["load", "-i", fixtures + "/oci-archive.tar"], root: t.path).0 == 0)
        let (_, ids, _) = try strata(["images", "-q"], root: t.path)
        #expect(ids == "317acaaa6770\n", "\(ids)")
        let (_, filtered, _) = try strata(["images", "strata/busybox"], root: t.path)
        #expect(filtered.contains("legacy") && !filtered.contains("archive"), "\(filtered)")
        #expect(!(try strata(["images", "strata/busybox:other"], root: t.path).1.contains("legacy")))
        let (rc, _, err) = try strata(["imagez"], root: t.path)
        #expect(rc == 64 && err.contains("unknown command 'imagez'; did you mean 'images'?"), "\(err)")
        #expect(try strata(["--version"], root: t.path).1.contains("."))
        #expect(try strata(["version"], root: t.path).1.hasPrefix("strata version "))
        #expect(try strata(["run", "--no-such-flag", "strata/busybox:legacy"], root: t.path).0 == 125)
        #expect(try strata(["images", "--no-such-flag"], root: t.path).0 == 64)
        #expect(try strata(["run", "--rm", "--memory", "64mb", "strata/busybox:legacy", "true"], root: t.path).0 == 0)
        #expect(try strata(["run", "--rm", "--memory", "0.5g", "strata/busybox:legacy", "sh", "-c",
                            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"],
                           root: t.path).1 == "536870912\n")
        #expect(try strata(["run", "--rm", "--memory", "lots", "strata/busybox:legacy", "true"], root: t.path).0 == 125)
    }
}

extension CLITests {
    /// Docker's management command names over the same commands; system df, prune and info.
    @Test func managementCommands() throws {
        let t = TempDir(); defer { t.remove() }
        #expect(try strata(["load", fixtures + "/oci-shared"], root: t.path).0 == 0)
        let (_, ls, _) = try strata(["image", "ls"], root: t.path)
        #expect(ls.contains("REPOSITORY") && ls.contains("example.com/strata/busybox"))
        #expect(try strata(["image", "ls", "-q"], root: t.path).1.split(separator: "\n").count == 2)
        #expect(try strata(["container", "create", "--name", "c1", "example.com/strata/busybox:a"], root: t.path).0 == 0)
        #expect(try strata(["container", "ls", "-a", "-q"], root: t.path).1.split(separator: "\n").count == 1)
        let (_, df, _) = try strata(["system", "df"], root: t.path)
        #expect(df.contains("Images       2       1"), "\(df)")
        let (_, info, _) = try strata(["info"], root: t.path)
        #expect(info.contains("Store: ") && info.contains("Driver: ") && info.contains("Cgroups: "), "\(info)")
        // prune: the container that never ran goes; -a then the untagged image no container uses.
        #expect(try strata(["system", "prune", "-f"], root: t.path).1.contains("removed 1 containers"))
        #expect(try strata(["image", "rm", "example.com/strata/busybox:b"], root: t.path).1.contains("Deleted"))
        #expect(try strata(["container", "ls", "-a", "-q"], root: t.path).1.isEmpty)
        let (rc, _, err) = try strata(["image", "rm", "nothing:here"], root: t.path)
        #expect(rc == 2, "\(err)")
    }
}

extension CLITests {
    /// A user who cannot write the store gets one line that says what to do, and nothing is made.
    @Test func storeNotWritableSaysSo() throws {
        let t = TempDir(); defer { t.remove() }
        // The binary where that user can run it (the checkout may be under a private directory).
        #expect(chmod(t.path, 0o755) == 0)
        let copy = t.sub("strata")
        // Copied by another process: a write fd of ours could leak into a concurrent fork (ETXTBSY).
        #expect(try sh(["cp", binary, copy]).0 == 0)
        // Its own runtime directory: its pause process (docs/rootless.md) is ended below.
        try FileManager.default.createDirectory(atPath: t.sub("run"), withIntermediateDirectories: false)
        #expect(chown(t.sub("run"), 65534, 65534) == 0 && chmod(t.sub("run"), 0o700) == 0)
        defer {
            if let pid = readString(t.sub("run/strata/pause.pid")).flatMap({ $0.split(separator: " ").first.flatMap { Int32($0) } }) {
                kill(pid, SIGKILL)
            }
        }
        let env = "XDG_RUNTIME_DIR=\(t.sub("run")) "
        let (rc, _, err) = try sh(["su", "nobody", "-s", "/bin/sh", "-c", env + "\(copy) --root /var/lib/strata-test-\(getpid()) images"])
        #expect(rc == 64 && err.contains("not writable by this user: run as root, or use --root DIR you own"), "\(err)")
        // That line, after the warning that nobody has no subordinate ids (said when the
        // namespace is made).
        #expect(err.split(separator: "\n").count == 2 && err.contains("no range for nobody in /etc/subuid"), "\(err)")
        #expect(!FileManager.default.fileExists(atPath: "/var/lib/strata-test-\(getpid())"))
        // In a directory of its own, the same user gets a store.
        try FileManager.default.createDirectory(atPath: t.sub("own"), withIntermediateDirectories: false)
        #expect(chown(t.sub("own"), 65534, 65534) == 0)
        let (rc2, _, err2) = try sh(["su", "nobody", "-s", "/bin/sh", "-c", env + "\(copy) --root \(t.sub("own"))/store --driver vfs images"])
        #expect(rc2 == 0, "\(err2)")
    }
}

extension CLITests {
    /// --format with Docker's template fields and json; CREATED as Docker says it.
    @Test func formatTemplates() throws {
        let t = TempDir(); defer { t.remove() }
        #expect(try strata(["load", fixtures + "/oci-shared"], root: t.path).0 == 0)
        #expect(try strata(["images", "--format", "{{.Repository}}:{{.Tag}}"], root: t.path).1
                == "example.com/strata/busybox:a\nexample.com/strata/busybox:b\n")
        let lines = try strata(["images", "--format", "json"], root: t.path).1.split(separator: "\n")
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: String]
        #expect(lines.count == 2 && first?["Tag"] == "a" && first?["ID"]?.count == 12)
        let (rc, _, err) = try strata(["images", "--format", "{{.Nope}}"], root: t.path)
        #expect(rc == 64 && err.contains("no field .Nope"), "\(err)")
        #expect(try strata(["images"], root: t.path).1.contains(" years ago"))
        #expect(try strata(["create", "--name", "x", "example.com/strata/busybox:a"], root: t.path).0 == 0)
        #expect(try strata(["ps", "-a", "--format", "{{.Names}} {{.Status}}"], root: t.path).1 == "x Created\n")
    }
}

extension CLITests {
    /// export: the container's whole tree as a tar, its own changes in, deleted files out, no
    /// whiteouts; the container is left as it was (not mounted).
    @Test func exportWritesTheMergedTree() throws {
        let t = TempDir(); defer { t.remove() }
        #expect(try strata(["load", fixtures + "/oci-shared"], root: t.path).0 == 0)
        #expect(try strata(["create", "--name", "c", "example.com/strata/busybox:a"], root: t.path).0 == 0)
        let merged = try strata(["mount", "c"], root: t.path).1.split(separator: "\n").last.map(String.init) ?? ""
        try Data("hi\n".utf8).write(to: URL(fileURLWithPath: merged + "/new.txt"))
        try FileManager.default.removeItem(atPath: merged + "/bin/ls")
        #expect(try strata(["umount", "c"], root: t.path).0 == 0)
        let (rc, _, err) = try strata(["export", "c", "-o", t.sub("c.tar")], root: t.path)
        #expect(rc == 0, "\(err)")
        let names = try sh(["tar", "-tf", t.sub("c.tar")]).1.split(separator: "\n").map(String.init)
        #expect(names.contains("new.txt") && names.contains("bin/busybox") && !names.contains("bin/ls"))
        #expect(!names.contains { $0.contains(".wh.") })
        #expect(try sh(["tar", "-xOf", t.sub("c.tar"), "new.txt"]).1 == "hi\n")
        #expect(try strata(["ps", "-a", "--json"], root: t.path).1.contains("\"mountCount\" : 0"))
        #expect(!FileManager.default.fileExists(atPath: t.sub("c.tar.strata-partial")))
    }
}

extension CLITests {
    /// skopeo's `dir:` layout (what `podman save --format docker-dir|oci-dir` writes) loads, as
    /// OCI and as Docker v2s2 manifests, to the same image as the OCI layout it was copied
    /// from; a blob changed in it is refused by digest and leaves the store as it was.
    @Test func directoryTransportLoads() throws {
        let t = TempDir(); defer { t.remove() }
        let source = "oci:\(fixtures)/oci-gzip:example.com/strata/busybox:gzip"
        for (dir, extra) in [("oci-dir", [String]()), ("v2s2-dir", ["--format", "v2s2"])] {
            let (rc, _, err) = try sh(["skopeo", "--insecure-policy", "copy", "-q"] + extra + [source, "dir:" + t.sub(dir)])
            #expect(rc == 0, "\(err)")
            let (lrc, out, lerr) = try strata(["load", t.sub(dir)], root: t.sub("store"))
            #expect(lrc == 0 && out.contains("Loaded image ID: sha256:317acaaa6770"), "\(out) \(lerr)")
        }
        #expect(try strata(["images", "-q"], root: t.sub("store")).1 == "317acaaa6770\n")

        // A tampered layer blob: refused naming the digest, nothing recorded.
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: t.sub("oci-dir/manifest.json")))) as? [String: Any]
        let layers = manifest?["layers"] as? [[String: Any]] ?? []
        let digest = try #require(layers.last?["digest"] as? String)
        let path = t.sub("oci-dir/") + String(digest.dropFirst(7))
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let (rc, _, err) = try strata(["load", t.sub("oci-dir")], root: t.sub("fresh"))
        #expect(rc == 1 && err.contains(String(digest.dropFirst(7).prefix(12))), "\(err)")
        let left = try JSONSerialization.jsonObject(with: Data(try strata(["layers", "--json"], root: t.sub("fresh")).1.utf8)) as? [Any]
        #expect(left?.isEmpty == true)
    }
}

extension CLITests {
    /// Load progress: on a terminal one block (a line per layer, then a total with bytes), the
    /// image line after it untouched; not on a terminal one result line per layer and no
    /// escape codes; `--quiet` nothing. `save` says what it wrote with sizes, and a total.
    @Test func progressOutput() throws {
        let t = TempDir(); defer { t.remove() }
        let (shown, _) = try onTerminal([binary, "--root", t.sub("tty"), "load", fixtures + "/oci-gzip"], typing: "")
        #expect(shown.contains("layer 1/3 3d2924f0a01c: unpacked") && shown.contains("total: 3/3 layers, 1.03MB/1.03MB in "), "\(shown)")
        // The block is drawn before the result: the last cursor-up comes before "Loaded image".
        let loaded = try #require(shown.range(of: "Loaded image: example.com/strata/busybox:gzip"))
        #expect(!shown[loaded.upperBound...].contains("\u{1b}[1A"), "\(shown)")

        let (rc, out, err) = try strata(["load", fixtures + "/oci-gzip"], root: t.sub("pipe"))
        #expect(rc == 0 && out == "Loaded image: example.com/strata/busybox:gzip\n")
        #expect(err.split(separator: "\n").count == 3 && !err.contains("\u{1b}") && err.contains("layer 3/3 7830d5938000: unpacked"), "\(err)")
        #expect(try strata(["--quiet", "load", fixtures + "/oci-gzip"], root: t.sub("quiet")).2.isEmpty)

        let (src, _, serr) = try strata(["save", "example.com/strata/busybox:gzip", "-o", t.sub("out.tar")], root: t.sub("pipe"))
        #expect(src == 0 && serr.contains("layer 1/3 3d2924f0a01c: wrote 2.02MB in ") && serr.contains("saved 1 image, 3 layers, 2.05MB in "), "\(serr)")
    }
}

extension CLITests {
    /// What scripts/install.sh installs is generated from the commands: completion scripts for
    /// bash, zsh and fish that know the commands and their flags, and the help dump the man page
    /// is made from, with every command and its abstract.
    @Test func completionsAndManualSource() throws {
        let t = TempDir(); defer { t.remove() }
        // Each shell gets its own script whatever $SHELL says, with or without a global option first.
        let marks = ["bash": "complete -o filenames -F _strata strata", "zsh": "#compdef strata", "fish": "complete -c 'strata'"]
        for (shell, mark) in marks {
            for lead in [["--root", t.path], []] {
                let (rc, script, err) = try sh([binary] + lead + ["--generate-completion-script", shell], env: ["SHELL": "/bin/sh"])
                #expect(rc == 0 && script.contains(mark) && script.contains("exec") && script.contains("--max-layer-size"), "\(shell) \(lead): \(err)")
            }
        }
        let (rc, json, _) = try strata(["--experimental-dump-help"], root: t.path)
        let doc = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let command = doc?["command"] as? [String: Any]
        let subs = (command?["subcommands"] as? [[String: Any]] ?? []).compactMap { $0["commandName"] as? String }
        #expect(rc == 0 && ["load", "pull", "run", "exec", "logs", "system", "image", "container"].allSatisfy(subs.contains), "\(subs)")
        #expect((command?["subcommands"] as? [[String: Any]] ?? []).allSatisfy { ($0["abstract"] as? String)?.isEmpty == false || $0["shouldDisplay"] as? Bool == false })
    }
}

extension CLITests {
    /// Container names follow Docker's rule, [a-zA-Z0-9][a-zA-Z0-9_.-]*: others are refused
    /// with the rule in the message, before anything is made.
    @Test func containerNames() throws {
        let t = TempDir(); defer { t.remove() }
        #expect(try strata(["load", fixtures + "/oci-gzip"], root: t.path).0 == 0)
        for bad in ["-lead", ".dot", "with space", "slash/x", "ünï"] {
            let (rc, _, err) = try strata(["create", "--name=" + bad, "example.com/strata/busybox:gzip"], root: t.path)
            #expect(rc != 0 && err.contains("invalid container name"), "\(bad): \(err)")
        }
        for good in ["a", "Z9", "ok_1.x-y"] {
            #expect(try strata(["create", "--name", good, "example.com/strata/busybox:gzip"], root: t.path).0 == 0, "\(good)")
        }
        let (_, names, _) = try strata(["ps", "-a", "--format", "{{.Names}}"], root: t.path)
        #expect(Set(names.split(separator: "\n").map(String.init)) == ["a", "Z9", "ok_1.x-y"], "\(names)")
    }
}
