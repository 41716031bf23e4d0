import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import StrataCore
import StrataFormats
import StrataArchive
import StrataStore

@main
enum Main {
    static func main() {
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
        subcommands: [Load.self, Import.self, Images.self, Layers.self, Save.self]
    )
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store directory (also STRATA_ROOT).", valueName: "DIR"))
    var root: String?

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
            if a == "--root" || a == "--log-level" {
                guard i + 1 < args.count else { break }
                leading += [a, args[i + 1]]
                i += 2
            } else if a.hasPrefix("--root=") || a.hasPrefix("--log-level=") || a == "--quiet" || a == "-q" {
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
        try Store(root: rootPath, logger: makeLogger())
    }
}

/// Runs a command body, turning a `StrataError` into one message on stderr and an exit code.
func run(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as StrataError {
        FileHandle.standardError.write(Data("strata: \(e)\n".utf8))
        throw ExitCode(exitCode(for: e.code))
    }
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

/// Prints per-layer progress lines to stderr.
func progressPrinter(quiet: Bool) -> @Sendable (LayerEvent) -> Void {
    if quiet { return { _ in } }
    return { event in
        switch event {
        case .exists(let i, let n, let c):
            printErr("layer \(i + 1)/\(n) \(c.digest.short): exists")
        case .started:
            break
        case .unpacked(let i, let n, let c, let bytes, let seconds):
            let rate = seconds > 0 ? " (\(Format.bytes(Int64(Double(bytes) / seconds)))/s)" : ""
            printErr("layer \(i + 1)/\(n) \(c.digest.short): unpacked \(Format.bytes(bytes)) in \(String(format: "%.2f", seconds))s\(rate)")
        }
    }
}

enum Format {
    /// Sizes as Docker prints them (SI units).
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var v = Double(n)
        var u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        return u == 0 ? "\(n)B" : String(format: v < 10 ? "%.2f%@" : v < 100 ? "%.1f%@" : "%.0f%@", v, units[u])
    }

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

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            var options = LoadOptions()
            if let platform { options.platform = try Platform(parsing: platform) }
            options.extraTags = tag
            options.maxLayerSize = try ByteSize.parse(maxLayerSize, what: "--max-layer-size")
            options.progress = progressPrinter(quiet: global.quiet)
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
                    let cut = t.lastIndex(of: ":")!
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

    func run() throws {
        try strata.run {
            let layers = try global.openStore().layers()
            if json { print(try Format.json(layers)); return }
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
            guard let c = StrataArchive.Compression(rawValue: compress), c != .xz else {
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
