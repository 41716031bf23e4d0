import Dispatch
import FoundationEssentials
import StrataCore
import StrataSystem

/// gzip on every core, for `push`: the stream is cut into blocks of `blockSize` bytes, each
/// compressed by libarchive as a gzip member of its own on a thread of its own (at most
/// `workers` at once), and the members go to the sink in order. A stream of members is gzip
/// (RFC 1952, 2.2): Go's reader (Docker, containerd, skopeo, podman), libarchive's, zlib's
/// and Python's read it whole. The bytes depend on the input and the block size only, never on
/// how many cores did the work; an input shorter than a block gives what `CompressingWriter`
/// gives.
public final class ParallelGzipWriter {
    public static let defaultBlockSize = 1 << 20

    /// One block: its input, then its member; `done` is signalled when the member is there.
    private final class Job: @unchecked Sendable {
        // @unchecked: `input` is read and `output`/`error` written by the worker alone, and
        // read by the writer only after `done` is signalled.
        let input: [UInt8]
        var output: [UInt8] = []
        var error: (any Error)?
        let done = DispatchSemaphore(value: 0)
        init(_ input: [UInt8]) { self.input = input }
    }

    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private let blockSize: Int
    private let slots: DispatchSemaphore
    private var block: [UInt8] = []
    private var inFlight: [Job] = []
    private let workers: Int
    private var wroteAny = false
    private var closed = false

    /// A writer into `sink` with `workers` compressing threads (default: one per core).
    public init(workers: Int = ProcessInfo.processInfo.activeProcessorCount, blockSize: Int = ParallelGzipWriter.defaultBlockSize,
                sink: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.sink = sink
        self.blockSize = max(1, blockSize)
        self.workers = max(1, workers)
        slots = DispatchSemaphore(value: self.workers)
        block.reserveCapacity(self.blockSize)
    }

    /// Compresses `chunk` (blocks are handed to the workers as they fill).
    public func write(_ chunk: UnsafeRawBufferPointer) throws {
        var rest = chunk[...]
        while !rest.isEmpty {
            let take = min(rest.count, blockSize - block.count)
            block.append(contentsOf: rest.prefix(take))
            rest = rest.dropFirst(take)
            if block.count == blockSize { try submit() }
        }
    }

    /// Compresses what is left and writes every member; the stream is then complete.
    public func close() throws {
        guard !closed else { return }
        closed = true
        // An empty stream is one empty member, as from a single compressor.
        if !block.isEmpty || !wroteAny { try submit() }
        while !inFlight.isEmpty { try emitOldest() }
    }

    private func submit() throws {
        // At most two blocks per worker are held: the oldest is written before another starts.
        while inFlight.count >= 2 * workers { try emitOldest() }
        let job = Job(block)
        wroteAny = true
        block = []
        block.reserveCapacity(blockSize)
        inFlight.append(job)
        slots.wait()
        let slots = self.slots
        DetachedThread.start {
            defer { slots.signal(); job.done.signal() }
            do {
                var out: [UInt8] = []
                out.reserveCapacity(job.input.count / 3 + 64)
                let gz = try CompressingWriter(.gzip) { out.append(contentsOf: $0) }
                try job.input.withUnsafeBytes { try gz.write($0) }
                try gz.close()
                job.output = out
            } catch {
                job.error = error
            }
        }
    }

    private func emitOldest() throws {
        let job = inFlight.removeFirst()
        job.done.wait()
        if let e = job.error { throw e }
        try job.output.withUnsafeBytes { try sink($0) }
    }

    deinit {
        // Workers that still run hold their own job; wait so none outlives the sink.
        for job in inFlight { job.done.wait() }
    }
}
