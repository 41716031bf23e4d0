import ArgumentParser
import FoundationEssentials
import StrataEngine
import StrataSystem

/// `events`: what happened in the store (containers created, started, died, removed; images
/// pulled, tagged, deleted; volumes), from ROOT/events.log, as Docker shows its daemon's.
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events",
        abstract: "Show what happens in the store: container, image and volume events, as they come.",
        discussion: "Without --until it keeps following; --since shows past events first (RFC 3339, Unix seconds, or a duration ago: 10m).")
    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Events since a time: RFC 3339, Unix seconds, or a duration ago (10m, 1h).") var since: String?
    @Option(name: .long, help: "Events until a time (same forms); then exit.") var until: String?
    @Option(name: [.short, .long], help: "KEY=VALUE: type, event, container, image, volume (repeatable).") var filter: [String] = []
    @Option(name: .long, help: "A template per event ({{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}), or json.") var format: String?

    static func time(_ text: String) throws -> Int64 {
        if let seconds = Double(text) { return Int64(seconds * 1e9) }
        if let ago = try? GoDuration.seconds(text, what: "") { return Timestamp.nanosecondsNow() - Int64(ago * 1e9) }
        return Int64(try LogOptions.parseSince(text).timeIntervalSince1970 * 1e9)
    }

    func run() throws {
        try strata.run {
            let filters = try Filters(filter, allowed: ["type", "event", "container", "image", "volume"], command: "events")
            let store = try global.openStore()
            let end = try until.map(Events.time)
            var (past, position) = since.map { _ in store.events(since: 0) } ?? ([], store.events(since: Int64.max).position)
            let start = try since.map(Events.time) ?? 0
            past = past.filter { $0.timeNano >= start }
            func show(_ events: [StoreEvent]) throws -> Bool {
                for e in events {
                    if let end, e.timeNano > end { return false }
                    guard matches(e, filters) else { continue }
                    writeStandardOutput(Array((try line(e) + "\n").utf8))
                }
                return true
            }
            guard try show(past) else { return }
            while end.map({ Timestamp.nanosecondsNow() <= $0 }) ?? true {
                let next = store.events(after: position)
                position = next.position
                guard try show(next.events) else { return }
                Timestamp.sleep(0.1)
            }
        }
    }

    func matches(_ e: StoreEvent, _ f: Filters) -> Bool {
        let name = e.attributes["name"] ?? ""
        return f.any("type") { $0 == e.type }
            && f.any("event") { $0 == e.action || e.action.hasPrefix($0 + ":") }
            && f.any("container") { e.type == "container" && (name == $0 || e.id.hasPrefix($0)) }
            && f.any("image") { (e.type == "image" && (name.hasPrefix($0) || e.id.contains($0))) || e.attributes["image"] == $0 }
            && f.any("volume") { e.type == "volume" && e.id == $0 }
    }

    /// Docker's line (`TIME TYPE ACTION ID (k=v, …)`), or the template's.
    func line(_ e: StoreEvent) throws -> String {
        let object: [String: Any] = ["Type": e.type, "Action": e.action, "Actor": ["ID": e.id, "Attributes": e.attributes as [String: Any]] as [String: Any],
                                     "scope": "local", "time": e.timeNano / 1_000_000_000, "timeNano": e.timeNano,
                                     "status": e.action, "id": e.id, "from": e.attributes["image"] ?? ""]
        if let format {
            return try InspectTemplate.render(format == "json" ? "{{json .}}" : format, object)
        }
        let seconds = e.timeNano / 1_000_000_000, nanos = e.timeNano % 1_000_000_000
        let time = Timestamp.string(Date(timeIntervalSince1970: Double(seconds))).dropLast() + "." + String(format: "%09lld", nanos) + "Z"
        let attributes = e.attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        return "\(time) \(e.type) \(e.action) \(e.id)" + (attributes.isEmpty ? "" : " (\(attributes))")
    }
}
