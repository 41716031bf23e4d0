import FoundationEssentials
import StrataCore
import StrataFormats
import StrataLayer
import StrataLauncher
import StrataStore
import StrataSystem

extension Engine {
    /// `run -d`: creates the container with its spec and starts it under a monitor of its own;
    /// returns the ID once the process runs (or throws the launcher's failure).
    public func runDetached(image ref: String, overrides: RunOverrides, options: RunOptions) throws -> String {
        guard monitorCommand != nil else { throw Engine.noMonitor }
        let (id, _) = try createForRun(image: ref, overrides: overrides, options: options)
        do {
            // The monitor mounts it for itself; this mount (for the spec's user) is let go
            // first, so that no count of another command is ever dropped in its place.
            try store.unmountContainer(id)
            try start(id)
        } catch {
            try? removeContainer(id, force: true, volumes: true)
            throw error
        }
        return id
    }

    static let noMonitor = StrataError(.unsupported, "this engine has no monitor program for detached containers; give Engine(store:monitor:) one (MonitorCommand.strata with the path of a strata binary)")

    /// Starts a container that `run` made (detached) with its spec, and returns once its
    /// process runs.
    public func start(_ ref: String) throws {
        let c = try store.container(ref)
        if isRunning(c) { return }
        markStopped(c.id, false)
        try startRecorded(c)
    }

    /// Starts a container under its monitor, from its spec (`start`, and its restart policy).
    func startRecorded(_ c: ContainerRecord) throws {
        if isRunning(c) { return }
        guard try store.spec(c.id) != nil else {
            throw StrataError(.unsupported, "container \(c.name) has no spec to run (it was made by an older `strata create`, or as a mount for commit); create it again with `strata create IMAGE [COMMAND]`")
        }
        guard let monitorCommand else { throw Engine.noMonitor }
        switch MonitorProcess.awaitStatus(try MonitorProcess.spawn(monitorCommand, id: c.id)) {
        case .started: return
        case .failed(let code, let message): throw LaunchFailure(exitCode: code, message: message)
        }
    }

    /// The monitor's work (`strata container-monitor ID`, started by `start`): mounts the
    /// container, runs its spec with the output going to the log, and tells the starter whether
    /// it started. Then, where strata-monitor is installed (and the engine's `MonitorCommand`
    /// names a cleanup), this process becomes it: a small program watches the container, and
    /// `container-cleanup` finishes (`cleanUpAfterExit`). Otherwise it watches here: records
    /// how it ended, and cleans up the same way.
    public func monitor(_ id: String) -> Int32 {
        CgroupWarmUp.begin()
        let status = MonitorProcess.statusPipe()
        var state = RunState(monitorPid: ProcessInfo.processInfo.processIdentifier)
        do {
            guard var spec = try store.spec(id) else { throw StrataError(.notFound, "container \(id.prefix(12)) has no config.json") }
            // strata-monitor holds a terminal or a stdin pipe for `attach` (`run -dit`); without
            // it (and a command to hand over to) the log takes the output and stdin is empty.
            let small = SmallMonitor.binary.flatMap { b in monitorCommand?.cleanupArguments.map { (b, $0) } }
            if small == nil { spec.process.terminal = false }
            let stdinMode = small == nil ? nil : spec.annotation(RuntimeSpec.Annotation.stdin)
            try store.prepareRunState(id)
            try store.resetHealth(id)
            // Written afresh at every start, as Docker does: what a container wrote into its
            // /etc/hosts or /etc/hostname does not outlive its run.
            try ContainerSpecBuilder.writeEtcFiles(hostname: spec.hostname ?? String(id.prefix(12)), network: spec.sharesHostNetwork ? .host : .none,
                                                   names: NameSettings(annotations: spec.annotations ?? [:]),
                                                   into: store.containerPaths(id).root)
            let maxSize = spec.annotation(RuntimeSpec.Annotation.logMaxSize).flatMap { Int64($0) } ?? RunOptions().logMaxSize
            let tty = spec.process.terminal == true
            let pipes = try MonitorProcess.outputPipes(stdin: stdinMode != nil && !tty)
            _ = try store.mountContainer(id)
            let launcher = Launcher(id: id, bundle: store.containerPaths(id).root, spec: spec)
            launcher.stdio = pipes.plan
            launcher.cgroupParent = cgroupParent
            let pid: Int32
            var master: FDHandle?
            // Held until the process runs: gc does not take a network being set up for a leftover.
            let starting = try LayerLocks(store: store)
            defer { starting.unlockAll() }
            do {
                try starting.lock(key: id, exclusive: false)
                launcher.networkNamespace = try attachNetwork(id, spec: spec)
                if tty { (pid, master) = try launcher.startDetachedWithTerminal() } else { pid = try launcher.startDetached() }
            } catch {
                pipes.release()
                starting.unlockAll()  // the unmount takes the container's lease
                detachNetwork(id)
                try? store.unmountContainer(id, force: true)
                throw error
            }
            // Running: the monitor lets go of the log pipes' write ends (the container holds them).
            pipes.release()
            try? store.setPid(id, pid)
            starting.unlockAll()
            state.startedAt = Timestamp.preciseNow()
            try? store.writeRunState(id, state)
            if let c = try? store.container(id) { store.record(container: c, "start") }
            status?.report(.started(pid: pid))
            let logPath = store.logPath(id)
            if let (small, cleanup) = small, let command = monitorCommand {
                // Nothing of this process's store outlives the exec: the database is left complete.
                Metadata.checkpointAfterWrites()
                let health = store.healthSettings(id).flatMap { s in
                    command.healthArguments.map { (every: s.interval, command: [command.executable] + $0(id)) }
                }
                let io = SmallMonitor.MonitoredIO(output: master.map { .terminal(master: $0) } ?? .pipes(stdout: pipes.stdout, stderr: pipes.stderr),
                                                  stdin: pipes.stdinWriter, stdinOnce: stdinMode == "once")
                let failed = SmallMonitor.exec(small, pid: pid, io: io, log: logPath, maxSize: maxSize,
                                               stateDirectory: store.containerPaths(id).root, startedAt: state.startedAt ?? "",
                                               health: health, cleanup: [command.executable] + cleanup(id))
                store.logger.warning("cannot run \(small) (\(failed)); this monitor watches container \(id.prefix(12)) itself")
            }
            let log = try ContainerLogWriter(path: logPath, maxSize: maxSize)
            let drains = [log.drain(pipes.stdout, stream: "stdout"), log.drain(pipes.stderr, stream: "stderr")]
            let code = SmallMonitor.waitForChild(pid)
            state.exitCode = code
            state.finishedAt = Timestamp.preciseNow()
            drains.forEach { $0.wait(seconds: 5) }
            try? store.writeRunState(id, state)
            return cleanUpAfterExit(id)
        } catch let e as LaunchFailure {
            state.error = e.message
            state.exitCode = e.exitCode
            state.monitorPid = nil
            try? store.writeRunState(id, state)
            status?.report(.failed(code: e.exitCode, message: e.message))
            return 1
        } catch {
            state.error = "\(error)"
            state.monitorPid = nil
            try? store.writeRunState(id, state)
            status?.report(.failed(code: 125, message: "\(error)"))
            return 1
        }
    }

    /// What is left once a detached container's process has ended and its exit is recorded
    /// (`strata container-cleanup ID`, run by its monitor at its end): the pid cleared, its
    /// cgroups released, the container unmounted, or removed with `--rm`; then the run state
    /// says the monitor is gone, which is what `stop` and `wait` wait for.
    public func cleanUpAfterExit(_ id: String) -> Int32 {
        if let c = try? store.container(id) {
            store.record(container: c, "die", store.runState(id)?.exitCode.map { ["exitCode": String($0)] } ?? [:])
        }
        try? store.setPid(id, nil)
        ContainerCgroups.release(id: id, parent: cgroupParent)
        detachNetwork(id)
        if ((try? store.spec(id)) ?? nil)?.flag(RuntimeSpec.Annotation.remove) == true {
            // As Docker's --rm: its anonymous volumes go with it.
            try? removeContainer(id, force: true, volumes: true)
            return 0
        }
        try? store.unmountContainer(id, force: true)
        if var state = store.runState(id) {
            state.monitorPid = nil
            try? store.writeRunState(id, state)
        }
        scheduleRestart(id)
        return 0
    }

    /// Whether the container's process still runs (its recorded pid, in its cgroup).
    public func isRunning(_ c: ContainerRecord) -> Bool {
        c.pid.map { store.isContainerProcess($0, id: c.id) } ?? false
    }

    /// `stop`: the stop signal, then SIGKILL after `timeout` seconds; waits until it has ended.
    public func stop(_ ref: String, timeout: Double?) throws {
        if case .failure(let e) = stop([ref], timeout: timeout)[0] { throw e }
    }

    /// `stop` of several containers at once, as Docker stops them: each gets its stop signal,
    /// one grace period runs for all, those still running then get SIGKILL (their whole
    /// cgroup); returns when every one has ended. One result per reference, in order: a
    /// container that cannot be found fails alone. Without a `timeout`, each container's
    /// `--stop-timeout` (10 s when it has none; the longest of them for several; -1 waits for ever).
    public func stop(_ refs: [String], timeout: Double?) -> [Result<Void, any Error>] {
        var results = [Result<Void, any Error>](repeating: .success(()), count: refs.count)
        var waiting: [String] = []
        var grace = timeout ?? 0
        for (i, ref) in refs.enumerated() {
            do {
                let c = try store.container(ref)
                // Marked first, running or not: a container between a restart policy's runs
                // must not be started again either.
                markStopped(c.id, true)
                guard isRunning(c), let pid = c.pid else { continue }
                // A container made before specs existed (run.json) stops with SIGTERM.
                let spec = (try? store.spec(c.id)) ?? nil
                let name = spec?.annotation(RuntimeSpec.Annotation.stopSignal) ?? "TERM"
                if timeout == nil {
                    let own = spec?.annotation(RuntimeSpec.Annotation.stopTimeout).flatMap { Double($0) } ?? 10
                    grace = max(grace, own < 0 ? Double(Int32.max) : own)
                }
                MonitorProcess.signal(pid, try MonitorProcess.signalNumber(name))
                thawIfPaused(c.id)
                waiting.append(c.id)
                store.record(container: c, "stop")
            } catch {
                results[i] = .failure(error)
            }
        }
        let left = waitForExits(waiting, seconds: grace)
        for id in left { killEverything(id) }
        _ = waitForExits(left, seconds: 10)
        return results
    }

    /// SIGKILL to all of a container's processes: its cgroup's; without a cgroup (rootless
    /// without a delegated one), its first process, the init of its pid namespace, whose end
    /// the kernel makes the end of every process in it.
    func killEverything(_ id: String) {
        if CgroupLayout.cached != nil {
            ContainerCgroups.kill(id: id, parent: cgroupParent)
        } else if let c = try? store.container(id), let pid = c.pid, isRunning(c) {
            MonitorProcess.signal(pid, Signal.kill)
        }
    }

    /// `kill -s SIG`: sends the signal to the container's main process.
    public func kill(_ ref: String, signal: Int32) throws {
        let c = try store.container(ref)
        guard isRunning(c), let pid = c.pid else { throw StrataError(.conflict, "container \(c.name) is not running") }
        markStopped(c.id, true)
        MonitorProcess.signal(pid, signal)
    }

    /// `wait`: blocks until the container has ended; its exit code.
    public func wait(_ ref: String) throws -> Int32 {
        try wait(record: try store.container(ref))
    }

    /// `wait` of a container already looked up: `start -a` begins it the moment the container
    /// starts, so that an `--rm` container's code is seen before its cleanup removes it.
    public func wait(record c: ContainerRecord) throws -> Int32 {
        var monitor = store.runState(c.id)?.monitorPid
        // The exit code as soon as it is recorded: with --rm the cleanup removes the container
        // (its state with it) right after, before the monitor's process ends, so such a
        // container is looked at every 10 ms rather than waited for through its monitor.
        let removedAtExit = ((try? store.spec(c.id)) ?? nil)?.flag(RuntimeSpec.Annotation.remove) == true
        if removedAtExit { monitor = nil }
        var seen: Int32?
        while true {
            // The row and the state, read once per look.
            let current = try? store.container(c.id)
            let state = current.flatMap { store.runState($0.id) }
            if state?.finishedAt != nil, let code = state?.exitCode { seen = code }
            if hasEnded(current, state: state) {
                if let code = seen ?? state?.exitCode { return code }
                if current == nil {
                    throw StrataError(.notFound, "container \(c.name) was removed (--rm) before its exit code could be read")
                }
                return 0
            }
            if seen == nil, let current, !isRunning(current) {
                sleepSeconds(0.01)  // the process is gone and its exit about to be recorded
            } else {
                pause(forMonitor: &monitor, upTo: 1, poll: removedAtExit ? 0.01 : 0.05)
            }
        }
    }

    /// Waits up to `seconds` for the processes of `ids` to be gone and their ends recorded
    /// (`hasEnded`); the IDs still running then. One container is waited for through its monitor's pidfd
    /// (woken the moment it ends); several are looked at in turns.
    private func waitForExits(_ ids: [String], seconds: Double) -> [String] {
        let end = Date().addingTimeInterval(seconds)
        var left = ids
        var monitor = ids.count == 1 ? store.runState(ids[0])?.monitorPid : nil
        while !left.isEmpty {
            left = left.filter { !hasEnded($0) }
            let remaining = end.timeIntervalSinceNow
            if left.isEmpty || remaining <= 0 { break }
            pause(forMonitor: &monitor, upTo: remaining, poll: 0.02)
        }
        return left
    }

    /// The monitor records a container's end and then exits: waits up to `seconds` for that
    /// through a pidfd, so the caller looks again at once. Once the monitor has ended (or this
    /// kernel gives no pidfd) `monitor` is nil, and it sleeps `poll` seconds between looks.
    private func pause(forMonitor monitor: inout Int32?, upTo seconds: Double, poll: Double) {
        if let pid = monitor {
            switch waitForProcessEnd(pid, seconds: seconds) {
            case false?: return
            case true?: monitor = nil; return
            case nil: monitor = nil
            }
        }
        sleepSeconds(min(poll, seconds))
    }
}

extension Engine {
    /// `exec`: runs `command` inside the running container: its namespaces, cgroups,
    /// capabilities, seccomp filter and no_new_privs; the environment, user and working
    /// directory of its spec, changed by `env` (`K=V`), `user` and `workdir`.
    public func exec(_ ref: String, command: [String], env: [String] = [], user: String? = nil, workdir: String? = nil,
                     tty: Bool = false, interactive: Bool = false, detached: Bool = false) throws -> Int32 {
        CgroupWarmUp.begin()
        SignalRelay.begin()
        defer { SignalRelay.end() }
        let c = try store.container(ref)
        guard isRunning(c), let pid = c.pid else {
            throw LaunchFailure(exitCode: 125, message: "container \(c.name) is not running; `strata start \(c.name)` first")
        }
        guard !command.isEmpty else { throw LaunchFailure(exitCode: 125, message: "exec needs a command") }
        guard let spec = try store.spec(c.id) else {
            throw LaunchFailure(exitCode: 125, message: "container \(c.name) has no spec to take the user and environment from")
        }
        // The container's own view of its files (volumes and /etc files included): its root.
        let rootfs = "/proc/\(pid)/root"
        var process = spec.process
        process.args = command
        process.terminal = tty
        process.cwd = workdir ?? spec.process.cwd
        var environment = spec.process.env.filter { !$0.hasPrefix("HOSTNAME=") }
        if let user {
            let resolved = try RootfsFiles(rootfs: rootfs).user(user)
            process.user = RuntimeSpec.User(uid: resolved.uid, gid: resolved.gid, additionalGids: resolved.groups)
            if spec.flag(RuntimeSpec.Annotation.homeFromUser) {
                environment = environment.map { $0.hasPrefix("HOME=") ? "HOME=\(resolved.home)" : $0 }
            }
        }
        for e in env {
            let key = e.split(separator: "=", maxSplits: 1).first.map(String.init) ?? e
            environment.removeAll { $0.hasPrefix(key + "=") }
            if e.contains("=") { environment.append(e) }
        }
        if tty && !environment.contains(where: { $0.hasPrefix("TERM=") }) { environment.append("TERM=xterm") }
        process.env = environment
        var launcher = ExecLauncher(id: c.id, target: pid, rootfs: rootfs, process: process, seccomp: spec.linux.seccomp,
                                    cgroupParent: cgroupParent, interactive: interactive)
        launcher.detached = detached
        launcher.targetStart = store.recordedStartTime(c.id, pid: pid)
        return try launcher.run()
    }
}

/// Which images `prune` removes: none, dangling ones (no tag, no container: Docker's `image
/// prune`), or every one no container uses (`-a`).
public enum ImagePruneScope: Sendable { case none, dangling, unused }

/// What a prune removed.
public struct PruneReport: Sendable {
    public var containers = 0
    public var images = 0
    /// The IDs of the images removed.
    public var deletedImages: [String] = []
    public var layers = 0
    public var bytes: Int64 = 0
}

extension Engine {
    /// `system prune`: containers that do not run and are not mounted (`containers`), the
    /// images `images` says (none of them used by a container), then what `gc` removes (`collect`).
    public func prune(containers: Bool, images: ImagePruneScope, collect: Bool = true) throws -> PruneReport {
        var report = PruneReport()
        if containers {
            for c in try store.containers(all: true) where c.state == .exited || c.state == .created {
                try removeContainer(c.record.id, force: false)
                report.containers += 1
            }
        }
        if images != .none {
            let used = Set(try store.containers(all: true).map(\.record.image))
            let unused = try store.images().filter { !used.contains($0.id) && (images == .unused || $0.tags.isEmpty) }.map(\.id.string)
            if !unused.isEmpty {
                // By ID, every tag with it (`force`): no container uses these.
                let r = try store.removeImages(unused, force: true)
                report.images += r.deletedImages.count
                report.deletedImages += r.deletedImages
                report.layers += r.deletedLayers.count
                report.bytes += r.bytesFreed
            }
        }
        if collect {
            let r = try store.garbageCollect()
            report.layers += r.deletedLayers.count
            report.bytes += r.bytesFreed
            _ = ContainerLeftovers.removeCgroups(parent: cgroupParent)
        }
        return report
    }
}

extension Engine {
    /// `export`: the container's whole tree (its image's layers, its init layer, its changes)
    /// as one tar written to `sink`, as `docker export` does. Mounted for the walk (a count
    /// like any other mount), unmounted after.
    public func export(_ ref: String, to sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        let c = try store.container(ref)
        let rootfs = try store.mountContainer(c.id)
        defer { try? store.unmountContainer(c.id) }
        let writer = try LayerDiffWriter(sink: sink)
        try Engine.writeTree(try Directory.open(rootfs), prefix: [], to: writer)
        try writer.close()
    }
}

extension Engine {
    /// `attach`: the running container's output here and this process's input there, through
    /// its monitor, until it ends (its exit code) or the detach keys are typed (nil).
    public func attach(_ ref: String, client: AttachClient) throws -> Int32? {
        let c = try store.container(ref)
        guard isRunning(c) else { throw StrataError(.conflict, "container \(c.name) is not running; `strata start -a \(c.name)` starts it attached") }
        var client = client
        client.tty = ((try? store.spec(c.id)) ?? nil)?.process.terminal == true
        guard try client.run(directory: store.containerPaths(c.id).root) == .containerEnded else { return nil }
        return try wait(record: c)
    }
}
