import ArgumentParser
import Foundation  // JSONSerialization: configs are printed as stored, unknown keys and all
import StrataDrivers
import StrataEngine
import StrataSystem

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect",
        abstract: "Show containers, images or layers as a JSON array (Docker's keys, strata's own under \"Strata\"); with --files, what a layer adds, changes and deletes.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Containers (name, ID), images (tag, ID, ID prefix) or layers (chainID or prefix).", completion: NameCompletion.containers) var names: [String]
    @Option(name: .long, help: "container, image, layer or volume, when a name matches more than one.") var type: String?
    @Option(name: [.short, .long], help: "A template per object: {{.Id}}, {{.State.Status}}, {{json .Config}}, {{.Strata.path}}.") var format: String?
    @Flag(name: .long, help: "For a layer: its changes (A/C/D) with sizes and the bytes it hides below.") var files = false
    @Flag(name: .long, help: "With --files: JSON instead of a table.") var json = false

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            if let type, !["container", "image", "layer", "volume"].contains(type) {
                throw StrataError(.invalidArgument, "invalid --type \"\(type)\": expected container, image, layer or volume")
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
            var object = try InspectJSON.container(ContainerJSON(view), paths: store.containerPaths(view.record.id), driver: store.driverName)
            object["RestartCount"] = store.restartCount(view.record.id)
            object["NetworkSettings"] = try NetworkInspect.settings(Engine(store: store), container: view.record.id)
            return object
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
        if type == nil || type == "volume", (try? Store.checkVolumeName(name)) != nil, (try? store.volume(name)) != nil {
            return VolumeInspect.object(try Engine(store: store).volume(name))
        }
        throw StrataError(.notFound, "no container, image, layer or volume \"\(name)\" in the store")
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

/// `inspect -f`: the part of Go's text/template that Docker users write: field paths
/// (`{{.State.Status}}`, `{{.}}`), `range … [else …] end`, `if … [else …] end`, and the functions
/// `json`, `index`, `join`, `split`, `upper`, `lower`, `title`, `len`, `println`; a pipe passes a
/// value on as the last argument (`{{.Name | upper}}`). A field the object does not have is an
/// error, as in Docker; a key a map (labels) does not have prints `<no value>`.
enum InspectTemplate {
    indirect enum Node {
        case text(String)
        case value(Pipeline)
        case range(Pipeline, body: [Node], otherwise: [Node])
        case when(Pipeline, body: [Node], otherwise: [Node])
    }
    enum Argument { case field([String]), string(String), number(Int) }
    /// `f a b | g c`: each stage a function (nil: the value itself) and its arguments.
    struct Pipeline { var stages: [(function: String?, arguments: [Argument])] }

    /// Objects whose keys are data, not fields: a key they lack is no error.
    static let maps: Set<String> = ["Labels", "Annotations", "ExposedPorts", "Volumes", "Options", "Data", "Ports", "Networks"]

    static func render(_ template: String, _ object: [String: Any]) throws -> String {
        let text = template.replacingOccurrences(of: "\\t", with: "\t").replacingOccurrences(of: "\\n", with: "\n")
        var tokens = try tokenize(text, template: template)[...]
        let nodes = try parse(&tokens, template: template, until: [])
        guard tokens.isEmpty else { throw bad(template, "{{\(tokens.first!.1)}} without its range or if") }
        var out = ""
        try evaluate(nodes, dot: object, template: template, into: &out)
        return out
    }

    private static func bad(_ template: String, _ why: String) -> StrataError {
        StrataError(.invalidArgument, "invalid --format \"\(template)\": \(why)")
    }

    /// (isAction, text) pairs.
    private static func tokenize(_ text: String, template: String) throws -> [(Bool, String)] {
        var out: [(Bool, String)] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else { throw bad(template, "a {{ without its }}") }
            if open.lowerBound > rest.startIndex { out.append((false, String(rest[..<open.lowerBound]))) }
            out.append((true, rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { out.append((false, String(rest))) }
        return out
    }

    private static func parse(_ tokens: inout ArraySlice<(Bool, String)>, template: String, until: Set<String>) throws -> [Node] {
        var nodes: [Node] = []
        while let (isAction, text) = tokens.first {
            if !isAction { nodes.append(.text(text)); tokens.removeFirst(); continue }
            if until.contains(text) { return nodes }
            tokens.removeFirst()
            let words = text.split(separator: " ", maxSplits: 1).map(String.init)
            switch words.first {
            case "range", "if":
                guard words.count == 2 else { throw bad(template, "{{\(text)}} needs a value") }
                let pipeline = try parsePipeline(words[1], template: template)
                let body = try parse(&tokens, template: template, until: ["else", "end"])
                var otherwise: [Node] = []
                if tokens.first?.1 == "else" {
                    tokens.removeFirst()
                    otherwise = try parse(&tokens, template: template, until: ["end"])
                }
                guard tokens.first?.1 == "end" else { throw bad(template, "{{\(text)}} without its {{end}}") }
                tokens.removeFirst()
                nodes.append(words[0] == "range" ? .range(pipeline, body: body, otherwise: otherwise) : .when(pipeline, body: body, otherwise: otherwise))
            case "end", "else":
                throw bad(template, "{{\(text)}} without its range or if")
            default:
                nodes.append(.value(try parsePipeline(text, template: template)))
            }
        }
        guard until.isEmpty else { throw bad(template, "a range or if without its {{end}}") }
        return nodes
    }

    private static func parsePipeline(_ text: String, template: String) throws -> Pipeline {
        var stages: [(String?, [Argument])] = []
        for stage in try words(text, template: template).split(separator: "|", omittingEmptySubsequences: false) {
            guard let first = stage.first else { throw bad(template, "an empty stage in \"\(text)\"") }
            let isFunction = !first.hasPrefix(".") && !first.hasPrefix("\"") && Int(first) == nil
            if isFunction && !functions.contains(first) { throw bad(template, "function \"\(first)\" not defined") }
            let args = try (isFunction ? stage.dropFirst() : stage[...]).map { try argument($0, template: template) }
            stages.append((isFunction ? first : nil, args))
        }
        return Pipeline(stages: stages)
    }

    static let functions: Set<String> = ["json", "index", "join", "split", "upper", "lower", "title", "len", "println"]

    /// Words of an action: quoted strings kept whole (Go's escapes \" and \\), `|` on its own.
    private static func words(_ text: String, template: String) throws -> [String] {
        var out: [String] = [], word = "", quoted = false, escaped = false
        for c in text {
            if quoted {
                if escaped { word.append(c == "n" ? "\n" : c == "t" ? "\t" : c); escaped = false }
                else if c == "\\" { escaped = true }
                else if c == "\"" { word.append(c); quoted = false }
                else { word.append(c) }
            } else if c == "\"" { word.append(c); quoted = true }
            else if c == " " { if !word.isEmpty { out.append(word); word = "" } }
            else if c == "|" { if !word.isEmpty { out.append(word); word = "" }; out.append("|") }
            else { word.append(c) }
        }
        guard !quoted else { throw bad(template, "an unterminated string in \"\(text)\"") }
        if !word.isEmpty { out.append(word) }
        return out
    }

    private static func argument(_ w: String, template: String) throws -> Argument {
        if w.hasPrefix("\"") { return .string(String(w.dropFirst().dropLast())) }
        if let n = Int(w) { return .number(n) }
        guard w.hasPrefix(".") else { throw bad(template, "\"\(w)\" is not a field path (.Id, .State.Status), a string or a number") }
        return .field(w == "." ? [] : w.dropFirst().split(separator: ".").map(String.init))
    }

    private static func evaluate(_ nodes: [Node], dot: Any?, template: String, into out: inout String) throws {
        for node in nodes {
            switch node {
            case .text(let t): out += t
            case .value(let p): out += try describe(value(p, dot: dot, template: template))
            case .range(let p, let body, let otherwise):
                let v = try value(p, dot: dot, template: template)
                let items: [Any]
                if let a = v as? [Any] { items = a }
                else if let m = v as? [String: Any] { items = m.keys.sorted().map { m[$0]! } }
                else if v == nil || v is NSNull { items = [] }
                else { throw bad(template, "range over \(describe(v)), which is neither a list nor a map") }
                if items.isEmpty { try evaluate(otherwise, dot: dot, template: template, into: &out) }
                for item in items { try evaluate(body, dot: item, template: template, into: &out) }
            case .when(let p, let body, let otherwise):
                let v = try value(p, dot: dot, template: template)
                try evaluate(truth(v) ? body : otherwise, dot: dot, template: template, into: &out)
            }
        }
    }

    private static func truth(_ v: Any?) -> Bool {
        switch v {
        case nil, is NSNull: return false
        case let s as String: return !s.isEmpty
        case let a as [Any]: return !a.isEmpty
        case let m as [String: Any]: return !m.isEmpty
        case let n as NSNumber: return n.doubleValue != 0
        default: return true
        }
    }

    private static func value(_ p: Pipeline, dot: Any?, template: String) throws -> Any? {
        var carried: Any?? = .none
        for (function, arguments) in p.stages {
            var args = try arguments.map { a -> Any? in
                switch a {
                case .string(let s): return s
                case .number(let n): return n
                case .field(let path): return try field(path, of: dot, template: template)
                }
            }
            if case .some(let c) = carried { args.append(c) }
            carried = .some(try call(function, args, template: template))
        }
        return carried ?? nil
    }

    private static func field(_ path: [String], of dot: Any?, template: String) throws -> Any? {
        var v = dot, parent: String?
        for key in path {
            guard let m = v as? [String: Any] else {
                if v == nil || v is NSNull { return nil }
                throw bad(template, "can't evaluate field \(key) in \(describe(v))")
            }
            if let next = m[key] { v = next } else if let parent, maps.contains(parent) { return nil } else {
                throw bad(template, "the object has no field \"\(key)\"")
            }
            parent = key
        }
        return v
    }

    private static func call(_ function: String?, _ args: [Any?], template: String) throws -> Any? {
        func want(_ n: Int) throws {
            guard args.count == n else { throw bad(template, "\(function ?? "a value") takes \(n) argument\(n == 1 ? "" : "s"), not \(args.count)") }
        }
        switch function {
        case nil: try want(1); return args[0]
        case "json":
            try want(1)
            let v = args[0] ?? NSNull()
            if JSONSerialization.isValidJSONObject(v) {
                return String(decoding: try JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
            }
            return String(String(decoding: try JSONSerialization.data(withJSONObject: [v], options: [.withoutEscapingSlashes]), as: UTF8.self).dropFirst().dropLast())
        case "index":
            guard args.count >= 2 else { throw bad(template, "index takes a value and keys") }
            var v = args[0]
            for k in args.dropFirst() {
                if let m = v as? [String: Any], let key = k as? String { v = m[key] }
                else if let a = v as? [Any], let i = k as? Int {
                    guard a.indices.contains(i) else { throw bad(template, "index \(i) out of range (\(a.count) items)") }
                    v = a[i]
                } else if v == nil || v is NSNull { return nil }
                else { throw bad(template, "can't index \(describe(v)) with \(describe(k))") }
            }
            return v
        case "join":
            try want(2)
            guard let sep = args[1] as? String ?? (args[0] as? String) else { throw bad(template, "join takes a list and a separator") }
            let list = (args[0] as? [Any]) ?? (args[1] as? [Any]) ?? []
            return list.map { describe($0) }.joined(separator: sep)
        case "split":
            try want(2)
            guard let s = args[0] as? String, let sep = args[1] as? String, !sep.isEmpty else { throw bad(template, "split takes a string and a separator") }
            return s.components(separatedBy: sep)
        case "upper": try want(1); return describe(args[0]).uppercased()
        case "lower": try want(1); return describe(args[0]).lowercased()
        case "title": try want(1); return describe(args[0]).split(separator: " ", omittingEmptySubsequences: false).map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined(separator: " ")
        case "len":
            try want(1)
            switch args[0] {
            case let s as String: return s.utf8.count
            case let a as [Any]: return a.count
            case let m as [String: Any]: return m.count
            default: throw bad(template, "len of \(describe(args[0]))")
            }
        case "println": return args.map { describe($0) }.joined(separator: " ") + "\n"
        default: throw bad(template, "function \"\(function!)\" not defined")
        }
    }

    /// As Go prints a value: strings bare, lists as `[a b]`, maps as `map[k:v]`, nothing as `<no value>`.
    static func describe(_ v: Any?) -> String {
        switch v {
        case nil, is NSNull: return "<no value>"
        case let s as String: return s
        case let a as [Any]: return "[" + a.map { describe($0) }.joined(separator: " ") + "]"
        case let m as [String: Any]: return "map[" + m.keys.sorted().map { "\($0):\(describe(m[$0]))" }.joined(separator: " ") + "]"
        case let n as NSNumber:
            // JSON's true and false come back as NSNumbers of Objective-C type "c" (char).
            if String(cString: n.objCType) == "c" { return n.boolValue ? "true" : "false" }
            return n.stringValue
        default: return "\(v!)"
        }
    }
}
