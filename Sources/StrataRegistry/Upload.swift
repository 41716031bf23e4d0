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
    ///
    /// A chunk or the final `PUT` that fails (5xx, 429, a connection that breaks) is retried as
    /// the policy says: the registry is asked how far the upload got (`GET` on it, its `Range`)
    /// and the rest of the chunk is sent. An upload the registry lost, or whose state does not
    /// fit, starts again from the first byte: `produce` is called again, so it must write the
    /// same bytes each time.
    public func uploadBlob(repository: String, produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> (Digest, Int64) {
        let upload = ChunkedUpload(client: self, repository: repository)
        // Restarts are counted apart from the chunks' tries: an accepted chunk resets those, so
        // a registry that takes a chunk and then loses every upload would restart forever.
        for _ in 0..<policy.tries {
            do { return try upload.run(produce) } catch is ChunkedUpload.Lost { continue }
        }
        throw StrataError(.system, "registry \(registry) lost the upload to \(repository) \(policy.tries) times; giving up")
    }

    /// Bytes sent per PATCH.
    static let chunkSize = 4 << 20

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

/// One blob upload, retried chunk by chunk; `Lost` restarts it from the first byte.
private final class ChunkedUpload {
    /// The registry lost the upload, or its state does not fit what was sent: start again.
    struct Lost: Error {}

    let client: RegistryClient
    let repository: String
    let scope: String
    /// Shared by every chunk and every restart: progress (an accepted chunk) resets it.
    var attempts: Attempts
    var location = ""
    /// Bytes the registry has accepted.
    var sent: Int64 = 0
    /// Some chunk was resumed from the registry's own count: a final refusal may be ours.
    var resumed = false

    init(client: RegistryClient, repository: String) {
        self.client = client
        self.repository = repository
        scope = RegistryClient.pushScope(repository)
        attempts = Attempts(policy: client.policy, registry: client.registry, what: "an upload to \(repository)")
    }

    func run(_ produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> (Digest, Int64) {
        let start = try client.send(.POST, "/v2/\(repository)/blobs/uploads/", scope: scope, limit: 1 << 16)
        guard start.status == .accepted, let location = start.headers["Location"].first else {
            throw client.failure(start, what: "an upload to \(repository)")
        }
        self.location = location
        sent = 0
        resumed = false
        var hasher = Digester()
        // One buffer for every chunk: the request sends it as it is, and once the request is
        // done it is ours alone again, so clearing it keeps its memory.
        var pending = ByteBufferAllocator().buffer(capacity: RegistryClient.chunkSize)
        try produce { chunk in
            hasher.update(chunk)
            pending.writeBytes(chunk)
            if pending.readableBytes >= RegistryClient.chunkSize {
                try patch(pending)
                pending.clear()
            }
        }
        if pending.readableBytes > 0 { try patch(pending) }
        let digest = hasher.finalize()
        try finish(digest)
        return (digest, sent)
    }

    /// Sends `chunk`, the bytes after `sent`; after a failure, only what the registry lacks.
    private func patch(_ chunk: ByteBuffer) throws {
        var from = 0
        while from < chunk.readableBytes {
            let url = client.absolute(location)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/octet-stream")
            headers.add(name: "Content-Range", value: "\(sent)-\(sent + Int64(chunk.readableBytes - from) - 1)")
            let failure: TransferFailure
            switch try client.once(.PATCH, url, headers: headers, auth: client.authorization(scope, for: url), limit: 1 << 16,
                                   buffer: from == 0 ? chunk : chunk.getSlice(at: chunk.readerIndex + from, length: chunk.readableBytes - from)) {
            case .answered(let reply):
                if reply.status == .accepted, let next = reply.headers["Location"].first {
                    location = next
                    sent += Int64(chunk.readableBytes - from)
                    attempts.progressed()
                    return
                }
                guard let f = TransferFailure(status: reply.status, headers: reply.headers) else {
                    try lostIfResumed(reply)
                    throw client.failure(reply, what: "an upload to \(repository) (at byte \(sent))")
                }
                failure = f
            case .failed(let f):
                failure = f
            }
            try attempts.failed(failure)
            // Part or all of the chunk may have arrived before the failure.
            guard let have = try registryCount(), have >= sent, have <= sent + Int64(chunk.readableBytes - from) else { throw Lost() }
            from += Int(have - sent)
            sent = have
            resumed = true
        }
    }

    /// `PUT ?digest=`; after a failure, done if the registry has the blob, else tried again.
    private func finish(_ digest: Digest) throws {
        while true {
            let url = client.absolute(location) + (location.contains("?") ? "&" : "?") + "digest=\(digest)"
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: "0")
            let failure: TransferFailure
            switch try client.once(.PUT, url, headers: headers, auth: client.authorization(scope, for: url), limit: 1 << 16) {
            case .answered(let reply):
                if reply.status == .created { return }
                guard let f = TransferFailure(status: reply.status, headers: reply.headers) else {
                    try lostIfResumed(reply)
                    throw client.failure(reply, what: "the end of an upload to \(repository)")
                }
                failure = f
            case .failed(let f):
                failure = f
            }
            try attempts.failed(failure)
            // The registry may have completed it before the connection failed.
            if try client.blobSize(repository: repository, digest: digest) == sent { return }
            guard try registryCount() == sent else { throw Lost() }
        }
    }

    /// A refusal (404: the upload is gone; 400/416: its bytes are not what was meant) after a
    /// resume starts the upload again, within the tries.
    private func lostIfResumed(_ reply: RegistryClient.Reply) throws {
        guard reply.status == .notFound || (resumed && (reply.status == .badRequest || reply.status == .rangeNotSatisfiable)) else { return }
        try attempts.failed(.status(reply.status, retryAfter: nil))
        throw Lost()
    }

    /// How many bytes the registry holds for the upload (`GET` on it: `Range: 0-END`), with
    /// the location to continue at; nil when it lost the upload.
    private func registryCount() throws -> Int64? {
        let url = client.absolute(location)
        let reply = try client.raw(.GET, url, headers: [:], auth: client.authorization(scope, for: url), limit: 1 << 16)
        guard reply.status == .noContent || reply.status == .accepted else { return nil }
        if let next = reply.headers["Location"].first { location = next }
        // "0-0" is both nothing and one byte (distribution answers so for either): taken as nothing.
        guard let range = reply.headers["Range"].first, let end = range.split(separator: "-").last.flatMap({ Int64($0) }) else { return 0 }
        guard end >= 0, end < Int64.max else { return nil }  // no count a registry could hold: start again
        return end == 0 ? 0 : end + 1
    }
}
