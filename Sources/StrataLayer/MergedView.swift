// (Mode tests are spelled out here: with libarchive imported into this module, the `stat`
// helpers of StrataSystem are not found in whole-module builds.)
import StrataCore
import StrataSystem

/// A read-only union of layer directories in overlay form (top first), resolved the way
/// overlayfs shows them: whiteouts hide, opaque directories stop the search below them.
/// Used to tell additions from changes, and to size what a layer hides.
public struct MergedView {
    public let layers: [Directory]

    /// The view of `layers`, top first.
    public init(layers: [Directory]) { self.layers = layers }


    /// What the view holds at `comps` (nil: nothing, or hidden).
    public func lookup(_ comps: [PathBytes]) throws -> FileStatus? {
        guard !comps.isEmpty else { return nil }
        for dir in layers {
            var blocked = false
            var opaque = false
            var parent = dir
            for c in comps.dropLast() {
                guard let st = try parent.lstat(c) else { blocked = true; break }
                if st.kind != .directory { return nil }  // a file or whiteout here hides everything below
                guard case .success(let sub) = parent.openDirectory(c, resolve: [.noSymlinks]) else { blocked = true; break }
                if Whiteout.isOpaque(sub) { opaque = true }
                parent = sub
            }
            if !blocked, let st = try parent.lstat(comps.last!) {
                return Whiteout.isOverlayWhiteout(st) ? nil : st
            }
            if opaque { return nil }
        }
        return nil
    }

    /// The names the view shows in directory `comps` ([] for the root), with what they are.
    public func list(_ comps: [PathBytes]) throws -> [PathBytes: FileStatus] {
        var out: [PathBytes: FileStatus] = [:]
        var hidden: Set<PathBytes> = []
        for dir in layers {
            let d: Directory
            if comps.isEmpty {
                d = dir
            } else {
                var ok = true
                var cur = dir
                for c in comps {
                    guard let st = try cur.lstat(c) else { ok = false; break }
                    if st.kind != .directory { return out }  // hides the rest below
                    guard case .success(let sub) = cur.openDirectory(c, resolve: [.noSymlinks]) else { ok = false; break }
                    cur = sub
                }
                if !ok { continue }
                d = cur
            }
            for name in try d.entries() where out[name] == nil && !hidden.contains(name) {
                guard let st = try d.lstat(name) else { continue }
                if Whiteout.isOverlayWhiteout(st) { hidden.insert(name) } else { out[name] = st }
            }
            if Whiteout.isOpaque(d) { break }
        }
        return out
    }

    /// Bytes of regular files the view holds at or below `comps`.
    public func size(at comps: [PathBytes]) throws -> Int64 {
        guard let st = try lookup(comps) else { return 0 }
        guard st.kind == .directory else { return st.kind == .regular ? Int64(st.size) : 0 }
        var total: Int64 = 0
        for (name, child) in try list(comps) {
            total += child.kind == .directory ? try size(at: comps + [name]) : (child.kind == .regular ? Int64(child.size) : 0)
        }
        return total
    }
}

/// One path a container changed, in the order a layer tar lists it (parents first, names
/// sorted), with where its content is.
public struct ChangedPath {
    /// A, C or D, as `docker diff` prints them.
    public enum Kind: String, Sendable { case added = "A", changed = "C", deleted = "D" }
    /// Where the changed path is: an entry in a directory, or a whiteout.
    public enum Source {
        /// A file, directory, link or device to copy from `directory`/`name`.
        case entry(directory: Directory, name: PathBytes, stat: FileStatus, opaque: Bool)
        case whiteout(stat: FileStatus?)
    }
    public var path: PathBytes
    public var kind: Kind
    public var source: Source
}

/// Finds what a container changed against the image's merged layers.
public enum ChangeScanner {
    /// From an overlay upper dir: everything in it is a change; 0/0 devices are deletions and
    /// opaque directories hide all below them.
    public static func scanUpper(_ upper: Directory, lower: MergedView) throws -> [ChangedPath] {
        var out: [ChangedPath] = []
        try walkUpper(upper, [], lower, underOpaque: false, opaque: Whiteout.isOpaque(upper), &out)
        return out
    }

    /// How deep a change scan goes: a tree deeper than this (a container can make one) is
    /// refused with a message rather than run the walk's stack out.
    public static let depthLimit = 1024

    static func checkDepth(_ prefix: [PathBytes]) throws {
        guard prefix.count < depthLimit else {
            throw StrataError(.tooLarge, "/\(EntryPath.join(Array(prefix.prefix(8))).display)/…: changes more than \(depthLimit) directories deep; remove that tree and try again")
        }
    }

    private static func walkUpper(_ dir: Directory, _ prefix: [PathBytes], _ lower: MergedView, underOpaque: Bool,
                                  opaque dirIsOpaque: Bool, _ out: inout [ChangedPath]) throws {
        try checkDepth(prefix)
        for name in try dir.entries().sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let st = try dir.lstat(name) else { continue }
            if Whiteout.isFuseOverlayMarker(name, st, inOpaqueDirectory: dirIsOpaque) { continue }
            let comps = prefix + [name]
            let path = EntryPath.join(comps)
            if Whiteout.isOverlayWhiteout(st) {
                out.append(ChangedPath(path: path, kind: .deleted, source: .whiteout(stat: st)))
                continue
            }
            let below = underOpaque ? nil : try lower.lookup(comps)
            if st.kind == .directory {
                let sub = try dir.walkInto(name)
                let opaque = Whiteout.isOpaque(sub)
                // Opaque only where it hides something: over a directory of the layers below.
                // fuse-overlayfs marks every directory it makes opaque; a marker over nothing
                // would make its layer other bytes than the kernel's overlay makes of the same change.
                let hides = opaque && below.map { FileKind(mode: $0.mode) == .directory } == true
                out.append(ChangedPath(path: path, kind: below == nil ? .added : .changed,
                                       source: .entry(directory: dir, name: name, stat: st, opaque: hides)))
                // Nothing below shows under an opaque directory, nor under one the layers do
                // not have as a directory: its children need no lookups in them.
                let hidden = underOpaque || opaque || below.map { FileKind(mode: $0.mode) != .directory } ?? true
                try walkUpper(sub, comps, lower, underOpaque: hidden, opaque: opaque, &out)
            } else {
                out.append(ChangedPath(path: path, kind: below == nil ? .added : .changed,
                                       source: .entry(directory: dir, name: name, stat: st, opaque: false)))
            }
        }
    }

    /// From a full copy (vfs): compared entry by entry with the merged layers (type, mode,
    /// owner, size, mtime, device, link target), as Docker's naive diff does. Parents of a change
    /// are listed too, so the layer carries their real metadata.
    public static func scanCopy(_ rootfs: Directory, lower: MergedView) throws -> [ChangedPath] {
        var out: [ChangedPath] = []
        _ = try walkCopy(rootfs, [], lower, &out)
        return out
    }

    private static func same(_ a: FileStatus, _ b: FileStatus) -> Bool {
        guard a.mode == b.mode, a.uid == b.uid, a.gid == b.gid else { return false }
        if a.kind == .directory { return true }
        guard a.size == b.size, a.rdev == b.rdev,
              a.modificationTime.seconds == b.modificationTime.seconds, a.modificationTime.nanoseconds == b.modificationTime.nanoseconds else { return false }
        return true
    }

    /// Returns whether anything below `prefix` changed.
    private static func walkCopy(_ dir: Directory, _ prefix: [PathBytes], _ lower: MergedView, _ out: inout [ChangedPath]) throws -> Bool {
        try checkDepth(prefix)
        let below = try lower.list(prefix)
        var changed = false
        let names = Set(try dir.entries()).union(below.keys).sorted(by: { $0.lexicographicallyPrecedes($1) })
        for name in names {
            let comps = prefix + [name]
            let path = EntryPath.join(comps)
            guard let st = try dir.lstat(name) else {
                out.append(ChangedPath(path: path, kind: .deleted, source: .whiteout(stat: nil)))
                changed = true
                continue
            }
            let old = below[name]
            if st.kind == .directory {
                let sub = try dir.walkInto(name)
                if let old, old.kind == .directory {
                    let index = out.count
                    let inner = try walkCopy(sub, comps, lower, &out)
                    let mine = !same(st, old) || st.modificationTime.seconds != old.modificationTime.seconds || st.modificationTime.nanoseconds != old.modificationTime.nanoseconds
                    if inner || mine {
                        out.insert(ChangedPath(path: path, kind: .changed, source: .entry(directory: dir, name: name, stat: st, opaque: false)), at: index)
                        changed = true
                    }
                } else {
                    // New, or replaces a non-directory: all of it is new, nothing below shows.
                    out.append(ChangedPath(path: path, kind: old == nil ? .added : .changed,
                                           source: .entry(directory: dir, name: name, stat: st, opaque: false)))
                    try addAll(sub, comps, &out)
                    changed = true
                }
                continue
            }
            if let old, same(st, old), !(st.kind == .symlink && (try? dir.readlink(name)) != (try? linkTarget(lower, comps))) {
                continue
            }
            out.append(ChangedPath(path: path, kind: old == nil ? .added : .changed,
                                   source: .entry(directory: dir, name: name, stat: st, opaque: false)))
            changed = true
        }
        return changed
    }

    private static func linkTarget(_ lower: MergedView, _ comps: [PathBytes]) throws -> PathBytes? {
        for dir in lower.layers {
            var cur = dir
            var ok = true
            for c in comps.dropLast() {
                guard case .success(let sub) = cur.openDirectory(c, resolve: [.noSymlinks]) else { ok = false; break }
                cur = sub
            }
            if ok, let st = try cur.lstat(comps.last!), st.kind == .symlink { return try cur.readlink(comps.last!) }
        }
        return nil
    }

    private static func addAll(_ dir: Directory, _ prefix: [PathBytes], _ out: inout [ChangedPath]) throws {
        for name in try dir.entries().sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let st = try dir.lstat(name) else { continue }
            let comps = prefix + [name]
            out.append(ChangedPath(path: EntryPath.join(comps), kind: .added, source: .entry(directory: dir, name: name, stat: st, opaque: false)))
            if st.kind == .directory { try addAll(try dir.walkInto(name), comps, &out) }
        }
    }
}
