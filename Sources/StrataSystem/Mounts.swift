#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore

/// Mounting and unmounting: the calls the union drivers make, with errno kept.
public enum Mounts {
    /// An overlay at `target` through the new mount API (fsopen/fsconfig/fsmount), each lower
    /// dir its own `lowerdir+` (no page limit on the options). Lower dirs top first. Rootless,
    /// with `userxattr` (whiteouts and opaque dirs in user.overlay.*, docs/rootless.md).
    public static func overlay(target: String, lowers: [String], upper: String, work: String) throws {
        var err = [CChar](repeating: 0, count: 2048)
        let cstrings = lowers.map { strdup($0) }
        defer { cstrings.forEach { free($0) } }
        let r = cstrings.map { UnsafePointer($0) }.withUnsafeBufferPointer { buf in
            strata_overlay_mount_fsconfig(target, buf.baseAddress, Int32(lowers.count), upper, work, 0,
                                          UserNamespace.current.isRootless ? 1 : 0, &err, err.count)
        }
        if r != 0 {
            let e = Errno.current
            let kernel = String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw StrataError(.system, "cannot mount overlay at \(target)\(kernel.isEmpty ? "" : " (kernel: \(kernel))")", cause: e)
        }
    }

    /// mount(2) of an overlay with classic options, run with `directory` as the working
    /// directory (so the options may name lower dirs relative to it).
    public static func overlay(target: String, options: String, relativeTo directory: String) throws {
        if strata_mount_in_dir(directory, "overlay", target, "overlay", 0, options) != 0 {
            throw StrataError.errno(.system, "cannot mount overlay at \(target)")
        }
    }

    /// mount(2) of an overlay with classic options.
    public static func overlay(target: String, options: String) throws {
        if strata_mount("overlay", target, "overlay", 0, options) != 0 {
            throw StrataError.errno(.system, "cannot mount overlay at \(target)")
        }
    }

    /// fuse-overlayfs (Debian's `fuse-overlayfs`) at `target`: lower dirs top first. The program
    /// mounts, stays as the filesystem's daemon, and ends when it is unmounted.
    public static func fuseOverlay(target: String, lowers: [String], upper: String, work: String) throws {
        guard let program = fuseOverlayProgram else {
            throw StrataError(.notFound, "fuse-overlayfs is not installed (Debian: apt-get install fuse-overlayfs)")
        }
        // Its option syntax has no escape for these.
        for p in lowers + [upper, work] where p.contains(",") || p.contains(":") {
            throw StrataError(.unsupported, "fuse-overlayfs cannot take the path \(p): it holds \",\" or \":\"; use a store path without them")
        }
        let options = "lowerdir=" + lowers.joined(separator: ":") + ",upperdir=" + upper + ",workdir=" + work
        let argv = ["fuse-overlayfs", "-o", options, target]
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var err = [CChar](repeating: 0, count: 2048)
        let rc = strata_run_helper(program, cArgs, &err, err.count)
        guard rc != 0 else { return }
        let said = String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: "\n").filter { !$0.contains("unknown argument ignored") }
            .joined(separator: "; ")
        if rc < 0 { throw StrataError.errno(.system, "cannot run \(program)") }
        throw StrataError(.system, "fuse-overlayfs could not mount \(target) (exit \(rc)\(said.isEmpty ? "" : ": \(said)"))")
    }

    /// Where fuse-overlayfs is installed, or nil.
    public static var fuseOverlayProgram: String? {
        ["/usr/bin/fuse-overlayfs", "/usr/local/bin/fuse-overlayfs", "/bin/fuse-overlayfs"].first { access($0, X_OK) == 0 }
    }

    /// umount2(2); `detach` lets go at once (MNT_DETACH). Not mounted (EINVAL) or gone
    /// (ENOENT) is not an error.
    public static func unmount(_ path: String, detach: Bool = false) throws {
        if strata_umount(path, detach ? strata_mnt_detach() : 0) != 0 {
            let e = Errno.current
            if e.rawValue == EINVAL || e == .ENOENT { return }
            throw StrataError(e == .EBUSY ? .inUse : .system, "cannot unmount \(path)", cause: e)
        }
    }

    /// Whether the kernel has the new mount API for overlay (and so `lowerdir+`, 6.8+).
    public static var kernelHasOverlayLowerdirPlus: Bool {
        guard strata_fsopen_overlay_probe() == 0 else { return false }
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        guard parts.count >= 2 else { return false }
        return parts[0] > 6 || (parts[0] == 6 && parts[1] >= 8)
    }
}
