import StrataTestSupport
import Testing
@testable import StrataArchive

/// Names read from raw header bytes, and hostile numbers in them: refused, never a crash.
@Suite struct RawTarHeaderTests {
    static func block(name: String, type: UInt8, size: [UInt8]) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        for (i, b) in name.utf8.enumerated() { h[i] = b }
        for (i, b) in size.enumerated() { h[124 + i] = b }
        h[156] = type
        for (i, b) in "ustar\0".utf8.enumerated() { h[257 + i] = b }
        return h
    }

    @Test func paxPathWinsAndKeepsItsBytes() throws {
        let nfd = Array("cafe\u{301}".utf8)
        let rest = Array(" path=".utf8).count + nfd.count + 1  // " path=" name "\n"
        let record = Array("\(rest + 2) path=".utf8) + nfd + [0x0a]  // a two-digit length
        var bytes = RawTarHeaderTests.block(name: "PaxHeaders/x", type: UInt8(ascii: "x"), size: Array(String(record.count, radix: 8).utf8))
        bytes += record + [UInt8](repeating: 0, count: 512 - record.count)
        bytes += RawTarHeaderTests.block(name: "cafe", type: UInt8(ascii: "0"), size: Array("0".utf8))
        var globals: RawTarHeader.Globals = [:]
        let h = try RawTarHeader.parse(bytes, globals: &globals)
        #expect(h.path == nfd)
    }

    @Test func hostileSizesAreRefused() {
        var globals: RawTarHeader.Globals = [:]
        // A base-256 size of 2^62 in an extended header, then the entry's header.
        var huge = [UInt8](repeating: 0, count: 12)
        huge[0] = 0x80
        huge[4] = 0x40
        let bytes = RawTarHeaderTests.block(name: "x", type: UInt8(ascii: "x"), size: huge)
            + RawTarHeaderTests.block(name: "f", type: UInt8(ascii: "0"), size: Array("0".utf8))
        #expect(throws: RawTarHeader.Malformed.self) { try RawTarHeader.parse(bytes, globals: &globals) }
        let notOctal = RawTarHeaderTests.block(name: "x", type: UInt8(ascii: "x"), size: Array("9z".utf8))
            + RawTarHeaderTests.block(name: "f", type: UInt8(ascii: "0"), size: Array("0".utf8))
        #expect(throws: RawTarHeader.Malformed.self) { try RawTarHeader.parse(notOctal, globals: &globals) }
        #expect(throws: RawTarHeader.Malformed.self) { try RawTarHeader.parse([1, 2, 3], globals: &globals) }
    }
}
