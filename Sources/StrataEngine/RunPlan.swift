import StrataCore
import StrataFormats
import StrataLauncher

/// What the caller changes of an image's process: Docker's `--entrypoint`, the command after
/// the image, `-e`, `-w`, `-u`.
public struct RunOverrides: Sendable, Equatable {
    /// nil keeps the image's; "" clears it.
    public var entrypoint: String?
    /// Empty keeps the image's Cmd (cleared when an entrypoint is given).
    public var command: [String]
    /// `K=V`, or `K` to take the value from `hostEnvironment`.
    public var env: [String]
    public var workdir: String?
    public var user: String?

    /// Overrides as Docker's flags give them; nothing given keeps the image's.
    public init(entrypoint: String? = nil, command: [String] = [], env: [String] = [], workdir: String? = nil, user: String? = nil) {
        self.entrypoint = entrypoint; self.command = command; self.env = env; self.workdir = workdir; self.user = user
    }
}

/// What a container runs, before the rootfs resolves its user: argv, environment, working
/// directory and user (`name`, `uid`, `uid:gid`).
public struct ProcessSpec: Sendable, Equatable {
    public var args: [String]
    public var env: [String]
    public var cwd: String
    public var user: String
    public init(args: [String], env: [String], cwd: String, user: String) {
        self.args = args; self.env = env; self.cwd = cwd; self.user = user
    }
}

/// The process a container runs, made once from the image config and the caller's overrides,
/// as Docker combines them: used by `run` and by `bundle` alike.
public enum RunPlan {
    /// The process: entrypoint and command combined as Docker does, `env` merged over the image's (a bare `K` takes the host's value), working directory and user.
    public static func process(config: ImageConfig.Config, overrides: RunOverrides,
                               hostEnvironment: [String: String]) -> ProcessSpec {
        let entry = overrides.entrypoint.map { $0.isEmpty ? [] : [$0] } ?? (config.Entrypoint ?? [])
        let cmd = !overrides.command.isEmpty ? overrides.command : (overrides.entrypoint != nil ? [] : (config.Cmd ?? []))
        var environment = config.Env ?? []
        for e in overrides.env {
            let kv = e.contains("=") ? e : hostEnvironment[e].map { "\(e)=\($0)" } ?? e
            let key = kv.split(separator: "=", maxSplits: 1).first.map(String.init) ?? kv
            environment.removeAll { $0.hasPrefix(key + "=") }
            if kv.contains("=") { environment.append(kv) }
        }
        return ProcessSpec(args: entry + cmd, env: environment,
                           cwd: overrides.workdir ?? (config.WorkingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"),
                           user: overrides.user ?? config.User ?? "")
    }
}
