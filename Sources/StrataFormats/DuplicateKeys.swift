/// Finds an object key that appears twice in a JSON document. Parsers disagree on which one
/// counts (Go keeps the last, others the first): an image whose config says two things is
/// verified as one and run as the other, so such documents are refused.
///
/// Keys are compared after unescaping (`"diff\u005fids"` is `diff_ids`) and as Swift strings,
/// so canonically equivalent spellings count as the same key too. The scan only tracks
/// structure; the decoder that runs afterwards validates the document.
enum DuplicateKeys {
    /// The dotted path of the first repeated key (`rootfs.diff_ids`), or nil.
    static func find(in bytes: [UInt8]) -> String? {
        struct Frame {
            var isObject: Bool
            var keys: Set<String> = []
            var expectingKey = true
            var current: String?
        }
        var stack: [Frame] = []
        var i = 0
        func path(_ last: String) -> String {
            (stack.dropLast().compactMap { $0.isObject ? $0.current : nil } + [last]).joined(separator: ".")
        }
        while i < bytes.count {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "{"):
                stack.append(Frame(isObject: true))
                i += 1
            case UInt8(ascii: "["):
                stack.append(Frame(isObject: false))
                i += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if !stack.isEmpty { stack.removeLast() }
                i += 1
            case UInt8(ascii: ","):
                if !stack.isEmpty, stack[stack.count - 1].isObject { stack[stack.count - 1].expectingKey = true }
                i += 1
            case UInt8(ascii: "\""):
                guard let (s, next) = string(bytes, from: i) else { return nil }
                i = next
                if let top = stack.last, top.isObject, top.expectingKey {
                    if stack[stack.count - 1].keys.insert(s).inserted == false { return path(s) }
                    stack[stack.count - 1].current = s
                    stack[stack.count - 1].expectingKey = false
                }
            default:
                i += 1
            }
        }
        return nil
    }

    /// The JSON string starting at `start` (a quote), unescaped; and the index after it.
    private static func string(_ b: [UInt8], from start: Int) -> (String, Int)? {
        var out: [UInt8] = []
        var i = start + 1
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= b.count else { return nil }
            var v: UInt32 = 0
            for c in b[at..<(at + 4)] {
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: return nil
                }
                v = v << 4 | d
            }
            return v
        }
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") { return (String(decoding: out, as: UTF8.self), i + 1) }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            guard i + 1 < b.count else { return nil }
            let e = b[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "u"):
                guard var v = hex4(i) else { return nil }
                i += 4
                // A surrogate pair spells one scalar.
                if (0xD800..<0xDC00).contains(v), i + 6 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u"),
                   let low = hex4(i + 2), (0xDC00..<0xE000).contains(low) {
                    v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                out.append(contentsOf: Array(String(Unicode.Scalar(v).map(Character.init) ?? "\u{FFFD}").utf8))
            default: out.append(e)  // \" \\ \/
            }
        }
        return nil
    }
}
