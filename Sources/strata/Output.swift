import ArgumentParser
import FoundationEssentials
import Synchronization
import Logging
import StrataEngine
import StrataSystem
import StrataCore
import StrataFormats
import StrataArchive
import StrataLauncher
import StrataStore

enum Format {
    /// "3 seconds ago", "2 minutes ago", "5 hours ago", "2 days ago", as Docker says it.
    static func ago(_ time: String?) -> String {
        guard let time, let d = Timestamp.date(time) else { return "" }
        return since(d) + " ago"
    }

    /// "3 seconds", "About a minute", "2 hours", as Docker's `ps` says how long.
    static func since(_ d: Date) -> String {
        let s = max(0, Int(Date().timeIntervalSince(d)))
        switch s {
        case ..<1: return "Less than a second"
        case ..<60: return "\(s) second\(s == 1 ? "" : "s")"
        case ..<120: return "About a minute"
        case ..<3600: return "\(s / 60) minutes"
        case ..<7200: return "About an hour"
        case ..<172800: return "\(s / 3600) hours"
        case ..<(86400 * 14): return "\(s / 86400) days"
        case ..<(86400 * 90): return "\(s / (86400 * 7)) weeks"
        case ..<(86400 * 730): return "\(s / (86400 * 30)) months"
        default: return "\(s / (86400 * 365)) years"
        }
    }

    /// Docker's STATUS column: "Up 3 seconds", "Exited (7) 2 minutes ago", "Created".
    static func status(_ c: ContainerJSON) -> String {
        switch c.state {
        case "running":
            let up = "Up " + (c.startedAt.flatMap(Timestamp.date).map(since) ?? "")
            switch c.health {
            case "starting"?: return up + " (health: starting)"
            case let h?: return up + " (\(h))"
            case nil: return up
            }
        case "paused": return "Up " + (c.startedAt.flatMap(Timestamp.date).map(since) ?? "") + " (Paused)"
        case "exited": return "Exited (\(c.exitCode.map(String.init) ?? "?")) " + ago(c.finishedAt ?? c.startedAt)
        case "mounted": return "Mounted"
        default: return "Created"
        }
    }

    /// Sizes as Docker prints them (SI units).
    static func bytes(_ n: Int64) -> String { ByteCount.describe(n) }

    static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        var widths = Array(repeating: 0, count: first.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c + String(repeating: " ", count: widths[i] + 3 - c.count) }
                .joined()
        }.joined(separator: "\n")
    }

    /// One line of JSON with sorted keys (`--format '{{json .}}'`).
    static func compactJSON(_ fields: [String: String]) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(fields), as: UTF8.self)
    }

    static func json<T: Encodable>(_ value: T) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(value), as: UTF8.self)
    }
}

enum ByteSize {
    /// Sizes as Docker parses them: bytes (`512`), or a number with k, m, g or t (binary units),
    /// optionally followed by b: `64m`, `64mb`, `1.5g`, `512kb`.
    static func parse(_ s: String, what: String) throws -> Int64 {
        var text = s.lowercased()
        if text.hasSuffix("ib") { text.removeLast(2) } else if text.hasSuffix("b") { text.removeLast() }
        var mult: Double = 1
        if let last = text.last, let m = ["k": 1024.0, "m": 1024.0 * 1024, "g": 1024.0 * 1024 * 1024, "t": 1024.0 * 1024 * 1024 * 1024][String(last)] {
            text.removeLast()
            mult = m
        }
        guard let n = Double(text), n.isFinite, n > 0, n * mult < Double(Int64.max), !text.contains("e") else {
            throw StrataError(.invalidArgument, "invalid \(what) \"\(s)\": expected a positive size like 512m, 1.5g or 64mb")
        }
        return Int64((n * mult).rounded(.down))
    }
}

/// The parent→child forest of layers, drawn with box characters; each node shows its short
/// chainID, size, and the images whose top layer it is.
enum LayerTree {
    static func render(_ layers: [LayerJSON], images: [ImageJSON]) -> String {
        var children: [String: [LayerJSON]] = [:]
        var roots: [LayerJSON] = []
        let known = Set(layers.map(\.chainID))
        for l in layers {
            if let p = l.parent, known.contains(p) { children[p, default: []].append(l) } else { roots.append(l) }
        }
        // Images by their top layer: the chainID of their whole diffID list.
        var tops: [String: [String]] = [:]
        for i in images {
            guard let ids = try? i.diffIDs.map(DiffID.init(parsing:)), let top = ChainID.chain(ids).last else { continue }
            let names = i.tags.isEmpty ? [i.id.shortID] : i.tags
            tops[top.description, default: []] += names
        }
        var lines: [String] = []
        func draw(_ l: LayerJSON, _ prefix: String, _ last: Bool, _ isRoot: Bool) {
            let branch = isRoot ? "" : (last ? "└── " : "├── ")
            var line = prefix + branch + l.chainID.shortID + "  " + Format.bytes(l.size)
            if l.opaqueRoot { line += "  (hides all below)" }
            if let names = tops[l.chainID] { line += "  ← " + names.sorted().joined(separator: ", ") }
            lines.append(line)
            let kids = (children[l.chainID] ?? []).sorted { $0.chainID < $1.chainID }
            let childPrefix = isRoot ? prefix : prefix + (last ? "    " : "│   ")
            for (i, k) in kids.enumerated() { draw(k, childPrefix, i == kids.count - 1, false) }
        }
        for (i, r) in roots.sorted(by: { $0.chainID < $1.chainID }).enumerated() {
            draw(r, "", i == roots.count - 1, true)
        }
        return lines.joined(separator: "\n")
    }
}

/// `--format` as Docker's Go templates are used for listings: `{{.Field}}` (fields by their
/// column names: `.ID`, `.Repository`, `.Tag`, `.Names`, `.Status`, …), `{{json .}}` for the
/// whole row, `\t` and `\n` as themselves; `--format json` prints one JSON object per line.
struct RowTemplate {
    let text: String
    /// `table {{.ID}}\t{{.Names}}`: a header row first, the tab-separated columns aligned.
    let table: Bool

    init(_ format: String) throws {
        table = format == "table" || format.hasPrefix("table ")
        let text = table ? String(format.dropFirst(5).drop { $0 == " " }) : format
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw StrataError(.invalidArgument, "invalid --format \"\(text)\": a {{ without its }}")
            }
            let action = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard action == "json ." || action.hasPrefix(".") else {
                throw StrataError(.invalidArgument, "invalid --format \"\(text)\": {{\(action)}} is not a field (.Name) or json .")
            }
            rest = rest[close.upperBound...]
        }
        self.text = text
    }

    /// The rows as the command prints them: one per line, or under `table` a header made from
    /// `headers` (a field's name upper-cased where it has none) and the columns aligned.
    func output(_ rows: [[String: String]], headers: [String: String], json: ([String: String]) throws -> String) throws -> String {
        let lines = try rows.map { row in try render(row) { try json(row) } }
        guard table else { return lines.joined(separator: "\n") }
        var names: Set<String> = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
            let action = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            if action.hasPrefix(".") { names.insert(String(action.dropFirst())) }
            rest = rest[close.upperBound...]
        }
        var headerRow: [String: String] = [:]
        for n in names { headerRow[n] = headers[n] ?? n.uppercased() }
        let header = try render(headerRow) { "" }
        let cells = ([header] + lines).map { $0.components(separatedBy: "\t") }
        let width = cells.map(\.count).max() ?? 0
        return Format.table(cells.map { $0 + Array(repeating: "", count: width - $0.count) })
    }

    /// The row written out; `fields` by name, `json` the whole row as JSON.
    func render(_ fields: [String: String], json: () throws -> String) throws -> String {
        if text == "json" || text == "{{json .}}" { return try json() }
        var out = ""
        var rest = Substring(text.replacingOccurrences(of: "\\t", with: "\t").replacingOccurrences(of: "\\n", with: "\n"))
        while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
            out += rest[..<open.lowerBound]
            let action = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            if action == "json ." {
                out += try json()
            } else {
                let name = String(action.dropFirst())
                guard let v = fields[name] else {
                    throw StrataError(.invalidArgument, "--format: no field .\(name); the fields are \(fields.keys.sorted().map { "." + $0 }.joined(separator: ", "))")
                }
                out += v
            }
            rest = rest[close.upperBound...]
        }
        return out + rest
    }
}
