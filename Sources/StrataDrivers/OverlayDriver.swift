#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore
import StrataSystem

/// Kernel overlayfs. Lower dirs are the image's layers (top first), a fresh upper and work dir
/// per container; index, redirect_dir and metacopy off, so the upper dir alone describes the
/// change (with index off, copying up one name of a lower hardlink pair breaks the pair, as in
/// Docker's overlay2).
public struct OverlayDriver: UnionDriver {
    public let name = "overlay"
    /// ROOT/l: short links to layer dirs, for the mount(2) form.
    public let linkDirectory: String
    /// Kernels from 6.8 take `lowerdir+` one dir at a time through fsconfig (no page limit).
    public let useLowerdirPlus: Bool

    /// The kernel stacks at most this many lower layers (OVL_MAX_STACK).
    public static let maxLowerLayers = 500

    /// mount(2) takes one page of options. Each lower costs len(link) + 1 (":"), upper and work
    /// cost "upperdir=" + path + ",workdir=" + path; the rest is fixed. With links of up to 5
    /// base-36 characters (60 million layers), 500 lowers take at most 3,000 bytes, leaving
    /// more than 1,000 for "lowerdir=", upperdir, workdir and the flags below.
    public static let pageSize = 4096

    public init(linkDirectory: String, useLowerdirPlus: Bool) {
        self.linkDirectory = linkDirectory
        self.useLowerdirPlus = useLowerdirPlus
    }

    public func create(_ c: ContainerPaths, layers: [LowerLayer]) throws {
        for p in [c.root, c.upper, c.work, c.merged] {
            try makeDirectory(p)
        }
    }

    public func describe(_ c: ContainerPaths, layers: [LowerLayer]) throws -> MountDescription {
        let lowers = visibleLayers(layers)
        guard !lowers.isEmpty else {
            throw StrataError(.invalidArgument, "an image without layers cannot be mounted with overlay")
        }
        guard lowers.count <= OverlayDriver.maxLowerLayers else {
            throw StrataError(.unsupported, "the image has \(lowers.count) layers; overlayfs stacks at most \(OverlayDriver.maxLowerLayers)")
        }
        if useLowerdirPlus {
            return .overlay(lowers: lowers.map(\.path), upper: c.upper, work: c.work, target: c.merged)
        }
        let options = "lowerdir=" + lowers.map(\.link).joined(separator: ":")
            + ",upperdir=" + c.upper + ",workdir=" + c.work + ",index=off,redirect_dir=off,metacopy=off"
        guard options.utf8.count < OverlayDriver.pageSize else {
            throw StrataError(.unsupported, "overlay mount options are \(options.utf8.count) bytes, over one page (\(OverlayDriver.pageSize)); this kernel lacks lowerdir+")
        }
        return .overlayShortLinks(directory: linkDirectory, options: options, target: c.merged)
    }

    public func mount(_ d: MountDescription) throws {
        switch d {
        case .overlay(let lowers, let upper, let work, let target):
            var err = [CChar](repeating: 0, count: 2048)
            let cstrings = lowers.map { strdup($0) }
            defer { cstrings.forEach { free($0) } }
            let r = cstrings.map { UnsafePointer($0) }.withUnsafeBufferPointer { buf in
                strata_overlay_mount_fsconfig(target, buf.baseAddress, Int32(lowers.count), upper, work, 0, &err, err.count)
            }
            if r != 0 {
                let e = Errno.current
                let kernel = String(cString: err)
                throw StrataError(.system, "cannot mount overlay at \(target)\(kernel.isEmpty ? "" : " (kernel: \(kernel))")", cause: e)
            }
        case .overlayShortLinks(let dir, let options, let target):
            if strata_mount_in_dir(dir, "overlay", target, "overlay", 0, options) != 0 {
                throw StrataError.errno(.system, "cannot mount overlay at \(target)")
            }
        case .none:
            return
        }
    }

    public func unmount(_ c: ContainerPaths) throws {
        if strata_umount(c.merged, 0) != 0 {
            let e = Errno.current
            if e.rawValue == EINVAL || e == .ENOENT { return }  // not mounted
            throw StrataError(.inUse, "cannot unmount \(c.merged)", cause: e)
        }
    }

    public func upperDirectory(_ c: ContainerPaths) -> String? { c.upper }

    /// Whether overlay works here: mounts a scratch overlay in `scratch` (a new directory on the
    /// store's filesystem) and looks. Returns nil when it works, else why not.
    public static func probe(scratch: String) -> String? {
        let dirs = ["lower", "upper", "work", "merged"].map { scratch + "/" + $0 }
        for d in [scratch] + dirs where Glibc.mkdir(d, 0o700) != 0 && errno != EEXIST {
            return "cannot create \(d): \(Errno.current)"
        }
        defer {
            _ = strata_umount(dirs[3], strata_mnt_detach())
            if let root = try? Directory.open(scratch + "/.."), let name = scratch.split(separator: "/").last {
                try? root.removeTree(Array(name.utf8))
            }
        }
        let fd = Glibc.open(dirs[0] + "/probe", O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        if fd >= 0 { Glibc.close(fd) }
        var err = [CChar](repeating: 0, count: 1024)
        let lower = strdup(dirs[0])
        defer { free(lower) }
        var lowers: [UnsafePointer<CChar>?] = [UnsafePointer(lower)]
        if strata_overlay_mount_fsconfig(dirs[3], &lowers, 1, dirs[1], dirs[2], 0, &err, err.count) != 0 {
            let e = Errno.current
            if strata_mount("overlay", dirs[3], "overlay", 0,
                            "lowerdir=\(dirs[0]),upperdir=\(dirs[1]),workdir=\(dirs[2])") != 0 {
                return "overlayfs cannot be mounted here: \(e) \(String(cString: err))"
            }
        }
        guard access(dirs[3] + "/probe", F_OK) == 0 else { return "a scratch overlay did not show its lower dir" }
        return nil
    }

    /// Whether the kernel has the new mount API for overlay (and so `lowerdir+`, 6.8+).
    public static var kernelHasLowerdirPlus: Bool {
        guard strata_fsopen_overlay_probe() == 0 else { return false }
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        guard parts.count >= 2 else { return false }
        return parts[0] > 6 || (parts[0] == 6 && parts[1] >= 8)
    }
}
