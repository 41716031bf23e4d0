import FoundationEssentials
import StrataArchive
import StrataCore
import StrataFormats
import StrataLayer
import StrataStore
import StrataSystem

/// The steps of a build that make layers: RUN in a container, COPY/ADD and WORKDIR's
/// directory written into the stage's tree. Each ends in `addLayer` (or a cache hit).
extension BuildRun {
    // MARK: RUN

    mutating func run(_ ins: Instruction, _ state: inout BuildState) throws -> Bool {
        // A step may narrow the build's network, never widen it: the host's network is the
        // build's to give (`build --network host`), not the Containerfile's or a base image's
        // ONBUILD trigger's.
        var network = options.network
        for f in ins.flags {
            switch (f.name, f.value) {
            case ("network", "none"?): network = NetworkRequest(mode: .none)
            case ("network", "default"?): break
            case ("network", "host"?):
                guard options.network.mode == .host else {
                    throw StrataError(.invalidArgument, "RUN --network=host needs the build to give the host's network (strata build --network host)")
                }
            default:
                throw StrataError(.unsupported, "RUN --\(f.name)\(f.value.map { "=" + $0 } ?? "") is not supported (RUN takes --network=default|none|host)")
            }
        }
        let argv = ins.json ?? (shell(state) + [ins.arguments])
        guard !argv.isEmpty else { throw StrataError(.invalidArgument, "RUN [] has no command") }
        guard let layers = state.layersImage else {
            throw StrataError(.invalidArgument, "RUN needs a program to run, and this stage has no files (FROM scratch); COPY one in first")
        }
        // Only KEY=VALUE: a bare KEY (an image may hold one) would be taken from strata's own
        // environment, which is the host's and no step's business.
        let env = (state.runtime.Env ?? []).filter { $0.contains("=") }
        // ARGs are in RUN's environment (not in the image's), ENV winning over an ARG of its name.
        let argEnv = state.args.compactMap { k, v in v.map { "\(k)=\($0)" } }
            .filter { kv in let k = kv.prefix { $0 != "=" }; return !env.contains { $0.hasPrefix(k + "=") } }.sorted()
        let createdBy = "RUN " + (argEnv.isEmpty ? "" : "|\(argEnv.count) \(argEnv.joined(separator: " ")) ") + argv.joined(separator: " ")
        // Each part on its own (the key's parts are NUL-separated): `A='x B=y'` and `A=x B=y`
        // are two keys.
        let key = cache.key(parent: try state.id(), step: ["RUN", "network=\(network.mode)", "args=\(argEnv.count)"] + argEnv
                            + ["argv=\(argv.count)"] + argv)
        if try useCache(key, &state) { return true }

        var runOptions = Engine.RunOptions()
        runOptions.network = network
        runOptions.buildStep = true
        // strata-init as pid 1 passes a Ctrl-C on to the step's command (a shell as pid 1 would
        // ignore it), so that a signal to the build ends the step and with it the build.
        runOptions.initProcess = true
        runOptions.name = "build-" + Store.randomID().prefix(16)
        let workdir = state.runtime.WorkingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        let overrides = RunOverrides(entrypoint: "", command: argv, env: env + argEnv, workdir: workdir, user: state.runtime.User ?? "")
        _ = SignalRelay.takePassedSignal()
        let code = try engine.run(image: layers.string, overrides: overrides, options: runOptions)
        // A signal the step's process got (and may have caught) is the build's too, and so is
        // one that came after it ended: the build ends here.
        let passed = SignalRelay.takePassedSignal()
        let container = try engine.store.container(runOptions.name ?? "")
        defer { try? engine.removeContainer(container.id, force: true) }
        try BuildRun.checkNotCancelled()
        guard passed == 0 else {
            throw StrataError(.commandFailed, "the build was cancelled by signal \(passed) while \(argv.joined(separator: " ")) ran")
        }
        guard code == 0 else {
            throw StrataError(.commandFailed, "\(argv.joined(separator: " ")) ended with exit code \(code)")
        }
        let list = try engine.store.changes(of: container.id)
        try Store.checkNoReservedNames(list, label: "the layer of RUN")
        let staged = try engine.store.stageChanges(list, parent: state.topLayer,
                                                  label: "the layer of RUN", clampTimes: timestamp)
        try addLayer(staged, createdBy: createdBy, key: key, &state)
        return false
    }

    // MARK: Layers and the cache

    /// The cached result of `key`, when its image is still in the store: taken as the new state.
    func useCache(_ key: Digest, _ state: inout BuildState) throws -> Bool {
        guard !options.noCache, let id = cache.lookup(key),
              (try? engine.store.metadata.read({ try $0.image(id) })) != nil,
              let bytes = try? engine.store.blob(id), Digest.of(bytes) == id else { return false }
        try state.take(bytes: bytes, image: id)
        return true
    }

    /// A layer step's result: the layer on the config with its history entry, recorded as an
    /// untagged image (what later steps' containers are made from, and the cache's entry).
    mutating func addLayer(_ staged: StagedLayer, createdBy: String, key: Digest, _ state: inout BuildState) throws {
        state.appendLayer(staged.result.diffID, history: .init(created: created, createdBy: createdBy), created: created)
        let (bytes, config) = try state.write()
        try engine.store.recordBuilt(configBytes: bytes, config: config, staged: staged, tags: [])
        let id = Digest.of(bytes)
        state.layersImage = id
        cache.remember(key, image: id)
    }

    /// Runs `body` on the stage's tree (its layers in a container of their own, mounted; for a
    /// stage with none, an empty directory) and stages what it changed as a layer.
    func changeFiles(_ state: BuildState, label: String, _ body: (Directory) throws -> Void) throws -> StagedLayer {
        let parent = state.topLayer
        let store = engine.store
        guard let layers = state.layersImage else {
            let name = Array("build-\(Store.randomID())".utf8)
            try store.tmpDir.mkdirOrThrow(name, mode: 0o755)
            defer { try? store.tmpDir.removeTree(name) }
            let dir = try store.tmpDir.walkInto(name)
            try body(dir)
            let list = try ChangeScanner.scanCopy(dir, lower: MergedView(layers: []))
            try Store.checkNoReservedNames(list, label: label)
            return try store.stageChanges(list, parent: nil, label: label, clampTimes: timestamp)
        }
        let id = try store.createContainer(image: layers.string, name: "build-" + Store.randomID().prefix(16), initLayer: false)
        defer { try? engine.removeContainer(id, force: true) }
        let rootfs = try store.mountContainer(id)
        do { try body(try Directory.open(rootfs)) } catch {
            try? store.unmountContainer(id, force: true)
            throw error
        }
        try store.unmountContainer(id, force: true)
        let list = try store.changes(of: id)
        try Store.checkNoReservedNames(list, label: label)
        return try store.stageChanges(list, parent: parent, label: label, clampTimes: timestamp)
    }

    /// The directories of `comps` inside `root`, made where missing (owned by `owner`, 0755);
    /// every step resolved inside the root.
    static func makeDirectories(_ root: Directory, _ comps: [PathBytes], owner: (uid: UInt32, gid: UInt32)) throws -> Directory {
        var dir = root
        for (n, c) in comps.enumerated() {
            switch Engine.directory(root, Array(comps[...n])) {
            case .success(let d): dir = d
            case .failure(let e) where e == .ENOENT:
                switch dir.mkdir(c, mode: 0o755) {
                case .success, .failure(.EEXIST): break
                case .failure(let e): throw StrataError(.system, "cannot make directory /\(EntryPath.join(Array(comps[...n])).display)", cause: e)
                }
                let made = try dir.walkInto(c)
                try made.handle.chown(uid: owner.uid, gid: owner.gid)
                try made.handle.chmod(0o755)
                dir = made
            case .failure(let e):
                throw StrataError(.invalidArgument, "/\(EntryPath.join(Array(comps[...n])).display) is not a directory", cause: e)
            }
        }
        return dir
    }

    /// The stage's files as a merged view of its layers (no mount), for a look-up.
    func view(_ state: BuildState) throws -> MergedView? {
        guard let id = state.layersImage else { return nil }
        var dirs: [Directory] = []
        for l in try engine.store.imageLayers(id).reversed() {
            dirs.append(try engine.store.layerDirectory(l))
            if l.opaqueRoot { break }
        }
        return MergedView(layers: dirs)
    }

    // MARK: WORKDIR

    /// WORKDIR's directory, made (as a layer) when the stage does not have it.
    mutating func makeWorkdir(_ path: String, _ ins: Instruction, _ state: inout BuildState) throws -> Bool? {
        let comps = Engine.containerComponents(path)
        if comps.isEmpty { return nil }
        if let v = try view(state), try v.lookup(comps) != nil { return nil }
        let createdBy = "WORKDIR \(path)"
        let key = cache.key(parent: try state.id(), step: [createdBy])
        if try useCache(key, &state) { return true }
        let staged = try changeFiles(state, label: "the layer of WORKDIR") { root in
            _ = try BuildRun.makeDirectories(root, comps, owner: (0, 0))
        }
        try addLayer(staged, createdBy: createdBy, key: key, &state)
        return false
    }
}
