import StrataCore
import StrataLayer
import StrataSystem

/// What a layer's content means depends on the layers below it in two places, settled once
/// those layers exist (layers of one load unpack in parallel, each on its own):
///
/// - A parent directory the tar did not list (Bazel, ko and apko omit them) takes the owner,
///   mode and content xattrs of the nearest lower layer's directory of that path, as containerd
///   does; without one it stays 0755 root. Otherwise `/tmp` 1777 would read 0755 in the merged
///   view, `/root` 0700 would open up.
/// - A whiteout hides nothing in a directory this layer made opaque, or one no lower layer has;
///   overlayfs would list it there as a `c?????????` entry, so it is removed.
///
/// Neither changes the layer tar: implicit directories are not in it, and whiteouts have no payload.
extension Store {
    /// Settles every staged layer against the layers below it, bottom first (`order` lists
    /// parents before children). A lower layer is a staged one or one already in the store;
    /// the walk down stops at a layer whose root is opaque.
    package func settle(order: [ChainID], staged: [ChainID: StagedLayer]) throws {
        var opened: [ChainID: (dir: Directory, opaqueRoot: Bool, parent: ChainID?)] = [:]
        func lower(_ c: ChainID) throws -> (dir: Directory, opaqueRoot: Bool, parent: ChainID?)? {
            if let o = opened[c] { return o }
            let o: (Directory, Bool, ChainID?)
            if let s = staged[c] {
                o = (try tmpDir.openDirectory(Array("\(s.cacheID)/diff".utf8), resolve: [.noSymlinks]).get(),
                     s.result.stats.opaqueRoot, s.parent)
            } else if let r = try layer(c) {
                o = (try layerDirectory(r), r.opaqueRoot, r.parent)
            } else {
                return nil
            }
            opened[c] = o
            return o
        }
        for c in order {
            guard let s = staged[c], !s.placed else { continue }
            let stats = s.result.stats
            if stats.implicitDirectories.isEmpty && stats.whiteouts.isEmpty { continue }
            var lowers: [Directory] = []
            var next = stats.opaqueRoot ? nil : s.parent
            while let p = next, let l = try lower(p) {
                lowers.append(l.dir)
                next = l.opaqueRoot ? nil : l.parent
            }
            try settle(s, lowers: lowers)
        }
    }

    /// `lowers`: the diff directories of the layers below, nearest first.
    package func settle(_ staged: StagedLayer, lowers: [Directory]) throws {
        let stats = staged.result.stats
        if stats.implicitDirectories.isEmpty && stats.whiteouts.isEmpty { return }
        let diff = try tmpDir.openDirectory(Array("\(staged.cacheID)/diff".utf8), resolve: [.noSymlinks]).get()
        func lowerDirectory(_ path: PathBytes) -> Directory? {
            for l in lowers {
                if case .success(let d) = l.openDirectory(path, resolve: [.noSymlinks, .noXDev]) { return d }
            }
            return nil
        }
        for path in stats.implicitDirectories {
            guard let from = lowerDirectory(path),
                  case .success(let to) = diff.openDirectory(path, resolve: [.noSymlinks, .noXDev]) else { continue }
            let st = try from.handle.stat()
            do {
                try to.handle.chown(uid: st.uid, gid: st.gid)
                try to.handle.chmod(st.mode & 0o7777)
            } catch let e as StrataError {
                throw e.context("layer \(staged.chainID): \(path.display)")
            }
            for (name, value) in Xattrs.list(from.fd) where Whiteout.isContentXattr(name) {
                try? to.handle.setXattr(name, value)
            }
        }
        for path in stats.whiteouts {
            let comps = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).map(Array.init)
            guard let name = comps.last else { continue }
            let parentPath = EntryPath.join(Array(comps.dropLast()))
            guard case .success(let parent) = diff.openDirectory(parentPath, resolve: [.noSymlinks, .noXDev]) else { continue }
            let hidesSomething = !Whiteout.isOpaque(parent) && (lowers.isEmpty ? false : (comps.count == 1 || lowerDirectory(parentPath) != nil))
            if !hidesSomething, let st = try parent.lstat(name), Whiteout.isOverlayWhiteout(st) {
                _ = parent.unlink(name)
            }
        }
    }
}
