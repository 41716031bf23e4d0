import ArgumentParser
import FoundationEssentials
import Logging
import StrataEngine
import StrataSystem
import StrataCore
import StrataFormats
import StrataArchive
import StrataLauncher
import StrataStore

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "load",
        abstract: "Load images from a docker-archive, an oci-archive, an OCI layout or a skopeo dir: directory.",
        discussion: "The format is detected from the content. PATH may be - for standard input.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Archive file, OCI layout directory, or - for standard input (the default when it is not a terminal).") var path: String?
    @Option(name: [.short, .customLong("input")], help: "The archive to read (as docker load -i).") var input: String?
    @Option(name: .long, help: "Platform to pick from multi-platform indexes (os/arch[/variant]).") var platform: String?
    @Option(name: .long, help: "Also tag the loaded image(s) NAME[:TAG].") var tag: [String] = []
    @Option(name: .long, help: "Refuse a layer over this many uncompressed bytes (suffixes k, m, g).")
    var maxLayerSize: String = "32g"
    @Option(name: .long, help: "Refuse a compressed or piped archive over this many bytes once spooled (default: 4 × --max-layer-size).")
    var maxArchiveSize: String?
    @Option(name: .long, help: "Refuse an image of more layers than this.") var maxLayers: Int = ImageArchiveReader.defaultMaxLayers

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            var options = LoadOptions()
            if let platform { options.platform = try Platform(parsing: platform) }
            options.extraTags = tag
            options.maxLayerSize = try ByteSize.parse(maxLayerSize, what: "--max-layer-size")
            options.maxArchiveSize = try maxArchiveSize.map { try ByteSize.parse($0, what: "--max-archive-size") }
            guard maxLayers > 0 else { throw StrataError(.invalidArgument, "invalid --max-layers \(maxLayers): expected a positive number") }
            options.maxLayers = maxLayers
            let progress = LoadProgress(quiet: global.quiet)
            options.progress = progress.handler
            if path != nil && input != nil { throw StrataError(.invalidArgument, "give the archive once: PATH or -i FILE") }
            guard let source = path ?? input ?? (isTerminal(0) ? nil : "-") else {
                throw StrataError(.invalidArgument, "load needs an archive: PATH, -i FILE, or the archive piped in")
            }
            let loaded: [LoadedImage]
            do {
                defer { progress.finish() }
                loaded = try store.load(path: source, options: options)
            }
            for image in loaded {
                if image.tags.isEmpty {
                    print("Loaded image ID: \(image.id)")
                } else {
                    for t in image.tags { print("Loaded image: \(t)") }
                }
            }
        }
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import",
        abstract: "Import a plain rootfs tarball (any compression) as a one-layer image.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Rootfs tar file, or - for standard input.") var path: String
    @Argument(help: "Tag the image NAME[:TAG].") var reference: String?
    @Option(name: .long, help: "Tag the image NAME[:TAG].") var tag: String?
    @Option(name: [.short, .long], help: "Apply a Dockerfile instruction to the config, e.g. 'CMD [\"sh\"]'.")
    var change: [String] = []
    @Option(name: [.short, .long], help: "A comment for the history entry.") var message: String?
    @Option(name: .long, help: "Refuse a layer over this many uncompressed bytes.") var maxLayerSize: String = "32g"

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            var options = LoadOptions()
            options.maxLayerSize = try ByteSize.parse(maxLayerSize, what: "--max-layer-size")
            let image = try store.importRootfs(path: path, tag: tag ?? reference, changes: change, message: message, options: options)
            if !global.quiet && image.layersExisting > 0 { printErr("layer 1/1: exists") }
            print(image.id.string)
        }
    }
}

struct Images: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "images", abstract: "List images.")

    /// Without a build's intermediate images (untagged images its cache names), as Docker and
    /// podman list.
    static func withoutIntermediates(_ images: [ImageView], store: Store) -> [ImageView] {
        let intermediate = store.buildIntermediates()
        return images.filter { !$0.tags.isEmpty || !intermediate.contains($0.record.id) }
    }
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "JSON: an array of {id, tags, diffIDs, size, created, os, architecture}.") var json = false
    @Flag(name: .long, help: "Show full image IDs.") var noTrunc = false
    @Flag(name: .long, help: "Show the manifest digest each image was loaded or pulled with.") var digests = false
    @Flag(name: .short, help: "Only the image IDs.") var quiet = false
    @Flag(name: [.short, .long], help: "Also the intermediate images of builds (untagged; the build cache).") var all = false
    @Argument(help: "Only the images of REPOSITORY[:TAG].") var reference: String?
    @Option(name: .long, help: "A template per row: {{.ID}}, {{.Repository}}, {{.Tag}}, {{.Digest}}, {{.CreatedSince}}, {{.CreatedAt}}, {{.Size}}, {{json .}}; or json.")
    var format: String?
    @Option(name: [.short, .long], help: "KEY=VALUE: dangling, reference, label, before, since (repeatable).") var filter: [String] = []

    func run() throws {
        try strata.run {
            let template = try format.map(RowTemplate.init)
            let filters = try Filters(filter, allowed: Images.filterKeys, command: "images")
            let store = try global.openStore()
            let all = try store.images()
            let images = try Images.filter(self.all ? all : Images.withoutIntermediates(all, store: store), filters, store: store)
                .filter { i in reference.map { r in i.tags.contains { Images.matches($0, r) } } ?? true }
            if json { print(try Format.json(images.map(ImageJSON.init))); return }
            if let template {
                var rows: [[String: String]] = []
                for image in images {
                    let i = ImageJSON(image)
                    let tags = i.tags.filter { t in reference.map { Images.matches(t, $0) } ?? true }
                    for t in tags.isEmpty ? ["<none>:<none>"] : tags {
                        let cut = t.lastIndex(of: ":").map { t[..<$0] }.map(String.init) ?? t
                        rows.append(["ID": noTrunc ? i.id : i.id.shortID, "Repository": cut, "Tag": String(t.dropFirst(cut.count + 1)),
                                     "Digest": image.record.manifestDigest?.string ?? "<none>", "CreatedAt": i.created ?? "",
                                     "CreatedSince": Format.ago(i.created), "Size": Format.bytes(i.size)])
                    }
                }
                let headers = ["ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"]
                let text = try template.output(rows, headers: headers) { try Format.compactJSON($0) }
                if !text.isEmpty || template.table { print(text) }
                return
            }
            if quiet { for i in images { print(noTrunc ? i.id.string : i.id.string.shortID) }; return }
            var rows = [["REPOSITORY", "TAG"] + (digests ? ["DIGEST"] : []) + ["IMAGE ID", "CREATED", "SIZE"]]
            for image in images {
                let i = ImageJSON(image)
                let id = noTrunc ? i.id : i.id.shortID
                // Per repository, as Docker: the digest a pull resolved or a push sent there.
                let known = digests ? Dictionary(try store.repoDigests(of: image.record.id).map { ($0.repository, $0.digest) },
                                                 uniquingKeysWith: { a, _ in a }) : [:]
                func digest(_ repository: String) -> [String] {
                    digests ? [known[repository] ?? image.record.manifestDigest?.string ?? "<none>"] : []
                }
                let rest = [id, Format.ago(i.created), Format.bytes(i.size)]
                if i.tags.isEmpty { rows.append(["<none>", "<none>"] + digest("") + rest) }
                for t in i.tags where reference.map({ Images.matches(t, $0) }) ?? true {
                    guard let cut = t.lastIndex(of: ":"), !t[cut...].contains("/") else { rows.append([t, ""] + digest(t) + rest); continue }
                    rows.append([String(t[..<cut]), String(t[t.index(after: cut)...])] + digest(String(t[..<cut])) + rest)
                }
            }
            print(Format.table(rows))
        }
    }
}

extension Images {
    /// Whether stored tag `tag` is what the user's `REPOSITORY[:TAG]` names (Docker Hub's and
    /// podman's localhost names matched by their short form too).
    static func matches(_ tag: String, _ ref: String) -> Bool {
        func split(_ s: String) -> (String, String?) {
            guard let cut = s.lastIndex(of: ":"), !s[cut...].contains("/") else { return (s, nil) }
            return (String(s[..<cut]), String(s[s.index(after: cut)...]))
        }
        let (repo, t) = split(tag), (wantRepo, wantTag) = split(ref)
        let repos = [wantRepo, "docker.io/library/" + wantRepo, "docker.io/" + wantRepo, "localhost/" + wantRepo]
        return repos.contains(repo) && (wantTag == nil || wantTag == t)
    }
}

struct Layers: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "layers", abstract: "List the layers in the store with their parents.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "JSON: an array of {chainID, diffID, parent, size, images, journal, opaqueRoot}.") var json = false
    @Flag(name: .long, help: "Show the parent→child forest, with sizes and the images at each layer.") var tree = false

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            let layers = try store.layers().map(LayerJSON.init)
            if json { print(try Format.json(layers)); return }
            if tree { print(LayerTree.render(layers, images: try store.images().map(ImageJSON.init))); return }
            var rows = [["CHAIN ID", "PARENT", "DIFF ID", "SIZE", "IMAGES"]]
            for l in layers {
                rows.append([l.chainID.shortID, l.parent.map(\.shortID) ?? "-", l.diffID.shortID, Format.bytes(l.size),
                             l.images.map(\.shortID).joined(separator: ",")])
            }
            print(Format.table(rows))
        }
    }
}

struct Save: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "save",
        abstract: "Save images to a docker-archive, an oci-archive or an OCI layout directory.",
        discussion: "Layer tars are rebuilt byte-exact, so diffIDs and image IDs survive. Images share common layers once.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Images: tag, ID or unique ID prefix.", completion: NameCompletion.images) var images: [String]
    @Option(name: [.short, .long], help: "Output file, - for standard output, or a directory for oci-dir (default: standard output when it is not a terminal).") var output: String?
    @Option(name: .long, help: "docker-archive, oci-archive or oci-dir.") var format: String = "docker-archive"
    @Option(name: .long, help: "Layer compression: none, gzip or zstd.") var compress: String = "none"

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("name at least one image") }
    }

    func run() throws {
        try strata.run {
            guard let f = SaveFormat(rawValue: format) else {
                throw StrataError(.invalidArgument, "invalid --format \"\(format)\": expected docker-archive, oci-archive or oci-dir")
            }
            guard let c = StrataArchive.Compression(rawValue: compress), [.none, .gzip, .zstd].contains(c) else {
                throw StrataError(.invalidArgument, "invalid --compress \"\(compress)\": expected none, gzip or zstd")
            }
            // As `docker save`: without -o the archive goes to standard output, unless that is a terminal.
            let output = self.output ?? "-"
            if output == "-" && f == .ociDir {
                throw StrataError(.invalidArgument, "oci-dir needs a directory, not standard output; give -o DIR")
            }
            if output == "-" && isTerminal(1) {
                throw StrataError(.invalidArgument, "refusing to write an archive to a terminal; redirect standard output or use -o FILE")
            }
            var options = SaveOptions()
            options.format = f
            options.compression = c
            let quiet = global.quiet
            if c == .zstd && !quiet {
                printErr("note: zstd layers load in Docker 23 and later, podman and containerd; older Docker cannot load them")
            }
            options.progress = { if !quiet { printErr($0) } }
            try global.openStore().save(images, to: output, options: options)
        }
    }
}

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "history", abstract: "Show an image's layers, bottom to top, with how each was made.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Image: tag, ID or unique ID prefix.", completion: NameCompletion.images) var image: String
    @Flag(name: .long, help: "JSON: an array of {created, createdBy, comment, emptyLayer, chainID, diffID, size}.") var json = false
    @Flag(name: .long, help: "Do not truncate created_by.") var noTrunc = false

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            let entries = try store.history(try store.resolveImage(image))
            if json { print(try Format.json(entries)); return }
            var rows = [["#", "LAYER", "CREATED", "SIZE", "CREATED BY"]]
            var n = 0
            for e in entries {
                let layer: String
                if e.emptyLayer { layer = "<empty>" } else { n += 1; layer = e.chainID.map(\.shortID) ?? "<missing>" }
                var by = (e.createdBy ?? "").replacingOccurrences(of: "\n", with: " ")
                if !noTrunc && by.count > 60 { by = String(by.prefix(57)) + "..." }
                rows.append([e.emptyLayer ? "-" : String(n), layer, e.created ?? "", e.emptyLayer ? "0B" : Format.bytes(e.size), by])
            }
            print(Format.table(rows))
        }
    }
}


struct Rmi: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rmi",
        abstract: "Remove images; layers no other image uses are freed at once.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Images: tag, ID or unique ID prefix.", completion: NameCompletion.images) var images: [String]
    @Flag(name: [.short, .long], help: "Remove an image with several tags by ID.") var force = false
    func run() throws {
        try strata.run {
            // As `docker rmi a b c`: each name on its own, every failure reported, the first one's exit code.
            let store = try global.openStore()
            let quiet = global.quiet
            try reportEach(images, eachResult(images) { ref in
                let r = try store.removeImages([ref], force: force)
                for t in r.untagged { print("Untagged: \(t)") }
                for i in r.deletedImages { print("Deleted: \(i)") }
                if !quiet { for l in r.deletedLayers { printErr("freed layer \(l)") } }
            }, echo: false)
        }
    }
}

struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tag", abstract: "Tag an image: strata tag SOURCE TARGET.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Image: tag, ID or unique ID prefix.", completion: NameCompletion.images) var source: String
    @Argument(help: "New name NAME[:TAG].") var target: String
    func run() throws { try strata.run { try global.openStore().tag(source, target) } }
}
