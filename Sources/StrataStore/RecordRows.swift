import FoundationEssentials
import GRDB
import StrataCore
import StrataSystem

// Rows to typed records: the queries that fetch them are in Metadata.swift.

/// A stored value that does not parse: the database was changed by hand or is damaged.
func stored<T>(_ parse: () throws -> T?, _ what: String) throws -> T {
    guard let v = try parse() else { throw StrataError(.invalidFormat, "the store database holds an invalid \(what); run `strata check`") }
    return v
}

extension LayerRecord {
    init(row: Row) throws {
        self.init(chainID: try ChainID(parsing: row["chain_id"]), diffID: try DiffID(parsing: row["diff_id"]),
                  parent: try (row["parent"] as String?).map(ChainID.init(parsing:)), cacheID: row["cache_id"],
                  size: row["size"], tarSize: row["tar_size"], blobDigest: row["blob_digest"], compression: row["compression"],
                  opaqueRoot: row["opaque_root"], journal: JournalForm(rawValue: row["journal"]) ?? .raw,
                  journalNote: row["journal_note"],
                  createdAt: try stored({ Timestamp.date(row["created_at"]) }, "layer time"))
    }
}

extension ImageRecord {
    init(row: Row) throws {
        self.init(id: try Digest(parsing: row["id"]), topLayer: try (row["top_layer"] as String?).map(ChainID.init(parsing:)),
                  manifestDigest: try (row["manifest_digest"] as String?).map(Digest.init(parsing:)), created: row["created"],
                  os: row["os"], architecture: row["architecture"], size: row["size"],
                  loadedAt: try stored({ Timestamp.date(row["loaded_at"]) }, "image time"))
    }
}

extension ContainerRecord {
    init(row: Row) throws {
        self.init(id: row["id"], name: row["name"], image: try Digest(parsing: row["image_id"]), driver: row["driver"],
                  mountCount: row["mount_count"], pid: (row["pid"] as Int64?).map { Int32(truncatingIfNeeded: $0) },
                  createdAt: try stored({ Timestamp.date(row["created_at"]) }, "container time"))
    }
}

extension FlattenedRecord {
    init(row: Row) throws {
        self.init(topLayer: try ChainID(parsing: row["top_layer"]), cacheID: row["cache_id"], layerCount: row["layer_count"],
                  linkID: row["link_id"], createdAt: try stored({ Timestamp.date(row["created_at"]) }, "flattened layer time"))
    }
}
