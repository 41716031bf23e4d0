import ArgumentParser
import FoundationEssentials
import Logging
import StrataCore
import StrataFormats
import StrataArchive
import StrataLauncher
import StrataEngine
import StrataStore

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create",
        abstract: "Create a container from an image with `run`'s flags, not started; prints its ID on the last line.",
        discussion: "`strata start NAME` then runs it in the background (`-a` to wait for it and show its output).",
        // As `run`: -h is --hostname.
        helpNames: [.long])
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: RunFlags
    @Argument(help: "Image: tag, ID or unique ID prefix.", completion: NameCompletion.images) var image: String
    @Argument(parsing: .captureForPassthrough, help: "Command and arguments.") var command: [String] = []
    func run() throws {
        try strata.run {
            var options = try flags.runOptions()
            // Docker's StdinOnce: `start -ai` of it ends its input when the caller's ends.
            options.stdinOnce = options.interactive
            let engine = try global.openEngine()
            try flags.ensureImage(image, in: engine.store, quiet: global.quiet)
            print(try engine.create(image: image, overrides: try flags.overrides(command: command), options: options))
        }
    }
}

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mount",
        abstract: "Mount a container's rootfs; prints its path on the last line. Mounting twice is counted.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container: name, ID or unique ID prefix.", completion: NameCompletion.containers) var container: String
    func run() throws { try strata.run { print(try global.openStore().mountContainer(container)) } }
}

struct Umount: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "umount", abstract: "Drop one mount of a container; unmount when none is left.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container: name, ID or unique ID prefix.", completion: NameCompletion.containers) var container: String
    @Flag(name: [.short, .long], help: "Unmount now, whatever the count.") var force = false
    func run() throws { try strata.run { try global.openStore().unmountContainer(container, force: force) } }
}

struct Rm: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove containers.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Containers: name, ID or unique ID prefix.", completion: NameCompletion.containers) var containers: [String]
    @Flag(name: [.short, .long], help: "Also when mounted or running (kills and unmounts).") var force = false
    @Flag(name: [.short, .long], help: "Also remove its anonymous volumes (named ones stay).") var volumes = false
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            try reportEach(containers, eachResult(containers) { try engine.removeContainer($0, force: force, volumes: volumes) })
        }
    }
}

struct Ps: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ps", abstract: "List running or mounted containers (-a: all).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "All containers.") var all = false
    @Flag(name: .short, help: "Only the IDs.") var quiet = false
    @Flag(name: .long, help: "Full IDs and commands.") var noTrunc = false
    @Flag(name: .long, help: "JSON: an array of {id, name, image, imageTags, driver, state, mountCount, pid, created, sizeOfChanges, exitCode, startedAt, finishedAt, command}.")
    var json = false
    @Option(name: .long, help: "A template per row: {{.ID}}, {{.Image}}, {{.Command}}, {{.CreatedAt}}, {{.RunningFor}}, {{.Status}}, {{.State}}, {{.Names}}, {{json .}}; or json.")
    var format: String?
    @Option(name: [.short, .long], help: "KEY=VALUE: status, name, id, label, ancestor, exited, before, since (repeatable).") var filter: [String] = []
    func run() throws {
        try strata.run {
            let template = try format.map(RowTemplate.init)
            let filters = try Filters(filter, allowed: Ps.filterKeys, command: "ps")
            let store = try global.openStore()
            // A status or exit-code filter looks at every container, as Docker's does.
            let every = all || filters.has("status") || filters.has("exited")
            let list = try Ps.filter(try store.containers(all: every), filters, store: store).map(ContainerJSON.init)
            if json { print(try Format.json(list)); return }
            if quiet { for c in list { print(noTrunc ? c.id : String(c.id.prefix(12))) }; return }
            if let template {
                let rows = list.map { c in
                    ["ID": noTrunc ? c.id : String(c.id.prefix(12)), "Image": c.imageTags.first ?? c.image.shortID,
                     "Command": (c.command ?? []).joined(separator: " "), "CreatedAt": c.created,
                     "RunningFor": Format.ago(c.created), "Status": Format.status(c), "State": c.state, "Names": c.name]
                }
                let headers = ["ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT"]
                let text = try template.output(rows, headers: headers) { try Format.compactJSON($0) }
                if !text.isEmpty || template.table { print(text) }
                return
            }
            var rows = [["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]]
            for c in list {
                var command = (c.command ?? []).joined(separator: " ")
                if !noTrunc && command.count > 20 { command = String(command.prefix(19)) + "…" }
                rows.append([noTrunc ? c.id : String(c.id.prefix(12)), c.imageTags.first ?? c.image.shortID, "\"\(command)\"",
                             Format.ago(c.created), Format.status(c), c.name])
            }
            print(Format.table(rows))
        }
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff", abstract: "Show what a container changed: A added, C changed, D deleted.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container: name, ID or unique ID prefix.", completion: NameCompletion.containers) var container: String
    @Flag(name: .long, help: "JSON: an array of {kind, path}.") var json = false
    func run() throws {
        try strata.run {
            let changes = try global.openStore().diff(container)
            if json { print(try Format.json(changes)); return }
            for c in changes { print("\(c.kind) \(c.path)") }
        }
    }
}

struct Commit: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "commit",
        abstract: "Commit a container's changes as a new layer and image; prints the image ID.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container: name, ID or unique ID prefix.", completion: NameCompletion.containers) var container: String
    @Argument(help: "Tag the new image NAME[:TAG].") var reference: String?
    @Option(name: [.short, .long], help: "A comment for the history entry.") var message: String?
    @Option(name: [.short, .long], help: "The author.") var author: String?
    @Option(name: [.short, .long], help: "Apply a Dockerfile instruction to the config, e.g. 'CMD [\"sh\"]'.") var change: [String] = []
    @Option(name: .long, help: "Seconds since the epoch: the image's times, and the clamp of its layer's file times (the same changes give the same image ID on any day).") var timestamp: Int64?
    func run() throws {
        try strata.run {
            if let timestamp { try Store.checkTimestamp(timestamp, what: "--timestamp") }
            let id = try global.openStore().commit(container, tag: reference, message: message, author: author, changes: change,
                                                   timestamp: timestamp)
            print(id.string)
        }
    }
}
