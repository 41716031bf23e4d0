import FoundationEssentials
import Synchronization
import StrataCore
import StrataStore
import StrataSystem

/// Load and pull progress on stderr. On a terminal, one live block: a line per layer in the
/// order they are taken (reading, with percent and rate; then what happened to it), finished
/// lines at its top left behind for good, and a last line with the total: bytes, rate, ETA.
/// Not on a terminal, one result line per layer ("unpacked", "exists"); with `--quiet`, nothing.
final class LoadProgress: Sendable {
    private struct Line {
        var text: String
        var done: Bool
    }
    private struct State {
        var lines: [Line] = []
        var position: [ChainID: Int] = [:]
        /// Lines above this one are finished and written for good.
        var live = 0
        /// Lines of the block drawn last time (the cursor moves up over them to redraw).
        var drawn = 0
        var totalBytes: Int64 = 0
        var layers = 0
        var read: [ChainID: Int64] = [:]
        var start = Date()
        var lastDraw = Date.distantPast
    }
    private let state = Mutex(State())
    private let tty: Bool
    private let quiet: Bool

    /// Progress for one load or pull; `quiet` prints nothing.
    init(quiet: Bool) {
        self.quiet = quiet
        tty = isTerminal(2)
    }

    /// The handler to give the engine.
    var handler: @Sendable (LayerEvent) -> Void {
        if quiet { return { _ in } }
        return { event in self.state.withLock { self.handle(event, &$0) } }
    }

    /// Draws the block a last time, its total line saying how it went.
    func finish() {
        guard !quiet, tty else { return }
        state.withLock { s in
            guard !s.lines.isEmpty else { return }
            draw(&s, force: true, final: true)
        }
    }

    private func handle(_ event: LayerEvent, _ s: inout State) {
        switch event {
        case .planned(let layers, let bytes):
            s.layers = layers
            s.totalBytes = bytes
            s.start = Date()
        case .exists(let i, let n, let c):
            set(c, "layer \(i + 1)/\(n) \(c.digest.short): exists", done: true, &s)
        case .started(let i, let n, let c, _):
            s.read[c] = 0
            set(c, "layer \(i + 1)/\(n) \(c.digest.short): reading", done: false, &s)
        case .reading(let c, let bytes, let total):
            s.read[c] = bytes
            if let p = s.position[c], let head = s.lines[p].text.split(separator: ":").first {
                let pct = total > 0 ? Int(Double(bytes) * 100 / Double(total)) : 0
                s.lines[p].text = "\(head): reading \(pct)% \(Format.bytes(bytes))/\(Format.bytes(total))"
            }
        case .unpacked(let i, let n, let c, let bytes, let seconds):
            let rate = seconds > 0 ? " (\(Format.bytes(Int64(Double(bytes) / seconds)))/s)" : ""
            set(c, "layer \(i + 1)/\(n) \(c.digest.short): unpacked \(Format.bytes(bytes)) in \(String(format: "%.2f", seconds))s\(rate)",
                done: true, &s)
        }
        if tty { draw(&s, force: false, final: false) }
    }

    private func set(_ c: ChainID, _ text: String, done: Bool, _ s: inout State) {
        if let p = s.position[c] {
            s.lines[p] = Line(text: text, done: done)
        } else {
            s.position[c] = s.lines.count
            s.lines.append(Line(text: text, done: done))
        }
        if done && !tty { printErr(text) }
    }

    /// Redraws the live block (at most ten times a second unless forced): finished lines at
    /// its top are written once more and left behind; the rest and the total are redrawn.
    private func draw(_ s: inout State, force: Bool, final: Bool) {
        let now = Date()
        let finishedOne = s.live < s.lines.count && s.lines[s.live].done
        guard force || finishedOne || now.timeIntervalSince(s.lastDraw) >= 0.1 else { return }
        s.lastDraw = now
        var out = s.drawn > 0 ? "\u{1b}[\(s.drawn)A" : ""
        while s.live < s.lines.count && s.lines[s.live].done {
            out += "\r\u{1b}[K" + s.lines[s.live].text + "\n"
            s.live += 1
        }
        for l in s.lines[s.live...] { out += "\r\u{1b}[K" + l.text + "\n" }
        out += "\r\u{1b}[K" + totalLine(s, now: now, final: final) + "\n"
        s.drawn = s.lines.count - s.live + 1
        writeStandardError(out)
    }

    private func totalLine(_ s: State, now: Date, final: Bool) -> String {
        let read = s.read.values.reduce(0, +)
        let secs = now.timeIntervalSince(s.start)
        let rate = secs > 0.05 ? Double(read) / secs : 0
        let done = s.lines.filter(\.done).count
        var line = "total: \(done)/\(max(s.layers, s.lines.count)) layers, \(Format.bytes(read))/\(Format.bytes(s.totalBytes))"
        let speed = rate > 0 ? "\(Format.bytes(Int64(rate)))/s" : ""
        if final {
            line += " in \(String(format: "%.1f", secs))s" + (speed.isEmpty ? "" : " (\(speed))")
        } else if !speed.isEmpty {
            line += ", " + speed
            if s.totalBytes > read { line += ", ETA \(Int((Double(s.totalBytes - read) / rate).rounded(.up)))s" }
        }
        return line
    }
}
