import FoundationEssentials
import StrataCore
import StrataEngine
import StrataFormats
import StrataLauncher
import StrataStore
import StrataSystem

/// Docker's `--filter KEY=VALUE`: several values of one key are alternatives (any may hold),
/// different keys must all hold. Keys outside `allowed` are refused, naming those there are.
struct Filters {
    private var values: [String: [String]] = [:]

    init(_ arguments: [String], allowed: [String], command: String) throws {
        for a in arguments {
            guard let eq = a.firstIndex(of: "="), eq != a.startIndex else {
                throw StrataError(.invalidArgument, "invalid --filter \"\(a)\": expected KEY=VALUE")
            }
            let key = String(a[..<eq]).lowercased(), value = String(a[a.index(after: eq)...])
            guard allowed.contains(key) else {
                throw StrataError(.invalidArgument, "invalid --filter \"\(a)\": \(command) filters by \(allowed.joined(separator: ", "))")
            }
            values[key, default: []].append(value)
        }
    }

    var isEmpty: Bool { values.isEmpty }
    /// The values given for `key`.
    func given(_ key: String) -> [String] { values[key] ?? [] }
    func has(_ key: String) -> Bool { values[key] != nil }

    /// Whether `test` holds for one of `key`'s values (true when the key was not given).
    func any(_ key: String, _ test: (String) throws -> Bool) rethrows -> Bool {
        guard let vs = values[key] else { return true }
        return try vs.contains(where: test)
    }

    /// `label=KEY` or `label=KEY=VALUE` against `labels`.
    func labels(_ labels: [String: String]) -> Bool {
        any("label") { f in
            guard let eq = f.firstIndex(of: "=") else { return labels[f] != nil }
            return labels[String(f[..<eq])] == String(f[f.index(after: eq)...])
        }
    }

    /// Go's path.Match, as Docker's `reference=` filter uses it: `*` and `?` within one path
    /// component (never `/`), `[…]` classes, `\` escapes.
    static func globMatches(_ pattern: String, _ name: String) -> Bool {
        let p = Array(pattern.unicodeScalars), n = Array(name.unicodeScalars)
        func match(_ i: Int, _ j: Int) -> Bool {
            if i == p.count { return j == n.count }
            switch p[i] {
            case "*":
                var k = j
                while true {
                    if match(i + 1, k) { return true }
                    if k == n.count || n[k] == "/" { return false }
                    k += 1
                }
            case "?":
                return j < n.count && n[j] != "/" && match(i + 1, j + 1)
            case "[":
                guard j < n.count, let close = p[(i + 1)...].firstIndex(of: "]") else { return false }
                var set = Array(p[(i + 1)..<close]), negate = false
                if set.first == "^" || set.first == "!" { negate = true; set.removeFirst() }
                var hit = false, k = 0
                while k < set.count {
                    if k + 2 < set.count, set[k + 1] == "-" { if set[k] <= n[j] && n[j] <= set[k + 2] { hit = true }; k += 3 }
                    else { if set[k] == n[j] { hit = true }; k += 1 }
                }
                return hit != negate && match(close + 1, j + 1)
            case "\\" where i + 1 < p.count:
                return j < n.count && n[j] == p[i + 1] && match(i + 2, j + 1)
            default:
                return j < n.count && n[j] == p[i] && match(i + 1, j + 1)
            }
        }
        return match(0, 0)
    }
}

extension Ps {
    static let filterKeys = ["status", "name", "id", "label", "ancestor", "exited", "before", "since"]

    /// The containers `filters` keeps, in the order given.
    static func filter(_ list: [ContainerView], _ filters: Filters, store: Store) throws -> [ContainerView] {
        guard !filters.isEmpty else { return list }
        for v in filters.allValues("status") where !["created", "running", "paused", "exited", "mounted", "restarting", "removing", "dead"].contains(v) {
            throw StrataError(.invalidArgument, "invalid --filter status=\(v): created, running, paused, exited, mounted (or Docker's restarting, removing, dead)")
        }
        // before/since name a container: those created before or after it (the store keeps
        // creation times to the second).
        func createdAt(_ ref: String) throws -> Date { try store.container(ref).createdAt }
        let before = try filters.has("before") ? filters.anyValue("before").map(createdAt) : nil
        let since = try filters.has("since") ? filters.anyValue("since").map(createdAt) : nil
        let ancestors = try filters.has("ancestor") ? Set(filters.allValues("ancestor").map { try store.resolveImage($0) }) : nil
        return try list.filter { c in
            guard filters.any("status", { $0 == (c.paused ? "paused" : c.state.rawValue) }),
                  filters.any("name", { c.record.name.contains($0.hasPrefix("/") ? String($0.dropFirst()) : $0) }),
                  filters.any("id", { c.record.id.hasPrefix($0) }),
                  filters.any("exited", { v in c.state == .exited && c.run?.exitCode.map { String($0) } == v }) else { return false }
            if let ancestors, !ancestors.contains(c.record.image) { return false }
            if let before, !(c.record.createdAt < before) { return false }
            if let since, !(c.record.createdAt > since) { return false }
            if filters.has("label") {
                var labels = try store.imageConfig(c.record.image).config?.Labels ?? [:]
                for (k, v) in ((try? store.spec(c.record.id)) ?? nil)?.labels ?? [:] { labels[k] = v }
                if !filters.labels(labels) { return false }
            }
            return true
        }
    }
}

extension Images {
    static let filterKeys = ["dangling", "reference", "label", "before", "since"]

    static func filter(_ list: [ImageView], _ filters: Filters, store: Store) throws -> [ImageView] {
        guard !filters.isEmpty else { return list }
        for v in filters.allValues("dangling") where !["true", "false", "1", "0"].contains(v) {
            throw StrataError(.invalidArgument, "invalid --filter dangling=\(v): true or false")
        }
        func created(_ i: ImageView) -> Date { i.record.created.flatMap { Timestamp.date($0) } ?? i.record.loadedAt }
        func createdOf(_ ref: String) throws -> Date {
            let id = try store.resolveImage(ref)
            guard let i = list.first(where: { $0.id == id }) else { throw StrataError(.notFound, "no image \"\(ref)\"") }
            return created(i)
        }
        let before = try filters.has("before") ? filters.anyValue("before").map(createdOf) : nil
        let since = try filters.has("since") ? filters.anyValue("since").map(createdOf) : nil
        return try list.filter { i in
            guard filters.any("dangling", { ["true", "1"].contains($0) == i.tags.isEmpty }) else { return false }
            // reference: the pattern against NAME:TAG when it has a tag, else against NAME; each
            // tag in its stored form and its short ones (`busybox:latest` for Docker Hub's).
            guard filters.any("reference", { pattern in
                let patternHasTag = Images.splitTag(pattern).tag != nil
                return i.tags.contains { t in
                    ([t] + ((try? ImageReference(parsing: t))?.shortForms ?? [])).contains { c in
                        Filters.globMatches(pattern, patternHasTag ? c : Images.splitTag(c).name)
                    }
                }
            }) else { return false }
            if let before, !(created(i) < before) { return false }
            if let since, !(created(i) > since) { return false }
            if filters.has("label"), !filters.labels(try store.imageConfig(i.id).config?.Labels ?? [:]) { return false }
            return true
        }
    }
}

extension Images {
    /// `NAME[:TAG]` split at the tag's colon (a registry's port is not a tag).
    static func splitTag(_ ref: String) -> (name: String, tag: String?) {
        guard let cut = ref.lastIndex(of: ":"), !ref[cut...].contains("/") else { return (ref, nil) }
        return (String(ref[..<cut]), String(ref[ref.index(after: cut)...]))
    }
}

extension Filters {
    /// The one value of a key that takes one (`before`, `since`): the last given, as Docker.
    func anyValue(_ key: String) -> String? { values[key]?.last }
    func allValues(_ key: String) -> [String] { values[key] ?? [] }
}
