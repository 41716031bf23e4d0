import Dispatch
import StrataCore
import StrataSystem
import Synchronization

/// A `ChunkSource` whose bytes a producer writes on a thread of its own, through a few reusable
/// buffers: the consumer (hashing, unpacking) works while the producer (reading files, writing a
/// tar) goes on, so the two cost about the longer of them rather than their sum.
// @unchecked: each buffer changes hands through the semaphores, one owner at a time; the
// producer's failure and the cancel flag are only touched under `state`.
public final class ProducedSource: ChunkSource, @unchecked Sendable {
    private let slots = 4
    private let slotSize = 1 << 20
    private let buffers: [UnsafeMutableRawBufferPointer]
    private var lengths: [Int]
    // Created at 0 and signalled up: libdispatch traps when a semaphore is released below the
    // value it was created with.
    private let free = DispatchSemaphore(value: 0)
    private let ready = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let state = Mutex<(failure: StrataErrorBox?, cancelled: Bool)>((nil, false))
    // Consumer side.
    private var readIndex = 0
    private var holding = false
    private var ended = false
    // Producer side.
    private var writeIndex = 0
    private var fill = 0

    /// Starts `produce` on a new thread; it writes through the function it is handed. What it
    /// throws is thrown by `nextChunk` once the bytes before it were consumed.
    public init(_ produce: @escaping (_ write: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
        buffers = (0..<slots).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64) }
        lengths = Array(repeating: 0, count: slots)
        // The producer fills slot 0; the others are free.
        for _ in 1..<slots { free.signal() }
        DetachedThread.start { self.run(produce) }
    }

    deinit { buffers.forEach { $0.deallocate() } }

    /// What the producer threw, if it failed.
    public var producerError: (any Error)? { state.withLock { $0.failure?.error } }

    private func run(_ produce: (_ write: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
        do {
            try produce { try self.write($0) }
            if fill > 0 { try submit() }
        } catch {
            state.withLock { if $0.failure == nil { $0.failure = StrataErrorBox(error: error) } }
        }
        lengths[writeIndex] = -1
        ready.signal()
        done.signal()
    }

    private func write(_ chunk: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < chunk.count {
            let n = min(slotSize - fill, chunk.count - offset)
            UnsafeMutableRawBufferPointer(rebasing: buffers[writeIndex][fill..<(fill + n)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: chunk[offset..<(offset + n)]))
            fill += n
            offset += n
            if fill == slotSize { try submit() }
        }
    }

    /// Hands the filled slot over and waits for a free one.
    private func submit() throws {
        lengths[writeIndex] = fill
        ready.signal()
        writeIndex = (writeIndex + 1) % slots
        fill = 0
        free.wait()
        if state.withLock({ $0.cancelled }) {
            throw StrataError(.internalError, "the reader of the stream stopped before its end")
        }
    }

    public func nextChunk() throws -> UnsafeRawBufferPointer {
        if ended { return UnsafeRawBufferPointer(start: nil, count: 0) }
        release()
        ready.wait()
        let n = lengths[readIndex]
        if n < 0 {
            ended = true
            done.wait()
            if let e = producerError { throw e }
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        holding = true
        return UnsafeRawBufferPointer(rebasing: buffers[readIndex][0..<n])
    }

    /// Gives the slot last handed out back to the producer.
    private func release() {
        guard holding else { return }
        holding = false
        readIndex = (readIndex + 1) % slots
        free.signal()
    }

    /// For a reader that gives up before the end: stops the producer (its next hand-over
    /// throws) and waits for its thread to finish. Idempotent.
    public func cancel() {
        guard !ended else { return }
        state.withLock { $0.cancelled = true }
        release()
        for _ in 0..<slots { free.signal() }
        while true {
            ready.wait()
            if lengths[readIndex] < 0 { break }
            readIndex = (readIndex + 1) % slots
        }
        ended = true
        done.wait()
    }
}

/// An error held across threads.
struct StrataErrorBox: @unchecked Sendable {
    let error: any Error
}
