import Dispatch
import Synchronization
import StrataArchive
import StrataCore
import StrataLayer
import StrataSystem

/// What `cp` did beyond the copy itself.
public struct CopyReport: Sendable {
    /// Device nodes not made on the host (a container's devices are not the host's to have).
    public var skippedDevices: [String] = []
}

/// A file or directory to copy: its name in the directory that holds it, what it is, and
/// whether only its contents are copied (`SRC/.`).
struct CopySource {
    var parent: Directory
    var name: PathBytes
    var stat: FileStatus
    var contentsOnly: Bool
}

/// `strata cp` (docs/copy.md): files between a container and the host, both ways, and as a tar
/// on standard input or output. Every path in the container is resolved inside its root
/// (openat2 RESOLVE_IN_ROOT, no magic links): a running container through the root its
/// process sees (its volumes included), a stopped one through its mounted rootfs and the
/// sources of its mounts. Nothing of the container runs; nothing is followed on the host that
/// the container made. The tar passes through a pipe from a walk of directory fds to the
/// hardened unpacker.
extension Engine {
    /// Components of a container path with `.` dropped and `..` taken lexically, clamped at
    /// the root (as the container's own `..` is at its root).
    static func containerComponents(_ path: String) -> [PathBytes] {
        var out: [PathBytes] = []
        for c in path.split(separator: "/") {
            if c == "." { continue }
            if c == ".." { _ = out.popLast(); continue }
            out.append(Array(c.utf8))
        }
        return out
    }

    /// Runs `body` with a directory standing for the container's `/` (or for the mount `path`
    /// is under) and `path`'s components inside it.
    func withContainerPath<T>(_ ref: String, _ path: String, _ body: (Directory, [PathBytes]) throws -> T) throws -> T {
        let c = try store.container(ref)
        // As Docker: a path in the container is from its root, the first `/` or not.
        let comps = Engine.containerComponents(path)
        if let pid = c.pid, isRunning(c) {
            // The root this process sees, mounts and all: pinned by the fd, then the pid checked
            // again, so a pid reused in between is never taken for the container.
            let root = try Directory.open("/proc/\(pid)/root")
            guard store.isContainerProcess(pid, id: c.id) else {
                throw StrataError(.conflict, "container \(c.name) stopped while its files were opened; try again")
            }
            return try body(root, comps)
        }
        let rootfs = try store.mountContainer(c.id)
        defer { try? store.unmountContainer(c.id) }
        // Not running: its volumes and binds are not mounted; a path under one is in its source.
        let mounts = (try store.spec(c.id)?.mounts ?? []).filter { $0.type == "bind" && !RuntimeSpec.isStandard($0) }
        for m in mounts.sorted(by: { Engine.containerComponents($0.destination).count > Engine.containerComponents($1.destination).count }) {
            let target = Engine.containerComponents(m.destination)
            guard let source = m.source, comps.starts(with: target) else { continue }
            let rest = Array(comps.dropFirst(target.count))
            if let dir = try? Directory.open(source) { return try body(dir, rest) }
            if rest.isEmpty, let slash = source.lastIndex(of: "/") {
                let dir = try Directory.open(slash == source.startIndex ? "/" : String(source[..<slash]))
                return try body(dir, [Array(source[source.index(after: slash)...].utf8)])
            }
            throw StrataError(.notFound, "\(path) in container \(c.name): its mount's source \(source) is not a directory")
        }
        return try body(try Directory.open(rootfs), comps)
    }

    /// The directory `comps` names inside `root`, resolved there.
    static func directory(_ root: Directory, _ comps: [PathBytes]) -> Result<Directory, Errno> {
        root.openDirectory(comps.isEmpty ? [UInt8(ascii: ".")] : EntryPath.join(comps), resolve: [.inRoot, .noMagicLinks], followFinal: true)
    }

    /// What `comps` names inside `root`: the final symlink followed with `followLink` (inside
    /// the root too). `display` names it in errors.
    static func source(_ root: Directory, _ comps: [PathBytes], contentsOnly: Bool, followLink: Bool, display: String) throws -> CopySource {
        var comps = comps
        for _ in 0..<40 {
            guard let name = comps.last else {
                return CopySource(parent: root, name: [UInt8(ascii: ".")], stat: try root.handle.stat(), contentsOnly: true)
            }
            let parent: Directory
            switch directory(root, Array(comps.dropLast())) {
            case .success(let d): parent = d
            case .failure(let e): throw StrataError(.notFound, "\(display): no such file or directory", cause: e)
            }
            guard let st = try parent.lstat(name) else { throw StrataError(.notFound, "\(display): no such file or directory") }
            guard followLink, st.kind == .symlink else {
                return CopySource(parent: parent, name: name, stat: st, contentsOnly: contentsOnly && st.kind == .directory)
            }
            let target = try parent.readlink(name)
            let joined = target.first == UInt8(ascii: "/") ? String(decoding: target, as: UTF8.self)
                : "/" + EntryPath.join(comps.dropLast() + [target]).display
            comps = containerComponents(joined)
        }
        throw StrataError(.invalidArgument, "\(display): too many levels of symbolic links")
    }

    /// How deep a tree `cp` and `export` copy.
    static let copyDepthLimit = 2048

    /// The tar of `src` (its entries named under `top`; with `top` nil only what is inside it),
    /// parents first, written to `sink`.
    static func writeTar(of src: CopySource, top: PathBytes?, to sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        let writer = try LayerDiffWriter(sink: sink)
        if let top { try writer.write([.entry(path: top, directory: src.parent, name: src.name, stat: src.stat, opaque: false)]) }
        if src.stat.kind == .directory {
            let dir = src.name == [UInt8(ascii: ".")] ? src.parent : try src.parent.walkInto(src.name)
            try writeTree(dir, prefix: top ?? [], to: writer)
        }
        try writer.close()
    }

    /// Writes what `dir` holds to `writer`, names under `prefix`, each entry as the walk meets
    /// it: only the directories on the way down stay open (a tree a container made may hold
    /// more directories than this process may have fds), and no deeper than `copyDepthLimit`.
    /// A running container's /proc, /sys and the like are the kernel's, not its files: left out.
    static func writeTree(_ dir: Directory, prefix: PathBytes, to writer: LayerDiffWriter, depth: Int = 0) throws {
        guard depth < Engine.copyDepthLimit else {
            throw StrataError(.tooLarge, "\(prefix.display): more than \(Engine.copyDepthLimit) directories deep; copy a part of it")
        }
        for name in try dir.entries().sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let st = try dir.lstat(name) else { continue }
            let path = prefix.isEmpty ? name : prefix + [UInt8(ascii: "/")] + name
            try writer.write([.entry(path: path, directory: dir, name: name, stat: st, opaque: false)])
            if st.kind == .directory {
                let sub = try dir.walkInto(name)
                if sub.handle.isKernelFilesystem { continue }
                try writeTree(sub, prefix: path, to: writer, depth: depth + 1)
            }
        }
    }

    /// Writes the tar `produce` makes into `target` through a pipe, unpacked with `plain`'s
    /// rules on a thread of its own; the names of the devices it skipped.
    static func unpack(into target: Directory, label: String, plain: LayerUnpacker.PlainCopy,
                       produce: (@escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> [String] {
        let (readEnd, writeEnd) = try FDHandle.pipe()
        let outcome = Mutex<Result<[String], any Error>?>(nil)
        let failed = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
        DetachedThread.start {
            let result = Result { () throws -> [String] in
                let unpacker = LayerUnpacker(root: target, label: label, recorder: nil)
                unpacker.plain = plain
                try unpacker.apply(try TarReader(StreamSource(handle: readEnd), label: label))
                return unpacker.skippedDevices.map(\.display)
            }
            if case .failure = result {
                failed.store(true, ordering: .sequentiallyConsistent)
                // Drained, so the writer never blocks on (or is killed by) a pipe nobody reads.
                var sink = [UInt8](repeating: 0, count: 1 << 16)
                while ((try? sink.withUnsafeMutableBytes { try readEnd.read(into: $0) }) ?? 0) > 0 {}
            }
            outcome.withLock { $0 = result }
            done.signal()
        }
        var produced: Result<Void, any Error> = .success(())
        do {
            // Headers are 512 bytes each: gathered into 64 KiB writes (a pipe's size), not a
            // write per header.
            let w = BufferedOutput(writeEnd, capacity: 64 << 10)
            produced = Result {
                try produce { chunk in
                    if failed.load(ordering: .sequentiallyConsistent) { throw StrataError(.system, "the copy stopped") }
                    try w.write(chunk)
                }
                try w.flush()
            }
        }
        // The write end goes here (the last reference): the reader sees the end of the tar.
        _ = consume writeEnd
        done.wait()
        let result = outcome.withLock { $0 } ?? .success([])
        if case .failure(let e) = result { throw e }
        try produced.get()
        return try result.get()
    }

    /// `cp CONTAINER:SRC -`: SRC as a tar on `sink`, owners and modes as they are.
    public func copyOut(_ ref: String, path: String, followLink: Bool, to sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        try withContainerPath(ref, path) { root, comps in
            let src = try Engine.source(root, comps, contentsOnly: path.hasSuffix("/."), followLink: followLink, display: path)
            try Engine.writeTar(of: src, top: src.contentsOnly ? nil : src.name, to: sink)
        }
    }

    /// `cp CONTAINER:SRC DEST`: as `cp -r` would, with Docker's rules for DEST (an existing
    /// directory receives SRC by its name; otherwise DEST is the new name). Without `archive`
    /// the files are the caller's (`owner`), set-id bits cleared and devices skipped.
    public func copyOut(_ ref: String, path: String, toHost dest: String, archive: Bool, followLink: Bool,
                        owner: (uid: UInt32, gid: UInt32)) throws -> CopyReport {
        try withContainerPath(ref, path) { root, comps in
            let src = try Engine.source(root, comps, contentsOnly: path.hasSuffix("/."), followLink: followLink, display: path)
            let (dir, top) = try Engine.hostDestination(dest, sourceIsDirectory: src.stat.kind == .directory)
            let plain = LayerUnpacker.PlainCopy(owner: archive ? nil : owner, clearSetID: !archive, skipDevices: !archive)
            let skipped = try Engine.unpack(into: dir, label: "cp to \(dest)", plain: plain) { sink in
                try Engine.writeTar(of: src, top: top == nil && !src.contentsOnly ? src.name : top, to: sink)
            }
            return CopyReport(skippedDevices: skipped)
        }
    }

    /// Where a copy to host path `dest` lands: the directory to unpack into and the name the
    /// source takes there (nil: its own name, or only its contents).
    static func hostDestination(_ dest: String, sourceIsDirectory: Bool) throws -> (Directory, PathBytes?) {
        if let d = try? Directory.open(dest) { return (d, nil) }
        let trimmed = dest.hasSuffix("/") ? String(dest.dropLast()) : dest
        if dest.hasSuffix("/") || trimmed.isEmpty {
            throw StrataError(.notFound, "destination directory \(dest) does not exist")
        }
        let slash = trimmed.lastIndex(of: "/")
        let parent = slash.map { $0 == trimmed.startIndex ? "/" : String(trimmed[..<$0]) } ?? "."
        let name = Array((slash.map { String(trimmed[trimmed.index(after: $0)...]) } ?? trimmed).utf8)
        guard let dir = try? Directory.open(parent) else {
            throw StrataError(.notFound, "the directory of \(dest) (\(parent)) does not exist")
        }
        if let st = try dir.lstat(name), st.kind != .directory, sourceIsDirectory {
            throw StrataError(.invalidArgument, "cannot copy a directory over the file \(dest)")
        }
        return (dir, name)
    }

    /// `cp SRC CONTAINER:DEST`: SRC from the host (its final symlink followed with
    /// `followLink`), with Docker's rules for DEST; without `archive` owned by root.
    public func copyIn(_ ref: String, path dest: String, fromHost src: String, archive: Bool, followLink: Bool) throws {
        let source = try Engine.hostSource(src, followLink: followLink)
        let sourceName = Engine.lastComponent(src.hasSuffix("/.") ? String(src.dropLast(2)) : src)
        let plain = LayerUnpacker.PlainCopy(owner: archive ? nil : (0, 0))
        try withContainerPath(ref, dest) { root, comps in
            let (dir, top) = try Engine.containerDestination(root, comps, display: dest, trailingSlash: dest.hasSuffix("/"),
                                                             sourceIsDirectory: source.stat.kind == .directory)
            let name: PathBytes? = top ?? (source.contentsOnly ? nil : sourceName)
            _ = try Engine.unpack(into: dir, label: "cp to \(dest)", plain: plain) { sink in
                try Engine.writeTar(of: source, top: name, to: sink)
            }
        }
    }

    /// The last component of a host path (`/` for the root).
    static func lastComponent(_ path: String) -> PathBytes {
        Array((path.split(separator: "/").last.map(String.init) ?? "/").utf8)
    }

    /// A host path to copy: the caller's own, resolved as the caller would (symlinks in its
    /// parents followed; the final one with `followLink`); `SRC/.` is SRC's contents.
    static func hostSource(_ src: String, followLink: Bool) throws -> CopySource {
        let dot: PathBytes = [UInt8(ascii: ".")]
        if src.hasSuffix("/.") || src == "." {
            let path = src == "." ? "." : String(src.dropLast(2))
            let dir = try Directory.open(path.isEmpty ? "/" : path)
            return CopySource(parent: dir, name: dot, stat: try dir.handle.stat(), contentsOnly: true)
        }
        var path = src
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        if followLink, (try? FDHandle.open(path, flags: [.pathOnly, .noFollow]).stat())?.kind == .symlink {
            path = try canonicalPath(path)
        }
        if path == "/" {
            let dir = try Directory.open("/")
            return CopySource(parent: dir, name: dot, stat: try dir.handle.stat(), contentsOnly: false)
        }
        let slash = path.lastIndex(of: "/")
        let parentPath = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let parent = try Directory.open(parentPath)
        let name = lastComponent(path)
        guard let st = try parent.lstat(name) else { throw StrataError(.notFound, "\(src): no such file or directory") }
        return CopySource(parent: parent, name: name, stat: st, contentsOnly: false)
    }

    /// `cp - CONTAINER:DIR`: the tar on `input` unpacked into DIR (an existing directory).
    public func copyIn(_ ref: String, path dest: String, tar input: FDHandle, archive: Bool) throws {
        let plain = LayerUnpacker.PlainCopy(owner: archive ? nil : (0, 0))
        try withContainerPath(ref, dest) { root, comps in
            guard case .success(let dir) = Engine.directory(root, comps) else {
                throw StrataError(.notFound, "\(dest) in the container is not a directory (cp - takes a directory to unpack the tar into)")
            }
            let unpacker = LayerUnpacker(root: dir, label: "cp - to \(dest)", recorder: nil)
            unpacker.plain = plain
            try unpacker.apply(try TarReader(StreamSource(handle: input), label: "standard input"))
        }
    }

    /// Where a copy into the container lands (Docker's rules): an existing directory receives
    /// the source by its own name (nil); otherwise DEST's parent receives it as DEST's name.
    static func containerDestination(_ root: Directory, _ comps: [PathBytes], display: String, trailingSlash: Bool,
                                     sourceIsDirectory: Bool) throws -> (Directory, PathBytes?) {
        if case .success(let d) = directory(root, comps) { return (d, nil) }
        guard let name = comps.last, !trailingSlash else {
            throw StrataError(.notFound, "destination directory \(display) does not exist in the container")
        }
        guard case .success(let parent) = directory(root, Array(comps.dropLast())) else {
            throw StrataError(.notFound, "the directory of \(display) does not exist in the container")
        }
        if let st = try parent.lstat(name), st.kind != .directory, sourceIsDirectory {
            throw StrataError(.invalidArgument, "cannot copy a directory over the file \(display) in the container")
        }
        return (parent, name)
    }
}
