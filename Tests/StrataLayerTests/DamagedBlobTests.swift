import Foundation
import StrataTestSupport
import Testing
@testable import StrataArchive
@testable import StrataCore
@testable import StrataLayer
@testable import StrataSystem

/// A blob damaged on the way breaks its gzip or tar before its digest is known: ingest hashes
/// the rest and reports the mismatch with the digest that names the blob.
@Suite(.enabled(if: isRoot, "needs root")) struct DamagedBlobTests {
    func tar() -> [UInt8] {
        var b = TarBuilder()
        b.dir("etc")
        for i in 0..<50 { b.file("etc/f\(i)", String(repeating: "line \(i)\n", count: 200)) }
        return b.archive
    }

    func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        let w = try CompressingWriter(.gzip) { out.append(contentsOf: $0) }
        try bytes.withUnsafeBytes { try w.write($0) }
        try w.close()
        return out
    }

    func ingest(_ blob: [UInt8], expected: Digest?, in t: TempDir, _ name: String) throws -> LayerIngestResult {
        mkdir(t.sub(name), 0o755)
        let root = try Directory.open(t.sub(name))
        let journal = try FDHandle.open(t.sub(name + ".journal"), flags: [.writeOnly, .create, .truncate], mode: 0o600)
        return try LayerIngest.run(blob: BytesSource(blob), into: root, journal: journal, maxTarSize: 1 << 30, label: "blob",
                                   expectedBlobDigest: expected)
    }

    @Test(arguments: [false, true]) func parseErrorOfADamagedBlobIsADigestMismatch(compressed: Bool) throws {
        let t = TempDir(); defer { t.remove() }
        let good = compressed ? try gzip(tar()) : tar()
        let expected = Digest.of(good)
        var bad = good
        // Plain: the first header's name is emptied; gzip: a byte in the middle of the stream.
        bad[compressed ? bad.count / 2 : 0] ^= compressed ? 0x01 : bad[0]
        do {
            _ = try ingest(bad, expected: nil, in: t, "unnamed")
            Issue.record("the damaged blob was accepted")
        } catch let e as StrataError {
            #expect(e.code != .digestMismatch, "\(e)")
        }
        do {
            _ = try ingest(bad, expected: expected, in: t, "named")
            Issue.record("the damaged blob was accepted")
        } catch let e as StrataError {
            #expect(e.code == .digestMismatch && e.message.contains(expected.string) && e.message.contains(Digest.of(bad).string), "\(e)")
        }
        // Undamaged, the same digest goes through.
        let r = try ingest(good, expected: expected, in: t, "good")
        #expect(r.blobDigest == expected)
    }
}
