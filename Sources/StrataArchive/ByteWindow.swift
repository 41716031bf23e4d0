/// The bytes of a stream kept from offset `base` on, appended at the back and dropped from the
/// front. Dropping moves an index, not the bytes: storage is compacted only once the dropped
/// part is the larger half, so a tar of many small entries read in big chunks costs linear
/// time, not a move of the whole chunk per entry.
struct ByteWindow {
    private var storage: [UInt8] = []
    private var head = 0
    /// Stream offset of the first byte kept.
    private(set) var base: Int64 = 0

    var count: Int { storage.count - head }
    var isEmpty: Bool { head == storage.count }
    /// Stream offset just past the last byte kept.
    var end: Int64 { base + Int64(count) }

    /// Drops everything; the next byte appended is at `offset`.
    mutating func reset(at offset: Int64) {
        storage.removeAll(keepingCapacity: true)
        head = 0
        base = offset
    }

    mutating func append<S: Sequence>(contentsOf bytes: S) where S.Element == UInt8 { storage.append(contentsOf: bytes) }

    /// The bytes at stream offsets [from, to), which must be kept.
    func bytes(from: Int64, to: Int64) -> [UInt8] {
        Array(storage[head + Int(from - base)..<head + Int(to - base)])
    }

    /// Drops the bytes before stream offset `offset` (at most all of them).
    mutating func drop(until offset: Int64) {
        let n = Int(min(max(0, offset - base), Int64(count)))
        head += n
        base += Int64(n)
        if head == storage.count {
            reset(at: base)
        } else if head >= 1 << 16 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
    }
}
