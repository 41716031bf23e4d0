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

/// One source COPY matched: where it is, its path from the root as written (its name comes
/// from there), and the path it is at once symlinks are followed (what .dockerignore judges).
struct CopyItem {
    var source: CopySource
    var path: String
    var realPath: String
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
        for value in args + [destText, from ?? "", chownSpec ?? ""] where value.utf8.contains(0) {
            throw StrataError(.invalidArgument, "a NUL byte in \(value.debugDescription): no path or name holds one")
        }
        for s in args where s.contains("://") || s.hasPrefix("git@") {
            throw StrataError(.unsupported, "\(ins.keyword) of a URL (\(s)) is not supported: put the file in the build context, or fetch it in a RUN step")
        }
        let workdir = state.runtime.WorkingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        let destComps = Engine.containerComponents(destText.hasPrefix("/") ? destText : workdir + "/" + destText)
        let createdBy = Self.oneLine(ins.original)
        // Everything the result depends on besides the parent and the content, expanded, each
        // part on its own (never the instruction's text: an ARG changes what it says).
        let keyParts = [ins.keyword, chownSpec.map { "chown=" + $0 } ?? "no-chown", chmod.map { "chmod=" + String($0, radix: 8) } ?? "no-chmod",
                        "sources=\(args.count)"] + args + ["dest=" + destText]

        var cleanups: [() -> Void] = []
        defer { cleanups.reversed().forEach { $0() } }
        let root: CopyRoot
        let items: [CopyItem]
        // For the context: the digest of the tar the copy writes, and of each archive ADD unpacks.
        var expected: (plain: Digest, archives: [Int: Digest])?
        var key: Digest?
        if let from {
            // Another stage's or image's files: content-addressed by its ID.
            let image: Digest?, what: String, id: Digest
            if let s = stage(named: from) {
                guard let done = results[s.index] else { throw StrataError(.invalidArgument, "--from=\(from): stage \(s.label) is not built before this one") }
                var source = done
                (image, what, id) = (done.layersImage, "stage \(s.label)", try source.id())
            } else {
                let i = try baseImage(from)
                (image, what, id) = (i, "image \(from)", i)
            }
            key = cache.key(parent: try state.id(), step: keyParts + ["from=" + id.string])
            if let key, try useCache(key, &state) { return true }
            root = try openTree(image, what: what, cleanups: &cleanups)
            items = try args.flatMap { try match($0, in: root) }
        } else {
            root = CopyRoot(dir: context, ignore: ignore, what: "the build context")
            items = try args.flatMap { try match($0, in: root) }
        }
        let archives = isAdd ? Set(items.indices.filter { BuildRun.isArchive(items[$0]) }) : []
        let plain = items.indices.filter { !archives.contains($0) }
        // Where the files land, decided once from the stage's layers (a directory at DEST takes
        // them by their names), so that the tar hashed for the key is the tar written.
        let destIsDirectory = try destText.hasSuffix("/") || destText.hasSuffix("/.") || destText == "." || items.count > 1
            || args.contains { GlobMatch.hasMeta($0) } || !archives.isEmpty || items.first?.isDirectory == true
            || view(state).map { try $0.lookup(destComps).map { $0.kind == .directory } ?? false } ?? false
        guard destIsDirectory || !destComps.isEmpty else { throw StrataError(.invalidArgument, "no destination") }
        let names = plain.map { i -> PathBytes in
            destIsDirectory ? (items[i].isDirectory ? [] : Engine.lastComponent(items[i].path)) : destComps[destComps.count - 1]
        }
        // The context's owners are the host's: its files become root's (the unpack gives them
        // --chown's owner). Another stage's or image's keep theirs, as BuildKit keeps them.
        let streamOwner: (uid: UInt32, gid: UInt32)? = from == nil ? (0, 0) : nil
        let streamRewrite = BuildRun.rewrite(owner: streamOwner, chmod: chmod, clamp: timestamp)
        func writePlain(_ sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
            let writer = try LayerDiffWriter(sink: sink)
            writer.rewrite = streamRewrite
            for (n, i) in plain.enumerated() { try write(items[i], top: names[n], root: root, to: writer) }
            try writer.close()
        }
        if from == nil {
            let hash = HashSink()
            try writePlain { hash.digester.update($0) }
            var archiveDigests: [Int: Digest] = [:]
            var parts = keyParts + ["dir=\(destIsDirectory)", "content=" + hash.digester.finalize().string]
            for i in archives.sorted() {
                let d = try BuildRun.digestOfFile(items[i])
                archiveDigests[i] = d
                parts += ["archive=\(i)", d.string]
            }
            expected = (hash.digester.finalize(), archiveDigests)
            key = cache.key(parent: try state.id(), step: parts)
            if let key, try useCache(key, &state) { return true }
        }
        guard let key else { throw StrataError(.internalError, "no cache key for \(ins.keyword)") }
        let label = "\(ins.keyword) to \(destText)"
        let changedUnderUs = StrataError(.conflict, "the build context changed while \(ins.keyword) read it (a file was written or replaced); build again")

        let staged = try changeFiles(state, label: "the layer of \(ins.keyword)") { target in
            let owner = try BuildRun.owner(chownSpec, in: target)
            let unpackOwner: (uid: UInt32, gid: UInt32)? = chownSpec == nil ? nil : owner
            let dir = try BuildRun.makeDirectories(target, destIsDirectory ? destComps : Array(destComps.dropLast()), owner: owner)
            if !plain.isEmpty {
                // The tar written is hashed again: a context that changed since the key was taken
                // fails the step rather than record a layer under another content's key.
                let written = HashSink()
                _ = try Engine.unpack(into: dir, label: label, plain: LayerUnpacker.PlainCopy(owner: unpackOwner)) { sink in
                    try writePlain { chunk in written.digester.update(chunk); try sink(chunk) }
                }
                if let expected, written.digester.finalize() != expected.plain { throw changedUnderUs }
            }
            for i in archives.sorted() {
                let digest = try BuildRun.unpackArchive(items[i], into: dir)
                if let expected, expected.archives[i] != digest { throw changedUnderUs }
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
            // Judged where it really is too: a symlink to an excluded file does not bring it in.
            // What is read is that real path (no symlink left in it), so the judged file is the file.
            guard let r = BuildRun.resolve(p, in: root.dir) else { return nil }
            let real = r.joined(separator: "/")
            if !real.isEmpty, root.ignore.excludes(real) { return nil }
            guard let source = try? Engine.source(root.dir, r.map { Array($0.utf8) }, contentsOnly: false, followLink: false, display: pattern) else { return nil }
            return CopyItem(source: source, path: path, realPath: real)
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
        try walk(dir, prefix: top, path: item.realPath, root: root, writer: writer, depth: 0)
    }

    /// `comps` with every symlink on the way followed inside `root` (as openat2's
    /// RESOLVE_IN_ROOT would): the path the file really has there; nil when it is not there.
    /// Resolved as the kernel does: `..` steps back from what is already resolved (never
    /// cleaned away as text: `x/..` where x is a symlink is x's target's parent), a symlink's
    /// target is walked in its place, at most 40 of them.
    static func resolve(_ comps: [String], in root: Directory) -> [String]? {
        var done: [String] = [], rest = comps[...], hops = 0
        while let c = rest.first {
            rest = rest.dropFirst()
            if c == "." || c.isEmpty { continue }
            if c == ".." { _ = done.popLast(); continue }
            guard case .success(let dir) = Engine.directory(root, done.map { Array($0.utf8) }),
                  let st = try? dir.lstat(Array(c.utf8)) else { return nil }
            guard st.kind == .symlink else { done.append(c); continue }
            hops += 1
            guard hops <= 40, let target = try? dir.readlink(Array(c.utf8)), !target.isEmpty else { return nil }
            if target.first == UInt8(ascii: "/") { done = [] }
            rest = (target.split(separator: UInt8(ascii: "/")).map { String(decoding: $0, as: UTF8.self) } + rest)[...]
        }
        return done
    }

    private func walk(_ dir: Directory, prefix: PathBytes, path: String, root: CopyRoot, writer: LayerDiffWriter, depth: Int) throws {
        guard depth < ChangeScanner.depthLimit else {
            throw StrataError(.tooLarge, "\(path): more than \(ChangeScanner.depthLimit) directories deep, as deep as a layer's changes may go")
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
            // The host's integrity labels (IMA, EVM) are the host's, not the image's.
            h.xattrs.removeAll { $0.name == "security.ima" || $0.name == "security.evm" }
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
        let gid = parts.count == 2 ? try UInt32(parts[1]) ?? files.user("0:" + parts[1]).gid : uid
        // (2³² − 1 is chown's "leave as it is": a file would silently stay root's.)
        guard uid <= RootfsFiles.maxID, gid <= RootfsFiles.maxID else {
            throw StrataError(.invalidArgument, "invalid --chown \(spec): ids go up to \(RootfsFiles.maxID)")
        }
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
    /// hardened unpacker: nothing in it lands outside `dir`). The digest of the archive's bytes
    /// as they were read.
    static func unpackArchive(_ item: CopyItem, into dir: Directory) throws -> Digest {
        let f = try item.source.parent.openWalked(item.source.name, as: item.source.stat)
        let unpacker = LayerUnpacker(root: dir, label: "ADD \(item.path)", recorder: nil)
        unpacker.plain = LayerUnpacker.PlainCopy()
        let raw = HashingSource(StreamSource(handle: f))
        try unpacker.apply(try TarReader(try Decompressor(raw, label: item.path), label: item.path))
        // The rest of the file (after the tar's end) is part of what was hashed for the key.
        while try !raw.nextChunk().isEmpty {}
        return raw.finalize()
    }

    /// The digest of a context file's bytes.
    static func digestOfFile(_ item: CopyItem) throws -> Digest {
        let raw = HashingSource(StreamSource(handle: try item.source.parent.openWalked(item.source.name, as: item.source.stat)))
        while try !raw.nextChunk().isEmpty {}
        return raw.finalize()
    }
}
