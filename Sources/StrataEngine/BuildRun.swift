import FoundationEssentials
import StrataCore
import StrataFormats
import StrataSystem

/// A stage of a Containerfile: its FROM and the instructions up to the next.
struct BuildStage {
    var index: Int
    var name: String?
    var from: Instruction
    var body: [Instruction]
    /// As BuildKit shows it: its name, else `stage-N`.
    var label: String { name ?? "stage-\(index)" }
}

/// Where a stage stands: its config and the image in the store that holds its layers (nil:
/// none yet, a `scratch` stage). The config is kept as a value between steps (the JSON object
/// with the keys strata does not know, its runtime part typed) and written only where its
/// digest is needed: a Containerfile of many config steps costs each step its change, not a
/// rewrite of the whole config.
struct BuildState {
    private(set) var editor: ConfigEditor
    private(set) var runtime: ImageConfig.Config
    private(set) var diffIDs: [DiffID]
    var layersImage: Digest?
    /// The stage's ARGs and their values (nil: declared without one).
    var args: [String: String?] = [:]
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    var cmdSet = false
    /// The config as written since the last change: the bytes the image ID is the digest of.
    private var written: (bytes: [UInt8], config: ImageConfig)?

    /// A stage at an image's config (`bytes`, verified: the store's or the build's own).
    init(bytes: [UInt8], layersImage: Digest?, what: String) throws {
        let config = try JSONDocument.decode(ImageConfig.self, from: bytes, what: what)
        editor = try ConfigEditor(bytes: bytes, what: what)
        runtime = config.config ?? ImageConfig.Config()
        diffIDs = config.rootfs.diff_ids
        self.layersImage = layersImage
        written = (bytes, config)
    }

    /// Another image's config in place of this one (a cache hit): the stage's ARGs stay.
    mutating func take(bytes: [UInt8], image: Digest) throws {
        let (args, cmdSet) = (self.args, self.cmdSet)
        self = try BuildState(bytes: bytes, layersImage: image, what: "cached config \(image.short)")
        self.args = args
        self.cmdSet = cmdSet
    }

    /// Changes the config: its JSON object and its typed runtime part together.
    mutating func edit(_ body: (inout ConfigEditor, inout ImageConfig.Config) throws -> Void) rethrows {
        try body(&editor, &runtime)
        written = nil
    }

    /// A layer on top, with its history entry.
    mutating func appendLayer(_ diffID: DiffID, history: ConfigEditor.HistoryItem, created: String) {
        editor.appendLayer(diffID, history: history)
        editor.created = created
        diffIDs.append(diffID)
        written = nil
    }

    /// The config's bytes and parsed form, written now if it changed.
    mutating func write() throws -> (bytes: [UInt8], config: ImageConfig) {
        if let written { return written }
        let bytes = try editor.bytes()
        let made = (bytes, try JSONDocument.decode(ImageConfig.self, from: bytes, what: "build config"))
        written = made
        return made
    }

    /// The image ID this state would have.
    mutating func id() throws -> Digest { Digest.of(try write().bytes) }

    /// The chainID of its top layer.
    var topLayer: ChainID? { ChainID.chain(diffIDs).last }
}

/// One build: the stages, the state of each, what every step did.
struct BuildRun {
    let engine: Engine
    let file: Containerfile
    let context: Directory
    let contextPath: String
    let options: BuildOptions
    /// Seconds since the epoch written everywhere a time goes.
    let timestamp: Int64
    let created: String
    let platform: Platform
    let expander: WordExpander
    let ignore: IgnorePatterns
    let cache: BuildCache
    var stages: [BuildStage] = []
    /// ARGs before the first FROM (for FROM lines and redeclared in stages).
    var globalArgs: [String: String?] = [:]
    var results: [Int: BuildState] = [:]
    var reports: [BuildStepReport] = []
    var consumedArgs: Set<String> = []

    /// The ARGs every build knows without a declaration's default (BuildKit's).
    static let predefinedArgs: Set<String> = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                                              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "SOURCE_DATE_EPOCH"]

    init(engine: Engine, file: Containerfile, context: Directory, contextPath: String, options: BuildOptions) throws {
        self.engine = engine; self.file = file; self.context = context; self.contextPath = contextPath; self.options = options
        let epochText = options.buildArgs["SOURCE_DATE_EPOCH"] ?? options.environment["SOURCE_DATE_EPOCH"]
        if let t = options.timestamp {
            timestamp = t
        } else if let text = epochText, !text.isEmpty {
            guard let t = Int64(text) else {
                throw StrataError(.invalidArgument, "invalid SOURCE_DATE_EPOCH \"\(text)\": seconds since 1970-01-01, a whole number")
            }
            timestamp = t
        } else {
            timestamp = 0
        }
        try BuildRun.checkTimestamp(timestamp, what: options.timestamp != nil ? "--timestamp" : "SOURCE_DATE_EPOCH")
        created = Timestamp.string(Date(timeIntervalSince1970: Double(timestamp)))
        platform = options.platform ?? Platform.host
        expander = WordExpander(escape: file.escape)
        if let st = try context.lstat(Array(".dockerignore".utf8)), st.kind == .regular {
            let text = String(decoding: try context.readFile(Array(".dockerignore".utf8), limit: 1 << 20), as: UTF8.self)
            do { ignore = try IgnorePatterns(text: text) } catch let e as StrataError {
                throw StrataError(e.code, "\(contextPath)/.dockerignore: \(e.message)")
            }
        } else {
            ignore = IgnorePatterns()
        }
        cache = try BuildCache(store: engine.store, timestamp: timestamp)
        try split()
    }

    /// Throws when a signal (Ctrl-C) came for the build.
    static func checkNotCancelled() throws {
        let s = SignalRelay.pending
        guard s == 0 else { throw StrataError(.commandFailed, "the build was cancelled by signal \(s)") }
    }

    /// The latest time an image's `created` can say (9999-12-31T23:59:59Z, RFC 3339's last year).
    static let latestTimestamp: Int64 = 253_402_300_799

    /// Refuses a time before 1970 or after 9999.
    static func checkTimestamp(_ t: Int64, what: String) throws {
        guard t >= 0, t <= latestTimestamp else {
            throw StrataError(.invalidArgument, "invalid \(what) \(t): seconds since 1970-01-01, up to \(latestTimestamp) (the end of 9999)")
        }
    }

    /// "FILE:LINE: KEYWORD" for messages.
    func place(_ i: Instruction) -> String { "\(file.file):\(i.line): \(i.keyword)" }

    /// Global ARGs, then one stage per FROM.
    private mutating func split() throws {
        for i in file.instructions {
            if i.keyword == "FROM" {
                // Split as written: the image may be an ARG that expands later.
                var words = i.arguments.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                var name: String?
                if words.count == 3, words[1].lowercased() == "as" {
                    name = words[2].lowercased()
                    words.removeLast(2)
                }
                guard words.count == 1 else {
                    throw StrataError(.invalidFormat, "\(place(i)): FROM takes an image and an optional AS NAME")
                }
                if let name {
                    guard name.first?.isLetter == true, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                        throw StrataError(.invalidFormat, "\(place(i)): stage name \"\(name)\" must start with a letter and hold letters, digits, -, _ and .")
                    }
                    guard !stages.contains(where: { $0.name == name }) else {
                        throw StrataError(.invalidFormat, "\(place(i)): a stage named \"\(name)\" comes before")
                    }
                }
                stages.append(BuildStage(index: stages.count, name: name, from: i, body: []))
            } else if stages.isEmpty {
                guard i.keyword == "ARG" else {
                    throw StrataError(.invalidFormat, "\(place(i)): only ARG may come before the first FROM")
                }
                for (k, v) in try expander.pairs(i.arguments, { n in globalArgs[n] ?? nil }, allowMissingValue: true) {
                    // The value (nil: declared without one), kept as such: a nil is not a removal.
                    let value: String? = options.buildArgs[k] ?? v
                    globalArgs[k] = .some(value)
                    consumedArgs.insert(k)
                }
            } else {
                stages[stages.count - 1].body.append(i)
            }
        }
        guard !stages.isEmpty else { throw StrataError(.invalidFormat, "\(file.file): no FROM instruction; a Containerfile starts FROM an image or scratch") }
    }

    /// The stage `ref` (a name, or a number) names, if any.
    func stage(named ref: String) -> BuildStage? {
        if let n = Int(ref), n >= 0, n < stages.count { return stages[n] }
        return stages.first { $0.name == ref.lowercased() }
    }

    /// The stages the target needs (FROM a stage, COPY --from=stage), in order.
    func needed(_ target: BuildStage) -> [Int] {
        var need: Set<Int> = [], todo = [target.index]
        while let i = todo.popLast() {
            guard need.insert(i).inserted else { continue }
            let s = stages[i]
            var refs = [s.from.arguments.split(separator: " ").first.map(String.init) ?? ""]
            refs += s.body.filter { $0.keyword == "COPY" || $0.keyword == "ADD" }.compactMap { ins in ins.flags.first { $0.name == "from" }?.value }
            for r in refs { if let d = stage(named: r), d.index < i { todo.append(d.index) } }
        }
        return need.sorted()
    }

    /// Builds the target stage (and the stages it needs); its final state.
    mutating func run() throws -> BuildState {
        var target = stages[stages.count - 1]
        if let t = options.target {
            guard let s = stages.first(where: { $0.name == t.lowercased() }) else {
                throw StrataError(.notFound, "--target \(t): no stage of that name in \(file.file)")
            }
            target = s
        }
        for i in needed(target) { results[i] = try buildStage(stages[i]) }
        guard let final = results[target.index] else { throw StrataError(.internalError, "stage \(target.label) was not built") }
        return final
    }

    /// Records the final image with its tags (one transaction); its ID.
    func recordFinal(_ state: BuildState, tags: [String]) throws -> Digest {
        var final = state
        let (bytes, config) = try final.write()
        let id = Digest.of(bytes)
        try engine.store.recordBuilt(configBytes: bytes, config: config, staged: nil, tags: tags)
        options.progress("writing image \(id) done")
        return id
    }

    // MARK: Stages

    private mutating func buildStage(_ stage: BuildStage) throws -> BuildState {
        let count = stage.body.count + 1
        let started = Date()
        // A single unnamed stage shows its steps alone: `[2/5] RUN …`.
        let shown = stages.count == 1 && stage.name == nil ? "" : stage.label + " "
        options.progress("[\(shown)1/\(count)] \(Self.oneLine(stage.from.original))")
        var state = try wrap(stage.from) { try from(stage) }
        reports.append(BuildStepReport(stage: stage.label, step: 1, steps: count, instruction: stage.from.original, cached: nil,
                                       seconds: Date().timeIntervalSince(started)))
        // The base image's ONBUILD triggers run first, and are not passed on.
        if let triggers = state.runtime.OnBuild, !triggers.isEmpty {
            for text in triggers {
                let trigger = try Containerfile.parseInstruction(text, escape: file.escape, file: file.file, line: stage.from.line)
                options.progress("[\(shown)ONBUILD] \(Self.oneLine(trigger.original))")
                _ = try wrap(trigger) { try step(trigger, &state) }
            }
            try editConfig(&state, history: nil, removing: ["OnBuild"]) { _ in }
        }
        for (n, ins) in stage.body.enumerated() {
            try BuildRun.checkNotCancelled()
            let t0 = Date()
            options.progress("[\(shown)\(n + 2)/\(count)] \(Self.oneLine(ins.original))")
            let cached = try wrap(ins) { try step(ins, &state) }
            let seconds = Date().timeIntervalSince(t0)
            if let cached { options.progress(cached ? "CACHED" : "DONE \(Self.seconds(seconds))") }
            reports.append(BuildStepReport(stage: stage.label, step: n + 2, steps: count, instruction: ins.original, cached: cached, seconds: seconds))
        }
        return state
    }

    /// An instruction's error with its file, line and keyword in front.
    private func wrap<T>(_ ins: Instruction, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as StrataError {
            if e.message.hasPrefix(file.file + ":") { throw e }
            throw StrataError(e.code, "\(place(ins)): \(e.message)", cause: e.cause)
        } catch let e as LaunchFailure {
            throw StrataError(.commandFailed, "\(place(ins)): \(e.message)")
        }
    }

    static func oneLine(_ s: String) -> String {
        let flat = s.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).joined(separator: " ")
        return flat.count > 200 ? String(flat.prefix(197)) + "..." : flat
    }

    static func seconds(_ s: Double) -> String {
        let tenths = (s * 10).rounded()
        return "\(Int(tenths) / 10).\(Int(tenths) % 10)s"
    }

    /// The value a name expands to in a stage: its ENV first, then its ARGs.
    func lookup(_ state: BuildState) -> (String) -> String? {
        let env = state.runtime.Env ?? []
        let args = state.args
        return { name in
            if let e = env.last(where: { $0.hasPrefix(name + "=") }) { return String(e.dropFirst(name.count + 1)) }
            return args[name] ?? nil
        }
    }

    private mutating func from(_ stage: BuildStage) throws -> BuildState {
        let i = stage.from
        let global = globalArgs
        let lookup: (String) -> String? = { n in global[n] ?? nil }
        let written = i.arguments.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        let ref = try expander.expand(written.first ?? "", lookup)
        guard !ref.isEmpty else { throw StrataError(.invalidArgument, "FROM \(written.first ?? "") names no image (an ARG without a value?)") }
        var wanted = platform
        for f in i.flags {
            guard f.name == "platform", let v = f.value else {
                throw StrataError(.invalidArgument, "FROM has no flag --\(f.name) (only --platform)")
            }
            wanted = try Platform(parsing: try expander.expand(v, lookup))
        }
        if let other = stages.first(where: { $0.name == ref.lowercased() }), other.index < stage.index, let done = results[other.index] {
            var s = done
            s.args = [:]; s.cmdSet = false
            return s
        }
        if ref.lowercased() == "scratch" {
            var editor = ConfigEditor(platform: wanted, created: created)
            var cfg = ImageConfig.Config()
            cfg.Env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
            try editor.merge(cfg)
            return try BuildState(bytes: try editor.bytes(), layersImage: nil, what: "new config")
        }
        let id = try baseImage(ref)
        let bytes = try engine.store.blob(id)
        let config = try JSONDocument.decode(ImageConfig.self, from: bytes, what: "config of \(ref)")
        let has = Platform(architecture: config.architecture ?? "", os: config.os ?? "", variant: config.variant)
        guard wanted.matches(has) || (config.architecture == nil && config.os == nil) else {
            throw StrataError(.unsupported, "image \(ref) is for \(has), not \(wanted); strata runs images of this machine's platform only")
        }
        return try BuildState(bytes: bytes, layersImage: config.rootfs.diff_ids.isEmpty ? nil : id, what: "config of \(ref)")
    }

    /// A base image, pulled when `options.pull` says so.
    func baseImage(_ ref: String) throws -> Digest {
        let local = try? engine.store.resolveImage(ref)
        switch options.pull {
        case .never:
            guard let local else { throw StrataError(.notFound, "no image \(ref) in the store (and --pull=never)") }
            return local
        case .missing:
            if let local { return local }
        case .always:
            break
        }
        options.progress("pulling \(ref)")
        do {
            return try engine.store.pull(ref, options: options.pullOptions).image.id
        } catch {
            if options.pull == .always, let local {
                options.progress("warning: pull of \(ref) failed (\(error)); using the image in the store")
                return local
            }
            throw error
        }
    }

    // MARK: Steps

    /// Runs one instruction on `state`; for a layer step, whether it came from the cache.
    mutating func step(_ ins: Instruction, _ state: inout BuildState) throws -> Bool? {
        let look = lookup(state)
        let flagged = ["RUN", "COPY", "ADD", "FROM", "HEALTHCHECK"]
        if !flagged.contains(ins.keyword), !ins.flags.isEmpty {
            throw StrataError(.invalidArgument, "\(ins.keyword) takes no flags")
        }
        switch ins.keyword {
        case "RUN":
            return try run(ins, &state)
        case "COPY", "ADD":
            return try copy(ins, &state)
        case "ENV":
            let pairs = try expander.pairs(ins.arguments, look, allowMissingValue: false)
            try editConfig(&state, history: "ENV " + pairs.map { "\($0.key)=\($0.value ?? "")" }.joined(separator: " ")) { cfg in
                var env = cfg.Env ?? []
                for (k, v) in pairs {
                    env.removeAll { $0 == k || $0.hasPrefix(k + "=") }
                    env.append("\(k)=\(v ?? "")")
                }
                cfg.Env = env
            }
        case "ARG":
            for (k, v) in try expander.pairs(ins.arguments, look, allowMissingValue: true) {
                consumedArgs.insert(k)
                if let given = options.buildArgs[k] {
                    state.args[k] = given
                } else if let v {
                    state.args[k] = v
                } else if let g = globalArgs[k] {
                    state.args[k] = g
                } else {
                    state.args[k] = predefined(k)
                }
            }
        case "LABEL":
            let pairs = try expander.pairs(ins.arguments, look, allowMissingValue: false)
            try editConfig(&state, history: "LABEL " + pairs.map { "\($0.key)=\($0.value ?? "")" }.joined(separator: " ")) { cfg in
                var labels = cfg.Labels ?? [:]
                for (k, v) in pairs { labels[k] = v ?? "" }
                cfg.Labels = labels
            }
        case "MAINTAINER":
            let who = ins.arguments
            try editConfig(&state, history: "MAINTAINER \(who)") { _ in }
            state.edit { editor, _ in editor.author = who }
        case "WORKDIR":
            let path = try expander.expand(ins.arguments, look)
            guard !path.utf8.contains(0) else { throw StrataError(.invalidArgument, "a NUL byte in the WORKDIR path") }
            let base = state.runtime.WorkingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
            let joined = path.hasPrefix("/") ? path : base + "/" + path
            let clean = "/" + Engine.containerComponents(joined).map(\.display).joined(separator: "/")
            try editConfig(&state, history: nil) { $0.WorkingDir = clean }
            // Made as a layer (with its history entry) where the stage does not have it yet.
            let made = try makeWorkdir(clean, ins, &state)
            if made == nil { try editConfig(&state, history: "WORKDIR \(clean)") { _ in } }
            return made
        case "USER":
            let user = try expander.expand(ins.arguments, look)
            try editConfig(&state, history: "USER \(user)") { $0.User = user }
        case "STOPSIGNAL":
            let signal = try expander.expand(ins.arguments, look)
            try editConfig(&state, history: "STOPSIGNAL \(signal)") { $0.StopSignal = signal }
        case "EXPOSE":
            let ports = try expander.words(ins.arguments, look)
            for p in ports {
                let parts = p.split(separator: "/", omittingEmptySubsequences: false)
                guard (1...2).contains(parts.count), let first = parts[0].split(separator: "-").first, let n = Int(first), (1...65535).contains(n),
                      parts.count == 1 || ["tcp", "udp", "sctp"].contains(parts[1].lowercased()) else {
                    throw StrataError(.invalidArgument, "invalid port \"\(p)\": PORT or PORT/tcp|udp|sctp")
                }
            }
            try editConfig(&state, history: "EXPOSE " + ports.joined(separator: " ")) { cfg in
                var all = cfg.ExposedPorts ?? [:]
                for p in ports { all[p.contains("/") ? p.lowercased() : p + "/tcp"] = .init() }
                cfg.ExposedPorts = all
            }
        case "VOLUME":
            let paths = try ins.json ?? ins.fields.map { try expander.expand($0, look) }
            guard !paths.isEmpty, paths.allSatisfy({ !$0.isEmpty }) else { throw StrataError(.invalidArgument, "VOLUME takes one or more paths") }
            try editConfig(&state, history: "VOLUME " + paths.description) { cfg in
                var all = cfg.Volumes ?? [:]
                for p in paths { all[p] = .init() }
                cfg.Volumes = all
            }
        case "CMD":
            let cmd = ins.json ?? (shell(state) + [ins.arguments])
            state.cmdSet = true
            try editConfig(&state, history: "CMD " + cmd.description) { $0.Cmd = cmd }
        case "ENTRYPOINT":
            let entry = ins.json ?? (shell(state) + [ins.arguments])
            try editConfig(&state, history: "ENTRYPOINT " + entry.description, removing: state.cmdSet ? [] : ["Cmd"]) { $0.Entrypoint = entry }
        case "SHELL":
            guard let sh = ins.json, !sh.isEmpty else { throw StrataError(.invalidArgument, "SHELL takes the JSON form: SHELL [\"executable\", \"parameters\"]") }
            try editConfig(&state, history: "SHELL " + sh.description) { $0.Shell = sh }
        case "HEALTHCHECK":
            let flags = ins.flags.map { "--\($0.name)=\($0.value ?? "")" }
            let text = (["HEALTHCHECK"] + flags + [ins.arguments]).joined(separator: " ")
            var cfg = state.runtime
            do { try ConfigChange.apply(text, to: &cfg) } catch let e as StrataError {
                throw StrataError(e.code, e.message.replacingOccurrences(of: "invalid --change \"\(text)\": ", with: ""))
            }
            let check = cfg.Healthcheck
            try editConfig(&state, history: Self.oneLine(ins.original)) { $0.Healthcheck = check }
        case "ONBUILD":
            let trigger = try Containerfile.parseInstruction(ins.arguments, escape: file.escape, file: file.file, line: ins.line)
            guard !["ONBUILD", "FROM", "MAINTAINER"].contains(trigger.keyword) else {
                throw StrataError(.invalidArgument, "ONBUILD \(trigger.keyword) is not allowed")
            }
            try editConfig(&state, history: "ONBUILD " + ins.arguments) { cfg in cfg.OnBuild = (cfg.OnBuild ?? []) + [ins.arguments] }
        default:
            throw StrataError(.invalidFormat, "unknown instruction \(ins.keyword)")
        }
        return nil
    }

    /// BuildKit's automatic platform ARGs (their value when declared without one).
    func predefined(_ name: String) -> String? {
        let host = Platform.host
        switch name {
        case "TARGETPLATFORM": return platform.description
        case "TARGETOS": return platform.os
        case "TARGETARCH": return platform.architecture
        case "TARGETVARIANT": return platform.variant ?? ""
        case "BUILDPLATFORM": return host.description
        case "BUILDOS": return host.os
        case "BUILDARCH": return host.architecture
        case "BUILDVARIANT": return host.variant ?? ""
        default: return nil
        }
    }

    func shell(_ state: BuildState) -> [String] { state.runtime.Shell ?? ["/bin/sh", "-c"] }

    /// A step that changes only the config: the change, a history entry marked empty_layer,
    /// the build's time.
    mutating func editConfig(_ state: inout BuildState, history: String?, removing: [String] = [],
                             _ body: (inout ImageConfig.Config) throws -> Void) throws {
        var cfg = state.runtime
        try body(&cfg)
        for key in removing {
            switch key {
            case "Cmd": cfg.Cmd = nil
            case "OnBuild": cfg.OnBuild = nil
            default: throw StrataError(.internalError, "no typed config key \(key)")
            }
        }
        let stamp = created
        try state.edit { editor, runtime in
            try editor.merge(cfg)
            editor.removeConfigKeys(removing)
            if let history { editor.appendEmptyLayerHistory(.init(created: stamp, createdBy: history)) }
            editor.created = stamp
            runtime = cfg
        }
    }
}
