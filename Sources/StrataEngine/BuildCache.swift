import FoundationEssentials
import StrataCore
import StrataFormats
import StrataStore
import StrataSystem

/// A build's cache (docs/build.md): a step's key (its parent's config, which names its layer
/// chain, environment and all; the instruction; for COPY/ADD the content copied) names the
/// untagged image its result was recorded as. One file per key in ROOT/build-cache, holding
/// the image ID; an entry whose image is gone is a miss, never an error.
struct BuildCache {
    let dir: Directory
    /// The build's time: in every key (a step on a base image has no edited config yet that
    /// would say it).
    let timestamp: Int64

    init(store: Store, timestamp: Int64) throws {
        dir = try store.ensureDirectory("build-cache")
        self.timestamp = timestamp
    }

    /// The key of a step on `parent` described by `step`.
    func key(parent: Digest, step: [String]) -> Digest {
        // Each part with its length in front: no two lists of parts run together the same way.
        var d = Digester()
        for part in ["strata-build-step-2", parent.string, "timestamp=\(timestamp)"] + step {
            let bytes = Array("\(part.utf8.count):".utf8) + Array(part.utf8)
            bytes.withUnsafeBytes { d.update($0) }
        }
        return d.finalize()
    }

    /// The image recorded for `key`, if any.
    func lookup(_ key: Digest) -> Digest? {
        guard let bytes = try? dir.readFile(Array(key.hex.utf8), limit: 200) else { return nil }
        return try? Digest(parsing: String(decoding: bytes, as: UTF8.self))
    }

    /// Remembers `image` as the result of `key` (written whole; a failure only loses the entry).
    func remember(_ key: Digest, image: Digest) {
        try? dir.writeFileAtomically(Array(key.hex.utf8), Array(image.string.utf8))
    }
}

extension Store {
    /// The images the build cache names: a build's intermediate steps, which `images` hides
    /// unless asked (`-a`), as Docker and podman do.
    public func buildIntermediates() -> Set<Digest> {
        guard case .success(let dir) = root.openDirectory(Array("build-cache".utf8), resolve: [.noSymlinks]),
              let names = try? dir.entries() else { return [] }
        var ids: Set<Digest> = []
        for name in names {
            guard let bytes = try? dir.readFile(name, limit: 200),
                  let id = try? Digest(parsing: String(decoding: bytes, as: UTF8.self)) else { continue }
            ids.insert(id)
        }
        return ids
    }

    /// Records a built image (with the layer its last step staged, if any) and its tags, in
    /// one transaction.
    func recordBuilt(configBytes: [UInt8], config: ImageConfig, staged: StagedLayer?, tags: [String]) throws {
        var list = staged.map { [$0] } ?? []
        let digest = Digest.of(configBytes)
        try record([PreparedImage(configBytes: configBytes, configDigest: digest, config: config, manifestBytes: nil, manifestDigest: nil,
                                  chain: ChainID.chain(config.rootfs.diff_ids), tags: tags)], staged: &list)
        if !tags.isEmpty { record(StoreEvent(type: "image", action: "build", id: digest.string, attributes: ["name": tags[0]])) }
    }
}
