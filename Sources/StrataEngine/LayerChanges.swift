import StrataCore
import StrataDrivers
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

extension Store {
    /// The layers below `layer` as a merged view, top first; a root opaque marker cuts the chain.
    func viewBelow(_ layer: LayerRecord) throws -> MergedView {
        var dirs: [Directory] = []
        var next = layer.opaqueRoot ? nil : layer.parent
        while let c = next, let l = try self.layer(c) {
            dirs.append(try layerDirectory(l))
            next = l.opaqueRoot ? nil : l.parent
        }
        return MergedView(layers: dirs)
    }

    /// What a layer adds, changes and deletes relative to the layers below it.
    public func layerChanges(_ layer: LayerRecord) throws -> [LayerChange] {
        let lower = try viewBelow(layer)
        var changes: [LayerChange] = []
        if layer.opaqueRoot {
            var hidden: Int64 = 0
            for (name, _) in try lower.list([]) { hidden += try lower.size(at: [name]) }
            changes.append(LayerChange(kind: "D", path: "/*", size: 0, hidden: hidden))
        }
        var opaqueDirs: [PathBytes] = []
        // The layer dir is in overlay form, like an upper dir: the same scan tells A, C and D.
        for c in try ChangeScanner.scanUpper(try layerDirectory(layer), lower: lower) {
            let comps = c.path.split(separator: UInt8(ascii: "/")).map(Array.init)
            let path = "/" + c.path.display
            let underOpaque = opaqueDirs.contains { c.path.starts(with: $0 + [UInt8(ascii: "/")]) }
            switch c.source {
            case .whiteout:
                changes.append(LayerChange(kind: "D", path: path, size: 0, hidden: underOpaque ? 0 : try lower.size(at: comps)))
            case .entry(_, _, let st, let opaque):
                let isDir = st.kind == .directory
                let size: Int64 = st.kind == .regular ? Int64(st.size) : 0
                if isDir && opaque {
                    opaqueDirs.append(c.path)
                    changes.append(LayerChange(kind: c.kind.rawValue, path: path, size: 0, hidden: underOpaque ? 0 : try lower.size(at: comps)))
                } else if isDir {
                    // A directory that only holds changes is not itself a change.
                    if c.kind == .added { changes.append(LayerChange(kind: "A", path: path, size: 0, hidden: 0)) }
                } else {
                    let hidden = c.kind == .changed && !underOpaque ? try lower.size(at: comps) : 0
                    changes.append(LayerChange(kind: c.kind.rawValue, path: path, size: size, hidden: hidden))
                }
            }
        }
        return changes
    }
}
