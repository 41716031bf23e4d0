import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing

/// Volumes as Docker documents them: an image's VOLUMEs get anonymous volumes seeded from the
/// image, `-v NAME:/PATH` and `--mount` name them, `--volumes-from` shares them, `rm -v` and
/// `run --rm` remove the anonymous ones, `commit` never holds their contents, and nothing a
/// container leaves in one makes a host-side command follow it out.
@Suite(.serialized, .enabled(if: isRoot && overlayWorks && cgroupLayout != nil, "needs root, overlayfs and cgroups"))
struct VolumeTests {
    static let image = RunTests.image

    func strata(_ e: RunTests.Env, _ args: [String]) throws -> (Int32, String, String) { try strataCLI(args, root: e.root) }

    /// An image whose config declares VOLUME /data, with a file there.
    func volumeImage(_ e: RunTests.Env) throws -> String {
        #expect(try strata(e, ["run", "--name", "seed", Self.image, "sh", "-c", "mkdir /data && echo seeded > /data/seed && chown 1:2 /data && chmod 750 /data"]).0 == 0)
        let (rc, _, err) = try strata(e, ["commit", "--change", "VOLUME /data", "seed", "withvol:1"])
        #expect(rc == 0, "\(err)")
        #expect(try strata(e, ["rm", "seed"]).0 == 0)
        return "withvol:1"
    }

    func volumeNames(_ e: RunTests.Env) throws -> [String] {
        try strata(e, ["volume", "ls", "-q"]).1.split(separator: "\n").map(String.init)
    }

    /// The image's VOLUME becomes an anonymous volume with the image's files, owner and mode;
    /// what is written there is in no commit; `rm -v` removes it, plain `rm` keeps it.
    @Test func imageVolumesAreAnonymousVolumes() throws {
        let e = try RunTests.Env()
        let image = try volumeImage(e)
        let (rc, out, err) = try strata(e, ["run", "--name", "c1", image, "sh", "-c",
                                            "cat /data/seed; stat -c '%u:%g %a' /data; echo new > /data/written; echo top > /top"])
        #expect(rc == 0 && out == "seeded\n1:2 750\n", "\(out)\(err)")
        let names = try volumeNames(e)
        #expect(names.count == 1 && names[0].count == 64, "\(names)")
        let inspect = try strata(e, ["volume", "inspect", "-f", "{{.Mountpoint}} {{.Strata.anonymous}}", names[0]]).1
        #expect(inspect == "\(e.root)/volumes/\(names[0])/_data true\n", "\(inspect)")
        #expect((try? String(contentsOfFile: "\(e.root)/volumes/\(names[0])/_data/written", encoding: .utf8)) == "new\n")
        // commit: the container's own change is there, the volume's contents are not.
        #expect(try strata(e, ["commit", "c1", "committed:1"]).0 == 0)
        let (_, listing, _) = try strata(e, ["run", "--rm", "-v", "other:/elsewhere", "--entrypoint", "sh", "committed:1", "-c", "cat /top; ls /data"])
        #expect(listing.hasPrefix("top\n") && !listing.contains("written"), "\(listing)")
        let d = e.t.sub("saved")
        let tarList = try sh(["bash", "-c", "mkdir '\(d)' && '\(strataBinary)' --root '\(e.root)' -q save committed:1 | tar -x -C '\(d)' && find '\(d)' -type f -size +1k -exec tar -tf {} \\; 2>/dev/null"]).1
        #expect(tarList.contains("top"), "\(tarList)")
        #expect(!tarList.contains("written"), "\(tarList)")
        // run --rm of the committed image made and removed its own anonymous volume.
        #expect(Set(try volumeNames(e)) == Set(names + ["other"]))
        // rm keeps it; rm -v of another container removes that one's.
        #expect(try strata(e, ["create", "--name", "c2", image]).0 == 0)
        #expect(try volumeNames(e).count == 3)
        #expect(try strata(e, ["rm", "-v", "c2"]).0 == 0)
        #expect(Set(try volumeNames(e)) == Set(names + ["other"]))
        #expect(try strata(e, ["rm", "c1"]).0 == 0)
        #expect(Set(try volumeNames(e)) == Set(names + ["other"]))
        // prune: anonymous ones only unless -a.
        let (prc, pout, _) = try strata(e, ["volume", "prune", "-f"])
        #expect(prc == 0 && pout.contains(names[0]), "\(pout)")
        #expect(try volumeNames(e) == ["other"])
        #expect(try strata(e, ["volume", "prune", "-f", "-a"]).0 == 0)
        #expect(try volumeNames(e).isEmpty)
    }

    /// Named volumes outlive containers and are shared; `--mount` and `--volumes-from` give the
    /// same mounts; a volume in use is not removed; readonly holds.
    @Test func namedVolumesMountsAndVolumesFrom() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["volume", "create", "--label", "team=a", "shared"]).1 == "shared\n")
        #expect(try strata(e, ["volume", "ls", "-q", "--filter", "label=team=a"]).1 == "shared\n")
        #expect(try strata(e, ["run", "--rm", "-v", "shared:/srv", Self.image, "sh", "-c", "echo one > /srv/f"]).0 == 0)
        let (rc, out, err) = try strata(e, ["run", "--rm", "--mount", "type=volume,source=shared,target=/m,readonly", Self.image,
                                            "sh", "-c", "cat /m/f; echo x > /m/g"])
        #expect(rc == 1 && out == "one\n" && err.contains("Read-only"), "\(out)\(err)")
        // --volumes-from: the other container's volumes (and binds), read-only when asked.
        #expect(try strata(e, ["create", "--name", "holder", "-v", "shared:/srv", "-v", "/tmp:/hosttmp:ro", Self.image]).0 == 0)
        let (frc, fout, ferr) = try strata(e, ["run", "--rm", "--volumes-from", "holder:ro", Self.image, "sh", "-c",
                                               "cat /srv/f; test -d /hosttmp && echo bound; touch /srv/h 2>/dev/null || echo ro"])
        #expect(frc == 0 && fout == "one\nbound\nro\n", "\(fout)\(ferr)")
        // In use by a container (even one not running): refused, exit 3, volume kept.
        let (vrc, _, verr) = try strata(e, ["volume", "rm", "shared"])
        #expect(vrc == 3 && verr.contains("holder"), "\(verr)")
        #expect(try strata(e, ["volume", "ls", "--filter", "dangling=false", "-q"]).1 == "shared\n")
        // tmpfs through --mount, with its size and mode.
        let (trc, tout, _) = try strata(e, ["run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700", Self.image,
                                            "sh", "-c", "stat -c %a /t; df -k /t | tail -1 | awk '{print $2}'"])
        #expect(trc == 0 && tout == "700\n1024\n", "\(tout)")
        #expect(try strata(e, ["rm", "holder"]).0 == 0)
        #expect(try strata(e, ["volume", "rm", "shared"]).1 == "shared\n")
        #expect(try volumeNames(e).isEmpty)
    }

    /// Bad mount requests are refused before anything exists: no container, no volume left.
    @Test func badMountsLeaveNothing() throws {
        let e = try RunTests.Env()
        for args in [["-v", "bad/name:/x"], ["-v", "../../etc:/x"], ["-v", "relative"], ["--mount", "type=bind,source=/does/not/exist,target=/x"],
                     ["--mount", "type=nfs,target=/x"], ["--mount", "type=tmpfs,source=x,target=/x"], ["-v", "vol:/x", "-v", "vol2:/x/"],
                     ["-v", "a:/x:shared"], ["--volumes-from", "no-such-container"], ["--tmpfs", "/t:exec"]] {
            let (rc, _, err) = try strata(e, ["run", "--rm"] + args + [Self.image, "true"])
            #expect(rc == 125, "\(args): \(rc) \(err)")
            #expect(err.hasPrefix("strata: "), "\(args): \(err)")
        }
        try e.expectClean()
        #expect(try volumeNames(e).isEmpty)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: e.root + "/tmp"))?.isEmpty ?? true)
    }

    /// What a container leaves in a volume (links to host paths, a deep tree) is never followed
    /// by the host-side commands that read or remove volumes.
    @Test func volumeContentsAreNotFollowedOnTheHost() throws {
        let e = try RunTests.Env()
        let canary = TempDir("strata-volume-canary")
        defer { canary.remove() }
        try "keep\n".write(toFile: canary.sub("file"), atomically: false, encoding: .utf8)
        let script = "ln -s \(canary.path) /v/dir; ln -s \(canary.sub("file")) /v/file; ln -s / /v/root; mkdir -p /v/a/b/c; ln -s ../../../.. /v/a/b/c/up"
        #expect(try strata(e, ["run", "--rm", "-v", "evil:/v", Self.image, "sh", "-c", script]).0 == 0)
        #expect(try strata(e, ["volume", "ls"]).0 == 0)
        #expect(try strata(e, ["system", "df"]).0 == 0)
        #expect(try strata(e, ["check"]).0 == 0)
        // A new container of an image whose VOLUME is there: the copy into a fresh volume does
        // not go through the old one.
        #expect(try strata(e, ["run", "--rm", "-v", "evil:/v", Self.image, "rm", "-f", "/v/nothing"]).0 == 0)
        #expect(try strata(e, ["volume", "rm", "evil"]).0 == 0)
        #expect((try? String(contentsOfFile: canary.sub("file"), encoding: .utf8)) == "keep\n")
        #expect(FileManager.default.fileExists(atPath: "/etc/passwd"))
        #expect(try volumeNames(e).isEmpty)
    }

    /// `check` counts volumes and names a damaged one and a container whose volume is gone.
    @Test func checkKnowsVolumes() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["volume", "create", "good"]).0 == 0)
        #expect(try strata(e, ["volume", "create", "damaged"]).0 == 0)
        #expect(try strata(e, ["create", "--name", "user", "-v", "lost:/l", Self.image]).0 == 0)
        let (rc0, out0, _) = try strata(e, ["check"])
        #expect(rc0 == 0 && out0.contains("3 volumes"), "\(out0)")
        try FileManager.default.removeItem(atPath: e.root + "/volumes/damaged/volume.json")
        try FileManager.default.removeItem(atPath: e.root + "/volumes/lost")
        let (rc, out, err) = try strata(e, ["check"])
        #expect(rc != 0, "\(out)")
        #expect((out + err).contains("volume damaged") && (out + err).contains("its volume lost"), "\(out)\(err)")
        // The damaged one can still be removed, and gc leaves volumes alone.
        #expect(try strata(e, ["gc"]).0 == 0)
        #expect(FileManager.default.fileExists(atPath: e.root + "/volumes/good/_data"))
        #expect(try strata(e, ["volume", "rm", "damaged"]).0 == 0)
        #expect(try strata(e, ["rm", "user"]).0 == 0)
        #expect(try strata(e, ["check"]).0 == 0)
    }

    /// `system prune --volumes` removes unused anonymous volumes and keeps named ones.
    @Test func systemPruneVolumes() throws {
        let e = try RunTests.Env()
        #expect(try strata(e, ["run", "--name", "gone", "-v", "/anon", "-v", "named:/n", Self.image, "true"]).0 == 0)
        #expect(try volumeNames(e).count == 2)
        let (rc, out, err) = try strata(e, ["system", "prune", "-f", "--volumes"])
        #expect(rc == 0 && out.contains("Deleted Volumes:"), "\(out)\(err)")
        #expect(try volumeNames(e) == ["named"])
    }
}
