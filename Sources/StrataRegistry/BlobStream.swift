import AsyncHTTPClient
import Dispatch
import NIOCore
import NIOHTTP1
import StrataArchive
import StrataCore
import Synchronization

/// A layer blob streamed from a registry as a `ChunkSource`: the ingest pipeline pulls, the
/// HTTP client pushes, and a small queue between them applies backpressure (the connection
/// is not read faster than the layer unpacks). A connection that drops, stalls (no byte for
/// the policy's stall limit) or is answered 5xx/429 is resumed with a `Range` request, as the
/// retry policy allows; the count starts again whenever bytes arrived since the last failure.
/// The bytes are not trusted here: the pipeline hashes them against the digest.
final class BlobStream: ChunkSource {
    private let client: RegistryClient
    private let path: String
    private let scope: String
    private let size: Int64
    private let label: String
    private var pipe: BodyPipe?
    private var delivered: Int64 = 0
    private var deliveredAtFailure: Int64 = 0
    private var attempts: Attempts
    private var current: ByteBuffer?
    /// Once failed, the stream stays failed (a caller that drains after an error gets the error).
    private var failure: (any Error)?

    init(client: RegistryClient, repository: String, digest: Digest, size: Int64, label: String) {
        self.client = client
        path = "/v2/\(repository)/blobs/\(digest)"
        scope = "repository:\(repository):pull"
        self.size = size
        self.label = label
        attempts = Attempts(policy: client.policy, registry: client.registry, what: "blob \(digest)")
    }

    deinit { pipe?.cancel() }

    func nextChunk() throws -> UnsafeRawBufferPointer {
        if let failure { throw failure }
        do { return try next() } catch {
            // Named by the layer once, whichever reader passes the error on.
            let named = (error as? StrataError).map { $0.message.hasPrefix(label) ? $0 : $0.context(label) } ?? error
            failure = named
            pipe?.cancel()
            throw named
        }
    }

    private func next() throws -> UnsafeRawBufferPointer {
        while true {
            if pipe == nil { pipe = try start() }
            switch try pipe!.take(stall: client.policy.stallSeconds) {
            case .bytes(let buffer):
                delivered += Int64(buffer.readableBytes)
                guard delivered <= size else {
                    throw StrataError(.sizeMismatch, "\(label): the registry sent more than the \(size) bytes the manifest names")
                }
                current = buffer
                return current!.withUnsafeReadableBytes { UnsafeRawBufferPointer(start: $0.baseAddress, count: $0.count) }
            case .end:
                guard delivered == size else {
                    throw StrataError(.sizeMismatch, "\(label): the registry sent \(delivered) of the \(size) bytes the manifest names")
                }
                return UnsafeRawBufferPointer(start: nil, count: 0)
            case .failed(let why):
                // Abandoned (a stalled transfer is cut here), then resumed where it stopped.
                pipe?.cancel()
                pipe = nil
                if delivered > deliveredAtFailure { attempts.progressed() }
                deliveredAtFailure = delivered
                try attempts.failed(why)
            }
        }
    }

    /// Sends the GET (with `Range` after a failure) and hands back the pipe its body flows into.
    private func start() throws -> BodyPipe {
        // A HEAD first authenticates (a 401 costs no body); blobs are then read with the token.
        if client.authorization(scope) == nil {
            let probe = try client.send(.HEAD, path, scope: scope, limit: 0)
            guard probe.status == .ok || probe.status == .temporaryRedirect || probe.status == .found else {
                throw client.failure(probe, what: "blob \(path.split(separator: "/").last ?? "")")
            }
        }
        var request = try HTTPClient.Request(url: client.baseURL + path, method: .GET)
        if let auth = client.authorization(scope), !auth.isEmpty { request.headers.add(name: "Authorization", value: auth) }
        if delivered > 0 { request.headers.add(name: "Range", value: "bytes=\(delivered)-") }
        let pipe = BodyPipe(label: label, resumingAt: delivered, policy: client.policy)
        let task = client.http.execute(request: request, delegate: BlobDelegate(pipe: pipe))
        pipe.task = task
        return pipe
    }
}

/// What the HTTP side hands the reading side.
enum BodyEvent {
    case bytes(ByteBuffer)
    case end
    /// The try failed in a way worth resuming: the connection broke or stalled, or a 5xx/429.
    case failed(TransferFailure)
}

/// The queue between the HTTP client's event loop and the thread that unpacks.
final class BodyPipe: @unchecked Sendable {
    // @unchecked: `state` is a Mutex; `task` is set once, before the first body part can arrive
    // (the delegate only reaches it through `cancel`).
    private struct State {
        var queue: [ByteBuffer] = []
        var finished = false
        var error: TransferFailure?
        var fatal: StrataError?
        /// Bytes still to skip: a registry that ignored `Range` sends the blob from its start.
        var skip: Int64 = 0
        var waiting: EventLoopPromise<Void>?
    }
    private let state = Mutex(State())
    private let ready = DispatchSemaphore(value: 0)
    private static let depth = 8
    let label: String
    let resumingAt: Int64
    let policy: RetryPolicy
    var task: HTTPClient.Task<Void>?

    init(label: String, resumingAt: Int64, policy: RetryPolicy) {
        self.label = label
        self.resumingAt = resumingAt
        self.policy = policy
    }

    /// The next event, waiting for one; a stall when nothing arrives for `stall` seconds.
    func take(stall: Double) throws -> BodyEvent {
        while true {
            let (event, wake): (BodyEvent?, EventLoopPromise<Void>?) = try state.withLock { s in
                if let fatal = s.fatal { throw fatal }
                if !s.queue.isEmpty {
                    let b = s.queue.removeFirst()
                    let w = s.queue.count < BodyPipe.depth / 2 ? s.waiting : nil
                    if w != nil { s.waiting = nil }
                    return (.bytes(b), w)
                }
                if let e = s.error { return (.failed(e), nil) }
                if s.finished { return (.end, nil) }
                return (nil, nil)
            }
            wake?.succeed(())
            if let event { return event }
            // Every part and the end signal: a wait that times out saw nothing arrive.
            if ready.wait(timeout: .now() + stall) == .timedOut {
                let stalled = state.withLock { s in s.queue.isEmpty && !s.finished && s.fatal == nil }
                if stalled { return .failed(.connection("carried no bytes for \(Seconds(stall))")) }
            }
        }
    }

    /// From now on, the first `count` bytes of the body are dropped.
    func skipping(_ count: Int64) { state.withLock { $0.skip = count } }

    func push(_ buffer: ByteBuffer, on loop: any EventLoop) -> EventLoopFuture<Void> {
        var buffer = buffer
        let future: EventLoopFuture<Void> = state.withLock { s in
            // The body of an error answer is not blob bytes.
            if s.error != nil || s.fatal != nil { return loop.makeSucceededVoidFuture() }
            if s.skip > 0 {
                let n = Int(min(s.skip, Int64(buffer.readableBytes)))
                buffer.moveReaderIndex(forwardBy: n)
                s.skip -= Int64(n)
                if buffer.readableBytes == 0 { return loop.makeSucceededVoidFuture() }
            }
            s.queue.append(buffer)
            guard s.queue.count >= BodyPipe.depth else { return loop.makeSucceededVoidFuture() }
            let p = loop.makePromise(of: Void.self)
            s.waiting = p
            return p.futureResult
        }
        ready.signal()
        return future
    }

    func finish(error: TransferFailure? = nil, fatal: StrataError? = nil) {
        let w: EventLoopPromise<Void>? = state.withLock { s in
            if let fatal, s.fatal == nil { s.fatal = fatal }
            if let error, s.error == nil { s.error = error }
            s.finished = true
            defer { s.waiting = nil }
            return s.waiting
        }
        w?.succeed(())
        ready.signal()
    }

    func cancel() { task?.cancel() }
}

/// Receives the blob's body for a `BodyPipe`, with backpressure.
final class BlobDelegate: HTTPClientResponseDelegate {
    typealias Response = Void
    let pipe: BodyPipe
    init(pipe: BodyPipe) { self.pipe = pipe }

    func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        let resuming = pipe.resumingAt > 0
        if resuming && head.status == .ok {
            pipe.skipping(pipe.resumingAt)
        } else if head.status != (resuming ? .partialContent : .ok) {
            if let failure = TransferFailure(status: head.status, headers: head.headers) {
                pipe.finish(error: failure)
            } else {
                pipe.finish(fatal: StrataError(head.status == .notFound ? .notFound : .system,
                                               "\(pipe.label): the registry answered \(head.status.code) \(head.status.reasonPhrase) for the blob"))
            }
            task.cancel()
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        pipe.push(buffer, on: task.eventLoop)
    }

    func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) {
        if let failure = TransferFailure(error, policy: pipe.policy) {
            pipe.finish(error: failure)
        } else if error as? HTTPClientError != .cancelled {
            pipe.finish(fatal: StrataError(.system, "\(pipe.label): reading the blob failed: \(error)"))
        } else {
            pipe.finish(error: .connection("was cancelled"))
        }
    }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws { pipe.finish() }
}
