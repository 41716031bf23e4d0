import FoundationEssentials
import StrataCore
import StrataSystem

/// A volume as the store keeps it: ROOT/volumes/NAME/volume.json (this) beside
/// ROOT/volumes/NAME/_data (what containers see). The file is the record: a volume has no row
/// in the database, so a rebuild of the database loses none.
public struct VolumeRecord: Codable, Sendable, Equatable {
    public var name: String
    /// Docker's only local driver.
    public var driver: String
    public var createdAt: String
    public var labels: [String: String]
    /// Made for one container (`-v /path`, an image's VOLUME): `rm -v` and `run --rm` remove it
    /// with the container, and `volume prune` without `-a` removes only these.
    public var anonymous: Bool

    /// A volume record of these values.
    public init(name: String, createdAt: String, labels: [String: String] = [:], anonymous: Bool = false) {
        self.name = name; self.driver = "local"; self.createdAt = createdAt; self.labels = labels; self.anonymous = anonymous
    }
}

extension Store {
    static let volumesName: PathBytes = Array("volumes".utf8)
    static let volumeFile: PathBytes = Array("volume.json".utf8)
    static let volumeData = "_data"

    /// ROOT/volumes, made on first use.
    package func volumesDirectory() throws -> Directory {
        switch root.openDirectory(Store.volumesName, resolve: [.noSymlinks]) {
        case .success(let d): return d
        case .failure(let e) where e == .ENOENT:
            if case .failure(let e) = root.mkdir(Store.volumesName, mode: 0o700), e != .EEXIST {
                throw StrataError(.system, "cannot create \(rootPath)/volumes", cause: e)
            }
            return try root.openDirectory(Store.volumesName, resolve: [.noSymlinks]).get()
        case .failure(let e):
            throw StrataError(.system, "cannot open \(rootPath)/volumes", cause: e)
        }
    }

    /// Docker's rule for volume names: a letter or digit, then letters, digits, `_`, `.`, `-`;
    /// at least two characters.
    public static func checkVolumeName(_ name: String) throws {
        let bytes = Array(name.utf8)
        func ok(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) }
        guard bytes.count >= 2, bytes.count <= 255, ok(bytes[0]),
              bytes.dropFirst().allSatisfy({ ok($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }) else {
            throw StrataError(.invalidArgument, "invalid volume name \"\(name.prefix(80))\": letters, digits, _ . - (starting with a letter or digit, at least 2 characters)")
        }
    }

    /// Where volume `name`'s contents are (the bind source of its mounts).
    public func volumeDataPath(_ name: String) -> String { rootPath + "/volumes/" + name + "/" + Store.volumeData }

    /// The name of the volume whose contents are at `path` (a mount source), if it is one of this store's.
    public func volumeName(ofDataPath path: String) -> String? {
        let prefix = rootPath + "/volumes/", suffix = "/" + Store.volumeData
        guard path.hasPrefix(prefix), path.hasSuffix(suffix) else { return nil }
        let name = String(path.dropFirst(prefix.count).dropLast(suffix.count))
        return (try? Store.checkVolumeName(name)) == nil || name.contains("/") ? nil : name
    }

    /// Creates volume `name` (nil: an anonymous one, named by 64 random hex digits): staged in
    /// tmp/ with its record, then renamed into place. An existing volume of that name is
    /// returned as it is (`created` false), as `docker volume create` does.
    public func createVolume(name: String?, labels: [String: String] = [:], anonymous: Bool = false) throws -> (record: VolumeRecord, created: Bool) {
        let vname = name ?? Store.randomID()
        try Store.checkVolumeName(vname)
        let volumes = try volumesDirectory()
        if let existing = try volume(vname) { return (existing, false) }
        let record = VolumeRecord(name: vname, createdAt: Timestamp.now(), labels: labels, anonymous: anonymous)
        let staging = Array("volume-\(Store.randomID())".utf8)
        try tmpDir.mkdirOrThrow(staging, mode: 0o700)
        do {
            let dir = try tmpDir.openDirectory(staging, resolve: [.noSymlinks]).get()
            try dir.mkdirOrThrow(Array(Store.volumeData.utf8), mode: 0o755)
            // mkdir honours the umask: the mode is set as Docker's volumes have it.
            try dir.openDirectory(Array(Store.volumeData.utf8), resolve: [.noSymlinks]).get().handle.chmod(0o755)
            try IndexFiles.write(record, as: Store.volumeFile, in: dir)
            guard try tmpDir.renameNoReplace(staging, to: Array(vname.utf8), in: volumes) else {
                try tmpDir.removeTree(staging)
                guard let existing = try volume(vname) else {
                    throw StrataError(.alreadyExists, "volume \(vname) is being made or removed by another command; try again")
                }
                return (existing, false)
            }
        } catch {
            try? tmpDir.removeTree(staging)
            throw error
        }
        return (record, true)
    }

    /// Volume `name`'s record; nil when there is no such volume.
    public func volume(_ name: String) throws -> VolumeRecord? {
        try Store.checkVolumeName(name)
        let volumes = try volumesDirectory()
        guard case .success(let dir) = volumes.openDirectory(Array(name.utf8), resolve: [.noSymlinks]) else { return nil }
        guard let record = try IndexFiles.read(VolumeRecord.self, Store.volumeFile, in: dir, what: "volumes/\(name)/volume.json") else {
            throw StrataError(.invalidFormat, "volume \(name) has no volume.json in \(rootPath)/volumes; run `strata check`")
        }
        guard record.name == name else {
            throw StrataError(.invalidFormat, "volumes/\(name)/volume.json names another volume (\(record.name)); run `strata check`")
        }
        return record
    }

    /// Every volume with a readable record, by name; the names of those without one.
    public func volumes() throws -> (records: [VolumeRecord], damaged: [String]) {
        var records: [VolumeRecord] = [], damaged: [String] = []
        for name in try volumesDirectory().entries().map(\.display).sorted() {
            do {
                if let r = try volume(name) { records.append(r) }
            } catch {
                damaged.append(name)
            }
        }
        return (records, damaged)
    }

    /// Removes volume `name` and its contents: renamed into tmp/ first (a crash midway leaves
    /// what the next sweep empties), then deleted. Whether it is in use is the caller's to know.
    public func removeVolume(_ name: String) throws {
        try Store.checkVolumeName(name)
        let volumes = try volumesDirectory()
        let gone = Array("volume-removing-\(Store.randomID())".utf8)
        do {
            try volumes.rename(Array(name.utf8), to: gone, in: tmpDir)
        } catch let e as StrataError where (e.cause as? Errno) == .ENOENT {
            throw StrataError(.notFound, "no such volume: \(name)")
        }
        try tmpDir.removeTree(gone)
    }

    /// Bytes of regular files in volume `name`.
    public func volumeSize(_ name: String) -> Int64 {
        guard let volumes = try? volumesDirectory(),
              case .success(let d) = volumes.openDirectory(Array("\(name)/\(Store.volumeData)".utf8), resolve: [.noSymlinks]) else { return 0 }
        return (try? d.regularFileBytes()) ?? 0
    }

    /// A lease on volume `name` (ROOT/lock, as layers and containers have): shared while a
    /// container that names it is made, exclusive while it is removed.
    package func volumeLeaseKey(_ name: String) -> String { Digest.of(Array("volume:\(name)".utf8)).hex }
}
