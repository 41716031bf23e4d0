import ArgumentParser
import FoundationEssentials
import StrataEngine

// `volume create|ls|inspect|rm|prune`, as Docker's: volumes live in the store
// (ROOT/volumes/NAME/_data), containers mount them with -v NAME:/PATH or --mount.

struct VolumeGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume", abstract: "Manage volumes: named stores of files containers mount (-v NAME:/PATH).",
        subcommands: [VolumeCreate.self, VolumeLs.self, VolumeInspect.self, VolumeRm.self, VolumePrune.self])
}

/// Labels as `--label KEY=VALUE` gives them (KEY alone: an empty value).
func parseLabels(_ flags: [String]) throws -> [String: String] {
    var labels: [String: String] = [:]
    for l in flags {
        let kv = l.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard !kv[0].isEmpty else { throw StrataError(.invalidArgument, "invalid --label \"\(l)\": expected KEY=VALUE") }
        labels[kv[0]] = kv.count > 1 ? kv[1] : ""
    }
    return labels
}

struct VolumeCreate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a volume (a random name when none is given); prints its name.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Its name: letters, digits, _ . - (default: 64 random hex digits).") var name: String?
    @Option(name: .customShort("d"), help: "The volume driver: local, the only one.") var driver = "local"
    @Option(name: .long, help: "A label: KEY=VALUE (repeatable).") var label: [String] = []
    func run() throws {
        try strata.run {
            guard driver == "local" else { throw StrataError(.unsupported, "volume driver \"\(driver)\": strata has only local") }
            let engine = try global.openEngine()
            print(try engine.createVolume(name: name, labels: try parseLabels(label)).name)
        }
    }
}

struct VolumeLs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List volumes.", aliases: ["list"])
    @OptionGroup var global: GlobalOptions
    @Flag(name: .short, help: "Only the names.") var quiet = false
    @Option(name: [.short, .long], help: "KEY=VALUE: dangling=true|false, name, label, driver (repeatable).") var filter: [String] = []
    @Option(name: .long, help: "A template per row: {{.Name}}, {{.Driver}}, {{.Mountpoint}}, {{.Labels}}, {{.Scope}}; or json.") var format: String?
    func run() throws {
        try strata.run {
            let template = try format.map(RowTemplate.init)
            let filters = try Filters(filter, allowed: ["dangling", "name", "label", "driver"], command: "volume ls")
            let engine = try global.openEngine()
            for d in filters.given("dangling") where !["true", "1", "false", "0"].contains(d) {
                throw StrataError(.invalidArgument, "invalid filter dangling=\(d): true or false")
            }
            let views = try engine.volumes().filter { v in
                filters.any("dangling") { v.containers.isEmpty == ($0 == "true" || $0 == "1") }
                    && filters.any("name") { v.record.name.contains($0) }
                    && filters.any("driver") { $0 == v.record.driver }
                    && filters.labels(v.record.labels)
            }
            if quiet { for v in views { print(v.record.name) }; return }
            let rows = views.map { v -> [String: String] in
                ["Name": v.record.name, "Driver": v.record.driver, "Mountpoint": v.mountpoint, "Scope": "local",
                 "Labels": v.record.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")]
            }
            if let template {
                let out = try template.output(rows, headers: ["Name": "VOLUME NAME"]) { try Format.compactJSON($0) }
                if !out.isEmpty { print(out) }
                return
            }
            print(Format.table([["DRIVER", "VOLUME NAME"]] + views.map { [$0.record.driver, $0.record.name] }))
        }
    }
}

struct VolumeInspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Show volumes as a JSON array (Docker's keys).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Volume names.") var names: [String]
    @Option(name: [.short, .long], help: "A template per volume: {{.Mountpoint}}, {{.Labels}}, …") var format: String?
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            let objects = try names.map { VolumeInspect.object(try engine.volume($0)) }
            if let format {
                for o in objects { print(try InspectTemplate.render(format, o)) }
                return
            }
            print(try InspectJSON.render(objects))
        }
    }

    /// A volume with Docker's keys.
    static func object(_ v: VolumeView) -> [String: Any] {
        ["Name": v.record.name, "Driver": v.record.driver, "Mountpoint": v.mountpoint, "CreatedAt": v.record.createdAt,
         "Labels": v.record.labels as [String: Any], "Options": [String: Any](), "Scope": "local",
         "Strata": ["anonymous": v.record.anonymous, "containers": v.containers] as [String: Any]]
    }
}

struct VolumeRm: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove volumes no container uses.", aliases: ["remove"])
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Volume names.") var names: [String]
    @Flag(name: [.short, .long], help: "No error for a volume that does not exist.") var force = false
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            try reportEach(names, eachResult(names) { name in
                do { try engine.removeVolume(name) } catch let e as StrataError where force && e.code == .notFound {}
            })
        }
    }
}

struct VolumePrune: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prune", abstract: "Remove anonymous volumes no container uses (-a: every unused volume).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Named volumes too.") var all = false
    @Flag(name: [.short, .long], help: "Do not ask first.") var force = false
    @Option(name: .long, help: "label=KEY or label=KEY=VALUE: only volumes with it (repeatable).") var filter: [String] = []
    func run() throws {
        try strata.run {
            let filters = try Filters(filter, allowed: ["label"], command: "volume prune")
            let engine = try global.openEngine()
            guard force || confirm("This will remove \(all ? "all" : "anonymous") local volumes not used by at least one container.") else { return }
            let r = try engine.pruneVolumes(all: all, labels: filters.given("label"))
            VolumePrune.report(r)
        }
    }

    static func report(_ r: VolumePruneReport) {
        if !r.removed.isEmpty { print("Deleted Volumes:"); for n in r.removed { print(n) }; print() }
        print("Total reclaimed space: \(Format.bytes(r.bytes))")
    }
}
