import StrataCore
import StrataFormats
import Testing

/// References as Docker parses them. Values only: no root, no network.
@Suite struct ReferenceTests {
    @Test func dockerHubNames() throws {
        let r = try ImageReference(parsing: "busybox")
        #expect(r.registry == "docker.io" && r.repository == "library/busybox" && r.tag == "latest" && r.digest == nil)
        #expect(r.description == "docker.io/library/busybox:latest")
        #expect(r.shortForms == ["busybox:latest", "library/busybox:latest"])
        #expect(try ImageReference(parsing: "user/app:1.0").description == "docker.io/user/app:1.0")
        #expect(try ImageReference(parsing: "docker.io/library/busybox:1").shortForms.first == "busybox:1")
    }

    @Test func registriesPortsAndDigests() throws {
        let r = try ImageReference(parsing: "127.0.0.1:5000/a/b-c__d.e:t_1")
        #expect(r.registry == "127.0.0.1:5000" && r.repository == "a/b-c__d.e" && r.tag == "t_1")
        let d = "sha256:" + String(repeating: "ab", count: 32)
        let byDigest = try ImageReference(parsing: "localhost/x@" + d)
        #expect(byDigest.registry == "localhost" && byDigest.tag == nil && byDigest.digest?.string == d)
        #expect(byDigest.manifestReference == d)
        #expect(try ImageReference(parsing: "localhost/x:1").shortForms == ["x:1"])
        let both = try ImageReference(parsing: "example.com:443/x:1@" + d)
        #expect(both.tag == "1" && both.digest?.string == d && both.manifestReference == d)
        // A port is not a tag.
        #expect(try ImageReference(parsing: "host:5000/x").tag == "latest")
    }

    @Test(arguments: ["", "Busybox", "a//b", "a/", ":tag", "x:", "x:-bad", "x@sha256:short", "a b", "x__-y", "-x", "x.",
                      "host:99999/x", "é"])
    func refused(_ text: String) {
        #expect(throws: StrataError.self) { try ImageReference(parsing: text) }
    }

    @Test func uppercaseSaysLowercase() {
        #expect { try ImageReference(parsing: "docker.io/Library/x") } throws: { e in
            (e as? StrataError)?.message.contains("must be lowercase") == true
        }
    }

    @Test func loginHosts() throws {
        #expect(try ImageReference.registryHost("https://index.docker.io/v1/") == "docker.io")
        #expect(try ImageReference.registryHost("127.0.0.1:5000") == "127.0.0.1:5000")
        #expect(throws: StrataError.self) { try ImageReference.registryHost("bad host") }
    }

    /// Found by the `reference` fuzz target: a 511-character name normalized to 518 characters
    /// with `:latest`, which `normalize` itself (and so every lookup of the tag) then refused.
    @Test func normalizedNamesNormalizeToThemselves() throws {
        let fuzzed = "odocker.rry-0.docker.y-0.doiregiistry-0cker.irker.rry-0.diregiistry-0.doiregiistry-0cker.ireggstr-1." +
            "testtry-1regiistry-0.docker.iregi11111giistry-0.doiregiie9r.ireggstr-1.testtry-1regiistry-dcok0.er.i" +
            "regi11111111111111111111111111111111111111111111111,1111111111%1111111111111111111111qstry-1.testtst" +
            "ry-0.docker.iregistry-1.testtry-1.teegistry-11111119111111111111111111111111111111111111111111111111" +
            "11111111111111111111111111111111stry-1.testtsstry-0.docker.iregistry-1.testtry-1.teegistry-1.tes/Att" +
            "ry-1regiist"
        #expect(fuzzed.count == 511)
        #expect { try Reference.normalize(fuzzed) } throws: { e in
            (e as? StrataError)?.message.contains("518 characters with the :latest tag, over the limit of 512") == true
        }
        let longest = String(repeating: "a", count: Reference.maxLength - 7)
        #expect(try Reference.normalize(longest) == longest + ":latest")
        #expect(try Reference.normalize(longest + ":latest") == longest + ":latest")
        #expect(throws: StrataError.self) { try Reference.normalize(longest + "a") }
    }
}
