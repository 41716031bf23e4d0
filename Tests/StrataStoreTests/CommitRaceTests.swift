import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import StrataTestSupport
import Testing
@testable import StrataCore

/// A container that swaps a directory for a symlink while it is committed: the commit either
/// captures one of the two states or fails with one line naming the path; it never follows
/// the symlink out of the container.
@Suite(.serialized, .enabled(if: isRoot && overlayWorks, "needs root and overlayfs")) struct CommitRaceTests {
    @Test func directorySwappedForSymlink() throws {
        let t = TempDir(); defer { t.remove() }
        let root = t.sub("store")
        let strata = { (args: [String]) in try strataCLI(args, root: root) }
        #expect(try strata(["-q", "load", fixtures + "/oci-gzip"]).0 == 0)
        let id = try strata(["create", "--name", "racer", "example.com/strata/busybox:gzip"]).1
            .split(separator: "\n").last.map(String.init) ?? ""
        let upper = root + "/containers/" + id + "/upper"
        try FileManager.default.createDirectory(atPath: upper + "/d", withIntermediateDirectories: true)
        for i in 0..<300 { FileManager.default.createFile(atPath: upper + "/d/f\(i)", contents: Data("\(i)".utf8)) }

        // The swapper: d is a directory, then a symlink to the host's /etc, and back.
        final class Flag: Sendable { let stop = Mutex(false) }
        let flag = Flag()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            while !flag.stop.withLock({ $0 }) {
                rename(upper + "/d", upper + "/d.real")
                symlink("/etc", upper + "/d")
                usleep(200)
                unlink(upper + "/d")
                rename(upper + "/d.real", upper + "/d")
                usleep(200)
            }
            done.signal()
        }
        var failures: [String] = []
        for i in 0..<25 {
            let (rc, _, err) = try strata(["commit", "racer", "race:\(i)"])
            if rc != 0 { failures.append(err) }
        }
        flag.stop.withLock { $0 = true }
        done.wait()
        for err in failures {
            #expect(err.split(separator: "\n").count == 1, "\(err)")
            #expect(err.contains(upper), "the error names the path: \(err)")
        }
        // Whatever was committed holds the container's files, never the host's /etc.
        let (_, images, _) = try strata(["images", "--json"])
        for i in 0..<25 where images.contains("race:\(i)") {
            let (_, files, _) = try strata(["inspect", "race:\(i)", "--files"])
            #expect(!files.contains("d/passwd") && !files.contains("d/hostname"), "\(files)")
        }
    }
}
