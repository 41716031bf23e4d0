#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore
import StrataSystem

/// Users, groups and programs resolved from the image's own files, inside its root (never
/// through the host's NSS, never following a symlink out of the rootfs).
public struct RootfsFiles {
    public let root: Directory
    /// The files of the rootfs at `rootfs`.
    public init(rootfs: String) throws { root = try Directory.open(rootfs) }
    /// The files of the rootfs open as `root`.
    public init(root: Directory) { self.root = root }

    /// A small regular file inside the rootfs, or nil. Pinned with O_PATH and checked first:
    /// a FIFO or device node the container put there is never opened (a FIFO would block
    /// this command for ever; opening a device runs its driver outside the container's device
    /// cgroup).
    func read(_ path: String, limit: Int = 4 << 20) -> String? {
        guard case .success(let pinned) = root.openat2(Array(path.utf8), flags: .pathOnly, resolve: [.inRoot, .noMagicLinks]),
              let f = try? pinned.reopenRegularFile(),
              let bytes = try? f.readAll(limit: limit, label: path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A user as the image's /etc/passwd and /etc/group resolve it.
    public struct User: Equatable, Sendable {
        public var uid: uid_t
        public var gid: gid_t
        public var groups: [gid_t]
        public var home: String
    }

    /// The largest uid or gid a container process may get (2³¹−1).
    public static let maxID: UInt32 = 0x7fff_ffff

    /// `user`, `uid`, `user:group`, `uid:gid` (empty: root), as Docker resolves them.
    public func user(_ spec: String) throws -> User {
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        let userPart = parts.first ?? ""
        let passwd = (read("/etc/passwd") ?? "").split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
        let group = (read("/etc/group") ?? "").split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
        var uid: uid_t = 0, gid: gid_t = 0, home = "/", name: String?
        if userPart.isEmpty {
            name = "root"
            if let e = passwd.first(where: { $0.count >= 6 && $0[2] == "0" }) { home = e[5]; name = e[0] }
        } else if let e = passwd.first(where: { $0.count >= 6 && $0[0] == userPart }) {
            guard let u = uid_t(e[2]), let g = gid_t(e[3]) else { throw StrataError(.invalidFormat, "bad /etc/passwd entry for \(userPart)") }
            uid = u; gid = g; home = e[5]; name = e[0]
        } else if let u = uid_t(userPart) {
            uid = u
            if let e = passwd.first(where: { $0.count >= 6 && $0[2] == userPart }) {
                gid = gid_t(e[3]) ?? 0; home = e[5]; name = e[0]
            }
        } else {
            throw StrataError(.notFound, "user \"\(userPart)\" is not in the image's /etc/passwd")
        }
        if parts.count == 2 {
            let g = parts[1]
            if let e = group.first(where: { $0.count >= 3 && $0[0] == g }), let v = gid_t(e[2]) {
                gid = v
            } else if let v = gid_t(g) {
                gid = v
            } else {
                throw StrataError(.notFound, "group \"\(g)\" is not in the image's /etc/group")
            }
        }
        var groups: [gid_t] = [gid]
        // The user's supplementary groups only when no group is named: `-u app:0` runs with group 0
        // alone, as Docker and runc do.
        if let name, parts.count < 2 {
            for e in group where e.count >= 4 && e[3].split(separator: ",").contains(Substring(name)) {
                if let v = gid_t(e[2]), !groups.contains(v) { groups.append(v) }
            }
        }
        // 4294967295 is (uid_t)-1, which setresuid reads as "leave unchanged": the process would
        // stay root. The kernel's ids are 31 bits in practice; runc refuses the same range.
        for (what, id) in [("uid", uid), ("gid", gid)] + groups.map({ ("group id", $0) }) where id > RootfsFiles.maxID {
            throw StrataError(.invalidArgument, "\(what) \(id) for user \"\(spec)\" is out of range: ids go up to \(RootfsFiles.maxID)")
        }
        return User(uid: uid, gid: gid, groups: groups, home: home)
    }

    /// A group for `--group-add`: a number, or a name from the image's /etc/group.
    public func groupID(_ name: String) throws -> gid_t {
        if let v = gid_t(name) {
            guard v <= RootfsFiles.maxID else { throw StrataError(.invalidArgument, "group id \(v) is out of range: ids go up to \(RootfsFiles.maxID)") }
            return v
        }
        let group = (read("/etc/group") ?? "").split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
        guard let e = group.first(where: { $0.count >= 3 && $0[0] == name }), let v = gid_t(e[2]), v <= RootfsFiles.maxID else {
            throw StrataError(.notFound, "group \"\(name)\" (--group-add) is not in the image's /etc/group")
        }
        return v
    }

    /// Where a command was found on `PATH`.
    public enum Lookup: Equatable { case found(String), notFound, notExecutable(String) }

    /// The program for argv[0]: a path as given, or searched in `PATH` inside the rootfs.
    public func program(_ name: String, path: String) -> Lookup {
        let candidates: [String] = name.contains("/") ? [name.hasPrefix("/") ? name : "/" + name]
            : path.split(separator: ":").map { String($0) + "/" + name }
        var denied: String?
        for c in candidates {
            // O_PATH: only its type and mode are looked at; nothing is opened.
            guard case .success(let f) = root.openat2(Array(c.utf8), flags: .pathOnly, resolve: [.inRoot, .noMagicLinks]),
                  let st = try? f.stat() else { continue }
            guard st.kind == .regular else { denied = denied ?? c; continue }
            if st.mode & 0o111 == 0 { denied = denied ?? c; continue }
            return .found(c.hasPrefix("/") ? c : "/" + c)
        }
        if let denied { return .notExecutable(denied) }
        return .notFound
    }

    /// Creates `path` (a directory) inside the rootfs if missing, resolving inside it.
    public func makeDirectory(_ path: String) throws {
        var current: [PathBytes] = []
        for part in path.split(separator: "/").map({ Array($0.utf8) }) where !part.isEmpty && part != [0x2e] {
            current.append(part)
            let joined = EntryPath.join(current)
            switch root.openDirectory(joined, resolve: [.inRoot, .noMagicLinks], followFinal: true) {
            case .success: continue
            case .failure(let e) where e == .ENOENT:
                let parent = try root.openDirectory(EntryPath.join(Array(current.dropLast())), resolve: [.inRoot, .noMagicLinks], followFinal: true).get()
                if case .failure(let e) = parent.mkdir(part, mode: 0o755), e != .EEXIST {
                    throw StrataError(.system, "cannot create \(path) in the container", cause: e)
                }
            case .failure(let e):
                throw StrataError(.invalidArgument, "\(path) in the container is not a directory", cause: e)
            }
        }
    }

    /// Creates an empty file at `path` inside the rootfs if nothing is there (a bind target).
    public func makeFile(_ path: String) throws {
        let comps = path.split(separator: "/").map(String.init)
        try makeDirectory(comps.dropLast().joined(separator: "/"))
        let parent = try root.openDirectory(Array(comps.dropLast().joined(separator: "/").utf8), resolve: [.inRoot, .noMagicLinks], followFinal: true).get()
        let name = Array((comps.last ?? "").utf8)
        if try parent.lstat(name) == nil {
            _ = try parent.openFile(name, flags: [.writeOnly, .create, .exclusive], mode: 0o644)
        }
    }
}

