import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataTestSupport
import NIOHTTP1
import StrataCore
import Testing
@testable import StrataRegistry

/// Tests/registry-fakes/fault_proxy.py in front of a real registry, on a free port of 127.0.0.1.
struct FaultProxy {
    let host: String
    let pid: pid_t
    let log: String

    init(_ upstream: String, faults: [String], in dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let portFile = dir + "/port"
        log = dir + "/proxy.log"
        pid = try spawn(["python3", repoRoot + "/Tests/registry-fakes/fault_proxy.py", portFile, upstream] + faults, stderr: log)
        for _ in 0..<100 where ((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "").isEmpty {
            usleep(50_000)
        }
        host = "127.0.0.1:" + ((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "")
    }

    /// What the proxy did ("fault 500 GET …", "stall …", "range bytes=…").
    var events: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    func stop() { kill(pid, SIGKILL); _ = reap(pid) }
}

extension RegistryTests {
    /// Seconds `body` took.
    func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        let t0 = Date()
        let r = try body()
        return (r, Date().timeIntervalSince(t0))
    }

    /// Every 3rd request answered 500, every 5th 429 (Retry-After: 1), every 7th closed before
    /// the answer: the pull retries each and ends with the image a direct pull gives.
    @Test func pullThroughFaults() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let expected = try Expected.load()
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: "\(registry.host)/strata/busybox:a")
        let proxy = try FaultProxy(registry.host, faults: ["500=3", "429=5", "close=7"], in: t.sub("proxy"))
        defer { proxy.stop() }
        let ((rc, out, err), seconds) = try timed { try strata(["pull", "\(proxy.host)/strata/busybox:a"], root: t.sub("store")) }
        #expect(rc == 0, "\(err)\n\(proxy.events)")
        #expect(out.contains(expected.image_a.id))
        #expect(try strata(["check"], root: t.sub("store")).0 == 0)
        let direct = try strata(["pull", "\(registry.host)/strata/busybox:a"], root: t.sub("direct"))
        #expect(direct.0 == 0 && direct.1 == out, "\(direct.2)")
        let events = proxy.events
        #expect(events.contains("fault 500") && events.contains("fault 429") && events.contains("fault close"), "\(events)")
        #expect(seconds < 60, "took \(seconds) s")
    }

    /// A push through 500s, early closes and upload answers lost after the registry acted:
    /// every chunk and the manifest arrive, and a pull afterwards gives the same image.
    @Test func pushThroughFaults() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let expected = try Expected.load()
        let root = t.sub("store")
        #expect(try strata(["load", fixtures + "/oci-archive.tar"], root: root).0 == 0)
        let proxy = try FaultProxy(registry.host, faults: ["500=3", "close=5", "lost=2"], in: t.sub("proxy"))
        defer { proxy.stop() }
        let ref = "/pushed/busybox:1"
        let (rc, out, err) = try strata(["push", "example.com/strata/busybox:archive", proxy.host + ref], root: root)
        #expect(rc == 0, "\(err)\n\(proxy.events)")
        let events = proxy.events
        #expect(events.contains("fault 500") && events.contains("fault close") && events.contains("fault lost"), "\(events)")
        #expect(try registry.digest(of: registry.host + ref) == out.trimmingCharacters(in: .whitespacesAndNewlines))
        let (prc, pout, perr) = try strata(["pull", registry.host + ref], root: t.sub("pulled"))
        #expect(prc == 0 && pout.contains(expected.image_a.id), "\(perr)")
        #expect(try strata(["check"], root: t.sub("pulled")).0 == 0)
    }

    /// A registry that forgets uploads (404 to a chunk): each such upload
    /// starts again from its first byte, the layer rebuilt and compressed again to the same bytes.
    @Test func pushRestartsALostUpload() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let expected = try Expected.load()
        let root = t.sub("store")
        #expect(try strata(["load", fixtures + "/oci-archive.tar"], root: root).0 == 0)
        let proxy = try FaultProxy(registry.host, faults: ["forget=3"], in: t.sub("proxy"))
        defer { proxy.stop() }
        let ref = "/pushed/busybox:1"
        let (rc, out, err) = try strata(["push", "example.com/strata/busybox:archive", proxy.host + ref], root: root)
        #expect(rc == 0, "\(err)\n\(proxy.events)")
        #expect(proxy.events.components(separatedBy: "fault forget PATCH").count > 2, "\(proxy.events)")
        #expect(try registry.digest(of: registry.host + ref) == out.trimmingCharacters(in: .whitespacesAndNewlines))
        let (prc, pout, perr) = try strata(["pull", registry.host + ref], root: t.sub("pulled"))
        #expect(prc == 0 && pout.contains(expected.image_a.id), "\(perr)")
    }

    /// A blob answer that goes silent halfway: abandoned after the stall limit (lowered to 1 s
    /// here) and resumed with Range, well before the proxy would let go.
    @Test func stalledTransferResumes() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        let expected = try Expected.load()
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: "\(registry.host)/strata/busybox:a")
        let proxy = try FaultProxy(registry.host, faults: ["stall=30"], in: t.sub("proxy"))
        defer { proxy.stop() }
        let ((rc, out, err), seconds) = try timed {
            try strataCLI(["pull", "\(proxy.host)/strata/busybox:a"], root: t.sub("store"), env: ["STRATA_REGISTRY_STALL_SECONDS": "1"])
        }
        #expect(rc == 0, "\(err)\n\(proxy.events)")
        #expect(out.contains(expected.image_a.id))
        #expect(try strata(["check"], root: t.sub("store")).0 == 0)
        let events = proxy.events
        #expect(events.contains("stall /v2/strata/busybox/blobs/") && events.contains("range bytes="), "\(events)")
        #expect(seconds < 20, "took \(seconds) s")
    }

    /// One byte flipped in a layer (or the config) on the way: a digest mismatch that names the
    /// blob's digest, not a tar or gzip error; the store is as it was.
    @Test func flippedByteIsADigestMismatch() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: "\(registry.host)/strata/busybox:a")
        let layer = try registry.largestBlob()
        let proxy = try FaultProxy(registry.host, faults: ["flip=" + layer.digest], in: t.sub("proxy"))
        defer { proxy.stop() }
        let root = t.sub("store")
        #expect(try strata(["images"], root: root).0 == 0)
        let before = try sh(["sh", "-c", "cd \(root) && find . -path ./tmp -prune -o -print | sort"]).1
        let (rc, _, err) = try strata(["pull", "\(proxy.host)/strata/busybox:a"], root: root)
        #expect(rc == 1 && err.contains("digest mismatch") && err.contains(layer.digest), "\(err)")
        #expect(!err.contains("offset") && !err.contains("corrupt or truncated"), "\(err)")
        #expect(proxy.events.contains("flip"))
        let after = try sh(["sh", "-c", "cd \(root) && find . -path ./tmp -prune -o -print | sort"]).1
        #expect(before == after)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/tmp").isEmpty)
        let images = try strata(["images", "--json"], root: root).1
        #expect((try JSONSerialization.jsonObject(with: Data(images.utf8)) as? [Any])?.isEmpty == true, "\(images)")

        // The config, read whole: the same words.
        let config = try Expected.load().image_a.id
        let proxy2 = try FaultProxy(registry.host, faults: ["flip=" + config], in: t.sub("proxy2"))
        defer { proxy2.stop() }
        let (rc2, _, err2) = try strata(["pull", "\(proxy2.host)/strata/busybox:a"], root: root)
        #expect(rc2 == 1 && err2.contains("digest mismatch") && err2.contains(config), "\(err2)")
        #expect(try sh(["sh", "-c", "cd \(root) && find . -path ./tmp -prune -o -print | sort"]).1 == before)
    }

    /// A registry that always answers 500, always closes the connection, or is not there: the
    /// pull gives up within the policy's bound, saying what happened in words.
    @Test func permanentFailureGivesUpInWords() throws {
        let t = TempDir(); defer { t.remove() }
        let registry = try TestRegistry(in: t.sub("registry"))
        defer { registry.stop() }
        try registry.push(archive: "oci-archive:\(fixtures)/oci-archive.tar", as: "\(registry.host)/strata/busybox:a")
        for (fault, words) in [("500=1", "answered 500 Internal Server Error for manifest strata/busybox:a 5 times over"),
                               ("close=1", "closed before the response (manifest strata/busybox:a) 5 times over")] {
            let proxy = try FaultProxy(registry.host, faults: [fault], in: t.sub("proxy-" + fault))
            defer { proxy.stop() }
            let ((rc, _, err), seconds) = try timed { try strata(["pull", "\(proxy.host)/strata/busybox:a"], root: t.sub("store")) }
            #expect(rc == 71 && err.contains(words) && err.contains("giving up"), "\(err)")
            #expect(!err.contains("HTTPClientError") && !err.contains("Error."), "\(err)")
            #expect(seconds < 30, "took \(seconds) s")
        }
        // Nothing listens: refused, in the same words.
        let port = try sh(["python3", "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"])
            .1.trimmingCharacters(in: .whitespacesAndNewlines)
        let ((rc, _, err), seconds) = try timed { try strata(["pull", "127.0.0.1:\(port)/strata/busybox:a"], root: t.sub("store")) }
        #expect(rc == 71 && err.contains("was refused (manifest strata/busybox:a) 5 times over") && err.contains("giving up"), "\(err)")
        #expect(seconds < 30, "took \(seconds) s")
    }
}

/// The retry policy's arithmetic, without a registry.
@Suite struct RetryPolicyTests {
    @Test func retryAfterReadsSecondsAndDates() {
        #expect(RetryAfter.seconds("3") == 3)
        #expect(RetryAfter.seconds(" 0 ") == 0)
        #expect(RetryAfter.httpDate("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777)
        // A year no registry means (and that would overflow the day count) is no date.
        #expect(RetryAfter.httpDate("Sun, 06 Nov 9223372036854775807 08:49:37 GMT") == nil)
        #expect(RetryAfter.seconds("Sun, 06 Nov 1994 08:49:47 GMT", now: 784111777) == 10)
        #expect(RetryAfter.seconds("Sun, 06 Nov 1994 08:49:37 GMT", now: 784111800) == 0)
        #expect(RetryAfter.seconds("soon") == nil)
    }

    @Test func backoffGrowsWithJitterAndIsCapped() {
        let p = RetryPolicy()
        for n in 1...10 {
            let step = min(p.maxDelay, p.baseDelay * Double(1 << (n - 1)))
            let d = p.delay(after: n)
            #expect(d >= step / 2 && d <= step)
        }
    }

    @Test func onlyServerErrorsAndSlowDownAreRetried() {
        #expect(TransferFailure(status: .internalServerError, headers: [:]) != nil)
        #expect(TransferFailure(status: .serviceUnavailable, headers: [:]) != nil)
        #expect(TransferFailure(status: .tooManyRequests, headers: ["Retry-After": "2"]).map {
            if case .status(_, let after) = $0 { return after == 2 } else { return false }
        } == true)
        for status in [HTTPResponseStatus.notFound, .badRequest, .forbidden, .unauthorized] {
            #expect(TransferFailure(status: status, headers: [:]) == nil)
        }
    }

    @Test func givesUpAfterTheTriesWithAMessageInWords() {
        var p = RetryPolicy()
        p.baseDelay = 0.01
        var a = Attempts(policy: p, registry: "r:5000", what: "blob sha256:x")
        var message = ""
        for _ in 0..<10 {
            do { try a.failed(.status(.internalServerError, retryAfter: nil)) } catch { message = "\(error)"; break }
        }
        #expect(a.failures == p.tries)
        #expect(message.hasPrefix("registry r:5000 answered 500 Internal Server Error for blob sha256:x 5 times over"), "\(message)")
        // A Retry-After is waited for, up to the cap.
        p.maxRetryAfter = 0.3
        var b = Attempts(policy: p, registry: "r:5000", what: "blob sha256:x")
        let t0 = Date()
        #expect(throws: Never.self) { try b.failed(.status(.tooManyRequests, retryAfter: 3600)) }
        let waited = Date().timeIntervalSince(t0)
        #expect(waited >= 0.3 && waited < 2, "\(waited)")
        // No try starts past the time bound.
        p.totalSeconds = 0.1
        var c = Attempts(policy: p, registry: "r:5000", what: "blob sha256:x")
        #expect(throws: StrataError.self) { try c.failed(.status(.tooManyRequests, retryAfter: 1)) }
    }
}
