import FoundationEssentials
import StrataCore
import StrataLayer
import StrataSystem

/// A volume as `volume ls` and `volume inspect` show it: its record and the containers that
/// name it.
public struct VolumeView: Sendable {
    public var record: VolumeRecord
    /// Where its contents are on this host.
    public var mountpoint: String
    /// IDs of the containers whose spec mounts it.
    public var containers: [String]
}

/// What `volume prune` removed.
public struct VolumePruneReport: Sendable {
    public var removed: [String] = []
    public var bytes: Int64 = 0
}

extension Engine {
    /// Turns the run options' mounts into what the container spec binds: named and anonymous
    /// volumes made in the store (an empty one first gets what the image has at its target,
    /// as Docker copies it, unless `nocopy`), `--volumes-from` copied from the other
    /// container's spec, and an anonymous volume for each of the image's VOLUMEs that nothing
    /// else is mounted on. The volumes made here are returned too, for the caller to remove
    /// should the container not come to exist; `leases` holds each named one until the spec
    /// that names it is written.
    func resolveMounts(_ requested: [VolumeSpec], volumesFrom: [String], imageVolumes: [String], rootfs: String,
                       leases: LayerLocks) throws -> (mounts: [VolumeSpec], made: [String]) {
        var specs = requested
        func covered(_ target: String) -> Bool {
            specs.contains { VolumeSpec.samePath($0.target, target) }
        }
        for from in volumesFrom {
            let (ref, mode) = try VolumeSpec.parseVolumesFrom(from)
            let other = try store.container(ref)
            guard let spec = try store.spec(other.id) else {
                throw StrataError(.notFound, "container \(other.name) has no spec to take volumes from (--volumes-from)")
            }
            let bundle = store.containerPaths(other.id).root
            for m in spec.mounts where !RuntimeSpec.isStandard(m) && m.type == "bind" {
                guard let source = m.source, !source.hasPrefix(bundle + "/"), !covered(m.destination) else { continue }
                let ro = mode.map { $0 == "ro" } ?? (m.options?.contains("ro") == true)
                specs.append(VolumeSpec(source: source, target: m.destination, readOnly: ro, tmpfs: false))
            }
        }
        for target in imageVolumes.sorted() where !covered(target) {
            specs.append(VolumeSpec(kind: .volume, source: nil, target: target))
        }
        var out: [VolumeSpec] = [], made: [String] = []
        do {
            for v in specs {
                guard v.kind == .volume else { out.append(v); continue }
                let (record, created) = try store.createVolume(name: v.source, anonymous: v.source == nil)
                if created {
                    made.append(record.name)
                    store.record(StoreEvent(type: "volume", action: "create", id: record.name))
                }
                try leases.lock(key: store.volumeLeaseKey(record.name), exclusive: false)
                // Removed between its making and the lease: not there to mount.
                guard try store.volume(record.name) != nil else {
                    throw StrataError(.notFound, "volume \(record.name) was removed while this container was made; try again")
                }
                let data = store.volumeDataPath(record.name)
                if !v.noCopy { try copyImageContent(rootfs: rootfs, target: v.target, into: data) }
                out.append(VolumeSpec(source: data, target: v.target, readOnly: v.readOnly, tmpfs: false))
            }
        } catch {
            for name in made { try? store.removeVolume(name) }
            throw error
        }
        return (out, made)
    }

    /// Docker's copy of the image's files into an empty volume: what the rootfs has at
    /// `target` (resolved inside it, a directory) with its owner and mode. A volume that holds
    /// anything is left as it is.
    private func copyImageContent(rootfs: String, target: String, into data: String) throws {
        let root = try Directory.open(rootfs)
        guard case .success(let source) = root.openDirectory(Array(target.utf8), resolve: [.inRoot, .noMagicLinks], followFinal: true) else {
            return  // nothing there (made empty by the launcher), or not a directory
        }
        let dest = try Directory.open(data)
        guard try dest.entries().isEmpty else { return }
        do {
            try OverlayFormApplier().apply(layer: source, onto: dest)
            let st = try source.handle.stat()
            try dest.handle.chown(uid: st.uid, gid: st.gid)
            try dest.handle.chmod(st.mode & 0o7777)
        } catch let e as StrataError {
            throw e.context("cannot copy the image's \(target) into its volume")
        }
    }

    /// The names of this store's volumes that container spec `spec` mounts.
    func volumeNames(in spec: RuntimeSpec) -> [String] {
        spec.mounts.compactMap { m in m.type == "bind" ? m.source.flatMap(store.volumeName(ofDataPath:)) : nil }
    }

    /// Container IDs by the volumes their specs mount.
    func volumeUsers() throws -> [String: [String]] {
        var users: [String: [String]] = [:]
        for id in try store.containerIDs().sorted() {
            guard let spec = try? store.spec(id) else { continue }
            for name in Set(volumeNames(in: spec)) { users[name, default: []].append(id) }
        }
        return users
    }

    /// `volume create`.
    public func createVolume(name: String?, labels: [String: String]) throws -> VolumeRecord {
        let (record, created) = try store.createVolume(name: name, labels: labels)
        if created { store.record(StoreEvent(type: "volume", action: "create", id: record.name)) }
        return record
    }

    /// `volume ls` and `volume inspect`: every volume with its users.
    public func volumes() throws -> [VolumeView] {
        let users = try volumeUsers()
        return try store.volumes().records.map {
            VolumeView(record: $0, mountpoint: store.volumeDataPath($0.name), containers: users[$0.name] ?? [])
        }
    }

    /// One volume with its users.
    public func volume(_ name: String) throws -> VolumeView {
        guard let record = try store.volume(name) else { throw StrataError(.notFound, "no such volume: \(name)") }
        return VolumeView(record: record, mountpoint: store.volumeDataPath(name), containers: try volumeUsers()[name] ?? [])
    }

    /// `volume rm`: refused while a container (running or not) names it, as Docker refuses.
    public func removeVolume(_ name: String) throws {
        let lease = try LayerLocks(store: store)
        defer { lease.unlockAll() }
        try lease.lock(key: store.volumeLeaseKey(name), exclusive: true)
        do {
            guard try store.volume(name) != nil else { throw StrataError(.notFound, "no such volume: \(name)") }
        } catch let e as StrataError where e.code == .invalidFormat {
            // A damaged record (`check` reports it): the volume can still go.
        }
        if let users = try volumeUsers()[name], !users.isEmpty {
            let names = users.compactMap { try? store.container($0).name }
            throw StrataError(.inUse, "volume \(name) is in use by container \(names.joined(separator: ", ")); remove the container first (strata rm)")
        }
        try store.removeVolume(name)
        store.record(StoreEvent(type: "volume", action: "destroy", id: name))
    }

    /// `volume prune`: unused anonymous volumes (with `all`, every unused one) whose labels
    /// match `labels` (KEY or KEY=VALUE, all of them).
    public func pruneVolumes(all: Bool, labels: [String] = []) throws -> VolumePruneReport {
        var report = VolumePruneReport()
        let users = try volumeUsers()
        for r in try store.volumes().records where (all || r.anonymous) && (users[r.name] ?? []).isEmpty {
            guard labels.allSatisfy({ VolumeView.matches(r.labels, $0) }) else { continue }
            let size = store.volumeSize(r.name)
            do {
                try removeVolume(r.name)
                report.removed.append(r.name)
                report.bytes = report.bytes.addingSaturating(size)
            } catch let e as StrataError where e.code == .inUse || e.code == .notFound {
                continue  // taken or removed by another command since the list was read
            }
        }
        return report
    }

    /// Removes the anonymous volumes spec `spec` mounts that no other container uses
    /// (`rm -v`, `run --rm`); named volumes stay.
    func removeAnonymousVolumes(of spec: RuntimeSpec?, container id: String) {
        guard let spec else { return }
        let users = (try? volumeUsers()) ?? [:]
        for name in Set(volumeNames(in: spec)) {
            guard let r = try? store.volume(name), r.anonymous, (users[name] ?? []).allSatisfy({ $0 == id }) else { continue }
            try? removeVolume(name)
        }
    }
}

extension VolumeView {
    /// Whether `labels` has `filter` (KEY, or KEY=VALUE).
    static func matches(_ labels: [String: String], _ filter: String) -> Bool {
        if let eq = filter.firstIndex(of: "=") {
            return labels[String(filter[..<eq])] == String(filter[filter.index(after: eq)...])
        }
        return labels[filter] != nil
    }
}
