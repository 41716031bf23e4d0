import ArgumentParser
import FoundationEssentials
import StrataEngine

/// `build`: an image from a Containerfile (docs/build.md).
struct Build: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "build",
        abstract: "Build an image from a Containerfile (Dockerfile); prints the image ID.",
        discussion: """
            Every RUN runs in a container with run's boundary; layers are cached by their parent and instruction \
            (and COPY/ADD by the content they copy). Reproducible by default: times in the image and in its layers are \
            --timestamp (else SOURCE_DATE_EPOCH, else 0), so the same file and context give the same image ID on any \
            machine, any day.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags
    @Argument(help: "The build context: a directory.") var context: String
    @Option(name: [.short, .long], help: ArgumentHelp("The Containerfile (default: Containerfile, else Dockerfile, in the context; - for standard input).", valueName: "FILE")) var file: String?
    @Option(name: [.short, .long], help: ArgumentHelp("Name the image (repeatable).", valueName: "NAME[:TAG]")) var tag: [String] = []
    @Option(name: .long, help: ArgumentHelp("A value for an ARG (repeatable); KEY alone takes it from the environment.", valueName: "KEY=VALUE")) var buildArg: [String] = []
    @Option(name: .long, help: "Build this stage (and what it needs), not the last.") var target: String?
    @Flag(name: .long, help: "Run every step; use no cached layer.") var noCache = false
    @Option(name: .long, help: ArgumentHelp("Pull base images: missing (the default), always, never. --pull alone: always.", valueName: "POLICY")) var pull: String?
    @Option(name: .long, help: "The platform (os/arch[/variant]) base images must be.") var platform: String?
    @Option(name: .long, help: "Seconds since the epoch written as every time in the image and its layers (default: SOURCE_DATE_EPOCH, else 0).") var timestamp: Int64?
    @Option(name: .long, help: "RUN steps' network: bridge, NAME, slirp4netns, none or host (default as `run`'s).") var network: String?
    @Option(name: [.short, .long], help: ArgumentHelp("Also write the image: type=docker-archive|oci-archive|oci-dir|local,dest=PATH (a bare PATH: local, the image's files, owned by the caller, set-id bits cleared, devices skipped).", valueName: "OUTPUT")) var output: String?
    @Flag(name: .long, help: "Push the image to each -t name's registry.") var push = false
    @Flag(name: .long, help: "JSON: {id, tags, steps: [{stage, step, steps, instruction, cached, seconds}]}.") var json = false
    @Flag(name: .customShort("q"), help: "Print only the image ID (as --quiet).") var onlyID = false

    /// `--pull` alone means always (Docker's and podman's spelling), `--pull POLICY` as given.
    static func normalizedArguments(_ args: [String]) -> [String] {
        let policies: Set<String> = ["missing", "always", "never", "true", "false"]
        return args.indices.map { i in
            guard args[i] == "--pull", i + 1 >= args.count || !policies.contains(args[i + 1]) else { return args[i] }
            return "--pull=always"
        }
    }

    func run() throws {
        try strata.run {
            var options = BuildOptions()
            options.file = file
            options.tags = tag
            options.target = target
            options.noCache = noCache
            options.environment = ProcessInfo.processInfo.environment
            if let pull {
                guard let p = PullPolicy(rawValue: pull == "true" ? "always" : pull == "false" ? "missing" : pull) else {
                    throw StrataError(.invalidArgument, "invalid --pull \"\(pull)\": missing, always or never")
                }
                options.pull = p
            }
            options.pullOptions.registry = try registry.options()
            if let platform { options.platform = try Platform(parsing: platform) }
            options.timestamp = timestamp
            for a in buildArg {
                if let eq = a.firstIndex(of: "=") {
                    options.buildArgs[String(a[..<eq])] = String(a[a.index(after: eq)...])
                } else if let v = ProcessInfo.processInfo.environment[a] {
                    options.buildArgs[a] = v
                }
            }
            options.network = try NetworkRequest(parsing: network ?? RunFlags.defaultNetwork)
            let destination = try output.map(Build.parseOutput)
            if push && tag.isEmpty { throw StrataError(.invalidArgument, "--push needs a name to push to: give -t REGISTRY/NAME[:TAG]") }
            let quiet = global.quiet || onlyID || json
            options.progress = { line in if !quiet { printErr(line) } }

            let engine = try global.openEngine()
            let result = try engine.build(context: context, options: options)
            if let (format, path) = destination {
                if let format {
                    var save = SaveOptions()
                    save.format = format
                    // By its names, which the archive carries (RepoTags, ref.name); by ID without one.
                    try engine.store.save(result.tags.isEmpty ? [result.id.string] : result.tags, to: path, options: save)
                } else {
                    let report = try engine.writeFiles(of: result.id, to: path)
                    if !report.skippedDevices.isEmpty && !quiet {
                        printErr("device nodes not written (a build's devices are not the host's): \(report.skippedDevices.joined(separator: ", "))")
                    }
                }
                if !quiet { printErr("wrote \(path)") }
            }
            if push {
                var p = PushOptions()
                p.registry = try registry.options()
                p.progress = { line in if !quiet { printErr(line) } }
                for t in result.tags {
                    let pushed = try engine.store.push(t, to: nil, options: p)
                    if !quiet { printErr("pushed \(pushed.reference) \(pushed.manifestDigest)") }
                }
            }
            if json {
                struct Out: Encodable { var id: String; var tags: [String]; var steps: [BuildStepReport] }
                print(try Format.json(Out(id: result.id.string, tags: result.tags, steps: result.steps)))
            } else {
                print(result.id.string)
            }
        }
    }

    /// `type=T,dest=PATH` (T: docker-archive, oci-archive, oci-dir, local) or a bare PATH
    /// (local); the save format (nil: the image's files).
    static func parseOutput(_ text: String) throws -> (SaveFormat?, String) {
        guard text.contains("=") else { return (nil, text) }
        var type: String?, dest: String?
        for part in text.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw StrataError(.invalidArgument, "invalid --output \"\(text)\": type=TYPE,dest=PATH") }
            switch kv[0] {
            case "type": type = kv[1]
            case "dest": dest = kv[1]
            default: throw StrataError(.invalidArgument, "invalid --output \"\(text)\": no key \(kv[0]) (type, dest)")
            }
        }
        guard let dest, !dest.isEmpty else { throw StrataError(.invalidArgument, "invalid --output \"\(text)\": dest=PATH is missing") }
        switch type ?? "local" {
        case "local": return (nil, dest)
        case "docker", "docker-archive": return (.dockerArchive, dest)
        case "oci", "oci-archive": return (.ociArchive, dest)
        case "oci-dir": return (.ociDir, dest)
        default: throw StrataError(.invalidArgument, "invalid --output type \"\(type ?? "")\": docker-archive, oci-archive, oci-dir or local")
        }
    }
}
