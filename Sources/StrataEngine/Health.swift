import FoundationEssentials
import StrataCore
import StrataFormats
import StrataLauncher
import StrataSystem

/// `--health-cmd`, `--health-interval`, `--health-timeout`, `--health-retries`,
/// `--health-start-period`, `--no-healthcheck`: what replaces the image's HEALTHCHECK.
public struct HealthFlags: Sendable, Equatable {
    /// A shell command (Docker's `CMD-SHELL`).
    public var command: String?
    public var interval: Double?
    public var timeout: Double?
    public var startPeriod: Double?
    public var retries: Int?
    public var disabled = false
    /// The image's check as it is.
    public init() {}
}

/// A container's health check: the command, run by its monitor every `interval` seconds (a run
/// longer than `timeout` is a failure), `retries` failures in a row making it unhealthy;
/// failures in the first `startPeriod` seconds do not count (Docker's rules and defaults).
public struct HealthSettings: Codable, Sendable, Equatable {
    /// `["CMD", program, args…]` or `["CMD-SHELL", command]`.
    public var test: [String]
    public var interval: Double = 30
    public var timeout: Double = 30
    public var startPeriod: Double = 0
    public var retries = 3

    /// The annotation the container's spec carries it in (JSON).
    static let annotation = "io.strata.healthcheck"

    /// The check for a container of an image with `image` (its HEALTHCHECK) run with `flags`;
    /// nil for none.
    static func resolve(image: ImageConfig.Healthcheck?, flags: HealthFlags) throws -> HealthSettings? {
        if flags.disabled {
            guard flags.command == nil else {
                throw StrataError(.invalidArgument, "conflicting options: --no-healthcheck and --health-cmd")
            }
            return nil
        }
        var test = image?.Test ?? []
        if let command = flags.command { test = ["CMD-SHELL", command] }
        guard let kind = test.first, kind != "NONE" else { return nil }
        guard (kind == "CMD" && test.count > 1) || (kind == "CMD-SHELL" && test.count == 2) else {
            throw StrataError(.invalidFormat, "the image's HEALTHCHECK test \(test) is not CMD or CMD-SHELL; give --health-cmd or --no-healthcheck")
        }
        func seconds(_ ns: Int64?) -> Double? { ns.flatMap { $0 > 0 ? Double($0) / 1e9 : nil } }
        var s = HealthSettings(test: test)
        s.interval = flags.interval ?? seconds(image?.Interval) ?? s.interval
        s.timeout = flags.timeout ?? seconds(image?.Timeout) ?? s.timeout
        s.startPeriod = flags.startPeriod ?? seconds(image?.StartPeriod) ?? s.startPeriod
        s.retries = flags.retries ?? image?.Retries.flatMap { $0 > 0 ? $0 : nil } ?? s.retries
        guard s.interval >= 0.001, s.timeout >= 0.001, s.startPeriod >= 0, s.retries >= 1 else {
            throw StrataError(.invalidArgument, "invalid health check timing: interval and timeout of at least 1ms, retries at least 1")
        }
        return s
    }

    /// The argv the check runs.
    var argv: [String] { test[0] == "CMD-SHELL" ? ["/bin/sh", "-c", test[1]] : Array(test.dropFirst()) }
}

/// A container's health as `inspect` shows it (`State.Health`, Docker's keys), kept in its
/// folder as health.json.
public struct HealthState: Codable, Sendable, Equatable {
    /// `starting`, `healthy` or `unhealthy`.
    public var Status: String
    public var FailingStreak: Int
    /// The last five checks.
    public var Log: [Check]

    public struct Check: Codable, Sendable, Equatable {
        public var Start: String
        public var End: String
        /// The command's exit code; -1 when it took longer than the timeout.
        public var ExitCode: Int32
        public var Output: String
    }

    static let fileName: PathBytes = Array("health.json".utf8)
}

extension Store {
    /// The container's health check, from its spec; nil for none.
    func healthSettings(_ id: String) -> HealthSettings? {
        guard let text = ((try? spec(id)) ?? nil)?.annotation(HealthSettings.annotation) else { return nil }
        return try? JSONDecoder().decode(HealthSettings.self, from: Data(text.utf8))
    }

    /// Its health as last recorded; nil for a container without a check (or never started).
    public func healthState(_ id: String) -> HealthState? {
        guard let dir = try? Directory.open(containerPaths(id).root),
              let bytes = try? dir.readFile(HealthState.fileName, limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(HealthState.self, from: Data(bytes))
    }

    func writeHealthState(_ id: String, _ state: HealthState?) throws {
        let dir = try Directory.open(containerPaths(id).root)
        guard let state else { _ = dir.unlink(HealthState.fileName); return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try dir.writeFileAtomically(HealthState.fileName, Array(try encoder.encode(state)))
    }

    /// At each start: `starting`, with no checks yet (or nothing, without a check).
    func resetHealth(_ id: String) throws {
        try writeHealthState(id, healthSettings(id).map { _ in HealthState(Status: "starting", FailingStreak: 0, Log: []) })
    }
}

extension Engine {
    /// `healthcheck run`: runs the container's check once inside it (as `exec` runs a command,
    /// its output gathered, killed at the timeout), records the result in its health and
    /// returns the new health. Throws for a container without a check or not running.
    public func runHealthCheck(_ ref: String) throws -> HealthState {
        let c = try store.container(ref)
        guard let settings = store.healthSettings(c.id) else {
            throw StrataError(.notFound, "container \(c.name) has no health check (HEALTHCHECK in its image, or --health-cmd)")
        }
        guard isRunning(c), let pid = c.pid, let spec = try store.spec(c.id) else {
            throw StrataError(.conflict, "container \(c.name) is not running")
        }
        var process = spec.process
        process.args = settings.argv
        process.terminal = false
        process.env = spec.process.env.filter { !$0.hasPrefix("HOSTNAME=") }
        var launcher = ExecLauncher(id: c.id, target: pid, rootfs: "/proc/\(pid)/root", process: process, seccomp: spec.linux.seccomp,
                                    cgroupParent: cgroupParent)
        launcher.targetStart = store.recordedStartTime(c.id, pid: pid)
        let start = Timestamp.preciseNow()
        let result: (exitCode: Int32?, output: [UInt8])
        do {
            result = try launcher.runCaptured(timeout: settings.timeout, limit: 4096)
        } catch let e as LaunchFailure {
            result = (e.exitCode, Array(e.message.utf8))
        }
        let end = Timestamp.preciseNow()
        // One check's result at a time (the monitor's and a user's may cross).
        let lease = try LayerLocks(store: store)
        try lease.lock(key: Digest.of(Array("health:\(c.id)".utf8)).hex, exclusive: true)
        defer { lease.unlockAll() }
        var state = store.healthState(c.id) ?? HealthState(Status: "starting", FailingStreak: 0, Log: [])
        let before = state.Status
        let output = result.exitCode == nil ? "Health check exceeded timeout (\(settings.timeout)s)" : String(decoding: result.output, as: UTF8.self)
        state.Log = Array((state.Log + [HealthState.Check(Start: start, End: end, ExitCode: result.exitCode ?? -1, Output: output)]).suffix(5))
        if result.exitCode == 0 {
            state.Status = "healthy"
            state.FailingStreak = 0
        } else {
            let started = store.runState(c.id)?.startedAt.flatMap(Timestamp.date)
            let inStartPeriod = started.map { Date().timeIntervalSince($0) < settings.startPeriod } ?? false
            // Docker: a failure in the start period does not count while the container has not yet been healthy.
            if !(inStartPeriod && state.Status == "starting") {
                state.FailingStreak += 1
                if state.FailingStreak >= settings.retries { state.Status = "unhealthy" }
            }
        }
        try store.writeHealthState(c.id, state)
        if before != state.Status { store.record(container: c, "health_status: \(state.Status)") }
        return state
    }
}
