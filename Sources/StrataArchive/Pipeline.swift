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
/// buffers) and goes on writing while they are hashed, so verifying a stream costs about
/// max(I/O, hashing) instead of their sum.
// @unchecked: the buffers are handed between the producer and the hashing thread through the
// semaphores below, one owner at a time; no state is touched without holding its slot.
public final class BackgroundDigester: @unchecked Sendable {
    private let slots = 4
    private let slotSize = 1 << 20
    private var buffers: [UnsafeMutableRawBufferPointer]
    private var lengths: [Int]
    // Created at 0 and signalled up: libdispatch traps when a semaphore is released below
    // the value it was created with.
    private let free = DispatchSemaphore(value: 0)
    private let ready = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private var writeIndex = 0
    private var fill = 0
    private var finished = false
    private var digest: Digest?

    /// Starts the hashing thread; `finalize()` must be called on every path (it ends the thread).
    public init() {
        buffers = (0..<4).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64) }
        lengths = Array(repeating: 0, count: 4)
        // One buffer is being filled; the others are free.
        for _ in 1..<slots { free.signal() }
        // The thread keeps the digester alive until `finalize` lets it finish: call it on every
        // path (it is idempotent).
        DetachedThread.start { self.run() }
    }

    deinit { buffers.forEach { $0.deallocate() } }

    private func run() {
        var d = Digester()
        var readIndex = 0
        while true {
            ready.wait()
            let n = lengths[readIndex]
            if n < 0 { break }
            d.update(UnsafeRawBufferPointer(rebasing: buffers[readIndex][0..<n]))
            readIndex = (readIndex + 1) % slots
            free.signal()
        }
        digest = d.finalize()
        done.signal()
    }

    /// Hands over bytes; blocks only when all buffers are waiting to be hashed.
    public func update(_ chunk: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < chunk.count {
            let n = min(slotSize - fill, chunk.count - offset)
            UnsafeMutableRawBufferPointer(rebasing: buffers[writeIndex][fill..<(fill + n)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: chunk[offset..<(offset + n)]))
            fill += n
            offset += n
            if fill == slotSize { submit() }
        }
    }

    private func submit() {
        lengths[writeIndex] = fill
        ready.signal()
        writeIndex = (writeIndex + 1) % slots
        fill = 0
        free.wait()
    }

    /// Waits for the hashing thread and returns the digest of everything handed over.
    public func finalize() -> Digest {
        if !finished {
            finished = true
            if fill > 0 { submit() }
            lengths[writeIndex] = -1
            ready.signal()
            done.wait()
        }
        return digest!
    }
}
