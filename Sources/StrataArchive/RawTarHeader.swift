import StrataCore
import StrataSystem

/// The names of a tar entry read from its raw header bytes, never from libarchive's decoded
/// strings: libarchive turns UTF-8 PAX `path` and `linkpath` records into Unicode NFC on every
/// non-Apple platform, which renames NFD names and merges canonically equivalent ones. Here a
/// name is the bytes the tar holds.
///
/// `bytes` is everything from the entry's first header block to its payload: any PAX (`x`, `X`),
/// global PAX (`g`) and GNU long-name (`L`, `K`) headers with their data, then the entry's own
/// ustar or GNU header, then for a sparse file what libarchive read of its map (GNU extension
/// blocks, or the map a PAX 1.0 sparse file stores before its data).
public struct RawTarHeader: Equatable {
    public var path: PathBytes
    public var linkTarget: PathBytes
    /// SCHILY.xattr.* and LIBARCHIVE.xattr.* records, names and values as bytes. A record with
    /// an empty value means "unset" in PAX and restores no xattr.
    public var xattrs: [(name: PathBytes, value: [UInt8])]
    /// Bytes of payload that follow the header in the stream (the size field, or PAX `size`):
    /// for sparse entries this differs from the file's size.
    public var storedSize: Int64

    public static func == (a: RawTarHeader, b: RawTarHeader) -> Bool {
        a.path == b.path && a.linkTarget == b.linkTarget && a.storedSize == b.storedSize
            && a.xattrs.map(\.name) == b.xattrs.map(\.name) && a.xattrs.map(\.value) == b.xattrs.map(\.value)
    }

    /// PAX records from `g` headers: they apply to every later entry of the archive.
    public typealias Globals = [PathBytes: [UInt8]]

    /// A header block that does not parse, with what is wrong.
    public struct Malformed: Error, CustomStringConvertible {
        public var description: String
    }

    /// Parses one header block (with its PAX and GNU long-name records); `globals` carries PAX global headers.
    public static func parse(_ bytes: [UInt8], globals: inout Globals) throws -> RawTarHeader {
        guard bytes.count >= 512, bytes.count % 512 == 0 else {
            throw Malformed(description: "header of \(bytes.count) bytes, not whole 512-byte blocks")
        }
        var pax: [PathBytes: [UInt8]] = [:]
        var paxOrder: [PathBytes] = []
        var gnuName: PathBytes?, gnuLink: PathBytes?
        // Extended headers come first, each a block and its data; the first block of another
        // type is the entry's own header. Bytes after it belong to a sparse file: GNU's old
        // format continues its map in extension blocks, PAX sparse 1.0 stores the map at the
        // front of the payload, and libarchive reads both before it hands over the entry.
        var pos = 0
        while true {
            guard bytes.count - pos >= 512 else {
                throw Malformed(description: "extended headers do not end on the entry's header")
            }
            let block = bytes[pos..<(pos + 512)]
            let type = block[block.startIndex + 156]
            guard extendedTypes.contains(type) else { break }
            let size = try number(block, 124, 12)
            let dataStart = pos + 512
            // Compared before any arithmetic: a hostile size must not overflow.
            guard size >= 0, size <= Int64(bytes.count - dataStart) else {
                throw Malformed(description: "extended header of \(size) bytes runs past the entry's header")
            }
            let dataEnd = dataStart + Int(size)
            let data = Array(bytes[dataStart..<dataEnd])
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "X"):
                for (k, v) in try records(data) {
                    if pax[k] == nil { paxOrder.append(k) }
                    pax[k] = v
                }
            case UInt8(ascii: "g"):
                for (k, v) in try records(data) { globals[k] = v }
            case UInt8(ascii: "L"): gnuName = cString(data[...])
            case UInt8(ascii: "K"): gnuLink = cString(data[...])
            default: break  // vendor headers libarchive skips (a GNU volume label, a Solaris ACL)
            }
            pos = dataStart + ((Int(size) + 511) / 512) * 512
        }
        let last = pos
        let trailing = bytes.count - last - 512
        let typeFlag = bytes[last + 156]
        // As libarchive: either key of PAX sparse 1.0 announces a map before the data.
        let major = Array("GNU.sparse.major".utf8), minor = Array("GNU.sparse.minor".utf8)
        let paxSparse = pax[major] ?? pax[minor] ?? globals[major] ?? globals[minor]
        if trailing > 0 && typeFlag != UInt8(ascii: "S") && paxSparse == nil {
            throw Malformed(description: "\(trailing) bytes follow the entry's header, and it is not a sparse file")
        }

        let h = bytes[last..<(last + 512)]
        func field(_ off: Int, _ len: Int) -> PathBytes { cString(h[(h.startIndex + off)..<(h.startIndex + off + len)]) }
        var ustarName = field(0, 100)
        let magic = Array(h[(h.startIndex + 257)..<(h.startIndex + 263)])
        // POSIX ustar ("ustar\0") has a prefix field; GNU ("ustar ") uses those bytes otherwise.
        if magic == Array("ustar\0".utf8) {
            let prefix = field(345, 155)
            if !prefix.isEmpty { ustarName = prefix + [UInt8(ascii: "/")] + ustarName }
        }
        // Per-file records override global ones; an empty value unsets.
        func value(_ key: String) -> [UInt8]? {
            let k = Array(key.utf8)
            if let v = pax[k] { return v.isEmpty ? nil : v }
            if let v = globals[k] { return v.isEmpty ? nil : v }
            return nil
        }
        let path = value("GNU.sparse.name") ?? value("path") ?? gnuName ?? ustarName
        let link = value("linkpath") ?? gnuLink ?? field(157, 100)
        var stored = try number(h, 124, 12)
        if let s = value("size") {
            guard let n = Int64(String(decoding: s, as: UTF8.self)), n >= 0 else {
                throw Malformed(description: "PAX size \"\(s.display)\" is not a number")
            }
            stored = n
        }
        // PAX sparse 1.0: the size counts the map at the front of the payload, which is part of
        // `bytes` already (GNU's old format does not count its extension blocks).
        if paxSparse != nil && typeFlag != UInt8(ascii: "S") {
            guard stored >= Int64(trailing) else {
                throw Malformed(description: "sparse map of \(trailing) bytes is larger than the entry's \(stored)")
            }
            stored -= Int64(trailing)
        }

        var xattrs: [(PathBytes, [UInt8])] = []
        let keys = globals.keys.filter { pax[$0] == nil }.sorted { $0.lexicographicallyPrecedes($1) } + paxOrder
        for k in keys {
            let v = pax[k] ?? globals[k] ?? []
            if k.starts(with: schily) {
                guard !v.isEmpty else { continue }
                xattrs.append((Array(k.dropFirst(schily.count)), v))
            } else if k.starts(with: libarchiveXattr) {
                guard !v.isEmpty, let name = percentDecoded(Array(k.dropFirst(libarchiveXattr.count))),
                      let decoded = Base64.decode(v) else { continue }
                xattrs.append((name, decoded))
            }
        }
        return RawTarHeader(path: path, linkTarget: link, xattrs: xattrs, storedSize: stored)
    }

    /// Header types that describe the entry after them: PAX (`x`, `X`, `g`), GNU long names
    /// (`L`, `K`), a GNU volume label (`V`), a Solaris ACL (`A`).
    static let extendedTypes: Set<UInt8> = Set("xXgLKVA".utf8)

    static let schily = Array("SCHILY.xattr.".utf8)
    static let libarchiveXattr = Array("LIBARCHIVE.xattr.".utf8)

    /// The bytes up to the first NUL.
    static func cString(_ s: ArraySlice<UInt8>) -> PathBytes {
        Array(s.prefix { $0 != 0 })
    }

    /// A numeric header field: octal digits (spaces and NULs around them), or base-256 when the
    /// first byte has its high bit set (GNU, for values octal cannot hold).
    static func number(_ block: ArraySlice<UInt8>, _ off: Int, _ len: Int) throws -> Int64 {
        let f = block[(block.startIndex + off)..<(block.startIndex + off + len)]
        if let first = f.first, first & 0x80 != 0 {
            guard first == 0x80 else { throw Malformed(description: "negative or oversized base-256 number") }
            var v: Int64 = 0
            for b in f.dropFirst() {
                guard v <= (Int64.max >> 8) else { throw Malformed(description: "base-256 number too large") }
                v = v << 8 | Int64(b)
            }
            return v
        }
        var v: Int64 = 0
        for b in f {
            if b == 0 || b == 0x20 { if v > 0 { break } else { continue } }
            guard b >= 0x30 && b <= 0x37, v <= (Int64.max >> 3) else {
                throw Malformed(description: "numeric field is not octal")
            }
            v = v << 3 | Int64(b - 0x30)
        }
        return v
    }

    /// PAX records: "LEN KEY=VALUE\n", LEN counting the whole record in decimal.
    static func records(_ data: [UInt8]) throws -> [(PathBytes, [UInt8])] {
        var out: [(PathBytes, [UInt8])] = []
        var i = 0
        while i < data.count {
            if data[i] == 0 { break }  // padding some writers leave after the last record
            var len = 0, j = i
            while j < data.count, data[j] >= 0x30 && data[j] <= 0x39 {
                len = len * 10 + Int(data[j] - 0x30)
                guard len <= data.count else { throw Malformed(description: "PAX record longer than its header") }
                j += 1
            }
            guard j < data.count, data[j] == 0x20, len > j - i + 1, i + len <= data.count, data[i + len - 1] == 0x0a else {
                throw Malformed(description: "malformed PAX record at byte \(i)")
            }
            let body = data[(j + 1)..<(i + len - 1)]
            guard let eq = body.firstIndex(of: UInt8(ascii: "=")) else {
                throw Malformed(description: "PAX record without '=' at byte \(i)")
            }
            out.append((Array(body[body.startIndex..<eq]), Array(body[(eq + 1)...])))
            i += len
        }
        return out
    }

    /// %XX escapes (bsdtar's LIBARCHIVE.xattr names).
    static func percentDecoded(_ s: [UInt8]) -> PathBytes? {
        var out: [UInt8] = []
        var i = 0
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        while i < s.count {
            if s[i] == UInt8(ascii: "%") {
                guard i + 2 < s.count, let a = hex(s[i + 1]), let b = hex(s[i + 2]) else { return nil }
                out.append(a << 4 | b)
                i += 3
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }
}

/// Passes the tar stream to libarchive unchanged while keeping the bytes of entry headers (not
/// payloads), so that `RawTarHeader` can read names from them.
final class HeaderTap: ChunkSource {
    private let upstream: any ChunkSource
    private(set) var offset: Int64 = 0
    private var buffer = ByteWindow()
    private var discardUntil: Int64 = 0
    /// More header bytes than this in a row is refused (PAX headers of that size are hostile).
    static let limit = 16 << 20
    private(set) var overflowed = false

    init(_ upstream: any ChunkSource) { self.upstream = upstream }

    func nextChunk() throws -> UnsafeRawBufferPointer {
        let c = try upstream.nextChunk()
        let start = offset
        offset += Int64(c.count)
        if c.isEmpty || offset <= discardUntil { return c }
        let skip = Int(max(0, discardUntil - start))
        if buffer.isEmpty { buffer.reset(at: start + Int64(skip)) }
        if buffer.count + c.count - skip > HeaderTap.limit {
            overflowed = true
            buffer = ByteWindow()
            buffer.reset(at: offset)
        } else {
            buffer.append(contentsOf: c[skip...])
        }
        return c
    }

    /// The bytes [from, to), if they passed and were kept.
    func bytes(from: Int64, to: Int64) -> [UInt8]? {
        guard from >= buffer.base, to >= from, to <= buffer.end else { return nil }
        return buffer.bytes(from: from, to: to)
    }

    /// Nothing before `end` is needed again: drop what is kept and skip it as it passes.
    func consumed(until end: Int64) {
        discardUntil = max(discardUntil, end)
        if end >= buffer.end {
            buffer.reset(at: end)
        } else if end > buffer.base {
            buffer.drop(until: end)
        }
        overflowed = false
    }
}
