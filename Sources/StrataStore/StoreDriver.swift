import FoundationEssentials
import StrataCore
import StrataDrivers
import StrataLayer
import StrataSystem

extension Store {
    /// The drivers a store may use.
    public static let driverNames = ["overlay", "fuse-overlayfs", "vfs"]

    /// The union driver for a store's recorded driver name (`Store.driver` keeps one).
    package func makeDriver(_ name: String, forceShortLinks: Bool) -> any UnionDriver {
        switch name {
        case "vfs": return VfsDriver()
        case "fuse-overlayfs":
            Whiteout.readsFuseOverlayMarkers.store(true, ordering: .relaxed)
            return FuseOverlayDriver()
        default:
            // `shortLinks` forces the form older kernels get (tests, benches).
            let plus = !forceShortLinks && OverlayDriver.kernelHasLowerdirPlus
            return OverlayDriver(linkDirectory: rootPath + "/l", useLowerdirPlus: plus)
        }
    }

    /// Records the driver on first use; refuses one that contradicts the recorded driver.
    package func settleDriver(requested: String?) throws -> String {
        if let requested, !Store.driverNames.contains(requested) {
            throw StrataError(.invalidArgument, "unknown driver \"\(requested)\": expected overlay, fuse-overlayfs or vfs")
        }
        let recorded = try metadata.read { try $0.setting("driver") }
        try settleUserNamespace()
        if let recorded {
            if let requested, requested != recorded {
                throw StrataError(.conflict, "the store at \(rootPath) uses the \(recorded) driver; --driver \(requested) contradicts it (use another --root)")
            }
            return recorded
        }
        // overlay, else (rootless, where the kernel may not mount it in a user namespace)
        // fuse-overlayfs, else vfs; a driver asked for by name must work.
        var chosen = requested ?? "overlay"
        let scratch = { self.rootPath + "/tmp/probe-\(Store.randomID().prefix(8))" }
        if chosen == "overlay", let why = OverlayDriver.probe(scratch: scratch()) {
            if requested == "overlay" { throw StrataError(.unsupported, "overlay does not work here: \(why)") }
            if UserNamespace.current.isRootless, FuseOverlayDriver.probe(scratch: scratch()) == nil {
                logger.warning("overlay does not work here (\(why)); this store uses fuse-overlayfs")
                chosen = "fuse-overlayfs"
            } else {
                logger.warning("overlay does not work here (\(why)); this store uses the vfs driver")
                chosen = "vfs"
            }
        } else if chosen == "fuse-overlayfs", let why = FuseOverlayDriver.probe(scratch: scratch()) {
            throw StrataError(.unsupported, "fuse-overlayfs does not work here: \(why)")
        }
        return try metadata.write { tx in
            try tx.settle("driver", chosen)
            return try tx.setting("driver") ?? chosen
        }
    }

    /// A store is made either by root or by rootless strata (docs/rootless.md): their layers
    /// differ on disk (trusted.* or user.* overlay xattrs, devices made or not, owners as the
    /// host's or as a user namespace's). The other kind is refused, saying which it is.
    /// (Recorded in the database only: one rebuilt by `check --repair` takes it from the
    /// first command; a user cannot open root's store, 0700, in any case.)
    private func settleUserNamespace() throws {
        let ns = UserNamespace.current
        let mine = ns.isRootless ? "rootless:\(ns.hostUser?.uid ?? 0)" : "root"
        let recorded = try metadata.read { try $0.setting("made-by") }
        if let recorded, recorded != mine {
            let what = recorded == "root" ? "by root" : "by rootless strata of uid \(recorded.dropFirst(9))"
            let fix = recorded == "root" ? "run strata as root for it" : "run strata as that user for it"
            throw StrataError(.conflict, "the store at \(rootPath) was made \(what): \(fix), or use another --root")
        }
        if recorded == nil { try metadata.write { tx in try tx.settle("made-by", mine) } }
    }

    /// The directories of container `id` (under ROOT/containers/).
    public func containerPaths(_ id: String) -> ContainerPaths { ContainerPaths(root: rootPath + "/containers/" + id) }

    /// ROOT/NAME, made if missing.
    package func ensureDirectory(_ name: String) throws -> Directory {
        try makeDirectory(rootPath + "/" + name, mode: 0o700)
        return try Directory.open(rootPath + "/" + name)
    }
}
