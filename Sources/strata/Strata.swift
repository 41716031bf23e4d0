import ArgumentParser
import CRootless
import FoundationEssentials
import Logging
import StrataCore
import StrataFormats
import StrataArchive
import StrataLauncher
import StrataEngine
import StrataSystem
import StrataStore

/// `stop -t0`, `restart -t5` as Docker takes them: the argument parser reads a short option's
/// value only as the next argument. Only for commands whose arguments are all strata's (no
/// container command follows, whose own `-n5` must stay as typed).
func attachedTimeouts(_ args: [String]) -> [String] {
    guard let command = args.first, ["stop", "restart"].contains(command) else { return args }
    var out: [String] = []
    for (i, a) in args.enumerated() {
        if i > 0, a.hasPrefix("-t"), a.count > 2, a.dropFirst(2).allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
            out += ["-t", String(a.dropFirst(2))]
        } else {
            out.append(a)
        }
    }
    return out
}

@main
enum Main {
    static func main() {
        ensureStandardDescriptors()
        useDefaultUmask()
        raiseOpenFileLimit()
        var args = attachedTimeouts(GlobalOptions.hoisted(Array(CommandLine.arguments.dropFirst())))
        if args.first == "build" { args = Build.normalizedArguments(args) }
        if let first = args.first, !first.hasPrefix("-"), let message = Strata.unknownCommand(first) {
            printErr(message)
            Strata.exit(withError: ExitCode(64))
        }
        do {
            var command = try Strata.parseAsRoot(args)
            try command.run()
        } catch {
            // `run` exits as Docker's does: 125 when strata itself cannot start it, bad flags included.
            if args.first == "run", Strata.exitCode(for: error) != .success, !(error is ExitCode), !(error is CleanExit) {
                printErr(Strata.fullMessage(for: error))
                Strata.exit(withError: ExitCode(125))
            }
            Strata.exit(withError: error)
        }
    }
}

/// strata's version (`strata --version`, `strata version`).
enum StrataVersion {
    static let string = "0.5.0"
}

struct Strata: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata",
        abstract: "A layered container image store and union-mount manager.",
        discussion: """
            Exit codes: 0 success; 1 the input was refused (bad archive, digest mismatch, unsafe \
            entry, over a limit); 2 not found; 3 conflict or in use; 64 usage; 70 internal error; \
            71 system error.
            """,
        version: StrataVersion.string,
        subcommands: [Load.self, Import.self, Images.self, Layers.self, History.self, Inspect.self, Tag.self,
                      Rmi.self, Save.self, GC.self, Check.self, Create.self, Mount.self, Umount.self, Rm.self,
                      Ps.self, Diff.self, Commit.self, Run.self, Bundle.self, Pull.self, Push.self, Login.self, Logout.self,
                      Start.self, Stop.self, Restart.self, Kill.self, Wait.self, Logs.self, Exec.self, Export.self,
                      Pause.self, Unpause.self, Rename.self, Top.self, Stats.self, Cp.self, Attach.self, Events.self, Version.self,
                      ImageGroup.self, ContainerGroup.self, SystemGroup.self, Info.self, ContainerMonitor.self,
                      ContainerCleanup.self, ContainerRestart.self, VolumeGroup.self, HealthcheckGroup.self, Unshare.self, NetworkGroup.self, Port.self,
                      Build.self]
    )

    /// "unknown command 'X'" with the nearest command, or nil for a command that exists.
    /// Docker commands a Docker user may type that strata has no counterpart for yet: named as
    /// such rather than answered with the nearest spelling (`top` is not `stop`).
    static let dockerCommandsNotYetHere: Set<String> = [
        "update",
        "builder", "buildx", "compose", "search", "swarm", "service",
        "stack", "node", "secret", "config", "plugin", "context", "trust", "manifest", "checkpoint",
    ]

    static func unknownCommand(_ name: String) -> String? {
        let names = configuration.subcommands.map { $0._commandName } + ["help"]
        guard !names.contains(name) else { return nil }
        /// Edits between two names, a swap of neighbouring letters counting as one (`stpo` → `stop`).
        func distance(_ a: String, _ b: String) -> Int {
            let a = Array(a), b = Array(b)
            guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
            var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
            for i in 0...a.count { d[i][0] = i }
            for j in 0...b.count { d[0][j] = j }
            for i in 1...a.count {
                for j in 1...b.count {
                    d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                    if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
                }
            }
            return d[a.count][b.count]
        }
        if dockerCommandsNotYetHere.contains(name) {
            return "strata: '\(name)' is a Docker command strata does not have yet (`strata --help` lists those it has)"
        }
        // A suggestion only for a likely slip of the keyboard: one edit in a short name, two in a longer one.
        let nearest = names.filter { !$0.hasPrefix("container-") }.min { distance(name, $0) < distance(name, $1) }
        let hint = nearest.map { distance(name, $0) <= (name.count <= 4 ? 1 : 2) ? "; did you mean '\($0)'?" : "" } ?? ""
        return "strata: unknown command '\(name)'\(hint) (`strata --help` lists them)"
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Show strata's version.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        var u = [String]()
        if let release = try? FDHandle.open("/proc/sys/kernel/osrelease", flags: .readOnly).readAll(limit: 256, label: "osrelease") {
            u.append("kernel " + String(decoding: release, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        print("strata version \(StrataVersion.string)" + (u.isEmpty ? "" : " (\(u.joined(separator: ", ")))"))
    }
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store directory (also STRATA_ROOT).", valueName: "DIR"))
    var root: String?

    @Option(name: .long, help: ArgumentHelp("Union driver of a new store: overlay, fuse-overlayfs or vfs (default: overlay if it works here; rootless, then fuse-overlayfs).", valueName: "NAME"))
    var driver: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    /// `--quiet` only: `-q` after a command is that command's (`images -q`, `ps -q` print IDs,
    /// as in Docker); a `-q` before the command still means `--quiet`.
    @Flag(name: .long, help: "Print only results, no progress.")
    var quiet = false

    /// Global options may come before the command (`strata --root DIR load X`), as with
    /// docker and podman; the parser wants them after it, so they are moved there.
    static func hoisted(_ args: [String]) -> [String] {
        var leading: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "--root" || a == "--log-level" || a == "--driver" {
                guard i + 1 < args.count else { break }
                leading += [a, args[i + 1]]
                i += 2
            } else if a.hasPrefix("--root=") || a.hasPrefix("--log-level=") || a.hasPrefix("--driver=") || a == "--quiet" || a == "-q" {
                leading.append(a == "-q" ? "--quiet" : a)
                i += 1
            } else {
                break
            }
        }
        // Only before a subcommand: `--root R --generate-completion-script zsh` stays as typed.
        guard i < args.count, !leading.isEmpty, !args[i].hasPrefix("-") else { return args }
        // `image ls`, `container rm`, `system df`: after the subcommand.
        if ["image", "container", "system", "volume", "healthcheck", "network"].contains(args[i]), i + 1 < args.count {
            return [args[i], args[i + 1]] + leading + args[(i + 2)...]
        }
        return [args[i]] + leading + args[(i + 1)...]
    }

    var rootPath: String {
        root ?? ProcessInfo.processInfo.environment["STRATA_ROOT"] ?? Store.defaultRoot
    }

    func makeLogger() throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("invalid --log-level \"\(logLevel)\"")
        }
        var logger = Logger(label: "strata") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = level
        return logger
    }

    /// The store; `forRepair` opens one whose database does not describe its files (for `check`).
    func openStore(forRepair: Bool = false) throws -> Store {
        // Not root, and the user namespace of rootless strata could not be entered: why.
        if !isRootUser {
            let why = strata_rootless_error().map { String(cString: $0) } ?? "strata was not started as a user it can run as"
            throw StrataError(.system, "rootless strata cannot run: \(why)")
        }
        // A store this user cannot write: one line that says what to do, before anything is made.
        if UserNamespace.current.isRootless, !isWritable(rootPath), pathExists(rootPath) || !isWritable(existingAncestor(rootPath)) {
            throw StrataError(.invalidArgument, "the store \(rootPath) is not writable by this user: run as root, or use --root DIR you own")
        }
        // STRATA_OVERLAY_MOUNT_FORM=shortlinks: the overlay mount form of older kernels (tests, benches).
        return try Store(root: rootPath, driver: driver,
                  overlayShortLinks: ProcessInfo.processInfo.environment["STRATA_OVERLAY_MOUNT_FORM"] == "shortlinks",
                  logger: makeLogger(), forRepair: forRepair)
    }

    /// The engine over this store; its detached containers are watched by this very binary
    /// (named by its path: strata-monitor runs it again for the cleanup, as another program).
    func openEngine() throws -> Engine {
        let store = try openStore()
        let executable = (try? canonicalPath("/proc/self/exe")) ?? "/proc/self/exe"
        return Engine(store: store, monitor: .strata(executable, root: store.rootPath, driver: store.driverName))
    }

    /// The nearest directory above `path` that exists (where it would be made).
    private func existingAncestor(_ path: String) -> String {
        var p = path
        repeat {
            guard let slash = p.dropLast().lastIndex(of: "/") else { return "." }
            p = slash == p.startIndex ? "/" : String(p[..<slash])
        } while !pathExists(p)
        return p
    }
}

/// Runs a command body, turning a `StrataError` into one message on stderr and an exit code.
func run(_ body: () throws -> Void) throws {
    // strata.db alone is complete whenever no command runs (docs/store-layout.md).
    defer { Metadata.checkpointAfterWrites() }
    do {
        try body()
    } catch let e as StrataError {
        writeStandardError("strata: \(e)\n")
        throw ExitCode(exitCode(for: e.code))
    }
}

/// Reports a command over several names as Docker does: each one (unless `echo` is off) once done,
/// each failure on stderr; the others go on. Exits with the first failure's code.
func reportEach(_ refs: [String], _ results: [Result<Void, any Error>], echo: Bool = true) throws {
    var first: Int32?
    for (ref, result) in zip(refs, results) {
        switch result {
        case .success: if echo { print(ref) }
        case .failure(let e as StrataError):
            writeStandardError("strata: \(e)\n")
            first = first ?? exitCode(for: e.code)
        case .failure(let e):
            writeStandardError("strata: \(e)\n")
            first = first ?? 1
        }
    }
    if let first { throw ExitCode(first) }
}

/// The body for each of `refs`, one after the other, each failure kept for `reportEach`.
func eachResult(_ refs: [String], _ body: (String) throws -> Void) -> [Result<Void, any Error>] {
    refs.map { ref in Result { try body(ref) } }
}

func exitCode(for code: StrataError.Code) -> Int32 {
    switch code {
    case .invalidFormat, .unsafeEntry, .digestMismatch, .sizeMismatch, .tooLarge, .invalidDigest, .unsupported, .commandFailed: return 1
    case .notFound: return 2
    case .conflict, .inUse, .alreadyExists: return 3
    case .invalidArgument: return 64
    case .system: return 71
    case .storeDamaged: return 74
    default: return 70
    }
}

func printErr(_ s: String) {
    writeStandardError(s + "\n")
}
