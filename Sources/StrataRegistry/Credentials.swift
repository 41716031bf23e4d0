import FoundationEssentials
import StrataCore
import StrataSystem

/// A user name and password for one registry. Never printed, logged, or put in an error.
public struct Credentials: Sendable, Equatable {
    public var username: String
    public var password: String

    public init(username: String, password: String) { self.username = username; self.password = password }

    /// `USER[:PASS]` as `--creds` takes it.
    public init(creds: String) throws {
        guard let colon = creds.firstIndex(of: ":") else {
            throw StrataError(.invalidArgument, "--creds needs USER:PASSWORD (the password cannot be asked for here)")
        }
        username = String(creds[..<colon])
        password = String(creds[creds.index(after: colon)...])
        guard !username.isEmpty else { throw StrataError(.invalidArgument, "--creds has an empty user name") }
    }

    /// The `Authorization` value for Basic auth.
    var basicHeader: String { "Basic " + Base64.encode(Array("\(username):\(password)".utf8)) }
}

/// Credentials stored by `podman login`, `docker login` and `strata login`, in their shared
/// `{"auths": {"HOST": {"auth": base64("user:pass")}}}` format.
public enum CredentialStore {
    /// strata's own file, written by `strata login` (mode 0600).
    public static func strataFile(environment: [String: String]) -> String {
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty { return runtime + "/strata/auth.json" }
        return (environment["HOME"] ?? "/root") + "/.config/strata/auth.json"
    }

    /// The files read, first match wins: `$REGISTRY_AUTH_FILE`, strata's own,
    /// `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/config.json`.
    public static func files(environment: [String: String]) -> [String] {
        var out: [String] = []
        if let f = environment["REGISTRY_AUTH_FILE"], !f.isEmpty { out.append(f) }
        out.append(strataFile(environment: environment))
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty { out.append(runtime + "/containers/auth.json") }
        out.append((environment["HOME"] ?? "/root") + "/.docker/config.json")
        return out
    }

    /// The credentials stored for `registry` in the first file that has them, or nil.
    public static func lookup(registry: String, environment: [String: String]) -> Credentials? {
        for file in files(environment: environment) {
            guard let auths = try? readAuths(file) else { continue }
            for key in keys(for: registry) {
                if let c = auths[key].flatMap(decode) { return c }
            }
        }
        return nil
    }

    /// Writes `credentials` for `registry` into `file` (keeping the other entries), mode 0600,
    /// through a temporary file and a rename.
    public static func store(_ credentials: Credentials?, registry: String, file: String) throws {
        var auths = (try? readAuths(file)) ?? [:]
        auths[registry] = credentials.map { ["auth": Base64.encode(Array("\($0.username):\($0.password)".utf8))] }
        let slash = file.lastIndex(of: "/") ?? file.startIndex
        let dir = String(file[..<slash])
        if !dir.isEmpty { try makeDirectories(dir, mode: 0o700) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let bytes = Array(try encoder.encode(["auths": auths]))
        let tmp = file + ".tmp-\(UInt32.random(in: 0...UInt32.max))"
        let f = try FDHandle.open(tmp, flags: [.writeOnly, .create, .exclusive], mode: 0o600)
        do {
            try f.writeAll(bytes)
            try renamePath(tmp, to: file)
        } catch {
            removeFile(tmp)
            throw error
        }
    }

    /// Whether `file` holds an entry for `registry`.
    public static func has(registry: String, file: String) -> Bool { ((try? readAuths(file)) ?? [:])[registry] != nil }

    private static func keys(for registry: String) -> [String] {
        var keys = [registry, "https://\(registry)", "http://\(registry)", "https://\(registry)/v1/", "https://\(registry)/v2/"]
        if registry == "docker.io" { keys += ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"] }
        return keys
    }

    private static func readAuths(_ file: String) throws -> [String: [String: String]] {
        let f = try FDHandle.open(file, flags: .readOnly)
        let bytes = try f.readAll(limit: 1 << 20, label: file)
        struct File: Decodable { var auths: [String: Entry]? }
        struct Entry: Decodable { var auth: String? }
        let parsed = try JSONDecoder().decode(File.self, from: Data(bytes))
        return (parsed.auths ?? [:]).compactMapValues { e in e.auth.map { ["auth": $0] } }
    }

    private static func decode(_ entry: [String: String]) -> Credentials? {
        guard let auth = entry["auth"], let data = Data(base64Encoded: auth),
              let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":") else { return nil }
        return Credentials(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
    }
}
