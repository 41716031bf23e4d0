import StrataArchive
import StrataCore
import StrataSystem

/// What a layer directory must hold, read from the layer's own tar headers, and how the
/// directory on disk differs from it. The tar's digest alone cannot tell a file added to the
/// directory, or an empty file or directory removed from it: neither has payload bytes.
public enum LayerTree {
    /// What the tar says a path is.
    public enum Expect: Equatable {
        case directory, regular, symlink, device, fifo
        /// A whiteout of a name no entry of the layer has: on disk unless it hides nothing.
        case optionalWhiteout
    }

    /// The paths the unpacker makes of the tar in `source` (parents the tar omits included).
    public static func expected(from source: any ChunkSource, label: String) throws -> [PathBytes: Expect] {
        let reader = try TarReader(source, label: label)
        var out: [PathBytes: Expect] = [:]
        func parents(_ comps: [PathBytes]) {
            for i in 0..<max(0, comps.count - 1) {
                let p = EntryPath.join(Array(comps[0...i]))
                if out[p] == nil || out[p] == .optionalWhiteout { out[p] = .directory }
            }
        }
        entries: while let e = try reader.next() {
            guard case .success(let comps) = EntryPath.components(e.path), let last = comps.last else { continue }
            for c in comps.dropLast() where Whiteout.meaning(of: c) == .aufsMeta { continue entries }
            switch Whiteout.meaning(of: last) {
            case .aufsMeta, .invalid:
                continue
            case .opaque:
                parents(comps)
            case .whiteout(let name):
                parents(comps)
                let p = EntryPath.join(Array(comps.dropLast()) + [name])
                if out[p] == nil { out[p] = .optionalWhiteout }
            case .content:
                let p = EntryPath.join(comps)
                let kind: Expect
                switch e.kind {
                case .directory: kind = .directory
                case .regular: kind = .regular
                case .hardlink:
                    // The same inode as its target, whatever that is (a symlink, a device).
                    var target = e.linkTarget[...]
                    while target.first == UInt8(ascii: "/") { target = target.dropFirst() }
                    if case .success(let t) = EntryPath.components(Array(target)), let k = out[EntryPath.join(t)] {
                        kind = k
                    } else {
                        kind = .regular
                    }
                case .symlink: kind = .symlink
                case .characterDevice, .blockDevice: kind = .device
                case .fifo: kind = .fifo
                case .socket: continue
                }
                // A later entry replaces an earlier one; a non-directory takes what was below it.
                if kind != .directory, out[p] == .directory {
                    let prefix = p + [UInt8(ascii: "/")]
                    for k in out.keys where k.starts(with: prefix) { out[k] = nil }
                }
                parents(comps)
                out[p] = kind
            }
        }
        return out
    }

    /// How `root` differs from `expected`: one line per path, at most `limit` lines (and a count).
    public static func differences(_ root: Directory, expected: [PathBytes: Expect], limit: Int = 5) throws -> [String] {
        var out: [String] = []
        var seen: Set<PathBytes> = []
        var extra = 0
        func note(_ s: String) { if out.count < limit { out.append(s) } else { extra += 1 } }
        func walk(_ dir: Directory, _ prefix: [PathBytes]) throws {
            for name in try dir.entries() {
                let comps = prefix + [name]
                let p = EntryPath.join(comps)
                guard let st = try dir.lstat(name) else { continue }
                seen.insert(p)
                let type = st.kind
                let actual: Expect
                switch type {
                case .directory: actual = .directory
                case .regular: actual = .regular
                case .symlink: actual = .symlink
                case _ where Whiteout.isOverlayWhiteout(st): actual = .optionalWhiteout
                case .characterDevice, .blockDevice: actual = .device
                case .fifo: actual = .fifo
                default: actual = .regular
                }
                switch expected[p] {
                case nil: note("\(p.display) is not in the layer (added on disk)")
                case let want? where want != actual: note("\(p.display) is a \(describe(actual)), the layer has a \(describe(want))")
                default: break
                }
                if type == .directory, expected[p] == .directory { try walk(try dir.walkInto(name), comps) }
            }
        }
        try walk(root, [])
        // Rootless, devices are not made (docs/rootless.md).
        let devicesMade = !UserNamespace.current.isRootless
        for (p, kind) in expected where kind != .optionalWhiteout && (devicesMade || kind != .device) && !seen.contains(p) {
            note("\(p.display) is missing")
        }
        if extra > 0 { out.append("and \(extra) more") }
        return out
    }

    static func describe(_ e: Expect) -> String {
        switch e {
        case .directory: "directory"
        case .regular: "file"
        case .symlink: "symlink"
        case .device: "device"
        case .fifo: "fifo"
        case .optionalWhiteout: "whiteout"
        }
    }
}

/// The tar a journal describes, with zeros for file payloads: its headers are exact, so the
/// entries read from it are the layer's, without reading a byte of its files.
public final class JournalShape: ChunkSource {
    private let reader: JournalReader
    private var pending: [UInt8] = []
    private var zeros: Int64 = 0
    private let zeroBuffer = [UInt8](repeating: 0, count: 1 << 16)

    /// The headers a journal recorded, read back as a tar stream without payloads.
    public init(journal: FDHandle, label: String) throws {
        reader = try JournalReader(handle: journal, label: label)
    }

    public func nextChunk() throws -> UnsafeRawBufferPointer {
        while true {
            if zeros > 0 {
                let n = Int(min(zeros, Int64(zeroBuffer.count)))
                zeros -= Int64(n)
                return zeroBuffer.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[0..<n]) }
            }
            switch try reader.next() {
            case nil: return UnsafeRawBufferPointer(start: nil, count: 0)
            case .raw(let bytes)?:
                if bytes.isEmpty { continue }
                pending = bytes
                return pending.withUnsafeBytes { $0 }
            case .file(let size, _)?:
                zeros = size
            }
        }
    }
}
