#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import StrataCore
import StrataSystem
import CStrata

/// One store's container cgroups on this machine (`PARENT/ID` in each hierarchy): what `rm`,
/// `gc` and `check` look at so that none is left after its container. Another store's are
/// under another parent and never looked at.
package enum ContainerCgroups {
    /// A cgroup left behind: where it is, whether processes are still in it.
    package struct Entry: Sendable {
        public var id: String
        public var cgroup: Cgroup
        public var populated: Bool
    }

    /// Every `PARENT/ID` cgroup, one entry per ID across hierarchies.
    package static func list(parent: String, layout: CgroupLayout? = CgroupLayout.current()) -> [Entry] {
        guard let layout else { return [] }
        let roots: [String]
        switch layout {
        case .v2(let root): roots = [root]
        case .v1(let mounts): roots = Array(Set(mounts.values)).sorted()
        }
        var ids: Set<String> = []
        for root in roots {
            guard let d = opendir(root + "/" + parent) else { continue }
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if e.pointee.d_type == UInt8(DT_DIR), name.utf8.count == 64, name.utf8.allSatisfy({ isxdigit(Int32($0)) != 0 }) {
                    ids.insert(name)
                }
            }
            closedir(d)
        }
        return ids.sorted().map { id in
            let cg = Cgroup(layout: layout, id: id, parent: parent)
            return Entry(id: id, cgroup: cg, populated: cg.isPopulated)
        }
    }

    /// The cgroups nothing runs in, each left by a container that is gone or stopped (checked
    /// under the creation lock, so none is a container that is starting). Kept locked while
    /// `body` runs.
    package static func withLeftovers<T>(parent: String, _ body: ([Entry]) throws -> T) rethrows -> T {
        guard let layout = CgroupLayout.current() else { return try body([]) }
        let lock = CgroupCreationLock(layout: layout, exclusive: true, parent: parent)
        defer { withExtendedLifetime(lock) {} }
        return try body(list(parent: parent, layout: layout).filter { !$0.populated })
    }

    /// SIGKILL to everything in a container's cgroups (which stay: its monitor removes them).
    package static func kill(id: String, parent: String, layout: CgroupLayout? = CgroupLayout.current()) {
        guard let layout else { return }
        let cg = Cgroup(layout: layout, id: id, parent: parent)
        for dir in cg.directories {
            for d in Cgroup.subtree(dir) { Cgroup.killAll(d) }
        }
        // A paused container's processes die of SIGKILL only once thawed (cgroup v1).
        if cg.isFrozen { try? cg.setFrozen(false) }
    }

    /// Kills what still runs in a container's cgroups and removes them; returns what is left.
    @discardableResult
    package static func release(id: String, parent: String, layout: CgroupLayout? = CgroupLayout.current()) -> [String] {
        guard let layout else { return [] }
        return Cgroup(layout: layout, id: id, parent: parent).remove()
    }
}
