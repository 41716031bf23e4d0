import StrataCore
import Synchronization
import Testing
@testable import StrataArchive

/// The producer-thread source commit streams through: every byte arrives in order across
/// buffer boundaries, a producer's error arrives after the bytes before it, and a reader that
/// gives up stops the producer instead of leaving its thread blocked.
@Suite struct ProducedSourceTests {
    static func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 31 &+ i >> 11) }

    func drain(_ s: ProducedSource) throws -> [UInt8] {
        var out: [UInt8] = []
        while true {
            let c = try s.nextChunk()
            if c.isEmpty { return out }
            out.append(contentsOf: c)
        }
    }

    @Test func bytesArriveInOrder() throws {
        let total = 5 << 20 + 12_345
        let s = ProducedSource { write in
            var i = 0
            var n = 1
            while i < total {
                let bytes = (i..<min(total, i + n)).map(ProducedSourceTests.pattern)
                try bytes.withUnsafeBytes { try write($0) }
                i += bytes.count
                n = n * 3 % 700_001 + 1
            }
        }
        let got = try drain(s)
        #expect(got.count == total && got.indices.allSatisfy { got[$0] == ProducedSourceTests.pattern($0) })
    }

    @Test func producerErrorFollowsItsBytes() throws {
        let s = ProducedSource { write in
            try [UInt8](repeating: 7, count: 3 << 20).withUnsafeBytes { try write($0) }
            throw StrataError(.system, "disk full while writing")
        }
        var seen = 0
        let error = #expect(throws: StrataError.self) {
            while true {
                let c = try s.nextChunk()
                if c.isEmpty { break }
                seen += c.count
            }
        }
        #expect(seen == 3 << 20 && error?.message.contains("disk full") == true)
    }

    @Test func cancelStopsTheProducer() throws {
        let stopped = Mutex(false)
        let s = ProducedSource { write in
            defer { stopped.withLock { $0 = true } }
            let block = [UInt8](repeating: 1, count: 1 << 16)
            while true { try block.withUnsafeBytes { try write($0) } }
        }
        _ = try s.nextChunk()
        s.cancel()
        #expect(stopped.withLock { $0 })
        #expect(try s.nextChunk().isEmpty)
    }
}
