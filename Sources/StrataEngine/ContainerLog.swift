import Dispatch
import FoundationEssentials
import StrataCore
import StrataSystem
import Synchronization

/// A container's log: one file, `ctr.log`, in podman's k8s-file form (`TIME STREAM F|P TEXT`,
/// one line each), stdout and stderr kept apart by their tag; when it passes its size limit it
/// becomes `ctr.log.1` (one rotated file is kept) and a new one starts.
final class ContainerLogWriter: Sendable {
    private struct State { var file: FDHandle; var size: Int64 }
    private let state: Mutex<State>
    private let path: String
    private let maxSize: Int64

    init(path: String, maxSize: Int64) throws {
        self.path = path
        self.maxSize = maxSize
        let f = try FDHandle.open(path, flags: [.writeOnly, .create, .append], mode: 0o600)
        state = Mutex(State(file: f, size: Int64(try f.stat().st_size)))
    }

    /// Writes one line of `stream` ("stdout" or "stderr"); `partial` when it had no newline.
    func write(_ line: ArraySlice<UInt8>, stream: String, partial: Bool) {
        let record = Array("\(Timestamp.preciseNow()) \(stream) \(partial ? "P" : "F") ".utf8) + line + [0x0a]
        state.withLock { s in
            if s.size + Int64(record.count) > maxSize, s.size > 0 {
                try? renamePath(path, to: path + ".1")
                if let f = try? FDHandle.open(path, flags: [.writeOnly, .create, .append, .truncate], mode: 0o600) {
                    s.file = f
                    s.size = 0
                }
            }
            try? s.file.writeAll(record)
            s.size += Int64(record.count)
        }
    }

    /// Copies `pipe` into the log line by line until it ends (on a thread of its own); the
    /// returned semaphore is signalled then.
    func drain(_ pipe: FDHandle, stream: String) -> SemaphoreBox {
        let done = SemaphoreBox()
        DetachedThread.start {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = (try? buffer.withUnsafeMutableBytes { try pipe.read(into: $0) }) ?? 0
                if n <= 0 { break }
                pending += buffer[0..<n]
                var start = 0
                while let nl = pending[start...].firstIndex(of: 0x0a) {
                    self.write(pending[start..<nl], stream: stream, partial: false)
                    start = nl + 1
                }
                pending.removeFirst(start)
                // A line longer than 16 KiB is written in parts, as podman does.
                while pending.count >= 16384 {
                    self.write(pending[0..<16384], stream: stream, partial: true)
                    pending.removeFirst(16384)
                }
            }
            if !pending.isEmpty { self.write(pending[...], stream: stream, partial: false) }
            done.signal()
        }
        return done
    }
}

/// Signalled once, waited for with a limit.
final class SemaphoreBox: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func signal() { semaphore.signal() }
    /// Waits until signalled or `seconds` pass.
    func wait(seconds: Double) { _ = semaphore.wait(timeout: .now() + seconds) }
}

/// A line read back from a container's log.
public struct LogLine: Sendable {
    public var time: String
    public var stream: String
    public var partial: Bool
    public var text: [UInt8]

    /// Parses `TIME STREAM F|P TEXT`; nil for a line that is not one.
    init?(_ raw: ArraySlice<UInt8>) {
        let parts = raw.split(separator: 0x20, maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count >= 3 else { return nil }
        time = String(decoding: parts[0], as: UTF8.self)
        stream = String(decoding: parts[1], as: UTF8.self)
        partial = parts[2].elementsEqual([UInt8(ascii: "P")])
        text = parts.count == 4 ? Array(parts[3]) : []
    }
}

/// Sleeps this thread.
func sleepSeconds(_ s: Double) { _ = DispatchSemaphore(value: 0).wait(timeout: .now() + s) }

/// What `logs` shows.
public struct LogOptions: Sendable {
    /// Only the last lines; nil for all.
    public var tail: Int?
    /// Only lines from then on.
    public var since: Date?
    /// Keep reading until the container ends.
    public var follow = false
    /// Everything, once.
    public init() {}

    /// `--since`: an RFC 3339 time, or a duration before now (`90s`, `10m`, `1h30m`).
    public static func parseSince(_ text: String) throws -> Date {
        if let d = Timestamp.date(text) { return d }
        var seconds = 0.0, number = ""
        for c in text {
            if c.isNumber || c == "." { number.append(c); continue }
            guard let v = Double(number), let unit = ["s": 1.0, "m": 60, "h": 3600][String(c)] else {
                throw StrataError(.invalidArgument, "invalid --since \"\(text)\": an RFC 3339 time or a duration like 10m, 1h30m, 45s")
            }
            seconds += v * unit
            number = ""
        }
        guard number.isEmpty, seconds > 0 else {
            throw StrataError(.invalidArgument, "invalid --since \"\(text)\": an RFC 3339 time or a duration like 10m, 1h30m, 45s")
        }
        return Date().addingTimeInterval(-seconds)
    }
}

extension Engine {
    /// Reads a container's log (the rotated file, then the current one) and hands each line to
    /// `emit`; with `follow`, keeps reading what is written until the container has ended.
    public func logs(_ id: String, options: LogOptions, emit: (LogLine) -> Void) throws {
        let path = store.logPath(id)
        func keep(_ l: LogLine) -> Bool { options.since.map { s in (Timestamp.date(l.time) ?? .distantPast) >= s } ?? true }
        // Streamed, never the whole file in memory: with --tail only the last lines are held.
        var last: [LogLine] = []
        func take(_ l: LogLine) {
            guard keep(l) else { return }
            guard let tail = options.tail else { emit(l); return }
            last.append(l)
            if last.count > 2 * tail + 64 { last.removeFirst(last.count - tail) }
        }
        _ = try Engine.readLogLines(path + ".1", from: 0, take)
        var offset = try Engine.readLogLines(path, from: 0, take)
        if let tail = options.tail { last.suffix(tail).forEach(emit) }
        guard options.follow else { return }
        while true {
            let running = isRunning(try store.container(id))
            if let size = try? FDHandle.open(path, flags: .readOnly).stat().st_size, Int64(size) < offset { offset = 0 }  // rotated
            let next = try Engine.readLogLines(path, from: offset) { if keep($0) { emit($0) } }
            if next != offset { offset = next; continue }
            if !running { return }
            sleepSeconds(0.1)
        }
    }

    /// Hands each whole line of the log file `path` from `offset` on to `line`, reading 64 KiB
    /// at a time; returns the offset after the last whole line (a line being written stays for
    /// the next read). A line over 1 MiB (the writer splits at 16 KiB) is not a log line: skipped.
    static func readLogLines(_ path: String, from offset: Int64, _ line: (LogLine) -> Void) throws -> Int64 {
        guard let f = try? FDHandle.open(path, flags: .readOnly) else { return offset }
        var at = offset
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try f.pread(into: $0, at: at + Int64(pending.count)) }
            if n == 0 { return at }
            pending += chunk[0..<n]
            var start = 0
            while let nl = pending[start...].firstIndex(of: 0x0a) {
                if let l = LogLine(pending[start..<nl]) { line(l) }
                start = nl + 1
            }
            if start == 0 && pending.count > 1 << 20 { start = pending.count }
            at += Int64(start)
            pending.removeFirst(start)
        }
    }
}
