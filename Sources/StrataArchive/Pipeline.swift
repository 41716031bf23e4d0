import Dispatch
import FoundationEssentials
import StrataCore
import StrataSystem

/// Coalesces small writes (tar headers, padding) into large ones; large chunks pass through.
public final class BufferedOutput {
    private let handle: FDHandle
    private var buffer: [UInt8] = []
    private let capacity: Int

    /// Buffers writes to `handle` in `capacity`-byte blocks.
    public init(_ handle: FDHandle, capacity: Int = 1 << 20) {
        self.handle = handle
        self.capacity = capacity
        buffer.reserveCapacity(capacity)
    }

    /// Appends `chunk`, writing a full buffer through.
    public func write(_ chunk: UnsafeRawBufferPointer) throws {
        if chunk.count >= capacity / 2 {
            // Order matters: what is buffered goes first.
            try flush()
            try handle.writeAll(chunk)
            return
        }
        if buffer.count + chunk.count > capacity { try flush() }
        buffer.append(contentsOf: chunk)
    }

    /// Writes what is buffered.
    public func flush() throws {
        guard !buffer.isEmpty else { return }
        try handle.writeAll(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

/// SHA-256 on a second thread: the caller hands over chunks (copied into a few reusable
/// buffers, a `SlotRing`) and goes on writing while they are hashed, so verifying a stream
/// costs about max(I/O, hashing) instead of their sum.
// @unchecked: the ring hands each buffer to one side at a time; `digest` is written by the
// hashing thread before `done` is signalled and read after it.
public final class BackgroundDigester: @unchecked Sendable {
    private let ring = SlotRing()
    private let done = DispatchSemaphore(value: 0)
    private var finished = false
    private var digest: Digest?

    /// Starts the hashing thread; `finalize()` must be called on every path (it ends the thread).
    public init() {
        // The thread keeps the digester alive until `finalize` lets it finish: call it on every
        // path (it is idempotent).
        DetachedThread.start { self.run() }
    }

    private func run() {
        var d = Digester()
        while let chunk = ring.take() { d.update(chunk) }
        digest = d.finalize()
        done.signal()
    }

    /// Hands over bytes; blocks only when all buffers are waiting to be hashed.
    public func update(_ chunk: UnsafeRawBufferPointer) { ring.put(chunk, afterWait: {}) }

    /// Waits for the hashing thread and returns the digest of everything handed over.
    public func finalize() -> Digest {
        if !finished {
            finished = true
            ring.flush(afterWait: {})
            ring.end()
            done.wait()
        }
        return digest!
    }
}
