import FoundationEssentials
import StrataArchive
import StrataCore
import StrataFormats
import StrataLayer
import StrataLauncher
import StrataStore
import StrataSystem

/// Where COPY takes files from: the build context (minus .dockerignore), or a stage's or an
/// image's tree. Every path is resolved inside it (openat2 RESOLVE_IN_ROOT): a symlink in the
/// context never leads out of it.
struct CopyRoot {
    var dir: Directory
    var ignore: IgnorePatterns
    var what: String
}

/// One source COPY matched: where it is, and its path from the root (for .dockerignore).
struct CopyItem {
    var source: CopySource
    var path: String
    var isDirectory: Bool { source.stat.kind == .directory }
}

/// Hashes what a writer writes (a COPY's content, for its cache key).
private final class HashSink {
    var digester = Digester()
}

extension BuildRun {
    /// COPY and ADD: the sources (context, `--from` a stage or image), `--chown`, `--chmod`; ADD
    /// unpacks a local tar archive (compressed or not) into the destination.
    mutating func copy(_ ins: Instruction, _ state: inout BuildState) throws -> Bool {
        let isAdd = ins.keyword == "ADD"
        let look = lookup(state)
        var from: String?, chownSpec: String?, chmod: UInt32?
        for f in ins.flags {
            switch f.name {
            case "from" where !isAdd: from = try expander.expand(f.value ?? "", look)
            case "chown": chownSpec = try expander.expand(f.value ?? "", look)
            case "chmod":
                guard let v = f.value, let m = UInt32(v, radix: 8), m <= 0o7777 else {
                    throw StrataError(.invalidArgument, "invalid --chmod \"\(f.value ?? "")\": an octal mode such as 0755")
                }
                chmod = m
            case "link": continue  // layers are independent of their parent here anyway
            default: throw StrataError(.unsupported, "\(ins.keyword) has no flag --\(f.name)")
            }
        }
        // As BuildKit: split on whitespace as written, each part expanded as one word.
        var args = try (ins.json ?? ins.fields).map { try expander.expand($0, look) }
        guard args.count >= 2 else { throw StrataError(.invalidArgument, "\(ins.keyword) takes one or more sources and a destination") }
        let destText = args.removeLast()
        for s in args where s.contains("://") || s.hasPrefix("git@") {
            throw StrataError(.unsupported, "\(ins.keyword) of a URL (\(s)) is not supported: put the file in the build context, or fetch it in a RUN step")
        }
        let workdir = state.runtime.WorkingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        let destComps = Engine.containerComponents(destText.hasPrefix("/") ? destText : workdir + "/" + destText)
        let createdBy = Self.oneLine(ins.original)

        // The key: the parent, the instruction, and what is copied (a stage's or image's ID, or
        // the context's content as it would be written).
        var cleanups: [() -> Void] = []
        defer { cleanups.reversed().forEach { $0() } }
        var root: CopyRoot?
        let key: Digest
        if let from {
            let image: Digest?, what: String, id: Digest
            if let s = stage(named: from) {
                guard let done = results[s.index] else { throw StrataError(.invalidArgument, "--from=\(from): stage \(s.label) is not built before this one") }
                (image, what, id) = (done.layersImage, "stage \(s.label)", done.id)
            } else {
                let i = try baseImage(from)
                (image, what, id) = (i, "image \(from)", i)
            }
            key = cache.key(parent: state.id, step: [createdBy, "from=" + id.string] + args + [destText])
            if try useCache(key, &state) { return true }
            root = try openTree(image, what: what, cleanups: &cleanups)
        } else {
            let r = CopyRoot(dir: context, ignore: ignore, what: "the build context")
            let items = try args.flatMap { try match($0, in: r) }
            let hash = HashSink()
            let writer = try LayerDiffWriter { hash.digester.update($0) }
            writer.rewrite = rewrite(owner: (0, 0), chmod: chmod)
            for item in items { try write(item, top: Array(item.path.utf8), root: r, to: writer) }
            try writer.close()
            key = cache.key(parent: state.id, step: [createdBy, "content=" + hash.digester.finalize().string] + args + [destText])
            if try useCache(key, &state) { return true }
            root = r
        }
        guard let root else { throw StrataError(.internalError, "no source tree") }
        let items = try args.flatMap { try match($0, in: root) }
        let archives = isAdd ? Set(items.indices.filter { BuildRun.isArchive(items[$0]) }) : []
        let wildcard = args.contains { GlobMatch.hasMeta($0) }
        let clamp = timestamp
        let label = "\(ins.keyword) to \(destText)"

        let staged = try changeFiles(state, label: "the layer of \(ins.keyword)") { target in
            // The context's files become root's (its owners are the host's); another stage's or
            // image's keep theirs, as BuildKit keeps them. --chown sets both.
            let owner = try BuildRun.owner(chownSpec, in: target)
            let rewrite = BuildRun.rewrite(owner: from != nil && chownSpec == nil ? nil : owner, chmod: chmod, clamp: clamp)
            let destIsDirectory = destText.hasSuffix("/") || destText.hasSuffix("/.") || destText == "." || items.count > 1 || wildcard
                || !archives.isEmpty || items.first?.isDirectory == true || Engine.directory(target, destComps).isSuccess
            if destIsDirectory {
                let dir = try BuildRun.makeDirectories(target, destComps, owner: owner)
                let plain = items.indices.filter { !archives.contains($0) }
                if !plain.isEmpty {
                    _ = try Engine.unpack(into: dir, label: label, plain: LayerUnpacker.PlainCopy()) { sink in
                        let writer = try LayerDiffWriter(sink: sink)
                        writer.rewrite = rewrite
                        for i in plain {
                            let item = items[i]
                            // A file keeps the name it was given by (a symlink's, not its target's).
                            try self.write(item, top: item.isDirectory ? [] : Engine.lastComponent(item.path), root: root, to: writer)
                        }
                        try writer.close()
                    }
                }
                for i in archives.sorted() { try BuildRun.unpackArchive(items[i], into: dir) }
            } else {
                guard let name = destComps.last, let item = items.first else { throw StrataError(.invalidArgument, "no destination") }
                let dir = try BuildRun.makeDirectories(target, Array(destComps.dropLast()), owner: owner)
                _ = try Engine.unpack(into: dir, label: label, plain: LayerUnpacker.PlainCopy()) { sink in
                    let writer = try LayerDiffWriter(sink: sink)
                    writer.rewrite = rewrite
                    try self.write(item, top: name, root: root, to: writer)
                    try writer.close()
                }
            }
        }
        try addLayer(staged, createdBy: createdBy, key: key, &state)
        return false
    }

    /// The tree of `image` (a container of it, mounted for the step; an empty directory for
    /// none), with what undoes that added to `cleanups`.
    func openTree(_ image: Digest?, what: String, cleanups: inout [() -> Void]) throws -> CopyRoot {
        let store = engine.store
        guard let image else {
            let name = Array("build-\(Store.randomID())".utf8)
            try store.tmpDir.mkdirOrThrow(name, mode: 0o755)
            cleanups.append { try? store.tmpDir.removeTree(name) }
            return CopyRoot(dir: try store.tmpDir.walkInto(name), ignore: IgnorePatterns(), what: what)
        }
        let id = try store.createContainer(image: image.string, name: "build-" + Store.randomID().prefix(16), initLayer: false)
        let engine = self.engine
        cleanups.append { try? engine.removeContainer(id, force: true) }
        let rootfs = try store.mountContainer(id)
        cleanups.append { try? store.unmountContainer(id, force: true) }
        return CopyRoot(dir: try Directory.open(rootfs), ignore: IgnorePatterns(), what: what)
    }

    /// The sources `pattern` names in `root`: one path, or every match of its wildcards
    /// (Go's path.Match per component), minus what .dockerignore excludes.
    func match(_ pattern: String, in root: CopyRoot) throws -> [CopyItem] {
        let comps = Engine.containerComponents(pattern).map(\.display)
        let notFound = StrataError(.notFound, "\(pattern): no such file or directory in \(root.what)\(root.ignore.isEmpty ? "" : " (or excluded by .dockerignore)")")
        func item(_ p: [String]) throws -> CopyItem? {
            let path = p.joined(separator: "/")
            if !path.isEmpty, root.ignore.excludes(path) { return nil }
            guard let source = try? Engine.source(root.dir, p.map { Array($0.utf8) }, contentsOnly: false, followLink: true, display: pattern) else { return nil }
            return CopyItem(source: source, path: path)
        }
        guard comps.contains(where: GlobMatch.hasMeta) else {
            guard let one = try item(comps) else { throw notFound }
            return [one]
        }
        var current: [[String]] = [[]]
        for c in comps {
            var next: [[String]] = []
            for p in current {
                guard GlobMatch.hasMeta(c) else { next.append(p + [c]); continue }
                guard case .success(let d) = Engine.directory(root.dir, p.map { Array($0.utf8) }) else { continue }
                for name in try d.entries().map(\.display).sorted() where try GlobMatch.match(c, name) {
                    next.append(p + [name])
                }
            }
            current = next
        }
        let found = try current.compactMap(item)
        guard !found.isEmpty else { throw notFound }
        return found
    }

    /// Writes `item` to `writer`: a file as `top`, a directory's contents under `top`.
    func write(_ item: CopyItem, top: PathBytes, root: CopyRoot, to writer: LayerDiffWriter) throws {
        let src = item.source
        guard item.isDirectory else {
            try writer.write([.entry(path: top, directory: src.parent, name: src.name, stat: src.stat, opaque: false)])
            return
        }
        let dir = src.name == [UInt8(ascii: ".")] ? src.parent : try src.parent.walkInto(src.name)
        try walk(dir, prefix: top, path: item.path, root: root, writer: writer, depth: 0)
    }

    private func walk(_ dir: Directory, prefix: PathBytes, path: String, root: CopyRoot, writer: LayerDiffWriter, depth: Int) throws {
        guard depth < Engine.copyDepthLimit else {
            throw StrataError(.tooLarge, "\(path): more than \(Engine.copyDepthLimit) directories deep")
        }
        for name in try dir.entries().sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let st = try dir.lstat(name) else { continue }
            let rel = path.isEmpty ? name.display : path + "/" + name.display
            if !root.ignore.isEmpty, root.ignore.excludes(rel) {
                // An excluded directory is still walked when an exception may take something below it.
                guard st.kind == .directory, root.ignore.mayIncludeBelow(rel) else { continue }
            }
            let entry = prefix.isEmpty ? name : prefix + [UInt8(ascii: "/")] + name
            try writer.write([.entry(path: entry, directory: dir, name: name, stat: st, opaque: false)])
            if st.kind == .directory {
                let sub = try dir.walkInto(name)
                if sub.handle.isKernelFilesystem { continue }
                try walk(sub, prefix: entry, path: rel, root: root, writer: writer, depth: depth + 1)
            }
        }
    }

    /// Headers as COPY writes them: owned by `owner` (nil: as they are), `chmod`'s mode, times clamped.
    func rewrite(owner: (uid: UInt32, gid: UInt32), chmod: UInt32?) -> (inout PaxHeader) -> Void {
        BuildRun.rewrite(owner: owner, chmod: chmod, clamp: timestamp)
    }

    static func rewrite(owner: (uid: UInt32, gid: UInt32)?, chmod: UInt32?, clamp: Int64) -> (inout PaxHeader) -> Void {
        let clampTimes = LayerDiffWriter.clampingTimes(to: clamp)
        return { h in
            if let owner {
                h.uid = owner.uid
                h.gid = owner.gid
            }
            if let chmod { h.permissions = chmod }
            clampTimes(&h)
        }
    }

    /// `--chown USER[:GROUP]` in the stage's own /etc/passwd and /etc/group; a user without a
    /// group takes the user's number as the group's (Docker's rule). Root when not given.
    static func owner(_ spec: String?, in root: Directory) throws -> (uid: UInt32, gid: UInt32) {
        guard let spec, !spec.isEmpty else { return (0, 0) }
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let files = RootfsFiles(root: root)
        let uid = try UInt32(parts[0]) ?? files.user(parts[0]).uid
        guard parts.count == 2 else { return (uid, uid) }
        let gid = try UInt32(parts[1]) ?? files.user("0:" + parts[1]).gid
        return (uid, gid)
    }

    /// Whether ADD unpacks this source: a regular file that reads as a tar archive (plain,
    /// gzip, bzip2, xz or zstd), as Docker tells one.
    static func isArchive(_ item: CopyItem) -> Bool {
        guard item.source.stat.kind == .regular, item.source.stat.size >= 512,
              let f = try? item.source.parent.openWalked(item.source.name, as: item.source.stat),
              let d = try? Decompressor(StreamSource(handle: f), label: item.path),
              let reader = try? TarReader(d, label: item.path),
              let first = try? reader.next() else { return false }
        return first.path.count > 0
    }

    /// A tar archive from the context unpacked into `dir` (its own owners and modes; the
    /// hardened unpacker: nothing in it lands outside `dir`).
    static func unpackArchive(_ item: CopyItem, into dir: Directory) throws {
        let f = try item.source.parent.openWalked(item.source.name, as: item.source.stat)
        let unpacker = LayerUnpacker(root: dir, label: "ADD \(item.path)", recorder: nil)
        unpacker.plain = LayerUnpacker.PlainCopy()
        try unpacker.apply(try TarReader(try Decompressor(StreamSource(handle: f), label: item.path), label: item.path))
    }
}
