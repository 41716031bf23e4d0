import FoundationEssentials
import StrataArchive
import StrataCore
import StrataDrivers
import StrataFormats
import StrataLayer
import StrataSystem
import Synchronization

extension Store {
    /// Commits a container's changes as a new layer on its image and a new image whose config
    /// appends the diffID and a history entry. The layer enters the store through the same
    /// ingest path as a loaded one. With `timestamp` (seconds since the epoch, `commit
    /// --timestamp`) the config's and history's times are that one and the layer's file times
    /// are clamped to it: the same changes give the same image ID on any day. Returns the new
    /// image ID.
    public func commit(_ ref: String, tag: String?, message: String?, author: String?, changes configChanges: [String],
                       timestamp: Int64? = nil) throws -> Digest {
        if let timestamp { try Store.checkTimestamp(timestamp, what: "--timestamp") }
        let c = try container(ref)
        let baseConfig = try blob(c.image)
        let base = try JSONDocument.decode(ImageConfig.self, from: baseConfig, what: "config \(c.image)")
        let chain = ChainID.chain(base.rootfs.diff_ids)
        let list = try changes(of: c.id)
        try Store.checkNoReservedNames(list, label: "commit of container \(c.name)")

        let staged = try stageChanges(list, parent: chain.last, label: "commit of container \(c.name)", clampTimes: timestamp)

        // The new config: the old one with its unknown keys kept, plus the layer.
        var doc = try ConfigEditor(bytes: baseConfig, what: "config \(c.image)")
        let now = timestamp.map { Timestamp.string(Date(timeIntervalSince1970: Double($0))) } ?? Timestamp.now()
        // As Docker: the history names what the container ran (not its name, which would make
        // the same change committed from two containers two images).
        let args = ((try? spec(c.id))??.process.args) ?? []
        let command = args.isEmpty ? "strata commit" : args.joined(separator: " ")
        doc.appendLayer(staged.result.diffID, history: .init(created: now, createdBy: command,
                                                             comment: message, author: author))
        doc.created = now
        // As `docker commit -a/-m`: the image's own author and comment, besides the history entry's.
        if let author { doc.author = author }
        if let message { doc.comment = message }
        if !configChanges.isEmpty {
            var cfg = base.config ?? ImageConfig.Config()
            for ch in configChanges { try ConfigChange.apply(ch, to: &cfg) }
            try doc.merge(cfg)
        }
        let bytes = try doc.bytes()
        let digest = Digest.of(bytes)
        let parsed = try JSONDocument.decode(ImageConfig.self, from: bytes, what: "new config")
        var stagedList = [staged]
        let tags = try tag.map { [try Reference.userTag($0)] } ?? []
        try record([PreparedImage(configBytes: bytes, configDigest: digest, config: parsed, manifestBytes: nil,
                                  manifestDigest: nil, chain: chain + [staged.chainID], tags: tags)], staged: &stagedList)
        record(container: c, "commit", ["imageID": digest.string])
        return digest
    }

    /// Refuses a time before 1970 or after 9999 (what an image's `created` can say).
    public static func checkTimestamp(_ t: Int64, what: String) throws { try BuildRun.checkTimestamp(t, what: what) }

    /// `.wh.` names are reserved for whiteouts (OCI image spec): a user file of that name would
    /// delete something on the next load of the image.
    static func checkNoReservedNames(_ list: [ChangedPath], label: String) throws {
        for p in list {
            guard case .entry(_, let name, _, _) = p.source, name.starts(with: Whiteout.prefix) else { continue }
            throw StrataError(.unsafeEntry, "\(label): /\(p.path.display) has a name starting with .wh., which image layers reserve for whiteouts; rename or remove it, then try again")
        }
    }

    /// The layer tar of `list` is written on a thread of its own and streams straight into the
    /// ingest: hashed and unpacked while it is written, never spooled. Where the ingest must
    /// keep the raw tar (never for a tar strata writes, but the path exists), the tar is written
    /// a second time; the ingest checks that it is the same stream, so a container that changed
    /// in between fails the commit instead of recording a tar that is not the layer. With
    /// `clampTimes`, file times later than it are written as it.
    func stageChanges(_ list: [ChangedPath], parent: ChainID?, label: String, clampTimes: Int64? = nil) throws -> StagedLayer {
        let entries = list.map { p -> DiffTarEntry in
            switch p.source {
            case .entry(let dir, let name, let st, let opaque): return .entry(path: p.path, directory: dir, name: name, stat: st, opaque: opaque)
            case .whiteout(let st): return .whiteout(path: p.path, stat: st)
            }
        }
        // Bytes of the first pass, for the message when space runs out.
        let size = Mutex<Int64>(0)
        func tar(counted: Bool) -> ProducedSource {
            ProducedSource { write in
                let writer = try LayerDiffWriter { chunk in
                    if counted { size.withLock { $0 += Int64(chunk.count) } }
                    try write(chunk)
                }
                if let clampTimes { writer.rewrite = LayerDiffWriter.clampingTimes(to: clampTimes) }
                try writer.write(entries)
                try writer.close()
            }
        }
        var sources = [tar(counted: true)]
        defer { sources.forEach { $0.cancel() } }
        do {
            return try stageLayer(source: sources[0], reopen: { sources.append(tar(counted: false)); return sources[sources.count - 1] }, parent: parent,
                                  expectedDiffID: nil, expectedBlobDigest: nil, maxLayerSize: Int64.max, label: label)
        } catch let e as StrataError where e.isNoSpace {
            throw StrataError(.system, "\(label): no space left on the device of \(rootPath)/layers while unpacking the new layer (\(ByteCount.describe(size.withLock { $0 })) of tar); free some space and try again")
        }
    }
}
