import FoundationEssentials
import StrataArchive
import StrataCore
import StrataDrivers
import StrataFormats
import StrataLayer
import StrataSystem

extension Store {
    /// A container started by `run` has an init layer between its image and its own changes,
    /// as Docker's "-init" layer: the mount points /etc/hostname, /etc/hosts and
    /// /etc/resolv.conf, so that they never show in `diff` or `commit`. Its /etc carries the
    /// image's own /etc metadata, so the merged /etc looks as before.
    func makeInitLayer(_ paths: ContainerPaths, below layers: [LowerLayer]) throws {
        let initPath = paths.root + "/init"
        for p in [paths.root, initPath, initPath + "/etc"] { try makeDirectory(p) }
        let etc = try Directory.open(initPath + "/etc")
        let view = MergedView(layers: try visibleLayers(layers).map { try Directory.open($0.path) })
        if let st = try view.lookup([Array("etc".utf8)]), st.kind == .directory {
            try? etc.handle.chown(uid: st.uid, gid: st.gid)
            try? etc.handle.chmod(st.mode & 0o7777)
        }
        for name in ["hostname", "hosts", "resolv.conf"] {
            let n = Array(name.utf8)
            // A file here hides whatever the image has at that name, a symlink included (images
            // often link /etc/resolv.conf to a file that only exists on a running host): the
            // bind mount then lands on this file, never follows the image's link. A directory
            // is left alone; the mount onto it then fails with a clear error.
            if let st = try view.lookup([Array("etc".utf8), n]), st.kind == .directory { continue }
            _ = try etc.openFile(n, flags: [.writeOnly, .create, .truncate], mode: 0o644)
        }
        if let st = try view.lookup([Array("etc".utf8)]) {
            try? etc.handle.setTimes(atime: st.accessTime, mtime: st.modificationTime)
        }
        // The mount points of /proc, /dev and /sys: made here when the image lacks them, so
        // they never show in `diff` or a commit. One that is a symlink or a file is refused:
        // a mount must not follow or replace what the image put there.
        let initDir = try Directory.open(initPath)
        for name in ["proc", "dev", "sys"] {
            let n = Array(name.utf8)
            switch try view.lookup([n]) {
            case nil:
                try initDir.mkdirOrThrow(n, mode: 0o755)
            case let st? where st.kind == .directory:
                continue
            case let st?:
                let what = st.kind == .symlink ? "a symlink" : "not a directory"
                throw StrataError(.unsupported, "/\(name) in the image is \(what); a container needs a directory there to mount \(name) on")
            }
        }
    }

    func initLowerLayer(_ paths: ContainerPaths) -> LowerLayer {
        // The init layer is the container's own: a made-up identity (never stored as a layer).
        LowerLayer(chainID: ChainID(Digest.of(Array(paths.root.utf8))), path: paths.root + "/init",
                   link: "../containers/" + (paths.root.split(separator: "/").last.map(String.init) ?? "") + "/init", opaqueRoot: false)
    }
}
