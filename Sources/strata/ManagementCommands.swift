import ArgumentParser
import CRootless
import FoundationEssentials
import StrataEngine
import StrataLauncher
import StrataSystem

// Docker's management commands (`image ls`, `container rm`, `system df`, …) over the same
// commands as the short forms. Where the name differs (`ls`, `image rm`) a small command passes
// its arguments to the short form's parser.

struct ImageGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Manage images (Docker's management command names).",
        subcommands: [ImageLs.self, ImageRm.self, Inspect.self, Pull.self, Push.self, Tag.self, Save.self, Load.self,
                      History.self, Import.self, ImagePrune.self])
}

struct ContainerGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "container", abstract: "Manage containers (Docker's management command names).",
        subcommands: [ContainerLs.self, Rm.self, Run.self, Create.self, Start.self, Stop.self, Restart.self, Kill.self,
                      Wait.self, Logs.self, Exec.self, Export.self, Inspect.self, Diff.self, Commit.self, Mount.self, Umount.self,
                      Pause.self, Unpause.self, Rename.self, Top.self, Stats.self, Cp.self, Attach.self, ContainerPrune.self])
}

struct SystemGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "system", abstract: "The store as a whole: what it uses, what can go.",
        subcommands: [SystemDf.self, SystemPrune.self, Info.self])
}

/// `image ls` = `images`.
struct ImageLs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List images (as `strata images`).", aliases: ["list"])
    @Argument(parsing: .captureForPassthrough) var arguments: [String] = []
    func run() throws { let c = try Images.parse(arguments); try c.run() }
}

/// `image rm` = `rmi`.
struct ImageRm: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove images (as `strata rmi`).", aliases: ["remove"])
    @Argument(parsing: .captureForPassthrough) var arguments: [String] = []
    func run() throws { let c = try Rmi.parse(arguments); try c.run() }
}

/// `container ls` = `ps`.
struct ContainerLs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List containers (as `strata ps`).", aliases: ["list", "ps"])
    @Argument(parsing: .captureForPassthrough) var arguments: [String] = []
    func run() throws { let c = try Ps.parse(arguments); try c.run() }
}

/// `image prune [-a] [-f]`: as Docker's, dangling images (no tag, no container), with `-a` every
/// image no container uses; then unused layers and blobs (`gc`). Asks first unless `-f`.
struct ImagePrune: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prune", abstract: "Remove dangling images (-a: every image no container uses), then unused layers.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Every image no container uses, tagged or not.") var all = false
    @Flag(name: [.short, .long], help: "Do not ask first.") var force = false
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            guard force || confirm(all ? "This will remove all images without at least one container associated to them."
                                       : "This will remove all dangling images.") else { return }
            report(try engine.prune(containers: false, images: all ? .unused : .dangling))
        }
    }
}

/// `container prune [-f]`: every container that has ended (or never ran) and is not mounted.
struct ContainerPrune: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prune", abstract: "Remove stopped containers.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Do not ask first.") var force = false
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            guard force || confirm("This will remove all stopped containers.") else { return }
            let r = try engine.prune(containers: true, images: .none, collect: false)
            print("removed \(r.containers) containers")
        }
    }
}

/// `system prune [-a] [-f]`: stopped containers, dangling images (`-a`: every image no container
/// uses), then what `gc` removes. Asks first unless `-f`.
struct SystemPrune: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prune", abstract: "Remove stopped containers, networks no container uses, dangling images (-a: unused ones) and unused layers and blobs.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Every image no container uses, not only dangling ones.") var all = false
    @Flag(name: [.short, .long], help: "Do not ask first.") var force = false
    @Flag(name: .long, help: "Also anonymous volumes no container uses.") var volumes = false
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            let what = "all stopped containers, all networks not used by at least one container, \(volumes ? "all anonymous volumes not used by at least one container, " : "")all \(all ? "images without at least one container associated to them" : "dangling images")"
            guard force || confirm("This will remove \(what), and every layer and blob no image uses.") else { return }
            report(try engine.prune(containers: true, images: all ? .unused : .dangling))
            let networks = try engine.pruneNetworks()
            if !networks.isEmpty { print("Deleted Networks:"); for n in networks { print(n) } }
            if volumes { VolumePrune.report(try engine.pruneVolumes(all: false)) }
        }
    }
}

/// Docker's question before a prune: "y" or "yes" on standard input goes on; anything else
/// (an empty line, end of input) stops, and nothing is removed.
func confirm(_ what: String) -> Bool {
    writeStandardError("WARNING! \(what)\nAre you sure you want to continue? [y/N] ")
    let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
    return answer == "y" || answer == "yes"
}

private func report(_ r: PruneReport) {
    for id in r.deletedImages { print("Deleted: \(id)") }
    print("removed \(r.containers) containers, \(r.images) images, \(r.layers) layers; \(Format.bytes(r.bytes)) freed")
}

/// `system df`: what images, layers and containers take.
struct SystemDf: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "df", abstract: "Show the space images, layers and containers use.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "JSON.") var json = false
    func run() throws {
        try strata.run {
            let store = try global.openStore()
            let images = try store.images(), layers = try store.layers(), containers = try store.containers(all: true)
            let layerBytes = layers.reduce(Int64(0)) { $0 + $1.record.size }
            let unused = layers.filter { $0.images.isEmpty }.reduce(Int64(0)) { $0 + $1.record.size }
            let changes = containers.reduce(Int64(0)) { $0.addingSaturating($1.sizeOfChanges) }
            struct DF: Codable { var images: Int; var layers: Int; var layerBytes: Int64; var unusedLayerBytes: Int64; var containers: Int; var running: Int; var containerBytes: Int64 }
            let df = DF(images: images.count, layers: layers.count, layerBytes: layerBytes, unusedLayerBytes: unused,
                        containers: containers.count, running: containers.filter { $0.state == .running }.count, containerBytes: changes)
            if json { print(try Format.json(df)); return }
            print(Format.table([["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                                ["Images", String(df.images), String(images.filter { i in containers.contains { $0.record.image == i.id } }.count),
                                 Format.bytes(layerBytes), Format.bytes(unused)],
                                ["Containers", String(df.containers), String(df.running), Format.bytes(changes), "-"]]))
        }
    }
}

/// `unshare`: a command in rootless strata's user and mount namespace (podman's `unshare`).
struct Unshare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unshare",
        abstract: "Run a command in the user and mount namespace of rootless strata.",
        discussion: """
            Rootless, strata's mounts (`strata mount`, containers' rootfs) and the files of other \
            owners are seen as strata sees them only from inside its namespace. Runs COMMAND \
            there, or $SHELL. As root, runs it as it is.
            """)
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (default: $SHELL).")
    var command: [String] = []
    func run() throws {
        try strata.run {
            if !isRootUser {
                let why = strata_rootless_error().map { String(cString: $0) } ?? "the namespace could not be entered"
                throw StrataError(.system, "rootless strata cannot run: \(why)")
            }
            let shell = ProcessInfo.processInfo.environment["SHELL"].flatMap { $0.isEmpty ? nil : $0 } ?? "/bin/sh"
            let argv = command.first == "--" ? Array(command.dropFirst()) : command
            let e = replaceProcess(argv.isEmpty ? [shell] : argv)
            throw StrataError(e == .ENOENT ? .notFound : .system, "cannot run \(argv.first ?? shell)", cause: e)
        }
    }
}

/// `info`: the store, its driver, and what the kernel offers.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show the store, its driver and the kernel features strata uses.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try strata.run {
            let store = try global.openStore()
            let layout = CgroupLayout.current()
            let lines: [(String, String)] = [
                ("Version", StrataVersion.string),
                ("Store", store.rootPath),
                ("Driver", "\(store.driverName) (\(store.driver.summary))"),
                ("Overlay mount form", Mounts.kernelHasOverlayLowerdirPlus ? "lowerdir+ through the new mount API (any depth of options)"
                                                                          : "short links under ROOT/l (options within one page)"),
                ("Cgroups", layout.map { l -> String in
                    switch l {
                    case .v2(let root): return "v2 at \(root)"
                    case .v1(let mounts): return "v1: " + mounts.keys.sorted().joined(separator: ", ")
                    }
                } ?? "none: \(CgroupLayout.unavailableReason); limits cannot be set"),
                ("Seccomp", "libseccomp, Docker's default profile"),
                ("Rootless", rootlessSummary()),
                ("Images", String(try store.images().count)),
                ("Layers", String(try store.layers().count)),
                ("Containers", String(try store.containers(all: true).count)),
                ("Disk used by layers", Format.bytes(try store.layers().reduce(Int64(0)) { $0 + $1.record.size })),
            ]
            for (k, v) in lines { print("\(k): \(v)") }
        }
    }

    /// "no", or the user and the ids mapped for them.
    private func rootlessSummary() -> String {
        let ns = UserNamespace.current
        guard ns.isRootless, let user = ns.hostUser else { return "no" }
        let map = ns.uidMap.map { "\($0.inside)→\($0.outside)" + ($0.count > 1 ? "+\($0.count)" : "") }.joined(separator: ", ")
        return "yes: uid \(user.uid), ids \(map)" + (ns.isSingleID ? " (one id only: no range in /etc/subuid)" : "")
    }
}
