import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import Testing
@testable import StrataCore

/// `check` beside live work sees one consistent store: it reports nothing that is not wrong,
/// and `check --repair` never undoes what another command just did. Real processes, racing.
@Suite(.serialized, .enabled(if: isRoot, "needs root")) struct CheckRaceTests {
    struct Env {
        let t = TempDir("strata-check-race")
        var root: String { t.sub("store") }
        func strata(_ args: [String]) throws -> (Int32, String, String) { try strataCLI(args, root: root) }
        func argv(_ args: [String]) -> [String] { [strataBinary, "--root", root] + args }
    }

    static let sources = ["oci-gzip", "oci-zstd", "docker-25.tar", "oci-none"].map { fixtures + "/" + $0 }

    /// Each round the image is removed, then loaded again while `check --repair` runs: a load
    /// that exits 0 leaves its image, and the store checks clean afterwards.
    @Test func repairBesideLoadsNeverLosesAnImage() throws {
        let e = Env(); defer { e.remove() }
        for round in 0..<30 {
            let tag = "race:\(round)"
            if round > 0 { _ = try e.strata(["rmi", "-f", "race:\(round - 1)"]) }
            let load = try spawn(e.argv(["-q", "load", CheckRaceTests.sources[round % CheckRaceTests.sources.count], "--tag", tag]),
                                 stderr: e.t.sub("load.err"))
            // Started a little later each round, so the repair falls at different points of the load.
            usleep(UInt32(round % 6) * 15_000)
            let repair = try spawn(e.argv(["check", "--repair"]), stderr: e.t.sub("repair.err"))
            let loaded = reap(load), repaired = reap(repair)
            #expect(loaded == 0, "round \(round): load: \(readString(e.t.sub("load.err")) ?? "")")
            if loaded == 0 {
                let (rc, _, err) = try e.strata(["inspect", "--type", "image", tag])
                #expect(rc == 0, "round \(round): the load exited 0, then its image was gone: \(err)")
            }
            #expect(repaired == 0, "round \(round): check --repair: \(readString(e.t.sub("repair.err")) ?? "")")
            let (rc, out, _) = try e.strata(["check"])
            #expect(rc == 0, "round \(round): \(out)")
        }
    }

    /// The same beside pulls from a registry on loopback: a pull that exits 0 leaves its image.
    @Test func repairBesidePullsNeverLosesAnImage() throws {
        let e = Env(); defer { e.remove() }
        let registry = try TestRegistry(in: e.t.sub("registry"))
        defer { registry.stop() }
        let ref = "\(registry.host)/strata/busybox:a"
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: ref)
        for round in 0..<12 {
            if round > 0 { _ = try e.strata(["rmi", "-f", ref]) }
            let pull = try spawn(e.argv(["-q", "pull", ref]), stderr: e.t.sub("pull.err"))
            usleep(UInt32(round % 6) * 20_000)
            let repair = try spawn(e.argv(["check", "--repair"]), stderr: e.t.sub("repair.err"))
            let pulled = reap(pull), repaired = reap(repair)
            #expect(pulled == 0, "round \(round): pull: \(readString(e.t.sub("pull.err")) ?? "")")
            if pulled == 0 {
                let (rc, _, err) = try e.strata(["inspect", "--type", "image", ref])
                #expect(rc == 0, "round \(round): the pull exited 0, then its image was gone: \(err)")
            }
            #expect(repaired == 0, "round \(round): check --repair: \(readString(e.t.sub("repair.err")) ?? "")")
            #expect(try e.strata(["check"]).0 == 0, "round \(round)")
        }
    }

    /// Loads, tags, containers and removals run in a loop while `check` runs again and again:
    /// no check reports a problem.
    @Test func checkBesideAWorkloadReportsNothing() throws {
        let e = Env(); defer { e.remove() }
        let stop = e.t.sub("stop")
        var workers: [pid_t] = []
        for w in 0..<2 {
            let src = CheckRaceTests.sources[w]
            let s = "\"\(strataBinary)\" --root \"\(e.root)\""
            workers.append(try spawn(["sh", "-c", """
                while [ ! -e "\(stop)" ]; do
                  \(s) -q load "\(src)" --tag w\(w):a >/dev/null 2>&1
                  \(s) tag w\(w):a w\(w):b >/dev/null 2>&1
                  \(s) create --name c\(w) w\(w):b >/dev/null 2>&1
                  \(s) mount c\(w) >/dev/null 2>&1
                  \(s) rm -f c\(w) >/dev/null 2>&1
                  \(s) rmi -f w\(w):a w\(w):b >/dev/null 2>&1
                done
                """]))
        }
        defer {
            FileManager.default.createFile(atPath: stop, contents: nil)
            for w in workers { _ = reap(w) }
        }
        let deadline = Date().addingTimeInterval(20)
        var checks = 0
        while Date() < deadline {
            let (rc, out, err) = try e.strata(["check"])
            #expect(rc == 0, "check \(checks): \(out)\(err)")
            checks += 1
        }
        #expect(checks >= 5)
    }
}

extension CheckRaceTests.Env {
    func remove() { t.remove() }
}
