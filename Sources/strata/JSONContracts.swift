import Foundation  // JSONSerialization: inspect prints the config as stored, unknown keys and all
import StrataDrivers
import StrataEngine
import StrataSystem

// The shapes `--json` prints: documented contracts (README), kept apart from the engine's
// typed values so that neither changes by accident. Absent values are written as `null`, not
// left out: the keys are part of the contract.

/// `strata images --json`: one per image.
struct ImageJSON: Codable {
    var id: String
    var tags: [String]
    /// Bottom layer first.
    var diffIDs: [String]
    var size: Int64
    @NullCoded var created: String?
    @NullCoded var os: String?
    @NullCoded var architecture: String?

    init(_ i: ImageView) {
        id = i.id.string; tags = i.tags; diffIDs = i.diffIDs.map(\.description); size = i.record.size
        created = i.record.created; os = i.record.os; architecture = i.record.architecture
    }
}

/// `strata layers --json`: one per layer.
struct LayerJSON: Codable {
    var chainID: String
    var diffID: String
    @NullCoded var parent: String?
    var size: Int64
    /// IDs of the images whose chain includes this layer.
    var images: [String]
    var journal: String
    var opaqueRoot: Bool

    init(_ l: LayerView) {
        chainID = l.chainID.description; diffID = l.record.diffID.description; parent = l.parent?.description
        size = l.record.size; images = l.images.map(\.string); journal = l.record.journal.rawValue; opaqueRoot = l.record.opaqueRoot
    }
}

/// `strata ps --json`: one per container.
struct ContainerJSON: Codable {
    var id: String
    var name: String
    var image: String
    var imageTags: [String]
    var driver: String
    var state: String
    var mountCount: Int
    @NullCoded var pid: Int?
    var created: String
    var sizeOfChanges: Int64
    @NullCoded var exitCode: Int?
    @NullCoded var startedAt: String?
    @NullCoded var finishedAt: String?
    @NullCoded var command: [String]?
    /// `starting`, `healthy` or `unhealthy` for a running container with a health check.
    @NullCoded var health: String?
    /// Its whole health (inspect's `State.Health`); not in `ps --json`.
    var healthState: HealthState?

    enum CodingKeys: String, CodingKey {
        case id, name, image, imageTags, driver, state, mountCount, pid, created, sizeOfChanges, exitCode, startedAt, finishedAt, command, health
    }

    init(_ c: ContainerView) {
        id = c.record.id; name = c.record.name; image = c.record.image.string; imageTags = c.imageTags; driver = c.record.driver
        state = c.paused ? "paused" : c.state.rawValue; mountCount = c.record.mountCount; pid = c.pid.map { Int($0) }
        created = Timestamp.string(c.record.createdAt); sizeOfChanges = c.sizeOfChanges
        exitCode = c.state == .exited ? c.run?.exitCode.map { Int($0) } : nil
        startedAt = c.run?.startedAt; finishedAt = c.state == .exited ? c.run?.finishedAt : nil; command = c.command
        health = c.state == .running ? c.health?.Status : nil
        healthState = c.health
    }
}

/// `strata inspect`: an array of objects with Docker's keys (`Id`, `RepoTags`, `RepoDigests`,
/// `Created`, `Config`, `RootFS`, `GraphDriver`, `State`, …) and strata's own facts under `Strata`
/// (the config as stored for an image; the layer's journal and paths; the `ps --json` object).
enum InspectJSON {
    static func image(_ d: ImageDetails, driver: String, lowerDirs: [String]) throws -> [String: Any] {
        let r = d.record
        let config = try JSONSerialization.jsonObject(with: Data(d.config)) as? [String: Any] ?? [:]
        let layers = d.layers.map { l -> [String: Any] in
            ["chainID": l.chainID.description, "diffID": l.diffID.description, "size": l.size, "journal": l.journal.rawValue]
        }
        let strata: [String: Any] = [
            "id": r.id.string, "tags": d.tags, "size": r.size, "created": r.created ?? NSNull(), "os": r.os ?? NSNull(),
            "architecture": r.architecture ?? NSNull(), "manifestDigest": r.manifestDigest?.string ?? NSNull(),
            "loadedAt": Timestamp.string(r.loadedAt), "layers": layers, "config": config,
        ]
        let repos = Set(d.tags.map { t in t.lastIndex(of: ":").map { String(t[..<$0]) } ?? t })
        var out: [String: Any] = [
            "Id": r.id.string, "RepoTags": d.tags,
            // Those a pull or push recorded; a loaded image's manifest under each of its names.
            "RepoDigests": d.repoDigests.isEmpty ? (r.manifestDigest.map { m in repos.sorted().map { "\($0)@\(m)" } } ?? []) : d.repoDigests,
            "Created": r.created ?? NSNull(), "Architecture": r.architecture ?? NSNull(), "Os": r.os ?? NSNull(),
            "Size": r.size, "Config": config["config"] ?? NSNull(),
            "RootFS": ["Type": "layers", "Layers": d.layers.map(\.diffID.description)],
            "GraphDriver": ["Name": driver, "Data": ["LowerDir": lowerDirs.joined(separator: ":")]],
            "Strata": strata,
            // As Docker: these four are always there, empty when the config has none. The
            // parent is a local build's previous image; an image loaded or pulled has none.
            "Author": config["author"] as? String ?? "", "Comment": config["comment"] as? String ?? "",
            "DockerVersion": config["docker_version"] as? String ?? "", "Parent": config["parent"] as? String ?? "",
        ]
        if let variant = config["variant"] as? String { out["Variant"] = variant }
        if let osVersion = config["os.version"] as? String { out["OsVersion"] = osVersion }
        return out
    }

    static func layer(_ d: LayerDetails) throws -> [String: Any] {
        let l = d.record
        let strata: [String: Any] = [
            "chainID": l.chainID.description, "diffID": l.diffID.description,
            "parent": l.parent?.description ?? NSNull(), "children": d.children, "images": d.images,
            "cacheID": l.cacheID, "path": d.path, "size": l.size, "tarSize": l.tarSize,
            "blobDigest": l.blobDigest ?? NSNull(), "compression": l.compression ?? NSNull(),
            "journal": l.journal.rawValue, "journalNote": l.journalNote ?? NSNull(), "opaqueRoot": l.opaqueRoot,
            "createdAt": Timestamp.string(l.createdAt),
        ]
        return ["Id": l.chainID.description, "Parent": l.parent?.description ?? "", "Size": l.size, "Strata": strata]
    }

    static func container(_ c: ContainerJSON, paths: ContainerPaths, driver: String) throws -> [String: Any] {
        let strata = try JSONSerialization.jsonObject(with: Data(try Format.json(c).utf8))
        return [
            "Id": c.id, "Name": "/" + c.name, "Created": c.created, "Image": c.image,
            "Path": c.command?.first ?? "", "Args": Array((c.command ?? []).dropFirst()),
            "State": state(c),
            "Config": ["Image": c.imageTags.first ?? c.image, "Cmd": c.command ?? []],
            "GraphDriver": ["Name": driver, "Data": ["MergedDir": paths.merged, "UpperDir": paths.upper, "WorkDir": paths.work]],
            "Strata": strata,
        ]
    }

    /// `State`, with `Health` for a container that has a health check (Docker's keys).
    static func state(_ c: ContainerJSON) -> [String: Any] {
        var state: [String: Any] = ["Status": c.state, "Running": c.state == "running", "Pid": c.pid ?? 0, "ExitCode": c.exitCode ?? 0,
                                    "StartedAt": c.startedAt ?? "", "FinishedAt": c.finishedAt ?? ""]
        if let h = c.healthState {
            state["Health"] = ["Status": h.Status, "FailingStreak": h.FailingStreak,
                               "Log": h.Log.map { ["Start": $0.Start, "End": $0.End, "ExitCode": $0.ExitCode, "Output": $0.Output] }] as [String: Any]
        }
        return state
    }

    static func render(_ objects: [[String: Any]]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]),
               as: UTF8.self)
    }
}
