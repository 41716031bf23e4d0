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
}
