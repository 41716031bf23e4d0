import StrataTestSupport
import Testing
@testable import StrataCore

@Suite struct DigestTests {
    @Test func parsesValidDigest() throws {
        let d = try Digest(parsing: "sha256:" + String(repeating: "ab", count: 32))
        #expect(d.hex == String(repeating: "ab", count: 32))
        #expect(d.short == "abababababab")
    }

    @Test(arguments: [
        "", "sha256:", "sha256:abc", "sha512:" + String(repeating: "a", count: 64),
        "sha256:" + String(repeating: "A", count: 64), "sha256:" + String(repeating: "g", count: 64),
        String(repeating: "a", count: 64), "sha256:" + String(repeating: "a", count: 63) + "/",
        "sha256:../../../../etc/passwd" + String(repeating: "a", count: 40),
    ])
    func rejectsInvalidDigest(_ s: String) {
        #expect(throws: StrataError.self) { try Digest(parsing: s) }
    }

    @Test func digestOfKnownBytes() {
        // printf 'abc' | sha256sum
        #expect(Digest.of(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// chainIDs computed by hand with sha256sum:
    ///   printf 'sha256:<d0> sha256:<d1>' | sha256sum, and again with the result and d2.
    @Test func chainIDMatchesHandComputedValues() throws {
        let d0 = try DiffID(parsing: "sha256:3d2924f0a01c409ab40234980418ae80b98197972388ef4206ae58a22f30879f")
        let d1 = try DiffID(parsing: "sha256:9d705b8495f5a444943e4de0c07f03f7454522b4d1a99693f2f38916054f0b48")
        let d2 = try DiffID(parsing: "sha256:c0febf67bea20fab21cde272c00b990c9c40c90e5b22b358248e15980faa2bc0")
        let chain = ChainID.chain([d0, d1, d2])
        #expect(chain[0].digest == d0.digest)
        #expect(chain[1].description == "sha256:a4204d91a1d775f888dd0336420b1a7db59ef81720a7cb33c09b8585fa13e6cc")
        #expect(chain[2].description == "sha256:7830d5938000cec8192318c92798d7a7840340f8dfb7f009dbca4fe01d57c9ce")
        #expect(ChainID.of(parent: chain[1], diffID: d2) == chain[2])
    }
}

@Suite struct EntryPathTests {
    @Test(arguments: [
        ("./x", "x"), ("x//y", "x/y"), ("x/./y", "x/y"), ("a/../b", "b"), ("./", ""), (".", ""),
        ("a/b/../../c/", "c"), ("dir/", "dir"),
    ])
    func normalises(_ input: String, _ expected: String) throws {
        let r = try EntryPath.normalized(Array(input.utf8)).get()
        #expect(r == Array(expected.utf8))
    }

    @Test(arguments: ["../x", "a/../../x", "./../x", "a/b/../../../etc/passwd", ".."])
    func refusesEscapes(_ input: String) {
        #expect(EntryPath.normalized(Array(input.utf8)) == .failure(.escapes))
    }

    @Test func refusesAbsolute() {
        #expect(EntryPath.normalized(Array("/etc/passwd".utf8)) == .failure(.absolute))
    }

    /// Names are bytes: NFC and NFD spellings of "é" stay two names, and invalid UTF-8 survives.
    @Test func keepsBytes() throws {
        let nfc: [UInt8] = [0x63, 0x61, 0x66, 0xc3, 0xa9]
        let nfd: [UInt8] = [0x63, 0x61, 0x66, 0x65, 0xcc, 0x81]
        #expect(try EntryPath.normalized(nfc).get() != EntryPath.normalized(nfd).get())
        let invalid: [UInt8] = [0x61, 0xff, 0xfe]
        #expect(try EntryPath.normalized(invalid).get() == invalid)
    }
}

/// Sizes a container controls are summed without trapping.
@Test func sizeSumsSaturate() {
    #expect(Int64.max.addingSaturating(1) == .max)
    #expect(Int64(5).addingSaturating(7) == 12)
    #expect(Int64.min.addingSaturating(-1) == .min)
}
