import FoundationEssentials
import StrataCore
import StrataSystem

/// One generation of a container's log, open for reading. It holds a shared lock on the file:
/// while it does, the writer keeps the file that comes after it (see `ContainerLogWriter.rotate`).
struct LogGeneration {
    let handle: FDHandle
    let identity: FileIdentity

    /// Opens and locks `path`; nil when there is no such file.
    static func open(_ path: String) -> LogGeneration? {
        guard let f = try? FDHandle.open(path, flags: .readOnly), (try? f.lockRange(0, exclusive: false, wait: true)) == true,
              let id = try? f.identity() else { return nil }
        return LogGeneration(handle: f, identity: id)
    }

    /// Whether `path` still names this file.
    func isNamed(_ path: String) -> Bool { fileIdentity(path) == identity }

    /// The rotated and the current file as one pair: `ctr.log.1` is locked before `ctr.log` is
    /// opened, so no rotation falls between the two (both are checked against their names after).
    static func openPair(_ path: String) -> (old: LogGeneration?, current: LogGeneration?) {
        var pair: (LogGeneration?, LogGeneration?) = (nil, nil)
        for _ in 0..<100 {
            pair = (open(path + ".1"), open(path))
            let oldStill = pair.0.map { $0.isNamed(path + ".1") } ?? (fileIdentity(path + ".1") == nil)
            let currentStill = pair.1.map { $0.isNamed(path) } ?? (fileIdentity(path) == nil)
            if oldStill && currentStill { break }
        }
        return pair
    }

    /// Hands each whole record from `offset` on to `line`, 64 KiB at a time; returns the offset
    /// after the last whole record (one being written stays for the next read). A record over
    /// 1 MiB (the writer splits lines at 16 KiB) is not a log line: skipped.
    func read(from offset: Int64, _ line: (LogLine) -> Void) throws -> Int64 {
        var at = offset
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try handle.pread(into: $0, at: at + Int64(pending.count)) }
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

    /// Where the last `lines` lines begin, found by reading blocks backwards from the end (the
    /// file is never read whole); with `found` < `lines` the file holds fewer, and `offset` is 0.
    /// A line ends at a record tagged F; parts (P) before it belong to it, and parts at the very
    /// end are a line still being written.
    func tailStart(lines: Int) throws -> (offset: Int64, found: Int) {
        let size = Int64(try handle.stat().size)
        var block = [UInt8](repeating: 0, count: 1 << 16)
        var found = 0
        var lastNewline: Int64?
        var next: Int64 = 0
        var blockEnd = size
        while blockEnd > 0 {
            let blockStart = max(0, blockEnd - Int64(block.count))
            let n = try block.withUnsafeMutableBytes {
                try handle.pread(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<Int(blockEnd - blockStart)]), at: blockStart)
            }
            var i = n
            while let nl = block[0..<i].lastIndex(of: 0x0a) {
                i = nl
                let at = blockStart + Int64(nl)
                guard lastNewline != nil else { lastNewline = at; next = at + 1; continue }
                // The record that starts after this newline ends at `next`.
                if try endsLine(at: at + 1, last: next == (lastNewline ?? 0) + 1) {
                    if found == lines { return (next, found) }
                    found += 1
                }
                next = at + 1
            }
            blockEnd = blockStart
        }
        if lastNewline != nil, try endsLine(at: 0, last: next == (lastNewline ?? 0) + 1) {
            if found == lines { return (next, found) }
            found += 1
        }
        return (0, found)
    }

    /// Whether the record at `offset` ends a line: tagged F, or the last record in the file.
    private func endsLine(at offset: Int64, last: Bool) throws -> Bool {
        if last { return true }
        var head = [UInt8](repeating: 0, count: 96)
        let n = try head.withUnsafeMutableBytes { try handle.pread(into: $0, at: offset) }
        return LogLine(head[0..<n])?.partial != true
    }
}

extension Engine {
    /// Reads a container's log (the rotated file, then the current one) and hands each line to
    /// `emit`; with `follow`, keeps reading what is written until the container has ended.
    /// `--tail` finds its start by reading backwards from the end.
    public func logs(_ id: String, options: LogOptions, emit: (LogLine) -> Void) throws {
        let path = store.logPath(id)
        func keep(_ l: LogLine) -> Bool { options.since.map { s in (Timestamp.date(l.time) ?? .distantPast) >= s } ?? true }
        func take(_ l: LogLine) { if keep(l) { emit(l) } }
        var (old, current) = LogGeneration.openPair(path)
        var offset: Int64 = 0
        if let tail = options.tail {
            let inCurrent = try current?.tailStart(lines: tail) ?? (offset: 0, found: 0)
            if inCurrent.found < tail, let old {
                _ = try old.read(from: try old.tailStart(lines: tail - inCurrent.found).offset, take)
            }
            offset = inCurrent.offset
        } else if let old {
            _ = try old.read(from: 0, take)
        }
        old = nil
        if let c = current { offset = try c.read(from: offset, take) }
        guard options.follow else { return }
        while true {
            let ended = hasEnded(id)
            guard let c = current else {
                current = LogGeneration.open(path)
                if current == nil { if ended { return }; sleepSeconds(0.1) }
                continue
            }
            let before = offset
            offset = try c.read(from: offset, take)
            // Rotated: `ctr.log` names a new file. This one is complete: read its end, then go
            // on with the file after it, which the writer keeps while this one is locked (for
            // its grace period; past it, `ctr.log.1` is the next one when it is not this one).
            if let now = fileIdentity(path), now != c.identity {
                offset = try c.read(from: offset, take)
                if let between = LogGeneration.open(path + ".1"), between.identity != c.identity { _ = try between.read(from: 0, take) }
                current = LogGeneration.open(path)
                offset = 0
                continue
            }
            if offset != before { continue }
            if ended { return }
            sleepSeconds(0.1)
        }
    }

    /// Whether a container has ended and its monitor is done with it: the end recorded (its
    /// output is all in the log by then) and the container unmounted or removed, which is when
    /// the run state stops naming a live monitor; or there is no monitor left to do so.
    func hasEnded(_ id: String) -> Bool {
        let c = try? store.container(id)
        return hasEnded(c, state: c.flatMap { store.runState($0.id) })
    }

    /// The same for a row and a state already read (nil row: removed).
    func hasEnded(_ c: ContainerRecord?, state: RunState?) -> Bool {
        guard let c else { return true }
        if isRunning(c) { return false }
        return !(state?.monitorPid.map { MonitorProcess.signal($0, 0) } == true)
    }
}
