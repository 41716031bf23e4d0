import Dispatch
import FoundationEssentials
import StrataCore
import StrataSystem
import Synchronization

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
        /// Made by the writer's thread, large enough for deflate's worst case: the worker only
        /// fills it.
        var output: [UInt8]
        var error: (any Error)?
        let done = DispatchSemaphore(value: 0)
        init(_ input: [UInt8]) {
            self.input = input
            output = []
            output.reserveCapacity(input.count + input.count / 1000 + 1024)
        }
    }

    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private let blockSize: Int
    private var block: [UInt8] = []
    private var inFlight: [Job] = []
    private let workers: Int
    /// The jobs not yet taken by a worker (nil: a worker's signal to end), and their count.
    private final class JobQueue: Sendable {
        let jobs = Mutex<[Job?]>([])
        let queued = DispatchSemaphore(value: 0)
        func put(_ job: Job?) { jobs.withLock { $0.append(job) }; queued.signal() }
        func take() -> Job? { queued.wait(); return jobs.withLock { $0.removeFirst() } }
    }
    private let queue = JobQueue()
    private var wroteAny = false
    private var closed = false

    /// A writer into `sink` with `workers` compressing threads (default: one per core), which
    /// live as long as the writer. (Their malloc arenas cost a push about 15 MB of peak memory:
    /// 81 MB against 67 MB with one arena for the process; not yet solved.)
    public init(workers: Int = ProcessInfo.processInfo.activeProcessorCount, blockSize: Int = ParallelGzipWriter.defaultBlockSize,
                sink: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.sink = sink
        self.blockSize = max(1, blockSize)
        self.workers = max(1, workers)
        block.reserveCapacity(self.blockSize)
        for _ in 0..<self.workers {
            let queue = self.queue
            DetachedThread.start {
                while let job = queue.take() { ParallelGzipWriter.compress(job) }
            }
        }
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
        // At most one block per worker and one more are held: the oldest is written before
        // another starts (each held block is memory: a push's peak grows with this bound).
        while inFlight.count >= workers + 1 { try emitOldest() }
        let job = Job(block)
        wroteAny = true
        block = []
        block.reserveCapacity(blockSize)
        inFlight.append(job)
        queue.put(job)
    }

    private static func compress(_ job: Job) {
        defer { job.done.signal() }
        do {
            let gz = try CompressingWriter(.gzip) { job.output.append(contentsOf: $0) }
            try job.input.withUnsafeBytes { try gz.write($0) }
            try gz.close()
        } catch {
            job.error = error
        }
    }

    private func emitOldest() throws {
        let job = inFlight.removeFirst()
        job.done.wait()
        if let e = job.error { throw e }
        try job.output.withUnsafeBytes { try sink($0) }
    }

    deinit {
        // Every worker ends after the jobs queued before its signal; none outlives the writer.
        for _ in 0..<workers { queue.put(nil) }
        for job in inFlight { job.done.wait() }
    }
}
