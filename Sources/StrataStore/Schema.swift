import GRDB
import StrataCore

/// The store's metadata schema. Migrations only ever append; each new one also raises
/// `version`, which is written to SQLite's `user_version`: a store a newer strata wrote (a
/// higher version, or a migration this strata does not know) is refused, never written.
enum Schema {
    static let version = 6

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE layers (
                    chain_id     TEXT PRIMARY KEY,
                    diff_id      TEXT NOT NULL,
                    parent       TEXT REFERENCES layers(chain_id),
                    cache_id     TEXT NOT NULL UNIQUE,
                    size         INTEGER NOT NULL,   -- bytes of regular files in the layer
                    tar_size     INTEGER NOT NULL,   -- bytes of the uncompressed tar
                    blob_digest  TEXT,               -- the compressed blob it was loaded from
                    compression  TEXT,
                    opaque_root  INTEGER NOT NULL DEFAULT 0,
                    journal      TEXT NOT NULL,      -- 'exact': tar-split; 'raw': layer.tar kept
                    journal_note TEXT,
                    created_at   TEXT NOT NULL
                );
                CREATE INDEX layers_parent ON layers(parent);
                CREATE TABLE images (
                    id              TEXT PRIMARY KEY,    -- config digest
                    top_layer       TEXT REFERENCES layers(chain_id),
                    manifest_digest TEXT,
                    created         TEXT,
                    os              TEXT,
                    architecture    TEXT,
                    size            INTEGER NOT NULL,
                    loaded_at       TEXT NOT NULL
                );
                CREATE TABLE image_layers (
                    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                    position INTEGER NOT NULL,
                    chain_id TEXT NOT NULL REFERENCES layers(chain_id),
                    PRIMARY KEY (image_id, position)
                );
                CREATE INDEX image_layers_chain ON image_layers(chain_id);
                CREATE TABLE tags (
                    name     TEXT PRIMARY KEY,
                    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
                );
                """)
        }
        m.registerMigration("v2-containers") { db in
            try db.execute(sql: """
                CREATE TABLE meta (
                    key   TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                );
                CREATE TABLE containers (
                    id          TEXT PRIMARY KEY,
                    name        TEXT NOT NULL UNIQUE,
                    image_id    TEXT NOT NULL REFERENCES images(id),
                    driver      TEXT NOT NULL,
                    created_at  TEXT NOT NULL,
                    mount_count INTEGER NOT NULL DEFAULT 0,
                    pid         INTEGER
                );
                CREATE INDEX containers_image ON containers(image_id);
                -- Short, stable names for ROOT/l links (base 36), assigned when first mounted.
                ALTER TABLE layers ADD COLUMN link_id INTEGER;
                CREATE UNIQUE INDEX layers_link ON layers(link_id);
                """)
        }
        m.registerMigration("v3-user-version") { db in
            try db.execute(sql: "PRAGMA user_version = 3")
        }
        m.registerMigration("v4-registry-blobs") { db in
            try db.execute(sql: """
                -- Compressed forms of a layer known to exist somewhere (pulled, or pushed by strata):
                -- a push names one the registry has instead of uploading the layer again.
                CREATE TABLE layer_blobs (
                    chain_id   TEXT NOT NULL REFERENCES layers(chain_id) ON DELETE CASCADE,
                    digest     TEXT NOT NULL,
                    size       INTEGER NOT NULL,
                    media_type TEXT NOT NULL,
                    PRIMARY KEY (chain_id, digest)
                );
                -- Where a blob was seen: a push mounts it from another repository of the same registry.
                CREATE TABLE blob_locations (
                    digest     TEXT NOT NULL,
                    registry   TEXT NOT NULL,
                    repository TEXT NOT NULL,
                    PRIMARY KEY (digest, registry, repository)
                );
                PRAGMA user_version = 4;
                """)
        }
        m.registerMigration("v5-flattened-layers") { db in
            try db.execute(sql: """
                -- The bottom layers of a chain deeper than overlayfs stacks, made into one tree
                -- (docs/store-layout.md, "Any depth"): a cache, named by the top layer it holds.
                CREATE TABLE flattened_layers (
                    top_layer   TEXT PRIMARY KEY,          -- chainID of the highest layer flattened
                    cache_id    TEXT NOT NULL UNIQUE,      -- ROOT/layers/CACHEID/diff
                    layer_count INTEGER NOT NULL,          -- how many layers it holds
                    link_id     INTEGER NOT NULL UNIQUE,   -- ROOT/l/F<base 36>
                    created_at  TEXT NOT NULL
                );
                PRAGMA user_version = 5;
                """)
        }
        m.registerMigration("v6-repo-digests") { db in
            try db.execute(sql: """
                -- The digest each repository knows an image by (RepoDigests, `images --digests`):
                -- what a pull resolved (an index's digest where it was one), what a push sent.
                CREATE TABLE repo_digests (
                    image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
                    repository TEXT NOT NULL,             -- registry/path, no tag
                    digest     TEXT NOT NULL,
                    PRIMARY KEY (image_id, repository)
                );
                PRAGMA user_version = 6;
                """)
        }
        return m
    }

    /// Throws when the store was written by a newer strata.
    static func checkNotNewer(_ db: Database, root: String) throws {
        let stored = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
        let superseded = try migrator.hasBeenSuperseded(db)
        if stored > version || superseded {
            throw StrataError(.system, "the store at \(root) was written by a newer strata (schema \(stored); this strata knows up to \(version)); use that strata, or another --root")
        }
    }
}
