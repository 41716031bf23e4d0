import AsyncHTTPClient
import FoundationEssentials
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import StrataCore
import StrataSystem
import Synchronization

/// How to reach a registry: TLS, certificates, credentials.
public struct RegistryOptions: Sendable {
    /// Verify the registry's certificate; false also allows plain http (as podman's flag does).
    public var tlsVerify = true
    /// A directory with `ca.crt` (or any `*.crt`), and `client.cert` + `client.key`.
    public var certDirectory: String?
    /// From `--creds`; else the stored credentials for the registry are used.
    public var credentials: Credentials?
    /// How failed requests are retried; nil: the defaults, with `STRATA_REGISTRY_STALL_SECONDS`
    /// from `environment`.
    public var retry: RetryPolicy?
    /// Where stored credentials are looked up (`$HOME`, `$XDG_RUNTIME_DIR`, `$REGISTRY_AUTH_FILE`).
    public var environment: [String: String] = [:]
    /// The defaults: TLS verified, stored credentials.
    public init() {}
}

/// One registry, spoken to over the OCI distribution API: its `/v2/` endpoints, token or Basic
/// authentication (tokens cached per scope for the life of the client), small documents read
/// whole (capped) and layer blobs streamed (`BlobStream`).
public final class RegistryClient: Sendable {
    public let registry: String
    let http: HTTPClient
    let baseURL: String
    let policy: RetryPolicy
    private let credentials: Credentials?
    /// `Authorization` values by scope (`repository:NAME:pull`).
    private let tokens = Mutex<[String: String]>([:])

    /// Connects to `registry` (host[:port]): https, or plain http where allowed and https is not
    /// spoken there (`tlsVerify` false, or a loopback registry).
    public init(registry: String, options: RegistryOptions) throws {
        self.registry = registry
        credentials = options.credentials ?? CredentialStore.lookup(registry: registry, environment: options.environment)
        var tls = TLSConfiguration.makeClientConfiguration()
        if !options.tlsVerify { tls.certificateVerification = .none }
        let host = String(registry.split(separator: ":").first ?? "")
        let dirs = ([options.certDirectory].compactMap { $0 }) + ["/etc/containers/certs.d/\(registry)", "/etc/docker/certs.d/\(registry)"]
        try RegistryClient.addCertificates(from: dirs, to: &tls)
        let policy = options.retry ?? RetryPolicy(environment: options.environment)
        self.policy = policy
        // A read that waits longer than the stall limit fails (and is retried); connections are
        // not retried inside the client, where a refused one would wait out the whole timeout.
        var config = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .follow(max: 5, allowCycles: false),
                                              timeout: .init(connect: .milliseconds(Int64(policy.connectSeconds * 1000)),
                                                             read: .milliseconds(Int64(policy.stallSeconds * 1000))))
        config.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        let loopback = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host)
        let insecureAllowed = !options.tlsVerify || loopback
        let probe = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        defer { try? probe.syncShutdown() }
        // Docker Hub's API lives at registry-1.docker.io (its credentials are stored as docker.io).
        let endpoint = registry == "docker.io" ? "registry-1.docker.io" : registry
        do {
            baseURL = try RegistryClient.chooseScheme(probe, registry: endpoint, allowHTTP: insecureAllowed)
        } catch {
            try? http.syncShutdown()
            throw error
        }
    }

    deinit { try? http.syncShutdown() }

    /// Trusted CAs (`*.crt`) and a client certificate (`client.cert`, `client.key`) from the
    /// first of `dirs` that exist.
    private static func addCertificates(from dirs: [String], to tls: inout TLSConfiguration) throws {
        for dir in dirs {
            guard let d = try? Directory.open(dir) else { continue }
            let names = try d.entries().map(\.display).sorted()
            for n in names where n.hasSuffix(".crt") {
                tls.additionalTrustRoots.append(.file(dir + "/" + n))
            }
            if names.contains("client.cert"), names.contains("client.key") {
                do {
                    tls.certificateChain = try NIOSSLCertificate.fromPEMFile(dir + "/client.cert").map { .certificate($0) }
                    tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: dir + "/client.key", format: .pem))
                } catch {
                    throw StrataError(.invalidArgument, "cannot read the client certificate in \(dir): \(error)")
                }
            }
        }
    }

    /// https if the registry speaks it; http only when allowed and https fails to connect.
    private static func chooseScheme(_ http: HTTPClient, registry: String, allowHTTP: Bool) throws -> String {
        do {
            let request = try HTTPClient.Request(url: "https://\(registry)/v2/", method: .GET)
            _ = try http.execute(request: request, delegate: ResponseAccumulator(request: request, maxBodySize: 1 << 16)).wait()
            return "https://\(registry)"
        } catch is ResponseAccumulator.ResponseTooBigError {
            return "https://\(registry)"
        } catch {
            guard allowHTTP else {
                let words = TransferFailure(error, policy: RetryPolicy()).map { "the connection \($0.phrase)" } ?? "\(error)"
                throw StrataError(.system, "cannot reach registry \(registry) over https: \(words); for a registry without TLS use --tls-verify=false")
            }
            return "http://\(registry)"
        }
    }

    /// A small response (manifest, config, token, error), read whole up to `limit` bytes.
    struct Reply {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    /// Sends a request for `path` under /v2/, authenticating for `scope` on a 401 (once).
    func send(_ method: HTTPMethod = .GET, _ path: String, headers: HTTPHeaders = [:], scope: String, limit: Int,
              body: [UInt8]? = nil) throws -> Reply {
        var reply = try raw(method, baseURL + path, headers: headers, auth: authorization(scope), limit: limit, body: body)
        if reply.status == .unauthorized {
            try authenticate(challenge: reply.headers["WWW-Authenticate"].first, scope: scope)
            reply = try raw(method, baseURL + path, headers: headers, auth: authorization(scope), limit: limit, body: body)
        } else {
            // Served without asking: remembered as "" (no header), so blob reads skip the probe.
            tokens.withLock { t in if t[scope] == nil { t[scope] = "" } }
        }
        return reply
    }

    /// Checks that the registry accepts the credentials (or needs none): `GET /v2/` with the
    /// authentication it asks for. Throws with the registry's answer otherwise.
    public func verifyAccess() throws {
        let reply = try send(.GET, "/v2/", scope: "", limit: 1 << 16)
        guard reply.status == .ok else { throw failure(reply, what: "/v2/") }
    }

    /// The `Authorization` value for `scope` once known ("" when the registry needs none).
    func authorization(_ scope: String) -> String? { tokens.withLock { $0[scope] } }

    /// One request, retried as the policy says (5xx, 429, connections that fail); the answer
    /// to the last try. Throws, in words, when the tries run out.
    func raw(_ method: HTTPMethod, _ url: String, headers: HTTPHeaders, auth: String?, limit: Int, body: [UInt8]? = nil) throws -> Reply {
        var attempts = Attempts(policy: policy, registry: registry, what: describe(method, url))
        while true {
            switch try once(method, url, headers: headers, auth: auth, limit: limit, body: body) {
            case .answered(let reply):
                guard let failure = TransferFailure(status: reply.status, headers: reply.headers) else { return reply }
                try attempts.failed(failure)
            case .failed(let failure):
                try attempts.failed(failure)
            }
        }
    }

    /// What one try of a request came to.
    enum Outcome {
        case answered(Reply)
        /// The connection failed in a way worth another try.
        case failed(TransferFailure)
    }

    /// One try of a request; throws for failures no retry can mend (an answer over `limit`, TLS).
    func once(_ method: HTTPMethod, _ url: String, headers: HTTPHeaders, auth: String?, limit: Int, body: [UInt8]? = nil) throws -> Outcome {
        try once(method, url, headers: headers, auth: auth, limit: limit, buffer: body.map { ByteBuffer(bytes: $0) })
    }

    /// One try with a body already in a buffer (an upload's chunk: sent without another copy).
    func once(_ method: HTTPMethod, _ url: String, headers: HTTPHeaders, auth: String?, limit: Int, buffer: ByteBuffer?) throws -> Outcome {
        var request = try HTTPClient.Request(url: url, method: method, headers: headers, body: buffer.map { .byteBuffer($0) })
        if let auth, !auth.isEmpty { request.headers.replaceOrAdd(name: "Authorization", value: auth) }
        do {
            let r = try http.execute(request: request, delegate: ResponseAccumulator(request: request, maxBodySize: limit)).wait()
            return .answered(Reply(status: r.status, headers: r.headers, body: r.body.map { Array($0.readableBytesView) } ?? []))
        } catch is ResponseAccumulator.ResponseTooBigError {
            throw StrataError(.tooLarge, "registry \(registry): the answer to \(method) \(Self.redact(url)) is over \(ByteCount.describe(Int64(limit)))")
        } catch {
            if let failure = TransferFailure(error, policy: policy) { return .failed(failure) }
            throw StrataError(.system, "registry \(registry): \(describe(method, url)) failed: \(error)")
        }
    }

    /// What a request is about, for messages: "blob sha256:…", "manifest NAME:TAG", "an upload to NAME".
    func describe(_ method: HTTPMethod, _ url: String) -> String {
        let path = Self.redact(url)
        guard path.hasPrefix(baseURL + "/v2/") else { return "the token service at \(path)" }
        let parts = path.dropFirst(baseURL.count + 4).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if let i = parts.firstIndex(of: "blobs"), i > 0 {
            let repository = parts[..<i].joined(separator: "/")
            if i + 1 < parts.count, parts[i + 1] == "uploads" { return "an upload to \(repository)" }
            return "blob \(parts.dropFirst(i + 1).joined(separator: "/")) in \(repository)"
        }
        if let i = parts.firstIndex(of: "manifests"), i > 0, i + 1 < parts.count {
            let reference = parts[i + 1]
            return "manifest \(parts[..<i].joined(separator: "/"))\(reference.hasPrefix("sha256:") ? "@" : ":")\(reference)"
        }
        return "\(method) \(path.dropFirst(baseURL.count))"
    }

    /// A URL without its query (a token service may carry secrets there).
    static func redact(_ url: String) -> String { String(url.split(separator: "?", maxSplits: 1).first ?? "") }

    /// Answers a `WWW-Authenticate` challenge: Basic with the credentials, or a Bearer token from
    /// the realm (anonymous, or with the credentials as Basic auth).
    private func authenticate(challenge: String?, scope: String) throws {
        guard let challenge else {
            throw StrataError(.system, "registry \(registry) refused access (401) without saying how to authenticate")
        }
        let (scheme, params) = Self.parseChallenge(challenge)
        switch scheme.lowercased() {
        case "basic":
            guard let credentials else {
                throw StrataError(.notFound, "registry \(registry) wants a user name and password: `strata login \(registry)`, or --creds")
            }
            tokens.withLock { $0[scope] = credentials.basicHeader }
        case "bearer":
            guard let realm = params["realm"] else { throw StrataError(.invalidFormat, "registry \(registry): a Bearer challenge without a realm") }
            var query = [String]()
            if let service = params["service"] { query.append("service=" + Self.escape(service)) }
            for one in scope.split(separator: " ") { query.append("scope=" + Self.escape(String(one))) }
            let url = realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&")
            let sendCredentials = try Self.mayReceiveCredentials(realm: realm, registryBase: baseURL, registry: registry,
                                                                 hasCredentials: credentials != nil)
            let reply = try raw(.GET, url, headers: [:], auth: sendCredentials ? credentials?.basicHeader : nil, limit: 1 << 20)
            guard reply.status == .ok else {
                if reply.status == .unauthorized || reply.status == .forbidden {
                    throw StrataError(.conflict, "registry \(registry) refused the credentials for \(scope) (\(reply.status.code)); check them with `strata login \(registry)`")
                }
                throw StrataError(.system, "registry \(registry): the token service answered \(reply.status.code)")
            }
            struct Token: Decodable { var token: String?; var access_token: String? }
            guard let t = try? JSONDecoder().decode(Token.self, from: Data(reply.body)), let value = t.token ?? t.access_token, !value.isEmpty else {
                throw StrataError(.invalidFormat, "registry \(registry): the token service's answer has no token")
            }
            tokens.withLock { $0[scope] = "Bearer " + value }
        default:
            throw StrataError(.unsupported, "registry \(registry) asks for \(scheme) authentication, which strata does not speak")
        }
    }

    /// Whether a token realm may be sent the registry's credentials: only over https, or over
    /// plain http to the registry's own origin (a registry that is allowed plain http). A realm
    /// of any other scheme (`http+unix://`, `file://`) is refused, credentials or not.
    static func mayReceiveCredentials(realm: String, registryBase: String, registry: String, hasCredentials: Bool) throws -> Bool {
        let scheme = realm.prefix { $0 != ":" }.lowercased()
        guard realm.contains("://"), scheme == "https" || scheme == "http" else {
            throw StrataError(.invalidFormat, "registry \(registry) names the token service \"\(redact(realm))\": strata asks token services for tokens over https (or http) only")
        }
        guard hasCredentials, scheme == "http" else { return hasCredentials }
        if origin(realm) == origin(registryBase) { return true }
        throw StrataError(.conflict, "registry \(registry) sends its login to the token service \(redact(realm)) over plain http on another host; strata sends credentials there only over https")
    }

    /// `scheme://host[:port]` of a URL, lowercased, with the scheme's default port made explicit.
    static func origin(_ url: String) -> String {
        let scheme = url.prefix { $0 != ":" }.lowercased()
        let rest = url.dropFirst(scheme.count).drop { $0 == ":" || $0 == "/" }
        var authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }.lowercased()
        if let at = authority.lastIndex(of: "@") { authority = String(authority[authority.index(after: at)...]) }
        let hasPort = authority.hasSuffix("]") ? false : authority.contains(":")
        if !hasPort { authority += scheme == "https" ? ":443" : ":80" }
        return scheme + "://" + authority
    }

    /// `Bearer realm="…",service="…",scope="…"` → ("Bearer", [realm: …, …]).
    ///
    /// Read as UTF-8 bytes, as HTTP defines the header: over Characters, a space, quote, comma
    /// or `=` joined into one grapheme with a neighbour (a combining mark after it, a prepended
    /// mark such as U+0604 before it) stopped being that delimiter, and the scheme or a value ran
    /// on past it.
    static func parseChallenge(_ header: String) -> (String, [String: String]) {
        let b = Array(header.utf8)
        let space = UInt8(ascii: " "), comma = UInt8(ascii: ","), quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        var i = 0
        while i < b.count, b[i] == space { i += 1 }
        let schemeStart = i
        while i < b.count, b[i] != space { i += 1 }
        let scheme = String(decoding: b[schemeStart..<i], as: UTF8.self)
        var params: [String: String] = [:]
        while let eq = b[i...].firstIndex(of: UInt8(ascii: "=")) {
            let key = String(decoding: b[i..<eq].filter { $0 != space && $0 != comma }, as: UTF8.self)
            i = eq + 1
            var value: [UInt8] = []
            if i < b.count, b[i] == quote {
                i += 1
                // A backslash escapes the next byte (one at the very end stands for itself).
                while i < b.count, b[i] != quote {
                    if b[i] == backslash, i + 1 < b.count { i += 1 }
                    value.append(b[i])
                    i += 1
                }
                i = min(i + 1, b.count)  // the closing quote, if there is one
            } else {
                while i < b.count, b[i] != comma { value.append(b[i]); i += 1 }
            }
            params[key.lowercased()] = String(decoding: value, as: UTF8.self)
            while i < b.count, b[i] == comma || b[i] == space { i += 1 }
        }
        return (scheme, params)
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(Unicode.Scalar(b))
            if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c)) { out.append(c) } else { out += "%" + String(b, radix: 16, uppercase: true).leftPad(2) }
        }
        return out
    }

    /// A message for a failed request: the registry's error codes where it sent them.
    func failure(_ reply: Reply, what: String) -> StrataError {
        struct Errors: Decodable { struct E: Decodable { var code: String?; var message: String? }; var errors: [E]? }
        let detail = (try? JSONDecoder().decode(Errors.self, from: Data(reply.body)))?.errors?
            .map { [$0.code, $0.message].compactMap { $0 }.joined(separator: ": ") }.joined(separator: "; ") ?? ""
        let suffix = detail.isEmpty ? "" : " (\(detail))"
        switch reply.status {
        case .notFound: return StrataError(.notFound, "registry \(registry) has no \(what)\(suffix)")
        case .unauthorized, .forbidden:
            return StrataError(.conflict, "registry \(registry) refused access to \(what) (\(reply.status.code))\(suffix); `strata login \(registry)` or --creds")
        default: return StrataError(.system, "registry \(registry) answered \(reply.status.code) \(reply.status.reasonPhrase) for \(what)\(suffix)")
        }
    }
}

extension String {
    fileprivate func leftPad(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
