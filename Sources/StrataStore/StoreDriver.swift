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

    /// The directories of container `id` (under ROOT/containers/).
    public func containerPaths(_ id: String) -> ContainerPaths { ContainerPaths(root: rootPath + "/containers/" + id) }

    /// ROOT/NAME, made if missing.
    package func ensureDirectory(_ name: String) throws -> Directory {
        try makeDirectory(rootPath + "/" + name, mode: 0o700)
        return try Directory.open(rootPath + "/" + name)
    }
}
