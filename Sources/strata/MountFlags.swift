import FoundationEssentials
import StrataEngine

/// Docker's three ways of asking for a mount, read into `VolumeSpec`s (the engine checks the
/// paths and names).
enum MountFlags {
    /// `-v /HOST:/PATH[:OPTS]` (a bind), `-v NAME:/PATH[:OPTS]` (a volume), `-v /PATH` (an
    /// anonymous volume); OPTS a comma list of ro, rw, nocopy, z, Z (no SELinux here: nothing to
    /// relabel) and private/rprivate propagation.
    static func volume(_ text: String) throws -> VolumeSpec {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func bad(_ why: String) -> StrataError {
            StrataError(.invalidArgument, "invalid --volume \"\(text)\": \(why) (/HOST:/PATH[:ro], NAME:/PATH[:ro] or /PATH)")
        }
        guard (1...3).contains(parts.count), !parts.contains(where: \.isEmpty) else { throw bad("empty or too many parts") }
        if parts.count == 1 {
            guard parts[0].hasPrefix("/") else { throw bad("the mount path must be absolute") }
            return VolumeSpec(kind: .volume, source: nil, target: parts[0])
        }
        guard parts[1].hasPrefix("/") else { throw bad("the mount path \(parts[1]) must be absolute") }
        var spec = VolumeSpec(kind: parts[0].hasPrefix("/") ? .bind : .volume, source: parts[0], target: parts[1])
        for opt in parts.count == 3 ? parts[2].split(separator: ",").map(String.init) : [] {
            switch opt {
            case "ro": spec.readOnly = true
            case "rw": spec.readOnly = false
            case "z", "Z", "private", "rprivate": continue
            case "nocopy":
                guard spec.kind == .volume else { throw bad("nocopy is for volumes, not binds") }
                spec.noCopy = true
            case "shared", "rshared", "slave", "rslave":
                throw StrataError(.unsupported, "invalid --volume \"\(text)\": \(opt) propagation is not supported; mounts are private")
            default: throw bad("unknown option \(opt)")
            }
        }
        return spec
    }

    /// `--mount type=bind|volume|tmpfs,source=…,target=…,readonly,volume-nocopy,tmpfs-size=…,tmpfs-mode=…`.
    static func mount(_ text: String) throws -> VolumeSpec {
        func bad(_ why: String) -> StrataError { StrataError(.invalidArgument, "invalid --mount \"\(text)\": \(why)") }
        var type = "volume", source: String?, target: String?, readOnly = false, noCopy = false, tmpfsOptions: [String] = []
        func flag(_ key: String, _ value: String?) throws -> Bool {
            switch value?.lowercased() {
            case nil, "true", "1": return true
            case "false", "0": return false
            default: throw bad("\(key)=\(value ?? "") is not true or false")
            }
        }
        for field in text.split(separator: ",").map(String.init) {
            let kv = field.split(separator: "=", maxSplits: 1).map(String.init)
            let key = kv[0].lowercased(), value = kv.count == 2 ? kv[1] : nil
            switch key {
            case "type": type = value ?? ""
            case "source", "src": source = value
            case "target", "destination", "dst": target = value
            case "readonly", "ro": readOnly = try flag(key, value)
            case "volume-nocopy": noCopy = try flag(key, value)
            case "tmpfs-size":
                guard let value else { throw bad("tmpfs-size needs a size") }
                tmpfsOptions.append("size=\(try ByteSize.parse(value, what: "tmpfs-size"))")
            case "tmpfs-mode":
                guard let value, let mode = UInt32(value, radix: 8), mode <= 0o7777 else { throw bad("tmpfs-mode is an octal mode, e.g. 1770") }
                tmpfsOptions.append("mode=\(String(mode, radix: 8))")
            case "bind-propagation":
                guard value == "private" || value == "rprivate" else {
                    throw StrataError(.unsupported, "invalid --mount \"\(text)\": \(value ?? "") propagation is not supported; mounts are private")
                }
            case "consistency": continue  // Docker Desktop's; nothing to do on Linux
            default: throw bad("unknown key \(key)")
            }
        }
        guard let target, !target.isEmpty else { throw bad("target is required") }
        switch type {
        case "bind":
            guard let source, !source.isEmpty else { throw bad("a bind needs a source") }
            guard source.hasPrefix("/") else { throw bad("a bind's source is an absolute host path") }
            return VolumeSpec(kind: .bind, source: source, target: target, readOnly: readOnly)
        case "volume":
            return VolumeSpec(kind: .volume, source: source.flatMap { $0.isEmpty ? nil : $0 }, target: target, readOnly: readOnly, noCopy: noCopy)
        case "tmpfs":
            guard source == nil else { throw bad("a tmpfs has no source") }
            return VolumeSpec(kind: .tmpfs, source: nil, target: target, readOnly: readOnly, tmpfsOptions: tmpfsOptions)
        default:
            throw bad("type \(type) is not bind, volume or tmpfs")
        }
    }

    /// `--tmpfs /PATH[:size=…,mode=…,ro|rw]`.
    static func tmpfs(_ text: String) throws -> VolumeSpec {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        var spec = VolumeSpec(kind: .tmpfs, source: nil, target: parts.first ?? "")
        for opt in parts.count == 2 ? parts[1].split(separator: ",").map(String.init) : [] {
            if opt.hasPrefix("size=") {
                spec.tmpfsOptions.append("size=\(try ByteSize.parse(String(opt.dropFirst(5)), what: "--tmpfs size"))")
            } else if opt.hasPrefix("mode="), let mode = UInt32(opt.dropFirst(5), radix: 8), mode <= 0o7777 {
                spec.tmpfsOptions.append("mode=\(String(mode, radix: 8))")
            } else if opt == "ro" || opt == "rw" {
                spec.readOnly = opt == "ro"
            } else if opt != "nosuid" && opt != "nodev" {
                throw StrataError(.invalidArgument, "invalid --tmpfs \"\(text)\": \(opt) is not size=…, mode=…, ro or rw")
            }
        }
        return spec
    }
}
