import Dispatch

/// A few reusable 1 MiB buffers handed in order from one producer thread to one consumer
/// thread: the producer copies bytes in and hands each full buffer over, waiting only when all
/// the others still wait to be consumed; the consumer takes them and gives them back. What
/// `BackgroundDigester` and `ProducedSource` share.
// @unchecked: a buffer belongs to one side at a time, handed over through the semaphores; the
// producer's fields are only touched by the producer, the consumer's by the consumer.
final class SlotRing: @unchecked Sendable {
    private let slots = 4
    private let slotSize = 1 << 20
    private let buffers: [UnsafeMutableRawBufferPointer]
    private var lengths: [Int]
    // Created at 0 and signalled up: libdispatch traps when a semaphore is released below the
    // value it was created with.
    private let free = DispatchSemaphore(value: 0)
    private let ready = DispatchSemaphore(value: 0)
    // Producer side.
    private var writeIndex = 0
    private var fill = 0
    // Consumer side.
    private var readIndex = 0
    private var holding = false

    init() {
        buffers = (0..<slots).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64) }
        lengths = Array(repeating: 0, count: slots)
        // The producer fills the first buffer; the others are free.
        for _ in 1..<slots { free.signal() }
    }

    deinit { buffers.forEach { $0.deallocate() } }

    // MARK: producer

    /// Copies `chunk` in; `afterWait` runs each time a full buffer was handed over and a free
    /// one obtained (it may throw to stop the producer).
    func put(_ chunk: UnsafeRawBufferPointer, afterWait: () throws -> Void) rethrows {
        var offset = 0
        while offset < chunk.count {
            let n = min(slotSize - fill, chunk.count - offset)
            UnsafeMutableRawBufferPointer(rebasing: buffers[writeIndex][fill..<(fill + n)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: chunk[offset..<(offset + n)]))
            fill += n
            offset += n
            if fill == slotSize { try handOver(afterWait: afterWait) }
        }
    }

    /// Hands over a partly filled buffer (nothing when it is empty).
    func flush(afterWait: () throws -> Void) rethrows {
        if fill > 0 { try handOver(afterWait: afterWait) }
    }

    private func handOver(afterWait: () throws -> Void) rethrows {
        lengths[writeIndex] = fill
        ready.signal()
        writeIndex = (writeIndex + 1) % slots
        fill = 0
        free.wait()
        try afterWait()
    }

    /// Marks the end: the consumer's next `take` returns nil. The producer's last call.
    func end() {
        lengths[writeIndex] = -1
        ready.signal()
    }

    // MARK: consumer

    /// The next buffer, waiting for it; nil at the end. The buffer is the consumer's until its
    /// next `take` (or `giveBack`).
    func take() -> UnsafeRawBufferPointer? {
        giveBack()
        ready.wait()
        let n = lengths[readIndex]
        if n < 0 { return nil }
        holding = true
        return UnsafeRawBufferPointer(rebasing: buffers[readIndex][0..<n])
    }

    /// Returns the buffer last taken to the producer.
    func giveBack() {
        guard holding else { return }
        holding = false
        readIndex = (readIndex + 1) % slots
        free.signal()
    }

    /// For a consumer that stops early: frees the producer from any wait from now on and skips
    /// what it still hands over, up to the end mark (the producer must be made to stop).
    func abandon() {
        giveBack()
        for _ in 0..<slots { free.signal() }
        while true {
            ready.wait()
            if lengths[readIndex] < 0 { return }
            readIndex = (readIndex + 1) % slots
            free.signal()
        }
    }
}
