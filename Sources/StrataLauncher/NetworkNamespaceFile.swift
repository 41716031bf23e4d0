#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import CStrata
import StrataCore
import StrataSystem

/// A network namespace kept as a file (a bind mount of its nsfs inode), as podman keeps
/// `/run/netns/netns-…`: made before a container's process, set up by the network backend,
/// joined by the process, torn down and unmounted after its end (docs/networking.md).
public enum NetworkNamespaceFile {
    /// Makes one at `path` (a new empty file; lo is up in it).
    public static func make(at path: String) throws {
        _ = try FDHandle.open(path, flags: [.writeOnly, .create, .exclusive, .noFollow], mode: 0o600)
        guard strata_make_netns(path) == 0 else {
            let e = Errno.current
            _ = unlink(path)
            throw StrataError(.system, "cannot make the network namespace \(path): \(e)")
        }
    }

    /// Whether `path` holds one (an nsfs mount on the file).
    public static func exists(at path: String) -> Bool {
        guard let f = try? FDHandle.open(path, flags: [.pathOnly, .noFollow]) else { return false }
        return withExtendedLifetime(f) { strata_fs_type(f.fd) == 0x6e73_6673 }  // NSFS_MAGIC
    }

    /// Unmounts and removes the file; a missing one is not an error.
    public static func remove(at path: String) throws {
        while exists(at: path) {
            guard umount2(path, Int32(MNT_DETACH) | Int32(UMOUNT_NOFOLLOW)) == 0 else {
                throw StrataError.errno(.system, "cannot unmount the network namespace \(path)")
            }
        }
        if unlink(path) != 0, errno != ENOENT { throw StrataError.errno(.system, "cannot remove \(path)") }
    }

    /// Opens it to join (`Launcher.networkNamespace`).
    public static func open(_ path: String) throws -> FDHandle {
        guard exists(at: path) else { throw StrataError(.notFound, "no network namespace at \(path)") }
        return try FDHandle.open(path, flags: [.readOnly, .noFollow])
    }
}
