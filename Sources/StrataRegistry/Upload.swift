import AsyncHTTPClient
import FoundationEssentials
import NIOCore
import NIOHTTP1
import StrataArchive
import StrataCore

extension RegistryClient {
    static func pushScope(_ repository: String) -> String { "repository:\(repository):pull,push" }

    /// The size of `digest` in `repository` if the registry has it (HEAD), else nil.
    public func blobSize(repository: String, digest: Digest) throws -> Int64? {
        let reply = try send(.HEAD, "/v2/\(repository)/blobs/\(digest)", scope: Self.pushScope(repository), limit: 0)
        guard reply.status == .ok else { return nil }
        return reply.headers["Content-Length"].first.flatMap { Int64($0) }
    }

    /// Mounts blob `digest` from `source` into `repository` (same registry) without sending it;
    /// whether the registry did (it may start an upload instead, which is then abandoned).
    public func mountBlob(repository: String, digest: Digest, from source: String) throws -> Bool {
        let scope = Self.pushScope(repository) + " repository:\(source):pull"
        let reply = try send(.POST, "/v2/\(repository)/blobs/uploads/?mount=\(digest)&from=\(source)", scope: scope, limit: 1 << 16)
        if reply.status == .created { return true }
        if reply.status == .accepted, let location = reply.headers["Location"].first {
            _ = try? raw(.DELETE, absolute(location), headers: [:], auth: authorization(scope, for: absolute(location)), limit: 1 << 16)
        }
        return false
    }

    /// Uploads a blob whose bytes `produce` writes, in chunks (`POST`, `PATCH`…, `PUT ?digest=`),
    /// hashing as it goes: no temporary file. Returns its digest and size.
    public func uploadBlob(repository: String, produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> (Digest, Int64) {
        let scope = Self.pushScope(repository)
        let start = try send(.POST, "/v2/\(repository)/blobs/uploads/", scope: scope, limit: 1 << 16)
        guard start.status == .accepted, var location = start.headers["Location"].first else {
            throw failure(start, what: "an upload to \(repository)")
        }
        var hasher = Digester()
        var pending: [UInt8] = []
        pending.reserveCapacity(Self.chunkSize)
        var sent: Int64 = 0
        func flush() throws {
            guard !pending.isEmpty else { return }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/octet-stream")
            headers.add(name: "Content-Range", value: "\(sent)-\(sent + Int64(pending.count) - 1)")
            let reply = try raw(.PATCH, absolute(location), headers: headers, auth: authorization(scope, for: absolute(location)),
                                limit: 1 << 16, body: pending)
            guard reply.status == .accepted, let next = reply.headers["Location"].first else {
                throw failure(reply, what: "an upload to \(repository) (at byte \(sent))")
            }
            location = next
            sent += Int64(pending.count)
            pending.removeAll(keepingCapacity: true)
        }
        try produce { chunk in
            hasher.update(chunk)
            pending.append(contentsOf: chunk)
            if pending.count >= Self.chunkSize { try flush() }
        }
        try flush()
        let digest = hasher.finalize()
        let url = absolute(location) + (location.contains("?") ? "&" : "?") + "digest=\(digest)"
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "0")
        let done = try raw(.PUT, url, headers: headers, auth: authorization(scope, for: url), limit: 1 << 16)
        guard done.status == .created else { throw failure(done, what: "the end of an upload to \(repository)") }
        return (digest, sent)
    }

    /// Bytes sent per PATCH.
    static let chunkSize = 8 << 20

    /// Puts a manifest under `reference` (a tag); returns its digest.
    @discardableResult
    public func putManifest(repository: String, reference: String, bytes: [UInt8], mediaType: String) throws -> Digest {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: mediaType)
        let reply = try send(.PUT, "/v2/\(repository)/manifests/\(reference)", headers: headers, scope: Self.pushScope(repository),
                             limit: 1 << 16, body: bytes)
        guard reply.status == .created else { throw failure(reply, what: "the manifest \(repository):\(reference)") }
        return Digest.of(bytes)
    }

    /// The credentials for `scope`, only for a URL of this registry: an upload `Location` the
    /// registry answers with may name another host, which must not see them.
    func authorization(_ scope: String, for url: String) -> String? {
        url.hasPrefix(baseURL + "/") ? authorization(scope) : nil
    }

    /// An upload `Location` made absolute.
    func absolute(_ location: String) -> String {
        location.hasPrefix("http://") || location.hasPrefix("https://") ? location : baseURL + location
    }
}
