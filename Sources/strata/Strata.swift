import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GRDB
import Logging
import StrataCore
import StrataFormats
import StrataArchive
import StrataLauncher
import StrataStore

@main
enum Main {
    static func main() {
        // Deep layer trees are walked with one fd per level: allow as many as the hard limit.
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        Strata.main(GlobalOptions.hoisted(Array(CommandLine.arguments.dropFirst())))
    }
}

struct Strata: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata",
        abstract: "A layered container image store and union-mount manager.",
        discussion: """
            Exit codes: 0 success; 1 the input was refused (bad archive, digest mismatch, unsafe \
            entry, over a limit); 2 not found; 3 conflict or in use; 64 usage; 70 internal error; \
            71 system error.
            """,
        subcommands: [Load.self, Import.self, Images.self, Layers.self, History.self, Inspect.self, Tag.self,
                      Rmi.self, Save.self, GC.self, Check.self, Create.self, Mount.self, Umount.self, Rm.self,
                      Ps.self, Diff.self, Commit.self, Run.self, Bundle.self]
    )
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store directory (also STRATA_ROOT).", valueName: "DIR"))
    var root: String?

    @Option(name: .long, help: ArgumentHelp("Union driver of a new store: overlay or vfs (default: overlay if it works here).", valueName: "NAME"))
    var driver: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    @Flag(name: [.short, .long], help: "Print only results, no progress.")
    var quiet = false

    /// Global options may come before the command (`strata --root DIR load X`), as with
    /// docker and podman; the parser wants them after it, so they are moved there.
    static func hoisted(_ args: [String]) -> [String] {
        var leading: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "--root" || a == "--log-level" || a == "--driver" {
                guard i + 1 < args.count else { break }
                leading += [a, args[i + 1]]
                i += 2
            } else if a.hasPrefix("--root=") || a.hasPrefix("--log-level=") || a.hasPrefix("--driver=") || a == "--quiet" || a == "-q" {
                leading.append(a)
                i += 1
            } else {
                break
            }
        }
        guard i < args.count, !leading.isEmpty else { return args }
        return [args[i]] + leading + args[(i + 1)...]
    }

    var rootPath: String {
        root ?? ProcessInfo.processInfo.environment["STRATA_ROOT"] ?? Store.defaultRoot
    }

    func makeLogger() throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("invalid --log-level \"\(logLevel)\"")
        }
        var logger = Logger(label: "strata") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = level
        return logger
    }

    func openStore() throws -> Store {
        try Store(root: rootPath, driver: driver, logger: makeLogger())
    }
}

/// Runs a command body, turning a `StrataError` into one message on stderr and an exit code.
func run(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as StrataError {
        FileHandle.standardError.write(Data("strata: \(e)\n".utf8))
        throw ExitCode(exitCode(for: e.code))
    } catch let e as DatabaseError {
        throw ExitCode(report(e))
    }
}

/// A database error the code did not turn into a `StrataError`: SQLite's own message (never
/// the SQL statement, which `DatabaseError.description` carries) and the system exit code.
func report(_ e: DatabaseError) -> Int32 {
    printErr("strata: the store database refused the change: \(e.message ?? "\(e.resultCode)"); run `strata check`")
    return 71
}

func exitCode(for code: StrataError.Code) -> Int32 {
    switch code {
    case .invalidFormat, .unsafeEntry, .digestMismatch, .sizeMismatch, .tooLarge, .invalidDigest, .unsupported: return 1
    case .notFound: return 2
    case .conflict, .inUse, .alreadyExists: return 3
    case .invalidArgument: return 64
    case .system: return 71
    default: return 70
    }
}

func printErr(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Load progress on stderr. On a terminal, a status line shows each layer being read (bytes,
/// rate) and is replaced by one line per finished layer; otherwise only the per-layer result
/// lines ("unpacked", "exists") are printed; `--quiet` prints none.
final class LoadProgress: @unchecked Sendable {
    private let lock = NSLock()
    private let tty = isatty(2) != 0
    private var active: [ChainID: (bytes: Int64, total: Int64, start: Date)] = [:]
    private var statusShown = false

    func handler(quiet: Bool) -> @Sendable (LayerEvent) -> Void {
        if quiet { return { _ in } }
        return { event in self.handle(event) }
    }

    private func handle(_ event: LayerEvent) {
        lock.lock()
        defer { lock.unlock() }
        switch event {
        case .exists(let i, let n, let c):
            line("layer \(i + 1)/\(n) \(c.digest.short): exists")
        case .started(_, _, let c, let total):
            active[c] = (0, total, Date())
            status()
        case .reading(let c, let bytes, let total):
            if let a = active[c] { active[c] = (bytes, total, a.start) }
            status()
        case .unpacked(let i, let n, let c, let bytes, let seconds):
            active[c] = nil
            let rate = seconds > 0 ? " (\(Format.bytes(Int64(Double(bytes) / seconds)))/s)" : ""
            line("layer \(i + 1)/\(n) \(c.digest.short): unpacked \(Format.bytes(bytes)) in \(String(format: "%.2f", seconds))s\(rate)")
        }
    }

    private func line(_ s: String) {
        if statusShown { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
        statusShown = false
        printErr(s)
        status()
    }

    private func status() {
        guard tty, !active.isEmpty else { return }
        let parts = active.sorted { $0.key.digest < $1.key.digest }.map { c, a -> String in
            let secs = Date().timeIntervalSince(a.start)
            let pct = a.total > 0 ? Int(Double(a.bytes) * 100 / Double(a.total)) : 0
            let rate = secs > 0.05 ? " \(Format.bytes(Int64(Double(a.bytes) / secs)))/s" : ""
            return "\(c.digest.short) \(pct)% \(Format.bytes(a.bytes))/\(Format.bytes(a.total))\(rate)"
        }
        FileHandle.standardError.write(Data(("\r\u{1b}[K" + parts.joined(separator: " | ")).utf8))
        statusShown = true
    }
}

enum Format {
    /// Sizes as Docker prints them (SI units).
    static func bytes(_ n: Int64) -> String { ByteCount.describe(n) }

    static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        var widths = Array(repeating: 0, count: first.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i] + 3, withPad: " ", startingAt: 0) }
                .joined()
        }.joined(separator: "\n")
    }

    static func json<T: Encodable>(_ value: T) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(value), as: UTF8.self)
    }
}

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load images from a docker-archive, an oci-archive, or an OCI layout directory.",
        discussion: "The format is detected from the content. PATH may be - for standard input.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Archive file, OCI layout directory, or - for standard input.") var path: String
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
            options.progress = LoadProgress().handler(quiet: global.quiet)
            let loaded = try store.load(path: path, options: options)
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
    static let configuration = CommandConfiguration(
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
    static let configuration = CommandConfiguration(abstract: "List images.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "JSON: an array of {id, tags, diffIDs, size, created, os, architecture}.") var json = false
    @Flag(name: .long, help: "Show full image IDs.") var noTrunc = false

    func run() throws {
        try strata.run {
            let images = try global.openStore().images()
            if json { print(try Format.json(images)); return }
            var rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
            for i in images {
                let id = noTrunc ? i.id : String(i.id.dropFirst(7).prefix(12))
                let created = i.created ?? ""
                if i.tags.isEmpty {
                    rows.append(["<none>", "<none>", id, created, Format.bytes(i.size)])
                }
                for t in i.tags {
                    guard let cut = t.lastIndex(of: ":") else { rows.append([t, "", id, created, Format.bytes(i.size)]); continue }
                    rows.append([String(t[..<cut]), String(t[t.index(after: cut)...]), id, created, Format.bytes(i.size)])
                }
            }
            print(Format.table(rows))
        }
    }
}

struct Layers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the layers in the store with their parents.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "JSON: an array of {chainID, diffID, parent, size, images, journal, opaqueRoot}.") var json = false
    @Flag(name: .long, help: "Show the parent→child forest, with sizes and the images at each layer.") var tree = false

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            let layers = try store.layers()
            if json { print(try Format.json(layers)); return }
            if tree { print(try LayerTree.render(layers, images: store.images())); return }
            var rows = [["CHAIN ID", "PARENT", "DIFF ID", "SIZE", "IMAGES"]]
            let short: (String) -> String = { String($0.dropFirst(7).prefix(12)) }
            for l in layers {
                rows.append([short(l.chainID), l.parent.map(short) ?? "-", short(l.diffID), Format.bytes(l.size),
                             l.images.map(short).joined(separator: ",")])
            }
            print(Format.table(rows))
        }
    }
}

enum ByteSize {
    /// `123`, `64k`, `512m`, `32g` (binary units).
    static func parse(_ s: String, what: String) throws -> Int64 {
        let lower = s.lowercased()
        var digits = lower
        var mult: Int64 = 1
        if let last = lower.last, let m = ["k": Int64(1) << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40][String(last)] {
            digits = String(lower.dropLast())
            mult = m
        } else if lower.hasSuffix("b") {
            digits = String(lower.dropLast())
        }
        guard let n = Int64(digits), n > 0, n <= Int64.max / mult else {
            throw StrataError(.invalidArgument, "invalid \(what) \"\(s)\": expected a positive size like 512m or 32g")
        }
        return n * mult
    }
}

struct Save: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Save images to a docker-archive, an oci-archive or an OCI layout directory.",
        discussion: "Layer tars are rebuilt byte-exact, so diffIDs and image IDs survive. Images share common layers once.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Images: tag, ID or unique ID prefix.") var images: [String]
    @Option(name: [.short, .long], help: "Output file, - for standard output, or a directory for oci-dir.") var output: String
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
            if output == "-" && f == .ociDir {
                throw StrataError(.invalidArgument, "oci-dir needs a directory, not standard output")
            }
            if output == "-" && isatty(1) != 0 {
                throw StrataError(.invalidArgument, "refusing to write an archive to a terminal; redirect standard output or use -o FILE")
            }
            var options = SaveOptions()
            options.format = f
            options.compression = c
            let quiet = global.quiet
            options.progress = { if !quiet { printErr($0) } }
            try global.openStore().save(images, to: output, options: options)
        }
    }
}

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show an image's layers, bottom to top, with how each was made.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Image: tag, ID or unique ID prefix.") var image: String
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
                if e.emptyLayer { layer = "<empty>" } else { n += 1; layer = e.chainID.map { String($0.dropFirst(7).prefix(12)) } ?? "<missing>" }
                var by = (e.createdBy ?? "").replacingOccurrences(of: "\n", with: " ")
                if !noTrunc && by.count > 60 { by = String(by.prefix(57)) + "..." }
                rows.append([e.emptyLayer ? "-" : String(n), layer, e.created ?? "", e.emptyLayer ? "0B" : Format.bytes(e.size), by])
            }
            print(Format.table(rows))
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show an image or a layer as JSON; with --files, what a layer adds, changes and deletes.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Image (tag, ID, ID prefix) or layer (chainID or prefix).") var name: String
    @Option(name: .long, help: "image or layer, when a prefix matches both.") var type: String?
    @Flag(name: .long, help: "For a layer: its changes (A/C/D) with sizes and the bytes it hides below.") var files = false
    @Flag(name: .long, help: "With --files: JSON instead of a table.") var json = false

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            if let type, type != "image" && type != "layer" {
                throw StrataError(.invalidArgument, "invalid --type \"\(type)\": expected image or layer")
            }
            let image: Digest? = type == "layer" ? nil : try? store.resolveImage(name)
            let layer: LayerRecord? = type == "image" ? nil : try? store.resolveLayer(name)
            if image != nil && layer != nil {
                throw StrataError(.invalidArgument, "\"\(name)\" names both an image and a layer; add --type image or --type layer")
            }
            if let image {
                if files { throw StrataError(.invalidArgument, "--files is for layers; `strata history` lists an image's layers") }
                print(String(decoding: try store.inspectImage(image), as: UTF8.self))
            } else if let layer {
                if files {
                    let changes = try store.layerChanges(layer)
                    if json { print(try Format.json(changes)); return }
                    var rows = [["", "PATH", "SIZE", "HIDES"]]
                    for c in changes {
                        rows.append([c.kind, c.path, Format.bytes(c.size), c.hidden > 0 ? Format.bytes(c.hidden) : "-"])
                    }
                    print(Format.table(rows))
                    let wasted = changes.reduce(Int64(0)) { $0 + $1.hidden }
                    print("\(changes.count) changes; \(Format.bytes(wasted)) of the layers below hidden (wasted)")
                    if layer.journal == "raw" { print("note: the raw layer tar is kept: \(layer.journalNote ?? "")") }
                } else {
                    print(String(decoding: try store.inspectLayer(layer), as: UTF8.self))
                }
            } else {
                throw StrataError(.notFound, "no image or layer \"\(name)\" in the store")
            }
        }
    }
}

struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Tag an image: strata tag SOURCE TARGET.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Image: tag, ID or unique ID prefix.") var source: String
    @Argument(help: "New name NAME[:TAG].") var target: String
    func run() throws { try strata.run { try global.openStore().tag(source, target) } }
}

struct Rmi: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove images; layers no other image uses are freed at once.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Images: tag, ID or unique ID prefix.") var images: [String]
    @Flag(name: [.short, .long], help: "Remove an image with several tags by ID.") var force = false
    func run() throws {
        try strata.run {
            let r = try global.openStore().removeImages(images, force: force)
            for t in r.untagged { print("Untagged: \(t)") }
            for i in r.deletedImages { print("Deleted: \(i)") }
            if !global.quiet { for l in r.deletedLayers { printErr("freed layer \(l)") } }
        }
    }
}

struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc", abstract: "Remove unused layers, unreferenced blobs and leftovers.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "JSON report.") var json = false
    func run() throws {
        try strata.run {
            let store = try global.openStore()
            var r = try store.garbageCollect()
            r.removedCgroups = ContainerLeftovers.removeCgroups()
            if json { print(try Format.json(r)); return }
            print("removed \(r.deletedLayers.count) layers, \(r.deletedBlobs.count) blobs, \(r.removedCgroups.count) cgroups; \(Format.bytes(r.bytesFreed)) freed")
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the store: layers against their tars, blobs against their digests, images, containers, leftovers.",
        discussion: """
            Prints one line per problem (what, what is wrong, what to do) and a summary; exits 1 on \
            any problem. --repair moves broken layers out of the way and removes the images that \
            use them, so the next load brings them back; images with containers are untagged and \
            kept (--force removes the containers).
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Also an ok line per layer.") var verbose = false
    @Flag(name: .long, help: "JSON: {problems: [{subject, problem, advice}], summary, repaired}.") var json = false
    @Flag(name: .long, help: "Mend what can be mended, then check again.") var repair = false
    @Flag(name: .long, help: "With --repair: also remove containers on what is broken.") var force = false

    struct Output: Encodable {
        var problems: [CheckProblem]
        var summary: CheckSummary
        var repaired: Store.RepairReport?
    }

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            let verbose = self.verbose && !json
            var summary = CheckSummary()
            var problems = try store.check(summary: &summary) { if verbose { print($0) } } + ContainerLeftovers.problems()
            var repaired: Store.RepairReport?
            if repair && !problems.isEmpty {
                let r = try store.repair(problems, force: force)
                if !ContainerLeftovers.problems().isEmpty { _ = ContainerLeftovers.removeCgroups() }
                repaired = r
                if !json {
                    for p in problems { print("problem: \(p)") }
                    for a in r.actions { print("repaired: \(a)") }
                    for l in r.left { print("left: \(l)") }
                }
                problems = try store.check(summary: &summary) + ContainerLeftovers.problems()
            }
            if json {
                print(try Format.json(Output(problems: problems, summary: summary, repaired: repaired)))
            } else {
                if repaired == nil || !problems.isEmpty { for p in problems { print("problem: \(p)") } }
                let what = "\(summary.layers) layers, \(summary.images) images, \(summary.blobs) blobs, \(summary.containers) containers"
                print(problems.isEmpty ? "store is consistent: checked \(what)"
                                       : "\(problems.count) problem\(problems.count == 1 ? "" : "s") in \(what)")
            }
            if !problems.isEmpty { throw ExitCode(1) }
        }
    }
}

/// The parent→child forest of layers, drawn with box characters; each node shows its short
/// chainID, size, and the images whose top layer it is.
enum LayerTree {
    static func render(_ layers: [LayerSummary], images: [ImageSummary]) -> String {
        let short: (String) -> String = { String($0.dropFirst(7).prefix(12)) }
        var children: [String: [LayerSummary]] = [:]
        var roots: [LayerSummary] = []
        let known = Set(layers.map(\.chainID))
        for l in layers {
            if let p = l.parent, known.contains(p) { children[p, default: []].append(l) } else { roots.append(l) }
        }
        // Images by their top layer: the chainID of their whole diffID list.
        var tops: [String: [String]] = [:]
        for i in images {
            guard let ids = try? i.diffIDs.map(DiffID.init(parsing:)), let top = ChainID.chain(ids).last else { continue }
            let names = i.tags.isEmpty ? [short(i.id)] : i.tags
            tops[top.description, default: []] += names
        }
        var lines: [String] = []
        func draw(_ l: LayerSummary, _ prefix: String, _ last: Bool, _ isRoot: Bool) {
            let branch = isRoot ? "" : (last ? "└── " : "├── ")
            var line = prefix + branch + short(l.chainID) + "  " + Format.bytes(l.size)
            if l.opaqueRoot { line += "  (hides all below)" }
            if let names = tops[l.chainID] { line += "  ← " + names.sorted().joined(separator: ", ") }
            lines.append(line)
            let kids = (children[l.chainID] ?? []).sorted { $0.chainID < $1.chainID }
            let childPrefix = isRoot ? prefix : prefix + (last ? "    " : "│   ")
            for (i, k) in kids.enumerated() { draw(k, childPrefix, i == kids.count - 1, false) }
        }
        for (i, r) in roots.sorted(by: { $0.chainID < $1.chainID }).enumerated() {
            draw(r, "", i == roots.count - 1, true)
        }
        return lines.joined(separator: "\n")
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a container from an image; prints its ID on the last line.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Image: tag, ID or unique ID prefix.") var image: String
    @Option(name: .long, help: "A name for the container.") var name: String?
    func run() throws { try strata.run { print(try global.openStore().createContainer(image: image, name: name)) } }
}

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mount a container's rootfs; prints its path on the last line. Mounting twice is counted.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container: name, ID or unique ID prefix.") var container: String
    func run() throws { try strata.run { print(try global.openStore().mountContainer(container)) } }
}

struct Umount: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Drop one mount of a container; unmount when none is left.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container: name, ID or unique ID prefix.") var container: String
    @Flag(name: [.short, .long], help: "Unmount now, whatever the count.") var force = false
    func run() throws { try strata.run { try global.openStore().unmountContainer(container, force: force) } }
}

struct Rm: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove containers.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Containers: name, ID or unique ID prefix.") var containers: [String]
    @Flag(name: [.short, .long], help: "Also when mounted or running (kills and unmounts).") var force = false
    func run() throws {
        try strata.run {
            let store = try global.openStore()
            for c in containers {
                let id = try store.container(c).id
                // With -f, whatever still runs in the container's cgroups goes first (a container
                // whose strata was killed has no parent to stop it).
                if force { ContainerCgroups.release(id: id) }
                try store.removeContainer(c, force: force)
                ContainerCgroups.release(id: id)
                print(c)
            }
        }
    }
}

struct Ps: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List mounted or running containers (-a: all).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "All containers.") var all = false
    @Flag(name: .long, help: "JSON: an array of {id, name, image, imageTags, driver, state, mountCount, pid, created, sizeOfChanges}.")
    var json = false
    func run() throws {
        try strata.run {
            let list = try global.openStore().containers(all: all)
            if json { print(try Format.json(list)); return }
            var rows = [["CONTAINER ID", "NAME", "IMAGE", "DRIVER", "STATE", "PID", "CHANGES"]]
            for c in list {
                rows.append([String(c.id.prefix(12)), c.name, c.imageTags.first ?? String(c.image.dropFirst(7).prefix(12)), c.driver,
                             c.state, c.pid.map(String.init) ?? "-", Format.bytes(c.sizeOfChanges)])
            }
            print(Format.table(rows))
        }
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show what a container changed: A added, C changed, D deleted.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container: name, ID or unique ID prefix.") var container: String
    @Flag(name: .long, help: "JSON: an array of {kind, path}.") var json = false
    func run() throws {
        try strata.run {
            let changes = try global.openStore().diff(container)
            if json { print(try Format.json(changes)); return }
            for c in changes { print("\(c.kind) \(c.path)") }
        }
    }
}

struct Commit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Commit a container's changes as a new layer and image; prints the image ID.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container: name, ID or unique ID prefix.") var container: String
    @Argument(help: "Tag the new image NAME[:TAG].") var reference: String?
    @Option(name: [.short, .long], help: "A comment for the history entry.") var message: String?
    @Option(name: [.short, .long], help: "The author.") var author: String?
    @Option(name: [.short, .long], help: "Apply a Dockerfile instruction to the config, e.g. 'CMD [\"sh\"]'.") var change: [String] = []
    func run() throws {
        try strata.run {
            let id = try global.openStore().commit(container, tag: reference, message: message, author: author, changes: change)
            print(id.string)
        }
    }
}
