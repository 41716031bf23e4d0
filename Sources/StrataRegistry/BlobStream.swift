import AsyncHTTPClient
import Dispatch
import NIOCore
import NIOHTTP1
import StrataArchive
import StrataCore
import Synchronization

/// A layer blob streamed from a registry as a `ChunkSource`: the ingest pipeline pulls, the
/// HTTP client pushes, and a small queue between them applies backpressure (the connection
/// is not read faster than the layer unpacks). A connection that drops is resumed with a
/// `Range` request, up to three times with a growing pause. The bytes are not trusted here:
/// the pipeline hashes them against the digest.
final class BlobStream: ChunkSource {
    private let client: RegistryClient
    private let path: String
    private let scope: String
    private let size: Int64
    private let label: String
    private var pipe: BodyPipe?
    private var delivered: Int64 = 0
    private var retries = 0
    private var current: ByteBuffer?

    init(client: RegistryClient, repository: String, digest: Digest, size: Int64, label: String) {
        self.client = client
        path = "/v2/\(repository)/blobs/\(digest)"
        scope = "repository:\(repository):pull"
        self.size = size
        self.label = label
    }

    deinit { pipe?.cancel() }

    func nextChunk() throws -> UnsafeRawBufferPointer {
        while true {
            if pipe == nil {
                do { pipe = try start() } catch let e as StrataError where e.code == .system {
                    // The registry cannot be reached, or answers 5xx: as a drop, worth a retry.
                    try dropped(e)
                    continue
                }
            }
            switch try pipe!.take() {
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
            case .dropped(let error):
                try dropped(error)
            }
        }
    }

    /// After a drop: waits 0.5 s, 1 s, 2 s (then gives up), to resume where the stream stopped.
    private func dropped(_ error: any Error) throws {
        pipe = nil
        retries += 1
        guard retries <= 3 else {
            throw StrataError(.system, "\(label): the connection to registry \(client.registry) dropped \(retries) times; last: \(error)")
        }
        usleepSeconds(0.5 * Double(1 << (retries - 1)))
    }

    /// Sends the GET (with `Range` after a drop) and hands back the pipe its body flows into.
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
        let pipe = BodyPipe(label: label, resumingAt: delivered)
        let task = client.http.execute(request: request, delegate: BlobDelegate(pipe: pipe))
        pipe.task = task
        return pipe
    }
}

private func usleepSeconds(_ s: Double) {
    let semaphore = DispatchSemaphore(value: 0)
    _ = semaphore.wait(timeout: .now() + s)
}

/// What the HTTP side hands the reading side.
enum BodyEvent {
    case bytes(ByteBuffer)
    case end
    /// The connection broke: worth resuming.
    case dropped(any Error)
}

/// The queue between the HTTP client's event loop and the thread that unpacks.
final class BodyPipe: @unchecked Sendable {
    // @unchecked: `state` is a Mutex; `task` is set once, before the first body part can arrive
    // (the delegate only reaches it through `cancel`).
    private struct State {
        var queue: [ByteBuffer] = []
        var finished = false
        var error: (any Error)?
        var fatal: StrataError?
        var waiting: EventLoopPromise<Void>?
    }
    private let state = Mutex(State())
    private let ready = DispatchSemaphore(value: 0)
    private static let depth = 8
    let label: String
    let resumingAt: Int64
    var task: HTTPClient.Task<Void>?

    init(label: String, resumingAt: Int64) { self.label = label; self.resumingAt = resumingAt }

    /// The next event, waiting for one.
    func take() throws -> BodyEvent {
        while true {
            let (event, wake): (BodyEvent?, EventLoopPromise<Void>?) = try state.withLock { s in
                if let fatal = s.fatal { throw fatal }
                if !s.queue.isEmpty {
                    let b = s.queue.removeFirst()
                    let w = s.queue.count < BodyPipe.depth / 2 ? s.waiting : nil
                    if w != nil { s.waiting = nil }
                    return (.bytes(b), w)
                }
                if let e = s.error { return (.dropped(e), nil) }
                if s.finished { return (.end, nil) }
                return (nil, nil)
            }
            wake?.succeed(())
            if let event { return event }
            ready.wait()
        }
    }

    func push(_ buffer: ByteBuffer, on loop: any EventLoop) -> EventLoopFuture<Void> {
        let future: EventLoopFuture<Void> = state.withLock { s in
            s.queue.append(buffer)
            guard s.queue.count >= BodyPipe.depth else { return loop.makeSucceededVoidFuture() }
            let p = loop.makePromise(of: Void.self)
            s.waiting = p
            return p.futureResult
        }
        ready.signal()
        return future
    }

    func finish(error: (any Error)? = nil, fatal: StrataError? = nil) {
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
        let okay = pipe.resumingAt > 0 ? head.status == .partialContent : head.status == .ok
        if !okay {
            pipe.finish(fatal: StrataError(head.status == .notFound ? .notFound : .system,
                                           "\(pipe.label): the registry answered \(head.status.code) for the blob"))
            task.cancel()
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        pipe.push(buffer, on: task.eventLoop)
    }

    func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) { pipe.finish(error: error) }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws { pipe.finish() }
}
