import Foundation

/// A small tar writer for tests: each case states its entries in a few lines, including the
/// hostile ones no well-behaved tool would write (`../x`, 0/0 devices, links out).
/// Writes ustar headers, with a PAX record for names or targets over 100 bytes or not ASCII.
public struct TarBuilder: Sendable {
    public enum Kind: UInt8 {
        case file = 0x30, hardlink = 0x31, symlink = 0x32, char = 0x33, block = 0x34, dir = 0x35, fifo = 0x36
    }

    public private(set) var bytes: [UInt8] = []
    public var mtime = 1_700_000_000

    public init() {}

    @discardableResult
    public mutating func file(_ name: String, _ content: String = "", mode: Int = 0o644, uid: Int = 0, gid: Int = 0,
                       pax: [String: String] = [:]) -> TarBuilder {
        entry(Array(name.utf8), .file, data: Array(content.utf8), mode: mode, uid: uid, gid: gid, pax: pax)
        return self
    }

    @discardableResult
    public mutating func dir(_ name: String, mode: Int = 0o755, uid: Int = 0, gid: Int = 0) -> TarBuilder {
        entry(Array(name.utf8), .dir, mode: mode, uid: uid, gid: gid)
        return self
    }

    @discardableResult
    public mutating func symlink(_ name: String, to target: String) -> TarBuilder {
        entry(Array(name.utf8), .symlink, link: Array(target.utf8), mode: 0o777)
        return self
    }

    @discardableResult
    public mutating func hardlink(_ name: String, to target: String) -> TarBuilder {
        entry(Array(name.utf8), .hardlink, link: Array(target.utf8), mode: 0o644)
        return self
    }

    @discardableResult
    public mutating func device(_ name: String, kind: Kind = .char, major: Int, minor: Int, mode: Int = 0o666) -> TarBuilder {
        entry(Array(name.utf8), kind, mode: mode, major: major, minor: minor)
        return self
    }

    @discardableResult
    public mutating func fifo(_ name: String) -> TarBuilder {
        entry(Array(name.utf8), .fifo, mode: 0o644)
        return self
    }

    /// `.wh.BASE` next to `name`.
    @discardableResult
    public mutating func whiteout(_ name: String) -> TarBuilder {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        let base = parts.last.map(String.init) ?? name
        let dir = parts.dropLast().joined(separator: "/")
        return file((dir.isEmpty ? "" : dir + "/") + ".wh." + base)
    }

    @discardableResult
    public mutating func opaque(_ dir: String) -> TarBuilder {
        file((dir.isEmpty ? "" : dir + "/") + ".wh..wh..opq")
    }

    public mutating func entry(_ name: [UInt8], _ kind: Kind, data: [UInt8] = [], link: [UInt8] = [], mode: Int,
                        uid: Int = 0, gid: Int = 0, major: Int = 0, minor: Int = 0, pax: [String: String] = [:],
                        rawPax: [([UInt8], [UInt8])] = []) {
        // PAX records as bytes: a name that is not UTF-8 (a Latin-1 byte) is written as it is.
        var records = pax.sorted(by: { $0.key < $1.key }).map { (Array($0.key.utf8), Array($0.value.utf8)) } + rawPax
        var hname = name
        var hlink = link
        if name.count > 100 || !name.allSatisfy({ $0 < 0x80 }) {
            records.insert((Array("path".utf8), name), at: 0)
            hname = Array(name.suffix(99).filter { $0 < 0x80 })
        }
        if link.count > 100 || !link.allSatisfy({ $0 < 0x80 }) {
            records.insert((Array("linkpath".utf8), link), at: 0)
            hlink = Array(link.prefix(99).filter { $0 < 0x80 })
        }
        if !records.isEmpty {
            var body: [UInt8] = []
            for (k, v) in records {
                let rest = 1 + k.count + 1 + v.count + 1  // " " key "=" value "\n"
                var len = rest + 1
                while String(len).count + rest != len { len = String(len).count + rest }
                body += Array("\(len) ".utf8) + k + [UInt8(ascii: "=")] + v + [0x0a]
            }
            bytes += header(Array("PaxHeaders/x".utf8), typeflag: 0x78, size: body.count, link: [], mode: 0o644,
                            uid: 0, gid: 0, major: 0, minor: 0)
            bytes += pad(body)
        }
        bytes += header(hname, typeflag: kind.rawValue, size: data.count, link: hlink, mode: mode, uid: uid, gid: gid,
                        major: major, minor: minor)
        bytes += pad(data)
    }

    private func pad(_ b: [UInt8]) -> [UInt8] {
        b + [UInt8](repeating: 0, count: (512 - b.count % 512) % 512)
    }

    private func header(_ name: [UInt8], typeflag: UInt8, size: Int, link: [UInt8], mode: Int, uid: Int, gid: Int,
                        major: Int, minor: Int) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ off: Int, _ b: [UInt8]) { for (i, x) in b.enumerated() { h[off + i] = x } }
        func octal(_ off: Int, _ width: Int, _ v: Int) {
            let digits = String(v, radix: 8)
            let padded = String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits
            put(off, Array(padded.utf8) + [0])
        }
        put(0, Array(name.prefix(100)))
        octal(100, 8, mode)
        octal(108, 8, uid)
        octal(116, 8, gid)
        octal(124, 12, size)
        octal(136, 12, mtime)
        for i in 148..<156 { h[i] = 0x20 }
        h[156] = typeflag
        put(157, Array(link.prefix(100)))
        put(257, Array("ustar".utf8) + [0] + Array("00".utf8))
        octal(329, 8, major)
        octal(337, 8, minor)
        let sum = h.reduce(0) { $0 + Int($1) }
        let digits = String(sum, radix: 8)
        put(148, Array((String(repeating: "0", count: max(0, 6 - digits.count)) + digits).utf8) + [0, 0x20])
        return h
    }

    /// The archive with its two zero end blocks.
    public var archive: [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }
}
