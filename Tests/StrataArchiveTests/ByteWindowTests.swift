import Testing
@testable import StrataArchive

/// The window the tar header tap and the journal keep: after any mix of appends, drops and
/// resets, it holds exactly the bytes a plain array model holds, at the same stream offsets,
/// compaction included.
@Suite struct ByteWindowTests {
    @Test func matchesAPlainArray() {
        var rng = SystemRandomNumberGenerator()
        var window = ByteWindow()
        var model: [UInt8] = []
        var base: Int64 = 0
        var next: UInt8 = 0
        for _ in 0..<2_000 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<5:
                let n = Int.random(in: 0..<20_000, using: &rng)
                let bytes = (0..<n).map { _ in next &+= 1; return next }
                window.append(contentsOf: bytes)
                model += bytes
            case 5..<9:
                let until = base + Int64.random(in: 0...Int64(model.count + 10), using: &rng)
                window.drop(until: until)
                let n = Int(min(max(0, until - base), Int64(model.count)))
                model.removeFirst(n)
                base += Int64(n)
            default:
                base += Int64(model.count) + Int64.random(in: 0..<100, using: &rng)
                window.reset(at: base)
                model = []
            }
            #expect(window.base == base && window.count == model.count && window.end == base + Int64(model.count))
            if !model.isEmpty {
                let from = base + Int64.random(in: 0..<Int64(model.count), using: &rng)
                let to = Int64.random(in: from...(base + Int64(model.count)), using: &rng)
                #expect(window.bytes(from: from, to: to) == Array(model[Int(from - base)..<Int(to - base)]))
            }
        }
    }
}
