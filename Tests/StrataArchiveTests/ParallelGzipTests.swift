import Foundation
import Testing
import StrataTestSupport
@testable import StrataArchive
@testable import StrataCore

/// push's gzip on every core: the same bytes whatever the number of workers, one member per
/// block, and what gzip(1) and strata's own reader decompress back to the input.
@Suite struct ParallelGzipTests {
    func compress(_ input: [UInt8], workers: Int, blockSize: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        let w = ParallelGzipWriter(workers: workers, blockSize: blockSize) { out.append(contentsOf: $0) }
        // Written in uneven pieces, as a tar stream arrives.
        var at = 0, step = 1
        while at < input.count {
            let n = min(step, input.count - at)
            try input[at..<(at + n)].withUnsafeBytes { try w.write($0) }
            at += n
            step = step * 3 % 100_003 + 1
        }
        try w.close()
        return out
    }

    @Test func sameBytesOnAnyNumberOfCores() throws {
        var generator = SystemRandomNumberGenerator()
        var input = (0..<(700 << 10)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        input += Array(String(repeating: "a line of a text file, compressible\n", count: 60_000).utf8)
        let one = try compress(input, workers: 1, blockSize: 256 << 10)
        #expect(try compress(input, workers: 4, blockSize: 256 << 10) == one)
        #expect(try compress(input, workers: 2, blockSize: 256 << 10) == one)
        // One member per block: gzip's magic at the start of each.
        let members = (0..<(one.count - 2)).filter { one[$0] == 0x1f && one[$0 + 1] == 0x8b && one[$0 + 2] == 0x08 }.count
        #expect(members >= (input.count + (256 << 10) - 1) / (256 << 10))
        let t = TempDir("strata-pgz"); defer { t.remove() }
        try Data(one).write(to: URL(fileURLWithPath: t.sub("x.gz")))
        let (rc, _, err) = try sh(["sh", "-c", "gzip -dc \(t.sub("x.gz")) > \(t.sub("x"))"])
        #expect(rc == 0, "\(err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: t.sub("x"))) == Data(input))
        // A short stream is what a single compressor gives; an empty one is one empty member.
        let short = Array("short".utf8)
        var single: [UInt8] = []
        let gz = try CompressingWriter(.gzip) { single.append(contentsOf: $0) }
        try short.withUnsafeBytes { try gz.write($0) }
        try gz.close()
        #expect(try compress(short, workers: 2, blockSize: 1 << 20) == single)
        let empty = try compress([], workers: 2, blockSize: 1 << 20)
        try Data(empty).write(to: URL(fileURLWithPath: t.sub("e.gz")))
        #expect(try sh(["gzip", "-t", t.sub("e.gz")]).0 == 0)
    }
}
