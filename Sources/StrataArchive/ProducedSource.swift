import Dispatch
import StrataCore
import StrataSystem
import Synchronization

/// A `ChunkSource` whose bytes a producer writes on a thread of its own, through a few reusable
/// buffers (a `SlotRing`): the consumer (hashing, unpacking) works while the producer (reading
/// files, writing a tar) goes on, so the two cost about the longer of them rather than their sum.
// @unchecked: the ring hands each buffer to one side at a time; the producer's failure and the
// cancel flag are only touched under `state`.
public final class ProducedSource: ChunkSource, @unchecked Sendable {
    private let ring = SlotRing()
    private let done = DispatchSemaphore(value: 0)
    private let state = Mutex<(failure: ErrorBox?, cancelled: Bool)>((nil, false))
    private var ended = false

    /// Starts `produce` on a new thread; it writes through the function it is handed. What it
    /// throws is thrown by `nextChunk` once the bytes before it were consumed.
    public init(_ produce: @escaping (_ write: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
        DetachedThread.start { self.run(produce) }
    }

    /// What the producer threw, if it failed.
    public var producerError: (any Error)? { state.withLock { $0.failure?.error } }

    private func run(_ produce: (_ write: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
        do {
            try produce { try self.ring.put($0, afterWait: self.stopIfCancelled) }
            try ring.flush(afterWait: stopIfCancelled)
        } catch {
            state.withLock { if $0.failure == nil { $0.failure = ErrorBox(error: error) } }
        }
        ring.end()
        done.signal()
    }

    private func stopIfCancelled() throws {
        if state.withLock({ $0.cancelled }) {
            throw StrataError(.internalError, "the reader of the stream stopped before its end")
        }
    }

    public func nextChunk() throws -> UnsafeRawBufferPointer {
        if !ended, let chunk = ring.take() { return chunk }
        if !ended {
            ended = true
            done.wait()
            if let e = producerError { throw e }
        }
        return UnsafeRawBufferPointer(start: nil, count: 0)
    }

    /// For a reader that gives up before the end: stops the producer (its next hand-over
    /// throws) and waits for its thread to finish. Idempotent.
    public func cancel() {
        guard !ended else { return }
        ended = true
        state.withLock { $0.cancelled = true }
        ring.abandon()
        done.wait()
    }
}

/// An error held across threads.
struct ErrorBox: @unchecked Sendable {
    let error: any Error
}
