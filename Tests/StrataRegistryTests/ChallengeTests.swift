import Foundation
import Testing
@testable import StrataRegistry

/// `WWW-Authenticate` challenges as registries send them. Values only: no root, no network.
@Suite struct ChallengeTests {
    @Test func bearerAndBasic() {
        let (scheme, params) = RegistryClient.parseChallenge(
            #"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#)
        #expect(scheme == "Bearer")
        #expect(params == ["realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                           "scope": "repository:library/busybox:pull"])
        let basic = RegistryClient.parseChallenge(#"Basic realm="Registry Realm""#)
        #expect(basic.0 == "Basic" && basic.1 == ["realm": "Registry Realm"])
        #expect(RegistryClient.parseChallenge("bearer Realm=https://quay.io/v2/auth, Service=quay.io").1
            == ["realm": "https://quay.io/v2/auth", "service": "quay.io"])
    }

    @Test func backslashEscapes() {
        #expect(RegistryClient.parseChallenge(#"Bearer error_description="a \"quoted\" word\\""#).1
            == ["error_description": #"a "quoted" word\"#])
        // A backslash that ends the header stands for itself.
        #expect(RegistryClient.parseChallenge(#"Bearer realm="x\"#).1 == ["realm": #"x\"#])
    }

    /// Found by the `www-authenticate` fuzz target: "Basc", bytes that are not UTF-8, U+0604
    /// (a prepended concatenation mark) and a space. Split by Characters, the mark and the space
    /// were one grapheme, so the space did not end the scheme.
    @Test func delimitersAreBytesNotGraphemes() {
        let fuzzed: [UInt8] = [
            0x42, 0x61, 0x73, 0x63, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0x40, 0xd8, 0xd8, 0xd8, 0xd8,
            0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8,
            0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8,
            0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8,
            0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0x84, 0x20, 0x72,
            0x65, 0x3d, 0xff, 0x73, 0xff,
        ]
        let (scheme, params) = RegistryClient.parseChallenge(String(decoding: fuzzed, as: UTF8.self))
        #expect(!scheme.utf8.contains(UInt8(ascii: " ")) && scheme.hasPrefix("Basc"))
        #expect(params.keys.sorted() == ["re"])
        let marked = RegistryClient.parseChallenge("Bearer\u{604} realm=\"a\"\u{301},service=\"s\"")
        #expect(marked.0 == "Bearer\u{604}")
        #expect(marked.1["realm"] == "a")
    }

    /// Each backslash used to count the rest of the header (`Substring.count`): quadratic, 3.9 s
    /// for 40,000 of them in the fuzzing build. Now one pass.
    @Test func manyBackslashesAreLinear() {
        let header = #"Bearer realm=""# + String(repeating: #"\\"#, count: 40_000) + #"""#
        let start = Date()
        let (_, params) = RegistryClient.parseChallenge(header)
        #expect(params["realm"] == String(repeating: #"\"#, count: 40_000))
        #expect(Date().timeIntervalSince(start) < 5)
    }
}
