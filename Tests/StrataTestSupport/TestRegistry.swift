import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataCore

/// A real registry for tests: Debian's `docker-registry` on 127.0.0.1 and a free port, with
/// its storage in a directory of the test; optionally TLS (a CA made here with openssl) and
/// Basic auth (htpasswd). Images go in with skopeo.
public final class TestRegistry: @unchecked Sendable {
    // @unchecked: set up in `init`, then only read; `stop` is called once, by the test.
    public let host: String
    public let directory: String
    /// A directory with the CA as `ca.crt` (TLS registries only).
    public let certDirectory: String?
    private let user: (String, String)?
    private let pid: pid_t

    public init(in directory: String, tls: Bool = false, user: (String, String)? = nil) throws {
        self.directory = directory
        self.user = user
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
        let port = try sh(["python3", "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"])
            .1.trimmingCharacters(in: .whitespacesAndNewlines)
        host = "127.0.0.1:\(port)"
        var config = """
            version: 0.1
            log:
              level: error
              accesslog:
                disabled: true
            storage:
              filesystem:
                rootdirectory: \(directory)/data
            http:
              addr: \(host)

            """
        if tls {
            let c = directory + "/certs"
            try FileManager.default.createDirectory(atPath: c, withIntermediateDirectories: true)
            let script = """
                set -e; cd \(c)
                openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=strata-test-ca 2>/dev/null
                openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
                printf 'subjectAltName=IP:127.0.0.1\\n' > ext
                openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext 2>/dev/null
                mkdir -p trust && cp ca.crt trust/ca.crt
                """
            let (rc, _, err) = try sh(["sh", "-c", script])
            guard rc == 0 else { throw StrataError(.system, "openssl: \(err)") }
            config += "  tls:\n    certificate: \(c)/server.crt\n    key: \(c)/server.key\n"
            certDirectory = c + "/trust"
        } else {
            certDirectory = nil
        }
        if let (u, p) = user {
            let (rc, out, err) = try sh(["htpasswd", "-Bbn", u, p])
            guard rc == 0 else { throw StrataError(.system, "htpasswd: \(err)") }
            try out.write(toFile: directory + "/htpasswd", atomically: true, encoding: .utf8)
            config += "auth:\n  htpasswd:\n    realm: strata-test\n    path: \(directory)/htpasswd\n"
        }
        try config.write(toFile: directory + "/config.yml", atomically: true, encoding: .utf8)
        pid = try spawn(["docker-registry", "serve", directory + "/config.yml"], stderr: directory + "/log")
        let url = (tls ? "https://" : "http://") + host + "/v2/"
        for _ in 0..<100 {
            if try sh(["curl", "-ks", "-o", "/dev/null", url]).0 == 0 { return }
            usleep(100_000)
        }
        kill(pid, SIGKILL)
        _ = reap(pid)
        throw StrataError(.system, "docker-registry did not start: \((try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? "")")
    }

    public func stop() {
        kill(pid, SIGTERM)
        _ = reap(pid)
    }

    private var credentialFlags: (String) -> [String] {
        { prefix in self.user.map { ["--\(prefix)creds", "\($0.0):\($0.1)"] } ?? [] }
    }

    /// `skopeo copy SOURCE docker://REF` (`all`: every image of an index).
    public func push(archive source: String, as ref: String, all: Bool = false) throws {
        let argv = ["skopeo", "copy", "-q", "--dest-tls-verify=false"] + credentialFlags("dest-") + (all ? ["--all"] : [])
            + [source, "docker://" + ref]
        let (rc, _, err) = try sh(argv)
        guard rc == 0 else { throw StrataError(.system, "skopeo copy: \(err)") }
    }

    /// The manifest digest the registry serves for `ref` (skopeo inspect).
    public func digest(of ref: String) throws -> String {
        let (rc, out, err) = try sh(["skopeo", "inspect", "--tls-verify=false"] + credentialFlags("") + ["docker://" + ref])
        guard rc == 0, let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
              let d = json["Digest"] as? String else { throw StrataError(.system, "skopeo inspect: \(err)") }
        return d
    }

    /// The largest blob in the registry's storage (a layer): its file and digest.
    public func largestBlob() throws -> (path: String, digest: String) {
        let root = directory + "/data/docker/registry/v2/blobs/sha256"
        var best: (String, String, Int) = ("", "", -1)
        for p in FileManager.default.subpaths(atPath: root) ?? [] where p.hasSuffix("/data") {
            let full = root + "/" + p
            let size = (try? FileManager.default.attributesOfItem(atPath: full)[.size] as? Int) ?? 0
            if size > best.2 { best = (full, "sha256:" + (p.split(separator: "/").dropLast().last.map(String.init) ?? ""), size) }
        }
        return (best.0, best.1)
    }
}
