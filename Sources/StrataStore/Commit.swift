#if canImport(Glibc)
import Glibc
#endif
import CStrata
import Foundation
import GRDB
import StrataArchive
import StrataCore
import StrataDrivers
import StrataFormats
import StrataLayer
import StrataSystem

extension Store {
    /// Commits a container's changes as a new layer on its image and a new image whose config
    /// appends the diffID and a history entry. The layer enters the store through the same
    /// ingest path as a loaded one. Returns the new image ID.
    public func commit(_ ref: String, tag: String?, message: String?, author: String?, changes configChanges: [String]) throws -> Digest {
        let c = try container(ref)
        let baseConfig = try blob(c.image)
        let base = try JSONDocument.decode(ImageConfig.self, from: baseConfig, what: "config \(c.image)")
        let chain = ChainID.chain(base.rootfs.diff_ids)
        let list = try changes(of: c.id)
        // `.wh.` names are reserved for whiteouts (OCI image spec): a user file of that name
        // would delete something on the next load of the image.
        for p in list {
            guard case .entry(_, let name, _, _) = p.source, name.starts(with: Whiteout.prefix) else { continue }
            throw StrataError(.unsafeEntry, "commit of container \(c.name): /\(p.path.display) has a name starting with .wh., which image layers reserve for whiteouts; rename or remove it, then commit again")
        }

        // The layer tar, into an unnamed spool file, then through ingest like any other layer.
        let spool = try spoolFile()
        var size: Int64 = 0
        do {
            let out = BufferedOutput(spool)
            let writer = try LayerDiffWriter { chunk in size += Int64(chunk.count); try out.write(chunk) }
            try writer.write(list.map { p in
                switch p.source {
                case .entry(let dir, let name, let st, let opaque): return .entry(path: p.path, directory: dir, name: name, stat: st, opaque: opaque)
                case .whiteout(let st): return .whiteout(path: p.path, stat: st)
                }
            })
            try writer.close()
            try out.flush()
        } catch let e as StrataError where e.isNoSpace {
            throw StrataError(.system, "commit of container \(c.name): no space left on the device of \(rootPath)/tmp while writing the layer tar (\(ByteCount.describe(size)) written); free some space and commit again")
        }
        let input = InputFile(handle: spool, size: size, label: "commit of container \(c.name)")
        let staged: StagedLayer
        do {
            staged = try stageLayer(source: input.source(), reopen: { input.source() }, parent: chain.last,
                                    expectedDiffID: nil, expectedBlobDigest: nil, maxLayerSize: Int64.max, label: input.label)
        } catch let e as StrataError where e.isNoSpace {
            throw StrataError(.system, "commit of container \(c.name): no space left on the device of \(rootPath)/layers while unpacking the new layer (\(ByteCount.describe(size)) of tar); free some space and commit again")
        }

        // The new config: the old one as a JSON object (unknown keys kept), plus the layer.
        guard var doc = try JSONSerialization.jsonObject(with: Data(baseConfig)) as? [String: Any] else {
            throw StrataError(.invalidFormat, "config \(c.image) is not a JSON object")
        }
        let now = Timestamp.now()
        var rootfs = doc["rootfs"] as? [String: Any] ?? ["type": "layers"]
        rootfs["diff_ids"] = base.rootfs.diff_ids.map(\.description) + [staged.result.diffID.description]
        doc["rootfs"] = rootfs
        var entry: [String: Any] = ["created": now, "created_by": "strata commit \(c.name)"]
        if let message { entry["comment"] = message }
        if let author { entry["author"] = author; doc["author"] = author }
        // One history entry per layer (empty_layer entries aside): an image whose history lists
        // fewer gets entries for the layers it left out first, so the new layer's entry is its own.
        var history = doc["history"] as? [Any] ?? []
        let described = history.filter { (($0 as? [String: Any])?["empty_layer"] as? Bool) != true }.count
        for _ in 0..<max(0, base.rootfs.diff_ids.count - described) {
            history.append(["created": (doc["created"] as? String) ?? now, "created_by": "",
                            "comment": "a layer the image's history did not describe"] as [String: Any])
        }
        doc["history"] = history + [entry]
        doc["created"] = now
        if !configChanges.isEmpty {
            var cfg = base.config ?? ImageConfig.Config()
            for ch in configChanges { try ConfigChange.apply(ch, to: &cfg) }
            var merged = doc["config"] as? [String: Any] ?? [:]
            let encoded = try JSONSerialization.jsonObject(with: try JSONEncoder.configEncoder.encode(cfg)) as? [String: Any] ?? [:]
            for (k, v) in encoded { merged[k] = v }
            doc["config"] = merged
        }
        let bytes = Array(try JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys, .withoutEscapingSlashes]))
        let digest = Digest.of(bytes)
        let parsed = try JSONDocument.decode(ImageConfig.self, from: bytes, what: "new config")
        var stagedList = [staged]
        let tags = try tag.map { [try Reference.normalize($0)] } ?? []
        try record([PreparedImage(configBytes: bytes, configDigest: digest, config: parsed, manifestBytes: nil,
                                  manifestDigest: nil, chain: chain + [staged.chainID], tags: tags)], staged: &stagedList)
        return digest
    }
}
