import FoundationEssentials
import StrataCore
import StrataFormats
import StrataSystem

/// When `build` pulls a stage's base image.
public enum PullPolicy: String, Sendable, CaseIterable {
    /// Only an image the store cannot name (Docker's default).
    case missing
    /// Every base image, every build (`--pull`).
    case always
    /// Never: a missing base image is an error.
    case never
}

/// What `build` takes besides the Containerfile and its context (docs/build.md).
public struct BuildOptions: Sendable {
    /// The Containerfile; nil: `Containerfile`, else `Dockerfile`, in the context.
    public var file: String?
    /// `-t`: names the built image gets.
    public var tags: [String] = []
    /// `--build-arg K=V`: values for the file's ARGs.
    public var buildArgs: [String: String] = [:]
    /// `--target`: the stage to build (default: the last).
    public var target: String?
    /// `--no-cache`: every step runs.
    public var noCache = false
    public var pull: PullPolicy = .missing
    public var pullOptions = PullOptions()
    /// `--platform`: the platform FROM images must be (and a `scratch` stage is written for).
    public var platform: Platform?
    /// `--timestamp`: the time written into the image (config, history) and the clamp of
    /// every file time in its layers, in seconds since the epoch. nil: `SOURCE_DATE_EPOCH`
    /// (a build argument, else the environment), else 0. Never the clock: the same file and
    /// context give the same image ID on any day.
    public var timestamp: Int64?
    /// RUN steps' network (`run`'s forms; none unless asked).
    public var network = NetworkRequest(mode: .none)
    /// Lines on the build's progress (steps, CACHED, times); a RUN step's output goes to
    /// stderr as it comes.
    public var progress: @Sendable (String) -> Void = { _ in }
    /// The environment `SOURCE_DATE_EPOCH` is read from.
    public var environment: [String: String] = [:]
    /// Docker's defaults: the last stage, the cache used, bases pulled when missing.
    public init() {}
}

/// One step of a build, as it went.
public struct BuildStepReport: Codable, Sendable, Equatable {
    /// The stage's name (or its number).
    public var stage: String
    /// The step's number in its stage and the stage's count (FROM is step 1).
    public var step: Int
    public var steps: Int
    /// The instruction as written.
    public var instruction: String
    /// For a step that makes a layer: whether the cache had it.
    public var cached: Bool?
    /// Seconds the step took.
    public var seconds: Double
}

/// What a build made.
public struct BuildResult: Sendable {
    public var id: Digest
    public var tags: [String]
    public var steps: [BuildStepReport]
}

extension Engine {
    /// Builds the image a Containerfile describes from the directory `context`: each RUN in a
    /// container with `run`'s boundary, each COPY/ADD from the context (minus .dockerignore),
    /// each layer cached by its parent and its instruction (and for COPY/ADD the content it
    /// copies), and everything written reproducibly (times from `timestamp`). The image and
    /// its tags are recorded in the store; every layer step's result is kept as an untagged
    /// image (the cache, hidden from `images`).
    public func build(context: String, options: BuildOptions) throws -> BuildResult {
        let contextDir: Directory
        do { contextDir = try Directory.open(context) } catch {
            throw StrataError(.notFound, "build context \(context) is not a directory that can be read", cause: error)
        }
        let (fileBytes, fileName) = try Engine.readContainerfile(options.file, context: context, contextDir: contextDir)
        let file = try Containerfile.parse(fileBytes, file: fileName)
        let tags = try options.tags.map { try Reference.userTag($0) }
        // A signal (Ctrl-C) cancels the build at the next step, after the current one cleaned
        // up; during a RUN it reaches the step's process. A second one is fatal at once.
        SignalRelay.begin()
        defer { SignalRelay.end() }
        var builder = try BuildRun(engine: self, file: file, context: contextDir, contextPath: context, options: options)
        let final = try builder.run()
        try BuildRun.checkNotCancelled()
        let id = try builder.recordFinal(final, tags: tags)
        for t in tags { options.progress("naming to \(t) done") }
        let unused = Set(options.buildArgs.keys).subtracting(builder.consumedArgs).subtracting(BuildRun.predefinedArgs)
        if !unused.isEmpty {
            options.progress("warning: build arguments not consumed by any ARG: \(unused.sorted().joined(separator: ", "))")
        }
        return BuildResult(id: id, tags: tags, steps: builder.reports)
    }

    /// `build --output type=local`: the image's files written into `dest` as `cp` writes a
    /// container's to the host: owned by the caller, set-id bits cleared, devices skipped (a
    /// build must not leave a setuid-root program or a disk's device node on the host).
    public func writeFiles(of image: Digest, to dest: String) throws -> CopyReport {
        let id = try store.createContainer(image: image.string, name: nil, initLayer: false)
        defer { try? removeContainer(id, force: true) }
        return try copyOut(id, path: "/.", toHost: dest, archive: false, followLink: false, owner: callerIDs)
    }

    /// The Containerfile's bytes and the name messages give it: `file` as given (`-` is
    /// standard input), else `Containerfile` or `Dockerfile` in the context.
    static func readContainerfile(_ file: String?, context: String, contextDir: Directory) throws -> ([UInt8], String) {
        let limit = 4 << 20
        if let file {
            if file == "-" { return (try FDHandle.duplicating(0).readAll(limit: limit, label: "standard input"), "<stdin>") }
            guard let f = try? FDHandle.open(file, flags: .readOnly) else {
                throw StrataError(.notFound, "cannot read the Containerfile \(file): no such file, or it cannot be read")
            }
            return (try f.readAll(limit: limit, label: file), file)
        }
        for name in ["Containerfile", "Dockerfile"] {
            if let st = try contextDir.lstat(Array(name.utf8)), st.kind == .regular {
                return (try contextDir.readFile(Array(name.utf8), limit: limit), context + "/" + name)
            }
        }
        throw StrataError(.notFound, "no Containerfile or Dockerfile in the build context \(context); name one with -f")
    }
}
