import Foundation  // JSONSerialization: configs keep keys this code does not know
import StrataCore

/// Edits an image config (OCI image-spec config.md) as a JSON object: what strata changes is
/// set through typed calls, every other key (vendor fields, ones a newer spec adds) is kept as
/// it came. Written with sorted keys and unescaped slashes, as the peers write configs.
public struct ConfigEditor {
    /// The JSON object; values as JSONSerialization reads and writes them.
    private var doc: [String: Any]

    /// An existing config, from the bytes that were verified.
    public init(bytes: [UInt8], what: String) throws {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw StrataError(.invalidFormat, "\(what) is not a JSON object")
        }
        doc = object
    }

    /// A new config with no layers, for `platform`.
    public init(platform: Platform, created: String) {
        doc = ["created": created, "architecture": platform.architecture, "os": platform.os,
               "rootfs": ["type": "layers", "diff_ids": [String]()], "history": [Any]()]
        if let v = platform.variant { doc["variant"] = v }
    }

    public var created: String? {
        get { doc["created"] as? String }
        set { doc["created"] = newValue }
    }

    /// The image's author (OCI `author`): `commit -a` sets it, as `docker commit -a` does.
    public var author: String? {
        get { doc["author"] as? String }
        set { doc["author"] = newValue }
    }

    /// Docker's `comment` (`commit -m`), shown by `inspect` as Comment; OCI readers ignore it.
    public var comment: String? {
        get { doc["comment"] as? String }
        set { doc["comment"] = newValue }
    }

    /// One entry of the config's history.
    public struct HistoryItem: Sendable, Equatable {
        public var created: String
        public var createdBy: String
        public var comment: String?
        public var author: String?
        /// A history entry.
        public init(created: String, createdBy: String, comment: String? = nil, author: String? = nil) {
            self.created = created; self.createdBy = createdBy; self.comment = comment; self.author = author
        }
        var object: [String: Any] {
            var o: [String: Any] = ["created": created, "created_by": createdBy]
            if let comment { o["comment"] = comment }
            if let author { o["author"] = author }
            return o
        }
    }

    /// Adds a layer on top, with its history entry. An image whose history describes fewer
    /// layers than it has (empty_layer entries aside) first gets entries for those it left out,
    /// so that the new entry is the new layer's.
    public mutating func appendLayer(_ diffID: DiffID, history item: HistoryItem) {
        var rootfs = doc["rootfs"] as? [String: Any] ?? ["type": "layers"]
        let diffIDs = (rootfs["diff_ids"] as? [String]) ?? []
        rootfs["diff_ids"] = diffIDs + [diffID.description]
        doc["rootfs"] = rootfs
        var history = doc["history"] as? [Any] ?? []
        let described = history.filter { (($0 as? [String: Any])?["empty_layer"] as? Bool) != true }.count
        for _ in 0..<max(0, diffIDs.count - described) {
            history.append(HistoryItem(created: created ?? item.created, createdBy: "",
                                       comment: "a layer the image's history did not describe").object)
        }
        doc["history"] = history + [item.object]
        if let author = item.author { doc["author"] = author }
    }

    /// Adds a history entry for a step that made no layer (`empty_layer`, as Docker writes it).
    public mutating func appendEmptyLayerHistory(_ item: HistoryItem) {
        var o = item.object
        o["empty_layer"] = true
        doc["history"] = (doc["history"] as? [Any] ?? []) + [o]
    }

    /// Sets the runtime config (`config`): the keys `config` encodes replace the old ones, the
    /// others stay.
    public mutating func merge(_ config: ImageConfig.Config) throws {
        var merged = doc["config"] as? [String: Any] ?? [:]
        let encoded = try JSONSerialization.jsonObject(with: try ConfigEditor.encoder.encode(config)) as? [String: Any] ?? [:]
        for (k, v) in encoded { merged[k] = v }
        doc["config"] = merged
    }

    /// Removes runtime config keys (`Cmd` when a build sets ENTRYPOINT, `OnBuild` once run).
    public mutating func removeConfigKeys(_ keys: [String]) {
        guard var config = doc["config"] as? [String: Any] else { return }
        for k in keys { config[k] = nil }
        doc["config"] = config
    }

    /// The edited config as canonical JSON (sorted keys), the bytes whose digest is the image ID.
    public func bytes() throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    /// Keys sorted and `/` unescaped: generated JSON reads the way the peers write it.
    public static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
