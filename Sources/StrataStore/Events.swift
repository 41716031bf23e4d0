import FoundationEssentials
import StrataCore
import StrataSystem

/// One thing that happened in the store, as `strata events` shows it (Docker's fields:
/// `Type`, `Action`, `Actor.ID`, `Actor.Attributes`, `time`, `timeNano`).
public struct StoreEvent: Codable, Sendable, Equatable {
    /// `container`, `image` or `volume`.
    public var type: String
    /// `create`, `start`, `die`, `stop`, `kill`, `destroy`, `pause`, `unpause`, `rename`,
    /// `attach`, `health_status: healthy`, …; `pull`, `push`, `load`, `import`, `commit`,
    /// `tag`, `untag`, `delete`; `create`, `destroy` (volumes).
    public var action: String
    /// The container's or image's ID, the volume's name.
    public var id: String
    /// `name`, `image`, `exitCode`, `signal`, …
    public var attributes: [String: String]
    /// Nanoseconds since the epoch.
    public var timeNano: Int64

    /// An event of now.
    public init(type: String, action: String, id: String, attributes: [String: String] = [:]) {
        self.type = type; self.action = action; self.id = id; self.attributes = attributes
        self.timeNano = Timestamp.nanosecondsNow()
    }
}

/// ROOT/events.log: one JSON line per event, appended with O_APPEND (one write per line, so
/// lines of several commands never mix); at 4 MiB it becomes events.log.1 (one old file kept).
/// Events are a record for people and scripts, not the store's truth: one that cannot be
/// written is dropped, never a command's failure.
extension Store {
    static let eventsName = "events.log"
    static let eventsLimit: Int64 = 4 << 20

    /// Appends `event`.
    public func record(_ event: StoreEvent) {
        guard var line = try? JSONEncoder().encode(event) else { return }
        line.append(UInt8(ascii: "\n"))
        let name = Array(Store.eventsName.utf8)
        if let size = try? root.lstat(name)?.size, size >= Store.eventsLimit {
            try? root.rename(name, to: Array((Store.eventsName + ".1").utf8), in: root)
        }
        // Opened after the rotation: the event goes to the file readers follow.
        guard let f = try? root.openFile(name, flags: [.writeOnly, .create, .append, .noFollow], mode: 0o600) else { return }
        try? f.writeAll(Array(line))
    }

    /// A container event with its name and image.
    public func record(container c: ContainerRecord, _ action: String, _ attributes: [String: String] = [:]) {
        var a = attributes
        a["name"] = c.name
        a["image"] = (try? metadata.read { try $0.tags(ofImage: c.image.string) }.first) ?? c.image.string
        record(StoreEvent(type: "container", action: action, id: c.id, attributes: a))
    }

    /// The events recorded at or after `since` (nanoseconds), oldest first, and where the
    /// current file was read to (for `followEvents`).
    public func events(since: Int64) -> (events: [StoreEvent], position: EventsPosition) {
        var out: [StoreEvent] = []
        for name in [Store.eventsName + ".1", Store.eventsName] {
            guard let bytes = try? root.readFile(Array(name.utf8), limit: Int(Store.eventsLimit) * 2) else { continue }
            out += Store.parseEvents(bytes[...]).filter { $0.timeNano >= since }
        }
        return (out, currentPosition())
    }

    /// Where events.log ends now: its inode and size.
    func currentPosition() -> EventsPosition {
        guard let st = try? root.lstat(Array(Store.eventsName.utf8)) else { return EventsPosition(inode: 0, offset: 0) }
        return EventsPosition(inode: st.inode, offset: st.size)
    }

    /// The events written after `position`, and the new position (a rotated file is read from
    /// its start).
    public func events(after position: EventsPosition) -> (events: [StoreEvent], position: EventsPosition) {
        guard let f = try? root.openFile(Array(Store.eventsName.utf8), flags: [.readOnly, .noFollow]), let st = try? f.stat() else {
            return ([], position)
        }
        var start = st.inode == position.inode ? position.offset : 0
        if start > st.size { start = 0 }
        guard st.size > start else { return ([], EventsPosition(inode: st.inode, offset: start)) }
        var bytes = [UInt8](repeating: 0, count: Int(min(st.size - start, Store.eventsLimit * 2)))
        let n = (try? bytes.withUnsafeMutableBytes { try f.pread(into: $0, at: start) }) ?? 0
        // Only whole lines: a line being written is read next time.
        guard let lastNewline = bytes[0..<n].lastIndex(of: UInt8(ascii: "\n")) else { return ([], EventsPosition(inode: st.inode, offset: start)) }
        return (Store.parseEvents(bytes[...lastNewline]), EventsPosition(inode: st.inode, offset: start + Int64(lastNewline) + 1))
    }

    static func parseEvents(_ bytes: ArraySlice<UInt8>) -> [StoreEvent] {
        bytes.split(separator: UInt8(ascii: "\n")).compactMap { try? JSONDecoder().decode(StoreEvent.self, from: Data($0)) }
    }
}

/// How far `events` has read events.log.
public struct EventsPosition: Sendable, Equatable {
    var inode: UInt64
    var offset: Int64
}
