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
        state = Mutex(State(file: f, size: Int64(try f.stat().size)))
    }

    /// Writes one line of `stream` ("stdout" or "stderr"); `partial` when it had no newline.
    func write(_ line: ArraySlice<UInt8>, stream: String, partial: Bool) {
        let record = Array("\(Timestamp.preciseNow()) \(stream) \(partial ? "P" : "F") ".utf8) + line + [0x0a]
        state.withLock { s in
            if s.size + Int64(record.count) > maxSize, s.size > 0 { rotate(&s) }
            try? s.file.writeAll(record)
            s.size += Int64(record.count)
        }
    }

    /// How long a rotation waits for a follower still reading `ctr.log.1`.
    static let followerGrace = 5.0

    /// `ctr.log` becomes `ctr.log.1` and a new one starts. A follower still reading
    /// `ctr.log.1` (it holds a shared lock on it) has not opened `ctr.log` yet, which this
    /// rotation makes `ctr.log.1` and the next one drops: the rotation first waits for the
    /// follower to move on, up to `followerGrace` seconds. The container's output waits in its
    /// pipe meanwhile; nothing is dropped.
    private func rotate(_ s: inout State) {
        if let old = try? FDHandle.open(path + ".1", flags: .writeOnly) {
            let end = Date().addingTimeInterval(ContainerLogWriter.followerGrace)
            while (try? old.lockRange(0, exclusive: true, wait: false)) == false && Date() < end { sleepSeconds(0.005) }
        }
        try? renamePath(path, to: path + ".1")
        if let f = try? FDHandle.open(path, flags: [.writeOnly, .create, .append, .truncate], mode: 0o600) {
            s.file = f
            s.size = 0
        }
    }

    /// Copies `pipe` into the log line by line until it ends (on a thread of its own); the
    /// returned semaphore is signalled then. A line still without its newline after 0.1 s
    /// (a prompt, a progress bar) is written as a part at once, so that it shows while the
    /// container runs.
    func drain(_ pipe: FDHandle, stream: String) -> SemaphoreBox {
        let done = SemaphoreBox()
        DetachedThread.start {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                if !pending.isEmpty && !pipe.waitReadable(seconds: 0.1) {
                    self.write(pending[...], stream: stream, partial: true)
                    pending.removeAll()
                }
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

