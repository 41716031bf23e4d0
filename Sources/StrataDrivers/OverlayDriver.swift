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

    public func essentialDirectories(_ c: ContainerPaths) -> [String] { [c.upper, c.work] }
    public func isMounted(_ c: ContainerPaths, recordedMounts: Int, mountPoints: Set<String>) -> Bool { mountPoints.contains(c.merged) }
    public var mountsAreKernelMounts: Bool { true }
    public var maxLowerLayers: Int? { OverlayDriver.maxLowerLayers }
    public var summary: String { "kernel overlayfs: layers shared, each container's changes in its upper dir" }

    /// Overlay with short links under `linkDirectory`; `useLowerdirPlus` mounts through the new mount API.
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
        let lowers = try stackedLayers(layers, driver: name)
        if useLowerdirPlus {
            return .overlay(lowers: lowers.map(\.path), upper: c.upper, work: c.work, target: c.merged)
        }
        let options = "lowerdir=" + lowers.map(\.link).joined(separator: ":")
            + ",upperdir=" + c.upper + ",workdir=" + c.work + ",index=off,metacopy=off"
            // "off" follows redirects where the kernel is built so, which userxattr refuses
            + (UserNamespace.current.isRootless ? ",redirect_dir=nofollow,userxattr" : ",redirect_dir=off")
        guard options.utf8.count < OverlayDriver.pageSize else {
            throw StrataError(.unsupported, "overlay mount options are \(options.utf8.count) bytes, over one page (\(OverlayDriver.pageSize)); this kernel lacks lowerdir+")
        }
        return .overlayShortLinks(directory: linkDirectory, options: options, target: c.merged)
    }

    public func mount(_ d: MountDescription) throws {
        switch d {
        case .overlay(let lowers, let upper, let work, let target):
            try Mounts.overlay(target: target, lowers: lowers, upper: upper, work: work)
        case .overlayShortLinks(let dir, let options, let target):
            try Mounts.overlay(target: target, options: options, relativeTo: dir)
        case .none, .fuseOverlay:
            return
        }
    }

    /// Detached, as Docker's overlay2 does: a mount that another mount namespace still holds a
    /// copy of for a moment (a container being cloned elsewhere) does not fail the unmount.
    public func unmount(_ c: ContainerPaths) throws { try Mounts.unmount(c.merged, detach: true) }

    public func upperDirectory(_ c: ContainerPaths) -> String? { c.upper }

    /// Whether overlay works here: mounts a scratch overlay in `scratch` (a new directory on the
    /// store's filesystem) and looks. Returns nil when it works, else why not.
    public static func probe(scratch: String) -> String? {
        probeScratchMount(scratch, what: "a scratch overlay") { lower, upper, work, merged in
            do {
                try Mounts.overlay(target: merged, lowers: [lower], upper: upper, work: work)
            } catch let newAPI {
                do {
                    try Mounts.overlay(target: merged, options: "lowerdir=\(lower),upperdir=\(upper),workdir=\(work)"
                                       + (UserNamespace.current.isRootless ? ",userxattr" : ""))
                } catch {
                    throw StrataError(.unsupported, "overlayfs cannot be mounted here: \(newAPI)")
                }
            }
        }
    }

    /// Whether the kernel has the new mount API for overlay (and so `lowerdir+`, 6.8+).
    public static var kernelHasLowerdirPlus: Bool { Mounts.kernelHasOverlayLowerdirPlus }
}

/// Whether a union mount works in `scratch` (a new directory on the store's filesystem):
/// makes lower, upper, work and merged there, a file in lower, mounts with `mount`, and looks
/// for the file in merged; then unmounts and removes it all. Returns nil when it works, else why not.
func probeScratchMount(_ scratch: String, what: String,
                       _ mount: (_ lower: String, _ upper: String, _ work: String, _ merged: String) throws -> Void) -> String? {
    let dirs = ["lower", "upper", "work", "merged"].map { scratch + "/" + $0 }
    do {
        for d in [scratch] + dirs { try makeDirectory(d, mode: 0o700) }
    } catch {
        return "\(error)"
    }
    defer {
        try? Mounts.unmount(dirs[3], detach: true)
        if let root = try? Directory.open(scratch + "/.."), let name = scratch.split(separator: "/").last {
            try? root.removeTree(Array(name.utf8))
        }
    }
    _ = try? FDHandle.open(dirs[0] + "/probe", flags: [.create, .writeOnly], mode: 0o600)
    do {
        try mount(dirs[0], dirs[1], dirs[2], dirs[3])
    } catch let e as StrataError where e.code == .unsupported {
        return e.message
    } catch {
        return "\(error)"
    }
    guard pathExists(dirs[3] + "/probe") else { return "\(what) did not show its lower dir" }
    return nil
}

/// The layers an overlay mount stacks (`visibleLayers`), refused when there are none or more
/// than overlayfs stacks (deeper chains are flattened before they get here).
func stackedLayers(_ layers: [LowerLayer], driver: String) throws -> [LowerLayer] {
    let lowers = visibleLayers(layers)
    guard !lowers.isEmpty else {
        throw StrataError(.invalidArgument, "an image without layers cannot be mounted with \(driver)")
    }
    guard lowers.count <= OverlayDriver.maxLowerLayers else {
        throw StrataError(.unsupported, "the image has \(lowers.count) layers; overlayfs stacks at most \(OverlayDriver.maxLowerLayers)")
    }
    return lowers
}
