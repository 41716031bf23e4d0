#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore
import StrataLayer
import StrataSystem

/// One path a layer adds (A), changes (C) or deletes (D), with its size in this layer and the
/// bytes it hides from the layers below (replaced or deleted content: wasted space in the image).
public struct LayerChange: Codable, Sendable {
    public var kind: String
    public var path: String
    public var size: Int64
    public var hidden: Int64
}

/// A read-only view of the layers below one layer, top first, honouring whiteouts, opaque
/// directories and a root opaque marker (which cuts the chain).
struct LowerView {
    let layers: [Directory]

    init(store: Store, below layer: LayerRecord) throws {
        var dirs: [Directory] = []
        var next = layer.opaqueRoot ? nil : layer.parent
        while let c = next, let l = try store.layer(c) {
            dirs.append(try store.layerDirectory(l))
            next = l.opaqueRoot ? nil : l.parent
        }
        layers = dirs
    }

    /// What the merged lower view has at `path`, or nil.
    func lookup(_ comps: [PathBytes]) throws -> stat? {
        for dir in layers {
            var hidden = false
            var opaque = false
            // A whiteout, a non-directory or an opaque directory on the way stops the search here.
            for i in 0..<(comps.count - 1) {
                let prefix = EntryPath.join(Array(comps[0...i]))
                guard let st = try statAt(dir, prefix) else { break }
                if !st.isDirectory { hidden = true; break }
                if isOpaque(dir, prefix) { opaque = true }
            }
            if hidden { return nil }
            if let st = try statAt(dir, EntryPath.join(comps)) {
                return isWhiteoutStat(st) ? nil : st
            }
            if opaque { return nil }
        }
        return nil
    }

    /// Bytes of regular files the lower view holds at or below `path`.
    func size(at comps: [PathBytes]) throws -> Int64 {
        guard let st = try lookup(comps) else { return 0 }
        if !st.isDirectory { return st.isRegular ? Int64(st.st_size) : 0 }
        var seen: Set<PathBytes> = []
        var total: Int64 = 0
        let path = EntryPath.join(comps)
        for dir in layers {
            guard case .success(let sub) = dir.openDirectory(path, resolve: [.noSymlinks]) else { continue }
            try walk(sub, prefix: []) { rel, st in
                if seen.insert(rel).inserted, st.isRegular { total += Int64(st.st_size) }
            }
            if isOpaque(dir, path) { break }
        }
        return total
    }

    func statAt(_ dir: Directory, _ path: PathBytes) throws -> stat? {
        let parts = path.split(separator: UInt8(ascii: "/")).map(Array.init)
        guard let last = parts.last else { return nil }
        if parts.count == 1 { return try dir.lstat(last) }
        guard case .success(let parent) = dir.openDirectory(EntryPath.join(Array(parts.dropLast())), resolve: [.noSymlinks]) else {
            return nil
        }
        return try parent.lstat(last)
    }

    func isOpaque(_ dir: Directory, _ path: PathBytes) -> Bool {
        guard case .success(let d) = dir.openDirectory(path, resolve: [.noSymlinks]) else { return false }
        return readOpaque(d.fd)
    }
}

func isWhiteoutStat(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFCHR && st.st_rdev == 0 }

func readOpaque(_ fd: Int32) -> Bool {
    var buf = [UInt8](repeating: 0, count: 4)
    let n = strata_fgetxattr(fd, Whiteout.overlayOpaqueXattr, &buf, buf.count)
    return n == 1 && buf[0] == UInt8(ascii: "y")
}

/// Visits every entry below `dir` (not following symlinks), with its path relative to `dir`.
func walk(_ dir: Directory, prefix: PathBytes, _ visit: (PathBytes, stat) throws -> Void) throws {
    for name in try dir.entries().sorted(by: { $0.lexicographicallyPrecedes($1) }) {
        guard let st = try dir.lstat(name) else { continue }
        let rel = prefix.isEmpty ? name : prefix + [UInt8(ascii: "/")] + name
        try visit(rel, st)
        if st.isDirectory, case .success(let sub) = dir.openDirectory(name, resolve: [.noSymlinks]) {
            try walk(sub, prefix: rel, visit)
        }
    }
}

extension Store {
    /// What a layer adds, changes and deletes relative to the layers below it.
    public func layerChanges(_ layer: LayerRecord) throws -> [LayerChange] {
        let lower = try LowerView(store: self, below: layer)
        let root = try layerDirectory(layer)
        var changes: [LayerChange] = []
        if layer.opaqueRoot {
            let hidden = try lower.size(at: [])
            changes.append(LayerChange(kind: "D", path: "/*", size: 0, hidden: hidden))
        }
        var opaqueHandled: Set<PathBytes> = []
        try walk(root, prefix: []) { rel, st in
            let comps = rel.split(separator: UInt8(ascii: "/")).map(Array.init)
            let path = "/" + rel.display
            // Inside a directory this layer made opaque, everything is new.
            let underOpaque = opaqueHandled.contains { rel.starts(with: $0 + [UInt8(ascii: "/")]) }
            if isWhiteoutStat(st) {
                changes.append(LayerChange(kind: "D", path: path, size: 0, hidden: try lower.size(at: comps)))
                return
            }
            let below = underOpaque ? nil : try lower.lookup(comps)
            if st.isDirectory {
                var opaque = false
                if case .success(let d) = root.openDirectory(rel, resolve: [.noSymlinks]) { opaque = readOpaque(d.fd) }
                if opaque {
                    let hidden = underOpaque ? 0 : try lower.size(at: comps)
                    opaqueHandled.insert(rel)
                    changes.append(LayerChange(kind: below == nil ? "A" : "C", path: path, size: 0, hidden: hidden))
                } else if below == nil || !(below!.isDirectory) {
                    changes.append(LayerChange(kind: "A", path: path, size: 0, hidden: below.map { $0.isRegular ? Int64($0.st_size) : 0 } ?? 0))
                }
                return
            }
            let size = st.isRegular ? Int64(st.st_size) : 0
            if let below {
                let hidden = below.isDirectory ? try lower.size(at: comps) : (below.isRegular ? Int64(below.st_size) : 0)
                changes.append(LayerChange(kind: "C", path: path, size: size, hidden: hidden))
            } else {
                changes.append(LayerChange(kind: "A", path: path, size: size, hidden: 0))
            }
        }
        return changes
    }
}
