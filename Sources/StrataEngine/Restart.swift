import FoundationEssentials
import StrataCore
import StrataLauncher
import StrataStore
import StrataSystem

/// Docker's `--restart` policies. Without a daemon, `unless-stopped` is `always`: both leave
/// a container alone once `stop` or `kill` has stopped it, until it is started again.
public enum RestartPolicy: Sendable, Equatable {
    case no, always, unlessStopped
    /// Restart after a non-zero exit, at most `maxRetries` times (nil: no limit).
    case onFailure(maxRetries: Int?)

    /// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    public init(parsing s: String) throws {
        switch s {
        case "no": self = .no
        case "always": self = .always
        case "unless-stopped": self = .unlessStopped
        case "on-failure": self = .onFailure(maxRetries: nil)
        default:
            guard s.hasPrefix("on-failure:"), let n = Int(s.dropFirst("on-failure:".count)), n >= 0 else {
                throw StrataError(.invalidArgument, "invalid --restart \"\(s)\": no, always, unless-stopped or on-failure[:N]")
            }
            self = .onFailure(maxRetries: n)
        }
    }

    var text: String {
        switch self {
        case .no: return "no"
        case .always: return "always"
        case .unlessStopped: return "unless-stopped"
        case .onFailure(let n): return n.map { "on-failure:\($0)" } ?? "on-failure"
        }
    }

    /// Whether a container that ended with `exitCode` after `restarts` restarts starts again.
    func allows(exitCode: Int32, restarts: Int) -> Bool {
        switch self {
        case .no: return false
        case .always, .unlessStopped: return true
        case .onFailure(let n): return exitCode != 0 && n.map { restarts < $0 } != false
        }
    }
}

/// How a container's restarts went, in `restart.json` in its folder (written by strata only;
/// the fixed-size exit record stays the monitor's).
struct RestartRecord: Codable, Equatable {
    /// Restarts so far (inspect's RestartCount).
    var count = 0
    /// Restarts in a row that ran under 10 s: the delay doubles with each (Docker's backoff).
    var consecutive = 0
    /// The delay the pending restart waits, in seconds.
    var delay = 0.0
    /// `stop` or `kill` ended it: no restart until it is started again.
    var stopped = false
}

extension Store {
    static let restartName = "restart.json"

    func restartRecord(_ id: String) -> RestartRecord {
        guard let f = try? FDHandle.open(containerPaths(id).root + "/" + Store.restartName, flags: .readOnly),
              let bytes = try? f.readAll(limit: 1 << 16, label: Store.restartName),
              let r = try? JSONDecoder().decode(RestartRecord.self, from: Data(bytes)) else { return RestartRecord() }
        return r
    }

    func writeRestartRecord(_ id: String, _ r: RestartRecord) throws {
        try Directory.open(containerPaths(id).root).writeFileAtomically(Array(Store.restartName.utf8), Array(try JSONEncoder().encode(r)))
    }

    /// How many times the container was restarted by its policy.
    public func restartCount(_ id: String) -> Int { restartRecord(id).count }
}

extension Engine {
    /// The policy a container's spec records (none: `.no`).
    func restartPolicy(_ id: String) -> RestartPolicy {
        guard let text = ((try? store.spec(id)) ?? nil)?.annotation(RuntimeSpec.Annotation.restart) else { return .no }
        return (try? RestartPolicy(parsing: text)) ?? .no
    }

    /// `stop` and `kill` mark a container with a policy as stopped; `start` clears the mark.
    func markStopped(_ id: String, _ stopped: Bool) {
        guard restartPolicy(id) != .no else { return }
        var r = store.restartRecord(id)
        guard r.stopped != stopped else { return }
        r.stopped = stopped
        if !stopped { r.consecutive = 0 }
        try? store.writeRestartRecord(id, r)
    }

    /// After a container has ended (its cleanup): when its policy says so, and nothing stopped
    /// it, a detached `container-restart` starts it again after Docker's delay (100 ms, doubled
    /// for each restart in a row of a run under 10 s, at most a minute). Nothing here waits, so
    /// `wait` sees the end as it happened.
    func scheduleRestart(_ id: String) {
        let policy = restartPolicy(id)
        guard policy != .no, let command = monitorCommand, let arguments = command.restartArguments else { return }
        var r = store.restartRecord(id)
        let state = store.runState(id)
        guard !r.stopped, policy.allows(exitCode: state?.exitCode ?? 0, restarts: r.count) else { return }
        if let s = state?.startedAt.flatMap({ Timestamp.date($0) }), let f = state?.finishedAt.flatMap({ Timestamp.date($0) }),
           f.timeIntervalSince(s) >= 10 {
            r.consecutive = 0  // it ran long enough: the backoff starts over
        }
        r.delay = min(0.1 * Double(1 << min(r.consecutive, 10)), 60)
        r.count += 1
        r.consecutive += 1
        guard (try? store.writeRestartRecord(id, r)) != nil else { return }
        try? MonitorProcess.spawnDetached(command.executable, arguments: arguments(id))
    }

    /// `container-restart ID`: waits the recorded delay, then starts the container unless it
    /// was stopped, removed or started meanwhile.
    public func restartAfterDelay(_ id: String) -> Int32 {
        sleepSeconds(store.restartRecord(id).delay)
        guard let c = try? store.container(id), !store.restartRecord(id).stopped, !isRunning(c) else { return 0 }
        do { try startRecorded(c) } catch { return 1 }
        return 0
    }
}
