@_exported import StrataCore
@_exported import StrataFormats
@_exported import StrataLauncher
@_exported import StrataStore
@_exported import StrataNetwork
import FoundationEssentials
import StrataSystem

/// strata as a library: a store, and what is done with it from start to end (run a container,
/// write a bundle, remove a container with what it left, check and collect garbage with the
/// cgroups). The command line parses flags, calls these, and prints.
///
///     let engine = try Engine(root: "/var/lib/strata")
///     let loaded = try engine.store.load(path: "image.tar", options: LoadOptions())
///     let id = try engine.store.createContainer(image: loaded[0].id.string, name: "demo")
///     let rootfs = try engine.store.mountContainer(id)
public final class Engine: Sendable {
    public let store: Store
    /// The program that watches a detached container (`run -d`, `start`); nil: this engine
    /// runs containers in the foreground only.
    public let monitorCommand: MonitorCommand?

    /// An engine over an open store; `monitor` names the program for detached containers.
    public init(store: Store, monitor: MonitorCommand? = nil) { self.store = store; self.monitorCommand = monitor }

    /// Where this store's containers have their cgroups (`strata/KEY` in each hierarchy): no
    /// other store on the host looks there.
    public var cgroupParent: String { CgroupParent.forStore(root: store.rootPath) }

    /// Opens (or creates) the store at `root`, with `driver` for a new one.
    public convenience init(root: String, driver: String? = nil, monitor: MonitorCommand? = nil) throws {
        self.init(store: try Store(root: root, driver: driver), monitor: monitor)
    }

    /// The opening `run` and `run -d` share: the options checked, the container made from the
    /// image with its init layer, mounted, and its spec written into its folder; the run state's
    /// records made. On any failure nothing of the container is left. The mount is the caller's
    /// (a detached container's monitor ends it with its own).
    func createForRun(image ref: String, overrides: RunOverrides, options: RunOptions) throws -> (id: String, spec: RuntimeSpec) {
        let security = try options.validate()  // refused before anything exists
        let imageID = try store.resolveImage(ref)
        let config = try store.imageConfig(imageID).config ?? ImageConfig.Config()
        let process = RunPlan.process(config: config, overrides: overrides, hostEnvironment: ProcessInfo.processInfo.environment)
        // Networks and the container to share one with must exist (the default network is made here).
        if options.network.mode == .bridge, UserNamespace.current.isRootless { throw Engine.noRootlessBridge }
        for a in options.network.networks { _ = try networks.network(a.network) }
        if let other = options.network.container { _ = try store.container(other) }
        let id = try store.createContainer(image: imageID.string, name: options.name, initLayer: true)
        var madeVolumes: [String] = []
        do {
            // `start` runs it again from this spec, `exec` takes its user and environment, and its
            // state tells `ps`, `wait` and `inspect` how it runs and ended.
            try SignalRelay.checkNotCancelled("container \(id.prefix(12))")
            if let cidFile = options.cidFile {
                let f = try FDHandle.open(cidFile, flags: [.writeOnly, .create, .exclusive], mode: 0o644)
                try f.writeAll(Array(id.utf8))
            }
            let rootfs = try store.mountContainer(id)
            let bundle = store.containerPaths(id).root
            // Held until the spec that names the volumes is written: `volume rm` waits for it.
            let leases = try LayerLocks(store: store)
            defer { leases.unlockAll() }
            var resolved = options
            if options.network.publishAll { resolved.network.exposed = Array((config.ExposedPorts ?? [:]).keys).sorted() }
            (resolved.volumes, madeVolumes) = try resolveMounts(options.volumes, volumesFrom: options.volumesFrom,
                                                                imageVolumes: options.buildStep ? [] : Array((config.Volumes ?? [:]).keys),
                                                                rootfs: rootfs, leases: leases)
            let spec = try ContainerSpecBuilder(process: process, options: resolved, security: security, imageStopSignal: config.StopSignal,
                                           imageHealthcheck: config.Healthcheck)
                .spec(id: id, rootfs: rootfs, bundle: bundle, etcFiles: true)
            try spec.write(into: bundle)
            try store.prepareRunState(id)
            if let c = try? store.container(id) { store.record(container: c, "create") }
            return (id, spec)
        } catch {
            try? removeContainer(id, force: true)
            for name in madeVolumes { try? store.removeVolume(name) }
            throw error
        }
    }

    /// `create`: the container made and its spec written as `run` makes them, not started and
    /// not left mounted; `start` runs it. Returns the ID.
    public func create(image ref: String, overrides: RunOverrides, options: RunOptions) throws -> String {
        let (id, _) = try createForRun(image: ref, overrides: overrides, options: options)
        do { try store.unmountContainer(id, force: true) } catch {
            try? removeContainer(id, force: true, volumes: true)
            throw error
        }
        return id
    }

    /// Creates, mounts and runs a container of `image` to its end; returns the command's exit
    /// code. The container is unmounted afterwards and kept (removed with `remove`); one whose
    /// command never started is removed. Throws `LaunchFailure` (with Docker's exit code) when
    /// the process cannot start.
    public func run(image ref: String, overrides: RunOverrides, options: RunOptions) throws -> Int32 {
        CgroupWarmUp.begin()
        // From here a signal cancels the start cleanly, or reaches the container's process. A
        // build's step runs inside the build's relay: a signal after the process ended stays
        // pending for the build to see.
        if !options.buildStep { SignalRelay.begin() }
        defer { if !options.buildStep { SignalRelay.end() } }
        let (id, spec) = try createForRun(image: ref, overrides: overrides, options: options)
        let launcher = Launcher(id: id, bundle: store.containerPaths(id).root, spec: spec)
        // Held until the process runs: gc does not take a network being set up for a leftover.
        let starting = try LayerLocks(store: store)
        do {
            try starting.lock(key: id, exclusive: false)
            launcher.networkNamespace = try attachNetwork(id, spec: spec)
        } catch {
            starting.unlockAll()
            try? removeContainer(id, force: true, volumes: true)
            throw error
        }
        launcher.interactive = options.interactive
        if options.buildStep { launcher.stdio = .relayedToStderr }
        launcher.cgroupParent = cgroupParent
        let store = self.store
        // This process watches the container as a detached one's monitor does.
        var state = RunState(monitorPid: ProcessInfo.processInfo.processIdentifier)
        launcher.onPid = { [state] pid in
            try? store.setPid(id, pid)
            starting.unlockAll()
            guard pid != nil else { return }
            var started = state
            started.startedAt = Timestamp.preciseNow()
            try? store.writeRunState(id, started)
            if let c = try? store.container(id) { store.record(container: c, "start") }
        }
        let code: Int32
        do {
            code = try launcher.run()
        } catch {
            // The command never ran: nothing of this container is worth keeping.
            starting.unlockAll()
            try? removeContainer(id, force: true, volumes: true)
            throw error
        }
        starting.unlockAll()
        detachNetwork(id)
        state = store.runState(id) ?? state
        state.exitCode = code
        state.finishedAt = Timestamp.preciseNow()
        state.monitorPid = nil
        try? store.writeRunState(id, state)
        if let c = try? store.container(id) { store.record(container: c, "die", ["exitCode": String(code)]) }
        // Removed under it: `rm -f` marks the container before it kills (see removeContainer).
        let removed = LaunchFailure(exitCode: 137, message: "container \(id.prefix(12)) was removed while it ran (strata rm -f)")
        if pathExists(store.containerPaths(id).root + "/" + Engine.removingMarker) || (try? store.container(id)) == nil { throw removed }
        // With `remove` the mount is detached and the container removed in one go.
        do {
            if options.remove {
                let record = try store.container(id)
                try store.removeContainer(id, force: true)
                store.record(container: record, "destroy")
                removeAnonymousVolumes(of: spec, container: id)
            } else {
                try store.unmountContainer(id, force: true)
            }
        } catch let e as StrataError where e.code == .notFound {
            throw removed
        }
        return code
    }

    /// Writes an OCI runtime bundle (config.json and rootfs) for an image or a container into
    /// `directory`: the spec `run` would make, with `options` (limits, security, …).
    public func writeBundle(of ref: String, to directory: String, options: RunOptions = RunOptions(),
                            overrides: RunOverrides = RunOverrides()) throws {
        let security = try options.validate()
        guard options.volumes.allSatisfy({ $0.kind != .volume || $0.source != nil }) else {
            throw StrataError(.invalidArgument, "a bundle mounts named volumes and binds only: an anonymous volume (-v /PATH) belongs to a container")
        }
        try makeDirectory(directory, what: "bundle directory")
        let rootfs = directory + "/rootfs"
        let (image, container) = try store.exportRootfs(of: ref, to: rootfs)
        let config = try store.imageConfig(image).config ?? ImageConfig.Config()
        let process = RunPlan.process(config: config, overrides: overrides, hostEnvironment: ProcessInfo.processInfo.environment)
        var resolved = options
        let leases = try LayerLocks(store: store)
        defer { leases.unlockAll() }
        (resolved.volumes, _) = try resolveMounts(options.volumes, volumesFrom: options.volumesFrom, imageVolumes: [], rootfs: rootfs, leases: leases)
        let spec = try ContainerSpecBuilder(process: process, options: resolved, security: security, imageStopSignal: config.StopSignal,
                                           imageHealthcheck: config.Healthcheck)
            .spec(id: container ?? image.hex, rootfs: rootfs, bundle: directory, etcFiles: false)
        try spec.write(into: directory)
    }

    /// The file `rm -f` leaves in a container's folder before it kills what runs there.
    static let removingMarker = "removing"

    /// Removes a container; with `force`, whatever still runs in its cgroups goes first (a
    /// container whose strata was killed has no parent to stop it). Its cgroups go with it.
    /// With `volumes` (`rm -v`), its anonymous volumes go too.
    public func removeContainer(_ ref: String, force: Bool, volumes: Bool = false) throws {
        let record = try store.container(ref)
        let id = record.id
        let spec = volumes ? ((try? store.spec(id)) ?? nil) : nil
        // Held while the removal runs: `check` tells a removal under way from one cut short.
        let lease = try LayerLocks(store: store)
        try lease.lock(key: id, exclusive: true)
        defer { lease.unlockAll() }
        if force {
            // Marked first: a foreground `run` of it wakes up when the kill lands and must tell a
            // removal from any other SIGKILL, without waiting to see whether the row goes.
            _ = try? FDHandle.open(store.containerPaths(id).root + "/" + Engine.removingMarker, flags: [.writeOnly, .create], mode: 0o600)
            ContainerCgroups.release(id: id, parent: cgroupParent)
        }
        // Its network goes before its folder (the namespace is a mount in it).
        if !isRunning(record) || force { detachNetwork(id) }
        try store.removeContainer(ref, force: force)
        store.record(container: record, "destroy")
        ContainerCgroups.release(id: id, parent: cgroupParent)
        lease.unlockAll()
        removeAnonymousVolumes(of: spec, container: id)
    }
}
