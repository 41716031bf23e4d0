import ArgumentParser
import Dispatch
import FoundationEssentials
import Synchronization
import StrataEngine
import StrataLauncher
import StrataSystem
import StrataArchive

/// The monitor of a detached container (started by `run -d` and `start`; not for users).
struct ContainerMonitor: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "container-monitor", shouldDisplay: false)
    @OptionGroup var global: GlobalOptions
    @Argument var id: String
    func run() throws {
        CgroupWarmUp.begin()
        let engine: Engine
        do { engine = try global.openEngine() } catch {
            MonitorProcess.statusPipe()?.report(.failed(code: 125, message: "\(error)"))
            throw ExitCode(125)
        }
        let code = engine.monitor(id)
        Metadata.checkpointAfterWrites()
        throw ExitCode(code)
    }
}

/// What a detached container's monitor leaves for strata once the container has ended (run by
/// strata-monitor at its end; not for users).
struct ContainerCleanup: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "container-cleanup", shouldDisplay: false)
    @OptionGroup var global: GlobalOptions
    @Argument var id: String
    func run() throws {
        let code = try global.openEngine().cleanUpAfterExit(id)
        Metadata.checkpointAfterWrites()
        throw ExitCode(code)
    }
}

/// Starts a container again after its restart policy's delay (spawned by `container-cleanup`; not for users).
struct ContainerRestart: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "container-restart", shouldDisplay: false)
    @OptionGroup var global: GlobalOptions
    @Argument var id: String
    func run() throws {
        let code = try global.openEngine().restartAfterDelay(id)
        Metadata.checkpointAfterWrites()
        throw ExitCode(code)
    }
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start",
        abstract: "Start created or stopped containers with what `create` or `run` recorded (in the background).",
        discussion: "With -a: one container, its output shown as it comes, and its exit code as strata's.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Wait for the container, showing its stdout and stderr; exit with its code.") var attach = false
    @Flag(name: [.short, .long], help: "With -a: this terminal's input goes to the container (it was made with -i).") var interactive = false
    @Option(name: .long, help: "With -a -i: the keys that detach (default ctrl-p,ctrl-q).") var detachKeys: String?
    @Argument(help: "Containers.", completion: NameCompletion.containers) var containers: [String]
    func run() throws {
        CgroupWarmUp.begin()
        if attach && containers.count != 1 {
            printErr("strata: start -a takes one container")
            throw ExitCode(64)
        }
        if attach && interactive {
            var code: Int32 = 0
            try strata.run {
                let engine = try global.openEngine()
                var client = AttachClient(detachKeys: try detachKeys.map(AttachClient.parseKeys) ?? AttachClient.defaultDetachKeys)
                client.replay = true
                let c = try engine.store.container(containers[0])
                var options = LogOptions()
                options.since = Date()
                try engine.start(c.id)
                do {
                    code = try engine.attach(c.id, client: client) ?? 0
                } catch let e as StrataError where e.code == .conflict && !((try? engine.store.container(c.id)).map(engine.isRunning) ?? false) {
                    // Ended before its monitor could be reached: what it wrote is in its log.
                    code = try engine.wait(record: c)
                    try showLog(engine, c.id, options: options, timestamps: false)
                }
            }
            throw ExitCode(code)
        }
        if attach {
            var code: Int32 = 0
            try strata.run {
                let engine = try global.openEngine()
                let c = try engine.store.container(containers[0])
                // This run's output only: a restarted container's log still holds the last one's.
                var options = LogOptions()
                options.since = Date()
                options.follow = true
                try engine.start(c.id)
                // The wait runs beside the log from the start: an --rm container is removed
                // right after it ends, and its exit code with it.
                let exit = Mutex<Result<Int32, any Error>?>(nil)
                let done = DispatchSemaphore(value: 0)
                DispatchQueue.global().async {
                    exit.withLock { $0 = Result { try engine.wait(record: c) } }
                    done.signal()
                }
                try showLog(engine, c.id, options: options, timestamps: false)
                done.wait()
                code = try exit.withLock { $0 }!.get()
            }
            throw ExitCode(code)
        }
        try strata.run {
            let engine = try global.openEngine()
            try reportEach(containers, eachResult(containers) { try engine.start($0) })
        }
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop containers: the stop signal, then SIGKILL after a grace period.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("time")], help: "Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).") var time: Double?
    @Argument(help: "Containers.", completion: NameCompletion.containers) var containers: [String]
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            try reportEach(containers, engine.stop(containers, timeout: time))
        }
    }
}

struct Restart: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restart", abstract: "Stop containers, then start them again.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("time")], help: "Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).") var time: Double?
    @Argument(help: "Containers.", completion: NameCompletion.containers) var containers: [String]
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            // All stopped at once, then each started (as `docker restart`).
            let stopped = engine.stop(containers, timeout: time)
            try reportEach(containers, zip(containers, stopped).map { c, r in r.flatMap { Result { try engine.start(c) } } })
        }
    }
}

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kill", abstract: "Send a signal to the main process of running containers.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "Signal name or number.") var signal: String = "KILL"
    @Argument(help: "Containers.", completion: NameCompletion.containers) var containers: [String]
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            let n = try MonitorProcess.signalNumber(signal)
            try reportEach(containers, eachResult(containers) { try engine.kill($0, signal: n) })
        }
    }
}

struct Wait: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wait", abstract: "Wait for containers to end; print their exit codes.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Containers.", completion: NameCompletion.containers) var containers: [String]
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            for c in containers { print(try engine.wait(c)) }
        }
    }
}

struct Logs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Show what a detached container wrote (stdout and stderr kept apart).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Keep following the log until the container ends.") var follow = false
    @Option(name: .long, help: "Only the last N lines (or all).") var tail: String = "all"
    @Flag(name: [.short, .long], help: "Show the time of each line.") var timestamps = false
    @Option(name: .long, help: "Only lines since a time (RFC 3339) or a duration ago (10m, 1h30m, 45s).") var since: String?
    @Argument(help: "Container.", completion: NameCompletion.containers) var container: String

    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            let c = try engine.store.container(container)
            var options = LogOptions()
            if tail != "all" {
                guard let n = Int(tail), n >= 0 else { throw StrataError(.invalidArgument, "invalid --tail \"\(tail)\": a number, or all") }
                options.tail = n
            }
            options.since = try since.map(LogOptions.parseSince)
            options.follow = follow
            try showLog(engine, c.id, options: options, timestamps: timestamps)
        }
    }
}

/// A container's log on strata's stdout and stderr, as the container wrote it to each.
func showLog(_ engine: Engine, _ id: String, options: LogOptions, timestamps: Bool) throws {
    // A line written in parts shows its time once, before its first part.
    var midLine: Set<String> = []
    try engine.logs(id, options: options) { line in
        let stamp = timestamps && !midLine.contains(line.stream)
        if line.partial { midLine.insert(line.stream) } else { midLine.remove(line.stream) }
        let text = (stamp ? Array((line.time + " ").utf8) : []) + line.text + (line.partial ? [] : [0x0a])
        if line.stream == "stderr" { writeStandardError(String(decoding: text, as: UTF8.self)) } else {
            writeStandardOutput(text)
        }
    }
}

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec",
        abstract: "Run a command inside a running container.",
        discussion: "It joins every namespace and cgroup of the container, with its capabilities, seccomp filter and user. Exit code as `run`.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("env")], help: "Set an environment variable K=V.") var env: [String] = []
    @Option(name: [.short, .long], help: "USER[:GROUP] from the image's own files.") var user: String?
    @Option(name: [.short, .customLong("workdir")], help: "Working directory inside the container.") var workdir: String?
    @Flag(name: [.short, .long], help: "Keep standard input open.") var interactive = false
    @Flag(name: [.short, .long], help: "Allocate a pseudo-terminal (from the container's own devpts).") var tty = false
    @Flag(name: [.short, .long], help: "Start the command and return; its output is discarded.") var detach = false
    @Argument(help: "Container.", completion: NameCompletion.containers) var container: String
    @Argument(parsing: .captureForPassthrough, help: "Command and arguments.") var command: [String] = []

    func run() throws {
        try runsAProcess {
            if detach && (tty || interactive) {
                throw StrataError(.invalidArgument, "exec -d with -t or -i needs `attach`, which strata does not have yet; drop -t/-i")
            }
            return try global.openEngine().exec(container, command: command, env: env, user: user, workdir: workdir,
                                                tty: tty, interactive: interactive, detached: detach)
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Write a container's whole tree as a tar (as docker export).")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "The tar file (default: standard output, not a terminal).") var output: String?
    @Argument(help: "Container.", completion: NameCompletion.containers) var container: String
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            if output == nil && isTerminal(1) {
                throw StrataError(.invalidArgument, "refusing to write a tar to a terminal; redirect standard output or use -o FILE")
            }
            let file = try output.map { try FDHandle.open($0 + ".strata-partial", flags: [.writeOnly, .create, .truncate], mode: 0o644) }
                ?? FDHandle.duplicating(1)
            let out = BufferedOutput(file)
            do {
                try engine.export(container) { try out.write($0) }
                try out.flush()
                if let output { try renamePath(output + ".strata-partial", to: output) }
            } catch {
                if let output { removeFile(output + ".strata-partial") }
                throw error
            }
        }
    }
}

/// `healthcheck run CONTAINER` (podman's): the container's check once, now; its health after.
struct HealthcheckGroup: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "healthcheck", abstract: "Run a container's health check.",
                                                    subcommands: [HealthcheckRun.self])
}

struct HealthcheckRun: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run",
        abstract: "Run the container's health check once and record it; exit 0 when healthy, 1 when not.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container.", completion: NameCompletion.containers) var container: String
    func run() throws {
        try strata.run {
            let state = try global.openEngine().runHealthCheck(container)
            if !global.quiet { print(state.Status) }
            if state.Log.last?.ExitCode != 0 { throw ExitCode(1) }
        }
    }
}

/// `attach`: this terminal to a running container (started with `-d`; `-it` for a shell).
struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "attach",
        abstract: "Attach this terminal to a running container's input and output; ctrl-p ctrl-q detaches.",
        discussion: "Exit code: the container's when it ends; 0 when detached.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "The keys that detach: ctrl-<letter> or characters, comma-separated (default ctrl-p,ctrl-q).") var detachKeys: String?
    @Flag(name: .long, help: "Do not send this terminal's input.") var noStdin = false
    @Option(name: .long, help: "Accepted for Docker's scripts; signals typed reach a container with a terminal as keys.") var sigProxy: Bool = true
    @Argument(help: "Container.", completion: NameCompletion.containers) var container: String
    func run() throws {
        var code: Int32 = 0
        try strata.run {
            var client = AttachClient(detachKeys: try detachKeys.map(AttachClient.parseKeys) ?? AttachClient.defaultDetachKeys)
            client.stdin = !noStdin
            code = try global.openEngine().attach(container, client: client) ?? 0
        }
        throw ExitCode(code)
    }
}
