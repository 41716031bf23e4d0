import ArgumentParser
import Foundation  // JSONSerialization: configs are printed as stored, unknown keys and all
import StrataDrivers
import StrataEngine
import StrataSystem

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect",
        abstract: "Show containers, images or layers as a JSON array (Docker's keys, strata's own under \"Strata\"); with --files, what a layer adds, changes and deletes.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Containers (name, ID), images (tag, ID, ID prefix) or layers (chainID or prefix).") var names: [String]
    @Option(name: .long, help: "container, image or layer, when a name matches more than one.") var type: String?
    @Option(name: [.short, .long], help: "A template per object: {{.Id}}, {{.State.Status}}, {{json .Config}}, {{.Strata.path}}.") var format: String?
    @Flag(name: .long, help: "For a layer: its changes (A/C/D) with sizes and the bytes it hides below.") var files = false
    @Flag(name: .long, help: "With --files: JSON instead of a table.") var json = false

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            if let type, !["container", "image", "layer"].contains(type) {
                throw StrataError(.invalidArgument, "invalid --type \"\(type)\": expected container, image or layer")
            }
            if files {
                guard names.count == 1, let layer = try? store.resolveLayer(names[0]) else {
                    throw StrataError(.invalidArgument, "--files takes one layer; `strata history` lists an image's layers")
                }
                try printChanges(store, layer)
                return
            }
            let objects = try names.map { try object(store, $0) }
            if let format {
                for o in objects { print(try InspectTemplate.render(format, o)) }
                return
            }
            print(try InspectJSON.render(objects))
        }
    }

    /// The object for one name: a container first (as `docker inspect`), then an image, then a layer.
    private func object(_ store: Store, _ name: String) throws -> [String: Any] {
        if type == nil || type == "container", let view = try? store.containerView(name) {
            return try InspectJSON.container(ContainerJSON(view), paths: store.containerPaths(view.record.id), driver: store.driverName)
        }
        if type == "container" { throw StrataError(.notFound, "no container \"\(name)\"; `strata ps -a` lists them") }
        let image: Digest? = type == "layer" ? nil : try? store.resolveImage(name)
        let layer: LayerRecord? = type == "image" ? nil : try? store.resolveLayer(name)
        if image != nil && layer != nil {
            throw StrataError(.invalidArgument, "\"\(name)\" names both an image and a layer; add --type image or --type layer")
        }
        if let image {
            let lowers = try store.imageLayers(image).reversed().map { store.layerPath($0) }
            return try InspectJSON.image(try store.inspectImage(image), driver: store.driverName, lowerDirs: lowers)
        }
        if let layer { return try InspectJSON.layer(try store.inspectLayer(layer)) }
        throw StrataError(.notFound, "no container, image or layer \"\(name)\" in the store")
    }

    private func printChanges(_ store: Store, _ layer: LayerRecord) throws {
        let changes = try store.layerChanges(layer)
        if json { print(try Format.json(changes)); return }
        var rows = [["", "PATH", "SIZE", "HIDES"]]
        for c in changes {
            rows.append([c.kind, c.path, Format.bytes(c.size), c.hidden > 0 ? Format.bytes(c.hidden) : "-"])
        }
        print(Format.table(rows))
        let wasted = changes.reduce(Int64(0)) { $0 + $1.hidden }
        print("\(changes.count) changes; \(Format.bytes(wasted)) of the layers below hidden (wasted)")
        if layer.journal == .raw { print("note: the raw layer tar is kept: \(layer.journalNote ?? "")") }
    }
}

/// `inspect -f`: Go-template field paths (`{{.State.Status}}`, `{{json .Config}}`) over the object.
enum InspectTemplate {
    static func render(_ template: String, _ object: [String: Any]) throws -> String {
        var out = ""
        var rest = Substring(template.replacingOccurrences(of: "\\t", with: "\t").replacingOccurrences(of: "\\n", with: "\n"))
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw StrataError(.invalidArgument, "invalid --format \"\(template)\": a {{ without its }}")
            }
            out += rest[..<open.lowerBound]
            var action = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            let asJSON = action.hasPrefix("json ")
            if asJSON { action = String(action.dropFirst(5)).trimmingCharacters(in: .whitespaces) }
            guard action.hasPrefix(".") else {
                throw StrataError(.invalidArgument, "invalid --format \"\(template)\": {{\(action)}} is not a field path (.Id, .State.Status)")
            }
            var value: Any? = object
            for key in action.dropFirst().split(separator: ".") { value = (value as? [String: Any])?[String(key)] }
            if asJSON {
                let v = value ?? NSNull()
                if JSONSerialization.isValidJSONObject(v) {
                    out += String(decoding: try JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
                } else {
                    out += String(decoding: try JSONSerialization.data(withJSONObject: [v], options: [.withoutEscapingSlashes]), as: UTF8.self).dropFirst().dropLast()
                }
            } else {
                out += describe(value)
            }
            rest = rest[close.upperBound...]
        }
        return out + rest
    }

    /// As Go prints a value: strings bare, arrays as `[a b]`, nothing as `<no value>`.
    private static func describe(_ v: Any?) -> String {
        switch v {
        case nil, is NSNull: return "<no value>"
        case let s as String: return s
        case let a as [Any]: return "[" + a.map { describe($0) }.joined(separator: " ") + "]"
        case let n as NSNumber: return n.stringValue
        default: return "\(v!)"
        }
    }
}
