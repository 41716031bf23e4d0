import FoundationEssentials
import StrataCore
import StrataDrivers
import StrataSystem

extension Store {
    /// The union driver for a store's recorded driver name (`Store.driver` keeps one).
    package func makeDriver(_ name: String, forceShortLinks: Bool) -> any UnionDriver {
        switch name {
        case "vfs": return VfsDriver()
        default:
            // `shortLinks` forces the form older kernels get (tests, benches).
            let plus = !forceShortLinks && OverlayDriver.kernelHasLowerdirPlus
            return OverlayDriver(linkDirectory: rootPath + "/l", useLowerdirPlus: plus)
        }
    }

    /// Records the driver on first use; refuses one that contradicts the recorded driver.
    package func settleDriver(requested: String?) throws -> String {
        if let requested, !["overlay", "vfs"].contains(requested) {
            throw StrataError(.invalidArgument, "unknown driver \"\(requested)\": expected overlay or vfs")
        }
        let recorded = try metadata.read { try $0.setting("driver") }
        try settleUserNamespace()
        if let recorded {
            if let requested, requested != recorded {
                throw StrataError(.conflict, "the store at \(rootPath) uses the \(recorded) driver; --driver \(requested) contradicts it (use another --root)")
            }
            return recorded
        }
        var chosen = requested ?? "overlay"
        if chosen == "overlay" {
            if let why = OverlayDriver.probe(scratch: rootPath + "/tmp/probe-\(Store.randomID().prefix(8))") {
                if requested == "overlay" { throw StrataError(.unsupported, "overlay does not work here: \(why)") }
                logger.warning("overlay does not work here (\(why)); this store uses the vfs driver")
                chosen = "vfs"
            }
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
